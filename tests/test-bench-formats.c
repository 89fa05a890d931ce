/* test-bench-formats.c: deja-bench's data plumbing -- the .fvecs / .bvecs
 * / .ivecs readers and writers round-trip and refuse damaged files, the
 * ground-truth cache goes stale when its data changes, the synthetic
 * generator is deterministic, makes paraphrases at the cosine asked for
 * and draws later batches (churn) from the same model, and the stream
 * oracle agrees with brute force; the open loop's address parser takes
 * libdeja's address forms, its replies (prompts not NUL-terminated) are
 * judged right, and the server report carries the send lag beside every
 * open-loop result in JSON and CSV. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench-server-private.h"
#include "bench-wire.h"
#include "bench.h"
#include "harness.h"
#include "idx.h"

static char tmpdir[256];

static void path_in_tmp(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", tmpdir, name);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(fwrite(data, 1, n, f), n);
    ASSERT_EQ(fclose(f), 0);
}

/* Sets a file's modification time to `secs` seconds after the epoch. */
static void set_mtime(const char *path, long secs) {
    struct timeval tv[2] = {{secs, 0}, {secs, 0}};
    ASSERT_EQ(utimes(path, tv), 0);
}

static void test_fvecs_round_trip(void) {
    char path[512], err[600];
    path_in_tmp(path, sizeof path, "a.fvecs");
    float v[3 * 5];
    for (int i = 0; i < 15; i++)
        v[i] = (float)i * 0.25f - 1.0f;
    ASSERT_OK(bench_fvecs_write(path, v, 3, 5));
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_size, 3 * (4 + 5 * 4));

    float *back;
    uint32_t rows, dim;
    ASSERT_OK(bench_vecs_read(path, 0, &back, &rows, &dim, err, sizeof err));
    ASSERT_EQ(rows, 3);
    ASSERT_EQ(dim, 5);
    ASSERT_MEM_EQ(back, v, sizeof v);
    free(back);

    /* max_rows takes the first rows only. */
    ASSERT_OK(bench_vecs_read(path, 2, &back, &rows, &dim, err, sizeof err));
    ASSERT_EQ(rows, 2);
    ASSERT_MEM_EQ(back, v, 2 * 5 * sizeof(float));
    free(back);
}

static void test_ivecs_round_trip(void) {
    char path[512], err[600];
    path_in_tmp(path, sizeof path, "a.ivecs");
    int32_t v[4 * 3] = {0, 1, 2, 7, -1, 9, 100000, 3, 3, 5, 4, 2};
    ASSERT_OK(bench_ivecs_write(path, v, 4, 3));
    int32_t *back;
    uint32_t rows, cols;
    ASSERT_OK(bench_ivecs_read(path, 0, &back, &rows, &cols, err, sizeof err));
    ASSERT_EQ(rows, 4);
    ASSERT_EQ(cols, 3);
    ASSERT_MEM_EQ(back, v, sizeof v);
    free(back);
}

static void test_bvecs_read_converts_bytes(void) {
    char path[512], err[600];
    path_in_tmp(path, sizeof path, "a.bvecs");
    /* Two records of dimension 3: d, then 3 bytes. */
    unsigned char raw[2 * 7] = {3, 0, 0, 0, 0, 128, 255, 3, 0, 0, 0, 1, 2, 3};
    write_bytes(path, raw, sizeof raw);
    float *v;
    uint32_t rows, dim;
    ASSERT_OK(bench_vecs_read(path, 0, &v, &rows, &dim, err, sizeof err));
    ASSERT_EQ(rows, 2);
    ASSERT_EQ(dim, 3);
    ASSERT_NEAR(v[1], 128, 0);
    ASSERT_NEAR(v[2], 255, 0);
    ASSERT_NEAR(v[5], 3, 0);
    free(v);
}

static void expect_rejected(const char *name, const void *data, size_t n) {
    char path[512], err[600] = "";
    path_in_tmp(path, sizeof path, name);
    write_bytes(path, data, n);
    float *v = (float *)1;
    uint32_t rows = 0, dim = 0;
    ASSERT_EQ(bench_vecs_read(path, 0, &v, &rows, &dim, err, sizeof err), -1);
    ASSERT_TRUE(v == NULL);
    /* The reason names the file. */
    ASSERT_TRUE(strstr(err, path) != NULL);
}

