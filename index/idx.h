/* idx.h: deja's vector index library -- the common index interface, the
 * exact flat index, and the SIMD distance kernels with runtime dispatch.
 *
 * Vectors are f32[dim], L2-normalised by the caller, so the score of a
 * match is the inner product (= cosine similarity). Every index keeps a
 * 64-bit label per vector (the server's entry id).
 *
 * Threading: any number of threads may call the const functions (search,
 * get, count, memory) at once. add and remove need exclusive access,
 * unless idx_concurrent_writes() is nonzero (HNSW), in which case the
 * index synchronises them itself and they may run alongside searches and
 * each other; clear and destroy always need exclusive access. The server
 * wraps each index in a pthread_rwlock. idx_simd_init() must run once,
 * before any other call, on one thread (it sets the dispatch pointers: the
 * only globals in deja).
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

/* The int8 kernels (exact int32 inner products, used by int8-quantised
 * HNSW), listed and chosen like the f32 ones; DEJA_SIMD limits them to
 * the same level ("avx512" allows avx512vnni and avx512bw). For tests
 * and benchmarks. */
typedef int32_t (*idx_dot_i8_fn)(const int8_t *a, const int8_t *b, size_t n);
typedef struct idx_kernel_i8 {
    const char *name;
    idx_dot_i8_fn dot;
    int supported;
} idx_kernel_i8;
size_t idx_kernel_i8_count(void);
const idx_kernel_i8 *idx_kernel_i8_get(size_t i);
/* Name of the active int8 kernel ("avx512vnni", "avx512bw", "avx2",
 * "scalar"). */
const char *idx_simd_i8_name(void);

/* ---- the index interface ---------------------------------------------------*/

typedef struct idx idx;

/* Largest vector dimension an index accepts (same as PROTO_MAX_DIM). */
#define IDX_DIM_MAX 4096u

enum idx_kind {
    IDX_KIND_FLAT = 1,  /* exact search, contiguous storage */
    IDX_KIND_HNSW = 2,  /* deja's own HNSW graph (idx-hnsw*.c) */
    IDX_KIND_FAISS = 3, /* a FAISS index through the C++ shim */
};

/* How an index stores vectors for traversal (HNSW): f32, or int8 scalar
 * codes with an exact f32 re-rank of the best candidates. */
enum idx_quant {
    IDX_QUANT_F32 = 0,
    IDX_QUANT_INT8 = 1,
};

typedef struct idx_config {
    enum idx_kind kind;
    uint32_t dim;              /* 1..4096 */
    uint32_t initial_capacity; /* a hint; 0 = small default */
    /* HNSW (0 = default) */
    uint32_t M;               /* links per node on upper levels; 0 = 16 */
    uint32_t ef_construction; /* 0 = 200 */
    uint32_t ef_search;       /* default search breadth; 0 = 64 */
    uint64_t seed;            /* level generator seed; 0 = fixed default */
    enum idx_quant quant;
    /* int8 HNSW: keep no f32 copies; the exact re-rank reads each
     * candidate's f32 vector through the idx_exact_source given to
     * idx_search_src (the caller's durable copy, such as the store's map),
     * so the index holds codes and links only. idx_get then answers
     * INVALID_ARG, idx_search without a source INVALID_ARG, and snapshots
     * hold no f32 vectors. Ignored by other kinds and by f32. */
    int exact_external;
    /* FAISS: an index_factory string such as "Flat" or "IVF1024,SQ8",
     * read only during idx_create. Only types that can remove vectors are
     * accepted (FAISS 1.7.3's HNSW cannot), labels must be below 2^63,
     * and ef_search, if set, is the default IVF nprobe (idx-faiss.c). */
    const char *faiss_factory;
    /* Benchmarks only: accept FAISS types that cannot remove vectors (HNSW
     * in FAISS 1.7.3), for baselines; ef_construction then sets an HNSW's
     * efConstruction and a search's ef its efSearch. Removing fails. */
    int faiss_baseline;
} idx_config;

/* The FAISS factory strings deja builds (outside baseline mode): every
 * other string is refused in C before FAISS sees it, because FAISS
 * answers bad parameters with arithmetic faults and aborts, and its
 * training cost grows with nlist squared. The grammar:
 *
 *   factory := [ "IDMap," | "IDMap2," ] body
 *   body    := code | "IVF" nlist "," ivfcode
 *   code    := "Flat" | "SQ8" | "SQfp16"
 *   ivfcode := "Flat" | "SQ8"
 *   nlist   := decimal, no leading zero, 1..IDX_FAISS_NLIST_MAX, and
 *              nlist * dim <= IDX_FAISS_NLIST_DIM_MAX
 *
 * so training (k-means on 39 * nlist vectors of the namespace's own
 * entries, run once, on the thread that publishes the STORE that fills
 * the sample, under the namespace's lock) costs at most about
 * 25 * 39 * nlist^2 * dim multiply-adds (about a second on one core at
 * the bounds) and its sample at most 39 * IDX_FAISS_NLIST_DIM_MAX floats
 * (10 MiB). PQ, OPQ, RQ, LSQ, PCA, Zn
 * lattices, HNSW (no removal in FAISS 1.7.3) and everything else are
 * refused. */
