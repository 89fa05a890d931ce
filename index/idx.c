/* idx.c: the generic index functions. They check arguments once and then
 * dispatch through the kind's vtable, so every kind gets the same
 * validation; plus the exact helpers (brute force, normalisation) that do
 * not depend on a kind. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "idx-private.h"

/* snprintf into a caller's optional message buffer. */
static void create_msg(char *msg, size_t msg_cap, const char *text) {
    if (msg && msg_cap > 0) snprintf(msg, msg_cap, "%s", text);
}

int idx_create_msg(const idx_config *cfg, idx **out, char *msg, size_t msg_cap) {
    if (msg && msg_cap > 0) msg[0] = '\0';
    if (!out) {
        create_msg(msg, msg_cap, "no output pointer");
        return DEJA_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (!cfg) {
        create_msg(msg, msg_cap, "no configuration");
        return DEJA_ERR_INVALID_ARG;
    }
    if (cfg->dim == 0 || cfg->dim > IDX_DIM_MAX) {
        create_msg(msg, msg_cap, "dimension must be 1..4096");
        return DEJA_ERR_INVALID_ARG;
    }
    switch (cfg->kind) {
    case IDX_KIND_FLAT: return idx_flat_create(cfg, out);
    case IDX_KIND_HNSW: return idx_hnsw_create(cfg, out);
    case IDX_KIND_FAISS:
#ifdef HAVE_FAISS
        return idx_faiss_create(cfg, out, msg, msg_cap);
#else
        create_msg(msg, msg_cap, "this build of deja has no FAISS support");
        return DEJA_ERR_INVALID_ARG;
#endif
    }
    create_msg(msg, msg_cap, "unknown index kind");
    return DEJA_ERR_INVALID_ARG;
}

int idx_create(const idx_config *cfg, idx **out) {
    return idx_create_msg(cfg, out, NULL, 0);
}

void idx_destroy(idx *ix) {
    if (ix) ix->ops->destroy(ix);
}

uint32_t idx_dim(const idx *ix) {
    return ix ? ix->dim : 0;
}

int idx_add(idx *ix, uint64_t label, const float *vec) {
    if (!ix || !vec) return DEJA_ERR_INVALID_ARG;
    return ix->ops->add(ix, label, vec);
}

int idx_remove(idx *ix, uint64_t label) {
    if (!ix) return DEJA_ERR_INVALID_ARG;
    return ix->ops->remove(ix, label);
}

void idx_clear(idx *ix) {
    if (ix) ix->ops->clear(ix);
}

int idx_get(const idx *ix, uint64_t label, float *out) {
    if (!ix || !out) return DEJA_ERR_INVALID_ARG;
    return ix->ops->get(ix, label, out);
}

int idx_score(const idx *ix, uint64_t label, const float *query, float *score) {
    if (!ix || !query || !score) return DEJA_ERR_INVALID_ARG;
    if (ix->ops->score) return ix->ops->score(ix, label, query, score);
    float *tmp = malloc((size_t)ix->dim * sizeof(float));
    if (!tmp) return DEJA_ERR_NOMEM;
    int rc = ix->ops->get(ix, label, tmp);
    if (rc == 0) *score = idx_dot(query, tmp, ix->dim);
    free(tmp);
    return rc;
}

int idx_search_src(const idx *ix, const float *query, uint32_t k, uint32_t ef,
                   float min_score, idx_filter_fn filter, void *filter_ctx,
                   const idx_exact_source *src, idx_hit *out, uint32_t *nout) {
    if (nout) *nout = 0;
    if (!ix || !query || !nout || (k > 0 && !out) || isnan(min_score) ||
        (src && !src->vector))
        return DEJA_ERR_INVALID_ARG;
    if (k == 0) return 0;
    return ix->ops->search(ix, query, k, ef, min_score, filter, filter_ctx, src, out,
                           nout);
}

int idx_search_ef(const idx *ix, const float *query, uint32_t k, uint32_t ef,
                  float min_score, idx_filter_fn filter, void *filter_ctx, idx_hit *out,
                  uint32_t *nout) {
    return idx_search_src(ix, query, k, ef, min_score, filter, filter_ctx, NULL, out,
                          nout);
}

int idx_search(const idx *ix, const float *query, uint32_t k, float min_score,
               idx_filter_fn filter, void *filter_ctx, idx_hit *out, uint32_t *nout) {
    return idx_search_ef(ix, query, k, 0, min_score, filter, filter_ctx, out, nout);
}

int idx_concurrent_writes(const idx *ix) {
    return ix && ix->ops->concurrent_writes;
}

int idx_search_batch(const idx *ix, const float *queries, uint32_t nq, uint32_t k,
                     idx_hit *out, uint32_t *nout) {
    if (!ix || (nq > 0 && (!queries || !nout)) || (nq > 0 && k > 0 && !out))
        return DEJA_ERR_INVALID_ARG;
    if (nq == 0) return 0;
    if (k == 0) {
        for (uint32_t q = 0; q < nq; q++)
            nout[q] = 0;
        return 0;
    }
    if (ix->ops->search_batch)
        return ix->ops->search_batch(ix, queries, nq, k, out, nout);

    /* Kinds without a batch path answer query by query. */
    for (uint32_t q = 0; q < nq; q++) {
        int rc = ix->ops->search(ix, queries + (size_t)q * ix->dim, k, 0, -INFINITY, NULL,
                                 NULL, NULL, out + (size_t)q * k, &nout[q]);
        if (rc != 0) return rc;
    }
    return 0;
}

size_t idx_count(const idx *ix) {
    return ix ? ix->ops->count(ix) : 0;
}

size_t idx_memory(const idx *ix) {
    return ix ? ix->ops->memory(ix) : 0;
}

int idx_memory_breakdown(const idx *ix, idx_memory_info *out) {
    if (!ix || !out) return DEJA_ERR_INVALID_ARG;
    if (ix->ops->memory_info) {
        ix->ops->memory_info(ix, out);
    } else {
        out->vectors = out->exact = out->graph = 0;
        out->other = ix->ops->memory(ix);
    }
    return 0;
}

void idx_bruteforce(const float *base, size_t n, uint32_t dim, const float *query,
                    uint32_t k, idx_hit *out, uint32_t *nout) {
    if (!nout) return;
    *nout = 0;
    if (!base || !query || !out || k == 0) return;

    /* Always the scalar kernel: this is the reference the fast paths are
     * checked against, so it must not share their code. */
    idx_topk top = {out, k, 0};
    for (size_t row = 0; row < n; row++) {
        float score = idx_dot_scalar(query, base + row * dim, dim);
        /* A NaN score (from a NaN component) ranks nowhere. */
        if (isnan(score)) continue;
        if (idx_topk_would_enter(&top, score, row)) idx_topk_push(&top, score, row);
    }
    idx_topk_sort(&top);
    *nout = top.n;
}

int idx_normalize(float *v, uint32_t dim) {
    if (!v && dim > 0) return DEJA_ERR_INVALID_ARG;
    /* Double accumulation: a 4096-d sum of f32 squares loses digits, and
     * squares of large or tiny components neither overflow nor underflow
     * in double. */
    double sum = 0.0;
    for (uint32_t i = 0; i < dim; i++) {
        if (!isfinite(v[i])) return DEJA_ERR_BAD_VECTOR;
        sum += (double)v[i] * (double)v[i];
    }
    if (!(sum > 0.0) || !isfinite(sum)) return DEJA_ERR_BAD_VECTOR;
    double norm = sqrt(sum);
    for (uint32_t i = 0; i < dim; i++)
        v[i] = (float)((double)v[i] / norm);
    return 0;
}
