/* deja-pool.c: deja_pool -- connections shared by many threads, per-call
 * deadlines, and the circuit breaker that makes the client fail open.
 *
 * One mutex guards the idle stack, the connection count, the breaker and
 * the counters. It is never held while waiting on the network (connecting,
 * a request, even the poll() that checks an idle connection), so a thread
 * stuck on a slow server never delays the fail-fast path of another; the
 * only system calls under it are the close() of idle connections when the
 * breaker opens. A connection in use belongs to the thread that took it,
 * which needs no lock to use it.
 *
 * The breaker is a count of consecutive failures with three states:
 * closed (calls go through), open (calls fail at once until the cool-down
 * ends), half-open (one probe call goes through; its outcome closes or
 * re-opens). Open -> half-open happens lazily, at the first call after the
 * cool-down, so nothing runs in the background. */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deja-private.h"

#define DEFAULT_POOL_SIZE 8
#define MAX_POOL_SIZE 65536
#define DEFAULT_CONNECT_MS 100
#define DEFAULT_LOOKUP_MS 50
#define DEFAULT_WRITE_MS 1000
#define DEFAULT_BREAKER_FAILURES 5
#define DEFAULT_COOLDOWN_MS 1000
/* Long enough to cover a typical LLM call, so that a caller missing
 * right behind another gets its answer rather than fetching again. */
#define DEFAULT_LEASE_WAIT_MS 10000

struct deja_pool {
    char *addr;
    char *token;
    uint32_t size;
    int connect_ms, lookup_ms, write_ms;
    uint32_t breaker_failures;
    int cooldown_ms;
    int lease_wait_ms; /* 0 = get_or_fetch takes no leases */
    int lease_ms;      /* 0 = the server's default */
    int64_t (*clock_ms)(void *);
    void *clock_ctx;

    pthread_mutex_t mu;
    pthread_cond_t slot_freed; /* a connection went idle or was closed */
    /* Everything below is guarded by mu. */
    deja_client **idle; /* stack of idle connections, capacity size */
    uint32_t n_idle;
    uint32_t n_open; /* idle + in use + being opened */
    int state;       /* enum deja_breaker_state; OPEN turns HALF_OPEN lazily */
    int probing;     /* the half-open probe is running */
    uint32_t consecutive;
    int64_t opened_at; /* breaker clock */
    deja_pool_status counters;
};

/* Messages go to the calling thread's buffer (deja__thread_err), not to
 * the pool: a pool is shared, and a per-pool message would be overwritten
 * by other threads before it could be read. */
