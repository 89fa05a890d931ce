/* test-integration-lease.c: protocol version 2 against a real dejad --
 * semantic single-flight (leases), shadow mode, the gray band and the
 * similarity histogram (docs/PROTOCOL.md 5.11 to 5.17).
 *
 * Specifies that when many callers miss on paraphrases of one new
 * question at once, exactly one gets a lease and every other one is
 * answered with the entry it stores; that a failed, released, expired or
 * abandoned lease promotes one waiter; that nobody waits past its own
 * deadline; that shadow mode serves nothing but counts what it would have
 * served; and that the gray band flags exactly the hits inside it. Raw
 * frames over many sockets, encoded and decoded with proto/. */
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "support/wire.h"

#define DIM 64
#define NCLIENTS 100

static test_server srv;
static uint8_t buf[1u << 20];

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static float dot(const float *a, const float *b) {
    double s = 0;
    for (int i = 0; i < DIM; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

/* A unit vector whose cosine with the unit vector q is exactly cos: q
 * turned toward a second direction made orthogonal to q. */
static void paraphrase(const float *q, uint64_t seed, float cos, float *out) {
    float n[DIM];
    test_unit_vector(seed, n, DIM);
    float d = dot(n, q), norm = 0;
    for (int i = 0; i < DIM; i++) {
        n[i] -= d * q[i];
        norm += n[i] * n[i];
    }
    norm = sqrtf(norm);
    float s = sqrtf(1.0f - cos * cos);
    for (int i = 0; i < DIM; i++)
        out[i] = cos * q[i] + s * n[i] / norm;
}

/* Encodes a LOOKUP_EX asking for a lease, waiting up to wait_ms. */
static void encode_lease_lookup(proto_buf *b, uint32_t id, const char *ns, const float *v,
                                float threshold, uint32_t wait_ms, uint32_t lease_ms) {
    uint8_t vec[4 * DIM];
    proto_vector_write(vec, v, DIM);
    proto_lookup_req r = {.ns = (const uint8_t *)ns,
                          .ns_len = (uint8_t)strlen(ns),
                          .dim = DIM,
                          .k = 1,
                          .threshold = threshold,
                          .vector = vec,
                          .options = PROTO_LOOKUP_LEASE,
                          .wait_ms = wait_ms,
                          .lease_ms = lease_ms};
    ASSERT_OK(proto_encode_lookup_ex_req(b, id, 0, &r));
}

static void send_frame(int fd, proto_buf *b) {
    ASSERT_OK(test_raw_send(fd, b->data, b->len));
    proto_buf_reset(b);
}

/* Reads one LOOKUP_EX reply from fd; *hit receives its first hit. */
static proto_lookup_ex_resp recv_lookup_ex(int fd, int timeout_ms, proto_hit *hit,
                                           proto_header *hdr) {
    static proto_hit hits[4], shadow[4];
    long n = test_raw_recv_frame(fd, buf, sizeof buf, timeout_ms);
    ASSERT_GT(n, 0);
    proto_header h;
    ASSERT_GT(proto_parse_frame(buf, (size_t)n, sizeof buf, &h), 0);
    ASSERT_EQ(h.opcode, PROTO_OP_LOOKUP_EX);
    ASSERT_EQ(h.status, 0);
    proto_lookup_ex_resp r = {.hits = hits, .shadow = shadow};
    ASSERT_OK(proto_decode_lookup_ex_resp(buf + PROTO_HEADER_SIZE, h.body_len, 4, &r));
    if (hit && r.count) *hit = hits[0];
    if (hit && !r.count && r.shadow_count) *hit = shadow[0];
    if (hdr) *hdr = h;
    return r;
}

/* STORE_EX of v with response text on fd; returns the reply's status. */
static int store_ex(int fd, const char *ns, const float *v, const char *text,
                    uint8_t completion, uint64_t lease_id) {
    uint8_t vec[4 * DIM];
    proto_vector_write(vec, v, DIM);
    proto_store_req r = {.ns = (const uint8_t *)ns,
                         .ns_len = (uint8_t)strlen(ns),
                         .dim = DIM,
                         .completion = completion,
                         .vector = vec,
                         .response = (const uint8_t *)text,
                         .response_len = (uint32_t)strlen(text),
                         .lease_id = lease_id};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_store_ex_req(&b, 9, &r));
    send_frame(fd, &b);
    proto_buf_free(&b);
    long n = test_raw_recv_frame(fd, buf, sizeof buf, 10000);
    ASSERT_GT(n, 0);
    proto_header h;
    ASSERT_GT(proto_parse_frame(buf, (size_t)n, sizeof buf, &h), 0);
    ASSERT_EQ(h.opcode, PROTO_OP_STORE_EX);
    return h.status;
}

/* A server-wide or namespace STATS counter; absent is 0 (PROTOCOL.md 5.17
 * sends only the histogram buckets that are not). */
static uint64_t stat_of(const char *ns, const char *key) {
    uint64_t v = wire_stat(ns, key);
    return v == UINT64_MAX ? 0 : v;
}

static proto_ns_policy set_policy(const char *ns, uint8_t mode, float band) {
    proto_buf b;
    proto_buf_init(&b);
    proto_ns_policy p = {.set = 1, .mode = mode, .gray_band = band};
    ASSERT_OK(
        proto_encode_ns_policy_req(&b, 3, (const uint8_t *)ns, (uint8_t)strlen(ns), &p));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(h.status, 0);
    proto_ns_policy out;
    ASSERT_OK(proto_decode_ns_policy_resp(wire_body, h.body_len, &out));
    return out;
}

/* Whether fd has a reply waiting within timeout_ms. */
static int readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1;
}

