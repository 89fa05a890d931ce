/* srv-http.h: the smallest HTTP/1.x request reader dejad needs to serve
 * /metrics, /healthz and /readyz -- a pure function over bytes, no I/O.
 *
 * Only the request line is interpreted; header lines are checked for shape
 * and size and otherwise skipped, and a request body is never read (GET
 * and HEAD have none; anything else is refused). Every limit is fixed
 * here, so a client cannot make the reader buffer or scan more than
 * SRV_HTTP_MAX_HEAD bytes. */
#ifndef DEJA_SRV_HTTP_H
#define DEJA_SRV_HTTP_H

#include <stddef.h>

#define SRV_HTTP_MAX_HEAD 8192u /* request line + headers + blank line */
#define SRV_HTTP_MAX_PATH 256u
#define SRV_HTTP_MAX_HEADERS 64u

enum srv_http_method { SRV_HTTP_GET = 1, SRV_HTTP_HEAD = 2 };

typedef struct srv_http_req {
    int method;                       /* enum srv_http_method */
    char path[SRV_HTTP_MAX_PATH + 1]; /* without the query string */
    size_t head_len;                  /* bytes up to and including the blank line */
} srv_http_req;

/* Reads a request head from buf[0..len). Returns 0 when more bytes are
 * needed, 200 when *req is filled, or the HTTP status to answer with and
 * close: 400 (malformed), 405 (a method other than GET or HEAD), 414
 * (path too long), 431 (head over SRV_HTTP_MAX_HEAD bytes or too many
 * header lines), 505 (not HTTP/1.0 or 1.1). Any thread. */
int srv_http_parse(const char *buf, size_t len, srv_http_req *req);

/* The reason phrase of a status this server sends ("OK", "Not Found"...). */
const char *srv_http_reason(int status);

#endif