static int pool_errf(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int pool_errf(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(deja__thread_err(), DEJA__THREAD_ERR_SIZE, fmt, ap);
    va_end(ap);
    return code;
}

static void pool_err_clear(void) {
    deja__thread_err()[0] = 0;
}

const char *deja_pool_last_error(void) {
    return deja__thread_err();
}

static int64_t breaker_now(const deja_pool *p) {
    return p->clock_ms ? p->clock_ms(p->clock_ctx) : deja__now_ms();
}

/* How a finished call moves the breaker. */
enum outcome { OUTCOME_NEUTRAL, OUTCOME_SUCCESS, OUTCOME_FAILURE };

/* Failures say the server is unreachable, unhealthy or not speaking our
 * protocol. Every other reply from the server proves it alive, even an
 * error about the request; errors found before anything was sent prove
 * nothing either way. */
static enum outcome classify_call(int rc) {
    switch (rc) {
    case 0: return OUTCOME_SUCCESS;
    case DEJA_ERR_TIMEOUT:
    case DEJA_ERR_CONNECT:
    case DEJA_ERR_CLOSED:
    case DEJA_ERR_IO:
    case DEJA_ERR_PROTOCOL:
    case DEJA_ERR_BUSY:
    case DEJA_ERR_SHUTTING_DOWN: return OUTCOME_FAILURE;
    case DEJA_ERR_INVALID_ARG:
    case DEJA_ERR_NOMEM:
    case DEJA_ERR_TOO_LARGE:
    case DEJA_ERR_UNAVAILABLE: return OUTCOME_NEUTRAL;
    default: return rc >= DEJA_ERR_WIRE_MIN && rc < 0 ? OUTCOME_SUCCESS : OUTCOME_NEUTRAL;
    }
}

/* A connection that could not be set up is a failure whatever the reason:
 * also a refused token or protocol version, which every later connect
 * would meet again, so the breaker spares the server the retries. */
static enum outcome classify_connect(int rc) {
    return rc == DEJA_ERR_NOMEM || rc == DEJA_ERR_INVALID_ARG ? OUTCOME_NEUTRAL
                                                              : OUTCOME_FAILURE;
}

/* ---- create / destroy ------------------------------------------------------ */

static int option_ms(int v, int def) {
    return v > 0 ? v : def;
}

int deja_pool_create(const char *url, const deja_pool_options *opts, deja_pool **out) {
    if (out == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    char err[512];
    if (deja__addr_check(url, err, sizeof err) != 0)
        return pool_errf(DEJA_ERR_INVALID_ARG, "%s", err);
    deja_pool_options o = {0};
    if (opts) o = *opts;
    if (o.connect_timeout_ms < 0 || o.lookup_timeout_ms < 0 || o.write_timeout_ms < 0 ||
        o.breaker_cooldown_ms < 0 || o.size > MAX_POOL_SIZE || o.lease_ms < 0 ||
        (o.lease_wait_ms < 0 && o.lease_wait_ms != DEJA_LEASES_OFF))
        return pool_errf(DEJA_ERR_INVALID_ARG, "negative timeout or size over %d",
                         MAX_POOL_SIZE);

    deja_pool *p = calloc(1, sizeof *p);
    if (p == NULL) return pool_errf(DEJA_ERR_NOMEM, "out of memory");
    p->size = o.size ? o.size : DEFAULT_POOL_SIZE;
    p->connect_ms = option_ms(o.connect_timeout_ms, DEFAULT_CONNECT_MS);
    p->lookup_ms = option_ms(o.lookup_timeout_ms, DEFAULT_LOOKUP_MS);
    p->write_ms = option_ms(o.write_timeout_ms, DEFAULT_WRITE_MS);
    p->breaker_failures =
        o.breaker_failures ? o.breaker_failures : DEFAULT_BREAKER_FAILURES;
    p->cooldown_ms = option_ms(o.breaker_cooldown_ms, DEFAULT_COOLDOWN_MS);
    p->lease_wait_ms = o.lease_wait_ms == DEJA_LEASES_OFF
                           ? 0
                           : option_ms(o.lease_wait_ms, DEFAULT_LEASE_WAIT_MS);
    p->lease_ms = o.lease_ms;
    p->clock_ms = o.clock_ms;
    p->clock_ctx = o.clock_ctx;
    p->addr = strdup(url);
    p->token = o.auth_token ? strdup(o.auth_token) : NULL;
    p->idle = calloc(p->size, sizeof *p->idle);
    int mu_ok = 0, cv_ok = 0;
    if (p->addr && (p->token || !o.auth_token) && p->idle) {
        mu_ok = pthread_mutex_init(&p->mu, NULL) == 0;
        /* Waits for a free connection end at a monotonic deadline, like
         * every other wait in libdeja. */
        pthread_condattr_t ca;
        if (mu_ok && pthread_condattr_init(&ca) == 0) {
            cv_ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                    pthread_cond_init(&p->slot_freed, &ca) == 0;
            pthread_condattr_destroy(&ca);
        }
    }
    if (!cv_ok) {
        if (mu_ok) pthread_mutex_destroy(&p->mu);
        free(p->addr);
        free(p->token);
        free(p->idle);
        free(p);
        return pool_errf(DEJA_ERR_NOMEM, "out of memory");
    }
    p->state = DEJA_BREAKER_CLOSED;
    pool_err_clear();
    *out = p;
    return 0;
}

void deja_pool_destroy(deja_pool *p) {
    if (p == NULL) return;
    for (uint32_t i = 0; i < p->n_idle; i++)
        deja_close(p->idle[i]);
    pthread_cond_destroy(&p->slot_freed);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    if (p->token)
        memset(p->token, 0, strlen(p->token)); /* do not leave it in freed memory */
    free(p->token);
    free(p->addr);
    free(p);
}

/* ---- taking and giving back a connection ----------------------------------- */

typedef struct pool_call {
    deja_client *c;
    int probe;    /* this call is the half-open probe */
    int overflow; /* may open a connection past size rather than wait */
} pool_call;

/* Breaker check at the start of a call; under mu. 0 = go ahead. */
static int breaker_admit_locked(deja_pool *p, pool_call *pc) {
    if (p->state == DEJA_BREAKER_OPEN) {
        int64_t left = p->opened_at + p->cooldown_ms - breaker_now(p);
        if (left > 0) {
            p->counters.fast_fails++;
            return pool_errf(DEJA_ERR_UNAVAILABLE,
                             "circuit breaker open after %u consecutive failures "
                             "(%lld ms of cool-down left)",
                             p->consecutive, (long long)left);
        }
        p->state = DEJA_BREAKER_HALF_OPEN;
        p->probing = 0;
    }
    if (p->state == DEJA_BREAKER_HALF_OPEN) {
        if (p->probing) {
            p->counters.fast_fails++;
            return pool_errf(DEJA_ERR_UNAVAILABLE,
                             "circuit breaker half-open: another call is probing");
        }
        p->probing = 1;
        pc->probe = 1;
    }
    return 0;
}

/* Closes every idle connection when the breaker opens: they lead to a
 * server presumed down, and the probe must test a fresh connection. Under
 * mu; close() of a socket does not wait. */
static void close_idle_locked(deja_pool *p) {
    for (uint32_t i = 0; i < p->n_idle; i++)
        deja_close(p->idle[i]);
    p->n_open -= p->n_idle;
    p->n_idle = 0;
}

/* Applies a call's outcome to the breaker and the counters; under mu. */
static void breaker_record_locked(deja_pool *p, const pool_call *pc, enum outcome o,
                                  int rc) {
    if (rc == DEJA_ERR_TIMEOUT) p->counters.timeouts++;
    if (o == OUTCOME_SUCCESS) {
        /* Once the breaker has opened, only the probe may close it: a call
         * admitted before the trip that happens to succeed says little
         * about a server that just failed N times, and letting it close
         * the breaker would make a flapping server skip the cool-down. */
        if (p->state == DEJA_BREAKER_CLOSED || pc->probe) {
            p->consecutive = 0;
            p->state = DEJA_BREAKER_CLOSED;
        }
    } else if (o == OUTCOME_FAILURE) {
        p->counters.failures++;
        p->consecutive++;
        int trip =
            (p->state == DEJA_BREAKER_HALF_OPEN && pc->probe) ||
            (p->state == DEJA_BREAKER_CLOSED && p->consecutive >= p->breaker_failures);
        if (trip) {
            p->state = DEJA_BREAKER_OPEN;
            p->opened_at = breaker_now(p);
            p->counters.trips++;
            close_idle_locked(p);
        }
    }
    if (pc->probe) p->probing = 0;
}

/* Tells threads waiting for a connection that one is free: one of them,
 * or all when the breaker just closed the idle connections. Under mu. */
static void wake_waiters_locked(deja_pool *p) {
    if (p->state == DEJA_BREAKER_OPEN)
        pthread_cond_broadcast(&p->slot_freed);
    else
        pthread_cond_signal(&p->slot_freed);
}

/* Opens a new connection for a call ending at deadline. Connecting is
 * capped by connect_ms as well, so a slow connect leaves a long call
 * (a store) time for its request. */
static int pool_connect(deja_pool *p, int64_t deadline, deja_client **out) {
    int64_t connect_deadline = deja__now_ms() + p->connect_ms;
    if (connect_deadline > deadline) connect_deadline = deadline;
    char err[DEJA__THREAD_ERR_SIZE];
    int rc = deja__client_open(p->addr, connect_deadline, connect_deadline, p->write_ms,
                               p->token, out, err, sizeof err);
    if (rc != 0) pool_errf(rc, "%s", err);
    return rc;
}

/* Takes a connection for a call ending at deadline: an idle one that is
 * still sound, a new one while fewer than size are open, or the first
 * that another thread gives back. */
static int pool_acquire(deja_pool *p, int64_t deadline, int overflow, pool_call *pc) {
    memset(pc, 0, sizeof *pc);
    pc->overflow = overflow;
    pthread_mutex_lock(&p->mu);
    p->counters.calls++;
    int rc = breaker_admit_locked(p, pc);
    if (rc != 0) {
        pthread_mutex_unlock(&p->mu);
        return rc;
    }
    for (;;) {
        if (p->n_idle > 0) {
            deja_client *c = p->idle[--p->n_idle];
            pthread_mutex_unlock(&p->mu);
            /* An idle connection has nothing to read unless the server
             * closed it (restart, shutdown): such a connection would fail
             * the call, so drop it and look again. */
            if (!deja__conn_readable_now(c->fd)) {
                pc->c = c;
                return 0;
            }
            deja_close(c);
            pthread_mutex_lock(&p->mu);
            p->n_open--;
            continue;
        }
        /* A call that ends a lease never waits for a connection: those in
         * use may all be waiting for that very lease to end. */
        if (p->n_open < p->size || pc->overflow) {
            p->n_open++;
            p->counters.connects++;
            pthread_mutex_unlock(&p->mu);
            rc = pool_connect(p, deadline, &pc->c);
            if (rc == 0) return 0;
            pthread_mutex_lock(&p->mu);
            p->n_open--;
            p->counters.connect_failures++;
            breaker_record_locked(p, pc, classify_connect(rc), rc);
            wake_waiters_locked(p);
            pthread_mutex_unlock(&p->mu);
            return rc;
        }
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000),
                              .tv_nsec = (long)(deadline % 1000) * 1000000L};
        if (pthread_cond_timedwait(&p->slot_freed, &p->mu, &ts) != 0 &&
            deja__now_ms() >= deadline) {
            /* Local congestion says nothing about the server: neutral. */
            breaker_record_locked(p, pc, OUTCOME_NEUTRAL, DEJA_ERR_TIMEOUT);
            uint32_t size = p->size;
            pthread_mutex_unlock(&p->mu);
            return pool_errf(DEJA_ERR_TIMEOUT,
                             "all %u connections stayed busy until the deadline", size);
        }
    }
}

