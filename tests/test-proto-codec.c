/* test-proto-codec.c: every body of protocol v1 round-trips through its
 * encoder and decoder, and every decoder refuses each class of malformed
 * body that docs/PROTOCOL.md names. Bodies under test are copied to heap
 * blocks of their exact size so the address sanitizer catches any read
 * past the end. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proto.h"

#define NS "tenant-a/chat"
#define NS_LEN ((uint8_t)(sizeof NS - 1))

/* ---- helpers --------------------------------------------------------------- */

/* One encoded frame, split into its parsed header and a heap copy of its
 * body of exactly body_len bytes. */
typedef struct frame {
    proto_header hdr;
    uint8_t *body;
    size_t len;
} frame;

static frame take_frame(proto_buf *b) {
    frame f;
    int rc = proto_parse_frame(b->data, b->len, PROTO_DEFAULT_MAX_FRAME, &f.hdr);
    if (rc <= 0 || (size_t)rc != b->len)
        HARNESS_FAIL("buffer is not exactly one frame: parse returned %d for %zu bytes",
                     rc, b->len);
    f.len = f.hdr.body_len;
    f.body = malloc(f.len ? f.len : 1);
    if (f.len) memcpy(f.body, b->data + PROTO_HEADER_SIZE, f.len);
    proto_buf_reset(b);
    return f;
}

/* The buffer every test encodes into. take_frame empties it after each
 * frame; fresh_buf also empties it, in case a failed test left a frame. */
static proto_buf shared_buf;

static proto_buf *fresh_buf(void) {
    proto_buf_reset(&shared_buf);
    return &shared_buf;
}

static void frame_free(frame *f) {
    free(f->body);
    f->body = NULL;
}

/* A decoder reduced to "does this body decode?", so one helper can feed it
 * every truncation and every extension of a valid body. */
typedef int (*decode_fn)(const uint8_t *body, size_t len);

static void expect_truncations_refused(decode_fn decode, const frame *f) {
    ASSERT_OK(decode(f->body, f->len));
    for (size_t n = 0; n < f->len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        if (n) memcpy(copy, f->body, n);
        int rc = decode(copy, n);
        free(copy);
        if (rc != DEJA_ERR_BAD_REQUEST)
            HARNESS_FAIL("truncation to %zu of %zu bytes: got %d, want BAD_REQUEST", n,
                         f->len, rc);
    }
}

static void expect_trailing_byte_refused(decode_fn decode, const frame *f) {
    uint8_t *longer = malloc(f->len + 1);
    if (f->len) memcpy(longer, f->body, f->len);
    longer[f->len] = 0;
    int rc = decode(longer, f->len + 1);
    free(longer);
    ASSERT_EQ(rc, DEJA_ERR_BAD_REQUEST);
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Decoder adapters for expect_* above: decode into a local, keep the code. */
#define DECODE_ADAPTER(what, type)                                                       \
    static int dec_##what(const uint8_t *b, size_t n) {                                  \
        type r;                                                                          \
        return proto_decode_##what(b, n, &r);                                            \
    }
DECODE_ADAPTER(hello_req, proto_hello_req)
DECODE_ADAPTER(hello_resp, proto_hello_resp)
DECODE_ADAPTER(auth_req, proto_auth_req)
DECODE_ADAPTER(store_req, proto_store_req)
DECODE_ADAPTER(u64_resp, uint64_t)
DECODE_ADAPTER(lookup_req, proto_lookup_req)
DECODE_ADAPTER(delete_req, proto_ns_id_req)
DECODE_ADAPTER(flush_req, proto_ns_id_req)
DECODE_ADAPTER(ns_info_req, proto_ns_req)
DECODE_ADAPTER(ns_drop_req, proto_ns_req)

static int dec_lookup_resp(const uint8_t *b, size_t n) {
    proto_hit hits[PROTO_MAX_K];
    uint16_t count;
    return proto_decode_lookup_resp(b, n, hits, PROTO_MAX_K, &count);
}
static int dec_stats_req(const uint8_t *b, size_t n) {
    const uint8_t *ns;
    uint8_t ns_len;
    return proto_decode_stats_req(b, n, &ns, &ns_len);
}
static int dec_stats_resp(const uint8_t *b, size_t n) {
    size_t pos = 0;
    proto_stat s;
    int rc;
    while ((rc = proto_stats_next(b, n, &pos, &s)) == 1) {
    }
    return rc;
}
static int dec_error(const uint8_t *b, size_t n) {
    const uint8_t *msg;
    uint16_t msg_len;
    return proto_decode_error(b, n, &msg, &msg_len);
}

/* Fixtures: one valid request of each kind. The vector is written through
 * proto_vector_write into `vec_bytes`, which the caller provides. */
static const float sample_vector[4] = {1.0f, -2.0f, 0.5f, 4.0f};

static proto_store_req sample_store(uint8_t *vec_bytes, int with_prompt) {
    proto_vector_write(vec_bytes, sample_vector, 4);
    proto_store_req r = {
        .ns = (const uint8_t *)NS,
        .ns_len = NS_LEN,
        .dim = 4,
        .completion = PROTO_COMPLETION_OK,
        .ttl_s = 3600,
        .input_tokens = 120,
        .output_tokens = 450,
        .cost_micro_usd = 0x0102030405060708ull,
        .vector = vec_bytes,
        .prompt = with_prompt ? (const uint8_t *)"what is deja?" : NULL,
        .prompt_len = with_prompt ? 13 : 0,
        .response = (const uint8_t *)"a semantic cache",
        .response_len = 16,
    };
    return r;
}

static proto_lookup_req sample_lookup(uint8_t *vec_bytes, int with_prompt) {
    proto_vector_write(vec_bytes, sample_vector, 4);
    proto_lookup_req r = {
        .ns = (const uint8_t *)NS,
        .ns_len = NS_LEN,
        .dim = 4,
        .k = 3,
        .threshold = 0.92f,
        .ef = 64,
        .vector = vec_bytes,
        .prompt = with_prompt ? (const uint8_t *)"hi" : NULL,
        .prompt_len = with_prompt ? 2 : 0,
    };
    return r;
}

static frame encode_store(const proto_store_req *r) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_store_req(b, 1, r));
    return take_frame(b);
}

static frame encode_lookup(const proto_lookup_req *r) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_lookup_req(b, 1, 0, r));
    return take_frame(b);
}

/* Byte offsets inside a STORE / LOOKUP body whose namespace is NS. */
#define AFTER_NS (1 + NS_LEN)
#define STORE_OFF_COMPLETION (AFTER_NS + 2)
#define STORE_OFF_RESERVED (AFTER_NS + 3)
#define STORE_OFF_PROMPT_LEN (AFTER_NS + 24)
#define STORE_OFF_RESPONSE_LEN (AFTER_NS + 28)
#define LOOKUP_OFF_RESERVED (AFTER_NS + 10)
#define LOOKUP_OFF_PROMPT_LEN (AFTER_NS + 12)

