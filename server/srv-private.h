/* srv-private.h: structures shared by the files of the dejad server
 * (listeners and workers, connections, the op table). Not a public API.
 *
 * Threads: the main thread runs the acceptor loop (listeners and signals)
 * and hands each accepted socket to one worker round-robin. Each worker
 * thread runs its own libuv loop and owns its connections completely: a
 * connection is only ever touched by its worker thread. Shared state lives
 * in the cache (own locks) and in atomic counters here. */
#ifndef DEJA_SRV_PRIVATE_H
#define DEJA_SRV_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "cache.h"
#include "proto.h"
#include "srv-tokens.h"
#include "srv.h"
#include "store.h"

typedef struct srv_server srv_server;
typedef struct srv_worker srv_worker;
typedef struct srv_conn srv_conn;
typedef struct srv_writer srv_writer;
typedef struct srv_auth_guard srv_auth_guard;
typedef struct srv_leases srv_leases;

/* A latency histogram: fixed buckets (bounds in srv-metrics.c, 25 us to
 * 2.5 s, then +Inf), relaxed atomic counts, the sum in nanoseconds. */
#define SRV_HIST_BUCKETS 16
typedef struct srv_hist {
    atomic_uint_fast64_t bucket[SRV_HIST_BUCKETS + 1];
    atomic_uint_fast64_t sum_ns;
} srv_hist;

/* Error statuses that travel on the wire: 1..99. */
#define SRV_WIRE_STATUSES 100

/* Where a connection comes from, for the AUTH guard: an IPv4 address, an
 * IPv6 /64, or a Unix socket peer's uid. */
typedef struct srv_source {
    uint8_t family; /* 4, 6, or 'u' */
    uint8_t addr[15];
} srv_source;

/* A write: the store operations a request needs made durable, and what
 * happens once they are. Built by its handler; owned by the commit
 * thread's queue until committed, then by its completion. The commit
 * thread knows store operations and these two callbacks, nothing else. */
typedef struct srv_write srv_write;
struct srv_write {
    srv_write *next;
    store_op ops[2]; /* at most a namespace record and an entry */
    unsigned nops;
    int result; /* set by the commit thread: 0 or the first error */
    /* Commit thread, right after the transaction, before the completion is
     * posted (a namespace record now on disk is marked so); may be NULL. */
    void (*committed)(srv_write *wr);
    /* The completion, exactly once: on worker w's loop (srv_worker_post),
     * or on the commit thread when w is NULL. It frees the write. */
    void (*done)(srv_write *wr);
    srv_worker *w;
};

/* A write that answers a request once it is durable (srv-conn.c). */
enum srv_reply_kind { SRV_REPLY_EMPTY, SRV_REPLY_U64, SRV_REPLY_STORE, SRV_REPLY_POLICY };
typedef struct srv_reply_write {
    srv_write base;
    srv_conn *conn; /* holds a deferred reference on conn */
    uint32_t request_id;
    uint8_t opcode; /* of the request, echoed in the reply */
    enum srv_reply_kind reply;
    uint64_t value;            /* SRV_REPLY_U64: entries removed */
    cache_pending *pending;    /* SRV_REPLY_STORE: published on success */
    store_ns_rec ns_rec;       /* the namespace record ops[0] may point to */
    store_entry_rec entry_rec; /* SRV_REPLY_STORE: the entry record an op points to */
    size_t held;               /* bytes charged to the worker until completion */
    uint64_t t0_ns;            /* when the request's frame was dispatched */
    proto_ns_policy policy;    /* SRV_REPLY_POLICY: the reply */
    uint64_t lease_id;         /* STORE_EX: the lease it ends (0 = none) */
    uint8_t lease_ns_len;
    char lease_ns[256];
} srv_reply_write;

/* A socket accepted by the main thread, waiting for its worker. */
typedef struct srv_handoff {
    int fd;
    int is_pipe;
} srv_handoff;

