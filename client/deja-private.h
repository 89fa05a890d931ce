/* deja-private.h: what libdeja's files share with each other (not installed).
 *
 * deja-conn.c turns an address into a connected, non-blocking socket and
 * moves bytes with deadlines; deja-client.c builds one protocol connection
 * (struct deja_client) on top; deja-batch.c pipelines many requests on one
 * connection; deja-pool.c keeps connections for many threads behind a
 * circuit breaker; deja-fetch.c is the get-or-fetch pattern. Every wait is
 * bounded by an absolute deadline on the monotonic clock, so one deadline
 * covers a whole call however its bytes trickle. */
#ifndef DEJA_PRIVATE_H
#define DEJA_PRIVATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "deja.h"
#include "proto.h"

/* One connection. Its body lives here rather than in deja-client.c because
 * the batch engine drives the same buffers with its own poll loop. */
struct deja_client {
    int fd; /* -1 once the connection is closed */
    int request_timeout_ms;
    int64_t call_deadline_ms; /* set by the pool for one call; 0 = use the timeout */
    uint32_t next_id;
    uint32_t in_flight; /* pipelined lookups awaiting a reply */
    uint32_t max_frame; /* the server's limit for our request frames */
    uint16_t version;   /* protocol version from HELLO; 1 after UNKNOWN_OP
                           to a version-2 op */
    proto_buf out;      /* the frame(s) being sent */
    uint8_t *in;        /* received bytes: [in_start, in_len) unparsed */
    size_t in_start, in_len, in_cap;
    size_t in_consume; /* size of the frame last handed out */
    char server_name[128];
    char errmsg[PROTO_MAX_MESSAGE + 128];
    proto_hit hits[PROTO_MAX_K];            /* decode scratch for lookup replies */
    proto_hit shadow_hits[PROTO_MAX_K];     /* ... and LOOKUP_EX's shadow hits */
    uint8_t vec_scratch[PROTO_MAX_DIM * 4]; /* LE copy on big-endian hosts */
};

/* ---- deja-conn.c: sockets ------------------------------------------------ */

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t deja__now_ms(void);

/* Checks an address's syntax without resolving or connecting. Accepted:
 * "deja://host[:port]", "host[:port]", "[v6][:port]", "unix:///abs/path",
 * "unix:path" and "/path". Errors: INVALID_ARG, with the reason in err. */
int deja__addr_check(const char *addr, char *err, size_t errlen);

/* Parses addr, connects before deadline_ms and returns a non-blocking,
 * close-on-exec socket in *fd_out (TCP_NODELAY set on TCP). Host names go
 * through getaddrinfo(), which the deadline does not bound.
 * Errors: INVALID_ARG (address syntax), CONNECT (resolution failed or
 * refused), TIMEOUT. A readable reason is written to err. */
int deja__conn_open(const char *addr, int64_t deadline_ms, int *fd_out, char *err,
                    size_t errlen);

/* Sends all n bytes before deadline_ms.
 * Errors: TIMEOUT, CLOSED (peer reset or closed), IO. */
int deja__conn_send_all(int fd, const uint8_t *p, size_t n, int64_t deadline_ms);

/* Sends what the socket takes now without waiting: returns the number of
 * bytes sent (0 when the socket buffer is full), or CLOSED or IO. */
ssize_t deja__conn_send_some(int fd, const uint8_t *p, size_t n);

/* Reads at most cap bytes into p. With wait, first waits until fd is
 * readable or deadline_ms passes (TIMEOUT); without, returns 0 at once
 * when nothing is there. Otherwise returns the bytes read (> 0), CLOSED
 * (orderly shutdown or reset by the peer) or IO. */
ssize_t deja__conn_recv(int fd, uint8_t *p, size_t cap, int64_t deadline_ms, int wait);

/* 1 if an idle connection's socket is readable (the peer closed it or sent
 * something nobody asked for), else 0. One poll() with a zero timeout. */
int deja__conn_readable_now(int fd);

/* ---- deja-client.c: one connection -------------------------------------- */

/* Connects to addr before connect_deadline_ms, then runs HELLO and (with a
 * token) AUTH before handshake_deadline_ms (0: a request timeout from the
 * moment the socket is connected). The client then uses request_timeout_ms
 * per call. On error the reason is copied to err (may be NULL).
 * Errors: as deja_connect. */
