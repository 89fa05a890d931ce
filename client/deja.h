/* deja.h: libdeja, the C client for the deja semantic cache server.
 *
 * Two handles:
 *
 *   deja_pool    the one most applications want. Thread-safe: any number
 *                of threads share one pool, which keeps up to `size`
 *                connections, connects lazily, bounds every call by a
 *                timeout and puts a circuit breaker in front of the server,
 *                so that a slow or dead deja costs the application a few
 *                milliseconds and then nothing (calls fail fast, lookups
 *                report a miss). deja_get_or_fetch does lookup, LLM call
 *                and store in one call.
 *   deja_client  one connection, for one thread at a time (callers that
 *                share one must serialise); the pool is built on it. Tools
 *                and benchmarks that want a connection of their own use it.
 *
 * Addresses (both handles): "deja://host:port", "deja://host" (port 7447),
 * "unix:///absolute/path", and the short forms "host:port", "host",
 * "[v6]:port", "unix:path" and "/path". Host names are resolved at each
 * connect with getaddrinfo(), which no deja timeout can bound: use an IP
 * address or a Unix socket where that matters.
 *
 * Errors: every function that can fail returns 0 or a negative DEJA_ERR_*
 * code from deja-errors.h (deja_get_or_fetch also passes on the positive
 * codes of the application's own fetch function); deja_strerror() names
 * a code. deja_last_error() (one connection) and deja_pool_last_error()
 * (the calling thread's last pool call) give a readable message. Arguments
 * are checked before anything is sent: NULL pointers, dim 0 or > 4096, k 0
 * or > 256, a threshold outside [-1, 1] and a namespace of 0 or > 255
 * bytes give DEJA_ERR_INVALID_ARG, a namespace byte outside 0x21..0x7E
 * gives DEJA_ERR_BAD_NAMESPACE, and a request larger than the server's
 * frame limit gives DEJA_ERR_TOO_LARGE.
 *
 * Memory: everything a call hands back through an out-parameter belongs to
 * the caller and is freed with one call: a deja_result with
 * deja_result_free (an array of them with deja_results_free), a deja_stats
 * with deja_stats_free, a deja_ns_list or deja_ns_info with its _free. Strings inside a
 * result live in the same block and go with it. Nothing else needs freeing; strings
 * returned as const char * by the handle functions belong to the handle (lifetime given
 * at each).
 *
 * docs/CLIENT.md walks through the API with examples. */
#ifndef DEJA_H
#define DEJA_H

#include <stddef.h>
#include <stdint.h>

#include "deja-errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DEJA_DEFAULT_PORT 7447

/* DEJA_ERR_UNAVAILABLE (deja-errors.h): a pool call refused without
 * touching the network because the circuit breaker is open. */

/* ==== results ============================================================= */

typedef struct deja_hit {
    uint64_t id;          /* entry id (0 for a fetched answer not stored) */
    float similarity;     /* cosine similarity to the query */
    const char *response; /* response bytes (NUL-terminated for convenience) */
    size_t response_len;
    const char *prompt; /* stored prompt if requested and non-empty,
                           else NULL (NUL-terminated) */
    size_t prompt_len;
    unsigned flags; /* DEJA_HIT_* */
} deja_hit;

/* The hit came from the server's exact (prompt) tier (docs/PROTOCOL.md
 * 5.10). LOOKUP_EX flags every hit; a plain LOOKUP reply only hits[0]. */
#define DEJA_HIT_EXACT 0x0001u
/* The hit is in the namespace's gray band (docs/PROTOCOL.md 5.16): served,
 * but close to the threshold; verify it before use if that matters.
 * LOOKUP_EX flags every hit; a plain LOOKUP reply only hits[0]. Servers
 * of protocol version 1 never set it. */
#define DEJA_HIT_BORDERLINE 0x0002u

/* How the server answered a lookup (deja_lookup_ex; plain lookups and
 * version-1 servers give HIT or MISS). */
enum deja_outcome {
    DEJA_OUTCOME_MISS = 0, /* nothing served, no lease: ask the model */
    DEJA_OUTCOME_HIT = 1,  /* hits from the cache */
    /* Nothing served; this caller holds lease_id: fetch the answer and
     * store it with that lease_id, or release the lease. */
    DEJA_OUTCOME_LEASE = 2,
    /* This request waited for another caller's lease and is answered with
     * the entry that caller stored (one hit). */
    DEJA_OUTCOME_COALESCED = 3,
};

