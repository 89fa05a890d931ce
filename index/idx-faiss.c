/* idx-faiss.c: the FAISS index kind -- a FAISS index built from
 * idx_config.faiss_factory, reached through the C++ shim
 * (idx-faiss-shim.h), behind deja's index interface.
 *
 * Semantics, per operation:
 *  - metric: inner product on the caller's normalised vectors, so scores
 *    are cosines as with every other kind;
 *  - labels: 64-bit, but FAISS ids are int64, so labels >= 2^63 are
 *    refused by add (INVALID_ARG) and never found by get or remove;
 *  - training: an index that needs it (IVF, PQ, SQ...) cannot take
 *    vectors before it is trained, so added vectors wait in a pending
 *    buffer here until there are enough to train on (shim train_size:
 *    max(1000, 39 per centroid)); then FAISS is trained on them and they
 *    all move into it. While pending, searches scan the buffer exactly.
 *    A training FAISS refuses doubles the threshold and keeps buffering.
 *    idx_clear keeps the training;
 *  - search: FAISS returns its best candidates; min_score cuts them, and
 *    a filter, since FAISS cannot call ours, is applied afterwards. With
 *    a filter the search asks FAISS for 4k candidates and, while fewer
 *    than k pass, asks again for 4x as many, until k pass, FAISS runs
 *    out, the candidates fall under min_score, or all vectors were asked
 *    for. Candidates of a repeated round meet the filter again;
 *  - ef: nprobe (the number of inverted lists visited) for an IVF at the
 *    top of the factory string (such as "IVF1024,SQ8"); ignored by the
 *    exact flat types and by an IVF behind a transform ("PCA64,IVF...").
 *    0 means idx_config.ef_search, and if that is 0 too, FAISS's default
 *    (nprobe 1);
 *  - get: the stored vector, decoded for lossy codes (SQ, PQ);
 *  - remove: O(n) for flat-code types, whose rows FAISS compacts and whose
 *    IndexIDMap2 rebuilds its reverse map; O(1) on average for IVF;
 *  - memory: see idx_faiss_shim_memory; exact for the code arrays, an
 *    estimate for FAISS's hash maps;
 *  - threads: like the flat kind, add and remove need exclusive access;
 *  - factory strings: outside baseline mode only those of the grammar in
 *    idx.h (idx_faiss_factory_check) are built; the check runs here, in
 *    C, before FAISS parses anything.
 *
 * Equal scores rank the lower label first, as in every kind: FAISS's
 * answer is re-ranked through deja's top-k heap. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idx-faiss-shim.h"
#include "idx-private.h"

#define FAISS_LABEL_MAX ((uint64_t)INT64_MAX)
#define PENDING_MIN_CAPACITY 64u
/* With a filter, FAISS is first asked for this many candidates per
 * result wanted, and then for this many times more each round. */
#define FILTER_OVERFETCH 4u

typedef struct idx_faiss {
    struct idx base;
    idx_faiss_shim *shim;
    uint32_t default_ef;
    /* Vectors waiting for training, row-major, their labels, and the row
     * of each label. */
    float *pending;
    uint64_t *pending_labels;
    idx_labelmap pending_rows;
    size_t npending;
    size_t pending_capacity;
    size_t train_at; /* npending that triggers training */
} idx_faiss;

static idx_faiss *as_faiss(idx *ix) {
    return (idx_faiss *)ix;
}
static const idx_faiss *as_cfaiss(const idx *ix) {
    return (const idx_faiss *)ix;
}

/* ---- the pending buffer ---------------------------------------------------*/

/* Returns the pending row of label, or SIZE_MAX. */
static size_t pending_find(const idx_faiss *f, uint64_t label) {
    uint32_t row = idx_labelmap_find(&f->pending_rows, label);
    return row == IDX_LABELMAP_NONE ? SIZE_MAX : row;
}