int deja__client_open(const char *addr, int64_t connect_deadline_ms,
                      int64_t handshake_deadline_ms, int request_timeout_ms,
                      const char *token, deja_client **out, char *err, size_t errlen);

/* Makes the next calls end by deadline_ms instead of after the request
 * timeout; 0 restores the timeout. */
void deja__client_set_deadline(deja_client *c, int64_t deadline_ms);

/* The deadline of a call starting now. */
int64_t deja__client_deadline(const deja_client *c);

/* 1 if c can serve another call: open, nothing in flight, nothing unread. */
int deja__client_reusable(const deja_client *c);

/* The calling thread's message buffer: deja_pool_last_error() and
 * deja_last_error(NULL) read it; failed pool calls and failed
 * deja_connect calls write it. */
char *deja__thread_err(void);
enum { DEJA__THREAD_ERR_SIZE = PROTO_MAX_MESSAGE + 128 };

/* The common start of a one-request call: the connection is open, nothing
 * is in flight, c->out is empty. Errors: INVALID_ARG, CLOSED. */
int deja__begin_call(deja_client *c);

/* Checks a namespace name and gives its length. Errors: INVALID_ARG (NULL,
 * empty, over 255 bytes), BAD_NAMESPACE (a byte outside 0x21..0x7E). */
int deja__check_ns(deja_client *c, const char *ns, uint8_t *len_out);

/* Checks a vector argument: INVALID_ARG for NULL or dim outside 1..4096. */
int deja__check_vector(deja_client *c, const float *vector, uint32_t dim);

/* The vector as little-endian f32 bytes, as the encoders want it: the
 * caller's array on a little-endian host, else c->vec_scratch. */
const uint8_t *deja__wire_vector(deja_client *c, const float *v, uint32_t dim);

/* Sends the frame in c->out (request op, id) and waits until the call's
 * deadline for its reply; on success h and *body describe the reply. A
 * non-zero status comes back as its code with the server's message. */
int deja__roundtrip(deja_client *c, uint8_t op, uint32_t id, proto_header *h,
                    const uint8_t **body);

/* Closes the connection over a reply to op that does not parse; returns
 * PROTOCOL. The message names the op as the protocol's table does. */
int deja__malformed(deja_client *c, uint8_t op);

/* One request naming a namespace whose reply is a u64 count (FLUSH,
 * NS_DROP): encode with `encode`, round trip, decode into *count. */
typedef int (*deja__ns_encoder)(proto_buf *b, uint32_t id, const uint8_t *ns,
                                uint8_t ns_len);
int deja__ns_count_call(deja_client *c, const char *ns, uint8_t op,
                        deja__ns_encoder encode, uint64_t *count);