struct srv_worker {
    srv_server *srv;
    unsigned index;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake; /* new sockets queued, or stop requested */
    uv_timer_t stop_timer;
    pthread_mutex_t mu; /* guards handoff*, stopping, done*, wake_closed */
    srv_handoff *handoff;
    size_t nhandoff, cap_handoff;
    int stopping;
    int stop_started;                 /* worker thread only */
    int wake_closed;                  /* no uv_async_send after this */
    srv_write *done_head, *done_tail; /* committed writes awaiting completion */
    srv_conn *flush_list; /* connections with completions to write (worker only) */
    srv_conn *conns;      /* this worker's open connections (list) */
    /* Per-worker scratch for the op handlers (one request at a time). */
    float *vec;           /* PROTO_MAX_DIM floats, 64-byte aligned */
    cache_match *matches; /* PROTO_MAX_K */
    proto_hit *hits;      /* PROTO_MAX_K */
    /* Reads land here while a connection has no partial frame, so an idle
     * connection holds no read buffer of its own. */
    uint8_t *rshared; /* SRV_RBUF_MIN bytes */
    /* Bytes this worker's connections hold: own read buffers, replies not
     * yet written, STORE bodies waiting for the commit thread. Bounded by
     * budget = --max-client-memory / workers. */
    size_t held, budget;
    atomic_size_t held_seen; /* held, published by the tick for STATS */
    uv_timer_t tick;         /* retries paused connections, closes idle ones */
};

struct srv_server {
    srv_config *cfg; /* reloadable keys change on SIGHUP (main thread) */
    int argc;
    char **argv;
    cache *cache;
    uv_loop_t *loop; /* the main (acceptor) loop */
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    int have_tcp, have_pipe;
    char unix_path[512];
    uv_signal_t sigint, sigterm;
    uv_timer_t sweep_timer;    /* TTL sweeper, on the main loop */
    uv_timer_t snapshot_timer; /* periodic graph snapshots */
    int snapshot_running;      /* one on the libuv pool (main thread's flag) */
    uint64_t snapshot_next_ms; /* no snapshot by count before this (main thread) */
    srv_worker *workers;
    unsigned nworkers;
    store *store;
    srv_writer *writer;
    unsigned next_worker;
    uint64_t start_ms;
    atomic_uint_fast64_t conns_total, conns_open, requests, frame_errors;
    atomic_uint_fast64_t snapshots; /* periodic snapshots written */
    /* Connections: accepted and not yet closed (counted by the main thread
     * at accept, released by the worker at close). */
    atomic_uint_fast64_t conns_live;
    atomic_uint_fast64_t conns_refused, conns_idle_closed, frames_busy;
    /* Authentication. auth_required is fixed at start (a token or a tokens
     * file is configured); the table is swapped whole on SIGHUP under
     * tokens_mu and tokens_gen moves, so connections re-check their scope. */
    int auth_required;
    pthread_mutex_t tokens_mu;
    srv_tokens *tokens;
    atomic_uint tokens_gen;
    srv_auth_guard *guard;
    atomic_uint_fast64_t auth_ok, auth_failed, auth_throttled;
    uv_signal_t sighup;
    srv_log_limit log_accept, log_refused, log_auth;
    /* Metrics (srv-metrics.c): the HTTP listener, on the main loop. */
    uv_tcp_t metrics;
    int have_metrics;
    int metrics_conns;
    atomic_int ready; /* listening, data loaded; 0 again while stopping */
    atomic_uint_fast64_t bytes_in, bytes_out;
    atomic_uint_fast64_t reply_writes; /* uv_write calls for client replies */
    atomic_uint_fast64_t errors[SRV_WIRE_STATUSES]; /* error replies by status */
    atomic_uint_fast64_t last_snapshot_ms;
    srv_hist lookup_hist, store_hist;
    srv_leases *leases; /* semantic single-flight (srv-lease.c) */
};

struct srv_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    srv_worker *w;
    srv_conn *prev, *next;
    uint8_t *rbuf; /* received, not yet consumed bytes */
    size_t rlen, rcap;
    proto_buf out;    /* replies not yet handed to uv_write */
    size_t in_flight; /* bytes handed to uv_write, not yet completed */
    int reading;      /* uv_read_start is active */
    int paused;       /* reads stopped by backpressure */
    int closing;      /* close once in-flight writes finish */
    int authed;
    int handle_closed;       /* uv_close done; freed when deferred reaches 0 */
    unsigned deferred;       /* replies owed (commit thread, AUTH guard) */
    size_t held;             /* this connection's share of w->held */
    uint64_t last_active_ms; /* last complete frame or completed write */
    int flush_queued;        /* on w->flush_list */
    srv_conn *flush_next;
    srv_scope scope;    /* what it may touch (all, without auth) */
    unsigned scope_gen; /* tokens_gen the scope was checked against */
    srv_source source;
    struct srv_auth_wait *auth_wait; /* an AUTH waiting for its verdict */
};

