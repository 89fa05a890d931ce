/* deja-client.c: one blocking connection to dejad (deja_client):
 * request/reply framing on top of deja-conn.c, and the single-allocation
 * results handed to the caller. The pool and the batch calls reuse its
 * framing through deja-private.h.
 *
 * Every call is: check arguments, encode one frame with a fresh request
 * id, send it, read frames until the reply, check that the reply answers
 * this request, then decode. Anything that leaves the byte stream in doubt
 * (timeout, I/O error, a reply that does not parse or answers something
 * else) closes the connection, because the next reply could no longer be
 * matched to its request. */
#include "deja.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deja-private.h"
#include "proto.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 1000
#define DEFAULT_REQUEST_TIMEOUT_MS 5000
#define CLIENT_NAME "libdeja/0.1.0"

/* Receive buffer: read in chunks of at least this many bytes so that
 * several pipelined replies arrive with one recv(), and give memory back
 * after an unusually large reply. */
#define IN_CHUNK (64u * 1024u)
#define IN_SHRINK_ABOVE (1024u * 1024u)

/* Largest reply frame accepted. Replies are not bound by the server's
 * request limit (k hits of large responses can exceed it); this only
 * guards against a corrupt length allocating without bound. */
#define CLIENT_MAX_REPLY (256u * 1024u * 1024u)

/* Per thread rather than global, like errno: a failed connect has no
 * client to keep its message, and a shared pool is used by many threads
 * at once, so each thread keeps the message of its own last failure. */
static _Thread_local char thread_err[DEJA__THREAD_ERR_SIZE];

char *deja__thread_err(void) {
    return thread_err;
}

/* ---- errors and connection state ---------------------------------------- */

#define set_err deja__set_err
#define drop deja__drop

int deja__set_err(deja_client *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

static void close_fd(deja_client *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->in_flight = 0;
    c->in_start = c->in_len = c->in_consume = 0;
}

int deja__drop(deja_client *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    close_fd(c);
    return code;
}

static int check_open(deja_client *c) {
    if (c == NULL) return DEJA_ERR_INVALID_ARG;
    if (c->fd < 0) return set_err(c, DEJA_ERR_CLOSED, "connection is closed");
    return 0;
}

int deja__begin_call(deja_client *c) {
    int rc = check_open(c);
    if (rc != 0) return rc;
    if (c->in_flight > 0)
        return set_err(c, DEJA_ERR_INVALID_ARG,
                       "%u pipelined lookups in flight: receive them first",
                       c->in_flight);
    proto_buf_reset(&c->out);
    return 0;
}

static uint32_t take_id(deja_client *c) {
    uint32_t id = c->next_id++;
    if (c->next_id == 0) c->next_id = 1; /* 0 is left for "no request" */
    return id;
}

uint32_t deja__take_ids(deja_client *c, uint32_t n) {
    /* A batch matches replies by id - first, so its ids must not wrap:
     * restart at 1 when the range would, which is safe because nothing is
     * in flight when a batch starts. */
    if (c->next_id > UINT32_MAX - n) c->next_id = 1;
    uint32_t first = c->next_id;
    c->next_id += n;
    if (c->next_id == 0) c->next_id = 1;
    return first;
}

int64_t deja__client_deadline(const deja_client *c) {
    if (c->call_deadline_ms > 0) return c->call_deadline_ms;
    return deja__now_ms() + c->request_timeout_ms;
}

void deja__client_set_deadline(deja_client *c, int64_t deadline_ms) {
    c->call_deadline_ms = deadline_ms;
}

int deja__client_reusable(const deja_client *c) {
    return c != NULL && c->fd >= 0 && c->in_flight == 0 &&
           c->in_len == c->in_start + c->in_consume;
}

/* ---- argument checks ----------------------------------------------------- */

int deja__check_ns(deja_client *c, const char *ns, uint8_t *len_out) {
    if (ns == NULL) return set_err(c, DEJA_ERR_INVALID_ARG, "namespace is NULL");
    size_t n = strnlen(ns, PROTO_MAX_NS_LEN + 1);
    if (n == 0 || n > PROTO_MAX_NS_LEN)
        return set_err(c, DEJA_ERR_INVALID_ARG, "namespace must be 1..%u bytes",
                       PROTO_MAX_NS_LEN);
    if (proto_check_ns((const uint8_t *)ns, n) != 0)
        return set_err(c, DEJA_ERR_BAD_NAMESPACE,
                       "namespace bytes must be printable ASCII without space");
    *len_out = (uint8_t)n;
    return 0;
}

int deja__check_vector(deja_client *c, const float *vector, uint32_t dim) {
    if (vector == NULL) return set_err(c, DEJA_ERR_INVALID_ARG, "vector is NULL");
    if (dim == 0 || dim > PROTO_MAX_DIM)
        return set_err(c, DEJA_ERR_INVALID_ARG, "dim %u is not in 1..%u", dim,
                       PROTO_MAX_DIM);
    return 0;
}

/* The vector as little-endian f32 bytes, as the encoders want it. On a
 * little-endian host that is the caller's array itself. */
const uint8_t *deja__wire_vector(deja_client *c, const float *v, uint32_t dim) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void)c;
    (void)dim;
    return (const uint8_t *)v;
