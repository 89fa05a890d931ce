/* srv-conn.c: one client connection on a worker loop -- reading and framing,
 * handing frames to the dispatcher, batching replies into writes,
 * backpressure, the worker's memory budget and idle timeout, and AUTH
 * verdicts delayed by the guard.
 *
 * Frames are processed as soon as they are complete; all replies produced
 * by one read callback go out in a single uv_write, which is what makes
 * pipelining cheap. When a connection's unsent bytes pass max_outbuf the
 * worker stops reading from it (and stops processing frames it already
 * has) until the client drains its replies.
 *
 * Memory: reads land in the worker's shared buffer, and a connection keeps
 * a buffer of its own only while it holds part of a frame, so idle
 * connections cost no buffer. Every byte a connection holds (its read
 * buffer, replies not yet written, STOREs waiting for the commit thread)
 * is charged to its worker, whose budget is --max-client-memory divided by
 * the number of workers. Past half the budget, frames larger than the
 * shared buffer are refused BUSY, and connections that already have
 * replies or writes outstanding stop being read; past the whole budget,
 * every connection stops being read until the budget is back under it
 * (the worker's tick retries paused connections). */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "srv-private.h"

#define RBUF_SLACK (16u * 1024u)

typedef struct conn_write {
    uv_write_t req;
    srv_conn *conn;
    uint8_t *data;
    size_t len;
} conn_write;

static void conn_process(srv_conn *c);

uint32_t srv_conn_max_frame(const srv_conn *c) {
    const srv_config *cfg = c->w->srv->cfg;
    if (c->w->srv->auth_required && !c->authed && cfg->max_frame > SRV_PREAUTH_MAX_FRAME)
        return SRV_PREAUTH_MAX_FRAME;
    return cfg->max_frame;
}

/* Charges (or, negative, returns) bytes held by c to its worker. */
static void conn_charge(srv_conn *c, ptrdiff_t bytes) {
    c->held += (size_t)bytes;
    c->w->held += (size_t)bytes;
}

/* Replaces c's own read buffer (NULL, cap 0 frees it), keeping the
 * charge right. The shared buffer is never freed here. */
static void conn_set_rbuf(srv_conn *c, uint8_t *buf, size_t cap) {
    if (c->rbuf != c->w->rshared) {
        conn_charge(c, -(ptrdiff_t)c->rcap);
        if (c->rbuf != buf) free(c->rbuf);
    }
    c->rbuf = buf;
    c->rcap = cap;
    if (buf != c->w->rshared) conn_charge(c, (ptrdiff_t)cap);
}

/* Makes c's read buffer its own and at least need bytes. Returns 0 or
 * DEJA_ERR_NOMEM. */
static int conn_reserve(srv_conn *c, size_t need) {
    if (c->rbuf != c->w->rshared && c->rcap >= need) return 0;
    size_t cap = RBUF_SLACK;
    while (cap < need)
        cap *= 2;
    uint8_t *buf;
    if (c->rbuf == c->w->rshared) {
        buf = malloc(cap);
        if (buf && c->rlen) memcpy(buf, c->rbuf, c->rlen);
    } else {
        buf = realloc(c->rbuf, cap);
    }
    if (!buf) return DEJA_ERR_NOMEM;
    if (c->rbuf != c->w->rshared) {
        /* realloc took the old block: account without freeing it again. */
        conn_charge(c, -(ptrdiff_t)c->rcap);
        c->rbuf = NULL;
        c->rcap = 0;
    }
    conn_set_rbuf(c, buf, cap);
    return 0;
}

void srv_conn_release(srv_conn *c) {
    if (c->handle_closed && c->deferred == 0) free(c);
}

