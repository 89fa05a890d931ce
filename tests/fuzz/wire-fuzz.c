/* wire-fuzz.c: a hostile client for a running dejad. It sends frames over
 * TCP -- valid requests, valid headers with mutated bodies, random
 * opcodes, flags and statuses, vectors of random dimensions and values,
 * namespace life cycles (NS_CREATE, STORE, LOOKUP, DELETE, FLUSH, NS_DROP,
 * and version 2's LOOKUP_EX with leases, STORE_EX, LEASE_RELEASE, NS_POLICY)
 * with mutated fields, pipelined bursts, and on some connections a frame
 * that breaks the stream (bad magic or version, an oversized or truncated
 * frame), a reset or a half-close -- and reads every reply.
 *
 *   wire-fuzz -p PORT -n FRAMES [-h HOST] [-s SEED] [-t TOKEN] [-f]
 *
 * -t: the server wants this token; most connections AUTH with it, some
 * never do, a few send a wrong one. A wrong token slows every later AUTH
 * from this address (dejad's guard against guessing), so random and
 * mutated frames never become AUTH frames in this mode. -f: NS_CREATE also asks for FAISS
 * kinds (factory strings near the allowed grammar, and mutations of
 * them); without it FAISS kinds are still requested, but only with an
 * empty or unusable string.
 *
 * After most bursts the connection is synchronised with a PING that must
 * be answered within SYNC_TIMEOUT_MS; every reply must be a well-formed
 * frame (REPLY flag, status below 100, an error body that decodes). It
 * reconnects whenever the server closes, and exits 1 if dejad cannot be
 * reached or stops answering, 2 if a reply broke the protocol, 0 after
 * FRAMES frames with a final PING answered. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define SYNC_TIMEOUT_MS 30000
#define CLOSE_WAIT_MS 2000
#define SYNC_ID_BASE 0xF0000000u
#define NS_POOL 8
#define REPLY_MAX (256u << 20)

static const uint16_t ns_dims[NS_POOL] = {4, 8, 16, 3, 32, 4, 128, 1};

/* FAISS factory strings: inside and just outside a bounded grammar. */
static const char *const factories[] = {
    "Flat",
    "HNSW32",
    "IVF4,Flat",
    "IVF16,SQ8",
    "SQ8",
    "PQ4x8",
    "IVF8,PQ4",
    "HNSW16",
    "IDMap,Flat",
    "IVF2,Flat",
    "SQfp16",
    "LSH",
    "PQ0",
    "PQ4x0",
    "IVF0,Flat",
    "OPQ4_0,Flat",
    "IVF100000000,Flat",
    "PCAR0,Flat",
    "RQ2x0",
    "HNSW0",
    "HNSW99999",
    "ZnLattice0x0_0",
};

typedef struct fuzzer {
    const char *host;
    int port;
    const char *token;
    int faiss;
    uint64_t rng;
    uint64_t target, frames, replies, syncs, connects, closed_by_server, violations;
    uint64_t resets, half_closes, stream_breaks, left_open;
    int fd;
    int authed; /* this connection sent the right token */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    uint32_t next_id;
    uint32_t sync_want; /* request id of the PING being waited for, 0 = none */
    int sync_seen;
    uint64_t ids[64]; /* entry ids from STORE replies */
    unsigned n_ids;
    uint64_t leases[16]; /* lease ids from LOOKUP_EX replies */
    unsigned n_leases;
    proto_buf out;
} fuzzer;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wire-fuzz: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- randomness -------------------------------------------------------------*/

static uint64_t rnd(fuzzer *f) {
    /* xorshift64* */
    f->rng ^= f->rng >> 12;
    f->rng ^= f->rng << 25;
    f->rng ^= f->rng >> 27;
    return f->rng * 0x2545F4914F6CDD1Dull;
}

static uint32_t below(fuzzer *f, uint32_t n) {
    return n ? (uint32_t)(rnd(f) % n) : 0;
}

static int chance(fuzzer *f, unsigned percent) {
    return below(f, 100) < percent;
}

static uint32_t interesting_u32(fuzzer *f) {
    static const uint32_t v[] = {
        0,          1,          2,          3,          4,        15,      16,    255,
        256,        257,        1024,       4095,       4096,     4097,    65535, 65536,
        0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 16777216, 16777200};
    return v[below(f, sizeof v / sizeof v[0])];
}

