/* test-index-hnsw-threads.c: HNSW searches run while other threads add
 * and remove, without locks around the index, and every result is valid:
 * a label that had been added, whose removal had not completed before
 * the search started, with its true score, best first. Also run under
 * ThreadSanitizer in CI.
 *
 * Every thread runs a bounded number of operations and nobody sleeps.
 * Threads record failures in shared counters (a harness assert cannot
 * leave a thread), and the main thread checks them after joining. */
#include <pthread.h>
#include <stdint.h>

#include "harness.h"
#include "idx.h"
#include "support/vectors.h"

#define DIM 32
#define INITIAL 2000u
#define WRITER_OPS 3000u
#define SEARCHES_MAX 200000u
#define K 10

/* Vectors are a function of the label, so any thread can check a score. */
static void vector_of(uint64_t label, float *v) {
    vec_rng r = {label * 7919 + 1};
    for (uint32_t i = 0; i < DIM; i++)
        v[i] = vec_rng_normal(&r);
    /* Labels come in groups of 8 around a shared direction, so the graph
     * has clusters to get wrong. */
    vec_rng c = {label / 8 + 1000003};
    for (uint32_t i = 0; i < DIM; i++)
        v[i] += 2.0f * vec_rng_normal(&c);
    vec_normalize(v, DIM);
}

typedef struct shared {
    idx *ix;
    uint64_t labels_max; /* labels in [0, labels_max) */
    /* removed_at[l]: value of `clock` after l's removal completed, 0 if
     * never removed. Atomic. */
    uint64_t *removed_at;
    uint64_t clock;        /* atomic: completed removals */
    uint64_t searcher_ids; /* atomic: seeds the searchers' generators */
    int writers_done;      /* atomic */
    /* failures (atomic counters) */
    uint64_t bad_label, removed_returned, bad_score, bad_order, bad_get, errors, searches,
        short_results;
} shared;

static double dot(const float *a, const float *b) {
    double s = 0.0;
    for (uint32_t i = 0; i < DIM; i++)
        s += (double)a[i] * b[i];
    return s;
}

