/* test-index-quant.c: int8 quantisation for HNSW. Every int8 kernel this
 * CPU runs equals the scalar one exactly and never reads past its inputs;
 * an int8 index finds the same threshold hits as an f32 one, returns
 * exact f32 scores and vectors, and keeps the vectors it scans in about a
 * quarter of the bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "idx.h"
#include "support/vectors.h"

static const idx_kernel_i8 *scalar_i8(void) {
    const idx_kernel_i8 *k = idx_kernel_i8_get(idx_kernel_i8_count() - 1);
    ASSERT_TRUE(k != NULL);
    ASSERT_STR_EQ(k->name, "scalar");
    return k;
}

/* Random codes, with the extremes -128 and 127 over-represented: they
 * are where an offset or saturation trick would break exactness. */
static void fill_codes(vec_rng *r, int8_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t x = vec_rng_next(r);
        v[i] = (x & 7) == 0 ? -128 : (x & 7) == 1 ? 127 : (int8_t)(x >> 8);
    }
}

static void check_equal(const idx_kernel_i8 *k, const int8_t *a, const int8_t *b,
                        size_t n) {
    int32_t want = scalar_i8()->dot(a, b, n);
    int32_t got = k->dot(a, b, n);
    if (got != want)
        HARNESS_FAIL("kernel %s, n=%zu: %d vs scalar %d", k->name, n, (int)got,
                     (int)want);
}

static void test_scalar_int8_kernel_computes_the_inner_product(void) {
    const int8_t a[5] = {1, -2, 3, -128, 127}, b[5] = {5, 4, -3, -128, 127};
    ASSERT_EQ(scalar_i8()->dot(a, b, 5), 5 - 8 - 9 + 16384 + 16129);
    ASSERT_EQ(scalar_i8()->dot(a, b, 0), 0);
}

static void test_int8_kernels_equal_scalar_for_all_lengths_and_offsets(void) {
    idx_simd_init();
    static int8_t a[4200], b[4200];
    vec_rng r = {1};
    for (size_t i = 0; i < idx_kernel_i8_count(); i++) {
        const idx_kernel_i8 *k = idx_kernel_i8_get(i);
        if (!k->supported) continue;
        for (size_t n = 0; n <= 300; n++) {
            fill_codes(&r, a, n + 3);
            fill_codes(&r, b, n + 3);
            check_equal(k, a, b, n);
            check_equal(k, a + 1, b + 3, n);
        }
        const size_t lengths[] = {384, 768, 1024, 1536, 3072, 4096};
        for (size_t j = 0; j < 6; j++) {
            fill_codes(&r, a, lengths[j] + 1);
            fill_codes(&r, b, lengths[j] + 1);
            check_equal(k, a, b, lengths[j]);
            check_equal(k, a + 1, b, lengths[j]);
            /* All -128: the largest products, the worst case for
             * overflow and for the unsigned offset of VNNI. */
            memset(a, 0x80, lengths[j]);
            memset(b, 0x80, lengths[j]);
            check_equal(k, a, b, lengths[j]);
            ASSERT_EQ(k->dot(a, b, lengths[j]), 16384 * (int32_t)lengths[j]);
        }
    }
}

static void test_int8_kernels_never_read_past_the_end(void) {
    idx_simd_init();
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, (size_t)page * 4, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(map != MAP_FAILED);
    ASSERT_EQ(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    ASSERT_EQ(mprotect(map + 3 * page, (size_t)page, PROT_NONE), 0);
    int8_t *a_end = (int8_t *)(map + page), *b_end = (int8_t *)(map + 3 * page);
    vec_rng r = {2};
    for (size_t i = 0; i < idx_kernel_i8_count(); i++) {
        const idx_kernel_i8 *k = idx_kernel_i8_get(i);
        if (!k->supported) continue;
        for (size_t n = 1; n <= 200; n++) {
            fill_codes(&r, a_end - n, n);
            fill_codes(&r, b_end - n, n);
            check_equal(k, a_end - n, b_end - n, n);
        }
    }
    munmap(map, (size_t)page * 4);
}

static void test_deja_simd_limits_the_int8_kernel_to_its_level(void) {
    ASSERT_EQ(setenv("DEJA_SIMD", "scalar", 1), 0);
    idx_simd_init();
    ASSERT_STR_EQ(idx_simd_i8_name(), "scalar");
    ASSERT_EQ(setenv("DEJA_SIMD", "avx2", 1), 0);
    idx_simd_init();
    ASSERT_TRUE(strcmp(idx_simd_i8_name(), "avx2") == 0 ||
                strcmp(idx_simd_i8_name(), "scalar") == 0);
    unsetenv("DEJA_SIMD");
    idx_simd_init();
    /* Unforced, the first supported kernel of the table is active. */
    const char *best = NULL;
    for (size_t i = 0; i < idx_kernel_i8_count() && !best; i++)
        if (idx_kernel_i8_get(i)->supported) best = idx_kernel_i8_get(i)->name;
    ASSERT_STR_EQ(idx_simd_i8_name(), best);
}

/* ---- the int8 index ---------------------------------------------------------*/

#define DIM 256
#define N 4000
#define NQ 2000
#define THRESHOLD 0.85f

static idx *quant_index(enum idx_quant quant) {
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = DIM, .quant = quant};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    return ix;
}