static void on_close(uv_handle_t *h) {
    srv_conn *c = h->data;
    srv_worker *w = c->w;
    if (w->srv->leases) srv_leases_conn_closed(w->srv->leases, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    atomic_fetch_sub(&w->srv->conns_open, 1);
    atomic_fetch_sub(&w->srv->conns_live, 1);
    if (c->rbuf) conn_set_rbuf(c, NULL, 0);
    proto_buf_free(&c->out);
    /* Writes still in the commit thread keep the struct alive. */
    c->handle_closed = 1;
    srv_conn_release(c);
    srv_worker_maybe_finish(w);
}

/* A closing connection goes once nothing is owed to it. */
static int conn_drained(const srv_conn *c) {
    return c->in_flight == 0 && c->deferred == 0;
}

static void conn_close_now(srv_conn *c) {
    if (uv_is_closing(&c->h.handle)) return;
    uv_close(&c->h.handle, on_close);
}

static void conn_stop_reading(srv_conn *c) {
    if (c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    srv_conn *c = h->data;
    if (!c->rbuf) {
        /* Nothing partial held: read into the worker's shared buffer. */
        buf->base = (char *)c->w->rshared;
        buf->len = SRV_RBUF_MIN;
        return;
    }
    /* conn_process has already sized the buffer for a frame whose header
     * is here; otherwise keep some room for what comes next. */
    if (c->rcap == c->rlen && conn_reserve(c, c->rlen + RBUF_SLACK) != 0) {
        buf->base = NULL;
        buf->len = 0; /* libuv reports UV_ENOBUFS; we close */
        return;
    }
    buf->base = (char *)c->rbuf + c->rlen;
    buf->len = c->rcap - c->rlen;
}

/* Whether a connection must not take another frame now: its own backlog
 * is too large; or its worker is past half its budget and this connection
 * has replies or writes outstanding; or its worker is past its whole
 * budget. Its write completions, its commit completions and the worker's
 * tick all try to resume it. */
static int conn_must_pause(const srv_conn *c) {
    const srv_worker *w = c->w;
    if (c->in_flight + c->out.len > w->srv->cfg->max_outbuf ||
        c->deferred >= SRV_MAX_DEFERRED || w->held > w->budget)
        return 1;
    return w->held > w->budget / 2 && (c->in_flight + c->out.len > 0 || c->deferred > 0);
}

/* Resumes a connection paused by backpressure once its backlog (unsent
 * replies, replies owed by the commit thread) has halved. */
static void conn_maybe_resume(srv_conn *c) {
    srv_worker *w = c->w;
    if (c->paused && c->in_flight + c->out.len <= w->srv->cfg->max_outbuf / 2 &&
        c->deferred <= SRV_MAX_DEFERRED / 2 && w->held <= w->budget) {
        c->paused = 0;
        conn_process(c); /* frames that arrived while paused */
    }
}

static void on_write(uv_write_t *req, int status) {
    conn_write *wr = (conn_write *)req;
    srv_conn *c = wr->conn;
    c->in_flight -= wr->len;
    conn_charge(c, -(ptrdiff_t)wr->len);
    free(wr->data);
    free(wr);
    if (uv_is_closing(&c->h.handle)) return;
    c->last_active_ms = srv_now_ms();
    if (status < 0) {
        conn_close_now(c);
        return;
    }
    if (c->closing) {
        if (conn_drained(c)) conn_close_now(c);
        return;
    }
    conn_maybe_resume(c);
}

/* Hands every reply buffered so far to one uv_write. */
static void conn_flush(srv_conn *c) {
    if (c->out.len == 0) return;
    conn_write *wr = malloc(sizeof *wr);
    if (!wr) {
        conn_close_now(c);
        return;
    }
    wr->conn = c;
    wr->data = c->out.data;
    wr->len = c->out.len;
    proto_buf_init(&c->out);
    uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)wr->len);
    c->in_flight += wr->len;
    conn_charge(c, (ptrdiff_t)wr->len);
    atomic_fetch_add_explicit(&c->w->srv->bytes_out, wr->len, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->w->srv->reply_writes, 1, memory_order_relaxed);
    int rc = uv_write(&wr->req, &c->h.stream, &b, 1, on_write);
    if (rc < 0) {
        c->in_flight -= wr->len;
        conn_charge(c, -(ptrdiff_t)wr->len);
        free(wr->data);
        free(wr);
        conn_close_now(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_start_reading(srv_conn *c) {
    if (!c->reading && !c->closing && !c->paused && !c->auth_wait) {
        if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0) c->reading = 1;
    }
}

/* A stream error: answer once with the reason, then close after sending. */
static void conn_fail(srv_conn *c, const proto_header *hdr, int err) {
    atomic_fetch_add(&c->w->srv->frame_errors, 1);
    srv_count_error(c->w->srv, err);
    const char *msg = deja_strerror(err);
    proto_encode_error(&c->out, hdr ? hdr->opcode : 0, hdr ? hdr->request_id : 0, err,
                       msg);
    c->closing = 1;
    c->rlen = 0;
    conn_stop_reading(c);
    conn_flush(c);
    if (conn_drained(c)) conn_close_now(c);
}

/* A frame whose header is here but whose body is not: make room for all
 * of it at once, if the worker's budget allows. Returns 0, or a stream
 * error (BUSY, NOMEM) for conn_fail. */
static int conn_admit_frame(srv_conn *c, const proto_header *hdr) {
    size_t frame = PROTO_HEADER_SIZE + (size_t)hdr->body_len;
    if (c->rbuf != c->w->rshared && c->rcap >= frame) return 0;
    if (frame > SRV_RBUF_MIN) {
        srv_worker *w = c->w;
        size_t growth = frame - (c->rbuf == w->rshared ? 0 : c->rcap);
        if (w->held + growth > w->budget / 2) {
            atomic_fetch_add(&w->srv->frames_busy, 1);
            return DEJA_ERR_BUSY;
        }
    }
    return conn_reserve(c, frame);
}

static void conn_process(srv_conn *c) {
    srv_server *srv = c->w->srv;
    size_t off = 0;
    while (!c->closing && !c->auth_wait) {
        if (conn_must_pause(c)) {
            c->paused = 1;
            break;
        }
        if (off == c->rlen) break;
        proto_header hdr;
        memset(&hdr, 0, sizeof hdr);
        int r =
            proto_parse_frame(c->rbuf + off, c->rlen - off, srv_conn_max_frame(c), &hdr);
        if (r == 0 && c->rlen - off >= PROTO_HEADER_SIZE) {
            /* Move the partial frame to the front, then size its buffer. */
            if (off) {
                memmove(c->rbuf, c->rbuf + off, c->rlen - off);
                c->rlen -= off;
                off = 0;
            }
            int rc = conn_admit_frame(c, &hdr);
            if (rc) {
                conn_fail(c, &hdr, rc);
                return;
            }
        }
        if (r == 0) break;
        if (r < 0) {
            int have_hdr = c->rlen - off >= PROTO_HEADER_SIZE;
            conn_fail(c, have_hdr ? &hdr : NULL, r);
            return;
        }
        srv_req req = {
            .srv = srv,
            .w = c->w,
            .conn = c,
            .hdr = &hdr,
            .body = c->rbuf + off + PROTO_HEADER_SIZE,
            .out = &c->out,
        };
        atomic_fetch_add_explicit(&srv->requests, 1, memory_order_relaxed);
        c->last_active_ms = srv_now_ms();
        int rc = srv_dispatch(&req);
        off += (size_t)r;
        if (rc < 0 || req.close_after) {
            c->closing = 1;
            conn_stop_reading(c);
        }
    }
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    /* An own buffer with nothing in it goes: the next read lands in the
     * shared one. */
    if (c->rlen == 0 && c->rbuf && c->rbuf != c->w->rshared) conn_set_rbuf(c, NULL, 0);
    conn_flush(c);
    if (c->closing) {
        if (conn_drained(c)) conn_close_now(c);
        return;
    }
    if (c->paused || c->auth_wait)
        conn_stop_reading(c);
    else
        conn_start_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    srv_conn *c = s->data;
    srv_worker *w = c->w;
    if (nread == UV_EOF) {
        /* The client will send nothing more (it may have only shut down its
         * writing side): finish what it sent, send every reply it is owed,
         * then close. A partial frame is dropped. */
        conn_stop_reading(c);
        c->closing = 1;
        if (c->rbuf && c->rbuf != w->rshared) conn_set_rbuf(c, NULL, 0);
        c->rlen = 0;
        if (conn_drained(c)) conn_close_now(c);
        return;
    }
    if (nread < 0) {
        /* Reset, or ENOBUFS: nothing more will be read. */
        conn_stop_reading(c);
        conn_close_now(c);
        return;
    }
    if (nread == 0) return;
    atomic_fetch_add_explicit(&w->srv->bytes_in, (uint64_t)nread, memory_order_relaxed);
    if (buf->base == (char *)w->rshared) {
        c->rbuf = w->rshared;
        c->rcap = SRV_RBUF_MIN;
    }
    c->rlen += (size_t)nread;
    conn_process(c);
    if (c->rbuf == w->rshared) {
        /* Keep only the partial frame, in a buffer of its own. */
        c->rbuf = NULL;
        size_t left = c->rlen;
        c->rcap = 0;
        c->rlen = 0;
        if (left && !c->closing) {
            uint8_t *own = malloc(left + RBUF_SLACK);
            if (!own) {
                conn_close_now(c);
                return;
            }
            memcpy(own, w->rshared, left);
            conn_set_rbuf(c, own, left + RBUF_SLACK);
            c->rlen = left;
        }
    }
}

/* The AUTH guard's notion of where a connection comes from. */
static void conn_source(srv_conn *c, int is_pipe, int fd) {
    srv_source *src = &c->source;
    memset(src, 0, sizeof *src);
    if (is_pipe) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        src->family = 'u';
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            memcpy(src->addr, &cred.uid, sizeof cred.uid);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) {
        src->family = 4;
        memcpy(src->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const uint8_t *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, v4mapped, 12) == 0) {
            src->family = 4;
            memcpy(src->addr, a + 12, 4);
        } else {
            src->family = 6;
            memcpy(src->addr, a, 8); /* the /64 */
        }
    }
}

