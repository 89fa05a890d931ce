/* test-index-faiss.c: the FAISS index kind (idx-faiss.c and its C++ shim)
 * against deja's brute-force reference, and its refusals: labels FAISS
 * cannot hold, index types that cannot remove, bad factory strings; and
 * idx_exact_topk, which uses FAISS when it is built in. Without FAISS
 * only idx_exact_topk's fallback is tested, and the file then reports
 * itself skipped (exit 77) if that passed. */
#include "harness.h"
#include "idx.h"
#include "support/hostile-faiss.h"

#define DIM 32u

/* xorshift64*: a fixed seed keeps every run on the same data. */
static uint64_t rng_state;
static void rng_seed(uint64_t seed) {
    rng_state = seed ? seed : 1;
}
static float rng_float(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * UINT64_C(2685821657736338717);
    return (float)((double)(r >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static void random_unit(float *v, uint32_t dim) {
    for (uint32_t i = 0; i < dim; i++)
        v[i] = rng_float();
    ASSERT_OK(idx_normalize(v, dim));
}

static float *random_rows(size_t n, uint32_t dim) {
    float *rows = malloc(n * dim * sizeof *rows);
    ASSERT_TRUE(rows != NULL);
    for (size_t i = 0; i < n; i++)
        random_unit(rows + i * dim, dim);
    return rows;
}

static void assert_hits_equal(const idx_hit *got, uint32_t ngot, const idx_hit *want,
                              uint32_t nwant) {
    ASSERT_EQ(ngot, nwant);
    for (uint32_t i = 0; i < ngot; i++) {
        ASSERT_U64_EQ(got[i].label, want[i].label);
        ASSERT_NEAR(got[i].score, want[i].score, 1e-4);
    }
}

/* The bench's ground truth must be the exact answer, in either build. */
static void test_exact_topk_equals_bruteforce(void) {
    enum { N = 900, NQ = 30, K = 12 };
    rng_seed(10);
    float *base = random_rows(N, DIM);
    float *queries = random_rows(NQ, DIM);
    idx_hit *exact = malloc(NQ * K * sizeof *exact);
    ASSERT_TRUE(exact != NULL);
    ASSERT_OK(idx_exact_topk(base, N, queries, NQ, DIM, K, exact));
    for (size_t q = 0; q < NQ; q++) {
        idx_hit want[K];
        uint32_t nwant;
        idx_bruteforce(base, N, DIM, queries + q * DIM, K, want, &nwant);
        assert_hits_equal(exact + q * K, K, want, nwant);
    }
    free(exact);
    free(base);
    free(queries);
}

/* With fewer rows than k the missing slots are marked, not left as
 * garbage, so callers need no per-query count. */
static void test_exact_topk_pads_short_answers(void) {
    rng_seed(17);
    float *base = random_rows(3, DIM);
    idx_hit out[2 * 5];
    ASSERT_OK(idx_exact_topk(base, 3, base, 2, DIM, 5, out));
    for (int q = 0; q < 2; q++) {
        ASSERT_U64_EQ(out[q * 5].label, q);
        for (int i = 3; i < 5; i++) {
            ASSERT_U64_EQ(out[q * 5 + i].label, UINT64_MAX);
            ASSERT_TRUE(isinf(out[q * 5 + i].score));
        }
    }
    ASSERT_EQ(idx_exact_topk(base, 3, base, 2, 0, 5, out), DEJA_ERR_INVALID_ARG);
    free(base);
}

#ifdef HAVE_FAISS

static idx *make_faiss(const char *factory, uint32_t dim) {
    idx_config cfg = {.kind = IDX_KIND_FAISS, .dim = dim, .faiss_factory = factory};
    char msg[256];
    idx *ix = NULL;
    int rc = idx_create_msg(&cfg, &ix, msg, sizeof msg);
    if (rc != 0) HARNESS_FAIL("create \"%s\": %d (%s)", factory, rc, msg);
    return ix;
}

/* "Flat" is IndexFlatIP: exact, so it must agree with the reference on
 * labels and, to float rounding, on scores, query by query and batched. */
static void test_flat_equals_bruteforce(void) {
    enum { N = 700, NQ = 25, K = 10 };
    rng_seed(11);
    float *base = random_rows(N, DIM);
    float *queries = random_rows(NQ, DIM);
    idx *ix = make_faiss("Flat", DIM);
    for (size_t i = 0; i < N; i++)
        ASSERT_OK(idx_add(ix, i, base + i * DIM));
    ASSERT_EQ(idx_count(ix), N);

    idx_hit got[NQ * K], want[K];
    uint32_t ngot, nwant, nbatch[NQ];
    ASSERT_OK(idx_search_batch(ix, queries, NQ, K, got, nbatch));
    for (size_t q = 0; q < NQ; q++) {
        idx_bruteforce(base, N, DIM, queries + q * DIM, K, want, &nwant);
        assert_hits_equal(got + q * K, nbatch[q], want, nwant);
        idx_hit one[K];
        ASSERT_OK(
            idx_search(ix, queries + q * DIM, K, -INFINITY, NULL, NULL, one, &ngot));
        assert_hits_equal(one, ngot, want, nwant);
    }
    idx_destroy(ix);
    free(base);
    free(queries);
}

static int accept_even(void *ctx, uint64_t label) {
    (*(int *)ctx)++;
    return label % 2 == 0;
}

/* The filter runs after FAISS's search, so the kind must fetch more
 * candidates until k pass; min_score cuts the tail. */
static void test_filter_and_min_score(void) {
    enum { N = 400, K = 8 };
    rng_seed(12);
    float *base = random_rows(N, DIM);
    float query[DIM];
    random_unit(query, DIM);
    idx *ix = make_faiss("Flat", DIM);
    for (size_t i = 0; i < N; i++)
        ASSERT_OK(idx_add(ix, i, base + i * DIM));

    idx_hit all[N], got[K];
    uint32_t nall, ngot;
    idx_bruteforce(base, N, DIM, query, N, all, &nall);
    int calls = 0;
    ASSERT_OK(idx_search(ix, query, K, -INFINITY, accept_even, &calls, got, &ngot));
    ASSERT_EQ(ngot, K);
    ASSERT_GT(calls, 0);
    uint32_t j = 0;
    for (uint32_t i = 0; i < nall && j < K; i++) {
        if (all[i].label % 2) continue;
        ASSERT_U64_EQ(got[j].label, all[i].label);
        ASSERT_NEAR(got[j].score, all[i].score, 1e-4);
        j++;
    }

    /* A threshold between the 3rd and 4th best leaves exactly 3. */
    float cut = (all[2].score + all[3].score) / 2;
    ASSERT_OK(idx_search(ix, query, K, cut, NULL, NULL, got, &ngot));
    ASSERT_EQ(ngot, 3);
    for (uint32_t i = 0; i < 3; i++)
        ASSERT_U64_EQ(got[i].label, all[i].label);
    idx_destroy(ix);
    free(base);
}

/* Labels use all 63 bits FAISS allows; the stored vector comes back
 * bit-exact from a Flat index; removal is real; duplicates are refused. */
static void test_round_trip_64bit_labels(void) {
    const uint64_t labels[] = {0, 1, UINT64_C(1) << 40, UINT64_C(1) << 62,
                               (uint64_t)INT64_MAX};
    enum { NL = sizeof labels / sizeof labels[0] };
    rng_seed(13);
    float *rows = random_rows(NL, DIM);
    idx *ix = make_faiss("Flat", DIM);
    for (size_t i = 0; i < NL; i++)
        ASSERT_OK(idx_add(ix, labels[i], rows + i * DIM));
    ASSERT_EQ(idx_add(ix, labels[3], rows), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_count(ix), NL);

    float back[DIM];
    idx_hit hit;
    uint32_t n;
    for (size_t i = 0; i < NL; i++) {
        ASSERT_OK(idx_get(ix, labels[i], back));
        ASSERT_MEM_EQ(back, rows + i * DIM, sizeof back);
        ASSERT_OK(idx_search(ix, rows + i * DIM, 1, -INFINITY, NULL, NULL, &hit, &n));
        ASSERT_EQ(n, 1);
        ASSERT_U64_EQ(hit.label, labels[i]);
        ASSERT_NEAR(hit.score, 1.0, 1e-5);
    }

    ASSERT_OK(idx_remove(ix, labels[3]));
    ASSERT_EQ(idx_remove(ix, labels[3]), DEJA_ERR_NOT_FOUND);
    ASSERT_EQ(idx_get(ix, labels[3], back), DEJA_ERR_NOT_FOUND);
    ASSERT_EQ(idx_count(ix), NL - 1);
    ASSERT_OK(idx_search(ix, rows + 3 * DIM, 1, -INFINITY, NULL, NULL, &hit, &n));
    ASSERT_EQ(n, 1);
    ASSERT_TRUE(hit.label != labels[3]);
    /* The labels after the removed row still map to their own vectors. */
    ASSERT_OK(idx_get(ix, labels[4], back));
    ASSERT_MEM_EQ(back, rows + 4 * DIM, sizeof back);
    /* And the label may be used again. */
    ASSERT_OK(idx_add(ix, labels[3], rows + 3 * DIM));

    size_t mem = idx_memory(ix);
    ASSERT_GE(mem, NL * DIM * sizeof(float));
    idx_clear(ix);
    ASSERT_EQ(idx_count(ix), 0);
    ASSERT_EQ(idx_get(ix, labels[0], back), DEJA_ERR_NOT_FOUND);
    ASSERT_OK(idx_add(ix, labels[0], rows));
    ASSERT_EQ(idx_count(ix), 1);
    idx_destroy(ix);
    free(rows);
}

/* FAISS ids are int64: a label >= 2^63 cannot be stored, so it is refused
 * rather than wrapped to a negative id (-1 means "no result" to FAISS). */
static void test_labels_from_2_63_refused(void) {
    float v[DIM], back[DIM];
    rng_seed(14);
    random_unit(v, DIM);
    idx *ix = make_faiss("Flat", DIM);
    ASSERT_EQ(idx_add(ix, UINT64_C(1) << 63, v), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_add(ix, UINT64_MAX, v), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_count(ix), 0);
    ASSERT_EQ(idx_get(ix, UINT64_MAX, back), DEJA_ERR_NOT_FOUND);
    ASSERT_EQ(idx_remove(ix, UINT64_C(1) << 63), DEJA_ERR_NOT_FOUND);
    idx_destroy(ix);
}

/* FAISS 1.7.3's IndexHNSW throws on remove_ids, and deja evicts by
 * removing, so the kind refuses HNSW at creation and says why. */
static void test_hnsw_refused_with_reason(void) {
    idx_config cfg = {.kind = IDX_KIND_FAISS, .dim = DIM, .faiss_factory = "HNSW32"};
    char msg[256] = "unchanged";
    idx *ix = NULL;
    ASSERT_EQ(idx_create_msg(&cfg, &ix, msg, sizeof msg), DEJA_ERR_INVALID_ARG);
    ASSERT_TRUE(ix == NULL);
    fprintf(stderr, "   HNSW32: %s\n", msg);
    ASSERT_TRUE(strstr(msg, "HNSW32") != NULL);
    ASSERT_TRUE(strstr(msg, "cannot remove") != NULL);
}

static void test_bad_factory_is_an_error(void) {
    const char *bad[] = {"NotAnIndex", "IVF",
                         "PQ7" /* refused by the grammar (and 32 % 7 != 0) */, ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        idx_config cfg = {.kind = IDX_KIND_FAISS, .dim = DIM, .faiss_factory = bad[i]};
        char msg[256] = "";
        idx *ix = NULL;
        int rc = idx_create_msg(&cfg, &ix, msg, sizeof msg);
        fprintf(stderr, "   \"%s\": %d %s\n", bad[i], rc, msg);
        ASSERT_EQ(rc, DEJA_ERR_INVALID_ARG);
        ASSERT_TRUE(ix == NULL);
        ASSERT_TRUE(msg[0] != '\0');
    }
    idx_config none = {.kind = IDX_KIND_FAISS, .dim = DIM};
    idx *ix = NULL;
    ASSERT_EQ(idx_create(&none, &ix), DEJA_ERR_INVALID_ARG);
    /* The message buffer is optional. */
    none.faiss_factory = "NotAnIndex";
    ASSERT_EQ(idx_create_msg(&none, &ix, NULL, 0), DEJA_ERR_INVALID_ARG);
}

/* A near-duplicate: v plus a little noise, renormalised. */
static void near_duplicate(const float *v, float *out, uint32_t dim) {
    for (uint32_t i = 0; i < dim; i++)
        out[i] = v[i] + 0.02f * rng_float();
    ASSERT_OK(idx_normalize(out, dim));
}

/* What check_trainable can observe of a trained index: an IVF searched
 * with nprobe 1 misses some true nearest neighbours, which the exact
 * pending buffer never does; compressed codes take less memory than the
 * f32 rows the buffer held. */
enum { SHOWS_IVF = 1, SHOWS_CODES = 2 };

/* Trainable types buffer vectors (searched exactly) until there are
 * enough to train on, then train, take them all, and find
 * near-duplicates like any index; get and remove keep working. */
static void check_trainable(const char *factory, size_t n, float get_tol, int shows) {
    enum { NQ = 50 };
    rng_seed(15);
    float *base = random_rows(n, DIM);
    idx *ix = make_faiss(factory, DIM);

    /* While few vectors are in, the answers are exact. */
    size_t early = 500;
    for (size_t i = 0; i < early; i++)
        ASSERT_OK(idx_add(ix, 1000 + i, base + i * DIM));
    idx_hit got[5], want[5];
    uint32_t ngot, nwant;
    ASSERT_OK(idx_search(ix, base, 5, -INFINITY, NULL, NULL, got, &ngot));
    idx_bruteforce(base, early, DIM, base, 5, want, &nwant);
    for (uint32_t i = 0; i < nwant; i++)
        want[i].label += 1000;
    assert_hits_equal(got, ngot, want, nwant);
    ASSERT_OK(idx_remove(ix, 1000));
    ASSERT_OK(idx_add(ix, 1000, base));

    for (size_t i = early; i < n; i++)
        ASSERT_OK(idx_add(ix, 1000 + i, base + i * DIM));
    ASSERT_EQ(idx_count(ix), n);

    float q[DIM];
    if (shows & SHOWS_CODES) ASSERT_LT(idx_memory(ix), n * DIM * sizeof(float));
    if (shows & SHOWS_IVF) {
        size_t missed = 0;
        for (size_t t = 0; t < NQ; t++) {
            random_unit(q, DIM);
            idx_hit hit, best;
            uint32_t nh, nb;
            ASSERT_OK(idx_search_ef(ix, q, 1, 1, -INFINITY, NULL, NULL, &hit, &nh));
            idx_bruteforce(base, n, DIM, q, 1, &best, &nb);
            if (nh != 1 || hit.label != 1000 + best.label) missed++;
        }
        fprintf(stderr, "   %s: nprobe 1 missed %zu of %d\n", factory, missed, NQ);
        ASSERT_GT(missed, 0);
    }

    size_t found = 0;
    for (size_t t = 0; t < NQ; t++) {
        size_t row = (t * 7919) % n;
        near_duplicate(base + row * DIM, q, DIM);
        idx_hit hit;
        uint32_t nh;
        ASSERT_OK(idx_search_ef(ix, q, 1, 8, -INFINITY, NULL, NULL, &hit, &nh));
        if (nh == 1 && hit.label == 1000 + row) found++;
    }
    fprintf(stderr, "   %s: %zu of %d near-duplicates found\n", factory, found, NQ);
    ASSERT_GE(found, NQ * 9 / 10);

    float back[DIM];
    ASSERT_OK(idx_get(ix, 1000 + 7, back));
    for (uint32_t i = 0; i < DIM; i++)
        ASSERT_NEAR(back[i], base[7 * DIM + i], get_tol);
    ASSERT_OK(idx_remove(ix, 1000 + 7));
    ASSERT_EQ(idx_get(ix, 1000 + 7, back), DEJA_ERR_NOT_FOUND);
    ASSERT_EQ(idx_remove(ix, 1000 + 7), DEJA_ERR_NOT_FOUND);
    ASSERT_EQ(idx_count(ix), n - 1);
    idx_hit hit;
    uint32_t nh;
    ASSERT_OK(idx_search_ef(ix, base + 7 * DIM, 1, 64, -INFINITY, NULL, NULL, &hit, &nh));
    ASSERT_TRUE(nh == 1 && hit.label != 1000 + 7);
    ASSERT_EQ(idx_add(ix, 1000 + 8, base), DEJA_ERR_INVALID_ARG);

    /* Clearing keeps the training: vectors go straight back in. */
    idx_clear(ix);
    ASSERT_EQ(idx_count(ix), 0);
    ASSERT_OK(idx_add(ix, 5, base));
    ASSERT_OK(idx_search(ix, base, 1, -INFINITY, NULL, NULL, &hit, &nh));
    ASSERT_TRUE(nh == 1 && hit.label == 5);
    idx_destroy(ix);
    free(base);
}

/* IVF64 trains at 39 x 64 = 2496 vectors. */
static void test_ivf_flat_trains_then_finds(void) {
    check_trainable("IVF64,Flat", 3000, 1e-6f, SHOWS_IVF);
}

/* IVF16 (and SQ8) train at the 1000-vector floor; SQ8 codes decode to
 * within one step of 2/255 per component. */
static void test_ivf_sq8_trains_then_finds(void) {
    check_trainable("IVF16,SQ8", 1500, 0.01f, SHOWS_IVF | SHOWS_CODES);
}

/* SQ8 without IVF sits in an IndexIDMap2, which must keep labels right
 * across removals. */
static void test_sq8_idmap_trains_then_finds(void) {
    check_trainable("IDMap2,SQ8", 1500, 0.01f, SHOWS_CODES);
}

/* With nprobe = nlist every list is scanned, so IVF,Flat is exact. */
static void test_ivf_ef_is_nprobe(void) {
    enum { N = 2600, K = 10 };
    rng_seed(16);
    float *base = random_rows(N, DIM);
    idx *ix = make_faiss("IVF64,Flat", DIM);
    for (size_t i = 0; i < N; i++)
        ASSERT_OK(idx_add(ix, i, base + i * DIM));
    float q[DIM];
    random_unit(q, DIM);
    idx_hit got[K], want[K];
    uint32_t ngot, nwant;
    ASSERT_OK(idx_search_ef(ix, q, K, 64, -INFINITY, NULL, NULL, got, &ngot));
    idx_bruteforce(base, N, DIM, q, K, want, &nwant);
    assert_hits_equal(got, ngot, want, nwant);
    idx_destroy(ix);
    free(base);
}

/* ---- the factory grammar (idx.h) -------------------------------------------
 * Every string of issue #10 that crashed or stalled dejad, and more of the
 * same families: each must be refused in C, with a reason, before FAISS
 * parses it (the test would die of SIGFPE or abort otherwise). */
static const char *const hostile_factories[] = {
    HOSTILE_FAISS_FROM_ISSUE_10,
    /* more of the same */
    "PQ8",
    "PQ4",
    "IVF16,PQ4",
    "OPQ8,IVF16,Flat",
    "PCA16,Flat",
    "PCAR16,IVF4,Flat",
    "RQ1x8",
    "LSQ2x4",
    "PRQ2x2x4",
    "IVF4,PQ4x4fs",
    "IVF4,Flat,Refine(Flat)",
    "HNSW32",
    "HNSW32,Flat",
    "IVF4_HNSW32,Flat",
    "NSG32,Flat",
    "IVF257,Flat",
    "IVF01,Flat",
    "IVF,Flat",
    "IVF4",
    "IVF4,",
    "IVF4,SQfp16",
    "IVF4,Flat ",
    " Flat",
    "flat",
    "Flat,Flat",
    "IDMap,IDMap,Flat",
    "IDMap,",
    "IDMap2",
    "SQ4",
    "SQ6",
    "SQ8,Flat",
    "LSH",
    "Flat\n",
    "IVF99999999999999999999999,Flat",
    "IVF4294967297,Flat",
    "RR16,Flat",
    "L2norm,Flat",
    "ITQ16,Flat",
    "IVF4(Flat),Flat",
    "",
    "NotAnIndex",
};

/* The accepted forms (grammar in idx.h). */
static const char *const allowed_factories[] = {
    "Flat",
    "SQ8",
    "SQfp16",
    "IDMap,Flat",
    "IDMap2,SQ8",
    "IDMap,SQfp16",
    "IVF1,Flat",
    "IVF4,Flat",
    "IVF4,SQ8",
    "IDMap,IVF4,Flat",
    "IDMap2,IVF4,SQ8",
};

static void test_grammar_refuses_every_hostile_factory_string(void) {
    for (size_t i = 0; i < sizeof hostile_factories / sizeof *hostile_factories; i++) {
        const char *f = hostile_factories[i];
        char msg[256] = "";
        ASSERT_EQ(idx_faiss_factory_check(f, DIM, msg, sizeof msg), DEJA_ERR_INVALID_ARG);
        ASSERT_TRUE(strstr(msg, "refused") != NULL);
        /* And through idx_create, which must not reach FAISS with it. */
        idx_config cfg = {.kind = IDX_KIND_FAISS, .dim = DIM, .faiss_factory = f};
        idx *ix = NULL;
        char why[256] = "";
        ASSERT_EQ(idx_create_msg(&cfg, &ix, why, sizeof why), DEJA_ERR_INVALID_ARG);
        ASSERT_TRUE(ix == NULL);
        ASSERT_TRUE(why[0] != 0);
    }
    /* The message buffer is optional. */
    ASSERT_EQ(idx_faiss_factory_check("PQ0", DIM, NULL, 0), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_faiss_factory_check(NULL, DIM, NULL, 0), DEJA_ERR_INVALID_ARG);
}

/* The grammar table: what each bound allows and refuses. */
static void test_grammar_table(void) {
    static const struct {
        const char *factory;
        uint32_t dim;
        int ok;
    } rows[] = {
        {"Flat", 1, 1},          {"Flat", 4096, 1},       {"SQ8", 3, 1},
        {"SQfp16", 4096, 1},     {"IVF1,Flat", 1, 1},     {"IVF256,Flat", 256, 1},
        {"IVF256,SQ8", 256, 1},  {"IVF256,Flat", 257, 0}, {"IVF257,Flat", 1, 0},
        {"IVF16,Flat", 4096, 1}, {"IVF17,Flat", 4096, 0}, {"IVF42,Flat", 1536, 1},
        {"IVF43,Flat", 1536, 0}, {"IVF0,Flat", 16, 0},    {"IVF10,Flat", 16, 1},
        {"IVF100,SQ8", 16, 1},   {"IVF1000,Flat", 16, 0}, {"IDMap2,IVF2,Flat", 8, 1},
        {"IDMap,HNSW32", 8, 0},  {"IDMap2,PQ4", 8, 0},    {"IVF1024,Flat", 16, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char msg[256] = "";
        int rc = idx_faiss_factory_check(rows[i].factory, rows[i].dim, msg, sizeof msg);
        if ((rc == 0) != rows[i].ok)
            HARNESS_FAIL("\"%s\" at dim %u: got %d (%s), want %s", rows[i].factory,
                         rows[i].dim, rc, msg, rows[i].ok ? "accepted" : "refused");
    }
    /* The reason names the bound that was broken. */
    char msg[256] = "";
    idx_faiss_factory_check("IVF43,Flat", 1536, msg, sizeof msg);
    ASSERT_TRUE(strstr(msg, "65536") != NULL);
    idx_faiss_factory_check("HNSW32", DIM, msg, sizeof msg);
    ASSERT_TRUE(strstr(msg, "cannot remove") != NULL);
    /* Bytes from the network reach the message only as printable ASCII. */
    idx_faiss_factory_check("PQ\x1b[2J\n", DIM, msg, sizeof msg);
    for (const char *p = msg; *p; p++)
        ASSERT_TRUE(*p >= 0x20 && *p <= 0x7e);
}

/* Every accepted form works through a whole life -- train, add, search,
 * get, remove, clear, add again -- at awkward dimensions, without a fault
 * or an abort. */
static void test_every_allowed_form_lives_through_add_search_remove(void) {
    static const uint32_t dims[] = {1, 3, 17};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        uint32_t dim = dims[d];
        enum { N = 1100 }; /* past the 1000 vectors training waits for */
        rng_seed(99 + dim);
        float *base = random_rows(N, dim);
        for (size_t i = 0; i < sizeof allowed_factories / sizeof *allowed_factories;
             i++) {
            ASSERT_OK(idx_faiss_factory_check(allowed_factories[i], dim, NULL, 0));
            idx *ix = make_faiss(allowed_factories[i], dim);
            for (size_t r = 0; r < N; r++)
                ASSERT_OK(idx_add(ix, r + 1, base + r * dim));
            ASSERT_EQ(idx_count(ix), N);
            idx_hit hits[4];
            uint32_t n = 0;
            ASSERT_OK(idx_search_ef(ix, base, 4, 8, -INFINITY, NULL, NULL, hits, &n));
            ASSERT_TRUE(n > 0);
            float back[17];
            ASSERT_OK(idx_get(ix, 1, back));
            for (size_t r = 0; r < N; r += 2)
                ASSERT_OK(idx_remove(ix, r + 1));
            ASSERT_EQ(idx_remove(ix, 1), DEJA_ERR_NOT_FOUND);
            ASSERT_EQ(idx_count(ix), N / 2);
            idx_clear(ix);
            ASSERT_EQ(idx_count(ix), 0);
            ASSERT_OK(idx_add(ix, 5000, base));
            ASSERT_OK(idx_remove(ix, 5000));
            idx_destroy(ix);
        }
        free(base);
    }
}

#else

static void test_faiss_kind_refused_without_faiss(void) {
    idx_config cfg = {.kind = IDX_KIND_FAISS, .dim = DIM, .faiss_factory = "Flat"};
    char msg[128] = "";
    idx *ix = NULL;
    ASSERT_EQ(idx_create_msg(&cfg, &ix, msg, sizeof msg), DEJA_ERR_INVALID_ARG);
    ASSERT_TRUE(strstr(msg, "FAISS") != NULL);
}

#endif /* HAVE_FAISS */

int main(void) {
    idx_simd_init();
    RUN(test_exact_topk_equals_bruteforce);
    RUN(test_exact_topk_pads_short_answers);
#ifdef HAVE_FAISS
    RUN(test_flat_equals_bruteforce);
    RUN(test_filter_and_min_score);
    RUN(test_round_trip_64bit_labels);
    RUN(test_labels_from_2_63_refused);
    RUN(test_hnsw_refused_with_reason);
    RUN(test_bad_factory_is_an_error);
    RUN(test_ivf_flat_trains_then_finds);
    RUN(test_ivf_sq8_trains_then_finds);
    RUN(test_sq8_idmap_trains_then_finds);
    RUN(test_ivf_ef_is_nprobe);
    RUN(test_grammar_refuses_every_hostile_factory_string);
    RUN(test_grammar_table);
    RUN(test_every_allowed_form_lives_through_add_search_remove);
    return harness_result();
#else
    RUN(test_faiss_kind_refused_without_faiss);
    int rc = harness_result();
    if (rc == 0) fprintf(stderr, "FAISS not built in: skipped\n");
    return rc == 0 ? 77 : rc;
#endif
}
