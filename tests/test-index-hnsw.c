/* test-index-hnsw.c: the HNSW index finds what brute force finds (recall
 * at a stated ef), returns results best first, honours thresholds,
 * filters and removals, stores vectors exactly, builds reproducibly from a
 * seed, and accounts for its memory. */
#include <stdint.h>

#include "harness.h"
#include "idx.h"
#include "support/vectors.h"

static idx *hnsw_create(uint32_t dim, uint64_t seed) {
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = dim, .seed = seed};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    ASSERT_TRUE(ix != NULL);
    return ix;
}

/* An index holding base[i] under label i. */
static idx *hnsw_with_rows(const float *base, size_t n, uint32_t dim, uint64_t seed) {
    idx *ix = hnsw_create(dim, seed);
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

/* Results best first, no label twice, each score the label's true score. */
static void assert_hits_valid(const idx_hit *got, uint32_t n, const float *query,
                              const float *base, uint32_t dim) {
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0) ASSERT_TRUE(got[i - 1].score >= got[i].score);
        for (uint32_t j = 0; j < i; j++)
            ASSERT_TRUE(got[j].label != got[i].label);
        ASSERT_NEAR(exact_dot(query, base + got[i].label * dim, dim), got[i].score, 1e-5);
    }
}

/* Field by field: idx_hit has padding bytes that memcmp would see. */
static void assert_same_hits(const idx_hit *a, const idx_hit *b, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        ASSERT_U64_EQ(a[i].label, b[i].label);
        ASSERT_TRUE(a[i].score == b[i].score);
    }
}

/* ---- configuration --------------------------------------------------------*/

static void test_create_applies_defaults_and_rejects_bad_parameters(void) {
    idx *ix = NULL;
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = 8};
    ASSERT_OK(idx_create(&cfg, &ix));
    ASSERT_EQ(idx_dim(ix), 8);
    ASSERT_EQ(idx_count(ix), 0);
    ASSERT_EQ(idx_concurrent_writes(ix), 1);
    idx_destroy(ix);
    cfg.M = 1;
    ASSERT_EQ(idx_create(&cfg, &ix), DEJA_ERR_INVALID_ARG);
    cfg.M = 65;
    ASSERT_EQ(idx_create(&cfg, &ix), DEJA_ERR_INVALID_ARG);
    cfg.M = 8;
    cfg.quant = (enum idx_quant)7;
    ASSERT_EQ(idx_create(&cfg, &ix), DEJA_ERR_INVALID_ARG);
    ASSERT_TRUE(ix == NULL);
}

static void test_empty_index_finds_nothing(void) {
    idx *ix = hnsw_create(16, 1);
    float q[16] = {1};
    idx_hit hits[4];
    uint32_t n = 9;
    ASSERT_OK(idx_search(ix, q, 4, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 0);
    idx_destroy(ix);
}

/* ---- recall ---------------------------------------------------------------*/

/* Mean recall@10 of nq paraphrase queries at breadth ef. */
static double recall_at_10(idx *ix, const float *base, size_t n, uint32_t dim,
                           uint32_t nq, uint32_t ef, uint64_t seed) {
    vec_rng r = {seed};
    float *q = malloc(dim * sizeof *q);
    idx_hit got[10], want[10];
    double sum = 0.0;
    for (uint32_t i = 0; i < nq; i++) {
        vec_paraphrase(&r, base, n, dim, q);
        uint32_t ngot = 0, nwant = 0;
        ASSERT_OK(idx_search_ef(ix, q, 10, ef, -INFINITY, NULL, NULL, got, &ngot));
        idx_bruteforce(base, n, dim, q, 10, want, &nwant);
        ASSERT_EQ(ngot, 10);
        assert_hits_valid(got, ngot, q, base, dim);
        sum += vec_recall(got, ngot, want, nwant);
    }
    free(q);
    return sum / nq;
}

static void test_recall_at_10_is_at_least_095_at_ef_64_on_5000_x_128(void) {
    const uint32_t dim = 128;
    const size_t n = 5000;
    vec_rng r = {11};
    /* Loose clusters: a search must work to find the true neighbours. */
    float *base = vec_clustered_spread(&r, n, dim, 50, 2.0f);
    idx *ix = hnsw_with_rows(base, n, dim, 0);
    double recall = recall_at_10(ix, base, n, dim, 200, 64, 12);
    fprintf(stderr, "   recall@10 at ef 64: %.4f\n", recall);
    ASSERT_TRUE(recall >= 0.95);
    /* A larger ef per call never finds less on average. */
    double wide = recall_at_10(ix, base, n, dim, 200, 256, 12);
    fprintf(stderr, "   recall@10 at ef 256: %.4f\n", wide);
    ASSERT_TRUE(wide >= recall);
    idx_destroy(ix);
    free(base);
}

static void test_small_index_returns_every_vector_when_k_exceeds_count(void) {
    const uint32_t dim = 24;
    vec_rng r = {21};
    float *base = vec_random_units(&r, 7, dim);
    idx *ix = hnsw_with_rows(base, 7, dim, 0);
    idx_hit hits[20];
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, base, 20, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 7);
    ASSERT_U64_EQ(hits[0].label, 0);
    assert_hits_valid(hits, n, base, base, dim);
    idx_destroy(ix);
    free(base);
}

