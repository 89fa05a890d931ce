/* spawn.h: starts a real dejad for integration tests.
 *
 * The server binary comes from the DEJAD environment variable (meson sets
 * it). Each server gets a fresh temporary data folder, an ephemeral
 * loopback port (--port 0, reported through --port-file) and a Unix socket
 * inside the data folder. */
#ifndef DEJA_TEST_SPAWN_H
#define DEJA_TEST_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct test_server {
    pid_t pid;
    pid_t owner; /* the process that started it: the only one that can wait for it */
    int port;
    char dir[256];       /* data folder (removed by test_server_stop) */
    char addr[64];       /* "127.0.0.1:PORT" for deja_connect */
    char unix_path[320]; /* "unix:DIR/dejad.sock" for deja_connect */
} test_server;

/* Starts dejad with the default flags plus extra_args (NULL-terminated
 * array, may be NULL) and waits up to 10 s until it listens. Returns 0 or
 * -1 (with a message on stderr). */
int test_server_start(test_server *s, const char *const *extra_args);

/* Starts dejad again on the same data folder and port (after a kill). */
int test_server_restart(test_server *s, const char *const *extra_args);

/* SIGTERM, waits for exit; returns the exit status (0 = clean) or -1.
 * Only the process that started the server can wait for it: a test run by
 * RUN (a forked child) that stops main()'s server gets -1 and a message
 * saying to start a server of its own. The same holds for test_server_kill
 * and test_server_restart. */
int test_server_shutdown(test_server *s);

/* SIGKILL and reap. */
void test_server_kill(test_server *s);

/* Shuts down if running and removes the data folder. Returns dejad's exit
 * status (0 = clean; a sanitizer report at exit makes it non-zero), or 0
 * if the server was not running. */
int test_server_stop(test_server *s);

/* Opens a raw TCP connection to the server (blocking, TCP_NODELAY).
 * Returns the fd or -1. */
int test_server_connect_raw(const test_server *s);

/* Fills v[dim] with a unit vector determined by seed (Gaussian
 * components, so distinct seeds give nearly orthogonal vectors). */
void test_unit_vector(uint64_t seed, float *v, int dim);

/* Sends all len bytes on fd. Returns 0 or -1. */
int test_raw_send(int fd, const void *buf, size_t len);

/* Reads one complete frame from fd into buf (cap bytes) within timeout_ms.
 * Returns the frame length, 0 if the peer closed cleanly before a frame
 * began, or -1 on timeout, error or a malformed frame. */
long test_raw_recv_frame(int fd, void *buf, size_t cap, int timeout_ms);

/* Returns 1 if the peer has closed fd (EOF within timeout_ms), else 0. */
int test_raw_closed(int fd, int timeout_ms);

#endif
