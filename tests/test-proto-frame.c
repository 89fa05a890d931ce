/* test-proto-frame.c: the incremental frame parser, the header writer, the
 * header's status codes, namespace names and the output buffer. Each test
 * states one rule of docs/PROTOCOL.md (sections 2, 3, 6 and 9). */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proto.h"

/* A header with every field distinct so a swapped field shows up. */
static proto_header sample_header(uint8_t opcode, uint32_t body_len) {
    proto_header h = {
        .version = PROTO_VERSION,
        .opcode = opcode,
        .flags = 0x1234,
        .status = 0x5678,
        .request_id = 0x9ABCDEF0u,
        .body_len = body_len,
    };
    return h;
}

/* Appends a PING frame with a payload of `n` bytes valued seed, seed+1, ... */
static void append_ping(proto_buf *b, uint32_t id, size_t n, uint8_t seed) {
    uint8_t payload[64];
    for (size_t i = 0; i < n && i < sizeof payload; i++)
        payload[i] = (uint8_t)(seed + i);
    ASSERT_OK(proto_encode_ping(b, id, 0, payload, n));
}

/* Copies `len` bytes to a heap block of exactly that size, so that the
 * address sanitizer sees any read past what the parser was given. */
static uint8_t *exact_copy(const uint8_t *src, size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    if (len) memcpy(p, src, len);
    return p;
}

static void test_header_is_written_little_endian_after_the_magic(void) {
    proto_header h = sample_header(PROTO_OP_STORE, 0x01020304u);
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    const uint8_t expect[PROTO_HEADER_SIZE] = {
        0x44, 0x4A, 0x01, 0x10, 0x34, 0x12, 0x78, 0x56,
        0xF0, 0xDE, 0xBC, 0x9A, 0x04, 0x03, 0x02, 0x01,
    };
    ASSERT_MEM_EQ(out, expect, sizeof expect);
}

static void test_header_round_trips_every_field(void) {
    proto_header h = sample_header(PROTO_OP_LOOKUP, 0);
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    proto_header got;
    memset(&got, 0xAA, sizeof got);
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &got),
              PROTO_HEADER_SIZE);
    ASSERT_EQ(got.version, h.version);
    ASSERT_EQ(got.opcode, h.opcode);
    ASSERT_EQ(got.flags, h.flags);
    ASSERT_EQ(got.status, h.status);
    ASSERT_EQ(got.request_id, h.request_id);
    ASSERT_EQ(got.body_len, 0);
}

static void test_empty_buffer_needs_more(void) {
    proto_header h;
    ASSERT_EQ(proto_parse_frame(NULL, 0, PROTO_DEFAULT_MAX_FRAME, &h), 0);
}

static void test_bad_magic_is_refused_on_first_byte(void) {
    /* An HTTP client is told off after one byte, not after sixteen. */
    const uint8_t get[] = {'G'};
    proto_header h;
    ASSERT_EQ(proto_parse_frame(get, 1, PROTO_DEFAULT_MAX_FRAME, &h), DEJA_ERR_BAD_FRAME);
}

static void test_bad_second_magic_byte_is_refused_on_second_byte(void) {
    const uint8_t bytes[] = {0x44, 0x00};
    proto_header h;
    ASSERT_EQ(proto_parse_frame(bytes, 1, PROTO_DEFAULT_MAX_FRAME, &h), 0);
    ASSERT_EQ(proto_parse_frame(bytes, 2, PROTO_DEFAULT_MAX_FRAME, &h),
              DEJA_ERR_BAD_FRAME);
}

static void test_bad_magic_is_refused_with_a_full_header_present(void) {
    proto_header h = sample_header(PROTO_OP_PING, 0);
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    out[0] = 0x16; /* a TLS ClientHello starts with 0x16 */
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &h),
              DEJA_ERR_BAD_FRAME);
}

static void test_unknown_version_is_refused_on_third_byte(void) {
    const uint8_t bytes[] = {0x44, 0x4A, 0x02};
    proto_header h;
    ASSERT_EQ(proto_parse_frame(bytes, 3, PROTO_DEFAULT_MAX_FRAME, &h), DEJA_ERR_VERSION);
    const uint8_t zero[] = {0x44, 0x4A, 0x00};
    ASSERT_EQ(proto_parse_frame(zero, 3, PROTO_DEFAULT_MAX_FRAME, &h), DEJA_ERR_VERSION);
}