static float rnd_float(fuzzer *f) {
    switch (below(f, 40)) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return 0.0f;
    case 4: return -0.0f;
    case 5: return 1e-42f; /* denormal */
    case 6: return 3.4e38f;
    case 7: return -3.4e38f;
    default: return (float)((double)(int32_t)(rnd(f) >> 32) / 2147483648.0);
    }
}

/* ---- frames -----------------------------------------------------------------*/

/* An opcode for a random or mutated frame: never AUTH with a token (see
 * the top of the file). */
static uint8_t random_op(fuzzer *f) {
    uint8_t op = (uint8_t)rnd(f);
    return f->token && op == PROTO_OP_AUTH ? 0x7E : op;
}

static uint32_t take_id(fuzzer *f) {
    uint32_t id = f->next_id++;
    if (f->next_id >= SYNC_ID_BASE) f->next_id = 1;
    return id;
}

/* A namespace name: mostly from the pool (entry `forced` when >= 0),
 * sometimes broken. */
static size_t pick_ns(fuzzer *f, uint8_t *out, int forced, unsigned *pool_index) {
    unsigned i = forced >= 0 ? (unsigned)forced : below(f, NS_POOL);
    *pool_index = i;
    if (chance(f, 96)) return (size_t)sprintf((char *)out, "wf%u", i);
    switch (below(f, 5)) {
    case 0: return 0;
    case 1: memcpy(out, "a b", 3); return 3;
    case 2: memset(out, 'n', 255); return 255;
    case 3: out[0] = 0x7F; return 1;
    default: return (size_t)sprintf((char *)out, "team%u/%u", below(f, 3), below(f, 4));
    }
}

static uint16_t pick_dim(fuzzer *f, unsigned pool_index) {
    if (chance(f, 92)) return ns_dims[pool_index];
    switch (below(f, 4)) {
    case 0: return 0;
    case 1: return 4096;
    case 2: return 4097;
    default: return (uint16_t)(1 + below(f, 300));
    }
}

static void fill_vector(fuzzer *f, uint8_t *dst, uint16_t dim) {
    float v[PROTO_MAX_DIM];
    int special = chance(f, 5);
    for (uint16_t i = 0; i < dim; i++)
        v[i] = special ? rnd_float(f) : (float)((double)(int32_t)(rnd(f) >> 32) / 2e9);
    if (chance(f, 1)) memset(v, 0, (size_t)dim * sizeof(float));
    proto_vector_write(dst, v, dim);
}

static const char *const prompts[] = {"",   "  ", "what is deja?",     "What  is\tdeja?",
                                      "\n", "x",  "summarise the doc", "hello world"};

static void pick_prompt(fuzzer *f, const uint8_t **p, uint32_t *len) {
    const char *s = prompts[below(f, sizeof prompts / sizeof prompts[0])];
    *p = (const uint8_t *)s;
    *len = (uint32_t)strlen(s);
}

static uint8_t scratch_vec[PROTO_MAX_DIM * 4 + 16];
static uint8_t scratch_bytes[70000];

static void fill_bytes(fuzzer *f, uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd(f);
}

static void ns_config(fuzzer *f, proto_ns_config *c, uint16_t dim) {
    memset(c, 0, sizeof *c);
    c->dim = dim;
    c->index_kind = (uint8_t)below(f, chance(f, 3) ? 256 : 4);
    c->quant = (uint8_t)below(f, chance(f, 3) ? 256 : 2);
    c->hnsw_m = (uint16_t)(chance(f, 50)   ? 0
                           : chance(f, 90) ? 2 + below(f, 48)
                                           : interesting_u32(f));
    c->hnsw_ef_construction = (uint16_t)(chance(f, 50)   ? 0
                                         : chance(f, 90) ? 1 + below(f, 400)
                                                         : interesting_u32(f));
    c->hnsw_ef_search = (uint16_t)(chance(f, 50)   ? 0
                                   : chance(f, 90) ? 1 + below(f, 400)
                                                   : interesting_u32(f));
    c->ttl_mode = (uint8_t)below(f, chance(f, 3) ? 256 : 2);
    c->flags = (uint8_t)below(f, chance(f, 3) ? 256 : 4);
    c->min_threshold = chance(f, 50)   ? 0.0f
                       : chance(f, 95) ? (float)below(f, 2001) / 1000.0f - 1.0f
                                       : rnd_float(f);
    c->dedup = chance(f, 50)   ? 0.0f
               : chance(f, 95) ? (float)below(f, 1001) / 1000.0f
                               : rnd_float(f);
    c->default_ttl_s = chance(f, 70)   ? 0
                       : chance(f, 80) ? below(f, 5)
                                       : interesting_u32(f);
    c->max_age_s = chance(f, 80) ? 0 : below(f, 100);
    c->max_bytes = chance(f, 85) ? 0 : chance(f, 80) ? below(f, 1 << 16) : rnd(f);
    c->max_entries = chance(f, 85) ? 0 : chance(f, 80) ? below(f, 64) : rnd(f);
    if (c->index_kind == PROTO_INDEX_FAISS || chance(f, 2)) {
        static char factory[256];
        size_t n = 0;
        if (f->faiss) {
            const char *s = factories[below(f, sizeof factories / sizeof factories[0])];
            n = strlen(s);
            memcpy(factory, s, n);
            if (chance(f, 30) && n > 0) { /* mutate a character or a digit run */
                size_t at = below(f, (uint32_t)n);
                factory[at] = chance(f, 50) ? (char)('0' + below(f, 10)) : (char)rnd(f);
            }
            if (chance(f, 5)) n = below(f, 256), fill_bytes(f, (uint8_t *)factory, n);
        } else if (chance(f, 50)) {
            memcpy(factory, "Flat", 4);
            n = 4;
        }
        c->faiss_factory = (const uint8_t *)factory;
        c->faiss_factory_len = (uint8_t)n;
    }
}