static void test_malformed_files_are_rejected(void) {
    float good[2 * 3];
    int32_t d = 2;
    unsigned char buf[64];
    memset(good, 0, sizeof good);

    /* Truncated: one and a half records. */
    memcpy(buf, &d, 4);
    memcpy(buf + 4, good, 8);
    memcpy(buf + 12, &d, 4);
    expect_rejected("trunc.fvecs", buf, 12 + 4 + 4);

    /* A record whose dimension differs from the first one's. */
    int32_t d3 = 3;
    unsigned char mixed[12 + 12];
    memcpy(mixed, &d, 4);
    memset(mixed + 4, 0, 8);
    memcpy(mixed + 12, &d3, 4);
    memset(mixed + 16, 0, 8);
    /* 24 bytes = two 12-byte records by size, but the second says d=3. */
    expect_rejected("mixed.fvecs", mixed, sizeof mixed);

    /* A nonsense dimension (what another format looks like). */
    int32_t huge = 1 << 30;
    memcpy(buf, &huge, 4);
    expect_rejected("huge.fvecs", buf, 8);
    int32_t neg = -5;
    memcpy(buf, &neg, 4);
    expect_rejected("neg.fvecs", buf, 8);

    /* Empty. */
    expect_rejected("empty.fvecs", buf, 0);

    /* Non-finite components. */
    float nan_row[2] = {NAN, 1.0f};
    memcpy(buf, &d, 4);
    memcpy(buf + 4, nan_row, 8);
    expect_rejected("nan.fvecs", buf, 12);

    /* Unknown extension. */
    memcpy(buf, &d, 4);
    memset(buf + 4, 0, 8);
    expect_rejected("vectors.bin", buf, 12);

    /* A missing file. */
    char path[512], err[600];
    float *v;
    uint32_t rows, dim;
    path_in_tmp(path, sizeof path, "absent.fvecs");
    ASSERT_EQ(bench_vecs_read(path, 0, &v, &rows, &dim, err, sizeof err), -1);
}

static void test_normalize_rows(void) {
    float v[2 * 2] = {3, 4, 0, 0};
    ASSERT_EQ(bench_normalize_rows(v, 1, 2), -1);
    ASSERT_NEAR(v[0], 0.6, 1e-6);
    ASSERT_NEAR(v[1], 0.8, 1e-6);
    ASSERT_EQ(bench_normalize_rows(v, 2, 2), 1);
}

static void test_gt_cache_name_and_staleness(void) {
    char gt[1024];
    bench_gt_cache_path("/d/q.fvecs", "/e/base.fvecs", 0, 10, gt, sizeof gt);
    ASSERT_STR_EQ(gt, "/d/q.fvecs.gt-base.fvecs-k10.ivecs");
    bench_gt_cache_path("q.fvecs", "b.bvecs", 5000, 1, gt, sizeof gt);
    ASSERT_STR_EQ(gt, "q.fvecs.gt-b.bvecs-n5000-k1.ivecs");

    char base[512], query[512];
    path_in_tmp(base, sizeof base, "cb.fvecs");
    path_in_tmp(query, sizeof query, "cq.fvecs");
    float v[4] = {1, 0, 0, 1};
    ASSERT_OK(bench_fvecs_write(base, v, 2, 2));
    ASSERT_OK(bench_fvecs_write(query, v, 2, 2));
    bench_gt_cache_path(query, base, 0, 1, gt, sizeof gt);
    ASSERT_EQ(bench_gt_cache_valid(gt, base, query, 2, 1), 0); /* absent */
    int32_t ids[2] = {0, 1};
    ASSERT_OK(bench_ivecs_write(gt, ids, 2, 1));
    set_mtime(base, 1000000);
    set_mtime(query, 1000000);
    set_mtime(gt, 2000000);
    ASSERT_EQ(bench_gt_cache_valid(gt, base, query, 2, 1), 1);
    /* Another query count or k: another size. */
    ASSERT_EQ(bench_gt_cache_valid(gt, base, query, 3, 1), 0);
    ASSERT_EQ(bench_gt_cache_valid(gt, base, query, 2, 2), 0);
    /* The base edited after the cache was written. */
    set_mtime(base, 3000000);
    ASSERT_EQ(bench_gt_cache_valid(gt, base, query, 2, 1), 0);
}

