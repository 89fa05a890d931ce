/* test-index-snapshot.c: an index written with idx_snapshot_write reads
 * back as the same index (labels, vectors, search results to the last
 * bit, memory, tag) for the flat index and HNSW (f32 and int8); removed
 * labels stay removed; a loaded HNSW index keeps working through adds,
 * removes and churn; and a file that is missing, truncated, damaged,
 * foreign, of another version or of another configuration is refused
 * with its own code, never with a crash, leaving *out NULL. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL /* the test forges checksums of hostile files */
#include <xxhash.h>

#include "harness.h"
#include "idx.h"
#include "support/vectors.h"

#define K 10
#define HEADER_BYTES 44u
#define PAYLOAD_AT HEADER_BYTES

/* ---- files ------------------------------------------------------------------*/

static char scratch_dir[256];

static void scratch_init(void) {
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/deja-snap-XXXXXX");
    ASSERT_TRUE(mkdtemp(scratch_dir) != NULL);
}

static void scratch_remove(void) {
    DIR *d = opendir(scratch_dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", scratch_dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(scratch_dir);
}

static void scratch_path(const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", scratch_dir, name);
}

typedef struct blob {
    unsigned char *at;
    size_t len;
} blob;

static blob file_load(const char *path) {
    FILE *f = fopen(path, "rb");
    ASSERT_TRUE(f != NULL);
    fseek(f, 0, SEEK_END);
    blob b = {NULL, (size_t)ftell(f)};
    fseek(f, 0, SEEK_SET);
    b.at = malloc(b.len + 1);
    ASSERT_EQ(fread(b.at, 1, b.len, f), b.len);
    fclose(f);
    return b;
}

static void file_store(const char *path, const void *p, size_t len) {
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(fwrite(p, 1, len, f), len);
    fclose(f);
}

/* Re-seals a modified file with a valid checksum, as a hostile writer
 * would, so that only the structural checks stand in its way. */
static void blob_reseal(blob *b) {
    uint64_t sum = XXH3_64bits(b->at, b->len - 8);
    memcpy(b->at + b->len - 8, &sum, 8);
}

static void blob_put_u32(blob *b, size_t at, uint32_t v) {
    memcpy(b->at + at, &v, 4);
}
static void blob_put_u64(blob *b, size_t at, uint64_t v) {
    memcpy(b->at + at, &v, 8);
}

/* Reads path with cfg and returns the code, checking that a refusal
 * leaves *out NULL (and destroying an index that loads). */
static int read_code(const char *path, const idx_config *cfg) {
    idx *ix = (idx *)(uintptr_t)1;
    uint64_t tag = 0;
    char msg[160] = "untouched";
    int rc = idx_snapshot_read(path, cfg, &ix, &tag, msg, sizeof msg);
    if (rc != 0) {
        ASSERT_TRUE(ix == NULL);
        /* A refused file always says why, except when there is none. */
        if (rc != DEJA_ERR_NOT_FOUND) ASSERT_TRUE(msg[0] != '\0');
    }
    idx_destroy(ix);
    return rc;
}

/* ---- indexes ----------------------------------------------------------------*/

static idx *index_make(const idx_config *cfg, const float *base, size_t n) {
    idx *ix = NULL;
    ASSERT_OK(idx_create(cfg, &ix));
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(idx_add(ix, i, base + i * cfg->dim));
    return ix;
}

static idx *snapshot_cycle(const idx *ix, const idx_config *cfg, const char *name,
                           uint64_t tag_in) {
    char path[512];
    scratch_path(name, path, sizeof path);
    ASSERT_OK(idx_snapshot_write(ix, path, tag_in));
    idx *loaded = NULL;
    uint64_t tag = 0;
    char msg[160];
    ASSERT_OK(idx_snapshot_read(path, cfg, &loaded, &tag, msg, sizeof msg));
    ASSERT_U64_EQ(tag, tag_in);
    ASSERT_TRUE(loaded != NULL);
    return loaded;
}

/* Both indexes answer nq seeded paraphrase queries identically. */
static void assert_same_searches(const idx *a, const idx *b, const float *base, size_t n,
                                 uint32_t dim, uint32_t nq, uint64_t seed) {
    vec_rng r = {seed};
    float *q = malloc(dim * sizeof *q);
    idx_hit ha[K], hb[K];
    for (uint32_t i = 0; i < nq; i++) {
        vec_paraphrase(&r, base, n, dim, q);
        uint32_t na = 0, nb = 0;
        ASSERT_OK(idx_search(a, q, K, -INFINITY, NULL, NULL, ha, &na));
        ASSERT_OK(idx_search(b, q, K, -INFINITY, NULL, NULL, hb, &nb));
        ASSERT_EQ(na, nb);
        for (uint32_t j = 0; j < na; j++) {
            ASSERT_U64_EQ(ha[j].label, hb[j].label);
            ASSERT_TRUE(ha[j].score == hb[j].score);
        }
    }
    free(q);
}

/* Mean recall@K against brute force over the rows whose label is set in
 * live (labels are row numbers of base). */
static double recall_live(const idx *ix, const float *base, const uint8_t *live, size_t n,
                          uint32_t dim, uint32_t nq, uint32_t ef, uint64_t seed) {
    float *rows = malloc(n * dim * sizeof *rows);
    uint64_t *label_of = malloc(n * sizeof *label_of);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!live[i]) continue;
        memcpy(rows + m * dim, base + i * dim, dim * sizeof(float));
        label_of[m++] = i;
    }
    vec_rng r = {seed};
    float *q = malloc(dim * sizeof *q);
    idx_hit got[K], want[K];
    double sum = 0.0;
    for (uint32_t i = 0; i < nq; i++) {
        vec_paraphrase(&r, rows, m, dim, q);
        uint32_t ngot = 0, nwant = 0;
        ASSERT_OK(idx_search_ef(ix, q, K, ef, -INFINITY, NULL, NULL, got, &ngot));
        for (uint32_t j = 0; j < ngot; j++)
            ASSERT_TRUE(live[got[j].label]);
        idx_bruteforce(rows, m, dim, q, K, want, &nwant);
        for (uint32_t j = 0; j < nwant; j++)
            want[j].label = label_of[want[j].label];
        sum += vec_recall(got, ngot, want, nwant);
    }
    free(q);
    free(rows);
    free(label_of);
    return sum / nq;
}

