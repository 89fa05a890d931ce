/* idx-hnsw-private.h: what the three HNSW files share -- the index struct,
 * the node layout and its accessors, the search context, and the
 * prototypes that cross files:
 *
 *   idx-hnsw-store.c  chunked node storage, slot reuse, epochs, the
 *                     search-context pool and memory accounting;
 *   idx-hnsw-graph.c  scoring, layer search, neighbour selection, linking,
 *                     and the sweep (delete repair, rescue of unreachable
 *                     nodes);
 *   idx-hnsw.c        the idx_ops (add, remove, search, ...), the entry
 *                     point, int8 quantisation, and the concurrency design
 *                     written out at its top;
 *   idx-hnsw-snapshot.c  the graph written to a file and read back.
 *
 * Node ids are 32-bit slot numbers. A node's storage is split across
 * per-chunk arrays so the search's hot data stays dense:
 *
 *   row     the level-0 block, row_bytes per node, 64-byte aligned:
 *           [vector: f32[dim] or int8[dim], padded to 64 bytes]
 *           [f32 scale (int8 only)][u32 version][u32 count][u32 links[M0]]
 *   exact   int8 indexes only, unless exact_external: the f32 vector,
 *           for re-ranking and get
 *   label   u64 per node
 *   upper   pointer per node to its links of levels 1..level, allocated
 *           separately: level x [u32 count][u32 links[M]]
 *   state   u8 per node (hnsw_state), read by every search step
 *   level   u8 per node
 *
 * Fields marked "atomic" are only accessed with __atomic builtins. */
#ifndef DEJA_IDX_HNSW_PRIVATE_H
#define DEJA_IDX_HNSW_PRIVATE_H

#include <pthread.h>
#include <stdint.h>

#include "idx-private.h"

#define HNSW_NONE UINT32_MAX
#define HNSW_ENTRY_NONE UINT64_MAX
#define HNSW_MAX_LEVEL 24
/* Largest M accepted (level 0 then holds 2 * HNSW_M_MAX links); bounds
 * the stack buffers of the graph code. */
#define HNSW_M_MAX 64

/* Offsets inside a row's header, from hdr_off. */
#define HNSW_HDR_SCALE 0
#define HNSW_HDR_VERSION 4
#define HNSW_HDR_LIST 8 /* [count][links...] */

/* Node states. Only FREE may not be read: a search checks the state
 * before it touches a node's vector, and skips FREE nodes. */
enum hnsw_state {
    HNSW_FREE = 0,      /* never used, or removed and waiting for reuse */
    HNSW_LIVE = 1,      /* searchable and returned by searches */
    HNSW_INSERTING = 2, /* being linked in: traversed, never returned */
    HNSW_DELETED = 3,   /* being unlinked: traversed, never returned */
};

typedef struct hnsw_pair {
    float score;
    uint32_t id;
} hnsw_pair;

/* A growable array of pairs in a search context. */
typedef struct hnsw_pairs {
    hnsw_pair *at;
    uint32_t n;
    uint32_t cap;
} hnsw_pairs;

/* A search context: one per concurrent operation, taken from a pool. It
 * announces the epoch its holder entered in (slot reuse waits for it) and
 * carries the holder's scratch memory, so a search allocates nothing in
 * the steady state. */
typedef struct hnsw_ctx {
    uint64_t active;       /* atomic: epoch entered in, 0 when idle */
    int busy;              /* atomic: claimed by an operation */
    struct hnsw_ctx *next; /* pool list; fixed once published */
    /* Visited marks, tagged by search: visited[id] == tag. */
    uint16_t *visited;
    uint32_t visited_cap;
    uint16_t tag;
    hnsw_pairs cand;   /* candidates to expand (max-heap) */
    hnsw_pairs res;    /* best found (min-heap) */
    hnsw_pairs work;   /* neighbour selection input */
    uint32_t *ids;     /* link snapshots and selections */
    const char **rows; /* rows of the neighbours being scored */
    uint32_t ids_cap;
    void *query;    /* the query as the rows store it (f32 or int8
                       codes), 64-byte aligned: vec_bytes */
    float *scratch; /* exact_external: dim floats a source may fill */
    size_t bytes;   /* scratch bytes, for idx_memory */
} hnsw_ctx;

/* The chunk table: chunk[i] holds nodes [i << shift, (i + 1) << shift).
 * Entries are atomic. A full table is replaced by a copy twice its size;
 * the old one is kept (readers may hold it) until clear or destroy. */
