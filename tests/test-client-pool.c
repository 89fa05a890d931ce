/* test-client-pool.c: deja_pool against a real dejad -- every pool call,
 * the address forms, one pool shared by 8 threads, batches that equal
 * single calls (also on a plain deja_client), and deja_get_or_fetch.
 *
 * Failure behaviour (dead server, silent server, the breaker) is in
 * test-client-breaker.c. The timeouts here are generous on purpose: these
 * tests check results, and must pass under valgrind too. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deja.h"
#include "harness.h"
#include "support/spawn.h"

#define DIM 32

static test_server srv;
static char tcp_url[96];

static const deja_pool_options relaxed = {
    .lookup_timeout_ms = 5000,
    .write_timeout_ms = 5000,
    .connect_timeout_ms = 2000,
};

static deja_pool *pool_or_fail(const char *url, const deja_pool_options *opts) {
    deja_pool *p = NULL;
    int rc = deja_pool_create(url, opts, &p);
    if (rc != 0)
        HARNESS_FAIL("deja_pool_create(%s): %s (%s)", url, deja_strerror(rc),
                     deja_pool_last_error());
    return p;
}

static deja_store_req store_req(const char *ns, const float *v, const char *response,
                                const char *prompt) {
    deja_store_req r = {
        .ns = ns,
        .vector = v,
        .dim = DIM,
        .response = response,
        .response_len = strlen(response),
        .prompt = prompt,
        .prompt_len = prompt ? strlen(prompt) : 0,
        .ttl_s = 3600,
    };
    return r;
}

static deja_pool_status status_of(deja_pool *p) {
    deja_pool_status st;
    ASSERT_OK(deja_pool_get_status(p, &st));
    return st;
}

/* A loopback port that is bound but not listening: connects are refused. */
static int refusing_port(int *fd_out) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        HARNESS_FAIL("cannot bind a loopback port");
    *fd_out = fd;
    return ntohs(sa.sin_port);
}

/* ---- creating ------------------------------------------------------------------- */

static void test_create_checks_the_address_and_does_not_connect(void) {
    static const char *const bad[] = {
        "",
        "deja://",
        "deja://host:0",
        "deja://host:70000",
        "deja://h:1/x",
        "unix://",
        "unix://relative/path",
        "unix:",
        "127.0.0.1:",
        "[::1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        deja_pool *p = (deja_pool *)&p;
        int rc = deja_pool_create(bad[i], NULL, &p);
        if (rc != DEJA_ERR_INVALID_ARG) HARNESS_FAIL("\"%s\" gave %d", bad[i], rc);
        ASSERT_TRUE(p == NULL);
        ASSERT_TRUE(deja_pool_last_error()[0] != 0);
    }
    deja_pool *p = NULL;
    ASSERT_EQ(deja_pool_create(NULL, NULL, &p), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_pool_create(tcp_url, NULL, NULL), DEJA_ERR_INVALID_ARG);
    deja_pool_options negative = {.lookup_timeout_ms = -1};
    ASSERT_EQ(deja_pool_create(tcp_url, &negative, &p), DEJA_ERR_INVALID_ARG);

    /* Every accepted form; a pool to nowhere is fine until it is used. */
    static const char *const good[] = {
        "deja://127.0.0.1:1", "deja://localhost",     "deja://[::1]:7447",
        "127.0.0.1:7447",     "unix:///no/such.sock", "unix:relative.sock",
        "/abs.sock",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        p = pool_or_fail(good[i], NULL);
        deja_pool_status st = status_of(p);
        ASSERT_EQ(st.connects, 0);
        ASSERT_EQ(st.connections, 0);
        ASSERT_EQ(st.breaker, DEJA_BREAKER_CLOSED);
        deja_pool_destroy(p);
    }
    deja_pool_destroy(NULL);
}

/* ---- every call ------------------------------------------------------------------- */

