/* test-integration-errors.c: a real dejad answers bad input with a clear
 * error and stays healthy.
 *
 * Stream-level damage (bad magic, unknown version, oversized frame) gets one
 * error frame and a closed connection; anything inside a well-framed
 * request (unknown opcode, malformed body, bad vector, wrong dimension)
 * gets an error frame and the connection keeps working. Raw sockets and
 * the proto codec are used so every byte sent is the test's choice. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"
#include "support/spawn.h"

#define DIM 16
#define BUF (1u << 20)

static test_server srv;
static uint8_t reply[BUF];

static proto_header reply_header(long n) {
    proto_header h;
    ASSERT_GT(n, 0);
    ASSERT_GT(proto_parse_frame(reply, (size_t)n, BUF, &h), 0);
    ASSERT_TRUE(h.flags & PROTO_FLAG_REPLY);
    return h;
}

/* Sends the frame in b and returns the reply header (reply bytes in reply). */
static proto_header roundtrip(int fd, proto_buf *b) {
    ASSERT_OK(test_raw_send(fd, b->data, b->len));
    proto_buf_reset(b);
    return reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
}

static void assert_ping_works(int fd) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ping(&b, 777, 0, (const uint8_t *)"hi", 2));
    proto_header h = roundtrip(fd, &b);
    ASSERT_EQ(h.status, 0);
    ASSERT_EQ(h.request_id, 777);
    ASSERT_EQ(h.body_len, 2);
    ASSERT_MEM_EQ(reply + PROTO_HEADER_SIZE, "hi", 2);
    proto_buf_free(&b);
}

static void unit_vector(float *v, int seed) {
    for (int i = 0; i < DIM; i++)
        v[i] = (float)((i * 7 + seed * 13) % 11) - 5.0f;
    v[seed % DIM] += 10.0f;
}

static int store(int fd, proto_buf *b, const char *ns, const float *v, uint16_t dim) {
    uint8_t vec[4 * PROTO_MAX_DIM];
    proto_vector_write(vec, v, dim);
    proto_store_req r = {.ns = (const uint8_t *)ns,
                         .ns_len = (uint8_t)strlen(ns),
                         .dim = dim,
                         .vector = vec,
                         .response = (const uint8_t *)"answer",
                         .response_len = 6};
    ASSERT_OK(proto_encode_store_req(b, 1, &r));
    proto_header h = roundtrip(fd, b);
    return -(int)h.status;
}

static void test_bad_magic_gets_bad_frame_and_close(void) {
    int fd = test_server_connect_raw(&srv);
    ASSERT_GE(fd, 0);
    ASSERT_OK(test_raw_send(fd, "GET / HTTP/1.1\r\n\r\n", 18));
    proto_header h = reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
    ASSERT_EQ(h.status, -DEJA_ERR_BAD_FRAME);
    ASSERT_TRUE(test_raw_closed(fd, 5000));
    close(fd);
}

static void test_unknown_version_gets_version_error_and_close(void) {
    int fd = test_server_connect_raw(&srv);
    proto_header bad = {.version = 9, .opcode = PROTO_OP_PING, .request_id = 5};
    uint8_t frame[PROTO_HEADER_SIZE];
    proto_header_write(frame, &bad);
    ASSERT_OK(test_raw_send(fd, frame, sizeof frame));
    proto_header h = reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
    ASSERT_EQ(h.status, -DEJA_ERR_VERSION);
    ASSERT_EQ(h.request_id, 5);
    ASSERT_TRUE(test_raw_closed(fd, 5000));
    close(fd);
}

static void test_frame_over_the_maximum_is_refused_before_its_body(void) {
    int fd = test_server_connect_raw(&srv);
    proto_header big = {.version = PROTO_VERSION,
                        .opcode = PROTO_OP_STORE,
                        .request_id = 6,
                        .body_len = 64u * 1024u * 1024u};
    uint8_t frame[PROTO_HEADER_SIZE];
    proto_header_write(frame, &big);
    ASSERT_OK(test_raw_send(fd, frame, sizeof frame));
    proto_header h = reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
    ASSERT_EQ(h.status, -DEJA_ERR_TOO_LARGE);
    ASSERT_TRUE(test_raw_closed(fd, 5000));
    close(fd);
}