typedef struct hnsw_table {
    uint32_t cap;
    struct hnsw_table *retired_next;
    char *chunk[];
} hnsw_table;

/* A removed node on its way to reuse (see idx-hnsw.c). */
typedef struct hnsw_limbo {
    uint64_t epoch; /* freed: reusable once every context is newer */
    uint32_t id;
    uint32_t pass; /* pending: the sweep pass running when it was removed */
} hnsw_limbo;

typedef struct hnsw {
    struct idx base;
    /* configuration */
    uint32_t M, M0, ef_construction, ef_search;
    enum idx_quant quant;
    double level_mult;
    uint64_t rng; /* atomic: splitmix64 counter for levels */
    uint32_t initial_capacity;
    /* layout */
    uint32_t vec_bytes; /* traversal vector region of a row */
    uint32_t hdr_off;
    uint32_t row_bytes;
    uint32_t exact_stride; /* floats per exact row (int8, own copies), else 0 */
    int exact_external;    /* int8 re-rank reads f32 through a source */
    uint32_t chunk_shift, chunk_mask;
    size_t off_exact, off_label, off_upper, off_state, off_level;
    size_t chunk_bytes;
    /* storage; table is atomic */
    hnsw_table *table;
    hnsw_table *retired;
    pthread_mutex_t alloc_lock; /* guards everything down to sweep_pass */
    uint32_t nchunks;           /* atomic reads, written under the lock */
    uint32_t next_fresh;        /* first never-used slot */
    /* Ring of removed nodes, oldest first: limbo_freed FREE slots waiting
     * for their grace period, then limbo_pending DELETED nodes waiting
     * for the sweep (limbo_pending is read atomically without the lock). */
    hnsw_limbo *limbo;
    uint32_t limbo_cap, limbo_head, limbo_freed, limbo_pending;
    uint32_t limbo_reserved;
    uint32_t sweep_pass; /* number of the running sweep pass */
    /* Marks of the running sweep pass, one byte per slot of
     * [0, sweep_marks_len): HNSW_MARK_REACHED once the pass's walk of
     * level 0 has found the node, HNSW_MARK_NEW when its slot was reused
     * during the pass. The bytes are atomic; the arrays and the length
     * change only under both sweep_lock and alloc_lock, so the sweep reads
     * them under sweep_lock and an allocation under alloc_lock. */
    uint8_t *sweep_marks;
    uint32_t *sweep_queue; /* the walk's queue: found, not yet visited */
    uint32_t sweep_marks_len, sweep_marks_cap;
    /* The sweep: one thread at a time walks level 0 from the entry point,
     * repairing lists that link to DELETED nodes, then scans the slots
     * for live nodes the walk did not reach (sweep_cursor). */
    pthread_mutex_t sweep_lock;
    int sweep_running;
    uint32_t sweep_cursor, sweep_end, sweep_qhead, sweep_qtail;
    /* the graph's entry point: atomic (level << 32 | id) or NONE */
    uint64_t entry;
    pthread_mutex_t entry_lock;
    /* epochs and contexts (atomic) */
    uint64_t epoch;
    hnsw_ctx *ctx_head;
    /* labels */
    pthread_rwlock_t map_lock;
    idx_labelmap map;
    /* counters (atomic) */
    size_t live;
    size_t upper_bytes;
    size_t ctx_bytes;
} hnsw;

/* ---- node accessors ---------------------------------------------------------*/

static inline char *hnsw_chunk(const hnsw *h, uint32_t id) {
    hnsw_table *t = __atomic_load_n(&((hnsw *)h)->table, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&t->chunk[id >> h->chunk_shift], __ATOMIC_ACQUIRE);
}

static inline uint32_t hnsw_slot(const hnsw *h, uint32_t id) {
    return id & h->chunk_mask;
}

static inline char *hnsw_row(const hnsw *h, const char *chunk, uint32_t slot) {
    return (char *)chunk + (size_t)slot * h->row_bytes;
}

/* seq_cst, which is free on x86 and ARMv8 loads: the reuse protocol in
 * idx-hnsw.c relies on the total order of state stores and epochs. */
static inline uint8_t hnsw_state_at(const hnsw *h, const char *chunk, uint32_t slot) {
    return __atomic_load_n((uint8_t *)(chunk + h->off_state) + slot, __ATOMIC_SEQ_CST);
}

static inline void hnsw_state_set(const hnsw *h, uint32_t id, uint8_t st) {
    char *chunk = hnsw_chunk(h, id);
    __atomic_store_n((uint8_t *)(chunk + h->off_state) + hnsw_slot(h, id), st,
                     __ATOMIC_SEQ_CST);
}

