/* srv-ops.c: the op table and its handlers, and the one place that maps
 * the wire's types (proto.h) to the engine's (cache.h) and back.
 *
 * The table is data: {opcode, name, handler, min_body, max_body, flags},
 * one entry per row of the protocol's opcode table (proto/deja-ops.h).
 * srv_dispatch validates what every op shares (authentication first, then
 * known opcode, request header fields, body size bounds, and the token's
 * rights on the namespace the body starts with) before any handler runs,
 * so a handler only decodes its own body and does its own work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv-private.h"
#include "idx.h"

#define OP_PREAUTH 0x1u  /* allowed before AUTH */
#define SRV_MAX_EF 1024u /* larger LOOKUP ef values are clamped */
#define OP_NS 0x2u       /* the body starts with str8 namespace */
#define OP_NS_ANY 0x4u   /* ... which may be empty (STATS: the whole server) */
#define OP_READ 0x10u    /* rights the token needs (SRV_RIGHT_* << 4) */
#define OP_WRITE 0x20u
#define OP_ADMIN 0x40u
#define OP_RIGHTS(flags) (((flags) >> 4) & SRV_RIGHTS_ALL)

typedef int (*op_fn)(srv_req *r);

typedef struct srv_op {
    uint8_t opcode;
    const char *name;
    op_fn handler;
    uint32_t min_body;
    uint32_t max_body;
    unsigned flags;
} srv_op;

/* Each row of the table in deja-ops.h becomes one entry here, its
 * handler bound by name (op_<name>): a row without a handler does not
 * link, and a handler without a row is an unused static function, which
 * the compiler warns about. */
#define OP_ACCESS_PREAUTH OP_PREAUTH
#define OP_ACCESS_READ OP_READ
#define OP_ACCESS_WRITE OP_WRITE
#define OP_ACCESS_ADMIN OP_ADMIN
#define OP_NAMES_NONE 0u
#define OP_NAMES_NAMED OP_NS
#define OP_NAMES_ANY (OP_NS | OP_NS_ANY)

#define OP_DECLARE_(NAME, name, code, access, ns, min_body, max_body)                    \
    static int op_##name(srv_req *r);
PROTO_OP_TABLE(OP_DECLARE_)
#undef OP_DECLARE_