static void test_unknown_opcode_keeps_the_connection(void) {
    int fd = test_server_connect_raw(&srv);
    proto_header odd = {
        .version = PROTO_VERSION, .opcode = 0x7E, .request_id = 8, .body_len = 3};
    uint8_t frame[PROTO_HEADER_SIZE + 3] = {0};
    proto_header_write(frame, &odd);
    ASSERT_OK(test_raw_send(fd, frame, sizeof frame));
    proto_header h = reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
    ASSERT_EQ(h.status, -DEJA_ERR_UNKNOWN_OP);
    ASSERT_EQ(h.request_id, 8);
    assert_ping_works(fd);
    close(fd);
}

/* docs/PROTOCOL.md section 11, byte for byte. */
static void test_the_worked_examples_of_the_spec_are_what_the_server_sends(void) {
    int fd = test_server_connect_raw(&srv);
    static const uint8_t ping_req[] = {0x44, 0x4A, 0x01, 0x03, 0x00, 0x00,
                                       0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                                       0x02, 0x00, 0x00, 0x00, 0x68, 0x69};
    static const uint8_t ping_rep[] = {0x44, 0x4A, 0x01, 0x03, 0x00, 0x80,
                                       0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                                       0x02, 0x00, 0x00, 0x00, 0x68, 0x69};
    ASSERT_OK(test_raw_send(fd, ping_req, sizeof ping_req));
    ASSERT_EQ(test_raw_recv_frame(fd, reply, BUF, 5000), (long)sizeof ping_rep);
    ASSERT_MEM_EQ(reply, ping_rep, sizeof ping_rep);
    static const uint8_t odd_req[] = {0x44, 0x4A, 0x01, 0x7E, 0x00, 0x00, 0x00, 0x00,
                                      0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t odd_rep[] = {
        0x44, 0x4A, 0x01, 0x7E, 0x00, 0x80, 0x05, 0x00, 0x02, 0x00, 0x00, 0x00, 0x15,
        0x00, 0x00, 0x00, 0x13, 0x00, 0x75, 0x6E, 0x6B, 0x6E, 0x6F, 0x77, 0x6E, 0x20,
        0x6F, 0x70, 0x63, 0x6F, 0x64, 0x65, 0x20, 0x30, 0x78, 0x37, 0x65};
    ASSERT_OK(test_raw_send(fd, odd_req, sizeof odd_req));
    ASSERT_EQ(test_raw_recv_frame(fd, reply, BUF, 5000), (long)sizeof odd_rep);
    ASSERT_MEM_EQ(reply, odd_rep, sizeof odd_rep);
    close(fd);
}

/* An empty namespace gets BAD_NAMESPACE and a dim of 0 gets BAD_VECTOR
 * from every op that carries them, however short the rest of the body:
 * the documented code, not a BAD_REQUEST from the size check. */
static void test_empty_namespace_and_dim_zero_get_their_documented_codes(void) {
    int fd = test_server_connect_raw(&srv);
    static const struct {
        uint8_t opcode;
        uint32_t body_len; /* the shortest body with ns_len 0 (and dim 0) */
        int expect;
    } cases[] = {
        {PROTO_OP_STORE, 33, DEJA_ERR_BAD_NAMESPACE},
        {PROTO_OP_LOOKUP, 17, DEJA_ERR_BAD_NAMESPACE},
        {PROTO_OP_DELETE, 9, DEJA_ERR_BAD_NAMESPACE},
        {PROTO_OP_FLUSH, 1, DEJA_ERR_BAD_NAMESPACE},
        {PROTO_OP_NS_INFO, 1, DEJA_ERR_BAD_NAMESPACE},
        {PROTO_OP_NS_DROP, 1, DEJA_ERR_BAD_NAMESPACE},
        {PROTO_OP_NS_CREATE, 1 + PROTO_NS_CONFIG_SIZE + 1, DEJA_ERR_BAD_NAMESPACE},
    };
    uint8_t frame[PROTO_HEADER_SIZE + 128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(frame, 0, sizeof frame);
        proto_header hdr = {.version = PROTO_VERSION,
                            .opcode = cases[i].opcode,
                            .request_id = (uint32_t)i,
                            .body_len = cases[i].body_len};
        proto_header_write(frame, &hdr);
        ASSERT_OK(test_raw_send(fd, frame, PROTO_HEADER_SIZE + cases[i].body_len));
        proto_header h = reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
        if (h.status != -cases[i].expect)
            fprintf(stderr, "opcode 0x%02x, body %u: status %u\n", cases[i].opcode,
                    cases[i].body_len, h.status);
        ASSERT_EQ(h.status, -cases[i].expect);
    }
    /* A valid name with dim 0: STORE and LOOKUP say BAD_VECTOR. */
    const uint8_t ops[] = {PROTO_OP_STORE, PROTO_OP_LOOKUP};
    const uint32_t lens[] = {34, 18};
    for (int i = 0; i < 2; i++) {
        memset(frame, 0, sizeof frame);
        proto_header hdr = {
            .version = PROTO_VERSION, .opcode = ops[i], .body_len = lens[i]};
        proto_header_write(frame, &hdr);
        frame[PROTO_HEADER_SIZE] = 1;
        frame[PROTO_HEADER_SIZE + 1] = 'n';
        ASSERT_OK(test_raw_send(fd, frame, PROTO_HEADER_SIZE + lens[i]));
        proto_header h = reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
        ASSERT_EQ(h.status, -DEJA_ERR_BAD_VECTOR);
    }
    assert_ping_works(fd);
    close(fd);
}

static void test_malformed_body_gets_bad_request_and_keeps_the_connection(void) {
    int fd = test_server_connect_raw(&srv);
    /* A DELETE whose namespace length points past the body. */
    proto_header del = {.version = PROTO_VERSION,
                        .opcode = PROTO_OP_DELETE,
                        .request_id = 9,
                        .body_len = 10};
    uint8_t frame[PROTO_HEADER_SIZE + 10];
    memset(frame, 0, sizeof frame);
    proto_header_write(frame, &del);
    frame[PROTO_HEADER_SIZE] = 200;
    ASSERT_OK(test_raw_send(fd, frame, sizeof frame));
    proto_header h = reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
    ASSERT_EQ(h.status, -DEJA_ERR_BAD_REQUEST);
    const uint8_t *msg;
    uint16_t msg_len;
    ASSERT_OK(proto_decode_error(reply + PROTO_HEADER_SIZE, h.body_len, &msg, &msg_len));
    ASSERT_GT(msg_len, 0);
    assert_ping_works(fd);
    close(fd);
}

static void test_wrong_dim_and_nan_vectors_get_errors_and_the_connection_works(void) {
    int fd = test_server_connect_raw(&srv);
    proto_buf b;
    proto_buf_init(&b);
    float v[2 * DIM];
    unit_vector(v, 1);
    unit_vector(v + DIM, 2);
    ASSERT_OK(store(fd, &b, "errs", v, DIM));
    ASSERT_EQ(store(fd, &b, "errs", v, 2 * DIM), DEJA_ERR_DIM_MISMATCH);
    float nan_vec[DIM];
    memcpy(nan_vec, v, sizeof nan_vec);
    nan_vec[3] = NAN;
    ASSERT_EQ(store(fd, &b, "errs", nan_vec, DIM), DEJA_ERR_BAD_VECTOR);
    nan_vec[3] = INFINITY;
    ASSERT_EQ(store(fd, &b, "errs", nan_vec, DIM), DEJA_ERR_BAD_VECTOR);
    float zero[DIM] = {0};
    ASSERT_EQ(store(fd, &b, "errs", zero, DIM), DEJA_ERR_BAD_VECTOR);
    ASSERT_EQ(store(fd, &b, "bad ns", v, DIM), DEJA_ERR_BAD_NAMESPACE);

    /* A lookup with the wrong dim is refused the same way. */
    uint8_t vec[4 * 2 * DIM];
    proto_vector_write(vec, v, 2 * DIM);
    proto_lookup_req lr = {.ns = (const uint8_t *)"errs",
                           .ns_len = 4,
                           .dim = 2 * DIM,
                           .k = 1,
                           .threshold = 0.5f,
                           .vector = vec};
    ASSERT_OK(proto_encode_lookup_req(&b, 2, 0, &lr));
    proto_header h = roundtrip(fd, &b);
    ASSERT_EQ(h.status, -DEJA_ERR_DIM_MISMATCH);

    ASSERT_OK(store(fd, &b, "errs", v, DIM));
    assert_ping_works(fd);
    proto_buf_free(&b);
    close(fd);
}

static void test_a_stored_completion_error_is_rejected(void) {
    int fd = test_server_connect_raw(&srv);
    proto_buf b;
    proto_buf_init(&b);
    float v[DIM];
    unit_vector(v, 3);
    uint8_t vec[4 * DIM];
    proto_vector_write(vec, v, DIM);
    proto_store_req r = {.ns = (const uint8_t *)"errs",
                         .ns_len = 4,
                         .dim = DIM,
                         .completion = PROTO_COMPLETION_TRUNCATED,
                         .vector = vec,
                         .response = (const uint8_t *)"half an ans",
                         .response_len = 11};
    ASSERT_OK(proto_encode_store_req(&b, 3, &r));
    proto_header h = roundtrip(fd, &b);
    ASSERT_EQ(h.status, -DEJA_ERR_REJECTED);
    proto_buf_free(&b);
    close(fd);
}

static void test_a_frame_delivered_byte_by_byte_is_answered(void) {
    int fd = test_server_connect_raw(&srv);
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ping(&b, 4242, 0, (const uint8_t *)"slow", 4));
    for (size_t i = 0; i < b.len; i++)
        ASSERT_OK(test_raw_send(fd, b.data + i, 1));
    proto_header h = reply_header(test_raw_recv_frame(fd, reply, BUF, 5000));
    ASSERT_EQ(h.request_id, 4242);
    ASSERT_EQ(h.status, 0);
    proto_buf_free(&b);
    close(fd);
}