static void test_every_call_over_tcp(void) {
    deja_pool *p = pool_or_fail(tcp_url, &relaxed);
    float v[DIM], other[DIM];
    test_unit_vector(1, v, DIM);
    test_unit_vector(2, other, DIM);

    ASSERT_OK(deja_pool_ping(p));
    deja_store_req req = store_req("p-all", v, "the answer", "the question");
    uint64_t id = 0;
    ASSERT_OK(deja_pool_store(p, &req, &id));
    ASSERT_TRUE(id != 0);
    ASSERT_STR_EQ(deja_pool_last_error(), "");

    deja_result *r = NULL;
    ASSERT_OK(deja_pool_lookup(p, "p-all", v, DIM, 0.9f, 1, DEJA_LOOKUP_WANT_PROMPT, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_EQ(r->error, 0);
    ASSERT_EQ(r->flags, 0);
    ASSERT_U64_EQ(r->hits[0].id, id);
    ASSERT_STR_EQ(r->hits[0].response, "the answer");
    ASSERT_STR_EQ(r->hits[0].prompt, "the question");
    ASSERT_NEAR(r->hits[0].similarity, 1.0, 1e-5);
    deja_result_free(r);

    /* A real miss: count 0 and no error. */
    ASSERT_OK(deja_pool_lookup(p, "p-all", other, DIM, 0.9f, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    ASSERT_EQ(r->error, 0);
    ASSERT_TRUE(r->hits == NULL);
    deja_result_free(r);

    deja_stats *s = NULL;
    uint64_t entries = 0;
    ASSERT_OK(deja_pool_stats(p, "p-all", &s));
    ASSERT_OK(deja_stats_find(s, "entries", &entries));
    ASSERT_EQ(entries, 1);
    deja_stats_free(s);
    ASSERT_OK(deja_pool_stats(p, NULL, &s));
    ASSERT_OK(deja_stats_find(s, "connections", &entries));
    deja_stats_free(s);
    ASSERT_EQ(deja_pool_stats(p, "p-no-such-ns", &s), DEJA_ERR_NOT_FOUND);
    ASSERT_TRUE(s == NULL);
    ASSERT_TRUE(deja_pool_last_error()[0] != 0);

    ASSERT_OK(deja_pool_delete(p, "p-all", id));
    ASSERT_EQ(deja_pool_delete(p, "p-all", id), DEJA_ERR_NOT_FOUND);
    ASSERT_OK(deja_pool_lookup(p, "p-all", v, DIM, 0.9f, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);

    /* Distinct vectors and no prompt: a repeated prompt or a near-identical
     * vector would update one entry instead of adding three. */
    for (int i = 0; i < 3; i++) {
        float w[DIM];
        test_unit_vector(10 + (uint64_t)i, w, DIM);
        deja_store_req more = store_req("p-all", w, "more", NULL);
        ASSERT_OK(deja_pool_store(p, &more, NULL));
    }
    uint64_t removed = 0;
    ASSERT_OK(deja_pool_flush(p, "p-all", &removed));
    ASSERT_EQ(removed, 3);

    /* One thread, one call at a time: one connection did all of it, and
     * the server's error replies did not count against it. */
    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.connects, 1);
    ASSERT_EQ(st.connections, 1);
    ASSERT_EQ(st.idle, 1);
    ASSERT_EQ(st.failures, 0);
    ASSERT_EQ(st.consecutive_failures, 0);
    ASSERT_EQ(st.breaker, DEJA_BREAKER_CLOSED);
    ASSERT_EQ(st.calls, 14);
    deja_pool_destroy(p);
}

static void test_unix_socket_url(void) {
    char url[400];
    snprintf(url, sizeof url, "unix://%s", srv.unix_path + 5); /* "unix:///..." */
    deja_pool *p = pool_or_fail(url, &relaxed);
    ASSERT_OK(deja_pool_ping(p));
    deja_pool_destroy(p);
    /* The plain client takes the URL forms too. */
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(url, NULL, &c));
    ASSERT_OK(deja_ping(c));
    deja_close(c);
    ASSERT_OK(deja_connect(tcp_url, NULL, &c));
    ASSERT_OK(deja_ping(c));
    deja_close(c);
}

static void test_lookup_errors_come_back_as_misses(void) {
    deja_pool *p = pool_or_fail(tcp_url, &relaxed);
    float v[DIM];
    test_unit_vector(3, v, DIM);
    deja_store_req req = store_req("p-err", v, "x", NULL);
    ASSERT_OK(deja_pool_store(p, &req, NULL));

    /* From the server: wrong dimension. */
    deja_result *r = NULL;
    ASSERT_EQ(deja_pool_lookup(p, "p-err", v, DIM / 2, 0.5f, 1, 0, &r),
              DEJA_ERR_DIM_MISMATCH);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->count, 0);
    ASSERT_EQ(r->error, DEJA_ERR_DIM_MISMATCH);
    deja_result_free(r);
    /* Found locally: a NULL vector, a bad threshold, a bad namespace. */
    ASSERT_EQ(deja_pool_lookup(p, "p-err", NULL, DIM, 0.5f, 1, 0, &r),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(r->count, 0);
    ASSERT_EQ(r->error, DEJA_ERR_INVALID_ARG);
    deja_result_free(r);
    ASSERT_EQ(deja_pool_lookup(p, "p-err", v, DIM, 2.0f, 1, 0, &r), DEJA_ERR_INVALID_ARG);
    deja_result_free(r);
    ASSERT_EQ(deja_pool_lookup(p, "bad ns", v, DIM, 0.5f, 1, 0, &r),
              DEJA_ERR_BAD_NAMESPACE);
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    /* Only a missing out-parameter gives nothing back. */
    ASSERT_EQ(deja_pool_lookup(p, "p-err", v, DIM, 0.5f, 1, 0, NULL),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_pool_lookup(NULL, "p-err", v, DIM, 0.5f, 1, 0, &r),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(r->error, DEJA_ERR_INVALID_ARG);
    deja_result_free(r);

    /* None of that says anything against the server. */
    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.failures, 0);
    ASSERT_EQ(st.consecutive_failures, 0);
    ASSERT_EQ(st.connections, 1);
    deja_pool_destroy(p);
}

static void test_auth_token(void) {
    test_server s;
    const char *const args[] = {"--auth-token", "sesame", "--fsync", "batch", NULL};
    ASSERT_OK(test_server_start(&s, args));
    char url[96];
    snprintf(url, sizeof url, "deja://%s", s.addr);
    deja_pool_options opts = relaxed;
    deja_pool *none = pool_or_fail(url, &opts);
    opts.auth_token = "open";
    deja_pool *wrong = pool_or_fail(url, &opts);
    char token[] = "sesame";
    opts.auth_token = token;
    deja_pool *right = pool_or_fail(url, &opts);
    token[0] = 'X'; /* the pool keeps its own copy */

    int rc_none = deja_pool_ping(none);
    int rc_wrong = deja_pool_ping(wrong);
    int rc_right = deja_pool_ping(right);
    float v[DIM];
    test_unit_vector(4, v, DIM);
    deja_store_req req = store_req("p-auth", v, "secret", NULL);
    int rc_store = deja_pool_store(right, &req, NULL);
    deja_pool_status st_wrong = status_of(wrong);
    deja_pool_destroy(none);
    deja_pool_destroy(wrong);
    deja_pool_destroy(right);
    test_server_stop(&s);

    ASSERT_EQ(rc_none, DEJA_ERR_AUTH_REQUIRED);
    ASSERT_EQ(rc_wrong, DEJA_ERR_AUTH_FAILED);
    ASSERT_OK(rc_right);
    ASSERT_OK(rc_store);
    /* A refused token is a failed connect: the breaker counts it. */
    ASSERT_EQ(st_wrong.connect_failures, 1);
    ASSERT_EQ(st_wrong.consecutive_failures, 1);
}

/* ---- namespaces ----------------------------------------------------------------------
 */

static void test_namespace_ops(void) {
    deja_pool *p = pool_or_fail(tcp_url, &relaxed);
    deja_ns_config cfg = {
        .dim = DIM,
        .index_kind = DEJA_INDEX_FLAT,
        .min_threshold = 0.75f,
        .default_ttl_s = 600,
        .max_entries = 1000,
        .flags = DEJA_NS_NO_DEDUP,
    };
    ASSERT_OK(deja_pool_ns_create(p, "p-ns", &cfg));
    ASSERT_OK(deja_pool_ns_create(p, "p-ns", &cfg)); /* the same again: no change */
    deja_ns_config other = cfg;
    other.default_ttl_s = 5;
    ASSERT_EQ(deja_pool_ns_create(p, "p-ns", &other), DEJA_ERR_EXISTS);
    deja_ns_config no_dim = {0};
    ASSERT_EQ(deja_pool_ns_create(p, "p-ns2", &no_dim), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_pool_ns_create(p, "p-ns2", NULL), DEJA_ERR_INVALID_ARG);

    float v[DIM];
    test_unit_vector(77, v, DIM);
    deja_store_req req = store_req("p-ns", v, "in a configured namespace", NULL);
    ASSERT_OK(deja_pool_store(p, &req, NULL));

    deja_ns_info *info = NULL;
    ASSERT_OK(deja_pool_ns_info(p, "p-ns", &info));
    ASSERT_EQ(info->config.dim, DIM);
    ASSERT_EQ(info->config.index_kind, DEJA_INDEX_FLAT);
    ASSERT_NEAR(info->config.min_threshold, 0.75, 1e-6);
    ASSERT_EQ(info->config.default_ttl_s, 600);
    ASSERT_U64_EQ(info->config.max_entries, 1000);
    /* NS_INFO gives the resolved configuration, flagged explicit. */
    ASSERT_EQ(info->config.flags, DEJA_NS_NO_DEDUP | DEJA_NS_EXPLICIT);
    ASSERT_TRUE(info->config.faiss_factory == NULL);
    uint64_t entries = 0;
    ASSERT_OK(deja_stats_find(&info->stats, "entries", &entries));
    ASSERT_EQ(entries, 1);
    deja_ns_info_free(info);
    ASSERT_EQ(deja_pool_ns_info(p, "p-no-such-ns", &info), DEJA_ERR_NOT_FOUND);
    ASSERT_TRUE(info == NULL);

    /* The same through a plain connection. */
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(srv.addr, NULL, &c));
    deja_ns_list *list = NULL;
    ASSERT_OK(deja_ns_list_get(c, &list));
    int found = 0;
    for (uint32_t i = 0; i < list->count; i++)
        found += strcmp(list->names[i], "p-ns") == 0;
    ASSERT_EQ(found, 1);
    deja_ns_list_free(list);
    ASSERT_OK(deja_ns_info_get(c, "p-ns", &info));
    ASSERT_EQ(info->config.dim, DIM);
    deja_ns_info_free(info);
    uint64_t removed = 0;
    ASSERT_OK(deja_ns_drop(c, "p-ns", &removed));
    ASSERT_EQ(removed, 1);
    ASSERT_EQ(deja_ns_drop(c, "p-ns", NULL), DEJA_ERR_NOT_FOUND);
    ASSERT_OK(deja_ping(c));
    deja_close(c);

    ASSERT_OK(deja_pool_ns_list(p, &list));
    for (uint32_t i = 0; i < list->count; i++)
        ASSERT_TRUE(strcmp(list->names[i], "p-ns"));
    deja_ns_list_free(list);
    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.failures, 0);
    deja_pool_destroy(p);
}

/* ---- many threads ------------------------------------------------------------------ */

#define THREADS 8
#define PER_THREAD 25

typedef struct worker {
    deja_pool *pool;
    int index;
    int errors;
    char first_error[256];
} worker;

static void worker_error(worker *w, const char *what, int rc) {
    if (w->errors++ == 0)
        snprintf(w->first_error, sizeof w->first_error, "thread %d: %s: %s (%s)",
                 w->index, what, deja_strerror(rc), deja_pool_last_error());
}

/* Each thread stores entries in a namespace of its own, then finds each
 * one again, mixing in the other calls, all on the shared pool. */
static void *worker_main(void *arg) {
    worker *w = arg;
    char ns[32], response[64];
    snprintf(ns, sizeof ns, "p-thread-%d", w->index);
    uint64_t ids[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        float v[DIM];
        test_unit_vector(1000 + (uint64_t)w->index * 100 + (uint64_t)i, v, DIM);
        snprintf(response, sizeof response, "answer %d/%d", w->index, i);
        deja_store_req req = store_req(ns, v, response, NULL);
        int rc = deja_pool_store(w->pool, &req, &ids[i]);
        if (rc) worker_error(w, "store", rc);
    }
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < PER_THREAD; i++) {
            float v[DIM];
            test_unit_vector(1000 + (uint64_t)w->index * 100 + (uint64_t)i, v, DIM);
            deja_result *r = NULL;
            int rc = deja_pool_lookup(w->pool, ns, v, DIM, 0.95f, 1, 0, &r);
            snprintf(response, sizeof response, "answer %d/%d", w->index, i);
            if (rc)
                worker_error(w, "lookup", rc);
            else if (r->count != 1 || r->hits[0].id != ids[i] ||
                     strcmp(r->hits[0].response, response) != 0)
                worker_error(w, "lookup gave the wrong entry", 0);
            deja_result_free(r);
        }
        int rc = deja_pool_ping(w->pool);
        if (rc) worker_error(w, "ping", rc);
        deja_stats *s = NULL;
        rc = deja_pool_stats(w->pool, ns, &s);
        if (rc) worker_error(w, "stats", rc);
        deja_stats_free(s);
    }
    return NULL;
}