static void test_hello_negotiates_version_2_and_keeps_1_for_old_clients(void) {
    wire_connect(&srv);
    proto_buf b;
    proto_buf_init(&b);
    proto_hello_req req = {.min_version = 1, .max_version = 5};
    ASSERT_OK(proto_encode_hello_req(&b, 1, &req));
    proto_header h = wire_roundtrip(&b);
    proto_hello_resp resp;
    ASSERT_OK(proto_decode_hello_resp(wire_body, h.body_len, &resp));
    ASSERT_EQ(resp.version, 2);
    ASSERT_EQ(h.version, 1); /* the frame format stays 1 */
    req.max_version = 1;
    ASSERT_OK(proto_encode_hello_req(&b, 2, &req));
    h = wire_roundtrip(&b);
    ASSERT_OK(proto_decode_hello_resp(wire_body, h.body_len, &resp));
    ASSERT_EQ(resp.version, 1);
    req.min_version = 3;
    req.max_version = 4;
    ASSERT_OK(proto_encode_hello_req(&b, 3, &req));
    h = wire_roundtrip(&b);
    ASSERT_EQ(h.status, -DEJA_ERR_VERSION);
    proto_buf_free(&b);
    wire_close();
}

/* The scenario: 100 clients miss on paraphrases (cosine 0.90 to
 * 0.98 of one new question) at the same moment. */
