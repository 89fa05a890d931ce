/* proto.h: deja wire protocol v1 -- frame parser and body codecs.
 *
 * Pure functions over byte buffers: no I/O, no allocation except in proto_buf.
 * docs/PROTOCOL.md is the normative spec; this header mirrors it.
 *
 * All integers are little-endian. Strings are raw bytes with an explicit
 * length prefix (str8 = u8 length, str16 = u16 length, str32 = u32 length);
 * nothing is NUL-terminated on the wire. f32 is IEEE-754 binary32, LE.
 *
 * Decoders never read past `len` and return DEJA_ERR_BAD_REQUEST (or
 * DEJA_ERR_BAD_VECTOR / DEJA_ERR_BAD_NAMESPACE where the spec says so) for
 * any body that does not match its layout exactly, including trailing
 * bytes. Decoded pointers point into the caller's body buffer (zero-copy)
 * and are valid as long as that buffer is; a field of length 0 decodes as
 * NULL. On error the output struct is partly filled and must not be used.
 *
 * Thread safety: all functions are reentrant; a proto_buf belongs to one
 * thread at a time. */
#ifndef DEJA_PROTO_H
#define DEJA_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "deja-errors.h"

/* ---- frame header (16 bytes) ---------------------------------------------
 *  off size field
 *   0   2   magic        'D' 'J' (0x44 0x4A)
 *   2   1   version      1
 *   3   1   opcode       enum proto_op
 *   4   2   flags        PROTO_FLAG_*; bit 15 set on every reply
 *   6   2   status       0 in requests; in replies 0 = OK or -DEJA_ERR_*
 *   8   4   request_id   chosen by the client, echoed in the reply
 *  12   4   body_len     bytes following the header
 */
#define PROTO_MAGIC0 0x44u
#define PROTO_MAGIC1 0x4Au
/* The frame format's version: the header's version byte, 1 in every
 * protocol version so far. */
#define PROTO_VERSION 1u
/* The highest protocol version this codec speaks (HELLO negotiates it);
 * version 2 added the ops 0x18..0x1B and changed no layout. */
#define PROTO_PROTOCOL_MAX 2u
#define PROTO_HEADER_SIZE 16u
#define PROTO_DEFAULT_MAX_FRAME (16u * 1024u * 1024u) /* header + body */
#define PROTO_MIN_MAX_FRAME 4096u
#define PROTO_MAX_DIM 4096u
#define PROTO_MAX_NS_LEN 255u
#define PROTO_MAX_K 256u
#define PROTO_MAX_MESSAGE 1024u /* error message bytes */
#define PROTO_MAX_PING 65536u   /* PING payload bytes */

/* The opcodes: one per row of the table in deja-ops.h, which also gives
 * each op's access rule, namespace and body bounds. */
#include "deja-ops.h"

#define PROTO_OP_ENUM_(NAME, name, code, access, ns, min_body, max_body)                 \
    PROTO_OP_##NAME = (code),
enum proto_op { PROTO_OP_TABLE(PROTO_OP_ENUM_) };
#undef PROTO_OP_ENUM_

#define PROTO_FLAG_REPLY 0x8000u       /* set by the server on every reply */
#define PROTO_FLAG_WANT_PROMPT 0x0001u /* LOOKUP: return stored prompts */
/* LOOKUP reply: hit 0 came from the exact (prompt) tier, so its similarity
 * may be below the request's threshold, never below the namespace floor. */
#define PROTO_FLAG_EXACT 0x0002u
/* LOOKUP and LOOKUP_EX replies: the first hit is in the gray band. */
#define PROTO_FLAG_BORDERLINE 0x0004u

/* HELLO reply server_flags */
#define PROTO_SERVER_AUTH_REQUIRED 0x0001u

/* STORE completion status (write-side safety; only OK is cached by default) */
enum proto_completion {
    PROTO_COMPLETION_OK = 0,
    PROTO_COMPLETION_ERROR = 1,
    PROTO_COMPLETION_TRUNCATED = 2,
    PROTO_COMPLETION_FILTERED = 3,
};

