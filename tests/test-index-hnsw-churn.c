/* test-index-hnsw-churn.c: an HNSW index under cache churn -- cycles of
 * removing half the entries at random and adding as many new ones --
 * keeps its recall (within 0.02 of a fresh build over the same
 * survivors), keeps answering k results, and reuses the removed slots so
 * its memory stays flat. */
#include <stdint.h>

#include "harness.h"
#include "idx.h"
#include "support/vectors.h"

#define DIM 64
#define LIVE 6000u
#define CYCLES 10
#define QUERIES 1000
#define K 10
/* Narrow enough that graph damage shows: the fresh index's recall@10 is
 * about 0.92 here, not 1. */
#define EF 32

/* Sizes are scaled down (6,000 live entries of dim 64, M 12) so the
 * test runs in seconds even under ASan. */
static idx *churn_index(void) {
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = DIM, .M = 12, .ef_construction = 100};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    return ix;
}

/* The vector of label l: a fixed pool indexed by label keeps vectors
 * reproducible without storing the history. */
static const float *vec_of(const float *pool, uint64_t label) {
    return pool + label * DIM;
}

typedef struct recall_result {
    double recall;
    uint32_t short_answers; /* queries answered with fewer than K */
} recall_result;

/* Mean recall@K over queries drawn near live vectors, against brute force
 * over exactly the live set. */
static recall_result measure(idx *ix, const float *pool, const uint64_t *live,
                             size_t nlive, uint32_t queries, uint64_t seed) {
    float *base = malloc(nlive * DIM * sizeof *base);
    for (size_t i = 0; i < nlive; i++)
        memcpy(base + i * DIM, vec_of(pool, live[i]), DIM * sizeof(float));
    vec_rng r = {seed};
    float q[DIM];
    idx_hit got[K], want[K];
    recall_result out = {0.0, 0};
    for (uint32_t i = 0; i < queries; i++) {
        vec_paraphrase(&r, base, nlive, DIM, q);
        uint32_t ngot = 0, nwant = 0;
        ASSERT_OK(idx_search_ef(ix, q, K, EF, -INFINITY, NULL, NULL, got, &ngot));
        idx_bruteforce(base, nlive, DIM, q, K, want, &nwant);
        if (ngot < K) out.short_answers++;
        /* Brute force labels rows; map them back to entry labels. */
        for (uint32_t j = 0; j < nwant; j++)
            want[j].label = live[want[j].label];
        out.recall += vec_recall(got, ngot, want, nwant);
    }
    out.recall /= queries;
    free(base);
    return out;
}

static void test_recall_and_memory_hold_through_ten_cycles_of_half_churn(void) {
    const size_t pool_n = LIVE + (size_t)CYCLES * LIVE / 2;
    vec_rng r = {2024};
    /* Loose clusters (spread 1.5): neighbours are hard to tell apart,
     * which is where a damaged graph loses recall first. */
    float *pool = vec_clustered_spread(&r, pool_n, DIM, 200, 1.5f);
    uint64_t *live = malloc(LIVE * sizeof *live);
    uint64_t next_label = 0;

    idx *ix = churn_index();
    for (size_t i = 0; i < LIVE; i++) {
        live[i] = next_label++;
        ASSERT_OK(idx_add(ix, live[i], vec_of(pool, live[i])));
    }
    recall_result start = measure(ix, pool, live, LIVE, QUERIES, 1);
    size_t memory_start = idx_memory(ix);
    fprintf(stderr, "   start: recall %.4f, memory %zu\n", start.recall, memory_start);

    for (int cycle = 1; cycle <= CYCLES; cycle++) {
        /* Remove a random half: shuffle, then drop the front half. */
        for (size_t i = LIVE - 1; i > 0; i--) {
            size_t j = vec_rng_next(&r) % (i + 1);
            uint64_t t = live[i];
            live[i] = live[j];
            live[j] = t;
        }
        for (size_t i = 0; i < LIVE / 2; i++) {
            ASSERT_OK(idx_remove(ix, live[i]));
            live[i] = next_label++;
        }
        ASSERT_EQ(idx_count(ix), LIVE / 2);
        for (size_t i = 0; i < LIVE / 2; i++)
            ASSERT_OK(idx_add(ix, live[i], vec_of(pool, live[i])));
        ASSERT_EQ(idx_count(ix), LIVE);
        size_t memory = idx_memory(ix);
        ASSERT_TRUE(memory <= memory_start + memory_start / 10);
        ASSERT_TRUE(memory + memory_start / 10 >= memory_start);
        recall_result now = measure(ix, pool, live, LIVE, 100, 100 + cycle);
        fprintf(stderr, "   cycle %d: recall %.4f, memory %zu\n", cycle, now.recall,
                memory);
        ASSERT_EQ(now.short_answers, 0);
    }

    /* The same survivors, built fresh. */
    idx *fresh = churn_index();
    for (size_t i = 0; i < LIVE; i++)
        ASSERT_OK(idx_add(fresh, live[i], vec_of(pool, live[i])));
    recall_result churned = measure(ix, pool, live, LIVE, QUERIES, 7);
    recall_result rebuilt = measure(fresh, pool, live, LIVE, QUERIES, 7);
    fprintf(stderr, "   after %d cycles: churned %.4f, fresh %.4f\n", CYCLES,
            churned.recall, rebuilt.recall);
    ASSERT_EQ(churned.short_answers, 0);
    ASSERT_TRUE(churned.recall >= rebuilt.recall - 0.02);

    idx_destroy(fresh);
    idx_destroy(ix);
    free(live);
    free(pool);
}

/* Removing the oldest entries (the first one is the entry point until a
 * higher-level node arrives) while adding copies of them: a present
 * vector must still find itself first. */
static void test_removing_the_oldest_half_keeps_present_vectors_findable(void) {
    vec_rng r = {77};
    const size_t n = 3000;
    float *pool = vec_clustered(&r, n, DIM, 30);
    idx *ix = churn_index();
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(idx_add(ix, i, vec_of(pool, i)));
    idx_hit hits[K];
    for (size_t i = 0; i < n / 2; i++) {
        ASSERT_OK(idx_remove(ix, i));
        if (i % 3 == 0) ASSERT_OK(idx_add(ix, n + i, vec_of(pool, i)));
        if (i % 100 == 0) {
            uint32_t got = 0;
            const float *q = vec_of(pool, n - 1 - i);
            ASSERT_OK(idx_search(ix, q, K, -INFINITY, NULL, NULL, hits, &got));
            ASSERT_EQ(got, K);
            ASSERT_U64_EQ(hits[0].label, n - 1 - i);
        }
    }
    idx_destroy(ix);
    free(pool);
}

int main(void) {
    idx_simd_init();
    RUN(test_recall_and_memory_hold_through_ten_cycles_of_half_churn);
    RUN(test_removing_the_oldest_half_keeps_present_vectors_findable);
    return harness_result();
}
