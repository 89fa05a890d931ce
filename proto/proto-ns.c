/* proto-ns.c: body codecs of the namespace ops (NS_CREATE, NS_LIST,
 * NS_INFO, NS_DROP, NS_POLICY) and of the namespace configuration block
 * they share. Layouts are in proto.h and docs/PROTOCOL.md sections 5.9 and
 * 5.14. */
#include <math.h>

#include "proto-private.h"

static size_t config_size(const proto_ns_config *c) {
    return PROTO_NS_CONFIG_SIZE + 1 + (size_t)c->faiss_factory_len;
}

static uint8_t *put_config(uint8_t *p, const proto_ns_config *c) {
    p = put_u16(p, c->dim);
    p = put_u8(p, c->index_kind);
    p = put_u8(p, c->quant);
    p = put_u16(p, c->hnsw_m);
    p = put_u16(p, c->hnsw_ef_construction);
    p = put_u16(p, c->hnsw_ef_search);
    p = put_u8(p, c->ttl_mode);
    p = put_u8(p, c->flags);
    p = put_f32(p, c->min_threshold);
    p = put_f32(p, c->dedup);
    p = put_u32(p, c->default_ttl_s);
    p = put_u32(p, c->max_age_s);
    p = put_u64(p, c->max_bytes);
    p = put_u64(p, c->max_entries);
    p = put_u8(p, c->faiss_factory_len);
    return put_bytes(p, c->faiss_factory, c->faiss_factory_len);
}

/* dim is read and checked before the rest, so a dim of 0 is BAD_VECTOR
 * however short the block behind it is. */
static int read_config(reader *rd, proto_ns_config *c) {
    uint32_t thr_bits, dedup_bits;
    int rc = read_dim(rd, &c->dim);
    if (rc != 0) return rc;
    if (!read_u8(rd, &c->index_kind) || !read_u8(rd, &c->quant) ||
        !read_u16(rd, &c->hnsw_m) || !read_u16(rd, &c->hnsw_ef_construction) ||
        !read_u16(rd, &c->hnsw_ef_search) || !read_u8(rd, &c->ttl_mode) ||
        !read_u8(rd, &c->flags) || !read_f32_bits(rd, &thr_bits) ||
        !read_f32_bits(rd, &dedup_bits) || !read_u32(rd, &c->default_ttl_s) ||
        !read_u32(rd, &c->max_age_s) || !read_u64(rd, &c->max_bytes) ||
        !read_u64(rd, &c->max_entries) ||
        !read_str8(rd, &c->faiss_factory, &c->faiss_factory_len))
        return DEJA_ERR_BAD_REQUEST;
    if (proto__f32_bits_nonfinite(thr_bits) || proto__f32_bits_nonfinite(dedup_bits))
        return DEJA_ERR_BAD_REQUEST;
    c->min_threshold = proto__bits_to_f32(thr_bits);
    c->dedup = proto__bits_to_f32(dedup_bits);
    if (c->index_kind > PROTO_INDEX_FAISS || c->quant > 1 ||
        c->ttl_mode > PROTO_TTL_SLIDING || (c->flags & ~PROTO_NS_FLAGS_DEFINED) ||
        c->min_threshold < -1.0f || c->min_threshold > 1.0f || c->dedup < 0.0f ||
        c->dedup > 1.0f ||
        (c->faiss_factory_len > 0) != (c->index_kind == PROTO_INDEX_FAISS))
        return DEJA_ERR_BAD_REQUEST;
    return 0;
}

size_t proto_ns_config_write(uint8_t *out, const proto_ns_config *cfg) {
    return (size_t)(put_config(out, cfg) - out);
}

int proto_ns_config_read(const uint8_t *in, size_t len, proto_ns_config *cfg) {
    reader rd;
    reader_init(&rd, in, len);
    int rc = read_config(&rd, cfg);
    if (rc == 0 && !read_done(&rd)) rc = DEJA_ERR_BAD_REQUEST;
    return rc;
}

