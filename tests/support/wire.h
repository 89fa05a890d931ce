/* wire.h: raw-frame helpers for the integration tests of namespaces,
 * their configuration, FAISS kinds and quarantine: one request, one
 * reply, over a blocking socket, encoded and decoded with proto/.
 *
 * Header-only (static functions): include it once per test file, after
 * harness.h. The connection and the reply buffer are file-wide, as in
 * the other integration tests. */
#ifndef DEJA_TEST_WIRE_H
#define DEJA_TEST_WIRE_H

#include <unistd.h>

#include "proto.h"
#include "support/spawn.h"

#define WIRE_BUF (1u << 20)

static int wire_fd = -1;
static uint8_t wire_reply[WIRE_BUF];
static const uint8_t *wire_body = wire_reply + PROTO_HEADER_SIZE;

static inline void wire_connect(const test_server *s) {
    if (wire_fd >= 0) close(wire_fd);
    wire_fd = test_server_connect_raw(s);
    ASSERT_GE(wire_fd, 0);
}

static inline void wire_close(void) {
    if (wire_fd >= 0) close(wire_fd);
    wire_fd = -1;
}

/* Sends the frame in b (and empties b); returns the reply's header. */
static inline proto_header wire_roundtrip(proto_buf *b) {
    ASSERT_OK(test_raw_send(wire_fd, b->data, b->len));
    proto_buf_reset(b);
    long n = test_raw_recv_frame(wire_fd, wire_reply, WIRE_BUF, 30000);
    ASSERT_GT(n, 0);
    proto_header h;
    ASSERT_GT(proto_parse_frame(wire_reply, (size_t)n, WIRE_BUF, &h), 0);
    return h;
}

/* The error message of the last reply, NUL-terminated (static buffer). */
static inline const char *wire_error_message(const proto_header *h) {
    static char text[1100];
    const uint8_t *msg;
    uint16_t len = 0;
    text[0] = 0;
    if (h->status && proto_decode_error(wire_body, h->body_len, &msg, &len) == 0) {
        memcpy(text, msg, len);
        text[len] = 0;
    }
    return text;
}

/* Sends a hand-made body under opcode (to test lengths encoders refuse). */
static inline proto_header wire_raw_request(uint8_t opcode, const uint8_t *body,
                                            uint32_t len) {
    uint8_t frame[PROTO_HEADER_SIZE + 512];
    ASSERT_TRUE(len <= 512);
    proto_header h = {
        .version = PROTO_VERSION, .opcode = opcode, .request_id = 77, .body_len = len};
    proto_header_write(frame, &h);
    memcpy(frame + PROTO_HEADER_SIZE, body, len);
    ASSERT_OK(test_raw_send(wire_fd, frame, PROTO_HEADER_SIZE + len));
    long n = test_raw_recv_frame(wire_fd, wire_reply, WIRE_BUF, 30000);
    ASSERT_GT(n, 0);
    proto_header r;
    ASSERT_GT(proto_parse_frame(wire_reply, (size_t)n, WIRE_BUF, &r), 0);
    return r;
}

static inline proto_header wire_ns_create(const char *name, const proto_ns_config *cfg) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ns_create_req(&b, 1, (const uint8_t *)name,
                                         (uint8_t)strlen(name), cfg));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    return h;
}

static inline proto_ns_config wire_faiss_config(uint16_t dim, const char *factory) {
    return (proto_ns_config){.dim = dim,
                             .index_kind = PROTO_INDEX_FAISS,
                             .faiss_factory = (const uint8_t *)factory,
                             .faiss_factory_len = (uint8_t)strlen(factory)};
}

/* STORE of the unit vector `seed`; returns the reply header, and the id
 * in *id when it succeeded. */
static inline proto_header wire_store_as(const char *ns, uint16_t dim, uint64_t seed,
                                         const char *resp, uint64_t *id) {
    float v[PROTO_MAX_DIM];
    uint8_t *vec = malloc(4u * dim);
    ASSERT_TRUE(vec != NULL);
    test_unit_vector(seed, v, dim);
    proto_vector_write(vec, v, dim);
    proto_store_req r = {.ns = (const uint8_t *)ns,
                         .ns_len = (uint8_t)strlen(ns),
                         .dim = dim,
                         .vector = vec,
                         .response = (const uint8_t *)resp,
                         .response_len = (uint32_t)strlen(resp)};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_store_req(&b, 2, &r));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    free(vec);
    if (h.status == 0 && id)
        ASSERT_OK(proto_decode_store_resp(wire_body, h.body_len, id));
    return h;
}

