/* bench-openloop.c: deja-bench server mode's open loop (--rate R) -- one
 * thread drives every connection on a fixed schedule.
 *
 * Request i is due at t0 + i / R, counted over all connections, and goes
 * out on the next connection in turn that has a free slot (at most D in
 * flight on each). Its latency runs from the due time, not from when it
 * left, so a stall of the server shows in the percentiles in full instead
 * of slowing the client down (coordinated omission). How late each
 * request left is its "send lag": the figures are only as good as that is
 * small, so the report prints it beside them.
 *
 * Why one thread: the first open loop ran a thread per connection through
 * libdeja, whose receive waits for a whole frame; on 2 cores, 16 of those
 * threads and dejad's starved each other and sends left milliseconds late
 * (issue #14). Here no call waits on one connection. The sockets are
 * non-blocking (bench-wire.c); one epoll set watches them all and a
 * timerfd for the next wakeup (epoll_wait's own timeout counts whole
 * milliseconds); replies are judged as they arrive, and a request that
 * comes due meanwhile is sent before the next reply is looked at.
 *
 * Being on time while dejad saturates both cores takes more than that.
 * With --sender rt (the default) the thread runs SCHED_FIFO, so that its
 * wakeup preempts dejad's threads instead of queueing behind them for a
 * time slice, and it wakes a little before each due time and polls until
 * then, so that the wakeup's own latency is not in the lag (the window
 * adapts to it: see SPIN_SAMPLES). With --sender normal it keeps the
 * default policy and sleeps until due. Timer slack is 1 ns either way
 * (the default 50 us would be in every lag). A request that finds every
 * slot busy waits for one; its lag says so, and so does a counter.
 *
 * What SCHED_FIFO cannot fix: on a kernel running with preempt=none a
 * woken thread waits until the task on its CPU leaves the kernel, and on a
 * virtual machine an idle virtual CPU can take milliseconds to be woken
 * by its host. The report's wakeup lateness shows both.
 *
 * A connection that fails, or keeps a request past --timeout-ms, is
 * closed, its requests counted as errors or timeouts, and replaced after
 * a pause. The reconnect blocks the thread, which is acceptable on a path
 * that the error counters already report (and the lag shows). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "bench-server-private.h"
#include "bench-wire.h"
#include "bench.h"
#include "proto.h"

/* How long before a due time the rt driver stops sleeping and polls: the
 * window follows the lateness of its recent timer wakeups (the second
 * largest of the last SPIN_SAMPLES, plus a margin), so that it covers what
 * waking costs on this machine now -- tens of microseconds on a busy
 * core, up to milliseconds on a virtual CPU that has to be woken from
 * idle -- but at most SPIN_SHARE of the interval between requests and
 * SPIN_MAX_NS, so that polling never takes more than that share of a core
 * from the server. */
#define SPIN_START_NS 50000ull
#define SPIN_MIN_NS 20000ull
#define SPIN_MAX_NS 500000ull
#define SPIN_MARGIN_NS 20000ull
#define SPIN_SHARE 0.2
#define SPIN_SAMPLES 64
/* Above every SCHED_OTHER thread (all of dejad's), below the kernel's own
 * real-time threads (watchdogs, migration at 99). */
#define RT_PRIORITY 10
#define CONNECT_TIMEOUT_MS 2000
#define RECONNECT_PAUSE_NS 100000000ull
/* Timeouts and reconnects are checked this often. */
#define HOUSEKEEPING_NS 10000000ull
#define MAX_EVENTS 64

typedef struct ol_slot {
    uint32_t request_id;
    uint32_t query;
    uint64_t due_ns;  /* latency and send lag run from here */
    size_t frame_end; /* while unsent: where its frame ends in the output buffer */
    uint8_t busy;
    uint8_t unsent; /* in the ring of unsent frames */
} ol_slot;

/* A connection with `depth` slots. Slot k carries the request ids that
 * are k modulo depth, so a reply finds its slot at once. */
typedef struct ol_conn {
    bench_wire w;   /* w.fd is -1 while the connection is down */
    ol_slot *slots; /* depth of them */
    uint32_t *free; /* stack of free slot indexes: n_free of them */
    uint32_t n_free;
    uint32_t *unsent;    /* ring of the slots whose frame has not all gone, */
    uint32_t unsent_at;  /* in the order they were queued: n_unsent from */
    uint32_t n_unsent;   /* unsent_at on */
    uint32_t in_flight;  /* busy slots */
    uint32_t next_round; /* request id = next_round * depth + slot */
    int watch_out;       /* EPOLLOUT is among its events */
    uint64_t retry_ns;   /* down: when to connect again; UINT64_MAX = never */
} ol_conn;