typedef struct workload {
    float *base;    /* N x DIM */
    float *queries; /* NQ x DIM: 70% paraphrases at cosine 0.86..0.98 */
} workload;

static workload make_workload(void) {
    vec_rng r = {31};
    workload w;
    w.base = vec_clustered(&r, N, DIM, 80);
    w.queries = malloc((size_t)NQ * DIM * sizeof(float));
    for (size_t q = 0; q < NQ; q++) {
        float *v = w.queries + q * DIM;
        const float *src = w.base + (vec_rng_next(&r) % N) * DIM;
        if (q % 10 < 7)
            vec_paraphrase_at(&r, src, 0.86f + 0.12f * vec_rng_unit(&r), DIM, v);
        else
            vec_perturb(&r, src, 1.0f / sqrtf(DIM), DIM, v); /* novel */
    }
    return w;
}

/* Both tests below search the same pair of indexes, built once. */
static workload fixture_data;
static idx *fixture_f32, *fixture_i8;
static float fixture_best[NQ]; /* exact best score of each query */

static void fixture(void) {
    if (fixture_f32) return;
    fixture_data = make_workload();
    fixture_f32 = quant_index(IDX_QUANT_F32);
    fixture_i8 = quant_index(IDX_QUANT_INT8);
    for (size_t i = 0; i < N; i++) {
        ASSERT_OK(idx_add(fixture_f32, i, fixture_data.base + i * DIM));
        ASSERT_OK(idx_add(fixture_i8, i, fixture_data.base + i * DIM));
    }
    for (size_t q = 0; q < NQ; q++) {
        idx_hit best;
        uint32_t n = 0;
        idx_bruteforce(fixture_data.base, N, DIM, fixture_data.queries + q * DIM, 1,
                       &best, &n);
        fixture_best[q] = best.score;
    }
}

static void fixture_free(void) {
    idx_destroy(fixture_f32);
    idx_destroy(fixture_i8);
    free(fixture_data.base);
    free(fixture_data.queries);
}

typedef struct hit_stats {
    uint32_t need; /* queries whose exact best is >= THRESHOLD */
    uint32_t got;  /* ... that also got a result >= THRESHOLD */
} hit_stats;

static hit_stats threshold_hits(idx *ix, const workload *w) {
    hit_stats st = {0, 0};
    idx_hit hits[10];
    for (size_t q = 0; q < NQ; q++) {
        const float *v = w->queries + q * DIM;
        uint32_t n = 0;
        ASSERT_OK(idx_search(ix, v, 10, THRESHOLD, NULL, NULL, hits, &n));
        for (uint32_t i = 0; i < n; i++) {
            ASSERT_TRUE(hits[i].score >= THRESHOLD);
            /* Scores are exact f32 cosines, whatever was traversed. */
            double s = 0.0;
            for (uint32_t d = 0; d < DIM; d++)
                s += (double)v[d] * w->base[hits[i].label * DIM + d];
            ASSERT_NEAR(hits[i].score, s, 1e-5);
        }
        if (fixture_best[q] >= THRESHOLD) {
            st.need++;
            if (n > 0) st.got++;
        }
    }
    return st;
}

