/* idx.h: deja's vector index library -- the common index interface, the
 * exact flat index, and the SIMD distance kernels with runtime dispatch.
 *
 * Vectors are f32[dim], L2-normalised by the caller, so the score of a
 * match is the inner product (= cosine similarity). Every index keeps a
 * 64-bit label per vector (the server's entry id).
 *
 * Threading: an idx is not internally synchronised. Any number of threads
 * may call the const functions (search, count, memory) at once; add and
 * remove need exclusive access. The server wraps each index in a
 * pthread_rwlock. idx_simd_init() must run once, before any other call, on
 * one thread (it sets the dispatch pointers: the only globals in deja).
 *
 * Errors: functions return 0 or a negative DEJA_ERR_* code. */
#ifndef DEJA_IDX_H
#define DEJA_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "deja-errors.h"

/* ---- SIMD kernels ---------------------------------------------------------*/

/* Picks the best kernels this CPU supports. Idempotent. The environment
 * variable DEJA_SIMD=scalar|avx2|avx512 forces a (supported) level, for
 * tests and benchmarks. Each call re-detects the CPU and re-reads
 * DEJA_SIMD, so a test may setenv() and call it again to switch kernels.
 * A forced level the CPU lacks falls back to the best supported level
 * below it; an unknown name is ignored. Until the first call the scalar
 * kernel is active. */
void idx_simd_init(void);

/* Name of the active kernel set ("avx512", "avx2", "scalar"). */
const char *idx_simd_name(void);

/* Inner product of two f32 vectors of length n with the active kernel. */
float idx_dot(const float *a, const float *b, size_t n);

/* The kernel table, best first and scalar last; entries whose CPU features
 * are missing are still listed with supported = 0. For tests. */
typedef float (*idx_dot_fn)(const float *a, const float *b, size_t n);
typedef struct idx_kernel {
    const char *name;
    idx_dot_fn dot;
    int supported;
} idx_kernel;
size_t idx_kernel_count(void);
const idx_kernel *idx_kernel_get(size_t i);

/* ---- the index interface ---------------------------------------------------*/

typedef struct idx idx;

/* Largest vector dimension an index accepts (same as PROTO_MAX_DIM). */
#define IDX_DIM_MAX 4096u

enum idx_kind {
    IDX_KIND_FLAT = 1, /* exact search, contiguous storage */
    /* IDX_KIND_HNSW, IDX_KIND_FAISS: next issue */
};

typedef struct idx_config {
    enum idx_kind kind;
    uint32_t dim;             /* 1..4096 */
    uint32_t initial_capacity; /* a hint; 0 = small default */
} idx_config;

typedef struct idx_hit {
    uint64_t label;
    float score;
} idx_hit;

/* Search filter: return nonzero to accept label. Called from the searching
 * thread, possibly many times per search. */
typedef int (*idx_filter_fn)(void *ctx, uint64_t label);

/* Creates an empty index. Errors: INVALID_ARG (bad kind or dim), NOMEM. */
int idx_create(const idx_config *cfg, idx **out);

/* Frees the index and every vector in it. NULL is a no-op. */
void idx_destroy(idx *ix);

uint32_t idx_dim(const idx *ix);

/* Adds a vector under label; the vector is copied. Errors: INVALID_ARG
 * (label already present, NULL vec), NOMEM. The vector is not checked for
 * NaN/Inf (idx_normalize does that); a row whose score is NaN is never
 * returned by a search. */
int idx_add(idx *ix, uint64_t label, const float *vec);

/* Removes label; its storage is reused. Errors: NOT_FOUND. Removing
 * may move another label's row (the flat index keeps rows dense). */
int idx_remove(idx *ix, uint64_t label);

/* Removes every vector and frees their storage; keeps the configuration.
 * The index grows again from its initial capacity. */
void idx_clear(idx *ix);

/* Copies the stored vector of label into out[dim]. Errors: NOT_FOUND,
 * INVALID_ARG (NULL out). */
int idx_get(const idx *ix, uint64_t label, float *out);

/* Finds up to k labels with score >= min_score that pass filter (NULL =
 * all), best first, into out[0..k); *nout receives how many. Equal scores
 * rank the lower label first. The filter is called only for candidates
 * that would enter the current top k. k = 0 is valid and finds nothing;
 * pass min_score = -INFINITY for no threshold. Errors: INVALID_ARG (NULL
 * ix/query/nout, NULL out with k > 0, NaN min_score); *nout is 0 then. */
int idx_search(const idx *ix, const float *query, uint32_t k, float min_score,
               idx_filter_fn filter, void *filter_ctx, idx_hit *out,
               uint32_t *nout);

/* Batch search for nq queries (row-major nq x dim) with no filter and no
 * threshold: the k best of each query go to out[q*k .. q*k+k), and
 * nout[q] receives how many (min(k, count)). The flat index scores blocks
 * with cblas_sgemm, whose own threads (OpenBLAS) it may use. Scores may
 * differ from idx_search's in the last bits. Errors: NOMEM, INVALID_ARG
 * (NULL pointers with nq > 0). */
int idx_search_batch(const idx *ix, const float *queries, uint32_t nq,
                     uint32_t k, idx_hit *out, uint32_t *nout);

/* Number of vectors. */
size_t idx_count(const idx *ix);

/* Bytes held by the index (vectors, labels, maps, slack), counted from its
 * own allocations. */
size_t idx_memory(const idx *ix);

/* ---- exact helpers (also used by tests and the bench ground truth) --------*/

/* Exact top-k by brute force with the scalar kernel over base (n x dim,
 * row-major), labels = row numbers. Reference implementation for tests. */
void idx_bruteforce(const float *base, size_t n, uint32_t dim,
                    const float *query, uint32_t k, idx_hit *out,
                    uint32_t *nout);

/* L2-normalises v in place; returns 0 or DEJA_ERR_BAD_VECTOR for zero norm
 * or non-finite components. */
int idx_normalize(float *v, uint32_t dim);

#endif
