/* test-server-dedup.c: the edges of write-time dedup and the exact tier
 * that docs/PROTOCOL.md 5.10 pins down (issue 10, "the spec and the server
 * agree"):
 *   - dedup sees an entry acknowledged a moment before, while it still
 *     waits for the graph in the staging index; beyond CACHE_DEDUP_WINDOW
 *     waiting entries it sees the most recent ones;
 *   - two STOREs in flight together do not see each other;
 *   - an exact-tier hit needs the namespace's floor, not the request's
 *     threshold, reports the true cosine and is marked exact;
 *   - a prompt of only white space keys nothing.
 *
 * Runs the cache engine directly with a clock the test drives. The
 * indexer is paused where an entry must stay in the staging index, so no
 * test depends on how fast the graph is built. */
#include "cache-private.h"
#include "harness.h"
#include "support/answers.h"
#include "idx.h"
#include "support/vectors.h"

#define DIM 8
#define WIDE 64 /* room for thousands of mutually dissimilar vectors */

static uint64_t now_ms = 5000000;
static uint64_t test_clock(void *ctx) {
    (void)ctx;
    return now_ms;
}

static cache *new_cache(void) {
    cache_config cfg = {.default_ttl_s = 3600, .min_threshold = 0.5f, .dedup = 0.99f};
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

static cache_store_args store_req(const char *ns, uint16_t dim, const char *prompt,
                                  const char *resp) {
    return (cache_store_args){.ns = (const uint8_t *)ns,
                              .ns_len = (uint8_t)strlen(ns),
                              .dim = dim,
                              .prompt = (const uint8_t *)prompt,
                              .prompt_len = prompt ? (uint32_t)strlen(prompt) : 0,
                              .response = (const uint8_t *)resp,
                              .response_len = (uint32_t)strlen(resp)};
}

static uint64_t put_dim(cache *c, const char *ns, uint16_t dim, const float *v,
                        const char *prompt, const char *resp) {
    cache_store_args r = store_req(ns, dim, prompt, resp);
    uint64_t id = 0;
    ASSERT_OK(answers_store(c, &r, v, &id));
    return id;
}

static uint64_t put(cache *c, const char *ns, const float *v, const char *prompt,
                    const char *resp) {
    return put_dim(c, ns, DIM, v, prompt, resp);
}

typedef struct answer {
    uint64_t id; /* 0 on a miss */
    float similarity;
    int exact;
    char response[64];
} answer;

static answer ask(cache *c, const char *ns, const float *v, float threshold,
                  const char *prompt) {
    cache_query r = {.ns = (const uint8_t *)ns,
                     .ns_len = (uint8_t)strlen(ns),
                     .dim = DIM,
                     .k = 4,
                     .threshold = threshold,
                     .prompt = (const uint8_t *)prompt,
                     .prompt_len = prompt ? (uint32_t)strlen(prompt) : 0};
    cache_match m[CACHE_MAX_K];
    uint16_t n = 0;
    ASSERT_OK(cache_lookup(c, &r, v, m, &n));
    answer a = {0};
    if (n == 0) return a;
    a.id = cache_entry_id(m[0].entry);
    a.similarity = m[0].similarity;
    a.exact = m[0].exact;
    snprintf(a.response, sizeof a.response, "%s", answers_response(m[0].entry));
    /* An exact-tier hit is the only hit; a vector hit is never marked. */
    for (uint16_t i = 0; i < n; i++) {
        if (i > 0) ASSERT_EQ(m[i].exact, 0);
        if (m[0].exact) ASSERT_EQ(n, 1);
        cache_entry_release(m[i].entry);
    }
    return a;
}

static uint64_t stat_of(cache *c, const char *ns, const char *key) {
    cache_stat st[CACHE_STATS_MAX];
    uint16_t n;
    ASSERT_OK(cache_stats(c, (const uint8_t *)ns, (uint8_t)strlen(ns), st,
                          CACHE_STATS_MAX, &n));
    for (uint16_t i = 0; i < n; i++)
        if (strcmp(st[i].key, key) == 0) return st[i].value;
    HARNESS_FAIL("no stat %s", key);
}

/* ---- dedup ------------------------------------------------------------------*/

static void test_dedup_sees_an_entry_still_waiting_for_the_graph(void) {
    cache *c = new_cache();
    cache_indexer_pause(c->indexer); /* the first entry stays staged */
    float v[DIM], near[DIM];
    vec_at(1.0f, 1, v);
    vec_at(0.995f, 2, near);
    uint64_t id = put(c, "dd", v, NULL, "one");
    ASSERT_EQ(stat_of(c, "dd", "unindexed"), 1);
    ASSERT_U64_EQ(put(c, "dd", near, NULL, "one, again"), id);
    ASSERT_U64_EQ(stat_of(c, "dd", "entries"), 1);
    ASSERT_U64_EQ(stat_of(c, "dd", "dedup_updates"), 1);
    /* The entry kept its vector and got the new response. */
    answer a = ask(c, "dd", v, 0.99f, NULL);
    ASSERT_U64_EQ(a.id, id);
    ASSERT_STR_EQ(a.response, "one, again");
    ASSERT_NEAR(a.similarity, 1.0f, 1e-5);
    cache_indexer_resume(c->indexer);
    cache_wait_indexed(c);
    ASSERT_U64_EQ(stat_of(c, "dd", "unindexed"), 0);
    ASSERT_U64_EQ(put(c, "dd", near, NULL, "one, thrice"), id); /* from the graph */
    ASSERT_U64_EQ(stat_of(c, "dd", "entries"), 1);
    cache_destroy(c);
}

static void test_dedup_prefers_the_most_similar_of_graph_and_staging_index(void) {
    cache *c = new_cache();
    float v[DIM], w[DIM], q[DIM];
    vec_at(1.0f, 1, v);
    /* w is 0.995 from v, q 0.9996 from w and 0.9927 from v: q is a
     * near-copy of both, closer to w. */
    memcpy(w, v, sizeof v);
    w[1] = 0.1f;
    vec_normalize(w, DIM);
    memcpy(q, v, sizeof v);
    q[1] = 0.12f;
    q[2] = 0.02f;
    vec_normalize(q, DIM);
    ASSERT_TRUE(idx_dot(q, v, DIM) > 0.99f);
    ASSERT_TRUE(idx_dot(q, w, DIM) > idx_dot(q, v, DIM));
    uint64_t vid = put(c, "dd", v, NULL, "v");
    cache_wait_indexed(c); /* v in the graph */
    cache_indexer_pause(c->indexer);
    /* w must not merge into v: store it with the namespace's dedup off
     * for a moment (read on every STORE). */
    cache_ns *ns = cache_find_ns(c, (const uint8_t *)"dd", 2);
    float saved = ns->dedup;
    ns->dedup = 0;
    uint64_t wid = put(c, "dd", w, NULL, "w");
    ns->dedup = saved;
    ASSERT_TRUE(wid != vid);
    ASSERT_U64_EQ(stat_of(c, "dd", "unindexed"), 1); /* w staged */
    ASSERT_U64_EQ(put(c, "dd", q, NULL, "q"), wid);
    cache_indexer_resume(c->indexer);
    cache_destroy(c);
}

static void test_dedup_beyond_the_window_sees_the_most_recent_waiting_entries(void) {
    cache *c = new_cache();
    cache_indexer_pause(c->indexer);
    vec_rng rng = {.state = 10};
    size_t n = CACHE_DEDUP_WINDOW + 100;
    float *base = vec_random_units(&rng, n, WIDE);
    uint64_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        ids[i] = put_dim(c, "win", WIDE, base + i * WIDE, NULL, "r");
        ASSERT_TRUE(i == 0 || ids[i] != ids[i - 1]); /* random: no near-copies */
    }
    ASSERT_U64_EQ(stat_of(c, "win", "unindexed"), n);
    float q[WIDE];
    /* The last, and the oldest still inside the window, are found. */
    vec_paraphrase_at(&rng, base + (n - 1) * WIDE, 0.995f, WIDE, q);
    ASSERT_U64_EQ(put_dim(c, "win", WIDE, q, NULL, "r"), ids[n - 1]);
    vec_paraphrase_at(&rng, base + (n - CACHE_DEDUP_WINDOW) * WIDE, 0.995f, WIDE, q);
    ASSERT_U64_EQ(put_dim(c, "win", WIDE, q, NULL, "r"), ids[n - CACHE_DEDUP_WINDOW]);
    /* The first entry is older than the window and still waits: this
     * STORE is kept as a new entry (the documented bound). */
    vec_paraphrase_at(&rng, base, 0.995f, WIDE, q);
    uint64_t extra = put_dim(c, "win", WIDE, q, NULL, "r");
    ASSERT_TRUE(extra != ids[0]);
    /* Once the graph has it, dedup finds it again. */
    cache_indexer_resume(c->indexer);
    cache_wait_indexed(c);
    vec_paraphrase_at(&rng, base, 0.998f, WIDE, q);
    uint64_t again = put_dim(c, "win", WIDE, q, NULL, "r");
    ASSERT_TRUE(again == ids[0] || again == extra);
    ASSERT_U64_EQ(stat_of(c, "win", "entries"), n + 1);
    free(ids);
    free(base);
    cache_destroy(c);
}