typedef struct deja_result {
    uint32_t count;    /* 0 = miss (a real one, or because of `error`) */
    deja_hit *hits;    /* best first; NULL when count is 0 */
    int error;         /* 0, or the DEJA_ERR_* code that turned this call into a
                          miss (pool and batch lookups), or that kept a fetched
                          answer out of the cache (deja_get_or_fetch) */
    unsigned flags;    /* DEJA_RESULT_* */
    int outcome;       /* enum deja_outcome */
    uint64_t lease_id; /* outcome LEASE: the lease this caller holds; else 0 */
    /* Would-be hits of a namespace in shadow mode (deja_lookup_ex with
     * DEJA_LOOKUP_WANT_SHADOW; flag DEJA_RESULT_SHADOW), best first; NULL
     * when shadow_count is 0. They live in the same block as hits. */
    uint32_t shadow_count;
    deja_hit *shadow;
} deja_result;

/* deja_get_or_fetch: hits[0] came from the fetch function, not the cache. */
#define DEJA_RESULT_FETCHED 0x0001u
/* deja_get_or_fetch: the fetched answer was stored; hits[0].id is its id. */
#define DEJA_RESULT_STORED 0x0002u
/* hits[0] came from the server's exact tier: an entry stored with the same
 * normalised prompt as the lookup's (deja_get_or_fetch sends the prompt).
 * It is then the only hit, and its similarity -- the true cosine -- may be
 * below the threshold asked for, never below the namespace's floor
 * (docs/PROTOCOL.md 5.10). Servers before this flag never set it. */
#define DEJA_RESULT_EXACT 0x0004u
/* The reply's BORDERLINE flag: hits[0] is in the namespace's gray band
 * (docs/PROTOCOL.md 5.16), as its DEJA_HIT_BORDERLINE also says. */
#define DEJA_RESULT_BORDERLINE 0x0008u
/* deja_lookup_ex: the namespace is in shadow mode, so nothing was served
 * (count 0, outcome MISS); the would-be hits are in shadow when asked. */
#define DEJA_RESULT_SHADOW 0x0010u
/* deja_get_or_fetch: hits[0] is the answer another caller fetched and
 * stored while this one waited on its lease (outcome COALESCED): it came
 * from the cache, not from this caller's fetch function. */
#define DEJA_RESULT_COALESCED 0x0020u

/* Frees a result and everything it points to. NULL is a no-op. */
void deja_result_free(deja_result *r);

/* Frees rs[0..n) with deja_result_free and sets each to NULL (the array
 * itself is the caller's). NULL rs is a no-op. */
void deja_results_free(deja_result **rs, size_t n);

#define DEJA_LOOKUP_WANT_PROMPT 0x0001u
/* deja_lookup_ex: on a miss, take a lease or wait for a similar pending one
 * (docs/PROTOCOL.md 5.15). */
#define DEJA_LOOKUP_LEASE 0x0002u
/* deja_lookup_ex: return the would-be hits of a namespace in shadow mode. */
#define DEJA_LOOKUP_WANT_SHADOW 0x0004u

typedef struct deja_store_req {
    const char *ns;      /* namespace, NUL-terminated, 1..255 bytes */
    const float *vector; /* dim floats, need not be normalised */
    uint32_t dim;
    const void *response; /* response bytes to cache */
    size_t response_len;
    const char *prompt; /* optional prompt text, may be NULL */
    size_t prompt_len;
    uint32_t ttl_s;        /* 0 = server default */
    uint32_t input_tokens; /* cost metadata, optional */
    uint32_t output_tokens;
    uint64_t cost_micro_usd;
    uint8_t completion; /* 0 = ok (only ok replies are cached) */
    /* A lease from deja_lookup_ex (outcome LEASE), or 0. With a lease the
     * store is sent as STORE_EX and also ends the lease: waiters get this
     * answer if it is stored, and one of them is promoted to fetch if the
     * store fails (a completion other than ok, for one). Ignored by
     * version-1 servers, which grant no leases. */
    uint64_t lease_id;
} deja_store_req;

/* A lookup with the options of protocol version 2 (deja_lookup_ex). */
typedef struct deja_lookup_ex_req {
    const char *ns;
    const float *vector;
    uint32_t dim;
    float threshold;    /* least cosine similarity of a hit, in [-1, 1] */
    uint32_t k;         /* hits wanted, 1..256; 0 means 1 */
    unsigned flags;     /* DEJA_LOOKUP_WANT_PROMPT, _LEASE, _WANT_SHADOW */
    const char *prompt; /* optional, NUL-terminated: the exact tier's key */
    uint32_t wait_ms;   /* LEASE: longest wait for another caller's lease;
                           0 = never wait (take a lease of one's own) */
    uint32_t lease_ms;  /* LEASE: how long a lease granted to this caller
                           lasts; 0 = the server's default (dejad: 30 s) */
} deja_lookup_ex_req;

/* One lookup of a batch. */
typedef struct deja_lookup_req {
    const char *ns;
    const float *vector;
    uint32_t dim;
    float threshold; /* least cosine similarity of a hit, in [-1, 1] */
    uint32_t k;      /* hits wanted, 1..256; 0 means 1 */
    unsigned flags;  /* DEJA_LOOKUP_* */
} deja_lookup_req;

