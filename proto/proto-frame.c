/* proto-frame.c: the 16-byte frame header (incremental parser and writer),
 * opcode names (from the table in deja-ops.h), namespace rules and the
 * growable output buffer that every encoder appends to. */
#include "proto.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "proto-private.h"

int proto_parse_frame(const uint8_t *buf, size_t len, uint32_t max_frame,
                      proto_header *hdr) {
    /* The header is decoded before any check so that an error reply can
     * echo request_id and opcode whenever they are known. */
    if (len >= PROTO_HEADER_SIZE) {
        hdr->version = buf[2];
        hdr->opcode = buf[3];
        hdr->flags = proto__load_u16(buf + 4);
        hdr->status = proto__load_u16(buf + 6);
        hdr->request_id = proto__load_u32(buf + 8);
        hdr->body_len = proto__load_u32(buf + 12);
    }

    /* Refuse garbage on the first byte that proves it is garbage: a peer
     * speaking another protocol (HTTP, TLS) is told off at once instead of
     * the server waiting for 16 bytes that may never come. */
    if (len >= 1 && buf[0] != PROTO_MAGIC0) return DEJA_ERR_BAD_FRAME;
    if (len >= 2 && buf[1] != PROTO_MAGIC1) return DEJA_ERR_BAD_FRAME;
    if (len >= 3 && buf[2] != PROTO_VERSION) return DEJA_ERR_VERSION;
    if (len < PROTO_HEADER_SIZE) return 0;

    /* 64-bit arithmetic: header + a body_len near 4 GiB must not wrap.
     * The frame size is also returned as an int, so nothing above INT_MAX
     * can be accepted whatever max_frame says. */
    uint64_t frame = (uint64_t)PROTO_HEADER_SIZE + hdr->body_len;
    if (frame > max_frame || frame > (uint64_t)INT_MAX) return DEJA_ERR_TOO_LARGE;
    if (len < frame) return 0;
    return (int)frame;
}

void proto_header_write(uint8_t out[PROTO_HEADER_SIZE], const proto_header *hdr) {
    out[0] = PROTO_MAGIC0;
    out[1] = PROTO_MAGIC1;
    out[2] = hdr->version;
    out[3] = hdr->opcode;
    proto__store_u16(out + 4, hdr->flags);
    proto__store_u16(out + 6, hdr->status);
    proto__store_u32(out + 8, hdr->request_id);
    proto__store_u32(out + 12, hdr->body_len);
}

/* Every code must fit the header's opcode byte, and none may be 0: that is
 * the opcode of an error frame answering no request (a BUSY refusal). */
#define PROTO_OP_FITS_(NAME, name, code, access, ns, min_body, max_body)                 \
    _Static_assert((code) > 0 && (code) <= 0xFF, #NAME ": opcode must be 1..255");
PROTO_OP_TABLE(PROTO_OP_FITS_)
#undef PROTO_OP_FITS_

const char *proto_op_name(uint8_t opcode) {
    /* A switch, as for deja_strerror: the compiler refuses a duplicate
     * case label, so two rows with one code do not build. */
    switch (opcode) {
#define PROTO_OP_NAME_(NAME, name, code, access, ns, min_body, max_body)                 \
    case code: return #NAME;
        PROTO_OP_TABLE(PROTO_OP_NAME_)
#undef PROTO_OP_NAME_
    default: return NULL;
    }
}

int proto_check_ns(const uint8_t *ns, size_t len) {
    /* Printable ASCII without space keeps names safe to log, to use as
     * LMDB keys and to print in STATS without escaping. */
    if (len == 0 || len > PROTO_MAX_NS_LEN || ns == NULL) return DEJA_ERR_BAD_NAMESPACE;
    for (size_t i = 0; i < len; i++) {
        if (ns[i] < 0x21 || ns[i] > 0x7E) return DEJA_ERR_BAD_NAMESPACE;
    }
    return 0;
}

void proto_buf_init(proto_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void proto_buf_free(proto_buf *b) {
    free(b->data);
    proto_buf_init(b);
}

void proto_buf_reset(proto_buf *b) {
    b->len = 0;
}

int proto_buf_reserve(proto_buf *b, size_t extra) {
    if (extra <= b->cap - b->len) return 0;
    if (extra > SIZE_MAX - b->len) return DEJA_ERR_NOMEM;
    size_t need = b->len + extra;
    /* Doubling keeps appends amortised O(1); the floor avoids a string of
     * tiny reallocations for the first few small frames. */
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *data = realloc(b->data, cap);
    if (data == NULL) return DEJA_ERR_NOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}
