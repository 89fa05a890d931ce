/* test-client-api.c: libdeja's public API against a real dejad.
 *
 * Every test talks to the server only through deja.h, in its own
 * namespace of one shared server; tests about failure (timeouts, a
 * misbehaving peer, a server that dies, authentication) use fake peers
 * made of plain sockets or servers of their own. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "deja.h"
#include "harness.h"
#include "proto.h"
#include "support/spawn.h"

#define DIM 16

static test_server srv;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static deja_client *connect_or_fail(const char *addr) {
    deja_client *c = NULL;
    int rc = deja_connect(addr, NULL, &c);
    if (rc != 0) HARNESS_FAIL("deja_connect(%s): %s", addr, deja_strerror(rc));
    return c;
}

/* The unit vector along axis i, optionally tilted towards axis j so that
 * its cosine to axis i is exactly `cosine`. */
static void axis_vec(float *v, int i, int j, float cosine) {
    memset(v, 0, DIM * sizeof *v);
    v[i] = cosine;
    if (j >= 0) v[j] = sqrtf(1.0f - cosine * cosine);
}

static uint64_t store_vec(deja_client *c, const char *ns, const float *v,
                          const char *response, const char *prompt) {
    deja_store_req req = {
        .ns = ns,
        .vector = v,
        .dim = DIM,
        .response = response,
        .response_len = strlen(response),
        .prompt = prompt,
        .prompt_len = prompt ? strlen(prompt) : 0,
        .ttl_s = 3600,
        .input_tokens = 10,
        .output_tokens = 20,
        .cost_micro_usd = 300,
    };
    uint64_t id = 0;
    int rc = deja_store(c, &req, &id);
    if (rc != 0)
        HARNESS_FAIL("deja_store: %s (%s)", deja_strerror(rc), deja_last_error(c));
    return id;
}

/* ---- the basics ---------------------------------------------------------------*/

static void test_connect_tcp_and_unix(void) {
    deja_client *tcp = connect_or_fail(srv.addr);
    deja_client *ux = connect_or_fail(srv.unix_path);
    ASSERT_OK(deja_ping(tcp));
    ASSERT_OK(deja_ping(ux));
    ASSERT_TRUE(strncmp(deja_server_name(tcp), "dejad", 5) == 0);
    /* "/path" without the unix: prefix names a socket too. */
    deja_client *bare = connect_or_fail(srv.unix_path + 5);
    ASSERT_OK(deja_ping(bare));
    deja_close(bare);
    deja_close(ux);
    deja_close(tcp);
    deja_close(NULL);
}

static void test_store_then_lookup_returns_it(void) {
    deja_client *c = connect_or_fail(srv.addr);
    float v[DIM];
    axis_vec(v, 0, 1, 0.6f);
    /* Binary bytes with an embedded NUL: the response is bytes, not text. */
    static const char response[] = "answer\0with a NUL";
    deja_store_req req = {.ns = "t-roundtrip",
                          .vector = v,
                          .dim = DIM,
                          .response = response,
                          .response_len = sizeof response};
    uint64_t id = 0;
    ASSERT_OK(deja_store(c, &req, &id));
    ASSERT_NE(id, 0);

    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "t-roundtrip", v, DIM, 0.85f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, id);
    ASSERT_NEAR(r->hits[0].similarity, 1.0, 1e-5);
    ASSERT_EQ(r->hits[0].response_len, sizeof response);
    ASSERT_MEM_EQ(r->hits[0].response, response, sizeof response);
    ASSERT_EQ(r->hits[0].response[sizeof response], 0);
    ASSERT_TRUE(r->hits[0].prompt == NULL);
    deja_result_free(r);

    /* The vector need not be normalised: a scaled copy is the same point. */
    for (int i = 0; i < DIM; i++)
        v[i] *= 7.5f;
    ASSERT_OK(deja_lookup(c, "t-roundtrip", v, DIM, 0.85f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, id);
    deja_result_free(r);
    deja_close(c);
}