static void test_two_stores_in_flight_together_do_not_see_each_other(void) {
    cache *c = new_cache();
    float v[DIM], near[DIM];
    vec_at(1.0f, 1, v);
    vec_at(0.995f, 2, near);
    /* Both prepared (on their way to disk) before either is published. */
    cache_store_args a = store_req("fl", DIM, "same question", "a");
    cache_store_args b = store_req("fl", DIM, "same  question", "b");
    cache_pending *pa, *pb;
    ASSERT_OK(cache_prepare_store(c, &a, v, &pa));
    ASSERT_OK(cache_prepare_store(c, &b, near, &pb));
    uint64_t ida, idb;
    ASSERT_OK(cache_publish(c, pa, &ida));
    ASSERT_OK(cache_publish(c, pb, &idb));
    ASSERT_TRUE(ida != idb);
    ASSERT_U64_EQ(stat_of(c, "fl", "entries"), 2);
    /* The prompt answers with the later one; both stay valid entries. */
    float other[DIM];
    vec_at(0.8f, 3, other);
    answer ans = ask(c, "fl", other, 0.9f, "same question");
    ASSERT_U64_EQ(ans.id, idb);
    ASSERT_EQ(ans.exact, 1);
    /* A third STORE, after both were acknowledged, updates one of them. */
    uint64_t idc = put(c, "fl", near, "same question", "c");
    ASSERT_U64_EQ(idc, idb);
    ASSERT_U64_EQ(stat_of(c, "fl", "entries"), 2);
    cache_destroy(c);
}