#else
    proto_vector_write(c->vec_scratch, v, (uint16_t)dim);
    return c->vec_scratch;
#endif
}

/* ---- framing --------------------------------------------------------------*/

static int send_frame(deja_client *c, int64_t deadline) {
    if (c->out.len > c->max_frame)
        return set_err(c, DEJA_ERR_TOO_LARGE,
                       "request of %zu bytes exceeds the server's limit of %u",
                       c->out.len, c->max_frame);
    int rc = deja__conn_send_all(c->fd, c->out.data, c->out.len, deadline);
    if (rc != 0) return drop(c, rc, "send: %s", deja_strerror(rc));
    return 0;
}

/* Makes room for at least `want` more bytes after in_len. */
static int in_reserve(deja_client *c, size_t want) {
    if (c->in_cap - c->in_len >= want) return 0;
    if (c->in_start > 0) {
        size_t avail = c->in_len - c->in_start;
        memmove(c->in, c->in + c->in_start, avail);
        c->in_start = 0;
        c->in_len = avail;
        if (c->in_cap - c->in_len >= want) return 0;
    }
    size_t cap = c->in_len + want;
    uint8_t *p = realloc(c->in, cap);
    if (p == NULL) return DEJA_ERR_NOMEM;
    c->in = p;
    c->in_cap = cap;
    return 0;
}

int deja__in_next(deja_client *c, proto_header *h, const uint8_t **body) {
    c->in_start += c->in_consume;
    c->in_consume = 0;
    if (c->in_start == c->in_len) {
        c->in_start = c->in_len = 0;
        if (c->in_cap > IN_SHRINK_ABOVE) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
    size_t avail = c->in_len - c->in_start;
    if (avail == 0) return 0; /* also keeps NULL + 0 (no buffer yet) out */
    int r = proto_parse_frame(c->in + c->in_start, avail, CLIENT_MAX_REPLY, h);
    if (r > 0) {
        c->in_consume = (size_t)r;
        *body = c->in + c->in_start + PROTO_HEADER_SIZE;
        return 1;
    }
    if (r < 0)
        return drop(c, DEJA_ERR_PROTOCOL, "unparseable reply frame: %s",
                    deja_strerror(r));
    return 0;
}

ssize_t deja__in_read(deja_client *c, int64_t deadline_ms, int wait) {
    /* Reserve room for the whole frame being received when its header is
     * in, so a large reply is read in few calls; at least one chunk. */
    size_t avail = c->in_len - c->in_start;
    size_t frame = PROTO_HEADER_SIZE;
    if (avail >= PROTO_HEADER_SIZE) {
        proto_header h;
        if (proto_parse_frame(c->in + c->in_start, avail, CLIENT_MAX_REPLY, &h) == 0)
            frame += (size_t)h.body_len;
    }
    size_t want = frame > avail ? frame - avail : 0;
    /* Grow with the bytes that arrived, at most doubling: a 16-byte header
     * alone must not make us allocate the 256 MiB it may announce. */
    if (want > avail + IN_CHUNK) want = avail + IN_CHUNK;
    if (want < IN_CHUNK) want = IN_CHUNK;
    if (in_reserve(c, want) != 0)
        return set_err(c, DEJA_ERR_NOMEM, "no memory for a %zu-byte reply", frame);
    ssize_t n = deja__conn_recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len,
                                deadline_ms, wait);
    if (n < 0) {
        int rc = (int)n;
        return drop(c, rc, "%s",
                    rc == DEJA_ERR_CLOSED ? "server closed the connection"
                                          : deja_strerror(rc));
    }
    c->in_len += (size_t)n;
    return n;
}

/* Reads until one complete frame is buffered; *body points into the
 * receive buffer and stays valid until the next read_frame. */
