/* test-client-breaker.c: deja_pool when the server is not healthy -- a
 * server killed mid-run, one that refuses connections, one that accepts
 * and never answers -- and the circuit breaker: opens after N failures,
 * fails fast without touching the network, lets one probe through after
 * the cool-down, closes again once the server is back.
 *
 * The breaker's clock is injected (deja_pool_options.clock_ms), so the
 * cool-down is passed by the test, not slept through. Timeouts are real
 * time: a call must return within its timeout plus SLACK_MS, a bound kept
 * generous because the machine is shared (DEJA_TEST_SLACK_MS overrides
 * it, e.g. under valgrind). "No network attempt" is asserted through the
 * pool's connect counter rather than through speed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
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
#define COOLDOWN_MS 1000

static double slack_ms = 100;

static _Atomic int64_t fake_now = 1000000;

static int64_t fake_clock(void *ctx) {
    (void)ctx;
    return atomic_load(&fake_now);
}

static void pass_cooldown(void) {
    atomic_fetch_add(&fake_now, COOLDOWN_MS + 1);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static deja_pool_status status_of(deja_pool *p) {
    deja_pool_status st;
    ASSERT_OK(deja_pool_get_status(p, &st));
    return st;
}

static deja_pool *make_pool(const char *url, int lookup_ms, int write_ms,
                            uint32_t failures) {
    deja_pool_options o = {
        .size = 4,
        .connect_timeout_ms = 1000,
        .lookup_timeout_ms = lookup_ms,
        .write_timeout_ms = write_ms,
        .breaker_failures = failures,
        .breaker_cooldown_ms = COOLDOWN_MS,
        .clock_ms = fake_clock,
    };
    deja_pool *p = NULL;
    int rc = deja_pool_create(url, &o, &p);
    if (rc != 0) HARNESS_FAIL("deja_pool_create(%s): %s", url, deja_strerror(rc));
    return p;
}

/* A loopback port that is bound but not listening: connects are refused. */
static int bound_port(int *fd_out) {
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

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Makes 100 calls that the open breaker must refuse: every one without a
 * connect attempt, as a miss flagged UNAVAILABLE. Returns the median time
 * of one call in ms. */
static double assert_fails_fast(deja_pool *p, const float *v) {
    deja_pool_status before = status_of(p);
    ASSERT_EQ(before.breaker, DEJA_BREAKER_OPEN);
    double took[100];
    for (int i = 0; i < 100; i++) {
        deja_result *r = NULL;
        double t0 = now_ms();
        int rc = deja_pool_lookup(p, "b-ns", v, DIM, 0.9f, 1, 0, &r);
        took[i] = now_ms() - t0;
        ASSERT_EQ(rc, DEJA_ERR_UNAVAILABLE);
        ASSERT_EQ(r->count, 0);
        ASSERT_EQ(r->error, DEJA_ERR_UNAVAILABLE);
        deja_result_free(r);
    }
    deja_pool_status after = status_of(p);
    ASSERT_EQ(after.connects, before.connects);
    ASSERT_EQ(after.fast_fails, before.fast_fails + 100);
    ASSERT_EQ(after.connections, 0);
    ASSERT_TRUE(strstr(deja_pool_last_error(), "circuit breaker") != NULL);
    qsort(took, 100, sizeof took[0], compare_double);
    return took[50];
}

/* ---- a server killed mid-run ------------------------------------------------------- */

typedef struct looper {
    deja_pool *pool;
    const float *v;
    atomic_int *stop;
    double max_ms;
    long calls, hits, error_misses, wrong;
} looper;

/* Looks up in a loop until told to stop, checking that every result is
 * either a hit or a miss that carries its error. */
static void *looper_main(void *arg) {
    looper *l = arg;
    while (!atomic_load(l->stop)) {
        deja_result *r = NULL;
        double t0 = now_ms();
        int rc = deja_pool_lookup(l->pool, "b-ns", l->v, DIM, 0.9f, 1, 0, &r);
        double took = now_ms() - t0;
        if (took > l->max_ms) l->max_ms = took;
        l->calls++;
        if (r == NULL)
            l->wrong++;
        else if (r->count > 0)
            l->hits += rc == 0 && r->error == 0 ? 1 : (l->wrong++, 0);
        else
            l->error_misses += rc != 0 && r->error == rc ? 1 : (l->wrong++, 0);
        deja_result_free(r);
        /* A small pause keeps four threads from spinning a core each on
         * fast failures, without changing what is tested. */
        if (rc != 0) sleep_ms(1);
    }
    return NULL;
}

static void test_server_killed_mid_run(void) {
    test_server s;
    const char *const args[] = {"--fsync", "batch", NULL};
    ASSERT_OK(test_server_start(&s, args));
    char url[96];
    snprintf(url, sizeof url, "deja://%s", s.addr);
    const int lookup_ms = 50;
    deja_pool *p = make_pool(url, lookup_ms, 1000, 3);
    float v[DIM];
    test_unit_vector(1, v, DIM);
    deja_store_req req = {
        .ns = "b-ns", .vector = v, .dim = DIM, .response = "kept", .response_len = 4};
    uint64_t id = 0;
    ASSERT_OK(deja_pool_store(p, &req, &id));

    atomic_int stop = 0;
    looper l[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        l[i] = (looper){.pool = p, .v = v, .stop = &stop};
        ASSERT_OK(pthread_create(&th[i], NULL, looper_main, &l[i]));
    }
    sleep_ms(150);
    test_server_kill(&s);
    sleep_ms(250);
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);

    long hits = 0, misses = 0;
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        if (l[i].max_ms > worst) worst = l[i].max_ms;
        ASSERT_EQ(l[i].wrong, 0);
        if (l[i].max_ms > lookup_ms + slack_ms)
            HARNESS_FAIL("a lookup took %.1f ms (timeout %d ms)", l[i].max_ms, lookup_ms);
        hits += l[i].hits;
        misses += l[i].error_misses;
    }
    ASSERT_GT(hits, 0);
    ASSERT_GT(misses, 0);

    /* The breaker opened once and holds no connection. */
    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.breaker, DEJA_BREAKER_OPEN);
    ASSERT_EQ(st.trips, 1);
    ASSERT_GE(st.consecutive_failures, 3);
    ASSERT_GT(st.open_remaining_ms, 0);

    /* Open: no network attempt, well under a millisecond. */
    double median = assert_fails_fast(p, v);
    fprintf(stderr,
            "   %ld hits, %ld error misses, slowest lookup %.2f ms; "
            "fail-fast median %.4f ms\n",
            hits, misses, worst, median);
    if (median >= 1.0) HARNESS_FAIL("median fail-fast call took %.3f ms", median);
    ASSERT_EQ(deja_pool_store(p, &req, NULL), DEJA_ERR_UNAVAILABLE);

    /* After the cool-down one probe goes out; the server is still down,
     * so it fails and the breaker opens again. */
    pass_cooldown();
    st = status_of(p);
    ASSERT_EQ(st.breaker, DEJA_BREAKER_HALF_OPEN);
    uint64_t connects = st.connects;
    deja_result *r = NULL;
    ASSERT_EQ(deja_pool_lookup(p, "b-ns", v, DIM, 0.9f, 1, 0, &r), DEJA_ERR_CONNECT);
    ASSERT_EQ(r->error, DEJA_ERR_CONNECT);
    deja_result_free(r);
    st = status_of(p);
    ASSERT_EQ(st.connects, connects + 1);
    ASSERT_EQ(st.breaker, DEJA_BREAKER_OPEN);
    ASSERT_EQ(st.trips, 2);
    assert_fails_fast(p, v);

    /* The server comes back on the same port: the next probe succeeds,
     * the breaker closes, and the acknowledged entry is there. */
    ASSERT_OK(test_server_restart(&s, args));
    pass_cooldown();
    ASSERT_OK(deja_pool_lookup(p, "b-ns", v, DIM, 0.9f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, id);
    deja_result_free(r);
    st = status_of(p);
    ASSERT_EQ(st.breaker, DEJA_BREAKER_CLOSED);
    ASSERT_EQ(st.consecutive_failures, 0);
    ASSERT_EQ(st.connections, 1);
    for (int i = 0; i < 10; i++) {
        ASSERT_OK(deja_pool_lookup(p, "b-ns", v, DIM, 0.9f, 1, 0, &r));
        ASSERT_EQ(r->count, 1);
        deja_result_free(r);
    }
    deja_pool_destroy(p);
    ASSERT_OK(test_server_stop(&s));
}