static void test_eight_threads_share_one_pool(void) {
    deja_pool_options opts = relaxed;
    opts.size = 4; /* fewer connections than threads: some calls wait */
    deja_pool *p = pool_or_fail(tcp_url, &opts);
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.pool = p, .index = i};
        ASSERT_OK(pthread_create(&th[i], NULL, worker_main, &w[i]));
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        if (w[i].errors)
            HARNESS_FAIL("%d errors; first: %s", w[i].errors, w[i].first_error);
    deja_pool_status st = status_of(p);
    ASSERT_LE(st.connects, 4);
    ASSERT_LE(st.connections, 4);
    ASSERT_EQ(st.failures, 0);
    ASSERT_EQ(st.calls, THREADS * (PER_THREAD + 4 * (PER_THREAD + 2)));
    deja_pool_destroy(p);
}

/* ---- batches ------------------------------------------------------------------------
 */

#define BATCH_STORED 120
#define BATCH_QUERIES 240

/* Stores BATCH_STORED entries with store_many; returns their ids. */
static void store_batch(deja_pool *p, const char *ns, uint64_t *ids) {
    static float vecs[BATCH_STORED][DIM];
    static char texts[BATCH_STORED][32];
    deja_store_req reqs[BATCH_STORED];
    for (int i = 0; i < BATCH_STORED; i++) {
        test_unit_vector(5000 + (uint64_t)i, vecs[i], DIM);
        snprintf(texts[i], sizeof texts[i], "batch %d", i);
        reqs[i] = store_req(ns, vecs[i], texts[i], texts[i]);
    }
    int codes[BATCH_STORED];
    ASSERT_OK(deja_pool_store_many(p, reqs, BATCH_STORED, ids, codes));
    for (int i = 0; i < BATCH_STORED; i++) {
        ASSERT_EQ(codes[i], 0);
        ASSERT_TRUE(ids[i] != 0);
        for (int j = 0; j < i; j++)
            ASSERT_TRUE(ids[i] != ids[j]);
    }
}