static void test_identical_scores_rank_the_lower_label_first(void) {
    float v[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    idx *ix = hnsw_create(4, 0);
    for (uint64_t label = 10; label > 0; label--)
        ASSERT_OK(idx_add(ix, label, v));
    idx_hit hits[10];
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, v, 10, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 10);
    for (uint32_t i = 0; i < n; i++)
        ASSERT_U64_EQ(hits[i].label, i + 1);
    idx_destroy(ix);
}

/* ---- threshold, filter, removal -------------------------------------------*/

static void test_min_score_drops_results_below_it(void) {
    const uint32_t dim = 64;
    const size_t n = 2000;
    vec_rng r = {31};
    float *base = vec_clustered(&r, n, dim, 20);
    idx *ix = hnsw_with_rows(base, n, dim, 0);
    float q[64];
    idx_hit hits[10];
    for (int i = 0; i < 50; i++) {
        vec_paraphrase(&r, base, n, dim, q);
        uint32_t n_all = 0, n_cut = 0;
        ASSERT_OK(idx_search(ix, q, 10, -INFINITY, NULL, NULL, hits, &n_all));
        float cut = hits[4].score;
        ASSERT_OK(idx_search(ix, q, 10, cut, NULL, NULL, hits, &n_cut));
        ASSERT_GE(n_cut, 5);
        for (uint32_t j = 0; j < n_cut; j++)
            ASSERT_TRUE(hits[j].score >= cut);
        ASSERT_OK(idx_search(ix, q, 10, 1.5f, NULL, NULL, hits, &n_cut));
        ASSERT_EQ(n_cut, 0);
    }
    idx_destroy(ix);
    free(base);
}

typedef struct filter_state {
    uint64_t modulus;
    uint64_t calls;
} filter_state;

static int accept_multiples(void *ctx, uint64_t label) {
    filter_state *f = ctx;
    f->calls++;
    return label % f->modulus == 0;
}

static void test_filter_rejects_labels_and_search_still_fills_k(void) {
    const uint32_t dim = 64;
    const size_t n = 3000;
    vec_rng r = {41};
    float *base = vec_clustered(&r, n, dim, 30);
    idx *ix = hnsw_with_rows(base, n, dim, 0);
    float q[64];
    idx_hit hits[10];
    /* Only one label in 50 passes: the search must keep going past the
     * rejected ones to fill k. */
    filter_state f = {50, 0};
    for (int i = 0; i < 30; i++) {
        vec_paraphrase(&r, base, n, dim, q);
        uint32_t got = 0;
        ASSERT_OK(idx_search(ix, q, 10, -INFINITY, accept_multiples, &f, hits, &got));
        ASSERT_EQ(got, 10);
        for (uint32_t j = 0; j < got; j++)
            ASSERT_EQ(hits[j].label % 50, 0);
        assert_hits_valid(hits, got, q, base, dim);
    }
    ASSERT_GT(f.calls, 0);
    idx_destroy(ix);
    free(base);
}

static void test_removed_labels_are_never_returned(void) {
    const uint32_t dim = 48;
    const size_t n = 2000;
    vec_rng r = {51};
    float *base = vec_clustered(&r, n, dim, 20);
    idx *ix = hnsw_with_rows(base, n, dim, 0);
    for (size_t i = 0; i < n; i += 3)
        ASSERT_OK(idx_remove(ix, i));
    ASSERT_EQ(idx_count(ix), n - (n + 2) / 3);
    ASSERT_EQ(idx_remove(ix, 0), DEJA_ERR_NOT_FOUND);
    idx_hit hits[20];
    for (size_t i = 0; i < n; i += 7) {
        uint32_t got = 0;
        ASSERT_OK(idx_search(ix, base + i * dim, 20, -INFINITY, NULL, NULL, hits, &got));
        ASSERT_EQ(got, 20);
        for (uint32_t j = 0; j < got; j++)
            ASSERT_NE(hits[j].label % 3, 0);
        /* A vector still present finds itself first. */
        if (i % 3 != 0) ASSERT_U64_EQ(hits[0].label, i);
    }
    idx_destroy(ix);
    free(base);
}