typedef struct label_set {
    uint8_t *seen;
    size_t cap;
    size_t count;
} label_set;

static int label_collect(void *ctx, uint64_t label) {
    label_set *s = ctx;
    if (label >= s->cap || s->seen[label]) return -1;
    s->seen[label] = 1;
    s->count++;
    return 0;
}

/* idx_each_label reports exactly the labels set in want[0..n). */
static void assert_labels(const idx *ix, const uint8_t *want, size_t n) {
    label_set s = {calloc(n, 1), n, 0};
    ASSERT_OK(idx_each_label(ix, label_collect, &s));
    size_t expected = 0;
    for (size_t i = 0; i < n; i++) {
        expected += want[i];
        ASSERT_EQ(s.seen[i], want[i]);
    }
    ASSERT_EQ(s.count, expected);
    ASSERT_EQ(idx_count(ix), expected);
    free(s.seen);
}

static void assert_vectors_equal(const idx *a, const idx *b, size_t n, uint32_t dim) {
    float *va = malloc(dim * sizeof *va), *vb = malloc(dim * sizeof *vb);
    for (size_t i = 0; i < n; i++) {
        int ra = idx_get(a, i, va), rb = idx_get(b, i, vb);
        ASSERT_EQ(ra, rb);
        if (ra == 0) ASSERT_MEM_EQ(va, vb, dim * sizeof(float));
    }
    free(va);
    free(vb);
}

/* ---- round trips ------------------------------------------------------------*/