static void test_a_hundred_paraphrases_make_one_lease_and_ninety_nine_coalesced(void) {
    const char *ns = "burst";
    wire_connect(&srv);
    wire_store(ns, DIM, 1, "an older answer"); /* the namespace exists, unrelated */
    float q[DIM], v[NCLIENTS][DIM];
    test_unit_vector(4242, q, DIM);
    int fds[NCLIENTS];
    proto_buf b;
    proto_buf_init(&b);
    for (int i = 0; i < NCLIENTS; i++) {
        paraphrase(q, 5000 + (uint64_t)i, 0.90f + 0.08f * (float)i / NCLIENTS, v[i]);
        fds[i] = test_server_connect_raw(&srv);
        ASSERT_GE(fds[i], 0);
    }
    /* Every request is on the wire before any reply is read. */
    for (int i = 0; i < NCLIENTS; i++) {
        /* Two paraphrases at 0.90 of the question are about 0.81 of each
         * other: the threshold lets any of them wait on any other. */
        encode_lease_lookup(&b, (uint32_t)i + 1, ns, v[i], 0.7f, 10000, 10000);
        send_frame(fds[i], &b);
    }
    /* Exactly one is answered now, with a lease; the others wait. */
    int holder = -1;
    uint64_t lease = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        if (!readable(fds[i], i == 0 ? 2000 : 0)) continue;
        proto_lookup_ex_resp r = recv_lookup_ex(fds[i], 1000, NULL, NULL);
        ASSERT_EQ(r.outcome, PROTO_OUTCOME_LEASE);
        ASSERT_EQ(holder, -1);
        holder = i;
        lease = r.lease_id;
    }
    if (holder < 0) { /* the first reply may come a moment later */
        for (int i = 0; i < NCLIENTS && holder < 0; i++)
            if (readable(fds[i], 200)) {
                proto_lookup_ex_resp r = recv_lookup_ex(fds[i], 1000, NULL, NULL);
                ASSERT_EQ(r.outcome, PROTO_OUTCOME_LEASE);
                holder = i;
                lease = r.lease_id;
            }
    }
    ASSERT_GE(holder, 0);
    ASSERT_NE(lease, 0);
    usleep(100 * 1000); /* the model thinks */
    for (int i = 0; i < NCLIENTS; i++)
        if (i != holder) ASSERT_EQ(readable(fds[i], 0), 0);
    ASSERT_EQ(store_ex(fds[holder], ns, v[holder], "the one answer", 0, lease), 0);
    int coalesced = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        if (i == holder) continue;
        proto_hit hit;
        proto_lookup_ex_resp r = recv_lookup_ex(fds[i], 5000, &hit, NULL);
        ASSERT_EQ(r.outcome, PROTO_OUTCOME_COALESCED);
        ASSERT_EQ(r.count, 1);
        ASSERT_MEM_EQ(hit.response, "the one answer", 14);
        ASSERT_NEAR(hit.similarity, dot(v[i], v[holder]), 1e-4);
        coalesced++;
    }
    ASSERT_EQ(coalesced, NCLIENTS - 1);
    ASSERT_U64_EQ(stat_of(ns, "coalesced"), NCLIENTS - 1);
    ASSERT_U64_EQ(stat_of(ns, "misses"), 1);
    ASSERT_U64_EQ(stat_of(ns, "lookups"), NCLIENTS);
    ASSERT_U64_EQ(stat_of("", "leases_granted"), 1);
    ASSERT_U64_EQ(stat_of("", "leases_fulfilled"), 1);
    ASSERT_U64_EQ(stat_of("", "leases_active"), 0);
    /* The answer is now an entry: a paraphrase hits it. */
    encode_lease_lookup(&b, 7, ns, v[3], 0.7f, 1000, 0);
    send_frame(fds[3], &b);
    ASSERT_EQ(recv_lookup_ex(fds[3], 2000, NULL, NULL).outcome, PROTO_OUTCOME_HIT);
    for (int i = 0; i < NCLIENTS; i++)
        close(fds[i]);
    proto_buf_free(&b);
    wire_close();
}

/* One holder and n waiters on paraphrases of a new question in ns. */
typedef struct group {
    int holder_fd;
    uint64_t lease;
    int fds[8];
    int n;
    float v[9][DIM];
} group;