typedef struct ol_driver {
    bench_ctx *x;
    const bench_opts *o;
    bench_result *r;
    ol_conn *conns;
    uint32_t nconn, depth;
    int ep, timer;
    uint64_t timer_at; /* the timer is armed for this time; 0 = not armed */
    double ns_per_request;
    uint64_t next_i, next_due;      /* the next request of the schedule */
    uint64_t slot_wait_i;           /* 1 + the request last found without a slot */
    int sending;                    /* the schedule has not ended */
    uint32_t in_flight;             /* over all connections */
    uint32_t cursor;                /* round robin: the connection to try first */
    int rt;                         /* SCHED_FIFO: adapt spin_ns */
    uint64_t spin_ns, spin_cap_ns;  /* the polling window, its ceiling */
    uint64_t late_ns[SPIN_SAMPLES]; /* recent timer wakeup lateness */
    uint32_t n_late;
    double spin_sum_ns; /* for the mean window reported */
    uint64_t spin_count;
    uint64_t timeout_ns;
    uint64_t next_check_ns;
    uint64_t finish_ns;
    uint16_t wire_flags;
    uint8_t ns_len;
    proto_hit hits[PROTO_MAX_K];
    deja_hit judged[PROTO_MAX_K];
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    uint8_t vec_le[PROTO_MAX_DIM * 4]; /* the wire wants little-endian floats */
#endif
} ol_driver;

/* ---- errors and connections ------------------------------------------------------*/

static void count_error(ol_driver *d, int rc, const char *what, const char *detail) {
    if (rc == DEJA_ERR_TIMEOUT)
        d->r->timeouts++;
    else
        d->r->errors++;
    if (d->r->errors + d->r->timeouts == 1)
        fprintf(stderr, "deja-bench: %s: %s (%s)\n", what, deja_strerror(rc), detail);
}

/* Puts c's socket in the epoll set (op EPOLL_CTL_ADD) or changes its
 * events (EPOLL_CTL_MOD): always readable, writable only while bytes wait
 * to be sent, so that a writable socket does not wake the loop for
 * nothing. */
static void watch(ol_driver *d, ol_conn *c, int op, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u),
                             .data.u32 = (uint32_t)(c - d->conns)};
    epoll_ctl(d->ep, op, c->w.fd, &ev);
    c->watch_out = out;
}

/* Frees every slot of c (the connection is new or gone). */
static void reset_slots(ol_driver *d, ol_conn *c) {
    memset(c->slots, 0, d->depth * sizeof *c->slots);
    for (uint32_t i = 0; i < d->depth; i++)
        c->free[i] = d->depth - 1 - i;
    c->n_free = d->depth;
    c->unsent_at = c->n_unsent = 0;
    c->in_flight = 0;
}

/* A dead connection takes every request in flight on it along: each is
 * counted as lost the same way (rc). */
static void drop_conn(ol_driver *d, ol_conn *c, int rc, const char *what) {
    char detail[64];
    snprintf(detail, sizeof detail, "%u requests in flight lost", c->in_flight);
    count_error(d, rc, what, detail);
    if (c->in_flight > 1) {
        if (rc == DEJA_ERR_TIMEOUT)
            d->r->timeouts += c->in_flight - 1;
        else
            d->r->errors += c->in_flight - 1;
    }
    d->in_flight -= c->in_flight;
    reset_slots(d, c);
    bench_wire_close(&c->w); /* closing the socket also takes it out of the set */
    c->watch_out = 0;
    c->retry_ns = bench_now_ns() + RECONNECT_PAUSE_NS;
}

static int conn_open(ol_driver *d, ol_conn *c) {
    char err[600];
    int rc = bench_wire_open(&c->w, d->o->addr, d->o->auth_token, CONNECT_TIMEOUT_MS, err,
                             sizeof err);
    if (rc != 0) {
        if (d->r->errors + d->r->timeouts == 0)
            fprintf(stderr, "deja-bench: connect %s: %s (%s)\n", d->o->addr,
                    deja_strerror(rc), err);
        return rc;
    }
    c->next_round = 1;
    watch(d, c, EPOLL_CTL_ADD, 0);
    return 0;
}