/* One request as the op handlers see it. A handler appends exactly one
 * reply frame to `out` and returns 0, or returns a negative DEJA_ERR_* code
 * (optionally with a message in errmsg) and the dispatcher writes the error
 * frame. */
typedef struct srv_req {
    srv_server *srv;
    srv_worker *w;
    srv_conn *conn;
    const proto_header *hdr;
    const uint8_t *body;
    proto_buf *out;
    int close_after; /* set by a handler: close once the reply is sent */
    char errmsg[160];
} srv_req;

/* A handler's return value when its reply will come later (a write that
 * waits for the commit thread, an AUTH waiting for the guard). */
#define SRV_DEFERRED 1

#define SRV_RBUF_MIN (64u * 1024u)

/* A connection with this many replies owed by the commit thread is not
 * read further until some are sent: bounds the memory a pipelining writer
 * can pin. */
#define SRV_MAX_DEFERRED 4096u

/* Handles one complete frame of conn (srv-ops.c). Appends one reply
 * (success or error) to r->out and returns 0, returns SRV_DEFERRED when the
 * reply will be sent on completion, or returns DEJA_ERR_NOMEM when even
 * the error reply could not be encoded (the caller closes the
 * connection). */
int srv_dispatch(srv_req *r);

/* ---- the AUTH guard (srv-auth.c) ------------------------------------------ */

#define SRV_AUTH_MAX_PENALTY_MS 1000u
#define SRV_AUTH_MAX_PENDING 16u
#define SRV_AUTH_FORGET_MS 60000u

int srv_auth_guard_create(srv_auth_guard **out);
void srv_auth_guard_destroy(srv_auth_guard *g);

/* Reserves the source's next verdict: returns the milliseconds to wait
 * before evaluating its AUTH (0 = now), or -1 when too many of its AUTHs
 * are already waiting (refuse without evaluating). Any thread. */
int64_t srv_auth_guard_reserve(srv_auth_guard *g, const srv_source *src, uint64_t now);

/* Records the verdict of a reserved AUTH: ok 1 (matched), 0 (failed) or
 * -1 (never evaluated: the connection went away first). Any thread. */
void srv_auth_guard_verdict(srv_auth_guard *g, const srv_source *src, int ok,
                            uint64_t now);

/* Evaluates an AUTH token against the server's table (srv-ops.c): 1 and
 * the scope on success. */
int srv_auth_check(srv_server *s, const uint8_t *token, size_t len, srv_scope *scope);

/* ---- the commit thread (srv-writer.c) ------------------------------------ */

typedef struct srv_writer_config {
    enum store_fsync fsync;
    uint32_t sync_interval_ms; /* STORE_FSYNC_BATCH */
    size_t max_batch;          /* ops per transaction */
    size_t max_unindexed;      /* STOREs wait while more wait for the graph */
} srv_writer_config;

int srv_writer_start(srv_server *srv, store *st, const srv_writer_config *cfg,
                     srv_writer **out);

/* Queues a write for the next transaction. Any thread. */
void srv_writer_submit(srv_writer *wr, srv_write *write);

/* Hands a committed write to worker w, whose loop runs its completion.
 * Any thread. */
void srv_worker_post(srv_worker *w, srv_write *write);

/* Commits everything queued, then stops and joins the thread. */
void srv_writer_stop(srv_writer *wr);

/* The commit-duration histogram (read by the metrics scrape). */
const srv_hist *srv_writer_hist(srv_writer *wr);

/* Counters for STATS. */
void srv_writer_stats(srv_writer *wr, uint64_t *commits, uint64_t *ops, uint64_t *failed);

/* ---- worker side of completions (srv-conn.c) ------------------------------ */

/* Queues a reply write from a handler: takes a deferred reference on its
 * connection and submits it. The reply goes out when it is durable. */
void srv_conn_submit_reply(srv_req *r, srv_reply_write *rw);

/* Writes the replies that completions encoded since the last call, one
 * write per connection. Worker thread. */
void srv_conn_flush_completed(srv_worker *w);

/* Releases a deferred reference; frees conn once closed and unreferenced. */
void srv_conn_release(srv_conn *c);