/* ---- refused connections ----------------------------------------------------------- */

static void test_refused_connects_open_the_breaker(void) {
    int fd;
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", bound_port(&fd));
    deja_pool *p = make_pool(url, 50, 1000, 3);
    float v[DIM];
    test_unit_vector(2, v, DIM);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(deja_pool_ping(p), DEJA_ERR_CONNECT);
        ASSERT_TRUE(strstr(deja_pool_last_error(), "refused") != NULL);
        deja_pool_status st = status_of(p);
        ASSERT_EQ(st.breaker, i < 2 ? DEJA_BREAKER_CLOSED : DEJA_BREAKER_OPEN);
        ASSERT_EQ(st.consecutive_failures, (uint32_t)i + 1);
    }
    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.connects, 3);
    ASSERT_EQ(st.connect_failures, 3);
    ASSERT_EQ(st.failures, 3);
    ASSERT_EQ(st.trips, 1);
    assert_fails_fast(p, v);
    deja_pool_destroy(p);
    close(fd);
}

/* Every kind of call fails fast and fails open while the breaker is open;
 * get-or-fetch still answers, from the fetch function. */
static int fetch_answer(void *ctx, const char *prompt, deja_fetch *f) {
    ++*(int *)ctx;
    return deja_fetch_answer(f, "from the LLM", 12, 0);
}