static void round_trip(idx_config cfg, size_t n, const char *name) {
    vec_rng r = {cfg.dim * 7919u + cfg.quant};
    float *base = vec_clustered_spread(&r, n, cfg.dim, 40, 1.5f);
    idx *ix = index_make(&cfg, base, n);
    idx *loaded = snapshot_cycle(ix, &cfg, name, UINT64_C(0xfeedfacecafebeef));

    uint8_t *all = malloc(n);
    memset(all, 1, n);
    assert_labels(loaded, all, n);
    assert_vectors_equal(ix, loaded, n, cfg.dim);
    assert_same_searches(ix, loaded, base, n, cfg.dim, 200, 5);
    /* After the same searches both hold the same scratch, so their memory
     * is the same up to allocator rounding. */
    double ratio = (double)idx_memory(loaded) / (double)idx_memory(ix);
    fprintf(stderr, "   %s: memory loaded/original %.3f\n", name, ratio);
    ASSERT_TRUE(ratio > 0.9 && ratio < 1.1);

    idx_destroy(loaded);
    idx_destroy(ix);
    free(all);
    free(base);
}

static void test_flat_round_trip_keeps_labels_vectors_and_results(void) {
    /* 100 is not a multiple of the row padding; 128 is (one block). */
    round_trip((idx_config){.kind = IDX_KIND_FLAT, .dim = 100}, 1500, "flat-100.idx");
    round_trip((idx_config){.kind = IDX_KIND_FLAT, .dim = 128}, 2500, "flat-128.idx");
}

/* A snapshot larger than the writer's write-behind windows (32 MiB: it
 * hands each to writeback and waits for the one before) reads back whole:
 * 12,000 x 1536 f32 rows are 74 MB, three windows. */
static void test_a_snapshot_of_many_write_behind_windows_reads_back_whole(void) {
    enum { ROWS = 12000, DIM = 1536 };
    idx_config cfg = {.kind = IDX_KIND_FLAT, .dim = DIM};
    vec_rng r = {77};
    float *base = vec_random_units(&r, ROWS, DIM);
    idx *ix = index_make(&cfg, base, ROWS);
    idx *loaded = snapshot_cycle(ix, &cfg, "windows.idx", 42);
    ASSERT_EQ(idx_count(loaded), ROWS);
    assert_vectors_equal(ix, loaded, ROWS, DIM);
    idx_destroy(loaded);
    idx_destroy(ix);
    free(base);
}

static void test_hnsw_f32_round_trip_gives_identical_searches(void) {
    round_trip((idx_config){.kind = IDX_KIND_HNSW, .dim = 64, .seed = 3}, 3000,
               "hnsw-f32.idx");
    /* Large rows take the readv path straight into the chunks. */
    round_trip(
        (idx_config){.kind = IDX_KIND_HNSW, .dim = 1536, .M = 8, .ef_construction = 40},
        300, "hnsw-f32-1536.idx");
}

static void test_hnsw_int8_round_trip_gives_identical_searches(void) {
    round_trip((idx_config){.kind = IDX_KIND_HNSW, .dim = 96, .quant = IDX_QUANT_INT8},
               3000, "hnsw-int8.idx");
    round_trip((idx_config){.kind = IDX_KIND_HNSW,
                            .dim = 1000,
                            .M = 8,
                            .ef_construction = 40,
                            .quant = IDX_QUANT_INT8},
               300, "hnsw-int8-1000.idx");
}

static void test_empty_indexes_round_trip_and_grow(void) {
    idx_config kinds[2] = {{.kind = IDX_KIND_FLAT, .dim = 8},
                           {.kind = IDX_KIND_HNSW, .dim = 8}};
    for (int i = 0; i < 2; i++) {
        idx *ix = NULL;
        ASSERT_OK(idx_create(&kinds[i], &ix));
        idx *loaded = snapshot_cycle(ix, &kinds[i], "empty.idx", 0);
        ASSERT_EQ(idx_count(loaded), 0);
        float v[8] = {1};
        ASSERT_OK(idx_add(loaded, 42, v));
        idx_hit hit;
        uint32_t n = 0;
        ASSERT_OK(idx_search(loaded, v, 1, -INFINITY, NULL, NULL, &hit, &n));
        ASSERT_EQ(n, 1);
        ASSERT_U64_EQ(hit.label, 42);
        idx_destroy(loaded);
        idx_destroy(ix);
    }
}