static void test_refused_header_is_still_filled_so_the_reply_can_echo_the_id(void) {
    proto_header h = sample_header(PROTO_OP_STATS, 0);
    h.version = 7;
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    proto_header got = {0};
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &got),
              DEJA_ERR_VERSION);
    ASSERT_EQ(got.version, 7);
    ASSERT_EQ(got.request_id, h.request_id);
    ASSERT_EQ(got.opcode, PROTO_OP_STATS);

    h.version = PROTO_VERSION;
    h.body_len = UINT32_MAX;
    proto_header_write(out, &h);
    memset(&got, 0, sizeof got);
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &got),
              DEJA_ERR_TOO_LARGE);
    ASSERT_EQ(got.request_id, h.request_id);
    ASSERT_EQ(got.body_len, UINT32_MAX);
}

static void test_body_at_exactly_the_maximum_is_accepted(void) {
    const uint32_t max_frame = PROTO_MIN_MAX_FRAME;
    size_t total = max_frame;
    uint8_t *frame = calloc(1, total);
    proto_header h = sample_header(PROTO_OP_PING, max_frame - PROTO_HEADER_SIZE);
    proto_header_write(frame, &h);
    proto_header got;
    ASSERT_EQ(proto_parse_frame(frame, total, max_frame, &got), (int)total);
    ASSERT_EQ(proto_parse_frame(frame, total - 1, max_frame, &got), 0);
    free(frame);
}

static void test_body_one_past_the_maximum_is_too_large(void) {
    const uint32_t max_frame = PROTO_MIN_MAX_FRAME;
    proto_header h = sample_header(PROTO_OP_PING, max_frame - PROTO_HEADER_SIZE + 1);
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    proto_header got;
    ASSERT_EQ(proto_parse_frame(out, sizeof out, max_frame, &got), DEJA_ERR_TOO_LARGE);
}

static void test_default_maximum_is_sixteen_mebibytes_including_the_header(void) {
    proto_header h = sample_header(PROTO_OP_STORE, 16u * 1024 * 1024 - PROTO_HEADER_SIZE);
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    proto_header got;
    /* Within the limit: the parser waits for the body. */
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &got), 0);
    h.body_len++;
    proto_header_write(out, &h);
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &got),
              DEJA_ERR_TOO_LARGE);
}

static void test_oversized_frame_is_refused_before_its_body_arrives(void) {
    proto_header h = sample_header(PROTO_OP_STORE, 1u << 30);
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    proto_header got;
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &got),
              DEJA_ERR_TOO_LARGE);
}

static void test_body_len_near_four_gibibytes_does_not_wrap(void) {
    /* 16 + 0xFFFFFFF0 is exactly 2^32: a 32-bit sum would wrap to 0. */
    proto_header h = sample_header(PROTO_OP_STORE, 0xFFFFFFF0u);
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    proto_header got;
    ASSERT_EQ(proto_parse_frame(out, sizeof out, UINT32_MAX, &got), DEJA_ERR_TOO_LARGE);
    h.body_len = UINT32_MAX;
    proto_header_write(out, &h);
    ASSERT_EQ(proto_parse_frame(out, sizeof out, UINT32_MAX, &got), DEJA_ERR_TOO_LARGE);
}

static void test_frame_larger_than_int_max_is_too_large_whatever_the_maximum(void) {
    proto_header h = sample_header(PROTO_OP_STORE, (uint32_t)INT_MAX);
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    proto_header got;
    ASSERT_EQ(proto_parse_frame(out, sizeof out, UINT32_MAX, &got), DEJA_ERR_TOO_LARGE);
}

static void test_truncated_header_needs_more_at_every_length(void) {
    proto_buf b;
    proto_buf_init(&b);
    append_ping(&b, 1, 5, 0);
    for (size_t n = 0; n < PROTO_HEADER_SIZE; n++) {
        uint8_t *copy = exact_copy(b.data, n);
        proto_header h;
        int rc = proto_parse_frame(copy, n, PROTO_DEFAULT_MAX_FRAME, &h);
        free(copy);
        ASSERT_EQ(rc, 0);
    }
    proto_buf_free(&b);
}