static int read_frame(deja_client *c, int64_t deadline, proto_header *h,
                      const uint8_t **body) {
    for (;;) {
        int r = deja__in_next(c, h, body);
        if (r > 0) return 0;
        if (r < 0) return r;
        ssize_t n = deja__in_read(c, deadline, 1);
        if (n < 0) return (int)n;
    }
}

/* Turns a non-zero reply status into its error code, keeping the server's
 * message for deja_last_error. */
int deja__reply_error(deja_client *c, const proto_header *h, const uint8_t *body) {
    int code = -(int)h->status;
    if (code < DEJA_ERR_WIRE_MIN)
        return drop(c, DEJA_ERR_PROTOCOL, "reply status %u is out of range", h->status);
    const uint8_t *msg;
    uint16_t msg_len;
    if (proto_decode_error(body, h->body_len, &msg, &msg_len) == 0 && msg_len > 0)
        return set_err(c, code, "%.*s", (int)msg_len, (const char *)msg);
    return set_err(c, code, "%s", deja_strerror(code));
}

/* Checks that h answers (op, id). A mismatching error reply is taken as a
 * connection-level error from the server (one sent for a frame it could
 * not attribute, e.g. request id 0): its code is returned and the
 * connection closed, since the server closes after those anyway. */
static int check_reply(deja_client *c, const proto_header *h, const uint8_t *body,
                       uint8_t op, int check_id, uint32_t id) {
    if (!(h->flags & PROTO_FLAG_REPLY))
        return drop(c, DEJA_ERR_PROTOCOL, "frame from server lacks the reply flag");
    if (h->opcode != op || (check_id && h->request_id != id)) {
        if (h->status != 0) {
            int rc = deja__reply_error(c, h, body);
            close_fd(c);
            return rc;
        }
        return drop(c, DEJA_ERR_PROTOCOL,
                    "reply to request %u op 0x%02x while waiting for %u op 0x%02x",
                    h->request_id, h->opcode, id, op);
    }
    if (h->status != 0) return deja__reply_error(c, h, body);
    return 0;
}

/* Sends c->out (one request op/id) and waits for its reply. On success
 * *body and h describe the reply body. */
int deja__roundtrip(deja_client *c, uint8_t op, uint32_t id, proto_header *h,
                    const uint8_t **body) {
    int64_t deadline = deja__client_deadline(c);
    int rc = send_frame(c, deadline);
    if (rc != 0) return rc;
    rc = read_frame(c, deadline, h, body);
    if (rc != 0) return rc;
    return check_reply(c, h, *body, op, 1, id);
}

int deja__malformed(deja_client *c, uint8_t op) {
    return drop(c, DEJA_ERR_PROTOCOL, "malformed %s reply", proto_op_name(op));
}

static int encode_failed(deja_client *c, int rc) {
    proto_buf_reset(&c->out);
    return set_err(c, rc, "cannot encode request: %s", deja_strerror(rc));
}

/* ---- connect -------------------------------------------------------------- */

static int handshake(deja_client *c, const char *token) {
    proto_header h;
    const uint8_t *body;
    proto_hello_req hello = {
        .min_version = 1,
        .max_version = PROTO_PROTOCOL_MAX,
        .client_name = (const uint8_t *)CLIENT_NAME,
        .client_name_len = (uint16_t)strlen(CLIENT_NAME),
    };
    uint32_t id = take_id(c);
    int rc = proto_encode_hello_req(&c->out, id, &hello);
    if (rc != 0) return encode_failed(c, rc);
    rc = deja__roundtrip(c, PROTO_OP_HELLO, id, &h, &body);
    if (rc != 0) return rc;
    proto_hello_resp hr;
    if (proto_decode_hello_resp(body, h.body_len, &hr) != 0)
        return deja__malformed(c, PROTO_OP_HELLO);
    if (hr.version > PROTO_PROTOCOL_MAX) /* 0 is refused by the decoder */
        return drop(c, DEJA_ERR_VERSION, "server chose protocol version %u", hr.version);
    c->version = hr.version;
    /* A server announcing a tiny limit would make every call fail with
     * TOO_LARGE; accept it anyway, the error then names the limit. */
    c->max_frame = hr.max_frame;
    snprintf(c->server_name, sizeof c->server_name, "%.*s", (int)hr.server_name_len,
             (const char *)hr.server_name);

    if (token == NULL) {
        if (hr.server_flags & PROTO_SERVER_AUTH_REQUIRED)
            return set_err(c, DEJA_ERR_AUTH_REQUIRED,
                           "server requires a token (deja_options.auth_token)");
        return 0;
    }
    size_t tlen = strlen(token);
    if (tlen > UINT16_MAX) return set_err(c, DEJA_ERR_INVALID_ARG, "auth token too long");
    proto_auth_req auth = {.token = (const uint8_t *)token, .token_len = (uint16_t)tlen};
    proto_buf_reset(&c->out);
    id = take_id(c);
    rc = proto_encode_auth_req(&c->out, id, &auth);
    if (rc != 0) return encode_failed(c, rc);
    return deja__roundtrip(c, PROTO_OP_AUTH, id, &h, &body);
}