static void test_miss_has_count_zero(void) {
    deja_client *c = connect_or_fail(srv.addr);
    float v[DIM], other[DIM];
    axis_vec(v, 2, -1, 1.0f);
    axis_vec(other, 3, -1, 1.0f);
    store_vec(c, "t-miss", v, "x", NULL);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "t-miss", other, DIM, 0.85f, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    ASSERT_TRUE(r->hits == NULL);
    deja_result_free(r);
    /* A namespace nobody stored into is a miss too, not an error. */
    ASSERT_OK(deja_lookup(c, "t-never-used", other, DIM, 0.85f, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    deja_result_free(NULL);
    deja_close(c);
}

static void test_k_returns_best_first(void) {
    deja_client *c = connect_or_fail(srv.addr);
    const float cosines[3] = {0.8f, 0.99f, 0.9f};
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        float v[DIM];
        axis_vec(v, 0, 1 + i, cosines[i]);
        char resp[16];
        snprintf(resp, sizeof resp, "r%d", i);
        ids[i] = store_vec(c, "t-topk", v, resp, NULL);
    }
    float q[DIM];
    axis_vec(q, 0, -1, 1.0f);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "t-topk", q, DIM, 0.5f, 3, 0, &r));
    ASSERT_EQ(r->count, 3);
    ASSERT_U64_EQ(r->hits[0].id, ids[1]);
    ASSERT_U64_EQ(r->hits[1].id, ids[2]);
    ASSERT_U64_EQ(r->hits[2].id, ids[0]);
    ASSERT_NEAR(r->hits[0].similarity, 0.99, 1e-4);
    ASSERT_NEAR(r->hits[1].similarity, 0.9, 1e-4);
    ASSERT_NEAR(r->hits[2].similarity, 0.8, 1e-4);
    ASSERT_STR_EQ(r->hits[0].response, "r1");
    ASSERT_STR_EQ(r->hits[2].response, "r0");
    deja_result_free(r);

    /* The threshold cuts the tail; k cuts the count. */
    ASSERT_OK(deja_lookup(c, "t-topk", q, DIM, 0.85f, 3, 0, &r));
    ASSERT_EQ(r->count, 2);
    deja_result_free(r);
    ASSERT_OK(deja_lookup(c, "t-topk", q, DIM, 0.5f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, ids[1]);
    deja_result_free(r);
    deja_close(c);
}

static void test_want_prompt_returns_prompt(void) {
    deja_client *c = connect_or_fail(srv.addr);
    float v[DIM];
    axis_vec(v, 4, -1, 1.0f);
    store_vec(c, "t-prompt", v, "the answer", "the question?");
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "t-prompt", v, DIM, 0.9f, 1, DEJA_LOOKUP_WANT_PROMPT, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_STR_EQ(r->hits[0].prompt, "the question?");
    ASSERT_EQ(r->hits[0].prompt_len, strlen("the question?"));
    ASSERT_STR_EQ(r->hits[0].response, "the answer");
    deja_result_free(r);
    ASSERT_OK(deja_lookup(c, "t-prompt", v, DIM, 0.9f, 1, 0, &r));
    ASSERT_TRUE(r->hits[0].prompt == NULL);
    deja_result_free(r);
    deja_close(c);
}

static void test_delete_then_lookup_misses(void) {
    deja_client *c = connect_or_fail(srv.addr);
    float v[DIM];
    axis_vec(v, 5, -1, 1.0f);
    uint64_t id = store_vec(c, "t-delete", v, "gone soon", NULL);
    ASSERT_OK(deja_delete(c, "t-delete", id));
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "t-delete", v, DIM, 0.5f, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    ASSERT_EQ(deja_delete(c, "t-delete", id), DEJA_ERR_NOT_FOUND);
    ASSERT_TRUE(deja_last_error(c)[0] != 0);
    ASSERT_OK(deja_ping(c)); /* a server error leaves the connection usable */
    deja_close(c);
}

static void test_flush_reports_count(void) {
    deja_client *c = connect_or_fail(srv.addr);
    for (int i = 0; i < 5; i++) {
        float v[DIM];
        axis_vec(v, 0, 1 + i, 0.5f);
        store_vec(c, "t-flush", v, "bulk", NULL);
    }
    uint64_t removed = 0;
    ASSERT_OK(deja_flush(c, "t-flush", &removed));
    ASSERT_U64_EQ(removed, 5);
    float v[DIM];
    axis_vec(v, 0, 1, 0.5f);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "t-flush", v, DIM, 0.5f, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    ASSERT_OK(deja_flush(c, "t-flush", NULL));
    deja_close(c);
}