static void test_int8_finds_the_threshold_hits_f32_finds(void) {
    fixture();
    idx *f32 = fixture_f32, *i8 = fixture_i8;
    hit_stats a = threshold_hits(f32, &fixture_data),
              b = threshold_hits(i8, &fixture_data);
    fprintf(stderr, "   hits at %.2f: f32 %u/%u, int8 %u/%u\n", (double)THRESHOLD, a.got,
            a.need, b.got, b.need);
    ASSERT_GT(b.need, NQ / 2);
    ASSERT_TRUE(b.got >= 0.999 * b.need);
    ASSERT_TRUE(b.got >= a.got);

    /* The vectors a search scans take about a quarter of the bytes. */
    idx_memory_info mf, mi;
    ASSERT_OK(idx_memory_breakdown(f32, &mf));
    ASSERT_OK(idx_memory_breakdown(i8, &mi));
    fprintf(stderr, "   scanned vector bytes per entry: f32 %.0f, int8 %.0f\n",
            (double)mf.vectors / N, (double)mi.vectors / N);
    ASSERT_TRUE((double)mi.vectors <= 0.35 * (double)mf.vectors);
    /* The exact copies re-rank; f32 keeps none. */
    ASSERT_GE(mi.exact, (size_t)N * DIM * sizeof(float));
    ASSERT_EQ(mf.exact, 0);
}

static void test_int8_recall_at_10_is_close_to_f32(void) {
    fixture();
    idx *f32 = fixture_f32, *i8 = fixture_i8;
    const workload *w = &fixture_data;
    double rf = 0.0, ri = 0.0;
    idx_hit want[10], got[10];
    for (size_t q = 0; q < 500; q++) {
        const float *v = w->queries + q * DIM;
        uint32_t nw = 0, n = 0;
        idx_bruteforce(w->base, N, DIM, v, 10, want, &nw);
        ASSERT_OK(idx_search(f32, v, 10, -INFINITY, NULL, NULL, got, &n));
        rf += vec_recall(got, n, want, nw);
        ASSERT_OK(idx_search(i8, v, 10, -INFINITY, NULL, NULL, got, &n));
        ASSERT_EQ(n, 10);
        ri += vec_recall(got, n, want, nw);
    }
    fprintf(stderr, "   recall@10: f32 %.4f, int8 %.4f\n", rf / 500, ri / 500);
    ASSERT_TRUE(ri / 500 >= rf / 500 - 0.01);
}

static void test_int8_get_returns_the_exact_f32_vector(void) {
    vec_rng r = {41};
    float *base = vec_random_units(&r, 100, 77);
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = 77, .quant = IDX_QUANT_INT8};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    for (size_t i = 0; i < 100; i++)
        ASSERT_OK(idx_add(ix, i, base + i * 77));
    float out[77];
    for (size_t i = 0; i < 100; i++) {
        ASSERT_OK(idx_get(ix, i, out));
        ASSERT_MEM_EQ(out, base + i * 77, sizeof out);
    }
    /* A stored vector finds itself with its exact score. */
    idx_hit hit;
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, base + 42 * 77, 1, -INFINITY, NULL, NULL, &hit, &n));
    ASSERT_EQ(n, 1);
    ASSERT_U64_EQ(hit.label, 42);
    ASSERT_NEAR(hit.score, 1.0, 1e-5);
    idx_destroy(ix);
    free(base);
}

static void test_int8_handles_zero_and_non_finite_vectors(void) {
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = 4, .quant = IDX_QUANT_INT8};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    float zero[4] = {0}, inf[4] = {INFINITY, 0, 0, 0}, nan[4] = {NAN, 1, 0, 0};
    float good[4] = {0, 1, 0, 0};
    ASSERT_OK(idx_add(ix, 1, zero));
    ASSERT_OK(idx_add(ix, 2, inf));
    ASSERT_OK(idx_add(ix, 3, nan));
    ASSERT_OK(idx_add(ix, 4, good));
    idx_hit hits[4];
    uint32_t n = 0;
    ASSERT_OK(idx_search(ix, good, 4, -INFINITY, NULL, NULL, hits, &n));
    ASSERT_GE(n, 1);
    ASSERT_U64_EQ(hits[0].label, 4);
    for (uint32_t i = 0; i < n; i++)
        ASSERT_TRUE(hits[i].label != 3);
    idx_destroy(ix);
}

/* ---- exact_external: the f32 vectors live with the caller ------------------*/