static void test_truncated_body_needs_more_until_the_last_byte(void) {
    proto_buf b;
    proto_buf_init(&b);
    append_ping(&b, 1, 40, 0);
    for (size_t n = PROTO_HEADER_SIZE; n < b.len; n++) {
        uint8_t *copy = exact_copy(b.data, n);
        proto_header h;
        int rc = proto_parse_frame(copy, n, PROTO_DEFAULT_MAX_FRAME, &h);
        free(copy);
        ASSERT_EQ(rc, 0);
        ASSERT_EQ(h.body_len, 40);
    }
    proto_header h;
    ASSERT_EQ(proto_parse_frame(b.data, b.len, PROTO_DEFAULT_MAX_FRAME, &h), (int)b.len);
    proto_buf_free(&b);
}

static void test_byte_at_a_time_stream_yields_each_frame_when_complete(void) {
    proto_buf b;
    proto_buf_init(&b);
    const size_t sizes[] = {0, 1, 33, 7};
    for (size_t i = 0; i < 4; i++)
        append_ping(&b, (uint32_t)(100 + i), sizes[i], 9);

    /* Deliver one byte at a time into a receive buffer, consuming each frame
     * as soon as the parser reports it, like a server's read loop. */
    uint8_t rx[256];
    size_t have = 0, next_frame = 0;
    for (size_t fed = 0; fed < b.len; fed++) {
        rx[have++] = b.data[fed];
        proto_header h;
        int rc = proto_parse_frame(rx, have, PROTO_DEFAULT_MAX_FRAME, &h);
        size_t want = PROTO_HEADER_SIZE + sizes[next_frame];
        if (have < want) {
            ASSERT_EQ(rc, 0);
            continue;
        }
        ASSERT_EQ(rc, (int)want);
        ASSERT_EQ(h.request_id, 100 + next_frame);
        ASSERT_EQ(h.opcode, PROTO_OP_PING);
        ASSERT_EQ(h.body_len, sizes[next_frame]);
        memmove(rx, rx + want, have - want);
        have -= want;
        next_frame++;
    }
    ASSERT_EQ(next_frame, 4);
    ASSERT_EQ(have, 0);
    proto_buf_free(&b);
}

static void test_frames_back_to_back_in_one_buffer_parse_in_order(void) {
    proto_buf b;
    proto_buf_init(&b);
    append_ping(&b, 1, 3, 0);
    ASSERT_OK(proto_encode_store_resp(&b, 2, 77));
    ASSERT_OK(proto_encode_error(&b, PROTO_OP_LOOKUP, 3, DEJA_ERR_NOT_FOUND, "nope"));
    size_t off = 0;
    const uint32_t ids[] = {1, 2, 3};
    const uint8_t ops[] = {PROTO_OP_PING, PROTO_OP_STORE, PROTO_OP_LOOKUP};
    for (int i = 0; i < 3; i++) {
        proto_header h;
        int rc =
            proto_parse_frame(b.data + off, b.len - off, PROTO_DEFAULT_MAX_FRAME, &h);
        ASSERT_GT(rc, 0);
        ASSERT_EQ(h.request_id, ids[i]);
        ASSERT_EQ(h.opcode, ops[i]);
        off += (size_t)rc;
    }
    ASSERT_EQ(off, b.len);
    proto_buf_free(&b);
}

static void test_unknown_opcode_is_not_a_parse_error(void) {
    proto_header h = sample_header(0x7F, 4);
    uint8_t out[PROTO_HEADER_SIZE + 4] = {0};
    proto_header_write(out, &h);
    proto_header got;
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &got),
              (int)sizeof out);
    ASSERT_EQ(got.opcode, 0x7F);
    ASSERT_TRUE(proto_op_name(0x7F) == NULL);
}

static void test_unknown_flag_bits_and_status_are_not_parse_errors(void) {
    proto_header h = sample_header(PROTO_OP_PING, 0);
    h.flags = 0xFFFF;
    h.status = 0xFFFF;
    uint8_t out[PROTO_HEADER_SIZE];
    proto_header_write(out, &h);
    proto_header got;
    ASSERT_EQ(proto_parse_frame(out, sizeof out, PROTO_DEFAULT_MAX_FRAME, &got),
              PROTO_HEADER_SIZE);
}