typedef struct deja_stat {
    const char *key;
    uint64_t value;
} deja_stat;

typedef struct deja_stats {
    uint32_t count;
    deja_stat *items;
} deja_stats;

/* Finds key in stats; returns 0 and sets *value, or DEJA_ERR_NOT_FOUND. */
int deja_stats_find(const deja_stats *s, const char *key, uint64_t *value);

/* Frees a stats result. NULL is a no-op. */
void deja_stats_free(deja_stats *s);

/* ==== namespace configuration ============================================= */

enum deja_index_kind {
    DEJA_INDEX_DEFAULT = 0, /* the server's --index */
    DEJA_INDEX_FLAT = 1,    /* exact scan */
    DEJA_INDEX_HNSW = 2,
    DEJA_INDEX_FAISS = 3, /* needs faiss_factory */
};

enum deja_ttl_mode {
    DEJA_TTL_ABSOLUTE = 0, /* an entry lives ttl_s from its STORE */
    DEJA_TTL_SLIDING = 1   /* a hit extends it by its TTL, up to max_age_s */
};

#define DEJA_NS_ALLOW_NON_OK 0x01u /* cache answers of any completion */
#define DEJA_NS_NO_DEDUP 0x02u     /* never merge near-identical STOREs */
#define DEJA_NS_EXPLICIT                                                                 \
    0x04u /* quant, min_threshold, dedup and default_ttl_s                               \
           * are literal: 0 is f32, 0.0, off, never */

/* A namespace's configuration (docs/PROTOCOL.md 5.9). Without
 * DEJA_NS_EXPLICIT, zero in any field but dim means the server's default.
 * deja_ns_info returns the resolved configuration: every default filled
 * in, with DEJA_NS_EXPLICIT set. */
typedef struct deja_ns_config {
    uint32_t dim;       /* 1..4096; required */
    uint8_t index_kind; /* enum deja_index_kind */
    uint8_t quant;      /* 0 = f32, 1 = int8 (HNSW traversal codes) */
    uint16_t hnsw_m;    /* links per node */
    uint16_t hnsw_ef_construction;
    uint16_t hnsw_ef_search;   /* used by lookups (the client sends ef 0) */
    uint8_t ttl_mode;          /* enum deja_ttl_mode */
    uint8_t flags;             /* DEJA_NS_* */
    float min_threshold;       /* floor under every lookup threshold, [-1, 1] */
    float dedup;               /* a STORE this similar updates an entry, [0, 1] */
    uint32_t default_ttl_s;    /* TTL of STOREs that send 0 */
    uint32_t max_age_s;        /* sliding TTL: longest total life; 0 = none */
    uint64_t max_bytes;        /* memory budget; 0 = none */
    uint64_t max_entries;      /* entry cap; 0 = none */
    const char *faiss_factory; /* index_factory string (FAISS only), or NULL */
} deja_ns_config;

/* Namespace names, from deja_ns_list_get / deja_pool_ns_list. */
typedef struct deja_ns_list {
    uint32_t count;
    const char **names; /* NUL-terminated; NULL when count is 0 */
} deja_ns_list;

/* A namespace's resolved configuration (DEJA_NS_EXPLICIT set, defaults
 * filled in) and its counters (memory_bytes, ...). */
typedef struct deja_ns_info {
    deja_ns_config config;
    deja_stats stats; /* search it with deja_stats_find(&info->stats, ...) */
} deja_ns_info;

/* Free a list or an info and everything in it. NULL is a no-op. */
void deja_ns_list_free(deja_ns_list *l);
void deja_ns_info_free(deja_ns_info *info);

enum deja_ns_mode {
    DEJA_NS_SERVE = 0, /* lookups serve hits */
    DEJA_NS_SHADOW = 1 /* lookups compute hits, count them, serve misses */
};

/* How a namespace serves (docs/PROTOCOL.md 5.14, 5.16): durable, but not
 * part of its configuration. A new namespace serves, without a band. */
typedef struct deja_ns_policy {
    int mode;        /* enum deja_ns_mode */
    float gray_band; /* 0 = none; else in (0, 1]: a vector hit below it is
                        served flagged DEJA_HIT_BORDERLINE */
} deja_ns_policy;