/* The value of counter key in st (failing the test if it is absent). */
static uint64_t stat_of(const deja_stats *st, const char *key) {
    uint64_t value = 0;
    int rc = deja_stats_find(st, key, &value);
    if (rc != 0) HARNESS_FAIL("STATS has no counter \"%s\": %s", key, deja_strerror(rc));
    return value;
}

/* A known sequence -- two stores of unrelated vectors, two lookups that
 * hit them and one that misses -- moves each counter by exactly its
 * share, in the namespace and server-wide (the tests run one at a time,
 * so nothing else moves the server's counters meanwhile); and every
 * counter is named once. */
static void test_stats_count_exactly_the_operations_made(void) {
    static const char *const keys[] = {
        "entries",       "stores",       "lookups",
        "hits",          "misses",       "exact_hits",
        "semantic_hits", "tokens_saved", "cost_saved_micro_usd"};
    enum { NKEYS = sizeof keys / sizeof keys[0] };
    /* Namespace "t-stats" starts empty: the expected values are deltas. */
    static const uint64_t delta[NKEYS] = {2, 2, 3, 2, 1, 0, 2, 2 * 30, 2 * 300};
    deja_client *c = connect_or_fail(srv.addr);
    deja_stats *st = NULL;
    ASSERT_OK(deja_stats_get(c, NULL, &st));
    uint64_t before[NKEYS];
    for (int i = 0; i < NKEYS; i++)
        before[i] = stat_of(st, keys[i]);
    deja_stats_free(st);

    float v1[DIM], v2[DIM], v3[DIM];
    axis_vec(v1, 6, -1, 1.0f);
    axis_vec(v2, 7, -1, 1.0f);
    axis_vec(v3, 8, -1, 1.0f);
    store_vec(c, "t-stats", v1, "one", NULL);
    store_vec(c, "t-stats", v2, "two", NULL);
    const float *queries[3] = {v1, v2, v3};
    for (int q = 0; q < 3; q++) {
        deja_result *r = NULL;
        ASSERT_OK(deja_lookup(c, "t-stats", queries[q], DIM, 0.9f, 1, 0, &r));
        ASSERT_EQ(r->count, q < 2 ? 1 : 0);
        deja_result_free(r);
    }

    ASSERT_OK(deja_stats_get(c, NULL, &st));
    for (int i = 0; i < NKEYS; i++)
        if (stat_of(st, keys[i]) - before[i] != delta[i])
            HARNESS_FAIL("server-wide %s moved by %" PRIu64 ", expected %" PRIu64,
                         keys[i], stat_of(st, keys[i]) - before[i], delta[i]);
    uint64_t value = 0;
    ASSERT_EQ(deja_stats_find(st, "no-such-counter", &value), DEJA_ERR_NOT_FOUND);
    deja_stats_free(st);

    ASSERT_OK(deja_stats_get(c, "t-stats", &st));
    for (int i = 0; i < NKEYS; i++)
        if (stat_of(st, keys[i]) != delta[i])
            HARNESS_FAIL("t-stats %s = %" PRIu64 ", expected %" PRIu64, keys[i],
                         stat_of(st, keys[i]), delta[i]);
    /* No counter is listed twice: deja_stats_find would see only the first. */
    for (uint32_t i = 0; i < st->count; i++)
        for (uint32_t j = i + 1; j < st->count; j++)
            if (strcmp(st->items[i].key, st->items[j].key) == 0)
                HARNESS_FAIL("counter %s is listed twice", st->items[i].key);
    deja_stats_free(st);
    deja_stats_free(NULL);
    deja_close(c);
}

/* ---- errors that keep the connection ------------------------------------------*/