static inline uint64_t wire_store(const char *ns, uint16_t dim, uint64_t seed,
                                  const char *resp) {
    uint64_t id = 0;
    proto_header h = wire_store_as(ns, dim, seed, resp, &id);
    if (h.status)
        HARNESS_FAIL("STORE into %s: status %u (%s)", ns, h.status,
                     wire_error_message(&h));
    return id;
}

/* LOOKUP of vector v; returns the reply header and the best hit's id (0
 * for a miss) in *id. */
static inline proto_header wire_lookup_vec(const char *ns, uint16_t dim, const float *v,
                                           float threshold, uint64_t *id, float *sim) {
    uint8_t *vec = malloc(4u * dim);
    ASSERT_TRUE(vec != NULL);
    proto_vector_write(vec, v, dim);
    proto_lookup_req r = {.ns = (const uint8_t *)ns,
                          .ns_len = (uint8_t)strlen(ns),
                          .dim = dim,
                          .k = 1,
                          .threshold = threshold,
                          .vector = vec};
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_lookup_req(&b, 3, 0, &r));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    free(vec);
    *id = 0;
    if (h.status == 0) {
        proto_hit hit;
        uint16_t count;
        ASSERT_OK(proto_decode_lookup_resp(wire_body, h.body_len, &hit, 1, &count));
        if (count) {
            *id = hit.id;
            if (sim) *sim = hit.similarity;
        }
    }
    return h;
}

static inline uint64_t wire_lookup(const char *ns, uint16_t dim, uint64_t seed,
                                   float threshold) {
    float v[PROTO_MAX_DIM];
    test_unit_vector(seed, v, dim);
    uint64_t id;
    proto_header h = wire_lookup_vec(ns, dim, v, threshold, &id, NULL);
    if (h.status)
        HARNESS_FAIL("LOOKUP in %s: status %u (%s)", ns, h.status,
                     wire_error_message(&h));
    return id;
}

/* NS_INFO: the reply header; on success the configuration (its factory
 * points into the reply buffer) and the value of counter `key` (or
 * UINT64_MAX) in *value. */
static inline proto_header wire_ns_info(const char *name, proto_ns_config *cfg,
                                        const char *key, uint64_t *value) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(
        proto_encode_ns_info_req(&b, 5, (const uint8_t *)name, (uint8_t)strlen(name)));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    if (value) *value = UINT64_MAX;
    if (h.status) return h;
    size_t off;
    ASSERT_OK(proto_decode_ns_info_resp(wire_body, h.body_len, cfg, &off));
    size_t pos = 0;
    proto_stat st;
    while (key && proto_stats_next(wire_body + off, h.body_len - off, &pos, &st) > 0)
        if (st.key_len == strlen(key) && memcmp(st.key, key, st.key_len) == 0)
            *value = st.value;
    return h;
}

/* STATS (server-wide when ns is ""): the value of `key`, or UINT64_MAX. */
static inline uint64_t wire_stat(const char *ns, const char *key) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_stats_req(&b, 6, (const uint8_t *)ns, (uint8_t)strlen(ns)));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(h.status, 0);
    size_t pos = 0;
    proto_stat st;
    uint64_t value = UINT64_MAX;
    while (proto_stats_next(wire_body, h.body_len, &pos, &st) > 0)
        if (st.key_len == strlen(key) && memcmp(st.key, key, st.key_len) == 0)
            value = st.value;
    return value;
}

static inline int wire_list_has(const char *name) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ns_list_req(&b, 4));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(h.status, 0);
    size_t pos = 0;
    const uint8_t *n;
    uint8_t len;
    int found = 0, r;
    while ((r = proto_ns_list_next(wire_body, h.body_len, &pos, &n, &len)) > 0)
        found |= len == strlen(name) && memcmp(n, name, len) == 0;
    ASSERT_EQ(r, 0);
    return found;
}

static inline proto_header wire_ns_drop(const char *name) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(
        proto_encode_ns_drop_req(&b, 7, (const uint8_t *)name, (uint8_t)strlen(name)));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    return h;
}

/* PING answers its payload: the server is alive and reading. */
static inline void wire_ping(void) {
    proto_buf b;
    proto_buf_init(&b);
    ASSERT_OK(proto_encode_ping(&b, 8, 0, (const uint8_t *)"alive", 5));
    proto_header h = wire_roundtrip(&b);
    proto_buf_free(&b);
    ASSERT_EQ(h.status, 0);
    ASSERT_EQ(h.body_len, 5);
    ASSERT_MEM_EQ(wire_body, "alive", 5);
}

#endif