void srv_conn_accept(srv_worker *w, const srv_handoff *h) {
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(h->fd);
        atomic_fetch_sub(&w->srv->conns_live, 1);
        return;
    }
    c->w = w;
    c->last_active_ms = srv_now_ms();
    /* Without authentication every connection may do everything. */
    c->scope.rights = SRV_RIGHTS_ALL;
    c->authed = !w->srv->auth_required;
    proto_buf_init(&c->out);
    int rc;
    if (h->is_pipe) {
        uv_pipe_init(&w->loop, &c->h.pipe, 0);
        rc = uv_pipe_open(&c->h.pipe, h->fd);
    } else {
        uv_tcp_init(&w->loop, &c->h.tcp);
        rc = uv_tcp_open(&c->h.tcp, h->fd);
        if (rc == 0) uv_tcp_nodelay(&c->h.tcp, 1);
    }
    if (rc == 0) conn_source(c, h->is_pipe, h->fd);
    c->h.handle.data = c;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add(&w->srv->conns_open, 1);
    atomic_fetch_add(&w->srv->conns_total, 1);
    if (rc < 0) {
        srv_log(SRV_LOG_WARN, "cannot adopt socket: %s", uv_strerror(rc));
        close(h->fd);
        conn_close_now(c);
        return;
    }
    conn_start_reading(c);
}