static void bump(uint64_t *counter) {
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

static void *searcher(void *arg) {
    shared *s = arg;
    vec_rng r = {__atomic_add_fetch(&s->searcher_ids, 1, __ATOMIC_RELAXED)};
    float q[DIM], v[DIM];
    idx_hit hits[K];
    for (uint32_t i = 0; i < SEARCHES_MAX; i++) {
        if (__atomic_load_n(&s->writers_done, __ATOMIC_ACQUIRE)) break;
        vector_of(vec_rng_next(&r) % s->labels_max, q);
        for (uint32_t j = 0; j < DIM; j++)
            q[j] += 0.1f * vec_rng_normal(&r);
        vec_normalize(q, DIM);
        uint64_t started = __atomic_load_n(&s->clock, __ATOMIC_ACQUIRE);
        uint32_t n = 0;
        if (idx_search(s->ix, q, K, -INFINITY, NULL, NULL, hits, &n) != 0) {
            bump(&s->errors);
            continue;
        }
        bump(&s->searches);
        if (n < K) bump(&s->short_results);
        for (uint32_t j = 0; j < n; j++) {
            uint64_t label = hits[j].label;
            if (label >= s->labels_max) {
                bump(&s->bad_label);
                continue;
            }
            uint64_t removed = __atomic_load_n(&s->removed_at[label], __ATOMIC_ACQUIRE);
            if (removed != 0 && removed <= started) bump(&s->removed_returned);
            vector_of(label, v);
            if (fabs(dot(q, v) - hits[j].score) > 1e-5) bump(&s->bad_score);
            if (j > 0 && hits[j - 1].score < hits[j].score) bump(&s->bad_order);
        }
        /* get of a random label: absent, or exactly its vector. */
        uint64_t label = vec_rng_next(&r) % s->labels_max;
        float out[DIM];
        int rc = idx_get(s->ix, label, out);
        vector_of(label, v);
        if (rc == 0 ? memcmp(out, v, sizeof v) != 0 : rc != DEJA_ERR_NOT_FOUND)
            bump(&s->bad_get);
    }
    return NULL;
}

typedef struct writer_args {
    shared *s;
    uint64_t first_label; /* adds labels first_label, first_label + 1, ... */
    uint32_t ops;
    int removes; /* 1: every other op removes a random own label */
    uint64_t seed;
} writer_args;

static void *writer(void *arg) {
    writer_args *w = arg;
    shared *s = w->s;
    vec_rng r = {w->seed};
    uint64_t *mine = malloc((w->ops + 1) * sizeof *mine);
    uint32_t nmine = 0;
    uint64_t next = w->first_label;
    float v[DIM];
    for (uint32_t i = 0; i < w->ops; i++) {
        if (w->removes && i % 2 == 1 && nmine > 0) {
            uint32_t pick = (uint32_t)(vec_rng_next(&r) % nmine);
            uint64_t label = mine[pick];
            mine[pick] = mine[--nmine];
            if (idx_remove(s->ix, label) != 0) {
                bump(&s->errors);
                continue;
            }
            uint64_t t = __atomic_add_fetch(&s->clock, 1, __ATOMIC_ACQ_REL);
            __atomic_store_n(&s->removed_at[label], t, __ATOMIC_RELEASE);
        } else {
            uint64_t label = next++;
            vector_of(label, v);
            if (idx_add(s->ix, label, v) != 0) {
                bump(&s->errors);
                continue;
            }
            mine[nmine++] = label;
        }
    }
    free(mine);
    return NULL;
}

static idx *threads_index(void) {
    idx_config cfg = {.kind = IDX_KIND_HNSW,
                      .dim = DIM,
                      .M = 8,
                      .ef_construction = 64,
                      .ef_search = 32};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    ASSERT_EQ(idx_concurrent_writes(ix), 1);
    return ix;
}

static void check_shared(const shared *s) {
    fprintf(stderr, "   %llu searches, %llu short\n", (unsigned long long)s->searches,
            (unsigned long long)s->short_results);
    ASSERT_EQ(s->errors, 0);
    ASSERT_EQ(s->bad_label, 0);
    ASSERT_EQ(s->removed_returned, 0);
    ASSERT_EQ(s->bad_score, 0);
    ASSERT_EQ(s->bad_order, 0);
    ASSERT_EQ(s->bad_get, 0);
    ASSERT_GT(s->searches, 0);
    /* Over 2,000 live entries a search always fills k: a node reachable
     * before its lists are written would show up here as short results. */
    ASSERT_EQ(s->short_results, 0);
}

static void test_two_searchers_see_only_valid_results_while_a_writer_churns(void) {
    shared s = {0};
    s.ix = threads_index();
    s.labels_max = INITIAL + WRITER_OPS;
    s.removed_at = calloc(s.labels_max, sizeof *s.removed_at);
    float v[DIM];
    /* The initial labels belong to no writer, so they stay. */
    for (uint64_t l = 0; l < INITIAL; l++) {
        vector_of(l, v);
        ASSERT_OK(idx_add(s.ix, l, v));
    }

    writer_args w = {&s, INITIAL, WRITER_OPS, 1, 99};
    pthread_t threads[3];
    ASSERT_EQ(pthread_create(&threads[0], NULL, searcher, &s), 0);
    ASSERT_EQ(pthread_create(&threads[1], NULL, searcher, &s), 0);
    ASSERT_EQ(pthread_create(&threads[2], NULL, writer, &w), 0);
    pthread_join(threads[2], NULL);
    __atomic_store_n(&s.writers_done, 1, __ATOMIC_RELEASE);
    pthread_join(threads[0], NULL);
    pthread_join(threads[1], NULL);
    check_shared(&s);
    /* Half the writer's ops added, half removed. */
    ASSERT_EQ(idx_count(s.ix), INITIAL);
    idx_destroy(s.ix);
    free(s.removed_at);
}

static void test_concurrent_writers_build_a_consistent_index(void) {
    shared s = {0};
    s.ix = threads_index();
    const uint32_t per_writer = 1500;
    s.labels_max = 3 * (uint64_t)per_writer;
    s.removed_at = calloc(s.labels_max, sizeof *s.removed_at);
    float v[DIM];
    vector_of(0, v);
    ASSERT_OK(idx_add(s.ix, 0, v));
    /* Two writers add disjoint ranges, a third adds and removes, and a
     * searcher runs throughout. */
    writer_args w[3] = {{&s, 1, per_writer - 1, 0, 1},
                        {&s, per_writer, per_writer, 0, 2},
                        {&s, 2 * (uint64_t)per_writer, per_writer, 1, 3}};
    pthread_t threads[4];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(pthread_create(&threads[i], NULL, writer, &w[i]), 0);
    ASSERT_EQ(pthread_create(&threads[3], NULL, searcher, &s), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);
    __atomic_store_n(&s.writers_done, 1, __ATOMIC_RELEASE);
    pthread_join(threads[3], NULL);
    ASSERT_EQ(s.errors, 0);
    ASSERT_EQ(s.bad_score, 0);
    ASSERT_EQ(s.bad_get, 0);

    /* Afterwards every present label is stored exactly and finds itself. */
    size_t present = 0;
    float out[DIM];
    idx_hit hits[K];
    for (uint64_t l = 0; l < s.labels_max; l++) {
        int rc = idx_get(s.ix, l, out);
        if (rc == DEJA_ERR_NOT_FOUND) {
            ASSERT_TRUE(l >= 2 * (uint64_t)per_writer);
            continue;
        }
        ASSERT_OK(rc);
        present++;
        vector_of(l, v);
        ASSERT_MEM_EQ(out, v, sizeof v);
        uint32_t n = 0;
        ASSERT_OK(idx_search(s.ix, v, K, -INFINITY, NULL, NULL, hits, &n));
        ASSERT_EQ(n, K);
        ASSERT_NEAR(hits[0].score, 1.0, 1e-5);
    }
    ASSERT_EQ(idx_count(s.ix), present);
    idx_destroy(s.ix);
    free(s.removed_at);
}

int main(void) {
    idx_simd_init();
    RUN(test_two_searchers_see_only_valid_results_while_a_writer_churns);
    RUN(test_concurrent_writers_build_a_consistent_index);
    return harness_result();
}
