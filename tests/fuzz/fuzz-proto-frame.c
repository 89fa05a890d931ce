/* fuzz-proto-frame.c: libFuzzer target for everything in proto/ that reads
 * bytes from a peer.
 *
 * Input layout: two control bytes (little-endian u16 choosing where the
 * stream is split), then the byte stream itself. The stream is consumed
 * frame by frame, as a server or client read loop does, twice: once in a
 * single delivery and once in two deliveries cut at the chosen point. Both
 * must see the same frames and end the same way, or the incremental parser
 * depends on how bytes arrive. Each complete frame goes to the decoders of
 * its opcode (request and reply forms); a body that decodes is encoded
 * again and must come out byte for byte identical. Any disagreement aborts,
 * so the fuzzer reports it like a crash. */
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

/* Compares a re-encoded frame's body with the body that was decoded. */
static void check_reencoded(proto_buf *b, const uint8_t *body, size_t len) {
    proto_header h;
    int rc = proto_parse_frame(b->data, b->len, UINT32_MAX, &h);
    CHECK(rc > 0 && (size_t)rc == b->len);
    CHECK(h.body_len == len);
    CHECK(len == 0 || memcmp(b->data + PROTO_HEADER_SIZE, body, len) == 0);
    proto_buf_reset(b);
}

/* Reads a decoded vector the way the server does: into a buffer of exactly
 * dim floats (malloc's alignment suits float; the exact size lets the
 * address sanitizer catch a write past the end). A vector that is accepted
 * must come out finite and not all zero (so that it normalises). */
static void check_vector(const uint8_t *src, uint16_t dim) {
    float *v = malloc((size_t)dim * sizeof(float));
    CHECK(v != NULL);
    if (proto_vector_read(v, src, dim) == 0) {
        double norm = 0.0;
        for (uint16_t i = 0; i < dim; i++) {
            CHECK(isfinite(v[i]));
            norm += (double)v[i] * (double)v[i];
        }
        CHECK(norm > 0.0 && isfinite(norm));
    }
    free(v);
}

static void fuzz_hello(const uint8_t *body, size_t len, proto_buf *b) {
    proto_hello_req req;
    if (proto_decode_hello_req(body, len, &req) == 0) {
        CHECK(proto_encode_hello_req(b, 1, &req) == 0);
        check_reencoded(b, body, len);
    }
    proto_hello_resp resp;
    if (proto_decode_hello_resp(body, len, &resp) == 0) {
        CHECK(proto_encode_hello_resp(b, 1, &resp) == 0);
        check_reencoded(b, body, len);
    }
}

static void fuzz_auth(const uint8_t *body, size_t len, proto_buf *b) {
    proto_auth_req req;
    if (proto_decode_auth_req(body, len, &req) == 0) {
        CHECK(proto_encode_auth_req(b, 1, &req) == 0);
        check_reencoded(b, body, len);
    }
    (void)proto_decode_empty_resp(body, len);
}

static void fuzz_ping(const uint8_t *body, size_t len, proto_buf *b) {
    if (proto_decode_ping(body, len) == 0) {
        CHECK(proto_encode_ping(b, 1, PROTO_FLAG_REPLY, body, len) == 0);
        check_reencoded(b, body, len);
    }
}

static void fuzz_store(const uint8_t *body, size_t len, proto_buf *b) {
    proto_store_req req;
    if (proto_decode_store_req(body, len, &req) == 0) {
        CHECK(req.dim >= 1 && req.dim <= PROTO_MAX_DIM);
        CHECK(req.completion <= PROTO_COMPLETION_FILTERED);
        CHECK(proto_check_ns(req.ns, req.ns_len) == 0);
        check_vector(req.vector, req.dim);
        CHECK(proto_encode_store_req(b, 1, &req) == 0);
        check_reencoded(b, body, len);
    }
    uint64_t id;
    if (proto_decode_store_resp(body, len, &id) == 0) {
        CHECK(proto_encode_store_resp(b, 1, id) == 0);
        check_reencoded(b, body, len);
    }
}

