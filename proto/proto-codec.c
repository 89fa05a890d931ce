/* proto-codec.c: encoders and decoders for every frame body of protocol v1,
 * and the vector reader that validates and normalises embeddings.
 *
 * Decoders are the first code to touch bytes from the network, so they are
 * written around one rule: a length is compared with what is left of the
 * body before it is used, and remaining lengths shrink by subtraction, so
 * no sum of attacker-chosen lengths can wrap around. Encoders compute the
 * body size first, reserve once, then write; the frame is committed by the
 * final `b->len +=`, which is what leaves `b` unchanged on failure. */
#include "proto.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "proto-private.h"

/* ---- HELLO / AUTH / PING ------------------------------------------------- */

int proto_encode_hello_req(proto_buf *b, uint32_t id, const proto_hello_req *r) {
    if (!span_ok(r->client_name, r->client_name_len)) return DEJA_ERR_INVALID_ARG;
    size_t body_len = 2 + 2 + 2 + (size_t)r->client_name_len;
    uint8_t *p;
    int rc = frame_begin(b, PROTO_OP_HELLO, 0, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u16(p, r->min_version);
    p = put_u16(p, r->max_version);
    p = put_u16(p, r->client_name_len);
    put_bytes(p, r->client_name, r->client_name_len);
    frame_commit(b, body_len);
    return 0;
}

int proto_decode_hello_req(const uint8_t *body, size_t len, proto_hello_req *r) {
    reader rd;
    reader_init(&rd, body, len);
    /* min > max is not malformed: it is an empty range, which version
     * negotiation answers with DEJA_ERR_VERSION. */
    if (!read_u16(&rd, &r->min_version) || !read_u16(&rd, &r->max_version) ||
        !read_str16(&rd, &r->client_name, &r->client_name_len) || !read_done(&rd))
        return DEJA_ERR_BAD_REQUEST;
    return 0;
}

int proto_encode_hello_resp(proto_buf *b, uint32_t id, const proto_hello_resp *r) {
    if (!span_ok(r->server_name, r->server_name_len)) return DEJA_ERR_INVALID_ARG;
    size_t body_len = 2 + 2 + 4 + 4 + 2 + (size_t)r->server_name_len;
    uint8_t *p;
    int rc = frame_begin(b, PROTO_OP_HELLO, PROTO_FLAG_REPLY, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u16(p, r->version);
    p = put_u16(p, r->max_dim);
    p = put_u32(p, r->max_frame);
    p = put_u32(p, r->server_flags);
    p = put_u16(p, r->server_name_len);
    put_bytes(p, r->server_name, r->server_name_len);
    frame_commit(b, body_len);
    return 0;
}

int proto_decode_hello_resp(const uint8_t *body, size_t len, proto_hello_resp *r) {
    reader rd;
    reader_init(&rd, body, len);
    if (!read_u16(&rd, &r->version) || !read_u16(&rd, &r->max_dim) ||
        !read_u32(&rd, &r->max_frame) || !read_u32(&rd, &r->server_flags) ||
        !read_str16(&rd, &r->server_name, &r->server_name_len) || !read_done(&rd))
        return DEJA_ERR_BAD_REQUEST;
    /* A client sizes its requests from these, so values no server may
     * announce are refused here rather than trusted later. */
    if (r->version == 0 || r->max_dim == 0 || r->max_dim > PROTO_MAX_DIM ||
        r->max_frame < PROTO_MIN_MAX_FRAME)
        return DEJA_ERR_BAD_REQUEST;
    return 0;
}

int proto_encode_auth_req(proto_buf *b, uint32_t id, const proto_auth_req *r) {
    if (!span_ok(r->token, r->token_len)) return DEJA_ERR_INVALID_ARG;
    size_t body_len = 2 + (size_t)r->token_len;
    uint8_t *p;
    int rc = frame_begin(b, PROTO_OP_AUTH, 0, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u16(p, r->token_len);
    put_bytes(p, r->token, r->token_len);
    frame_commit(b, body_len);
    return 0;
}

int proto_decode_auth_req(const uint8_t *body, size_t len, proto_auth_req *r) {
    reader rd;
    reader_init(&rd, body, len);
    if (!read_str16(&rd, &r->token, &r->token_len) || !read_done(&rd))
        return DEJA_ERR_BAD_REQUEST;
    return 0;
}

int proto_encode_ping(proto_buf *b, uint32_t id, uint16_t flags, const uint8_t *payload,
                      size_t len) {
    if (len > PROTO_MAX_PING || !span_ok(payload, len)) return DEJA_ERR_INVALID_ARG;
    uint8_t *p;
    int rc = frame_begin(b, PROTO_OP_PING, flags, 0, id, len, &p);
    if (rc != 0) return rc;
    put_bytes(p, payload, len);
    frame_commit(b, len);
    return 0;
}

int proto_decode_ping(const uint8_t *body, size_t len) {
    /* BAD_REQUEST, not TOO_LARGE: TOO_LARGE is the frame-level error that
     * closes the connection, and an oversized PING body is only a bad
     * request. */
    (void)body;
    return len > PROTO_MAX_PING ? DEJA_ERR_BAD_REQUEST : 0;
}

/* ---- STORE ---------------------------------------------------------------- */

/* ns, dim, completion, reserved, ttl, input, output, cost, prompt_len,
 * response_len */
#define STORE_FIXED (1 + 2 + 1 + 1 + 4 + 4 + 4 + 8 + 4 + 4)

/* STORE and STORE_EX share the layout; STORE_EX adds u64 lease_id. */
static int encode_store(proto_buf *b, uint8_t opcode, uint32_t id,
                        const proto_store_req *r) {
    size_t vec_len = (size_t)r->dim * 4;
    if (!span_ok(r->ns, r->ns_len) || !span_ok(r->vector, vec_len) ||
        !span_ok(r->prompt, r->prompt_len) || !span_ok(r->response, r->response_len))
        return DEJA_ERR_INVALID_ARG;
    size_t body_len = STORE_FIXED + (opcode == PROTO_OP_STORE_EX ? 8u : 0u);
    if (!size_add(&body_len, r->ns_len) || !size_add(&body_len, vec_len) ||
        !size_add(&body_len, r->prompt_len) || !size_add(&body_len, r->response_len))
        return DEJA_ERR_INVALID_ARG;
    uint8_t *p;
    int rc = frame_begin(b, opcode, 0, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u8(p, r->ns_len);
    p = put_bytes(p, r->ns, r->ns_len);
    p = put_u16(p, r->dim);
    p = put_u8(p, r->completion);
    p = put_u8(p, 0);
    p = put_u32(p, r->ttl_s);
    p = put_u32(p, r->input_tokens);
    p = put_u32(p, r->output_tokens);
    p = put_u64(p, r->cost_micro_usd);
    p = put_u32(p, r->prompt_len);
    p = put_u32(p, r->response_len);
    p = put_bytes(p, r->vector, vec_len);
    p = put_bytes(p, r->prompt, r->prompt_len);
    p = put_bytes(p, r->response, r->response_len);
    if (opcode == PROTO_OP_STORE_EX) put_u64(p, r->lease_id);
    frame_commit(b, body_len);
    return 0;
}

static int decode_store(const uint8_t *body, size_t len, int with_lease,
                        proto_store_req *r) {
    reader rd;
    reader_init(&rd, body, len);
    r->lease_id = 0;
    int rc = read_ns(&rd, &r->ns, &r->ns_len);
    if (rc != 0) return rc;
    rc = read_dim(&rd, &r->dim);
    if (rc != 0) return rc;
    uint8_t reserved;
    if (!read_u8(&rd, &r->completion) || !read_u8(&rd, &reserved))
        return DEJA_ERR_BAD_REQUEST;
    if (r->completion > PROTO_COMPLETION_FILTERED || reserved != 0)
        return DEJA_ERR_BAD_REQUEST;
    if (!read_u32(&rd, &r->ttl_s) || !read_u32(&rd, &r->input_tokens) ||
        !read_u32(&rd, &r->output_tokens) || !read_u64(&rd, &r->cost_micro_usd) ||
        !read_u32(&rd, &r->prompt_len) || !read_u32(&rd, &r->response_len) ||
        !read_bytes(&rd, (size_t)r->dim * 4, &r->vector) ||
        !read_bytes(&rd, r->prompt_len, &r->prompt) ||
        !read_bytes(&rd, r->response_len, &r->response))
        return DEJA_ERR_BAD_REQUEST;
    if (with_lease && !read_u64(&rd, &r->lease_id)) return DEJA_ERR_BAD_REQUEST;
    return read_done(&rd) ? 0 : DEJA_ERR_BAD_REQUEST;
}

int proto_encode_store_req(proto_buf *b, uint32_t id, const proto_store_req *r) {
    return encode_store(b, PROTO_OP_STORE, id, r);
}

int proto_decode_store_req(const uint8_t *body, size_t len, proto_store_req *r) {
    return decode_store(body, len, 0, r);
}

int proto_encode_store_ex_req(proto_buf *b, uint32_t id, const proto_store_req *r) {
    return encode_store(b, PROTO_OP_STORE_EX, id, r);
}

int proto_decode_store_ex_req(const uint8_t *body, size_t len, proto_store_req *r) {
    return decode_store(body, len, 1, r);
}

int proto_encode_store_resp(proto_buf *b, uint32_t id, uint64_t entry_id) {
    return proto_encode_u64_resp(b, PROTO_OP_STORE, id, entry_id);
}

int proto_decode_store_resp(const uint8_t *body, size_t len, uint64_t *entry_id) {
    return proto_decode_u64_resp(body, len, entry_id);
}

/* ---- LOOKUP --------------------------------------------------------------- */

/* ns_len, dim, k, threshold, ef, reserved, prompt_len */
#define LOOKUP_FIXED (1 + 2 + 2 + 4 + 2 + 2 + 4)
/* id, similarity, prompt_len, response_len */
#define HIT_FIXED (8 + 4 + 4 + 4)

/* LOOKUP and LOOKUP_EX share the layout up to ef; LOOKUP_EX puts options,
 * wait_ms and lease_ms where LOOKUP has a reserved u16. */
static int encode_lookup(proto_buf *b, uint8_t opcode, uint32_t id, uint16_t flags,
                         const proto_lookup_req *r) {
    int ex = opcode == PROTO_OP_LOOKUP_EX;
    size_t vec_len = (size_t)r->dim * 4;
    if (!span_ok(r->ns, r->ns_len) || !span_ok(r->vector, vec_len) ||
        !span_ok(r->prompt, r->prompt_len))
        return DEJA_ERR_INVALID_ARG;
    size_t body_len = LOOKUP_FIXED + (ex ? 8u : 0u);
    if (!size_add(&body_len, r->ns_len) || !size_add(&body_len, vec_len) ||
        !size_add(&body_len, r->prompt_len))
        return DEJA_ERR_INVALID_ARG;
    uint8_t *p;
    int rc = frame_begin(b, opcode, flags, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u8(p, r->ns_len);
    p = put_bytes(p, r->ns, r->ns_len);
    p = put_u16(p, r->dim);
    p = put_u16(p, r->k);
    p = put_f32(p, r->threshold);
    p = put_u16(p, r->ef);
    p = put_u16(p, ex ? r->options : 0);
    if (ex) {
        p = put_u32(p, r->wait_ms);
        p = put_u32(p, r->lease_ms);
    }
    p = put_u32(p, r->prompt_len);
    p = put_bytes(p, r->vector, vec_len);
    put_bytes(p, r->prompt, r->prompt_len);
    frame_commit(b, body_len);
    return 0;
}

static int decode_lookup(const uint8_t *body, size_t len, int ex, proto_lookup_req *r) {
    reader rd;
    reader_init(&rd, body, len);
    r->options = 0;
    r->wait_ms = r->lease_ms = 0;
    int rc = read_ns(&rd, &r->ns, &r->ns_len);
    if (rc != 0) return rc;
    rc = read_dim(&rd, &r->dim);
    if (rc != 0) return rc;
    uint32_t threshold_bits;
    uint16_t options;
    if (!read_u16(&rd, &r->k) || !read_f32_bits(&rd, &threshold_bits) ||
        !read_u16(&rd, &r->ef) || !read_u16(&rd, &options))
        return DEJA_ERR_BAD_REQUEST;
    if (ex && (!read_u32(&rd, &r->wait_ms) || !read_u32(&rd, &r->lease_ms)))
        return DEJA_ERR_BAD_REQUEST;
    if (r->k == 0 || r->k > PROTO_MAX_K || proto__f32_bits_nonfinite(threshold_bits))
        return DEJA_ERR_BAD_REQUEST;
    /* LOOKUP's u16 is reserved; LOOKUP_EX's options have two bits, and its
     * times mean something only with a lease. */
    if (ex ? (options & ~PROTO_LOOKUP_OPTIONS) ||
                 (!(options & PROTO_LOOKUP_LEASE) && (r->wait_ms || r->lease_ms))
           : options != 0)
        return DEJA_ERR_BAD_REQUEST;
    r->options = options;
    r->threshold = proto__bits_to_f32(threshold_bits);
    if (r->threshold < -1.0f || r->threshold > 1.0f) return DEJA_ERR_BAD_REQUEST;
    if (!read_u32(&rd, &r->prompt_len) ||
        !read_bytes(&rd, (size_t)r->dim * 4, &r->vector) ||
        !read_bytes(&rd, r->prompt_len, &r->prompt) || !read_done(&rd))
        return DEJA_ERR_BAD_REQUEST;
    return 0;
}

int proto_encode_lookup_req(proto_buf *b, uint32_t id, uint16_t flags,
                            const proto_lookup_req *r) {
    return encode_lookup(b, PROTO_OP_LOOKUP, id, flags, r);
}

int proto_decode_lookup_req(const uint8_t *body, size_t len, proto_lookup_req *r) {
    return decode_lookup(body, len, 0, r);
}

int proto_encode_lookup_ex_req(proto_buf *b, uint32_t id, uint16_t flags,
                               const proto_lookup_req *r) {
    return encode_lookup(b, PROTO_OP_LOOKUP_EX, id, flags, r);
}

int proto_decode_lookup_ex_req(const uint8_t *body, size_t len, proto_lookup_req *r) {
    return decode_lookup(body, len, 1, r);
}

int proto_encode_lookup_resp(proto_buf *b, uint32_t id, const proto_hit *hits,
                             uint16_t count) {
    return proto_encode_lookup_resp_flags(b, id, 0, hits, count);
}

int proto_encode_lookup_resp_flags(proto_buf *b, uint32_t id, uint16_t flags,
                                   const proto_hit *hits, uint16_t count) {
    if (count > PROTO_MAX_K || !span_ok(hits, count)) return DEJA_ERR_INVALID_ARG;
    if ((flags & ~(PROTO_FLAG_EXACT | PROTO_FLAG_BORDERLINE)) || (flags && count == 0))
        return DEJA_ERR_INVALID_ARG;
    size_t body_len = 2;
    for (uint16_t i = 0; i < count; i++) {
        const proto_hit *h = &hits[i];
        if (!span_ok(h->prompt, h->prompt_len) ||
            !span_ok(h->response, h->response_len) || !size_add(&body_len, HIT_FIXED) ||
            !size_add(&body_len, h->prompt_len) || !size_add(&body_len, h->response_len))
            return DEJA_ERR_INVALID_ARG;
    }
    uint8_t *p;
    int rc = frame_begin(b, PROTO_OP_LOOKUP, (uint16_t)(PROTO_FLAG_REPLY | flags), 0, id,
                         body_len, &p);
    if (rc != 0) return rc;
    p = put_u16(p, count);
    for (uint16_t i = 0; i < count; i++) {
        const proto_hit *h = &hits[i];
        p = put_u64(p, h->id);
        p = put_f32(p, h->similarity);
        p = put_u32(p, h->prompt_len);
        p = put_u32(p, h->response_len);
        p = put_bytes(p, h->prompt, h->prompt_len);
        p = put_bytes(p, h->response, h->response_len);
    }
    frame_commit(b, body_len);
    return 0;
}

int proto_decode_lookup_resp(const uint8_t *body, size_t len, proto_hit *hits,
                             uint16_t max_hits, uint16_t *count) {
    reader rd;
    reader_init(&rd, body, len);
    if (!read_u16(&rd, count)) return DEJA_ERR_BAD_REQUEST;
    if (*count > max_hits || *count > PROTO_MAX_K) return DEJA_ERR_BAD_REQUEST;
    for (uint16_t i = 0; i < *count; i++) {
        proto_hit *h = &hits[i];
        uint32_t sim_bits;
        if (!read_u64(&rd, &h->id) || !read_f32_bits(&rd, &sim_bits) ||
            !read_u32(&rd, &h->prompt_len) || !read_u32(&rd, &h->response_len) ||
            !read_bytes(&rd, h->prompt_len, &h->prompt) ||
            !read_bytes(&rd, h->response_len, &h->response))
            return DEJA_ERR_BAD_REQUEST;
        if (proto__f32_bits_nonfinite(sim_bits)) return DEJA_ERR_BAD_REQUEST;
        h->similarity = proto__bits_to_f32(sim_bits);
    }
    return read_done(&rd) ? 0 : DEJA_ERR_BAD_REQUEST;
}

/* ---- LOOKUP_EX replies ------------------------------------------------------ */

/* id, similarity, hit_flags, reserved, prompt_len, response_len */
#define HIT_EX_FIXED (8 + 4 + 1 + 1 + 4 + 4)
/* outcome, reply_flags, lease_id, count, shadow_count */
#define LOOKUP_EX_FIXED (1 + 1 + 8 + 2 + 2)

static bool hits_ex_size(const proto_hit *hits, uint16_t count, size_t *body_len) {
    if (count > PROTO_MAX_K || !span_ok(hits, count)) return false;
    for (uint16_t i = 0; i < count; i++) {
        const proto_hit *h = &hits[i];
        if (!span_ok(h->prompt, h->prompt_len) ||
            !span_ok(h->response, h->response_len) || !size_add(body_len, HIT_EX_FIXED) ||
            !size_add(body_len, h->prompt_len) || !size_add(body_len, h->response_len) ||
            (h->flags & ~(PROTO_HIT_EXACT | PROTO_HIT_BORDERLINE)))
            return false;
    }
    return true;
}

static uint8_t *put_hits_ex(uint8_t *p, const proto_hit *hits, uint16_t count) {
    p = put_u16(p, count);
    for (uint16_t i = 0; i < count; i++) {
        const proto_hit *h = &hits[i];
        p = put_u64(p, h->id);
        p = put_f32(p, h->similarity);
        p = put_u8(p, h->flags);
        p = put_u8(p, 0);
        p = put_u32(p, h->prompt_len);
        p = put_u32(p, h->response_len);
        p = put_bytes(p, h->prompt, h->prompt_len);
        p = put_bytes(p, h->response, h->response_len);
    }
    return p;
}

int proto_encode_lookup_ex_resp(proto_buf *b, uint32_t id, uint16_t header_flags,
                                const proto_lookup_ex_resp *r) {
    size_t body_len = LOOKUP_EX_FIXED;
    if (r->outcome > PROTO_OUTCOME_COALESCED || (r->reply_flags & ~PROTO_REPLY_SHADOW) ||
        (header_flags & ~PROTO_FLAG_BORDERLINE) || (header_flags && r->count == 0) ||
        (r->outcome == PROTO_OUTCOME_LEASE) != (r->lease_id != 0) ||
        !hits_ex_size(r->hits, r->count, &body_len) ||
        !hits_ex_size(r->shadow, r->shadow_count, &body_len))
        return DEJA_ERR_INVALID_ARG;
    uint8_t *p;
    int rc =
        frame_begin(b, PROTO_OP_LOOKUP_EX, (uint16_t)(PROTO_FLAG_REPLY | header_flags), 0,
                    id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u8(p, r->outcome);
    p = put_u8(p, r->reply_flags);
    p = put_u64(p, r->lease_id);
    p = put_hits_ex(p, r->hits, r->count);
    put_hits_ex(p, r->shadow, r->shadow_count);
    frame_commit(b, body_len);
    return 0;
}

static bool read_hits_ex(reader *rd, proto_hit *hits, uint16_t max_hits,
                         uint16_t *count) {
    if (!read_u16(rd, count) || *count > max_hits || *count > PROTO_MAX_K) return false;
    for (uint16_t i = 0; i < *count; i++) {
        proto_hit *h = &hits[i];
        uint32_t sim_bits;
        uint8_t reserved;
        if (!read_u64(rd, &h->id) || !read_f32_bits(rd, &sim_bits) ||
            !read_u8(rd, &h->flags) || !read_u8(rd, &reserved) ||
            !read_u32(rd, &h->prompt_len) || !read_u32(rd, &h->response_len) ||
            !read_bytes(rd, h->prompt_len, &h->prompt) ||
            !read_bytes(rd, h->response_len, &h->response))
            return false;
        if (proto__f32_bits_nonfinite(sim_bits)) return false;
        h->similarity = proto__bits_to_f32(sim_bits);
    }
    return true;
}

int proto_decode_lookup_ex_resp(const uint8_t *body, size_t len, uint16_t max_hits,
                                proto_lookup_ex_resp *r) {
    reader rd;
    reader_init(&rd, body, len);
    if (!read_u8(&rd, &r->outcome) || !read_u8(&rd, &r->reply_flags) ||
        !read_u64(&rd, &r->lease_id))
        return DEJA_ERR_BAD_REQUEST;
    if (r->outcome > PROTO_OUTCOME_COALESCED ||
        (r->outcome == PROTO_OUTCOME_LEASE && r->lease_id == 0))
        return DEJA_ERR_BAD_REQUEST;
    if (!read_hits_ex(&rd, r->hits, max_hits, &r->count) ||
        !read_hits_ex(&rd, r->shadow, max_hits, &r->shadow_count) || !read_done(&rd))
        return DEJA_ERR_BAD_REQUEST;
    return 0;
}

/* ---- DELETE / FLUSH / small replies ---------------------------------------- */

/* DELETE and LEASE_RELEASE: str8 namespace, then a u64 id. */
static int encode_ns_id(proto_buf *b, uint8_t opcode, uint32_t id,
                        const proto_ns_id_req *r) {
    if (!span_ok(r->ns, r->ns_len)) return DEJA_ERR_INVALID_ARG;
    size_t body_len = 1 + (size_t)r->ns_len + 8;
    uint8_t *p;
    int rc = frame_begin(b, opcode, 0, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u8(p, r->ns_len);
    p = put_bytes(p, r->ns, r->ns_len);
    put_u64(p, r->id);
    frame_commit(b, body_len);
    return 0;
}

int proto_encode_delete_req(proto_buf *b, uint32_t id, const proto_ns_id_req *r) {
    return encode_ns_id(b, PROTO_OP_DELETE, id, r);
}

int proto_decode_delete_req(const uint8_t *body, size_t len, proto_ns_id_req *r) {
    reader rd;
    reader_init(&rd, body, len);
    int rc = read_ns(&rd, &r->ns, &r->ns_len);
    if (rc != 0) return rc;
    if (!read_u64(&rd, &r->id) || !read_done(&rd)) return DEJA_ERR_BAD_REQUEST;
    return 0;
}

int proto_encode_lease_release_req(proto_buf *b, uint32_t id, const proto_ns_id_req *r) {
    return encode_ns_id(b, PROTO_OP_LEASE_RELEASE, id, r);
}

int proto_decode_lease_release_req(const uint8_t *body, size_t len, proto_ns_id_req *r) {
    return proto_decode_delete_req(body, len, r); /* the same layout */
}

/* FLUSH, STATS, NS_INFO and NS_DROP requests are a lone str8 namespace. */
int proto_encode_ns_only(proto_buf *b, uint8_t opcode, uint32_t id, const uint8_t *ns,
                         uint8_t ns_len) {
    if (!span_ok(ns, ns_len)) return DEJA_ERR_INVALID_ARG;
    size_t body_len = 1 + (size_t)ns_len;
    uint8_t *p;
    int rc = frame_begin(b, opcode, 0, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u8(p, ns_len);
    put_bytes(p, ns, ns_len);
    frame_commit(b, body_len);
    return 0;
}

int proto_encode_flush_req(proto_buf *b, uint32_t id, const uint8_t *ns, uint8_t ns_len) {
    return proto_encode_ns_only(b, PROTO_OP_FLUSH, id, ns, ns_len);
}

int proto_decode_flush_req(const uint8_t *body, size_t len, proto_ns_id_req *r) {
    reader rd;
    reader_init(&rd, body, len);
    int rc = read_ns(&rd, &r->ns, &r->ns_len);
    if (rc != 0) return rc;
    if (!read_done(&rd)) return DEJA_ERR_BAD_REQUEST;
    r->id = 0;
    return 0;
}

int proto_encode_u64_resp(proto_buf *b, uint8_t opcode, uint32_t id, uint64_t v) {
    uint8_t *p;
    int rc = frame_begin(b, opcode, PROTO_FLAG_REPLY, 0, id, 8, &p);
    if (rc != 0) return rc;
    put_u64(p, v);
    frame_commit(b, 8);
    return 0;
}

int proto_decode_u64_resp(const uint8_t *body, size_t len, uint64_t *v) {
    reader rd;
    reader_init(&rd, body, len);
    if (!read_u64(&rd, v) || !read_done(&rd)) return DEJA_ERR_BAD_REQUEST;
    return 0;
}

int proto_encode_empty_resp(proto_buf *b, uint8_t opcode, uint32_t id) {
    uint8_t *p;
    int rc = frame_begin(b, opcode, PROTO_FLAG_REPLY, 0, id, 0, &p);
    if (rc != 0) return rc;
    frame_commit(b, 0);
    return 0;
}

int proto_decode_empty_resp(const uint8_t *body, size_t len) {
    (void)body;
    return len == 0 ? 0 : DEJA_ERR_BAD_REQUEST;
}

/* ---- STATS ---------------------------------------------------------------- */

int proto_encode_stats_req(proto_buf *b, uint32_t id, const uint8_t *ns, uint8_t ns_len) {
    return proto_encode_ns_only(b, PROTO_OP_STATS, id, ns, ns_len);
}

int proto_decode_stats_req(const uint8_t *body, size_t len, const uint8_t **ns,
                           uint8_t *ns_len) {
    reader rd;
    reader_init(&rd, body, len);
    if (!read_str8(&rd, ns, ns_len) || !read_done(&rd)) return DEJA_ERR_BAD_REQUEST;
    /* Length 0 is the server-wide form; any other name follows the rules. */
    if (*ns_len == 0) return 0;
    return proto_check_ns(*ns, *ns_len);
}

int proto_stats_size(const proto_stat *stats, uint16_t count, size_t *size) {
    if (!span_ok(stats, count)) return DEJA_ERR_INVALID_ARG;
    size_t body_len = 2;
    for (uint16_t i = 0; i < count; i++) {
        /* Keys follow the namespace rules so every client can print them
         * and a reply the server writes is one its clients accept. */
        if (proto_check_ns((const uint8_t *)stats[i].key, stats[i].key_len) != 0 ||
            !size_add(&body_len, 1 + (size_t)stats[i].key_len + 8))
            return DEJA_ERR_INVALID_ARG;
    }
    *size = body_len;
    return 0;
}

uint8_t *proto_put_stats(uint8_t *p, const proto_stat *stats, uint16_t count) {
    p = put_u16(p, count);
    for (uint16_t i = 0; i < count; i++) {
        p = put_u8(p, stats[i].key_len);
        p = put_bytes(p, (const uint8_t *)stats[i].key, stats[i].key_len);
        p = put_u64(p, stats[i].value);
    }
    return p;
}

int proto_encode_stats_resp(proto_buf *b, uint32_t id, const proto_stat *stats,
                            uint16_t count) {
    size_t body_len;
    int rc = proto_stats_size(stats, count, &body_len);
    if (rc != 0) return rc;
    uint8_t *p;
    rc = frame_begin(b, PROTO_OP_STATS, PROTO_FLAG_REPLY, 0, id, body_len, &p);
    if (rc != 0) return rc;
    proto_put_stats(p, stats, count);
    frame_commit(b, body_len);
    return 0;
}

/* One entry: str8 key (namespace rules), u64 value. */
static bool read_stat(reader *rd, proto_stat *s) {
    const uint8_t *key;
    if (!read_str8(rd, &key, &s->key_len) || !read_u64(rd, &s->value)) return false;
    if (proto_check_ns(key, s->key_len) != 0) return false;
    s->key = (const char *)key;
    return true;
}

int proto_stats_next(const uint8_t *body, size_t len, size_t *pos, proto_stat *s) {
    if (body == NULL) len = 0;
    if (*pos == 0) {
        /* Validate everything up front so a caller that copies entries as
         * it goes never has to undo half a reply. */
        reader rd;
        reader_init(&rd, body, len);
        uint16_t count;
        if (!read_u16(&rd, &count)) return DEJA_ERR_BAD_REQUEST;
        for (uint16_t i = 0; i < count; i++) {
            proto_stat tmp;
            if (!read_stat(&rd, &tmp)) return DEJA_ERR_BAD_REQUEST;
        }
        if (!read_done(&rd)) return DEJA_ERR_BAD_REQUEST;
        *pos = 2;
    }
    /* Later calls trust nothing either: *pos comes from the caller. */
    if (*pos > len) return DEJA_ERR_BAD_REQUEST;
    if (*pos == len) return 0;
    reader rd;
    reader_init(&rd, body + *pos, len - *pos);
    if (!read_stat(&rd, s)) return DEJA_ERR_BAD_REQUEST;
    *pos = len - rd.left;
    return 1;
}

/* ---- errors --------------------------------------------------------------- */

int proto_encode_error(proto_buf *b, uint8_t opcode, uint32_t id, int err,
                       const char *message) {
    if (err < DEJA_ERR_WIRE_MIN || err >= 0) return DEJA_ERR_INVALID_ARG;
    if (message == NULL) message = "";
    size_t n = 0;
    while (n <= PROTO_MAX_MESSAGE && message[n] != '\0')
        n++;
    if (n > PROTO_MAX_MESSAGE) {
        /* Cut on a UTF-8 character boundary: back off over continuation
         * bytes (10xxxxxx) so the message stays valid UTF-8. */
        n = PROTO_MAX_MESSAGE;
        while (n > 0 && ((uint8_t)message[n] & 0xC0u) == 0x80u)
            n--;
    }
    size_t body_len = 2 + n;
    uint8_t *p;
    int rc = frame_begin(b, opcode, PROTO_FLAG_REPLY, (uint16_t)-err, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u16(p, (uint16_t)n);
    put_bytes(p, (const uint8_t *)message, n);
    frame_commit(b, body_len);
    return 0;
}

int proto_decode_error(const uint8_t *body, size_t len, const uint8_t **msg,
                       uint16_t *msg_len) {
    reader rd;
    reader_init(&rd, body, len);
    if (!read_str16(&rd, msg, msg_len) || !read_done(&rd) || *msg_len > PROTO_MAX_MESSAGE)
        return DEJA_ERR_BAD_REQUEST;
    return 0;
}

int proto_status_error(uint16_t status) {
    if (status == 0) return 0;
    if (status <= (uint16_t)-DEJA_ERR_WIRE_MIN) return -(int)status;
    return DEJA_ERR_PROTOCOL;
}

/* ---- vectors -------------------------------------------------------------- */

int proto_vector_read(float *dst, const uint8_t *src, uint16_t dim) {
    if (dim == 0 || dim > PROTO_MAX_DIM) return DEJA_ERR_BAD_VECTOR;
    /* Validation only: normalising is the index's (idx_normalize), done
     * once where the server takes the vector in. A vector with a finite,
     * non-zero component has a non-zero norm in double arithmetic, so
     * what passes here always normalises. */
    int nonzero = 0;
    for (uint16_t i = 0; i < dim; i++) {
        uint32_t bits = proto__load_u32(src + (size_t)i * 4);
        if (proto__f32_bits_nonfinite(bits)) return DEJA_ERR_BAD_VECTOR;
        nonzero |= (bits & 0x7fffffffu) != 0;
        dst[i] = proto__bits_to_f32(bits);
    }
    return nonzero ? 0 : DEJA_ERR_BAD_VECTOR;
}

void proto_vector_write(uint8_t *dst, const float *src, uint16_t dim) {
    for (uint16_t i = 0; i < dim; i++)
        put_f32(dst + (size_t)i * 4, src[i]);
}