static int pending_reserve(idx_faiss *f, size_t rows) {
    /* Rows are numbered in 32 bits in the label map. */
    if (rows >= IDX_LABELMAP_NONE) return DEJA_ERR_NOMEM;
    int rc = idx_labelmap_reserve(&f->pending_rows, rows);
    if (rc != 0) return rc;
    if (rows <= f->pending_capacity) return 0;
    size_t want = f->pending_capacity ? f->pending_capacity * 2 : PENDING_MIN_CAPACITY;
    while (want < rows)
        want *= 2;
    size_t row_bytes = (size_t)f->base.dim * sizeof(float);
    if (want > SIZE_MAX / row_bytes) return DEJA_ERR_NOMEM;
    /* Two reallocs: if the second fails the first block is merely larger
     * than needed, and the capacity stays the smaller of the two. */
    float *rows_new = realloc(f->pending, want * row_bytes);
    if (!rows_new) return DEJA_ERR_NOMEM;
    f->pending = rows_new;
    uint64_t *labels_new = realloc(f->pending_labels, want * sizeof *labels_new);
    if (!labels_new) return DEJA_ERR_NOMEM;
    f->pending_labels = labels_new;
    f->pending_capacity = want;
    return 0;
}

static void pending_release(idx_faiss *f) {
    free(f->pending);
    free(f->pending_labels);
    f->pending = NULL;
    f->pending_labels = NULL;
    f->npending = f->pending_capacity = 0;
    idx_labelmap_close(&f->pending_rows);
    idx_labelmap_init(&f->pending_rows);
}

/* Trains FAISS on the buffer (if it is not trained yet) and moves the
 * buffer into it. A failure is not the caller's: the vectors stay
 * pending and searchable, and a later add tries again -- after a refused
 * training, only once twice as many vectors have arrived. */
static void pending_flush(idx_faiss *f) {
    size_t n = f->npending;
    if (!idx_faiss_shim_is_trained(f->shim)) {
        if (idx_faiss_shim_train(f->shim, n, f->pending) != 0) {
            f->train_at = f->train_at > SIZE_MAX / 2 ? SIZE_MAX : f->train_at * 2;
            return;
        }
    }
    int64_t *labels = malloc(n * sizeof *labels);
    if (!labels) return;
    for (size_t i = 0; i < n; i++)
        labels[i] = (int64_t)f->pending_labels[i];
    int rc = idx_faiss_shim_add(f->shim, n, f->pending, labels);
    free(labels);
    if (rc != 0) {
        /* Part of the batch may be in FAISS; empty it so every vector
         * lives in exactly one place. The training survives reset. */
        idx_faiss_shim_reset(f->shim);
        return;
    }
    pending_release(f);
}

static int pending_search(const idx_faiss *f, const float *query, uint32_t k,
                          float min_score, idx_filter_fn filter, void *filter_ctx,
                          idx_hit *out, uint32_t *nout) {
    idx_dot_fn dot = idx_simd_dot_fn();
    idx_topk top = {out, k, 0};
    uint32_t dim = f->base.dim;
    for (size_t i = 0; i < f->npending; i++) {
        float score = dot(query, f->pending + i * dim, dim);
        if (!(score >= min_score)) continue; /* drops NaN too */
        uint64_t label = f->pending_labels[i];
        if (!idx_topk_would_enter(&top, score, label)) continue;
        if (filter && !filter(filter_ctx, label)) continue;
        idx_topk_push(&top, score, label);
    }
    idx_topk_sort(&top);
    *nout = top.n;
    return 0;
}

/* ---- the ops --------------------------------------------------------------*/

static void faiss_destroy(idx *ix) {
    idx_faiss *f = as_faiss(ix);
    idx_faiss_shim_destroy(f->shim);
    pending_release(f);
    free(f);
}

