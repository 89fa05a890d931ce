/* test-integration-pipeline.c: many requests in flight on one connection.
 *
 * Specifies that a client may send any number of requests before reading,
 * that every request gets exactly one reply carrying its request id, and
 * that a client which stops reading makes the server stop reading too
 * (backpressure) instead of buffering replies without bound. */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"
#include "support/spawn.h"

#define DIM 32
#define BUF (4u << 20)

static test_server srv;
static uint8_t reply[BUF];

static void make_vector(float *v, unsigned seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (int i = 0; i < DIM; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v[i] = (float)(x % 2001) / 1000.0f - 1.0f;
    }
}

static void encode_store(proto_buf *b, uint32_t id, const char *ns, unsigned seed,
                         const uint8_t *resp, uint32_t resp_len) {
    float v[DIM];
    uint8_t vec[4 * DIM];
    make_vector(v, seed);
    proto_vector_write(vec, v, DIM);
    proto_store_req r = {.ns = (const uint8_t *)ns,
                         .ns_len = (uint8_t)strlen(ns),
                         .dim = DIM,
                         .vector = vec,
                         .response = resp,
                         .response_len = resp_len};
    ASSERT_OK(proto_encode_store_req(b, id, &r));
}

static void encode_lookup_with_prompt(proto_buf *b, uint32_t id, const char *ns,
                                      unsigned seed, const uint8_t *prompt,
                                      uint32_t prompt_len) {
    float v[DIM];
    uint8_t vec[4 * DIM];
    make_vector(v, seed);
    proto_vector_write(vec, v, DIM);
    proto_lookup_req r = {.ns = (const uint8_t *)ns,
                          .ns_len = (uint8_t)strlen(ns),
                          .dim = DIM,
                          .k = 1,
                          .threshold = 0.99f,
                          .vector = vec,
                          .prompt = prompt,
                          .prompt_len = prompt_len};
    ASSERT_OK(proto_encode_lookup_req(b, id, 0, &r));
}

static void encode_lookup(proto_buf *b, uint32_t id, const char *ns, unsigned seed) {
    encode_lookup_with_prompt(b, id, ns, seed, NULL, 0);
}

static void test_a_thousand_pipelined_requests_get_a_thousand_matching_replies(void) {
    int fd = test_server_connect_raw(&srv);
    ASSERT_GE(fd, 0);
    proto_buf b;
    proto_buf_init(&b);
    enum { N = 1000 };
    uint8_t opcode_of[N];
    for (uint32_t i = 0; i < N; i++) {
        uint32_t id = 100000 + i;
        switch (i % 3) {
        case 0:
            encode_store(&b, id, "pipe", i, (const uint8_t *)"r", 1);
            opcode_of[i] = PROTO_OP_STORE;
            break;
        case 1:
            encode_lookup(&b, id, "pipe", i - 1);
            opcode_of[i] = PROTO_OP_LOOKUP;
            break;
        default:
            ASSERT_OK(proto_encode_ping(&b, id, 0, NULL, 0));
            opcode_of[i] = PROTO_OP_PING;
        }
    }
    /* Everything goes out before a single reply is read. */
    ASSERT_OK(test_raw_send(fd, b.data, b.len));

    static uint8_t seen[N];
    memset(seen, 0, sizeof seen);
    for (int n = 0; n < N; n++) {
        long len = test_raw_recv_frame(fd, reply, BUF, 10000);
        ASSERT_GT(len, 0);
        proto_header h;
        ASSERT_EQ(proto_parse_frame(reply, (size_t)len, BUF, &h), len);
        ASSERT_GE(h.request_id, 100000);
        ASSERT_LT(h.request_id, 100000 + N);
        uint32_t i = h.request_id - 100000;
        ASSERT_EQ(seen[i], 0);
        seen[i] = 1;
        ASSERT_EQ(h.opcode, opcode_of[i]);
        ASSERT_EQ(h.status, 0);
    }

    /* A STORE is visible once acknowledged (a lookup pipelined right behind
     * it may not see it yet): now that every STORE was acknowledged, the
     * same lookups, pipelined again, all hit their entries. */
    proto_buf_reset(&b);
    for (uint32_t i = 0; i < N; i += 3)
        encode_lookup(&b, i, "pipe", i);
    ASSERT_OK(test_raw_send(fd, b.data, b.len));
    for (uint32_t n = 0; n < N; n += 3) {
        long len = test_raw_recv_frame(fd, reply, BUF, 10000);
        ASSERT_GT(len, 0);
        proto_header h;
        ASSERT_EQ(proto_parse_frame(reply, (size_t)len, BUF, &h), len);
        ASSERT_EQ(h.status, 0);
        proto_hit hit;
        uint16_t count;
        ASSERT_OK(proto_decode_lookup_resp(reply + PROTO_HEADER_SIZE, h.body_len, &hit, 1,
                                           &count));
        ASSERT_EQ(count, 1);
    }
    proto_buf_free(&b);
    close(fd);
}

static long server_rss_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

