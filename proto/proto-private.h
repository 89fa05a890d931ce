/* proto-private.h: little-endian load/store helpers shared by the frame
 * parser and the body codecs. Internal to proto/; not installed.
 *
 * Every integer goes through these byte-by-byte helpers so the wire format
 * is the same on any host byte order and no pointer into a network buffer
 * is ever dereferenced as a wider type (those buffers are unaligned). */
#ifndef DEJA_PROTO_PRIVATE_H
#define DEJA_PROTO_PRIVATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

static inline uint16_t proto__load_u16(const uint8_t *p) {
    return (uint16_t)((unsigned)p[0] | ((unsigned)p[1] << 8));
}

static inline uint32_t proto__load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t proto__load_u64(const uint8_t *p) {
    return (uint64_t)proto__load_u32(p) | ((uint64_t)proto__load_u32(p + 4) << 32);
}

static inline void proto__store_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static inline void proto__store_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static inline void proto__store_u64(uint8_t *p, uint64_t v) {
    proto__store_u32(p, (uint32_t)(v & 0xFFFFFFFFu));
    proto__store_u32(p + 4, (uint32_t)(v >> 32));
}

/* f32 travels as the IEEE-754 bit pattern of a binary32; memcpy is the
 * portable way to reinterpret it without breaking aliasing rules. */
_Static_assert(sizeof(float) == 4, "deja needs a 32-bit float");

static inline float proto__bits_to_f32(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint32_t proto__f32_to_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

/* True for NaN and +-Inf: exponent bits all ones. Tested on the bit pattern
 * so the check survives -ffast-math, which lets the compiler assume that
 * isfinite() is always true. */
static inline int proto__f32_bits_nonfinite(uint32_t bits) {
    return (bits & 0x7F800000u) == 0x7F800000u;
}

/* Reader and writer helpers shared by the body codecs (proto-codec.c,
 * proto-ns.c). */

/* Frames are handed back by proto_parse_frame as an int, so an encoder must
 * not produce a frame larger than INT_MAX: the peer could never accept it. */
#define MAX_ENCODED_BODY ((size_t)INT_MAX - PROTO_HEADER_SIZE)

/* ---- reading ------------------------------------------------------------- */

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static inline void reader_init(reader *r, const uint8_t *body, size_t len) {
    r->p = body;
    r->left = body ? len : 0;
}

static inline bool read_bytes(reader *r, size_t n, const uint8_t **out) {
    if (n > r->left) return false;
    /* Empty fields decode as NULL so "absent" needs no second test. */
    *out = n ? r->p : NULL;
    r->p += n;
    r->left -= n;
    return true;
}

static inline bool read_u8(reader *r, uint8_t *v) {
    if (r->left < 1) return false;
    *v = r->p[0];
    r->p += 1;
    r->left -= 1;
    return true;
}

static inline bool read_u16(reader *r, uint16_t *v) {
    if (r->left < 2) return false;
    *v = proto__load_u16(r->p);
    r->p += 2;
    r->left -= 2;
    return true;
}

static inline bool read_u32(reader *r, uint32_t *v) {
    if (r->left < 4) return false;
    *v = proto__load_u32(r->p);
    r->p += 4;
    r->left -= 4;
    return true;
}

static inline bool read_u64(reader *r, uint64_t *v) {
    if (r->left < 8) return false;
    *v = proto__load_u64(r->p);
    r->p += 8;
    r->left -= 8;
    return true;
}

static inline bool read_f32_bits(reader *r, uint32_t *bits) {
    return read_u32(r, bits);
}

static inline bool read_str8(reader *r, const uint8_t **s, uint8_t *n) {
    return read_u8(r, n) && read_bytes(r, *n, s);
}

static inline bool read_str16(reader *r, const uint8_t **s, uint16_t *n) {
    return read_u16(r, n) && read_bytes(r, *n, s);
}

/* A body must be consumed exactly: trailing bytes mean the peer and we
 * disagree about the layout, and guessing would hide the bug. */
static inline bool read_done(const reader *r) {
    return r->left == 0;
}

/* Reads and checks the namespace that starts most request bodies. */
static inline int read_ns(reader *r, const uint8_t **ns, uint8_t *ns_len) {
    if (!read_str8(r, ns, ns_len)) return DEJA_ERR_BAD_REQUEST;
    return proto_check_ns(*ns, *ns_len);
}

static inline int read_dim(reader *r, uint16_t *dim) {
    if (!read_u16(r, dim)) return DEJA_ERR_BAD_REQUEST;
    if (*dim == 0 || *dim > PROTO_MAX_DIM) return DEJA_ERR_BAD_VECTOR;
    return 0;
}

/* ---- writing ------------------------------------------------------------- */

/* Adds n to *total; false if the sum would not fit in a size_t. */
static inline bool size_add(size_t *total, size_t n) {
    if (n > SIZE_MAX - *total) return false;
    *total += n;
    return true;
}

/* Reserves room for a whole frame, writes its header and returns where the
 * body goes. Nothing is committed until frame_commit. */
static inline int frame_begin(proto_buf *b, uint8_t opcode, uint16_t flags,
                              uint16_t status, uint32_t id, size_t body_len,
                              uint8_t **body) {
    if (body_len > MAX_ENCODED_BODY) return DEJA_ERR_INVALID_ARG;
    int rc = proto_buf_reserve(b, PROTO_HEADER_SIZE + body_len);
    if (rc != 0) return rc;
    proto_header hdr = {
        .version = PROTO_VERSION,
        .opcode = opcode,
        .flags = flags,
        .status = status,
        .request_id = id,
        .body_len = (uint32_t)body_len,
    };
    uint8_t *frame = b->data + b->len;
    proto_header_write(frame, &hdr);
    *body = frame + PROTO_HEADER_SIZE;
    return 0;
}

static inline void frame_commit(proto_buf *b, size_t body_len) {
    b->len += PROTO_HEADER_SIZE + body_len;
}

static inline uint8_t *put_u8(uint8_t *p, uint8_t v) {
    *p = v;
    return p + 1;
}

static inline uint8_t *put_u16(uint8_t *p, uint16_t v) {
    proto__store_u16(p, v);
    return p + 2;
}

static inline uint8_t *put_u32(uint8_t *p, uint32_t v) {
    proto__store_u32(p, v);
    return p + 4;
}

static inline uint8_t *put_u64(uint8_t *p, uint64_t v) {
    proto__store_u64(p, v);
    return p + 8;
}

static inline uint8_t *put_f32(uint8_t *p, float f) {
    return put_u32(p, proto__f32_to_bits(f));
}

static inline uint8_t *put_bytes(uint8_t *p, const uint8_t *src, size_t n) {
    /* memcpy with a NULL source is undefined even for n == 0. */
    if (n) memcpy(p, src, n);
    return p + n;
}

/* A pointer may only be NULL when its length is 0. */
static inline bool span_ok(const void *p, size_t n) {
    return p != NULL || n == 0;
}

/* Shared by proto-codec.c and proto-ns.c. */
int proto_stats_size(const proto_stat *stats, uint16_t count, size_t *size);
uint8_t *proto_put_stats(uint8_t *p, const proto_stat *stats, uint16_t count);
int proto_encode_ns_only(proto_buf *b, uint8_t opcode, uint32_t id, const uint8_t *ns,
                         uint8_t ns_len);

#endif
