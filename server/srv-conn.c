/* srv-conn.c: one client connection on a worker loop -- reading and framing,
 * handing frames to the dispatcher, batching replies into writes, and
 * backpressure.
 *
 * Frames are processed as soon as they are complete; all replies produced
 * by one read callback go out in a single uv_write, which is what makes
 * pipelining cheap. When a connection's unsent bytes pass max_outbuf the
 * worker stops reading from it (and stops processing frames it already
 * has) until the client drains its replies. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srv-private.h"

#define RBUF_MIN (64u * 1024u)
#define RBUF_SHRINK (1024u * 1024u)

typedef struct conn_write {
    uv_write_t req;
    srv_conn *conn;
    uint8_t *data;
    size_t len;
} conn_write;

static void conn_process(srv_conn *c);

uint32_t srv_conn_max_frame(const srv_conn *c) {
    const srv_config *cfg = c->w->srv->cfg;
    if (cfg->auth_token && !c->authed && cfg->max_frame > SRV_PREAUTH_MAX_FRAME)
        return SRV_PREAUTH_MAX_FRAME;
    return cfg->max_frame;
}

void srv_conn_release(srv_conn *c) {
    if (c->handle_closed && c->deferred == 0) free(c);
}

static void on_close(uv_handle_t *h) {
    srv_conn *c = h->data;
    srv_worker *w = c->w;
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    atomic_fetch_sub(&w->srv->conns_open, 1);
    free(c->rbuf);
    c->rbuf = NULL;
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
    size_t need = c->rlen + RBUF_MIN;
    /* When a large frame's header is here, make room for all of it at once
     * instead of growing in small steps. The parser has already bounded
     * body_len by the connection's maximum frame size. */
    proto_header hdr;
    int r = c->rlen ? proto_parse_frame(c->rbuf, c->rlen, srv_conn_max_frame(c),
                                        &hdr)
                    : 0;
    if (r == 0 && c->rlen >= PROTO_HEADER_SIZE) {
        size_t frame = PROTO_HEADER_SIZE + (size_t)hdr.body_len;
        if (frame > need) need = frame;
    }
    if (need > c->rcap) {
        size_t cap = c->rcap ? c->rcap : RBUF_MIN;
        while (cap < need) cap *= 2;
        uint8_t *grown = realloc(c->rbuf, cap);
        if (!grown) {
            buf->base = NULL;
            buf->len = 0; /* libuv reports UV_ENOBUFS; we close */
            return;
        }
        c->rbuf = grown;
        c->rcap = cap;
    }
    buf->base = (char *)c->rbuf + c->rlen;
    buf->len = c->rcap - c->rlen;
}

/* Resumes a connection paused by backpressure once its backlog (unsent
 * replies, replies owed by the commit thread) has halved. */
static void conn_maybe_resume(srv_conn *c) {
    if (c->paused && c->in_flight + c->out.len <= c->w->srv->cfg->max_outbuf / 2 &&
        c->deferred <= SRV_MAX_DEFERRED / 2) {
        c->paused = 0;
        conn_process(c); /* frames that arrived while paused */
    }
}

static void on_write(uv_write_t *req, int status) {
    conn_write *wr = (conn_write *)req;
    srv_conn *c = wr->conn;
    c->in_flight -= wr->len;
    free(wr->data);
    free(wr);
    if (uv_is_closing(&c->h.handle)) return;
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
    int rc = uv_write(&wr->req, &c->h.stream, &b, 1, on_write);
    if (rc < 0) {
        c->in_flight -= wr->len;
        free(wr->data);
        free(wr);
        conn_close_now(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_start_reading(srv_conn *c) {
    if (!c->reading && !c->closing && !c->paused) {
        if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0) c->reading = 1;
    }
}

/* A stream error: answer once with the reason, then close after sending. */
static void conn_fail(srv_conn *c, const proto_header *hdr, int err) {
    atomic_fetch_add(&c->w->srv->frame_errors, 1);
    const char *msg = deja_strerror(err);
    proto_encode_error(&c->out, hdr ? hdr->opcode : 0, hdr ? hdr->request_id : 0,
                       err, msg);
    c->closing = 1;
    c->rlen = 0;
    conn_stop_reading(c);
    conn_flush(c);
    if (conn_drained(c)) conn_close_now(c);
}

static void conn_process(srv_conn *c) {
    srv_server *srv = c->w->srv;
    size_t off = 0;
    while (!c->closing) {
        if (c->in_flight + c->out.len > srv->cfg->max_outbuf ||
            c->deferred >= SRV_MAX_DEFERRED) {
            c->paused = 1;
            break;
        }
        proto_header hdr;
        memset(&hdr, 0, sizeof hdr);
        int r = proto_parse_frame(c->rbuf + off, c->rlen - off,
                                  srv_conn_max_frame(c), &hdr);
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
    if (c->rlen == 0 && c->rcap > RBUF_SHRINK) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
    conn_flush(c);
    if (c->closing) {
        if (conn_drained(c)) conn_close_now(c);
        return;
    }
    if (c->paused) conn_stop_reading(c);
    else conn_start_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    srv_conn *c = s->data;
    if (nread < 0) {
        /* EOF, reset, or ENOBUFS: nothing more will be read. */
        conn_stop_reading(c);
        conn_close_now(c);
        return;
    }
    c->rlen += (size_t)nread;
    conn_process(c);
}

void srv_conn_accept(srv_worker *w, const srv_handoff *h) {
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(h->fd);
        return;
    }
    c->w = w;
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

void srv_conn_close_all(srv_worker *w, int force) {
    for (srv_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (uv_is_closing(&c->h.handle)) continue;
        conn_stop_reading(c);
        c->closing = 1;
        if (force || conn_drained(c)) conn_close_now(c);
    }
}

static int encode_completion(srv_conn *c, const srv_wop *op, int rc, uint64_t id) {
    if (rc) {
        if (rc < DEJA_ERR_WIRE_MIN) rc = DEJA_ERR_INTERNAL;
        return proto_encode_error(&c->out, op->opcode, op->request_id, rc,
                                  deja_strerror(rc));
    }
    switch (op->opcode) {
    case PROTO_OP_STORE: return proto_encode_store_resp(&c->out, op->request_id, id);
    case PROTO_OP_FLUSH:
    case PROTO_OP_NS_DROP:
        return proto_encode_u64_resp(&c->out, op->opcode, op->request_id, op->removed);
    default: return proto_encode_empty_resp(&c->out, op->opcode, op->request_id);
    }
}

void srv_conn_complete(srv_wop *op) {
    srv_conn *c = op->conn;
    int rc = op->result;
    uint64_t id = 0;
    if (op->opcode == PROTO_OP_STORE) {
        /* Durable now: make it visible, then acknowledge. */
        if (rc == 0) rc = cache_publish(op->w->srv->cache, op->pending, &id);
        else cache_discard(op->pending);
    }
    if (c) {
        c->deferred--;
        if (!c->handle_closed && !uv_is_closing(&c->h.handle)) {
            if (encode_completion(c, op, rc, id) != 0) conn_close_now(c);
            else conn_flush(c);
            if (c->closing && conn_drained(c)) conn_close_now(c);
            else conn_maybe_resume(c);
        }
        srv_conn_release(c);
    }
    free(op->ns_rec);
    free(op);
}