int deja__client_open(const char *addr, int64_t connect_deadline_ms,
                      int64_t handshake_deadline_ms, int request_timeout_ms,
                      const char *token, deja_client **out, char *err, size_t errlen) {
    *out = NULL;
    deja_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        if (err) snprintf(err, errlen, "out of memory");
        return DEJA_ERR_NOMEM;
    }
    c->fd = -1;
    c->next_id = 1;
    c->request_timeout_ms = request_timeout_ms;
    /* Until HELLO tells us the real limit, assume the smallest one any
     * server may have; HELLO and AUTH are far below it. */
    c->max_frame = PROTO_MIN_MAX_FRAME;
    proto_buf_init(&c->out);

    int rc =
        deja__conn_open(addr, connect_deadline_ms, &c->fd, c->errmsg, sizeof c->errmsg);
    if (rc == 0) {
        c->call_deadline_ms = handshake_deadline_ms;
        rc = handshake(c, token);
        c->call_deadline_ms = 0;
    }
    if (rc != 0) {
        if (err) snprintf(err, errlen, "%s", c->errmsg);
        deja_close(c);
        return rc;
    }
    c->errmsg[0] = 0;
    *out = c;
    return 0;
}

int deja_connect(const char *addr, const deja_options *opts, deja_client **out) {
    if (out == NULL) return DEJA_ERR_INVALID_ARG;
    int connect_ms = opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                          : DEFAULT_CONNECT_TIMEOUT_MS;
    int request_ms = opts && opts->request_timeout_ms > 0 ? opts->request_timeout_ms
                                                          : DEFAULT_REQUEST_TIMEOUT_MS;
    /* Handshake deadline 0: HELLO and AUTH get a request timeout of their
     * own once the socket is connected, as deja_options documents. */
    return deja__client_open(addr, deja__now_ms() + connect_ms, 0, request_ms,
                             opts ? opts->auth_token : NULL, out, thread_err,
                             sizeof thread_err);
}

void deja_close(deja_client *c) {
    if (c == NULL) return;
    close_fd(c);
    proto_buf_free(&c->out);
    free(c->in);
    free(c);
}

const char *deja_last_error(const deja_client *c) {
    if (c == NULL) return thread_err;
    return c->errmsg;
}

const char *deja_server_name(const deja_client *c) {
    if (c == NULL) return "";
    return c->server_name;
}

uint32_t deja_protocol_version(const deja_client *c) {
    return c ? c->version : 0;
}

uint32_t deja_in_flight(const deja_client *c) {
    return c ? c->in_flight : 0;
}

/* ---- simple calls --------------------------------------------------------- */

int deja_ping(deja_client *c) {
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    uint32_t id = take_id(c);
    rc = proto_encode_ping(&c->out, id, 0, NULL, 0);
    if (rc != 0) return encode_failed(c, rc);
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, PROTO_OP_PING, id, &h, &body);
    if (rc != 0) return rc;
    if (h.body_len != 0) return deja__malformed(c, PROTO_OP_PING);
    return 0;
}

/* Appending one frame to c->out can fail after argument checks on size
 * alone; the frame is then taken back off so that a batch's other frames
 * stay intact. */
static int check_appended(deja_client *c, size_t before) {
    size_t frame = c->out.len - before;
    if (frame <= c->max_frame) return 0;
    c->out.len = before;
    return set_err(c, DEJA_ERR_TOO_LARGE,
                   "request of %zu bytes exceeds the server's limit of %u", frame,
                   c->max_frame);
}

uint8_t deja__store_op(const deja_client *c, const deja_store_req *req) {
    /* A version-1 server grants no leases, so a lease id cannot be its. */
    return req != NULL && req->lease_id != 0 && c->version >= 2 ? PROTO_OP_STORE_EX
                                                                : PROTO_OP_STORE;
}