static void start_group(group *g, const char *ns, uint64_t seed, int n, uint32_t wait_ms,
                        uint32_t lease_ms) {
    float q[DIM];
    test_unit_vector(seed, q, DIM);
    proto_buf b;
    proto_buf_init(&b);
    g->n = n;
    paraphrase(q, seed + 1, 0.97f, g->v[0]);
    g->holder_fd = test_server_connect_raw(&srv);
    encode_lease_lookup(&b, 1, ns, g->v[0], 0.8f, 10000, lease_ms);
    send_frame(g->holder_fd, &b);
    proto_lookup_ex_resp r = recv_lookup_ex(g->holder_fd, 2000, NULL, NULL);
    ASSERT_EQ(r.outcome, PROTO_OUTCOME_LEASE);
    g->lease = r.lease_id;
    for (int i = 0; i < n; i++) {
        paraphrase(q, seed + 10 + (uint64_t)i, 0.95f, g->v[i + 1]);
        g->fds[i] = test_server_connect_raw(&srv);
        /* Different deadlines: the furthest one is promoted first. */
        encode_lease_lookup(&b, 2, ns, g->v[i + 1], 0.8f, wait_ms + 100u * (uint32_t)i,
                            10000);
        send_frame(g->fds[i], &b);
    }
    usleep(50 * 1000);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(readable(g->fds[i], 0), 0);
    proto_buf_free(&b);
}

/* After a failure: the waiter with the furthest deadline is promoted and
 * the others keep waiting; once it stores, they are answered. */
static void expect_promotion(group *g, const char *ns) {
    int last = g->n - 1;
    proto_lookup_ex_resp r = recv_lookup_ex(g->fds[last], 3000, NULL, NULL);
    ASSERT_EQ(r.outcome, PROTO_OUTCOME_LEASE);
    ASSERT_NE(r.lease_id, g->lease);
    for (int i = 0; i < last; i++)
        ASSERT_EQ(readable(g->fds[i], 0), 0);
    ASSERT_EQ(
        store_ex(g->fds[last], ns, g->v[last + 1], "promoted answer", 0, r.lease_id), 0);
    for (int i = 0; i < last; i++) {
        proto_hit hit;
        r = recv_lookup_ex(g->fds[i], 3000, &hit, NULL);
        ASSERT_EQ(r.outcome, PROTO_OUTCOME_COALESCED);
        ASSERT_MEM_EQ(hit.response, "promoted answer", 15);
    }
}

static void close_group(group *g) {
    if (g->holder_fd >= 0) close(g->holder_fd);
    for (int i = 0; i < g->n; i++)
        close(g->fds[i]);
}

static void test_a_holder_that_disconnects_promotes_one_waiter(void) {
    wire_connect(&srv);
    group g;
    start_group(&g, "gone", 100, 4, 8000, 20000);
    close(g.holder_fd);
    g.holder_fd = -1;
    expect_promotion(&g, "gone");
    close_group(&g);
    ASSERT_GE(stat_of("", "leases_promoted"), 1);
    wire_close();
}

static void test_a_failed_completion_promotes_one_waiter(void) {
    wire_connect(&srv);
    group g;
    start_group(&g, "failed", 200, 3, 8000, 20000);
    /* The model call failed: the holder reports it with its completion. */
    ASSERT_EQ(store_ex(g.holder_fd, "failed", g.v[0], "partial", PROTO_COMPLETION_ERROR,
                       g.lease),
              -DEJA_ERR_REJECTED);
    expect_promotion(&g, "failed");
    close_group(&g);
    wire_close();
}

static void test_lease_release_promotes_and_an_unknown_lease_is_not_found(void) {
    wire_connect(&srv);
    group g;
    start_group(&g, "released", 300, 2, 8000, 20000);
    proto_buf b;
    proto_buf_init(&b);
    proto_ns_id_req rel = {.ns = (const uint8_t *)"released", .ns_len = 8, .id = g.lease};
    ASSERT_OK(proto_encode_lease_release_req(&b, 4, &rel));
    proto_header h = wire_roundtrip(&b);
    ASSERT_EQ(h.status, 0);
    expect_promotion(&g, "released");
    ASSERT_OK(proto_encode_lease_release_req(&b, 5, &rel)); /* ended already */
    h = wire_roundtrip(&b);
    ASSERT_EQ(h.status, -DEJA_ERR_NOT_FOUND);
    proto_buf_free(&b);
    close_group(&g);
    wire_close();
}

