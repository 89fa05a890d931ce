/* deja-batch.c: pipelined batches on one connection -- deja_lookup_many
 * and deja_store_many, and the engine the pool's batch calls share.
 *
 * A batch sends every request before it needs any reply, so n requests
 * cost about one round trip instead of n. It never blocks on sending
 * alone: one poll() waits for the socket to take more bytes *or* for
 * replies, and replies are read as they come. Sending everything first and
 * reading afterwards would deadlock once the server's replies fill both
 * socket buffers and the server stops reading (it pauses a connection
 * whose unsent replies pass --max-outbuf), with us still blocked sending.
 *
 * Requests get consecutive ids, so a reply finds its request by
 * id - first: the server answers writes out of order (a STORE's reply
 * waits for its commit), and this needs no search. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "deja-private.h"

/* Stop encoding while this many bytes wait to be sent: enough to keep the
 * socket busy, small enough that a huge batch is not encoded up front. */
#define BATCH_WINDOW (256u * 1024u)

/* Largest batch: ids must not wrap, and the state array stays sane. */
#define BATCH_MAX (1u << 31)

/* Ends the batch: every request without a reply fails with rc. */
static int batch_abort(deja_client *c, size_t n, const uint8_t *done, int rc,
                       const deja_batch_ops *ops, void *ctx) {
    if (c->fd >= 0) deja__drop(c, rc, "batch aborted: %s", deja_strerror(rc));
    for (size_t i = 0; i < n; i++)
        if (!done || !done[i]) ops->fail(ctx, i, rc);
    proto_buf_reset(&c->out);
    return rc;
}

/* Takes one reply frame; returns 0, or the code that closed the stream. */
static int batch_take(deja_client *c, uint8_t op, uint32_t first, size_t n, uint8_t *done,
                      size_t *awaiting, const proto_header *h, const uint8_t *body,
                      const deja_batch_ops *ops, void *ctx) {
    if (!(h->flags & PROTO_FLAG_REPLY))
        return deja__drop(c, DEJA_ERR_PROTOCOL, "frame from server lacks the reply flag");
    uint32_t offset = h->request_id - first; /* wraps to huge when below first */
    /* A store batch sends STORE_EX for the requests that carry a lease. */
    int op_ok =
        h->opcode == op || (op == PROTO_OP_STORE && h->opcode == PROTO_OP_STORE_EX);
    if (op_ok && offset < n && !done[offset]) {
        done[offset] = 1;
        (*awaiting)--;
        int rc = ops->reply(ctx, c, offset, h, body);
        if (rc == 0 && c->fd < 0) rc = DEJA_ERR_PROTOCOL;
        return rc;
    }
    if (h->status != 0) {
        /* An error for no request of ours (request id 0): the server says
         * the stream is broken and closes it. */
        int rc = deja__reply_error(c, h, body);
        deja__drop(c, rc, "%s", deja_last_error(c));
        return rc;
    }
    return deja__drop(c, DEJA_ERR_PROTOCOL,
                      "reply to request %u op 0x%02x matches no request of the batch",
                      h->request_id, h->opcode);
}

