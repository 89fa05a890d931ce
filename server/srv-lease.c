/* srv-lease.c: semantic single-flight -- the pending leases of every
 * namespace and the LOOKUP_EX requests waiting on them (docs/PROTOCOL.md
 * 5.15).
 *
 * A lease is granted to a LOOKUP_EX that missed and asked for one: it holds
 * the query vector it was granted for, the namespace's name, its holder's
 * connection (only compared, never followed: a closing connection removes
 * its leases first) and its expiry. A later LOOKUP_EX that misses with a
 * vector at least its effective threshold similar to a pending lease's
 * waits on that lease: its reply is deferred until the lease is fulfilled
 * (a STORE_EX with the lease id is acknowledged), fails (released, a failed
 * STORE_EX, its holder's connection closes, it expires: one waiter is
 * promoted to hold it), or its own deadline passes.
 *
 * The table is small and bounded (--max-leases, at most a sixteenth of it
 * in one namespace, so 256 of the default 4,096), so it is one array
 * searched exactly under one mutex: only lookups that miss and ask for a
 * lease, and STOREs that carry one, take the mutex; hits never do. A
 * waiter belongs to the worker of its connection: its deadline timer runs
 * there, and whoever detaches it from its lease (under the mutex) decides
 * its answer and posts it to that worker (srv_worker_post), so each waiter
 * is answered exactly once, on its own thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "srv-private.h"
#include "idx.h"

typedef struct srv_lease srv_lease;

static void waiter_posted(srv_write *write);

struct srv_lease {
    uint64_t id;
    uint64_t expires_ms;
    const srv_conn *holder; /* compared only; NULL once its connection closed */
    srv_lease_waiter *waiters;
    unsigned nwaiters;
    uint16_t dim;
    uint8_t ns_len;
    char ns[256];
    float vec[]; /* dim floats, the query it was granted for */
};

struct srv_lease_waiter {
    srv_write base; /* posted to the waiter's worker with its verdict */
    uv_timer_t timer;
    srv_conn *conn;   /* holds a deferred reference */
    srv_lease *lease; /* the lease waited on; NULL once detached (under mu) */
    srv_lease_waiter *next;
    uint32_t request_id;
    uint16_t header_flags; /* of the request: WANT_PROMPT */
    uint64_t deadline_ms;
    uint64_t seq; /* arrival order, for ties in promotion */
    uint32_t lease_ms;
    float threshold;
    size_t held;
    /* The verdict, set by whoever detached the waiter. */
    enum srv_lease_verdict verdict;
    uint64_t lease_id;  /* SRV_LEASE_GRANTED: the lease it now holds */
    cache_entry *entry; /* COALESCED: the stored entry (a reference) */
    float similarity;   /* COALESCED: cosine of the stored vector and ours */
    uint16_t dim;
    uint8_t ns_len;
    char ns[256];
    float vec[]; /* dim floats: the waiter's normalised query */
};

struct srv_leases {
    srv_server *srv;
    pthread_mutex_t mu;
    srv_lease **all;
    size_t count, cap;
    size_t max_leases, max_per_ns, max_waiters;
    size_t nwaiters;
    uint64_t next_seq;
    uint64_t id_counter, id_key;
    int closed;
    atomic_uint_fast64_t fulfilled_gen; /* leases fulfilled, ever */
    atomic_uint_fast64_t granted, fulfilled, failed, expired, promoted;
    atomic_uint_fast64_t wait_timeouts, refused, released;
};