static void test_truncated_frame_then_disconnect_leaves_server_healthy(void) {
    int fd = test_server_connect_raw(&srv);
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ping(&b, 1, 0, (const uint8_t *)"abcdef", 6));
    ASSERT_OK(test_raw_send(fd, b.data, b.len - 3));
    close(fd);
    fd = test_server_connect_raw(&srv);
    assert_ping_works(fd);
    proto_buf_free(&b);
    close(fd);
}

static void test_auth_token_is_required_and_checked(void) {
    test_server auth;
    const char *args[] = {"--auth-token", "s3cret", NULL};
    ASSERT_OK(test_server_start(&auth, args));
    proto_buf b;
    proto_buf_init(&b);

    int fd = test_server_connect_raw(&auth);
    assert_ping_works(fd); /* PING is allowed before AUTH */
    ASSERT_OK(proto_encode_stats_req(&b, 1, NULL, 0));
    ASSERT_EQ(roundtrip(fd, &b).status, -DEJA_ERR_AUTH_REQUIRED);
    proto_auth_req good = {.token = (const uint8_t *)"s3cret", .token_len = 6};
    ASSERT_OK(proto_encode_auth_req(&b, 2, &good));
    ASSERT_EQ(roundtrip(fd, &b).status, 0);
    ASSERT_OK(proto_encode_stats_req(&b, 3, NULL, 0));
    ASSERT_EQ(roundtrip(fd, &b).status, 0);
    close(fd);

    fd = test_server_connect_raw(&auth);
    proto_auth_req bad = {.token = (const uint8_t *)"s3creT", .token_len = 6};
    ASSERT_OK(proto_encode_auth_req(&b, 4, &bad));
    ASSERT_EQ(roundtrip(fd, &b).status, -DEJA_ERR_AUTH_FAILED);
    ASSERT_TRUE(test_raw_closed(fd, 5000));
    close(fd);

    proto_buf_free(&b);
    ASSERT_EQ(test_server_stop(&auth), 0);
}