/* ==== deja_pool: thread-safe, pooled, fail-open =============================
 *
 * Every pool function may be called from any thread at once, except
 * deja_pool_destroy. A call takes an idle connection (or opens one, or
 * waits for one when `size` are busy), runs, and gives it back; a
 * connection whose stream is in doubt (timeout, I/O error) is closed
 * instead. The call's timeout covers all of it: waiting for a connection,
 * connecting (TCP, HELLO, AUTH; also capped by connect_timeout_ms), sending
 * and receiving. So no pool call blocks longer than its timeout, plus
 * scheduling slack.
 *
 * The circuit breaker counts consecutive failed calls: connect failures
 * (refused, timed out, or a refused token or version), timeouts, broken
 * connections, malformed replies, and BUSY or SHUTTING_DOWN from the
 * server. Any other reply from the server (also an error such as
 * DIM_MISMATCH) resets the count; local argument errors and waiting in
 * vain for a free connection do not count either way. At breaker_failures
 * the breaker opens: idle connections are closed and for
 * breaker_cooldown_ms every call returns DEJA_ERR_UNAVAILABLE at once,
 * without a system call. Then it is half-open: the next call goes through
 * as the probe (the others still fail fast); its success closes the
 * breaker, its failure opens it for another cool-down. Only the probe
 * closes an open breaker, not a call that was already running when it
 * opened.
 *
 * Fail-open lookups: deja_pool_lookup, deja_pool_lookup_many and
 * deja_get_or_fetch always hand back a result, also on error (count 0,
 * error set), so `if (r->count) use r->hits[0]; else ask the LLM` is
 * always right. */

typedef struct deja_pool deja_pool;

typedef struct deja_pool_options {
    uint32_t size;             /* most connections; 0 = 8 */
    int connect_timeout_ms;    /* 0 = 100: TCP connect + HELLO + AUTH */
    int lookup_timeout_ms;     /* 0 = 50: LOOKUP, lookup_many, PING */
    int write_timeout_ms;      /* 0 = 1000: STORE, store_many, DELETE,
                                  FLUSH, STATS (writes are acknowledged
                                  after a durable commit) */
    const char *auth_token;    /* NULL = no AUTH; copied */
    uint32_t breaker_failures; /* consecutive failures that open it; 0 = 5 */
    int breaker_cooldown_ms;   /* open for this long; 0 = 1000 */
    /* The breaker's clock, for tests and simulations; NULL = the
     * monotonic clock. Timeouts always use the monotonic clock. */
    int64_t (*clock_ms)(void *clock_ctx);
    void *clock_ctx;
    /* deja_get_or_fetch's leases (semantic single-flight) against servers
     * of protocol version 2: the longest a call waits for the answer of a
     * similar question that another caller is fetching, on top of
     * lookup_timeout_ms. 0 = 10000 (as the Python client); DEJA_LEASES_OFF = no leases:
     * one LOOKUP as with a version-1 server. */
    int lease_wait_ms;
    /* How long a lease taken by deja_get_or_fetch lasts if its holder never
     * stores or releases it (a crash): longer than a fetch takes. 0 = the
     * server's default (dejad: 30 s). */
    int lease_ms;
} deja_pool_options;

/* deja_pool_options.lease_wait_ms: deja_get_or_fetch asks for no leases. */
#define DEJA_LEASES_OFF (-1)

/* Creates a pool for url (see Addresses) without connecting: a server that
 * is down at start costs nothing until the first call. opts may be NULL
 * for the defaults; negative values (other than lease_wait_ms
 * DEJA_LEASES_OFF) are INVALID_ARG. On success *out owns
 * the pool. Errors: INVALID_ARG (NULL out, bad address syntax, negative
 * option), NOMEM. */
int deja_pool_create(const char *url, const deja_pool_options *opts, deja_pool **out);

/* Closes every connection and frees the pool. No call may be running on
 * it or start after. NULL is a no-op. */
void deja_pool_destroy(deja_pool *p);

/* Message for the calling thread's last failed pool call (any pool), e.g.
 * "connect: Connection refused (127.0.0.1:7447)"; "" after a success.
 * Valid until the thread's next pool call or deja_connect. Never NULL. */
const char *deja_pool_last_error(void);

/* Round trip with an empty body (lookup timeout). Errors: UNAVAILABLE,
 * TIMEOUT, CONNECT, CLOSED, IO, PROTOCOL, AUTH_FAILED, AUTH_REQUIRED,
 * VERSION, NOMEM. */
int deja_pool_ping(deja_pool *p);

/* Looks up the k (1..256) best entries with similarity >= threshold.
 * *out always receives a result owned by the caller (free it with
 * deja_result_free): the hits on success (count 0 on a miss), or count 0
 * with error set to the returned code. Returns 0 or: UNAVAILABLE (breaker
 * open), TIMEOUT, CONNECT, CLOSED, IO, PROTOCOL, BAD_NAMESPACE,
 * DIM_MISMATCH, BAD_VECTOR, INVALID_ARG, NOMEM, or an auth error.
 * Only a NULL out gives INVALID_ARG with no result. */
int deja_pool_lookup(deja_pool *p, const char *ns, const float *vector, uint32_t dim,
                     float threshold, uint32_t k, unsigned flags, deja_result **out);

/* Stores one entry; *id_out (may be NULL) receives its id. Acknowledged,
 * and visible to lookups, once durable. Errors: UNAVAILABLE, REJECTED
 * (completion not OK), DIM_MISMATCH, BAD_VECTOR, BAD_NAMESPACE,
 * STORAGE_FULL, TOO_LARGE, INVALID_ARG, plus the connection errors. */