static void test_an_expired_lease_promotes_one_waiter(void) {
    wire_connect(&srv);
    group g;
    uint64_t t0 = now_ms();
    start_group(&g, "expired", 400, 2, 8000, 400); /* the holder's lease: 400 ms */
    expect_promotion(&g, "expired");
    uint64_t took = now_ms() - t0;
    ASSERT_GE(took, 350);
    ASSERT_LT(took, 3000);
    ASSERT_GE(stat_of("", "leases_expired"), 1);
    close_group(&g);
    wire_close();
}

static void test_a_waiter_is_answered_at_its_deadline_not_later(void) {
    wire_connect(&srv);
    group g;
    uint64_t t0 = now_ms();
    start_group(&g, "deadline", 500, 1, 300, 20000); /* waits at most 300 ms */
    proto_lookup_ex_resp r = recv_lookup_ex(g.fds[0], 3000, NULL, NULL);
    uint64_t took = now_ms() - t0;
    /* It goes to the model itself, with a lease of its own. */
    ASSERT_EQ(r.outcome, PROTO_OUTCOME_LEASE);
    ASSERT_NE(r.lease_id, g.lease);
    ASSERT_GE(took, 290);
    ASSERT_LT(took, 1000);
    ASSERT_GE(stat_of("", "lease_wait_timeouts"), 1);
    /* The original holder still fulfils its own lease. */
    ASSERT_EQ(store_ex(g.holder_fd, "deadline", g.v[0], "late answer", 0, g.lease), 0);
    close_group(&g);
    wire_close();
}

static void test_a_lease_of_another_namespace_is_a_plain_store(void) {
    wire_connect(&srv);
    group g;
    start_group(&g, "mine", 600, 1, 3000, 20000);
    /* Another tenant's namespace cannot answer this namespace's waiters. */
    ASSERT_EQ(store_ex(g.holder_fd, "theirs", g.v[0], "foreign", 0, g.lease), 0);
    ASSERT_EQ(readable(g.fds[0], 200), 0);
    ASSERT_EQ(store_ex(g.holder_fd, "mine", g.v[0], "own", 0, g.lease), 0);
    proto_hit hit;
    ASSERT_EQ(recv_lookup_ex(g.fds[0], 3000, &hit, NULL).outcome,
              PROTO_OUTCOME_COALESCED);
    ASSERT_MEM_EQ(hit.response, "own", 3);
    close_group(&g);
    wire_close();
}

static void test_dropping_the_namespace_answers_its_waiters_miss(void) {
    wire_connect(&srv);
    wire_store("dropme", DIM, 1, "x");
    group g;
    start_group(&g, "dropme", 700, 2, 8000, 20000);
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ns_drop_req(&b, 6, (const uint8_t *)"dropme", 6));
    ASSERT_EQ(wire_roundtrip(&b).status, 0);
    proto_buf_free(&b);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(recv_lookup_ex(g.fds[i], 3000, NULL, NULL).outcome, PROTO_OUTCOME_MISS);
    close_group(&g);
    wire_close();
}

static void test_a_server_that_stops_answers_its_waiters_miss(void) {
    test_server own;
    ASSERT_OK(test_server_start(&own, NULL));
    test_server saved = srv;
    srv = own;
    group g;
    start_group(&g, "stopping", 800, 2, 20000, 20000);
    srv = saved;
    /* The replies are sent before the connections close. */
    ASSERT_EQ(test_server_shutdown(&own), 0);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(recv_lookup_ex(g.fds[i], 5000, NULL, NULL).outcome, PROTO_OUTCOME_MISS);
    close_group(&g);
    ASSERT_EQ(test_server_stop(&own), 0);
}