static inline uint8_t hnsw_state(const hnsw *h, uint32_t id) {
    return hnsw_state_at(h, hnsw_chunk(h, id), hnsw_slot(h, id));
}

static inline uint8_t *hnsw_level_ptr(const hnsw *h, uint32_t id) {
    return (uint8_t *)(hnsw_chunk(h, id) + h->off_level) + hnsw_slot(h, id);
}

static inline uint64_t *hnsw_label_ptr(const hnsw *h, uint32_t id) {
    return (uint64_t *)(hnsw_chunk(h, id) + h->off_label) + hnsw_slot(h, id);
}

static inline uint32_t **hnsw_upper_ptr(const hnsw *h, uint32_t id) {
    return (uint32_t **)(hnsw_chunk(h, id) + h->off_upper) + hnsw_slot(h, id);
}

static inline float *hnsw_exact_ptr(const hnsw *h, uint32_t id) {
    return (float *)(hnsw_chunk(h, id) + h->off_exact) +
           (size_t)hnsw_slot(h, id) * h->exact_stride;
}

static inline uint32_t *hnsw_version_ptr(const hnsw *h, const char *row) {
    return (uint32_t *)(row + h->hdr_off + HNSW_HDR_VERSION);
}

static inline float hnsw_row_scale(const hnsw *h, const char *row) {
    return *(const float *)(row + h->hdr_off + HNSW_HDR_SCALE);
}

/* The link list ([count][links]) of node id at level, or NULL when the
 * node has no such level. */
static inline uint32_t *hnsw_list(const hnsw *h, uint32_t id, int level) {
    char *chunk = hnsw_chunk(h, id);
    uint32_t slot = hnsw_slot(h, id);
    if (level == 0)
        return (uint32_t *)(hnsw_row(h, chunk, slot) + h->hdr_off + HNSW_HDR_LIST);
    if (((uint8_t *)(chunk + h->off_level))[slot] < level) return NULL;
    uint32_t *upper = ((uint32_t **)(chunk + h->off_upper))[slot];
    return upper + (size_t)(level - 1) * (h->M + 1);
}

static inline uint32_t hnsw_cap(const hnsw *h, int level) {
    return level == 0 ? h->M0 : h->M;
}

/* An entry point whose node is readable. A remover replaces the entry
 * point before it frees the node, so a reload after seeing FREE finds the
 * replacement. */
static inline uint64_t hnsw_entry_load(const hnsw *h) {
    for (;;) {
        uint64_t e = __atomic_load_n(&((hnsw *)h)->entry, __ATOMIC_SEQ_CST);
        if (e == HNSW_ENTRY_NONE || hnsw_state(h, (uint32_t)e) != HNSW_FREE) return e;
    }
}

/* Copies up to cap links of list into out. The list may change while it
 * is read; every id read is one some writer stored, so it names a node
 * whose state the caller checks before using it. */
static inline uint32_t hnsw_list_read(const uint32_t *list, uint32_t cap, uint32_t *out) {
    uint32_t n = __atomic_load_n(&list[0], __ATOMIC_ACQUIRE);
    if (n > cap) n = cap;
    for (uint32_t i = 0; i < n; i++)
        out[i] = __atomic_load_n(&list[1 + i], __ATOMIC_ACQUIRE);
    return n;
}

/* ---- idx-hnsw-store.c -------------------------------------------------------*/

/* Computes the layout from cfg; 0 or INVALID_ARG. */
int hnsw_layout_init(hnsw *h, const idx_config *cfg);
/* Frees every chunk, table, upper array, context and limbo entry. */
void hnsw_storage_free(hnsw *h);
/* Allocates chunks up to n slots (initial capacity). NOMEM. */
int hnsw_storage_reserve(hnsw *h, uint32_t n);
/* A slot for a new node: the oldest removed slot whose grace period is
 * over, else a fresh one. The slot's state is FREE. NOMEM. */
int hnsw_slot_alloc(hnsw *h, uint32_t *id);
/* Returns an allocated slot that never became visible (FREE). */
void hnsw_slot_unalloc(hnsw *h, uint32_t id);
/* Reserves one limbo entry for a coming hnsw_slot_remove. NOMEM. */
int hnsw_limbo_reserve(hnsw *h);
void hnsw_limbo_unreserve(hnsw *h);
/* Queues a node just marked DELETED for freeing once a full sweep pass
 * has run after it. Uses a reservation. */