/* ---- AUTH verdicts delayed by the guard ---------------------------------- */

struct srv_auth_wait {
    uv_timer_t timer;
    srv_conn *conn;
    uint32_t request_id;
    size_t len; /* as presented; bytes past SRV_TOKEN_MAX_LEN never match */
    uint8_t token[SRV_TOKEN_MAX_LEN];
};

static void auth_wait_closed(uv_handle_t *h) {
    struct srv_auth_wait *aw = h->data;
    srv_conn *c = aw->conn;
    memset(aw->token, 0, sizeof aw->token);
    free(aw);
    c->deferred--;
    if (!c->handle_closed && c->closing && conn_drained(c)) conn_close_now(c);
    srv_conn_release(c);
}

/* Ends a wait: with the verdict (evaluate 1) or unevaluated (0). */
static void auth_wait_finish(srv_conn *c, int evaluate) {
    struct srv_auth_wait *aw = c->auth_wait;
    srv_server *s = c->w->srv;
    c->auth_wait = NULL;
    uv_timer_stop(&aw->timer);
    uv_close((uv_handle_t *)&aw->timer, auth_wait_closed);
    if (!evaluate || c->handle_closed || uv_is_closing(&c->h.handle)) {
        srv_auth_guard_verdict(s->guard, &c->source, -1, srv_now_ms());
        return;
    }
    srv_scope scope;
    int ok = srv_auth_check(s, aw->token, aw->len, &scope);
    srv_auth_guard_verdict(s->guard, &c->source, ok, srv_now_ms());
    if (ok) {
        c->authed = 1;
        c->scope = scope;
        c->scope_gen = atomic_load(&s->tokens_gen);
        atomic_fetch_add(&s->auth_ok, 1);
        proto_encode_empty_resp(&c->out, PROTO_OP_AUTH, aw->request_id);
    } else {
        atomic_fetch_add(&s->auth_failed, 1);
        srv_log_limited(&s->log_auth, SRV_LOG_WARN, "AUTH failed (connection closed)");
        proto_encode_error(&c->out, PROTO_OP_AUTH, aw->request_id, DEJA_ERR_AUTH_FAILED,
                           deja_strerror(DEJA_ERR_AUTH_FAILED));
        c->closing = 1;
    }
    conn_flush(c);
    if (c->closing) {
        if (conn_drained(c)) conn_close_now(c);
    } else {
        conn_process(c); /* frames pipelined behind the AUTH */
    }
}

