/* fuzz-proto-body.c: libFuzzer target for the request body decoders, one
 * op at a time, as the server's handlers call them (srv-ops.c).
 *
 * Input layout: one selector byte (which decoder, modulo the table below),
 * then the body. The body is copied to a heap block of exactly its size,
 * so a decoder that reads one byte past it hits a redzone. Where the
 * server goes on to read the vector, so does the target, into a buffer of
 * exactly dim floats. A body that decodes is encoded again and must come
 * out byte for byte identical, and every range the decoder promises to
 * check is checked again here; a disagreement aborts, so libFuzzer reports
 * it like a crash. fuzz-proto-frame.c covers the frame parser and the
 * reply decoders; this target gives each request decoder its own inputs
 * without a frame header to get right first. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* The selector byte's meanings, in this order. */
enum body_kind {
    BODY_HELLO,
    BODY_AUTH,
    BODY_PING,
    BODY_STORE,
    BODY_LOOKUP,
    BODY_DELETE,
    BODY_FLUSH,
    BODY_NS_CREATE,
    BODY_NS_INFO,
    BODY_NS_DROP,
    BODY_STATS,
    BODY_NS_CONFIG, /* the configuration block alone (also read from disk) */
    BODY_VECTOR,    /* u16 dim, then the f32 values: proto_vector_read */
    BODY_LOOKUP_EX, /* protocol version 2 */
    BODY_STORE_EX,
    BODY_LEASE_RELEASE,
    BODY_NS_POLICY,
    BODY_KINDS
};

/* A re-encoded frame's body must equal the body that was decoded. */
static void check_reencoded(proto_buf *b, uint8_t opcode, const uint8_t *body,
                            size_t len) {
    proto_header h;
    int rc = proto_parse_frame(b->data, b->len, UINT32_MAX, &h);
    CHECK(rc > 0 && (size_t)rc == b->len);
    CHECK(h.opcode == opcode);
    CHECK(h.body_len == len);
    CHECK(len == 0 || memcmp(b->data + PROTO_HEADER_SIZE, body, len) == 0);
    proto_buf_reset(b);
}

/* Reads a vector as the server does: into exactly dim floats. Accepted
 * means finite and not all zero (so that it normalises). */
static void read_vector(const uint8_t *src, uint16_t dim) {
    float *v = malloc((size_t)(dim ? dim : 1) * sizeof(float));
    CHECK(v != NULL);
    int rc = proto_vector_read(v, src, dim);
    CHECK(rc == 0 || rc == DEJA_ERR_BAD_VECTOR);
    if (rc == 0) {
        CHECK(dim >= 1 && dim <= PROTO_MAX_DIM);
        double norm = 0.0;
        for (uint16_t i = 0; i < dim; i++) {
            CHECK(isfinite(v[i]));
            norm += (double)v[i] * (double)v[i];
        }
        CHECK(norm > 0.0 && isfinite(norm));
    }
    free(v);
}

/* Every decoder answers 0 or one of the codes the spec gives for a body. */
static void check_code(int rc) {
    CHECK(rc == 0 || rc == DEJA_ERR_BAD_REQUEST || rc == DEJA_ERR_BAD_VECTOR ||
          rc == DEJA_ERR_BAD_NAMESPACE);
}

static void check_config(const proto_ns_config *cfg) {
    CHECK(cfg->dim >= 1 && cfg->dim <= PROTO_MAX_DIM);
    CHECK(cfg->index_kind <= PROTO_INDEX_FAISS);
    CHECK(cfg->quant <= 1);
    CHECK(cfg->ttl_mode <= PROTO_TTL_SLIDING);
    CHECK(isfinite(cfg->min_threshold) && cfg->min_threshold >= -1.0f &&
          cfg->min_threshold <= 1.0f);
    CHECK(isfinite(cfg->dedup) && cfg->dedup >= 0.0f && cfg->dedup <= 1.0f);
    CHECK(cfg->faiss_factory_len == 0 || cfg->index_kind == PROTO_INDEX_FAISS);
    CHECK(cfg->faiss_factory_len == 0 || cfg->faiss_factory != NULL);
}