static const srv_op op_table[] = {
#define OP_ROW_(NAME, name, code, access, ns, min_body, max_body)                        \
    {PROTO_OP_##NAME, #NAME,    op_##name,                                               \
     min_body,        max_body, OP_ACCESS_##access | OP_NAMES_##ns},
    PROTO_OP_TABLE(OP_ROW_)
#undef OP_ROW_
};

static const srv_op *find_op(uint8_t opcode) {
    for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
        if (op_table[i].opcode == opcode) return &op_table[i];
    return NULL;
}

int srv_auth_check(srv_server *s, const uint8_t *token, size_t len, srv_scope *scope) {
    pthread_mutex_lock(&s->tokens_mu);
    int ok = srv_tokens_match(s->tokens, token, len, scope);
    pthread_mutex_unlock(&s->tokens_mu);
    return ok;
}

/* After a reload (SIGHUP) a connection's token may have new rights or be
 * gone; a revoked token leaves the connection unauthenticated. */
static void refresh_scope(srv_req *r) {
    srv_server *s = r->srv;
    srv_conn *c = r->conn;
    unsigned gen = atomic_load(&s->tokens_gen);
    if (!s->auth_required || !c->authed || c->scope_gen == gen) return;
    pthread_mutex_lock(&s->tokens_mu);
    if (!srv_tokens_find_id(s->tokens, c->scope.token_id, &c->scope)) {
        c->authed = 0;
        memset(&c->scope, 0, sizeof c->scope);
    }
    pthread_mutex_unlock(&s->tokens_mu);
    c->scope_gen = gen;
}

/* The token's rights for op and the namespace its body names. The
 * namespace is peeked here; a body too short to hold it fails in the
 * handler's decoder. FORBIDDEN says nothing about whether a namespace
 * outside the token's prefix exists. */
static int check_scope(srv_req *r, const srv_op *op) {
    const srv_scope *scope = &r->conn->scope;
    unsigned need = OP_RIGHTS(op->flags);
    if ((scope->rights & need) != need) {
        snprintf(r->errmsg, sizeof r->errmsg, "%s: this token lacks the %s right",
                 op->name,
                 need & SRV_RIGHT_ADMIN   ? "admin"
                 : need & SRV_RIGHT_WRITE ? "write"
                                          : "read");
        return DEJA_ERR_FORBIDDEN;
    }
    if (!(op->flags & OP_NS) || scope->prefix_len == 0 || r->hdr->body_len < 1) return 0;
    uint8_t ns_len = r->body[0];
    if (1u + ns_len > r->hdr->body_len) return 0;
    if (ns_len == 0 && (op->flags & OP_NS_ANY)) return 0; /* filtered by the handler */
    if (srv_scope_allows_ns(scope, r->body + 1, ns_len)) return 0;
    snprintf(r->errmsg, sizeof r->errmsg,
             "%s: namespace outside this token's prefix '%.*s'", op->name,
             (int)scope->prefix_len, scope->prefix);
    return DEJA_ERR_FORBIDDEN;
}

int srv_dispatch(srv_req *r) {
    const proto_header *h = r->hdr;
    const srv_op *op = find_op(h->opcode);
    size_t mark = r->out->len;
    int rc;
    refresh_scope(r);
    if (!r->conn->authed && !(op && (op->flags & OP_PREAUTH))) {
        /* Before AUTH nothing else is looked at, not even the opcode. */
        rc = DEJA_ERR_AUTH_REQUIRED;
    } else if (!op) {
        rc = DEJA_ERR_UNKNOWN_OP;
        snprintf(r->errmsg, sizeof r->errmsg, "unknown opcode 0x%02x", h->opcode);
    } else if ((h->flags & PROTO_FLAG_REPLY) || h->status != 0) {
        rc = DEJA_ERR_BAD_REQUEST;
        snprintf(r->errmsg, sizeof r->errmsg,
                 "%s: requests must have the reply flag and status clear", op->name);
    } else if (h->body_len < op->min_body || h->body_len > op->max_body) {
        rc = DEJA_ERR_BAD_REQUEST;
        snprintf(r->errmsg, sizeof r->errmsg, "%s: body of %u bytes is invalid", op->name,
                 h->body_len);
    } else if ((rc = check_scope(r, op)) == 0) {
        rc = op->handler(r);
    }
    if (rc >= 0) return rc; /* replied, or SRV_DEFERRED */
    /* A handler that failed may have written part of a reply: drop it. */
    r->out->len = mark;
    if (rc == DEJA_ERR_QUARANTINED && !r->errmsg[0] && op && (op->flags & OP_NS) &&
        h->body_len >= 1 && 1u + r->body[0] <= h->body_len)
        cache_ns_quarantined(r->srv->cache, r->body + 1, r->body[0], r->errmsg,
                             sizeof r->errmsg); /* says why */
    const char *msg = r->errmsg[0] ? r->errmsg : deja_strerror(rc);
    if (rc < DEJA_ERR_WIRE_MIN) rc = DEJA_ERR_INTERNAL;
    srv_count_error(r->srv, rc);
    return proto_encode_error(r->out, h->opcode, h->request_id, rc, msg);
}

static int op_hello(srv_req *r) {
    proto_hello_req req;
    int rc = proto_decode_hello_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    if (req.min_version > req.max_version || req.min_version > PROTO_PROTOCOL_MAX ||
        req.max_version < 1) {
        snprintf(r->errmsg, sizeof r->errmsg,
                 "server speaks versions 1..%u, client asked %u..%u", PROTO_PROTOCOL_MAX,
                 req.min_version, req.max_version);
        return DEJA_ERR_VERSION;
    }
    uint16_t version =
        req.max_version < PROTO_PROTOCOL_MAX ? req.max_version : PROTO_PROTOCOL_MAX;
    static const char name[] = "dejad " DEJA_VERSION;
    proto_hello_resp resp = {
        .version = version,
        .max_dim = PROTO_MAX_DIM,
        .max_frame = r->srv->cfg->max_frame,
        .server_flags = r->srv->auth_required ? PROTO_SERVER_AUTH_REQUIRED : 0,
        .server_name = (const uint8_t *)name,
        .server_name_len = sizeof name - 1,
    };
    return proto_encode_hello_resp(r->out, r->hdr->request_id, &resp);
}

/* The verdict comes from the connection's AUTH wait (srv-conn.c) once the
 * guard lets this source have one: at once for a source without recent
 * failures, spaced out after them. */
static int op_auth(srv_req *r) {
    proto_auth_req req;
    int rc = proto_decode_auth_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    srv_server *s = r->srv;
    if (!s->auth_required) /* no tokens: AUTH always succeeds */
        return proto_encode_empty_resp(r->out, PROTO_OP_AUTH, r->hdr->request_id);
    int64_t delay = srv_auth_guard_reserve(s->guard, &r->conn->source, srv_now_ms());
    if (delay < 0) {
        atomic_fetch_add(&s->auth_throttled, 1);
        srv_log_limited(&s->log_auth, SRV_LOG_WARN,
                        "AUTH refused: too many attempts waiting from one source");
        snprintf(r->errmsg, sizeof r->errmsg,
                 "too many AUTH attempts from this address; retry later");
        r->close_after = 1;
        return DEJA_ERR_BUSY;
    }
    rc = srv_conn_defer_auth(r->conn, r->hdr->request_id, req.token, req.token_len,
                             (uint64_t)delay);
    if (rc) {
        srv_auth_guard_verdict(s->guard, &r->conn->source, -1, srv_now_ms());
        return rc;
    }
    return SRV_DEFERRED;
}

/* ---- wire <-> engine ---------------------------------------------------------
 * Field by field, so that a protocol v2 changes this file and not the
 * engine. The engine's limits hold everything v1 can carry. */

_Static_assert(CACHE_MAX_K >= PROTO_MAX_K, "a LOOKUP's k fits the engine");
_Static_assert(CACHE_MAX_DIM >= PROTO_MAX_DIM, "a vector fits the engine");
_Static_assert(CACHE_MAX_NS_LEN >= PROTO_MAX_NS_LEN, "a name fits the engine");
_Static_assert(CACHE_MAX_FACTORY >= 255, "a factory string fits the engine");

static enum cache_completion completion_of(uint8_t wire) {
    switch (wire) {
    case PROTO_COMPLETION_OK: return CACHE_COMPLETION_OK;
    case PROTO_COMPLETION_ERROR: return CACHE_COMPLETION_ERROR;
    case PROTO_COMPLETION_TRUNCATED: return CACHE_COMPLETION_TRUNCATED;
    default: return CACHE_COMPLETION_FILTERED; /* the decoder allows <= 3 */
    }
}

static cache_store_args store_args_of(const proto_store_req *req) {
    return (cache_store_args){
        .ns = req->ns,
        .ns_len = req->ns_len,
        .dim = req->dim,
        .completion = completion_of(req->completion),
        .ttl_s = req->ttl_s,
        .input_tokens = req->input_tokens,
        .output_tokens = req->output_tokens,
        .cost_micro_usd = req->cost_micro_usd,
        .prompt = req->prompt,
        .prompt_len = req->prompt_len,
        .response = req->response,
        .response_len = req->response_len,
    };
}

static cache_query query_of(const proto_lookup_req *req) {
    return (cache_query){
        .ns = req->ns,
        .ns_len = req->ns_len,
        .dim = req->dim,
        .k = req->k,
        .threshold = req->threshold,
        .ef = req->ef,
        .prompt = req->prompt,
        .prompt_len = req->prompt_len,
    };
}

static enum cache_index_kind index_kind_of(uint8_t wire) {
    switch (wire) {
    case PROTO_INDEX_FLAT: return CACHE_INDEX_FLAT;
    case PROTO_INDEX_HNSW: return CACHE_INDEX_HNSW;
    case PROTO_INDEX_FAISS: return CACHE_INDEX_FAISS;
    default: return CACHE_INDEX_DEFAULT;
    }
}

static uint8_t wire_index_kind(enum cache_index_kind kind) {
    switch (kind) {
    case CACHE_INDEX_FLAT: return PROTO_INDEX_FLAT;
    case CACHE_INDEX_HNSW: return PROTO_INDEX_HNSW;
    case CACHE_INDEX_FAISS: return PROTO_INDEX_FAISS;
    default: return PROTO_INDEX_DEFAULT;
    }
}

static uint32_t ns_flags_of(uint8_t wire) {
    return ((wire & PROTO_NS_ALLOW_NON_OK) ? CACHE_NS_ALLOW_NON_OK : 0u) |
           ((wire & PROTO_NS_NO_DEDUP) ? CACHE_NS_NO_DEDUP : 0u) |
           ((wire & PROTO_NS_EXPLICIT) ? CACHE_NS_EXPLICIT : 0u);
}

static uint8_t wire_ns_flags(uint32_t flags) {
    return (uint8_t)(((flags & CACHE_NS_ALLOW_NON_OK) ? PROTO_NS_ALLOW_NON_OK : 0u) |
                     ((flags & CACHE_NS_NO_DEDUP) ? PROTO_NS_NO_DEDUP : 0u) |
                     ((flags & CACHE_NS_EXPLICIT) ? PROTO_NS_EXPLICIT : 0u));
}

/* A decoded NS_CREATE configuration (checked by the decoder) as the
 * engine's. */
static void ns_config_of(const proto_ns_config *w, cache_ns_config *c) {
    *c = (cache_ns_config){
        .dim = w->dim,
        .index_kind = index_kind_of(w->index_kind),
        .quant = w->quant ? IDX_QUANT_INT8 : IDX_QUANT_F32,
        .hnsw_m = w->hnsw_m,
        .hnsw_ef_construction = w->hnsw_ef_construction,
        .hnsw_ef_search = w->hnsw_ef_search,
        .ttl_mode =
            w->ttl_mode == PROTO_TTL_SLIDING ? CACHE_TTL_SLIDING : CACHE_TTL_ABSOLUTE,
        .flags = ns_flags_of(w->flags),
        .min_threshold = w->min_threshold,
        .dedup = w->dedup,
        .default_ttl_s = w->default_ttl_s,
        .max_age_s = w->max_age_s,
        .max_bytes = w->max_bytes,
        .max_entries = w->max_entries,
        .faiss_factory_len = w->faiss_factory_len,
    };
    if (w->faiss_factory_len)
        memcpy(c->faiss_factory, w->faiss_factory, w->faiss_factory_len);
    c->faiss_factory[w->faiss_factory_len] = 0;
}

/* The engine's configuration as the wire block; w->faiss_factory points
 * into c. Values past a u16 field cannot occur (cache_ns_config_check). */
static void wire_ns_config(const cache_ns_config *c, proto_ns_config *w) {
    *w = (proto_ns_config){
        .dim = (uint16_t)c->dim,
        .index_kind = wire_index_kind(c->index_kind),
        .quant = c->quant == IDX_QUANT_INT8 ? 1 : 0,
        .hnsw_m = (uint16_t)c->hnsw_m,
        .hnsw_ef_construction = (uint16_t)c->hnsw_ef_construction,
        .hnsw_ef_search = (uint16_t)c->hnsw_ef_search,
        .ttl_mode =
            c->ttl_mode == CACHE_TTL_SLIDING ? PROTO_TTL_SLIDING : PROTO_TTL_ABSOLUTE,
        .flags = wire_ns_flags(c->flags),
        .min_threshold = c->min_threshold,
        .dedup = c->dedup,
        .default_ttl_s = c->default_ttl_s,
        .max_age_s = c->max_age_s,
        .max_bytes = c->max_bytes,
        .max_entries = c->max_entries,
        .faiss_factory = (const uint8_t *)c->faiss_factory,
        .faiss_factory_len = c->faiss_factory_len,
    };
}

/* Appends the engine's counters to stats[*n..max), keys as they are. */
static void wire_stats(const cache_stat *in, uint16_t count, proto_stat *stats,
                       uint16_t *n, uint16_t max) {
    for (uint16_t i = 0; i < count && *n < max; i++, (*n)++) {
        stats[*n].key = in[i].key;
        stats[*n].key_len = (uint8_t)strlen(in[i].key);
        stats[*n].value = in[i].value;
    }
}

static int op_ping(srv_req *r) {
    return proto_encode_ping(r->out, r->hdr->request_id, PROTO_FLAG_REPLY, r->body,
                             r->hdr->body_len);
}

/* A reply write with its store operations; NULL when out of memory. The
 * handler fills in what the reply needs and submits it. */
static srv_reply_write *reply_write(enum srv_reply_kind reply, store_op first) {
    srv_reply_write *rw = calloc(1, sizeof *rw);
    if (!rw) return NULL;
    rw->reply = reply;
    rw->base.ops[0] = first;
    rw->base.nops = 1;
    return rw;
}

/* Hands a write to the commit thread; the reply goes out once it is
 * durable (reply_done in srv-conn.c). */
static int submit(srv_req *r, srv_reply_write *rw) {
    srv_conn_submit_reply(r, rw);
    return SRV_DEFERRED;
}

/* Takes a request's vector in: decoded and validated by proto, then
 * L2-normalised by the index's normaliser, the one place deja normalises
 * (cosine becomes the inner product every index kernel computes). */
static int read_vector(srv_req *r, const uint8_t *src, uint16_t dim) {
    int rc = proto_vector_read(r->w->vec, src, dim);
    return rc ? rc : idx_normalize(r->w->vec, dim);
}

/* STORE and STORE_EX: a decoded request. A lease the STORE_EX carries
 * fails with the STORE (srv_lease_release), or is fulfilled once the
 * entry is durable (reply_done). */
static int store_decoded(srv_req *r, const proto_store_req *decoded) {
    proto_store_req req = *decoded;
    int rc = read_vector(r, req.vector, req.dim);
    if (rc) return rc;
    cache_pending *pending;
    cache_store_args args = store_args_of(&req);
    rc = cache_prepare_store(r->srv->cache, &args, r->w->vec, &pending);
    if (rc == DEJA_ERR_DIM_MISMATCH)
        snprintf(r->errmsg, sizeof r->errmsg,
                 "vector has dim %u; namespace '%.*s' has a different dim", req.dim,
                 (int)req.ns_len, (const char *)req.ns);
    else if (rc == DEJA_ERR_REJECTED)
        snprintf(r->errmsg, sizeof r->errmsg, "completion status %u is not cached",
                 req.completion);
    else if (rc == DEJA_ERR_STORAGE_FULL)
        snprintf(r->errmsg, sizeof r->errmsg,
                 "namespace '%.*s' would pass the server's limit of %llu namespaces "
                 "(--max-namespaces)",
                 (int)req.ns_len, (const char *)req.ns,
                 (unsigned long long)r->srv->cfg->max_namespaces);
    if (rc) return rc;
    /* A namespace record not yet on disk goes in the same transaction. */
    int persisted;
    const cache_ns_image *ns = cache_pending_ns(pending, &persisted);
    srv_reply_write *rw =
        reply_write(SRV_REPLY_STORE, (store_op){.kind = STORE_OP_PUT_NS});
    if (!rw) {
        cache_discard(pending);
        return DEJA_ERR_NOMEM;
    }
    srv_persist_entry_rec(cache_pending_entry(pending), &rw->entry_rec);
    store_op entry = {.kind = STORE_OP_PUT_ENTRY, .entry = &rw->entry_rec};
    if (persisted) {
        rw->base.ops[0] = entry;
    } else {
        srv_persist_ns_rec(ns, &rw->ns_rec);
        rw->base.ops[0].ns = &rw->ns_rec;
        rw->base.ops[rw->base.nops++] = entry;
    }
    rw->pending = pending;
    if (req.lease_id) {
        rw->lease_id = req.lease_id;
        rw->lease_ns_len = req.ns_len;
        memcpy(rw->lease_ns, req.ns, req.ns_len);
    }
    /* The STORE's bytes wait in memory until committed: they count in the
     * worker's client budget until its completion. */
    rw->held = r->hdr->body_len;
    return submit(r, rw);
}

static int op_store(srv_req *r) {
    proto_store_req req;
    int rc = proto_decode_store_req(r->body, r->hdr->body_len, &req);
    return rc ? rc : store_decoded(r, &req);
}

static int op_store_ex(srv_req *r) {
    proto_store_req req;
    int rc = proto_decode_store_ex_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    rc = store_decoded(r, &req);
    /* A STORE_EX that fails before its commit fails its lease: a waiter
     * is promoted (PROTOCOL.md 5.12). */
    if (rc < 0 && req.lease_id)
        srv_lease_release(r->srv->leases, req.ns, req.ns_len, req.lease_id);
    return rc;
}

static int op_lease_release(srv_req *r) {
    proto_ns_id_req req;
    int rc = proto_decode_lease_release_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    rc = srv_lease_release(r->srv->leases, req.ns, req.ns_len, req.id);
    if (rc == DEJA_ERR_NOT_FOUND)
        snprintf(r->errmsg, sizeof r->errmsg, "namespace '%.*s' has no lease %llu",
                 (int)req.ns_len, (const char *)req.ns, (unsigned long long)req.id);
    if (rc) return rc;
    return proto_encode_empty_resp(r->out, PROTO_OP_LEASE_RELEASE, r->hdr->request_id);
}

static int op_ns_policy(srv_req *r) {
    proto_ns_req req;
    proto_ns_policy wire;
    int rc = proto_decode_ns_policy_req(r->body, r->hdr->body_len, &req, &wire);
    if (rc) return rc;
    cache_policy set = {.shadow = wire.mode == PROTO_MODE_SHADOW,
                        .gray_band = wire.gray_band};
    cache_policy now;
    cache_ns_image rec;
    int changed = 0;
    rc = cache_ns_policy(r->srv->cache, req.ns, req.ns_len, wire.set ? &set : NULL, &now,
                         &changed, &rec);
    if (rc == DEJA_ERR_INVALID_ARG) rc = DEJA_ERR_BAD_REQUEST;
    if (rc == DEJA_ERR_NOT_FOUND)
        snprintf(r->errmsg, sizeof r->errmsg, "no namespace '%.*s'", (int)req.ns_len,
                 (const char *)req.ns);
    if (rc) return rc;
    proto_ns_policy out = {.mode = now.shadow ? PROTO_MODE_SHADOW : PROTO_MODE_SERVE,
                           .gray_band = now.gray_band};
    if (!changed) return proto_encode_ns_policy_resp(r->out, r->hdr->request_id, &out);
    /* Durable before the reply, like every change of a namespace. */
    srv_reply_write *rw =
        reply_write(SRV_REPLY_POLICY, (store_op){.kind = STORE_OP_PUT_NS});
    if (!rw) return DEJA_ERR_NOMEM;
    srv_persist_ns_rec(&rec, &rw->ns_rec);
    rw->base.ops[0].ns = &rw->ns_rec;
    rw->policy = out;
    return submit(r, rw);
}

/* Bytes a hit adds to a LOOKUP reply (LOOKUP_EX: 2 more, its flags). */
static size_t hit_wire_size(const proto_hit *h) {
    return 8 + 4 + 4 + 4 + (size_t)h->prompt_len + h->response_len;
}

/* Turns matches[0..n) into wire hits, their bytes read from the map
 * through rd (valid until it ends), and releases nothing; returns how many
 * hits were filled: the best first, until one does not fit in *room bytes
 * (taking what they use from *room). A match whose record is gone
 * (deleted since the search) is left out. */
static uint16_t wire_hits(store_reader *rd, const cache_match *matches, uint16_t n,
                          int want_prompt, size_t extra, proto_hit *hits, size_t *room) {
    uint16_t keep = 0;
    for (uint16_t i = 0; i < n; i++) {
        proto_hit *h = &hits[keep];
        if (srv_persist_read_hit(rd, matches[i].entry, want_prompt, h) != 0) continue;
        h->id = cache_entry_id(matches[i].entry);
        h->similarity = matches[i].similarity;
        h->flags = (uint8_t)((matches[i].exact ? PROTO_HIT_EXACT : 0) |
                             (matches[i].borderline ? PROTO_HIT_BORDERLINE : 0));
        size_t sz = hit_wire_size(h) + extra;
        if (sz > *room) break;
        *room -= sz;
        keep++;
    }
    return keep;
}

/* Begins the read a reply's hits are encoded from (none for no hits). */
static int begin_hits(srv_req *r, uint16_t n, store_reader **rd) {
    *rd = NULL;
    return n ? store_reader_begin(r->srv->store, rd) : 0;
}

static void release_matches(cache_match *matches, uint16_t n) {
    for (uint16_t i = 0; i < n; i++)
        cache_entry_release(matches[i].entry);
}

/* Decodes a lookup's vector and searches; messages for the errors. */
static int search(srv_req *r, const proto_lookup_req *req, int defer_miss,
                  cache_result *res) {
    cache_query query = query_of(req);
    query.defer_miss = defer_miss;
    int rc = cache_search(r->srv->cache, &query, r->w->vec, r->w->matches, res);
    if (rc == DEJA_ERR_DIM_MISMATCH)
        snprintf(r->errmsg, sizeof r->errmsg,
                 "vector has dim %u; namespace '%.*s' has a different dim", req->dim,
                 (int)req->ns_len, (const char *)req->ns);
    return rc;
}

static int serve_lookup(srv_req *r) {
    proto_lookup_req req;
    int rc = proto_decode_lookup_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    /* The search breadth is the client's to choose, within a bound: a
     * LOOKUP's cost must not be the client's to set without limit. */
    if (req.ef > SRV_MAX_EF) req.ef = SRV_MAX_EF;
    rc = read_vector(r, req.vector, req.dim);
    if (rc) return rc;
    cache_result res;
    rc = search(r, &req, 0, &res);
    if (rc) return rc;
    uint16_t n = res.count;
    if (res.shadow) { /* computed and counted; served as a miss */
        release_matches(r->w->matches, n);
        n = 0;
    }
    /* Keep the reply under the frame limit: drop the weakest hits that do
     * not fit (the best one always fits, since it was stored in a frame). */
    int want_prompt = (r->hdr->flags & PROTO_FLAG_WANT_PROMPT) != 0;
    size_t room = r->srv->cfg->max_frame - PROTO_HEADER_SIZE - 2;
    store_reader *rd;
    rc = begin_hits(r, n, &rd);
    if (rc) {
        release_matches(r->w->matches, n);
        return rc;
    }
    uint16_t keep = wire_hits(rd, r->w->matches, n, want_prompt, 0, r->w->hits, &room);
    /* The exact-tier hit is always the only one, and the best hit always
     * fits. */
    uint16_t reply_flags = 0;
    if (keep && (r->w->hits[0].flags & PROTO_HIT_EXACT)) reply_flags |= PROTO_FLAG_EXACT;
    if (keep && (r->w->hits[0].flags & PROTO_HIT_BORDERLINE))
        reply_flags |= PROTO_FLAG_BORDERLINE;
    rc = proto_encode_lookup_resp_flags(r->out, r->hdr->request_id, reply_flags,
                                        r->w->hits, keep);
    store_reader_end(rd);
    release_matches(r->w->matches, n);
    return rc;
}

/* Longest and default lease (PROTOCOL.md 5.11). */
#define SRV_LEASE_DEFAULT_MS 30000u
#define SRV_LEASE_MAX_MS 600000u

/* A LOOKUP_EX miss that asked for a lease: wait, hold a lease, or miss.
 * Returns SRV_DEFERRED (waiting), 1 + nothing when it must search again
 * (*retry), or encodes the reply. */
static int lease_miss(srv_req *r, const proto_lookup_req *req, const cache_result *res,
                      uint64_t gen, int *retry) {
    *retry = 0;
    uint32_t lease_ms = req->lease_ms ? req->lease_ms : SRV_LEASE_DEFAULT_MS;
    if (lease_ms > SRV_LEASE_MAX_MS) lease_ms = SRV_LEASE_MAX_MS;
    srv_lease_ask ask = {
        .ns = req->ns,
        .ns_len = req->ns_len,
        .dim = req->dim,
        .vec = r->w->vec,
        .threshold = res->threshold,
        .wait_ms = req->wait_ms,
        .lease_ms = lease_ms,
        .request_id = r->hdr->request_id,
        .header_flags = r->hdr->flags,
    };
    srv_lease_waiter *waiter = srv_lease_waiter_new(r->conn, &ask);
    if (!waiter) return DEJA_ERR_NOMEM;
    uint64_t lease_id = 0;
    enum srv_lease_verdict v =
        srv_lease_join(r->srv->leases, waiter, req->wait_ms, gen, &lease_id);
    if (v == SRV_LEASE_WAIT) {
        srv_conn_defer(r->conn, srv_lease_waiter_held(waiter));
        srv_lease_waiter_start(waiter);
        return SRV_DEFERRED;
    }
    srv_lease_waiter_free(waiter);
    if (v == SRV_LEASE_RETRY) {
        *retry = 1;
        return 0;
    }
    cache_count_outcome(r->srv->cache, req->ns, req->ns_len, CACHE_OUTCOME_MISS);
    proto_lookup_ex_resp resp = {
        .outcome = v == SRV_LEASE_GRANTED ? PROTO_OUTCOME_LEASE : PROTO_OUTCOME_MISS,
        .lease_id = lease_id,
    };
    return proto_encode_lookup_ex_resp(r->out, r->hdr->request_id, 0, &resp);
}

static int serve_lookup_ex(srv_req *r) {
    proto_lookup_req req;
    int rc = proto_decode_lookup_ex_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    if (req.ef > SRV_MAX_EF) req.ef = SRV_MAX_EF;
    rc = read_vector(r, req.vector, req.dim);
    if (rc) return rc;
    /* Leases go to callers that can fulfil them. */
    int lease = (req.options & PROTO_LOOKUP_LEASE) &&
                (r->conn->scope.rights & SRV_RIGHT_WRITE) && r->srv->leases;
    int want_prompt = (r->hdr->flags & PROTO_FLAG_WANT_PROMPT) != 0;
    for (int attempt = 0;; attempt++) {
        uint64_t gen = lease ? srv_leases_gen(r->srv->leases) : 0;
        cache_result res;
        rc = search(r, &req, lease, &res);
        if (rc) return rc;
        uint16_t n = res.count;
        if (n == 0 && !res.shadow && lease) {
            int retry;
            rc = lease_miss(r, &req, &res, gen, &retry);
            if (!retry || attempt > 0) return rc;
            continue; /* the lease we would have waited on was fulfilled */
        }
        proto_lookup_ex_resp resp = {.outcome = PROTO_OUTCOME_MISS};
        size_t room = r->srv->cfg->max_frame - PROTO_HEADER_SIZE - 14;
        store_reader *rd;
        rc = begin_hits(r, n, &rd);
        if (rc) {
            release_matches(r->w->matches, n);
            return rc;
        }
        uint16_t keep =
            wire_hits(rd, r->w->matches, n, want_prompt, 2, r->w->hits, &room);
        uint16_t header_flags = 0;
        if (res.shadow) {
            resp.reply_flags = PROTO_REPLY_SHADOW;
            if (req.options & PROTO_LOOKUP_WANT_SHADOW) {
                resp.shadow = r->w->hits;
                resp.shadow_count = keep;
            }
        } else if (keep) {
            resp.outcome = PROTO_OUTCOME_HIT;
            resp.hits = r->w->hits;
            resp.count = keep;
            if (r->w->hits[0].flags & PROTO_HIT_BORDERLINE)
                header_flags = PROTO_FLAG_BORDERLINE;
        }
        rc = proto_encode_lookup_ex_resp(r->out, r->hdr->request_id, header_flags, &resp);
        store_reader_end(rd);
        release_matches(r->w->matches, n);
        return rc;
    }
}

/* LOOKUP, timed for the service-time histogram (errors included). */
static int op_lookup(srv_req *r) {
    uint64_t t0 = srv_now_ns();
    int rc = serve_lookup(r);
    srv_hist_add(&r->srv->lookup_hist, srv_now_ns() - t0);
    return rc;
}

static int op_lookup_ex(srv_req *r) {
    uint64_t t0 = srv_now_ns();
    int rc = serve_lookup_ex(r);
    srv_hist_add(&r->srv->lookup_hist, srv_now_ns() - t0);
    return rc;
}

static int op_delete(srv_req *r) {
    proto_ns_id_req req;
    int rc = proto_decode_delete_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    uint32_t ns_id;
    rc = cache_delete(r->srv->cache, req.ns, req.ns_len, req.id, &ns_id);
    if (rc) return rc;
    srv_reply_write *rw =
        reply_write(SRV_REPLY_EMPTY,
                    (store_op){.kind = STORE_OP_DEL_ENTRY, .ns_id = ns_id, .id = req.id});
    return rw ? submit(r, rw) : DEJA_ERR_NOMEM;
}

static int op_flush(srv_req *r) {
    proto_ns_id_req req;
    int rc = proto_decode_flush_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    uint64_t removed = 0;
    uint32_t ns_id;
    rc = cache_flush(r->srv->cache, req.ns, req.ns_len, &removed, &ns_id);
    if (rc) return rc;
    if (ns_id == 0) /* unknown namespace: nothing to make durable */
        return proto_encode_u64_resp(r->out, PROTO_OP_FLUSH, r->hdr->request_id, 0);
    srv_reply_write *rw = reply_write(
        SRV_REPLY_U64, (store_op){.kind = STORE_OP_DEL_NS_ENTRIES, .ns_id = ns_id});
    if (!rw) return DEJA_ERR_NOMEM;
    rw->value = removed;
    return submit(r, rw);
}

static int op_stats(srv_req *r) {
    const uint8_t *ns;
    uint8_t ns_len;
    int rc = proto_decode_stats_req(r->body, r->hdr->body_len, &ns, &ns_len);
    if (rc) return rc;
    enum { MAX_COUNTERS = CACHE_STATS_MAX, MAX_STATS = CACHE_STATS_MAX + 40 };
    proto_stat stats[MAX_STATS];
    cache_stat counters[MAX_COUNTERS];
    uint16_t n = 0, count = 0;
    const srv_scope *scope = &r->conn->scope;
    if (ns_len == 0 && scope->prefix_len) {
        /* A tenant's server-wide view: its own namespaces, summed. */
        rc = cache_stats_prefix(r->srv->cache, (const uint8_t *)scope->prefix,
                                scope->prefix_len, counters, MAX_COUNTERS, &count);
        if (rc) return rc;
        wire_stats(counters, count, stats, &n, MAX_STATS);
        return proto_encode_stats_resp(r->out, r->hdr->request_id, stats, n);
    }
    rc = cache_stats(r->srv->cache, ns, ns_len, counters, MAX_COUNTERS, &count);
    if (rc) return rc;
    wire_stats(counters, count, stats, &n, MAX_STATS);
    if (ns_len == 0) {
        srv_server *s = r->srv;
        uint64_t commits, committed, failed, disk, map;
        srv_writer_stats(s->writer, &commits, &committed, &failed);
        store_sizes(s->store, &disk, &map);
        srv_lease_stats ls;
        srv_leases_stats(s->leases, &ls);
        const struct {
            const char *key;
            uint64_t value;
        } extra[] = {
            {"uptime_s", (srv_now_ms() - s->start_ms) / 1000},
            {"threads", s->nworkers},
            {"connections", atomic_load(&s->conns_open)},
            {"connections_total", atomic_load(&s->conns_total)},
            {"requests", atomic_load(&s->requests)},
            {"frame_errors", atomic_load(&s->frame_errors)},
            {"commits", commits},
            {"committed_ops", committed},
            {"failed_writes", failed},
            {"disk_bytes", disk},
            {"map_bytes", map},
            {"snapshots_written", atomic_load(&s->snapshots)},
            {"graph_inserts_since_snapshot",
             cache_graph_inserts_since_snapshot(s->cache)},
            {"connections_refused", atomic_load(&s->conns_refused)},
            {"connections_idle_closed", atomic_load(&s->conns_idle_closed)},
            {"frames_busy", atomic_load(&s->frames_busy)},
            {"reply_writes", atomic_load(&s->reply_writes)},
            {"client_buffer_bytes", srv_client_bytes(s)},
            {"auth_ok", atomic_load(&s->auth_ok)},
            {"auth_failed", atomic_load(&s->auth_failed)},
            {"auth_throttled", atomic_load(&s->auth_throttled)},
            {"leases_active", ls.active},
            {"lease_waiters", ls.waiters},
            {"leases_granted", ls.granted},
            {"leases_fulfilled", ls.fulfilled},
            {"leases_failed", ls.failed},
            {"leases_expired", ls.expired},
            {"leases_promoted", ls.promoted},
            {"leases_released", ls.released},
            {"lease_wait_timeouts", ls.wait_timeouts},
            {"leases_refused", ls.refused},
        };
        for (size_t i = 0; i < sizeof extra / sizeof extra[0] && n < MAX_STATS; i++) {
            stats[n].key = extra[i].key;
            stats[n].key_len = (uint8_t)strlen(extra[i].key);
            stats[n].value = extra[i].value;
            n++;
        }
    }
    return proto_encode_stats_resp(r->out, r->hdr->request_id, stats, n);
}

static int op_ns_create(srv_req *r) {
    const uint8_t *ns;
    uint8_t ns_len;
    proto_ns_config wire;
    int rc = proto_decode_ns_create_req(r->body, r->hdr->body_len, &ns, &ns_len, &wire);
    if (rc) return rc;
    cache_ns_config cfg;
    ns_config_of(&wire, &cfg);
    cache_ns_image rec;
    int created = 0;
    rc = cache_ns_create(r->srv->cache, ns, ns_len, &cfg, &rec, &created, r->errmsg,
                         sizeof r->errmsg);
    if (rc == DEJA_ERR_INVALID_ARG) rc = DEJA_ERR_BAD_REQUEST; /* msg says why */
    if (rc == DEJA_ERR_EXISTS)
        snprintf(r->errmsg, sizeof r->errmsg,
                 "namespace '%.*s' exists with another configuration", (int)ns_len,
                 (const char *)ns);
    if (rc) return rc;
    if (!created) /* same configuration: nothing to do */
        return proto_encode_empty_resp(r->out, PROTO_OP_NS_CREATE, r->hdr->request_id);
    srv_reply_write *rw =
        reply_write(SRV_REPLY_EMPTY, (store_op){.kind = STORE_OP_PUT_NS});
    if (!rw) return DEJA_ERR_NOMEM;
    srv_persist_ns_rec(&rec, &rw->ns_rec);
    rw->base.ops[0].ns = &rw->ns_rec;
    return submit(r, rw);
}

static int op_ns_list(srv_req *r) {
    enum { MAX_LIST = 4096 };
    char(*names)[CACHE_MAX_NS_LEN + 1] = malloc(MAX_LIST * sizeof *names);
    uint8_t *lens = malloc(MAX_LIST);
    const uint8_t **ptrs = malloc(MAX_LIST * sizeof *ptrs);
    int rc = DEJA_ERR_NOMEM;
    if (names && lens && ptrs) {
        uint16_t n = 0, shown = 0;
        cache_ns_list(r->srv->cache, names, lens, MAX_LIST, &n);
        for (uint16_t i = 0; i < n; i++) {
            /* A tenant sees its own namespaces only. */
            if (!srv_scope_allows_ns(&r->conn->scope, (const uint8_t *)names[i], lens[i]))
                continue;
            ptrs[shown] = (const uint8_t *)names[i];
            lens[shown++] = lens[i];
        }
        rc = proto_encode_ns_list_resp(r->out, r->hdr->request_id, ptrs, lens, shown);
    }
    free(names);
    free(lens);
    free(ptrs);
    return rc;
}

static int op_ns_info(srv_req *r) {
    proto_ns_req req;
    int rc = proto_decode_ns_info_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    cache_ns_config cfg;
    enum { MAX_COUNTERS = CACHE_STATS_MAX };
    cache_stat counters[MAX_COUNTERS];
    uint16_t count = 0, n = 0;
    rc = cache_ns_info(r->srv->cache, req.ns, req.ns_len, &cfg, counters, MAX_COUNTERS,
                       &count);
    if (rc) return rc;
    proto_ns_config wire;
    wire_ns_config(&cfg, &wire);
    proto_stat stats[MAX_COUNTERS];
    wire_stats(counters, count, stats, &n, MAX_COUNTERS);
    return proto_encode_ns_info_resp(r->out, r->hdr->request_id, &wire, stats, n);
}

static int op_ns_drop(srv_req *r) {
    proto_ns_req req;
    int rc = proto_decode_ns_drop_req(r->body, r->hdr->body_len, &req);
    if (rc) return rc;
    uint64_t removed = 0;
    cache_ns_image rec;
    rc = cache_ns_drop(r->srv->cache, req.ns, req.ns_len, &removed, &rec);
    if (rc) return rc;
    srv_leases_ns_dropped(r->srv->leases, req.ns, req.ns_len);
    srv_reply_write *rw = reply_write(
        SRV_REPLY_U64, (store_op){.kind = STORE_OP_DEL_NS, .ns_id = rec.ns_id});
    if (!rw) return DEJA_ERR_NOMEM;
    srv_persist_ns_rec(&rec, &rw->ns_rec);
    rw->base.ops[0].ns = &rw->ns_rec;
    rw->value = removed;
    return submit(r, rw);
}
