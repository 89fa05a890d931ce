/* test-integration-ns-config.c: the namespace configuration block over the
 * wire (docs/PROTOCOL.md 5.9, issue #10). Without the EXPLICIT flag a 0
 * still means "the server's default"; with it quant, min_threshold, dedup
 * and default_ttl_s are literal, so f32 can be asked of an int8 server, a
 * floor of exactly 0 set, dedup turned off with 0, and expiry with 0.
 * NS_INFO answers with the resolved block (EXPLICIT set), a negative floor
 * included; NS_CREATE is idempotent on resolved configurations; undefined
 * flag bits, a dim of 0 and an empty name get their documented codes
 * whatever the body's length. The server runs with --quant int8.
 *
 * The tests share main()'s server but make the namespaces they use
 * themselves, so each can run alone; the one that restarts a server
 * starts its own. */
#include <unistd.h>

#include "harness.h"
#include "support/wire.h"

#define DIM 16

static const char *const int8_server[] = {"--quant", "int8", NULL};

static test_server srv;

static proto_ns_config explicit_hnsw(void) {
    return (proto_ns_config){
        .dim = DIM, .index_kind = PROTO_INDEX_HNSW, .flags = PROTO_NS_EXPLICIT};
}

/* The namespaces the tests check, configured as the first and third
 * tests below create them: "literal" (explicit zeros), "defaults" (no
 * EXPLICIT) and "negative-floor". NS_CREATE is idempotent, so a test that needs them
 * makes them whether or not an earlier test did. */
static void three_namespaces_with_literal_and_default_configurations(void) {
    proto_ns_config literal = explicit_hnsw();
    ASSERT_EQ(wire_ns_create("literal", &literal).status, 0);
    proto_ns_config defaults = {.dim = DIM};
    ASSERT_EQ(wire_ns_create("defaults", &defaults).status, 0);
    proto_ns_config negative = explicit_hnsw();
    negative.min_threshold = -0.25f;
    ASSERT_EQ(wire_ns_create("negative-floor", &negative).status, 0);
}

static void test_explicit_zeros_are_literal_and_info_reports_them(void) {
    proto_ns_config cfg = explicit_hnsw();
    ASSERT_EQ(wire_ns_create("literal", &cfg).status, 0);
    proto_ns_config got;
    uint64_t ttl;
    ASSERT_EQ(wire_ns_info("literal", &got, "default_ttl_s", &ttl).status, 0);
    ASSERT_EQ(got.flags, PROTO_NS_EXPLICIT | PROTO_NS_NO_DEDUP);
    ASSERT_EQ(got.quant, 0); /* f32 although the server's --quant is int8 */
    ASSERT_NEAR(got.min_threshold, 0, 0);
    ASSERT_NEAR(got.dedup, 0, 0);
    ASSERT_EQ(got.default_ttl_s, 0);
    ASSERT_U64_EQ(ttl, 0);
    ASSERT_EQ(got.hnsw_m, 16); /* the index's default, resolved */

    /* The same request without EXPLICIT means the server's defaults. */
    proto_ns_config defaults = {.dim = DIM};
    ASSERT_EQ(wire_ns_create("defaults", &defaults).status, 0);
    ASSERT_EQ(wire_ns_info("defaults", &got, NULL, NULL).status, 0);
    ASSERT_EQ(got.flags, PROTO_NS_EXPLICIT);
    ASSERT_EQ(got.index_kind, PROTO_INDEX_HNSW);
    ASSERT_EQ(got.quant, 1);
    ASSERT_NEAR(got.min_threshold, 0.5, 1e-6);
    ASSERT_NEAR(got.dedup, 0.99, 1e-6);
    ASSERT_EQ(got.default_ttl_s, 7u * 24 * 3600);
}

/* A floor of exactly 0 serves a match at cosine 0.3 that the server's
 * default floor (0.5) hides; dedup 0 keeps two identical STOREs apart. */