static void test_wrong_dim_is_mismatch_and_client_survives(void) {
    deja_client *c = connect_or_fail(srv.addr);
    float v[DIM];
    axis_vec(v, 7, -1, 1.0f);
    store_vec(c, "t-dim", v, "sixteen", NULL);
    deja_store_req req = {
        .ns = "t-dim", .vector = v, .dim = 8, .response = "eight", .response_len = 5};
    ASSERT_EQ(deja_store(c, &req, NULL), DEJA_ERR_DIM_MISMATCH);
    ASSERT_TRUE(strstr(deja_last_error(c), "dim") != NULL);
    deja_result *r = NULL;
    ASSERT_EQ(deja_lookup(c, "t-dim", v, 8, 0.5f, 1, 0, &r), DEJA_ERR_DIM_MISMATCH);
    ASSERT_TRUE(r == NULL);
    ASSERT_OK(deja_ping(c));
    ASSERT_OK(deja_lookup(c, "t-dim", v, DIM, 0.5f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    deja_result_free(r);
    deja_close(c);
}

static void test_bad_arguments_are_refused_locally(void) {
    deja_client *c = connect_or_fail(srv.addr);
    float v[DIM];
    axis_vec(v, 0, -1, 1.0f);
    deja_result *r = NULL;
    char long_ns[300];
    memset(long_ns, 'n', sizeof long_ns - 1);
    long_ns[sizeof long_ns - 1] = 0;

    ASSERT_EQ(deja_lookup(c, NULL, v, DIM, 0.5f, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "", v, DIM, 0.5f, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, long_ns, v, DIM, 0.5f, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "has space", v, DIM, 0.5f, 1, 0, &r),
              DEJA_ERR_BAD_NAMESPACE);
    ASSERT_EQ(deja_lookup(c, "t-args", NULL, DIM, 0.5f, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "t-args", v, 0, 0.5f, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "t-args", v, 4097, 0.5f, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "t-args", v, DIM, 0.5f, 0, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "t-args", v, DIM, 0.5f, 257, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "t-args", v, DIM, 1.5f, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "t-args", v, DIM, NAN, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "t-args", v, DIM, 0.5f, 1, 0x80, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_lookup(c, "t-args", v, DIM, 0.5f, 1, 0, NULL), DEJA_ERR_INVALID_ARG);
    ASSERT_TRUE(r == NULL);

    ASSERT_EQ(deja_store(c, NULL, NULL), DEJA_ERR_INVALID_ARG);
    deja_store_req req = {
        .ns = "t-args", .vector = v, .dim = DIM, .response = NULL, .response_len = 3};
    ASSERT_EQ(deja_store(c, &req, NULL), DEJA_ERR_INVALID_ARG);
    req.response = "abc";
    req.dim = 5000;
    ASSERT_EQ(deja_store(c, &req, NULL), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_delete(c, NULL, 1), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_flush(c, "", NULL), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_ping(NULL), DEJA_ERR_INVALID_ARG);
    ASSERT_TRUE(deja_last_error(c)[0] != 0);

    /* A zero vector is the server's to refuse, and it keeps the link. */
    float zero[DIM] = {0};
    req.dim = DIM;
    req.vector = zero;
    ASSERT_EQ(deja_store(c, &req, NULL), DEJA_ERR_BAD_VECTOR);
    ASSERT_OK(deja_ping(c));
    deja_close(c);
}

/* ---- connecting ------------------------------------------------------------------*/

static void test_bad_addresses(void) {
    static const char *const bad[] = {
        "",      "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:7x",
        ":7447", "[::1",       "[::1]x",      "unix:",
    };
    deja_client *c = (deja_client *)&c; /* must be reset to NULL */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = deja_connect(bad[i], NULL, &c);
        if (rc != DEJA_ERR_INVALID_ARG) HARNESS_FAIL("\"%s\" gave %d", bad[i], rc);
        ASSERT_TRUE(c == NULL);
    }
    ASSERT_EQ(deja_connect(NULL, NULL, &c), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_connect(srv.addr, NULL, NULL), DEJA_ERR_INVALID_ARG);
    /* .invalid never resolves (RFC 6761). */
    ASSERT_EQ(deja_connect("no-such-host.invalid:7447", NULL, &c), DEJA_ERR_CONNECT);
    char path[400];
    snprintf(path, sizeof path, "unix:%s/no-such.sock", srv.dir);
    ASSERT_EQ(deja_connect(path, NULL, &c), DEJA_ERR_CONNECT);
}

/* A loopback port that is bound but not listening: connects are refused. */
static int closed_port(int *fd_out) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        HARNESS_FAIL("cannot bind a loopback port: %s", strerror(errno));
    *fd_out = fd;
    return ntohs(sa.sin_port);
}

static void test_refused_port_fails_within_connect_timeout(void) {
    int fd;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", closed_port(&fd));
    deja_options opts = {.connect_timeout_ms = 500};
    deja_client *c = NULL;
    double t0 = now_ms();
    ASSERT_EQ(deja_connect(addr, &opts, &c), DEJA_ERR_CONNECT);
    ASSERT_LT(now_ms() - t0, 500);
    ASSERT_TRUE(c == NULL);
    close(fd);
}

static void test_silent_server_times_out(void) {
    /* A listener that never accepts: the kernel completes the TCP
     * handshake, and HELLO then waits in vain for its reply. */
    int fd;
    int port = closed_port(&fd);
    ASSERT_OK(listen(fd, 4));
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    deja_options opts = {.connect_timeout_ms = 500, .request_timeout_ms = 200};
    deja_client *c = NULL;
    double t0 = now_ms();
    ASSERT_EQ(deja_connect(addr, &opts, &c), DEJA_ERR_TIMEOUT);
    double took = now_ms() - t0;
    ASSERT_GE(took, 190);
    ASSERT_LT(took, 2000);
    close(fd);
}

/* ---- a misbehaving peer ------------------------------------------------------------*/

typedef struct fake_peer {
    int listen_fd;
    int mode; /* 0: answer PING with a wrong request id; 1: never answer PING */
} fake_peer;

/* Reads one whole request frame from fd into buf; returns its header. */
static int read_request(int fd, uint8_t *buf, size_t cap, proto_header *h) {
    size_t len = 0;
    for (;;) {
        int r = proto_parse_frame(buf, len, (uint32_t)cap, h);
        if (r > 0) return 0;
        if (r < 0 || len == cap) return -1;
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) return -1;
        len += (size_t)n;
    }
}