int deja_pool_store(deja_pool *p, const deja_store_req *req, uint64_t *id_out);

/* Deletes one entry. Errors: NOT_FOUND, BAD_NAMESPACE, UNAVAILABLE, plus
 * the connection errors. */
int deja_pool_delete(deja_pool *p, const char *ns, uint64_t id);

/* Deletes every entry of a namespace; *removed (may be NULL) receives the
 * count. Errors: BAD_NAMESPACE, UNAVAILABLE, plus the connection errors. */
int deja_pool_flush(deja_pool *p, const char *ns, uint64_t *removed);

/* Server-wide (ns NULL or "") or per-namespace counters; on success *out
 * is owned by the caller (deja_stats_free), else NULL. Errors: NOT_FOUND
 * (unknown namespace), UNAVAILABLE, plus the connection errors. */
int deja_pool_stats(deja_pool *p, const char *ns, deja_stats **out);

/* Pipelined lookups on one connection: all n requests are sent before the
 * replies are awaited (replies are read while sending), within one lookup
 * timeout for the whole batch -- raise lookup_timeout_ms or split very
 * large batches. out is the caller's array of n pointers; each out[i]
 * always receives a result, equal to what deja_pool_lookup would give for
 * reqs[i], with its own error (free them all with deja_results_free).
 * Returns 0 when every lookup succeeded, else the code of the first
 * (lowest index) that failed. n = 0 returns 0. Errors: as deja_pool_lookup;
 * INVALID_ARG for NULL reqs or out, or n >= 2^31. */
int deja_pool_lookup_many(deja_pool *p, const deja_lookup_req *reqs, size_t n,
                          deja_result **out);

/* Pipelined stores on one connection within one write timeout.
 * ids[i] (ids may be NULL) receives entry ids, 0 for a failed store;
 * codes[i] (codes may be NULL) receives each store's code. Returns 0 when
 * every store succeeded, else the code of the first that failed. Replies
 * arrive in any order; a store is visible once its reply is in. Errors:
 * as deja_pool_store. */
int deja_pool_store_many(deja_pool *p, const deja_store_req *reqs, size_t n,
                         uint64_t *ids, int *codes);

/* Namespace operations (write timeout). As deja_ns_create,
 * deja_ns_list_get, deja_ns_info_get and deja_ns_drop below, plus
 * UNAVAILABLE and the connection errors. */
int deja_pool_ns_create(deja_pool *p, const char *ns, const deja_ns_config *cfg);
int deja_pool_ns_list(deja_pool *p, deja_ns_list **out);
int deja_pool_ns_info(deja_pool *p, const char *ns, deja_ns_info **out);
int deja_pool_ns_drop(deja_pool *p, const char *ns, uint64_t *removed);

/* A lookup with the version-2 options (see deja_lookup_ex), fail-open like
 * deja_pool_lookup: *out always receives a result owned by the caller.
 * The call's timeout is lookup_timeout_ms plus req->wait_ms with
 * DEJA_LOOKUP_LEASE, so that a request waiting on another caller's lease
 * is not cut short; the connection serves that request alone while it
 * waits. Against a version-1 server it is a plain LOOKUP (outcome HIT or
 * MISS, no lease). An outcome LEASE obliges the caller to store with the
 * lease id (deja_pool_store) or release it (deja_pool_lease_release):
 * similar lookups wait for it until it ends or expires. Errors: as
 * deja_pool_lookup; INVALID_ARG also for NULL req or unknown flags. */
int deja_pool_lookup_ex(deja_pool *p, const deja_lookup_ex_req *req, deja_result **out);

/* Releases a lease (write timeout) so that a caller waiting on it is
 * promoted to fetch. Never waits for a free connection: when all `size`
 * are busy (callers waiting on leases hold theirs) it opens one more for
 * this call and closes it after, so that a lease can always be ended.
 * deja_pool_store with a lease_id does the same. Errors: NOT_FOUND (the
 * lease ended or expired already), UNKNOWN_OP (a version-1 server),
 * BAD_NAMESPACE, INVALID_ARG, UNAVAILABLE, plus the connection errors. */
int deja_pool_lease_release(deja_pool *p, const char *ns, uint64_t lease_id);

/* A namespace's policy (write timeout): as deja_ns_policy_get and
 * deja_ns_policy_set below, plus UNAVAILABLE and the connection errors. */
int deja_pool_ns_policy_get(deja_pool *p, const char *ns, deja_ns_policy *out);
int deja_pool_ns_policy_set(deja_pool *p, const char *ns, const deja_ns_policy *policy,
                            deja_ns_policy *out);