static void on_auth_timer(uv_timer_t *t) {
    struct srv_auth_wait *aw = t->data;
    auth_wait_finish(aw->conn, 1);
}

int srv_conn_defer_auth(srv_conn *c, uint32_t request_id, const uint8_t *token,
                        size_t len, uint64_t delay_ms) {
    struct srv_auth_wait *aw = calloc(1, sizeof *aw);
    if (!aw) return DEJA_ERR_NOMEM;
    aw->conn = c;
    aw->request_id = request_id;
    aw->len = len;
    memcpy(aw->token, token, len < SRV_TOKEN_MAX_LEN ? len : SRV_TOKEN_MAX_LEN);
    uv_timer_init(&c->w->loop, &aw->timer);
    aw->timer.data = aw;
    uv_timer_start(&aw->timer, on_auth_timer, delay_ms, 0);
    c->auth_wait = aw;
    c->deferred++; /* the struct lives until the timer handle is closed */
    return 0;
}

/* ---- the worker's tick ---------------------------------------------------- */

void srv_conn_tick(srv_worker *w) {
    atomic_store(&w->held_seen, w->held);
    uint64_t now = srv_now_ms();
    uint64_t idle_ms = (uint64_t)w->srv->cfg->idle_timeout_s * 1000u;
    for (srv_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (uv_is_closing(&c->h.handle)) continue;
        /* Idle: no complete frame and no completed write for idle_ms, and
         * nothing owed to it by the server. Covers silent clients, clients
         * that trickle a frame, and clients that never read their replies. */
        if (idle_ms && c->deferred == 0 && now - c->last_active_ms > idle_ms) {
            atomic_fetch_add(&w->srv->conns_idle_closed, 1);
            conn_stop_reading(c);
            conn_close_now(c);
            continue;
        }
        /* Paused connections whose own backlog is gone resume here once
         * the worker is back under its budget. */
        if (c->paused) conn_maybe_resume(c);
    }
}

void srv_conn_close_all(srv_worker *w, int force) {
    for (srv_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->auth_wait) auth_wait_finish(c, 0);
        if (uv_is_closing(&c->h.handle)) continue;
        conn_stop_reading(c);
        c->closing = 1;
        if (force || conn_drained(c)) conn_close_now(c);
    }
}

/* ---- replies owed by the commit thread ------------------------------------ */

static int encode_reply(srv_conn *c, const srv_reply_write *rw, int rc, uint64_t id) {
    if (rc) {
        if (rc < DEJA_ERR_WIRE_MIN) rc = DEJA_ERR_INTERNAL;
        srv_count_error(c->w->srv, rc);
        return proto_encode_error(&c->out, rw->opcode, rw->request_id, rc,
                                  deja_strerror(rc));
    }
    switch (rw->reply) {
    case SRV_REPLY_STORE: /* STORE or STORE_EX */
        return proto_encode_u64_resp(&c->out, rw->opcode, rw->request_id, id);
    case SRV_REPLY_U64:
        return proto_encode_u64_resp(&c->out, rw->opcode, rw->request_id, rw->value);
    case SRV_REPLY_POLICY:
        return proto_encode_ns_policy_resp(&c->out, rw->request_id, &rw->policy);
    case SRV_REPLY_EMPTY: break;
    }
    return proto_encode_empty_resp(&c->out, rw->opcode, rw->request_id);
}

/* The completion of a reply write, on its connection's worker: a STORE is
 * published (durable now, so visible), then the reply is encoded; it is
 * written with the others of this wake-up (srv_conn_flush_completed). */