static void *fake_peer_main(void *arg) {
    fake_peer *p = arg;
    int fd = accept(p->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    uint8_t buf[4096];
    proto_header h;
    proto_buf out;
    proto_buf_init(&out);
    if (read_request(fd, buf, sizeof buf, &h) == 0 && h.opcode == PROTO_OP_HELLO) {
        static const char name[] = "fake";
        proto_hello_resp resp = {.version = 1,
                                 .max_dim = 4096,
                                 .max_frame = 1u << 20,
                                 .server_name = (const uint8_t *)name,
                                 .server_name_len = 4};
        proto_encode_hello_resp(&out, h.request_id, &resp);
        send(fd, out.data, out.len, MSG_NOSIGNAL);
        proto_buf_reset(&out);
        if (read_request(fd, buf, sizeof buf, &h) == 0 && p->mode == 0) {
            proto_encode_ping(&out, h.request_id + 1000, PROTO_FLAG_REPLY, NULL, 0);
            send(fd, out.data, out.len, MSG_NOSIGNAL);
        }
        /* Hold the connection open until the client hangs up. */
        while (recv(fd, buf, sizeof buf, 0) > 0) {
        }
    }
    proto_buf_free(&out);
    close(fd);
    return NULL;
}

static void run_fake_peer(int mode, int expected) {
    fake_peer p = {.mode = mode};
    int port = closed_port(&p.listen_fd);
    ASSERT_OK(listen(p.listen_fd, 4));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, fake_peer_main, &p));
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    deja_options opts = {.request_timeout_ms = 300};
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(addr, &opts, &c));
    ASSERT_STR_EQ(deja_server_name(c), "fake");
    ASSERT_EQ(deja_ping(c), expected);
    /* The stream can no longer be trusted: the client closed it. */
    ASSERT_EQ(deja_ping(c), DEJA_ERR_CLOSED);
    deja_close(c);
    pthread_join(th, NULL);
    close(p.listen_fd);
}