/* Appends one well-formed request of a random (or the given) op, on a
 * random namespace (or pool entry forced_ns). */
static void gen_request(fuzzer *f, int op, int forced_ns) {
    proto_buf *b = &f->out;
    uint8_t ns[256];
    unsigned pi;
    size_t ns_len = pick_ns(f, ns, forced_ns, &pi);
    uint32_t id = take_id(f);
    if (op < 0) {
        static const uint8_t ops[] = {
            PROTO_OP_STORE,     PROTO_OP_STORE,     PROTO_OP_STORE,
            PROTO_OP_LOOKUP,    PROTO_OP_LOOKUP,    PROTO_OP_LOOKUP,
            PROTO_OP_DELETE,    PROTO_OP_FLUSH,     PROTO_OP_STATS,
            PROTO_OP_PING,      PROTO_OP_NS_CREATE, PROTO_OP_NS_CREATE,
            PROTO_OP_NS_LIST,   PROTO_OP_NS_INFO,   PROTO_OP_NS_DROP,
            PROTO_OP_HELLO,     PROTO_OP_AUTH,      PROTO_OP_LOOKUP_EX,
            PROTO_OP_LOOKUP_EX, PROTO_OP_STORE_EX,  PROTO_OP_LEASE_RELEASE,
            PROTO_OP_NS_POLICY};
        op = ops[below(f, sizeof ops / sizeof ops[0])];
    }
    int rc = 0;
    switch (op) {
    case PROTO_OP_HELLO: {
        proto_hello_req r = {(uint16_t)below(f, 3), (uint16_t)below(f, 3),
                             (const uint8_t *)"wire-fuzz", 9};
        rc = proto_encode_hello_req(b, id, &r);
        break;
    }
    case PROTO_OP_AUTH: {
        proto_auth_req r = {(const uint8_t *)"guess", 5};
        /* Only the right token when the server has one. */
        if (f->token)
            r.token = (const uint8_t *)f->token, r.token_len = (uint16_t)strlen(f->token);
        rc = proto_encode_auth_req(b, id, &r);
        break;
    }
    case PROTO_OP_PING: {
        size_t n = chance(f, 98) ? below(f, 64) : below(f, 70000);
        fill_bytes(f, scratch_bytes, n);
        rc = proto_encode_ping(b, id, 0, scratch_bytes,
                               n > PROTO_MAX_PING ? PROTO_MAX_PING : n);
        break;
    }
    case PROTO_OP_STORE_EX:
    case PROTO_OP_STORE: {
        uint16_t dim = pick_dim(f, pi);
        if (dim > PROTO_MAX_DIM) dim = PROTO_MAX_DIM;
        fill_vector(f, scratch_vec, dim);
        proto_store_req r = {.ns = ns,
                             .ns_len = (uint8_t)ns_len,
                             .dim = dim,
                             .completion = (uint8_t)(chance(f, 90) ? 0 : below(f, 6)),
                             .ttl_s = chance(f, 80) ? 0 : below(f, 4),
                             .input_tokens = below(f, 1000),
                             .output_tokens = below(f, 1000),
                             .cost_micro_usd = below(f, 100000),
                             .vector = scratch_vec};
        if (chance(f, 50)) pick_prompt(f, &r.prompt, &r.prompt_len);
        r.response_len = chance(f, 99) ? below(f, 200) : below(f, 60000);
        fill_bytes(f, scratch_bytes, r.response_len);
        r.response = scratch_bytes;
        if (op == PROTO_OP_STORE_EX) {
            /* Mostly a lease this fuzzer was granted, else any id. */
            r.lease_id = f->n_leases && chance(f, 70) ? f->leases[below(f, f->n_leases)]
                         : chance(f, 50)              ? 0
                                                      : rnd(f);
            rc = proto_encode_store_ex_req(b, id, &r);
        } else {
            rc = proto_encode_store_req(b, id, &r);
        }
        break;
    }
    case PROTO_OP_LEASE_RELEASE: {
        proto_ns_id_req r = {
            ns, (uint8_t)ns_len,
            f->n_leases && chance(f, 70) ? f->leases[below(f, f->n_leases)] : rnd(f)};
        rc = proto_encode_lease_release_req(b, id, &r);
        break;
    }
    case PROTO_OP_NS_POLICY: {
        proto_ns_policy p = {.set = (uint8_t)below(f, 2)};
        if (p.set) {
            p.mode = (uint8_t)below(f, 3);
            p.gray_band = chance(f, 80) ? (float)below(f, 1001) / 1000.0f : rnd_float(f);
        }
        rc = proto_encode_ns_policy_req(b, id, ns, (uint8_t)ns_len, &p);
        break;
    }
    case PROTO_OP_LOOKUP_EX:
    case PROTO_OP_LOOKUP: {
        uint16_t dim = pick_dim(f, pi);
        if (dim > PROTO_MAX_DIM) dim = PROTO_MAX_DIM;
        fill_vector(f, scratch_vec, dim);
        proto_lookup_req r = {
            .ns = ns,
            .ns_len = (uint8_t)ns_len,
            .dim = dim,
            .k = (uint16_t)(chance(f, 90) ? 1 + below(f, 10) : below(f, 300)),
            .threshold =
                chance(f, 95) ? (float)below(f, 2001) / 1000.0f - 1.0f : rnd_float(f),
            .ef = (uint16_t)(chance(f, 70) ? 0 : below(f, 2000)),
            .vector = scratch_vec};
        if (chance(f, 30)) pick_prompt(f, &r.prompt, &r.prompt_len);
        uint16_t flags = chance(f, 50) ? PROTO_FLAG_WANT_PROMPT : 0;
        if (op == PROTO_OP_LOOKUP) {
            rc = proto_encode_lookup_req(b, id, flags, &r);
            break;
        }
        r.options = (uint16_t)(chance(f, 95) ? below(f, 4) : rnd(f));
        if (r.options & PROTO_LOOKUP_LEASE) {
            /* Short waits and leases mostly, so that they end during the
             * run; now and then the longest the protocol allows. */
            r.wait_ms = chance(f, 95) ? below(f, 300) : (uint32_t)rnd(f);
            r.lease_ms = chance(f, 95) ? below(f, 500) : (uint32_t)rnd(f);
        }
        rc = proto_encode_lookup_ex_req(b, id, flags, &r);
        break;
    }
    case PROTO_OP_DELETE: {
        proto_ns_id_req r = {ns, (uint8_t)ns_len,
                             f->n_ids && chance(f, 80) ? f->ids[below(f, f->n_ids)]
                                                       : rnd(f)};
        rc = proto_encode_delete_req(b, id, &r);
        break;
    }
    case PROTO_OP_FLUSH: rc = proto_encode_flush_req(b, id, ns, (uint8_t)ns_len); break;
    case PROTO_OP_NS_INFO:
        rc = proto_encode_ns_info_req(b, id, ns, (uint8_t)ns_len);
        break;
    case PROTO_OP_NS_DROP:
        rc = proto_encode_ns_drop_req(b, id, ns, (uint8_t)ns_len);
        break;
    case PROTO_OP_NS_LIST: rc = proto_encode_ns_list_req(b, id); break;
    case PROTO_OP_STATS:
        rc = proto_encode_stats_req(b, id, ns, chance(f, 30) ? 0 : (uint8_t)ns_len);
        break;
    case PROTO_OP_NS_CREATE: {
        proto_ns_config c;
        ns_config(f, &c, pick_dim(f, pi));
        rc = proto_encode_ns_create_req(b, id, ns, (uint8_t)ns_len, &c);
        break;
    }
    }
    if (rc != 0) die("cannot encode op 0x%02x: %s", op, deja_strerror(rc));
    f->frames++;
}