/* ---- sending ---------------------------------------------------------------------*/

/* Sends what the socket takes and records the send lag of every request
 * whose frame has now left entirely. */
static void flush_conn(ol_driver *d, ol_conn *c) {
    int rc = bench_wire_flush(&c->w);
    if (rc < 0) {
        drop_conn(d, c, rc, "send lookup");
        return;
    }
    uint64_t now = c->n_unsent ? bench_now_ns() : 0;
    while (c->n_unsent) {
        ol_slot *sl = &c->slots[c->unsent[c->unsent_at]];
        /* rc 0: everything went (and the buffer's offsets restarted). */
        if (rc == 1 && c->w.out_sent < sl->frame_end) break;
        bench_hist_record(&d->r->lag_hist, now - sl->due_ns);
        sl->unsent = 0;
        c->unsent_at = (c->unsent_at + 1) % d->depth;
        c->n_unsent--;
    }
    if (rc != c->watch_out) watch(d, c, EPOLL_CTL_MOD, rc);
}

/* The next connection in turn that is up and has a free slot, or NULL;
 * one whose earlier frames still wait for socket space (the server is not
 * reading it) only when no other will do, so that it does not hold up a
 * request that another connection can carry now. */
static ol_conn *pick_conn(ol_driver *d) {
    for (int backed_up = 0; backed_up < 2; backed_up++) {
        for (uint32_t k = 0; k < d->nconn; k++) {
            uint32_t i = (d->cursor + k) % d->nconn;
            ol_conn *c = &d->conns[i];
            if (c->w.fd >= 0 && c->n_free > 0 && bench_wire_pending(&c->w) == backed_up) {
                d->cursor = (i + 1) % d->nconn;
                return c;
            }
        }
    }
    return NULL;
}

static void send_one(ol_driver *d, ol_conn *c, uint64_t due) {
    const synth_set *s = d->x->s;
    uint32_t q = (uint32_t)(d->next_i % s->nq);
    const float *v = s->queries + (size_t)q * s->dim;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint8_t *wire_vec = (const uint8_t *)v;
#else
    proto_vector_write(d->vec_le, v, (uint16_t)s->dim);
    const uint8_t *wire_vec = d->vec_le;
#endif
    proto_lookup_req req = {.ns = (const uint8_t *)d->o->ns,
                            .ns_len = d->ns_len,
                            .dim = (uint16_t)s->dim,
                            .k = (uint16_t)d->o->k,
                            .threshold = d->o->threshold,
                            .vector = wire_vec};
    uint32_t k = c->free[c->n_free - 1];
    /* Ids restart before they wrap, so that id % depth stays the slot. */
    if (c->next_round >= UINT32_MAX / d->depth) c->next_round = 1;
    uint32_t id = c->next_round++ * d->depth + k;
    size_t before = c->w.out.len;
    int rc = proto_encode_lookup_req(&c->w.out, id, d->wire_flags, &req);
    d->r->sent++;
    if (rc == 0 && c->w.out.len - before > c->w.max_frame) {
        c->w.out.len = before;
        rc = DEJA_ERR_TOO_LARGE;
    }
    if (rc != 0) {
        count_error(d, rc, "send lookup", "the request cannot be encoded");
        return;
    }
    c->n_free--;
    c->slots[k] = (ol_slot){.request_id = id,
                            .query = q,
                            .due_ns = due,
                            .frame_end = c->w.out.len,
                            .busy = 1,
                            .unsent = 1};
    c->unsent[(c->unsent_at + c->n_unsent++) % d->depth] = k;
    c->in_flight++;
    d->in_flight++;
    flush_conn(d, c);
    if (c->w.fd >= 0 && c->n_unsent) d->r->sends_waited_socket++;
}

/* Sends every request that is due, as long as a slot is free; ends the
 * schedule at the duration or count. */
static void send_due(ol_driver *d) {
    while (d->sending) {
        if (d->o->count ? d->next_i >= d->o->count : d->next_due >= d->x->end_ns) {
            d->sending = 0;
            return;
        }
        uint64_t now = bench_now_ns();
        if (now >= d->x->end_ns) {
            /* Behind schedule at the end (connections down): stop anyway. */
            d->sending = 0;
            return;
        }
        if (d->next_due > now) return;
        ol_conn *c = pick_conn(d);
        if (c == NULL) {
            /* Counted once per request, however many times it is tried. */
            if (d->slot_wait_i != d->next_i + 1) d->r->sends_waited_slot++;
            d->slot_wait_i = d->next_i + 1;
            return;
        }
        send_one(d, c, d->next_due);
        d->next_i++;
        d->next_due = d->x->start_ns + (uint64_t)((double)d->next_i * d->ns_per_request);
    }
}

