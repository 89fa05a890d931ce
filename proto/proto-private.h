/* proto-private.h: little-endian load/store helpers shared by the frame
 * parser and the body codecs. Internal to proto/; not installed.
 *
 * Every integer goes through these byte-by-byte helpers so the wire format
 * is the same on any host byte order and no pointer into a network buffer
 * is ever dereferenced as a wider type (those buffers are unaligned). */
#ifndef DEJA_PROTO_PRIVATE_H
#define DEJA_PROTO_PRIVATE_H

#include <stdint.h>
#include <string.h>

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

#endif