void hnsw_slot_remove(hnsw *h, uint32_t id);
/* Called by the sweep when a pass ends: frees the nodes removed before
 * the pass began (FREE, then an epoch for their grace period). */
void hnsw_sweep_pass_done(hnsw *h);
/* Sweep marks (see struct hnsw). */
#define HNSW_MARK_REACHED 1u
#define HNSW_MARK_NEW 2u
/* Called by the sweep (under sweep_lock) when a pass begins: sizes the
 * marks and the queue to n slots, marks all clear. NOMEM, which leaves
 * none (the pass then repairs slot by slot and rescues nothing). */
int hnsw_sweep_marks_reset(hnsw *h, uint32_t n);
/* (Re)allocates the upper link array of id for level; NOMEM. */
int hnsw_upper_alloc(hnsw *h, uint32_t id, int level);
/* Slots allocated so far (fresh high-water mark). */
uint32_t hnsw_slots_used(const hnsw *h);

hnsw_ctx *hnsw_ctx_enter(hnsw *h);
void hnsw_ctx_leave(hnsw_ctx *c);
/* Makes room in c for a search of breadth ef (and insert scratch);
 * NOMEM. */
int hnsw_ctx_reserve(hnsw *h, hnsw_ctx *c, uint32_t ef);
/* Starts a new visited set covering every slot allocated so far. */
int hnsw_visited_begin(hnsw *h, hnsw_ctx *c);
/* Grows the visited marks to cover id; NOMEM. */
int hnsw_visited_grow(hnsw *h, hnsw_ctx *c, uint32_t id);
int hnsw_pairs_reserve(hnsw *h, hnsw_ctx *c, hnsw_pairs *p, uint32_t n);

size_t hnsw_memory(const hnsw *h);
void hnsw_memory_split(const hnsw *h, idx_memory_info *out);

/* ---- idx-hnsw-graph.c -------------------------------------------------------*/

/* What a search scores against: the f32 query, or int8 codes and their
 * scale. */
typedef struct hnsw_query {
    const void *vec;
    float scale;
} hnsw_query;

/* Which nodes a layer search may put into its results. */
typedef struct hnsw_accept {
    int build; /* 1: LIVE or INSERTING except self; 0: LIVE only */
    uint32_t self;
    idx_filter_fn filter;
    void *filter_ctx;
    const hnsw *h;
} hnsw_accept;

float hnsw_score_row(const hnsw *h, const hnsw_query *q, const char *row);
/* Greedy descent from *cur through levels top..bottom+1 (ef = 1), never
 * onto node skip (an inserted node, which would find itself). */
void hnsw_greedy(const hnsw *h, const hnsw_query *q, uint32_t *cur, float *cur_score,
                 int top, int bottom, uint32_t skip);
/* Best-first search of one level from start; leaves at most ef accepted
 * nodes in c->res (a min-heap) and returns how many. */
uint32_t hnsw_search_layer(const hnsw *h, hnsw_ctx *c, const hnsw_query *q,
                           uint32_t start, float start_score, int level, uint32_t ef,
                           const hnsw_accept *acc);
/* Sorts pairs best first (higher score, then lower id). */
void hnsw_pairs_sort(hnsw_pair *p, uint32_t n);
/* Empties the result heap of the last layer search (n entries) into out,
 * best first. */
void hnsw_res_drain(hnsw_ctx *c, uint32_t n, hnsw_pair *out);
/* Links node id (INSERTING, level `level`) into the graph from entry
 * point e: on each of its levels up to e's, M neighbours chosen by the
 * heuristic, and id added to their lists. */
void hnsw_connect(hnsw *h, hnsw_ctx *c, uint32_t id, int level, uint64_t e);
/* Advances the sweep by up to budget node visits (if nodes are waiting
 * for it and no other thread is sweeping), re-connecting at most one live
 * node that its walk of level 0 did not reach (idx-hnsw.c, REMOVAL). */
void hnsw_sweep(hnsw *h, hnsw_ctx *c, uint32_t budget);

/* ---- idx-hnsw-snapshot.c ----------------------------------------------------*/

/* The snapshot ops of idx_ops (see idx-private.h). */
void hnsw_snapshot_params(const idx *ix, idx_snap_params *out);
int hnsw_snapshot_write(const idx *ix, idx_snap_writer *w);
int hnsw_snapshot_read(idx *ix, idx_snap_reader *r);
int hnsw_each_label(const idx *ix, int (*fn)(void *ctx, uint64_t label), void *ctx);

#endif
