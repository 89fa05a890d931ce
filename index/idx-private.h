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

#include "deja-errors.h"
#include "deja-u64map.h"
#include "idx.h"

/* ---- the vtable -----------------------------------------------------------*/

struct idx_snap_params;
struct idx_snap_writer;
struct idx_snap_reader;

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
    /* May be NULL: idx_score then copies the vector with get. */
    int (*score)(const idx *ix, uint64_t label, const float *query, float *out);
    /* ef: search breadth for this call, 0 = the index's default. */
    /* src: NULL, or where an exact_external index reads f32 vectors. */
    int (*search)(const idx *ix, const float *query, uint32_t k, uint32_t ef,
                  float min_score, idx_filter_fn filter, void *filter_ctx,
                  const idx_exact_source *src, idx_hit *out, uint32_t *nout);
    /* May be NULL: idx.c then answers a batch with one search per query. */
    int (*search_batch)(const idx *ix, const float *queries, uint32_t nq, uint32_t k,
                        idx_hit *out, uint32_t *nout);
    size_t (*count)(const idx *ix);
    size_t (*memory)(const idx *ix);
    /* May be NULL: idx_memory_breakdown then reports everything as
     * other. */
    void (*memory_info)(const idx *ix, idx_memory_info *out);
    /* Nonzero: add/remove synchronise internally and may run concurrently
     * with searches and each other. */
    int concurrent_writes;
    /* Snapshots (idx-snapshot.c); all NULL for kinds without them, which
     * then answer INVALID_ARG. snapshot_params may be NULL for kinds whose
     * only parameter is the dimension. snapshot_write emits the kind's
     * payload; snapshot_read fills an index fresh from idx_create with
     * the payload, and on failure leaves it for the caller to destroy.
     * each_label stops at, and returns, the first nonzero value of fn. */
    void (*snapshot_params)(const idx *ix, struct idx_snap_params *out);
    int (*snapshot_write)(const idx *ix, struct idx_snap_writer *w);
    int (*snapshot_read)(idx *ix, struct idx_snap_reader *r);
    int (*each_label)(const idx *ix, int (*fn)(void *ctx, uint64_t label), void *ctx);
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
int idx_hnsw_create(const idx_config *cfg, idx **out);
/* Built only with HAVE_FAISS (idx-faiss.c); writes a reason to msg on
 * failure, as idx_create_msg documents. */
int idx_faiss_create(const idx_config *cfg, idx **out, char *msg, size_t msg_cap);

/* ---- snapshot streams (idx-snapshot.c) ------------------------------------*/

/* The kind's parameters a snapshot must match besides kind and dimension,
 * as the index applies them (defaults resolved); 0 where a kind has no
 * such parameter. */
typedef struct idx_snap_params {
    uint32_t M;
    uint32_t ef_construction;
    uint32_t quant;
} idx_snap_params;

/* A kind writes its payload through a writer and reads it back through a
 * reader; both keep the running XXH3-64 of the file, so kinds never see
 * the framing. Values go to disk in host byte order, which idx-snapshot.c
 * checks at compile time to be little-endian. */
typedef struct idx_snap_writer idx_snap_writer;
typedef struct idx_snap_reader idx_snap_reader;

/* Appends n bytes. Errors are sticky: after the first (IO), every put
 * returns it and writes nothing, so a kind may check only its last put. */
int idx_snap_put(idx_snap_writer *w, const void *p, size_t n);
int idx_snap_put_u32(idx_snap_writer *w, uint32_t v);
int idx_snap_put_u64(idx_snap_writer *w, uint64_t v);

/* Reads n bytes; CORRUPT (with a message) when fewer are left before
 * the checksum, IO on a read error. */
int idx_snap_get(idx_snap_reader *r, void *p, size_t n);
int idx_snap_get_u32(idx_snap_reader *r, uint32_t *v);
int idx_snap_get_u64(idx_snap_reader *r, uint64_t *v);
/* Reads count consecutive elements of elem bytes into dst[0..count), large
 * ones straight from the file into place (readv), without a copy through
 * the buffer. Errors as idx_snap_get. */
int idx_snap_get_scatter(idx_snap_reader *r, void *const *dst, size_t count, size_t elem);
/* Payload bytes not yet read: what bounds every count a kind reads before
 * it allocates for it. */
