/* proto-frame.c: the 16-byte frame header (incremental parser and writer),
 * opcode names, namespace rules and the growable output buffer that every
 * encoder appends to. */
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

const char *proto_op_name(uint8_t opcode) {
    switch (opcode) {
    case PROTO_OP_HELLO: return "HELLO";
    case PROTO_OP_AUTH: return "AUTH";
    case PROTO_OP_PING: return "PING";
    case PROTO_OP_STORE: return "STORE";
    case PROTO_OP_LOOKUP: return "LOOKUP";
    case PROTO_OP_DELETE: return "DELETE";
    case PROTO_OP_FLUSH: return "FLUSH";
    case PROTO_OP_NS_CREATE: return "NS_CREATE";
    case PROTO_OP_NS_LIST: return "NS_LIST";
    case PROTO_OP_NS_INFO: return "NS_INFO";
    case PROTO_OP_NS_DROP: return "NS_DROP";
    case PROTO_OP_STATS: return "STATS";
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