int deja__encode_store(deja_client *c, const deja_store_req *req, uint32_t id) {
    if (req == NULL) return set_err(c, DEJA_ERR_INVALID_ARG, "request is NULL");
    proto_store_req r;
    memset(&r, 0, sizeof r);
    int rc;
    if ((rc = deja__check_ns(c, req->ns, &r.ns_len)) != 0) return rc;
    if ((rc = deja__check_vector(c, req->vector, req->dim)) != 0) return rc;
    if (req->response == NULL && req->response_len > 0)
        return set_err(c, DEJA_ERR_INVALID_ARG, "response is NULL");
    if (req->prompt == NULL && req->prompt_len > 0)
        return set_err(c, DEJA_ERR_INVALID_ARG, "prompt is NULL");
    if (req->completion > PROTO_COMPLETION_FILTERED)
        return set_err(c, DEJA_ERR_INVALID_ARG, "unknown completion %u", req->completion);
    if (req->response_len > UINT32_MAX || req->prompt_len > UINT32_MAX)
        return set_err(c, DEJA_ERR_TOO_LARGE, "response or prompt too large");

    r.ns = (const uint8_t *)req->ns;
    r.dim = (uint16_t)req->dim;
    r.completion = req->completion;
    r.ttl_s = req->ttl_s;
    r.input_tokens = req->input_tokens;
    r.output_tokens = req->output_tokens;
    r.cost_micro_usd = req->cost_micro_usd;
    r.vector = deja__wire_vector(c, req->vector, req->dim);
    r.prompt = (const uint8_t *)req->prompt;
    r.prompt_len = (uint32_t)req->prompt_len;
    r.response = req->response;
    r.response_len = (uint32_t)req->response_len;
    r.lease_id = req->lease_id;

    size_t before = c->out.len;
    rc = deja__store_op(c, req) == PROTO_OP_STORE_EX
             ? proto_encode_store_ex_req(&c->out, id, &r)
             : proto_encode_store_req(&c->out, id, &r);
    if (rc != 0) return set_err(c, rc, "cannot encode request: %s", deja_strerror(rc));
    return check_appended(c, before);
}

int deja_store(deja_client *c, const deja_store_req *req, uint64_t *id_out) {
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    uint32_t id = take_id(c);
    rc = deja__encode_store(c, req, id);
    if (rc != 0) return rc;
    proto_header h;
    const uint8_t *body;
    uint8_t op = deja__store_op(c, req);
    rc = deja__roundtrip(c, op, id, &h, &body);
    if (rc != 0) return rc;
    uint64_t entry_id;
    if (proto_decode_store_resp(body, h.body_len, &entry_id) != 0)
        return deja__malformed(c, op);
    if (id_out) *id_out = entry_id;
    return 0;
}

int deja_delete(deja_client *c, const char *ns, uint64_t id) {
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    proto_ns_id_req r = {.ns = (const uint8_t *)ns, .id = id};
    if ((rc = deja__check_ns(c, ns, &r.ns_len)) != 0) return rc;
    uint32_t rid = take_id(c);
    rc = proto_encode_delete_req(&c->out, rid, &r);
    if (rc != 0) return encode_failed(c, rc);
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, PROTO_OP_DELETE, rid, &h, &body);
    if (rc != 0) return rc;
    if (h.body_len != 0) return deja__malformed(c, PROTO_OP_DELETE);
    return 0;
}

int deja__ns_count_call(deja_client *c, const char *ns, uint8_t op,
                        deja__ns_encoder encode, uint64_t *count) {
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    uint8_t ns_len;
    if ((rc = deja__check_ns(c, ns, &ns_len)) != 0) return rc;
    uint32_t id = take_id(c);
    rc = encode(&c->out, id, (const uint8_t *)ns, ns_len);
    if (rc != 0) return encode_failed(c, rc);
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, op, id, &h, &body);
    if (rc != 0) return rc;
    uint64_t n;
    if (proto_decode_u64_resp(body, h.body_len, &n) != 0) return deja__malformed(c, op);
    if (count) *count = n;
    return 0;
}

int deja_flush(deja_client *c, const char *ns, uint64_t *removed) {
    return deja__ns_count_call(c, ns, PROTO_OP_FLUSH, proto_encode_flush_req, removed);
}

/* ---- lookup ----------------------------------------------------------------*/

/* The caller's result: the struct, the hit array and NUL-terminated copies
 * of every response and prompt live in one allocation, so one free()
 * releases it and the reply buffer can be reused at once. */
typedef struct result_block {
    deja_result r;
    deja_hit hits[];
} result_block;