int deja__batch_run(deja_client *c, uint8_t op, size_t n, int64_t deadline_ms,
                    const deja_batch_ops *ops, void *ctx) {
    if (n == 0) return 0;
    if (c->fd < 0) return batch_abort(c, n, NULL, DEJA_ERR_CLOSED, ops, ctx);
    if (c->in_flight > 0 || n >= BATCH_MAX) {
        deja__set_err(c, DEJA_ERR_INVALID_ARG,
                      c->in_flight ? "lookups in flight: receive them first"
                                   : "batch too large");
        for (size_t i = 0; i < n; i++)
            ops->fail(ctx, i, DEJA_ERR_INVALID_ARG);
        return DEJA_ERR_INVALID_ARG;
    }
    uint8_t *done = calloc(n, 1);
    if (done == NULL) {
        deja__set_err(c, DEJA_ERR_NOMEM, "no memory for a batch of %zu", n);
        for (size_t i = 0; i < n; i++)
            ops->fail(ctx, i, DEJA_ERR_NOMEM);
        return DEJA_ERR_NOMEM;
    }
    uint32_t first = deja__take_ids(c, (uint32_t)n);
    proto_buf_reset(&c->out);
    size_t sent = 0, next = 0, awaiting = 0;
    int rc = 0;

    for (;;) {
        while (next < n && c->out.len - sent < BATCH_WINDOW) {
            int erc = ops->encode(ctx, c, next, first + (uint32_t)next);
            if (erc != 0) {
                done[next] = 1; /* refused locally: nothing goes out */
                ops->fail(ctx, next, erc);
            } else {
                awaiting++;
            }
            next++;
        }
        if (sent == c->out.len) {
            proto_buf_reset(&c->out);
            sent = 0;
        }

        /* Replies already buffered come first: they need no system call. */
        proto_header h;
        const uint8_t *body;
        int got;
        while (rc == 0 && (got = deja__in_next(c, &h, &body)) != 0) {
            if (got < 0) {
                rc = got;
                break;
            }
            rc = batch_take(c, op, first, n, done, &awaiting, &h, body, ops, ctx);
        }
        if (rc != 0) break;
        if (next == n && awaiting == 0) break;

        int64_t left = deadline_ms - deja__now_ms();
        if (left < 0) {
            rc = DEJA_ERR_TIMEOUT;
            break;
        }
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        if (sent < c->out.len) pf.events |= POLLOUT;
        int pr = poll(&pf, 1, left > 0x7fffffff ? 0x7fffffff : (int)left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0) {
            rc = DEJA_ERR_IO;
            break;
        }
        if (pr == 0) continue; /* the deadline check above ends it */
        if ((pf.revents & (POLLOUT | POLLERR | POLLHUP)) && sent < c->out.len) {
            ssize_t w =
                deja__conn_send_some(c->fd, c->out.data + sent, c->out.len - sent);
            if (w < 0) {
                rc = (int)w;
                break;
            }
            sent += (size_t)w;
        }
        if (pf.revents & (POLLIN | POLLERR | POLLHUP)) {
            ssize_t r = deja__in_read(c, 0, 0);
            if (r < 0) {
                rc = (int)r;
                break;
            }
        }
    }
    if (rc != 0) rc = batch_abort(c, n, done, rc, ops, ctx);
    proto_buf_reset(&c->out);
    free(done);
    return rc;
}

/* ---- lookups --------------------------------------------------------------- */

typedef struct lookup_batch {
    const deja_lookup_req *reqs;
    deja_result **out;
} lookup_batch;

static int lookup_encode(void *ctx, deja_client *c, size_t i, uint32_t id) {
    const deja_lookup_req *r = &((lookup_batch *)ctx)->reqs[i];
    return deja__encode_lookup(c, r->ns, NULL, r->vector, r->dim, r->threshold,
                               r->k ? r->k : 1, r->flags, id);
}

static int lookup_reply(void *ctx, deja_client *c, size_t i, const proto_header *h,
                        const uint8_t *body) {
    deja_result **slot = &((lookup_batch *)ctx)->out[i];
    int rc = h->status != 0 ? deja__reply_error(c, h, body)
                            : deja__decode_lookup(c, h, body,
                                                  ((lookup_batch *)ctx)->reqs[i].k
                                                      ? ((lookup_batch *)ctx)->reqs[i].k
                                                      : 1,
                                                  slot);
    if (rc != 0) *slot = deja__miss_result(rc);
    return c->fd >= 0 ? 0 : rc;
}

static void lookup_fail(void *ctx, size_t i, int code) {
    deja_result **slot = &((lookup_batch *)ctx)->out[i];
    if (*slot == NULL) *slot = deja__miss_result(code);
}

static const deja_batch_ops lookup_ops = {lookup_encode, lookup_reply, lookup_fail};

/* The code of the first result that failed, or 0. */
static int first_lookup_error(deja_result **out, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (out[i]->error != 0) return out[i]->error;
    return 0;
}

