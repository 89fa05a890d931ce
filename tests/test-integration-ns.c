/* test-integration-ns.c: namespace ops over the wire, and their
 * durability: a namespace's configuration survives a restart, a dropped
 * namespace stays dropped, and the exact tier is rebuilt from stored
 * prompts. Raw frames through the proto codec, against a real dejad.
 *
 * A test that restarts a server starts its own on a fresh data folder
 * and stops it at the end; the others share main()'s. */
#include <unistd.h>

#include "harness.h"
#include "proto.h"
#include "support/spawn.h"

#define DIM 16
#define BUF (1u << 20)

static test_server srv;
static uint8_t reply[BUF];
static int fd = -1;

static proto_header roundtrip(proto_buf *b) {
    ASSERT_OK(test_raw_send(fd, b->data, b->len));
    proto_buf_reset(b);
    long n = test_raw_recv_frame(fd, reply, BUF, 10000);
    ASSERT_GT(n, 0);
    proto_header h;
    ASSERT_GT(proto_parse_frame(reply, (size_t)n, BUF, &h), 0);
    return h;
}

static void reconnect(const test_server *s) {
    if (fd >= 0) close(fd);
    fd = test_server_connect_raw(s);
    ASSERT_GE(fd, 0);
}

/* A fresh dejad of the test's own, connected. */
static void start_a_server(test_server *s) {
    ASSERT_OK(test_server_start(s, NULL));
    reconnect(s);
}

/* Closes the connection and stops the server, which must exit cleanly. */
static void stop_the_server(test_server *s) {
    close(fd);
    fd = -1;
    ASSERT_EQ(test_server_stop(s), 0);
}

static proto_header ns_create(const char *name, const proto_ns_config *cfg) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ns_create_req(&b, 1, (const uint8_t *)name,
                                         (uint8_t)strlen(name), cfg));
    proto_header h = roundtrip(&b);
    proto_buf_free(&b);
    return h;
}

static uint64_t store(const char *ns, uint64_t seed, const char *prompt,
                      const char *resp) {
    float v[DIM];
    uint8_t vec[4 * DIM];
    test_unit_vector(seed, v, DIM);
    proto_vector_write(vec, v, DIM);
    proto_store_req r = {.ns = (const uint8_t *)ns,
                         .ns_len = (uint8_t)strlen(ns),
                         .dim = DIM,
                         .vector = vec,
                         .prompt = (const uint8_t *)prompt,
                         .prompt_len = prompt ? (uint32_t)strlen(prompt) : 0,
                         .response = (const uint8_t *)resp,
                         .response_len = (uint32_t)strlen(resp)};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_store_req(&b, 2, &r));
    proto_header h = roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(h.status, 0);
    uint64_t id;
    ASSERT_OK(proto_decode_store_resp(reply + PROTO_HEADER_SIZE, h.body_len, &id));
    return id;
}

/* Looks up with vector v (and an optional prompt); returns the hit's id
 * or 0. */
static uint64_t lookup_vec(const char *ns, const float *v, float threshold,
                           const char *prompt) {
    uint8_t vec[4 * DIM];
    proto_vector_write(vec, v, DIM);
    proto_lookup_req r = {.ns = (const uint8_t *)ns,
                          .ns_len = (uint8_t)strlen(ns),
                          .dim = DIM,
                          .k = 1,
                          .threshold = threshold,
                          .vector = vec,
                          .prompt = (const uint8_t *)prompt,
                          .prompt_len = prompt ? (uint32_t)strlen(prompt) : 0};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_lookup_req(&b, 3, 0, &r));
    proto_header h = roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(h.status, 0);
    proto_hit hit;
    uint16_t count;
    ASSERT_OK(
        proto_decode_lookup_resp(reply + PROTO_HEADER_SIZE, h.body_len, &hit, 1, &count));
    return count ? hit.id : 0;
}

/* Looks up with vector `seed`. */
static uint64_t lookup(const char *ns, uint64_t seed, float threshold,
                       const char *prompt) {
    float v[DIM];
    test_unit_vector(seed, v, DIM);
    return lookup_vec(ns, v, threshold, prompt);
}

/* A unit vector at cosine cos from vector `seed` (turned towards vector
 * `other`, made orthogonal to it first). */
static void vector_at(uint64_t seed, uint64_t other, float cos, float *out) {
    float v[DIM], u[DIM];
    test_unit_vector(seed, v, DIM);
    test_unit_vector(other, u, DIM);
    double dot = 0, norm = 0;
    for (int i = 0; i < DIM; i++)
        dot += (double)u[i] * v[i];
    for (int i = 0; i < DIM; i++) {
        u[i] = (float)(u[i] - dot * v[i]);
        norm += (double)u[i] * u[i];
    }
    double side = sqrt(1.0 - (double)cos * cos) / sqrt(norm);
    for (int i = 0; i < DIM; i++)
        out[i] = (float)(cos * v[i] + side * u[i]);
}

static int list_has(const char *name) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ns_list_req(&b, 4));
    proto_header h = roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(h.status, 0);
    size_t pos = 0;
    const uint8_t *n;
    uint8_t len;
    int found = 0, r;
    while ((r = proto_ns_list_next(reply + PROTO_HEADER_SIZE, h.body_len, &pos, &n,
                                   &len)) > 0)
        found |= len == strlen(name) && memcmp(n, name, len) == 0;
    ASSERT_EQ(r, 0);
    return found;
}