/* ---- round trips ----------------------------------------------------------- */

static void test_hello_request_round_trips(void) {
    proto_buf *b = fresh_buf();
    proto_hello_req in = {1, 3, (const uint8_t *)"libdeja/0.1", 11};
    ASSERT_OK(proto_encode_hello_req(b, 42, &in));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_HELLO);
    ASSERT_EQ(f.hdr.request_id, 42);
    ASSERT_EQ(f.hdr.flags, 0);
    ASSERT_EQ(f.hdr.status, 0);
    proto_hello_req out;
    ASSERT_OK(proto_decode_hello_req(f.body, f.len, &out));
    ASSERT_EQ(out.min_version, 1);
    ASSERT_EQ(out.max_version, 3);
    ASSERT_EQ(out.client_name_len, 11);
    ASSERT_MEM_EQ(out.client_name, "libdeja/0.1", 11);
    expect_truncations_refused(dec_hello_req, &f);
    expect_trailing_byte_refused(dec_hello_req, &f);
    frame_free(&f);
}

static void test_hello_reply_round_trips_and_is_flagged_as_reply(void) {
    proto_buf *b = fresh_buf();
    proto_hello_resp in = {
        .version = 1,
        .max_dim = 4096,
        .max_frame = PROTO_DEFAULT_MAX_FRAME,
        .server_flags = PROTO_SERVER_AUTH_REQUIRED,
        .server_name = (const uint8_t *)"dejad",
        .server_name_len = 5,
    };
    ASSERT_OK(proto_encode_hello_resp(b, 7, &in));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    proto_hello_resp out;
    ASSERT_OK(proto_decode_hello_resp(f.body, f.len, &out));
    ASSERT_EQ(out.version, 1);
    ASSERT_EQ(out.max_dim, 4096);
    ASSERT_EQ(out.max_frame, PROTO_DEFAULT_MAX_FRAME);
    ASSERT_EQ(out.server_flags, PROTO_SERVER_AUTH_REQUIRED);
    ASSERT_MEM_EQ(out.server_name, "dejad", 5);
    expect_truncations_refused(dec_hello_resp, &f);
    expect_trailing_byte_refused(dec_hello_resp, &f);
    frame_free(&f);
}

static void test_hello_reply_announcing_impossible_limits_is_refused(void) {
    proto_buf *b = fresh_buf();
    const proto_hello_resp bad[] = {
        {0, 4096, PROTO_DEFAULT_MAX_FRAME, 0, NULL, 0},
        {1, 0, PROTO_DEFAULT_MAX_FRAME, 0, NULL, 0},
        {1, PROTO_MAX_DIM + 1, PROTO_DEFAULT_MAX_FRAME, 0, NULL, 0},
        {1, 4096, PROTO_MIN_MAX_FRAME - 1, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_OK(proto_encode_hello_resp(b, 1, &bad[i]));
        frame f = take_frame(b);
        proto_hello_resp out;
        ASSERT_EQ(proto_decode_hello_resp(f.body, f.len, &out), DEJA_ERR_BAD_REQUEST);
        frame_free(&f);
    }
}

static void test_auth_request_round_trips_and_its_reply_is_empty(void) {
    proto_buf *b = fresh_buf();
    proto_auth_req in = {(const uint8_t *)"s3cret", 6};
    ASSERT_OK(proto_encode_auth_req(b, 9, &in));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_AUTH);
    proto_auth_req out;
    ASSERT_OK(proto_decode_auth_req(f.body, f.len, &out));
    ASSERT_EQ(out.token_len, 6);
    ASSERT_MEM_EQ(out.token, "s3cret", 6);
    expect_truncations_refused(dec_auth_req, &f);
    expect_trailing_byte_refused(dec_auth_req, &f);
    frame_free(&f);

    ASSERT_OK(proto_encode_empty_resp(b, PROTO_OP_AUTH, 9));
    f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_AUTH);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    ASSERT_EQ(f.len, 0);
    ASSERT_OK(proto_decode_empty_resp(f.body, f.len));
    ASSERT_EQ(proto_decode_empty_resp(f.body, 1), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);
}

static void test_ping_payload_is_carried_verbatim_both_ways(void) {
    proto_buf *b = fresh_buf();
    const uint8_t payload[] = {0, 1, 2, 0xFF, 'x'};
    ASSERT_OK(proto_encode_ping(b, 5, 0, payload, sizeof payload));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_PING);
    ASSERT_EQ(f.len, sizeof payload);
    ASSERT_MEM_EQ(f.body, payload, sizeof payload);
    ASSERT_OK(proto_decode_ping(f.body, f.len));
    /* The server answers with the same encoder and the reply flag. */
    ASSERT_OK(proto_encode_ping(b, f.hdr.request_id, PROTO_FLAG_REPLY, f.body, f.len));
    frame_free(&f);
    f = take_frame(b);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    ASSERT_EQ(f.hdr.request_id, 5);
    ASSERT_MEM_EQ(f.body, payload, sizeof payload);
    frame_free(&f);

    ASSERT_OK(proto_encode_ping(b, 6, 0, NULL, 0));
    f = take_frame(b);
    ASSERT_EQ(f.len, 0);
    frame_free(&f);
}

static void test_ping_payload_over_the_limit_is_refused(void) {
    proto_buf *b = fresh_buf();
    uint8_t *big = calloc(1, PROTO_MAX_PING + 1);
    ASSERT_OK(proto_encode_ping(b, 1, 0, big, PROTO_MAX_PING));
    ASSERT_EQ(proto_encode_ping(b, 1, 0, big, PROTO_MAX_PING + 1), DEJA_ERR_INVALID_ARG);
    ASSERT_OK(proto_decode_ping(big, PROTO_MAX_PING));
    ASSERT_EQ(proto_decode_ping(big, PROTO_MAX_PING + 1), DEJA_ERR_BAD_REQUEST);
    free(big);
}

static void check_store_round_trip(int with_prompt) {
    uint8_t vec[16];
    proto_store_req in = sample_store(vec, with_prompt);
    frame f = encode_store(&in);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_STORE);
    proto_store_req out;
    ASSERT_OK(proto_decode_store_req(f.body, f.len, &out));
    ASSERT_EQ(out.ns_len, NS_LEN);
    ASSERT_MEM_EQ(out.ns, NS, NS_LEN);
    ASSERT_EQ(out.dim, 4);
    ASSERT_EQ(out.completion, PROTO_COMPLETION_OK);
    ASSERT_EQ(out.ttl_s, 3600);
    ASSERT_EQ(out.input_tokens, 120);
    ASSERT_EQ(out.output_tokens, 450);
    ASSERT_U64_EQ(out.cost_micro_usd, 0x0102030405060708ull);
    ASSERT_MEM_EQ(out.vector, vec, sizeof vec);
    ASSERT_EQ(out.prompt_len, in.prompt_len);
    if (with_prompt)
        ASSERT_MEM_EQ(out.prompt, "what is deja?", 13);
    else
        ASSERT_TRUE(out.prompt == NULL);
    ASSERT_EQ(out.response_len, 16);
    ASSERT_MEM_EQ(out.response, "a semantic cache", 16);
    expect_truncations_refused(dec_store_req, &f);
    expect_trailing_byte_refused(dec_store_req, &f);
    frame_free(&f);
}