static void test_open_breaker_refuses_every_call(void) {
    int fd;
    char url[64];
    snprintf(url, sizeof url, "deja://127.0.0.1:%d", bound_port(&fd));
    deja_pool *p = make_pool(url, 50, 1000, 1);
    float v[DIM];
    test_unit_vector(3, v, DIM);
    ASSERT_EQ(deja_pool_ping(p), DEJA_ERR_CONNECT);
    ASSERT_EQ(status_of(p).breaker, DEJA_BREAKER_OPEN);

    deja_store_req sreq = {
        .ns = "b-ns", .vector = v, .dim = DIM, .response = "x", .response_len = 1};
    ASSERT_EQ(deja_pool_store(p, &sreq, NULL), DEJA_ERR_UNAVAILABLE);
    ASSERT_EQ(deja_pool_delete(p, "b-ns", 1), DEJA_ERR_UNAVAILABLE);
    ASSERT_EQ(deja_pool_flush(p, "b-ns", NULL), DEJA_ERR_UNAVAILABLE);
    deja_stats *stats = (deja_stats *)&stats;
    ASSERT_EQ(deja_pool_stats(p, NULL, &stats), DEJA_ERR_UNAVAILABLE);
    ASSERT_TRUE(stats == NULL);

    deja_lookup_req lreqs[3] = {
        {.ns = "b-ns", .vector = v, .dim = DIM, .threshold = 0.5f},
        {.ns = "b-ns", .vector = v, .dim = DIM, .threshold = 0.5f},
        {.ns = "b-ns", .vector = v, .dim = DIM, .threshold = 0.5f},
    };
    deja_result *out[3];
    ASSERT_EQ(deja_pool_lookup_many(p, lreqs, 3, out), DEJA_ERR_UNAVAILABLE);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(out[i]->count, 0);
        ASSERT_EQ(out[i]->error, DEJA_ERR_UNAVAILABLE);
    }
    deja_results_free(out, 3);
    deja_store_req sreqs[2] = {sreq, sreq};
    uint64_t ids[2] = {7, 7};
    int codes[2] = {0, 0};
    ASSERT_EQ(deja_pool_store_many(p, sreqs, 2, ids, codes), DEJA_ERR_UNAVAILABLE);
    ASSERT_EQ(codes[0], DEJA_ERR_UNAVAILABLE);
    ASSERT_EQ(codes[1], DEJA_ERR_UNAVAILABLE);
    ASSERT_U64_EQ(ids[0] + ids[1], 0);

    int fetched = 0;
    deja_result *r = NULL;
    ASSERT_OK(
        deja_get_or_fetch(p, "b-ns", "q", v, DIM, 0.9f, fetch_answer, &fetched, &r));
    ASSERT_EQ(fetched, 1);
    ASSERT_EQ(r->count, 1);
    ASSERT_EQ(r->flags, DEJA_RESULT_FETCHED);
    ASSERT_EQ(r->error, DEJA_ERR_UNAVAILABLE);
    ASSERT_STR_EQ(r->hits[0].response, "from the LLM");
    deja_result_free(r);

    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.connects, 1);
    ASSERT_EQ(st.fast_fails, 7); /* get-or-fetch stores nothing after a failed lookup */
    deja_pool_destroy(p);
    close(fd);
}