/* A source over an array, counting what it is asked for; removed[label]
 * makes it answer NULL, as the server's store does for a deleted entry. */
typedef struct array_source {
    const float *base;
    uint32_t dim;
    const uint8_t *removed;
    size_t fetched;
} array_source;

static const float *array_vector(void *ctx, uint64_t label, float *scratch) {
    array_source *a = ctx;
    a->fetched++;
    if (a->removed && a->removed[label]) return NULL;
    /* Through scratch for odd labels: both ways of answering are used. */
    if (label % 2) {
        memcpy(scratch, a->base + label * a->dim, a->dim * sizeof(float));
        return scratch;
    }
    return a->base + label * a->dim;
}

static idx *external_index(const float *base, size_t n) {
    idx_config cfg = {
        .kind = IDX_KIND_HNSW, .dim = DIM, .quant = IDX_QUANT_INT8, .exact_external = 1};
    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(idx_add(ix, i, base + i * DIM));
    return ix;
}

static void test_an_external_int8_index_keeps_codes_only_and_scores_exactly(void) {
    fixture();
    const workload *w = &fixture_data;
    idx *ix = external_index(w->base, N);
    idx_memory_info mi;
    ASSERT_OK(idx_memory_breakdown(ix, &mi));
    ASSERT_EQ(mi.exact, 0);
    array_source a = {.base = w->base, .dim = DIM};
    idx_exact_source src = {.vector = array_vector, .ctx = &a};
    idx_hit got[10], ref[10];
    uint32_t hits_need = 0, hits_got = 0;
    for (size_t q = 0; q < NQ; q++) {
        const float *v = w->queries + q * DIM;
        uint32_t n = 0, nr = 0;
        /* With a threshold: the same hits as the int8 index with copies,
         * with the same exact scores. */
        ASSERT_OK(idx_search_src(ix, v, 10, 0, THRESHOLD, NULL, NULL, &src, got, &n));
        ASSERT_OK(idx_search(fixture_i8, v, 10, THRESHOLD, NULL, NULL, ref, &nr));
        ASSERT_EQ(n, nr);
        for (uint32_t i = 0; i < n; i++) {
            ASSERT_U64_EQ(got[i].label, ref[i].label);
            ASSERT_NEAR(got[i].score, ref[i].score, 1e-6);
        }
        if (fixture_best[q] >= THRESHOLD) {
            hits_need++;
            hits_got += n > 0;
        }
    }
    ASSERT_TRUE(hits_got >= 0.999 * hits_need);
    /* The bound rules most candidates out: far fewer fetches than the
     * ef (64) a full re-rank would read per query. */
    fprintf(stderr, "   vectors fetched per thresholded query: %.1f\n",
            (double)a.fetched / NQ);
    ASSERT_LT(a.fetched, (size_t)NQ * 16);
    /* Without a source the index cannot answer; get has nothing to give. */
    uint32_t n = 0;
    ASSERT_EQ(idx_search(ix, w->queries, 1, -INFINITY, NULL, NULL, got, &n),
              DEJA_ERR_INVALID_ARG);
    float out[DIM];
    ASSERT_EQ(idx_get(ix, 0, out), DEJA_ERR_INVALID_ARG);
    idx_destroy(ix);
}

static void test_an_external_int8_index_ranks_the_top_10_exactly(void) {
    fixture();
    const workload *w = &fixture_data;
    idx *ix = external_index(w->base, N);
    array_source a = {.base = w->base, .dim = DIM};
    idx_exact_source src = {.vector = array_vector, .ctx = &a};
    idx_hit got[10], ref[10];
    for (size_t q = 0; q < 200; q++) {
        const float *v = w->queries + q * DIM;
        uint32_t n = 0, nr = 0;
        /* No threshold: pruning by the 10th best exact score alone must
         * give what re-ranking every candidate gives. */
        ASSERT_OK(idx_search_src(ix, v, 10, 0, -INFINITY, NULL, NULL, &src, got, &n));
        ASSERT_OK(idx_search(fixture_i8, v, 10, -INFINITY, NULL, NULL, ref, &nr));
        ASSERT_EQ(n, nr);
        for (uint32_t i = 0; i < n; i++) {
            ASSERT_U64_EQ(got[i].label, ref[i].label);
            ASSERT_NEAR(got[i].score, ref[i].score, 1e-6);
        }
    }
    idx_destroy(ix);
}