static void test_removing_every_vector_leaves_an_index_that_finds_nothing(void) {
    const uint32_t dim = 32;
    const size_t n = 500;
    vec_rng r = {61};
    float *base = vec_clustered(&r, n, dim, 5);
    idx *ix = hnsw_with_rows(base, n, dim, 0);
    idx_hit hits[5];
    uint32_t got = 9;
    /* Removing in insertion order removes the entry point early on. */
    for (size_t i = 0; i < n; i++) {
        ASSERT_OK(idx_remove(ix, i));
        if (i % 50 == 0 && i + 5 < n) {
            ASSERT_OK(idx_search(ix, base + (n - 1) * dim, 5, -INFINITY, NULL, NULL, hits,
                                 &got));
            ASSERT_EQ(got, 5);
            ASSERT_U64_EQ(hits[0].label, n - 1);
        }
    }
    ASSERT_EQ(idx_count(ix), 0);
    ASSERT_OK(idx_search(ix, base, 5, -INFINITY, NULL, NULL, hits, &got));
    ASSERT_EQ(got, 0);
    /* And it fills up again. */
    for (size_t i = 0; i < 10; i++)
        ASSERT_OK(idx_add(ix, 1000 + i, base + i * dim));
    ASSERT_OK(idx_search(ix, base + 3 * dim, 5, -INFINITY, NULL, NULL, hits, &got));
    ASSERT_EQ(got, 5);
    ASSERT_U64_EQ(hits[0].label, 1003);
    idx_destroy(ix);
    free(base);
}

/* ---- storage --------------------------------------------------------------*/

static void test_get_returns_the_stored_vector(void) {
    const uint32_t dim = 37;
    vec_rng r = {71};
    float *base = vec_random_units(&r, 300, dim);
    idx *ix = hnsw_with_rows(base, 300, dim, 0);
    float out[37];
    for (size_t i = 0; i < 300; i++) {
        ASSERT_OK(idx_get(ix, i, out));
        ASSERT_MEM_EQ(out, base + i * dim, sizeof out);
    }
    ASSERT_OK(idx_remove(ix, 5));
    ASSERT_EQ(idx_get(ix, 5, out), DEJA_ERR_NOT_FOUND);
    ASSERT_EQ(idx_get(ix, 300, out), DEJA_ERR_NOT_FOUND);
    idx_destroy(ix);
    free(base);
}

static void test_add_of_a_present_label_is_invalid_arg(void) {
    idx *ix = hnsw_create(3, 0);
    float a[3] = {1, 0, 0}, b[3] = {0, 1, 0}, out[3];
    ASSERT_OK(idx_add(ix, 42, a));
    ASSERT_EQ(idx_add(ix, 42, b), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_count(ix), 1);
    ASSERT_OK(idx_get(ix, 42, out));
    ASSERT_MEM_EQ(out, a, sizeof a);
    /* A removed label may be added again. */
    ASSERT_OK(idx_remove(ix, 42));
    ASSERT_OK(idx_add(ix, 42, b));
    ASSERT_OK(idx_get(ix, 42, out));
    ASSERT_MEM_EQ(out, b, sizeof b);
    idx_destroy(ix);
}

static void test_a_vector_with_nan_is_never_returned(void) {
    float good[4] = {1, 0, 0, 0}, bad[4] = {NAN, 0, 0, 0};
    idx *ix = hnsw_create(4, 0);
    ASSERT_OK(idx_add(ix, 1, good));
    ASSERT_OK(idx_add(ix, 2, bad));
    idx_hit hits[2];
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, good, 2, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_EQ(n, 1);
    ASSERT_U64_EQ(hits[0].label, 1);
    idx_destroy(ix);
}

static void test_same_seed_builds_give_the_same_results(void) {
    const uint32_t dim = 32;
    const size_t n = 2000;
    vec_rng r = {81};
    float *base = vec_clustered(&r, n, dim, 20);
    idx *a = hnsw_with_rows(base, n, dim, 1234);
    idx *b = hnsw_with_rows(base, n, dim, 1234);
    idx_hit ha[10], hb[10];
    float q[32];
    for (int i = 0; i < 100; i++) {
        vec_paraphrase(&r, base, n, dim, q);
        uint32_t na = 0, nb = 0;
        /* A narrow search follows the graph closely: any difference in
         * the builds would show. */
        ASSERT_OK(idx_search_ef(a, q, 10, 10, -INFINITY, NULL, NULL, ha, &na));
        ASSERT_OK(idx_search_ef(b, q, 10, 10, -INFINITY, NULL, NULL, hb, &nb));
        ASSERT_EQ(na, nb);
        assert_same_hits(ha, hb, na);
    }
    ASSERT_EQ(idx_memory(a), idx_memory(b));
    idx_destroy(a);
    idx_destroy(b);
    free(base);
}

