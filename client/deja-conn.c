/* deja-conn.c: address parsing, connecting with a deadline, and deadline
 * bounded send/receive for libdeja.
 *
 * Sockets are non-blocking from the start: a blocking connect() cannot be
 * bounded portably, and with poll() in front of every wait one deadline
 * can cover a whole request (send and receive) however the bytes trickle. */
#include "deja-private.h"

#include <errno.h>
#include <fcntl.h>
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
#include "deja.h"

#define ADDR_HOST_MAX 256

/* A parsed address: either a Unix socket path or a host and port. */
typedef struct conn_addr {
    int is_unix;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char host[ADDR_HOST_MAX];
    char port[8];
} conn_addr;

int64_t deja__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before deadline, as a poll() timeout, or -1 once it
 * has passed. Callers loop until -1, so a wait that poll() ends early (or
 * a 0 in the last millisecond) only costs another check of the clock. */
static int remaining_ms(int64_t deadline_ms) {
    int64_t left = deadline_ms - deja__now_ms();
    if (left < 0) return -1;
    if (left > 0x7fffffff) return 0x7fffffff;
    return (int)left;
}

static int parse_port(const char *s, size_t len, char out[8]) {
    if (len == 0 || len > 5) return DEJA_ERR_INVALID_ARG;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return DEJA_ERR_INVALID_ARG;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535) return DEJA_ERR_INVALID_ARG;
    snprintf(out, 8, "%u", v);
    return 0;
}

static int copy_host(const char *s, size_t len, conn_addr *a) {
    if (len == 0 || len >= sizeof a->host) return DEJA_ERR_INVALID_ARG;
    memcpy(a->host, s, len);
    a->host[len] = 0;
    return 0;
}

static int parse_addr(const char *addr, conn_addr *a, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    if (addr == NULL || addr[0] == 0) {
        snprintf(err, errlen, "empty address");
        return DEJA_ERR_INVALID_ARG;
    }
    const char *full = addr;
    const char *path = NULL;
    if (strncmp(addr, "unix://", 7) == 0) {
        /* URL form: the authority is empty, so what follows is an absolute
         * path ("unix:///run/deja.sock"). */
        path = addr + 7;
        if (path[0] != '/') {
            snprintf(err, errlen, "\"%s\": unix:// needs an absolute path (unix:///path)",
                     full);
            return DEJA_ERR_INVALID_ARG;
        }
    } else if (strncmp(addr, "unix:", 5) == 0) {
        path = addr + 5;
    } else if (addr[0] == '/') {
        path = addr;
    } else if (strncmp(addr, "deja://", 7) == 0) {
        addr += 7;
    }
    if (path) {
        size_t n = strlen(path);
        if (n == 0 || n >= sizeof a->path) {
            snprintf(err, errlen, "bad Unix socket path in \"%s\"", full);
            return DEJA_ERR_INVALID_ARG;
        }
        a->is_unix = 1;
        memcpy(a->path, path, n + 1);
        return 0;
    }

    int rc;
    const char *colon = strchr(addr, ':');
    snprintf(a->port, sizeof a->port, "%d", DEJA_DEFAULT_PORT);
    if (addr[0] == '[') {
        /* "[v6]" or "[v6]:port": brackets are the only way to give a port
         * with an IPv6 literal. */
        const char *close = strchr(addr, ']');
        if (close == NULL) {
            rc = DEJA_ERR_INVALID_ARG;
        } else {
            rc = copy_host(addr + 1, (size_t)(close - addr - 1), a);
            if (rc == 0 && close[1] == ':')
                rc = parse_port(close + 2, strlen(close + 2), a->port);
            else if (rc == 0 && close[1] != 0)
                rc = DEJA_ERR_INVALID_ARG;
        }
    } else if (colon && strchr(colon + 1, ':')) {
        /* Two or more colons without brackets: a bare IPv6 literal. */
        rc = copy_host(addr, strlen(addr), a);
    } else if (colon) {
        rc = copy_host(addr, (size_t)(colon - addr), a);
        if (rc == 0) rc = parse_port(colon + 1, strlen(colon + 1), a->port);
    } else {
        rc = copy_host(addr, strlen(addr), a);
    }
    if (rc != 0) snprintf(err, errlen, "bad address \"%s\"", full);
    return rc;
}

int deja__addr_check(const char *addr, char *err, size_t errlen) {
    conn_addr a;
    return parse_addr(addr, &a, err, errlen);
}

/* Waits for a non-blocking connect on fd to finish. Returns 0, TIMEOUT,
 * or CONNECT with errno's reason in err. */