static void test_a_vector_gone_from_the_source_drops_its_candidate(void) {
    fixture();
    const workload *w = &fixture_data;
    idx *ix = external_index(w->base, N);
    static uint8_t removed[N];
    array_source a = {.base = w->base, .dim = DIM, .removed = removed};
    idx_exact_source src = {.vector = array_vector, .ctx = &a};
    /* Each stored vector finds itself; once its vector is gone from the
     * source (deleted on disk, still in the graph), never. */
    for (size_t i = 0; i < 50; i++) {
        idx_hit hit;
        uint32_t n = 0;
        const float *v = w->base + i * DIM;
        ASSERT_OK(idx_search_src(ix, v, 1, 0, 0.99f, NULL, NULL, &src, &hit, &n));
        ASSERT_EQ(n, 1);
        ASSERT_U64_EQ(hit.label, i);
        removed[i] = 1;
        ASSERT_OK(idx_search_src(ix, v, 1, 0, 0.99f, NULL, NULL, &src, &hit, &n));
        if (n) ASSERT_TRUE(hit.label != i);
    }
    idx_destroy(ix);
}

static void test_an_external_int8_snapshot_holds_no_f32_and_reads_back(void) {
    fixture();
    const workload *w = &fixture_data;
    idx *ix = external_index(w->base, 2000);
    char path[] = "/tmp/deja-quant-snap-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_OK(idx_snapshot_write(ix, path, 7));
    FILE *f = fopen(path, "rb");
    ASSERT_TRUE(f != NULL);
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fclose(f);
    /* Codes, scales, labels and links: well under the f32 vectors alone. */
    ASSERT_LT(bytes, 2000L * DIM * 4 / 2);
    idx_config cfg = {
        .kind = IDX_KIND_HNSW, .dim = DIM, .quant = IDX_QUANT_INT8, .exact_external = 1};
    idx *back = NULL;
    uint64_t tag = 0;
    char msg[256];
    ASSERT_OK(idx_snapshot_read(path, &cfg, &back, &tag, msg, sizeof msg));
    ASSERT_U64_EQ(tag, 7);
    array_source a = {.base = w->base, .dim = DIM};
    idx_exact_source src = {.vector = array_vector, .ctx = &a};
    idx_hit h1[5], h2[5];
    uint32_t n1 = 0, n2 = 0;
    ASSERT_OK(idx_search_src(ix, w->queries, 5, 0, -INFINITY, NULL, NULL, &src, h1, &n1));
    ASSERT_OK(
        idx_search_src(back, w->queries, 5, 0, -INFINITY, NULL, NULL, &src, h2, &n2));
    ASSERT_EQ(n1, n2);
    for (uint32_t i = 0; i < n1; i++)
        ASSERT_U64_EQ(h1[i].label, h2[i].label);
    /* An index that keeps its own copies cannot adopt it, nor the reverse. */
    cfg.exact_external = 0;
    idx *other = NULL;
    ASSERT_EQ(idx_snapshot_read(path, &cfg, &other, &tag, msg, sizeof msg),
              DEJA_ERR_INVALID_ARG);
    idx_destroy(back);
    idx_destroy(ix);
    unlink(path);
}

int main(void) {
    idx_simd_init();
    RUN(test_scalar_int8_kernel_computes_the_inner_product);
    RUN(test_int8_kernels_equal_scalar_for_all_lengths_and_offsets);
    RUN(test_int8_kernels_never_read_past_the_end);
    RUN(test_deja_simd_limits_the_int8_kernel_to_its_level);
    RUN(test_int8_finds_the_threshold_hits_f32_finds);
    RUN(test_int8_recall_at_10_is_close_to_f32);
    RUN(test_int8_get_returns_the_exact_f32_vector);
    RUN(test_int8_handles_zero_and_non_finite_vectors);
    RUN(test_an_external_int8_index_keeps_codes_only_and_scores_exactly);
    RUN(test_an_external_int8_index_ranks_the_top_10_exactly);
    RUN(test_a_vector_gone_from_the_source_drops_its_candidate);
    RUN(test_an_external_int8_snapshot_holds_no_f32_and_reads_back);
    fixture_free();
    return harness_result();
}