/* ---- receiving -------------------------------------------------------------------*/

static void handle_reply(ol_driver *d, ol_conn *c, const proto_header *h,
                         const uint8_t *body, uint64_t recv_ns) {
    ol_slot *sl = &c->slots[h->request_id % d->depth];
    /* A reply to a request whose frame has not all gone cannot be one. */
    if (!sl->busy || sl->unsent || sl->request_id != h->request_id) {
        count_error(d, DEJA_ERR_PROTOCOL, "receive lookup",
                    "reply to an unknown request");
        return;
    }
    sl->busy = 0;
    c->free[c->n_free++] = h->request_id % d->depth;
    c->in_flight--;
    d->in_flight--;
    d->r->lookups++;
    bench_progress_add(d->x->progress, 1);
    bench_hist_record(&d->r->lookup_hist, recv_ns - sl->due_ns);
    if (h->opcode != PROTO_OP_LOOKUP || !(h->flags & PROTO_FLAG_REPLY)) {
        count_error(d, DEJA_ERR_PROTOCOL, "lookup", "not a LOOKUP reply");
        return;
    }
    if (h->status != 0) {
        const uint8_t *msg = NULL;
        uint16_t len = 0;
        char detail[PROTO_MAX_MESSAGE + 1];
        proto_decode_error(body, h->body_len, &msg, &len);
        snprintf(detail, sizeof detail, "%.*s", (int)len, msg ? (const char *)msg : "");
        count_error(d, proto_status_error(h->status), "lookup", detail);
        return;
    }
    uint16_t count;
    /* A reply carries no more hits than the request's k (PROTOCOL 5.5). */
    if (proto_decode_lookup_resp(body, h->body_len, d->hits, (uint16_t)d->o->k, &count) !=
        0) {
        count_error(d, DEJA_ERR_PROTOCOL, "lookup", "malformed LOOKUP reply");
        return;
    }
    for (uint16_t i = 0; i < count; i++) {
        const proto_hit *p = &d->hits[i];
        d->judged[i] = (deja_hit){
            .id = p->id,
            .similarity = p->similarity,
            .response = (const char *)p->response,
            .response_len = p->response_len,
            .prompt = p->prompt_len ? (const char *)p->prompt : NULL,
            .prompt_len = p->prompt_len,
        };
    }
    bench_judge(d->x, d->r, sl->query, d->judged, count);
}

/* Reads what arrived on c and handles each complete reply; a request that
 * comes due meanwhile goes out before the next reply is judged. */
static void conn_readable(ol_driver *d, ol_conn *c) {
    ssize_t n = bench_wire_fill(&c->w);
    /* One timestamp for everything this read brought: judging the first
     * replies must not add to the latency of the later ones. */
    uint64_t recv_ns = bench_now_ns();
    proto_header h;
    const uint8_t *body;
    int more = 0;
    while (c->w.fd >= 0 && (more = bench_wire_next(&c->w, &h, &body)) == 1) {
        handle_reply(d, c, &h, body, recv_ns);
        send_due(d);
    }
    if (c->w.fd < 0) return;
    if (more < 0)
        drop_conn(d, c, DEJA_ERR_PROTOCOL, "receive lookup");
    else if (n < 0)
        drop_conn(d, c, (int)n, "receive lookup");
}

/* ---- the loop ----------------------------------------------------------------------*/

/* Replaces lost connections and closes those that kept a request too
 * long (a reply that never comes would hold its slot forever). */
static void housekeeping(ol_driver *d, uint64_t now) {
    for (uint32_t i = 0; i < d->nconn; i++) {
        ol_conn *c = &d->conns[i];
        if (c->w.fd < 0) {
            if (d->sending && now >= c->retry_ns && conn_open(d, c) != 0) {
                d->r->errors++;
                c->retry_ns = bench_now_ns() + RECONNECT_PAUSE_NS;
            }
            continue;
        }
        for (uint32_t j = 0; j < d->depth; j++) {
            if (c->slots[j].busy && now - c->slots[j].due_ns > d->timeout_ns) {
                drop_conn(d, c, DEJA_ERR_TIMEOUT, "receive lookup");
                break;
            }
        }
    }
}