typedef struct proto_header {
    uint8_t version;
    uint8_t opcode;
    uint16_t flags;
    uint16_t status;
    uint32_t request_id;
    uint32_t body_len;
} proto_header;

/* Incremental frame parser: looks at the first `len` bytes of a receive
 * buffer.
 *   returns 0                 need more bytes (nothing is wrong so far);
 *   returns > 0               a complete frame of that many bytes
 *                             (PROTO_HEADER_SIZE + hdr->body_len) is at buf;
 *   returns DEJA_ERR_BAD_FRAME  bad magic (v1 has no reserved header
 *                               fields: unknown flag bits are ignored);
 *   returns DEJA_ERR_VERSION    version != 1;
 *   returns DEJA_ERR_TOO_LARGE  PROTO_HEADER_SIZE + body_len > max_frame,
 *                               or > INT_MAX (the return type's limit).
 * A negative return means the stream can no longer be trusted: reply with
 * an error frame and close. Magic and version are checked on as many bytes
 * as are present, so garbage is refused without waiting for 16 bytes. Whenever 16
 * bytes are present `hdr` is filled, even on error (so the error reply can
 * echo request_id). An unknown opcode is NOT a parse error: the frame is
 * complete and the dispatcher answers DEJA_ERR_UNKNOWN_OP. */
int proto_parse_frame(const uint8_t *buf, size_t len, uint32_t max_frame,
                      proto_header *hdr);

/* Writes a 16-byte header to out: the magic, then hdr's fields as given
 * (hdr->version is written as is, so set it to PROTO_VERSION). */
void proto_header_write(uint8_t out[PROTO_HEADER_SIZE], const proto_header *hdr);

/* Returns the op's name as the table in deja-ops.h spells it ("STORE",
 * "NS_INFO"), or NULL for an unknown opcode. Static storage; thread-safe. */
const char *proto_op_name(uint8_t opcode);

/* ---- growable output buffer ---------------------------------------------- */
typedef struct proto_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} proto_buf;

void proto_buf_init(proto_buf *b);
void proto_buf_free(proto_buf *b);  /* frees and re-inits */
void proto_buf_reset(proto_buf *b); /* len = 0, keeps memory */
/* Makes room for `extra` more bytes after len; 0 or DEJA_ERR_NOMEM. May
 * move data; never changes len or the bytes already written. */
int proto_buf_reserve(proto_buf *b, size_t extra);

/* ---- bodies ----------------------------------------------------------------
 * Every encoder appends one complete frame (header + body) to `b` and
 * returns 0 or DEJA_ERR_NOMEM (b is left unchanged on error). Request
 * encoders validate nothing but sizes that would not fit their fields
 * (DEJA_ERR_INVALID_ARG), a NULL pointer with a non-zero length, and a
 * frame larger than INT_MAX (DEJA_ERR_INVALID_ARG); decoders validate
 * everything.
 * Request encoders write flags given, status 0; reply encoders set
 * PROTO_FLAG_REPLY in flags themselves. */

/* HELLO request: u16 min_version, u16 max_version, str16 client_name */
typedef struct proto_hello_req {
    uint16_t min_version;
    uint16_t max_version;
    const uint8_t *client_name;
    uint16_t client_name_len;
} proto_hello_req;

/* HELLO reply: u16 version, u16 max_dim, u32 max_frame, u32 server_flags,
 * str16 server_name */
typedef struct proto_hello_resp {
    uint16_t version;
    uint16_t max_dim;
    uint32_t max_frame;
    uint32_t server_flags;
    const uint8_t *server_name;
    uint16_t server_name_len;
} proto_hello_resp;

/* AUTH request: str16 token. Reply: empty body. */
typedef struct proto_auth_req {
    const uint8_t *token;
    uint16_t token_len;
} proto_auth_req;

/* PING request: any body (<= PROTO_MAX_PING bytes), echoed verbatim in the
 * reply. The encoder serves both directions: pass PROTO_FLAG_REPLY in flags
 * for the reply; a payload over PROTO_MAX_PING is DEJA_ERR_INVALID_ARG. */