int proto_encode_ns_create_req(proto_buf *b, uint32_t id, const uint8_t *ns,
                               uint8_t ns_len, const proto_ns_config *cfg) {
    if (!cfg || !span_ok(ns, ns_len) ||
        !span_ok(cfg->faiss_factory, cfg->faiss_factory_len))
        return DEJA_ERR_INVALID_ARG;
    size_t body_len = 1 + (size_t)ns_len + config_size(cfg);
    uint8_t *p;
    int rc = frame_begin(b, PROTO_OP_NS_CREATE, 0, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u8(p, ns_len);
    p = put_bytes(p, ns, ns_len);
    put_config(p, cfg);
    frame_commit(b, body_len);
    return 0;
}

int proto_decode_ns_create_req(const uint8_t *body, size_t len, const uint8_t **ns,
                               uint8_t *ns_len, proto_ns_config *cfg) {
    reader rd;
    reader_init(&rd, body, len);
    int rc = read_ns(&rd, ns, ns_len);
    if (rc == 0) rc = read_config(&rd, cfg);
    if (rc == 0 && !read_done(&rd)) rc = DEJA_ERR_BAD_REQUEST;
    return rc;
}

int proto_encode_ns_list_req(proto_buf *b, uint32_t id) {
    uint8_t *p;
    int rc = frame_begin(b, PROTO_OP_NS_LIST, 0, 0, id, 0, &p);
    if (rc == 0) frame_commit(b, 0);
    return rc;
}

int proto_encode_ns_list_resp(proto_buf *b, uint32_t id, const uint8_t *const *names,
                              const uint8_t *name_lens, uint16_t count) {
    if (count && (!names || !name_lens)) return DEJA_ERR_INVALID_ARG;
    size_t body_len = 2;
    for (uint16_t i = 0; i < count; i++) {
        if (proto_check_ns(names[i], name_lens[i]) != 0) return DEJA_ERR_INVALID_ARG;
        body_len += 1 + (size_t)name_lens[i];
    }
    uint8_t *p;
    int rc = frame_begin(b, PROTO_OP_NS_LIST, PROTO_FLAG_REPLY, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_u16(p, count);
    for (uint16_t i = 0; i < count; i++) {
        p = put_u8(p, name_lens[i]);
        p = put_bytes(p, names[i], name_lens[i]);
    }
    frame_commit(b, body_len);
    return 0;
}

int proto_ns_list_next(const uint8_t *body, size_t len, size_t *pos, const uint8_t **name,
                       uint8_t *name_len) {
    if (body == NULL) len = 0;
    if (*pos == 0) {
        reader rd;
        reader_init(&rd, body, len);
        uint16_t count;
        if (!read_u16(&rd, &count)) return DEJA_ERR_BAD_REQUEST;
        for (uint16_t i = 0; i < count; i++)
            if (read_ns(&rd, name, name_len) != 0) return DEJA_ERR_BAD_REQUEST;
        if (!read_done(&rd)) return DEJA_ERR_BAD_REQUEST;
        *pos = 2;
    }
    if (*pos > len) return DEJA_ERR_BAD_REQUEST;
    if (*pos == len) return 0;
    reader rd;
    reader_init(&rd, body + *pos, len - *pos);
    if (read_ns(&rd, name, name_len) != 0) return DEJA_ERR_BAD_REQUEST;
    *pos = len - rd.left;
    return 1;
}

int proto_encode_ns_info_req(proto_buf *b, uint32_t id, const uint8_t *ns,
                             uint8_t ns_len) {
    return proto_encode_ns_only(b, PROTO_OP_NS_INFO, id, ns, ns_len);
}

/* NS_INFO and NS_DROP have the same request body; each has its own entry
 * point so that either layout can change without touching the other. */
static int decode_ns_req(const uint8_t *body, size_t len, proto_ns_req *r) {
    reader rd;
    reader_init(&rd, body, len);
    int rc = read_ns(&rd, &r->ns, &r->ns_len);
    if (rc != 0) return rc;
    return read_done(&rd) ? 0 : DEJA_ERR_BAD_REQUEST;
}

int proto_decode_ns_info_req(const uint8_t *body, size_t len, proto_ns_req *r) {
    return decode_ns_req(body, len, r);
}

int proto_encode_ns_info_resp(proto_buf *b, uint32_t id, const proto_ns_config *cfg,
                              const proto_stat *stats, uint16_t count) {
    if (!cfg || !span_ok(cfg->faiss_factory, cfg->faiss_factory_len))
        return DEJA_ERR_INVALID_ARG;
    size_t stats_len;
    int rc = proto_stats_size(stats, count, &stats_len);
    if (rc != 0) return rc;
    size_t body_len = config_size(cfg) + stats_len;
    uint8_t *p;
    rc = frame_begin(b, PROTO_OP_NS_INFO, PROTO_FLAG_REPLY, 0, id, body_len, &p);
    if (rc != 0) return rc;
    p = put_config(p, cfg);
    proto_put_stats(p, stats, count);
    frame_commit(b, body_len);
    return 0;
}

int proto_decode_ns_info_resp(const uint8_t *body, size_t len, proto_ns_config *cfg,
                              size_t *stats_off) {
    reader rd;
    reader_init(&rd, body, len);
    int rc = read_config(&rd, cfg);
    if (rc != 0) return DEJA_ERR_BAD_REQUEST;
    *stats_off = len - rd.left;
    /* The stats part is validated by proto_stats_next's first call. */
    size_t pos = 0;
    proto_stat s;
    return proto_stats_next(body + *stats_off, rd.left, &pos, &s) < 0
               ? DEJA_ERR_BAD_REQUEST
               : 0;
}

int proto_encode_ns_drop_req(proto_buf *b, uint32_t id, const uint8_t *ns,
                             uint8_t ns_len) {
    return proto_encode_ns_only(b, PROTO_OP_NS_DROP, id, ns, ns_len);
}

int proto_decode_ns_drop_req(const uint8_t *body, size_t len, proto_ns_req *r) {
    return decode_ns_req(body, len, r);
}

/* ---- NS_POLICY (version 2) ----------------------------------------------- */

static bool band_ok(uint32_t bits) {
    if (proto__f32_bits_nonfinite(bits)) return false;
    float band = proto__bits_to_f32(bits);
    return band == 0.0f || (band > 0.0f && band <= 1.0f);
}

int proto_encode_ns_policy_req(proto_buf *b, uint32_t id, const uint8_t *ns,
                               uint8_t ns_len, const proto_ns_policy *p) {
    if (!span_ok(ns, ns_len)) return DEJA_ERR_INVALID_ARG;
    size_t body_len = 1 + (size_t)ns_len + 8;
    uint8_t *w;
    int rc = frame_begin(b, PROTO_OP_NS_POLICY, 0, 0, id, body_len, &w);
    if (rc != 0) return rc;
    w = put_u8(w, ns_len);
    w = put_bytes(w, ns, ns_len);
    w = put_u8(w, p->set);
    w = put_u8(w, p->mode);
    w = put_u16(w, 0);
    put_f32(w, p->gray_band);
    frame_commit(b, body_len);
    return 0;
}

int proto_decode_ns_policy_req(const uint8_t *body, size_t len, proto_ns_req *r,
                               proto_ns_policy *p) {
    reader rd;
    reader_init(&rd, body, len);
    int rc = read_ns(&rd, &r->ns, &r->ns_len);
    if (rc != 0) return rc;
    uint16_t reserved;
    uint32_t band_bits;
    if (!read_u8(&rd, &p->set) || !read_u8(&rd, &p->mode) || !read_u16(&rd, &reserved) ||
        !read_f32_bits(&rd, &band_bits) || !read_done(&rd))
        return DEJA_ERR_BAD_REQUEST;
    if (p->set > 1 || p->mode > PROTO_MODE_SHADOW || reserved != 0 || !band_ok(band_bits))
        return DEJA_ERR_BAD_REQUEST;
    p->gray_band = proto__bits_to_f32(band_bits);
    if (!p->set && (p->mode != 0 || band_bits != 0)) return DEJA_ERR_BAD_REQUEST;
    return 0;
}

int proto_encode_ns_policy_resp(proto_buf *b, uint32_t id, const proto_ns_policy *p) {
    uint8_t *w;
    int rc = frame_begin(b, PROTO_OP_NS_POLICY, PROTO_FLAG_REPLY, 0, id, 8, &w);
    if (rc != 0) return rc;
    w = put_u8(w, p->mode);
    w = put_u8(w, 0);
    w = put_u16(w, 0);
    put_f32(w, p->gray_band);
    frame_commit(b, 8);
    return 0;
}

int proto_decode_ns_policy_resp(const uint8_t *body, size_t len, proto_ns_policy *p) {
    reader rd;
    reader_init(&rd, body, len);
    uint8_t reserved8;
    uint16_t reserved16;
    uint32_t band_bits;
    if (!read_u8(&rd, &p->mode) || !read_u8(&rd, &reserved8) ||
        !read_u16(&rd, &reserved16) || !read_f32_bits(&rd, &band_bits) || !read_done(&rd))
        return DEJA_ERR_BAD_REQUEST;
    if (p->mode > PROTO_MODE_SHADOW || !band_ok(band_bits)) return DEJA_ERR_BAD_REQUEST;
    p->set = 0;
    p->gray_band = proto__bits_to_f32(band_bits);
    return 0;
}