static void test_memory_grows_with_count_and_its_breakdown_adds_up(void) {
    const uint32_t dim = 100;
    vec_rng r = {91};
    float *base = vec_random_units(&r, 3000, dim);
    idx *ix = hnsw_create(dim, 0);
    size_t previous = idx_memory(ix);
    ASSERT_GT(previous, 0);
    for (size_t i = 0; i < 3000; i++) {
        ASSERT_OK(idx_add(ix, i, base + i * dim));
        if (i % 100 == 0) {
            size_t now = idx_memory(ix);
            ASSERT_GE(now, previous);
            previous = now;
        }
    }
    idx_memory_info m;
    ASSERT_OK(idx_memory_breakdown(ix, &m));
    ASSERT_EQ(m.vectors + m.exact + m.graph + m.other, idx_memory(ix));
    ASSERT_GE(m.vectors, 3000 * dim * sizeof(float));
    ASSERT_EQ(m.exact, 0);
    /* At least the level-0 links: M0 = 32 ids per node. */
    ASSERT_GE(m.graph, 3000 * 32 * sizeof(uint32_t));
    ASSERT_EQ(idx_memory_breakdown(ix, NULL), DEJA_ERR_INVALID_ARG);
    size_t full = idx_memory(ix);
    idx_clear(ix);
    ASSERT_EQ(idx_count(ix), 0);
    ASSERT_LT(idx_memory(ix), full / 10);
    ASSERT_OK(idx_add(ix, 5, base));
    idx_hit hit;
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, base, 1, -INFINITY, NULL, NULL, &hit, &n));
    ASSERT_EQ(n, 1);
    ASSERT_U64_EQ(hit.label, 5);
    idx_destroy(ix);
    free(base);
}

static void test_initial_capacity_is_allocated_up_front(void) {
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = 64, .initial_capacity = 5000};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    idx_memory_info m;
    ASSERT_OK(idx_memory_breakdown(ix, &m));
    ASSERT_GE(m.vectors, 5000 * 64 * sizeof(float));
    idx_destroy(ix);
}

static void test_batch_search_answers_like_single_searches(void) {
    const uint32_t dim = 32;
    const size_t n = 1000;
    vec_rng r = {101};
    float *base = vec_clustered(&r, n, dim, 10);
    idx *ix = hnsw_with_rows(base, n, dim, 0);
    idx_hit batch[5 * 4], one[5];
    uint32_t nb[4], n1 = 0;
    ASSERT_OK(idx_search_batch(ix, base, 4, 5, batch, nb));
    for (uint32_t q = 0; q < 4; q++) {
        ASSERT_OK(idx_search(ix, base + q * dim, 5, -INFINITY, NULL, NULL, one, &n1));
        ASSERT_EQ(nb[q], n1);
        assert_same_hits(batch + q * 5, one, n1);
    }
    idx_destroy(ix);
    free(base);
}

int main(void) {
    idx_simd_init();
    RUN(test_create_applies_defaults_and_rejects_bad_parameters);
    RUN(test_empty_index_finds_nothing);
    RUN(test_recall_at_10_is_at_least_095_at_ef_64_on_5000_x_128);
    RUN(test_small_index_returns_every_vector_when_k_exceeds_count);
    RUN(test_identical_scores_rank_the_lower_label_first);
    RUN(test_min_score_drops_results_below_it);
    RUN(test_filter_rejects_labels_and_search_still_fills_k);
    RUN(test_removed_labels_are_never_returned);
    RUN(test_removing_every_vector_leaves_an_index_that_finds_nothing);
    RUN(test_get_returns_the_stored_vector);
    RUN(test_add_of_a_present_label_is_invalid_arg);
    RUN(test_a_vector_with_nan_is_never_returned);
    RUN(test_same_seed_builds_give_the_same_results);
    RUN(test_memory_grows_with_count_and_its_breakdown_adds_up);
    RUN(test_initial_capacity_is_allocated_up_front);
    RUN(test_batch_search_answers_like_single_searches);
    return harness_result();
}
