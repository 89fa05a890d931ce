/* cache.h: the cache engine -- namespaces, entries and their indexes.
 *
 * A namespace is a hard partition: its own dimension (fixed by its first
 * STORE), its own index and its own entry table. Lookups search exactly one
 * namespace, so no similarity can ever cross namespaces.
 *
 * Entries are immutable, reference-counted blobs (response and prompt
 * bytes). A lookup takes a reference to each hit under the namespace's read
 * lock and releases the lock before the reply is encoded, so encoding and
 * network I/O never hold a lock; deleting an entry only drops the table's
 * reference.
 *
 * Threading: every function may be called from any I/O thread. Lock order:
 * cache->ns_lock (namespace table) before ns->lock (one namespace); never
 * two namespace locks at once. */
#ifndef DEJA_CACHE_H
#define DEJA_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "deja-errors.h"
#include "idx.h"

/* The engine speaks its own types, not the wire's (proto.h) nor the
 * disk's (store.h): the server maps requests onto them (srv-ops.c) and
 * builds disk records from them (srv-persist.c), so a new protocol or a new
 * record layout never reaches the engine, and the engine is usable without
 * either. Limits match the protocol's v1 limits; srv-ops.c checks that they
 * hold every value the wire can carry. */
#define CACHE_MAX_DIM 4096u
#define CACHE_MAX_NS_LEN 255u
#define CACHE_MAX_K 256u
#define CACHE_MAX_FACTORY 255u

/* How the call that produced a response ended. Only OK is cached, except
 * in a namespace created with CACHE_NS_ALLOW_NON_OK. */
enum cache_completion {
    CACHE_COMPLETION_OK = 0,
    CACHE_COMPLETION_ERROR = 1,
    CACHE_COMPLETION_TRUNCATED = 2,
    CACHE_COMPLETION_FILTERED = 3,
};

/* One STORE: an entry for namespace ns (created with the server's defaults
 * on first use, its dim fixed then). Pointers are borrowed for the call. */
typedef struct cache_store_args {
    const uint8_t *ns;
    uint8_t ns_len;
    uint32_t dim;
    enum cache_completion completion;
    uint32_t ttl_s; /* 0 = the namespace's default */
    uint32_t input_tokens;
    uint32_t output_tokens;
    uint64_t cost_micro_usd; /* what producing the response cost */
    const uint8_t *prompt;   /* may be NULL when prompt_len is 0 */
    uint32_t prompt_len;
    const uint8_t *response;
    uint32_t response_len;
} cache_store_args;

/* One lookup: the k (1..CACHE_MAX_K) best live entries of ns at least
 * threshold similar; ef is a search breadth hint (0 = the namespace's);
 * prompt, when given, is tried on the exact tier first. */
typedef struct cache_query {
    const uint8_t *ns;
    uint8_t ns_len;
    uint32_t dim;
    uint32_t k;
    float threshold;
    uint32_t ef;
    const uint8_t *prompt;
    uint32_t prompt_len;
    /* A miss is not counted now: the caller counts how the request ends
     * (cache_count_outcome), since a lease may still answer it. */
    int defer_miss;
} cache_query;

enum cache_index_kind {
    CACHE_INDEX_DEFAULT = 0, /* the server's --index */
    CACHE_INDEX_FLAT = 1,
    CACHE_INDEX_HNSW = 2,
    CACHE_INDEX_FAISS = 3,
};

enum cache_ttl_mode {
    CACHE_TTL_ABSOLUTE = 0,
    CACHE_TTL_SLIDING = 1, /* each hit extends the entry's life by its TTL */
};

#define CACHE_NS_ALLOW_NON_OK 0x01u /* cache non-ok completions too */
#define CACHE_NS_NO_DEDUP 0x02u     /* never merge near-identical STOREs */
/* quant, min_threshold, dedup and default_ttl_s are literal values, 0
 * included, instead of "0 = the server's default". */
#define CACHE_NS_EXPLICIT 0x04u
#define CACHE_NS_FLAGS_DEFINED 0x07u

/* A namespace's configuration. Every field but dim may be 0, meaning the
 * server's default (but see CACHE_NS_EXPLICIT). Plain data: copy it. */
