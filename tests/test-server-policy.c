/* test-server-policy.c: what makes deja a cache rather than a vector
 * store -- namespaces with their own configuration, the threshold floor,
 * the exact tier, write-time dedup, write-side safety, TTL (absolute and
 * sliding) with the active sweeper, and the savings accounting.
 *
 * Runs the cache engine directly with a clock the test drives: nothing
 * sleeps. */
#include "cache.h"
#include "harness.h"
#include "support/answers.h"
#include "idx.h"

#define DIM 8

static uint64_t now_ms = 5000000;
static uint64_t test_clock(void *ctx) {
    (void)ctx;
    return now_ms;
}

static int evictions;
static void count_evict(void *ctx, uint32_t ns_id, uint64_t id) {
    (void)ctx;
    (void)ns_id;
    (void)id;
    evictions++;
}

static cache *new_cache(void) {
    cache_config cfg = {.default_ttl_s = 3600,
                        .min_threshold = 0.5f,
                        .dedup = 0.99f,
                        .on_evict = count_evict};
    cache *c = NULL;
    ASSERT_OK(cache_create(&cfg, &c));
    cache_set_clock(c, test_clock, NULL);
    return c;
}

/* A unit vector at cosine cos to the first axis, rotated into axis `other`. */
static void vec_at(float cos, int other, float *v) {
    memset(v, 0, sizeof(float) * DIM);
    v[0] = cos;
    v[other] = sqrtf(1.0f - cos * cos);
}

static uint64_t put(cache *c, const char *ns, const float *v, const char *prompt,
                    const char *resp, uint32_t ttl_s) {
    cache_store_args r = {.ns = (const uint8_t *)ns,
                          .ns_len = (uint8_t)strlen(ns),
                          .dim = DIM,
                          .ttl_s = ttl_s,
                          .input_tokens = 100,
                          .output_tokens = 50,
                          .cost_micro_usd = 2000,
                          .prompt = (const uint8_t *)prompt,
                          .prompt_len = prompt ? (uint32_t)strlen(prompt) : 0,
                          .response = (const uint8_t *)resp,
                          .response_len = (uint32_t)strlen(resp)};
    uint64_t id = 0;
    ASSERT_OK(answers_store(c, &r, v, &id));
    return id;
}

/* Returns the id of the best hit (0 on a miss); *resp_out gets its
 * response when not NULL. */
