/* idx-hnsw-store.c: where HNSW nodes live and how their slots are reused.
 *
 *  - Nodes are stored in fixed-size chunks that never move: a search may
 *    hold a pointer into a chunk while another thread adds nodes. The
 *    chunk table doubles when full; the old table stays readable until
 *    clear or destroy (the tables sum to less than twice the last one).
 *  - A removed node waits in a FIFO limbo, first until the sweep has
 *    unlinked it, then, FREE and tagged with an epoch, until every
 *    operation that might still read it has finished (epoch-based
 *    reclamation; the argument is at the top of idx-hnsw.c); then its
 *    slot is handed out again.
 *  - Search contexts (epoch announcement plus scratch: visited marks,
 *    heaps, buffers) come from a lock-free pool that only grows, so
 *    concurrent searches never wait for one another.
 *  - Every allocation is counted, so idx_memory is exact. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* LeakSanitizer does not scan memory mapped outside malloc: mapped chunks
 * hold the only pointers to the nodes' upper link arrays, so under it they
 * are registered as root regions. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HNSW_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(HNSW_LSAN)
#define HNSW_LSAN 1
#endif
#ifdef HNSW_LSAN
#include <sanitizer/lsan_interface.h>
#define lsan_root_add(p, n) __lsan_register_root_region((p), (n))
#define lsan_root_del(p, n) __lsan_unregister_root_region((p), (n))
#else
#define lsan_root_add(p, n) ((void)0)
#define lsan_root_del(p, n) ((void)0)
#endif

#include "idx-hnsw-private.h"

#define HNSW_ALIGN 64u
/* A chunk aims at this many bytes: large enough that the chunk table
 * stays small, small enough that an index of a few entries does not hold
 * megabytes. */
#define HNSW_CHUNK_TARGET (256u << 10)
#define HNSW_CHUNK_MIN_SHIFT 4u  /* 16 nodes */
#define HNSW_CHUNK_MAX_SHIFT 12u /* 4096 nodes */
#define HNSW_TABLE_MIN 16u
/* Chunks at least this big are mapped and populated by the kernel in one
 * call (zeroed, so no memset): a graph read back from a snapshot or grown
 * by a million inserts would otherwise take one page fault per 4 KiB as
 * it is first written, which on a virtual machine costs more than the
 * write. Smaller chunks (small dims, small indexes) come from malloc. */
#define HNSW_CHUNK_MAP_MIN (64u << 10)

static size_t round_up(size_t n, size_t to) {
    return (n + to - 1) / to * to;
}

int hnsw_layout_init(hnsw *h, const idx_config *cfg) {
    uint32_t dim = cfg->dim;
    if (h->quant == IDX_QUANT_INT8) {
        h->vec_bytes = (uint32_t)round_up(dim, HNSW_ALIGN);
        h->exact_stride =
            h->exact_external ? 0 : (uint32_t)round_up(dim, HNSW_ALIGN / sizeof(float));
    } else {
        h->vec_bytes = (uint32_t)round_up((size_t)dim * sizeof(float), HNSW_ALIGN);
        h->exact_stride = 0;
    }
    h->hdr_off = h->vec_bytes;
    size_t row = h->hdr_off + HNSW_HDR_LIST + (1 + (size_t)h->M0) * 4;
    h->row_bytes = (uint32_t)round_up(row, HNSW_ALIGN);

    size_t per_node = h->row_bytes + (size_t)h->exact_stride * sizeof(float) +
                      sizeof(uint64_t) + sizeof(uint32_t *) + 2;
    uint32_t shift = HNSW_CHUNK_MIN_SHIFT;
    while (shift < HNSW_CHUNK_MAX_SHIFT &&
           ((size_t)2 << shift) * per_node <= HNSW_CHUNK_TARGET)
        shift++;
    h->chunk_shift = shift;
    h->chunk_mask = (1u << shift) - 1;

    /* Chunk layout: rows, exact vectors, labels, upper pointers, states,
     * levels; each region 64-byte aligned. */
    size_t nodes = (size_t)1 << shift;
    size_t off = nodes * h->row_bytes;
    h->off_exact = off;
    off = round_up(off + nodes * h->exact_stride * sizeof(float), HNSW_ALIGN);
    h->off_label = off;
    off = round_up(off + nodes * sizeof(uint64_t), HNSW_ALIGN);
    h->off_upper = off;
    off = round_up(off + nodes * sizeof(uint32_t *), HNSW_ALIGN);
    h->off_state = off;
    off = round_up(off + nodes, HNSW_ALIGN);
    h->off_level = off;
    h->chunk_bytes = round_up(off + nodes, HNSW_ALIGN);
    return 0;
}