typedef struct cache_ns_config {
    uint32_t dim; /* 1..CACHE_MAX_DIM */
    enum cache_index_kind index_kind;
    enum idx_quant quant;
    uint32_t hnsw_m;
    uint32_t hnsw_ef_construction;
    uint32_t hnsw_ef_search;
    enum cache_ttl_mode ttl_mode;
    uint32_t flags;      /* CACHE_NS_* */
    float min_threshold; /* lookup threshold floor, in [-1, 1] */
    float dedup;         /* write-time dedup similarity, in [0, 1] */
    uint32_t default_ttl_s;
    uint32_t max_age_s;        /* sliding TTL: longest total life; 0 = none */
    uint64_t max_bytes;        /* memory budget; 0 = none */
    uint64_t max_entries;      /* 0 = none */
    uint8_t faiss_factory_len; /* only for CACHE_INDEX_FAISS */
    char faiss_factory[CACHE_MAX_FACTORY + 1]; /* NUL-terminated */
    /* The serving policy: changed by cache_ns_policy, persisted with the
     * configuration, but not part of what NS_CREATE sets or compares. */
    int shadow;      /* lookups compute their hits and serve none */
    float gray_band; /* hits below it are borderline; 0 = no band */
} cache_ns_config;

/* A namespace's serving policy (docs/PROTOCOL.md 5.14, 5.16). */
typedef struct cache_policy {
    int shadow;
    float gray_band; /* 0, or in (0, 1] */
} cache_policy;

/* Checks what a configuration read from anywhere must satisfy: dim in
 * range, known kinds and modes, no undefined flag, finite thresholds in
 * range, a factory string exactly for FAISS. 0 or DEJA_ERR_INVALID_ARG,
 * with the reason in msg[0..msg_cap) (msg may be NULL). Any thread. */
int cache_ns_config_check(const cache_ns_config *cfg, char *msg, size_t msg_cap);

/* What persistence needs of a namespace: its identity and its
 * configuration as requested (0 fields = server defaults). */
typedef struct cache_ns_image {
    uint32_t ns_id;
    uint32_t dim;
    uint64_t created_ms;
    uint8_t name_len;
    char name[CACHE_MAX_NS_LEN + 1]; /* NUL-terminated */
    cache_ns_config config;
} cache_ns_image;

/* What persistence needs of an entry. Pointers are borrowed: valid as long
 * as the object that handed the image out (see each function). */
typedef struct cache_entry_image {
    uint32_t ns_id;
    uint64_t id;
    uint64_t created_ms;
    uint64_t expires_ms; /* 0 = never */
    uint32_t input_tokens;
    uint32_t output_tokens;
    uint64_t cost_micro_usd;
    const uint8_t *prompt;
    uint32_t prompt_len;
    const uint8_t *response;
    uint32_t response_len;
    const float *vector; /* dim floats */
    uint32_t dim;
    /* Usage, read at load only (0 = none recorded). */
    uint32_t hits;
    uint8_t lfu;
    uint64_t last_hit_ms;
} cache_entry_image;

/* What changes on every hit of an entry, written back on clean shutdown. */
typedef struct cache_usage {
    uint32_t ns_id;
    uint64_t id;
    uint32_t hits;
    uint8_t lfu;
    uint64_t last_hit_ms;
    uint64_t expires_ms;
} cache_usage;

/* Room for every counter cache_stats and cache_ns_info may fill: about 50
 * named ones and the similarity histogram's 104 buckets. */
#define CACHE_STATS_MAX 200u

/* One counter of cache_stats: key is a static string ("entries"). */
typedef struct cache_stat {
    const char *key;
    uint64_t value;
} cache_stat;

typedef struct cache cache;

/* A source of stored vectors. begin opens a read scope for one operation
 * on the calling thread (NULL if it cannot: the operation fails with
 * NOMEM) and end closes it; vector returns the f32 vector of entry id of
 * namespace ns_id (dim floats, float-aligned, possibly in scratch[dim]),
 * valid until end, or NULL when there is none (deleted, or stored after
 * the scope began: the caller treats it as gone). The cache opens a scope
 * before it takes any lock of its own and never two on one thread. */