static int faiss_add(idx *ix, uint64_t label, const float *vec) {
    idx_faiss *f = as_faiss(ix);
    if (label > FAISS_LABEL_MAX) return DEJA_ERR_INVALID_ARG;
    /* FAISS would silently keep a duplicate (and corrupt its id maps), so
     * uniqueness is checked here. */
    if (f->npending == 0 && idx_faiss_shim_is_trained(f->shim)) {
        if (idx_faiss_shim_contains(f->shim, (int64_t)label)) return DEJA_ERR_INVALID_ARG;
        int64_t id = (int64_t)label;
        return idx_faiss_shim_add(f->shim, 1, vec, &id);
    }
    if (pending_find(f, label) != SIZE_MAX) return DEJA_ERR_INVALID_ARG;
    int rc = pending_reserve(f, f->npending + 1);
    if (rc != 0) return rc;
    memcpy(f->pending + f->npending * f->base.dim, vec,
           (size_t)f->base.dim * sizeof(float));
    f->pending_labels[f->npending] = label;
    idx_labelmap_insert(&f->pending_rows, label, (uint32_t)f->npending);
    f->npending++;
    if (f->npending >= f->train_at) pending_flush(f);
    return 0;
}

static int faiss_remove(idx *ix, uint64_t label) {
    idx_faiss *f = as_faiss(ix);
    if (label > FAISS_LABEL_MAX) return DEJA_ERR_NOT_FOUND;
    if (f->npending == 0) return idx_faiss_shim_remove(f->shim, (int64_t)label);
    size_t row = pending_find(f, label);
    if (row == SIZE_MAX) return DEJA_ERR_NOT_FOUND;
    idx_labelmap_erase(&f->pending_rows, label);
    size_t last = --f->npending;
    if (row != last) {
        memcpy(f->pending + row * f->base.dim, f->pending + last * f->base.dim,
               (size_t)f->base.dim * sizeof(float));
        f->pending_labels[row] = f->pending_labels[last];
        idx_labelmap_set(&f->pending_rows, f->pending_labels[row], (uint32_t)row);
    }
    return 0;
}

static void faiss_clear(idx *ix) {
    idx_faiss *f = as_faiss(ix);
    pending_release(f);
    idx_faiss_shim_reset(f->shim);
}

static int faiss_get(const idx *ix, uint64_t label, float *out) {
    const idx_faiss *f = as_cfaiss(ix);
    if (label > FAISS_LABEL_MAX) return DEJA_ERR_NOT_FOUND;
    if (f->npending == 0) return idx_faiss_shim_get(f->shim, (int64_t)label, out);
    size_t row = pending_find(f, label);
    if (row == SIZE_MAX) return DEJA_ERR_NOT_FOUND;
    memcpy(out, f->pending + row * f->base.dim, (size_t)f->base.dim * sizeof(float));
    return 0;
}

/* Feeds FAISS's candidates (best first, label -1 = none) through deja's
 * top-k heap. Returns how many real candidates there were, and in
 * *below_min whether the list reached scores under min_score. */
static size_t take_candidates(idx_topk *top, const float *scores, const int64_t *labels,
                              size_t n, float min_score, idx_filter_fn filter,
                              void *filter_ctx, int *below_min) {
    size_t real = 0;
    *below_min = 0;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0) break;
        real++;
        float score = scores[i];
        if (isnan(score)) continue;
        if (score < min_score) {
            *below_min = 1;
            break;
        }
        uint64_t label = (uint64_t)labels[i];
        if (!idx_topk_would_enter(top, score, label)) continue;
        if (filter && !filter(filter_ctx, label)) continue;
        idx_topk_push(top, score, label);
    }
    return real;
}