/* Mutates the body of the frame that starts at b->data + start, keeping
 * body_len equal to the bytes that follow, so framing stays intact. */
static void mutate_last(fuzzer *f, size_t start) {
    proto_buf *b = &f->out;
    uint8_t *h = b->data + start;
    size_t body = b->len - start - PROTO_HEADER_SIZE;
    if (f->token && h[3] == PROTO_OP_AUTH) return; /* a wrong token: see the top */
    unsigned rounds = 1 + below(f, 4);
    for (unsigned r = 0; r < rounds; r++) {
        uint8_t *p = b->data + start + PROTO_HEADER_SIZE;
        switch (below(f, 9)) {
        case 0: /* flip bits */
            if (body) p[below(f, (uint32_t)body)] ^= (uint8_t)(1u << below(f, 8));
            break;
        case 1: /* an interesting byte */
            if (body) p[below(f, (uint32_t)body)] = (uint8_t)interesting_u32(f);
            break;
        case 2: /* an interesting u16/u32 anywhere */
            if (body >= 4) {
                uint32_t v = interesting_u32(f);
                memcpy(p + below(f, (uint32_t)body - 3), &v, chance(f, 50) ? 2 : 4);
            }
            break;
        case 3: /* truncate */
            if (body) body = below(f, (uint32_t)body);
            break;
        case 4: /* append garbage */
        case 5: {
            size_t n = 1 + below(f, 16);
            b->len = start + PROTO_HEADER_SIZE + body;
            if (proto_buf_reserve(b, n) != 0) die("no memory");
            fill_bytes(f, b->data + b->len, n);
            body += n;
            h = b->data + start;
            break;
        }
        case 6: /* delete a range */
            if (body > 2) {
                size_t at = below(f, (uint32_t)body),
                       n = 1 + below(f, (uint32_t)(body - at));
                memmove(p + at, p + at + n, body - at - n);
                body -= n;
            }
            break;
        case 7: /* header fields that keep the framing */
            switch (below(f, 4)) {
            case 0: h[3] = random_op(f); break;                            /* opcode */
            case 1: h[4] = (uint8_t)rnd(f), h[5] = (uint8_t)rnd(f); break; /* flags */
            case 2: h[6] = (uint8_t)below(f, 3); break;                    /* status */
            default: h[5] |= 0x80; break;                                  /* REPLY */
            }
            break;
        default: /* the first byte (namespace length) */
            if (body) p[0] = (uint8_t)(p[0] + (uint8_t)below(f, 5) - 2);
            break;
        }
        b->len = start + PROTO_HEADER_SIZE + body;
    }
    uint32_t len32 = (uint32_t)body;
    memcpy(h + 12, &len32, 4);
}