/* Copies hits into dst, their strings at *p (advanced past them). */
static void copy_hits(deja_hit *dst, const proto_hit *src, uint16_t count, char **p) {
    for (uint16_t i = 0; i < count; i++) {
        dst[i].id = src[i].id;
        dst[i].similarity = src[i].similarity;
        dst[i].flags = (src[i].flags & PROTO_HIT_EXACT ? DEJA_HIT_EXACT : 0u) |
                       (src[i].flags & PROTO_HIT_BORDERLINE ? DEJA_HIT_BORDERLINE : 0u);
        dst[i].response = *p;
        dst[i].response_len = src[i].response_len;
        if (src[i].response_len) memcpy(*p, src[i].response, src[i].response_len);
        (*p)[src[i].response_len] = 0;
        *p += src[i].response_len + 1;
        dst[i].prompt = NULL;
        dst[i].prompt_len = 0;
        if (src[i].prompt_len > 0) {
            dst[i].prompt = *p;
            dst[i].prompt_len = src[i].prompt_len;
            memcpy(*p, src[i].prompt, src[i].prompt_len);
            (*p)[src[i].prompt_len] = 0;
            *p += src[i].prompt_len + 1;
        }
    }
}

static size_t hits_size(const proto_hit *hits, uint16_t count) {
    size_t size = (size_t)count * sizeof(deja_hit);
    for (uint16_t i = 0; i < count; i++) {
        size += (size_t)hits[i].response_len + 1;
        if (hits[i].prompt_len > 0) size += (size_t)hits[i].prompt_len + 1;
    }
    return size;
}

int deja__build_result(deja_client *c, const proto_hit *hits, uint16_t count,
                       const proto_hit *shadow, uint16_t shadow_count,
                       deja_result **out) {
    size_t size =
        sizeof(result_block) + hits_size(hits, count) + hits_size(shadow, shadow_count);
    result_block *b = malloc(size);
    if (b == NULL)
        return set_err(c, DEJA_ERR_NOMEM, "no memory for a %zu-byte result", size);
    memset(&b->r, 0, sizeof b->r);
    b->r.count = count;
    b->r.hits = count ? b->hits : NULL;
    b->r.shadow_count = shadow_count;
    b->r.shadow = shadow_count ? b->hits + count : NULL;
    char *p = (char *)(b->hits + count + shadow_count);
    copy_hits(b->hits, hits, count, &p);
    copy_hits(b->hits + count, shadow, shadow_count, &p);
    *out = &b->r;
    return 0;
}

deja_result *deja__answer_result(uint64_t id, float similarity, const void *response,
                                 size_t response_len, const char *prompt,
                                 size_t prompt_len) {
    size_t size = sizeof(result_block) + sizeof(deja_hit) + response_len + 1 +
                  (prompt_len ? prompt_len + 1 : 0);
    result_block *b = malloc(size);
    if (b == NULL) return NULL;
    char *p = (char *)(b->hits + 1);
    deja_hit *h = &b->hits[0];
    h->id = id;
    h->similarity = similarity;
    h->response = p;
    h->response_len = response_len;
    if (response_len) memcpy(p, response, response_len);
    p[response_len] = 0;
    p += response_len + 1;
    h->prompt = NULL;
    h->prompt_len = 0;
    if (prompt_len) {
        h->prompt = p;
        h->prompt_len = prompt_len;
        memcpy(p, prompt, prompt_len);
        p[prompt_len] = 0;
    }
    h->flags = 0;
    memset(&b->r, 0, sizeof b->r);
    b->r.count = 1;
    b->r.hits = b->hits;
    return &b->r;
}

/* Handed out when even a miss cannot be allocated, so that a lookup's
 * result is never NULL. Read-only: writing to it faults, as it should. */
static const deja_result nomem_miss = {.count = 0, .hits = NULL, .error = DEJA_ERR_NOMEM};

deja_result *deja__miss_result(int code) {
    deja_result *r = malloc(sizeof *r);
    if (r == NULL) return (deja_result *)&nomem_miss;
    memset(r, 0, sizeof *r);
    r->error = code;
    return r;
}

void deja_result_free(deja_result *r) {
    if (r == &nomem_miss) return;
    free(r); /* r is the first member of its result_block */
}

void deja_results_free(deja_result **rs, size_t n) {
    if (rs == NULL) return;
    for (size_t i = 0; i < n; i++) {
        deja_result_free(rs[i]);
        rs[i] = NULL;
    }
}

