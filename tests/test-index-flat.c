/* test-index-flat.c: the exact flat index returns what brute force
 * returns, honours thresholds, filters and removals, reuses its storage,
 * and answers batches like single searches. */
#include <stdint.h>

#include "harness.h"
#include "idx.h"

/* Scores from different kernels (or sgemm) differ in the last bits. */
#define SCORE_EPS 1e-5
#define BATCH_EPS 1e-4

static uint64_t rng_state;

static void rng_seed(uint64_t seed) {
    rng_state = seed;
}

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static float rng_unit(void) {
    return (float)(rng_next() >> 40) / 16777216.0f;
}

/* n random unit vectors of dimension dim, row-major; caller frees. */
static float *random_unit_vectors(size_t n, uint32_t dim) {
    float *v = malloc(n * dim * sizeof *v + 1);
    ASSERT_TRUE(v != NULL);
    for (size_t i = 0; i < n; i++) {
        float *row = v + i * dim;
        do {
            for (uint32_t j = 0; j < dim; j++)
                row[j] = 2.0f * rng_unit() - 1.0f;
        } while (idx_normalize(row, dim) != 0);
    }
    return v;
}

static idx *flat_create(uint32_t dim) {
    idx_config cfg = {.kind = IDX_KIND_FLAT, .dim = dim};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    ASSERT_TRUE(ix != NULL);
    return ix;
}

/* An index holding base[i] under label i. */
static idx *flat_with_rows(const float *base, size_t n, uint32_t dim) {
    idx *ix = flat_create(dim);
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(idx_add(ix, i, base + i * dim));
    ASSERT_EQ(idx_count(ix), n);
    return ix;
}