/* A frame of a random opcode, flags and body. */
static void gen_random_frame(fuzzer *f) {
    proto_header h = {PROTO_VERSION,
                      random_op(f),
                      (uint16_t)(chance(f, 80) ? 0 : rnd(f)),
                      (uint16_t)(chance(f, 90) ? 0 : rnd(f)),
                      take_id(f),
                      below(f, 64)};
    if (proto_buf_reserve(&f->out, PROTO_HEADER_SIZE + h.body_len) != 0) die("no memory");
    proto_header_write(f->out.data + f->out.len, &h);
    fill_bytes(f, f->out.data + f->out.len + PROTO_HEADER_SIZE, h.body_len);
    f->out.len += PROTO_HEADER_SIZE + h.body_len;
    f->frames++;
}

/* A namespace's life, fields mutated now and then. */
static void gen_sequence(fuzzer *f) {
    static const int ops[] = {
        PROTO_OP_NS_CREATE, PROTO_OP_STORE,         PROTO_OP_STORE,
        PROTO_OP_STORE,     PROTO_OP_LOOKUP,        PROTO_OP_NS_INFO,
        PROTO_OP_LOOKUP_EX, PROTO_OP_LOOKUP_EX,     PROTO_OP_STORE_EX,
        PROTO_OP_NS_POLICY, PROTO_OP_LEASE_RELEASE, PROTO_OP_DELETE,
        PROTO_OP_LOOKUP,    PROTO_OP_FLUSH,         PROTO_OP_STATS,
        PROTO_OP_NS_DROP};
    int ns = (int)below(f, NS_POOL);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        size_t start = f->out.len;
        gen_request(f, ops[i], ns);
        if (chance(f, 10)) mutate_last(f, start);
    }
}

