/* bench-wire.c: deja-bench's own protocol connection (see bench-wire.h):
 * address parsing, a blocking connect and handshake, then non-blocking
 * output and input buffers for the open-loop driver. */
#include "bench-wire.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "deja-errors.h"

#define CLIENT_NAME "deja-bench"
#define DEFAULT_PORT "7447"
/* Replies are read in chunks of at least this; the buffer grows to hold
 * the largest frame seen and is kept for the run. */
#define IN_CHUNK (64u * 1024u)
/* The largest reply frame accepted (libdeja's limit too). */
#define MAX_REPLY (256u * 1024u * 1024u)

_Static_assert(BENCH_WIRE_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path),
               "bench_wire_addr.path must fit sockaddr_un");

/* ---- addresses --------------------------------------------------------------*/

static int copy_part(char *dst, size_t cap, const char *src, size_t len) {
    if (len == 0 || len >= cap) return -1;
    memcpy(dst, src, len);
    dst[len] = 0;
    return 0;
}

static int parse_port(const char *s, char out[8]) {
    size_t len = strlen(s);
    if (len == 0 || len > 5 || strspn(s, "0123456789") != len) return -1;
    unsigned v = (unsigned)atoi(s);
    if (v == 0 || v > 65535) return -1;
    snprintf(out, 8, "%u", v);
    return 0;
}

int bench_wire_parse_addr(const char *addr, bench_wire_addr *a) {
    memset(a, 0, sizeof *a);
    if (addr == NULL || addr[0] == 0) return -1;
    const char *path = NULL;
    if (strncmp(addr, "unix://", 7) == 0) {
        path = addr + 7;
        if (path[0] != '/') return -1;
    } else if (strncmp(addr, "unix:", 5) == 0) {
        path = addr + 5;
    } else if (addr[0] == '/') {
        path = addr;
    } else if (strncmp(addr, "deja://", 7) == 0) {
        addr += 7;
    }
    if (path) {
        a->is_unix = 1;
        return copy_part(a->path, sizeof a->path, path, strlen(path));
    }
    memcpy(a->port, DEFAULT_PORT, sizeof DEFAULT_PORT);
    const char *colon = strchr(addr, ':');
    if (addr[0] == '[') {
        /* Brackets are the only way to give a port with an IPv6 literal. */
        const char *close = strchr(addr, ']');
        if (close == NULL ||
            copy_part(a->host, sizeof a->host, addr + 1, (size_t)(close - addr - 1)))
            return -1;
        if (close[1] == ':') return parse_port(close + 2, a->port);
        return close[1] == 0 ? 0 : -1;
    }
    if (colon && strchr(colon + 1, ':')) /* a bare IPv6 literal */
        return copy_part(a->host, sizeof a->host, addr, strlen(addr));
    if (colon) {
        if (copy_part(a->host, sizeof a->host, addr, (size_t)(colon - addr))) return -1;
        return parse_port(colon + 1, a->port);
    }
    return copy_part(a->host, sizeof a->host, addr, strlen(addr));
}

/* ---- waiting (connect and handshake only) -------------------------------------*/

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd has one of events or deadline_ms passes: 0 or TIMEOUT. */
static int wait_fd(int fd, short events, int64_t deadline_ms) {
    for (;;) {
        int64_t left = deadline_ms - now_ms();
        if (left <= 0) return DEJA_ERR_TIMEOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 0x7fffffff ? 0x7fffffff : (int)left);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) return DEJA_ERR_IO;
    }
}