static proto_ns_config info(const char *name, uint64_t *entries) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(
        proto_encode_ns_info_req(&b, 5, (const uint8_t *)name, (uint8_t)strlen(name)));
    proto_header h = roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(h.status, 0);
    proto_ns_config cfg;
    size_t off;
    ASSERT_OK(
        proto_decode_ns_info_resp(reply + PROTO_HEADER_SIZE, h.body_len, &cfg, &off));
    size_t pos = 0;
    proto_stat st;
    *entries = UINT64_MAX;
    while (proto_stats_next(reply + PROTO_HEADER_SIZE + off, h.body_len - off, &pos,
                            &st) > 0)
        if (st.key_len == 7 && memcmp(st.key, "entries", 7) == 0) *entries = st.value;
    return cfg;
}

static void test_a_created_namespace_keeps_its_configuration_across_restarts(void) {
    test_server own;
    start_a_server(&own);
    proto_ns_config cfg = {.dim = DIM,
                           .index_kind = PROTO_INDEX_FLAT,
                           .min_threshold = 0.95f,
                           .default_ttl_s = 86400};
    ASSERT_EQ(ns_create("model-a:prompt-1", &cfg).status, 0);
    ASSERT_EQ(ns_create("model-a:prompt-1", &cfg).status, 0); /* idempotent */
    proto_ns_config other = cfg;
    other.min_threshold = 0.9f;
    ASSERT_EQ(ns_create("model-a:prompt-1", &other).status, -DEJA_ERR_EXISTS);
    uint64_t id = store("model-a:prompt-1", 1, "How do I reset my password?", "Click...");
    ASSERT_TRUE(list_has("model-a:prompt-1"));

    ASSERT_EQ(test_server_shutdown(&own), 0);
    ASSERT_OK(test_server_restart(&own, NULL));
    reconnect(&own);
    uint64_t entries;
    proto_ns_config got = info("model-a:prompt-1", &entries);
    ASSERT_EQ(got.index_kind, PROTO_INDEX_FLAT);
    ASSERT_NEAR(got.min_threshold, 0.95, 1e-6);
    ASSERT_EQ(got.default_ttl_s, 86400);
    ASSERT_U64_EQ(entries, 1);
    /* The floor still holds, and the exact tier was rebuilt from the
     * stored prompt: a vector at 0.97 (above the 0.95 floor) with the same
     * prompt hits at threshold 0.99, which no vector search would. */
    ASSERT_U64_EQ(lookup("model-a:prompt-1", 1, 0.5f, NULL), id);
    float near[DIM];
    vector_at(1, 777, 0.97f, near);
    ASSERT_U64_EQ(lookup_vec("model-a:prompt-1", near, 0.99f, NULL), 0);
    ASSERT_U64_EQ(
        lookup_vec("model-a:prompt-1", near, 0.99f, "How do I  reset my password?"), id);
    stop_the_server(&own);
}

static void test_a_dropped_namespace_stays_dropped_after_a_restart(void) {
    test_server own;
    start_a_server(&own);
    store("to-drop", 5, NULL, "x");
    store("to-drop", 6, NULL, "y");
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ns_drop_req(&b, 6, (const uint8_t *)"to-drop", 7));
    proto_header h = roundtrip(&b);
    ASSERT_EQ(h.status, 0);
    uint64_t removed;
    ASSERT_OK(proto_decode_u64_resp(reply + PROTO_HEADER_SIZE, h.body_len, &removed));
    ASSERT_U64_EQ(removed, 2);
    ASSERT_TRUE(!list_has("to-drop"));
    test_server_kill(&own);
    ASSERT_OK(test_server_restart(&own, NULL));
    reconnect(&own);
    ASSERT_TRUE(!list_has("to-drop"));
    ASSERT_U64_EQ(lookup("to-drop", 5, 0.99f, NULL), 0);
    /* The name can be used again, with another dimension even. */
    proto_ns_config cfg = {.dim = 4};
    ASSERT_EQ(ns_create("to-drop", &cfg).status, 0);
    ASSERT_OK(proto_encode_ns_drop_req(&b, 7, (const uint8_t *)"nope", 4));
    ASSERT_EQ(roundtrip(&b).status, -DEJA_ERR_NOT_FOUND);
    proto_buf_free(&b);
    stop_the_server(&own);
}

static void test_a_bad_configuration_is_refused_with_a_reason(void) {
    proto_ns_config cfg = {.dim = DIM,
                           .index_kind = PROTO_INDEX_FAISS,
                           .faiss_factory = (const uint8_t *)"HNSW32",
                           .faiss_factory_len = 6};
    proto_header h = ns_create("faiss-hnsw", &cfg);
    ASSERT_TRUE(h.status != 0);
    cfg.faiss_factory = (const uint8_t *)"no such index";
    cfg.faiss_factory_len = 13;
    ASSERT_TRUE(ns_create("faiss-bad", &cfg).status != 0);
    ASSERT_TRUE(!list_has("faiss-bad"));
}

int main(void) {
    RUN(test_a_created_namespace_keeps_its_configuration_across_restarts);
    RUN(test_a_dropped_namespace_stays_dropped_after_a_restart);
    if (test_server_start(&srv, NULL) != 0) return 1;
    reconnect(&srv);
    RUN(test_a_bad_configuration_is_refused_with_a_reason);
    close(fd);
    if (test_server_stop(&srv) != 0) return 1;
    return harness_result();
}