/* Gives the connection back (or closes it) and records the outcome. */
static void pool_release(deja_pool *p, pool_call *pc, enum outcome o, int rc) {
    deja_client *c = pc->c;
    int keep = deja__client_reusable(c);
    pthread_mutex_lock(&p->mu);
    breaker_record_locked(p, pc, o, rc);
    /* While open the pool keeps no connections (see close_idle_locked),
     * and never more than size (an overflow connection goes). */
    if (keep && p->state != DEJA_BREAKER_OPEN && p->n_open <= p->size) {
        p->idle[p->n_idle++] = c;
        c = NULL;
    } else {
        p->n_open--;
    }
    wake_waiters_locked(p);
    pthread_mutex_unlock(&p->mu);
    deja_close(c);
}

/* One pool call: op runs on a connection with the call's deadline and
 * returns its code. A batch also sets *stream_rc to the state of its
 * stream (0 or the code that broke it), which is what the breaker judges:
 * its return value may be one lookup's DIM_MISMATCH. */
#define STREAM_RC_UNSET 1
typedef int (*pool_op)(deja_client *c, void *arg, int64_t deadline, int *stream_rc);

static int pool_run_ex(deja_pool *p, int timeout_ms, int overflow, pool_op op,
                       void *arg) {
    if (p == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "pool is NULL");
    int64_t deadline = deja__now_ms() + timeout_ms;
    pool_call pc;
    int rc = pool_acquire(p, deadline, overflow, &pc);
    if (rc != 0) return rc;
    deja__client_set_deadline(pc.c, deadline);
    int stream_rc = STREAM_RC_UNSET;
    rc = op(pc.c, arg, deadline, &stream_rc);
    if (rc != 0)
        pool_errf(rc, "%s", deja_last_error(pc.c));
    else
        pool_err_clear();
    enum outcome o = classify_call(stream_rc == STREAM_RC_UNSET ? rc : stream_rc);
    pool_release(p, &pc, o, rc);
    return rc;
}