static void test_reply_to_another_request_closes(void) {
    run_fake_peer(0, DEJA_ERR_PROTOCOL);
}

static void test_request_timeout_closes(void) {
    run_fake_peer(1, DEJA_ERR_TIMEOUT);
}

/* deja_reply_ready lets an open-loop sender wait for a reply without
 * blocking past the moment its next request is due: it says 0 when the
 * time runs out and the peer has not answered, and costs nothing else. */
static void test_reply_ready_times_out_while_the_peer_is_silent(void) {
    fake_peer p = {.mode = 1}; /* answers HELLO, then nothing */
    int port = closed_port(&p.listen_fd);
    ASSERT_OK(listen(p.listen_fd, 4));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, fake_peer_main, &p));
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(addr, NULL, &c));
    float v[DIM];
    axis_vec(v, 1, -1, 1.0f);
    ASSERT_EQ(deja_reply_ready(c, 1000), DEJA_ERR_INVALID_ARG); /* nothing in flight */
    ASSERT_OK(deja_send_lookup(c, "t-ready", v, DIM, 0.9f, 1, 0, NULL));
    double t0 = now_ms();
    ASSERT_EQ(deja_reply_ready(c, 50000), 0);
    ASSERT_GE(now_ms() - t0, 45);
    ASSERT_EQ(deja_in_flight(c), 1); /* still owed, connection kept */
    deja_close(c);
    pthread_join(th, NULL);
    close(p.listen_fd);
}

/* ---- pipelining
 * ----------------------------------------------------------------------*/

static void test_pipeline_100_lookups(void) {
    deja_client *c = connect_or_fail(srv.addr);
    float hit[DIM], miss[DIM];
    axis_vec(hit, 8, -1, 1.0f);
    axis_vec(miss, 9, -1, 1.0f);
    uint64_t id = store_vec(c, "t-pipe", hit, "piped", NULL);

    enum { N = 100 };
    uint32_t sent[N];
    int seen[N] = {0};
    for (int i = 0; i < N; i++)
        ASSERT_OK(
            deja_send_lookup(c, "t-pipe", i % 2 ? miss : hit, DIM, 0.9f, 1, 0, &sent[i]));
    ASSERT_EQ(deja_in_flight(c), N);
    /* The server answers: a reply is there well within 5 s. */
    ASSERT_EQ(deja_reply_ready(c, 5000000), 1);
    /* Synchronous calls would read someone else's reply: refused. */
    ASSERT_EQ(deja_ping(c), DEJA_ERR_INVALID_ARG);
    for (int n = 0; n < N; n++) {
        uint32_t rid = 0;
        deja_result *r = NULL;
        ASSERT_OK(deja_recv_lookup(c, &rid, &r));
        int which = -1;
        for (int i = 0; i < N; i++)
            if (sent[i] == rid) which = i;
        ASSERT_GE(which, 0);
        ASSERT_EQ(seen[which], 0);
        seen[which] = 1;
        if (which % 2 == 0) {
            ASSERT_EQ(r->count, 1);
            ASSERT_U64_EQ(r->hits[0].id, id);
        } else {
            ASSERT_EQ(r->count, 0);
        }
        deja_result_free(r);
    }
    ASSERT_EQ(deja_in_flight(c), 0);
    deja_result *r = NULL;
    uint32_t rid;
    ASSERT_EQ(deja_recv_lookup(c, &rid, &r), DEJA_ERR_INVALID_ARG);
    ASSERT_OK(deja_ping(c));
    deja_close(c);
}