static void test_hello_negotiates_the_highest_common_version(void) {
    int fd = test_server_connect_raw(&srv);
    proto_buf b;
    proto_buf_init(&b);
    proto_hello_req hr = {.min_version = 1,
                          .max_version = 3,
                          .client_name = (const uint8_t *)"t",
                          .client_name_len = 1};
    ASSERT_OK(proto_encode_hello_req(&b, 1, &hr));
    proto_header h = roundtrip(fd, &b);
    ASSERT_EQ(h.status, 0);
    proto_hello_resp resp;
    ASSERT_OK(proto_decode_hello_resp(reply + PROTO_HEADER_SIZE, h.body_len, &resp));
    ASSERT_EQ(resp.version, 2); /* dejad speaks 1 and 2 */
    ASSERT_EQ(resp.max_dim, PROTO_MAX_DIM);
    ASSERT_EQ(resp.max_frame, PROTO_DEFAULT_MAX_FRAME);

    hr.max_version = 1; /* a version-1 client gets version 1 */
    ASSERT_OK(proto_encode_hello_req(&b, 2, &hr));
    h = roundtrip(fd, &b);
    ASSERT_OK(proto_decode_hello_resp(reply + PROTO_HEADER_SIZE, h.body_len, &resp));
    ASSERT_EQ(resp.version, 1);

    hr.min_version = 3;
    hr.max_version = 3;
    ASSERT_OK(proto_encode_hello_req(&b, 2, &hr));
    ASSERT_EQ(roundtrip(fd, &b).status, -DEJA_ERR_VERSION);
    assert_ping_works(fd);
    proto_buf_free(&b);
    close(fd);
}

