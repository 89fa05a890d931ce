/* test-client-lease.c: libdeja's protocol-version-2 API against a real
 * dejad -- HELLO's version, leases through deja_lookup_ex and
 * deja_get_or_fetch (semantic single-flight: many threads missing on
 * paraphrases of one new question at once make one fetch), a failed
 * fetch promoting a waiter, the lease-free path, and NS_POLICY's shadow
 * mode and gray band. Each test has a namespace of its own on one shared
 * server. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deja.h"
#include "harness.h"
#include "proto.h"
#include <sys/socket.h>
#include <unistd.h>
#include "support/spawn.h"
#include "support/vectors.h"

#define DIM 64
#define THRESHOLD 0.85f
#define ANSWER "the one answer"

static test_server srv;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static deja_pool *pool_or_fail(const deja_pool_options *opts) {
    deja_pool *p = NULL;
    int rc = deja_pool_create(srv.addr, opts, &p);
    if (rc != 0) HARNESS_FAIL("deja_pool_create: %s", deja_strerror(rc));
    return p;
}

static deja_client *connect_or_fail(void) {
    deja_client *c = NULL;
    int rc = deja_connect(srv.addr, NULL, &c);
    if (rc != 0) HARNESS_FAIL("deja_connect: %s", deja_strerror(rc));
    return c;
}

static uint64_t ns_stat(deja_pool *p, const char *ns, const char *key) {
    deja_stats *s = NULL;
    ASSERT_OK(deja_pool_stats(p, ns, &s));
    uint64_t v = 0;
    (void)deja_stats_find(s, key, &v); /* absent counts as 0 */
    deja_stats_free(s);
    return v;
}

/* n paraphrases (cosine 0.95 to one new random question, about 0.90 to
 * each other) of question `seed`. */
static float *paraphrases(uint64_t seed, int n) {
    vec_rng r = {seed};
    float base[DIM];
    for (int i = 0; i < DIM; i++)
        base[i] = vec_rng_normal(&r);
    vec_normalize(base, DIM);
    float *v = malloc((size_t)n * DIM * sizeof *v);
    if (v == NULL) abort();
    for (int i = 0; i < n; i++)
        vec_paraphrase_at(&r, base, 0.95f, DIM, v + (size_t)i * DIM);
    return v;
}

/* ---- a herd of threads calling deja_get_or_fetch at once ------------------- */

typedef struct herd {
    deja_pool *pool;
    const char *ns;
    const float *vecs;
    int fetch_ms;
    atomic_int fetches;
    atomic_int fail_first; /* the first fetch fails (returns 7) when set */
    pthread_barrier_t start;
} herd;

typedef struct herder {
    herd *h;
    int index;
    pthread_t thread;
    int rc;
    unsigned flags;
    int outcome;
    char response[64];
} herder;

static int slow_fetch(void *ctx, const char *prompt, deja_fetch *f) {
    herd *h = ctx;
    (void)prompt;
    int n = atomic_fetch_add(&h->fetches, 1);
    sleep_ms(h->fetch_ms);
    if (n == 0 && atomic_load(&h->fail_first)) return 7;
    return deja_fetch_answer(f, ANSWER, strlen(ANSWER), 0);
}

static void *herder_main(void *arg) {
    herder *me = arg;
    herd *h = me->h;
    pthread_barrier_wait(&h->start);
    deja_result *r = NULL;
    me->rc = deja_get_or_fetch(h->pool, h->ns, NULL, h->vecs + (size_t)me->index * DIM,
                               DIM, THRESHOLD, slow_fetch, h, &r);
    me->flags = r->flags;
    me->outcome = r->outcome;
    if (r->count > 0)
        snprintf(me->response, sizeof me->response, "%s", r->hits[0].response);
    deja_result_free(r);
    return NULL;
}

/* Runs n threads at once; returns how many got a COALESCED answer. */
static int run_herd(herd *h, herder *hs, int n) {
    pthread_barrier_init(&h->start, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        hs[i] = (herder){.h = h, .index = i};
        ASSERT_EQ(pthread_create(&hs[i].thread, NULL, herder_main, &hs[i]), 0);
    }
    int coalesced = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(hs[i].thread, NULL);
        if (hs[i].flags & DEJA_RESULT_COALESCED) {
            coalesced++;
            ASSERT_EQ(hs[i].outcome, DEJA_OUTCOME_COALESCED);
            ASSERT_EQ(hs[i].flags & DEJA_RESULT_FETCHED, 0);
        }
    }
    pthread_barrier_destroy(&h->start);
    return coalesced;
}

