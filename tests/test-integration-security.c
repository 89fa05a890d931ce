/* test-integration-security.c: dejad holds up against hostile clients.
 *
 * Each test starts its own dejad with the limits it needs and attacks it
 * over raw sockets, as an outsider would: too many connections, silent and
 * trickling clients, frames that would exhaust memory, token guessing,
 * tenants reaching outside their prefix, SIGHUP, a half-closed socket, and
 * an exposed address without a token. After each attack the server must
 * still answer. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"
#include "support/spawn.h"

#define DIM 8
#define SRV_LOG_BURST_FOR_TEST 5 /* srv_log_limited's lines per 10 s window */
#define BUF (1u << 20)

static uint8_t reply[BUF];

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sends the frame in b (then empties it) and returns the reply's status
 * (0 = ok), or -1 when no reply came. The reply stays in `reply`. */
static int roundtrip(int fd, proto_buf *b) {
    if (test_raw_send(fd, b->data, b->len) != 0) return -1;
    proto_buf_reset(b);
    long n = test_raw_recv_frame(fd, reply, BUF, 10000);
    if (n <= 0) return -1;
    proto_header h;
    ASSERT_GT(proto_parse_frame(reply, (size_t)n, BUF, &h), 0);
    return h.status;
}

static int ping(int fd) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ping(&b, 1, 0, (const uint8_t *)"hi", 2));
    int st = roundtrip(fd, &b);
    proto_buf_free(&b);
    return st;
}

static int auth(int fd, const char *token) {
    proto_buf b;
    proto_buf_init(&b);
    proto_auth_req a = {.token = (const uint8_t *)token,
                        .token_len = (uint16_t)strlen(token)};
    ASSERT_OK(proto_encode_auth_req(&b, 2, &a));
    int st = roundtrip(fd, &b);
    proto_buf_free(&b);
    return st;
}

static int store(int fd, const char *ns, uint64_t seed) {
    float v[DIM];
    uint8_t vec[4 * DIM];
    test_unit_vector(seed, v, DIM);
    proto_vector_write(vec, v, DIM);
    proto_store_req r = {.ns = (const uint8_t *)ns,
                         .ns_len = (uint8_t)strlen(ns),
                         .dim = DIM,
                         .vector = vec,
                         .response = (const uint8_t *)"answer",
                         .response_len = 6};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_store_req(&b, 3, &r));
    int st = roundtrip(fd, &b);
    proto_buf_free(&b);
    return st;
}

/* Returns the status; *hits gets the hit count on success. */
static int lookup(int fd, const char *ns, uint64_t seed, uint16_t *hits) {
    float v[DIM];
    uint8_t vec[4 * DIM];
    test_unit_vector(seed, v, DIM);
    proto_vector_write(vec, v, DIM);
    proto_lookup_req r = {.ns = (const uint8_t *)ns,
                          .ns_len = (uint8_t)strlen(ns),
                          .dim = DIM,
                          .k = 4,
                          .threshold = 0.9f,
                          .vector = vec};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_lookup_req(&b, 4, 0, &r));
    int st = roundtrip(fd, &b);
    proto_buf_free(&b);
    if (st == 0 && hits) {
        proto_header h;
        proto_parse_frame(reply, BUF, BUF, &h);
        proto_hit hv[4];
        ASSERT_OK(
            proto_decode_lookup_resp(reply + PROTO_HEADER_SIZE, h.body_len, hv, 4, hits));
    }
    return st;
}

static int ns_op(int fd, uint8_t opcode, const char *ns) {
    proto_buf b;
    proto_buf_init(&b);
    const uint8_t *name = (const uint8_t *)ns;
    uint8_t len = (uint8_t)strlen(ns);
    switch (opcode) {
    case PROTO_OP_FLUSH: ASSERT_OK(proto_encode_flush_req(&b, 5, name, len)); break;
    case PROTO_OP_NS_DROP: ASSERT_OK(proto_encode_ns_drop_req(&b, 5, name, len)); break;
    case PROTO_OP_NS_INFO: ASSERT_OK(proto_encode_ns_info_req(&b, 5, name, len)); break;
    case PROTO_OP_STATS: ASSERT_OK(proto_encode_stats_req(&b, 5, name, len)); break;
    default: ASSERT_TRUE(0);
    }
    int st = roundtrip(fd, &b);
    proto_buf_free(&b);
    return st;
}