static void assert_same_result(const deja_result *a, const deja_result *b) {
    ASSERT_EQ(a->count, b->count);
    ASSERT_EQ(a->error, b->error);
    for (uint32_t i = 0; i < a->count; i++) {
        ASSERT_U64_EQ(a->hits[i].id, b->hits[i].id);
        ASSERT_NEAR(a->hits[i].similarity, b->hits[i].similarity, 1e-6);
        ASSERT_EQ(a->hits[i].response_len, b->hits[i].response_len);
        ASSERT_MEM_EQ(a->hits[i].response, b->hits[i].response, a->hits[i].response_len);
        ASSERT_EQ(a->hits[i].prompt_len, b->hits[i].prompt_len);
        if (a->hits[i].prompt_len)
            ASSERT_MEM_EQ(a->hits[i].prompt, b->hits[i].prompt, a->hits[i].prompt_len);
    }
}

static void test_batches_equal_single_calls(void) {
    deja_pool *p = pool_or_fail(tcp_url, &relaxed);
    uint64_t ids[BATCH_STORED];
    store_batch(p, "p-batch", ids);

    /* Queries: stored vectors (hits, k from 1 to 5, some with prompts),
     * and unrelated ones (misses). */
    static float q[BATCH_QUERIES][DIM];
    deja_lookup_req reqs[BATCH_QUERIES];
    for (int i = 0; i < BATCH_QUERIES; i++) {
        uint64_t seed = i % 2 ? 90000 + (uint64_t)i : 5000 + (uint64_t)(i / 2);
        test_unit_vector(seed, q[i], DIM);
        reqs[i] = (deja_lookup_req){.ns = "p-batch",
                                    .vector = q[i],
                                    .dim = DIM,
                                    .threshold = i % 3 ? 0.2f : 0.9f,
                                    .k = (uint32_t)(i % 5),
                                    .flags = i % 4 ? 0 : DEJA_LOOKUP_WANT_PROMPT};
    }
    deja_result *many[BATCH_QUERIES];
    ASSERT_OK(deja_pool_lookup_many(p, reqs, BATCH_QUERIES, many));
    int hits = 0;
    for (int i = 0; i < BATCH_QUERIES; i++) {
        deja_result *one = NULL;
        ASSERT_OK(deja_pool_lookup(p, reqs[i].ns, reqs[i].vector, reqs[i].dim,
                                   reqs[i].threshold, reqs[i].k ? reqs[i].k : 1,
                                   reqs[i].flags, &one));
        assert_same_result(many[i], one);
        if (i % 2 == 0) {
            ASSERT_TRUE(many[i]->count >= 1);
            ASSERT_U64_EQ(many[i]->hits[0].id, ids[i / 2]);
        }
        hits += many[i]->count > 0;
        deja_result_free(one);
    }
    ASSERT_GE(hits, BATCH_QUERIES / 2);

    /* The same batch on a plain connection gives the same again. */
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(srv.addr, NULL, &c));
    deja_result *again[BATCH_QUERIES];
    ASSERT_OK(deja_lookup_many(c, reqs, BATCH_QUERIES, again));
    for (int i = 0; i < BATCH_QUERIES; i++)
        assert_same_result(many[i], again[i]);
    ASSERT_OK(deja_ping(c)); /* the connection is in step afterwards */
    deja_results_free(again, BATCH_QUERIES);
    ASSERT_TRUE(again[0] == NULL);
    deja_results_free(many, BATCH_QUERIES);

    /* An empty batch does nothing. */
    ASSERT_OK(deja_pool_lookup_many(p, reqs, 0, many));
    ASSERT_OK(deja_lookup_many(c, reqs, 0, many));
    ASSERT_OK(deja_store_many(c, NULL, 0, NULL, NULL));
    deja_close(c);
    deja_pool_destroy(p);
}