static uint64_t lookup(cache *c, const char *ns, const float *v, float threshold,
                       const char *prompt, char *resp_out) {
    cache_query r = {.ns = (const uint8_t *)ns,
                     .ns_len = (uint8_t)strlen(ns),
                     .dim = DIM,
                     .k = 1,
                     .threshold = threshold,
                     .prompt = (const uint8_t *)prompt,
                     .prompt_len = prompt ? (uint32_t)strlen(prompt) : 0};
    cache_match m[CACHE_MAX_K];
    uint16_t n = 0;
    ASSERT_OK(cache_lookup(c, &r, v, m, &n));
    if (!n) return 0;
    uint64_t id = cache_entry_id(m[0].entry);
    if (resp_out) {
        strcpy(resp_out, answers_response(m[0].entry));
    }
    cache_entry_release(m[0].entry);
    return id;
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

static void create_ns(cache *c, const char *name, const cache_ns_config *cfg) {
    cache_ns_image rec;
    int created = 0;
    char msg[128];
    ASSERT_OK(cache_ns_create(c, (const uint8_t *)name, (uint8_t)strlen(name), cfg, &rec,
                              &created, msg, sizeof msg));
    ASSERT_EQ(created, 1);
}

static void test_the_exact_tier_answers_a_normalised_prompt_without_vector_search(void) {
    cache *c = new_cache();
    float v[DIM], unrelated[DIM];
    vec_at(1.0f, 1, v);
    /* 0.7: no vector search at 0.99 could match, but it is above the
     * floor (0.5), which an exact-tier hit still needs. */
    vec_at(0.7f, 2, unrelated);
    uint64_t id = put(c, "ex", v, "  What is the\tcapital of\n France? ", "Paris", 0);
    char resp[64];
    ASSERT_U64_EQ(
        lookup(c, "ex", unrelated, 0.99f, "What is the capital of France?", resp), id);
    ASSERT_STR_EQ(resp, "Paris");
    ASSERT_U64_EQ(stat_of(c, "ex", "exact_hits"), 1);
    ASSERT_U64_EQ(stat_of(c, "ex", "semantic_hits"), 0);
    /* Case is kept: a different prompt, so no exact hit. */
    ASSERT_U64_EQ(
        lookup(c, "ex", unrelated, 0.99f, "what is the capital of france?", NULL), 0);
    cache_destroy(c);
}

static void test_storing_the_same_prompt_again_replaces_the_entry(void) {
    cache *c = new_cache();
    float v[DIM], w[DIM];
    vec_at(1.0f, 1, v);
    vec_at(0.0f, 3, w);
    uint64_t first = put(c, "ex", v, "Tell me a joke", "old joke", 0);
    uint64_t second = put(c, "ex", w, "Tell me  a joke", "new joke", 0);
    ASSERT_U64_EQ(second, first);
    ASSERT_U64_EQ(stat_of(c, "ex", "entries"), 1);
    ASSERT_U64_EQ(stat_of(c, "ex", "dedup_updates"), 1);
    char resp[64];
    ASSERT_U64_EQ(lookup(c, "ex", v, 0.99f, NULL, resp), first);
    ASSERT_STR_EQ(resp, "new joke");
    cache_destroy(c);
}

static void test_a_near_copy_updates_its_entry_but_a_paraphrase_is_added(void) {
    cache *c = new_cache();
    float v[DIM], near[DIM], para[DIM];
    vec_at(1.0f, 1, v);
    vec_at(0.995f, 2, near);
    vec_at(0.95f, 3, para);
    uint64_t id = put(c, "dd", v, NULL, "one", 0);
    /* Dedup sees the entry whether or not it has reached the graph yet
     * (test-server-dedup.c holds it in the staging index). */
    ASSERT_U64_EQ(put(c, "dd", near, NULL, "one, again", 0), id);
    ASSERT_TRUE(put(c, "dd", para, NULL, "two", 0) != id);
    ASSERT_U64_EQ(stat_of(c, "dd", "entries"), 2);
    /* A namespace may turn dedup off. */
    cache_ns_config cfg = {.dim = DIM, .flags = CACHE_NS_NO_DEDUP};
    create_ns(c, "nodedup", &cfg);
    ASSERT_TRUE(put(c, "nodedup", v, NULL, "a", 0) != put(c, "nodedup", v, NULL, "b", 0));
    cache_destroy(c);
}

static void test_a_lookup_cannot_loosen_the_namespace_threshold_floor(void) {
    cache *c = new_cache();
    cache_ns_config cfg = {.dim = DIM, .min_threshold = 0.9f};
    create_ns(c, "strict", &cfg);
    float v[DIM], q85[DIM], q92[DIM];
    vec_at(1.0f, 1, v);
    vec_at(0.85f, 2, q85);
    vec_at(0.92f, 2, q92);
    uint64_t id = put(c, "strict", v, NULL, "x", 0);
    ASSERT_U64_EQ(lookup(c, "strict", q85, 0.1f, NULL, NULL), 0); /* floor holds */
    ASSERT_U64_EQ(lookup(c, "strict", q92, 0.1f, NULL, NULL), id);
    ASSERT_U64_EQ(lookup(c, "strict", q92, 0.95f, NULL, NULL), 0); /* tightened */
    /* The server default floor (0.5 here) holds for implicit namespaces. */
    float q40[DIM];
    vec_at(0.4f, 2, q40);
    put(c, "loose", v, NULL, "y", 0);
    ASSERT_U64_EQ(lookup(c, "loose", q40, -1.0f, NULL, NULL), 0);
    cache_destroy(c);
}

static void test_only_ok_completions_are_cached_unless_the_namespace_allows(void) {
    cache *c = new_cache();
    float v[DIM];
    vec_at(1.0f, 1, v);
    cache_store_args r = {.ns = (const uint8_t *)"safe",
                          .ns_len = 4,
                          .dim = DIM,
                          .completion = CACHE_COMPLETION_TRUNCATED,
                          .response = (const uint8_t *)"half",
                          .response_len = 4};
    uint64_t id;
    ASSERT_EQ(cache_store(c, &r, v, &id), DEJA_ERR_REJECTED);
    cache_ns_config cfg = {.dim = DIM, .flags = CACHE_NS_ALLOW_NON_OK};
    create_ns(c, "lenient", &cfg);
    r.ns = (const uint8_t *)"lenient";
    r.ns_len = 7;
    ASSERT_OK(cache_store(c, &r, v, &id));
    ASSERT_U64_EQ(stat_of(c, NULL, "rejected_stores"), 1);
    cache_destroy(c);
}

static void
test_absolute_ttl_expires_but_sliding_ttl_extends_on_hits_up_to_max_age(void) {
    cache *c = new_cache();
    cache_ns_config sliding = {
        .dim = DIM, .ttl_mode = CACHE_TTL_SLIDING, .max_age_s = 25};
    create_ns(c, "slide", &sliding);
    float v[DIM];
    vec_at(1.0f, 1, v);
    uint64_t a = put(c, "abs", v, NULL, "a", 10);
    uint64_t s = put(c, "slide", v, NULL, "s", 10);
    now_ms += 8000;
    ASSERT_U64_EQ(lookup(c, "abs", v, 0.9f, NULL, NULL), a);
    ASSERT_U64_EQ(lookup(c, "slide", v, 0.9f, NULL, NULL), s); /* now lives to 18 s */
    now_ms += 8000;                                            /* 16 s */
    ASSERT_U64_EQ(lookup(c, "abs", v, 0.9f, NULL, NULL), 0);
    ASSERT_U64_EQ(lookup(c, "slide", v, 0.9f, NULL, NULL), s); /* to 26 s, capped at 25 */
    now_ms += 8000;                                            /* 24 s */
    ASSERT_U64_EQ(lookup(c, "slide", v, 0.9f, NULL, NULL), s);
    now_ms += 1000; /* 25 s: max age reached whatever the hits */
    ASSERT_U64_EQ(lookup(c, "slide", v, 0.9f, NULL, NULL), 0);
    cache_destroy(c);
}

static void test_the_sweeper_reclaims_expired_entries_in_bounded_slices(void) {
    cache *c = new_cache();
    cache_ns_config cfg = {.dim = DIM, .flags = CACHE_NS_NO_DEDUP};
    create_ns(c, "sweep", &cfg);
    float v[DIM];
    vec_at(1.0f, 1, v);
    for (int i = 0; i < 3000; i++)
        put(c, "sweep", v, NULL, "r", i % 3 == 0 ? 1000 : 1);
    uint64_t entries = stat_of(c, "sweep", "entries");
    ASSERT_U64_EQ(entries, 3000);
    cache_wait_indexed(c); /* a quiet namespace: no graph insert holds its lock */
    now_ms += 2000;
    evictions = 0;
    size_t expired = 0, total = 0, examined;
    int rounds = 0;
    do {
        examined = cache_sweep(c, 500, &expired);
        ASSERT_LE(examined, 500); /* a slice never exceeds its budget */
        total += expired;
        rounds++;
    } while (expired && rounds < 100);
    ASSERT_GT(rounds, 2);
    uint64_t left = stat_of(c, "sweep", "entries");
    ASSERT_U64_EQ(left, 1000);
    ASSERT_U64_EQ(total, entries - left);
    ASSERT_EQ(evictions, (int)total);
    ASSERT_U64_EQ(stat_of(c, "sweep", "evicted_ttl"), total);
    /* Everything left is live: a full pass finds nothing more. */
    for (int i = 0; i < 10; i++)
        cache_sweep(c, 1000, &expired), total += expired;
    ASSERT_U64_EQ(stat_of(c, "sweep", "entries"), entries - total);
    ASSERT_EQ(expired, 0);
    cache_destroy(c);
}

static void test_one_sweeper_tick_leaves_under_a_tenth_of_entries_expired(void) {
    cache *c = new_cache();
    cache_ns_config cfg = {.dim = DIM, .flags = CACHE_NS_NO_DEDUP};
    create_ns(c, "tick", &cfg);
    float v[DIM];
    vec_at(1.0f, 1, v);
    for (int i = 0; i < 10000; i++)
        put(c, "tick", v, NULL, "r", i % 2 ? 5 : 5000);
    cache_wait_indexed(c);
    now_ms += 6000; /* half of them expire together */
    size_t removed = cache_sweep_tick(c, 1000, 5000);
    uint64_t left = stat_of(c, "tick", "entries");
    uint64_t still_expired = left - 5000;
    ASSERT_U64_EQ(removed + left, 10000);
    ASSERT_LT(still_expired * 10, left);
    cache_destroy(c);
}

static void test_an_expired_entry_is_served_by_no_path(void) {
    cache *c = new_cache();
    float v[DIM], w[DIM];
    vec_at(1.0f, 1, v);
    vec_at(0.97f, 2, w);
    put(c, "gone", v, "the prompt", "old", 1);
    uint64_t live = put(c, "gone", w, "another prompt", "live", 100);
    now_ms += 1000;
    /* exact tier */
    ASSERT_U64_EQ(lookup(c, "gone", v, 0.9f, "the prompt", NULL), live);
    /* vector search, k = 1 and k > 1 */
    ASSERT_U64_EQ(lookup(c, "gone", v, 0.9f, NULL, NULL), live);
    cache_query r = {.ns = (const uint8_t *)"gone",
                     .ns_len = 4,
                     .dim = DIM,
                     .k = 10,
                     .threshold = 0.5f};
    cache_match m[CACHE_MAX_K];
    uint16_t n = 0;
    ASSERT_OK(cache_lookup(c, &r, v, m, &n));
    ASSERT_EQ(n, 1);
    ASSERT_U64_EQ(cache_entry_id(m[0].entry), live);
    cache_entry_release(m[0].entry);
    cache_destroy(c);
}

static void test_namespaces_are_created_listed_described_and_dropped(void) {
    cache *c = new_cache();
    cache_ns_config cfg = {.dim = DIM,
                           .index_kind = CACHE_INDEX_FLAT,
                           .min_threshold = 0.8f,
                           .default_ttl_s = 60};
    create_ns(c, "gpt:support-v1", &cfg);
    cache_ns_image rec;
    int created = 1;
    char msg[128];
    /* Same configuration again: fine, nothing new. */
    ASSERT_OK(cache_ns_create(c, (const uint8_t *)"gpt:support-v1", 14, &cfg, &rec,
                              &created, msg, sizeof msg));
    ASSERT_EQ(created, 0);
    cache_ns_config other = cfg;
    other.min_threshold = 0.7f;
    ASSERT_EQ(cache_ns_create(c, (const uint8_t *)"gpt:support-v1", 14, &other, &rec,
                              &created, msg, sizeof msg),
              DEJA_ERR_EXISTS);

    float v[DIM];
    vec_at(1.0f, 1, v);
    put(c, "gpt:support-v1", v, NULL, "a", 0);
    put(c, "implicit", v, NULL, "b", 0);
    char names[8][CACHE_MAX_NS_LEN + 1];
    uint8_t lens[8];
    uint16_t n;
    ASSERT_OK(cache_ns_list(c, names, lens, 8, &n));
    ASSERT_EQ(n, 2);

    cache_ns_config got;
    cache_stat st[CACHE_STATS_MAX];
    uint16_t count;
    ASSERT_OK(cache_ns_info(c, (const uint8_t *)"gpt:support-v1", 14, &got, st,
                            CACHE_STATS_MAX, &count));
    ASSERT_EQ(got.index_kind, CACHE_INDEX_FLAT);
    ASSERT_NEAR(got.min_threshold, 0.8, 1e-6);
    ASSERT_U64_EQ(stat_of(c, "gpt:support-v1", "entries"), 1);

    uint64_t removed;
    ASSERT_OK(cache_ns_drop(c, (const uint8_t *)"gpt:support-v1", 14, &removed, &rec));
    ASSERT_U64_EQ(removed, 1);
    ASSERT_U64_EQ(lookup(c, "gpt:support-v1", v, 0.9f, NULL, NULL), 0);
    ASSERT_OK(cache_ns_list(c, names, lens, 8, &n));
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(names[0], "implicit");
    ASSERT_U64_EQ(stat_of(c, NULL, "evicted_drop"), 1);
    ASSERT_EQ(cache_ns_drop(c, (const uint8_t *)"gpt:support-v1", 14, &removed, &rec),
              DEJA_ERR_NOT_FOUND);
    cache_destroy(c);
}

/* FLUSH and NS_DROP empty a namespace through one helper: the same
 * things start over whichever op it was. */
static void test_flush_and_drop_leave_nothing_behind_in_the_same_way(void) {
    cache *c = new_cache();
    const char *names[2] = {"flushed", "dropped"};
    float v[DIM];
    cache_ns_config cfg = {.dim = DIM, .flags = CACHE_NS_NO_DEDUP};
    for (int n = 0; n < 2; n++) {
        create_ns(c, names[n], &cfg);
        for (int i = 1; i < 40; i++) {
            vec_at(0.3f, 1 + i % (DIM - 1), v);
            put(c, names[n], v, NULL, "r", 100);
        }
        vec_at(1.0f, 1, v);
        uint64_t id = put(c, names[n], v, "a prompt", "hit me", 100);
        ASSERT_U64_EQ(lookup(c, names[n], v, 0.9f, NULL, NULL), id);
        ASSERT_GT(stat_of(c, names[n], "entry_hits"), 0);
    }
    cache_wait_indexed(c);
    uint64_t removed;
    uint32_t ns_id;
    ASSERT_OK(cache_flush(c, (const uint8_t *)"flushed", 7, &removed, &ns_id));
    ASSERT_U64_EQ(removed, 40);
    cache_ns_image rec;
    ASSERT_OK(cache_ns_drop(c, (const uint8_t *)"dropped", 7, &removed, &rec));
    ASSERT_U64_EQ(removed, 40);
    const char *zero[] = {"entries",        "entry_hits", "entry_bytes",
                          "memory_charged", "unindexed",  "index_entries"};
    for (size_t k = 0; k < sizeof zero / sizeof *zero; k++)
        ASSERT_U64_EQ(stat_of(c, "flushed", zero[k]), 0);
    ASSERT_U64_EQ(stat_of(c, "flushed", "evicted_delete"), 40);
    /* The server's totals hold nothing of either namespace. */
    ASSERT_U64_EQ(stat_of(c, NULL, "entries"), 0);
    ASSERT_U64_EQ(stat_of(c, NULL, "memory_charged"), 0);
    ASSERT_U64_EQ(stat_of(c, NULL, "evicted_drop"), 40);
    /* Both names take entries again, with no trace of the old ones (the
     * exact tier included). */
    for (int n = 0; n < 2; n++) {
        ASSERT_U64_EQ(lookup(c, names[n], v, 0.9f, "a prompt", NULL), 0);
        uint64_t id = put(c, names[n], v, "a prompt", "new", 100);
        char resp[16];
        ASSERT_U64_EQ(lookup(c, names[n], v, 0.9f, "a prompt", resp), id);
        ASSERT_STR_EQ(resp, "new");
        ASSERT_U64_EQ(stat_of(c, names[n], "entries"), 1);
    }
    cache_destroy(c);
}

static void test_hits_count_the_tokens_and_money_they_saved(void) {
    cache *c = new_cache();
    float v[DIM];
    vec_at(1.0f, 1, v);
    put(c, "money", v, NULL, "answer", 0); /* 150 tokens, 2000 micro-dollars */
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(lookup(c, "money", v, 0.9f, NULL, NULL) != 0);
    float miss[DIM];
    vec_at(0.0f, 4, miss);
    ASSERT_U64_EQ(lookup(c, "money", miss, 0.9f, NULL, NULL), 0);
    ASSERT_U64_EQ(stat_of(c, "money", "tokens_saved"), 450);
    ASSERT_U64_EQ(stat_of(c, "money", "cost_saved_micro_usd"), 6000);
    ASSERT_U64_EQ(stat_of(c, "money", "semantic_hits"), 3);
    ASSERT_U64_EQ(stat_of(c, "money", "misses"), 1);
    cache_destroy(c);
}

int main(void) {
    idx_simd_init();
    RUN(test_the_exact_tier_answers_a_normalised_prompt_without_vector_search);
    RUN(test_storing_the_same_prompt_again_replaces_the_entry);
    RUN(test_a_near_copy_updates_its_entry_but_a_paraphrase_is_added);
    RUN(test_a_lookup_cannot_loosen_the_namespace_threshold_floor);
    RUN(test_only_ok_completions_are_cached_unless_the_namespace_allows);
    RUN(test_absolute_ttl_expires_but_sliding_ttl_extends_on_hits_up_to_max_age);
    RUN(test_the_sweeper_reclaims_expired_entries_in_bounded_slices);
    RUN(test_one_sweeper_tick_leaves_under_a_tenth_of_entries_expired);
    RUN(test_an_expired_entry_is_served_by_no_path);
    RUN(test_namespaces_are_created_listed_described_and_dropped);
    RUN(test_flush_and_drop_leave_nothing_behind_in_the_same_way);
    RUN(test_hits_count_the_tokens_and_money_they_saved);
    return harness_result();
}