static void fuzz_body(enum body_kind kind, const uint8_t *body, size_t len,
                      proto_buf *b) {
    int rc;
    switch (kind) {
    case BODY_HELLO: {
        proto_hello_req r;
        check_code(rc = proto_decode_hello_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_encode_hello_req(b, 1, &r) == 0);
            check_reencoded(b, PROTO_OP_HELLO, body, len);
        }
        break;
    }
    case BODY_AUTH: {
        proto_auth_req r;
        check_code(rc = proto_decode_auth_req(body, len, &r));
        if (rc == 0) {
            CHECK(r.token_len == 0 || r.token != NULL);
            CHECK(proto_encode_auth_req(b, 1, &r) == 0);
            check_reencoded(b, PROTO_OP_AUTH, body, len);
        }
        break;
    }
    case BODY_PING:
        check_code(rc = proto_decode_ping(body, len));
        CHECK((rc == 0) == (len <= PROTO_MAX_PING));
        if (rc == 0) {
            CHECK(proto_encode_ping(b, 1, 0, body, len) == 0);
            check_reencoded(b, PROTO_OP_PING, body, len);
        }
        break;
    case BODY_STORE: {
        proto_store_req r;
        check_code(rc = proto_decode_store_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(r.dim >= 1 && r.dim <= PROTO_MAX_DIM);
            CHECK(r.completion <= PROTO_COMPLETION_FILTERED);
            CHECK(r.vector >= body && r.vector + (size_t)r.dim * 4 <= body + len);
            CHECK(r.prompt_len == 0 || r.prompt + r.prompt_len <= body + len);
            CHECK(r.response_len == 0 || r.response + r.response_len <= body + len);
            read_vector(r.vector, r.dim);
            CHECK(proto_encode_store_req(b, 1, &r) == 0);
            check_reencoded(b, PROTO_OP_STORE, body, len);
        }
        break;
    }
    case BODY_LOOKUP: {
        proto_lookup_req r;
        check_code(rc = proto_decode_lookup_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(r.dim >= 1 && r.dim <= PROTO_MAX_DIM);
            CHECK(r.k >= 1 && r.k <= PROTO_MAX_K);
            CHECK(isfinite(r.threshold) && r.threshold >= -1.0f && r.threshold <= 1.0f);
            CHECK(r.vector >= body && r.vector + (size_t)r.dim * 4 <= body + len);
            CHECK(r.prompt_len == 0 || r.prompt + r.prompt_len <= body + len);
            read_vector(r.vector, r.dim);
            CHECK(proto_encode_lookup_req(b, 1, PROTO_FLAG_WANT_PROMPT, &r) == 0);
            check_reencoded(b, PROTO_OP_LOOKUP, body, len);
        }
        break;
    }
    case BODY_DELETE: {
        proto_ns_id_req r;
        check_code(rc = proto_decode_delete_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(proto_encode_delete_req(b, 1, &r) == 0);
            check_reencoded(b, PROTO_OP_DELETE, body, len);
        }
        break;
    }
    case BODY_FLUSH: {
        proto_ns_id_req r;
        check_code(rc = proto_decode_flush_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(proto_encode_flush_req(b, 1, r.ns, r.ns_len) == 0);
            check_reencoded(b, PROTO_OP_FLUSH, body, len);
        }
        break;
    }
    case BODY_NS_INFO: {
        proto_ns_req r;
        check_code(rc = proto_decode_ns_info_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(proto_encode_ns_info_req(b, 1, r.ns, r.ns_len) == 0);
            check_reencoded(b, PROTO_OP_NS_INFO, body, len);
        }
        break;
    }
    case BODY_NS_DROP: {
        proto_ns_req r;
        check_code(rc = proto_decode_ns_drop_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(proto_encode_ns_drop_req(b, 1, r.ns, r.ns_len) == 0);
            check_reencoded(b, PROTO_OP_NS_DROP, body, len);
        }
        break;
    }
    case BODY_NS_CREATE: {
        const uint8_t *ns;
        uint8_t ns_len;
        proto_ns_config cfg;
        check_code(rc = proto_decode_ns_create_req(body, len, &ns, &ns_len, &cfg));
        if (rc == 0) {
            CHECK(proto_check_ns(ns, ns_len) == 0);
            check_config(&cfg);
            CHECK(proto_encode_ns_create_req(b, 1, ns, ns_len, &cfg) == 0);
            check_reencoded(b, PROTO_OP_NS_CREATE, body, len);
        }
        break;
    }
    case BODY_STATS: {
        const uint8_t *ns;
        uint8_t ns_len;
        check_code(rc = proto_decode_stats_req(body, len, &ns, &ns_len));
        if (rc == 0) {
            CHECK(ns_len == 0 || proto_check_ns(ns, ns_len) == 0);
            CHECK(proto_encode_stats_req(b, 1, ns, ns_len) == 0);
            check_reencoded(b, PROTO_OP_STATS, body, len);
        }
        break;
    }
    case BODY_NS_CONFIG: {
        proto_ns_config cfg;
        check_code(rc = proto_ns_config_read(body, len, &cfg));
        if (rc == 0) {
            check_config(&cfg);
            uint8_t *out = malloc(PROTO_NS_CONFIG_SIZE + 1 + 255);
            CHECK(out != NULL);
            size_t n = proto_ns_config_write(out, &cfg);
            CHECK(n == len && memcmp(out, body, len) == 0);
            free(out);
        }
        break;
    }
    case BODY_VECTOR:
        if (len >= 2) {
            uint16_t dim = (uint16_t)(body[0] | body[1] << 8);
            /* Only as many floats as the body holds: the server has
             * checked dim against the body before it reads a vector. */
            if ((size_t)dim * 4 <= len - 2) {
                uint8_t *src = malloc((size_t)dim * 4 + 1);
                CHECK(src != NULL);
                memcpy(src, body + 2, (size_t)dim * 4);
                read_vector(src, dim);
                free(src);
            }
        }
        break;
    case BODY_LOOKUP_EX: {
        proto_lookup_req r;
        check_code(rc = proto_decode_lookup_ex_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(r.dim >= 1 && r.dim <= PROTO_MAX_DIM);
            CHECK(r.k >= 1 && r.k <= PROTO_MAX_K);
            CHECK(isfinite(r.threshold) && r.threshold >= -1.0f && r.threshold <= 1.0f);
            CHECK((r.options & ~PROTO_LOOKUP_OPTIONS) == 0);
            CHECK((r.options & PROTO_LOOKUP_LEASE) ||
                  (r.wait_ms == 0 && r.lease_ms == 0));
            CHECK(r.vector >= body && r.vector + (size_t)r.dim * 4 <= body + len);
            read_vector(r.vector, r.dim);
            CHECK(proto_encode_lookup_ex_req(b, 1, 0, &r) == 0);
            check_reencoded(b, PROTO_OP_LOOKUP_EX, body, len);
        }
        break;
    }
    case BODY_STORE_EX: {
        proto_store_req r;
        check_code(rc = proto_decode_store_ex_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(r.dim >= 1 && r.dim <= PROTO_MAX_DIM);
            CHECK(r.completion <= PROTO_COMPLETION_FILTERED);
            CHECK(r.response_len == 0 || r.response + r.response_len + 8 <= body + len);
            read_vector(r.vector, r.dim);
            CHECK(proto_encode_store_ex_req(b, 1, &r) == 0);
            check_reencoded(b, PROTO_OP_STORE_EX, body, len);
        }
        break;
    }
    case BODY_LEASE_RELEASE: {
        proto_ns_id_req r;
        check_code(rc = proto_decode_lease_release_req(body, len, &r));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(proto_encode_lease_release_req(b, 1, &r) == 0);
            check_reencoded(b, PROTO_OP_LEASE_RELEASE, body, len);
        }
        break;
    }
    case BODY_NS_POLICY: {
        proto_ns_req r;
        proto_ns_policy p;
        check_code(rc = proto_decode_ns_policy_req(body, len, &r, &p));
        if (rc == 0) {
            CHECK(proto_check_ns(r.ns, r.ns_len) == 0);
            CHECK(p.set <= 1 && p.mode <= PROTO_MODE_SHADOW);
            CHECK(p.gray_band == 0.0f || (p.gray_band > 0.0f && p.gray_band <= 1.0f));
            CHECK(proto_encode_ns_policy_req(b, 1, r.ns, r.ns_len, &p) == 0);
            check_reencoded(b, PROTO_OP_NS_POLICY, body, len);
        }
        break;
    }
    case BODY_KINDS: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    enum body_kind kind = (enum body_kind)(data[0] % BODY_KINDS);
    size_t len = size - 1;
    uint8_t *body = malloc(len ? len : 1);
    CHECK(body != NULL);
    if (len) memcpy(body, data + 1, len);
    proto_buf b;
    proto_buf_init(&b);
    fuzz_body(kind, body, len, &b);
    proto_buf_free(&b);
    free(body);
    return 0;
}