static void test_a_zero_floor_and_dedup_off_behave_as_asked(void) {
    three_namespaces_with_literal_and_default_configurations();
    uint64_t a = wire_store("literal", DIM, 1, "first");
    uint64_t b = wire_store("literal", DIM, 1, "second"); /* same vector */
    ASSERT_TRUE(a != b);
    uint64_t c = wire_store("defaults", DIM, 1, "first");
    ASSERT_U64_EQ(wire_store("defaults", DIM, 1, "second"), c); /* deduplicated */

    float u[DIM], w[DIM], v[DIM];
    test_unit_vector(1, u, DIM);
    test_unit_vector(2, w, DIM);
    float dot = 0;
    for (int i = 0; i < DIM; i++)
        dot += u[i] * w[i];
    float norm = 0;
    for (int i = 0; i < DIM; i++) {
        w[i] -= dot * u[i];
        norm += w[i] * w[i];
    }
    for (int i = 0; i < DIM; i++)
        v[i] = 0.3f * u[i] + sqrtf(1 - 0.09f) * w[i] / sqrtf(norm);
    uint64_t id;
    float sim = 0;
    ASSERT_EQ(wire_lookup_vec("literal", DIM, v, -1.0f, &id, &sim).status, 0);
    ASSERT_TRUE(id == a || id == b);
    ASSERT_NEAR(sim, 0.3, 0.01);
    ASSERT_EQ(wire_lookup_vec("defaults", DIM, v, -1.0f, &id, NULL).status, 0);
    ASSERT_U64_EQ(id, 0);
}

/* A negative floor is reported as such in the block (the milli counter,
 * a u64, cannot go below 0). */
static void test_a_negative_floor_is_reported(void) {
    proto_ns_config cfg = explicit_hnsw();
    cfg.min_threshold = -0.25f;
    ASSERT_EQ(wire_ns_create("negative-floor", &cfg).status, 0);
    proto_ns_config got;
    uint64_t milli;
    ASSERT_EQ(wire_ns_info("negative-floor", &got, "min_threshold_milli", &milli).status,
              0);
    ASSERT_NEAR(got.min_threshold, -0.25, 0);
    ASSERT_U64_EQ(milli, 0);
}

/* Same configuration = success, compared after resolution: the defaults
 * spelled out, NS_INFO's block sent back, or the bare {dim} of a
 * namespace a STORE created. Anything else is EXISTS. */
static void test_create_is_idempotent_on_resolved_configurations(void) {
    three_namespaces_with_literal_and_default_configurations();
    proto_ns_config bare = {.dim = DIM};
    ASSERT_EQ(wire_ns_create("defaults", &bare).status, 0);
    proto_ns_config spelled = {.dim = DIM,
                               .index_kind = PROTO_INDEX_HNSW,
                               .quant = 1,
                               .flags = PROTO_NS_EXPLICIT,
                               .min_threshold = 0.5f,
                               .dedup = 0.99f,
                               .default_ttl_s = 7u * 24 * 3600};
    ASSERT_EQ(wire_ns_create("defaults", &spelled).status, 0);
    proto_ns_config info;
    ASSERT_EQ(wire_ns_info("literal", &info, NULL, NULL).status, 0);
    proto_ns_config back = info; /* points into the reply buffer: copy it */
    ASSERT_EQ(wire_ns_create("literal", &back).status, 0);
    proto_ns_config other = spelled;
    other.quant = 0;
    ASSERT_EQ(wire_ns_create("defaults", &other).status, -DEJA_ERR_EXISTS);
    other = explicit_hnsw();
    other.min_threshold = 0.001f;
    ASSERT_EQ(wire_ns_create("literal", &other).status, -DEJA_ERR_EXISTS);

    wire_store("implicit", DIM, 9, "made by a STORE");
    ASSERT_EQ(wire_ns_create("implicit", &bare).status, 0);
    ASSERT_EQ(wire_ns_create("implicit", &spelled).status, 0);
}

