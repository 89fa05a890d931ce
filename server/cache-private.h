/* cache-private.h: the structures shared by the cache engine's files
 * (cache.c: namespaces and entries; cache-indexer.c: the threads that move
 * fresh entries into the graph). Not a public API. */
#ifndef DEJA_CACHE_PRIVATE_H
#define DEJA_CACHE_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache.h"
#include "idx.h"
#include "u64map.h"

typedef struct cache_indexer cache_indexer;

/* Write-time dedup scans the staging index exactly while it holds at most
 * this many entries, and otherwise the this many most recently staged
 * (docs/PROTOCOL.md 5.10): about a millisecond per STORE at 1536-d. */
#define CACHE_DEDUP_WINDOW 2048

/* An entry's heap part: what lookups, TTL and eviction need. Its prompt
 * and response are in the store only (cache.h, cache_entry_id). */
struct cache_entry {
    atomic_uint refs;
    uint32_t ns_id;
    uint64_t id;
    uint64_t created_ms;
    _Atomic uint64_t expires_ms; /* 0 = never; sliding TTL moves it */
    uint32_t ttl_s;              /* as stored, for sliding extension */
    uint32_t input_tokens;
    uint32_t output_tokens;
    uint64_t cost_micro_usd;
    atomic_uint hits;
    _Atomic uint64_t last_hit_ms;
    _Atomic uint8_t lfu; /* Redis-style logarithmic counter */
    uint8_t completion;
    uint64_t prompt_hash[2]; /* XXH3-128 of the normalised prompt */
    uint32_t prompt_len;
    uint32_t response_len;
};

/* Evictions, by reason (STATS keys evicted_ttl, evicted_lfu, ...). */
enum cache_reason {
    CACHE_EVICT_TTL = 0,
    CACHE_EVICT_LFU = 1,
    CACHE_EVICT_DELETE = 2,
    CACHE_EVICT_DROP = 3,
    CACHE_EVICT_REASONS = 4,
};

/* The similarity histogram's buckets (PROTOCOL.md 5.17): below 0.50,
 * 0.50..0.99 by hundredths, and (misses only) no entry to compare with. */
#define CACHE_SIM_LT50 0u
#define CACHE_SIM_NONE 51u
#define CACHE_SIM_BUCKETS 52u

typedef struct cache_ns_counters {
    atomic_uint_fast64_t lookups, exact_hits, semantic_hits, misses;
    atomic_uint_fast64_t coalesced, borderline_hits;
    atomic_uint_fast64_t shadow_hits, shadow_exact_hits, shadow_borderline_hits;
    atomic_uint_fast64_t sim[2][CACHE_SIM_BUCKETS]; /* [0] hits, [1] misses */
    atomic_uint_fast64_t sim_sum_micro[2]; /* sums of those similarities, x 1e6 */
    atomic_uint_fast64_t stores, dedup_updates, rejected;
    atomic_uint_fast64_t evicted[CACHE_EVICT_REASONS];
    atomic_uint_fast64_t tokens_saved, cost_saved_micro_usd;
    atomic_uint_fast64_t entry_hits; /* sum of the live entries' hit counts */
} cache_ns_counters;

