/* test-integration-cache.c: the semantic cache contract, end to end.
 *
 * A real dejad holds 10,000 random unit vectors with their responses.
 * Specifies: a paraphrase (cosine ~0.9 to a stored vector) hits that entry
 * and gets its exact response; an unrelated vector misses; k > 1 returns
 * the best matches first; namespaces never see each other's entries, even
 * for identical vectors; deleted and flushed entries are never returned.
 * (Expiry is specified with a driven clock in test-server-cache.c.) */
#include <math.h>
#include <unistd.h>

#include "deja.h"
#include "harness.h"
#include "support/spawn.h"

#define DIM 256
#define N 10000
#define THRESHOLD 0.85f

static test_server srv;
static deja_client *cli;
static float *base;     /* N x DIM unit vectors */
static uint64_t ids[N]; /* entry id of base row i */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static double uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double gaussian(void) {
    double u = uniform(), v = uniform();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(2.0 * M_PI * v);
}

static void normalize(float *v) {
    double s = 0;
    for (int i = 0; i < DIM; i++)
        s += (double)v[i] * v[i];
    float inv = (float)(1.0 / sqrt(s));
    for (int i = 0; i < DIM; i++)
        v[i] *= inv;
}

static void random_unit(float *v) {
    for (int i = 0; i < DIM; i++)
        v[i] = (float)gaussian();
    normalize(v);
}

/* A vector with cosine ~cos_target to v: v plus an orthogonal direction. */
static void paraphrase(const float *v, float cos_target, float *out) {
    float noise[DIM];
    random_unit(noise);
    double dot = 0;
    for (int i = 0; i < DIM; i++)
        dot += (double)noise[i] * v[i];
    for (int i = 0; i < DIM; i++)
        noise[i] -= (float)dot * v[i];
    normalize(noise);
    float s = sqrtf(1.0f - cos_target * cos_target);
    for (int i = 0; i < DIM; i++)
        out[i] = cos_target * v[i] + s * noise[i];
}

static void response_of(int i, char *buf, size_t cap) {
    snprintf(buf, cap, "answer number %d: %08x", i, (unsigned)(i * 2654435761u));
}

static void load_entries(void) {
    base = malloc(sizeof(float) * DIM * N);
    for (int i = 0; i < N; i++) {
        random_unit(base + (size_t)i * DIM);
        char resp[64], prompt[64];
        response_of(i, resp, sizeof resp);
        snprintf(prompt, sizeof prompt, "question %d", i);
        deja_store_req req = {.ns = "main",
                              .vector = base + (size_t)i * DIM,
                              .dim = DIM,
                              .response = resp,
                              .response_len = strlen(resp),
                              .prompt = prompt,
                              .prompt_len = strlen(prompt)};
        if (deja_store(cli, &req, &ids[i]) != 0) {
            fprintf(stderr, "load: store %d failed: %s\n", i, deja_last_error(cli));
            exit(1);
        }
    }
}

static void test_paraphrases_hit_their_entry_and_get_its_exact_response(void) {
    for (int t = 0; t < 300; t++) {
        int i = (int)(uniform() * N);
        float q[DIM];
        paraphrase(base + (size_t)i * DIM, 0.9f, q);
        deja_result *r = NULL;
        ASSERT_OK(deja_lookup(cli, "main", q, DIM, THRESHOLD, 1, 0, &r));
        ASSERT_EQ(r->count, 1);
        ASSERT_U64_EQ(r->hits[0].id, ids[i]);
        ASSERT_NEAR(r->hits[0].similarity, 0.9, 0.01);
        char want[64];
        response_of(i, want, sizeof want);
        ASSERT_EQ(r->hits[0].response_len, strlen(want));
        ASSERT_MEM_EQ(r->hits[0].response, want, strlen(want));
        deja_result_free(r);
    }
}