/* ---- silent servers
 * -------------------------------------------------------------------- */

typedef struct silent_peer {
    int listen_fd;
    int answer_hello; /* 0: accept and never say anything */
    atomic_int stop;
    atomic_int accepted;
} silent_peer;

/* Reads one whole frame; returns 0 or -1. */
static int read_frame(int fd, uint8_t *buf, size_t cap, proto_header *h) {
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

/* Serves connections one after the other: answers HELLO if asked to, then
 * reads and drops everything until the client hangs up. */
static void *silent_peer_main(void *arg) {
    silent_peer *sp = arg;
    while (!atomic_load(&sp->stop)) {
        struct pollfd pf = {.fd = sp->listen_fd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0) continue;
        int fd = accept(sp->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&sp->accepted, 1);
        uint8_t buf[8192];
        proto_header h;
        if (sp->answer_hello && read_frame(fd, buf, sizeof buf, &h) == 0 &&
            h.opcode == PROTO_OP_HELLO) {
            proto_buf out;
            proto_buf_init(&out);
            proto_hello_resp resp = {.version = 1,
                                     .max_dim = 4096,
                                     .max_frame = 1u << 20,
                                     .server_name = (const uint8_t *)"mute",
                                     .server_name_len = 4};
            proto_encode_hello_resp(&out, h.request_id, &resp);
            send(fd, out.data, out.len, MSG_NOSIGNAL);
            proto_buf_free(&out);
        }
        while (!atomic_load(&sp->stop)) {
            struct pollfd cf = {.fd = fd, .events = POLLIN};
            if (poll(&cf, 1, 20) <= 0) continue;
            if (recv(fd, buf, sizeof buf, 0) <= 0) break;
        }
        close(fd);
    }
    return NULL;
}

static void start_silent_peer(silent_peer *sp, int answer_hello, pthread_t *th, char *url,
                              size_t url_len) {
    sp->answer_hello = answer_hello;
    atomic_store(&sp->stop, 0);
    atomic_store(&sp->accepted, 0);
    int port = bound_port(&sp->listen_fd);
    ASSERT_OK(listen(sp->listen_fd, 8));
    ASSERT_OK(pthread_create(th, NULL, silent_peer_main, sp));
    snprintf(url, url_len, "deja://127.0.0.1:%d", port);
}

static void stop_silent_peer(silent_peer *sp, pthread_t th) {
    atomic_store(&sp->stop, 1);
    pthread_join(th, NULL);
    close(sp->listen_fd);
}

/* Runs one call and checks that it returned TIMEOUT at its timeout: not
 * before, and not much after. */
#define ASSERT_TIMES_OUT_AT(call, timeout_ms)                                            \
    do {                                                                                 \
        double t0_ = now_ms();                                                           \
        int rc_ = (call);                                                                \
        double took_ = now_ms() - t0_;                                                   \
        ASSERT_EQ(rc_, DEJA_ERR_TIMEOUT);                                                \
        if (took_ + 1 < (timeout_ms) || took_ > (timeout_ms) + slack_ms)                 \
            HARNESS_FAIL("%s returned after %.1f ms, timeout %d ms", #call, took_,       \
                         (timeout_ms));                                                  \
    } while (0)

static void test_silent_server_times_out_at_the_timeout(void) {
    float v[DIM];
    test_unit_vector(4, v, DIM);
    deja_result *r = NULL;
    silent_peer sp;
    pthread_t th;
    char url[64];

    /* Accepts and never says a word, not even to HELLO: the handshake is
     * part of the call, and the call's timeout bounds it. */
    start_silent_peer(&sp, 0, &th, url, sizeof url);
    deja_pool *p = make_pool(url, 80, 150, 2);
    ASSERT_TIMES_OUT_AT(deja_pool_lookup(p, "b-ns", v, DIM, 0.9f, 1, 0, &r), 80);
    ASSERT_EQ(r->count, 0);
    ASSERT_EQ(r->error, DEJA_ERR_TIMEOUT);
    deja_result_free(r);
    deja_pool_destroy(p);
    stop_silent_peer(&sp, th);
    ASSERT_GE(atomic_load(&sp.accepted), 1);

    /* Answers HELLO, then nothing: the lookup waits its lookup timeout, a
     * store its write timeout; two timeouts open the breaker. */
    start_silent_peer(&sp, 1, &th, url, sizeof url);
    p = make_pool(url, 80, 150, 2);
    ASSERT_TIMES_OUT_AT(deja_pool_lookup(p, "b-ns", v, DIM, 0.9f, 1, 0, &r), 80);
    ASSERT_EQ(r->error, DEJA_ERR_TIMEOUT);
    deja_result_free(r);
    deja_store_req sreq = {
        .ns = "b-ns", .vector = v, .dim = DIM, .response = "x", .response_len = 1};
    ASSERT_TIMES_OUT_AT(deja_pool_store(p, &sreq, NULL), 150);
    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.timeouts, 2);
    ASSERT_EQ(st.connects, 2); /* a timed-out connection is never reused */
    ASSERT_EQ(st.breaker, DEJA_BREAKER_OPEN);
    assert_fails_fast(p, v);
    deja_pool_destroy(p);
    stop_silent_peer(&sp, th);

    /* The single-connection API bounds its calls the same way. */
    start_silent_peer(&sp, 1, &th, url, sizeof url);
    deja_options copts = {.request_timeout_ms = 80};
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(url, &copts, &c));
    ASSERT_TIMES_OUT_AT(deja_lookup(c, "b-ns", v, DIM, 0.9f, 1, 0, &r), 80);
    ASSERT_TRUE(r == NULL);
    deja_close(c);
    stop_silent_peer(&sp, th);
}