static int finish_connect(int fd, int64_t deadline_ms, char *err, size_t errlen) {
    for (;;) {
        int left = remaining_ms(deadline_ms);
        if (left < 0) {
            snprintf(err, errlen, "connect timed out");
            return DEJA_ERR_TIMEOUT;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n = poll(&p, 1, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return DEJA_ERR_CONNECT;
        }
        if (n == 0) continue; /* re-check the deadline */
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
        if (soerr != 0) {
            snprintf(err, errlen, "connect: %s", strerror(soerr));
            return DEJA_ERR_CONNECT;
        }
        return 0;
    }
}

static int open_unix(const conn_addr *a, int64_t deadline_ms, int *fd_out, char *err,
                     size_t errlen) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, a->path, strlen(a->path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return DEJA_ERR_CONNECT;
    }
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) break;
        int e = errno;
        if (e == EINTR) continue;
        if (e == EINPROGRESS) {
            int rc = finish_connect(fd, deadline_ms, err, errlen);
            if (rc != 0) {
                close(fd);
                return rc;
            }
            break;
        }
        /* A non-blocking Unix connect says EAGAIN when the listen backlog
         * is full; it never completes by itself, so retry until the
         * deadline. */
        if (e == EAGAIN && remaining_ms(deadline_ms) > 0) {
            struct timespec ts = {0, 2 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        close(fd);
        snprintf(err, errlen, "connect %s: %s", a->path, strerror(e));
        return e == EAGAIN ? DEJA_ERR_TIMEOUT : DEJA_ERR_CONNECT;
    }
    *fd_out = fd;
    return 0;
}

static int open_tcp(const conn_addr *a, int64_t deadline_ms, int *fd_out, char *err,
                    size_t errlen) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(a->host, a->port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "resolve %s: %s", a->host, gai_strerror(g));
        return DEJA_ERR_CONNECT;
    }
    /* Try each resolved address in order, as most clients do; the one
     * deadline covers all attempts. */
    int rc = DEJA_ERR_CONNECT;
    snprintf(err, errlen, "no address for %s", a->host);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            continue;
        }
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            r = finish_connect(fd, deadline_ms, err, errlen);
        } else if (r != 0) {
            snprintf(err, errlen, "connect: %s", strerror(errno));
            r = DEJA_ERR_CONNECT;
        }
        if (r == 0) {
            /* Requests are small and latency-bound: never let Nagle hold a
             * frame back waiting for an ACK. */
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            *fd_out = fd;
            rc = 0;
            break;
        }
        close(fd);
        rc = r;
        if (r == DEJA_ERR_TIMEOUT) break;
    }
    freeaddrinfo(res);
    if (rc != 0 && rc != DEJA_ERR_TIMEOUT) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (%s:%s)", a->host, a->port);
    }
    return rc;
}

int deja__conn_open(const char *addr, int64_t deadline_ms, int *fd_out, char *err,
                    size_t errlen) {
    conn_addr a;
    int rc = parse_addr(addr, &a, err, errlen);
    if (rc != 0) return rc;
    return a.is_unix ? open_unix(&a, deadline_ms, fd_out, err, errlen)
                     : open_tcp(&a, deadline_ms, fd_out, err, errlen);
}

int deja__conn_send_all(int fd, const uint8_t *p, size_t n, int64_t deadline_ms) {
    size_t off = 0;
    while (off < n) {
        /* MSG_NOSIGNAL: a server that went away must surface as an error
         * code, not as a SIGPIPE that kills the application. */
        ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int left = remaining_ms(deadline_ms);
            if (left < 0) return DEJA_ERR_TIMEOUT;
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, left) < 0 && errno != EINTR) return DEJA_ERR_IO;
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) return DEJA_ERR_CLOSED;
        return DEJA_ERR_IO;
    }
    return 0;
}

ssize_t deja__conn_send_some(int fd, const uint8_t *p, size_t n) {
    for (;;) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0) return w;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno == EPIPE || errno == ECONNRESET) return DEJA_ERR_CLOSED;
        return DEJA_ERR_IO;
    }
}

ssize_t deja__conn_recv(int fd, uint8_t *p, size_t cap, int64_t deadline_ms, int wait) {
    for (;;) {
        if (wait) {
            /* Poll first: when this is called the reply is usually not
             * there yet, so a recv() first would mostly be a wasted EAGAIN. */
            int left = remaining_ms(deadline_ms);
            if (left < 0) return DEJA_ERR_TIMEOUT;
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            int n = poll(&pf, 1, left);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return DEJA_ERR_IO;
            if (n == 0) continue; /* loop to re-check the deadline */
        }
        ssize_t r = recv(fd, p, cap, MSG_DONTWAIT);
        if (r > 0) return r;
        if (r == 0) return DEJA_ERR_CLOSED;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait) return 0;
            continue;
        }
        if (errno == ECONNRESET) return DEJA_ERR_CLOSED;
        return DEJA_ERR_IO;
    }
}

int deja__conn_readable_now(int fd) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int n;
    do
        n = poll(&pf, 1, 0);
    while (n < 0 && errno == EINTR);
    return n != 0; /* an error from poll() also means "do not reuse" */
}