/* A bijection of 64-bit values (splitmix64's finaliser): lease ids are
 * the counter mixed with a random key, so they are unique and a client
 * cannot guess another's from its own. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t new_id_locked(srv_leases *L) {
    uint64_t id;
    do
        id = mix64(++L->id_counter ^ L->id_key);
    while (id == 0);
    return id;
}

int srv_leases_create(srv_server *srv, size_t max_leases, size_t max_waiters,
                      srv_leases **out) {
    srv_leases *L = calloc(1, sizeof *L);
    if (!L) return DEJA_ERR_NOMEM;
    L->srv = srv;
    L->max_leases = max_leases;
    L->max_per_ns = max_leases / 16 ? max_leases / 16 : 1;
    L->max_waiters = max_waiters;
    if (getrandom(&L->id_key, sizeof L->id_key, 0) != (ssize_t)sizeof L->id_key)
        L->id_key = (uint64_t)srv_now_ns() * 0x9e3779b97f4a7c15ull;
    pthread_mutex_init(&L->mu, NULL);
    *out = L;
    return 0;
}

void srv_leases_destroy(srv_leases *L) {
    if (!L) return;
    for (size_t i = 0; i < L->count; i++)
        free(L->all[i]);
    free(L->all);
    pthread_mutex_destroy(&L->mu);
    free(L);
}

uint64_t srv_leases_gen(srv_leases *L) {
    return atomic_load(&L->fulfilled_gen);
}

static int same_ns(const srv_lease *l, const uint8_t *ns, uint8_t len) {
    return l->ns_len == len && memcmp(l->ns, ns, len) == 0;
}

/* Removes lease i from the table (not freed). */
static srv_lease *take_locked(srv_leases *L, size_t i) {
    srv_lease *l = L->all[i];
    L->all[i] = L->all[--L->count];
    return l;
}

static size_t find_locked(srv_leases *L, const uint8_t *ns, uint8_t len, uint64_t id) {
    for (size_t i = 0; i < L->count; i++)
        if (L->all[i]->id == id && same_ns(L->all[i], ns, len)) return i;
    return SIZE_MAX;
}

/* Grants a new lease for vec to holder, or returns 0 when a bound is
 * reached. */
static uint64_t grant_locked(srv_leases *L, const uint8_t *ns, uint8_t len, uint16_t dim,
                             const float *vec, const srv_conn *holder, uint32_t lease_ms,
                             uint64_t now) {
    if (L->closed || L->count >= L->max_leases) return 0;
    size_t in_ns = 0;
    for (size_t i = 0; i < L->count; i++)
        in_ns += same_ns(L->all[i], ns, len);
    if (in_ns >= L->max_per_ns) return 0;
    if (L->count == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 64;
        srv_lease **all = realloc(L->all, cap * sizeof *all);
        if (!all) return 0;
        L->all = all;
        L->cap = cap;
    }
    srv_lease *l = calloc(1, sizeof *l + (size_t)dim * sizeof(float));
    if (!l) return 0;
    l->id = new_id_locked(L);
    l->expires_ms = now + lease_ms;
    l->holder = holder;
    l->dim = dim;
    l->ns_len = len;
    memcpy(l->ns, ns, len);
    memcpy(l->vec, vec, (size_t)dim * sizeof(float));
    L->all[L->count++] = l;
    atomic_fetch_add(&L->granted, 1);
    return l->id;
}

/* A detached waiter goes to the model itself: a lease of its own, or a
 * plain miss when the bounds are reached. */
static void verdict_own_lease_locked(srv_leases *L, srv_lease_waiter *w, uint64_t now) {
    w->lease_id = grant_locked(L, (const uint8_t *)w->ns, w->ns_len, w->dim, w->vec,
                               w->conn, w->lease_ms, now);
    w->verdict = w->lease_id ? SRV_LEASE_GRANTED : SRV_LEASE_NONE;
}