static void make_set(synth_set *s, uint32_t n, uint32_t nq, uint32_t dim, uint64_t seed) {
    synth_config c;
    synth_config_default(&c, n, nq, dim, seed);
    ASSERT_OK(synth_generate(&c, s, NULL, NULL));
}

static void test_synth_is_deterministic(void) {
    synth_set a, b, c;
    make_set(&a, 300, 100, 64, 7);
    make_set(&b, 300, 100, 64, 7);
    make_set(&c, 300, 100, 64, 8);
    ASSERT_MEM_EQ(a.base, b.base, (size_t)300 * 64 * sizeof(float));
    ASSERT_MEM_EQ(a.queries, b.queries, (size_t)100 * 64 * sizeof(float));
    ASSERT_MEM_EQ(a.kind, b.kind, 100);
    ASSERT_MEM_EQ(a.source, b.source, 100 * sizeof(uint32_t));
    ASSERT_TRUE(memcmp(a.base, c.base, (size_t)300 * 64 * sizeof(float)) != 0);
    /* More queries leave the entries as they were. */
    synth_set d;
    make_set(&d, 300, 150, 64, 7);
    ASSERT_MEM_EQ(a.base, d.base, (size_t)300 * 64 * sizeof(float));
    synth_free(&a);
    synth_free(&b);
    synth_free(&c);
    synth_free(&d);
}

static void test_synth_kinds_and_paraphrase_range(void) {
    synth_set s;
    synth_config c;
    synth_config_default(&c, 2000, 1000, 256, 3);
    ASSERT_OK(synth_generate(&c, &s, NULL, NULL));
    uint32_t count[SYNTH_KINDS] = {0};
    for (uint32_t q = 0; q < s.nq; q++) {
        const float *v = s.queries + (size_t)q * s.dim;
        ASSERT_NEAR(idx_dot(v, v, s.dim), 1.0, 1e-4);
        count[s.kind[q]]++;
        if (s.kind[q] == SYNTH_NOVEL) {
            ASSERT_U64_EQ(s.source[q], UINT32_MAX);
            continue;
        }
        ASSERT_LT(s.source[q], s.n);
        float cosine = idx_dot(v, s.base + (size_t)s.source[q] * s.dim, s.dim);
        if (s.kind[q] == SYNTH_REPEAT)
            ASSERT_NEAR(cosine, 1.0, 1e-5);
        else
            ASSERT_TRUE(cosine >= c.paraphrase_min - 1e-4 &&
                        cosine <= c.paraphrase_max + 1e-4);
    }
    /* The mix is exact, not sampled. */
    ASSERT_EQ(count[SYNTH_PARAPHRASE], 600);
    ASSERT_EQ(count[SYNTH_REPEAT], 100);
    ASSERT_EQ(count[SYNTH_NOVEL], 300);
    synth_free(&s);
}

static void test_synth_zipf_skews_popularity(void) {
    /* With s = 2 the most popular topic draws more than half of the
     * queries; with s = 0 every topic about the same. */
    synth_config c;
    synth_set s;
    uint32_t per_topic[40];
    for (int pass = 0; pass < 2; pass++) {
        synth_config_default(&c, 2000, 2000, 32, 5);
        c.zipf = pass == 0 ? 2.0 : 0.0;
        c.share[SYNTH_PARAPHRASE] = 0;
        c.share[SYNTH_REPEAT] = 1;
        c.share[SYNTH_NOVEL] = 0;
        ASSERT_OK(synth_generate(&c, &s, NULL, NULL));
        ASSERT_EQ(s.topics, 40);
        memset(per_topic, 0, sizeof per_topic);
        for (uint32_t q = 0; q < s.nq; q++)
            per_topic[s.topic[s.source[q]]]++;
        uint32_t most = 0;
        for (int t = 0; t < 40; t++)
            if (per_topic[t] > most) most = per_topic[t];
        if (pass == 0)
            ASSERT_GT(most, 1000);
        else
            ASSERT_LT(most, 150);
        synth_free(&s);
    }
}

/* Mean cosine of rows of x to rows of y of the same topic (same = 1) or
 * of other topics (same = 0), over the first 50 rows of x. */