/* Worker: closes its wake-up handle once stopping and out of connections. */
void srv_worker_maybe_finish(srv_worker *w);

/* Largest frame the connection accepts now: tighter before AUTH when the
 * server has a token. */
uint32_t srv_conn_max_frame(const srv_conn *c);

/* Worker side of a handed-off socket (srv-conn.c). */
void srv_conn_accept(srv_worker *w, const srv_handoff *h);

/* Answers an AUTH after the guard's delay (srv-conn.c). The token is
 * copied; the connection reads nothing more until the verdict. */
int srv_conn_defer_auth(srv_conn *c, uint32_t request_id, const uint8_t *token,
                        size_t len, uint64_t delay_ms);

/* The worker's periodic tick (srv-conn.c): retries paused connections,
 * closes idle ones. */
void srv_conn_tick(srv_worker *w);

/* Starts closing every connection of the worker gracefully. */
void srv_conn_close_all(srv_worker *w, int force);

uint64_t srv_now_ms(void);
uint64_t srv_now_ns(void);

/* ---- persistence (srv-persist.c) ------------------------------------------
 * The adapter between the engine's types (cache.h) and the store's records
 * (store.h): the cache knows nothing of the store, the store nothing of
 * the cache. Records built here borrow the image's pointers (prompt,
 * response, vector): they are valid as long as the image is. */

/* The namespace record of ns, its configuration in the store's encoding. */
void srv_persist_ns_rec(const cache_ns_image *ns, store_ns_rec *rec);
void srv_persist_entry_rec(const cache_entry_image *e, store_entry_rec *rec);
void srv_persist_usage_rec(const cache_usage *u, store_usage_rec *rec);

/* Loads a namespace record into the cache (cache_load_ns). A configuration
 * the store cannot decode quarantines the namespace. Errors as
 * cache_load_ns: QUARANTINED, NOMEM. Start-up thread. */
int srv_persist_load_ns(cache *c, const store_ns_rec *rec);

/* Loads an entry record (with its usage) into the cache (cache_load_entry):
 * NOT_FOUND, DIM_MISMATCH, NOMEM. Start-up thread. */
int srv_persist_load_entry(cache *c, const store_entry_rec *rec);

/* The engine's vector source (cache_config.vectors): int8 graphs read the
 * f32 vectors of their re-rank from s->store's map through a store_reader
 * per operation. s->store may be opened (and reopened) after the cache is
 * created; a scope begun while there is none fails. */
cache_vector_source srv_persist_vector_source(srv_server *s);

/* Fills h's response (and, with want_prompt, its prompt) from e's record
 * in the map through rd: pointers valid until rd ends, so the reply is
 * encoded before that. Every engine entry was published after its record
 * was committed, so a reader begun after the search finds it unless it was
 * deleted or replaced since. Errors: NOT_FOUND (gone: the caller drops
 * the hit), CORRUPT, IO. */
int srv_persist_read_hit(store_reader *rd, const cache_entry *e, int want_prompt,
                         proto_hit *h);

/* ---- metrics (srv-metrics.c) ---------------------------------------------- */

void srv_hist_add(srv_hist *h, uint64_t ns);

/* Starts the HTTP listener on --metrics-addr (no-op when unset). Returns 0
 * or -1 (logged). Main thread, before the loop runs. */
int srv_metrics_listen(srv_server *s);

/* Writes port to path through a temporary file and a rename, so a reader
 * never sees half a number. Returns 0 or -1 (errno set). */
int srv_write_port_file(const char *path, int port);

/* Counts an error reply by its status (any thread). */
static inline void srv_count_error(srv_server *s, int code) {
    int st = -code;
    if (st > 0 && st < SRV_WIRE_STATUSES)
        atomic_fetch_add_explicit(&s->errors[st], 1, memory_order_relaxed);
}

/* Bytes held in client buffers across workers, as of their last tick. */
uint64_t srv_client_bytes(srv_server *s);

/* ---- leases: semantic single-flight (srv-lease.c) -------------------------
 * docs/PROTOCOL.md 5.15. The table is shared by every thread (its own
 * leaf mutex); a waiter belongs to its connection's worker. */

typedef struct srv_lease_waiter srv_lease_waiter;