static void test_write_replaces_the_old_snapshot_and_leaves_no_temporary(void) {
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = 16};
    vec_rng r = {9};
    float *base = vec_random_units(&r, 50, 16);
    idx *ix = index_make(&cfg, base, 50);
    char path[512], tmp[520];
    scratch_path("replace.idx", path, sizeof path);
    ASSERT_OK(idx_snapshot_write(ix, path, 1));
    ASSERT_OK(idx_remove(ix, 7));
    ASSERT_OK(idx_snapshot_write(ix, path, 2));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ASSERT_TRUE(access(tmp, F_OK) != 0);
    idx *loaded = NULL;
    uint64_t tag = 0;
    ASSERT_OK(idx_snapshot_read(path, &cfg, &loaded, &tag, NULL, 0));
    ASSERT_U64_EQ(tag, 2);
    ASSERT_EQ(idx_count(loaded), 49);
    idx_destroy(loaded);
    idx_destroy(ix);
    free(base);
}

static void test_a_failed_write_keeps_the_previous_snapshot(void) {
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = 64};
    vec_rng r = {10};
    float *base = vec_random_units(&r, 200, 64);
    idx *ix = index_make(&cfg, base, 200);
    char path[512], tmp[520];
    scratch_path("full.idx", path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ASSERT_OK(idx_snapshot_write(ix, path, 1));
    /* A disk that fills up: writes past 16 KiB fail (EFBIG, the signal
     * ignored). */
    struct rlimit old, small;
    ASSERT_OK(getrlimit(RLIMIT_FSIZE, &old));
    small = old;
    small.rlim_cur = 16384;
    void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
    ASSERT_OK(setrlimit(RLIMIT_FSIZE, &small));
    int rc = idx_snapshot_write(ix, path, 2);
    ASSERT_OK(setrlimit(RLIMIT_FSIZE, &old));
    signal(SIGXFSZ, was);
    ASSERT_EQ(rc, DEJA_ERR_IO);
    ASSERT_TRUE(access(tmp, F_OK) != 0);
    idx *loaded = NULL;
    uint64_t tag = 0;
    ASSERT_OK(idx_snapshot_read(path, &cfg, &loaded, &tag, NULL, 0));
    ASSERT_U64_EQ(tag, 1);
    ASSERT_EQ(idx_count(loaded), 200);
    idx_destroy(loaded);
    idx_destroy(ix);
    free(base);
}

/* ---- removals and life after a load -----------------------------------------*/

static void test_removed_labels_are_absent_after_load(void) {
    const uint32_t dim = 48;
    const size_t n = 4000;
    vec_rng r = {77};
    float *base = vec_clustered_spread(&r, n, dim, 40, 1.5f);
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = dim, .M = 12};
    idx *ix = index_make(&cfg, base, n);
    uint8_t *live = malloc(n);
    memset(live, 1, n);
    /* A third removed: some of them swept and freed, the latest still
     * DELETED in the graph and waiting for the sweep when it is written. */
    for (size_t i = 0; i < n; i += 3) {
        ASSERT_OK(idx_remove(ix, i));
        live[i] = 0;
    }
    idx *loaded = snapshot_cycle(ix, &cfg, "removed.idx", 3);
    assert_labels(loaded, live, n);
    float *v = malloc(dim * sizeof *v);
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(idx_get(loaded, i, v), live[i] ? 0 : DEJA_ERR_NOT_FOUND);
    free(v);
    double before = recall_live(ix, base, live, n, dim, 300, 64, 8);
    double after = recall_live(loaded, base, live, n, dim, 300, 64, 8);
    fprintf(stderr, "   recall@10 original %.4f, loaded %.4f\n", before, after);
    ASSERT_TRUE(after >= before - 0.02);
    idx_destroy(loaded);
    idx_destroy(ix);
    free(live);
    free(base);
}