static int connect_one(int family, int socktype, int protocol, const struct sockaddr *sa,
                       socklen_t salen, int64_t deadline_ms, int *fd_out) {
    int fd = socket(family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0) return DEJA_ERR_CONNECT;
    int rc = 0;
    if (connect(fd, sa, salen) != 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            rc = DEJA_ERR_CONNECT;
        } else if ((rc = wait_fd(fd, POLLOUT, deadline_ms)) == 0) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
                errno = soerr;
                rc = DEJA_ERR_CONNECT;
            }
        }
    }
    if (rc != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static int open_socket(const bench_wire_addr *a, int64_t deadline_ms, int *fd, char *err,
                       size_t errlen) {
    if (a->is_unix) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, a->path, strlen(a->path) + 1);
        int rc = connect_one(AF_UNIX, SOCK_STREAM, 0, (struct sockaddr *)&sa, sizeof sa,
                             deadline_ms, fd);
        if (rc != 0) snprintf(err, errlen, "connect %s: %s", a->path, strerror(errno));
        return rc;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(a->host, a->port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "resolve %s: %s", a->host, gai_strerror(g));
        return DEJA_ERR_CONNECT;
    }
    int rc = DEJA_ERR_CONNECT;
    for (struct addrinfo *ai = res; ai && rc != 0; ai = ai->ai_next) {
        rc = connect_one(ai->ai_family, ai->ai_socktype, ai->ai_protocol, ai->ai_addr,
                         ai->ai_addrlen, deadline_ms, fd);
        if (rc != 0)
            snprintf(err, errlen, "connect %s:%s: %s", a->host, a->port,
                     rc == DEJA_ERR_TIMEOUT ? "timed out" : strerror(errno));
    }
    freeaddrinfo(res);
    if (rc == 0) {
        /* Each request is one small frame sent on time: Nagle must not
         * hold it back waiting for the ACK of the one before. */
        int one = 1;
        setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return rc;
}

/* Sends the queued frame and waits for the reply to request id of op; a
 * reply with an error status comes back as its code, the server's
 * message in err. */
static int roundtrip(bench_wire *w, uint8_t op, uint32_t id, int64_t deadline_ms,
                     proto_header *h, const uint8_t **body, char *err, size_t errlen) {
    int rc;
    while ((rc = bench_wire_flush(w)) == 1)
        if ((rc = wait_fd(w->fd, POLLOUT, deadline_ms)) != 0) break;
    while (rc == 0 && (rc = bench_wire_next(w, h, body)) == 0) {
        if ((rc = wait_fd(w->fd, POLLIN, deadline_ms)) != 0) break;
        ssize_t n = bench_wire_fill(w);
        rc = n < 0 ? (int)n : 0;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", proto_op_name(op), deja_strerror(rc));
        return rc;
    }
    if (h->opcode != op || h->request_id != id || !(h->flags & PROTO_FLAG_REPLY)) {
        snprintf(err, errlen, "%s: unexpected reply", proto_op_name(op));
        return DEJA_ERR_PROTOCOL;
    }
    if (h->status != 0) {
        const uint8_t *msg = NULL;
        uint16_t len = 0;
        proto_decode_error(*body, h->body_len, &msg, &len);
        snprintf(err, errlen, "%s: %s (%.*s)", proto_op_name(op),
                 deja_strerror(proto_status_error(h->status)), (int)len,
                 msg ? (const char *)msg : "");
        return proto_status_error(h->status);
    }
    return 0;
}

static int handshake(bench_wire *w, const char *token, int timeout_ms, char *err,
                     size_t errlen) {
    proto_header h;
    const uint8_t *body;
    proto_hello_req hello = {.min_version = 1,
                             .max_version = PROTO_PROTOCOL_MAX,
                             .client_name = (const uint8_t *)CLIENT_NAME,
                             .client_name_len = (uint16_t)strlen(CLIENT_NAME)};
    int rc = proto_encode_hello_req(&w->out, 1, &hello);
    if (rc == 0)
        rc = roundtrip(w, PROTO_OP_HELLO, 1, now_ms() + timeout_ms, &h, &body, err,
                       errlen);
    if (rc != 0) return rc;
    proto_hello_resp hr;
    if (proto_decode_hello_resp(body, h.body_len, &hr) != 0 ||
        hr.version > PROTO_PROTOCOL_MAX) {
        snprintf(err, errlen, "HELLO: malformed reply or unknown version");
        return DEJA_ERR_PROTOCOL;
    }
    w->max_frame = hr.max_frame;
    if (token == NULL) {
        if (!(hr.server_flags & PROTO_SERVER_AUTH_REQUIRED)) return 0;
        snprintf(err, errlen, "the server requires a token (--auth-token)");
        return DEJA_ERR_AUTH_REQUIRED;
    }
    size_t tlen = strlen(token);
    if (tlen > UINT16_MAX) {
        snprintf(err, errlen, "auth token too long");
        return DEJA_ERR_INVALID_ARG;
    }
    proto_auth_req auth = {.token = (const uint8_t *)token, .token_len = (uint16_t)tlen};
    rc = proto_encode_auth_req(&w->out, 2, &auth);
    if (rc == 0)
        rc =
            roundtrip(w, PROTO_OP_AUTH, 2, now_ms() + timeout_ms, &h, &body, err, errlen);
    return rc;
}