static void arm_timer(ol_driver *d, uint64_t at_ns) {
    if (at_ns == d->timer_at) return;
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(at_ns / 1000000000ull),
                                          .tv_nsec = (long)(at_ns % 1000000000ull)}};
    timerfd_settime(d->timer, TFD_TIMER_ABSTIME, &its, NULL);
    d->timer_at = at_ns;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Records how late a timer wakeup was and, for the rt sender, sets the
 * polling window from the recent ones (see SPIN_SAMPLES). */
static void woke_late(ol_driver *d, uint64_t late_ns) {
    bench_hist_record(&d->r->wake_hist, late_ns);
    d->spin_sum_ns += (double)d->spin_ns;
    d->spin_count++;
    if (!d->rt) return;
    d->late_ns[d->n_late++] = late_ns;
    if (d->n_late < SPIN_SAMPLES) return;
    d->n_late = 0;
    qsort(d->late_ns, SPIN_SAMPLES, sizeof d->late_ns[0], cmp_u64);
    /* The second largest: one outlier alone does not widen the window. */
    uint64_t spin = d->late_ns[SPIN_SAMPLES - 2] + SPIN_MARGIN_NS;
    if (spin < SPIN_MIN_NS) spin = SPIN_MIN_NS;
    d->spin_ns = spin < d->spin_cap_ns ? spin : d->spin_cap_ns;
}

/* Waits for the next thing to do -- a reply, a writable socket, the
 * wakeup before the next due time, housekeeping -- and does it. Within
 * spin_ns of a due time it only polls. */
static void wait_and_handle(ol_driver *d) {
    uint64_t now = bench_now_ns();
    int spin = 0;
    int can_send = 0;
    for (uint32_t i = 0; i < d->nconn && !can_send; i++)
        can_send = d->conns[i].w.fd >= 0 && d->conns[i].n_free > 0;
    if (d->sending && can_send) {
        uint64_t wake = d->next_due > d->spin_ns ? d->next_due - d->spin_ns : 0;
        if (wake <= now)
            spin = 1;
        else
            arm_timer(d, wake);
    }
    struct epoll_event evs[MAX_EVENTS];
    int n =
        epoll_wait(d->ep, evs, MAX_EVENTS, spin ? 0 : (int)(HOUSEKEEPING_NS / 1000000));
    uint64_t woke = bench_now_ns();
    for (int i = 0; i < n; i++) {
        uint32_t idx = evs[i].data.u32;
        if (idx == d->nconn) {
            uint64_t ticks;
            if (read(d->timer, &ticks, sizeof ticks) == (ssize_t)sizeof ticks &&
                d->timer_at && woke > d->timer_at)
                woke_late(d, woke - d->timer_at);
            d->timer_at = 0;
            send_due(d);
            continue;
        }
        ol_conn *c = &d->conns[idx];
        if (c->w.fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            conn_readable(d, c);
        if (c->w.fd >= 0 && (evs[i].events & EPOLLOUT)) flush_conn(d, c);
        send_due(d);
    }
}

static void *driver_main(void *arg) {
    ol_driver *d = arg;
    bench_ctx *x = d->x;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    x->start_ns = bench_now_ns();
    x->end_ns =
        d->o->count ? UINT64_MAX : x->start_ns + (uint64_t)(d->o->duration_s * 1e9);
    d->next_due = x->start_ns;
    d->next_check_ns = x->start_ns + HOUSEKEEPING_NS;
    d->sending = 1;
    for (;;) {
        send_due(d);
        uint64_t now = bench_now_ns();
        if (now >= d->next_check_ns) {
            housekeeping(d, now);
            d->next_check_ns = now + HOUSEKEEPING_NS;
        }
        if (!d->sending && d->in_flight == 0) break;
        wait_and_handle(d);
    }
    d->finish_ns = bench_now_ns();
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0)
        d->r->sender_cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                             (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    return NULL;
}

/* Starts the driver thread, SCHED_FIFO for --sender rt when the system
 * allows it (root, or CAP_SYS_NICE, or an RLIMIT_RTPRIO), else with the
 * default policy after one note on stderr. */
static int start_driver(ol_driver *d, pthread_t *t) {
    bench_result *r = d->r;
    if (d->o->sender == BENCH_SENDER_RT) {
        pthread_attr_t a;
        struct sched_param sp = {.sched_priority = RT_PRIORITY};
        pthread_attr_init(&a);
        pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&a, SCHED_FIFO);
        pthread_attr_setschedparam(&a, &sp);
        d->rt = 1;
        d->spin_cap_ns = (uint64_t)(SPIN_SHARE * d->ns_per_request);
        if (d->spin_cap_ns > SPIN_MAX_NS) d->spin_cap_ns = SPIN_MAX_NS;
        d->spin_ns = SPIN_START_NS < d->spin_cap_ns ? SPIN_START_NS : d->spin_cap_ns;
        int rc = pthread_create(t, &a, driver_main, d);
        pthread_attr_destroy(&a);
        if (rc == 0) {
            snprintf(r->sender, sizeof r->sender, "rt");
            return 0;
        }
        fprintf(stderr,
                "deja-bench: note: SCHED_FIFO refused (%s); the open loop runs with the "
                "default scheduling policy (--sender normal)\n",
                strerror(rc));
    }
    d->rt = 0;
    d->spin_ns = 0;
    snprintf(r->sender, sizeof r->sender, "normal");
    return pthread_create(t, NULL, driver_main, d);
}