static void test_hello_negotiates_version_2(void) {
    deja_client *c = connect_or_fail();
    ASSERT_EQ(deja_protocol_version(c), 2);
    deja_close(c);
}

static void test_herd_makes_one_fetch(void) {
    enum { N = 32 };
    deja_pool_options o = {
        .size = N, .lookup_timeout_ms = 1000, .connect_timeout_ms = 1000};
    herd h = {.pool = pool_or_fail(&o), .ns = "lease-herd", .fetch_ms = 200};
    h.vecs = paraphrases(1, N);
    herder hs[N];
    int coalesced = run_herd(&h, hs, N);
    ASSERT_EQ(atomic_load(&h.fetches), 1);
    int fetched = 0;
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(hs[i].rc, 0);
        ASSERT_STR_EQ(hs[i].response, ANSWER);
        if (hs[i].flags & DEJA_RESULT_FETCHED) {
            fetched++;
            ASSERT_EQ(hs[i].outcome, DEJA_OUTCOME_LEASE);
            ASSERT_TRUE(hs[i].flags & DEJA_RESULT_STORED);
        }
    }
    ASSERT_EQ(fetched, 1);
    ASSERT_EQ(coalesced, N - 1);
    ASSERT_U64_EQ(ns_stat(h.pool, h.ns, "coalesced"), N - 1);
    free((void *)h.vecs);
    deja_pool_destroy(h.pool);
}

/* With fewer connections than callers, the waiters hold every connection
 * the pool may open: the leaseholder's STORE_EX must not wait behind
 * them (it would until their waits time out, and they would all fetch). */
static void test_small_pool_leaseholder_stores_past_waiters(void) {
    enum { N = 16 };
    deja_pool_options o = {
        .size = 4, .lookup_timeout_ms = 1000, .connect_timeout_ms = 1000};
    herd h = {.pool = pool_or_fail(&o), .ns = "lease-small-pool", .fetch_ms = 200};
    h.vecs = paraphrases(2, N);
    herder hs[N];
    double t0 = now_ms();
    run_herd(&h, hs, N);
    double took = now_ms() - t0;
    ASSERT_EQ(atomic_load(&h.fetches), 1);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(hs[i].rc, 0);
        ASSERT_STR_EQ(hs[i].response, ANSWER);
    }
    ASSERT_LT(took, 2500.0); /* the lease wait (10 s by default) never ran out */
    free((void *)h.vecs);
    deja_pool_destroy(h.pool);
}

static void test_failed_fetch_promotes_a_waiter(void) {
    enum { N = 8 };
    deja_pool_options o = {
        .size = N, .lookup_timeout_ms = 1000, .connect_timeout_ms = 1000};
    herd h = {.pool = pool_or_fail(&o), .ns = "lease-fail", .fetch_ms = 150};
    atomic_store(&h.fail_first, 1);
    h.vecs = paraphrases(3, N);
    herder hs[N];
    double t0 = now_ms();
    int coalesced = run_herd(&h, hs, N);
    double took = now_ms() - t0;
    ASSERT_EQ(atomic_load(&h.fetches), 2);
    int failed = 0, fetched = 0;
    for (int i = 0; i < N; i++) {
        if (hs[i].rc == 7) {
            failed++;
            continue;
        }
        ASSERT_EQ(hs[i].rc, 0);
        ASSERT_STR_EQ(hs[i].response, ANSWER);
        if (hs[i].flags & DEJA_RESULT_FETCHED) fetched++;
    }
    ASSERT_EQ(failed, 1);
    ASSERT_EQ(fetched, 1);
    ASSERT_EQ(coalesced, N - 2);
    ASSERT_U64_EQ(ns_stat(h.pool, h.ns, "coalesced"), N - 2);
    ASSERT_LT(took, 2000.0); /* released at once, not left to expire */
    free((void *)h.vecs);
    deja_pool_destroy(h.pool);
}