#define IDX_FAISS_NLIST_MAX 256u
#define IDX_FAISS_NLIST_DIM_MAX 65536u

/* Checks factory (NUL-terminated) against the grammar above for an index
 * of dimension dim. Returns 0, or INVALID_ARG with a sentence for a person
 * in msg[0..msg_cap) (msg may be NULL when msg_cap is 0). idx_create
 * runs it for every FAISS index (outside baseline mode), so callers need
 * not; it is public for tests. Pure C, no FAISS call, but defined only in
 * builds with FAISS (HAVE_FAISS). Thread-safe. */
int idx_faiss_factory_check(const char *factory, uint32_t dim, char *msg, size_t msg_cap);

typedef struct idx_hit {
    uint64_t label;
    float score;
} idx_hit;

/* Search filter: return nonzero to accept label. Called from the searching
 * thread, possibly many times per search. */
typedef int (*idx_filter_fn)(void *ctx, uint64_t label);

/* Creates an empty index. Errors: INVALID_ARG (bad kind or dim), NOMEM. */
int idx_create(const idx_config *cfg, idx **out);

/* idx_create that also explains a failure: a NUL-terminated, human-readable
 * reason goes to msg[0..msg_cap) (msg may be NULL when msg_cap is 0), e.g.
 * "FAISS index "HNSW32" cannot remove vectors (...)". Errors as
 * idx_create; IDX_KIND_FAISS adds INVALID_ARG for a missing or unparsable
 * factory string, an index type that cannot remove vectors, or a build
 * without FAISS, and INTERNAL for other FAISS failures. */
int idx_create_msg(const idx_config *cfg, idx **out, char *msg, size_t msg_cap);

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

/* *score = the inner product of query[dim] and the stored vector of
 * label, read where it is stored when the kind allows it (flat: no copy;
 * a caller comparing a STORE with thousands of staged vectors would
 * otherwise copy each one first). Same threading as idx_get. Errors:
 * NOT_FOUND, INVALID_ARG (NULL query or score), NOMEM. */
int idx_score(const idx *ix, uint64_t label, const float *query, float *score);

/* Finds up to k labels with score >= min_score that pass filter (NULL =
 * all), best first, into out[0..k); *nout receives how many. Equal scores
 * rank the lower label first. The filter is called only for candidates
 * that would enter the current top k (HNSW: the current best ef, and a
 * search keeps going while the filter rejects). k = 0 is valid and finds
 * nothing; pass min_score = -INFINITY for no threshold. Errors:
 * INVALID_ARG (NULL ix/query/nout, NULL out with k > 0, NaN min_score),
 * NOMEM (HNSW: scratch for a new concurrent search); *nout is 0 then. */
int idx_search(const idx *ix, const float *query, uint32_t k, float min_score,
               idx_filter_fn filter, void *filter_ctx, idx_hit *out, uint32_t *nout);

/* idx_search with a search breadth for this call (ef; 0 = the index's
 * default). Exact kinds ignore ef. */
int idx_search_ef(const idx *ix, const float *query, uint32_t k, uint32_t ef,
                  float min_score, idx_filter_fn filter, void *filter_ctx, idx_hit *out,
                  uint32_t *nout);

/* Where an index built with exact_external reads the f32 vectors its
 * re-rank needs: vector returns label's vector (dim floats, float-aligned;
 * it may point into scratch[dim]), valid until the search returns, or
 * NULL when the label has none (removed meanwhile: the candidate is
 * dropped). Called on the searching thread, during the search. */
typedef struct idx_exact_source {
    const float *(*vector)(void *ctx, uint64_t label, float *scratch);
    void *ctx;
} idx_exact_source;

/* idx_search_ef with a source for the exact re-rank of an index built
 * with exact_external (other indexes ignore src; NULL src = none). An
 * int8 search re-ranks only candidates that its codes cannot rule out:
 * one whose int8 score plus the quantisation error bound (from both
 * vectors' scales) is below min_score is never fetched, so a lookup with
 * a threshold reads a handful of vectors, and every score returned is
 * the exact f32 inner product. Errors as idx_search_ef, and INVALID_ARG
 * for an exact_external index without src. */
int idx_search_src(const idx *ix, const float *query, uint32_t k, uint32_t ef,
                   float min_score, idx_filter_fn filter, void *filter_ctx,
                   const idx_exact_source *src, idx_hit *out, uint32_t *nout);