uint32_t hnsw_slots_used(const hnsw *h) {
    return __atomic_load_n(&h->next_fresh, __ATOMIC_ACQUIRE);
}

/* ---- chunks -----------------------------------------------------------------*/

static size_t table_bytes(uint32_t cap) {
    return sizeof(hnsw_table) + (size_t)cap * sizeof(char *);
}

/* Adds one chunk, growing the table if it is full. Caller holds
 * alloc_lock. */
static int chunk_add_locked(hnsw *h) {
    uint32_t index = h->nchunks;
    if (((uint64_t)index + 1) << h->chunk_shift > (uint64_t)HNSW_NONE)
        return DEJA_ERR_NOMEM;
    hnsw_table *t = h->table;
    if (!t || index == t->cap) {
        uint32_t cap = t ? t->cap * 2 : HNSW_TABLE_MIN;
        hnsw_table *grown = calloc(1, table_bytes(cap));
        if (!grown) return DEJA_ERR_NOMEM;
        grown->cap = cap;
        for (uint32_t i = 0; i < index; i++)
            grown->chunk[i] = t->chunk[i];
        if (t) {
            t->retired_next = h->retired;
            h->retired = t;
        }
        __atomic_store_n(&h->table, grown, __ATOMIC_RELEASE);
        t = grown;
    }
    /* Zero: states FREE, link counts 0, versions even. */
    char *chunk;
    if (h->chunk_bytes >= HNSW_CHUNK_MAP_MIN) {
        void *m = mmap(NULL, h->chunk_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (m == MAP_FAILED) return DEJA_ERR_NOMEM;
        chunk = m;
        lsan_root_add(chunk, h->chunk_bytes);
    } else {
        chunk = aligned_alloc(HNSW_ALIGN, h->chunk_bytes);
        if (!chunk) return DEJA_ERR_NOMEM;
        memset(chunk, 0, h->chunk_bytes);
    }
    __atomic_store_n(&t->chunk[index], chunk, __ATOMIC_RELEASE);
    __atomic_store_n(&h->nchunks, index + 1, __ATOMIC_RELEASE);
    return 0;
}

int hnsw_storage_reserve(hnsw *h, uint32_t n) {
    int rc = 0;
    pthread_mutex_lock(&h->alloc_lock);
    while (rc == 0 && ((uint64_t)h->nchunks << h->chunk_shift) < n)
        rc = chunk_add_locked(h);
    pthread_mutex_unlock(&h->alloc_lock);
    return rc;
}

void hnsw_storage_free(hnsw *h) {
    hnsw_table *t = h->table;
    for (uint32_t i = 0; t && i < h->nchunks; i++) {
        char *chunk = t->chunk[i];
        uint32_t **upper = (uint32_t **)(chunk + h->off_upper);
        for (uint32_t s = 0; s <= h->chunk_mask; s++)
            if (upper[s]) free(upper[s] - 1);
        if (h->chunk_bytes >= HNSW_CHUNK_MAP_MIN) {
            lsan_root_del(chunk, h->chunk_bytes);
            munmap(chunk, h->chunk_bytes);
        } else
            free(chunk);
    }
    free(t);
    while (h->retired) {
        hnsw_table *next = h->retired->retired_next;
        free(h->retired);
        h->retired = next;
    }
    hnsw_ctx *c = h->ctx_head;
    while (c) {
        hnsw_ctx *next = c->next;
        free(c->visited);
        free(c->cand.at);
        free(c->res.at);
        free(c->work.at);
        free(c->ids);
        free(c->rows);
        free(c->query);
        free(c->scratch);
        free(c);
        c = next;
    }
    free(h->limbo);
    free(h->sweep_marks);
    free(h->sweep_queue);
    h->sweep_marks = NULL;
    h->sweep_queue = NULL;
    h->sweep_marks_len = h->sweep_marks_cap = 0;
    h->sweep_running = 0;
    h->sweep_qhead = h->sweep_qtail = 0;
    h->table = NULL;
    h->ctx_head = NULL;
    h->limbo = NULL;
    h->nchunks = h->next_fresh = 0;
    h->limbo_cap = h->limbo_head = h->limbo_freed = h->limbo_pending = 0;
    h->limbo_reserved = 0;
    h->sweep_cursor = h->sweep_end = 0;
    h->upper_bytes = h->ctx_bytes = 0;
}

/* ---- slots ------------------------------------------------------------------*/

/* The oldest epoch any context is in, or UINT64_MAX when none is active.
 * seq_cst loads: see the reuse argument in idx-hnsw.c. */
static uint64_t oldest_active_epoch(const hnsw *h) {
    uint64_t oldest = UINT64_MAX;
    for (hnsw_ctx *c = __atomic_load_n(&((hnsw *)h)->ctx_head, __ATOMIC_ACQUIRE); c;
         c = c->next) {
        uint64_t e = __atomic_load_n(&c->active, __ATOMIC_SEQ_CST);
        if (e != 0 && e < oldest) oldest = e;
    }
    return oldest;
}

int hnsw_slot_alloc(hnsw *h, uint32_t *id) {
    int rc = 0;
    pthread_mutex_lock(&h->alloc_lock);
    if (h->limbo_freed > 0) {
        hnsw_limbo *head = &h->limbo[h->limbo_head];
        /* Freed in epoch E (the counter then went to E + 1): safe when
         * every active context entered after that, in an epoch > E. */
        if (head->epoch < oldest_active_epoch(h)) {
            *id = head->id;
            /* Linked after the sweep may have walked the lists that will
             * hold it: the pass must not take it for unreachable. */
            if (*id < h->sweep_marks_len)
                __atomic_fetch_or(&h->sweep_marks[*id], HNSW_MARK_NEW, __ATOMIC_RELAXED);
            h->limbo_head = (h->limbo_head + 1) % h->limbo_cap;
            h->limbo_freed--;
            pthread_mutex_unlock(&h->alloc_lock);
            return 0;
        }
    }
    if (h->next_fresh == HNSW_NONE) {
        rc = DEJA_ERR_NOMEM;
    } else if (((uint64_t)h->nchunks << h->chunk_shift) <= h->next_fresh) {
        rc = chunk_add_locked(h);
    }
    if (rc == 0) {
        *id = h->next_fresh;
        __atomic_store_n(&h->next_fresh, h->next_fresh + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&h->alloc_lock);
    return rc;
}

/* A slot that never became visible can go straight back: at the front of
 * the limbo with epoch 0, so the next allocation takes it. */
void hnsw_slot_unalloc(hnsw *h, uint32_t id) {
    if (hnsw_limbo_reserve(h) != 0) return; /* leaked until clear */
    pthread_mutex_lock(&h->alloc_lock);
    h->limbo_head = (h->limbo_head + h->limbo_cap - 1) % h->limbo_cap;
    h->limbo[h->limbo_head].epoch = 0;
    h->limbo[h->limbo_head].id = id;
    h->limbo_freed++;
    h->limbo_reserved--;
    pthread_mutex_unlock(&h->alloc_lock);
}

int hnsw_limbo_reserve(hnsw *h) {
    int rc = 0;
    pthread_mutex_lock(&h->alloc_lock);
    uint32_t len = h->limbo_freed + h->limbo_pending;
    uint32_t need = len + h->limbo_reserved + 1;
    if (need > h->limbo_cap) {
        uint32_t cap = h->limbo_cap ? h->limbo_cap * 2 : 64;
        hnsw_limbo *ring = malloc((size_t)cap * sizeof *ring);
        if (!ring) {
            rc = DEJA_ERR_NOMEM;
        } else {
            /* Unroll the ring so the oldest entry is at 0. */
            for (uint32_t i = 0; i < len; i++)
                ring[i] = h->limbo[(h->limbo_head + i) % h->limbo_cap];
            free(h->limbo);
            h->limbo = ring;
            h->limbo_cap = cap;
            h->limbo_head = 0;
        }
    }
    if (rc == 0) h->limbo_reserved++;
    pthread_mutex_unlock(&h->alloc_lock);
    return rc;
}

void hnsw_limbo_unreserve(hnsw *h) {
    pthread_mutex_lock(&h->alloc_lock);
    h->limbo_reserved--;
    pthread_mutex_unlock(&h->alloc_lock);
}

void hnsw_slot_remove(hnsw *h, uint32_t id) {
    pthread_mutex_lock(&h->alloc_lock);
    uint32_t len = h->limbo_freed + h->limbo_pending;
    hnsw_limbo *e = &h->limbo[(h->limbo_head + len) % h->limbo_cap];
    e->id = id;
    e->pass = h->sweep_pass;
    e->epoch = 0;
    __atomic_store_n(&h->limbo_pending, h->limbo_pending + 1, __ATOMIC_RELAXED);
    h->limbo_reserved--;
    pthread_mutex_unlock(&h->alloc_lock);
}

void hnsw_sweep_pass_done(hnsw *h) {
    pthread_mutex_lock(&h->alloc_lock);
    uint32_t done = h->sweep_pass, freed = 0;
    /* Pending entries are in removal order, so their passes ascend. A node
     * removed before pass `done` began has had every list scanned since:
     * nothing links to it any more. */
    while (freed < h->limbo_pending) {
        uint32_t at = (h->limbo_head + h->limbo_freed + freed) % h->limbo_cap;
        if (h->limbo[at].pass >= done) break;
        hnsw_state_set(h, h->limbo[at].id, HNSW_FREE);
        freed++;
    }
    if (freed > 0) {
        /* After the FREE stores: a context that reads the new epoch sees
         * them. */
        uint64_t epoch = __atomic_fetch_add(&h->epoch, 1, __ATOMIC_SEQ_CST);
        for (uint32_t i = 0; i < freed; i++)
            h->limbo[(h->limbo_head + h->limbo_freed + i) % h->limbo_cap].epoch = epoch;
        h->limbo_freed += freed;
        __atomic_store_n(&h->limbo_pending, h->limbo_pending - freed, __ATOMIC_RELAXED);
    }
    h->sweep_pass = done + 1;
    pthread_mutex_unlock(&h->alloc_lock);
}

int hnsw_sweep_marks_reset(hnsw *h, uint32_t n) {
    int rc = 0;
    pthread_mutex_lock(&h->alloc_lock);
    if (n > h->sweep_marks_cap) {
        uint64_t twice = (uint64_t)h->sweep_marks_cap * 2;
        uint32_t cap = twice > n && twice <= UINT32_MAX ? (uint32_t)twice : n;
        uint8_t *marks = realloc(h->sweep_marks, cap);
        if (marks) h->sweep_marks = marks;
        uint32_t *queue = realloc(h->sweep_queue, (size_t)cap * sizeof *queue);
        if (queue) h->sweep_queue = queue;
        if (marks && queue)
            h->sweep_marks_cap = cap;
        else
            rc = DEJA_ERR_NOMEM;
    }
    /* Under the lock: an allocation may be marking a reused slot. */
    h->sweep_marks_len = rc == 0 ? n : 0;
    if (h->sweep_marks_len) memset(h->sweep_marks, 0, h->sweep_marks_len);
    pthread_mutex_unlock(&h->alloc_lock);
    return rc;
}

int hnsw_upper_alloc(hnsw *h, uint32_t id, int level) {
    uint32_t **slot = hnsw_upper_ptr(h, id);
    size_t bytes = (size_t)level * (h->M + 1) * sizeof(uint32_t);
    /* The slot's previous upper array (a reused slot) is past its grace
     * period like the slot itself. */
    if (*slot) {
        size_t old = (size_t)((*slot)[-1]);
        free(*slot - 1);
        __atomic_fetch_sub(&h->upper_bytes, old, __ATOMIC_RELAXED);
        *slot = NULL;
    }
    if (level == 0) return 0;
    /* One extra word in front records the size for accounting. */
    uint32_t *p = calloc(1, bytes + sizeof(uint32_t));
    if (!p) return DEJA_ERR_NOMEM;
    p[0] = (uint32_t)(bytes + sizeof(uint32_t));
    *slot = p + 1;
    __atomic_fetch_add(&h->upper_bytes, bytes + sizeof(uint32_t), __ATOMIC_RELAXED);
    return 0;
}

/* ---- contexts ---------------------------------------------------------------*/

hnsw_ctx *hnsw_ctx_enter(hnsw *h) {
    hnsw_ctx *c;
    for (c = __atomic_load_n(&h->ctx_head, __ATOMIC_ACQUIRE); c; c = c->next) {
        int idle = 0;
        if (!__atomic_load_n(&c->busy, __ATOMIC_RELAXED) &&
            __atomic_compare_exchange_n(&c->busy, &idle, 1, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            break;
    }
    if (!c) {
        c = aligned_alloc(HNSW_ALIGN, round_up(sizeof *c, HNSW_ALIGN));
        if (!c) return NULL;
        memset(c, 0, sizeof *c);
        c->busy = 1;
        c->bytes = round_up(sizeof *c, HNSW_ALIGN);
        __atomic_fetch_add(&h->ctx_bytes, c->bytes, __ATOMIC_RELAXED);
        hnsw_ctx *head = __atomic_load_n(&h->ctx_head, __ATOMIC_RELAXED);
        do {
            c->next = head;
        } while (!__atomic_compare_exchange_n(&h->ctx_head, &head, c, 1, __ATOMIC_RELEASE,
                                              __ATOMIC_RELAXED));
    }
    /* Announce the epoch before reading any node: a slot retired before
     * this load is reusable only after this context leaves. */
    uint64_t e = __atomic_load_n(&h->epoch, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->active, e, __ATOMIC_SEQ_CST);
    return c;
}

void hnsw_ctx_leave(hnsw_ctx *c) {
    __atomic_store_n(&c->active, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->busy, 0, __ATOMIC_RELEASE);
}

static void ctx_account(hnsw *h, hnsw_ctx *c, size_t old_bytes, size_t new_bytes) {
    c->bytes += new_bytes - old_bytes;
    __atomic_fetch_add(&h->ctx_bytes, new_bytes - old_bytes, __ATOMIC_RELAXED);
}

int hnsw_pairs_reserve(hnsw *h, hnsw_ctx *c, hnsw_pairs *p, uint32_t n) {
    if (n <= p->cap) return 0;
    uint32_t cap = p->cap ? p->cap : 64;
    while (cap < n)
        cap *= 2;
    hnsw_pair *at = realloc(p->at, (size_t)cap * sizeof *at);
    if (!at) return DEJA_ERR_NOMEM;
    ctx_account(h, c, (size_t)p->cap * sizeof *at, (size_t)cap * sizeof *at);
    p->at = at;
    p->cap = cap;
    return 0;
}

int hnsw_ctx_reserve(hnsw *h, hnsw_ctx *c, uint32_t ef) {
    uint32_t ids = 4 * h->M0 + 16;
    if (c->ids_cap < ids) {
        uint32_t *p = realloc(c->ids, (size_t)ids * sizeof *p);
        if (!p) return DEJA_ERR_NOMEM;
        c->ids = p;
        const char **rows = realloc(c->rows, (size_t)ids * sizeof *rows);
        if (!rows) return DEJA_ERR_NOMEM;
        c->rows = rows;
        ctx_account(h, c, (size_t)c->ids_cap * (sizeof *p + sizeof *rows),
                    (size_t)ids * (sizeof *p + sizeof *rows));
        c->ids_cap = ids;
    }
    if (!c->query) {
        size_t bytes = h->vec_bytes;
        c->query = aligned_alloc(HNSW_ALIGN, bytes);
        if (!c->query) return DEJA_ERR_NOMEM;
        ctx_account(h, c, 0, bytes);
    }
    if (h->exact_external && !c->scratch) {
        size_t bytes = (size_t)h->base.dim * sizeof(float);
        c->scratch = malloc(bytes);
        if (!c->scratch) return DEJA_ERR_NOMEM;
        ctx_account(h, c, 0, bytes);
    }
    uint32_t work = ef > 2 * h->M0 + 1 ? ef : 2 * h->M0 + 1;
    int rc = hnsw_pairs_reserve(h, c, &c->res, ef + 1);
    if (rc == 0) rc = hnsw_pairs_reserve(h, c, &c->cand, ef + 1);
    if (rc == 0) rc = hnsw_pairs_reserve(h, c, &c->work, work);
    if (rc == 0) rc = hnsw_visited_begin(h, c);
    return rc;
}

int hnsw_visited_grow(hnsw *h, hnsw_ctx *c, uint32_t id) {
    uint32_t want = (uint32_t)((uint64_t)__atomic_load_n(&h->nchunks, __ATOMIC_ACQUIRE)
                               << h->chunk_shift);
    if (want <= id) want = id + 1;
    if (want <= c->visited_cap) return 0;
    uint16_t *v = realloc(c->visited, (size_t)want * sizeof *v);
    if (!v) return DEJA_ERR_NOMEM;
    memset(v + c->visited_cap, 0, (size_t)(want - c->visited_cap) * sizeof *v);
    ctx_account(h, c, (size_t)c->visited_cap * sizeof *v, (size_t)want * sizeof *v);
    c->visited = v;
    c->visited_cap = want;
    return 0;
}

int hnsw_visited_begin(hnsw *h, hnsw_ctx *c) {
    /* Tag 0 never marks a node, so a wrap clears the marks once per
     * 65,535 searches instead of once per search. */
    if (++c->tag == 0) {
        if (c->visited) memset(c->visited, 0, (size_t)c->visited_cap * sizeof(uint16_t));
        c->tag = 1;
    }
    /* On failure the marks still cover the slots they did; a search then
     * skips the nodes beyond them. */
    uint32_t used = hnsw_slots_used(h);
    if (used > c->visited_cap) return hnsw_visited_grow(h, c, used - 1);
    return 0;
}

/* ---- memory -----------------------------------------------------------------*/

static size_t tables_bytes(const hnsw *h) {
    size_t bytes = h->table ? table_bytes(h->table->cap) : 0;
    for (const hnsw_table *t = h->retired; t; t = t->retired_next)
        bytes += table_bytes(t->cap);
    return bytes;
}

void hnsw_memory_split(const hnsw *h, idx_memory_info *out) {
    hnsw *w = (hnsw *)h;
    pthread_mutex_lock(&w->alloc_lock);
    size_t slots = (size_t)h->nchunks << h->chunk_shift;
    size_t chunks = (size_t)h->nchunks * h->chunk_bytes;
    size_t fixed = sizeof *h + tables_bytes(h) +
                   (size_t)h->limbo_cap * sizeof(hnsw_limbo) +
                   (size_t)h->sweep_marks_cap * (1 + sizeof(uint32_t));
    pthread_mutex_unlock(&w->alloc_lock);

    pthread_rwlock_rdlock(&w->map_lock);
    size_t map = idx_labelmap_memory(&h->map);
    pthread_rwlock_unlock(&w->map_lock);

    /* An int8 row's scale belongs with its codes. */
    size_t vec = h->vec_bytes + (h->quant == IDX_QUANT_INT8 ? 4 : 0);
    out->vectors = slots * vec;
    out->exact = slots * h->exact_stride * sizeof(float);
    out->graph =
        slots * (h->row_bytes - vec) + __atomic_load_n(&h->upper_bytes, __ATOMIC_RELAXED);
    out->other = (chunks - slots * h->row_bytes - out->exact) + fixed + map +
                 __atomic_load_n(&h->ctx_bytes, __ATOMIC_RELAXED);
}

size_t hnsw_memory(const hnsw *h) {
    idx_memory_info m;
    hnsw_memory_split(h, &m);
    return m.vectors + m.exact + m.graph + m.other;
}