static int pool_run(deja_pool *p, int timeout_ms, pool_op op, void *arg) {
    return pool_run_ex(p, timeout_ms, 0, op, arg);
}

int deja_pool_get_status(deja_pool *p, deja_pool_status *out) {
    if (p == NULL || out == NULL) return DEJA_ERR_INVALID_ARG;
    pthread_mutex_lock(&p->mu);
    *out = p->counters;
    out->breaker = p->state;
    out->consecutive_failures = p->consecutive;
    out->open_remaining_ms = 0;
    if (p->state == DEJA_BREAKER_OPEN) {
        int64_t left = p->opened_at + p->cooldown_ms - breaker_now(p);
        /* Past the cool-down the next call probes: that is half-open. */
        if (left > 0)
            out->open_remaining_ms = left;
        else
            out->breaker = DEJA_BREAKER_HALF_OPEN;
    }
    out->connections = p->n_open;
    out->idle = p->n_idle;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* ---- the calls ------------------------------------------------------------- */

static int op_ping(deja_client *c, void *arg, int64_t deadline, int *breaker_rc) {
    return deja_ping(c);
}

int deja_pool_ping(deja_pool *p) {
    return pool_run(p, p ? p->lookup_ms : 0, op_ping, NULL);
}

typedef struct lookup_args {
    const char *ns;
    const char *prompt;
    const float *vector;
    uint32_t dim;
    float threshold;
    uint32_t k;
    unsigned flags;
    deja_result **out;
} lookup_args;

static int op_lookup(deja_client *c, void *arg, int64_t deadline, int *breaker_rc) {
    lookup_args *a = arg;
    return deja__lookup_prompt(c, a->ns, a->prompt, a->vector, a->dim, a->threshold, a->k,
                               a->flags, a->out);
}

int deja__pool_lookup_prompt(deja_pool *p, const char *ns, const char *prompt,
                             const float *vector, uint32_t dim, float threshold,
                             uint32_t k, unsigned flags, deja_result **out) {
    if (out == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    lookup_args a = {ns, prompt, vector, dim, threshold, k, flags, out};
    int rc = pool_run(p, p ? p->lookup_ms : 0, op_lookup, &a);
    if (rc != 0) {
        deja_result_free(*out);
        *out = deja__miss_result(rc);
    }
    return rc;
}

int deja_pool_lookup(deja_pool *p, const char *ns, const float *vector, uint32_t dim,
                     float threshold, uint32_t k, unsigned flags, deja_result **out) {
    return deja__pool_lookup_prompt(p, ns, NULL, vector, dim, threshold, k, flags, out);
}

typedef struct store_args {
    const deja_store_req *req;
    uint64_t *id_out;
} store_args;

static int op_store(deja_client *c, void *arg, int64_t deadline, int *breaker_rc) {
    store_args *a = arg;
    return deja_store(c, a->req, a->id_out);
}

int deja_pool_store(deja_pool *p, const deja_store_req *req, uint64_t *id_out) {
    store_args a = {req, id_out};
    return pool_run_ex(p, p ? p->write_ms : 0, req && req->lease_id != 0, op_store, &a);
}

/* ---- version 2: leases and policy ------------------------------------------ */

typedef struct lookup_ex_args {
    deja_lookup_ex_req req;
    int64_t v1_deadline; /* a plain LOOKUP ends by then; 0 = the call's */
    int lookup_ms;       /* the round trip's share of the deadline */
    deja_result **out;
} lookup_ex_args;

static int op_lookup_ex(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    lookup_ex_args *a = arg;
    if (a->req.flags & DEJA_LOOKUP_LEASE) {
        /* The server may answer at the end of its wait: ask for no more
         * than leaves a round trip's time before the call's deadline,
         * whatever waiting for a connection took. */
        int64_t left = deadline - deja__now_ms() - a->lookup_ms;
        if (left < (int64_t)a->req.wait_ms)
            a->req.wait_ms = left > 0 ? (uint32_t)left : 0;
    }
    return deja__lookup_ex_on(c, &a->req, a->v1_deadline, a->out);
}

static int pool_lookup_ex(deja_pool *p, lookup_ex_args *a) {
    deja_result **out = a->out;
    *out = NULL;
    int64_t timeout = p->lookup_ms;
    if (a->req.flags & DEJA_LOOKUP_LEASE) timeout += a->req.wait_ms;
    int rc = pool_run(p, timeout > INT32_MAX ? INT32_MAX : (int)timeout, op_lookup_ex, a);
    if (rc != 0) {
        deja_result_free(*out);
        *out = deja__miss_result(rc);
    }
    return rc;
}

int deja_pool_lookup_ex(deja_pool *p, const deja_lookup_ex_req *req, deja_result **out) {
    if (out == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (p == NULL || req == NULL) {
        *out = deja__miss_result(DEJA_ERR_INVALID_ARG);
        return pool_errf(DEJA_ERR_INVALID_ARG, "%s is NULL", p ? "request" : "pool");
    }
    lookup_ex_args a = {.req = *req, .lookup_ms = p->lookup_ms, .out = out};
    return pool_lookup_ex(p, &a);
}

int deja__pool_lookup_lease(deja_pool *p, const char *ns, const char *prompt,
                            const float *vector, uint32_t dim, float threshold,
                            deja_result **out) {
    if (p == NULL || p->lease_wait_ms == 0)
        return deja__pool_lookup_prompt(p, ns, prompt, vector, dim, threshold, 1, 0, out);
    lookup_ex_args a = {
        .req = {.ns = ns,
                .vector = vector,
                .dim = dim,
                .threshold = threshold,
                .k = 1,
                .flags = DEJA_LOOKUP_LEASE,
                .prompt = prompt,
                .wait_ms = (uint32_t)p->lease_wait_ms,
                .lease_ms = (uint32_t)p->lease_ms},
        /* A version-1 server gets the LOOKUP of before, in its time. */
        .v1_deadline = deja__now_ms() + p->lookup_ms,
        .lookup_ms = p->lookup_ms,
        .out = out,
    };
    return pool_lookup_ex(p, &a);
}

typedef struct lease_args {
    const char *ns;
    uint64_t lease_id;
    const deja_ns_policy *policy;
    deja_ns_policy *policy_out;
} lease_args;

static int op_lease_release(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    lease_args *a = arg;
    return deja_lease_release(c, a->ns, a->lease_id);
}

int deja_pool_lease_release(deja_pool *p, const char *ns, uint64_t lease_id) {
    lease_args a = {.ns = ns, .lease_id = lease_id};
    return pool_run_ex(p, p ? p->write_ms : 0, 1, op_lease_release, &a);
}

static int op_policy_get(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    lease_args *a = arg;
    return deja_ns_policy_get(c, a->ns, a->policy_out);
}

static int op_policy_set(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    lease_args *a = arg;
    return deja_ns_policy_set(c, a->ns, a->policy, a->policy_out);
}

int deja_pool_ns_policy_get(deja_pool *p, const char *ns, deja_ns_policy *out) {
    if (out == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "out is NULL");
    lease_args a = {.ns = ns, .policy_out = out};
    return pool_run(p, p ? p->write_ms : 0, op_policy_get, &a);
}

int deja_pool_ns_policy_set(deja_pool *p, const char *ns, const deja_ns_policy *policy,
                            deja_ns_policy *out) {
    if (policy == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "policy is NULL");
    lease_args a = {.ns = ns, .policy = policy, .policy_out = out};
    return pool_run(p, p ? p->write_ms : 0, op_policy_set, &a);
}

typedef struct ns_args {
    const char *ns;
    uint64_t id;
    uint64_t *count_out;
    deja_stats **stats_out;
} ns_args;

static int op_delete(deja_client *c, void *arg, int64_t deadline, int *breaker_rc) {
    ns_args *a = arg;
    return deja_delete(c, a->ns, a->id);
}

static int op_flush(deja_client *c, void *arg, int64_t deadline, int *breaker_rc) {
    ns_args *a = arg;
    return deja_flush(c, a->ns, a->count_out);
}

static int op_stats(deja_client *c, void *arg, int64_t deadline, int *breaker_rc) {
    ns_args *a = arg;
    return deja_stats_get(c, a->ns, a->stats_out);
}

int deja_pool_delete(deja_pool *p, const char *ns, uint64_t id) {
    ns_args a = {.ns = ns, .id = id};
    return pool_run(p, p ? p->write_ms : 0, op_delete, &a);
}

int deja_pool_flush(deja_pool *p, const char *ns, uint64_t *removed) {
    ns_args a = {.ns = ns, .count_out = removed};
    return pool_run(p, p ? p->write_ms : 0, op_flush, &a);
}

int deja_pool_stats(deja_pool *p, const char *ns, deja_stats **out) {
    if (out == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    ns_args a = {.ns = ns, .stats_out = out};
    return pool_run(p, p ? p->write_ms : 0, op_stats, &a);
}

/* ---- batches --------------------------------------------------------------- */

typedef struct lookup_many_args {
    const deja_lookup_req *reqs;
    size_t n;
    deja_result **out;
} lookup_many_args;

static int op_lookup_many(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    lookup_many_args *a = arg;
    return deja__lookup_many_on(c, a->reqs, a->n, a->out, deadline, stream_rc);
}

int deja_pool_lookup_many(deja_pool *p, const deja_lookup_req *reqs, size_t n,
                          deja_result **out) {
    if (out == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "out is NULL");
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (n == 0) return 0;
    lookup_many_args a = {reqs, n, out};
    int rc = pool_run(p, p ? p->lookup_ms : 0, op_lookup_many, &a);
    /* Refused before the batch ran (breaker, no connection): every lookup
     * gets that miss. A batch that ran has filled every slot. */
    for (size_t i = 0; i < n; i++)
        if (out[i] == NULL) out[i] = deja__miss_result(rc);
    return rc;
}

typedef struct store_many_args {
    const deja_store_req *reqs;
    size_t n;
    uint64_t *ids;
    int *codes;
    int ran; /* the batch ran and filled ids and codes */
} store_many_args;

static int op_store_many(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    store_many_args *a = arg;
    a->ran = 1;
    return deja__store_many_on(c, a->reqs, a->n, a->ids, a->codes, deadline, stream_rc);
}

int deja_pool_store_many(deja_pool *p, const deja_store_req *reqs, size_t n,
                         uint64_t *ids, int *codes) {
    if (n == 0) return 0;
    store_many_args a = {reqs, n, ids, codes, 0};
    int rc = pool_run(p, p ? p->write_ms : 0, op_store_many, &a);
    for (size_t i = 0; !a.ran && i < n; i++) {
        if (ids) ids[i] = 0;
        if (codes) codes[i] = rc;
    }
    return rc;
}

/* ---- namespaces ------------------------------------------------------------- */

typedef struct ns_op_args {
    const char *ns;
    const deja_ns_config *cfg;
    uint64_t *removed;
    deja_ns_list **list;
    deja_ns_info **info;
} ns_op_args;

static int op_ns_create(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    ns_op_args *a = arg;
    return deja_ns_create(c, a->ns, a->cfg);
}

static int op_ns_list(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    return deja_ns_list_get(c, ((ns_op_args *)arg)->list);
}

static int op_ns_info(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    ns_op_args *a = arg;
    return deja_ns_info_get(c, a->ns, a->info);
}

static int op_ns_drop(deja_client *c, void *arg, int64_t deadline, int *stream_rc) {
    ns_op_args *a = arg;
    return deja_ns_drop(c, a->ns, a->removed);
}

int deja_pool_ns_create(deja_pool *p, const char *ns, const deja_ns_config *cfg) {
    ns_op_args a = {.ns = ns, .cfg = cfg};
    return pool_run(p, p ? p->write_ms : 0, op_ns_create, &a);
}

int deja_pool_ns_list(deja_pool *p, deja_ns_list **out) {
    if (out == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    ns_op_args a = {.list = out};
    return pool_run(p, p ? p->write_ms : 0, op_ns_list, &a);
}

int deja_pool_ns_info(deja_pool *p, const char *ns, deja_ns_info **out) {
    if (out == NULL) return pool_errf(DEJA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    ns_op_args a = {.ns = ns, .info = out};
    return pool_run(p, p ? p->write_ms : 0, op_ns_info, &a);
}

int deja_pool_ns_drop(deja_pool *p, const char *ns, uint64_t *removed) {
    ns_op_args a = {.ns = ns, .removed = removed};
    return pool_run(p, p ? p->write_ms : 0, op_ns_drop, &a);
}