static void test_batch_errors_stay_with_their_request(void) {
    deja_pool *p = pool_or_fail(tcp_url, &relaxed);
    float v[DIM], half[DIM / 2];
    test_unit_vector(7, v, DIM);
    test_unit_vector(8, half, DIM / 2);
    deja_store_req sreqs[5];
    for (int i = 0; i < 5; i++)
        sreqs[i] = store_req("p-berr", v, "ok", NULL);
    sreqs[1].completion = 2; /* TRUNCATED: the server refuses it */
    sreqs[3].vector = NULL;  /* refused before sending */
    uint64_t ids[5];
    int codes[5];
    ASSERT_EQ(deja_pool_store_many(p, sreqs, 5, ids, codes), DEJA_ERR_REJECTED);
    ASSERT_EQ(codes[0], 0);
    ASSERT_EQ(codes[1], DEJA_ERR_REJECTED);
    ASSERT_EQ(codes[2], 0);
    ASSERT_EQ(codes[3], DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(codes[4], 0);
    ASSERT_TRUE(ids[0] && ids[2] && ids[4]);
    ASSERT_TRUE(ids[1] == 0 && ids[3] == 0);

    deja_lookup_req lreqs[6];
    for (int i = 0; i < 6; i++)
        lreqs[i] = (deja_lookup_req){
            .ns = "p-berr", .vector = v, .dim = DIM, .threshold = 0.9f, .k = 3};
    lreqs[2].vector = half; /* DIM_MISMATCH from the server */
    lreqs[2].dim = DIM / 2;
    lreqs[4].ns = NULL; /* INVALID_ARG here */
    deja_result *out[6];
    ASSERT_EQ(deja_pool_lookup_many(p, lreqs, 6, out), DEJA_ERR_DIM_MISMATCH);
    for (int i = 0; i < 6; i++) {
        ASSERT_TRUE(out[i] != NULL);
        if (i == 2) {
            ASSERT_EQ(out[i]->error, DEJA_ERR_DIM_MISMATCH);
            ASSERT_EQ(out[i]->count, 0);
        } else if (i == 4) {
            ASSERT_EQ(out[i]->error, DEJA_ERR_INVALID_ARG);
            ASSERT_EQ(out[i]->count, 0);
        } else {
            ASSERT_EQ(out[i]->error, 0);
            ASSERT_EQ(out[i]->count, 3);
        }
    }
    deja_results_free(out, 6);
    ASSERT_EQ(deja_pool_lookup_many(p, NULL, 2, out), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(out[1]->error, DEJA_ERR_INVALID_ARG);
    deja_results_free(out, 2);
    ASSERT_EQ(deja_pool_lookup_many(p, lreqs, 2, NULL), DEJA_ERR_INVALID_ARG);

    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.failures, 0);
    ASSERT_EQ(st.connections, 1);
    deja_pool_destroy(p);
}

/* Many stores and lookups with large replies on one connection: replies
 * must be read while requests are still being sent, or the server would
 * stop reading (its --max-outbuf is 8 MiB) while we block sending. */
static void test_large_batches_do_not_deadlock(void) {
    deja_client *c = NULL;
    deja_options copts = {.request_timeout_ms = 60000};
    ASSERT_OK(deja_connect(srv.addr, &copts, &c));
    enum { STORES = 1500, BIG = 32768, NBIG = 256, LOOKUPS = 400, K = 16 };
    char *big = malloc(BIG);
    memset(big, 'z', BIG);
    static float vecs[STORES][DIM];
    deja_store_req *reqs = calloc(STORES, sizeof *reqs);
    uint64_t *ids = calloc(STORES, sizeof *ids);
    for (int i = 0; i < STORES; i++) {
        test_unit_vector(20000 + (uint64_t)i, vecs[i], DIM);
        reqs[i] = store_req("p-big", vecs[i], "", NULL);
        reqs[i].response = big;
        reqs[i].response_len = i < NBIG ? BIG : 100;
    }
    int rc = deja_store_many(c, reqs, STORES, ids, NULL);
    deja_lookup_req *lreqs = calloc(LOOKUPS, sizeof *lreqs);
    deja_result **out = calloc(LOOKUPS, sizeof *out);
    for (int i = 0; i < LOOKUPS; i++)
        lreqs[i] = (deja_lookup_req){.ns = "p-big",
                                     .vector = vecs[i % NBIG],
                                     .dim = DIM,
                                     .threshold = -1.0f,
                                     .k = K};
    int rc_lookup = deja_lookup_many(c, lreqs, LOOKUPS, out);
    size_t reply_bytes = 0;
    for (int i = 0; i < LOOKUPS; i++)
        for (uint32_t j = 0; out[i] && j < out[i]->count; j++)
            reply_bytes += out[i]->hits[j].response_len;
    int rc_ping = deja_ping(c);
    deja_results_free(out, LOOKUPS);
    free(out);
    free(lreqs);
    free(reqs);
    free(big);
    deja_close(c);
    ASSERT_OK(rc);
    for (int i = 0; i < STORES; i++)
        ASSERT_TRUE(ids[i] != 0);
    free(ids);
    ASSERT_OK(rc_lookup);
    /* At least the big entry itself per lookup: 12.5 MiB in all, past the
     * server's 8 MiB outbuf limit. */
    ASSERT_GE(reply_bytes, (size_t)LOOKUPS * BIG);
    ASSERT_OK(rc_ping);
}

/* ---- get or fetch -------------------------------------------------------------------
 */

typedef struct fetch_ctx {
    int calls;
    int fail_with;      /* returned instead of an answer when non-zero */
    int give_nothing;   /* return 0 without an answer */
    uint8_t completion; /* reported with the answer */
} fetch_ctx;

static int fake_llm(void *arg, const char *prompt, deja_fetch *f) {
    fetch_ctx *ctx = arg;
    ctx->calls++;
    if (ctx->fail_with) return ctx->fail_with;
    if (ctx->give_nothing) return 0;
    char answer[256];
    snprintf(answer, sizeof answer, "LLM says: %s", prompt ? prompt : "(no prompt)");
    deja_fetch_meta(f, 3600, 10, 20, 300);
    return deja_fetch_answer(f, answer, strlen(answer), ctx->completion);
}

static void test_get_or_fetch(void) {
    deja_pool *p = pool_or_fail(tcp_url, &relaxed);
    float v[DIM];
    test_unit_vector(31, v, DIM);
    fetch_ctx ctx = {0};
    deja_result *r = NULL;

    /* First time: a miss, so the LLM is asked and its answer stored. */
    ASSERT_OK(deja_get_or_fetch(p, "p-gof", "why?", v, DIM, 0.9f, fake_llm, &ctx, &r));
    ASSERT_EQ(ctx.calls, 1);
    ASSERT_EQ(r->count, 1);
    ASSERT_EQ(r->flags, DEJA_RESULT_FETCHED | DEJA_RESULT_STORED);
    ASSERT_EQ(r->error, 0);
    ASSERT_STR_EQ(r->hits[0].response, "LLM says: why?");
    ASSERT_STR_EQ(r->hits[0].prompt, "why?");
    uint64_t id = r->hits[0].id;
    ASSERT_TRUE(id != 0);
    deja_result_free(r);

    /* Second time: served from the cache (by its prompt, so the result
     * says exact), the LLM is not asked. */
    ASSERT_OK(deja_get_or_fetch(p, "p-gof", "why?", v, DIM, 0.9f, fake_llm, &ctx, &r));
    ASSERT_EQ(ctx.calls, 1);
    ASSERT_EQ(r->count, 1);
    ASSERT_EQ(r->flags, DEJA_RESULT_EXACT);
    ASSERT_U64_EQ(r->hits[0].id, id);
    ASSERT_STR_EQ(r->hits[0].response, "LLM says: why?");
    deja_result_free(r);

    /* The same prompt with a vector at cosine 0.7 (under the threshold,
     * above the server's floor of 0.5): the prompt went along with the
     * lookup, so the server's exact tier finds the entry by its text. */
    float other[DIM], related[DIM];
    test_unit_vector(33, other, DIM);
    double dot = 0, norm = 0;
    for (int i = 0; i < DIM; i++)
        dot += (double)other[i] * v[i];
    for (int i = 0; i < DIM; i++) {
        other[i] = (float)(other[i] - dot * v[i]);
        norm += (double)other[i] * other[i];
    }
    for (int i = 0; i < DIM; i++)
        related[i] = (float)(0.7 * v[i] + sqrt(0.51 / norm) * other[i]);
    ASSERT_OK(
        deja_get_or_fetch(p, "p-gof", "why?", related, DIM, 0.9f, fake_llm, &ctx, &r));
    ASSERT_EQ(ctx.calls, 1);
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, id);
    ASSERT_EQ(r->flags, DEJA_RESULT_EXACT);
    ASSERT_NEAR(r->hits[0].similarity, 0.7f, 1e-4);
    deja_result_free(r);

    /* A truncated answer is returned but never cached. */
    float w[DIM];
    test_unit_vector(32, w, DIM);
    ctx.completion = 2;
    ASSERT_OK(deja_get_or_fetch(p, "p-gof", "cut", w, DIM, 0.9f, fake_llm, &ctx, &r));
    ASSERT_EQ(ctx.calls, 2);
    ASSERT_EQ(r->flags, DEJA_RESULT_FETCHED);
    ASSERT_EQ(r->error, 0);
    ASSERT_U64_EQ(r->hits[0].id, 0);
    deja_result_free(r);
    ASSERT_OK(deja_pool_lookup(p, "p-gof", w, DIM, 0.9f, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);

    /* A fetch that fails: its own code comes back, nothing stored. */
    ctx = (fetch_ctx){.fail_with = 42};
    ASSERT_EQ(deja_get_or_fetch(p, "p-gof", NULL, w, DIM, 0.9f, fake_llm, &ctx, &r), 42);
    ASSERT_EQ(r->count, 0);
    ASSERT_EQ(r->error, 42);
    deja_result_free(r);
    ctx = (fetch_ctx){.give_nothing = 1};
    ASSERT_EQ(deja_get_or_fetch(p, "p-gof", NULL, w, DIM, 0.9f, fake_llm, &ctx, &r),
              DEJA_ERR_INVALID_ARG);
    deja_result_free(r);
    ASSERT_EQ(deja_get_or_fetch(p, "p-gof", NULL, w, DIM, 0.9f, NULL, &ctx, &r),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    ASSERT_EQ(deja_get_or_fetch(p, "p-gof", NULL, w, DIM, 0.9f, fake_llm, &ctx, NULL),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(deja_fetch_answer(NULL, "x", 1, 0), DEJA_ERR_INVALID_ARG);
    deja_pool_destroy(p);

    /* No server at all: the answer still comes, from the LLM, and the
     * result says why it was not stored. */
    int fd;
    char dead[64];
    snprintf(dead, sizeof dead, "deja://127.0.0.1:%d", refusing_port(&fd));
    p = pool_or_fail(dead, &relaxed);
    ctx = (fetch_ctx){0};
    ASSERT_OK(deja_get_or_fetch(p, "p-gof", "down?", v, DIM, 0.9f, fake_llm, &ctx, &r));
    ASSERT_EQ(ctx.calls, 1);
    ASSERT_EQ(r->count, 1);
    ASSERT_EQ(r->flags, DEJA_RESULT_FETCHED);
    ASSERT_EQ(r->error, DEJA_ERR_CONNECT);
    ASSERT_STR_EQ(r->hits[0].response, "LLM says: down?");
    deja_result_free(r);
    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.connects, 1); /* the store was not even tried */
    deja_pool_destroy(p);
    close(fd);
}

int main(void) {
    const char *const args[] = {"--fsync", "batch", NULL};
    if (test_server_start(&srv, args) != 0) return 1;
    snprintf(tcp_url, sizeof tcp_url, "deja://%s", srv.addr);
    RUN(test_create_checks_the_address_and_does_not_connect);
    RUN(test_every_call_over_tcp);
    RUN(test_unix_socket_url);
    RUN(test_lookup_errors_come_back_as_misses);
    RUN(test_auth_token);
    RUN(test_namespace_ops);
    RUN(test_eight_threads_share_one_pool);
    RUN(test_batches_equal_single_calls);
    RUN(test_batch_errors_stay_with_their_request);
    RUN(test_large_batches_do_not_deadlock);
    RUN(test_get_or_fetch);
    int status = test_server_stop(&srv);
    return harness_result() || status != 0;
}