static void test_store_request_round_trips_with_a_prompt(void) {
    check_store_round_trip(1);
}

static void test_store_request_round_trips_without_a_prompt(void) {
    check_store_round_trip(0);
}

static void test_store_reply_carries_the_entry_id(void) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_store_resp(b, 11, UINT64_MAX - 1));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_STORE);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    uint64_t id;
    ASSERT_OK(proto_decode_store_resp(f.body, f.len, &id));
    ASSERT_U64_EQ(id, UINT64_MAX - 1);
    expect_truncations_refused(dec_u64_resp, &f);
    expect_trailing_byte_refused(dec_u64_resp, &f);
    frame_free(&f);
}

static void check_lookup_round_trip(int with_prompt) {
    uint8_t vec[16];
    proto_lookup_req in = sample_lookup(vec, with_prompt);
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_lookup_req(b, 3, PROTO_FLAG_WANT_PROMPT, &in));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_LOOKUP);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_WANT_PROMPT);
    proto_lookup_req out;
    ASSERT_OK(proto_decode_lookup_req(f.body, f.len, &out));
    ASSERT_MEM_EQ(out.ns, NS, NS_LEN);
    ASSERT_EQ(out.dim, 4);
    ASSERT_EQ(out.k, 3);
    ASSERT_TRUE(out.threshold == 0.92f);
    ASSERT_EQ(out.ef, 64);
    ASSERT_MEM_EQ(out.vector, vec, sizeof vec);
    ASSERT_EQ(out.prompt_len, in.prompt_len);
    if (with_prompt)
        ASSERT_MEM_EQ(out.prompt, "hi", 2);
    else
        ASSERT_TRUE(out.prompt == NULL);
    expect_truncations_refused(dec_lookup_req, &f);
    expect_trailing_byte_refused(dec_lookup_req, &f);
    frame_free(&f);
}

static void test_lookup_request_round_trips_with_a_prompt(void) {
    check_lookup_round_trip(1);
}

static void test_lookup_request_round_trips_without_a_prompt(void) {
    check_lookup_round_trip(0);
}

static void check_lookup_reply(const proto_hit *in, uint16_t count) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_lookup_resp(b, 8, in, count));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_LOOKUP);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    proto_hit out[8];
    uint16_t got = 0xFFFF;
    ASSERT_OK(proto_decode_lookup_resp(f.body, f.len, out, 8, &got));
    ASSERT_EQ(got, count);
    for (uint16_t i = 0; i < count; i++) {
        ASSERT_U64_EQ(out[i].id, in[i].id);
        ASSERT_TRUE(out[i].similarity == in[i].similarity);
        ASSERT_EQ(out[i].prompt_len, in[i].prompt_len);
        ASSERT_EQ(out[i].response_len, in[i].response_len);
        if (in[i].prompt_len)
            ASSERT_MEM_EQ(out[i].prompt, in[i].prompt, in[i].prompt_len);
        if (in[i].response_len)
            ASSERT_MEM_EQ(out[i].response, in[i].response, in[i].response_len);
        else
            ASSERT_TRUE(out[i].response == NULL);
    }
    expect_truncations_refused(dec_lookup_resp, &f);
    expect_trailing_byte_refused(dec_lookup_resp, &f);
    frame_free(&f);
}

static void test_lookup_reply_with_no_hits_is_a_miss(void) {
    check_lookup_reply(NULL, 0);
}

static void test_lookup_reply_with_one_hit_round_trips(void) {
    proto_hit hit = {12345, 0.97f, (const uint8_t *)"q", 1, (const uint8_t *)"answer",
                     6,     0};
    check_lookup_reply(&hit, 1);
}

static void test_lookup_reply_with_several_hits_keeps_their_order(void) {
    const proto_hit hits[3] = {
        {3, 0.99f, NULL, 0, (const uint8_t *)"best", 4, 0},
        {1, 0.95f, (const uint8_t *)"prompt two", 10, (const uint8_t *)"second", 6, 0},
        {2, -0.25f, NULL, 0, (const uint8_t *)"", 0, 0},
    };
    check_lookup_reply(hits, 3);
}

static void test_lookup_reply_with_more_hits_than_room_is_refused(void) {
    const proto_hit hits[3] = {{1, 0.9f, NULL, 0, NULL, 0, 0},
                               {2, 0.8f, NULL, 0, NULL, 0, 0},
                               {3, 0.7f, NULL, 0, NULL, 0, 0}};
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_lookup_resp(b, 1, hits, 3));
    frame f = take_frame(b);
    proto_hit out[2];
    uint16_t count;
    ASSERT_EQ(proto_decode_lookup_resp(f.body, f.len, out, 2, &count),
              DEJA_ERR_BAD_REQUEST);
    ASSERT_EQ(count, 3);
    frame_free(&f);
}

static void test_lookup_reply_with_nan_similarity_is_refused(void) {
    proto_hit hit = {1, NAN, NULL, 0, NULL, 0, 0};
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_lookup_resp(b, 1, &hit, 1));
    frame f = take_frame(b);
    ASSERT_EQ(dec_lookup_resp(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);
}