static int faiss_search(const idx *ix, const float *query, uint32_t k, uint32_t ef,
                        float min_score, idx_filter_fn filter, void *filter_ctx,
                        const idx_exact_source *src, idx_hit *out, uint32_t *nout) {
    (void)src;
    const idx_faiss *f = as_cfaiss(ix);
    if (f->npending > 0)
        return pending_search(f, query, k, min_score, filter, filter_ctx, out, nout);
    size_t total = idx_faiss_shim_count(f->shim);
    if (total == 0) return 0;
    if (ef == 0) ef = f->default_ef;

    size_t want = filter ? (size_t)k * FILTER_OVERFETCH : k;
    for (;;) {
        if (want > total) want = total;
        float *scores = malloc(want * sizeof *scores);
        int64_t *labels = malloc(want * sizeof *labels);
        int rc = scores && labels ? 0 : DEJA_ERR_NOMEM;
        if (rc == 0)
            rc = idx_faiss_shim_search(f->shim, 1, query, want, ef, scores, labels);
        idx_topk top = {out, k, 0};
        int below_min = 0;
        size_t real = 0;
        if (rc == 0)
            real = take_candidates(&top, scores, labels, want, min_score, filter,
                                   filter_ctx, &below_min);
        free(scores);
        free(labels);
        if (rc != 0) return rc;

        int done = top.n == k || !filter || below_min || real < want || want == total;
        if (done) {
            idx_topk_sort(&top);
            *nout = top.n;
            return 0;
        }
        want = want > SIZE_MAX / FILTER_OVERFETCH ? total : want * FILTER_OVERFETCH;
    }
}

static int faiss_search_batch(const idx *ix, const float *queries, uint32_t nq,
                              uint32_t k, idx_hit *out, uint32_t *nout) {
    const idx_faiss *f = as_cfaiss(ix);
    uint32_t dim = f->base.dim;
    if (f->npending > 0 || idx_faiss_shim_count(f->shim) == 0) {
        for (uint32_t q = 0; q < nq; q++)
            pending_search(f, queries + (size_t)q * dim, k, -INFINITY, NULL, NULL,
                           out + (size_t)q * k, &nout[q]);
        return 0;
    }
    size_t cells = (size_t)nq * k;
    float *scores = malloc(cells * sizeof *scores);
    int64_t *labels = malloc(cells * sizeof *labels);
    int rc = scores && labels ? 0 : DEJA_ERR_NOMEM;
    if (rc == 0)
        rc =
            idx_faiss_shim_search(f->shim, nq, queries, k, f->default_ef, scores, labels);
    for (uint32_t q = 0; rc == 0 && q < nq; q++) {
        idx_topk top = {out + (size_t)q * k, k, 0};
        int below_min;
        take_candidates(&top, scores + (size_t)q * k, labels + (size_t)q * k, k,
                        -INFINITY, NULL, NULL, &below_min);
        idx_topk_sort(&top);
        nout[q] = top.n;
    }
    free(scores);
    free(labels);
    return rc;
}

static size_t faiss_count(const idx *ix) {
    const idx_faiss *f = as_cfaiss(ix);
    return f->npending + idx_faiss_shim_count(f->shim);
}

static size_t faiss_memory(const idx *ix) {
    const idx_faiss *f = as_cfaiss(ix);
    return sizeof *f + idx_faiss_shim_memory(f->shim) +
           idx_labelmap_memory(&f->pending_rows) +
           f->pending_capacity * ((size_t)f->base.dim * sizeof(float) + sizeof(uint64_t));
}

/* ---- the factory grammar (idx.h) -----------------------------------------*/

#define GRAMMAR_TEXT                                                                     \
    "allowed: [IDMap,]Flat|SQ8|SQfp16|IVF<n>,Flat|IVF<n>,SQ8 with n 1..256, "            \
    "n*dim <= 65536"

/* Writes a refusal naming the factory string, which comes from the
 * network: only its first 48 bytes, and only printable ASCII, reach the
 * message (and through it the log). */
static int refuse(char *msg, size_t cap, const char *factory, const char *why) {
    if (msg && cap > 0) {
        char shown[49];
        size_t n = 0;
        for (; factory[n] && n < sizeof shown - 1; n++)
            shown[n] = factory[n] >= 0x20 && factory[n] <= 0x7e ? factory[n] : '?';
        shown[n] = 0;
        snprintf(msg, cap, "FAISS factory \"%s%s\" refused: %s", shown,
                 factory[n] ? "..." : "", why);
    }
    return DEJA_ERR_INVALID_ARG;
}

static int take(const char **p, const char *token) {
    size_t n = strlen(token);
    if (strncmp(*p, token, n) != 0) return 0;
    *p += n;
    return 1;
}