int deja__lookup_many_on(deja_client *c, const deja_lookup_req *reqs, size_t n,
                         deja_result **out, int64_t deadline_ms, int *stream_rc) {
    *stream_rc = 0;
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (reqs == NULL) {
        for (size_t i = 0; i < n; i++)
            out[i] = deja__miss_result(DEJA_ERR_INVALID_ARG);
        *stream_rc = DEJA_ERR_INVALID_ARG; /* nothing was sent */
        return n ? deja__set_err(c, DEJA_ERR_INVALID_ARG, "requests are NULL") : 0;
    }
    lookup_batch b = {reqs, out};
    *stream_rc = deja__batch_run(c, PROTO_OP_LOOKUP, n, deadline_ms, &lookup_ops, &b);
    int first = first_lookup_error(out, n);
    return first ? first : *stream_rc;
}

int deja_lookup_many(deja_client *c, const deja_lookup_req *reqs, size_t n,
                     deja_result **out) {
    if (c == NULL || out == NULL) return DEJA_ERR_INVALID_ARG;
    int stream_rc;
    return deja__lookup_many_on(c, reqs, n, out, deja__client_deadline(c), &stream_rc);
}

/* ---- stores ---------------------------------------------------------------- */

typedef struct store_batch {
    const deja_store_req *reqs;
    uint64_t *ids;
    int *codes;
    int first_error; /* code of the lowest failed index so far */
    size_t first_index;
} store_batch;

static void store_record(store_batch *b, size_t i, int code, uint64_t id) {
    if (b->ids) b->ids[i] = id;
    if (b->codes) b->codes[i] = code;
    if (code != 0 && (b->first_error == 0 || i < b->first_index)) {
        b->first_error = code;
        b->first_index = i;
    }
}

static int store_encode(void *ctx, deja_client *c, size_t i, uint32_t id) {
    return deja__encode_store(c, &((store_batch *)ctx)->reqs[i], id);
}

static int store_reply(void *ctx, deja_client *c, size_t i, const proto_header *h,
                       const uint8_t *body) {
    store_batch *b = ctx;
    if (h->status != 0) {
        store_record(b, i, deja__reply_error(c, h, body), 0);
        return c->fd >= 0 ? 0 : DEJA_ERR_PROTOCOL;
    }
    uint64_t id;
    if (proto_decode_store_resp(body, h->body_len, &id) != 0) {
        store_record(b, i, DEJA_ERR_PROTOCOL, 0);
        return deja__drop(c, DEJA_ERR_PROTOCOL, "malformed STORE reply");
    }
    store_record(b, i, 0, id);
    return 0;
}

static void store_fail(void *ctx, size_t i, int code) {
    store_record(ctx, i, code, 0);
}

static const deja_batch_ops store_ops = {store_encode, store_reply, store_fail};

int deja__store_many_on(deja_client *c, const deja_store_req *reqs, size_t n,
                        uint64_t *ids, int *codes, int64_t deadline_ms, int *stream_rc) {
    store_batch b = {reqs, ids, codes, 0, 0};
    *stream_rc = 0;
    if (reqs == NULL) {
        for (size_t i = 0; i < n; i++)
            store_record(&b, i, DEJA_ERR_INVALID_ARG, 0);
        *stream_rc = DEJA_ERR_INVALID_ARG; /* nothing was sent */
        return n ? deja__set_err(c, DEJA_ERR_INVALID_ARG, "requests are NULL") : 0;
    }
    *stream_rc = deja__batch_run(c, PROTO_OP_STORE, n, deadline_ms, &store_ops, &b);
    return b.first_error ? b.first_error : *stream_rc;
}

int deja_store_many(deja_client *c, const deja_store_req *reqs, size_t n, uint64_t *ids,
                    int *codes) {
    if (c == NULL) return DEJA_ERR_INVALID_ARG;
    int stream_rc;
    return deja__store_many_on(c, reqs, n, ids, codes, deja__client_deadline(c),
                               &stream_rc);
}