/* STORE request:
 *   str8  namespace          1..255 bytes, each 0x21..0x7E
 *   u16   dim                1..4096
 *   u8    completion         enum proto_completion
 *   u8    reserved           0
 *   u32   ttl_s              0 = server default
 *   u32   input_tokens
 *   u32   output_tokens
 *   u64   cost_micro_usd     cost of producing this response, for savings
 *   u32   prompt_len         0 = no prompt text
 *   u32   response_len
 *   f32   vector[dim]
 *   u8    prompt[prompt_len]
 *   u8    response[response_len]
 * Reply: u64 entry_id. */
typedef struct proto_store_req {
    const uint8_t *ns;
    uint8_t ns_len;
    uint16_t dim;
    uint8_t completion;
    uint32_t ttl_s;
    uint32_t input_tokens;
    uint32_t output_tokens;
    uint64_t cost_micro_usd;
    const uint8_t *vector; /* dim * 4 bytes, LE f32, possibly unaligned */
    const uint8_t *prompt;
    uint32_t prompt_len;
    const uint8_t *response;
    uint32_t response_len;
    uint64_t lease_id; /* STORE_EX only: 0 = none */
} proto_store_req;

/* LOOKUP request:
 *   str8  namespace
 *   u16   dim
 *   u16   k                  1..PROTO_MAX_K
 *   f32   threshold          minimum cosine similarity, in [-1, 1]
 *   u16   ef                 search breadth hint, 0 = namespace default
 *   u16   reserved           0
 *   u32   prompt_len         optional prompt text, for the exact tier
 *   f32   vector[dim]
 *   u8    prompt[prompt_len]
 * flags: PROTO_FLAG_WANT_PROMPT.
 * Reply (flags: PROTO_FLAG_EXACT when hit 0 is an exact-tier hit):
 *   u16   count              0 = miss
 *   then count times, best first:
 *     u64 entry_id, f32 similarity, u32 prompt_len, u32 response_len,
 *     u8 prompt[prompt_len], u8 response[response_len] */
typedef struct proto_lookup_req {
    const uint8_t *ns;
    uint8_t ns_len;
    uint16_t dim;
    uint16_t k;
    float threshold;
    uint16_t ef;
    const uint8_t *vector;
    const uint8_t *prompt;
    uint32_t prompt_len;
    /* LOOKUP_EX only (0 in a LOOKUP): */
    uint16_t options; /* PROTO_LOOKUP_* */
    uint32_t wait_ms;
    uint32_t lease_ms;
} proto_lookup_req;

typedef struct proto_hit {
    uint64_t id;
    float similarity;
    const uint8_t *prompt;
    uint32_t prompt_len;
    const uint8_t *response;
    uint32_t response_len;
    uint8_t flags; /* LOOKUP_EX: PROTO_HIT_* (LOOKUP's layout has no flags) */
} proto_hit;

/* DELETE request: str8 namespace, u64 entry_id. Reply: empty body, or
 * status NOT_FOUND. */
/* FLUSH request: str8 namespace. Reply: u64 removed. */
typedef struct proto_ns_id_req {
    const uint8_t *ns;
    uint8_t ns_len;
    uint64_t id;
} proto_ns_id_req;

/* STATS request: str8 namespace (length 0 = server-wide).
 * Reply: u16 count, then count times: str8 key, u64 value. */
typedef struct proto_stat {
    const char *key; /* not NUL-terminated when decoded: use key_len */
    uint8_t key_len;
    uint64_t value;
} proto_stat;