static void test_lookup_reply_flags_an_exact_tier_hit_in_the_header_only(void) {
    proto_hit hit = {7, 0.62f, NULL, 0, (const uint8_t *)"yes", 3, 0};
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_lookup_resp(b, 1, &hit, 1));
    frame plain = take_frame(b);
    ASSERT_OK(proto_encode_lookup_resp_flags(b, 1, PROTO_FLAG_EXACT, &hit, 1));
    frame exact = take_frame(b);
    ASSERT_EQ(exact.hdr.flags, PROTO_FLAG_REPLY | PROTO_FLAG_EXACT);
    ASSERT_EQ(exact.hdr.flags & PROTO_FLAG_WANT_PROMPT, 0);
    /* The body is byte for byte what an older decoder already reads. */
    ASSERT_EQ(exact.len, plain.len);
    ASSERT_MEM_EQ(exact.body, plain.body, plain.len);
    ASSERT_OK(dec_lookup_resp(exact.body, exact.len));
    frame_free(&plain);
    frame_free(&exact);
    /* Only the EXACT and BORDERLINE bits, and only on a reply with a hit
     * to describe. */
    ASSERT_EQ(proto_encode_lookup_resp_flags(b, 1, PROTO_FLAG_EXACT, NULL, 0),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(proto_encode_lookup_resp_flags(b, 1, PROTO_FLAG_BORDERLINE, NULL, 0),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(proto_encode_lookup_resp_flags(b, 1, 0x0008, &hit, 1),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(proto_encode_lookup_resp_flags(b, 1, PROTO_FLAG_REPLY, &hit, 1),
              DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(b->len, 0);
}

static void test_delete_request_carries_namespace_and_id(void) {
    proto_buf *b = fresh_buf();
    proto_ns_id_req in = {(const uint8_t *)NS, NS_LEN, 0xDEADBEEFCAFEull};
    ASSERT_OK(proto_encode_delete_req(b, 4, &in));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_DELETE);
    proto_ns_id_req out;
    ASSERT_OK(proto_decode_delete_req(f.body, f.len, &out));
    ASSERT_MEM_EQ(out.ns, NS, NS_LEN);
    ASSERT_EQ(out.ns_len, NS_LEN);
    ASSERT_U64_EQ(out.id, 0xDEADBEEFCAFEull);
    expect_truncations_refused(dec_delete_req, &f);
    expect_trailing_byte_refused(dec_delete_req, &f);
    frame_free(&f);
}

static void test_flush_request_and_reply_round_trip(void) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_flush_req(b, 4, (const uint8_t *)NS, NS_LEN));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_FLUSH);
    proto_ns_id_req out;
    ASSERT_OK(proto_decode_flush_req(f.body, f.len, &out));
    ASSERT_MEM_EQ(out.ns, NS, NS_LEN);
    ASSERT_U64_EQ(out.id, 0);
    expect_truncations_refused(dec_flush_req, &f);
    expect_trailing_byte_refused(dec_flush_req, &f);
    frame_free(&f);

    ASSERT_OK(proto_encode_u64_resp(b, PROTO_OP_FLUSH, 4, 1000));
    f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_FLUSH);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    uint64_t removed;
    ASSERT_OK(proto_decode_u64_resp(f.body, f.len, &removed));
    ASSERT_U64_EQ(removed, 1000);
    frame_free(&f);
}

static void test_ns_info_request_is_one_namespace_and_nothing_else(void) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_ns_info_req(b, 6, (const uint8_t *)NS, NS_LEN));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_NS_INFO);
    ASSERT_EQ(f.hdr.request_id, 6);
    ASSERT_EQ(f.len, 1 + NS_LEN);
    proto_ns_req out;
    ASSERT_OK(proto_decode_ns_info_req(f.body, f.len, &out));
    ASSERT_EQ(out.ns_len, NS_LEN);
    ASSERT_MEM_EQ(out.ns, NS, NS_LEN);
    ASSERT_TRUE(out.ns == f.body + 1); /* zero-copy: points into the body */
    expect_truncations_refused(dec_ns_info_req, &f);
    expect_trailing_byte_refused(dec_ns_info_req, &f);
    frame_free(&f);
}

static void test_ns_drop_request_and_reply_round_trip(void) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_ns_drop_req(b, 7, (const uint8_t *)NS, NS_LEN));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_NS_DROP);
    ASSERT_EQ(f.hdr.request_id, 7);
    ASSERT_EQ(f.len, 1 + NS_LEN);
    proto_ns_req out;
    ASSERT_OK(proto_decode_ns_drop_req(f.body, f.len, &out));
    ASSERT_EQ(out.ns_len, NS_LEN);
    ASSERT_MEM_EQ(out.ns, NS, NS_LEN);
    expect_truncations_refused(dec_ns_drop_req, &f);
    expect_trailing_byte_refused(dec_ns_drop_req, &f);
    frame_free(&f);

    ASSERT_OK(proto_encode_u64_resp(b, PROTO_OP_NS_DROP, 7, 42));
    f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_NS_DROP);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    uint64_t removed;
    ASSERT_OK(proto_decode_u64_resp(f.body, f.len, &removed));
    ASSERT_U64_EQ(removed, 42);
    frame_free(&f);
}

/* The longest name fits, and a body naming it and one byte more does not
 * decode: the length prefix says where the name ends. */
static void test_ns_info_and_ns_drop_take_the_longest_name(void) {
    uint8_t name[PROTO_MAX_NS_LEN];
    memset(name, 'n', sizeof name);
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_ns_info_req(b, 1, name, PROTO_MAX_NS_LEN));
    frame f = take_frame(b);
    proto_ns_req out;
    ASSERT_OK(proto_decode_ns_info_req(f.body, f.len, &out));
    ASSERT_EQ(out.ns_len, PROTO_MAX_NS_LEN);
    frame_free(&f);
    ASSERT_OK(proto_encode_ns_drop_req(b, 1, name, PROTO_MAX_NS_LEN));
    f = take_frame(b);
    ASSERT_OK(proto_decode_ns_drop_req(f.body, f.len, &out));
    ASSERT_EQ(out.ns_len, PROTO_MAX_NS_LEN);
    expect_trailing_byte_refused(dec_ns_drop_req, &f);
    frame_free(&f);
}

static void test_stats_request_is_server_wide_or_per_namespace(void) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_stats_req(b, 1, NULL, 0));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_STATS);
    const uint8_t *ns = (const uint8_t *)"x";
    uint8_t ns_len = 9;
    ASSERT_OK(proto_decode_stats_req(f.body, f.len, &ns, &ns_len));
    ASSERT_EQ(ns_len, 0);
    ASSERT_TRUE(ns == NULL);
    expect_truncations_refused(dec_stats_req, &f);
    expect_trailing_byte_refused(dec_stats_req, &f);
    frame_free(&f);

    ASSERT_OK(proto_encode_stats_req(b, 2, (const uint8_t *)NS, NS_LEN));
    f = take_frame(b);
    ASSERT_OK(proto_decode_stats_req(f.body, f.len, &ns, &ns_len));
    ASSERT_EQ(ns_len, NS_LEN);
    ASSERT_MEM_EQ(ns, NS, NS_LEN);
    expect_truncations_refused(dec_stats_req, &f);
    frame_free(&f);
}

static void test_stats_reply_iterates_every_entry_in_order(void) {
    const proto_stat in[3] = {
        {"entries", 7, 1234},
        {"hits", 4, 0},
        {"bytes_saved", 11, UINT64_MAX},
    };
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_stats_resp(b, 6, in, 3));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    size_t pos = 0;
    proto_stat s;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(proto_stats_next(f.body, f.len, &pos, &s), 1);
        ASSERT_EQ(s.key_len, in[i].key_len);
        ASSERT_MEM_EQ(s.key, in[i].key, s.key_len);
        ASSERT_U64_EQ(s.value, in[i].value);
    }
    ASSERT_EQ(proto_stats_next(f.body, f.len, &pos, &s), 0);
    ASSERT_EQ(proto_stats_next(f.body, f.len, &pos, &s), 0);
    expect_truncations_refused(dec_stats_resp, &f);
    expect_trailing_byte_refused(dec_stats_resp, &f);
    frame_free(&f);

    ASSERT_OK(proto_encode_stats_resp(b, 6, NULL, 0));
    f = take_frame(b);
    pos = 0;
    ASSERT_EQ(proto_stats_next(f.body, f.len, &pos, &s), 0);
    frame_free(&f);
}

