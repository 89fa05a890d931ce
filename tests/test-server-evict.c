/* test-server-evict.c: LFU eviction under entry and byte budgets.
 *
 * Specifies that a popular entry survives churn (Zipf workload against a
 * cap of half the entries), that the byte budget holds across ten times
 * its worth of inserts, that a namespace with its own budget loses nothing
 * to another namespace's flood, and that on a near-tie the entry with a
 * near-duplicate goes first. Driven clock; nothing sleeps. */
#include <stdio.h>

#include "cache.h"
#include "harness.h"
#include "idx.h"

#define DIM 32

#if defined(__SANITIZE_ADDRESS__)
#define RUNNING_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RUNNING_UNDER_ASAN 1
#endif
#endif
#ifndef RUNNING_UNDER_ASAN
#define RUNNING_UNDER_ASAN 0
#endif

static uint64_t now_ms = 1000000;
static uint64_t test_clock(void *ctx) {
    (void)ctx;
    return now_ms;
}

static cache *new_cache(uint64_t max_entries, uint64_t max_memory) {
    cache_config cfg = {.default_ttl_s = 0,
                        .index_kind = IDX_KIND_FLAT,
                        .min_threshold = 0.5f,
                        .dedup = 0.99f,
                        .max_entries = max_entries,
                        .max_memory = max_memory};
    cache *c = NULL;
    ASSERT_OK(cache_create(&cfg, &c));
    cache_set_clock(c, test_clock, NULL);
    return c;
}

static void item_vector(uint64_t item, float *v) {
    uint64_t x = item * 0x9E3779B97F4A7C15ULL + 12345;
    for (int i = 0; i < DIM; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
    }
    idx_normalize(v, DIM);
}

static uint64_t put(cache *c, const char *ns, const float *v, uint32_t resp_len) {
    static char resp[8192];
    memset(resp, 'r', sizeof resp);
    cache_store_args r = {.ns = (const uint8_t *)ns,
                          .ns_len = (uint8_t)strlen(ns),
                          .dim = DIM,
                          .response = (const uint8_t *)resp,
                          .response_len = resp_len};
    uint64_t id = 0;
    ASSERT_OK(cache_store(c, &r, v, &id));
    return id;
}

static int hit(cache *c, const char *ns, const float *v) {
    cache_query r = {.ns = (const uint8_t *)ns,
                     .ns_len = (uint8_t)strlen(ns),
                     .dim = DIM,
                     .k = 1,
                     .threshold = 0.999f};
    cache_match m[1];
    uint16_t n = 0;
    ASSERT_OK(cache_lookup(c, &r, v, m, &n));
    if (n) cache_entry_release(m[0].entry);
    return n;
}

static uint64_t stat_of(cache *c, const char *ns, const char *key) {
    cache_stat st[CACHE_STATS_MAX];
    uint16_t n;
    ASSERT_OK(cache_stats(c, (const uint8_t *)ns, ns ? (uint8_t)strlen(ns) : 0, st,
                          CACHE_STATS_MAX, &n));
    for (uint16_t i = 0; i < n; i++)
        if (strcmp(st[i].key, key) == 0) return st[i].value;
    HARNESS_FAIL("no stat %s", key);
}

/* Zipf(1) over n items by inverse CDF on a precomputed table. */
static double *zipf_cdf(int n) {
    double *cdf = malloc(sizeof(double) * (size_t)n), sum = 0;
    for (int i = 0; i < n; i++)
        sum += 1.0 / (i + 1);
    double acc = 0;
    for (int i = 0; i < n; i++)
        cdf[i] = (acc += 1.0 / (i + 1) / sum);
    return cdf;
}