typedef struct cache_ns {
    char name[CACHE_MAX_NS_LEN + 1];
    uint8_t name_len;
    uint32_t dim;
    uint32_t ns_id; /* key prefix of its entries on disk */
    uint64_t created_ms;
    atomic_int persisted;    /* its record is on disk */
    atomic_int snapshotting; /* its graph is being written (set under lock) */
    int dropped;             /* NS_DROP: empty, out of the table (under lock) */
    /* The configuration as requested (0 = server default), and the
     * effective values derived from it at creation. */
    cache_ns_config config;
    /* config with every default resolved against the server's (EXPLICIT
     * set; cache-ns.c resolve_config): what NS_INFO reports and what
     * NS_CREATE compares, so two requests that mean the same are the same. */
    cache_ns_config resolved;
    /* Quarantined at start (cache_load_ns): its record could not be turned
     * into a working namespace. Such a namespace sits in the graveyard,
     * never in the table, with no index; its entries stay on disk unread;
     * its name answers DEJA_ERR_QUARANTINED until NS_DROP removes it. */
    int quarantined;
    char quarantine_reason[256];
    /* Atomic: SIGHUP may change them (cache_set_policy) for namespaces
     * that follow the server's defaults. */
    _Atomic float min_threshold;
    _Atomic float dedup; /* 0 = off */
    /* The serving policy (NS_POLICY; cache_ns_policy): mirrored from
     * config.shadow and config.gray_band, read by every lookup. */
    atomic_int shadow;
    _Atomic float gray_band;
    /* main is an int8 graph without f32 copies: its searches and gets go
     * through a scope on cache->cfg.vectors (cache_vec_scope). */
    int main_external;
    uint32_t default_ttl_s;
    /* lock guards entries, exact, entry_bytes, fresh, and main when main
     * is not concurrent. A concurrent main (HNSW) is searched and extended
     * under the read lock (it synchronises itself); cleared, and pruned of
     * deleted labels, under the write lock. */
    pthread_rwlock_t lock;
    idx *main;      /* the namespace's index (HNSW by default) */
    idx *fresh;     /* exact index of entries not yet in main; NULL when main
                     * takes inserts directly (flat) */
    u64map entries; /* entry id -> cache_entry* (the table's reference) */
    u64map exact;   /* low 64 bits of the prompt hash -> cache_entry* (weak) */
    /* The ids of the last CACHE_DEDUP_WINDOW entries put into `fresh`, a
     * ring (under lock; recent_count counts every put): write-time dedup
     * compares a STORE with these when `fresh` holds more (cache.c). */
    uint64_t recent[CACHE_DEDUP_WINDOW];
    uint64_t recent_count;
    u64map snap_labels; /* at start only: labels of an adopted snapshot */
    /* A periodic snapshot writes a staged namespace's graph without its
     * lock (cache-snapshot.c): nothing else changes main meanwhile. The
     * writer holds snap_mu for the whole write (FLUSH and NS_DROP take it
     * before the lock, and so wait), and removals from main made while
     * `snapshotting` is set are queued in snap_removed (under lock) for
     * the writer to apply when it is done. */
    pthread_mutex_t snap_mu;
    uint64_t *snap_removed;
    size_t snap_removed_n, snap_removed_cap;
    size_t entry_bytes;
    size_t sweep_pos; /* where the TTL sweeper goes on (under lock) */
    /* Memory charged to the namespace for budgets: entry blobs plus an
     * index share per entry (the index's bytes over its entries, refreshed
     * as it grows, so chunked allocation is spread over the entries it
     * holds). Under lock; mirrored into cache->mem_total. */
    size_t index_share;
    size_t mem_charged;
    cache_ns_counters n;
} cache_ns;

struct cache {
    cache_config cfg;
    /* The part of cfg that SIGHUP may change (cache_set_policy). */
    _Atomic float default_floor, default_dedup;
    atomic_uint_fast64_t budget_memory, budget_entries;
    pthread_rwlock_t ns_lock; /* guards ns, ns_count, ns_cap, graveyard */
    cache_ns **ns;
    size_t ns_count, ns_cap;
    /* Dropped namespaces, kept (empty) until cache_destroy: a lookup that
     * found one before the drop may still take its lock. Quarantined
     * namespaces (cache_ns.quarantined) live here too, since they are out
     * of the table from the start. */
    cache_ns **graveyard;
    size_t graveyard_count, graveyard_cap;
    atomic_size_t
        sweep_ns; /* next namespace the sweeper visits (sweeper; reset by drops) */
    atomic_uint_fast64_t next_id;
    atomic_uint_fast32_t next_ns_id;
    atomic_uint_fast64_t rejected;
    atomic_uint_fast64_t evicted[CACHE_EVICT_REASONS]; /* of dropped namespaces */
    atomic_size_t mem_total;            /* sum of the namespaces' mem_charged */
    atomic_size_t snapshot_entries;     /* graph entries restored at start */
    atomic_uint_fast64_t changes;       /* entries added or removed, ever */
    uint64_t changes_at_snapshot;       /* snapshot writer only */
    atomic_uint_fast64_t graph_inserts; /* moves into a graph, ever */
    atomic_uint_fast64_t graph_inserts_at_snapshot; /* at the last one written */
    atomic_size_t entries_total;
    atomic_size_t quarantined; /* namespaces quarantined and not dropped */
    cache_clock_fn clock;
    void *clock_ctx;
    cache_indexer *indexer;
};

/* ---- shared inside the cache (cache.c, cache-ns.c, cache-sweep.c) -------- */

static inline uint64_t cache_now(const cache *c) {
    return c->clock(c->clock_ctx);
}

void cache_entry_unref(cache_entry *e);
size_t cache_entry_size(const cache_entry *e);

/* Finds a namespace by name (NULL if none). The pointer stays valid until
 * cache_destroy, even if the namespace is dropped meanwhile. */
cache_ns *cache_find_ns(cache *c, const uint8_t *name, uint8_t len);

/* Finds or creates; a new one takes cfg (NULL = defaults with dim). */
int cache_get_or_create_ns(cache *c, const uint8_t *name, uint8_t len, uint32_t dim,
                           const cache_ns_config *cfg, uint32_t ns_id, int persisted,
                           cache_ns **out);

