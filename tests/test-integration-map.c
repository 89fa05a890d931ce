/* test-integration-map.c: what dejad serves from its LMDB map instead of
 * from heap copies (issue 14), against a real dejad:
 *   - an int8 namespace keeps no f32 vectors (index_rerank_bytes 0), and
 *     its hits report the exact f32 cosine, read back from the map, for
 *     vectors small enough to sit unaligned in a leaf page and large
 *     enough for overflow pages;
 *   - int8 lookups racing deletes return only live entries: never an entry
 *     whose delete was acknowledged before the lookup was sent;
 *   - responses read from the map while the same prompt is overwritten,
 *     entries are deleted and others evicted are always whole: prompt and
 *     response of one STORE, never a mix or a torn record;
 *   - 4 KiB responses do not grow dejad's anonymous memory (RssAnon) by
 *     more than a tenth of their bytes.
 * Every test ends with a clean exit of dejad, so a sanitizer report in the
 * server (ASan, TSan builds) fails it. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deja.h"
#include "harness.h"
#include "support/spawn.h"

/* Under a sanitizer RssAnon says nothing about the heap (quarantine,
 * shadow memory), and TSan makes thousands of STOREs slow. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RUNNING_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define RUNNING_UNDER_SANITIZER 1
#endif
#endif
#ifndef RUNNING_UNDER_SANITIZER
#define RUNNING_UNDER_SANITIZER 0
#endif

static test_server srv;

static deja_client *connect_or_fail(void) {
    /* Generous: on a shared machine an fsync can take seconds. */
    deja_options opts = {.request_timeout_ms = 30000};
    deja_client *cl = NULL;
    ASSERT_OK(deja_connect(srv.addr, &opts, &cl));
    return cl;
}

static uint64_t stat_of(deja_client *cl, const char *ns, const char *key) {
    deja_stats *st = NULL;
    ASSERT_OK(deja_stats_get(cl, ns, &st));
    uint64_t v = 0;
    ASSERT_OK(deja_stats_find(st, key, &v));
    deja_stats_free(st);
    return v;
}

static void wait_indexed(deja_client *cl, const char *ns) {
    for (int i = 0; i < 3000 && stat_of(cl, ns, "unindexed") > 0; i++)
        usleep(10000);
    ASSERT_EQ(stat_of(cl, ns, "unindexed"), 0);
}

static void create_ns(deja_client *cl, const char *ns, uint32_t dim, int int8,
                      uint64_t max_entries) {
    deja_ns_config cfg = {.dim = dim,
                          .index_kind = DEJA_INDEX_HNSW,
                          .quant = (uint8_t)int8,
                          .min_threshold = -1.0f,
                          .max_entries = max_entries};
    ASSERT_OK(deja_ns_create(cl, ns, &cfg));
}

static uint64_t store(deja_client *cl, const char *ns, const float *v, uint32_t dim,
                      const char *prompt, const void *resp, size_t resp_len) {
    deja_store_req r = {.ns = ns,
                        .vector = v,
                        .dim = dim,
                        .response = resp,
                        .response_len = resp_len,
                        .prompt = prompt,
                        .prompt_len = prompt ? strlen(prompt) : 0};
    uint64_t id = 0;
    ASSERT_OK(deja_store(cl, &r, &id));
    return id;
}