/* Entries at known cosines to a query: 0.99, 0.93, 0.87. */
static void store_ladder(const char *ns, const float *q) {
    static const float cos[] = {0.99f, 0.93f, 0.87f};
    static const char *text[] = {"a99", "a93", "a87"};
    int fd = test_server_connect_raw(&srv);
    for (int i = 0; i < 3; i++) {
        float v[DIM];
        paraphrase(q, 900 + (uint64_t)i, cos[i], v);
        ASSERT_EQ(store_ex(fd, ns, v, text[i], 0, 0), 0);
    }
    close(fd);
}

/* A LOOKUP_EX of v with k 3 (no lease); options as given. */
static proto_lookup_ex_resp lookup_ex(const char *ns, const float *v, float threshold,
                                      uint16_t options, proto_hit *hits,
                                      proto_hit *shadow, proto_header *hdr) {
    uint8_t vec[4 * DIM];
    proto_vector_write(vec, v, DIM);
    proto_lookup_req r = {.ns = (const uint8_t *)ns,
                          .ns_len = (uint8_t)strlen(ns),
                          .dim = DIM,
                          .k = 3,
                          .threshold = threshold,
                          .vector = vec,
                          .options = options};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_lookup_ex_req(&b, 11, 0, &r));
    *hdr = wire_roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(hdr->status, 0);
    proto_lookup_ex_resp resp = {.hits = hits, .shadow = shadow};
    ASSERT_OK(proto_decode_lookup_ex_resp(wire_body, hdr->body_len, 3, &resp));
    return resp;
}

static void test_the_gray_band_flags_exactly_the_hits_inside_it(void) {
    wire_connect(&srv);
    float q[DIM];
    test_unit_vector(31337, q, DIM);
    store_ladder("band", q);
    proto_ns_policy p = set_policy("band", PROTO_MODE_SERVE, 0.95f);
    ASSERT_EQ(p.mode, PROTO_MODE_SERVE);
    ASSERT_NEAR(p.gray_band, 0.95f, 1e-7);
    proto_hit hits[3], shadow[3];
    proto_header h;
    proto_lookup_ex_resp r = lookup_ex("band", q, 0.85f, 0, hits, shadow, &h);
    ASSERT_EQ(r.outcome, PROTO_OUTCOME_HIT);
    ASSERT_EQ(r.count, 3);
    ASSERT_EQ(hits[0].flags, 0);                    /* 0.99: above the band */
    ASSERT_EQ(hits[1].flags, PROTO_HIT_BORDERLINE); /* 0.93 */
    ASSERT_EQ(hits[2].flags, PROTO_HIT_BORDERLINE); /* 0.87 */
    ASSERT_EQ(h.flags & PROTO_FLAG_BORDERLINE, 0);  /* the first hit is not */
    /* A query whose best hit is in the band: the header says so, for
     * version-1 LOOKUPs too. */
    float v93[DIM];
    paraphrase(q, 901, 0.93f, v93);
    r = lookup_ex("band", v93, 0.999f, 0, hits, shadow, &h);
    ASSERT_EQ(r.count, 1);
    ASSERT_EQ(hits[0].flags, 0); /* itself: 1.0 */
    float mid[DIM];
    uint64_t id;
    float sim = 1;
    uint64_t borderline_before = stat_of("band", "borderline_hits");
    paraphrase(v93, 555, 0.92f, mid);
    proto_header h1 = wire_lookup_vec("band", DIM, mid, 0.9f, &id, &sim);
    ASSERT_EQ(h1.status, 0);
    ASSERT_TRUE(sim < 0.95f);
    ASSERT_EQ(h1.flags & PROTO_FLAG_BORDERLINE, PROTO_FLAG_BORDERLINE);
    ASSERT_U64_EQ(stat_of("band", "borderline_hits"), borderline_before + 1);
    wire_close();
}

/* Shadow mode: the same lookups hit as often as when serving, and
 * nothing is served. */