/* Records a message for deja_last_error and returns code. */
int deja__set_err(deja_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the message, closes the connection and returns code. */
int deja__drop(deja_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Hands out the next complete frame already in the receive buffer
 * (consuming the one handed out before): 1 and *h, *body (valid until
 * the next call) when there is one, 0 when more bytes are needed, or a
 * negative code after closing the connection (unparseable stream). */
int deja__in_next(deja_client *c, proto_header *h, const uint8_t **body);

/* Receives more bytes into the buffer: waits until deadline_ms when wait
 * is set, else takes only what is there (returns 0 if nothing). Returns
 * the bytes added, or a negative code (the connection is then closed,
 * except for NOMEM). */
ssize_t deja__in_read(deja_client *c, int64_t deadline_ms, int wait);

/* The error code and message of a reply whose status is not 0. */
int deja__reply_error(deja_client *c, const proto_header *h, const uint8_t *body);

/* Checks a request and appends its frame with request id `id` to c->out.
 * Argument errors as deja_lookup / deja_store; c->out is unchanged then.
 * A lookup's prompt (NULL = none) lets the server's exact tier answer a
 * repeated prompt by its text before any vector search. */
int deja__encode_lookup(deja_client *c, const char *ns, const char *prompt,
                        const float *vector, uint32_t dim, float threshold, uint32_t k,
                        unsigned flags, uint32_t id);
int deja__encode_store(deja_client *c, const deja_store_req *req, uint32_t id);

/* deja_lookup with the prompt text sent along (NULL = none). */
int deja__lookup_prompt(deja_client *c, const char *ns, const char *prompt,
                        const float *vector, uint32_t dim, float threshold, uint32_t k,
                        unsigned flags, deja_result **out);

/* deja_pool_lookup with the prompt text sent along, for deja_get_or_fetch. */
int deja__pool_lookup_prompt(deja_pool *p, const char *ns, const char *prompt,
                             const float *vector, uint32_t dim, float threshold,
                             uint32_t k, unsigned flags, deja_result **out);

/* A caller-owned result holding copies of hits[0..count) and
 * shadow[0..shadow_count) (shadow may be NULL with 0); flags, outcome and
 * lease_id are 0 (the caller sets them). NOMEM with the message set. */
int deja__build_result(deja_client *c, const proto_hit *hits, uint16_t count,
                       const proto_hit *shadow, uint16_t shadow_count, deja_result **out);

/* The opcode a store request goes out as: STORE_EX when it carries a
 * lease id and the server speaks version 2, else STORE. */
uint8_t deja__store_op(const deja_client *c, const deja_store_req *req);

/* deja_lookup_ex for the pool: when the connection speaks version 1 (from
 * HELLO, or learnt from an UNKNOWN_OP), the plain LOOKUP is bounded by
 * v1_deadline_ms instead of the call's deadline, if that is not 0. */
int deja__lookup_ex_on(deja_client *c, const deja_lookup_ex_req *req,
                       int64_t v1_deadline_ms, deja_result **out);

/* deja_get_or_fetch's lookup: LOOKUP_EX with LEASE (wait and lease time
 * from the pool's options) when the pool uses leases, else as
 * deja__pool_lookup_prompt. Fail-open: *out is always a result. */
int deja__pool_lookup_lease(deja_pool *p, const char *ns, const char *prompt,
                            const float *vector, uint32_t dim, float threshold,
                            deja_result **out);

/* Turns a LOOKUP reply body into a caller-owned result; more than k hits
 * (the request's; 0 = the protocol's limit) is a malformed reply. */
int deja__decode_lookup(deja_client *c, const proto_header *h, const uint8_t *body,
                        uint32_t k, deja_result **out);

/* A miss that carries an error: count 0, error = code, allocated like any
 * result. Never NULL: without memory it is a shared read-only result that
 * deja_result_free recognises. */
deja_result *deja__miss_result(int code);

/* A result of one hit built from the given bytes (copied), as
 * deja_get_or_fetch returns a fetched answer; NULL without memory. */
deja_result *deja__answer_result(uint64_t id, float similarity, const void *response,
                                 size_t response_len, const char *prompt,
                                 size_t prompt_len);

/* Reserves n consecutive request ids that do not wrap past 0; returns the
 * first. n must be below 2^31. */
uint32_t deja__take_ids(deja_client *c, uint32_t n);

/* ---- deja-batch.c: pipelining on one connection -------------------------- */

/* Per-request hooks of a batch: encode appends request i's frame with id
 * to c->out (or returns an argument error: the request then fails alone);
 * reply takes request i's reply frame (status 0 or not) and returns 0, or
 * the code after which it closed the connection; fail records that
 * request i got no reply because of code. */
typedef struct deja_batch_ops {
    int (*encode)(void *ctx, deja_client *c, size_t i, uint32_t id);
    int (*reply)(void *ctx, deja_client *c, size_t i, const proto_header *h,
                 const uint8_t *body);
    void (*fail)(void *ctx, size_t i, int code);
} deja_batch_ops;

/* Sends n requests of opcode op on c, reading replies while it sends, and
 * waits for every reply before deadline_ms. Returns 0 when the stream
 * stayed healthy (each request then got reply or fail), else the code that
 * closed the connection (every request without a reply gets fail with it).
 * Errors: TIMEOUT, CLOSED, IO, PROTOCOL, NOMEM, INVALID_ARG (n too big,
 * or calls in flight). */
int deja__batch_run(deja_client *c, uint8_t op, size_t n, int64_t deadline_ms,
                    const deja_batch_ops *ops, void *ctx);

/* deja_lookup_many and deja_store_many with an explicit deadline, for the
 * pool. Same results and codes; *stream_rc receives what deja__batch_run
 * returned: 0 while the connection stayed healthy. */
int deja__lookup_many_on(deja_client *c, const deja_lookup_req *reqs, size_t n,
                         deja_result **out, int64_t deadline_ms, int *stream_rc);
int deja__store_many_on(deja_client *c, const deja_store_req *reqs, size_t n,
                        uint64_t *ids, int *codes, int64_t deadline_ms, int *stream_rc);

#endif