typedef struct cache_vector_source {
    void *(*begin)(void *ctx);
    const float *(*vector)(void *scope, uint32_t ns_id, uint64_t id, uint32_t dim,
                           float *scratch);
    void (*end)(void *scope);
    void *ctx;
} cache_vector_source;

typedef struct cache_config {
    uint32_t default_ttl_s;        /* applied to STOREs with ttl 0 */
    enum idx_kind index_kind;      /* for new namespaces; 0 = HNSW */
    uint32_t hnsw_m;               /* 0 = index default (16) */
    uint32_t hnsw_ef_construction; /* 0 = 200 */
    uint32_t hnsw_ef_search;       /* 0 = 64 */
    enum idx_quant quant;
    unsigned indexer_threads; /* 0 = 1 */
    float min_threshold;      /* default lookup threshold floor */
    float dedup;              /* default write-time dedup similarity; 0 = off */
    uint64_t max_memory;      /* server-wide budget in bytes; 0 = none */
    uint64_t max_entries;     /* server-wide entry cap; 0 = none */
    int allow_faiss;          /* FAISS index kinds may be created */
    uint64_t max_namespaces;  /* STORE / NS_CREATE of more get STORAGE_FULL; 0 = none */
    /* Called (from the thread that sweeps or evicts, with no cache lock
     * held) for every entry removed by the cache itself (TTL, LFU), so the
     * server can delete it from disk too. May be NULL. Budgets are
     * enforced by the thread that publishes a STORE. */
    void (*on_evict)(void *ctx, uint32_t ns_id, uint64_t id);
    void *evict_ctx;
    /* Where int8 graphs read the f32 vectors of their exact re-rank (the
     * server's store: the vectors are on disk anyway), so that they keep
     * codes and links only. NULL vector: int8 graphs keep f32 copies. */
    cache_vector_source vectors;
} cache_config;

/* An entry as a lookup returns it: valid until cache_entry_release. */
typedef struct cache_entry cache_entry;

typedef struct cache_match {
    cache_entry *entry;
    float similarity;
    int exact;      /* found by the exact (prompt) tier (docs/PROTOCOL.md 5.10) */
    int borderline; /* a vector hit below the namespace's gray band */
} cache_match;

/* What cache_search found besides its matches. */
typedef struct cache_result {
    uint16_t count;  /* matches filled */
    int shadow;      /* the namespace is in shadow mode: they are would-be
                      * hits, to be answered as a miss (already counted so) */
    float threshold; /* the effective threshold: max(request, floor) */
    int have_best;   /* the search saw a candidate at least 0.5 similar */
    float best;      /* its similarity */
} cache_result;

/* How a lookup whose miss was deferred (cache_query.defer_miss) ended. */
enum cache_outcome {
    CACHE_OUTCOME_MISS = 0,
    CACHE_OUTCOME_COALESCED = 1, /* answered by another caller's lease */
};

/* Milliseconds on the cache's clock (CLOCK_REALTIME by default, so that
 * expiry times stay meaningful across restarts). */
typedef uint64_t (*cache_clock_fn)(void *ctx);

int cache_create(const cache_config *cfg, cache **out);
void cache_destroy(cache *c);

/* Replaces the clock (tests drive time with it). Call before any traffic. */
void cache_set_clock(cache *c, cache_clock_fn fn, void *ctx);

/* ---- stores, in two steps --------------------------------------------------
 * A STORE is prepared (validated, given an id, copied), made durable by the
 * commit thread, and only then published (visible to lookups). Deletes and
 * flushes act on memory at once and are made durable after. */

typedef struct cache_pending cache_pending;

/* Prepares an entry from a STORE whose vector was normalised into vec
 * (req->dim floats, copied). Creates the namespace on first use, fixing
 * its dim. Errors: REJECTED (completion != ok), DIM_MISMATCH, QUARANTINED,
 * STORAGE_FULL (--max-namespaces), NOMEM. */
int cache_prepare_store(cache *c, const cache_store_args *req, const float *vec,
                        cache_pending **out);

/* What to persist of a prepared entry and of its namespace, valid until
 * publish or discard. *ns_persisted tells whether the namespace is on
 * disk already. */