static void reply_done(srv_write *write) {
    srv_reply_write *rw = (srv_reply_write *)write;
    srv_conn *c = rw->conn;
    srv_worker *w = c->w;
    int rc = write->result;
    uint64_t id = 0;
    if (rw->reply == SRV_REPLY_STORE) {
        /* A lease ends with its STORE_EX: fulfilled once the entry is
         * visible (so a lookup that finds no lease finds the entry), or
         * failed. */
        cache_entry *leased = NULL;
        uint32_t dim = 0;
        if (rw->lease_id && rc == 0) {
            const cache_entry_image *img = cache_pending_entry(rw->pending);
            dim = img->dim;
            memcpy(w->vec, img->vector, (size_t)dim * sizeof(float));
            leased = cache_pending_ref(rw->pending);
        }
        if (rc == 0)
            rc = cache_publish(w->srv->cache, rw->pending, &id);
        else
            cache_discard(rw->pending);
        if (rw->lease_id) {
            const uint8_t *ns = (const uint8_t *)rw->lease_ns;
            if (rc == 0)
                srv_lease_fulfil(w->srv->leases, ns, rw->lease_ns_len, rw->lease_id,
                                 leased, w->vec, (uint16_t)dim);
            else
                srv_lease_release(w->srv->leases, ns, rw->lease_ns_len, rw->lease_id);
        }
        if (leased) cache_entry_release(leased);
        srv_hist_add(&w->srv->store_hist, srv_now_ns() - rw->t0_ns);
    }
    /* The request's bytes no longer wait: return their charge. */
    if (rw->held) conn_charge(c, -(ptrdiff_t)rw->held);
    c->deferred--;
    if (!c->handle_closed && !uv_is_closing(&c->h.handle)) {
        if (encode_reply(c, rw, rc, id) != 0) {
            conn_close_now(c);
        } else if (!c->flush_queued) {
            c->flush_queued = 1;
            c->flush_next = w->flush_list;
            w->flush_list = c;
        }
    }
    srv_conn_release(c);
    free(rw);
}

/* The namespace record a write carried is on disk: later writes need not
 * carry it. Commit thread. */
static void reply_committed(srv_write *write) {
    srv_reply_write *rw = (srv_reply_write *)write;
    if (write->result || write->ops[0].kind != STORE_OP_PUT_NS) return;
    if (rw->pending)
        cache_pending_ns_persisted(rw->pending);
    else
        cache_ns_persisted(rw->conn->w->srv->cache, write->ops[0].ns->ns_id);
}

void srv_conn_submit_reply(srv_req *r, srv_reply_write *rw) {
    rw->conn = r->conn;
    rw->request_id = r->hdr->request_id;
    rw->opcode = r->hdr->opcode;
    rw->t0_ns = srv_now_ns();
    rw->base.w = r->w;
    rw->base.done = reply_done;
    rw->base.committed = reply_committed;
    if (rw->held) conn_charge(r->conn, (ptrdiff_t)rw->held);
    r->conn->deferred++;
    srv_writer_submit(r->srv->writer, &rw->base);
}

void srv_conn_flush_completed(srv_worker *w) {
    srv_conn *c = w->flush_list;
    w->flush_list = NULL;
    while (c) {
        srv_conn *next = c->flush_next;
        c->flush_queued = 0;
        c->flush_next = NULL;
        if (!uv_is_closing(&c->h.handle)) {
            conn_flush(c);
            if (c->closing && conn_drained(c))
                conn_close_now(c);
            else
                conn_maybe_resume(c);
        }
        c = next;
    }
}

/* ---- replies deferred by the lease table (srv-lease.c) ----------------------- */

void srv_conn_defer(srv_conn *c, size_t held) {
    conn_charge(c, (ptrdiff_t)held);
    c->deferred++;
}

proto_buf *srv_conn_deferred_out(srv_conn *c) {
    return c->handle_closed || uv_is_closing(&c->h.handle) ? NULL : &c->out;
}

void srv_conn_deferred_end(srv_conn *c, size_t held, int rc) {
    srv_worker *w = c->w;
    conn_charge(c, -(ptrdiff_t)held);
    c->deferred--;
    if (!c->handle_closed && !uv_is_closing(&c->h.handle)) {
        if (rc != 0) {
            conn_close_now(c);
        } else if (!c->flush_queued) {
            c->flush_queued = 1;
            c->flush_next = w->flush_list;
            w->flush_list = c;
        }
    }
    srv_conn_release(c);
}