static void test_loaded_index_continues_exactly_like_the_original(void) {
    /* Without removals ids, links and the level generator carry over, so
     * the same adds leave both indexes answering identically. */
    const uint32_t dim = 32;
    const size_t n = 3000, first = 2000;
    vec_rng r = {31};
    float *base = vec_clustered_spread(&r, n, dim, 30, 1.5f);
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = dim, .seed = 5};
    idx *ix = index_make(&cfg, base, first);
    idx *loaded = snapshot_cycle(ix, &cfg, "continue.idx", 4);
    for (size_t i = first; i < n; i++) {
        ASSERT_OK(idx_add(ix, i, base + i * dim));
        ASSERT_OK(idx_add(loaded, i, base + i * dim));
    }
    assert_same_searches(ix, loaded, base, n, dim, 200, 6);
    idx_destroy(loaded);
    idx_destroy(ix);
    free(base);
}

static void test_loaded_index_keeps_recall_through_adds_removes_and_churn(void) {
    const uint32_t dim = 64;
    const size_t n = 6000, first = 3000;
    vec_rng r = {41};
    float *base = vec_clustered_spread(&r, n, dim, 50, 1.5f);
    idx_config cfgs[2] = {
        {.kind = IDX_KIND_HNSW, .dim = dim, .M = 12},
        {.kind = IDX_KIND_HNSW, .dim = dim, .M = 12, .quant = IDX_QUANT_INT8}};
    for (int c = 0; c < 2; c++) {
        idx *ix = index_make(&cfgs[c], base, first);
        idx *loaded = snapshot_cycle(ix, &cfgs[c], "churn.idx", 5);
        idx_destroy(ix);
        uint8_t *live = calloc(n, 1);
        memset(live, 1, first);
        /* Grow by as much again, then three cycles of removing a third
         * at random and adding fresh vectors. */
        for (size_t i = first; i < n; i++) {
            ASSERT_OK(idx_add(loaded, i, base + i * dim));
            live[i] = 1;
        }
        double grown = recall_live(loaded, base, live, n, dim, 300, 64, 9);
        vec_rng pick = {43};
        for (int cycle = 0; cycle < 3; cycle++) {
            for (size_t i = 0; i < n; i++)
                if (live[i] && vec_rng_next(&pick) % 3 == 0) {
                    ASSERT_OK(idx_remove(loaded, i));
                    ASSERT_EQ(idx_remove(loaded, i), DEJA_ERR_NOT_FOUND);
                    live[i] = 0;
                }
            for (size_t i = 0; i < n; i++)
                if (!live[i] && vec_rng_next(&pick) % 2 == 0) {
                    ASSERT_OK(idx_add(loaded, i, base + i * dim));
                    live[i] = 1;
                }
        }
        double churned = recall_live(loaded, base, live, n, dim, 300, 64, 10);
        fprintf(stderr, "   %s: recall@10 grown %.4f, after churn %.4f\n",
                c ? "int8" : "f32", grown, churned);
        ASSERT_TRUE(grown >= 0.93);
        ASSERT_TRUE(churned >= 0.90);
        assert_labels(loaded, live, n);
        idx_destroy(loaded);
        free(live);
    }
    free(base);
}

/* ---- refusals ---------------------------------------------------------------*/