int idx_faiss_factory_check(const char *factory, uint32_t dim, char *msg,
                            size_t msg_cap) {
    if (msg && msg_cap > 0) msg[0] = 0;
    if (!factory || !factory[0])
        return refuse(msg, msg_cap, "",
                      "a FAISS index needs a factory string; " GRAMMAR_TEXT);
    const char *p = factory;
    if (!take(&p, "IDMap2,")) take(&p, "IDMap,");
    if (take(&p, "IVF")) {
        if (*p < '1' || *p > '9')
            return refuse(msg, msg_cap, factory,
                          "IVF needs a list count from 1; " GRAMMAR_TEXT);
        uint32_t nlist = 0;
        /* Digits past the bound stop the count before it can overflow. */
        while (*p >= '0' && *p <= '9' && nlist <= IDX_FAISS_NLIST_MAX)
            nlist = nlist * 10u + (uint32_t)(*p++ - '0');
        if (nlist > IDX_FAISS_NLIST_MAX)
            return refuse(msg, msg_cap, factory,
                          "IVF list count over 256; " GRAMMAR_TEXT);
        if (strcmp(p, ",Flat") != 0 && strcmp(p, ",SQ8") != 0)
            return refuse(msg, msg_cap, factory,
                          "an IVF holds only Flat or SQ8; " GRAMMAR_TEXT);
        if ((uint64_t)nlist * dim > IDX_FAISS_NLIST_DIM_MAX) {
            char why[160];
            snprintf(why, sizeof why,
                     "IVF%u at dim %u: list count x dim must be at most %u "
                     "(training sample and cost)",
                     nlist, dim, IDX_FAISS_NLIST_DIM_MAX);
            return refuse(msg, msg_cap, factory, why);
        }
        return 0;
    }
    if (strcmp(p, "Flat") == 0 || strcmp(p, "SQ8") == 0 || strcmp(p, "SQfp16") == 0)
        return 0;
    if (strncmp(p, "HNSW", 4) == 0)
        return refuse(msg, msg_cap, factory,
                      "FAISS 1.7.3's HNSW cannot remove vectors, and deja needs "
                      "removal for eviction");
    return refuse(msg, msg_cap, factory, GRAMMAR_TEXT);
}

static const struct idx_ops faiss_ops = {
    .name = "faiss",
    .destroy = faiss_destroy,
    .add = faiss_add,
    .remove = faiss_remove,
    .clear = faiss_clear,
    .get = faiss_get,
    .search = faiss_search,
    .search_batch = faiss_search_batch,
    .count = faiss_count,
    .memory = faiss_memory,
    .concurrent_writes = 0,
};

int idx_faiss_create(const idx_config *cfg, idx **out, char *msg, size_t msg_cap) {
    if (!cfg->faiss_factory || !cfg->faiss_factory[0]) {
        if (msg && msg_cap)
            snprintf(msg, msg_cap,
                     "a FAISS index needs a factory string "
                     "(idx_config.faiss_factory)");
        return DEJA_ERR_INVALID_ARG;
    }
    /* Baseline mode is for benchmarks, whose factory strings come from
     * the operator's command line; everything else passes the grammar. */
    if (!cfg->faiss_baseline) {
        int rc = idx_faiss_factory_check(cfg->faiss_factory, cfg->dim, msg, msg_cap);
        if (rc != 0) return rc;
    }
    idx_faiss *f = calloc(1, sizeof *f);
    if (!f) return DEJA_ERR_NOMEM;
    f->base.ops = &faiss_ops;
    f->base.kind = IDX_KIND_FAISS;
    f->base.dim = cfg->dim;
    f->default_ef = cfg->ef_search;
    idx_labelmap_init(&f->pending_rows);
    int rc = idx_faiss_shim_create(cfg->dim, cfg->faiss_factory, cfg->initial_capacity,
                                   cfg->faiss_baseline, cfg->ef_construction, &f->shim,
                                   msg, msg_cap);
    if (rc != 0) {
        free(f);
        return rc;
    }
    f->train_at = idx_faiss_shim_train_size(f->shim);
    *out = &f->base;
    return 0;
}