static void test_shadow_mode_serves_nothing_and_counts_what_it_would_have(void) {
    wire_connect(&srv);
    enum { N = 40 };
    float q[DIM];
    test_unit_vector(2024, q, DIM);
    const char *names[2] = {"serving", "shadowed"};
    for (int n = 0; n < 2; n++)
        store_ladder(names[n], q);
    set_policy("shadowed", PROTO_MODE_SHADOW, 0.95f);
    uint64_t served_hits = 0;
    for (int i = 0; i < N; i++) {
        float v[DIM];
        /* Half of them near the ladder, half far away. */
        paraphrase(q, 7000 + (uint64_t)i, i % 2 ? 0.96f : 0.3f, v);
        uint64_t id;
        float sim;
        proto_header h = wire_lookup_vec("serving", DIM, v, 0.85f, &id, &sim);
        ASSERT_EQ(h.status, 0);
        served_hits += id != 0;
        h = wire_lookup_vec("shadowed", DIM, v, 0.85f, &id, &sim);
        ASSERT_EQ(h.status, 0);
        ASSERT_U64_EQ(id, 0); /* LOOKUP: a miss */
        proto_hit hits[3], shadow[3];
        proto_lookup_ex_resp r =
            lookup_ex("shadowed", v, 0.85f, PROTO_LOOKUP_WANT_SHADOW | PROTO_LOOKUP_LEASE,
                      hits, shadow, &h);
        ASSERT_EQ(r.outcome, PROTO_OUTCOME_MISS); /* and no lease */
        ASSERT_EQ(r.reply_flags, PROTO_REPLY_SHADOW);
        ASSERT_EQ(r.count, 0);
        ASSERT_EQ(r.shadow_count > 0, i % 2 == 1);
    }
    ASSERT_U64_EQ(served_hits, N / 2);
    /* Two shadow lookups per query: LOOKUP and LOOKUP_EX. */
    ASSERT_U64_EQ(stat_of("shadowed", "shadow_hits"), 2 * served_hits);
    ASSERT_U64_EQ(stat_of("shadowed", "hits"), 0);
    ASSERT_U64_EQ(stat_of("shadowed", "misses"), 2 * N);
    ASSERT_U64_EQ(stat_of("serving", "hits"), served_hits);
    /* Switched on, it serves. */
    set_policy("shadowed", PROTO_MODE_SERVE, 0);
    uint64_t id;
    float sim;
    float v[DIM];
    paraphrase(q, 7001, 0.96f, v);
    wire_lookup_vec("shadowed", DIM, v, 0.85f, &id, &sim);
    ASSERT_NE(id, 0);
    wire_close();
}

static void test_the_histogram_counts_best_candidates_by_hundredths(void) {
    wire_connect(&srv);
    float q[DIM];
    test_unit_vector(99, q, DIM);
    float v[DIM];
    paraphrase(q, 1, 1.0f, v);
    wire_store("hist", DIM, 0, "unrelated"); /* seed 0: nearly orthogonal */
    int fd = test_server_connect_raw(&srv);
    ASSERT_EQ(store_ex(fd, "hist", q, "the answer", 0, 0), 0);
    close(fd);
    uint64_t id;
    float sim;
    paraphrase(q, 2, 0.915f, v); /* hit in [0.91, 0.92) */
    wire_lookup_vec("hist", DIM, v, 0.85f, &id, &sim);
    ASSERT_NE(id, 0);
    paraphrase(q, 3, 0.845f, v); /* a miss just under 0.85 */
    wire_lookup_vec("hist", DIM, v, 0.85f, &id, &sim);
    ASSERT_U64_EQ(id, 0);
    paraphrase(q, 4, 0.2f, v); /* nothing close */
    wire_lookup_vec("hist", DIM, v, 0.85f, &id, &sim);
    ASSERT_U64_EQ(stat_of("hist", "sim_hit_91"), 1);
    ASSERT_U64_EQ(stat_of("hist", "sim_miss_84"), 1);
    ASSERT_U64_EQ(stat_of("hist", "sim_miss_lt50"), 1);
    ASSERT_GE(stat_of("", "sim_hit_91"), 1); /* summed server-wide */
    wire_close();
}