/* ---- the connection ---------------------------------------------------------*/

static void conn_close(fuzzer *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    f->rx_len = 0;
    f->sync_want = 0;
}

static void conn_open(fuzzer *f) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)f->port);
    if (inet_pton(AF_INET, f->host, &sa.sin_addr) != 1) die("bad host %s", f->host);
    for (int attempt = 0;; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            f->fd = fd;
            f->connects++;
            break;
        }
        int err = errno;
        close(fd);
        /* Refused means nobody listens: dejad is gone. A busy server may
         * refuse for a moment when the accept queue is full. */
        if (attempt >= 50)
            die("cannot connect to dejad: %s (is it still running?)", strerror(err));
        usleep(20000);
    }
    f->authed = 0;
    if (f->token && chance(f, 92)) {
        proto_auth_req r = {(const uint8_t *)f->token, (uint16_t)strlen(f->token)};
        if (below(f, 1000) == 0)
            r.token = (const uint8_t *)"a-wrong-guess", r.token_len = 13;
        if (proto_encode_auth_req(&f->out, take_id(f), &r) != 0) die("no memory");
        f->authed = 1;
    }
}

/* Checks and consumes the complete reply frames in rx. */
static void take_replies(fuzzer *f) {
    size_t off = 0;
    for (;;) {
        proto_header h;
        int r = proto_parse_frame(f->rx + off, f->rx_len - off, REPLY_MAX, &h);
        if (r == 0) break;
        if (r < 0) {
            fprintf(stderr, "wire-fuzz: unparseable reply stream: %s\n",
                    deja_strerror(r));
            f->violations++;
            conn_close(f);
            return;
        }
        const uint8_t *body = f->rx + off + PROTO_HEADER_SIZE;
        f->replies++;
        if (!(h.flags & PROTO_FLAG_REPLY) || h.status >= 100) {
            fprintf(stderr, "wire-fuzz: reply op 0x%02x id %u: flags 0x%04x status %u\n",
                    h.opcode, h.request_id, h.flags, h.status);
            f->violations++;
        } else if (h.status != 0) {
            const uint8_t *msg;
            uint16_t msg_len;
            if (proto_decode_error(body, h.body_len, &msg, &msg_len) != 0) {
                fprintf(stderr, "wire-fuzz: error reply op 0x%02x status %u: bad body\n",
                        h.opcode, h.status);
                f->violations++;
            }
        } else if (h.opcode == PROTO_OP_STORE || h.opcode == PROTO_OP_STORE_EX) {
            uint64_t id;
            if (proto_decode_store_resp(body, h.body_len, &id) == 0)
                f->ids[f->n_ids < 64 ? f->n_ids++ : below(f, 64)] = id;
        } else if (h.opcode == PROTO_OP_LOOKUP_EX) {
            static proto_hit hits[PROTO_MAX_K], shadow[PROTO_MAX_K];
            proto_lookup_ex_resp resp = {.hits = hits, .shadow = shadow};
            if (proto_decode_lookup_ex_resp(body, h.body_len, PROTO_MAX_K, &resp) != 0) {
                fprintf(stderr, "wire-fuzz: LOOKUP_EX reply id %u does not decode\n",
                        h.request_id);
                f->violations++;
            } else if (resp.outcome == PROTO_OUTCOME_LEASE) {
                f->leases[f->n_leases < 16 ? f->n_leases++ : below(f, 16)] =
                    resp.lease_id;
            }
        }
        if (f->sync_want && h.request_id == f->sync_want && h.opcode == PROTO_OP_PING)
            f->sync_seen = 1;
        off += (size_t)r;
    }
    memmove(f->rx, f->rx + off, f->rx_len - off);
    f->rx_len -= off;
}

/* Reads what is there (waiting up to wait_ms for something). Returns 0,
 * or -1 when the server closed the connection. */
static int pump_read(fuzzer *f, int wait_ms) {
    struct pollfd pf = {f->fd, POLLIN, 0};
    int n = poll(&pf, 1, wait_ms);
    if (n <= 0) return 0;
    if (f->rx_cap - f->rx_len < 65536) {
        size_t cap = f->rx_cap ? f->rx_cap * 2 : 1 << 20;
        uint8_t *p = realloc(f->rx, cap);
        if (!p) die("no memory");
        f->rx = p;
        f->rx_cap = cap;
    }
    ssize_t got = recv(f->fd, f->rx + f->rx_len, f->rx_cap - f->rx_len, MSG_DONTWAIT);
    if (got > 0) {
        f->rx_len += (size_t)got;
        take_replies(f);
        return f->fd >= 0 ? 0 : -1;
    }
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    f->closed_by_server++;
    conn_close(f);
    return -1;
}