/* ---- namespaces ------------------------------------------------------------
 * Namespace configuration (44 bytes, then str8 faiss_factory):
 *   u16 dim                   1..4096
 *   u8  index_kind            enum proto_index_kind
 *   u8  quant                 0 = f32, 1 = int8
 *   u16 hnsw_m                0 = server default
 *   u16 hnsw_ef_construction  0 = server default
 *   u16 hnsw_ef_search        0 = server default
 *   u8  ttl_mode              enum proto_ttl_mode
 *   u8  flags                 PROTO_NS_*; undefined bits are refused
 *   f32 min_threshold         lookup threshold floor; 0 = server default
 *   f32 dedup                 write-time dedup similarity; 0 = default
 *   u32 default_ttl_s         0 = server default
 *   (with PROTO_NS_EXPLICIT, quant, min_threshold, dedup and default_ttl_s
 *   are literal: 0 is f32, a floor of 0.0, dedup off, never expire)
 *   u32 max_age_s             sliding TTL: longest total life; 0 = none
 *   u64 max_bytes             per-namespace memory budget; 0 = none
 *   u64 max_entries           0 = none
 *   str8 faiss_factory        index_factory string for PROTO_INDEX_FAISS
 */
enum proto_index_kind {
    PROTO_INDEX_DEFAULT = 0,
    PROTO_INDEX_FLAT = 1,
    PROTO_INDEX_HNSW = 2,
    PROTO_INDEX_FAISS = 3,
};

enum proto_ttl_mode {
    PROTO_TTL_ABSOLUTE = 0,
    PROTO_TTL_SLIDING = 1,
};

#define PROTO_NS_ALLOW_NON_OK 0x01u /* cache non-ok completions too */
#define PROTO_NS_NO_DEDUP 0x02u     /* never merge near-identical STOREs */
/* quant, min_threshold, dedup and default_ttl_s are literal values, 0
 * included, instead of "0 = the server's default". NS_INFO replies carry
 * the resolved configuration with this bit set. */
#define PROTO_NS_EXPLICIT 0x04u
#define PROTO_NS_FLAGS_DEFINED 0x07u /* any other bit is BAD_REQUEST */
#define PROTO_NS_CONFIG_SIZE 44u

typedef struct proto_ns_config {
    uint16_t dim;
    uint8_t index_kind;
    uint8_t quant;
    uint16_t hnsw_m;
    uint16_t hnsw_ef_construction;
    uint16_t hnsw_ef_search;
    uint8_t ttl_mode;
    uint8_t flags;
    float min_threshold;
    float dedup;
    uint32_t default_ttl_s;
    uint32_t max_age_s;
    uint64_t max_bytes;
    uint64_t max_entries;
    const uint8_t *faiss_factory;
    uint8_t faiss_factory_len;
} proto_ns_config;

/* The configuration block on its own (the server also stores it on disk in
 * this form). write returns the bytes written (PROTO_NS_CONFIG_SIZE + 1 +
 * factory length; out must have that much room); read decodes and checks
 * exactly len bytes: 0 or an error as for NS_CREATE. */
size_t proto_ns_config_write(uint8_t *out, const proto_ns_config *cfg);
int proto_ns_config_read(const uint8_t *in, size_t len, proto_ns_config *cfg);

/* NS_CREATE request: str8 namespace, config. Reply: empty; EXISTS when the
 * namespace exists with another configuration. Decoding checks, in this
 * order, so the code does not depend on how much of the body follows:
 * the name (BAD_NAMESPACE, an empty one included), dim (BAD_VECTOR), then
 * the rest of the block (BAD_REQUEST): index_kind <= 3, quant <= 1,
 * ttl_mode <= 1, no undefined flag bit, min_threshold finite in [-1, 1],
 * dedup finite in [0, 1], a factory string only for FAISS. */
int proto_encode_ns_create_req(proto_buf *b, uint32_t id, const uint8_t *ns,
                               uint8_t ns_len, const proto_ns_config *cfg);
int proto_decode_ns_create_req(const uint8_t *body, size_t len, const uint8_t **ns,
                               uint8_t *ns_len, proto_ns_config *cfg);

/* NS_LIST request: empty. Reply: u16 count, then count times str8 name. */
int proto_encode_ns_list_req(proto_buf *b, uint32_t id);
int proto_encode_ns_list_resp(proto_buf *b, uint32_t id, const uint8_t *const *names,
                              const uint8_t *name_lens, uint16_t count);
/* Iterates the names like proto_stats_next: 1 with a name, 0 at the end,
 * DEJA_ERR_BAD_REQUEST if malformed (the first call validates all). */
