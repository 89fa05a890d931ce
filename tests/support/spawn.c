/* spawn.c: starts and stops a real dejad process for integration tests
 * (with the helper deja-bench uses too, common/deja-spawn.h), and talks
 * to it over raw sockets. */
#include "spawn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deja-spawn.h"

/* Integration tests start dejad in a few milliseconds; 10 s is a hang. */
#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000

/* The data folder holds the port file and the socket too, so a restart
 * finds them where the first start put them. */
static int launch(test_server *s, const char *const *extra_args, int port) {
    const char *bin = getenv("DEJAD");
    if (!bin) {
        fprintf(stderr, "spawn: DEJAD is not set\n");
        return -1;
    }
    dejad_spawn_opts o = {
        .who = "spawn",
        .dejad = bin,
        .run_dir = s->dir,
        .data = s->dir,
        .host = "127.0.0.1",
        .port = port,
        .args = extra_args,
        .start_timeout_ms = START_TIMEOUT_MS,
    };
    dejad_proc p;
    int rc = dejad_spawn(&o, &p);
    s->pid = p.pid;
    s->owner = getpid();
    if (rc != 0) return -1;
    s->port = p.port;
    snprintf(s->addr, sizeof s->addr, "%s", p.addr);
    /* dejad_spawn puts the socket in run_dir, the data folder here. */
    snprintf(s->unix_path, sizeof s->unix_path, "unix:%s/dejad.sock", s->dir);
    return 0;
}

/* Whether this process started s (and so can wait for it); says why not. */
static int owned(const test_server *s, const char *what) {
    if (s->pid <= 0 || s->owner == getpid()) return 1;
    fprintf(stderr,
            "spawn: %s: dejad %d was started by process %d, not this one; a test that "
            "stops or restarts a server must start its own (harness.h)\n",
            what, (int)s->pid, (int)s->owner);
    return 0;
}

int test_server_start(test_server *s, const char *const *extra_args) {
    memset(s, 0, sizeof *s);
    if (dejad_spawn_mkdtemp("deja-test", s->dir, sizeof s->dir) != 0) {
        perror("spawn: mkdtemp");
        return -1;
    }
    return launch(s, extra_args, 0);
}

int test_server_restart(test_server *s, const char *const *extra_args) {
    if (!owned(s, "restart")) return -1;
    return launch(s, extra_args, s->port);
}

/* The test_server keeps only the pid; a dejad_proc is rebuilt from it. */
static dejad_proc proc_of(const test_server *s) {
    dejad_proc p;
    memset(&p, 0, sizeof p);
    p.pid = s->pid;
    snprintf(p.who, sizeof p.who, "spawn");
    return p;
}

int test_server_shutdown(test_server *s) {
    if (!owned(s, "shutdown")) return -1;
    dejad_proc p = proc_of(s);
    int status = dejad_spawn_stop(&p, STOP_TIMEOUT_MS);
    s->pid = 0;
    return status;
}

void test_server_kill(test_server *s) {
    if (!owned(s, "kill")) return;
    dejad_proc p = proc_of(s);
    dejad_spawn_kill(&p);
    s->pid = 0;
}

int test_server_stop(test_server *s) {
    int status = 0;
    if (s->pid > 0) status = test_server_shutdown(s);
    if (s->dir[0]) {
        if (dejad_spawn_rmtree(s->dir) != 0)
            fprintf(stderr, "spawn: cannot remove %s\n", s->dir);
        s->dir[0] = 0;
    }
    if (status != 0) fprintf(stderr, "spawn: dejad exited with status %d\n", status);
    return status;
}

int test_server_connect_raw(const test_server *s) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int test_raw_send(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int wait_readable(int fd, int timeout_ms) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r;
}

long test_raw_recv_frame(int fd, void *buf, size_t cap, int timeout_ms) {
    unsigned char *p = buf;
    size_t have = 0, need = 16;
    while (have < need) {
        if (wait_readable(fd, timeout_ms) <= 0) return -1;
        ssize_t n = recv(fd, p + have, need - have, 0);
        if (n == 0) return have == 0 ? 0 : -1;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        have += (size_t)n;
        if (have == 16 && need == 16) {
            if (p[0] != 0x44 || p[1] != 0x4A) return -1;
            size_t body = (size_t)p[12] | (size_t)p[13] << 8 | (size_t)p[14] << 16 |
                          (size_t)p[15] << 24;
            need = 16 + body;
            if (need > cap) return -1;
        }
    }
    return (long)have;
}

int test_raw_closed(int fd, int timeout_ms) {
    char c;
    if (wait_readable(fd, timeout_ms) <= 0) return 0;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

void test_unit_vector(uint64_t seed, float *v, int dim) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
    double norm = 0;
    for (int i = 0; i < dim; i++) {
        /* xorshift64*, then Box-Muller on two uniforms */
        double u[2];
        for (int j = 0; j < 2; j++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            u[j] =
                ((double)((x * 0x2545F4914F6CDD1DULL) >> 11) + 0.5) / 9007199254740992.0;
        }
        v[i] = (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
        norm += (double)v[i] * v[i];
    }
    float inv = (float)(1.0 / sqrt(norm));
    for (int i = 0; i < dim; i++)
        v[i] *= inv;
}