enum srv_lease_verdict {
    SRV_LEASE_NONE = 0,      /* a plain miss: no lease (bounds, closed) */
    SRV_LEASE_GRANTED = 1,   /* the caller holds a new lease */
    SRV_LEASE_WAIT = 2,      /* the request waits on a similar pending lease */
    SRV_LEASE_RETRY = 3,     /* a lease was fulfilled meanwhile: search again */
    SRV_LEASE_COALESCED = 4, /* (waiters) answered with the stored entry */
};

/* What a LOOKUP_EX that missed asks of the lease table. */
typedef struct srv_lease_ask {
    const uint8_t *ns;
    uint8_t ns_len;
    uint16_t dim;
    const float *vec; /* normalised */
    float threshold;  /* the effective one */
    uint32_t wait_ms, lease_ms;
    uint32_t request_id;
    uint16_t header_flags;
} srv_lease_ask;

typedef struct srv_lease_stats {
    uint64_t active, waiters, granted, fulfilled, failed, expired, promoted, released;
    uint64_t wait_timeouts, refused;
} srv_lease_stats;

int srv_leases_create(srv_server *srv, size_t max_leases, size_t max_waiters,
                      srv_leases **out);
void srv_leases_destroy(srv_leases *L);

/* Leases fulfilled so far: read before a lookup searches, handed to
 * srv_lease_join. Any thread. */
uint64_t srv_leases_gen(srv_leases *L);

/* A waiter-to-be for a LOOKUP_EX of connection c (its worker's thread);
 * NULL when out of memory. Free it with srv_lease_waiter_free unless
 * srv_lease_join answered SRV_LEASE_WAIT. */
srv_lease_waiter *srv_lease_waiter_new(srv_conn *c, const srv_lease_ask *ask);
void srv_lease_waiter_free(srv_lease_waiter *w);
/* Bytes a waiter holds (charged to its connection while it waits). */
size_t srv_lease_waiter_held(const srv_lease_waiter *w);

/* After a miss: WAIT (w now belongs to the table: start it with
 * srv_lease_waiter_start before returning to the loop), GRANTED
 * (*lease_id), RETRY (search again; at most once), or NONE. */
enum srv_lease_verdict srv_lease_join(srv_leases *L, srv_lease_waiter *w,
                                      uint32_t wait_ms, uint64_t gen_before,
                                      uint64_t *lease_id);

/* Starts a waiting request's deadline timer. Its worker's thread. */
void srv_lease_waiter_start(srv_lease_waiter *w);

/* A STORE_EX with lease_id was acknowledged: every waiter is answered with
 * entry (a reference is taken for each) or a lease of its own. NOT_FOUND
 * when the namespace has no such lease. Any thread. */
int srv_lease_fulfil(srv_leases *L, const uint8_t *ns, uint8_t len, uint64_t lease_id,
                     cache_entry *entry, const float *vec, uint16_t dim);

/* The lease failed (LEASE_RELEASE, a failed STORE_EX): a waiter is
 * promoted. NOT_FOUND when the namespace has no such lease. */
int srv_lease_release(srv_leases *L, const uint8_t *ns, uint8_t len, uint64_t lease_id);

/* Connection c is closing: its waiting requests are dropped and the leases
 * it holds fail. Its worker's thread. */
void srv_leases_conn_closed(srv_leases *L, const srv_conn *c);

/* Fails the leases whose time has passed (the main loop's tick). */
void srv_leases_expire(srv_leases *L, uint64_t now_ms);

/* A namespace was dropped: its leases end and their waiters get MISS. */
void srv_leases_ns_dropped(srv_leases *L, const uint8_t *ns, uint8_t len);

/* The server stops: every waiter is answered MISS, no lease is granted
 * any more. */
void srv_leases_close(srv_leases *L);

void srv_leases_stats(srv_leases *L, srv_lease_stats *out);

/* ---- deferred replies owed outside the commit thread (srv-conn.c) ---------- */

/* The connection owes one more reply, and holds held bytes until it is
 * sent. Worker thread. */
void srv_conn_defer(srv_conn *c, size_t held);

/* The buffer to encode a deferred reply into, or NULL when the connection
 * is gone (encode nothing). Worker thread. */
proto_buf *srv_conn_deferred_out(srv_conn *c);

/* Ends a reply begun with srv_conn_defer: rc is the encoder's result (not
 * 0: the connection is closed). The reply is written with the others of
 * this wake-up (srv_conn_flush_completed). c may be freed here. */
void srv_conn_deferred_end(srv_conn *c, size_t held, int rc);

#endif