enum deja_breaker_state {
    DEJA_BREAKER_CLOSED = 0,   /* calls go to the server */
    DEJA_BREAKER_OPEN = 1,     /* calls fail fast until the cool-down ends */
    DEJA_BREAKER_HALF_OPEN = 2 /* one probe call decides */
};

/* A snapshot of a pool's health. Counters only grow. */
typedef struct deja_pool_status {
    int breaker;                   /* enum deja_breaker_state */
    uint32_t consecutive_failures; /* the breaker's count */
    int64_t open_remaining_ms;     /* OPEN: ms until a probe may go; else 0 */
    uint32_t connections;          /* open now (idle + in use) */
    uint32_t idle;                 /* open and idle now */
    uint64_t calls;                /* pool calls made (batches count once) */
    uint64_t failures;             /* calls that counted as failures */
    uint64_t fast_fails;           /* calls refused by the open breaker */
    uint64_t trips;                /* times the breaker opened */
    uint64_t connects;             /* connection attempts */
    uint64_t connect_failures;     /* ... that failed */
    uint64_t timeouts;             /* calls that ended with TIMEOUT */
} deja_pool_status;

/* Fills *out with the pool's state and counters. Any thread. Errors:
 * INVALID_ARG (NULL p or out). */
int deja_pool_get_status(deja_pool *p, deja_pool_status *out);

/* ==== deja_get_or_fetch: the seed pattern in one call ==================== */

/* What a fetch function reports: filled with the setters below. */
typedef struct deja_fetch deja_fetch;

/* The application's expensive call (usually the LLM). It gets ctx and the
 * prompt given to deja_get_or_fetch, and reports its answer with
 * deja_fetch_answer. It returns 0 when it has an answer; any other value
 * (use positive numbers to stay clear of DEJA_ERR_*) means "no answer" and
 * is returned by deja_get_or_fetch. Runs on the calling thread, with no
 * lock and no connection held, so it may take as long as it needs. */
typedef int (*deja_fetch_fn)(void *ctx, const char *prompt, deja_fetch *f);

/* Gives the answer: response[0..len) is copied, so the function may free
 * its buffer right after. completion is how the model call ended (0 = OK,
 * 1 = ERROR, 2 = TRUNCATED, 3 = FILTERED); only OK answers are stored.
 * Calling it again replaces the answer. Errors: INVALID_ARG (NULL f,
 * NULL response with len > 0, completion > 3), NOMEM. */
int deja_fetch_answer(deja_fetch *f, const void *response, size_t len,
                      uint8_t completion);

/* Optional metadata stored with the answer: ttl_s (0 = server default) and
 * the cost that a later hit saves. NULL f is a no-op. */
void deja_fetch_meta(deja_fetch *f, uint32_t ttl_s, uint32_t input_tokens,
                     uint32_t output_tokens, uint64_t cost_micro_usd);

/* Looks up the best entry (k = 1) with similarity >= threshold in ns,
 * sending the prompt along so that the server's exact tier answers a
 * prompt seen before by its text; on a miss -- a real one or one caused
 * by an error, such as an open breaker --
 * calls fetch(ctx, prompt, f) and returns its answer. The answer is stored
 * (with prompt, which may be NULL) when its completion is OK and the
 * lookup was a real miss: after a failed lookup the server is down or
 * refusing the request, and a store would only make the caller wait.
 *
 * Leases (servers of protocol version 2, unless the pool's lease_wait_ms
 * is DEJA_LEASES_OFF): the lookup is a LOOKUP_EX asking for a lease, so
 * that of many callers missing on similar questions at once only one
 * fetches. A caller that finds a similar question being fetched waits for
 * its answer, up to lease_wait_ms, and returns it with
 * DEJA_RESULT_COALESCED (fetch is not called). A caller granted the lease
 * fetches and stores with the lease id; if fetch fails or its completion
 * is not OK, the lease is released at once so that a waiter is promoted
 * to fetch. A wait that ends without an answer (deadline, lease lost)
 * falls back to fetching. Against a version-1 server (or one that answers
 * the version-2 ops with UNKNOWN_OP) the call is exactly the one LOOKUP of
 * before, within lookup_timeout_ms.
 *
 * Returns 0 when *out holds an answer: count 1, hits[0] is the cached hit
 * or the fetched answer (flag DEJA_RESULT_FETCHED, similarity 1, prompt
 * the one given; DEJA_RESULT_STORED and hits[0].id once stored); outcome
 * says how the lookup was answered (HIT, COALESCED, or MISS/LEASE for a
 * fetched answer); error is 0, or the code of the lookup or store that
 * failed on the way (the answer is good anyway). Otherwise returns fetch's
 * non-zero code, INVALID_ARG (NULL fetch or out, or fetch returned 0
 * without calling deja_fetch_answer) or NOMEM, and *out is a result with
 * count 0 and error set to that code. *out is always set (unless out is
 * NULL) and freed with deja_result_free. Without leases, two threads
 * missing on the same prompt both fetch. */
