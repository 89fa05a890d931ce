/* idx-faiss-shim.h: the C face of idx-faiss.cpp, the one C++ file in deja.
 *
 * Debian ships FAISS as a C++ library without its compiled C API, so this
 * header declares the few extern "C" functions the index module needs.
 * Every function catches every C++ exception before returning, and
 * reports it as a DEJA_ERR_* code: a FAISS error from bad input is
 * INVALID_ARG, other FAISS errors are INTERNAL, std::bad_alloc is NOMEM.
 * Only idx-faiss.c and idx-exact.c include it; it must stay plain C that
 * a C++ compiler also accepts.
 *
 * Labels cross this boundary as int64_t because FAISS ids are int64;
 * callers have already refused labels >= 2^63. */
#ifndef DEJA_IDX_FAISS_SHIM_H
#define DEJA_IDX_FAISS_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A FAISS index with 64-bit labels that can remove vectors. */
typedef struct idx_faiss_shim idx_faiss_shim;

/* Builds index_factory(dim, factory, inner product), giving it our labels:
 * an index that holds an IVF stores them natively, any other is wrapped
 * in an IndexIDMap2. capacity_hint reserves storage for flat-code indexes
 * (0 = none). Refuses an index that cannot remove vectors, unless
 * baseline is set (benchmarks: any type, wrapped in an IndexIDMap; an HNSW
 * gets ef_construction when nonzero, and its search ef is efSearch). On
 * failure a
 * reason goes to msg (if msg_cap > 0). Errors: INVALID_ARG (unparsable
 * factory string, no removal support), NOMEM, INTERNAL. */
int idx_faiss_shim_create(uint32_t dim, const char *factory, size_t capacity_hint,
                          int baseline, uint32_t ef_construction, idx_faiss_shim **out,
                          char *msg, size_t msg_cap);

/* NULL is a no-op. */
void idx_faiss_shim_destroy(idx_faiss_shim *s);

/* Nonzero once the index may take vectors (always, for flat types). */
int idx_faiss_shim_is_trained(const idx_faiss_shim *s);

/* How many vectors the index should see before training: enough for its
 * k-means to have 39 points per centroid (the count FAISS asks for),
 * at least 1000. 0 when no training is needed. */
size_t idx_faiss_shim_train_size(const idx_faiss_shim *s);

/* Trains on n vectors (row-major). Errors: INVALID_ARG (FAISS refused the
 * sample, e.g. fewer points than centroids), NOMEM, INTERNAL. */
int idx_faiss_shim_train(idx_faiss_shim *s, size_t n, const float *x);

/* Adds n vectors under labels that are known to be absent. A failure may
 * leave part of the batch added; the caller resets the index then. */
int idx_faiss_shim_add(idx_faiss_shim *s, size_t n, const float *x,
                       const int64_t *labels);

/* 1 if label is stored, else 0. */
int idx_faiss_shim_contains(const idx_faiss_shim *s, int64_t label);

/* Errors: NOT_FOUND, NOMEM, INTERNAL. */
int idx_faiss_shim_remove(idx_faiss_shim *s, int64_t label);

/* Copies the stored (for lossy codes: decoded) vector of label into out.
 * Errors: NOT_FOUND (absent, or the index cannot reconstruct). */
int idx_faiss_shim_get(const idx_faiss_shim *s, int64_t label, float *out);

/* FAISS's own search of nq queries, k results each, best first, into
 * scores[nq*k] and labels[nq*k]; missing results have label -1. ef, when
 * nonzero, is the IVF nprobe for this call (capped at nlist) where the
 * IVF is the top-level index; otherwise it is ignored. Safe to call from
 * several threads at once. Errors: NOMEM, INTERNAL. */
int idx_faiss_shim_search(const idx_faiss_shim *s, size_t nq, const float *q, size_t k,
                          uint32_t ef, float *scores, int64_t *labels);

/* Drops every vector; training (IVF centroids, SQ ranges) is kept. */
void idx_faiss_shim_reset(idx_faiss_shim *s);

size_t idx_faiss_shim_count(const idx_faiss_shim *s);

/* Bytes held by the index: counted from the containers FAISS exposes for
 * flat-code and array-inverted-list indexes, estimated for hash maps and
 * for other index types (see idx-faiss.cpp). */
size_t idx_faiss_shim_memory(const idx_faiss_shim *s);

/* Exact inner-product top-k of nq queries over n base rows (both
 * row-major, dim columns) with faiss::knn_inner_product, which needs no
 * copy of base. Labels are row numbers; missing results have label -1.
 * Errors: NOMEM, INTERNAL. */
int idx_faiss_shim_knn_ip(const float *base, size_t n, const float *queries, size_t nq,
                          uint32_t dim, size_t k, float *scores, int64_t *labels);

#ifdef __cplusplus
}
#endif

#endif