/* ---- the exact tier ---------------------------------------------------------*/

static void test_an_exact_tier_hit_needs_the_floor_not_the_request_threshold(void) {
    cache *c = new_cache(); /* floor 0.5 */
    float v[DIM], q70[DIM], q30[DIM], opposite[DIM];
    vec_at(1.0f, 1, v);
    vec_at(0.7f, 2, q70);
    vec_at(0.3f, 2, q30);
    for (int i = 0; i < DIM; i++)
        opposite[i] = -v[i];
    uint64_t id = put(c, "ex", v, "What is deja?", "a cache");

    /* Above the floor, below the request's threshold: an exact hit with
     * the true cosine, marked. */
    answer a = ask(c, "ex", q70, 1.0f, "What  is deja?");
    ASSERT_U64_EQ(a.id, id);
    ASSERT_EQ(a.exact, 1);
    ASSERT_NEAR(a.similarity, 0.7f, 1e-5);
    ASSERT_STR_EQ(a.response, "a cache");

    /* An opposite or foreign embedding never matches by its text alone:
     * -0.99999 at threshold 1.0 was once a hit. */
    a = ask(c, "ex", opposite, 1.0f, "What is deja?");
    ASSERT_U64_EQ(a.id, 0);
    a = ask(c, "ex", q30, -1.0f, "What is deja?");
    ASSERT_U64_EQ(a.id, 0);
    ASSERT_U64_EQ(stat_of(c, "ex", "exact_hits"), 1);
    ASSERT_U64_EQ(stat_of(c, "ex", "misses"), 2);

    /* Without the prompt the vector rule applies, unmarked. */
    a = ask(c, "ex", q70, 0.6f, NULL);
    ASSERT_U64_EQ(a.id, id);
    ASSERT_EQ(a.exact, 0);
    ASSERT_U64_EQ(ask(c, "ex", q70, 0.8f, NULL).id, 0);
    cache_destroy(c);
}