static void test_the_policy_is_durable_and_ns_info_reports_it(void) {
    test_server own;
    ASSERT_OK(test_server_start(&own, NULL));
    wire_connect(&own);
    wire_store("kept", DIM, 1, "x");
    set_policy("kept", PROTO_MODE_SHADOW, 0.9f);
    wire_close();
    ASSERT_EQ(test_server_shutdown(&own), 0);
    ASSERT_OK(test_server_restart(&own, NULL));
    wire_connect(&own);
    proto_buf b;
    proto_buf_init(&b);
    proto_ns_policy read = {0};
    ASSERT_OK(proto_encode_ns_policy_req(&b, 3, (const uint8_t *)"kept", 4, &read));
    proto_header h = wire_roundtrip(&b);
    ASSERT_EQ(h.status, 0);
    ASSERT_OK(proto_decode_ns_policy_resp(wire_body, h.body_len, &read));
    ASSERT_EQ(read.mode, PROTO_MODE_SHADOW);
    ASSERT_NEAR(read.gray_band, 0.9f, 1e-7);
    proto_ns_config cfg;
    uint64_t shadow, band;
    ASSERT_EQ(wire_ns_info("kept", &cfg, "shadow", &shadow).status, 0);
    ASSERT_EQ(wire_ns_info("kept", &cfg, "gray_band_milli", &band).status, 0);
    ASSERT_U64_EQ(shadow, 1);
    ASSERT_U64_EQ(band, 900);
    /* Unknown namespaces and bad bands. */
    proto_ns_policy bad = {.set = 1, .gray_band = 0.9f};
    ASSERT_OK(proto_encode_ns_policy_req(&b, 5, (const uint8_t *)"nope", 4, &bad));
    ASSERT_EQ(wire_roundtrip(&b).status, -DEJA_ERR_NOT_FOUND);
    uint8_t body[13] = {4, 'k', 'e', 'p', 't', 1, 0, 0, 0, 0, 0, 0xC0, 0x3F}; /* 1.5 */
    ASSERT_EQ(wire_raw_request(PROTO_OP_NS_POLICY, body, 13).status,
              -DEJA_ERR_BAD_REQUEST);
    proto_buf_free(&b);
    wire_close();
    ASSERT_EQ(test_server_stop(&own), 0);
}

int main(void) {
    ASSERT_OK(test_server_start(&srv, NULL));
    RUN(test_hello_negotiates_version_2_and_keeps_1_for_old_clients);
    RUN(test_a_hundred_paraphrases_make_one_lease_and_ninety_nine_coalesced);
    RUN(test_a_holder_that_disconnects_promotes_one_waiter);
    RUN(test_a_failed_completion_promotes_one_waiter);
    RUN(test_lease_release_promotes_and_an_unknown_lease_is_not_found);
    RUN(test_an_expired_lease_promotes_one_waiter);
    RUN(test_a_waiter_is_answered_at_its_deadline_not_later);
    RUN(test_a_lease_of_another_namespace_is_a_plain_store);
    RUN(test_dropping_the_namespace_answers_its_waiters_miss);
    RUN(test_a_server_that_stops_answers_its_waiters_miss);
    RUN(test_the_gray_band_flags_exactly_the_hits_inside_it);
    RUN(test_shadow_mode_serves_nothing_and_counts_what_it_would_have);
    RUN(test_the_histogram_counts_best_candidates_by_hundredths);
    RUN(test_the_policy_is_durable_and_ns_info_reports_it);
    if (test_server_stop(&srv) != 0) return 1;
    return harness_result();
}