static void unlink_waiter_locked(srv_leases *L, srv_lease_waiter *w) {
    srv_lease *l = w->lease;
    for (srv_lease_waiter **pp = &l->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    w->next = NULL;
    w->lease = NULL;
    l->nwaiters--;
    L->nwaiters--;
}

/* Takes lease i out of the table and frees it; its waiters, detached with
 * verdict NONE (a caller may give them another), go onto *posts. */
static void end_lease_locked(srv_leases *L, size_t i, srv_lease_waiter **posts) {
    srv_lease *l = take_locked(L, i);
    for (srv_lease_waiter *w = l->waiters, *next; w; w = next) {
        next = w->next;
        w->lease = NULL;
        w->verdict = SRV_LEASE_NONE;
        w->next = *posts;
        *posts = w;
        L->nwaiters--;
    }
    free(l);
}

/* Posts a detached waiter to its worker, which answers it. */
static void post(srv_lease_waiter *w) {
    srv_worker_post(w->base.w, &w->base);
}

/* Lease i failed. Its waiter with the furthest deadline (the earliest on a
 * tie) is promoted to hold it under a new id; the lease is gone when
 * nobody waits. The promoted waiter is appended to *posts. */
static void fail_locked(srv_leases *L, size_t i, uint64_t now, srv_lease_waiter **posts) {
    srv_lease *l = L->all[i];
    atomic_fetch_add(&L->failed, 1);
    srv_lease_waiter *best = NULL;
    for (srv_lease_waiter *w = l->waiters; w; w = w->next)
        if (!best || w->deadline_ms > best->deadline_ms ||
            (w->deadline_ms == best->deadline_ms && w->seq < best->seq))
            best = w;
    if (!best) {
        free(take_locked(L, i));
        return;
    }
    unlink_waiter_locked(L, best);
    l->id = new_id_locked(L);
    l->holder = best->conn;
    l->expires_ms = now + best->lease_ms;
    best->verdict = SRV_LEASE_GRANTED;
    best->lease_id = l->id;
    best->next = *posts;
    *posts = best;
    atomic_fetch_add(&L->promoted, 1);
}

static void post_all(srv_lease_waiter *posts) {
    while (posts) {
        srv_lease_waiter *next = posts->next;
        posts->next = NULL;
        post(posts);
        posts = next;
    }
}

srv_lease_waiter *srv_lease_waiter_new(srv_conn *c, const srv_lease_ask *ask) {
    srv_lease_waiter *w = calloc(1, sizeof *w + (size_t)ask->dim * sizeof(float));
    if (!w) return NULL;
    /* Set before the waiter is visible to other threads: they post it. */
    w->base.w = c->w;
    w->base.done = waiter_posted;
    w->conn = c;
    w->request_id = ask->request_id;
    w->header_flags = ask->header_flags;
    w->deadline_ms = srv_now_ms() + ask->wait_ms;
    w->lease_ms = ask->lease_ms;
    w->threshold = ask->threshold;
    w->dim = ask->dim;
    w->ns_len = ask->ns_len;
    memcpy(w->ns, ask->ns, ask->ns_len);
    memcpy(w->vec, ask->vec, (size_t)ask->dim * sizeof(float));
    w->held = sizeof *w + (size_t)ask->dim * sizeof(float);
    return w;
}

enum srv_lease_verdict srv_lease_join(srv_leases *L, srv_lease_waiter *w,
                                      uint32_t wait_ms, uint64_t gen_before,
                                      uint64_t *lease_id) {
    *lease_id = 0;
    uint64_t now = srv_now_ms();
    pthread_mutex_lock(&L->mu);
    if (L->closed) {
        pthread_mutex_unlock(&L->mu);
        return SRV_LEASE_NONE;
    }
    srv_lease *best = NULL;
    float best_sim = 0;
    for (size_t i = 0; i < L->count; i++) {
        srv_lease *l = L->all[i];
        if (l->dim != w->dim || !same_ns(l, (const uint8_t *)w->ns, w->ns_len)) continue;
        float sim = idx_dot(w->vec, l->vec, w->dim);
        if (sim >= w->threshold && (!best || sim > best_sim)) {
            best = l;
            best_sim = sim;
        }
    }
    enum srv_lease_verdict v;
    if (best && wait_ms > 0 && L->nwaiters < L->max_waiters) {
        w->lease = best;
        w->seq = L->next_seq++;
        w->next = best->waiters;
        best->waiters = w;
        best->nwaiters++;
        L->nwaiters++;
        v = SRV_LEASE_WAIT;
    } else if (!best && atomic_load(&L->fulfilled_gen) != gen_before) {
        /* A lease of this server was fulfilled since the caller searched:
         * perhaps the one it would have waited on, whose entry the caller
         * now finds by searching again. */
        v = SRV_LEASE_RETRY;
    } else if (best && wait_ms > 0) {
        atomic_fetch_add(&L->refused, 1); /* too many waiters */
        v = SRV_LEASE_NONE;
    } else {
        *lease_id = grant_locked(L, (const uint8_t *)w->ns, w->ns_len, w->dim, w->vec,
                                 w->conn, w->lease_ms, now);
        v = *lease_id ? SRV_LEASE_GRANTED : SRV_LEASE_NONE;
        if (!*lease_id) atomic_fetch_add(&L->refused, 1);
    }
    pthread_mutex_unlock(&L->mu);
    return v;
}

int srv_lease_fulfil(srv_leases *L, const uint8_t *ns, uint8_t len, uint64_t lease_id,
                     cache_entry *entry, const float *vec, uint16_t dim) {
    uint64_t now = srv_now_ms();
    pthread_mutex_lock(&L->mu);
    size_t i = find_locked(L, ns, len, lease_id);
    if (i == SIZE_MAX || L->all[i]->dim != dim) {
        pthread_mutex_unlock(&L->mu);
        return DEJA_ERR_NOT_FOUND;
    }
    srv_lease_waiter *waiters = NULL;
    end_lease_locked(L, i, &waiters);
    atomic_fetch_add(&L->fulfilled_gen, 1);
    atomic_fetch_add(&L->fulfilled, 1);
    /* Each waiter gets the stored entry if the vector stored is close
     * enough to its own query; otherwise a lease of its own. */
    for (srv_lease_waiter *w = waiters; w; w = w->next) {
        float sim = idx_dot(w->vec, vec, dim);
        if (sim >= w->threshold) {
            w->verdict = SRV_LEASE_COALESCED;
            w->similarity = sim;
            w->entry = cache_entry_ref(entry);
        } else {
            verdict_own_lease_locked(L, w, now);
        }
    }
    pthread_mutex_unlock(&L->mu);
    post_all(waiters);
    return 0;
}

int srv_lease_release(srv_leases *L, const uint8_t *ns, uint8_t len, uint64_t lease_id) {
    srv_lease_waiter *posts = NULL;
    pthread_mutex_lock(&L->mu);
    size_t i = find_locked(L, ns, len, lease_id);
    if (i != SIZE_MAX) {
        atomic_fetch_add(&L->released, 1);
        fail_locked(L, i, srv_now_ms(), &posts);
    }
    pthread_mutex_unlock(&L->mu);
    post_all(posts);
    return i == SIZE_MAX ? DEJA_ERR_NOT_FOUND : 0;
}

void srv_leases_conn_closed(srv_leases *L, const srv_conn *c) {
    srv_lease_waiter *posts = NULL;
    uint64_t now = srv_now_ms();
    pthread_mutex_lock(&L->mu);
    /* Its waiting requests first, so that none of them is promoted: a
     * lease handed to a closed connection would keep the others waiting
     * for nobody. Their answers are dropped by the worker. */
    for (size_t i = 0; i < L->count; i++) {
        srv_lease *l = L->all[i];
        for (srv_lease_waiter *w = l->waiters, *next; w; w = next) {
            next = w->next;
            if (w->conn != c) continue;
            unlink_waiter_locked(L, w);
            w->verdict = SRV_LEASE_NONE;
            w->next = posts;
            posts = w;
        }
    }
    for (size_t i = 0; i < L->count;) {
        if (L->all[i]->holder == c) {
            size_t before = L->count;
            fail_locked(L, i, now, &posts);
            if (L->count == before) i++; /* promoted: the lease stays at i */
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&L->mu);
    post_all(posts);
}

void srv_leases_expire(srv_leases *L, uint64_t now) {
    srv_lease_waiter *posts = NULL;
    pthread_mutex_lock(&L->mu);
    for (size_t i = 0; i < L->count;) {
        if (L->all[i]->expires_ms <= now) {
            atomic_fetch_add(&L->expired, 1);
            size_t before = L->count;
            fail_locked(L, i, now, &posts);
            if (L->count == before) i++;
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&L->mu);
    post_all(posts);
}

void srv_leases_close(srv_leases *L) {
    srv_lease_waiter *posts = NULL;
    pthread_mutex_lock(&L->mu);
    L->closed = 1;
    while (L->count)
        end_lease_locked(L, 0, &posts);
    pthread_mutex_unlock(&L->mu);
    post_all(posts);
}

void srv_leases_ns_dropped(srv_leases *L, const uint8_t *ns, uint8_t len) {
    srv_lease_waiter *posts = NULL;
    pthread_mutex_lock(&L->mu);
    for (size_t i = 0; i < L->count;) {
        if (same_ns(L->all[i], ns, len))
            end_lease_locked(L, i, &posts); /* the last lease moved to i */
        else
            i++;
    }
    pthread_mutex_unlock(&L->mu);
    post_all(posts);
}

void srv_leases_stats(srv_leases *L, srv_lease_stats *out) {
    pthread_mutex_lock(&L->mu);
    out->active = L->count;
    out->waiters = L->nwaiters;
    pthread_mutex_unlock(&L->mu);
    out->granted = atomic_load(&L->granted);
    out->fulfilled = atomic_load(&L->fulfilled);
    out->failed = atomic_load(&L->failed);
    out->expired = atomic_load(&L->expired);
    out->promoted = atomic_load(&L->promoted);
    out->released = atomic_load(&L->released);
    out->wait_timeouts = atomic_load(&L->wait_timeouts);
    out->refused = atomic_load(&L->refused);
}

/* ---- the waiter's side, on its worker ---------------------------------------- */

static void waiter_closed(uv_handle_t *h) {
    srv_lease_waiter *w = h->data;
    if (w->entry) cache_entry_release(w->entry);
    free(w);
}

/* Encodes the waiter's answer (if its connection is still there), counts
 * how the lookup ended, and frees the waiter once its timer is closed. */
static void answer(srv_lease_waiter *w) {
    srv_server *s = w->conn->w->srv;
    uv_timer_stop(&w->timer);
    proto_buf *out = srv_conn_deferred_out(w->conn);
    int rc = 0;
    store_reader *rd = NULL;
    proto_hit hit = {0};
    /* The answer's bytes come from the map; an entry deleted between the
     * fulfilment and now answers a miss. */
    if (out && w->verdict == SRV_LEASE_COALESCED &&
        (store_reader_begin(s->store, &rd) != 0 ||
         srv_persist_read_hit(
             rd, w->entry, (w->header_flags & PROTO_FLAG_WANT_PROMPT) != 0, &hit) != 0))
        w->verdict = SRV_LEASE_NONE;
    cache_count_outcome(s->cache, (const uint8_t *)w->ns, w->ns_len,
                        w->verdict == SRV_LEASE_COALESCED ? CACHE_OUTCOME_COALESCED
                                                          : CACHE_OUTCOME_MISS);
    if (out) {
        proto_lookup_ex_resp resp = {.outcome = PROTO_OUTCOME_MISS};
        uint16_t header_flags = 0;
        if (w->verdict == SRV_LEASE_COALESCED) {
            hit.id = cache_entry_id(w->entry);
            hit.similarity = w->similarity;
            cache_policy pol;
            int changed;
            if (cache_ns_policy(s->cache, (const uint8_t *)w->ns, w->ns_len, NULL, &pol,
                                &changed, NULL) == 0 &&
                pol.gray_band > 0 && w->similarity < pol.gray_band) {
                hit.flags = PROTO_HIT_BORDERLINE;
                header_flags = PROTO_FLAG_BORDERLINE;
            }
            resp.outcome = PROTO_OUTCOME_COALESCED;
            resp.hits = &hit;
            resp.count = 1;
        } else if (w->verdict == SRV_LEASE_GRANTED) {
            resp.outcome = PROTO_OUTCOME_LEASE;
            resp.lease_id = w->lease_id;
        }
        rc = proto_encode_lookup_ex_resp(out, w->request_id, header_flags, &resp);
    }
    store_reader_end(rd);
    srv_conn_deferred_end(w->conn, w->held, rc);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void waiter_posted(srv_write *write) {
    answer((srv_lease_waiter *)write);
}

static void on_deadline(uv_timer_t *t) {
    srv_lease_waiter *w = t->data;
    srv_leases *L = w->conn->w->srv->leases;
    pthread_mutex_lock(&L->mu);
    int mine = w->lease != NULL;
    if (mine) {
        unlink_waiter_locked(L, w);
        atomic_fetch_add(&L->wait_timeouts, 1);
        verdict_own_lease_locked(L, w, srv_now_ms());
    }
    pthread_mutex_unlock(&L->mu);
    /* Not attached any more: its verdict is already posted to this worker. */
    if (!mine) return;
    answer(w);
    srv_conn_flush_completed(w->base.w);
}

void srv_lease_waiter_start(srv_lease_waiter *w) {
    uv_timer_init(&w->base.w->loop, &w->timer);
    w->timer.data = w;
    uint64_t now = srv_now_ms();
    uv_timer_start(&w->timer, on_deadline,
                   w->deadline_ms > now ? w->deadline_ms - now : 0, 0);
}

void srv_lease_waiter_free(srv_lease_waiter *w) {
    free(w);
}

size_t srv_lease_waiter_held(const srv_lease_waiter *w) {
    return w->held;
}
