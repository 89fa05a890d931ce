/* deja-private.h: socket plumbing shared inside libdeja (not installed).
 *
 * deja-conn.c turns an address string into a connected, non-blocking
 * socket and moves bytes with deadlines; deja-client.c builds the protocol
 * on top. Every wait is bounded by an absolute deadline on the monotonic
 * clock, so a call's timeout covers its send and its receive together. */
#ifndef DEJA_PRIVATE_H
#define DEJA_PRIVATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t deja__now_ms(void);

/* Parses addr ("host:port", "host", "[v6]:port", "unix:/path", "/path"),
 * connects within timeout_ms and returns a non-blocking, close-on-exec
 * socket in *fd_out (TCP_NODELAY set on TCP).
 * Errors: INVALID_ARG (address syntax), CONNECT (resolution failed or
 * refused), TIMEOUT. A readable reason is written to err. */
int deja__conn_open(const char *addr, int timeout_ms, int *fd_out, char *err,
                    size_t errlen);

/* Sends all n bytes before deadline_ms.
 * Errors: TIMEOUT, CLOSED (peer reset or closed), IO. */
int deja__conn_send_all(int fd, const uint8_t *p, size_t n, int64_t deadline_ms);

/* Waits until fd is readable, then reads at most cap bytes into p.
 * Returns the number of bytes read (> 0), or TIMEOUT, CLOSED (orderly
 * shutdown by the peer) or IO. */
ssize_t deja__conn_recv(int fd, uint8_t *p, size_t cap, int64_t deadline_ms);

#endif