static void test_every_defined_opcode_has_its_name(void) {
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_HELLO), "HELLO");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_AUTH), "AUTH");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_PING), "PING");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_STORE), "STORE");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_LOOKUP), "LOOKUP");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_DELETE), "DELETE");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_FLUSH), "FLUSH");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_NS_CREATE), "NS_CREATE");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_NS_LIST), "NS_LIST");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_NS_INFO), "NS_INFO");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_NS_DROP), "NS_DROP");
    ASSERT_STR_EQ(proto_op_name(PROTO_OP_STATS), "STATS");
    ASSERT_TRUE(proto_op_name(0x00) == NULL);
    ASSERT_TRUE(proto_op_name(0xFF) == NULL);
}

/* The opcodes are wire values (docs/PROTOCOL.md section 4): the table in
 * deja-ops.h may gain rows, never renumber one. */
static void test_opcodes_keep_their_wire_values(void) {
    ASSERT_EQ(PROTO_OP_HELLO, 0x01);
    ASSERT_EQ(PROTO_OP_AUTH, 0x02);
    ASSERT_EQ(PROTO_OP_PING, 0x03);
    ASSERT_EQ(PROTO_OP_STORE, 0x10);
    ASSERT_EQ(PROTO_OP_LOOKUP, 0x11);
    ASSERT_EQ(PROTO_OP_DELETE, 0x12);
    ASSERT_EQ(PROTO_OP_FLUSH, 0x13);
    ASSERT_EQ(PROTO_OP_NS_CREATE, 0x14);
    ASSERT_EQ(PROTO_OP_NS_LIST, 0x15);
    ASSERT_EQ(PROTO_OP_NS_INFO, 0x16);
    ASSERT_EQ(PROTO_OP_NS_DROP, 0x17);
    ASSERT_EQ(PROTO_OP_STATS, 0x20);
}

/* Exactly the table's codes have names: every other byte is unknown. */
static void test_only_the_tables_opcodes_have_names(void) {
    static const uint8_t defined[] = {
#define CODE_(NAME, name, code, access, ns, min_body, max_body) code,
        PROTO_OP_TABLE(CODE_)
#undef CODE_
    };
    int named = 0;
    for (unsigned op = 0; op <= 0xFF; op++) {
        if (proto_op_name((uint8_t)op) == NULL) continue;
        named++;
        int in_table = 0;
        for (size_t i = 0; i < sizeof defined; i++)
            if (defined[i] == op) in_table = 1;
        ASSERT_TRUE(in_table);
    }
    ASSERT_EQ(named, (int)sizeof defined);
}

static void test_namespace_rules_are_checked_byte_by_byte(void) {
    char name[PROTO_MAX_NS_LEN + 1];
    memset(name, 'n', sizeof name);
    ASSERT_OK(proto_check_ns((const uint8_t *)name, PROTO_MAX_NS_LEN));
    ASSERT_EQ(proto_check_ns((const uint8_t *)name, PROTO_MAX_NS_LEN + 1),
              DEJA_ERR_BAD_NAMESPACE);
    ASSERT_EQ(proto_check_ns((const uint8_t *)name, 0), DEJA_ERR_BAD_NAMESPACE);
    ASSERT_OK(proto_check_ns((const uint8_t *)"!~", 2));
    const uint8_t bad_bytes[] = {0x00, 0x09, 0x20, 0x7F, 0x80, 0xFF};
    for (size_t i = 0; i < sizeof bad_bytes; i++) {
        uint8_t ns[3] = {'a', bad_bytes[i], 'b'};
        ASSERT_EQ(proto_check_ns(ns, 3), DEJA_ERR_BAD_NAMESPACE);
    }
}

static void test_status_maps_back_to_the_error_code(void) {
    ASSERT_EQ(proto_status_error(0), 0);
    ASSERT_EQ(proto_status_error(1), DEJA_ERR_NOT_FOUND);
    ASSERT_EQ(proto_status_error(16), DEJA_ERR_SHUTTING_DOWN);
    ASSERT_EQ(proto_status_error(99), -99);
    ASSERT_EQ(proto_status_error(100), DEJA_ERR_PROTOCOL);
    ASSERT_EQ(proto_status_error(0xFFFF), DEJA_ERR_PROTOCOL);
}

static void test_strerror_names_every_code_in_the_table(void) {
#define CHECK_MESSAGE_(name, code, msg) ASSERT_STR_EQ(deja_strerror(code), msg);
    DEJA_ERROR_TABLE(CHECK_MESSAGE_)
#undef CHECK_MESSAGE_
    ASSERT_STR_EQ(deja_strerror(-50), "unknown error");
    ASSERT_STR_EQ(deja_strerror(1), "unknown error");
}