/* The value of one STATS key (ns "" = the whole server), or -1. */
static long long stat_value(int fd, const char *ns, const char *key) {
    if (ns_op(fd, PROTO_OP_STATS, ns) != 0) return -1;
    proto_header h;
    proto_parse_frame(reply, BUF, BUF, &h);
    size_t pos = 0;
    proto_stat s;
    while (proto_stats_next(reply + PROTO_HEADER_SIZE, h.body_len, &pos, &s) == 1)
        if (s.key_len == strlen(key) && memcmp(s.key, key, s.key_len) == 0)
            return (long long)s.value;
    return -1;
}

/* Names NS_LIST returns, joined with spaces, into out. */
static int ns_list(int fd, char *out, size_t cap) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ns_list_req(&b, 6));
    int st = roundtrip(fd, &b);
    proto_buf_free(&b);
    out[0] = 0;
    if (st) return st;
    proto_header h;
    proto_parse_frame(reply, BUF, BUF, &h);
    size_t pos = 0;
    const uint8_t *name;
    uint8_t len;
    while (proto_ns_list_next(reply + PROTO_HEADER_SIZE, h.body_len, &pos, &name, &len) ==
           1)
        snprintf(out + strlen(out), cap - strlen(out), "%s%.*s", out[0] ? " " : "", len,
                 (const char *)name);
    return 0;
}

static int connect_authed(test_server *s, const char *token) {
    int fd = test_server_connect_raw(s);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(auth(fd, token), 0);
    return fd;
}

/* ---- connection limits ---------------------------------------------------- */

static void test_connections_past_the_maximum_get_busy_and_are_closed(void) {
    test_server s;
    const char *args[] = {"--max-connections", "4", NULL};
    ASSERT_OK(test_server_start(&s, args));
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = test_server_connect_raw(&s);
        ASSERT_EQ(ping(fds[i]), 0);
    }
    int extra = test_server_connect_raw(&s);
    ASSERT_GE(extra, 0);
    long n = test_raw_recv_frame(extra, reply, BUF, 5000);
    ASSERT_GT(n, 0);
    proto_header h;
    ASSERT_GT(proto_parse_frame(reply, (size_t)n, BUF, &h), 0);
    ASSERT_EQ(h.status, -DEJA_ERR_BUSY);
    ASSERT_TRUE(test_raw_closed(extra, 5000));
    close(extra);
    ASSERT_EQ(stat_value(fds[0], "", "connections_refused"), 1);
    /* A slot that frees up is usable again. */
    close(fds[3]);
    int again = -1;
    for (int tries = 0; tries < 50 && again < 0; tries++) {
        sleep_ms(20);
        int fd = test_server_connect_raw(&s);
        if (ping(fd) == 0)
            again = fd;
        else
            close(fd);
    }
    ASSERT_GE(again, 0);
    close(again);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    ASSERT_EQ(test_server_stop(&s), 0);
}