static void test_leases_off_is_the_version_1_path(void) {
    enum { N = 8 };
    deja_pool_options o = {.size = N,
                           .lookup_timeout_ms = 1000,
                           .connect_timeout_ms = 1000,
                           .lease_wait_ms = DEJA_LEASES_OFF};
    herd h = {.pool = pool_or_fail(&o), .ns = "lease-off", .fetch_ms = 200};
    h.vecs = paraphrases(4, N);
    herder hs[N];
    int coalesced = run_herd(&h, hs, N);
    ASSERT_EQ(atomic_load(&h.fetches), N); /* everyone missed at once */
    ASSERT_EQ(coalesced, 0);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(hs[i].rc, 0);
        ASSERT_TRUE(hs[i].flags & DEJA_RESULT_FETCHED);
        ASSERT_EQ(hs[i].outcome, DEJA_OUTCOME_MISS);
    }
    ASSERT_U64_EQ(ns_stat(h.pool, h.ns, "coalesced"), 0);
    /* Later callers hit. */
    deja_result *r = NULL;
    ASSERT_OK(deja_get_or_fetch(h.pool, h.ns, NULL, h.vecs, DIM, THRESHOLD, slow_fetch,
                                &h, &r));
    ASSERT_EQ(r->flags & DEJA_RESULT_FETCHED, 0);
    ASSERT_EQ(r->outcome, DEJA_OUTCOME_HIT);
    deja_result_free(r);
    free((void *)h.vecs);
    deja_pool_destroy(h.pool);
}

static void test_pool_options_refuse_negative_lease_values(void) {
    deja_pool *p = NULL;
    deja_pool_options o = {.lease_wait_ms = -2};
    ASSERT_EQ(deja_pool_create(srv.addr, &o, &p), DEJA_ERR_INVALID_ARG);
    o = (deja_pool_options){.lease_ms = -1};
    ASSERT_EQ(deja_pool_create(srv.addr, &o, &p), DEJA_ERR_INVALID_ARG);
    o = (deja_pool_options){.lease_wait_ms = DEJA_LEASES_OFF};
    ASSERT_OK(deja_pool_create(srv.addr, &o, &p));
    deja_pool_destroy(p);
}

/* ---- one connection: lookup_ex, store with a lease, release --------------- */

static void test_lookup_ex_lease_store_release(void) {
    const char *ns = "lease-one";
    float *v = paraphrases(5, 3);
    deja_client *a = connect_or_fail(), *b = connect_or_fail();
    deja_lookup_ex_req req = {.ns = ns,
                              .vector = v,
                              .dim = DIM,
                              .threshold = THRESHOLD,
                              .flags = DEJA_LOOKUP_LEASE,
                              .wait_ms = 0};
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup_ex(a, &req, &r));
    ASSERT_EQ(r->outcome, DEJA_OUTCOME_LEASE);
    ASSERT_EQ(r->count, 0);
    uint64_t lease_a = r->lease_id;
    ASSERT_TRUE(lease_a != 0);
    deja_result_free(r);

    /* wait_ms 0: never wait, so b gets a lease of its own. */
    req.vector = v + DIM;
    ASSERT_OK(deja_lookup_ex(b, &req, &r));
    ASSERT_EQ(r->outcome, DEJA_OUTCOME_LEASE);
    uint64_t lease_b = r->lease_id;
    ASSERT_TRUE(lease_b != 0 && lease_b != lease_a);
    deja_result_free(r);
    ASSERT_OK(deja_lease_release(b, ns, lease_b));
    ASSERT_EQ(deja_lease_release(b, ns, lease_b), DEJA_ERR_NOT_FOUND);

    deja_store_req st = {.ns = ns,
                         .vector = v,
                         .dim = DIM,
                         .response = ANSWER,
                         .response_len = strlen(ANSWER),
                         .lease_id = lease_a};
    uint64_t id = 0;
    ASSERT_OK(deja_store(a, &st, &id));
    ASSERT_TRUE(id != 0);
    ASSERT_EQ(deja_lease_release(a, ns, lease_a), DEJA_ERR_NOT_FOUND); /* fulfilled */

    req.vector = v + 2 * DIM;
    ASSERT_OK(deja_lookup_ex(b, &req, &r));
    ASSERT_EQ(r->outcome, DEJA_OUTCOME_HIT);
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, id);
    ASSERT_U64_EQ(r->lease_id, 0);
    ASSERT_EQ(r->hits[0].flags, 0);
    deja_result_free(r);

    ASSERT_EQ(deja_lookup_ex(a, NULL, &r), DEJA_ERR_INVALID_ARG);
    req.flags = 0x100;
    ASSERT_EQ(deja_lookup_ex(a, &req, &r), DEJA_ERR_INVALID_ARG);
    deja_close(a);
    deja_close(b);
    free(v);
}