int deja_get_or_fetch(deja_pool *p, const char *ns, const char *prompt,
                      const float *vector, uint32_t dim, float threshold,
                      deja_fetch_fn fetch, void *ctx, deja_result **out);

/* ==== deja_client: one connection ========================================== */

typedef struct deja_client deja_client;

typedef struct deja_options {
    int connect_timeout_ms; /* 0 = 1000; the socket connect only */
    int request_timeout_ms; /* 0 = 5000; applies to each call, and to
                               HELLO and AUTH inside deja_connect */
    const char *auth_token; /* NULL = no AUTH */
} deja_options;

/* Connects to addr (see Addresses) and runs HELLO (and AUTH when a token is
 * given). opts may be NULL for defaults. On success *out owns the
 * connection. After DEJA_ERR_TIMEOUT, CLOSED, IO or PROTOCOL from any call
 * the connection is closed and later calls fail with CLOSED; any other
 * error leaves it usable.
 * Errors: INVALID_ARG (bad address), CONNECT, TIMEOUT, VERSION,
 * AUTH_FAILED, AUTH_REQUIRED, PROTOCOL, NOMEM. */
int deja_connect(const char *addr, const deja_options *opts, deja_client **out);

/* Closes the connection and frees the client. NULL is a no-op. */
void deja_close(deja_client *c);

/* Message from the server (or the client) for the last failed call on c;
 * valid until the next call on c. With c NULL: the reason the calling
 * thread's last deja_connect failed, e.g. "connect: Connection refused
 * (127.0.0.1:7447)" (the same buffer as deja_pool_last_error). Never
 * NULL. */
const char *deja_last_error(const deja_client *c);

/* The server's name and version from its HELLO reply, e.g. "dejad 0.1.0";
 * valid until deja_close. Never NULL. */
const char *deja_server_name(const deja_client *c);

/* Round trip with an empty body. */
int deja_ping(deja_client *c);

/* Stores one entry; *id_out (may be NULL) receives its entry id.
 * Errors: BAD_NAMESPACE, BAD_VECTOR, DIM_MISMATCH, REJECTED, TOO_LARGE,
 * STORAGE_FULL, plus the connection errors. */
int deja_store(deja_client *c, const deja_store_req *req, uint64_t *id_out);

/* Looks up the k (1..256) best entries with similarity >= threshold.
 * On success *out is a result (count 0 on a miss) owned by the caller:
 * free it with deja_result_free; on error *out is NULL. flags:
 * DEJA_LOOKUP_*. Errors: BAD_NAMESPACE, BAD_VECTOR, DIM_MISMATCH, plus
 * connection errors. */
int deja_lookup(deja_client *c, const char *ns, const float *vector, uint32_t dim,
                float threshold, uint32_t k, unsigned flags, deja_result **out);

/* Batches on one connection: as deja_pool_lookup_many and
 * deja_pool_store_many (same results, codes and ownership), within one
 * request timeout for the whole batch, and without a breaker. Refused
 * (INVALID_ARG) while single lookups are in flight. */
int deja_lookup_many(deja_client *c, const deja_lookup_req *reqs, size_t n,
                     deja_result **out);
int deja_store_many(deja_client *c, const deja_store_req *reqs, size_t n, uint64_t *ids,
                    int *codes);

/* Pipelining by hand: keep several lookups in flight on one connection.
 *
 * deja_send_lookup validates and sends one LOOKUP (same arguments and
 * argument errors as deja_lookup) without waiting; *request_id (may be
 * NULL) receives the id that its reply will carry. deja_recv_lookup waits
 * up to the request timeout for the next LOOKUP reply, whichever request
 * it answers (the server may answer out of order), and sets *request_id
 * to that request's id even when it returns a server error such as
 * DIM_MISMATCH; on success *out is a result as from deja_lookup. It
 * returns INVALID_ARG when nothing is in flight.
 *
 * While lookups are in flight the other calls (deja_ping, deja_store, ...)
 * return INVALID_ARG: drain the replies first. Keep the depth modest (tens,
 * not thousands): requests and replies in flight must fit in the socket
 * buffers, because nothing reads replies while deja_send_lookup blocks
 * (deja_lookup_many has no such limit).
 * Errors: as deja_lookup; TIMEOUT/CLOSED/IO/PROTOCOL close the connection
 * and abandon every request in flight. */
int deja_send_lookup(deja_client *c, const char *ns, const float *vector, uint32_t dim,
                     float threshold, uint32_t k, unsigned flags, uint32_t *request_id);
int deja_recv_lookup(deja_client *c, uint32_t *request_id, deja_result **out);

/* Waits at most timeout_us for a pipelined reply to be there: returns 1
 * when deja_recv_lookup will not block (a reply is buffered or bytes have
 * arrived), 0 when the time ran out, INVALID_ARG when nothing is in
 * flight, CLOSED once the connection is closed. For a sender that must
 * send on time (an open-loop load generator) and so cannot sit in
 * deja_recv_lookup while requests come due. */