static void fuzz_lookup(const uint8_t *body, size_t len, uint16_t flags, proto_buf *b) {
    proto_lookup_req req;
    if (proto_decode_lookup_req(body, len, &req) == 0) {
        CHECK(req.k >= 1 && req.k <= PROTO_MAX_K);
        CHECK(req.threshold >= -1.0f && req.threshold <= 1.0f);
        check_vector(req.vector, req.dim);
        CHECK(proto_encode_lookup_req(b, 1, flags, &req) == 0);
        check_reencoded(b, body, len);
    }
    /* Room for exactly as many hits as the flags' low byte says, so a
     * decoder that writes past max_hits hits a heap redzone. */
    uint16_t max_hits = (uint16_t)(flags & 0xFFu);
    proto_hit *hits = malloc(((size_t)max_hits + 1) * sizeof *hits);
    CHECK(hits != NULL);
    uint16_t count;
    if (proto_decode_lookup_resp(body, len, max_hits ? hits : NULL, max_hits, &count) ==
        0) {
        CHECK(count <= max_hits);
        CHECK(proto_encode_lookup_resp(b, 1, hits, count) == 0);
        check_reencoded(b, body, len);
    }
    free(hits);
}

static void fuzz_ns_id(const uint8_t *body, size_t len, uint8_t opcode, proto_buf *b) {
    proto_ns_id_req req;
    if (opcode == PROTO_OP_DELETE && proto_decode_delete_req(body, len, &req) == 0) {
        CHECK(proto_encode_delete_req(b, 1, &req) == 0);
        check_reencoded(b, body, len);
    }
    if (opcode == PROTO_OP_FLUSH && proto_decode_flush_req(body, len, &req) == 0) {
        CHECK(proto_encode_flush_req(b, 1, req.ns, req.ns_len) == 0);
        check_reencoded(b, body, len);
    }
    uint64_t v;
    if (proto_decode_u64_resp(body, len, &v) == 0) {
        CHECK(proto_encode_u64_resp(b, opcode, 1, v) == 0);
        check_reencoded(b, body, len);
    }
    (void)proto_decode_empty_resp(body, len);
}

static void fuzz_stats(const uint8_t *body, size_t len, proto_buf *b) {
    const uint8_t *ns;
    uint8_t ns_len;
    if (proto_decode_stats_req(body, len, &ns, &ns_len) == 0) {
        CHECK(proto_encode_stats_req(b, 1, ns, ns_len) == 0);
        check_reencoded(b, body, len);
    }
    /* Collect the entries to re-encode them; a valid reply holds exactly
     * as many as its leading count says, so that bounds the array. */
    size_t max = len >= 2 ? ((size_t)body[0] | ((size_t)body[1] << 8)) : 0;
    proto_stat *stats = malloc((max + 1) * sizeof *stats);
    CHECK(stats != NULL);
    size_t pos = 0, n = 0;
    proto_stat s;
    int rc;
    while ((rc = proto_stats_next(body, len, &pos, &s)) == 1) {
        CHECK(n < max);
        CHECK(pos <= len);
        stats[n++] = s;
    }
    if (rc == 0) {
        CHECK(proto_encode_stats_resp(b, 1, stats, (uint16_t)n) == 0);
        check_reencoded(b, body, len);
    } else {
        CHECK(rc == DEJA_ERR_BAD_REQUEST);
    }
    free(stats);
}

static void fuzz_ns(const uint8_t *body, size_t len, uint8_t opcode, proto_buf *b) {
    const uint8_t *ns, *name;
    uint8_t ns_len, name_len;
    proto_ns_config cfg;
    if (opcode == PROTO_OP_NS_CREATE &&
        proto_decode_ns_create_req(body, len, &ns, &ns_len, &cfg) == 0) {
        CHECK(cfg.dim >= 1 && cfg.dim <= PROTO_MAX_DIM);
        CHECK(cfg.dedup >= 0.0f && cfg.dedup <= 1.0f);
        CHECK(proto_encode_ns_create_req(b, 1, ns, ns_len, &cfg) == 0);
        check_reencoded(b, body, len);
    }
    if (opcode == PROTO_OP_NS_LIST) {
        size_t pos = 0;
        int rc;
        while ((rc = proto_ns_list_next(body, len, &pos, &name, &name_len)) == 1)
            CHECK(pos <= len && name_len >= 1);
        CHECK(rc == 0 || rc == DEJA_ERR_BAD_REQUEST);
    }
    size_t off;
    if (opcode == PROTO_OP_NS_INFO &&
        proto_decode_ns_info_resp(body, len, &cfg, &off) == 0) {
        CHECK(off <= len);
        size_t pos = 0;
        proto_stat st;
        while (proto_stats_next(body + off, len - off, &pos, &st) == 1)
            CHECK(pos <= len - off);
    }
    proto_ns_req req;
    if (opcode == PROTO_OP_NS_INFO && proto_decode_ns_info_req(body, len, &req) == 0) {
        CHECK(proto_encode_ns_info_req(b, 1, req.ns, req.ns_len) == 0);
        check_reencoded(b, body, len);
    }
    if (opcode == PROTO_OP_NS_DROP && proto_decode_ns_drop_req(body, len, &req) == 0) {
        CHECK(proto_encode_ns_drop_req(b, 1, req.ns, req.ns_len) == 0);
        check_reencoded(b, body, len);
    }
    /* The small replies: NS_DROP's count, NS_CREATE's empty body. */
    fuzz_ns_id(body, len, opcode, b);
}