/* Sends f->out while reading replies (so a server that pauses reading
 * until its replies are read cannot deadlock us). -1 if it closed. */
static int pump_send(fuzzer *f) {
    size_t sent = 0;
    int64_t last_progress = now_ms();
    while (sent < f->out.len) {
        struct pollfd pf = {f->fd, POLLIN | POLLOUT, 0};
        if (poll(&pf, 1, 1000) < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (pump_read(f, 0) < 0) return -1;
        }
        if (pf.revents & POLLOUT) {
            ssize_t w = send(f->fd, f->out.data + sent, f->out.len - sent,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                sent += (size_t)w;
                last_progress = now_ms();
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                f->closed_by_server++;
                conn_close(f);
                return -1;
            }
        }
        if (now_ms() - last_progress > SYNC_TIMEOUT_MS)
            die("dejad has not read a byte for %d ms", SYNC_TIMEOUT_MS);
    }
    proto_buf_reset(&f->out);
    return 0;
}

/* PING and wait for its reply. -1 if the server closed the connection. */
static int sync_ping(fuzzer *f) {
    static uint32_t serial;
    f->sync_want = SYNC_ID_BASE + (serial++ & 0x0FFFFFFF);
    f->sync_seen = 0;
    if (proto_encode_ping(&f->out, f->sync_want, 0, (const uint8_t *)"sync", 4) != 0)
        die("no memory");
    if (pump_send(f) < 0) return -1;
    int64_t deadline = now_ms() + SYNC_TIMEOUT_MS;
    while (!f->sync_seen) {
        if (now_ms() > deadline)
            die("dejad did not answer PING within %d ms", SYNC_TIMEOUT_MS);
        if (pump_read(f, 100) < 0) return -1;
    }
    f->sync_want = 0;
    f->syncs++;
    return 0;
}

/* Waits for the server to close a connection it must close (after a
 * stream error, or our half-close, once the replies owed are sent).
 * Whether it does is other tests' business (test-integration-*); here a
 * connection left open is only counted, after CLOSE_WAIT_MS, and closed. */
static void drain_to_close(fuzzer *f) {
    int64_t deadline = now_ms() + CLOSE_WAIT_MS;
    while (f->fd >= 0 && now_ms() < deadline)
        pump_read(f, 50);
    if (f->fd >= 0) {
        f->left_open++;
        conn_close(f);
    }
}

/* Ends the connection with something that breaks the stream. */
static void break_stream(fuzzer *f) {
    proto_header h = {PROTO_VERSION, PROTO_OP_PING, 0, 0, take_id(f), 8};
    uint8_t raw[PROTO_HEADER_SIZE + 8];
    memset(raw + PROTO_HEADER_SIZE, 'z', 8);
    int close_after = 1;
    switch (below(f, 6)) {
    case 0:
        proto_header_write(raw, &h);
        raw[below(f, 2)] ^= 0x20;
        break; /* magic */
    case 1:
        proto_header_write(raw, &h);
        raw[2] = (uint8_t)(2 + below(f, 250));
        break;
    case 2: /* oversized: refused from its header */
        h.body_len = chance(f, 50) ? 0xFFFFFFFFu : PROTO_DEFAULT_MAX_FRAME;
        proto_header_write(raw, &h);
        break;
    case 3: /* truncated, then our side closes */
        h.body_len = 1000;
        proto_header_write(raw, &h);
        close_after = 0;
        break;
    case 4: /* a partial header, then our side closes */
        proto_header_write(raw, &h);
        close_after = 0;
        break;
    default: /* plain text */
        memcpy(raw, "GET / HTTP/1.1\r\nHost: x\r\n", sizeof raw);
        break;
    }
    size_t n = !close_after && h.body_len == 8 ? 1 + below(f, PROTO_HEADER_SIZE - 1)
                                               : sizeof raw;
    if (proto_buf_reserve(&f->out, n) != 0) die("no memory");
    memcpy(f->out.data + f->out.len, raw, n);
    f->out.len += n;
    f->frames++;
    f->stream_breaks++;
    if (pump_send(f) < 0) return;
    if (close_after) {
        drain_to_close(f);
    } else {
        pump_read(f, 10);
        conn_close(f);
    }
}