static void test_buffer_reserve_grows_and_keeps_what_was_written(void) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_TRUE(b.data == NULL);
    ASSERT_EQ(b.len, 0);
    for (int i = 0; i < 100; i++)
        append_ping(&b, (uint32_t)i, 60, (uint8_t)i);
    ASSERT_EQ(b.len, 100 * (PROTO_HEADER_SIZE + 60));
    ASSERT_GE(b.cap, b.len);
    size_t off = 0;
    for (int i = 0; i < 100; i++) {
        proto_header h;
        int rc =
            proto_parse_frame(b.data + off, b.len - off, PROTO_DEFAULT_MAX_FRAME, &h);
        ASSERT_EQ(rc, PROTO_HEADER_SIZE + 60);
        ASSERT_EQ(h.request_id, i);
        ASSERT_EQ(b.data[off + PROTO_HEADER_SIZE + 59], (uint8_t)(i + 59));
        off += (size_t)rc;
    }
    proto_buf_free(&b);
}

static void test_buffer_reset_keeps_memory_and_free_reinitialises(void) {
    proto_buf b;
    proto_buf_init(&b);
    append_ping(&b, 1, 10, 0);
    size_t cap = b.cap;
    uint8_t *data = b.data;
    proto_buf_reset(&b);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(b.cap, cap);
    ASSERT_TRUE(b.data == data);
    proto_buf_free(&b);
    ASSERT_TRUE(b.data == NULL);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(b.cap, 0);
    proto_buf_free(&b); /* freeing twice is harmless */
}

static void test_buffer_reserve_refuses_sizes_that_overflow(void) {
    proto_buf b;
    proto_buf_init(&b);
    append_ping(&b, 1, 10, 0);
    size_t len = b.len;
    ASSERT_EQ(proto_buf_reserve(&b, SIZE_MAX), DEJA_ERR_NOMEM);
    ASSERT_EQ(proto_buf_reserve(&b, SIZE_MAX - len + 1), DEJA_ERR_NOMEM);
    ASSERT_EQ(b.len, len);
    proto_header h;
    ASSERT_EQ(proto_parse_frame(b.data, b.len, PROTO_DEFAULT_MAX_FRAME, &h), (int)len);
    proto_buf_free(&b);
}

int main(void) {
    RUN(test_header_is_written_little_endian_after_the_magic);
    RUN(test_header_round_trips_every_field);
    RUN(test_empty_buffer_needs_more);
    RUN(test_bad_magic_is_refused_on_first_byte);
    RUN(test_bad_second_magic_byte_is_refused_on_second_byte);
    RUN(test_bad_magic_is_refused_with_a_full_header_present);
    RUN(test_unknown_version_is_refused_on_third_byte);
    RUN(test_refused_header_is_still_filled_so_the_reply_can_echo_the_id);
    RUN(test_body_at_exactly_the_maximum_is_accepted);
    RUN(test_body_one_past_the_maximum_is_too_large);
    RUN(test_default_maximum_is_sixteen_mebibytes_including_the_header);
    RUN(test_oversized_frame_is_refused_before_its_body_arrives);
    RUN(test_body_len_near_four_gibibytes_does_not_wrap);
    RUN(test_frame_larger_than_int_max_is_too_large_whatever_the_maximum);
    RUN(test_truncated_header_needs_more_at_every_length);
    RUN(test_truncated_body_needs_more_until_the_last_byte);
    RUN(test_byte_at_a_time_stream_yields_each_frame_when_complete);
    RUN(test_frames_back_to_back_in_one_buffer_parse_in_order);
    RUN(test_unknown_opcode_is_not_a_parse_error);
    RUN(test_unknown_flag_bits_and_status_are_not_parse_errors);
    RUN(test_every_defined_opcode_has_its_name);
    RUN(test_opcodes_keep_their_wire_values);
    RUN(test_only_the_tables_opcodes_have_names);
    RUN(test_namespace_rules_are_checked_byte_by_byte);
    RUN(test_status_maps_back_to_the_error_code);
    RUN(test_strerror_names_every_code_in_the_table);
    RUN(test_buffer_reserve_grows_and_keeps_what_was_written);
    RUN(test_buffer_reset_keeps_memory_and_free_reinitialises);
    RUN(test_buffer_reserve_refuses_sizes_that_overflow);
    return harness_result();
}