static int zipf_draw(const double *cdf, int n, uint64_t *rng) {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    double u = (double)(*rng >> 11) / 9007199254740992.0;
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void test_a_zipf_workload_at_half_capacity_keeps_the_hottest_entries(void) {
    enum { ITEMS = 4000, CAP = ITEMS / 2, REQUESTS = 40000 };
    cache *c = new_cache(CAP, 0);
    double *cdf = zipf_cdf(ITEMS);
    uint64_t rng = 42;
    float v[DIM];
    for (int r = 0; r < REQUESTS; r++) {
        /* Item ids are shuffled so popularity is unrelated to insert order. */
        int item = (zipf_draw(cdf, ITEMS, &rng) * 7919) % ITEMS;
        item_vector((uint64_t)item, v);
        if (!hit(c, "z", v)) put(c, "z", v, 100);
        now_ms += 1;
    }
    ASSERT_LE(stat_of(c, "z", "entries"), CAP);
    ASSERT_GT(stat_of(c, "z", "evicted_lfu"), 0);
    int kept = 0;
    for (int rank = 0; rank < ITEMS / 100; rank++) {
        item_vector((uint64_t)((rank * 7919) % ITEMS), v);
        kept += hit(c, "z", v);
    }
    fprintf(stderr, "hottest 1%%: %d of %d kept\n", kept, ITEMS / 100);
    ASSERT_GE(kept * 10, (ITEMS / 100) * 9);
    free(cdf);
    cache_destroy(c);
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

static void test_the_byte_budget_holds_across_three_times_its_worth_of_inserts(void) {
    /* The budget charges what the engine holds (entries, vectors, graph);
     * responses live in the store, so 4000-byte ones do not count. The
     * STOREs go on for three times as many entries as first filled it
     * (the flat index makes each STORE's dedup scan O(n)). */
    const uint64_t cap = 4u << 20; /* 4 MiB */
    long rss0 = rss_kib();
    cache *c = new_cache(0, cap);
    float v[DIM];
    uint64_t item = 0, worth = 0;
    while (worth == 0 || item < 3 * worth) {
        item_vector(++item, v);
        put(c, "bytes", v, 4000);
        if (item % 16) continue; /* STATS cost more than a STORE here */
        ASSERT_LE(stat_of(c, NULL, "memory_charged"), cap + cap / 10);
        if (worth == 0 && stat_of(c, NULL, "evicted_lfu") > 0) worth = item;
    }
    uint64_t charged = stat_of(c, NULL, "memory_charged");
    long grown = (rss_kib() - rss0) * 1024;
    fprintf(stderr, "charged %llu bytes, process grew %ld bytes, %llu entries\n",
            (unsigned long long)charged, grown,
            (unsigned long long)stat_of(c, NULL, "entries"));
    ASSERT_GT(stat_of(c, NULL, "evicted_lfu"), 0);
    /* The accounting follows the real footprint within half (not under
     * AddressSanitizer, whose quarantine keeps freed memory resident).
     * Entries are small now that responses live in the store (about 400
     * bytes each at 32-d), so the allocator's slack and the memory that
     * evicted entries leave on its free lists weigh more than when every
     * entry carried its response: measured 17% over at 4 MiB, 33% with
     * meson's MALLOC_PERTURB_, which touches every freed block. */
    if (!RUNNING_UNDER_ASAN) ASSERT_LE(labs(grown - (long)charged), (long)charged / 2);
    cache_destroy(c);
}

static void test_a_namespace_budget_shields_it_from_another_namespace_flood(void) {
    cache *c = new_cache(500, 0);
    cache_ns_image rec;
    int created;
    char msg[64];
    cache_ns_config cfg = {.dim = DIM, .max_entries = 100};
    ASSERT_OK(cache_ns_create(c, (const uint8_t *)"b", 1, &cfg, &rec, &created, msg,
                              sizeof msg));
    float v[DIM];
    for (uint64_t i = 0; i < 100; i++)
        item_vector(100000 + i, v), put(c, "b", v, 64);
    for (uint64_t i = 0; i < 3000; i++)
        item_vector(i, v), put(c, "a", v, 64);
    ASSERT_U64_EQ(stat_of(c, "b", "entries"), 100);
    ASSERT_U64_EQ(stat_of(c, "b", "evicted_lfu"), 0);
    ASSERT_LE(stat_of(c, NULL, "entries"), 500);
    /* And its own budget holds it. */
    for (uint64_t i = 0; i < 50; i++)
        item_vector(200000 + i, v), put(c, "b", v, 64);
    ASSERT_U64_EQ(stat_of(c, "b", "entries"), 100);
    cache_destroy(c);
}

static void test_on_a_near_tie_the_entry_with_a_near_duplicate_goes_first(void) {
    cache *c = new_cache(0, 0);
    cache_ns_image rec;
    int created;
    char msg[64];
    cache_ns_config cfg = {.dim = DIM, .max_entries = 3};
    ASSERT_OK(cache_ns_create(c, (const uint8_t *)"tie", 3, &cfg, &rec, &created, msg,
                              sizeof msg));
    float unique[DIM], a[DIM], a_dup[DIM], late[DIM];
    item_vector(1, unique);
    item_vector(2, a);
    item_vector(3, late);
    /* a_dup: cosine 0.9 to a */
    item_vector(4, a_dup);
    float dot = idx_dot(a, a_dup, DIM);
    for (int i = 0; i < DIM; i++)
        a_dup[i] -= dot * a[i];
    idx_normalize(a_dup, DIM);
    for (int i = 0; i < DIM; i++)
        a_dup[i] = 0.9f * a[i] + 0.43589f * a_dup[i];
    put(c, "tie", unique, 10); /* oldest: plain LFU would evict it first */
    now_ms += 10;
    put(c, "tie", a, 10);
    now_ms += 10;
    put(c, "tie", a_dup, 10);
    now_ms += 10;
    put(c, "tie", late, 10); /* over the cap by one */
    ASSERT_U64_EQ(stat_of(c, "tie", "entries"), 3);
    ASSERT_EQ(hit(c, "tie", unique), 1);
    ASSERT_EQ(hit(c, "tie", a) + hit(c, "tie", a_dup), 1);
    cache_destroy(c);
}

int main(void) {
    idx_simd_init();
    RUN(test_a_zipf_workload_at_half_capacity_keeps_the_hottest_entries);
    RUN(test_the_byte_budget_holds_across_three_times_its_worth_of_inserts);
    RUN(test_a_namespace_budget_shields_it_from_another_namespace_flood);
    RUN(test_on_a_near_tie_the_entry_with_a_near_duplicate_goes_first);
    return harness_result();
}
