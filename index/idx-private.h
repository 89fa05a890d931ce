/* idx-private.h: what the files of the index module share and nobody else
 * sees -- the vtable every index kind implements, the per-ISA kernel
 * prototypes, and the bounded top-k heap used by every search.
 *
 * A new index kind (HNSW, FAISS) defines a struct whose first member is a
 * `struct idx`, fills a `struct idx_ops`, and adds one case to
 * idx_create() in idx.c. The generic functions in idx.c validate the
 * arguments once, so the ops only do their own work. */
#ifndef DEJA_IDX_PRIVATE_H
#define DEJA_IDX_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "idx.h"

/* ---- the vtable -------------------------------------------------------------*/

/* Arguments reaching an op have been checked by idx.c: pointers are
 * non-NULL where the public contract requires them, and k > 0 for the
 * searches. */
struct idx_ops {
    const char *name;
    void (*destroy)(idx *ix);
    int (*add)(idx *ix, uint64_t label, const float *vec);
    int (*remove)(idx *ix, uint64_t label);
    void (*clear)(idx *ix);
    int (*get)(const idx *ix, uint64_t label, float *out);
    int (*search)(const idx *ix, const float *query, uint32_t k,
                  float min_score, idx_filter_fn filter, void *filter_ctx,
                  idx_hit *out, uint32_t *nout);
    /* May be NULL: idx.c then answers a batch with one search per query. */
    int (*search_batch)(const idx *ix, const float *queries, uint32_t nq,
                        uint32_t k, idx_hit *out, uint32_t *nout);
    size_t (*count)(const idx *ix);
    size_t (*memory)(const idx *ix);
};

/* The common head of every index kind; kinds embed it as their first
 * member so an idx * converts to the kind's struct. */
struct idx {
    const struct idx_ops *ops;
    enum idx_kind kind;
    uint32_t dim;
};

/* Constructors of the index kinds; cfg has been validated by idx_create. */
int idx_flat_create(const idx_config *cfg, idx **out);

/* ---- kernels ------------------------------------------------------------------*/

/* Each ISA's kernels live in their own file, compiled with only that
 * ISA's flags; idx-simd.c decides at run time which one may be called. */
float idx_dot_scalar(const float *a, const float *b, size_t n);
#ifdef HAVE_AVX2
float idx_dot_avx2(const float *a, const float *b, size_t n);
#endif
#ifdef HAVE_AVX512
float idx_dot_avx512(const float *a, const float *b, size_t n);
#endif

/* The active inner-product kernel. Searches fetch it once and call it per
 * row, which saves re-reading the global in the hot loop. */
idx_dot_fn idx_simd_dot_fn(void);

/* ---- bounded top-k ----------------------------------------------------------*/

/* A min-heap of at most k hits kept in caller memory (the search's output
 * array), with the worst kept hit at hits[0]. "Better" means a higher
 * score, or an equal score and a lower label, so results are
 * deterministic whatever order rows are scanned in. */
typedef struct idx_topk {
    idx_hit *hits;
    uint32_t k;
    uint32_t n;
} idx_topk;

static inline int idx_hit_better(float score_a, uint64_t label_a,
                                 float score_b, uint64_t label_b) {
    return score_a > score_b || (score_a == score_b && label_a < label_b);
}

/* Whether a hit would be kept; cheap, so callers test it before doing
 * anything expensive (such as running a filter) for the candidate. */
static inline int idx_topk_would_enter(const idx_topk *t, float score,
                                       uint64_t label) {
    if (t->n < t->k) return 1;
    return idx_hit_better(score, label, t->hits[0].score, t->hits[0].label);
}

/* Adds a hit that idx_topk_would_enter() accepted, evicting the worst. */
void idx_topk_push(idx_topk *t, float score, uint64_t label);

/* Sorts the kept hits best first, in place; the heap is spent after it. */
void idx_topk_sort(idx_topk *t);

#endif