const cache_entry_image *cache_pending_entry(const cache_pending *p);
const cache_ns_image *cache_pending_ns(const cache_pending *p, int *ns_persisted);

/* Marks the pending entry's namespace record as durable. Commit thread. */
void cache_pending_ns_persisted(cache_pending *p);

/* Makes the entry visible and frees p. Errors: NOMEM (p is discarded). */
int cache_publish(cache *c, cache_pending *p, uint64_t *id_out);

/* Drops a prepared entry that will not be published. */
void cache_discard(cache_pending *p);

/* Prepare + publish in one step, for callers without persistence (tests). */
int cache_store(cache *c, const cache_store_args *req, const float *vec,
                uint64_t *id_out);

/* ---- loading at start ---------------------------------------------------- */

/* Recreates a namespace (marked persisted) from what was persisted of it.
 * One that cannot become a working namespace -- its configuration fails
 * cache_ns_config_check or names another dim, its id is taken, or its
 * index refuses to build (a FAISS kind on a server without allow_faiss, a
 * factory string outside the grammar of idx.h) -- is quarantined instead
 * and DEJA_ERR_QUARANTINED returned: it is out of service,
 * cache_load_entry answers NOT_FOUND for its entries (which stay on disk),
 * and its name answers QUARANTINED (cache_ns_quarantined gives the reason)
 * until NS_DROP. Errors: QUARANTINED, NOMEM. Start-up thread only. */
int cache_load_ns(cache *c, const cache_ns_image *ns);

/* Quarantines a namespace whose configuration could not even be read
 * (ns->config is ignored) for the reason why, as cache_load_ns does for
 * one that cannot work. Returns QUARANTINED, or NOMEM. Start-up only. */
int cache_load_ns_quarantined(cache *c, const cache_ns_image *ns, const char *why);

/* If the namespace name is quarantined, returns DEJA_ERR_QUARANTINED and
 * writes "namespace 'NAME' is quarantined: REASON" to msg[0..msg_cap)
 * (msg may be NULL when msg_cap is 0); otherwise returns 0 and leaves msg
 * alone. cache_prepare_store, cache_ns_create, cache_ns_info and
 * cache_stats already answer QUARANTINED for such a name; callers that
 * want the reason in their error reply call this. Any thread. */
int cache_ns_quarantined(cache *c, const uint8_t *name, uint8_t len, char *msg,
                         size_t msg_cap);

/* Whether loading entry id of namespace ns_id needs its vector: not when
 * an adopted graph snapshot already holds it (cache_snapshot_adopt), so a
 * restart with snapshots reads no vectors. Start-up thread only. */
int cache_load_wants_vector(cache *c, uint32_t ns_id, uint64_t id);

/* Adds a stored entry (its namespace loaded first). e->vector may be NULL
 * only where cache_load_wants_vector said 0. Errors: NOT_FOUND (unknown
 * ns_id), DIM_MISMATCH, CORRUPT (vector NULL but wanted), NOMEM. */
int cache_load_entry(cache *c, const cache_entry_image *e);

/* Blocks until every published entry has reached its namespace's graph
 * (tests, benchmarks). */
void cache_wait_indexed(cache *c);

/* Blocks until at most limit entries published since start wait for the
 * graph (the commit thread's backpressure when STOREs outpace graph
 * insertion). Entries loaded at start that the graph lacks (no snapshot,
 * or one older than they are) do not count: they are searchable already,
 * and STOREs must not stall while the graph catches up after a crash. */
void cache_wait_unindexed_below(cache *c, size_t limit);

/* Calls fn for the usage (hits, LFU counter, last hit, expiry) of every
 * entry that has been hit, namespace by namespace, under each namespace's
 * read lock; for writing it back on a clean shutdown. Stops at the first
 * nonzero return and returns it. */
int cache_each_usage(cache *c, int (*fn)(void *ctx, const cache_usage *u), void *ctx);

/* ---- graph snapshots (cache-snapshot.c) ----------------------------------- */

/* At start, after cache_load_ns and before cache_load_entry: every
 * namespace adopts DIR/snapshots/ns-<id>.idx if it reads back with its
 * configuration. *adopted receives the number of graph entries restored;
 * msg says why a snapshot was not used (the graph is then rebuilt). */