static void test_unrelated_vectors_miss(void) {
    for (int t = 0; t < 300; t++) {
        float q[DIM];
        random_unit(q);
        deja_result *r = NULL;
        ASSERT_OK(deja_lookup(cli, "main", q, DIM, THRESHOLD, 1, 0, &r));
        ASSERT_EQ(r->count, 0);
        deja_result_free(r);
    }
}

static void test_paraphrases_below_the_threshold_miss(void) {
    for (int t = 0; t < 100; t++) {
        int i = (int)(uniform() * N);
        float q[DIM];
        paraphrase(base + (size_t)i * DIM, 0.8f, q);
        deja_result *r = NULL;
        ASSERT_OK(deja_lookup(cli, "main", q, DIM, THRESHOLD, 1, 0, &r));
        ASSERT_EQ(r->count, 0);
        deja_result_free(r);
    }
}

static void test_k_best_come_back_best_first_with_prompts_on_request(void) {
    /* Three entries at decreasing similarity to one query. */
    float q[DIM], a[DIM], b[DIM], c[DIM];
    random_unit(q);
    paraphrase(q, 0.97f, a);
    paraphrase(q, 0.93f, b);
    paraphrase(q, 0.89f, c);
    uint64_t ia, ib, ic;
    deja_store_req req = {
        .ns = "kbest", .dim = DIM, .response = "A", .response_len = 1, .prompt_len = 2};
    req.vector = c, req.response = "C", req.prompt = "pc";
    ASSERT_OK(deja_store(cli, &req, &ic));
    req.vector = a, req.response = "A", req.prompt = "pa";
    ASSERT_OK(deja_store(cli, &req, &ia));
    req.vector = b, req.response = "B", req.prompt = "pb";
    ASSERT_OK(deja_store(cli, &req, &ib));

    deja_result *r = NULL;
    ASSERT_OK(
        deja_lookup(cli, "kbest", q, DIM, THRESHOLD, 10, DEJA_LOOKUP_WANT_PROMPT, &r));
    ASSERT_EQ(r->count, 3);
    ASSERT_U64_EQ(r->hits[0].id, ia);
    ASSERT_U64_EQ(r->hits[1].id, ib);
    ASSERT_U64_EQ(r->hits[2].id, ic);
    ASSERT_TRUE(r->hits[0].similarity > r->hits[1].similarity);
    ASSERT_TRUE(r->hits[1].similarity > r->hits[2].similarity);
    ASSERT_STR_EQ(r->hits[1].response, "B");
    ASSERT_EQ(r->hits[1].prompt_len, 2);
    ASSERT_MEM_EQ(r->hits[1].prompt, "pb", 2);
    deja_result_free(r);

    /* Without the flag no prompt is returned. */
    ASSERT_OK(deja_lookup(cli, "kbest", q, DIM, 0.95f, 10, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_EQ(r->hits[0].prompt_len, 0);
    deja_result_free(r);
}

static void test_namespaces_with_identical_vectors_never_cross(void) {
    float v[DIM];
    random_unit(v);
    uint64_t id_a, id_b;
    deja_store_req req = {.ns = "tenant-a",
                          .vector = v,
                          .dim = DIM,
                          .response = "from a",
                          .response_len = 6};
    ASSERT_OK(deja_store(cli, &req, &id_a));
    req.ns = "tenant-b";
    req.response = "from b";
    ASSERT_OK(deja_store(cli, &req, &id_b));
    ASSERT_TRUE(id_a != id_b);

    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(cli, "tenant-a", v, DIM, THRESHOLD, 10, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, id_a);
    ASSERT_STR_EQ(r->hits[0].response, "from a");
    deja_result_free(r);
    ASSERT_OK(deja_lookup(cli, "tenant-b", v, DIM, THRESHOLD, 10, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, id_b);
    ASSERT_STR_EQ(r->hits[0].response, "from b");
    deja_result_free(r);

    /* An entry of tenant-a is invisible to a third namespace and cannot be
     * deleted through tenant-b. */
    ASSERT_OK(deja_lookup(cli, "tenant-c", v, DIM, -1.0f, 10, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    ASSERT_EQ(deja_delete(cli, "tenant-b", id_a), DEJA_ERR_NOT_FOUND);
    ASSERT_OK(deja_delete(cli, "tenant-a", id_a));
    ASSERT_OK(deja_lookup(cli, "tenant-b", v, DIM, THRESHOLD, 10, 0, &r));
    ASSERT_EQ(r->count, 1);
    deja_result_free(r);
}

static void test_deleted_and_flushed_entries_are_never_returned(void) {
    float v[DIM];
    random_unit(v);
    uint64_t id;
    deja_store_req req = {
        .ns = "gone", .vector = v, .dim = DIM, .response = "x", .response_len = 1};
    ASSERT_OK(deja_store(cli, &req, &id));
    ASSERT_OK(deja_delete(cli, "gone", id));
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(cli, "gone", v, DIM, THRESHOLD, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    ASSERT_EQ(deja_delete(cli, "gone", id), DEJA_ERR_NOT_FOUND);

    for (int i = 0; i < 5; i++) {
        float other[DIM];
        random_unit(other);
        req.vector = other;
        ASSERT_OK(deja_store(cli, &req, NULL));
    }
    uint64_t removed = 0;
    ASSERT_OK(deja_flush(cli, "gone", &removed));
    ASSERT_U64_EQ(removed, 5);
    ASSERT_OK(deja_lookup(cli, "gone", v, DIM, -1.0f, 10, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
}

static void test_stats_count_entries_and_outcomes(void) {
    deja_stats *s = NULL;
    ASSERT_OK(deja_stats_get(cli, "main", &s));
    uint64_t v = 0;
    ASSERT_OK(deja_stats_find(s, "entries", &v));
    ASSERT_U64_EQ(v, N);
    ASSERT_OK(deja_stats_find(s, "dim", &v));
    ASSERT_U64_EQ(v, DIM);
    ASSERT_OK(deja_stats_find(s, "hits", &v));
    ASSERT_GE(v, 300);
    ASSERT_OK(deja_stats_find(s, "index_bytes", &v));
    ASSERT_GE(v, (uint64_t)N * DIM * 4);
    deja_stats_free(s);
    ASSERT_OK(deja_stats_get(cli, NULL, &s));
    ASSERT_OK(deja_stats_find(s, "namespaces", &v));
    ASSERT_GE(v, 4);
    deja_stats_free(s);
}

static void test_the_unix_socket_serves_the_same_cache(void) {
    deja_client *u = NULL;
    ASSERT_OK(deja_connect(srv.unix_path, NULL, &u));
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(u, "main", base, DIM, 0.999f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_U64_EQ(r->hits[0].id, ids[0]);
    deja_result_free(r);
    deja_close(u);
}

int main(void) {
    /* Durability is specified elsewhere (test-store-crash); batch sync keeps
     * 10,000 one-at-a-time STOREs quick. */
    const char *args[] = {"--fsync", "batch", NULL};
    if (test_server_start(&srv, args) != 0) return 1;
    if (deja_connect(srv.addr, NULL, &cli) != 0) return 1;
    load_entries();
    RUN(test_paraphrases_hit_their_entry_and_get_its_exact_response);
    RUN(test_unrelated_vectors_miss);
    RUN(test_paraphrases_below_the_threshold_miss);
    RUN(test_k_best_come_back_best_first_with_prompts_on_request);
    RUN(test_namespaces_with_identical_vectors_never_cross);
    RUN(test_deleted_and_flushed_entries_are_never_returned);
    RUN(test_stats_count_entries_and_outcomes);
    RUN(test_the_unix_socket_serves_the_same_cache);
    deja_close(cli);
    free(base);
    if (test_server_stop(&srv) != 0) return 1; /* unclean exit or leak */
    return harness_result();
}
