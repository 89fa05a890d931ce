/* spawn.c: starts and stops a real dejad process for integration tests. */
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

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int launch(test_server *s, const char *const *extra_args, int port) {
    const char *bin = getenv("DEJAD");
    if (!bin) {
        fprintf(stderr, "spawn: DEJAD is not set\n");
        return -1;
    }
    char port_file[320], port_arg[16], sock[280];
    snprintf(port_file, sizeof port_file, "%s/port", s->dir);
    snprintf(port_arg, sizeof port_arg, "%d", port);
    snprintf(sock, sizeof sock, "%s/dejad.sock", s->dir);
    unlink(port_file);

    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "--host";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--port";
    argv[argc++] = port_arg;
    argv[argc++] = "--port-file";
    argv[argc++] = port_file;
    argv[argc++] = "--data";
    argv[argc++] = s->dir;
    argv[argc++] = "--unix";
    argv[argc++] = sock;
    for (int i = 0; extra_args && extra_args[i] && argc < 62; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;

    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execv(bin, (char *const *)argv);
        perror("spawn: execv");
        _exit(127);
    }
    s->pid = pid;
    for (int waited = 0; waited < 10000; waited += 10) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int p = 0;
            int ok = fscanf(f, "%d", &p) == 1 && p > 0;
            fclose(f);
            if (ok) {
                s->port = p;
                snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", p);
                snprintf(s->unix_path, sizeof s->unix_path, "unix:%s", sock);
                return 0;
            }
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "spawn: dejad exited early (status %d)\n", status);
            s->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "spawn: dejad did not listen within 10 s\n");
    test_server_kill(s);
    return -1;
}

int test_server_start(test_server *s, const char *const *extra_args) {
    memset(s, 0, sizeof *s);
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/deja-test-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir)) {
        perror("spawn: mkdtemp");
        return -1;
    }
    return launch(s, extra_args, 0);
}

int test_server_restart(test_server *s, const char *const *extra_args) {
    return launch(s, extra_args, s->port);
}

int test_server_shutdown(test_server *s) {
    if (s->pid <= 0) return -1;
    kill(s->pid, SIGTERM);
    int status = 0;
    for (int waited = 0; waited < 10000; waited += 10) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        sleep_ms(10);
    }
    test_server_kill(s);
    return -1;
}

void test_server_kill(test_server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

int test_server_stop(test_server *s) {
    int status = 0;
    if (s->pid > 0) status = test_server_shutdown(s);
    if (s->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) fprintf(stderr, "spawn: cannot remove %s\n", s->dir);
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
    do r = poll(&pfd, 1, timeout_ms);
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
            u[j] = ((double)((x * 0x2545F4914F6CDD1DULL) >> 11) + 0.5) / 9007199254740992.0;
        }
        v[i] = (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
        norm += (double)v[i] * v[i];
    }
    float inv = (float)(1.0 / sqrt(norm));
    for (int i = 0; i < dim; i++) v[i] *= inv;
}