int cache_snapshot_adopt(cache *c, const char *dir, char *msg, size_t msg_cap,
                         size_t *adopted);

/* After the entries are loaded: removes from the graphs the snapshot
 * labels that have no entry (deleted after the snapshot). */
void cache_snapshot_reconcile(cache *c, size_t *removed);

/* After cache_snapshot_reconcile, when every loaded entry came from an
 * adopted snapshot and none was removed: the graphs are their files on
 * disk, so a shutdown with no change since need not write them again. */
void cache_snapshot_loaded_current(cache *c);

/* Writes every namespace's graph, unless no entry was added, removed or
 * moved into a graph since the last snapshot written (or adopted whole,
 * cache_snapshot_loaded_current). final: on a clean shutdown, with no
 * traffic left (stops the indexer threads for good). Otherwise a periodic
 * snapshot during traffic: moves into the graphs pause while a namespace
 * is written, and its removals queue until it is written; lookups and
 * publishes go on. Errors: IO (msg says which file). */
int cache_snapshot_write(cache *c, const char *dir, uint64_t tag, int final,
                         size_t *written, char *msg, size_t msg_cap);

/* Entries moved into the graphs since the start of the last snapshot
 * written: the graph inserts a crash now would make the next start redo
 * (beside what still waits in the staging indexes). */
uint64_t cache_graph_inserts_since_snapshot(cache *c);

/* Continues id sequences after the largest loaded ids. */
void cache_set_next_ids(cache *c, uint64_t next_entry_id, uint32_t next_ns_id);

/* Finds up to req->k live entries with similarity >= req->threshold.
 * matches[0..CACHE_MAX_K) receives them best first with a reference held
 * on each; *count their number. An unknown namespace is a miss. An exact-
 * tier hit (same non-empty normalised prompt, cosine >= the namespace's
 * floor, whatever req->threshold) is the only match, with exact set.
 * Errors: DIM_MISMATCH, NOMEM. */
int cache_lookup(cache *c, const cache_query *req, const float *vec, cache_match *matches,
                 uint16_t *count);

/* cache_lookup with everything it learnt: matches as cache_lookup (in a
 * namespace in shadow mode, the would-be matches, with res->shadow set:
 * the caller serves none of them; they are counted as a miss), and in
 * res the effective threshold (the server's default floor for an unknown
 * namespace) and the best candidate's similarity. Every lookup of a known
 * namespace is counted, and goes into its similarity histogram (exact-tier
 * hits excepted), unless req->defer_miss leaves a miss for
 * cache_count_outcome. Errors: DIM_MISMATCH, QUARANTINED, NOMEM. */
int cache_search(cache *c, const cache_query *req, const float *vec, cache_match *matches,
                 cache_result *res);

/* Counts how a deferred miss ended (a lookup of namespace name). Any
 * thread; nothing for a namespace that does not exist. */
void cache_count_outcome(cache *c, const uint8_t *name, uint8_t len,
                         enum cache_outcome outcome);

/* Reads (set NULL; rec may be NULL) or changes a namespace's serving
 * policy; *out receives it after the call. When set changes it, *changed is
 * 1 and *rec holds the namespace's record to persist. Errors: NOT_FOUND, QUARANTINED,
 * INVALID_ARG (a band outside (0, 1] and not 0). */
int cache_ns_policy(cache *c, const uint8_t *name, uint8_t len, const cache_policy *set,
                    cache_policy *out, int *changed, cache_ns_image *rec);

/* A reference to a prepared entry (released with cache_entry_release),
 * valid after the entry is published or discarded: what a lease's waiters
 * are answered with. */
cache_entry *cache_pending_ref(cache_pending *p);

/* Takes one more reference to an entry held by a reference; returns e. */
cache_entry *cache_entry_ref(cache_entry *e);

/* Drops a reference taken by cache_lookup. */
void cache_entry_release(cache_entry *e);

/* Read-only views of an entry held by a reference. The engine keeps no
 * prompt or response bytes: they are in the store (entries are published
 * only once durable), read by (ns_id, id) when a reply is encoded. */