static double cosine(const float *a, const float *b, uint32_t dim) {
    double ab = 0, aa = 0, bb = 0;
    for (uint32_t i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* v = cos * base + sin * (a seeded direction), so cosine(v, base) ~ cos. */
static void near_vector(const float *base, uint64_t seed, float cos, float *v,
                        uint32_t dim) {
    test_unit_vector(seed, v, (int)dim);
    float s = sqrtf(1.0f - cos * cos);
    for (uint32_t i = 0; i < dim; i++)
        v[i] = cos * base[i] + s * v[i];
}

/* ---- int8 re-rank from the map ------------------------------------------------*/

#define EXACT_N 200

static void check_exact_similarities(deja_client *cl, const char *ns, uint32_t dim) {
    float *base = malloc((size_t)EXACT_N * dim * sizeof(float));
    float q[4096];
    ASSERT_TRUE(base != NULL);
    create_ns(cl, ns, dim, 1, 0);
    for (int i = 0; i < EXACT_N; i++) {
        /* Pairs of near-twins, so a lookup has several hits to rank. */
        float *v = base + (size_t)i * dim;
        if (i % 2)
            near_vector(base + (size_t)(i - 1) * dim, 5000u + (uint64_t)i, 0.95f, v, dim);
        else
            test_unit_vector(1000u + (uint64_t)i, v, (int)dim);
        char prompt[32];
        snprintf(prompt, sizeof prompt, "row %d", i);
        ASSERT_EQ(store(cl, ns, v, dim, prompt, prompt, strlen(prompt)) > 0, 1);
    }
    wait_indexed(cl, ns);
    /* The graph holds codes only: no f32 copy anywhere on the heap. */
    ASSERT_EQ(stat_of(cl, ns, "index_rerank_bytes"), 0);
    ASSERT_GT(stat_of(cl, ns, "index_vector_bytes"), 0);

    int hits = 0;
    for (int i = 0; i < EXACT_N; i += 7) {
        near_vector(base + (size_t)i * dim, 9000u + (uint64_t)i, 0.97f, q, dim);
        deja_result *res = NULL;
        ASSERT_OK(deja_lookup(cl, ns, q, dim, 0.8f, 4, DEJA_LOOKUP_WANT_PROMPT, &res));
        /* Every entry at least 0.8 similar, by brute force in double. */
        int expect = 0;
        for (int j = 0; j < EXACT_N; j++)
            expect += cosine(q, base + (size_t)j * dim, dim) >= 0.8;
        ASSERT_EQ(res->count, (uint32_t)(expect < 4 ? expect : 4));
        for (uint32_t h = 0; h < res->count; h++) {
            int row = -1;
            ASSERT_EQ(sscanf(res->hits[h].prompt, "row %d", &row), 1);
            ASSERT_TRUE(row >= 0 && row < EXACT_N);
            double want = cosine(q, base + (size_t)row * dim, dim);
            ASSERT_NEAR(res->hits[h].similarity, want, 1e-5);
            /* The response is the prompt it was stored with, from the map. */
            ASSERT_STR_EQ(res->hits[h].response, res->hits[h].prompt);
            if (h > 0) ASSERT_LE(res->hits[h].similarity, res->hits[h - 1].similarity);
            hits++;
        }
        deja_result_free(res);
    }
    ASSERT_GT(hits, EXACT_N / 7);
    free(base);
}

static void test_int8_hits_report_the_exact_cosine_read_from_the_map(void) {
    ASSERT_OK(test_server_start(&srv, NULL));
    deja_client *cl = connect_or_fail();
    /* 100 floats: 416-byte records on leaf pages, 2-byte aligned at best. */
    check_exact_similarities(cl, "small", 100);
    /* 1536 floats: overflow pages. */
    check_exact_similarities(cl, "wide", 1536);
    deja_close(cl);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

/* ---- int8 lookups racing deletes ----------------------------------------------*/

#define RACE_N 600
#define RACE_DIM 64

typedef struct race {
    const float *base;
    const uint64_t *ids;
    atomic_int deleted; /* ids[0..deleted) are acknowledged deletes */
    atomic_int done;
    atomic_long lookups, violations;
} race;

static void *race_lookups(void *arg) {
    race *r = arg;
    deja_client *cl = connect_or_fail();
    float q[RACE_DIM];
    for (uint64_t n = 0; !atomic_load(&r->done); n++) {
        int gone = atomic_load(&r->deleted);
        int row = (int)(n * 7919u % RACE_N);
        near_vector(r->base + (size_t)row * RACE_DIM, 77u + n, 0.9f, q, RACE_DIM);
        deja_result *res = NULL;
        /* A low threshold and k 16: many candidates, each re-ranked from
         * the map while rows disappear under it. */
        int rc = deja_lookup(cl, "race", q, RACE_DIM, 0.1f, 16, 0, &res);
        if (rc != 0) {
            atomic_fetch_add(&r->violations, 1);
            break;
        }
        for (uint32_t h = 0; h < res->count; h++)
            for (int j = 0; j < gone; j++)
                if (res->hits[h].id == r->ids[j]) atomic_fetch_add(&r->violations, 1);
        deja_result_free(res);
        atomic_fetch_add(&r->lookups, 1);
    }
    deja_close(cl);
    return NULL;
}

static void test_int8_lookups_racing_deletes_return_only_live_entries(void) {
    ASSERT_OK(test_server_start(&srv, NULL));
    deja_client *cl = connect_or_fail();
    create_ns(cl, "race", RACE_DIM, 1, 0);
    static float base[RACE_N * RACE_DIM];
    static uint64_t ids[RACE_N];
    for (int i = 0; i < RACE_N; i++) {
        test_unit_vector(300u + (uint64_t)(i / 4), base + (size_t)i * RACE_DIM, RACE_DIM);
        if (i % 4)
            near_vector(base + (size_t)(i - i % 4) * RACE_DIM, 40000u + (uint64_t)i,
                        0.93f, base + (size_t)i * RACE_DIM, RACE_DIM);
        ids[i] = store(cl, "race", base + (size_t)i * RACE_DIM, RACE_DIM, NULL, "x", 1);
    }
    wait_indexed(cl, "race");
    race r = {.base = base, .ids = ids};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, race_lookups, &r), 0);
    for (int i = 0; i < RACE_N * 3 / 4; i++) {
        ASSERT_OK(deja_delete(cl, "race", ids[i]));
        atomic_store(&r.deleted, i + 1);
    }
    atomic_store(&r.done, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    fprintf(stderr, "%ld lookups raced %d deletes\n", atomic_load(&r.lookups),
            RACE_N * 3 / 4);
    ASSERT_EQ(atomic_load(&r.violations), 0);
    ASSERT_GT(atomic_load(&r.lookups), 10);
    ASSERT_OK(deja_ping(cl));
    deja_close(cl);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

/* ---- responses from the map under overwrites, deletes and eviction ----------*/

#define CHURN_DIM 32
#define CHURN_RESP 4096
#define PROMPTS 8

/* A response that says which STORE wrote it, all through: "p<prompt>
 * g<generation> " then that header's checksum byte repeated. */
static size_t churn_response(int prompt, unsigned gen, char *out) {
    int n = snprintf(out, CHURN_RESP, "p%d g%u ", prompt, gen);
    unsigned char fill = (unsigned char)('a' + (prompt * 31u + gen) % 26u);
    memset(out + n, fill, (size_t)(CHURN_RESP - n));
    return CHURN_RESP;
}

/* Whether the hit is whole: a filler, or a response that belongs to its
 * prompt "churn <p>" and is the one some STORE wrote, byte for byte. */
static int churn_whole(const deja_hit *h) {
    int p = -1, pp = -1;
    unsigned gen = 0;
    if (!h->prompt) return h->response_len == 6 && memcmp(h->response, "filler", 6) == 0;
    if (sscanf(h->prompt, "churn %d", &p) != 1) return 0;
    if (h->response_len != CHURN_RESP ||
        sscanf(h->response, "p%d g%u ", &pp, &gen) != 2 || pp != p)
        return 0;
    char want[CHURN_RESP];
    churn_response(p, gen, want);
    return memcmp(want, h->response, CHURN_RESP) == 0;
}

typedef struct churn {
    float vecs[PROMPTS][CHURN_DIM];
    atomic_int done;
    atomic_long reads, hits, torn;
} churn;

static void *churn_reader(void *arg) {
    churn *c = arg;
    deja_client *cl = connect_or_fail();
    for (unsigned n = 0; !atomic_load(&c->done); n++) {
        deja_result *res = NULL;
        if (deja_lookup(cl, "churn", c->vecs[n % PROMPTS], CHURN_DIM, 0.5f, 8,
                        DEJA_LOOKUP_WANT_PROMPT, &res) != 0) {
            atomic_fetch_add(&c->torn, 1);
            break;
        }
        for (uint32_t h = 0; h < res->count; h++) {
            atomic_fetch_add(&c->hits, 1);
            if (!churn_whole(&res->hits[h]) && atomic_fetch_add(&c->torn, 1) < 3)
                fprintf(stderr, "not whole: prompt %.20s response %.20s (%zu bytes)\n",
                        res->hits[h].prompt ? res->hits[h].prompt : "(none)",
                        res->hits[h].response, res->hits[h].response_len);
        }
        deja_result_free(res);
        atomic_fetch_add(&c->reads, 1);
    }
    deja_close(cl);
    return NULL;
}

static void
test_responses_from_the_map_stay_whole_under_overwrites_deletes_and_eviction(void) {
    ASSERT_OK(test_server_start(&srv, NULL));
    deja_client *cl = connect_or_fail();
    /* A cap of 40 entries: the filler STOREs below evict all the time. */
    create_ns(cl, "churn", CHURN_DIM, 0, 40);
    static churn c;
    memset(&c, 0, sizeof c);
    for (int p = 0; p < PROMPTS; p++)
        test_unit_vector(900u + (uint64_t)p, c.vecs[p], CHURN_DIM);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, churn_reader, &c), 0);
    static char resp[CHURN_RESP];
    float filler[CHURN_DIM];
    for (unsigned gen = 1; gen <= 150; gen++) {
        for (int p = 0; p < PROMPTS; p++) {
            /* The same prompt again: the exact tier replaces the entry (same
             * id, new record) while readers may be reading the old one. */
            char prompt[32];
            snprintf(prompt, sizeof prompt, "churn %d", p);
            size_t len = churn_response(p, gen, resp);
            uint64_t id = store(cl, "churn", c.vecs[p], CHURN_DIM, prompt, resp, len);
            if (gen % 5 == 0 && p % 3 == 0) {
                int rc = deja_delete(cl, "churn", id);
                ASSERT_TRUE(rc == 0 || rc == DEJA_ERR_NOT_FOUND);
            }
        }
        /* Unrelated entries, to push the cap. */
        for (int f = 0; f < 4; f++) {
            test_unit_vector(100000u + gen * 8u + (uint64_t)f, filler, CHURN_DIM);
            store(cl, "churn", filler, CHURN_DIM, NULL, "filler", 6);
        }
    }
    atomic_store(&c.done, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    uint64_t evicted = stat_of(cl, "churn", "evicted_lfu");
    fprintf(stderr, "%ld lookups, %ld hits read from the map, %llu evicted\n",
            atomic_load(&c.reads), atomic_load(&c.hits), (unsigned long long)evicted);
    ASSERT_EQ(atomic_load(&c.torn), 0);
    ASSERT_GT(atomic_load(&c.hits), 100);
    ASSERT_GT(evicted, 0);
    ASSERT_GT(stat_of(cl, "churn", "dedup_updates"), 0);
    deja_close(cl);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

/* ---- responses are not on the heap ------------------------------------------*/

static long rss_anon_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

#define HEAP_N 6000
#define HEAP_DIM 16
#define HEAP_RESP 4096
#define HEAP_SMALL 64

/* Stores HEAP_N entries with resp_len-byte responses into ns; returns how
 * much dejad's RssAnon grew, in bytes. */
static long store_and_measure(deja_client *cl, const char *ns, uint64_t seed,
                              size_t resp_len) {
    static char resp[HEAP_RESP];
    float v[HEAP_DIM];
    create_ns(cl, ns, HEAP_DIM, 0, 0);
    long before = rss_anon_kib(srv.pid);
    ASSERT_GT(before, 0);
    for (int i = 0; i < HEAP_N; i++) {
        test_unit_vector(seed + (uint64_t)i, v, HEAP_DIM);
        memset(resp, 'a' + i % 26, resp_len);
        store(cl, ns, v, HEAP_DIM, NULL, resp, resp_len);
    }
    wait_indexed(cl, ns);
    return (rss_anon_kib(srv.pid) - before) * 1024;
}

static void test_stored_responses_do_not_grow_anonymous_memory(void) {
    if (RUNNING_UNDER_SANITIZER) {
        fprintf(stderr, "skipped under a sanitizer: RssAnon would not mean much\n");
        return;
    }
    ASSERT_OK(test_server_start(&srv, NULL));
    deja_client *cl = connect_or_fail();
    /* The same entries twice, with small and with 4 KiB responses: what
     * the second costs beyond the first is what responses cost the heap
     * (entries, vectors and graph cost the same in both). A warm-up
     * namespace first, so both start with the server's buffers grown. */
    (void)store_and_measure(cl, "warm", 60000, HEAP_RESP);
    long small = store_and_measure(cl, "small", 70000, HEAP_SMALL);
    long large = store_and_measure(cl, "large", 80000, HEAP_RESP);
    long stored = (long)HEAP_N * (HEAP_RESP - HEAP_SMALL);
    fprintf(stderr,
            "RssAnon grew %ld bytes with %d-byte responses, %ld with %d-byte ones: "
            "%.1f%% of the %ld response bytes more\n",
            small, HEAP_SMALL, large, HEAP_RESP, 100.0 * (double)(large - small) / stored,
            stored);
    ASSERT_LT(large - small, stored / 10);
    deja_close(cl);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

int main(void) {
    RUN(test_int8_hits_report_the_exact_cosine_read_from_the_map);
    RUN(test_int8_lookups_racing_deletes_return_only_live_entries);
    RUN(test_responses_from_the_map_stay_whole_under_overwrites_deletes_and_eviction);
    RUN(test_stored_responses_do_not_grow_anonymous_memory);
    return harness_result();
}