int bench_wire_open(bench_wire *w, const char *addr, const char *token, int timeout_ms,
                    char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    proto_buf_init(&w->out);
    bench_wire_addr a;
    if (bench_wire_parse_addr(addr, &a) != 0) {
        snprintf(err, errlen, "bad address \"%s\"", addr);
        return DEJA_ERR_INVALID_ARG;
    }
    int rc = open_socket(&a, now_ms() + timeout_ms, &w->fd, err, errlen);
    if (rc == 0) rc = handshake(w, token, timeout_ms, err, errlen);
    if (rc != 0) bench_wire_close(w);
    return rc;
}

void bench_wire_close(bench_wire *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    proto_buf_free(&w->out);
    w->out_sent = 0;
    free(w->in);
    w->in = NULL;
    w->in_start = w->in_len = w->in_cap = w->in_consume = 0;
}

/* ---- non-blocking I/O ---------------------------------------------------------*/

int bench_wire_flush(bench_wire *w) {
    while (w->out_sent < w->out.len) {
        /* MSG_NOSIGNAL: a server that went away is an error code, not a
         * SIGPIPE that ends the run. */
        ssize_t n = send(w->fd, w->out.data + w->out_sent, w->out.len - w->out_sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            w->out_sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        return n < 0 && errno != EPIPE && errno != ECONNRESET ? DEJA_ERR_IO
                                                              : DEJA_ERR_CLOSED;
    }
    /* Everything went: start the buffer over, keeping its memory. */
    proto_buf_reset(&w->out);
    w->out_sent = 0;
    return 0;
}

/* Drops the frame handed out last, and the parsed prefix when asked to
 * make room. */
static void in_consume(bench_wire *w, int compact) {
    w->in_start += w->in_consume;
    w->in_consume = 0;
    if (w->in_start == w->in_len) {
        w->in_start = w->in_len = 0;
    } else if (compact && w->in_start > 0) {
        memmove(w->in, w->in + w->in_start, w->in_len - w->in_start);
        w->in_len -= w->in_start;
        w->in_start = 0;
    }
}

ssize_t bench_wire_fill(bench_wire *w) {
    in_consume(w, 1);
    ssize_t total = 0;
    for (;;) {
        if (w->in_cap - w->in_len < IN_CHUNK / 2) {
            size_t cap = w->in_cap ? w->in_cap * 2 : IN_CHUNK;
            uint8_t *p = realloc(w->in, cap);
            if (p == NULL) return DEJA_ERR_NOMEM;
            w->in = p;
            w->in_cap = cap;
        }
        size_t room = w->in_cap - w->in_len;
        ssize_t n = recv(w->fd, w->in + w->in_len, room, MSG_DONTWAIT);
        if (n > 0) {
            w->in_len += (size_t)n;
            total += n;
            /* A short read means the socket is empty: skip the EAGAIN. */
            if ((size_t)n < room) return total;
            continue;
        }
        if (n == 0) return DEJA_ERR_CLOSED;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return total;
        return errno == ECONNRESET ? DEJA_ERR_CLOSED : DEJA_ERR_IO;
    }
}

int bench_wire_next(bench_wire *w, proto_header *h, const uint8_t **body) {
    in_consume(w, 0);
    size_t avail = w->in_len - w->in_start;
    if (avail == 0) return 0;
    int r = proto_parse_frame(w->in + w->in_start, avail, MAX_REPLY, h);
    if (r <= 0) return r;
    w->in_consume = (size_t)r;
    *body = w->in + w->in_start + PROTO_HEADER_SIZE;
    return 1;
}
