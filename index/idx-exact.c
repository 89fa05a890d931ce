/* idx-exact.c: idx_exact_topk, exact inner-product top-k for many queries
 * at once -- the ground truth of deja-bench's recall figures.
 *
 * With FAISS, faiss::knn_inner_product scores the base where it lies (no
 * copy; BLAS for large batches). Without it, a temporary flat index holds
 * a copy of the base and answers through its sgemm batch path. Either way
 * every query's hits are re-ranked through deja's top-k heap, so equal
 * scores rank the lower row first, as in idx_search. */
#include <math.h>
#include <stdlib.h>

#include "idx-private.h"
#ifdef HAVE_FAISS
#include "idx-faiss-shim.h"
#endif

/* Slots past the hits found (n < k) get this, so callers need no count. */
static const idx_hit exact_missing = {UINT64_MAX, -INFINITY};

#ifdef HAVE_FAISS
static int exact_topk_faiss(const float *base, size_t n, const float *queries, size_t nq,
                            uint32_t dim, uint32_t k, idx_hit *out) {
    size_t cells = nq * k;
    float *scores = malloc(cells * sizeof *scores);
    int64_t *labels = malloc(cells * sizeof *labels);
    int rc = scores && labels ? 0 : DEJA_ERR_NOMEM;
    if (rc == 0) rc = idx_faiss_shim_knn_ip(base, n, queries, nq, dim, k, scores, labels);
    for (size_t q = 0; rc == 0 && q < nq; q++) {
        idx_hit *hits = out + q * k;
        idx_topk top = {hits, k, 0};
        for (size_t i = 0; i < k; i++) {
            int64_t label = labels[q * k + i];
            float score = scores[q * k + i];
            if (label < 0 || isnan(score)) continue;
            if (idx_topk_would_enter(&top, score, (uint64_t)label))
                idx_topk_push(&top, score, (uint64_t)label);
        }
        idx_topk_sort(&top);
        for (uint32_t i = top.n; i < k; i++)
            hits[i] = exact_missing;
    }
    free(scores);
    free(labels);
    return rc;
}
#else
static int exact_topk_flat(const float *base, size_t n, const float *queries, size_t nq,
                           uint32_t dim, uint32_t k, idx_hit *out) {
    if (n > UINT32_MAX || nq > UINT32_MAX) return DEJA_ERR_INVALID_ARG;
    idx_config cfg = {.kind = IDX_KIND_FLAT, .dim = dim, .initial_capacity = (uint32_t)n};
    idx *flat = NULL;
    uint32_t *nout = malloc((nq ? nq : 1) * sizeof *nout);
    int rc = nout ? idx_create(&cfg, &flat) : DEJA_ERR_NOMEM;
    for (size_t row = 0; rc == 0 && row < n; row++)
        rc = idx_add(flat, row, base + row * dim);
    if (rc == 0) rc = idx_search_batch(flat, queries, (uint32_t)nq, k, out, nout);
    for (size_t q = 0; rc == 0 && q < nq; q++)
        for (uint32_t i = nout[q]; i < k; i++)
            out[q * k + i] = exact_missing;
    idx_destroy(flat);
    free(nout);
    return rc;
}
#endif

int idx_exact_topk(const float *base, size_t n, const float *queries, size_t nq,
                   uint32_t dim, uint32_t k, idx_hit *out) {
    if (dim == 0 || dim > IDX_DIM_MAX) return DEJA_ERR_INVALID_ARG;
    if ((n > 0 && !base) || (nq > 0 && (!queries || (k > 0 && !out))))
        return DEJA_ERR_INVALID_ARG;
    if (nq == 0 || k == 0) return 0;
    if (nq > SIZE_MAX / k) return DEJA_ERR_NOMEM;
    if (n == 0) {
        for (size_t i = 0; i < nq * k; i++)
            out[i] = exact_missing;
        return 0;
    }
#ifdef HAVE_FAISS
    return exact_topk_faiss(base, n, queries, nq, dim, k, out);
#else
    return exact_topk_flat(base, n, queries, nq, dim, k, out);
#endif
}