/* Protocol version 2: LOOKUP_EX, STORE_EX, LEASE_RELEASE, NS_POLICY, as
 * requests and as replies. */
static void fuzz_v2(const uint8_t *body, size_t len, uint8_t opcode, uint16_t flags,
                    proto_buf *b) {
    if (opcode == PROTO_OP_LOOKUP_EX) {
        proto_lookup_req r;
        if (proto_decode_lookup_ex_req(body, len, &r) == 0) {
            CHECK(r.k >= 1 && r.k <= PROTO_MAX_K);
            CHECK((r.options & PROTO_LOOKUP_LEASE) ||
                  (r.wait_ms == 0 && r.lease_ms == 0));
            CHECK(proto_encode_lookup_ex_req(b, 1, flags, &r) == 0);
            check_reencoded(b, body, len);
        }
        static proto_hit hits[PROTO_MAX_K], shadow[PROTO_MAX_K];
        proto_lookup_ex_resp resp = {.hits = hits, .shadow = shadow};
        if (proto_decode_lookup_ex_resp(body, len, PROTO_MAX_K, &resp) == 0) {
            CHECK(resp.outcome <= PROTO_OUTCOME_COALESCED);
            CHECK(resp.outcome != PROTO_OUTCOME_LEASE || resp.lease_id != 0);
            CHECK(resp.count <= PROTO_MAX_K && resp.shadow_count <= PROTO_MAX_K);
            for (uint16_t i = 0; i < resp.count; i++)
                CHECK(hits[i].similarity == hits[i].similarity);
        }
    }
    if (opcode == PROTO_OP_STORE_EX) {
        proto_store_req r;
        if (proto_decode_store_ex_req(body, len, &r) == 0) {
            CHECK(proto_encode_store_ex_req(b, 1, &r) == 0);
            check_reencoded(b, body, len);
        }
    }
    proto_ns_id_req rel;
    if (opcode == PROTO_OP_LEASE_RELEASE &&
        proto_decode_lease_release_req(body, len, &rel) == 0) {
        CHECK(proto_encode_lease_release_req(b, 1, &rel) == 0);
        check_reencoded(b, body, len);
    }
    if (opcode == PROTO_OP_NS_POLICY) {
        proto_ns_req req;
        proto_ns_policy p;
        if (proto_decode_ns_policy_req(body, len, &req, &p) == 0) {
            CHECK(proto_encode_ns_policy_req(b, 1, req.ns, req.ns_len, &p) == 0);
            check_reencoded(b, body, len);
        }
        if (proto_decode_ns_policy_resp(body, len, &p) == 0)
            CHECK(p.mode <= PROTO_MODE_SHADOW && p.gray_band >= 0 && p.gray_band <= 1);
    }
    /* The small replies: STORE_EX's id, LEASE_RELEASE's empty body. */
    fuzz_ns_id(body, len, opcode, b);
}

/* Runs the decoders that match one complete frame. The body is copied to a
 * heap block of exactly its size so over-reads are caught even when more
 * stream bytes follow it in the receive buffer. */