int deja_reply_ready(deja_client *c, uint64_t timeout_us);

/* Number of pipelined lookups sent and not yet received. */
uint32_t deja_in_flight(const deja_client *c);

/* The protocol version negotiated by HELLO: 1, or 2 for a server with
 * leases, shadow mode and the gray band. 0 for NULL. A version-2 server
 * that answers a version-2 op with UNKNOWN_OP is treated as version 1 from
 * then on. */
uint32_t deja_protocol_version(const deja_client *c);

/* A lookup with the options of protocol version 2 (LOOKUP_EX,
 * docs/PROTOCOL.md 5.11): outcome, lease_id, per-hit flags and shadow hits
 * in the result. With DEJA_LOOKUP_LEASE a miss either grants a lease
 * (outcome LEASE: fetch, then deja_store with req->lease_id set, or
 * deja_lease_release) or waits up to req->wait_ms for a similar question
 * another caller holds a lease for (outcome COALESCED with its answer; or
 * LEASE when the wait ends without one). The call's deadline is the
 * request timeout plus wait_ms. Against a version-1 server it sends a
 * plain LOOKUP: outcome HIT or MISS, no lease, no shadow hits.
 * On success *out is the caller's (deja_result_free); on error NULL.
 * Errors: as deja_lookup; INVALID_ARG for NULL req, unknown flags. */
int deja_lookup_ex(deja_client *c, const deja_lookup_ex_req *req, deja_result **out);

/* Ends a lease without an answer (LEASE_RELEASE): a caller waiting on it
 * is promoted to fetch. Errors: NOT_FOUND (no such lease: it ended or
 * expired), BAD_NAMESPACE, UNKNOWN_OP (a version-1 server), plus the
 * connection errors. */
int deja_lease_release(deja_client *c, const char *ns, uint64_t lease_id);

/* Reads a namespace's policy into *out. Errors: NOT_FOUND (no such
 * namespace), QUARANTINED, BAD_NAMESPACE, INVALID_ARG (NULL out),
 * UNKNOWN_OP (a version-1 server), plus the connection errors. */
int deja_ns_policy_get(deja_client *c, const char *ns, deja_ns_policy *out);

/* Sets a namespace's policy (durable when it returns, applies to lookups
 * that start after); *out (may be NULL) receives the policy as the server
 * now holds it. Errors: as deja_ns_policy_get; BAD_REQUEST (a gray band
 * outside (0, 1], a mode other than SERVE or SHADOW). */
int deja_ns_policy_set(deja_client *c, const char *ns, const deja_ns_policy *policy,
                       deja_ns_policy *out);

/* Deletes one entry. Errors: NOT_FOUND, BAD_NAMESPACE. */
int deja_delete(deja_client *c, const char *ns, uint64_t id);

/* Deletes every entry of a namespace; *removed (may be NULL) receives the
 * count. */
int deja_flush(deja_client *c, const char *ns, uint64_t *removed);

/* Server-wide (ns NULL or "") or per-namespace counters. Free the result
 * with deja_stats_free. Errors: NOT_FOUND (unknown namespace), plus the
 * connection errors. */
int deja_stats_get(deja_client *c, const char *ns, deja_stats **out);

/* Creates namespace ns with cfg (durable when it returns). Creating one
 * that exists with the same configuration succeeds and changes nothing.
 * Errors: EXISTS (it exists with another configuration), BAD_REQUEST (a
 * field out of range; the message names it), BAD_NAMESPACE, INVALID_ARG
 * (NULL cfg, dim 0 or > 4096), UNKNOWN_OP (a server without namespace
 * ops), plus the connection errors. */
int deja_ns_create(deja_client *c, const char *ns, const deja_ns_config *cfg);

/* The names of every namespace; on success *out is the caller's (free it
 * with deja_ns_list_free), else NULL. Errors: UNKNOWN_OP, plus the
 * connection errors. */
int deja_ns_list_get(deja_client *c, deja_ns_list **out);

/* A namespace's configuration and counters; on success *out is the
 * caller's (deja_ns_info_free), else NULL. Errors: NOT_FOUND,
 * BAD_NAMESPACE, UNKNOWN_OP, plus the connection errors. */
int deja_ns_info_get(deja_client *c, const char *ns, deja_ns_info **out);

/* Drops a namespace and all its entries (durable when it returns);
 * *removed (may be NULL) receives how many entries went. A later STORE
 * with the name creates a new namespace. Errors: NOT_FOUND, BAD_NAMESPACE,
 * UNKNOWN_OP, plus the connection errors. */
int deja_ns_drop(deja_client *c, const char *ns, uint64_t *removed);

#ifdef __cplusplus
}
#endif
#endif