int deja__encode_lookup(deja_client *c, const char *ns, const char *prompt,
                        const float *vector, uint32_t dim, float threshold, uint32_t k,
                        unsigned flags, uint32_t id) {
    proto_lookup_req r;
    memset(&r, 0, sizeof r);
    int rc;
    size_t prompt_len = prompt ? strlen(prompt) : 0;
    if (prompt_len > UINT32_MAX)
        return set_err(c, DEJA_ERR_TOO_LARGE, "prompt too large");
    if ((rc = deja__check_ns(c, ns, &r.ns_len)) != 0) return rc;
    if ((rc = deja__check_vector(c, vector, dim)) != 0) return rc;
    if (k == 0 || k > PROTO_MAX_K)
        return set_err(c, DEJA_ERR_INVALID_ARG, "k %u is not in 1..%u", k, PROTO_MAX_K);
    if (!(threshold >= -1.0f && threshold <= 1.0f)) /* also refuses NaN */
        return set_err(c, DEJA_ERR_INVALID_ARG, "threshold is not in [-1, 1]");
    if (flags & ~(unsigned)DEJA_LOOKUP_WANT_PROMPT)
        return set_err(c, DEJA_ERR_INVALID_ARG, "unknown lookup flags 0x%x", flags);
    r.ns = (const uint8_t *)ns;
    r.dim = (uint16_t)dim;
    r.k = (uint16_t)k;
    r.threshold = threshold;
    r.vector = deja__wire_vector(c, vector, dim);
    r.prompt = (const uint8_t *)prompt;
    r.prompt_len = (uint32_t)prompt_len;
    uint16_t wire_flags = (flags & DEJA_LOOKUP_WANT_PROMPT) ? PROTO_FLAG_WANT_PROMPT : 0;
    size_t before = c->out.len;
    rc = proto_encode_lookup_req(&c->out, id, wire_flags, &r);
    if (rc != 0) return set_err(c, rc, "cannot encode request: %s", deja_strerror(rc));
    return check_appended(c, before);
}

int deja__decode_lookup(deja_client *c, const proto_header *h, const uint8_t *body,
                        uint32_t k, deja_result **out) {
    uint16_t count;
    /* A reply may carry no more hits than the request's k (PROTOCOL 5.5). */
    uint16_t max = k && k < PROTO_MAX_K ? (uint16_t)k : PROTO_MAX_K;
    if (proto_decode_lookup_resp(body, h->body_len, c->hits, max, &count) != 0)
        return deja__malformed(c, PROTO_OP_LOOKUP);
    for (uint16_t i = 0; i < count; i++)
        c->hits[i].flags = 0; /* LOOKUP's layout has none: the header's below */
    int rc = deja__build_result(c, c->hits, count, NULL, 0, out);
    if (rc != 0 || count == 0) return rc;
    /* The header's flags describe hit 0; a miss has nothing to describe. */
    deja_result *r = *out;
    r->outcome = DEJA_OUTCOME_HIT;
    if (h->flags & PROTO_FLAG_EXACT) {
        r->flags |= DEJA_RESULT_EXACT;
        r->hits[0].flags |= DEJA_HIT_EXACT;
    }
    if (h->flags & PROTO_FLAG_BORDERLINE) {
        r->flags |= DEJA_RESULT_BORDERLINE;
        r->hits[0].flags |= DEJA_HIT_BORDERLINE;
    }
    return 0;
}

int deja__lookup_prompt(deja_client *c, const char *ns, const char *prompt,
                        const float *vector, uint32_t dim, float threshold, uint32_t k,
                        unsigned flags, deja_result **out) {
    if (out) *out = NULL;
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    if (out == NULL) return set_err(c, DEJA_ERR_INVALID_ARG, "out is NULL");
    uint32_t id = take_id(c);
    rc = deja__encode_lookup(c, ns, prompt, vector, dim, threshold, k, flags, id);
    if (rc != 0) return rc;
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, PROTO_OP_LOOKUP, id, &h, &body);
    if (rc != 0) return rc;
    return deja__decode_lookup(c, &h, body, k, out);
}

int deja_lookup(deja_client *c, const char *ns, const float *vector, uint32_t dim,
                float threshold, uint32_t k, unsigned flags, deja_result **out) {
    return deja__lookup_prompt(c, ns, NULL, vector, dim, threshold, k, flags, out);
}

int deja_send_lookup(deja_client *c, const char *ns, const float *vector, uint32_t dim,
                     float threshold, uint32_t k, unsigned flags, uint32_t *request_id) {
    int rc = check_open(c);
    if (rc != 0) return rc;
    proto_buf_reset(&c->out);
    uint32_t id = take_id(c);
    rc = deja__encode_lookup(c, ns, NULL, vector, dim, threshold, k, flags, id);
    if (rc != 0) return rc;
    rc = send_frame(c, deja__client_deadline(c));
    if (rc != 0) return rc;
    c->in_flight++;
    if (request_id) *request_id = id;
    return 0;
}