static double topic_cosine(const synth_set *x, const synth_set *y, int same) {
    double sum = 0;
    uint64_t count = 0;
    for (uint32_t i = 0; i < 50; i++)
        for (uint32_t j = 0; j < y->n; j++) {
            if ((x->topic[i] == y->topic[j]) != same || (x == y && i == j)) continue;
            sum += idx_dot(x->base + (size_t)i * x->dim, y->base + (size_t)j * y->dim,
                           x->dim);
            count++;
        }
    return count ? sum / (double)count : 0;
}

static void test_synth_batches_share_the_model(void) {
    synth_config c;
    synth_config_default(&c, 2000, 200, 128, 9);
    c.topics = 40;
    synth_set a, b, qa, qb;
    ASSERT_OK(synth_generate(&c, &a, NULL, NULL));
    /* Batch 1: other entries, on the same topics as batch 0's. */
    synth_config cb = c;
    cb.batch = 1;
    cb.n = 500;
    cb.nq = 0;
    ASSERT_OK(synth_generate(&cb, &b, NULL, NULL));
    ASSERT_EQ(b.topics, 40);
    ASSERT_TRUE(memcmp(a.base, b.base, (size_t)500 * 128 * sizeof(float)) != 0);
    double within = topic_cosine(&a, &a, 1), across = topic_cosine(&b, &a, 1);
    ASSERT_NEAR(across, within, 0.05);
    ASSERT_TRUE(across > topic_cosine(&b, &a, 0) + 0.2);

    /* Batch 0's queries over the set's own entries are the set's queries. */
    ASSERT_OK(synth_queries(&c, a.base, a.topic, a.n, &qa));
    ASSERT_EQ(qa.nq, 200);
    ASSERT_TRUE(qa.base == NULL);
    ASSERT_MEM_EQ(qa.queries, a.queries, (size_t)200 * 128 * sizeof(float));
    ASSERT_MEM_EQ(qa.kind, a.kind, 200);
    ASSERT_MEM_EQ(qa.source, a.source, 200 * sizeof(uint32_t));

    /* Queries over other entries ask about those. */
    cb.nq = 300;
    ASSERT_OK(synth_queries(&cb, b.base, b.topic, b.n, &qb));
    for (uint32_t q = 0; q < qb.nq; q++) {
        if (qb.kind[q] == SYNTH_NOVEL) continue;
        ASSERT_LT(qb.source[q], b.n);
        float cosine = idx_dot(qb.queries + (size_t)q * 128,
                               b.base + (size_t)qb.source[q] * 128, 128);
        ASSERT_TRUE(cosine >= c.paraphrase_min - 1e-4);
    }
    /* A topic out of the model's range is refused. */
    b.topic[0] = 40;
    synth_set bad;
    ASSERT_EQ(synth_queries(&cb, b.base, b.topic, b.n, &bad), -1);
    synth_free(&a);
    synth_free(&b);
    synth_free(&qa);
    synth_free(&qb);
}

/* The stream oracle against a plain quadratic loop. */
static void test_stream_oracle_matches_brute_force(void) {
    synth_set s;
    make_set(&s, 200, 1500, 32, 11);
    uint32_t nq = s.nq, dim = s.dim;
    bench_stream_event *ev = malloc(nq * sizeof *ev);
    float *best = malloc(nq * sizeof *best);
    uint32_t *witness = malloc(nq * sizeof *witness);
    uint8_t *stored = calloc(nq, 1);
    ASSERT_TRUE(ev && best && witness && stored);
    for (uint32_t i = 0; i < nq; i++)
        ev[i] = (bench_stream_event){.vec = i, .is_query = 1};
    const float thr = 0.85f;
    ASSERT_OK(bench_stream_oracle(s.queries, dim, ev, nq, thr, 1, best, witness));
    uint32_t hits = 0;
    for (uint32_t i = 0; i < nq; i++) {
        float b = -INFINITY;
        for (uint32_t j = 0; j < i; j++)
            if (stored[j]) {
                float d = idx_dot(s.queries + (size_t)i * dim,
                                  s.queries + (size_t)j * dim, dim);
                if (d > b) b = d;
            }
        if (b == -INFINITY)
            ASSERT_TRUE(best[i] == -INFINITY);
        else
            ASSERT_NEAR(best[i], b, 1e-4);
        if (best[i] >= thr)
            hits++;
        else
            stored[i] = 1;
    }
    /* Repeats of earlier questions make some of the stream hit. */
    ASSERT_GT(hits, 0);
    free(ev);
    free(best);
    free(witness);
    free(stored);
    synth_free(&s);
}