static void test_a_client_that_does_not_read_is_not_buffered_without_bound(void) {
    /* One 64 KiB entry; each lookup of it returns 64 KiB, so 4000 lookups
     * would be 256 MiB of replies if the server kept reading. Each lookup
     * carries a 4 KiB prompt so the requests (16 MiB) overflow the socket
     * buffers and the sender sees the server stop reading. */
    enum { N = 4000, RESP = 64 * 1024, PROMPT = 4096 };
    static uint8_t big[RESP], prompt[PROMPT];
    memset(big, 'x', sizeof big);
    memset(prompt, 'p', sizeof prompt);
    int fd = test_server_connect_raw(&srv);
    proto_buf b;
    proto_buf_init(&b);
    encode_store(&b, 1, "bp", 42, big, RESP);
    ASSERT_OK(test_raw_send(fd, b.data, b.len));
    ASSERT_GT(test_raw_recv_frame(fd, reply, BUF, 5000), 0);
    proto_buf_reset(&b);
    long rss_before = server_rss_kib(srv.pid);

    for (uint32_t i = 0; i < N; i++)
        encode_lookup_with_prompt(&b, i, "bp", 42, prompt, PROMPT);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    /* Phase 1: write without reading until the server stops taking bytes. */
    size_t sent = 0;
    for (;;) {
        ssize_t n = send(fd, b.data + sent, b.len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            if (sent == b.len) break;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 500) == 0) break; /* blocked: the server stopped reading */
    }
    ASSERT_LT(sent, b.len);
    long rss_blocked = server_rss_kib(srv.pid);
    ASSERT_LT(rss_blocked - rss_before, 64 * 1024); /* far below 256 MiB */

    /* Phase 2: read everything while sending the rest; no reply is lost. */
    unsigned got = 0;
    size_t have = 0;
    static uint8_t seen[N];
    static uint8_t rbuf[1 << 20];
    while (got < N) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < b.len ? POLLOUT : 0)};
        ASSERT_GT(poll(&p, 1, 10000), 0);
        if ((p.revents & POLLOUT) && sent < b.len) {
            ssize_t n = send(fd, b.data + sent, b.len - sent, MSG_NOSIGNAL);
            if (n > 0) sent += (size_t)n;
        }
        if (p.revents & POLLIN) {
            ssize_t n = recv(fd, rbuf + have, sizeof rbuf - have, 0);
            ASSERT_GT(n, 0);
            have += (size_t)n;
            proto_header h;
            long len;
            while ((len = proto_parse_frame(rbuf, have, 1u << 20, &h)) > 0) {
                ASSERT_LT(h.request_id, N);
                ASSERT_EQ(seen[h.request_id], 0);
                seen[h.request_id] = 1;
                ASSERT_EQ(h.status, 0);
                ASSERT_EQ(h.body_len, 2 + 20 + RESP);
                got++;
                memmove(rbuf, rbuf + len, have - (size_t)len);
                have -= (size_t)len;
            }
            ASSERT_EQ(len, 0);
        }
    }
    ASSERT_EQ(got, N);
    proto_buf_free(&b);
    close(fd);
}

/* The value of a server-wide STATS key, read on fd. */
static uint64_t server_stat(int fd, const char *key) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_stats_req(&b, 77, NULL, 0));
    ASSERT_OK(test_raw_send(fd, b.data, b.len));
    proto_buf_free(&b);
    long n = test_raw_recv_frame(fd, reply, BUF, 5000);
    ASSERT_GT(n, 0);
    proto_header h;
    ASSERT_GT(proto_parse_frame(reply, (size_t)n, BUF, &h), 0);
    size_t pos = 0;
    proto_stat st;
    while (proto_stats_next(reply + PROTO_HEADER_SIZE, h.body_len, &pos, &st) == 1)
        if (st.key_len == strlen(key) && memcmp(st.key, key, st.key_len) == 0)
            return st.value;
    HARNESS_FAIL("no STATS key %s", key);
    return 0;
}

/* STORE replies wait for the commit thread; those that complete together
 * go out together: N pipelined STOREs do not cost N writes. */
static void test_pipelined_store_replies_are_written_together(void) {
    enum { N = 200 };
    int fd = test_server_connect_raw(&srv);
    ASSERT_GE(fd, 0);
    uint64_t before = server_stat(fd, "reply_writes");
    proto_buf b;
    proto_buf_init(&b);
    static const uint8_t resp[] = "r";
    for (uint32_t i = 0; i < N; i++)
        encode_store(&b, i, "batched", 5000 + i, resp, 1);
    ASSERT_OK(test_raw_send(fd, b.data, b.len));
    for (int i = 0; i < N; i++) {
        long n = test_raw_recv_frame(fd, reply, BUF, 10000);
        ASSERT_GT(n, 0);
        proto_header h;
        ASSERT_GT(proto_parse_frame(reply, (size_t)n, BUF, &h), 0);
        ASSERT_EQ(h.status, 0);
    }
    /* The STATS request itself costs one write. */
    uint64_t writes = server_stat(fd, "reply_writes") - before - 1;
    fprintf(stderr, "   %d pipelined STOREs answered in %llu writes\n", N,
            (unsigned long long)writes);
    ASSERT_LT(writes, N / 4);
    proto_buf_free(&b);
    close(fd);
}

int main(void) {
    if (test_server_start(&srv, NULL) != 0) return 1;
    RUN(test_pipelined_store_replies_are_written_together);
    RUN(test_a_thousand_pipelined_requests_get_a_thousand_matching_replies);
    RUN(test_a_client_that_does_not_read_is_not_buffered_without_bound);
    if (test_server_stop(&srv) != 0) return 1; /* unclean exit or leak */
    return harness_result();
}