int proto_ns_list_next(const uint8_t *body, size_t len, size_t *pos, const uint8_t **name,
                       uint8_t *name_len);

/* NS_INFO and NS_DROP requests: a lone str8 namespace, 1..255 bytes of
 * 0x21..0x7E. */
typedef struct proto_ns_req {
    const uint8_t *ns;
    uint8_t ns_len;
} proto_ns_req;

/* NS_INFO request: str8 namespace. Reply: config, then u16 count and count
 * times (str8 key, u64 value) as in STATS. *stats_off receives where the
 * stats part starts, for proto_stats_next(body + off, len - off, ...). */
int proto_encode_ns_info_req(proto_buf *b, uint32_t id, const uint8_t *ns,
                             uint8_t ns_len);
/* Checks the name (BAD_NAMESPACE, an empty one included) and that nothing
 * follows it (BAD_REQUEST). */
int proto_decode_ns_info_req(const uint8_t *body, size_t len, proto_ns_req *r);
int proto_encode_ns_info_resp(proto_buf *b, uint32_t id, const proto_ns_config *cfg,
                              const proto_stat *stats, uint16_t count);
int proto_decode_ns_info_resp(const uint8_t *body, size_t len, proto_ns_config *cfg,
                              size_t *stats_off);

/* NS_DROP request: str8 namespace. Reply: u64 entries removed. */
int proto_encode_ns_drop_req(proto_buf *b, uint32_t id, const uint8_t *ns,
                             uint8_t ns_len);
/* Checks as proto_decode_ns_info_req does. */
int proto_decode_ns_drop_req(const uint8_t *body, size_t len, proto_ns_req *r);

/* Error reply body (any opcode, status != 0): str16 message (UTF-8). */

int proto_encode_hello_req(proto_buf *b, uint32_t id, const proto_hello_req *r);
int proto_decode_hello_req(const uint8_t *body, size_t len, proto_hello_req *r);
int proto_encode_hello_resp(proto_buf *b, uint32_t id, const proto_hello_resp *r);
/* Also refuses version 0, max_dim outside 1..PROTO_MAX_DIM and max_frame
 * below PROTO_MIN_MAX_FRAME (BAD_REQUEST). */
int proto_decode_hello_resp(const uint8_t *body, size_t len, proto_hello_resp *r);

int proto_encode_auth_req(proto_buf *b, uint32_t id, const proto_auth_req *r);
int proto_decode_auth_req(const uint8_t *body, size_t len, proto_auth_req *r);

int proto_encode_ping(proto_buf *b, uint32_t id, uint16_t flags, const uint8_t *payload,
                      size_t len);
/* Checks a PING body: 0, or DEJA_ERR_BAD_REQUEST over PROTO_MAX_PING. */
int proto_decode_ping(const uint8_t *body, size_t len);

int proto_encode_store_req(proto_buf *b, uint32_t id, const proto_store_req *r);
/* Also checks: ns name rules (BAD_NAMESPACE), 1 <= dim <= PROTO_MAX_DIM
 * (BAD_VECTOR), completion <= 3 (BAD_REQUEST). */
int proto_decode_store_req(const uint8_t *body, size_t len, proto_store_req *r);
int proto_encode_store_resp(proto_buf *b, uint32_t id, uint64_t entry_id);
int proto_decode_store_resp(const uint8_t *body, size_t len, uint64_t *entry_id);

int proto_encode_lookup_req(proto_buf *b, uint32_t id, uint16_t flags,
                            const proto_lookup_req *r);
/* Also checks ns, dim, 1 <= k <= PROTO_MAX_K, threshold finite in [-1,1]. */
int proto_decode_lookup_req(const uint8_t *body, size_t len, proto_lookup_req *r);
int proto_encode_lookup_resp(proto_buf *b, uint32_t id, const proto_hit *hits,
                             uint16_t count);
/* proto_encode_lookup_resp with reply flags (PROTO_FLAG_EXACT) besides
 * PROTO_FLAG_REPLY. PROTO_FLAG_EXACT with count 0, or any other bit:
 * DEJA_ERR_INVALID_ARG. The body is the same. */