/* A waiter on one connection gets COALESCED once the holder's STORE_EX on
 * another is acknowledged. */
static void *store_later(void *arg) {
    void **args = arg;
    deja_client *c = args[0];
    const deja_store_req *st = args[1];
    sleep_ms(150);
    uint64_t id;
    return (void *)(intptr_t)deja_store(c, st, &id);
}

static void test_lookup_ex_waiter_is_coalesced(void) {
    const char *ns = "lease-wait";
    float *v = paraphrases(6, 2);
    deja_client *a = connect_or_fail(), *b = connect_or_fail();
    deja_lookup_ex_req req = {.ns = ns,
                              .vector = v,
                              .dim = DIM,
                              .threshold = THRESHOLD,
                              .flags = DEJA_LOOKUP_LEASE | DEJA_LOOKUP_WANT_PROMPT,
                              .wait_ms = 3000};
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup_ex(a, &req, &r));
    ASSERT_EQ(r->outcome, DEJA_OUTCOME_LEASE);
    deja_store_req st = {.ns = ns,
                         .vector = v,
                         .dim = DIM,
                         .response = ANSWER,
                         .response_len = strlen(ANSWER),
                         .prompt = "what is it",
                         .prompt_len = 10,
                         .lease_id = r->lease_id};
    deja_result_free(r);
    pthread_t t;
    void *args[2] = {a, &st};
    ASSERT_EQ(pthread_create(&t, NULL, store_later, args), 0);
    req.vector = v + DIM;
    double t0 = now_ms();
    ASSERT_OK(deja_lookup_ex(b, &req, &r));
    double waited = now_ms() - t0;
    void *store_rc;
    pthread_join(t, &store_rc);
    ASSERT_EQ((int)(intptr_t)store_rc, 0);
    ASSERT_EQ(r->outcome, DEJA_OUTCOME_COALESCED);
    ASSERT_EQ(r->count, 1);
    ASSERT_STR_EQ(r->hits[0].response, ANSWER);
    ASSERT_STR_EQ(r->hits[0].prompt, "what is it");
    ASSERT_TRUE(r->hits[0].similarity >= THRESHOLD);
    ASSERT_GT(waited, 100.0);
    deja_result_free(r);
    deja_close(a);
    deja_close(b);
    free(v);
}

/* ---- policy: shadow mode, gray band, similarity histogram ------------------ */