static void expect_addr(const char *addr, int is_unix, const char *host_or_path,
                        const char *port) {
    bench_wire_addr a;
    ASSERT_OK(bench_wire_parse_addr(addr, &a));
    ASSERT_EQ(a.is_unix, is_unix);
    if (is_unix) {
        ASSERT_STR_EQ(a.path, host_or_path);
    } else {
        ASSERT_STR_EQ(a.host, host_or_path);
        ASSERT_STR_EQ(a.port, port);
    }
}

/* The open loop opens its own sockets, so it must read every address form
 * that libdeja reads (deja.h, "Addresses") the same way. */
static void test_wire_parses_libdeja_addresses(void) {
    expect_addr("127.0.0.1:7700", 0, "127.0.0.1", "7700");
    expect_addr("deja://db.example:80", 0, "db.example", "80");
    expect_addr("deja://db.example", 0, "db.example", "7447");
    expect_addr("localhost", 0, "localhost", "7447");
    expect_addr("[::1]:9000", 0, "::1", "9000");
    expect_addr("[::1]", 0, "::1", "7447");
    expect_addr("fe80::1", 0, "fe80::1", "7447");
    expect_addr("unix:///run/deja.sock", 1, "/run/deja.sock", NULL);
    expect_addr("unix:rel.sock", 1, "rel.sock", NULL);
    expect_addr("/tmp/d.sock", 1, "/tmp/d.sock", NULL);
    bench_wire_addr a;
    const char *bad[] = {"",     "host:",  "host:0",     "host:65536", "host:7a",
                         "[::1", "[::1]x", "unix://rel", "unix:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_EQ(bench_wire_parse_addr(bad[i], &a), -1);
}

/* The open loop judges hits whose prompts point into a reply frame, not
 * NUL-terminated: the row number ends at prompt_len, whatever follows. */
static void test_judge_reads_prompt_by_length(void) {
    synth_set s;
    make_set(&s, 50, 4, 32, 3);
    float sims[4];
    uint32_t ids[4];
    for (uint32_t q = 0; q < 4; q++) {
        ids[q] = 7;
        sims[q] =
            idx_dot(s.queries + (size_t)q * s.dim, s.base + 7 * (size_t)s.dim, s.dim);
    }
    bench_oracle oracle = {.nq = 4, .k = 1, .ids = ids, .sims = sims};
    bench_opts o = {.threshold = -1, .k = 1};
    bench_ctx x = {.o = &o, .s = &s, .oracle = &oracle, .by_prompt = 1};
    bench_result r;
    memset(&r, 0, sizeof r);
    const char frame[] = "deja-bench row 7"
                         "31 and the response bytes";
    deja_hit h = {.id = 99,
                  .similarity = sims[1],
                  .prompt = frame,
                  .prompt_len = sizeof "deja-bench row 7" - 1};
    bench_judge(&x, &r, 1, &h, 1);
    ASSERT_EQ(r.judged, 1);
    ASSERT_EQ(r.hits, 1);
    ASSERT_EQ(r.unknown_ids, 0);
    ASSERT_EQ(r.sim_mismatches, 0);
    ASSERT_EQ(r.not_best, 0);
    /* A row past the workload, or no digits, is an unknown entry. */
    h.prompt = "deja-bench row 50";
    h.prompt_len = strlen(h.prompt);
    bench_judge(&x, &r, 1, &h, 1);
    h.prompt_len = sizeof "deja-bench row " - 1;
    bench_judge(&x, &r, 1, &h, 1);
    ASSERT_EQ(r.unknown_ids, 2);
    synth_free(&s);
}

/* Runs the server report into a file and returns its text (malloc'd). */
static char *server_report_text(const bench_opts *o, const bench_result *r) {
    char path[512];
    path_in_tmp(path, sizeof path, "report.out");
    bench_env env;
    memset(&env, 0, sizeof env);
    env.version = env.build_type = env.sanitize = "test";
    bench_oracle oracle = {.nq = 1, .k = 1};
    synth_set s;
    memset(&s, 0, sizeof s);
    fflush(stdout);
    int saved = dup(1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(saved >= 0 && fd >= 0);
    ASSERT_TRUE(dup2(fd, 1) == 1);
    close(fd);
    bench_report_server(o, &env, &oracle, r, &s);
    fflush(stdout);
    ASSERT_TRUE(dup2(saved, 1) == 1);
    close(saved);
    FILE *f = fopen(path, "rb");
    ASSERT_TRUE(f != NULL);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Every open-loop result carries its send lag (p50, p99, max), how the
 * sender ran and its wakeup lateness, in all three formats; the keys of
 * before stay. Closed-loop results have none of them. */
static void test_server_report_has_send_lag(void) {
    bench_result *r = calloc(1, sizeof *r);
    ASSERT_TRUE(r != NULL);
    bench_hist_init(&r->store_hist);
    bench_hist_init(&r->lookup_hist);
    bench_hist_init(&r->lag_hist);
    bench_hist_init(&r->wake_hist);
    bench_hist_record(&r->lookup_hist, 500000);
    bench_hist_record(&r->lag_hist, 12000);
    bench_hist_record(&r->lag_hist, 90000);
    bench_hist_record(&r->wake_hist, 3000);
    r->open_loop = 1;
    r->depth = 16;
    snprintf(r->sender, sizeof r->sender, "rt");
    r->spin_us = 50;
    r->sender_cpu_s = 1.5;
    r->lookup_s = 10;
    bench_opts o = {.mode = BENCH_SERVER,
                    .mode_name = "server",
                    .addr = "x",
                    .ns = "b",
                    .rate = 1000,
                    .connections = 16,
                    .k = 1};

    o.json = 1;
    char *t = server_report_text(&o, r);
    ASSERT_EQ(count_lines(t), 1);
    ASSERT_TRUE(strstr(t, "\"send_lag_p50_us\":12.0") != NULL);
    /* p99 is a histogram bucket's midpoint; max is exact. */
    ASSERT_TRUE(strstr(t, "\"send_lag_p99_us\":89.9") != NULL);
    ASSERT_TRUE(strstr(t, "\"send_lag_max_us\":90.0") != NULL);
    ASSERT_TRUE(strstr(t, "\"sender\":\"rt\"") != NULL);
    ASSERT_TRUE(strstr(t, "\"sender_spin_us\":50.0") != NULL);
    ASSERT_TRUE(strstr(t, "\"sender_cpu_s\":1.500") != NULL);
    ASSERT_TRUE(strstr(t, "\"wakeup_late_p99_us\":3.0") != NULL);
    free(t);

    o.json = 0;
    o.csv = 1;
    t = server_report_text(&o, r);
    ASSERT_EQ(count_lines(t), 2);
    ASSERT_TRUE(strstr(t, ",send_lag_p50_us,send_lag_p99_us,send_lag_max_us,sender,") !=
                NULL);
    ASSERT_TRUE(strstr(t, ",12.0,89.9,90.0,rt,50.0,1.500,") != NULL);
    free(t);

    o.csv = 0;
    t = server_report_text(&o, r);
    ASSERT_TRUE(strstr(t, "send lag us  p50 12.0  p99 89.9  max 90.0") != NULL);
    ASSERT_TRUE(strstr(t, "sender rt") != NULL);
    ASSERT_TRUE(strstr(t, "rt: timer wakeups late p50 3.0") != NULL);
    ASSERT_TRUE(strstr(t, "15% of a core") != NULL);
    free(t);

    r->open_loop = 0;
    o.rate = 0;
    o.json = 1;
    t = server_report_text(&o, r);
    ASSERT_TRUE(strstr(t, "send_lag") == NULL);
    ASSERT_TRUE(strstr(t, "\"p99_us\":") != NULL);
    free(t);
    free(r);
}

int main(void) {
    idx_simd_init();
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test-bench-XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_fvecs_round_trip);
    RUN(test_ivecs_round_trip);
    RUN(test_bvecs_read_converts_bytes);
    RUN(test_malformed_files_are_rejected);
    RUN(test_normalize_rows);
    RUN(test_gt_cache_name_and_staleness);
    RUN(test_synth_is_deterministic);
    RUN(test_synth_kinds_and_paraphrase_range);
    RUN(test_synth_zipf_skews_popularity);
    RUN(test_synth_batches_share_the_model);
    RUN(test_stream_oracle_matches_brute_force);
    RUN(test_wire_parses_libdeja_addresses);
    RUN(test_judge_reads_prompt_by_length);
    RUN(test_server_report_has_send_lag);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_result();
}