double bench_openloop_run(bench_ctx *x, bench_result *r) {
    const bench_opts *o = x->o;
    size_t ns_len = strlen(o->ns);
    if (ns_len > PROTO_MAX_NS_LEN ||
        proto_check_ns((const uint8_t *)o->ns, ns_len) != 0) {
        fprintf(stderr, "deja-bench: bad namespace name \"%s\"\n", o->ns);
        return -1;
    }
    ol_driver *d = calloc(1, sizeof *d);
    if (d == NULL) return -1;
    d->x = x;
    d->o = o;
    d->r = r;
    d->nconn = o->connections;
    d->depth = x->depth;
    d->ns_len = (uint8_t)ns_len;
    d->wire_flags = x->by_prompt ? PROTO_FLAG_WANT_PROMPT : 0;
    d->ns_per_request = 1e9 / o->rate;
    d->timeout_ns = (uint64_t)o->timeout_ms * 1000000ull;
    d->ep = epoll_create1(EPOLL_CLOEXEC);
    d->timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    d->conns = calloc(d->nconn, sizeof *d->conns);
    double seconds = -1;
    uint32_t up = 0;
    if (d->ep < 0 || d->timer < 0 || d->conns == NULL) goto out;
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = d->nconn};
    epoll_ctl(d->ep, EPOLL_CTL_ADD, d->timer, &tev);
    for (uint32_t i = 0; i < d->nconn; i++)
        d->conns[i].w.fd = -1;
    for (uint32_t i = 0; i < d->nconn; i++) {
        ol_conn *c = &d->conns[i];
        c->slots = malloc(d->depth * sizeof *c->slots);
        c->free = malloc(d->depth * sizeof *c->free);
        c->unsent = malloc(d->depth * sizeof *c->unsent);
        if (c->slots == NULL || c->free == NULL || c->unsent == NULL) goto out;
        reset_slots(d, c);
    }
    /* As with the closed loop's threads, a connection that cannot be made
     * at the start is an error and stays unused; one lost later is
     * replaced. */
    for (uint32_t i = 0; i < d->nconn; i++) {
        if (conn_open(d, &d->conns[i]) == 0) {
            up++;
        } else {
            d->conns[i].retry_ns = UINT64_MAX;
        }
    }
    if (up == 0) goto out;
    r->errors += d->nconn - up;
    pthread_t t;
    if (start_driver(d, &t) != 0) {
        fprintf(stderr, "deja-bench: cannot start the open-loop thread\n");
        goto out;
    }
    pthread_join(t, NULL);
    seconds = (double)(d->finish_ns - x->start_ns) / 1e9;
    r->spin_us = d->spin_count ? d->spin_sum_ns / (double)d->spin_count / 1000.0 : 0;
out:
    for (uint32_t i = 0; d->conns && i < d->nconn; i++) {
        bench_wire_close(&d->conns[i].w);
        free(d->conns[i].slots);
        free(d->conns[i].free);
        free(d->conns[i].unsent);
    }
    free(d->conns);
    if (d->ep >= 0) close(d->ep);
    if (d->timer >= 0) close(d->timer);
    free(d);
    return seconds;
}