static void test_idle_and_trickling_connections_are_closed_active_ones_stay(void) {
    test_server s;
    const char *args[] = {"--idle-timeout", "1", NULL};
    ASSERT_OK(test_server_start(&s, args));
    int silent = test_server_connect_raw(&s);
    int trickle = test_server_connect_raw(&s);
    int active = test_server_connect_raw(&s);
    /* A frame header announcing a body that comes one byte at a time. */
    proto_header hdr = {
        .version = PROTO_VERSION, .opcode = PROTO_OP_PING, .body_len = 1000};
    uint8_t head[PROTO_HEADER_SIZE];
    proto_header_write(head, &hdr);
    ASSERT_OK(test_raw_send(trickle, head, sizeof head));
    uint64_t t0 = now_ms();
    int trickle_closed = 0;
    while (now_ms() - t0 < 2600) {
        ASSERT_EQ(ping(active), 0);
        if (!trickle_closed && test_raw_send(trickle, "x", 1) != 0) trickle_closed = 1;
        sleep_ms(200);
    }
    ASSERT_TRUE(test_raw_closed(silent, 2000));
    ASSERT_TRUE(test_raw_closed(trickle, 2000));
    ASSERT_EQ(ping(active), 0);
    ASSERT_GE(stat_value(active, "", "connections_idle_closed"), 2);
    close(silent);
    close(trickle);
    close(active);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* Three clients each start a frame of 1.5 MiB on a server whose client
 * memory is 4 MiB (one worker: half of it, 2 MiB, admits large frames):
 * the first is admitted, the others get BUSY, and small requests still
 * work. */
static void test_large_frames_past_the_client_memory_budget_get_busy(void) {
    test_server s;
    const char *args[] = {"--max-client-memory", "4194304", "--threads", "1", NULL};
    ASSERT_OK(test_server_start(&s, args));
    int fds[3];
    int busy = 0;
    for (int i = 0; i < 3; i++) {
        fds[i] = test_server_connect_raw(&s);
        proto_header hdr = {.version = PROTO_VERSION,
                            .opcode = PROTO_OP_PING,
                            .request_id = 9,
                            .body_len = 1536u * 1024u};
        uint8_t head[PROTO_HEADER_SIZE + 100];
        memset(head, 'a', sizeof head);
        proto_header_write(head, &hdr);
        ASSERT_OK(test_raw_send(fds[i], head, sizeof head));
        long n = test_raw_recv_frame(fds[i], reply, BUF, 300);
        if (n > 0) {
            proto_header h;
            ASSERT_GT(proto_parse_frame(reply, (size_t)n, BUF, &h), 0);
            ASSERT_EQ(h.status, -DEJA_ERR_BUSY);
            busy++;
        }
    }
    ASSERT_EQ(busy, 2);
    int probe = test_server_connect_raw(&s);
    ASSERT_EQ(ping(probe), 0);
    ASSERT_EQ(stat_value(probe, "", "frames_busy"), 2);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    close(probe);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* A client that pipelines requests and never reads its replies stops being
 * read once its unsent replies pass the limit; the server stays responsive
 * and the client's bytes stay bounded. */
static void test_a_client_that_never_reads_is_bounded(void) {
    test_server s;
    const char *args[] = {"--max-outbuf", "65536", NULL};
    ASSERT_OK(test_server_start(&s, args));
    int hog = test_server_connect_raw(&s);
    int rcv = 4096;
    setsockopt(hog, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    proto_buf b;
    proto_buf_init(&b);
    static uint8_t payload[60000];
    memset(payload, 'p', sizeof payload);
    for (int i = 0; i < 200; i++)
        ASSERT_OK(proto_encode_ping(&b, (uint32_t)i, 0, payload, sizeof payload));
    /* The server stops reading, so the send blocks: send from a child. */
    pid_t pid = fork();
    if (pid == 0) {
        int r = test_raw_send(hog, b.data, b.len);
        _exit(r == 0 ? 0 : 1);
    }
    sleep_ms(500);
    int probe = test_server_connect_raw(&s);
    ASSERT_EQ(ping(probe), 0);
    long long held = -1;
    for (int i = 0; i < 20; i++) {
        sleep_ms(100);
        held = stat_value(probe, "", "client_buffer_bytes");
    }
    /* Unsent replies (about max-outbuf plus one batch) and the read
     * buffer; 12 MB of pings went out. */
    ASSERT_LT(held, 1500000);
    ASSERT_GE(held, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(hog);
    close(probe);
    proto_buf_free(&b);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* CPU seconds (user + system) the process has used so far. */
static double cpu_seconds(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    unsigned long utime = 0, stime = 0;
    /* Fields after the command: state is field 3; utime 14, stime 15. */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                     &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static int count_lines_with(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* The body of the fd-limit test, in a child whose open-file limit (and so
 * its dejad's) is 64: 120 connections arrive at once. */
static void accept_storm_at_the_fd_limit(const char *log_path) {
    struct rlimit rl = {64, 64};
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(logfd, 0);
    ASSERT_GE(dup2(logfd, 2), 0);
    close(logfd);
    test_server s;
    ASSERT_OK(test_server_start(&s, NULL));
    /* The test holds its own descriptors too: use a second limit for the
     * clients by staying under it (the kernel's backlog takes the rest). */
    int fds[50];
    int n = 0;
    double cpu0 = cpu_seconds(s.pid);
    for (int i = 0; i < 50; i++) {
        fds[i] = test_server_connect_raw(&s);
        if (fds[i] >= 0) n++;
    }
    sleep_ms(1500);
    double cpu = cpu_seconds(s.pid) - cpu0;
    /* At the limit dejad neither spins nor floods its log. */
    ASSERT_TRUE(cpu < 0.5);
    ASSERT_LE(count_lines_with(log_path, "accept"), (int)SRV_LOG_BURST_FOR_TEST + 1);
    for (int i = 0; i < 50; i++)
        if (fds[i] >= 0) close(fds[i]);
    /* Once the storm is over, new clients are served. */
    int ok = 0;
    for (int tries = 0; tries < 100 && !ok; tries++) {
        sleep_ms(50);
        int fd = test_server_connect_raw(&s);
        if (fd >= 0) {
            ok = ping(fd) == 0;
            close(fd);
        }
    }
    ASSERT_TRUE(ok);
    ASSERT_EQ(test_server_stop(&s), 0);
    (void)n;
}

static void test_an_accept_storm_at_the_fd_limit_neither_spins_nor_floods_the_log(void) {
    char log_path[] = "/tmp/deja-storm-XXXXXX";
    int lfd = mkstemp(log_path);
    ASSERT_GE(lfd, 0);
    close(lfd);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (setjmp(harness_jmp) == 0) {
            accept_storm_at_the_fd_limit(log_path);
            _exit(0);
        }
        _exit(1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "tail -20 %s >&2", log_path);
        if (system(cmd) != 0) perror("tail");
    }
    unlink(log_path);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Namespaces cost memory (about 40 KB each), so clients may create only
 * --max-namespaces of them; the search breadths a namespace may ask for
 * are bounded too. */
static void test_namespace_count_and_search_breadth_are_bounded(void) {
    test_server s;
    const char *args[] = {"--max-namespaces", "3", NULL};
    ASSERT_OK(test_server_start(&s, args));
    int fd = test_server_connect_raw(&s);
    ASSERT_EQ(store(fd, "n1", 1), 0);
    ASSERT_EQ(store(fd, "n2", 1), 0);
    ASSERT_EQ(store(fd, "n3", 1), 0);
    ASSERT_EQ(store(fd, "n4", 1), -DEJA_ERR_STORAGE_FULL);
    ASSERT_EQ(store(fd, "n3", 2), 0); /* existing ones keep working */
    proto_buf b;
    proto_buf_init(&b);
    proto_ns_config cfg = {.dim = DIM};
    ASSERT_OK(proto_encode_ns_create_req(&b, 7, (const uint8_t *)"n5", 2, &cfg));
    ASSERT_EQ(roundtrip(fd, &b), -DEJA_ERR_STORAGE_FULL);
    ASSERT_EQ(ns_op(fd, PROTO_OP_NS_DROP, "n1"), 0);
    cfg.hnsw_ef_search = 60000; /* every LOOKUP would pay for it */
    ASSERT_OK(proto_encode_ns_create_req(&b, 8, (const uint8_t *)"n6", 2, &cfg));
    ASSERT_EQ(roundtrip(fd, &b), -DEJA_ERR_BAD_REQUEST);
    cfg.hnsw_ef_search = 0;
    cfg.hnsw_ef_construction = 60000;
    ASSERT_OK(proto_encode_ns_create_req(&b, 9, (const uint8_t *)"n6", 2, &cfg));
    ASSERT_EQ(roundtrip(fd, &b), -DEJA_ERR_BAD_REQUEST);
    cfg.hnsw_ef_construction = 4096;
    ASSERT_OK(proto_encode_ns_create_req(&b, 10, (const uint8_t *)"n6", 2, &cfg));
    ASSERT_EQ(roundtrip(fd, &b), 0);
    proto_buf_free(&b);
    close(fd);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* ---- the stream ------------------------------------------------------------ */

static void test_replies_owed_before_a_half_close_are_sent(void) {
    test_server s;
    ASSERT_OK(test_server_start(&s, NULL));
    int fd = test_server_connect_raw(&s);
    float v[DIM];
    uint8_t vec[4 * DIM];
    test_unit_vector(7, v, DIM);
    proto_vector_write(vec, v, DIM);
    proto_store_req r = {.ns = (const uint8_t *)"half",
                         .ns_len = 4,
                         .dim = DIM,
                         .vector = vec,
                         .response = (const uint8_t *)"kept",
                         .response_len = 4};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_store_req(&b, 42, &r));
    ASSERT_OK(test_raw_send(fd, b.data, b.len));
    ASSERT_OK(shutdown(fd, SHUT_WR));
    long n = test_raw_recv_frame(fd, reply, BUF, 5000);
    ASSERT_GT(n, 0);
    proto_header h;
    ASSERT_GT(proto_parse_frame(reply, (size_t)n, BUF, &h), 0);
    ASSERT_EQ(h.status, 0);
    ASSERT_EQ(h.request_id, 42);
    ASSERT_TRUE(test_raw_closed(fd, 5000));
    close(fd);
    proto_buf_free(&b);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* ---- authentication ------------------------------------------------------- */

static void test_before_auth_everything_but_hello_auth_ping_is_auth_required(void) {
    test_server s;
    const char *args[] = {"--auth-token", "sesame", NULL};
    ASSERT_OK(test_server_start(&s, args));
    int fd = test_server_connect_raw(&s);
    proto_buf b;
    proto_buf_init(&b);
    /* An unknown opcode and a malformed STORE: not UNKNOWN_OP or
     * BAD_REQUEST, which would tell an outsider about the server. */
    proto_header hdr = {.version = PROTO_VERSION, .opcode = 0x7e, .body_len = 0};
    uint8_t frame[PROTO_HEADER_SIZE + 3];
    proto_header_write(frame, &hdr);
    ASSERT_OK(test_raw_send(fd, frame, PROTO_HEADER_SIZE));
    ASSERT_GT(test_raw_recv_frame(fd, reply, BUF, 5000), 0);
    proto_header h;
    proto_parse_frame(reply, BUF, BUF, &h);
    ASSERT_EQ(h.status, -DEJA_ERR_AUTH_REQUIRED);
    hdr.opcode = PROTO_OP_STORE;
    hdr.body_len = 3;
    proto_header_write(frame, &hdr);
    memcpy(frame + PROTO_HEADER_SIZE, "\x09zz", 3);
    ASSERT_OK(test_raw_send(fd, frame, sizeof frame));
    ASSERT_GT(test_raw_recv_frame(fd, reply, BUF, 5000), 0);
    proto_parse_frame(reply, BUF, BUF, &h);
    ASSERT_EQ(h.status, -DEJA_ERR_AUTH_REQUIRED);
    /* The largest PING and HELLO the protocol allows fit before AUTH. */
    static uint8_t big[65536];
    memset(big, 'b', sizeof big);
    ASSERT_OK(proto_encode_ping(&b, 8, 0, big, sizeof big));
    ASSERT_EQ(roundtrip(fd, &b), 0);
    proto_hello_req hello = {
        .min_version = 1, .max_version = 1, .client_name = big, .client_name_len = 65535};
    ASSERT_OK(proto_encode_hello_req(&b, 9, &hello));
    ASSERT_EQ(roundtrip(fd, &b), 0);
    ASSERT_EQ(auth(fd, "sesame"), 0);
    ASSERT_EQ(store(fd, "after", 1), 0);
    close(fd);
    proto_buf_free(&b);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* Each wrong guess from one address pushes its next verdict further out,
 * and the guesses that pile up past the limit are refused unevaluated. */
static void test_token_guessing_is_slowed_and_counted(void) {
    test_server s;
    const char *args[] = {"--auth-token", "sesame", NULL};
    ASSERT_OK(test_server_start(&s, args));
    uint64_t t0 = now_ms();
    for (int i = 0; i < 6; i++) {
        int fd = test_server_connect_raw(&s);
        char guess[16];
        snprintf(guess, sizeof guess, "guess%d", i);
        ASSERT_EQ(auth(fd, guess), -DEJA_ERR_AUTH_FAILED);
        ASSERT_TRUE(test_raw_closed(fd, 5000));
        close(fd);
    }
    /* Penalties after failures 1..5: 25 + 50 + 100 + 200 + 400 ms. */
    uint64_t spent = now_ms() - t0;
    ASSERT_GE(spent, 700);
    /* Many guesses at once: at most 16 wait, the rest are refused BUSY. */
    enum { PAR = 24 };
    int fds[PAR];
    proto_buf b;
    proto_buf_init(&b);
    for (int i = 0; i < PAR; i++) {
        fds[i] = test_server_connect_raw(&s);
        proto_auth_req a = {.token = (const uint8_t *)"wrong", .token_len = 5};
        ASSERT_OK(proto_encode_auth_req(&b, 1, &a));
        ASSERT_OK(test_raw_send(fds[i], b.data, b.len));
        proto_buf_reset(&b);
    }
    int busy = 0;
    for (int i = 0; i < PAR; i++) {
        long n = test_raw_recv_frame(fds[i], reply, BUF, 300);
        if (n > 0) {
            proto_header h;
            proto_parse_frame(reply, (size_t)n, BUF, &h);
            if (h.status == -DEJA_ERR_BUSY) busy++;
        }
        close(fds[i]);
    }
    ASSERT_GE(busy, PAR - 16);
    /* The right token still gets in (after the line clears). */
    int fd = test_server_connect_raw(&s);
    ASSERT_EQ(auth(fd, "sesame"), 0);
    ASSERT_GE(stat_value(fd, "", "auth_failed"), 6);
    ASSERT_GE(stat_value(fd, "", "auth_throttled"), PAR - 16);
    close(fd);
    proto_buf_free(&b);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* ---- tenants ---------------------------------------------------------------- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_a_tenant_token_sees_and_touches_only_its_prefix(void) {
    char path[] = "/tmp/deja-tokens-XXXXXX";
    int tfd = mkstemp(path);
    ASSERT_GE(tfd, 0);
    close(tfd);
    write_file(path, "# tenants\n"
                     "tok-a   teamA/  read,write\n"
                     "tok-b   teamB/  read,write,admin\n"
                     "tok-ro  teamA/  read\n"
                     "tok-adm *       read,write,admin\n");
    test_server s;
    const char *args[] = {"--tokens-file", path, NULL};
    ASSERT_OK(test_server_start(&s, args));
    int a = connect_authed(&s, "tok-a");
    int b = connect_authed(&s, "tok-b");
    int ro = connect_authed(&s, "tok-ro");
    int adm = connect_authed(&s, "tok-adm");

    ASSERT_EQ(store(a, "teamA/faq", 1), 0);
    ASSERT_EQ(store(b, "teamB/faq", 1), 0); /* the same vector */
    uint16_t hits = 0;
    ASSERT_EQ(lookup(a, "teamA/faq", 1, &hits), 0);
    ASSERT_EQ(hits, 1);
    /* Outside the prefix: nothing, whatever the similarity. */
    ASSERT_EQ(lookup(a, "teamB/faq", 1, &hits), -DEJA_ERR_FORBIDDEN);
    ASSERT_EQ(store(a, "teamB/faq", 2), -DEJA_ERR_FORBIDDEN);
    ASSERT_EQ(ns_op(a, PROTO_OP_STATS, "teamB/faq"), -DEJA_ERR_FORBIDDEN);
    ASSERT_EQ(ns_op(a, PROTO_OP_NS_INFO, "teamB/faq"), -DEJA_ERR_FORBIDDEN);
    ASSERT_EQ(ns_op(b, PROTO_OP_FLUSH, "teamA/faq"), -DEJA_ERR_FORBIDDEN);
    ASSERT_EQ(ns_op(b, PROTO_OP_NS_DROP, "teamA/faq"), -DEJA_ERR_FORBIDDEN);
    /* A namespace that does not exist looks the same as one that does. */
    ASSERT_EQ(ns_op(a, PROTO_OP_NS_INFO, "teamB/nothing"), -DEJA_ERR_FORBIDDEN);
    /* Rights. */
    ASSERT_EQ(ns_op(a, PROTO_OP_FLUSH, "teamA/faq"), -DEJA_ERR_FORBIDDEN);
    ASSERT_EQ(store(ro, "teamA/faq", 3), -DEJA_ERR_FORBIDDEN);
    ASSERT_EQ(lookup(ro, "teamA/faq", 1, &hits), 0);
    ASSERT_EQ(hits, 1);
    /* Listing and server-wide STATS are filtered. */
    char names[512];
    ASSERT_EQ(ns_list(a, names, sizeof names), 0);
    ASSERT_STR_EQ(names, "teamA/faq");
    ASSERT_EQ(stat_value(a, "", "namespaces"), 1);
    ASSERT_EQ(stat_value(a, "", "entries"), 1);
    ASSERT_EQ(stat_value(a, "", "connections"), -1);
    ASSERT_EQ(ns_list(adm, names, sizeof names), 0);
    ASSERT_TRUE(strstr(names, "teamA/faq") && strstr(names, "teamB/faq"));
    ASSERT_EQ(stat_value(adm, "", "entries"), 2);
    ASSERT_EQ(ns_op(b, PROTO_OP_NS_DROP, "teamB/faq"), 0);

    /* SIGHUP reloads: tok-a is revoked, tok-ro may now write. */
    write_file(path, "tok-b   teamB/  read,write,admin\n"
                     "tok-ro  teamA/  read,write\n"
                     "tok-adm *       read,write,admin\n");
    ASSERT_OK(kill(s.pid, SIGHUP));
    int reloaded = 0;
    for (int i = 0; i < 100 && !reloaded; i++) {
        sleep_ms(20);
        reloaded = store(ro, "teamA/faq", 4) == 0;
    }
    ASSERT_TRUE(reloaded);
    ASSERT_EQ(lookup(a, "teamA/faq", 1, &hits), -DEJA_ERR_AUTH_REQUIRED);
    int again = test_server_connect_raw(&s);
    ASSERT_EQ(auth(again, "tok-a"), -DEJA_ERR_AUTH_FAILED);
    close(again);
    ASSERT_EQ(ping(adm), 0);
    close(a);
    close(b);
    close(ro);
    close(adm);
    ASSERT_EQ(test_server_stop(&s), 0);
    unlink(path);
}

static void test_a_bad_tokens_file_is_refused_at_start_and_kept_on_reload(void) {
    char path[] = "/tmp/deja-tokens-XXXXXX";
    int tfd = mkstemp(path);
    close(tfd);
    write_file(path, "tok-x teamX/ read,fly\n");
    test_server s;
    const char *args[] = {"--tokens-file", path, NULL};
    ASSERT_NE(test_server_start(&s, args), 0);
    test_server_stop(&s);
    write_file(path, "tok-x teamX/ read,write\n");
    ASSERT_OK(test_server_start(&s, args));
    write_file(path, "tok-x\n");
    ASSERT_OK(kill(s.pid, SIGHUP));
    sleep_ms(300);
    int fd = connect_authed(&s, "tok-x");
    ASSERT_EQ(store(fd, "teamX/a", 1), 0);
    close(fd);
    ASSERT_EQ(test_server_stop(&s), 0);
    unlink(path);
}

static void test_sighup_without_tokens_keeps_the_server_running(void) {
    test_server s;
    ASSERT_OK(test_server_start(&s, NULL));
    int fd = test_server_connect_raw(&s);
    ASSERT_EQ(store(fd, "hup", 1), 0);
    ASSERT_OK(kill(s.pid, SIGHUP));
    sleep_ms(200);
    ASSERT_EQ(ping(fd), 0);
    uint16_t hits = 0;
    ASSERT_EQ(lookup(fd, "hup", 1, &hits), 0);
    ASSERT_EQ(hits, 1);
    close(fd);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* ---- protected mode -------------------------------------------------------- */

static void test_an_exposed_address_without_a_token_is_refused(void) {
    test_server s;
    const char *exposed[] = {"--host", "0.0.0.0", NULL};
    ASSERT_NE(test_server_start(&s, exposed), 0);
    test_server_stop(&s);
    const char *with_token[] = {"--host", "0.0.0.0", "--auth-token", "sesame", NULL};
    ASSERT_OK(test_server_start(&s, with_token));
    ASSERT_EQ(test_server_stop(&s), 0);
    const char *overridden[] = {"--host", "0.0.0.0", "--protected-mode", "no", NULL};
    ASSERT_OK(test_server_start(&s, overridden));
    ASSERT_EQ(test_server_stop(&s), 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    RUN(test_connections_past_the_maximum_get_busy_and_are_closed);
    RUN(test_idle_and_trickling_connections_are_closed_active_ones_stay);
    RUN(test_large_frames_past_the_client_memory_budget_get_busy);
    RUN(test_a_client_that_never_reads_is_bounded);
    RUN(test_an_accept_storm_at_the_fd_limit_neither_spins_nor_floods_the_log);
    RUN(test_namespace_count_and_search_breadth_are_bounded);
    RUN(test_replies_owed_before_a_half_close_are_sent);
    RUN(test_before_auth_everything_but_hello_auth_ping_is_auth_required);
    RUN(test_token_guessing_is_slowed_and_counted);
    RUN(test_a_tenant_token_sees_and_touches_only_its_prefix);
    RUN(test_a_bad_tokens_file_is_refused_at_start_and_kept_on_reload);
    RUN(test_sighup_without_tokens_keeps_the_server_running);
    RUN(test_an_exposed_address_without_a_token_is_refused);
    return harness_result();
}
