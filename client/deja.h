/* deja.h: libdeja, the C client for the deja semantic cache server.
 *
 * A deja_client is one connection to one dejad, over TCP or a Unix socket.
 * Threading: a deja_client may be used by one thread at a time (callers
 * that share one must serialise); distinct clients are independent. All
 * functions are blocking with the timeouts given at connect time.
 *
 * Errors: every function that can fail returns 0 or a negative DEJA_ERR_*
 * code from deja-errors.h; deja_strerror() names it, and
 * deja_last_error() returns the server's message for the last failed call.
 * After DEJA_ERR_TIMEOUT, DEJA_ERR_CLOSED, DEJA_ERR_IO or DEJA_ERR_PROTOCOL
 * the connection is closed and later calls fail with DEJA_ERR_CLOSED;
 * any other error leaves the connection usable. Arguments are checked
 * before anything is sent: NULL pointers, dim 0 or > 4096, k 0 or > 256, a
 * threshold outside [-1, 1] and a namespace of 0 or > 255 bytes give
 * DEJA_ERR_INVALID_ARG, a namespace byte outside 0x21..0x7E gives
 * DEJA_ERR_BAD_NAMESPACE, and a request larger than the server's frame
 * limit gives DEJA_ERR_TOO_LARGE.
 *
 * Memory: results returned through out-parameters are owned by the caller
 * and freed with the matching _free function (one call frees everything). */
#ifndef DEJA_H
#define DEJA_H

#include <stddef.h>
#include <stdint.h>

#include "deja-errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DEJA_DEFAULT_PORT 7447

typedef struct deja_client deja_client;

typedef struct deja_options {
    int connect_timeout_ms; /* 0 = 1000; the socket connect only */
    int request_timeout_ms; /* 0 = 5000; applies to each call, and to
                               HELLO and AUTH inside deja_connect */
    const char *auth_token; /* NULL = no AUTH */
} deja_options;

/* Connects to addr and runs HELLO (and AUTH when a token is given).
 * addr: "host:port", "host" (default port), "unix:/path" or "/path".
 * opts may be NULL for defaults. On success *out owns the connection.
 * Errors: INVALID_ARG (bad address), CONNECT, TIMEOUT, VERSION,
 * AUTH_FAILED, AUTH_REQUIRED, PROTOCOL, NOMEM. */
int deja_connect(const char *addr, const deja_options *opts, deja_client **out);

/* Closes the connection and frees the client. NULL is a no-op. */
void deja_close(deja_client *c);

/* Message from the server (or the client) for the last failed call on c;
 * valid until the next call on c. Never NULL. */
const char *deja_last_error(const deja_client *c);

/* The server's name and version from its HELLO reply, e.g. "dejad 0.1.0";
 * valid until deja_close. Never NULL. */
const char *deja_server_name(const deja_client *c);

/* Round trip with an empty body. */
int deja_ping(deja_client *c);

typedef struct deja_store_req {
    const char *ns;        /* namespace, NUL-terminated, 1..255 bytes */
    const float *vector;   /* dim floats, need not be normalised */
    uint32_t dim;
    const void *response;  /* response bytes to cache */
    size_t response_len;
    const char *prompt;    /* optional prompt text, may be NULL */
    size_t prompt_len;
    uint32_t ttl_s;        /* 0 = server default */
    uint32_t input_tokens; /* cost metadata, optional */
    uint32_t output_tokens;
    uint64_t cost_micro_usd;
    uint8_t completion;    /* 0 = ok (only ok replies are cached) */
} deja_store_req;

/* Stores one entry; *id_out (may be NULL) receives its entry id.
 * Errors: BAD_NAMESPACE, BAD_VECTOR, DIM_MISMATCH, REJECTED, TOO_LARGE,
 * STORAGE_FULL, plus the connection errors. */
int deja_store(deja_client *c, const deja_store_req *req, uint64_t *id_out);

typedef struct deja_hit {
    uint64_t id;
    float similarity;     /* cosine similarity to the query */
    const char *response; /* response bytes (NUL-terminated for convenience) */
    size_t response_len;
    const char *prompt;   /* stored prompt if requested and non-empty,
                             else NULL (NUL-terminated) */
    size_t prompt_len;
} deja_hit;

typedef struct deja_result {
    uint32_t count; /* 0 = miss */
    deja_hit *hits; /* best first */
} deja_result;

#define DEJA_LOOKUP_WANT_PROMPT 0x0001u

/* Looks up the k (1..256) best entries with similarity >= threshold.
 * On success *out is a result (count 0 on a miss) owned by the caller:
 * free it with deja_result_free. flags: DEJA_LOOKUP_*.
 * Errors: BAD_NAMESPACE, BAD_VECTOR, DIM_MISMATCH, plus connection errors. */
int deja_lookup(deja_client *c, const char *ns, const float *vector, uint32_t dim,
                float threshold, uint32_t k, unsigned flags, deja_result **out);

/* Frees a lookup result and everything it points to. NULL is a no-op. */
void deja_result_free(deja_result *r);

/* Pipelining: keep several lookups in flight on one connection.
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
 * buffers, because nothing reads replies while deja_send_lookup blocks.
 * Errors: as deja_lookup; TIMEOUT/CLOSED/IO/PROTOCOL close the connection
 * and abandon every request in flight. */
int deja_send_lookup(deja_client *c, const char *ns, const float *vector, uint32_t dim,
                     float threshold, uint32_t k, unsigned flags, uint32_t *request_id);
int deja_recv_lookup(deja_client *c, uint32_t *request_id, deja_result **out);

/* Number of pipelined lookups sent and not yet received. */
uint32_t deja_in_flight(const deja_client *c);

/* Deletes one entry. Errors: NOT_FOUND, BAD_NAMESPACE. */
int deja_delete(deja_client *c, const char *ns, uint64_t id);

/* Deletes every entry of a namespace; *removed (may be NULL) receives the
 * count. */
int deja_flush(deja_client *c, const char *ns, uint64_t *removed);

typedef struct deja_stat {
    const char *key;
    uint64_t value;
} deja_stat;

typedef struct deja_stats {
    uint32_t count;
    deja_stat *items;
} deja_stats;

/* Server-wide (ns NULL or "") or per-namespace counters. Free the result
 * with deja_stats_free. */
int deja_stats_get(deja_client *c, const char *ns, deja_stats **out);

/* Finds key in stats; returns 0 and sets *value, or DEJA_ERR_NOT_FOUND. */
int deja_stats_find(const deja_stats *s, const char *key, uint64_t *value);

void deja_stats_free(deja_stats *s);

#ifdef __cplusplus
}
#endif
#endif