int proto_encode_lookup_resp_flags(proto_buf *b, uint32_t id, uint16_t flags,
                                   const proto_hit *hits, uint16_t count);
/* Decodes the hits into hits[0..max_hits); *count receives the number in
 * the body. count > max_hits or > PROTO_MAX_K, a NaN/Inf similarity or any
 * malformation: DEJA_ERR_BAD_REQUEST. Pass max_hits >= the k requested. */
int proto_decode_lookup_resp(const uint8_t *body, size_t len, proto_hit *hits,
                             uint16_t max_hits, uint16_t *count);

int proto_encode_delete_req(proto_buf *b, uint32_t id, const proto_ns_id_req *r);
int proto_decode_delete_req(const uint8_t *body, size_t len, proto_ns_id_req *r);
int proto_encode_flush_req(proto_buf *b, uint32_t id, const uint8_t *ns, uint8_t ns_len);
int proto_decode_flush_req(const uint8_t *body, size_t len, proto_ns_id_req *r);
int proto_encode_u64_resp(proto_buf *b, uint8_t opcode, uint32_t id, uint64_t v);
int proto_decode_u64_resp(const uint8_t *body, size_t len, uint64_t *v);
int proto_encode_empty_resp(proto_buf *b, uint8_t opcode, uint32_t id);
/* Checks that an AUTH or DELETE reply body is empty: 0 or BAD_REQUEST. */
int proto_decode_empty_resp(const uint8_t *body, size_t len);

/* STATS: ns_len 0 = server-wide. Keys follow the namespace rules (1..255
 * bytes of 0x21..0x7E): the reply encoder returns DEJA_ERR_INVALID_ARG for
 * any other key, the iterator DEJA_ERR_BAD_REQUEST. */
int proto_encode_stats_req(proto_buf *b, uint32_t id, const uint8_t *ns, uint8_t ns_len);
int proto_decode_stats_req(const uint8_t *body, size_t len, const uint8_t **ns,
                           uint8_t *ns_len);
int proto_encode_stats_resp(proto_buf *b, uint32_t id, const proto_stat *stats,
                            uint16_t count);
/* Iterates a stats reply: *pos starts at 0; returns 1 and fills *s while
 * entries remain, 0 at the end, DEJA_ERR_BAD_REQUEST if malformed. The
 * first call validates the whole body. */
int proto_stats_next(const uint8_t *body, size_t len, size_t *pos, proto_stat *s);

/* Error reply: status = -err (err in DEJA_ERR_WIRE_MIN..-1, else
 * DEJA_ERR_INVALID_ARG), flags PROTO_FLAG_REPLY, message (NUL-terminated,
 * NULL = empty) truncated to PROTO_MAX_MESSAGE bytes on a UTF-8 character
 * boundary. The decoder refuses a message over PROTO_MAX_MESSAGE. */
int proto_encode_error(proto_buf *b, uint8_t opcode, uint32_t id, int err,
                       const char *message);
int proto_decode_error(const uint8_t *body, size_t len, const uint8_t **msg,
                       uint16_t *msg_len);

/* Maps a reply's status field to a code: 0 -> 0, 1..99 -> -status (codes
 * missing from the table pass through; deja_strerror calls them "unknown
 * error"), anything larger -> DEJA_ERR_PROTOCOL. */
int proto_status_error(uint16_t status);

/* Checks a namespace name: 1..255 bytes, each 0x21..0x7E.
 * Returns 0 or DEJA_ERR_BAD_NAMESPACE. */
int proto_check_ns(const uint8_t *ns, size_t len);

/* Reads dim LE f32 from src (dim * 4 bytes, any alignment) into dst (dim
 * floats) as sent, and rejects dim 0 or > PROTO_MAX_DIM, NaN/Inf and the
 * zero vector (DEJA_ERR_BAD_VECTOR). It does not normalise: the server
 * does that once, with idx_normalize, which cannot fail on what this
 * accepts. On error dst's contents are unspecified. */
int proto_vector_read(float *dst, const uint8_t *src, uint16_t dim);

