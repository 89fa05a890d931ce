/* test-index-hnsw-churn.c: an HNSW index under cache churn -- cycles of
 * removing half the entries at random and adding as many new ones --
 * keeps its recall (within 0.02 of a fresh build over the same
 * survivors), keeps answering k results, reuses the removed slots so its
 * memory stays flat, and loses no entry: every live vector, searched for
 * itself, is found (issue #14). */
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

/* Removes a random half of live[0..n) (shuffled, then the front half
 * dropped) and puts fresh labels in their places, for the caller to add. */
static void remove_random_half(idx *ix, uint64_t *live, size_t n, vec_rng *r,
                               uint64_t *next_label) {
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = vec_rng_next(r) % (i + 1);
        uint64_t t = live[i];
        live[i] = live[j];
        live[j] = t;
    }
    for (size_t i = 0; i < n / 2; i++) {
        ASSERT_OK(idx_remove(ix, live[i]));
        live[i] = (*next_label)++;
    }
}

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
        remove_random_half(ix, live, LIVE, &r, &next_label);
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

/* ---- no entry is lost -------------------------------------------------------*/

/* Near-duplicate data: 2,000 live entries in groups around 60 centres,
 * each at cosine ~0.995 from its centre, so every entry has dozens of
 * neighbours that are almost the same vector. The heuristic then prunes
 * entries from one another's lists hardest, and churn removes the rest of
 * their in-links; M 6 keeps the lists short enough for that to happen at
 * this size. Without the sweep's rescue, 10 to 60 entries per cycle end
 * up with no path to them at all. */
#define DUP_DIM 32
#define DUP_LIVE 2000u
#define DUP_CYCLES 12
#define DUP_CENTRES 60
#define DUP_SPREAD 0.1f
/* A search this wide explores every node it can reach. */
#define EF_EVERYTHING UINT32_MAX

static idx *dup_index(enum idx_quant quant) {
    idx_config cfg = {.kind = IDX_KIND_HNSW,
                      .dim = DUP_DIM,
                      .M = 6,
                      .ef_construction = 100,
                      .quant = quant};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    return ix;
}

/* The sweep that repairs the graph advances only with adds and removes:
 * cycling one scratch entry drives it through several full passes over
 * the slots (a pass over n slots takes about n / 64 operations), as the
 * traffic of a running server would. */
static void let_the_sweep_finish(idx *ix, const float *scratch, uint64_t label,
                                 size_t slots) {
    for (size_t i = 0; i < 4 * (slots / 64 + 1); i++) {
        ASSERT_OK(idx_add(ix, label, scratch));
        ASSERT_OK(idx_remove(ix, label));
    }
}

typedef struct lost_count {
    uint32_t missed;      /* not found by a search of the default breadth */
    uint32_t unreachable; /* not found even by a search of every reachable node */
} lost_count;

static int finds_itself(idx *ix, const float *own, uint64_t label, uint32_t ef) {
    idx_hit hits[K];
    uint32_t n = 0;
    ASSERT_OK(idx_search_ef(ix, own, K, ef, -INFINITY, NULL, NULL, hits, &n));
    for (uint32_t j = 0; j < n; j++)
        if (hits[j].label == label && hits[j].score > 0.999f) return 1;
    return 0;
}

/* Searches every live entry's own vector; a search as wide as the index
 * is run only for the few that the default one misses. */
static lost_count entries_lost(idx *ix, const float *pool, const uint64_t *live,
                               size_t nlive) {
    lost_count out = {0, 0};
    for (size_t i = 0; i < nlive; i++) {
        const float *own = pool + live[i] * DUP_DIM;
        if (finds_itself(ix, own, live[i], 0)) continue;
        out.missed++;
        out.unreachable += !finds_itself(ix, own, live[i], EF_EVERYTHING);
    }
    return out;
}

/* Every live entry stays reachable: after each cycle of churn, a search
 * for an entry's own vector that explores everything it can reach finds
 * it. (A search of the default breadth may still miss a few of these
 * near-duplicates -- reachable, but only through nodes of other clusters
 * that it never expands; that count is printed, and is a matter of
 * recall, which the first test measures.) */
static void every_live_entry_stays_reachable_through_churn(enum idx_quant quant) {
    const size_t pool_n = DUP_LIVE + (size_t)DUP_CYCLES * DUP_LIVE / 2 + 1;
    vec_rng r = {1486};
    float *pool = vec_clustered_spread(&r, pool_n, DUP_DIM, DUP_CENTRES, DUP_SPREAD);
    uint64_t *live = malloc(DUP_LIVE * sizeof *live);
    uint64_t next_label = 0;
    const uint64_t scratch = pool_n - 1;

    idx *ix = dup_index(quant);
    for (size_t i = 0; i < DUP_LIVE; i++) {
        live[i] = next_label++;
        ASSERT_OK(idx_add(ix, live[i], pool + live[i] * DUP_DIM));
    }
    ASSERT_EQ(entries_lost(ix, pool, live, DUP_LIVE).unreachable, 0);

    uint32_t unreachable = 0;
    for (int cycle = 1; cycle <= DUP_CYCLES; cycle++) {
        remove_random_half(ix, live, DUP_LIVE, &r, &next_label);
        for (size_t i = 0; i < DUP_LIVE / 2; i++)
            ASSERT_OK(idx_add(ix, live[i], pool + live[i] * DUP_DIM));
        let_the_sweep_finish(ix, pool + scratch * DUP_DIM, scratch, 2 * DUP_LIVE);
        lost_count lost = entries_lost(ix, pool, live, DUP_LIVE);
        fprintf(stderr,
                "   cycle %d: %u of %u unreachable, %u missed at the default ef\n", cycle,
                lost.unreachable, DUP_LIVE, lost.missed);
        unreachable += lost.unreachable;
    }
    ASSERT_EQ(unreachable, 0);

    idx_destroy(ix);
    free(live);
    free(pool);
}

static void test_churn_of_near_duplicates_leaves_every_live_entry_reachable(void) {
    every_live_entry_stays_reachable_through_churn(IDX_QUANT_F32);
}

static void test_churn_of_int8_near_duplicates_leaves_every_live_entry_reachable(void) {
    every_live_entry_stays_reachable_through_churn(IDX_QUANT_INT8);
}

int main(void) {
    idx_simd_init();
    RUN(test_recall_and_memory_hold_through_ten_cycles_of_half_churn);
    RUN(test_removing_the_oldest_half_keeps_present_vectors_findable);
    RUN(test_churn_of_near_duplicates_leaves_every_live_entry_reachable);
    RUN(test_churn_of_int8_near_duplicates_leaves_every_live_entry_reachable);
    return harness_result();
}