static double exact_dot(const float *a, const float *b, uint32_t dim) {
    double s = 0.0;
    for (uint32_t i = 0; i < dim; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

/* got must equal want up to rounding: the same count, the same score at
 * every rank, best first, no label twice, and each label's true score
 * equal to the score reported for it. Labels may differ from want's only
 * where near-equal scores let rounding reorder them. base_of maps a label
 * to its vector. */
static void assert_hits_match(const idx_hit *got, uint32_t ngot, const idx_hit *want,
                              uint32_t nwant, const float *query, uint32_t dim,
                              const float *(*base_of)(uint64_t, void *), void *ctx,
                              double eps) {
    ASSERT_EQ(ngot, nwant);
    for (uint32_t i = 0; i < ngot; i++) {
        ASSERT_NEAR(got[i].score, want[i].score, eps);
        if (i > 0) ASSERT_TRUE(got[i - 1].score >= got[i].score);
        for (uint32_t j = 0; j < i; j++)
            ASSERT_TRUE(got[j].label != got[i].label);
        ASSERT_NEAR(exact_dot(query, base_of(got[i].label, ctx), dim), got[i].score, eps);
    }
}

typedef struct rows_ctx {
    const float *base;
    uint32_t dim;
} rows_ctx;

static const float *row_of_label(uint64_t label, void *ctx) {
    const rows_ctx *r = ctx;
    return r->base + label * r->dim;
}

/* ---- creation and arguments -----------------------------------------------*/

static void test_create_rejects_zero_and_oversized_dims(void) {
    idx *ix = (idx *)&ix;
    idx_config cfg = {.kind = IDX_KIND_FLAT, .dim = 0};
    ASSERT_EQ(idx_create(&cfg, &ix), DEJA_ERR_INVALID_ARG);
    ASSERT_TRUE(ix == NULL);
    cfg.dim = IDX_DIM_MAX + 1;
    ASSERT_EQ(idx_create(&cfg, &ix), DEJA_ERR_INVALID_ARG);
    cfg.dim = IDX_DIM_MAX;
    ASSERT_OK(idx_create(&cfg, &ix));
    ASSERT_EQ(idx_dim(ix), IDX_DIM_MAX);
    idx_destroy(ix);
}

static void test_create_rejects_unknown_kinds_and_null_arguments(void) {
    idx *ix = NULL;
    idx_config cfg = {.kind = (enum idx_kind)99, .dim = 8};
    ASSERT_EQ(idx_create(&cfg, &ix), DEJA_ERR_INVALID_ARG);
    cfg.kind = (enum idx_kind)0;
    ASSERT_EQ(idx_create(&cfg, &ix), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_create(NULL, &ix), DEJA_ERR_INVALID_ARG);
    cfg.kind = IDX_KIND_FLAT;
    ASSERT_EQ(idx_create(&cfg, NULL), DEJA_ERR_INVALID_ARG);
    idx_destroy(NULL);
}

static void test_calls_with_null_pointers_are_invalid_arg(void) {
    idx *ix = flat_create(4);
    float v[4] = {1, 0, 0, 0};
    idx_hit hits[2];
    uint32_t n = 77;
    ASSERT_EQ(idx_add(ix, 1, NULL), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_add(NULL, 1, v), DEJA_ERR_INVALID_ARG);
    ASSERT_OK(idx_add(ix, 1, v));
    ASSERT_EQ(idx_get(ix, 1, NULL), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_search(ix, NULL, 2, 0.0f, NULL, NULL, hits, &n), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(idx_search(ix, v, 2, 0.0f, NULL, NULL, NULL, &n), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_search(ix, v, 2, 0.0f, NULL, NULL, hits, NULL), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_search(ix, v, 2, NAN, NULL, NULL, hits, &n), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_search_batch(ix, NULL, 1, 2, hits, &n), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_count(NULL), 0);
    ASSERT_EQ(idx_dim(NULL), 0);
    idx_destroy(ix);
}

static void test_add_of_a_present_label_is_invalid_arg(void) {
    idx *ix = flat_create(3);
    float a[3] = {1, 0, 0}, b[3] = {0, 1, 0}, out[3];
    ASSERT_OK(idx_add(ix, 42, a));
    ASSERT_EQ(idx_add(ix, 42, b), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_count(ix), 1);
    ASSERT_OK(idx_get(ix, 42, out));
    ASSERT_MEM_EQ(out, a, sizeof a);
    idx_destroy(ix);
}

/* ---- search against brute force -------------------------------------------*/

static void check_search_matches_bruteforce(uint32_t dim, size_t n, size_t queries,
                                            uint64_t seed) {
    rng_seed(seed);
    float *base = random_unit_vectors(n, dim);
    float *query = random_unit_vectors(queries, dim);
    idx *ix = flat_with_rows(base, n, dim);
    rows_ctx ctx = {base, dim};
    const uint32_t ks[] = {1, 10};
    idx_hit got[10], want[10];

    for (size_t q = 0; q < queries; q++) {
        const float *qv = query + q * dim;
        for (size_t j = 0; j < 2; j++) {
            uint32_t ngot = 0, nwant = 0;
            ASSERT_OK(idx_search(ix, qv, ks[j], -INFINITY, NULL, NULL, got, &ngot));
            idx_bruteforce(base, n, dim, qv, ks[j], want, &nwant);
            ASSERT_EQ(nwant, ks[j] < n ? ks[j] : n);
            assert_hits_match(got, ngot, want, nwant, qv, dim, row_of_label, &ctx,
                              SCORE_EPS);
        }
    }
    idx_destroy(ix);
    free(query);
    free(base);
}

static void test_search_matches_bruteforce_in_small_dims(void) {
    check_search_matches_bruteforce(1, 300, 4, 11);
    check_search_matches_bruteforce(7, 1000, 8, 12);
    check_search_matches_bruteforce(16, 1000, 8, 13);
    check_search_matches_bruteforce(17, 5, 4, 14);
}

static void test_search_matches_bruteforce_on_20000_vectors_of_dim_128(void) {
    check_search_matches_bruteforce(128, 20000, 10, 21);
}

static void test_search_matches_bruteforce_on_embedding_dims(void) {
    check_search_matches_bruteforce(1536, 3000, 5, 31);
    check_search_matches_bruteforce(IDX_DIM_MAX, 500, 3, 32);
}

/* The same vector under several labels scores the same for every query;
 * the order must not depend on insertion order. */
static void test_equal_scores_rank_the_lower_label_first(void) {
    idx *ix = flat_create(2);
    float v[2] = {0.6f, 0.8f};
    const uint64_t labels[] = {50, 3, UINT64_MAX, 20, 0};
    for (size_t i = 0; i < 5; i++)
        ASSERT_OK(idx_add(ix, labels[i], v));
    idx_hit hits[5];
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, v, 4, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 4);
    ASSERT_U64_EQ(hits[0].label, 0);
    ASSERT_U64_EQ(hits[1].label, 3);
    ASSERT_U64_EQ(hits[2].label, 20);
    ASSERT_U64_EQ(hits[3].label, 50);
    idx_destroy(ix);
}

static void test_search_with_k_above_count_returns_every_vector(void) {
    rng_seed(41);
    float *base = random_unit_vectors(6, 32);
    idx *ix = flat_with_rows(base, 6, 32);
    idx_hit hits[50];
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, base, 50, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 6);
    ASSERT_U64_EQ(hits[0].label, 0);
    ASSERT_NEAR(hits[0].score, 1.0, SCORE_EPS);
    idx_destroy(ix);
    free(base);
}

static void test_search_with_k_zero_or_on_an_empty_index_finds_nothing(void) {
    idx *ix = flat_create(8);
    float v[8] = {1};
    idx_hit hits[4];
    uint32_t n = 99;
    ASSERT_OK(idx_search(ix, v, 4, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(idx_add(ix, 1, v));
    n = 99;
    ASSERT_OK(idx_search(ix, v, 0, -INFINITY, NULL, NULL, NULL, &n));
    ASSERT_EQ(n, 0);
    idx_destroy(ix);
}

/* ---- thresholds and filters -----------------------------------------------*/

static void test_min_score_keeps_exactly_the_scores_at_or_above_it(void) {
    const uint32_t dim = 64;
    const size_t n = 2000;
    rng_seed(51);
    float *base = random_unit_vectors(n, dim);
    float *query = random_unit_vectors(1, dim);
    idx *ix = flat_with_rows(base, n, dim);
    rows_ctx ctx = {base, dim};
    idx_hit *all = malloc(n * sizeof *all);
    idx_hit got[10];
    uint32_t nall = 0, ngot = 0;
    idx_bruteforce(base, n, dim, query, (uint32_t)n, all, &nall);
    ASSERT_EQ(nall, n);

    /* Cut halfway between two neighbouring scores so rounding cannot move
     * a vector across the threshold. */
    const size_t above[] = {0, 1, 3, 10, 40};
    for (size_t i = 0; i < 5; i++) {
        size_t m = above[i];
        float cut =
            m == 0 ? all[0].score + 0.01f : 0.5f * (all[m - 1].score + all[m].score);
        ASSERT_OK(idx_search(ix, query, 10, cut, NULL, NULL, got, &ngot));
        uint32_t expect = m < 10 ? (uint32_t)m : 10;
        for (uint32_t j = 0; j < ngot; j++)
            ASSERT_TRUE(got[j].score >= cut);
        assert_hits_match(got, ngot, all, expect, query, dim, row_of_label, &ctx,
                          SCORE_EPS);
    }
    /* A cut above 1 matches nothing among unit vectors. */
    ASSERT_OK(idx_search(ix, query, 10, 1.01f, NULL, NULL, got, &ngot));
    ASSERT_EQ(ngot, 0);
    idx_destroy(ix);
    free(all);
    free(query);
    free(base);
}

/* 0.6f * 1 + 0.8f * 0 is exactly 0.6f in every kernel, so the boundary
 * case is exact: a score equal to min_score is a match. */
static void test_a_score_equal_to_min_score_is_kept(void) {
    idx *ix = flat_create(2);
    const float v[2] = {0.6f, 0.8f}, w[2] = {0.8f, 0.6f}, q[2] = {1.0f, 0.0f};
    ASSERT_OK(idx_add(ix, 1, v));
    ASSERT_OK(idx_add(ix, 2, w));
    idx_hit hits[2];
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, q, 2, 0.6f, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 2);
    ASSERT_U64_EQ(hits[0].label, 2);
    ASSERT_U64_EQ(hits[1].label, 1);
    ASSERT_TRUE(hits[1].score == 0.6f);
    ASSERT_OK(idx_search(ix, q, 2, 0.8f, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 1);
    idx_destroy(ix);
}

typedef struct filter_ctx {
    size_t calls;
} filter_ctx;

static int accept_even_labels(void *ctx, uint64_t label) {
    ((filter_ctx *)ctx)->calls++;
    return label % 2 == 0;
}

static void test_filter_excludes_labels_and_runs_only_for_heap_candidates(void) {
    const uint32_t dim = 128;
    const size_t n = 20000;
    rng_seed(61);
    float *base = random_unit_vectors(n, dim);
    float *query = random_unit_vectors(4, dim);
    idx *ix = flat_with_rows(base, n, dim);
    rows_ctx ctx = {base, dim};

    /* The reference: brute force over the even rows only. */
    float *even = malloc(n / 2 * dim * sizeof *even);
    for (size_t i = 0; i < n / 2; i++)
        memcpy(even + i * dim, base + 2 * i * dim, dim * sizeof *even);

    for (size_t q = 0; q < 4; q++) {
        const float *qv = query + q * dim;
        idx_hit got[10], want[10];
        uint32_t ngot = 0, nwant = 0;
        filter_ctx fc = {0};
        ASSERT_OK(idx_search(ix, qv, 10, -INFINITY, accept_even_labels, &fc, got, &ngot));
        idx_bruteforce(even, n / 2, dim, qv, 10, want, &nwant);
        for (uint32_t j = 0; j < nwant; j++)
            want[j].label *= 2;
        assert_hits_match(got, ngot, want, nwant, qv, dim, row_of_label, &ctx, SCORE_EPS);
        /* Random data enters a top-10 heap some k ln(n/k) ~ 80 times; a
         * filter run on every row would be called 20000 times. */
        ASSERT_GT(fc.calls, 10);
        ASSERT_LT(fc.calls, n / 20);
    }
    idx_destroy(ix);
    free(even);
    free(query);
    free(base);
}

static int reject_everything(void *ctx, uint64_t label) {
    (void)ctx;
    (void)label;
    return 0;
}

static void test_filter_rejecting_everything_finds_nothing(void) {
    rng_seed(62);
    float *base = random_unit_vectors(100, 16);
    idx *ix = flat_with_rows(base, 100, 16);
    idx_hit hits[5];
    uint32_t n = 9;
    ASSERT_OK(idx_search(ix, base, 5, -INFINITY, reject_everything, NULL, hits, &n));
    ASSERT_EQ(n, 0);
    idx_destroy(ix);
    free(base);
}

/* ---- remove, get, clear ---------------------------------------------------*/

static void test_search_never_returns_removed_labels(void) {
    const uint32_t dim = 48;
    const size_t n = 3000;
    rng_seed(71);
    float *base = random_unit_vectors(n, dim);
    float *query = random_unit_vectors(8, dim);
    idx *ix = flat_with_rows(base, n, dim);
    rows_ctx ctx = {base, dim};
    unsigned char *removed = calloc(n, 1);
    size_t nremoved = 0;
    for (size_t i = 0; i < n; i++) {
        if (rng_next() % 3 == 0) {
            ASSERT_OK(idx_remove(ix, i));
            removed[i] = 1;
            nremoved++;
        }
    }
    ASSERT_EQ(idx_count(ix), n - nremoved);
    for (size_t i = 0; i < n; i++) {
        if (!removed[i]) continue;
        ASSERT_EQ(idx_remove(ix, i), DEJA_ERR_NOT_FOUND);
        break;
    }

    /* Reference: brute force over the survivors, labels mapped back. */
    float *alive = malloc((n - nremoved) * dim * sizeof *alive);
    uint64_t *alive_label = malloc((n - nremoved) * sizeof *alive_label);
    size_t nalive = 0;
    for (size_t i = 0; i < n; i++) {
        if (removed[i]) continue;
        memcpy(alive + nalive * dim, base + i * dim, dim * sizeof *alive);
        alive_label[nalive++] = i;
    }

    idx_hit *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    for (size_t q = 0; q < 8; q++) {
        const float *qv = query + q * dim;
        uint32_t ngot = 0, nwant = 0;
        ASSERT_OK(idx_search(ix, qv, (uint32_t)n, -INFINITY, NULL, NULL, got, &ngot));
        ASSERT_EQ(ngot, nalive);
        for (uint32_t j = 0; j < ngot; j++)
            ASSERT_EQ(removed[got[j].label], 0);
        idx_bruteforce(alive, nalive, dim, qv, 10, want, &nwant);
        for (uint32_t j = 0; j < nwant; j++)
            want[j].label = alive_label[want[j].label];
        assert_hits_match(got, 10, want, nwant, qv, dim, row_of_label, &ctx, SCORE_EPS);
    }
    idx_destroy(ix);
    free(got);
    free(want);
    free(alive);
    free(alive_label);
    free(removed);
    free(query);
    free(base);
}

static void test_removed_storage_is_reused_by_later_adds(void) {
    const uint32_t dim = 100;
    rng_seed(72);
    float *base = random_unit_vectors(1000, dim);
    idx *ix = flat_with_rows(base, 1000, dim);
    size_t full = idx_memory(ix);
    for (uint64_t round = 1; round <= 5; round++) {
        for (uint64_t i = 0; i < 1000; i += 2)
            ASSERT_OK(idx_remove(ix, i + (round - 1) * 1000));
        ASSERT_EQ(idx_count(ix), 500);
        for (uint64_t i = 0; i < 1000; i += 2)
            ASSERT_OK(idx_add(ix, i + round * 1000, base + i * dim));
        for (uint64_t i = 1; i < 1000; i += 2) {
            ASSERT_OK(idx_remove(ix, i + (round - 1) * 1000));
            ASSERT_OK(idx_add(ix, i + round * 1000, base + i * dim));
        }
        ASSERT_EQ(idx_count(ix), 1000);
        ASSERT_EQ(idx_memory(ix), full);
    }
    idx_destroy(ix);
    free(base);
}

static void test_get_returns_the_stored_vector_even_after_rows_move(void) {
    const uint32_t dim = 33;
    const size_t n = 500;
    rng_seed(81);
    float *base = random_unit_vectors(n, dim);
    idx *ix = flat_with_rows(base, n, dim);
    float out[33];
    /* Removing from the front moves rows from the back into the holes. */
    for (size_t i = 0; i < n / 2; i++)
        ASSERT_OK(idx_remove(ix, i));
    for (size_t i = 0; i < n; i++) {
        if (i < n / 2) {
            ASSERT_EQ(idx_get(ix, i, out), DEJA_ERR_NOT_FOUND);
        } else {
            ASSERT_OK(idx_get(ix, i, out));
            ASSERT_MEM_EQ(out, base + i * dim, sizeof out);
        }
    }
    ASSERT_EQ(idx_remove(ix, 0), DEJA_ERR_NOT_FOUND);
    ASSERT_EQ(idx_get(ix, n + 5, out), DEJA_ERR_NOT_FOUND);
    idx_destroy(ix);
    free(base);
}

/* A random sequence of adds and removes under clustered and scattered
 * labels, checked against a plain array after every step: exercises the
 * hash map's probing and backward-shift deletion. */
static void test_label_map_survives_random_adds_and_removes(void) {
    const uint32_t dim = 4;
    const size_t universe = 4096;
    uint64_t *labels = malloc(universe * sizeof *labels);
    unsigned char *present = calloc(universe, 1);
    rng_seed(91);
    for (size_t i = 0; i < universe; i++)
        labels[i] = i < universe / 2 ? i * 64 : rng_next();
    idx *ix = flat_create(dim);
    size_t count = 0;
    float v[4], out[4];
    for (size_t step = 0; step < 60000; step++) {
        size_t i = rng_next() % universe;
        v[0] = (float)i;
        v[1] = v[2] = v[3] = 1.0f;
        if (present[i]) {
            ASSERT_OK(idx_remove(ix, labels[i]));
            present[i] = 0;
            count--;
        } else {
            ASSERT_OK(idx_add(ix, labels[i], v));
            present[i] = 1;
            count++;
        }
        if (step % 1000 == 0) {
            for (size_t j = 0; j < universe; j++) {
                int rc = idx_get(ix, labels[j], out);
                ASSERT_EQ(rc, present[j] ? 0 : DEJA_ERR_NOT_FOUND);
                if (present[j]) ASSERT_NEAR(out[0], (double)j, 0.0);
            }
        }
    }
    ASSERT_EQ(idx_count(ix), count);
    idx_destroy(ix);
    free(present);
    free(labels);
}

static void test_clear_removes_every_vector_and_keeps_the_dim(void) {
    rng_seed(101);
    float *base = random_unit_vectors(300, 24);
    idx *ix = flat_with_rows(base, 300, 24);
    size_t full = idx_memory(ix);
    idx_clear(ix);
    ASSERT_EQ(idx_count(ix), 0);
    ASSERT_EQ(idx_dim(ix), 24);
    ASSERT_LT(idx_memory(ix), full);
    idx_hit hits[3];
    uint32_t n = 5;
    float out[24];
    ASSERT_OK(idx_search(ix, base, 3, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 0);
    ASSERT_EQ(idx_get(ix, 7, out), DEJA_ERR_NOT_FOUND);
    /* The same labels may be added again. */
    for (size_t i = 0; i < 300; i++)
        ASSERT_OK(idx_add(ix, i, base + i * 24));
    ASSERT_OK(idx_search(ix, base + 7 * 24, 1, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_U64_EQ(hits[0].label, 7);
    idx_destroy(ix);
    free(base);
}

/* ---- memory ---------------------------------------------------------------*/

static void test_memory_grows_with_count_and_covers_the_raw_vectors(void) {
    const uint32_t dim = 200;
    rng_seed(111);
    float *base = random_unit_vectors(5000, dim);
    idx *ix = flat_create(dim);
    size_t previous = idx_memory(ix);
    ASSERT_GT(previous, 0);
    for (size_t i = 0; i < 5000; i++) {
        ASSERT_OK(idx_add(ix, i, base + i * dim));
        size_t now = idx_memory(ix);
        ASSERT_GE(now, previous);
        ASSERT_GT(now, (i + 1) * dim * sizeof(float));
        previous = now;
    }
    ASSERT_GT(previous, 5000 * (dim * sizeof(float) + sizeof(uint64_t)));
    idx_destroy(ix);
    free(base);
}

static void test_initial_capacity_is_allocated_up_front(void) {
    idx_config cfg = {.kind = IDX_KIND_FLAT, .dim = 64, .initial_capacity = 10000};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    size_t reserved = idx_memory(ix);
    ASSERT_GE(reserved, 10000 * 64 * sizeof(float));
    float v[64] = {1};
    for (uint64_t i = 0; i < 10000; i++)
        ASSERT_OK(idx_add(ix, i, v));
    ASSERT_EQ(idx_memory(ix), reserved);
    idx_destroy(ix);
}

/* ---- batch ----------------------------------------------------------------*/

typedef struct batch_case {
    uint32_t dim;
    size_t n;
    uint32_t nq;
    uint32_t k;
} batch_case;

static void check_batch_matches_single_searches(batch_case c, uint64_t seed) {
    rng_seed(seed);
    float *base = random_unit_vectors(c.n, c.dim);
    float *queries = random_unit_vectors(c.nq, c.dim);
    idx *ix = flat_with_rows(base, c.n, c.dim);
    rows_ctx ctx = {base, c.dim};
    idx_hit *batch = malloc((size_t)c.nq * c.k * sizeof *batch);
    uint32_t *nbatch = malloc(c.nq * sizeof *nbatch);
    idx_hit *single = malloc(c.k * sizeof *single);
    ASSERT_OK(idx_search_batch(ix, queries, c.nq, c.k, batch, nbatch));
    for (uint32_t q = 0; q < c.nq; q++) {
        const float *qv = queries + (size_t)q * c.dim;
        uint32_t nsingle = 0;
        ASSERT_OK(idx_search(ix, qv, c.k, -INFINITY, NULL, NULL, single, &nsingle));
        ASSERT_EQ(nbatch[q], c.k < c.n ? c.k : c.n);
        assert_hits_match(batch + (size_t)q * c.k, nbatch[q], single, nsingle, qv, c.dim,
                          row_of_label, &ctx, BATCH_EPS);
    }
    idx_destroy(ix);
    free(single);
    free(nbatch);
    free(batch);
    free(queries);
    free(base);
}

static void test_search_batch_equals_per_query_search(void) {
    /* 10000 rows of dim 128 span three row blocks, 130 queries three
     * query blocks, the last of each partial. */
    check_batch_matches_single_searches((batch_case){128, 10000, 130, 10}, 121);
    check_batch_matches_single_searches((batch_case){1536, 2000, 5, 10}, 122);
    check_batch_matches_single_searches((batch_case){7, 500, 65, 1}, 123);
    check_batch_matches_single_searches((batch_case){1, 100, 3, 10}, 124);
}

static void test_search_batch_with_k_above_count_returns_count(void) {
    check_batch_matches_single_searches((batch_case){32, 5, 4, 10}, 131);
}

static void test_search_batch_on_an_empty_index_finds_nothing(void) {
    idx *ix = flat_create(8);
    float q[16] = {1};
    idx_hit hits[6];
    uint32_t n[2] = {7, 7};
    ASSERT_OK(idx_search_batch(ix, q, 2, 3, hits, n));
    ASSERT_EQ(n[0], 0);
    ASSERT_EQ(n[1], 0);
    ASSERT_OK(idx_search_batch(ix, q, 0, 3, NULL, NULL));
    idx_destroy(ix);
}

/* ---- helpers --------------------------------------------------------------*/

static void test_normalize_makes_unit_vectors_and_rejects_bad_ones(void) {
    float v[3] = {3, 0, 4};
    ASSERT_OK(idx_normalize(v, 3));
    ASSERT_NEAR(v[0], 0.6, 1e-7);
    ASSERT_NEAR(v[2], 0.8, 1e-7);
    float tiny[2] = {1e-30f, 1e-30f};
    ASSERT_OK(idx_normalize(tiny, 2));
    ASSERT_NEAR(tiny[0], sqrt(0.5), 1e-7);
    float huge[2] = {3e38f, 3e38f};
    ASSERT_OK(idx_normalize(huge, 2));
    ASSERT_NEAR(huge[1], sqrt(0.5), 1e-7);
    float zero[4] = {0};
    ASSERT_EQ(idx_normalize(zero, 4), DEJA_ERR_BAD_VECTOR);
    float nan_v[2] = {1, NAN};
    ASSERT_EQ(idx_normalize(nan_v, 2), DEJA_ERR_BAD_VECTOR);
    float inf_v[2] = {INFINITY, 1};
    ASSERT_EQ(idx_normalize(inf_v, 2), DEJA_ERR_BAD_VECTOR);
    ASSERT_EQ(idx_normalize(v, 0), DEJA_ERR_BAD_VECTOR);
}

static void test_bruteforce_returns_row_numbers_best_first(void) {
    const float base[4 * 2] = {1, 0, 0, 1, -1, 0, 0.8f, 0.6f};
    const float query[2] = {1, 0};
    idx_hit hits[4];
    uint32_t n = 0;
    idx_bruteforce(base, 4, 2, query, 3, hits, &n);
    ASSERT_EQ(n, 3);
    ASSERT_U64_EQ(hits[0].label, 0);
    ASSERT_U64_EQ(hits[1].label, 3);
    ASSERT_U64_EQ(hits[2].label, 1);
    ASSERT_NEAR(hits[1].score, 0.8, 1e-7);
}

/* idx_score reads a stored vector where it is (flat) or through a copy
 * (kinds without the op, HNSW here): the same inner product either way. */
static void test_score_is_the_inner_product_with_the_stored_vector(void) {
    enum { N = 50, D = 96 };
    float *base = random_unit_vectors(N, D);
    float *query = random_unit_vectors(1, D);
    idx *flat = flat_with_rows(base, N, D);
    idx_config hcfg = {.kind = IDX_KIND_HNSW, .dim = D};
    idx *hnsw = NULL;
    ASSERT_OK(idx_create(&hcfg, &hnsw));
    for (size_t i = 0; i < N; i++)
        ASSERT_OK(idx_add(hnsw, i, base + i * D));
    idx *kinds[2] = {flat, hnsw};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < N; i++) {
            float got = -9.0f;
            ASSERT_OK(idx_score(kinds[k], i, query, &got));
            ASSERT_NEAR(got, idx_dot(query, base + i * D, D), 1e-5);
        }
        float s;
        ASSERT_EQ(idx_score(kinds[k], N + 7, query, &s), DEJA_ERR_NOT_FOUND);
        ASSERT_EQ(idx_score(kinds[k], 1, NULL, &s), DEJA_ERR_INVALID_ARG);
        ASSERT_EQ(idx_score(kinds[k], 1, query, NULL), DEJA_ERR_INVALID_ARG);
    }
    /* After a removal moved the last row into the hole. */
    ASSERT_OK(idx_remove(flat, 3));
    float s;
    ASSERT_EQ(idx_score(flat, 3, query, &s), DEJA_ERR_NOT_FOUND);
    ASSERT_OK(idx_score(flat, N - 1, query, &s));
    ASSERT_NEAR(s, idx_dot(query, base + (N - 1) * D, D), 1e-5);
    idx_destroy(flat);
    idx_destroy(hnsw);
    free(base);
    free(query);
}

int main(void) {
    idx_simd_init();
    fprintf(stderr, "kernel: %s\n", idx_simd_name());
    RUN(test_create_rejects_zero_and_oversized_dims);
    RUN(test_create_rejects_unknown_kinds_and_null_arguments);
    RUN(test_calls_with_null_pointers_are_invalid_arg);
    RUN(test_add_of_a_present_label_is_invalid_arg);
    RUN(test_search_matches_bruteforce_in_small_dims);
    RUN(test_search_matches_bruteforce_on_20000_vectors_of_dim_128);
    RUN(test_search_matches_bruteforce_on_embedding_dims);
    RUN(test_equal_scores_rank_the_lower_label_first);
    RUN(test_search_with_k_above_count_returns_every_vector);
    RUN(test_search_with_k_zero_or_on_an_empty_index_finds_nothing);
    RUN(test_min_score_keeps_exactly_the_scores_at_or_above_it);
    RUN(test_a_score_equal_to_min_score_is_kept);
    RUN(test_filter_excludes_labels_and_runs_only_for_heap_candidates);
    RUN(test_filter_rejecting_everything_finds_nothing);
    RUN(test_search_never_returns_removed_labels);
    RUN(test_removed_storage_is_reused_by_later_adds);
    RUN(test_get_returns_the_stored_vector_even_after_rows_move);
    RUN(test_label_map_survives_random_adds_and_removes);
    RUN(test_clear_removes_every_vector_and_keeps_the_dim);
    RUN(test_memory_grows_with_count_and_covers_the_raw_vectors);
    RUN(test_initial_capacity_is_allocated_up_front);
    RUN(test_search_batch_equals_per_query_search);
    RUN(test_search_batch_with_k_above_count_returns_count);
    RUN(test_search_batch_on_an_empty_index_finds_nothing);
    RUN(test_normalize_makes_unit_vectors_and_rejects_bad_ones);
    RUN(test_bruteforce_returns_row_numbers_best_first);
    RUN(test_score_is_the_inner_product_with_the_stored_vector);
    return harness_result();
}