/* Nonzero when idx_add and idx_remove may run concurrently with searches
 * and with each other (the index synchronises internally); zero when they
 * need exclusive access (the flat index). */
int idx_concurrent_writes(const idx *ix);

/* Batch search for nq queries (row-major nq x dim) with no filter and no
 * threshold: the k best of each query go to out[q*k .. q*k+k), and
 * nout[q] receives how many (min(k, count)). The flat index scores blocks
 * with cblas_sgemm, whose own threads (OpenBLAS) it may use. Scores may
 * differ from idx_search's in the last bits. Errors: NOMEM, INVALID_ARG
 * (NULL pointers with nq > 0). */
int idx_search_batch(const idx *ix, const float *queries, uint32_t nq, uint32_t k,
                     idx_hit *out, uint32_t *nout);

/* Number of vectors. */
size_t idx_count(const idx *ix);

/* Bytes held by the index (vectors, labels, maps, slack), counted from its
 * own allocations. */
size_t idx_memory(const idx *ix);

/* Where idx_memory's bytes go; the four fields sum to idx_memory(). */
typedef struct idx_memory_info {
    size_t vectors; /* vectors a search scans: f32 rows or int8 codes */
    size_t exact;   /* f32 copies kept only for re-ranking (int8 HNSW) */
    size_t graph;   /* links of every level and their locks */
    size_t other;   /* labels, maps, search scratch, tables, slack */
} idx_memory_info;

/* Fills *out for ix; kinds that do not break their memory down report it
 * all as other. Errors: INVALID_ARG (NULL ix or out). */
int idx_memory_breakdown(const idx *ix, idx_memory_info *out);

/* ---- snapshots -------------------------------------------------------------
 * A snapshot lets a server restart with its graph instead of rebuilding it
 * (an HNSW build costs about a millisecond per 1536-d vector). The file
 * starts with a magic word, a format version, the index kind and its
 * configuration, holds the vectors, labels and links, and ends with an
 * XXH3-64 checksum of everything before it. A file that is truncated,
 * damaged, of another format or of another configuration is refused, so
 * the caller falls back to a rebuild. */

/* Writes ix to path atomically (a temporary file, fsync, rename), with an
 * opaque tag the caller uses to match the snapshot to its own state.
 * The index must not change during the call (no add/remove/clear);
 * searches may run. Kinds without snapshots return INVALID_ARG.
 * Errors: INVALID_ARG, IO, NOMEM. */
int idx_snapshot_write(const idx *ix, const char *path, uint64_t tag);

/* Loads a snapshot written by idx_snapshot_write. cfg must match the
 * configuration it was written with (kind, dim, M, ef_construction, quant;
 * ef_search may differ and is taken from cfg). On success *out is a new
 * index and *tag the tag. Errors: NOT_FOUND (no file), CORRUPT (damaged,
 * truncated or foreign file: msg says what), VERSION (another format),
 * INVALID_ARG (another configuration), NOMEM. */
int idx_snapshot_read(const char *path, const idx_config *cfg, idx **out, uint64_t *tag,
                      char *msg, size_t msg_cap);

/* Calls fn for every label in ix (the caller reconciles a loaded snapshot
 * with its own entries); stops at fn's first nonzero return and returns
 * it. The index must not change during the call. Read and write may also
 * return IO (a disk error, or a missing folder on write). */
int idx_each_label(const idx *ix, int (*fn)(void *ctx, uint64_t label), void *ctx);

/* ---- exact helpers (also used by tests and the bench ground truth) --------*/

/* Exact top-k by brute force with the scalar kernel over base (n x dim,
 * row-major), labels = row numbers. Reference implementation for tests. */
void idx_bruteforce(const float *base, size_t n, uint32_t dim, const float *query,
                    uint32_t k, idx_hit *out, uint32_t *nout);

/* Exact inner-product top-k of nq queries over n base rows (both
 * row-major, dim columns), labels = row numbers: the k best of query q go
 * to out[q*k .. q*k+k), best first, equal scores lower row first; when
 * n < k the slots past n hold label UINT64_MAX and score -INFINITY. Uses
 * FAISS's exact kernel when built with FAISS, otherwise the flat index's
 * sgemm batch path (which copies base). Either may use BLAS threads.
 * Scores may differ from idx_bruteforce's in the last bits. Errors:
 * INVALID_ARG (dim 0 or > IDX_DIM_MAX, NULL pointers with counts > 0),
 * NOMEM. */
int idx_exact_topk(const float *base, size_t n, const float *queries, size_t nq,
                   uint32_t dim, uint32_t k, idx_hit *out);

/* L2-normalises v in place; returns 0 or DEJA_ERR_BAD_VECTOR for zero norm
 * or non-finite components. */
int idx_normalize(float *v, uint32_t dim);

#endif