int deja_recv_lookup(deja_client *c, uint32_t *request_id, deja_result **out) {
    if (out) *out = NULL;
    int rc = check_open(c);
    if (rc != 0) return rc;
    if (out == NULL) return set_err(c, DEJA_ERR_INVALID_ARG, "out is NULL");
    if (c->in_flight == 0) return set_err(c, DEJA_ERR_INVALID_ARG, "no lookup in flight");
    proto_header h;
    const uint8_t *body;
    rc = read_frame(c, deja__client_deadline(c), &h, &body);
    if (rc != 0) return rc;
    rc = check_reply(c, &h, body, PROTO_OP_LOOKUP, 0, 0);
    if (c->fd < 0) return rc; /* check_reply closed: nothing is in flight */
    c->in_flight--;
    if (request_id) *request_id = h.request_id;
    if (rc != 0) return rc;
    /* The k of each request in flight is not kept: the protocol's limit. */
    return deja__decode_lookup(c, &h, body, PROTO_MAX_K, out);
}

int deja_reply_ready(deja_client *c, uint64_t timeout_us) {
    int rc = check_open(c);
    if (rc != 0) return rc;
    if (c->in_flight == 0) return set_err(c, DEJA_ERR_INVALID_ARG, "no lookup in flight");
    /* A whole reply already buffered (the last read brought several). */
    size_t start = c->in_start + c->in_consume;
    if (c->in_len > start) {
        proto_header h;
        if (proto_parse_frame(c->in + start, c->in_len - start, CLIENT_MAX_REPLY, &h) !=
            0)
            return 1; /* a frame, or bytes that recv will reject at once */
    }
    struct pollfd pf = {.fd = c->fd, .events = POLLIN};
    struct timespec ts = {(time_t)(timeout_us / 1000000u),
                          (long)(timeout_us % 1000000u) * 1000L};
    int n = ppoll(&pf, 1, &ts, NULL);
    if (n > 0) return 1; /* readable, or an error recv will report */
    if (n == 0 || errno == EINTR) return 0;
    return drop(c, DEJA_ERR_IO, "poll: %s", strerror(errno));
}

/* ---- stats -----------------------------------------------------------------*/

typedef struct stats_block {
    deja_stats s;
    deja_stat items[];
} stats_block;

int deja_stats_get(deja_client *c, const char *ns, deja_stats **out) {
    if (out) *out = NULL;
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    if (out == NULL) return set_err(c, DEJA_ERR_INVALID_ARG, "out is NULL");
    uint8_t ns_len = 0;
    if (ns != NULL && ns[0] != 0 && (rc = deja__check_ns(c, ns, &ns_len)) != 0) return rc;
    uint32_t id = take_id(c);
    rc = proto_encode_stats_req(&c->out, id, (const uint8_t *)ns, ns_len);
    if (rc != 0) return encode_failed(c, rc);
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, PROTO_OP_STATS, id, &h, &body);
    if (rc != 0) return rc;

    /* Two passes over the reply: count and size, then copy. */
    size_t pos = 0, count = 0, key_bytes = 0;
    proto_stat st;
    while ((rc = proto_stats_next(body, h.body_len, &pos, &st)) == 1) {
        count++;
        key_bytes += (size_t)st.key_len + 1;
    }
    if (rc < 0) return deja__malformed(c, PROTO_OP_STATS);
    size_t size = sizeof(stats_block) + count * sizeof(deja_stat) + key_bytes;
    stats_block *b = malloc(size);
    if (b == NULL) return set_err(c, DEJA_ERR_NOMEM, "no memory for stats");
    b->s.count = (uint32_t)count;
    b->s.items = count ? b->items : NULL;
    char *p = (char *)(b->items + count);
    pos = 0;
    for (size_t i = 0; i < count && proto_stats_next(body, h.body_len, &pos, &st) == 1;
         i++) {
        memcpy(p, st.key, st.key_len);
        p[st.key_len] = 0;
        b->items[i].key = p;
        b->items[i].value = st.value;
        p += st.key_len + 1;
    }
    *out = &b->s;
    return 0;
}

int deja_stats_find(const deja_stats *s, const char *key, uint64_t *value) {
    if (s == NULL || key == NULL) return DEJA_ERR_INVALID_ARG;
    for (uint32_t i = 0; i < s->count; i++) {
        if (strcmp(s->items[i].key, key) == 0) {
            if (value) *value = s->items[i].value;
            return 0;
        }
    }
    return DEJA_ERR_NOT_FOUND;
}

void deja_stats_free(deja_stats *s) {
    free(s); /* s is the first member of its stats_block */
}