/* Writes dim floats as LE f32 (for encoders and tests). */
void proto_vector_write(uint8_t *dst, const float *src, uint16_t dim);

/* ---- version 2: LOOKUP_EX, STORE_EX, LEASE_RELEASE, NS_POLICY ----------------
 * docs/PROTOCOL.md sections 5.11 to 5.16. */

#define PROTO_LOOKUP_LEASE 0x0001u       /* options: take or wait for a lease */
#define PROTO_LOOKUP_WANT_SHADOW 0x0002u /* options: return would-be hits */
#define PROTO_LOOKUP_OPTIONS 0x0003u

#define PROTO_HIT_EXACT 0x01u      /* hit_flags: from the exact tier */
#define PROTO_HIT_BORDERLINE 0x02u /* hit_flags: in the gray band */

#define PROTO_REPLY_SHADOW 0x01u /* LOOKUP_EX reply_flags */

enum proto_outcome {
    PROTO_OUTCOME_MISS = 0,
    PROTO_OUTCOME_HIT = 1,
    PROTO_OUTCOME_LEASE = 2,
    PROTO_OUTCOME_COALESCED = 3,
};

/* A LOOKUP_EX reply. hits and shadow point to caller memory: the
 * encoder reads count / shadow_count of them; the decoder fills at most
 * max_hits of each (the caller passes its arrays and their size). */
typedef struct proto_lookup_ex_resp {
    uint8_t outcome; /* enum proto_outcome */
    uint8_t reply_flags;
    uint64_t lease_id;
    proto_hit *hits;
    uint16_t count;
    proto_hit *shadow;
    uint16_t shadow_count;
} proto_lookup_ex_resp;

/* LOOKUP_EX: r->options, wait_ms and lease_ms are sent as they are (the
 * decoder refuses unknown options, and wait/lease without LEASE). */
int proto_encode_lookup_ex_req(proto_buf *b, uint32_t id, uint16_t flags,
                               const proto_lookup_req *r);
int proto_decode_lookup_ex_req(const uint8_t *body, size_t len, proto_lookup_req *r);
/* header_flags: 0 or PROTO_FLAG_BORDERLINE (the first hit is borderline). */
int proto_encode_lookup_ex_resp(proto_buf *b, uint32_t id, uint16_t header_flags,
                                const proto_lookup_ex_resp *r);
/* Errors: BAD_REQUEST (malformed, an unknown outcome, more hits than
 * max_hits or 256, a LEASE outcome without a lease id). */
int proto_decode_lookup_ex_resp(const uint8_t *body, size_t len, uint16_t max_hits,
                                proto_lookup_ex_resp *r);

/* STORE_EX: a STORE body, then u64 lease_id (r->lease_id). */
int proto_encode_store_ex_req(proto_buf *b, uint32_t id, const proto_store_req *r);
int proto_decode_store_ex_req(const uint8_t *body, size_t len, proto_store_req *r);

/* LEASE_RELEASE: str8 namespace, u64 lease_id (r->id); DELETE's layout. */
int proto_encode_lease_release_req(proto_buf *b, uint32_t id, const proto_ns_id_req *r);
int proto_decode_lease_release_req(const uint8_t *body, size_t len, proto_ns_id_req *r);

#define PROTO_MODE_SERVE 0u
#define PROTO_MODE_SHADOW 1u

typedef struct proto_ns_policy {
    uint8_t set; /* request only: 0 read, 1 set */
    uint8_t mode;
    float gray_band; /* 0 = none, else in (0, 1] */
} proto_ns_policy;

int proto_encode_ns_policy_req(proto_buf *b, uint32_t id, const uint8_t *ns,
                               uint8_t ns_len, const proto_ns_policy *p);
int proto_decode_ns_policy_req(const uint8_t *body, size_t len, proto_ns_req *r,
                               proto_ns_policy *p);
int proto_encode_ns_policy_resp(proto_buf *b, uint32_t id, const proto_ns_policy *p);
int proto_decode_ns_policy_resp(const uint8_t *body, size_t len, proto_ns_policy *p);

#endif