static void reset_conn(fuzzer *f) {
    struct linger lg = {1, 0};
    setsockopt(f->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    conn_close(f);
    f->resets++;
}

static void half_close(fuzzer *f) {
    shutdown(f->fd, SHUT_WR);
    f->half_closes++;
    drain_to_close(f);
}

/* ---- main -------------------------------------------------------------------*/

static void usage(void) {
    fprintf(stderr,
            "usage: wire-fuzz -p PORT -n FRAMES [-h HOST] [-s SEED] [-t TOKEN] [-f]\n");
    exit(2);
}

int main(int argc, char **argv) {
    fuzzer f;
    memset(&f, 0, sizeof f);
    f.host = "127.0.0.1";
    f.fd = -1;
    f.next_id = 1;
    f.rng = 0x9E3779B97F4A7C15ull;
    proto_buf_init(&f.out);
    int opt;
    while ((opt = getopt(argc, argv, "h:p:n:s:t:f")) != -1) {
        switch (opt) {
        case 'h': f.host = optarg; break;
        case 'p': f.port = atoi(optarg); break;
        case 'n': f.target = strtoull(optarg, NULL, 10); break;
        case 's': f.rng ^= strtoull(optarg, NULL, 10) * 0x100000001B3ull; break;
        case 't': f.token = optarg; break;
        case 'f': f.faiss = 1; break;
        default: usage();
        }
    }
    if (f.port <= 0 || f.target == 0) usage();
    if (f.rng == 0) f.rng = 1;

    int64_t started = now_ms(), last_report = started;
    while (f.frames < f.target) {
        if (f.fd < 0) conn_open(&f);
        /* One burst: pipelined frames of every kind. */
        unsigned burst = chance(&f, 10) ? 1 + below(&f, 256) : 1 + below(&f, 24);
        for (unsigned i = 0; i < burst && f.frames < f.target; i++) {
            unsigned what = below(&f, 100);
            size_t start = f.out.len;
            if (what < 50) {
                gen_request(&f, -1, -1);
            } else if (what < 80) {
                gen_request(&f, -1, -1);
                mutate_last(&f, start);
            } else if (what < 90) {
                gen_random_frame(&f);
            } else {
                gen_sequence(&f);
            }
        }
        if (pump_send(&f) < 0) continue;
        /* Now and then the connection ends badly. */
        unsigned end = below(&f, 1000);
        if (end < 8) {
            break_stream(&f);
        } else if (end < 14) {
            reset_conn(&f);
        } else if (end < 18) {
            half_close(&f);
        } else if (chance(&f, 50) || f.token) {
            /* With a token, a connection that never authenticated gets
             * AUTH_REQUIRED for everything: the PING still answers. */
            sync_ping(&f);
        } else {
            pump_read(&f, 0);
        }
        if (now_ms() - last_report > 10000) {
            last_report = now_ms();
            fprintf(stderr, "wire-fuzz: %llu frames, %llu replies, %llu connections\n",
                    (unsigned long long)f.frames, (unsigned long long)f.replies,
                    (unsigned long long)f.connects);
        }
    }
    /* The server must still answer, on a fresh connection too. */
    if (f.fd < 0) conn_open(&f);
    if (sync_ping(&f) < 0) {
        conn_open(&f);
        if (sync_ping(&f) < 0) die("dejad closed a fresh connection on PING");
    }
    conn_close(&f);
    conn_open(&f);
    if (sync_ping(&f) < 0) die("dejad closed a fresh connection on PING");
    conn_close(&f);

    double secs = (double)(now_ms() - started) / 1000.0;
    printf("wire-fuzz: %llu frames in %.1f s (%.0f/s), %llu replies, %llu syncs, "
           "%llu connections (%llu closed by dejad, %llu resets, %llu half-closes, "
           "%llu stream breaks, %llu of these two left open by dejad), "
           "%llu protocol violations\n",
           (unsigned long long)f.frames, secs, (double)f.frames / (secs > 0 ? secs : 1),
           (unsigned long long)f.replies, (unsigned long long)f.syncs,
           (unsigned long long)f.connects, (unsigned long long)f.closed_by_server,
           (unsigned long long)f.resets, (unsigned long long)f.half_closes,
           (unsigned long long)f.stream_breaks, (unsigned long long)f.left_open,
           (unsigned long long)f.violations);
    proto_buf_free(&f.out);
    free(f.rx);
    return f.violations ? 2 : 0;
}