static void test_missing_file_is_not_found_and_bad_arguments_are_invalid(void) {
    idx_config cfg = {.kind = IDX_KIND_HNSW, .dim = 8};
    char path[512];
    scratch_path("absent.idx", path, sizeof path);
    ASSERT_EQ(read_code(path, &cfg), DEJA_ERR_NOT_FOUND);
    idx *out = NULL;
    uint64_t tag;
    ASSERT_EQ(idx_snapshot_read(NULL, &cfg, &out, &tag, NULL, 0), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_snapshot_read(path, NULL, &out, &tag, NULL, 0), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_snapshot_read(path, &cfg, NULL, &tag, NULL, 0), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_snapshot_read(path, &cfg, &out, NULL, NULL, 0), DEJA_ERR_INVALID_ARG);
    /* A folder is not a snapshot. */
    ASSERT_EQ(read_code(scratch_dir, &cfg), DEJA_ERR_CORRUPT);

    idx *ix = NULL;
    ASSERT_OK(idx_create(&cfg, &ix));
    ASSERT_EQ(idx_snapshot_write(NULL, path, 0), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_snapshot_write(ix, NULL, 0), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_snapshot_write(ix, "/nonexistent-deja-dir/x.idx", 0), DEJA_ERR_IO);
    ASSERT_EQ(idx_each_label(NULL, label_collect, NULL), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_each_label(ix, NULL, NULL), DEJA_ERR_INVALID_ARG);
    idx_destroy(ix);
#ifdef HAVE_FAISS
    idx_config faiss = {.kind = IDX_KIND_FAISS, .dim = 8, .faiss_factory = "Flat"};
    ASSERT_OK(idx_create(&faiss, &ix));
    ASSERT_EQ(idx_snapshot_write(ix, path, 0), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(idx_each_label(ix, label_collect, NULL), DEJA_ERR_INVALID_ARG);
    idx_destroy(ix);
#endif
}

static int stop_at_third(void *ctx, uint64_t label) {
    (void)label;
    return ++*(int *)ctx == 3 ? 17 : 0;
}

static void test_each_label_stops_at_the_first_nonzero_return(void) {
    idx_config kinds[2] = {{.kind = IDX_KIND_FLAT, .dim = 8},
                           {.kind = IDX_KIND_HNSW, .dim = 8}};
    vec_rng r = {12};
    float *base = vec_random_units(&r, 10, 8);
    for (int i = 0; i < 2; i++) {
        idx *ix = index_make(&kinds[i], base, 10);
        int calls = 0;
        ASSERT_EQ(idx_each_label(ix, stop_at_third, &calls), 17);
        ASSERT_EQ(calls, 3);
        idx_destroy(ix);
    }
    free(base);
}

/* The three kinds of file the damage tests run over, small enough that
 * many damaged copies read in well under a second. */
static const idx_config damage_cfgs[3] = {
    {.kind = IDX_KIND_FLAT, .dim = 20},
    {.kind = IDX_KIND_HNSW, .dim = 20, .M = 4},
    {.kind = IDX_KIND_HNSW, .dim = 20, .M = 4, .quant = IDX_QUANT_INT8},
};

/* Writes a small snapshot of damage_cfgs[which] (with one removal, so
 * the file has been through renumbering) and returns its bytes. */
static blob damage_source(int which, char *path, size_t cap) {
    const idx_config *cfg = &damage_cfgs[which];
    vec_rng r = {100u + (unsigned)which};
    float *base = vec_random_units(&r, 120, cfg->dim);
    idx *ix = index_make(cfg, base, 120);
    ASSERT_OK(idx_remove(ix, 17));
    snprintf(path, cap, "%s/damage-%d.idx", scratch_dir, which);
    ASSERT_OK(idx_snapshot_write(ix, path, 99));
    idx_destroy(ix);
    free(base);
    ASSERT_EQ(read_code(path, cfg), 0);
    return file_load(path);
}

static void test_truncated_files_are_bad_frames(void) {
    for (int which = 0; which < 3; which++) {
        char path[512], cut[520];
        blob b = damage_source(which, path, sizeof path);
        snprintf(cut, sizeof cut, "%s.cut", path);
        /* Every length through the header and the first payload fields,
         * then a stride through the rest, then the last bytes. */
        for (size_t len = 0; len < b.len; len += len < 80           ? 1
                                                 : len + 16 < b.len ? 13
                                                                    : 1) {
            file_store(cut, b.at, len);
            int rc = read_code(cut, &damage_cfgs[which]);
            if (rc != DEJA_ERR_CORRUPT)
                HARNESS_FAIL("kind %d cut to %zu of %zu bytes: %d", which, len, b.len,
                             rc);
        }
        /* Bytes added at the end are refused too. */
        unsigned char *longer = malloc(b.len + 4);
        memcpy(longer, b.at, b.len);
        memset(longer + b.len, 0, 4);
        file_store(cut, longer, b.len + 4);
        ASSERT_EQ(read_code(cut, &damage_cfgs[which]), DEJA_ERR_CORRUPT);
        free(longer);
        free(b.at);
    }
}

static void test_a_flipped_byte_anywhere_is_refused(void) {
    for (int which = 0; which < 3; which++) {
        char path[512], bad[520];
        blob b = damage_source(which, path, sizeof path);
        snprintf(bad, sizeof bad, "%s.bad", path);
        for (size_t at = 0; at < b.len; at += at < 96 || at + 16 > b.len ? 1 : 7) {
            for (int bit = 0; bit < 8; bit += 7) {
                b.at[at] ^= (unsigned char)(1u << bit);
                file_store(bad, b.at, b.len);
                b.at[at] ^= (unsigned char)(1u << bit);
                int rc = read_code(bad, &damage_cfgs[which]);
                /* The version field reads as another version. */
                int want = at >= 4 && at < 8 ? DEJA_ERR_VERSION : DEJA_ERR_CORRUPT;
                if (rc != want)
                    HARNESS_FAIL("kind %d, byte %zu bit %d of %zu: %d, wanted %d", which,
                                 at, bit, b.len, rc, want);
            }
        }
        free(b.at);
    }
}

static void test_wrong_magic_and_other_versions_are_refused(void) {
    char path[512];
    blob b = damage_source(1, path, sizeof path);
    memcpy(b.at, "DJIY", 4);
    file_store(path, b.at, b.len);
    ASSERT_EQ(read_code(path, &damage_cfgs[1]), DEJA_ERR_CORRUPT);
    memcpy(b.at, "DJIX", 4);
    for (uint32_t version = 0; version < 4; version++) {
        if (version == 1) continue;
        blob_put_u32(&b, 4, version);
        file_store(path, b.at, b.len);
        ASSERT_EQ(read_code(path, &damage_cfgs[1]), DEJA_ERR_VERSION);
    }
    /* Not a snapshot at all. */
    file_store(path, "hello, world: this is not an index snapshot at all!!", 52);
    ASSERT_EQ(read_code(path, &damage_cfgs[1]), DEJA_ERR_CORRUPT);
    free(b.at);
}

static void test_another_configuration_is_invalid_arg(void) {
    char path[512];
    blob b = damage_source(1, path, sizeof path);
    free(b.at);
    idx_config cfg = damage_cfgs[1];
    idx_config other[5] = {cfg, cfg, cfg, cfg, cfg};
    other[0].dim = 21;
    other[1].M = 5;
    other[2].quant = IDX_QUANT_INT8;
    other[3].ef_construction = 100;
    other[4].kind = IDX_KIND_FLAT;
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(read_code(path, &other[i]), DEJA_ERR_INVALID_ARG);
    /* Defaults are compared as applied: M 0 means 16, not 4. */
    cfg.M = 0;
    ASSERT_EQ(read_code(path, &cfg), DEJA_ERR_INVALID_ARG);
    /* The search breadth, the seed and the capacity hint may differ. */
    cfg.M = 4;
    cfg.ef_search = 300;
    cfg.seed = 12345;
    cfg.initial_capacity = 1000;
    ASSERT_EQ(read_code(path, &cfg), 0);
#ifdef HAVE_FAISS
    /* A file that claims a kind without snapshots. */
    blob f = file_load(path);
    blob_put_u32(&f, 8, IDX_KIND_FAISS);
    uint64_t head_sum = XXH3_64bits(f.at, 36);
    memcpy(f.at + 36, &head_sum, 8);
    blob_reseal(&f);
    file_store(path, f.at, f.len);
    idx_config faiss = {.kind = IDX_KIND_FAISS, .dim = cfg.dim, .faiss_factory = "Flat"};
    ASSERT_EQ(read_code(path, &faiss), DEJA_ERR_INVALID_ARG);
    free(f.at);
#endif
}

/* Files whose checksums are valid but whose structure is not: the loader
 * itself must refuse them, without a crash or an allocation the file
 * cannot back. */
static void test_forged_files_with_valid_checksums_are_refused(void) {
    const uint32_t dim = damage_cfgs[1].dim;
    char path[512];
    blob b = damage_source(1, path, sizeof path);
    uint64_t n;
    memcpy(&n, b.at + PAYLOAD_AT, 8);
    ASSERT_EQ(n, 119);
    size_t labels = PAYLOAD_AT + 24, levels = labels + 8 * n;
    size_t lists = levels + n + n * dim * 4;
    struct {
        size_t at;
        int width;
        uint64_t value;
    } forgeries[] = {
        {PAYLOAD_AT, 8, UINT64_C(1) << 31}, /* n far beyond the file */
        {PAYLOAD_AT, 8, UINT64_MAX},        /* n absurd */
        {PAYLOAD_AT, 8, 0},                 /* no nodes, yet an entry point */
        {PAYLOAD_AT + 8, 4, 25},            /* top level above the maximum */
        {PAYLOAD_AT + 12, 4, 119},          /* entry point past the end */
        {labels + 8, 8, 0},                 /* label 0 twice */
        {levels + 3, 1, 30},                /* a node above the top level */
        {lists, 4, 9},                      /* a list longer than 2M */
        {lists + 4, 4, 119},                /* a link past the end */
        {lists + 4, 4, 0},                  /* node 0 linked to itself */
    };
    for (size_t i = 0; i < sizeof forgeries / sizeof forgeries[0]; i++) {
        blob f = {malloc(b.len), b.len};
        memcpy(f.at, b.at, b.len);
        if (forgeries[i].width == 8)
            blob_put_u64(&f, forgeries[i].at, forgeries[i].value);
        else if (forgeries[i].width == 4)
            blob_put_u32(&f, forgeries[i].at, (uint32_t)forgeries[i].value);
        else
            f.at[forgeries[i].at] = (unsigned char)forgeries[i].value;
        blob_reseal(&f);
        file_store(path, f.at, f.len);
        int rc = read_code(path, &damage_cfgs[1]);
        if (rc != DEJA_ERR_CORRUPT) HARNESS_FAIL("forgery %zu read as %d", i, rc);
        free(f.at);
    }
    free(b.at);

    /* The flat payload: u64 count, labels, rows. */
    blob fb = damage_source(0, path, sizeof path);
    blob_put_u64(&fb, PAYLOAD_AT, UINT64_C(1) << 40);
    blob_reseal(&fb);
    file_store(path, fb.at, fb.len);
    ASSERT_EQ(read_code(path, &damage_cfgs[0]), DEJA_ERR_CORRUPT);
    blob_put_u64(&fb, PAYLOAD_AT, 119);
    blob_put_u64(&fb, PAYLOAD_AT + 16, 0); /* label 0 twice */
    memcpy(fb.at + PAYLOAD_AT + 8, &(uint64_t){0}, 8);
    blob_reseal(&fb);
    file_store(path, fb.at, fb.len);
    ASSERT_EQ(read_code(path, &damage_cfgs[0]), DEJA_ERR_CORRUPT);
    free(fb.at);
}

int main(void) {
    idx_simd_init();
    scratch_init();
    RUN(test_flat_round_trip_keeps_labels_vectors_and_results);
    RUN(test_a_snapshot_of_many_write_behind_windows_reads_back_whole);
    RUN(test_hnsw_f32_round_trip_gives_identical_searches);
    RUN(test_hnsw_int8_round_trip_gives_identical_searches);
    RUN(test_empty_indexes_round_trip_and_grow);
    RUN(test_write_replaces_the_old_snapshot_and_leaves_no_temporary);
    RUN(test_a_failed_write_keeps_the_previous_snapshot);
    RUN(test_removed_labels_are_absent_after_load);
    RUN(test_loaded_index_continues_exactly_like_the_original);
    RUN(test_loaded_index_keeps_recall_through_adds_removes_and_churn);
    RUN(test_missing_file_is_not_found_and_bad_arguments_are_invalid);
    RUN(test_each_label_stops_at_the_first_nonzero_return);
    RUN(test_truncated_files_are_bad_frames);
    RUN(test_a_flipped_byte_anywhere_is_refused);
    RUN(test_wrong_magic_and_other_versions_are_refused);
    RUN(test_another_configuration_is_invalid_arg);
    RUN(test_forged_files_with_valid_checksums_are_refused);
    scratch_remove();
    return harness_result();
}