static void fuzz_frame(const proto_header *h, const uint8_t *frame) {
    size_t len = h->body_len;
    uint8_t *body = malloc(len ? len : 1);
    CHECK(body != NULL);
    if (len) memcpy(body, frame + PROTO_HEADER_SIZE, len);
    proto_buf b;
    proto_buf_init(&b);

    if (h->status != 0) {
        const uint8_t *msg;
        uint16_t msg_len;
        if (proto_decode_error(body, len, &msg, &msg_len) == 0)
            CHECK(msg_len <= PROTO_MAX_MESSAGE && (msg_len == 0 || msg != NULL));
        CHECK(deja_strerror(proto_status_error(h->status)) != NULL);
    }
    switch (h->opcode) {
    case PROTO_OP_HELLO: fuzz_hello(body, len, &b); break;
    case PROTO_OP_AUTH: fuzz_auth(body, len, &b); break;
    case PROTO_OP_PING: fuzz_ping(body, len, &b); break;
    case PROTO_OP_STORE: fuzz_store(body, len, &b); break;
    case PROTO_OP_LOOKUP: fuzz_lookup(body, len, h->flags, &b); break;
    case PROTO_OP_DELETE:
    case PROTO_OP_FLUSH: fuzz_ns_id(body, len, h->opcode, &b); break;
    case PROTO_OP_STATS: fuzz_stats(body, len, &b); break;
    case PROTO_OP_NS_CREATE:
    case PROTO_OP_NS_LIST:
    case PROTO_OP_NS_INFO:
    case PROTO_OP_NS_DROP: fuzz_ns(body, len, h->opcode, &b); break;
    case PROTO_OP_LOOKUP_EX:
    case PROTO_OP_STORE_EX:
    case PROTO_OP_LEASE_RELEASE:
    case PROTO_OP_NS_POLICY: fuzz_v2(body, len, h->opcode, h->flags, &b); break;
    default: CHECK(proto_op_name(h->opcode) == NULL); break;
    }
    proto_buf_free(&b);
    free(body);
}

/* What a read loop saw: how many frames, their total size, and how it
 * stopped (0 = waiting for more bytes, or the parser's error). */
typedef struct outcome {
    size_t frames;
    size_t consumed;
    int end;
} outcome;

/* Appends `n` bytes to the receive buffer `rx` (reallocated to its exact
 * size so the parser is never handed slack it could wrongly read), then
 * consumes every complete frame. Returns 0 to keep reading, or the parse
 * error that would close the connection. */
static int deliver(uint8_t **rx, size_t *have, const uint8_t *bytes, size_t n,
                   outcome *out, int decode) {
    uint8_t *grown = malloc(*have + n > 0 ? *have + n : 1);
    CHECK(grown != NULL);
    if (*have) memcpy(grown, *rx, *have);
    if (n) memcpy(grown + *have, bytes, n);
    free(*rx);
    *rx = grown;
    *have += n;

    size_t off = 0;
    int rc;
    for (;;) {
        proto_header h;
        rc = proto_parse_frame(*rx + off, *have - off, PROTO_DEFAULT_MAX_FRAME, &h);
        if (rc <= 0) break;
        CHECK((size_t)rc == PROTO_HEADER_SIZE + (size_t)h.body_len);
        CHECK((size_t)rc <= *have - off);
        if (decode) fuzz_frame(&h, *rx + off);
        off += (size_t)rc;
        out->frames++;
        out->consumed += (size_t)rc;
    }
    memmove(*rx, *rx + off, *have - off);
    *have -= off;
    return rc;
}

static outcome read_stream(const uint8_t *stream, size_t len, size_t split, int decode) {
    outcome out = {0, 0, 0};
    uint8_t *rx = NULL;
    size_t have = 0;
    out.end = deliver(&rx, &have, stream, split, &out, decode);
    if (out.end == 0)
        out.end = deliver(&rx, &have, stream + split, len - split, &out, decode);
    free(rx);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t split_hint = (size_t)data[0] | ((size_t)data[1] << 8);
    const uint8_t *stream = data + 2;
    size_t len = size - 2;
    size_t split = split_hint % (len + 1);

    outcome whole = read_stream(stream, len, len, 1);
    outcome parts = read_stream(stream, len, split, 0);
    CHECK(whole.frames == parts.frames);
    CHECK(whole.consumed == parts.consumed);
    CHECK(whole.end == parts.end);
    return 0;
}