static void test_stats_iterator_refuses_a_position_past_the_body(void) {
    const proto_stat in[1] = {{"hits", 4, 1}};
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_stats_resp(b, 6, in, 1));
    frame f = take_frame(b);
    size_t pos = f.len + 1;
    proto_stat s;
    ASSERT_EQ(proto_stats_next(f.body, f.len, &pos, &s), DEJA_ERR_BAD_REQUEST);
    pos = 5; /* in the middle of the entry */
    ASSERT_EQ(proto_stats_next(f.body, f.len, &pos, &s), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);
}

static void test_stats_keys_follow_the_namespace_rules(void) {
    proto_buf *b = fresh_buf();
    const proto_stat spaced[1] = {{"two words", 9, 1}};
    const proto_stat empty[1] = {{"", 0, 1}};
    ASSERT_EQ(proto_encode_stats_resp(b, 1, spaced, 1), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(proto_encode_stats_resp(b, 1, empty, 1), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(b->len, 0);
    /* Hand-built: count 1, key "a b", value 0. */
    uint8_t body[2 + 1 + 3 + 8] = {1, 0, 3, 'a', ' ', 'b'};
    size_t pos = 0;
    proto_stat s;
    ASSERT_EQ(proto_stats_next(body, sizeof body, &pos, &s), DEJA_ERR_BAD_REQUEST);
}

static void test_error_reply_carries_status_and_message(void) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_error(b, PROTO_OP_STORE, 77, DEJA_ERR_DIM_MISMATCH,
                                 "namespace has dim 768"));
    frame f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, PROTO_OP_STORE);
    ASSERT_EQ(f.hdr.request_id, 77);
    ASSERT_EQ(f.hdr.flags, PROTO_FLAG_REPLY);
    ASSERT_EQ(f.hdr.status, 10);
    ASSERT_EQ(proto_status_error(f.hdr.status), DEJA_ERR_DIM_MISMATCH);
    const uint8_t *msg;
    uint16_t msg_len;
    ASSERT_OK(proto_decode_error(f.body, f.len, &msg, &msg_len));
    ASSERT_EQ(msg_len, 21);
    ASSERT_MEM_EQ(msg, "namespace has dim 768", 21);
    expect_truncations_refused(dec_error, &f);
    expect_trailing_byte_refused(dec_error, &f);
    frame_free(&f);

    ASSERT_OK(proto_encode_error(b, 0x7F, 1, DEJA_ERR_UNKNOWN_OP, NULL));
    f = take_frame(b);
    ASSERT_EQ(f.hdr.opcode, 0x7F);
    ASSERT_OK(proto_decode_error(f.body, f.len, &msg, &msg_len));
    ASSERT_EQ(msg_len, 0);
    frame_free(&f);
}

static void test_error_message_is_cut_at_the_limit_on_a_character_boundary(void) {
    /* 1023 ASCII bytes then a 3-byte character straddling the limit: the
     * whole character goes, leaving 1023 bytes of valid UTF-8. */
    char msg[2048];
    memset(msg, 'a', 1023);
    memcpy(msg + 1023, "\xE2\x82\xAC", 3);
    memset(msg + 1026, 'b', 100);
    msg[1126] = '\0';
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_error(b, PROTO_OP_PING, 1, DEJA_ERR_INTERNAL, msg));
    frame f = take_frame(b);
    const uint8_t *out;
    uint16_t out_len;
    ASSERT_OK(proto_decode_error(f.body, f.len, &out, &out_len));
    ASSERT_EQ(out_len, 1023);
    frame_free(&f);

    memset(msg, 'c', 2000);
    msg[2000] = '\0';
    ASSERT_OK(proto_encode_error(b, PROTO_OP_PING, 1, DEJA_ERR_INTERNAL, msg));
    f = take_frame(b);
    ASSERT_OK(proto_decode_error(f.body, f.len, &out, &out_len));
    ASSERT_EQ(out_len, PROTO_MAX_MESSAGE);
    frame_free(&f);
}

static void test_error_message_over_the_limit_is_refused_by_the_decoder(void) {
    uint8_t *body = calloc(1, 2 + PROTO_MAX_MESSAGE + 1);
    put_le16(body, PROTO_MAX_MESSAGE + 1);
    const uint8_t *msg;
    uint16_t msg_len;
    ASSERT_EQ(proto_decode_error(body, 2 + PROTO_MAX_MESSAGE + 1, &msg, &msg_len),
              DEJA_ERR_BAD_REQUEST);
    put_le16(body, PROTO_MAX_MESSAGE);
    ASSERT_OK(proto_decode_error(body, 2 + PROTO_MAX_MESSAGE, &msg, &msg_len));
    free(body);
}