static void test_policy_band_and_shadow(void) {
    const char *ns = "lease-policy";
    float *v = paraphrases(7, 2); /* cosine about 0.90 to each other */
    deja_client *c = connect_or_fail();
    deja_ns_policy pol;
    ASSERT_EQ(deja_ns_policy_get(c, ns, &pol), DEJA_ERR_NOT_FOUND);
    deja_store_req st = {.ns = ns,
                         .vector = v,
                         .dim = DIM,
                         .response = ANSWER,
                         .response_len = strlen(ANSWER)};
    ASSERT_OK(deja_store(c, &st, NULL));
    ASSERT_OK(deja_ns_policy_get(c, ns, &pol));
    ASSERT_EQ(pol.mode, DEJA_NS_SERVE);
    ASSERT_NEAR(pol.gray_band, 0.0, 0.0);

    deja_ns_policy band = {.mode = DEJA_NS_SERVE, .gray_band = 0.99f};
    ASSERT_OK(deja_ns_policy_set(c, ns, &band, &pol));
    ASSERT_NEAR(pol.gray_band, 0.99, 1e-6);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, ns, v + DIM, DIM, THRESHOLD, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_TRUE(r->flags & DEJA_RESULT_BORDERLINE);
    ASSERT_TRUE(r->hits[0].flags & DEJA_HIT_BORDERLINE);
    deja_result_free(r);
    deja_lookup_ex_req req = {
        .ns = ns, .vector = v + DIM, .dim = DIM, .threshold = THRESHOLD};
    ASSERT_OK(deja_lookup_ex(c, &req, &r));
    ASSERT_EQ(r->outcome, DEJA_OUTCOME_HIT);
    ASSERT_TRUE(r->flags & DEJA_RESULT_BORDERLINE);
    ASSERT_TRUE(r->hits[0].flags & DEJA_HIT_BORDERLINE);
    deja_result_free(r);

    deja_ns_policy shadow = {.mode = DEJA_NS_SHADOW, .gray_band = 0};
    ASSERT_OK(deja_ns_policy_set(c, ns, &shadow, NULL));
    ASSERT_OK(deja_lookup(c, ns, v + DIM, DIM, THRESHOLD, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    req.flags = DEJA_LOOKUP_WANT_SHADOW | DEJA_LOOKUP_LEASE; /* no lease in shadow */
    ASSERT_OK(deja_lookup_ex(c, &req, &r));
    ASSERT_EQ(r->outcome, DEJA_OUTCOME_MISS);
    ASSERT_EQ(r->count, 0);
    ASSERT_TRUE(r->flags & DEJA_RESULT_SHADOW);
    ASSERT_EQ(r->shadow_count, 1);
    ASSERT_STR_EQ(r->shadow[0].response, ANSWER);
    ASSERT_U64_EQ(r->lease_id, 0);
    deja_result_free(r);

    deja_ns_policy bad = {.mode = DEJA_NS_SERVE, .gray_band = 1.5f};
    ASSERT_EQ(deja_ns_policy_set(c, ns, &bad, NULL), DEJA_ERR_BAD_REQUEST);

    /* Every lookup above but none by the exact tier is in the histogram. */
    deja_stats *s = NULL;
    ASSERT_OK(deja_stats_get(c, ns, &s));
    uint64_t hist = 0;
    for (uint32_t i = 0; i < s->count; i++)
        if (strncmp(s->items[i].key, "sim_hit_", 8) == 0 &&
            strstr(s->items[i].key, "_sum_") == NULL) /* buckets, not the sum */
            hist += s->items[i].value;
    deja_stats_free(s);
    ASSERT_U64_EQ(hist, 4);
    deja_close(c);
    free(v);
}

/* ---- servers without the version-2 ops -------------------------------------
 * A fake server on plain sockets: it negotiates `version` and answers
 * every version-2 op UNKNOWN_OP (as a version-1 dejad does, and as a
 * version-2 one did while its handlers were stubs), LOOKUP with a miss and
 * STORE with entry 42. */

typedef struct fake_server {
    int listen_fd;
    char addr[64];
    uint16_t version;
    atomic_int v2_ops, lookups, stores;
} fake_server;

typedef struct fake_conn {
    fake_server *f;
    int fd;
} fake_conn;

static void *fake_conn_main(void *arg) {
    fake_conn *fc = arg;
    fake_server *f = fc->f;
    static _Thread_local uint8_t frame[1 << 16];
    proto_buf out;
    proto_buf_init(&out);
    for (;;) {
        long n = test_raw_recv_frame(fc->fd, frame, sizeof frame, 10000);
        if (n <= 0) break;
        proto_header h;
        if (proto_parse_frame(frame, (size_t)n, sizeof frame, &h) <= 0) break;
        proto_buf_reset(&out);
        switch (h.opcode) {
        case PROTO_OP_HELLO: {
            proto_hello_resp r = {.version = f->version,
                                  .max_dim = 4096,
                                  .max_frame = 1u << 20,
                                  .server_name = (const uint8_t *)"fake",
                                  .server_name_len = 4};
            proto_encode_hello_resp(&out, h.request_id, &r);
            break;
        }
        case PROTO_OP_LOOKUP:
            atomic_fetch_add(&f->lookups, 1);
            proto_encode_lookup_resp(&out, h.request_id, NULL, 0);
            break;
        case PROTO_OP_STORE:
            atomic_fetch_add(&f->stores, 1);
            proto_encode_store_resp(&out, h.request_id, 42);
            break;
        default:
            if (h.opcode >= PROTO_OP_LOOKUP_EX && h.opcode <= PROTO_OP_NS_POLICY)
                atomic_fetch_add(&f->v2_ops, 1);
            proto_encode_error(&out, h.opcode, h.request_id, DEJA_ERR_UNKNOWN_OP,
                               "unknown opcode");
        }
        if (test_raw_send(fc->fd, out.data, out.len) != 0) break;
    }
    proto_buf_free(&out);
    close(fc->fd);
    free(fc);
    return NULL;
}

static void *fake_accept_main(void *arg) {
    fake_server *f = arg;
    for (;;) {
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd < 0) return NULL;
        fake_conn *fc = malloc(sizeof *fc);
        if (fc == NULL) abort();
        *fc = (fake_conn){f, fd};
        pthread_t t;
        pthread_create(&t, NULL, fake_conn_main, fc);
        pthread_detach(t);
    }
}

static void fake_start(fake_server *f, uint16_t version) {
    memset(f, 0, sizeof *f);
    f->version = version;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ASSERT_EQ(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ASSERT_EQ(listen(f->listen_fd, 64), 0);
    ASSERT_EQ(getsockname(f->listen_fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, fake_accept_main, f), 0);
    pthread_detach(t);
}

static int quick_fetch(void *ctx, const char *prompt, deja_fetch *f) {
    (void)prompt;
    atomic_fetch_add((atomic_int *)ctx, 1);
    return deja_fetch_answer(f, ANSWER, strlen(ANSWER), 0);
}

/* get_or_fetch against a server of `version` without the version-2 ops:
 * one LOOKUP per call as before (after one refused LOOKUP_EX per
 * connection when the server claims version 2), a fetch, a STORE. */
static void check_without_v2_ops(uint16_t version) {
    fake_server f;
    fake_start(&f, version);
    deja_pool_options o = {.size = 1, .lookup_timeout_ms = 1000};
    deja_pool *p = NULL;
    ASSERT_OK(deja_pool_create(f.addr, &o, &p));
    float *v = paraphrases(9, 1);
    atomic_int fetches = 0;
    for (int i = 0; i < 3; i++) {
        deja_result *r = NULL;
        ASSERT_OK(deja_get_or_fetch(p, "ns", "q", v, DIM, THRESHOLD, quick_fetch,
                                    &fetches, &r));
        ASSERT_EQ(r->error, 0);
        ASSERT_EQ(r->flags, DEJA_RESULT_FETCHED | DEJA_RESULT_STORED);
        ASSERT_EQ(r->outcome, DEJA_OUTCOME_MISS);
        ASSERT_U64_EQ(r->hits[0].id, 42);
        deja_result_free(r);
    }
    ASSERT_EQ(atomic_load(&fetches), 3);
    ASSERT_EQ(atomic_load(&f.lookups), 3);
    ASSERT_EQ(atomic_load(&f.stores), 3);
    ASSERT_EQ(atomic_load(&f.v2_ops), version >= 2 ? 1 : 0);
    ASSERT_EQ(deja_pool_lease_release(p, "ns", 5), DEJA_ERR_UNKNOWN_OP);
    deja_ns_policy pol;
    ASSERT_EQ(deja_pool_ns_policy_get(p, "ns", &pol), DEJA_ERR_UNKNOWN_OP);
    ASSERT_EQ(atomic_load(&f.v2_ops), version >= 2 ? 1 : 0); /* not even sent */
    deja_pool_destroy(p);
    free(v);
}

static void test_version_1_server_gets_lookup(void) {
    check_without_v2_ops(1);
}

static void test_version_2_server_without_ops_gets_lookup(void) {
    check_without_v2_ops(2);
}

int main(void) {
    if (test_server_start(&srv, NULL) != 0) return 1;
    RUN(test_hello_negotiates_version_2);
    RUN(test_herd_makes_one_fetch);
    RUN(test_small_pool_leaseholder_stores_past_waiters);
    RUN(test_failed_fetch_promotes_a_waiter);
    RUN(test_leases_off_is_the_version_1_path);
    RUN(test_pool_options_refuse_negative_lease_values);
    RUN(test_lookup_ex_lease_store_release);
    RUN(test_lookup_ex_waiter_is_coalesced);
    RUN(test_policy_band_and_shadow);
    RUN(test_version_1_server_gets_lookup);
    RUN(test_version_2_server_without_ops_gets_lookup);
    test_server_stop(&srv);
    return harness_result();
}