static void test_undefined_flag_bits_are_refused(void) {
    for (unsigned bit = 3; bit < 8; bit++) {
        proto_ns_config cfg = {.dim = DIM, .flags = (uint8_t)(1u << bit)};
        proto_header h = wire_ns_create("flags", &cfg);
        ASSERT_EQ(h.status, -DEJA_ERR_BAD_REQUEST);
    }
    ASSERT_TRUE(!wire_list_has("flags"));
}

/* The documented code, whatever the body's length. */
static void test_dim_zero_and_empty_name_get_their_codes_at_any_length(void) {
    uint8_t body[1 + 5 + PROTO_NS_CONFIG_SIZE + 1];
    memset(body, 0, sizeof body);
    body[0] = 5;
    memcpy(body + 1, "dim-0", 5);
    /* dim (bytes 6..7) is 0; the rest of the block is cut at each length. */
    for (uint32_t len = 1 + 5 + 2; len <= sizeof body; len++) {
        proto_header h = wire_raw_request(PROTO_OP_NS_CREATE, body, len);
        if (h.status != -DEJA_ERR_BAD_VECTOR)
            HARNESS_FAIL("dim 0 in a %u-byte body: status %u (%s)", len, h.status,
                         wire_error_message(&h));
    }
    uint8_t empty[1 + PROTO_NS_CONFIG_SIZE + 1];
    memset(empty, 0, sizeof empty);
    empty[1] = DIM; /* a good dim behind the empty name */
    for (uint32_t len = 1; len <= sizeof empty; len++) {
        proto_header h = wire_raw_request(PROTO_OP_NS_CREATE, empty, len);
        if (h.status != -DEJA_ERR_BAD_NAMESPACE)
            HARNESS_FAIL("empty name in a %u-byte body: status %u (%s)", len, h.status,
                         wire_error_message(&h));
    }
    wire_ping();
}

/* The literal meanings survive a restart (the record keeps EXPLICIT). */
static void test_explicit_configuration_survives_a_restart(void) {
    test_server own;
    ASSERT_OK(test_server_start(&own, int8_server));
    wire_connect(&own);
    three_namespaces_with_literal_and_default_configurations();
    wire_close();
    ASSERT_EQ(test_server_shutdown(&own), 0);
    ASSERT_OK(test_server_restart(&own, int8_server));
    wire_connect(&own);
    proto_ns_config got;
    ASSERT_EQ(wire_ns_info("literal", &got, NULL, NULL).status, 0);
    ASSERT_EQ(got.quant, 0);
    ASSERT_NEAR(got.dedup, 0, 0);
    ASSERT_EQ(got.default_ttl_s, 0);
    ASSERT_EQ(wire_ns_info("negative-floor", &got, NULL, NULL).status, 0);
    ASSERT_NEAR(got.min_threshold, -0.25, 0);
    ASSERT_EQ(wire_ns_info("defaults", &got, NULL, NULL).status, 0);
    ASSERT_EQ(got.quant, 1);
    ASSERT_NEAR(got.dedup, 0.99, 1e-6);
    wire_close();
    ASSERT_EQ(test_server_stop(&own), 0);
}

int main(void) {
    if (test_server_start(&srv, int8_server) != 0) return 1;
    wire_connect(&srv);
    RUN(test_explicit_zeros_are_literal_and_info_reports_them);
    RUN(test_a_zero_floor_and_dedup_off_behave_as_asked);
    RUN(test_a_negative_floor_is_reported);
    RUN(test_create_is_idempotent_on_resolved_configurations);
    RUN(test_undefined_flag_bits_are_refused);
    RUN(test_dim_zero_and_empty_name_get_their_codes_at_any_length);
    RUN(test_explicit_configuration_survives_a_restart);
    wire_close();
    if (test_server_stop(&srv) != 0) return 1;
    return harness_result();
}