uint64_t cache_entry_id(const cache_entry *e);
uint32_t cache_entry_ns_id(const cache_entry *e);

/* ---- namespaces ---------------------------------------------------------- */

/* Creates a namespace with cfg (0 fields = server defaults, except the
 * literal ones under CACHE_NS_EXPLICIT). *created is 1 when it is new, and
 * *rec then holds what to persist (mark it with cache_ns_persisted once
 * durable); 0 when it already existed with the same configuration, that
 * is, one that resolves to the same values on this server.
 * Errors: EXISTS (another configuration), INVALID_ARG (an index the
 * configuration cannot build, a FAISS kind while allow_faiss is off, a
 * factory string outside idx.h's grammar; msg says why), QUARANTINED (msg
 * says why), NOMEM. */
int cache_ns_create(cache *c, const uint8_t *name, uint8_t len,
                    const cache_ns_config *cfg, cache_ns_image *rec, int *created,
                    char *msg, size_t msg_cap);

/* Marks a namespace record as durable. */
void cache_ns_persisted(cache *c, uint32_t ns_id);

/* Drops a namespace and all its entries; *removed receives their number
 * and *rec its identity, to delete it from disk. Errors: NOT_FOUND. */
int cache_ns_drop(cache *c, const uint8_t *name, uint8_t len, uint64_t *removed,
                  cache_ns_image *rec);

/* Copies up to max namespace names (NUL-terminated) into names. */
int cache_ns_list(cache *c, char (*names)[CACHE_MAX_NS_LEN + 1], uint8_t *lens,
                  uint16_t max, uint16_t *count);

/* The configuration (resolved: every default filled in, CACHE_NS_EXPLICIT
 * set) and the counters of one namespace. Errors: NOT_FOUND, QUARANTINED. */
int cache_ns_info(cache *c, const uint8_t *name, uint8_t len, cache_ns_config *cfg,
                  cache_stat *stats, uint16_t max, uint16_t *count);

/* ---- expiry --------------------------------------------------------------- */

/* Examines up to budget entries (round-robin over namespaces, resuming
 * where the last call stopped) and removes the expired ones, calling
 * on_evict for each. Returns how many it examined; *expired how many it
 * removed. Takes each namespace's write lock for one slice at a time. */
size_t cache_sweep(cache *c, size_t budget, size_t *expired);

/* One sweeper tick: slices of `slice` entries, repeated while a slice
 * finds more than 10% of what it examines expired, for at most max_ms.
 * Returns how many entries it removed. */
size_t cache_sweep_tick(cache *c, size_t slice, uint32_t max_ms);

/* Deletes one entry of a namespace; *ns_id receives the namespace's id for
 * the durable delete. Errors: NOT_FOUND. */
int cache_delete(cache *c, const uint8_t *ns, uint8_t ns_len, uint64_t id,
                 uint32_t *ns_id);

/* Deletes every entry of a namespace; *removed receives how many and
 * *ns_id the namespace's id (0 for an unknown namespace, which removes 0). */
int cache_flush(cache *c, const uint8_t *ns, uint8_t ns_len, uint64_t *removed,
                uint32_t *ns_id);

/* Fills stats[0..max) with counters: server-wide when ns_len is 0,
 * otherwise for that namespace (NOT_FOUND if unknown). Keys are static
 * strings. *count receives the number filled. */
int cache_stats(cache *c, const uint8_t *ns, uint8_t ns_len, cache_stat *stats,
                uint16_t max, uint16_t *count);

/* Changes what SIGHUP may change while the server runs: the server-wide
 * budgets (the next STORE over them evicts), and the default floor and
 * dedup similarity -- for namespaces created afterwards and for existing
 * ones that did not set their own (and did not send EXPLICIT). Any
 * thread. */
void cache_set_policy(cache *c, float min_threshold, float dedup, uint64_t max_memory,
                      uint64_t max_entries);

/* The counters of cache_stats summed over the namespaces whose names start
 * with prefix (a tenant's server-wide view), plus `namespaces`. */
int cache_stats_prefix(cache *c, const uint8_t *prefix, uint8_t prefix_len,
                       cache_stat *stats, uint16_t max, uint16_t *count);

#endif