static void test_pipelined_error_names_its_request(void) {
    deja_client *c = connect_or_fail(srv.addr);
    float v[DIM];
    axis_vec(v, 10, -1, 1.0f);
    store_vec(c, "t-pipe-err", v, "x", NULL);
    float short_vec[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    uint32_t good, bad;
    ASSERT_OK(deja_send_lookup(c, "t-pipe-err", v, DIM, 0.5f, 1, 0, &good));
    ASSERT_OK(deja_send_lookup(c, "t-pipe-err", short_vec, 8, 0.5f, 1, 0, &bad));
    ASSERT_NE(good, bad);
    int got_good = 0, got_bad = 0;
    for (int i = 0; i < 2; i++) {
        uint32_t rid = 0;
        deja_result *r = NULL;
        int rc = deja_recv_lookup(c, &rid, &r);
        if (rid == good) {
            ASSERT_OK(rc);
            ASSERT_EQ(r->count, 1);
            got_good = 1;
        } else {
            ASSERT_EQ(rid, bad);
            ASSERT_EQ(rc, DEJA_ERR_DIM_MISMATCH);
            ASSERT_TRUE(r == NULL);
            got_bad = 1;
        }
        deja_result_free(r);
    }
    ASSERT_TRUE(got_good && got_bad);
    ASSERT_OK(deja_ping(c));
    deja_close(c);
}

/* ---- servers of their own
 * ---------------------------------------------------------------*/

static void test_auth_token(void) {
    test_server s;
    const char *const args[] = {"--auth-token", "sesame", NULL};
    ASSERT_OK(test_server_start(&s, args));
    deja_client *c = NULL;
    int rc = deja_connect(s.addr, NULL, &c);
    deja_options wrong = {.auth_token = "open"};
    int rc_wrong = deja_connect(s.addr, &wrong, &c);
    deja_options right = {.auth_token = "sesame"};
    int rc_right = deja_connect(s.addr, &right, &c);
    int rc_ping = rc_right == 0 ? deja_ping(c) : rc_right;
    deja_close(c);
    test_server_stop(&s);
    ASSERT_EQ(rc, DEJA_ERR_AUTH_REQUIRED);
    ASSERT_EQ(rc_wrong, DEJA_ERR_AUTH_FAILED);
    ASSERT_OK(rc_right);
    ASSERT_OK(rc_ping);
}

static void test_server_gone_and_frame_limit(void) {
    test_server s;
    const char *const args[] = {"--max-frame", "65536", NULL};
    ASSERT_OK(test_server_start(&s, args));
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(s.addr, NULL, &c));

    /* Larger than the server accepts: refused before sending. */
    size_t big_len = 100000;
    char *big = calloc(1, big_len);
    float v[DIM];
    axis_vec(v, 0, -1, 1.0f);
    deja_store_req req = {
        .ns = "t-big", .vector = v, .dim = DIM, .response = big, .response_len = big_len};
    int rc_big = deja_store(c, &req, NULL);
    int rc_after_big = deja_ping(c);
    free(big);

    test_server_kill(&s);
    int rc_dead = deja_ping(c);
    int rc_closed = deja_ping(c);
    deja_close(c);
    test_server_stop(&s);
    ASSERT_EQ(rc_big, DEJA_ERR_TOO_LARGE);
    ASSERT_OK(rc_after_big);
    ASSERT_TRUE(rc_dead == DEJA_ERR_CLOSED || rc_dead == DEJA_ERR_IO);
    ASSERT_EQ(rc_closed, DEJA_ERR_CLOSED);
}

int main(void) {
    if (test_server_start(&srv, NULL) != 0) return 1;
    RUN(test_connect_tcp_and_unix);
    RUN(test_store_then_lookup_returns_it);
    RUN(test_miss_has_count_zero);
    RUN(test_k_returns_best_first);
    RUN(test_want_prompt_returns_prompt);
    RUN(test_delete_then_lookup_misses);
    RUN(test_flush_reports_count);
    RUN(test_stats_count_exactly_the_operations_made);
    RUN(test_wrong_dim_is_mismatch_and_client_survives);
    RUN(test_bad_arguments_are_refused_locally);
    RUN(test_bad_addresses);
    RUN(test_refused_port_fails_within_connect_timeout);
    RUN(test_silent_server_times_out);
    RUN(test_reply_to_another_request_closes);
    RUN(test_request_timeout_closes);
    RUN(test_reply_ready_times_out_while_the_peer_is_silent);
    RUN(test_pipeline_100_lookups);
    RUN(test_pipelined_error_names_its_request);
    RUN(test_auth_token);
    RUN(test_server_gone_and_frame_limit);
    test_server_stop(&srv);
    return harness_result();
}