static void test_an_exact_tier_miss_on_the_floor_falls_back_to_the_vector_search(void) {
    cache *c = new_cache();
    cache_ns_config cfg = {.dim = DIM, .min_threshold = 0.9f};
    cache_ns_image rec;
    int created;
    char msg[64];
    ASSERT_OK(cache_ns_create(c, (const uint8_t *)"strict", 6, &cfg, &rec, &created, msg,
                              sizeof msg));
    float a[DIM], b[DIM], q[DIM];
    vec_at(1.0f, 1, a);  /* stored with the prompt */
    vec_at(0.0f, 2, b);  /* another entry, no prompt */
    vec_at(0.85f, 1, q); /* 0.85 from a: under this namespace's floor */
    q[2] = 0.0f;
    uint64_t ida = put(c, "strict", a, "hello", "A");
    uint64_t idb = put(c, "strict", b, NULL, "B");
    ASSERT_U64_EQ(ask(c, "strict", q, 0.5f, "hello").id, 0); /* floor 0.9 holds */
    float qb[DIM];
    vec_at(0.95f, 2, qb); /* 0.95 from a ... */
    float near_b[DIM] = {0};
    near_b[2] = 1.0f;
    near_b[3] = 0.2f;
    vec_normalize(near_b, DIM);
    answer ans = ask(c, "strict", near_b, 0.9f, "hello"); /* far from a, near b */
    ASSERT_U64_EQ(ans.id, idb);
    ASSERT_EQ(ans.exact, 0);
    ans = ask(c, "strict", qb, 0.99f, "hello");
    ASSERT_U64_EQ(ans.id, ida);
    ASSERT_EQ(ans.exact, 1);
    cache_destroy(c);
}

/* ---- blank prompts ----------------------------------------------------------*/

static void test_blank_prompts_key_nothing(void) {
    cache *c = new_cache();
    float v1[DIM], v2[DIM], v3[DIM];
    vec_at(0.0f, 1, v1); /* three orthogonal vectors */
    vec_at(0.0f, 2, v2);
    vec_at(0.0f, 3, v3);
    uint64_t a = put(c, "bl", v1, "   ", "about v1");
    uint64_t b = put(c, "bl", v2, "\t\r\n \v\f", "about v2");
    uint64_t e = put(c, "bl", v3, "", "about v3");
    ASSERT_TRUE(a != b && b != e && a != e);
    ASSERT_U64_EQ(stat_of(c, "bl", "entries"), 3);
    ASSERT_U64_EQ(stat_of(c, "bl", "dedup_updates"), 0);
    float far[DIM] = {1.0f}; /* orthogonal to all three */
    ASSERT_U64_EQ(ask(c, "bl", far, 0.5f, " ").id, 0);
    ASSERT_U64_EQ(ask(c, "bl", far, 0.5f, "\n\n").id, 0);
    /* The vector still finds each; none is marked exact. */
    answer ans = ask(c, "bl", v2, 0.9f, " ");
    ASSERT_U64_EQ(ans.id, b);
    ASSERT_EQ(ans.exact, 0);
    ASSERT_U64_EQ(stat_of(c, "bl", "exact_hits"), 0);
    /* A real prompt next to them still keys the tier, and deleting a blank
     * one leaves it alone. */
    uint64_t k = put(c, "bl", far, " real  question ", "R");
    uint32_t ns_id;
    ASSERT_OK(cache_delete(c, (const uint8_t *)"bl", 2, a, &ns_id));
    ans = ask(c, "bl", v1, 1.0f, "real question");
    ASSERT_U64_EQ(ans.id, 0); /* v1 is orthogonal to far: under the floor */
    float near_far[DIM];
    memcpy(near_far, far, sizeof far);
    near_far[4] = 0.5f;
    vec_normalize(near_far, DIM);
    ans = ask(c, "bl", near_far, 1.0f, "real question");
    ASSERT_U64_EQ(ans.id, k);
    ASSERT_EQ(ans.exact, 1);
    cache_destroy(c);
}

int main(void) {
    idx_simd_init();
    RUN(test_dedup_sees_an_entry_still_waiting_for_the_graph);
    RUN(test_dedup_prefers_the_most_similar_of_graph_and_staging_index);
    RUN(test_dedup_beyond_the_window_sees_the_most_recent_waiting_entries);
    RUN(test_two_stores_in_flight_together_do_not_see_each_other);
    RUN(test_an_exact_tier_hit_needs_the_floor_not_the_request_threshold);
    RUN(test_an_exact_tier_miss_on_the_floor_falls_back_to_the_vector_search);
    RUN(test_blank_prompts_key_nothing);
    return harness_result();
}
