/* bench-wire.h: deja-bench's own protocol connection, for the open-loop
 * driver (bench-openloop.c).
 *
 * libdeja's deja_client is made for one thread per connection: its sends
 * and receives wait (within a deadline) until a whole frame has gone or
 * come, and it does not hand out its socket. One thread that keeps C
 * connections busy on a schedule must never wait on any one of them, so
 * the driver speaks the protocol itself with the proto/ codec: connect
 * and handshake are blocking (they happen before the clock starts, or
 * when a lost connection is replaced), everything after is non-blocking,
 * with frames queued in an output buffer and replies parsed out of an
 * input buffer as bytes arrive.
 *
 * Threading: a bench_wire belongs to one thread. */
#ifndef DEJA_BENCH_WIRE_H
#define DEJA_BENCH_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

#define BENCH_WIRE_HOST_MAX 256
#define BENCH_WIRE_PATH_MAX 108 /* sizeof sockaddr_un.sun_path */

/* A parsed address: a Unix socket path, or a host and a port. */
typedef struct bench_wire_addr {
    int is_unix;
    char path[BENCH_WIRE_PATH_MAX];
    char host[BENCH_WIRE_HOST_MAX];
    char port[8];
} bench_wire_addr;

typedef struct bench_wire {
    int fd;             /* -1 when closed */
    uint32_t max_frame; /* the server's limit for request frames (HELLO) */
    proto_buf out;      /* queued frames: bytes [out_sent, out.len) not yet sent */
    size_t out_sent;
    uint8_t *in; /* received bytes: [in_start, in_len) not yet handed out */
    size_t in_start, in_len, in_cap;
    size_t in_consume; /* size of the frame handed out last */
} bench_wire;

/* Parses the address forms libdeja accepts (deja.h, "Addresses"):
 * "deja://host[:port]", "host[:port]", "[v6][:port]", a bare IPv6
 * literal, "unix:///abs/path", "unix:path" and "/path"; the port defaults
 * to 7447. Returns 0, or -1 for a malformed address. */
int bench_wire_parse_addr(const char *addr, bench_wire_addr *out);

/* Connects to addr, runs HELLO (and AUTH when token is not NULL), then
 * leaves the socket non-blocking. Blocks for at most about timeout_ms per
 * step. Returns 0, or a negative DEJA_ERR_* code with a reason in err; on
 * error w is closed. */
int bench_wire_open(bench_wire *w, const char *addr, const char *token, int timeout_ms,
                    char *err, size_t errlen);

/* Closes the socket and frees the buffers; w may be opened again. A
 * closed (or zeroed and fd -1) w is a no-op. */
void bench_wire_close(bench_wire *w);

/* 1 when queued bytes wait to be sent (the caller should wait until the
 * socket is writable and flush again), else 0. */
static inline int bench_wire_pending(const bench_wire *w) {
    return w->out_sent < w->out.len;
}

/* Sends what the socket takes now, without waiting. Returns 0 (all queued
 * bytes sent), 1 (some remain), or DEJA_ERR_CLOSED / DEJA_ERR_IO. Byte
 * offsets into w->out stay valid until everything queued has been sent. */
int bench_wire_flush(bench_wire *w);

/* Reads what has arrived, without waiting. Returns the bytes read (0 when
 * none were there), or DEJA_ERR_CLOSED (the server closed or reset the
 * connection), DEJA_ERR_IO, DEJA_ERR_NOMEM. */
ssize_t bench_wire_fill(bench_wire *w);

/* Hands out the next complete frame received: 1 with *h and *body (valid
 * until the next bench_wire_next or bench_wire_fill), 0 when more bytes
 * are needed, or a negative code when the stream cannot be parsed. */
int bench_wire_next(bench_wire *w, proto_header *h, const uint8_t **body);

#endif