uint64_t idx_snap_left(const idx_snap_reader *r);
/* Records why the file is refused and returns CORRUPT. */
int idx_snap_bad(idx_snap_reader *r, const char *why);

/* ---- kernels --------------------------------------------------------------*/

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

/* int8 inner products (exact int32) for quantised HNSW, one file per ISA
 * like the f32 kernels; HAVE_*_INT8 / HAVE_AVX512_VNNI say which were
 * built. */
int32_t idx_dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n);
#ifdef HAVE_AVX2_INT8
int32_t idx_dot_i8_avx2(const int8_t *a, const int8_t *b, size_t n);
#endif
#ifdef HAVE_AVX512_INT8
int32_t idx_dot_i8_avx512bw(const int8_t *a, const int8_t *b, size_t n);
#endif
#ifdef HAVE_AVX512_VNNI
int32_t idx_dot_i8_vnni(const int8_t *a, const int8_t *b, size_t n);
#endif

/* The active int8 kernel; fetched once per operation like the f32 one. */
idx_dot_i8_fn idx_simd_dot_i8_fn(void);

/* ---- label -> slot map ------------------------------------------------------*/

/* Maps a label to a 32-bit slot (flat row, HNSW node id): a typed view of
 * the project's one u64 map (common/deja-u64map.h); IDX_LABELMAP_NONE
 * means "none". Not synchronised (the owner serialises writers). */
#define IDX_LABELMAP_NONE UINT32_MAX

typedef deja_u64map idx_labelmap;

static inline void idx_labelmap_init(idx_labelmap *m) {
    deja_u64map_init(m);
}
static inline void idx_labelmap_close(idx_labelmap *m) {
    deja_u64map_close(m);
}
/* Makes room for `entries` labels in all; NOMEM leaves the map as it
 * was. */
static inline int idx_labelmap_reserve(idx_labelmap *m, size_t entries) {
    return deja_u64map_reserve(m, entries);
}
/* The value of label, or IDX_LABELMAP_NONE. */
static inline uint32_t idx_labelmap_find(const idx_labelmap *m, uint64_t label) {
    uint64_t v = deja_u64map_get(m, label);
    return v == DEJA_U64MAP_NONE ? IDX_LABELMAP_NONE : (uint32_t)v;
}
/* Adds a label known to be absent, after a reserve for it (so it cannot
 * fail). */
static inline void idx_labelmap_insert(idx_labelmap *m, uint64_t label, uint32_t value) {
    (void)deja_u64map_put(m, label, value);
}
/* Changes the value of a present label (no-op if absent). */
static inline void idx_labelmap_set(idx_labelmap *m, uint64_t label, uint32_t value) {
    if (deja_u64map_get(m, label) != DEJA_U64MAP_NONE)
        (void)deja_u64map_put(m, label, value);
}
/* Removes label; 0 or NOT_FOUND. */
static inline int idx_labelmap_erase(idx_labelmap *m, uint64_t label) {
    return deja_u64map_del(m, label) == DEJA_U64MAP_NONE ? DEJA_ERR_NOT_FOUND : 0;
}
static inline size_t idx_labelmap_memory(const idx_labelmap *m) {
    return deja_u64map_memory(m);
}

/* ---- bounded top-k --------------------------------------------------------*/

/* A min-heap of at most k hits kept in caller memory (the search's output
 * array), with the worst kept hit at hits[0]. "Better" means a higher
 * score, or an equal score and a lower label, so results are
 * deterministic whatever order rows are scanned in. */
typedef struct idx_topk {
    idx_hit *hits;
    uint32_t k;
    uint32_t n;
} idx_topk;

static inline int idx_hit_better(float score_a, uint64_t label_a, float score_b,
                                 uint64_t label_b) {
    return score_a > score_b || (score_a == score_b && label_a < label_b);
}

/* Whether a hit would be kept; cheap, so callers test it before doing
 * anything expensive (such as running a filter) for the candidate. */
static inline int idx_topk_would_enter(const idx_topk *t, float score, uint64_t label) {
    if (t->n < t->k) return 1;
    return idx_hit_better(score, label, t->hits[0].score, t->hits[0].label);
}

/* Adds a hit that idx_topk_would_enter() accepted, evicting the worst. */
void idx_topk_push(idx_topk *t, float score, uint64_t label);

/* Sorts the kept hits best first, in place; the heap is spent after it. */
void idx_topk_sort(idx_topk *t);

#endif