static void test_sigterm_shuts_down_cleanly(void) {
    test_server s;
    ASSERT_OK(test_server_start(&s, NULL));
    int fd = test_server_connect_raw(&s);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(test_server_shutdown(&s), 0);
    ASSERT_TRUE(test_raw_closed(fd, 5000));
    close(fd);
    ASSERT_EQ(test_server_stop(&s), 0);
}

static void test_server_is_still_healthy_after_all_of_the_above(void) {
    int fd = test_server_connect_raw(&srv);
    ASSERT_GE(fd, 0);
    assert_ping_works(fd);
    close(fd);
}

int main(void) {
    if (test_server_start(&srv, NULL) != 0) return 1;
    RUN(test_bad_magic_gets_bad_frame_and_close);
    RUN(test_unknown_version_gets_version_error_and_close);
    RUN(test_frame_over_the_maximum_is_refused_before_its_body);
    RUN(test_unknown_opcode_keeps_the_connection);
    RUN(test_the_worked_examples_of_the_spec_are_what_the_server_sends);
    RUN(test_empty_namespace_and_dim_zero_get_their_documented_codes);
    RUN(test_malformed_body_gets_bad_request_and_keeps_the_connection);
    RUN(test_wrong_dim_and_nan_vectors_get_errors_and_the_connection_works);
    RUN(test_a_stored_completion_error_is_rejected);
    RUN(test_a_frame_delivered_byte_by_byte_is_answered);
    RUN(test_truncated_frame_then_disconnect_leaves_server_healthy);
    RUN(test_auth_token_is_required_and_checked);
    RUN(test_hello_negotiates_the_highest_common_version);
    RUN(test_sigterm_shuts_down_cleanly);
    RUN(test_server_is_still_healthy_after_all_of_the_above);
    if (test_server_stop(&srv) != 0) {
        fprintf(stderr, "dejad did not exit cleanly after the error tests\n");
        return 1;
    }
    return harness_result();
}