/* While the half-open probe waits on a silent server, other calls keep
 * failing fast: only one call at a time tests the server. */
typedef struct probe_run {
    deja_pool *pool;
    const float *v;
    int rc;
} probe_run;

static void *probe_main(void *arg) {
    probe_run *pr = arg;
    deja_result *r = NULL;
    pr->rc = deja_pool_lookup(pr->pool, "b-ns", pr->v, DIM, 0.9f, 1, 0, &r);
    deja_result_free(r);
    return NULL;
}

static void test_half_open_lets_one_probe_through(void) {
    silent_peer sp;
    pthread_t th, probe_th;
    char url[64];
    start_silent_peer(&sp, 1, &th, url, sizeof url);
    deja_pool *p = make_pool(url, 300, 300, 1);
    float v[DIM];
    test_unit_vector(5, v, DIM);
    ASSERT_EQ(deja_pool_ping(p), DEJA_ERR_TIMEOUT);
    ASSERT_EQ(status_of(p).breaker, DEJA_BREAKER_OPEN);

    pass_cooldown();
    probe_run pr = {.pool = p, .v = v};
    ASSERT_OK(pthread_create(&probe_th, NULL, probe_main, &pr));
    /* Wait until the probe has its connection (the peer accepted it). */
    for (int i = 0; i < 2000 && atomic_load(&sp.accepted) < 2; i++)
        sleep_ms(1);
    ASSERT_EQ(atomic_load(&sp.accepted), 2);
    deja_pool_status st = status_of(p);
    ASSERT_EQ(st.breaker, DEJA_BREAKER_HALF_OPEN);
    deja_result *r = NULL;
    ASSERT_EQ(deja_pool_lookup(p, "b-ns", v, DIM, 0.9f, 1, 0, &r), DEJA_ERR_UNAVAILABLE);
    ASSERT_TRUE(strstr(deja_pool_last_error(), "probing") != NULL);
    deja_result_free(r);
    ASSERT_EQ(status_of(p).connects, st.connects);
    pthread_join(probe_th, NULL);
    ASSERT_EQ(pr.rc, DEJA_ERR_TIMEOUT);
    st = status_of(p);
    ASSERT_EQ(st.breaker, DEJA_BREAKER_OPEN);
    ASSERT_EQ(st.trips, 2);
    deja_pool_destroy(p);
    stop_silent_peer(&sp, th);
}

int main(void) {
    const char *slack = getenv("DEJA_TEST_SLACK_MS");
    if (slack && atof(slack) > 0) slack_ms = atof(slack);
    RUN(test_server_killed_mid_run);
    RUN(test_refused_connects_open_the_breaker);
    RUN(test_open_breaker_refuses_every_call);
    RUN(test_silent_server_times_out_at_the_timeout);
    RUN(test_half_open_lets_one_probe_through);
    return harness_result();
}