void cache_ns_free(cache_ns *ns);

/* Removes entry e (found in ns->entries) from the table, the exact map and
 * the indexes; the caller holds ns->lock for writing and drops the
 * table's reference afterwards. */
void cache_ns_unlink_locked(cache *c, cache_ns *ns, cache_entry *e);

/* Empties a namespace, for FLUSH and NS_DROP alike: under its write lock
 * every entry leaves the id table, the exact-prompt keys and both indexes,
 * and the dedup ring, the sweeper's cursor, the hit counter and the memory
 * charged start over. With drop set the namespace is also marked dropped
 * under that lock, so a STORE that found it earlier cannot publish into
 * it. Returns how many entries it held (the caller counts them). */
uint64_t cache_ns_empty(cache *c, cache_ns *ns, int drop);
/* Recomputes ns->mem_charged after a change and moves cache->mem_total
 * and entries_total by the difference. ns->lock held for writing. */
void cache_ns_charge_locked(cache *c, cache_ns *ns, int refresh_share);

/* A read scope on the vector source for one operation on a namespace,
 * inert for namespaces whose index keeps its own vectors. Opened before
 * ns->lock is taken (the lock order is: the store's map, then the
 * namespace), closed after it is released. */
typedef struct cache_vec_scope {
    const cache *c;
    void *scope; /* NULL: inert */
    uint32_t ns_id, dim;
    idx_exact_source src;
} cache_vec_scope;

/* Opens s for ns. Errors: NOMEM (the source could not open a scope). */
int cache_vec_scope_begin(const cache *c, const cache_ns *ns, cache_vec_scope *s);
void cache_vec_scope_end(cache_vec_scope *s);

/* The source for idx_search_src: NULL when s is inert. */
static inline const idx_exact_source *cache_vec_src(const cache_vec_scope *s) {
    return s->scope ? &s->src : NULL;
}

/* Copies the stored vector of id (from the staging index, main, or the
 * source through s). ns->lock held. Errors: NOT_FOUND. */
int cache_vector_of_locked(cache_ns *ns, const cache_vec_scope *s, uint64_t id,
                           float *out);

/* ---- eviction (cache-evict.c) --------------------------------------------- */

/* The LFU counter of e, decayed for the time since its last hit. */
uint8_t cache_lfu_value(const cache_entry *e, uint64_t now_ms);

/* Counts a hit in e's LFU counter (logarithmic, after decay). */
void cache_lfu_touch(cache_entry *e, uint64_t now_ms);

#define CACHE_LFU_INIT 5

/* Evicts from ns (and, for the server-wide budget, from namespaces without
 * a budget of their own) until the budgets hold, at most a bounded number
 * of entries per call. No lock held. */
void cache_enforce_budgets(cache *c, cache_ns *ns);

/* The index configuration a namespace's main index is built with. */
void cache_ns_index_config(const cache *c, const cache_ns *ns, idx_config *out);

/* Fills what persistence needs of a namespace. */
void cache_ns_record(const cache_ns *ns, cache_ns_image *rec);

/* ---- the indexer (cache-indexer.c) ----------------------------------------
 * A STORE must not wait for a graph insertion (1-2 ms of CPU for a 1536-d
 * vector at ef_construction 200), so a published entry goes first into its
 * namespace's exact `fresh` index, which lookups search along with the
 * graph, and indexer threads move it into the graph in the background. */

int cache_indexer_start(cache *c, unsigned threads, cache_indexer **out);

/* Finishes nothing: drops the queue and joins the threads. Entries still
 * in `fresh` stay searchable there. */
void cache_indexer_stop(cache_indexer *ix);

/* Queues entry id of ns for the graph; loaded: read from disk at start
 * (the restart backlog, which cache_indexer_wait_below does not count). */
void cache_indexer_push(cache_indexer *ix, cache_ns *ns, uint64_t id, int loaded);

/* Entries queued or being moved. */
size_t cache_indexer_backlog(cache_indexer *ix);

/* Blocks until the queue is empty and no move is in progress (tests,
 * benchmarks, shutdown). */
void cache_indexer_wait_idle(cache_indexer *ix);

/* Stops moves (waiting for those in progress) until resume: the graphs do
 * not change in between (snapshots). */
void cache_indexer_pause(cache_indexer *ix);
void cache_indexer_resume(cache_indexer *ix);

/* Blocks until at most limit entries published since start wait for the
 * graph (queued or being moved). */
void cache_indexer_wait_below(cache_indexer *ix, size_t limit);

/* The STATS key of histogram bucket b of hits (outcome 0) or misses (1). */
const char *cache_sim_key(int outcome, unsigned bucket);

#endif