static void test_error_encoder_refuses_codes_that_do_not_travel(void) {
    proto_buf *b = fresh_buf();
    ASSERT_EQ(proto_encode_error(b, 1, 1, 0, "ok"), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(proto_encode_error(b, 1, 1, 5, "positive"), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(proto_encode_error(b, 1, 1, DEJA_ERR_NOMEM, "local"), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(b->len, 0);
    ASSERT_OK(proto_encode_error(b, 1, 1, DEJA_ERR_WIRE_MIN, "lowest"));
}

static void test_failed_encode_leaves_the_buffer_unchanged(void) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ping(&b, 1, 0, (const uint8_t *)"abc", 3));
    size_t len = b.len;
    uint8_t before[PROTO_HEADER_SIZE + 3];
    memcpy(before, b.data, len);
    ASSERT_EQ(proto_encode_ping(&b, 2, 0, NULL, 5), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(proto_encode_error(&b, 1, 2, DEJA_ERR_NOMEM, "x"), DEJA_ERR_INVALID_ARG);
    proto_store_req bad = {.ns = (const uint8_t *)"n", .ns_len = 1, .dim = 2};
    ASSERT_EQ(proto_encode_store_req(&b, 2, &bad), DEJA_ERR_INVALID_ARG);
    ASSERT_EQ(b.len, len);
    ASSERT_MEM_EQ(b.data, before, len);
    proto_buf_free(&b);
}

/* ---- malformed bodies ------------------------------------------------------ */

static void test_lengths_pointing_past_the_body_are_refused(void) {
    uint8_t vec[16];
    proto_store_req st = sample_store(vec, 1);
    frame f = encode_store(&st);
    const uint32_t lies[] = {14, 17, 0x7FFFFFFFu, 0xFFFFFFFFu};
    for (size_t i = 0; i < 4; i++) {
        put_le32(f.body + STORE_OFF_PROMPT_LEN, lies[i]);
        ASSERT_EQ(dec_store_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
        put_le32(f.body + STORE_OFF_PROMPT_LEN, 13);
        put_le32(f.body + STORE_OFF_RESPONSE_LEN, lies[i]);
        ASSERT_EQ(dec_store_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
        put_le32(f.body + STORE_OFF_RESPONSE_LEN, 16);
    }
    ASSERT_OK(dec_store_req(f.body, f.len));
    f.body[0] = 0xFF; /* namespace length */
    ASSERT_EQ(dec_store_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);

    proto_lookup_req lk = sample_lookup(vec, 1);
    f = encode_lookup(&lk);
    put_le32(f.body + LOOKUP_OFF_PROMPT_LEN, 0xFFFFFFFFu);
    ASSERT_EQ(dec_lookup_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);

    proto_hit hit = {1, 0.5f, (const uint8_t *)"p", 1, (const uint8_t *)"r", 1, 0};
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_lookup_resp(b, 1, &hit, 1));
    f = take_frame(b);
    put_le32(f.body + 2 + 12, 0xFFFFFFF0u); /* first hit's prompt_len */
    ASSERT_EQ(dec_lookup_resp(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    put_le32(f.body + 2 + 12, 1);
    put_le32(f.body + 2 + 16, 2); /* response_len one past the end */
    ASSERT_EQ(dec_lookup_resp(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    put_le16(f.body, 2); /* count says two hits, body holds one */
    put_le32(f.body + 2 + 16, 1);
    ASSERT_EQ(dec_lookup_resp(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);

    proto_hello_req hello = {1, 1, (const uint8_t *)"c", 1};
    ASSERT_OK(proto_encode_hello_req(b, 1, &hello));
    f = take_frame(b);
    put_le16(f.body + 4, 0xFFFF);
    ASSERT_EQ(dec_hello_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);

    const proto_stat stat[1] = {{"hits", 4, 1}};
    ASSERT_OK(proto_encode_stats_resp(b, 1, stat, 1));
    f = take_frame(b);
    f.body[2] = 200; /* key length */
    ASSERT_EQ(dec_stats_resp(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    f.body[2] = 4;
    put_le16(f.body, 2); /* count past the entries */
    ASSERT_EQ(dec_stats_resp(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);
}

static void test_dim_zero_or_above_the_maximum_is_a_bad_vector(void) {
    /* Enough bytes for the largest dim tried, so only the dim rule fails. */
    uint8_t *vec = calloc(PROTO_MAX_DIM + 1, 4);
    const uint16_t dims[] = {0, PROTO_MAX_DIM + 1, 0xFFFF};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *big = calloc((size_t)dims[i] + 1, 4);
        uint8_t small[16];
        proto_store_req st = sample_store(small, 0);
        st.dim = dims[i];
        st.vector = big;
        frame f = encode_store(&st);
        ASSERT_EQ(dec_store_req(f.body, f.len), DEJA_ERR_BAD_VECTOR);
        frame_free(&f);
        proto_lookup_req lk = sample_lookup(small, 0);
        lk.dim = dims[i];
        lk.vector = big;
        f = encode_lookup(&lk);
        ASSERT_EQ(dec_lookup_req(f.body, f.len), DEJA_ERR_BAD_VECTOR);
        frame_free(&f);
        free(big);
    }
    /* The maximum itself is fine. */
    uint8_t small[16];
    proto_store_req st = sample_store(small, 0);
    st.dim = PROTO_MAX_DIM;
    st.vector = vec;
    frame f = encode_store(&st);
    ASSERT_OK(dec_store_req(f.body, f.len));
    frame_free(&f);
    free(vec);
}

static void test_bad_or_empty_namespace_is_refused_by_every_request(void) {
    const char *names[] = {"", "has space", "tab\there", "\x7F", "caf\xC3\xA9"};
    uint8_t vec[16];
    proto_buf *b = fresh_buf();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const uint8_t *ns = (const uint8_t *)names[i];
        uint8_t ns_len = (uint8_t)strlen(names[i]);

        proto_store_req st = sample_store(vec, 0);
        st.ns = ns;
        st.ns_len = ns_len;
        frame f = encode_store(&st);
        ASSERT_EQ(dec_store_req(f.body, f.len), DEJA_ERR_BAD_NAMESPACE);
        frame_free(&f);

        proto_lookup_req lk = sample_lookup(vec, 0);
        lk.ns = ns;
        lk.ns_len = ns_len;
        f = encode_lookup(&lk);
        ASSERT_EQ(dec_lookup_req(f.body, f.len), DEJA_ERR_BAD_NAMESPACE);
        frame_free(&f);

        proto_ns_id_req del = {ns, ns_len, 1};
        ASSERT_OK(proto_encode_delete_req(b, 1, &del));
        f = take_frame(b);
        ASSERT_EQ(dec_delete_req(f.body, f.len), DEJA_ERR_BAD_NAMESPACE);
        frame_free(&f);

        ASSERT_OK(proto_encode_flush_req(b, 1, ns, ns_len));
        f = take_frame(b);
        ASSERT_EQ(dec_flush_req(f.body, f.len), DEJA_ERR_BAD_NAMESPACE);
        frame_free(&f);

        ASSERT_OK(proto_encode_ns_info_req(b, 1, ns, ns_len));
        f = take_frame(b);
        ASSERT_EQ(dec_ns_info_req(f.body, f.len), DEJA_ERR_BAD_NAMESPACE);
        frame_free(&f);

        ASSERT_OK(proto_encode_ns_drop_req(b, 1, ns, ns_len));
        f = take_frame(b);
        ASSERT_EQ(dec_ns_drop_req(f.body, f.len), DEJA_ERR_BAD_NAMESPACE);
        frame_free(&f);

        /* STATS alone gives the empty name a meaning: server-wide. */
        ASSERT_OK(proto_encode_stats_req(b, 1, ns, ns_len));
        f = take_frame(b);
        ASSERT_EQ(dec_stats_req(f.body, f.len), ns_len ? DEJA_ERR_BAD_NAMESPACE : 0);
        frame_free(&f);
    }
}

static void test_k_outside_one_to_256_is_refused(void) {
    uint8_t vec[16];
    const uint16_t ks[] = {0, 1, PROTO_MAX_K, PROTO_MAX_K + 1, 0xFFFF};
    const int want[] = {DEJA_ERR_BAD_REQUEST, 0, 0, DEJA_ERR_BAD_REQUEST,
                        DEJA_ERR_BAD_REQUEST};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        proto_lookup_req lk = sample_lookup(vec, 0);
        lk.k = ks[i];
        frame f = encode_lookup(&lk);
        ASSERT_EQ(dec_lookup_req(f.body, f.len), want[i]);
        frame_free(&f);
    }
}

static void test_threshold_must_be_finite_and_within_minus_one_to_one(void) {
    uint8_t vec[16];
    const float thresholds[] = {NAN,   -NAN, INFINITY, -INFINITY, 1.0001f,
                                -1.5f, 1.0f, -1.0f,    0.0f};
    const size_t first_good = 6;
    for (size_t i = 0; i < sizeof thresholds / sizeof thresholds[0]; i++) {
        proto_lookup_req lk = sample_lookup(vec, 0);
        lk.threshold = thresholds[i];
        frame f = encode_lookup(&lk);
        int rc = dec_lookup_req(f.body, f.len);
        frame_free(&f);
        int want = i < first_good ? DEJA_ERR_BAD_REQUEST : 0;
        if (rc != want)
            HARNESS_FAIL("threshold %g: got %d, want %d", (double)thresholds[i], rc,
                         want);
    }
}

static void test_completion_above_filtered_is_refused(void) {
    uint8_t vec[16];
    for (uint8_t c = 0; c <= PROTO_COMPLETION_FILTERED; c++) {
        proto_store_req st = sample_store(vec, 0);
        st.completion = c;
        frame f = encode_store(&st);
        proto_store_req out;
        ASSERT_OK(proto_decode_store_req(f.body, f.len, &out));
        ASSERT_EQ(out.completion, c);
        frame_free(&f);
    }
    proto_store_req st = sample_store(vec, 0);
    st.completion = 4;
    frame f = encode_store(&st);
    ASSERT_EQ(dec_store_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    f.body[STORE_OFF_COMPLETION] = 0xFF;
    ASSERT_EQ(dec_store_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);
}

static void test_reserved_fields_must_be_zero(void) {
    uint8_t vec[16];
    proto_store_req st = sample_store(vec, 0);
    frame f = encode_store(&st);
    ASSERT_EQ(f.body[STORE_OFF_RESERVED], 0);
    f.body[STORE_OFF_RESERVED] = 1;
    ASSERT_EQ(dec_store_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);

    proto_lookup_req lk = sample_lookup(vec, 0);
    f = encode_lookup(&lk);
    ASSERT_EQ(f.body[LOOKUP_OFF_RESERVED + 1], 0);
    f.body[LOOKUP_OFF_RESERVED + 1] = 0x80;
    ASSERT_EQ(dec_lookup_req(f.body, f.len), DEJA_ERR_BAD_REQUEST);
    frame_free(&f);
}

/* ---- vectors --------------------------------------------------------------- */

static void test_vector_is_read_as_sent_without_normalising(void) {
    const float in[2] = {3.0f, -4.0f};
    uint8_t bytes[8];
    proto_vector_write(bytes, in, 2);
    float out[2];
    ASSERT_OK(proto_vector_read(out, bytes, 2));
    ASSERT_TRUE(out[0] == 3.0f && out[1] == -4.0f); /* idx_normalize's job */
}

static void test_vector_bytes_are_little_endian_f32(void) {
    const float in[1] = {1.0f};
    uint8_t bytes[4];
    proto_vector_write(bytes, in, 1);
    const uint8_t expect[4] = {0x00, 0x00, 0x80, 0x3F};
    ASSERT_MEM_EQ(bytes, expect, 4);
}

static void test_vector_is_read_from_an_unaligned_buffer(void) {
    float in[PROTO_MAX_DIM];
    for (int i = 0; i < (int)PROTO_MAX_DIM; i++)
        in[i] = (float)(i % 7) - 3.0f;
    uint8_t *bytes = malloc(PROTO_MAX_DIM * 4 + 1);
    proto_vector_write(bytes + 1, in, PROTO_MAX_DIM);
    float *out = malloc(PROTO_MAX_DIM * sizeof(float));
    ASSERT_OK(proto_vector_read(out, bytes + 1, PROTO_MAX_DIM));
    ASSERT_MEM_EQ(out, in, sizeof in);
    free(bytes);
    free(out);
}

static void test_vectors_of_extreme_magnitudes_are_accepted(void) {
    const float cases[][2] = {{FLT_MAX, FLT_MAX}, {1e-45f, 0.0f}, {FLT_MIN, -FLT_MIN}};
    for (size_t i = 0; i < 3; i++) {
        uint8_t bytes[8];
        proto_vector_write(bytes, cases[i], 2);
        float out[2];
        ASSERT_OK(proto_vector_read(out, bytes, 2));
        ASSERT_MEM_EQ(out, cases[i], sizeof out);
    }
}

static void test_nan_inf_and_zero_vectors_are_refused(void) {
    const float bad_values[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t v = 0; v < 4; v++) {
        for (int pos = 0; pos < 3; pos++) {
            float in[3] = {0.1f, 0.2f, 0.3f};
            in[pos] = bad_values[v];
            uint8_t bytes[12];
            proto_vector_write(bytes, in, 3);
            float out[3];
            ASSERT_EQ(proto_vector_read(out, bytes, 3), DEJA_ERR_BAD_VECTOR);
        }
    }
    const float zeros[3] = {0.0f, -0.0f, 0.0f};
    uint8_t bytes[12];
    proto_vector_write(bytes, zeros, 3);
    float out[3];
    ASSERT_EQ(proto_vector_read(out, bytes, 3), DEJA_ERR_BAD_VECTOR);
}

static void test_vector_read_refuses_dim_outside_the_limits(void) {
    uint8_t bytes[4] = {0, 0, 0x80, 0x3F};
    float out[1];
    ASSERT_EQ(proto_vector_read(out, bytes, 0), DEJA_ERR_BAD_VECTOR);
    ASSERT_EQ(proto_vector_read(out, bytes, PROTO_MAX_DIM + 1), DEJA_ERR_BAD_VECTOR);
}

/* ---- namespace configuration (PROTOCOL.md 5.9) ------------------------------ */

static proto_ns_config sample_config(void) {
    return (proto_ns_config){.dim = 16, .index_kind = PROTO_INDEX_FLAT};
}

static frame encode_ns_create(const char *name, const proto_ns_config *cfg) {
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_ns_create_req(b, 9, (const uint8_t *)name,
                                         (uint8_t)strlen(name), cfg));
    return take_frame(b);
}

static int dec_ns_create(const uint8_t *body, size_t len, proto_ns_config *cfg) {
    const uint8_t *ns;
    uint8_t ns_len;
    return proto_decode_ns_create_req(body, len, &ns, &ns_len, cfg);
}

/* EXPLICIT makes zeros literal; the codec carries it and every value,
 * a negative floor included, unchanged. */
static void test_ns_config_with_explicit_zeros_round_trips(void) {
    proto_ns_config cfg = {.dim = 16,
                           .index_kind = PROTO_INDEX_HNSW,
                           .flags = PROTO_NS_EXPLICIT | PROTO_NS_NO_DEDUP,
                           .min_threshold = -0.25f};
    frame f = encode_ns_create(NS, &cfg);
    proto_ns_config got;
    ASSERT_OK(dec_ns_create(f.body, f.len, &got));
    ASSERT_EQ(got.flags, PROTO_NS_EXPLICIT | PROTO_NS_NO_DEDUP);
    ASSERT_EQ(got.quant, 0);
    ASSERT_NEAR(got.min_threshold, -0.25, 0);
    ASSERT_NEAR(got.dedup, 0, 0);
    ASSERT_EQ(got.default_ttl_s, 0);
    frame_free(&f);
}

static void test_ns_config_undefined_flag_bits_are_refused(void) {
    for (unsigned flags = 0; flags < 256; flags++) {
        proto_ns_config cfg = sample_config();
        cfg.flags = (uint8_t)flags;
        frame f = encode_ns_create(NS, &cfg);
        proto_ns_config got;
        int want = flags & ~PROTO_NS_FLAGS_DEFINED ? DEJA_ERR_BAD_REQUEST : 0;
        ASSERT_EQ(dec_ns_create(f.body, f.len, &got), want);
        /* The block on its own (as stored on disk) follows the same rule. */
        size_t off = 1 + NS_LEN;
        ASSERT_EQ(proto_ns_config_read(f.body + off, f.len - off, &got), want);
        frame_free(&f);
    }
}

/* The documented code comes back whatever the body's length: a dim of 0
 * (or over 4096) is BAD_VECTOR even when the block after it is cut short,
 * and an empty name is BAD_NAMESPACE even with nothing behind it. */
static void test_ns_create_dim_and_name_errors_do_not_depend_on_length(void) {
    const uint16_t dims[] = {0, PROTO_MAX_DIM + 1, 0xFFFF};
    for (size_t d = 0; d < 3; d++) {
        proto_ns_config cfg = sample_config();
        cfg.dim = dims[d];
        /* The encoder does not check dim: it writes what it is given. */
        frame f = encode_ns_create(NS, &cfg);
        proto_ns_config got;
        for (size_t len = 1 + NS_LEN + 2; len <= f.len; len++) {
            uint8_t *cut = malloc(len);
            memcpy(cut, f.body, len);
            ASSERT_EQ(dec_ns_create(cut, len, &got), DEJA_ERR_BAD_VECTOR);
            free(cut);
        }
        frame_free(&f);
    }
    proto_ns_config cfg = sample_config();
    frame f = encode_ns_create("", &cfg);
    proto_ns_config got;
    for (size_t len = 1; len <= f.len; len++) {
        uint8_t *cut = malloc(len);
        memcpy(cut, f.body, len);
        ASSERT_EQ(dec_ns_create(cut, len, &got), DEJA_ERR_BAD_NAMESPACE);
        free(cut);
    }
    frame_free(&f);
    /* With nothing at all, not even the name's length, it is malformed. */
    ASSERT_EQ(dec_ns_create((const uint8_t *)"", 0, &got), DEJA_ERR_BAD_REQUEST);
}

/* NS_INFO's block is the resolved configuration: a negative floor reads
 * back negative. */
static void test_ns_info_reply_carries_a_negative_floor(void) {
    proto_ns_config cfg = {.dim = 8,
                           .index_kind = PROTO_INDEX_FLAT,
                           .flags = PROTO_NS_EXPLICIT,
                           .min_threshold = -0.5f,
                           .dedup = 0.97f,
                           .default_ttl_s = 60};
    proto_stat st = {.key = "entries", .key_len = 7, .value = 3};
    proto_buf *b = fresh_buf();
    ASSERT_OK(proto_encode_ns_info_resp(b, 4, &cfg, &st, 1));
    frame f = take_frame(b);
    proto_ns_config got;
    size_t off;
    ASSERT_OK(proto_decode_ns_info_resp(f.body, f.len, &got, &off));
    ASSERT_NEAR(got.min_threshold, -0.5, 0);
    ASSERT_EQ(got.flags, PROTO_NS_EXPLICIT);
    frame_free(&f);
}

int main(void) {
    RUN(test_ns_config_with_explicit_zeros_round_trips);
    RUN(test_ns_config_undefined_flag_bits_are_refused);
    RUN(test_ns_create_dim_and_name_errors_do_not_depend_on_length);
    RUN(test_ns_info_reply_carries_a_negative_floor);
    RUN(test_hello_request_round_trips);
    RUN(test_hello_reply_round_trips_and_is_flagged_as_reply);
    RUN(test_hello_reply_announcing_impossible_limits_is_refused);
    RUN(test_auth_request_round_trips_and_its_reply_is_empty);
    RUN(test_ping_payload_is_carried_verbatim_both_ways);
    RUN(test_ping_payload_over_the_limit_is_refused);
    RUN(test_store_request_round_trips_with_a_prompt);
    RUN(test_store_request_round_trips_without_a_prompt);
    RUN(test_store_reply_carries_the_entry_id);
    RUN(test_lookup_request_round_trips_with_a_prompt);
    RUN(test_lookup_request_round_trips_without_a_prompt);
    RUN(test_lookup_reply_with_no_hits_is_a_miss);
    RUN(test_lookup_reply_with_one_hit_round_trips);
    RUN(test_lookup_reply_with_several_hits_keeps_their_order);
    RUN(test_lookup_reply_with_more_hits_than_room_is_refused);
    RUN(test_lookup_reply_with_nan_similarity_is_refused);
    RUN(test_lookup_reply_flags_an_exact_tier_hit_in_the_header_only);
    RUN(test_delete_request_carries_namespace_and_id);
    RUN(test_flush_request_and_reply_round_trip);
    RUN(test_ns_info_request_is_one_namespace_and_nothing_else);
    RUN(test_ns_drop_request_and_reply_round_trip);
    RUN(test_ns_info_and_ns_drop_take_the_longest_name);
    RUN(test_stats_request_is_server_wide_or_per_namespace);
    RUN(test_stats_reply_iterates_every_entry_in_order);
    RUN(test_stats_iterator_refuses_a_position_past_the_body);
    RUN(test_stats_keys_follow_the_namespace_rules);
    RUN(test_error_reply_carries_status_and_message);
    RUN(test_error_message_is_cut_at_the_limit_on_a_character_boundary);
    RUN(test_error_message_over_the_limit_is_refused_by_the_decoder);
    RUN(test_error_encoder_refuses_codes_that_do_not_travel);
    RUN(test_failed_encode_leaves_the_buffer_unchanged);
    RUN(test_lengths_pointing_past_the_body_are_refused);
    RUN(test_dim_zero_or_above_the_maximum_is_a_bad_vector);
    RUN(test_bad_or_empty_namespace_is_refused_by_every_request);
    RUN(test_k_outside_one_to_256_is_refused);
    RUN(test_threshold_must_be_finite_and_within_minus_one_to_one);
    RUN(test_completion_above_filtered_is_refused);
    RUN(test_reserved_fields_must_be_zero);
    RUN(test_vector_is_read_as_sent_without_normalising);
    RUN(test_vector_bytes_are_little_endian_f32);
    RUN(test_vector_is_read_from_an_unaligned_buffer);
    RUN(test_vectors_of_extreme_magnitudes_are_accepted);
    RUN(test_nan_inf_and_zero_vectors_are_refused);
    RUN(test_vector_read_refuses_dim_outside_the_limits);
    proto_buf_free(&shared_buf);
    return harness_result();
}
