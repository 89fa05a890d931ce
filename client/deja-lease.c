/* deja-lease.c: the ops of protocol version 2 on one connection --
 * LOOKUP_EX (leases, shadow hits, per-hit flags), LEASE_RELEASE and
 * NS_POLICY (docs/PROTOCOL.md 5.11 to 5.16). STORE_EX is deja_store with a
 * lease id (deja-client.c).
 *
 * A version-1 server has none of these ops. deja_lookup_ex then sends a
 * plain LOOKUP, which is what a version-2 server answers for a caller
 * whose lease cannot be granted (outcome MISS): an application written
 * for leases works unchanged, only without single-flight. A server that
 * negotiates version 2 but answers UNKNOWN_OP (one built while its
 * version-2 handlers were stubs) is treated as version 1 from then on, on
 * that connection.
 *
 * A LOOKUP_EX that waits on a lease gets its reply late, possibly after
 * replies to later requests. One connection carries one request at a time
 * here (deja__begin_call refuses calls while pipelined lookups are in
 * flight, and the pool hands a connection to one call), so the reply is
 * always the next frame and is still matched by request id. */
#include <string.h>

#include "deja-private.h"

#define LOOKUP_EX_FLAGS                                                                  \
    (DEJA_LOOKUP_WANT_PROMPT | DEJA_LOOKUP_LEASE | DEJA_LOOKUP_WANT_SHADOW)

static int encode_lookup_ex(deja_client *c, const deja_lookup_ex_req *req, uint32_t k,
                            uint32_t id) {
    proto_lookup_req r;
    memset(&r, 0, sizeof r);
    int rc;
    size_t prompt_len = req->prompt ? strlen(req->prompt) : 0;
    if (prompt_len > UINT32_MAX)
        return deja__set_err(c, DEJA_ERR_TOO_LARGE, "prompt too large");
    if ((rc = deja__check_ns(c, req->ns, &r.ns_len)) != 0) return rc;
    if ((rc = deja__check_vector(c, req->vector, req->dim)) != 0) return rc;
    r.ns = (const uint8_t *)req->ns;
    r.dim = (uint16_t)req->dim;
    r.k = (uint16_t)k;
    r.threshold = req->threshold;
    r.vector = deja__wire_vector(c, req->vector, req->dim);
    r.prompt = (const uint8_t *)req->prompt;
    r.prompt_len = (uint32_t)prompt_len;
    if (req->flags & DEJA_LOOKUP_LEASE) {
        r.options |= PROTO_LOOKUP_LEASE;
        r.wait_ms = req->wait_ms;
        r.lease_ms = req->lease_ms;
    }
    if (req->flags & DEJA_LOOKUP_WANT_SHADOW) r.options |= PROTO_LOOKUP_WANT_SHADOW;
    uint16_t wire_flags =
        (req->flags & DEJA_LOOKUP_WANT_PROMPT) ? PROTO_FLAG_WANT_PROMPT : 0;
    rc = proto_encode_lookup_ex_req(&c->out, id, wire_flags, &r);
    if (rc != 0)
        return deja__set_err(c, rc, "cannot encode request: %s", deja_strerror(rc));
    return 0;
}

static int decode_lookup_ex(deja_client *c, const proto_header *h, const uint8_t *body,
                            uint32_t k, deja_result **out) {
    proto_lookup_ex_resp r = {.hits = c->hits, .shadow = c->shadow_hits};
    if (proto_decode_lookup_ex_resp(body, h->body_len, (uint16_t)k, &r) != 0)
        return deja__malformed(c, PROTO_OP_LOOKUP_EX);
    int rc = deja__build_result(c, c->hits, r.count, c->shadow_hits, r.shadow_count, out);
    if (rc != 0) return rc;
    deja_result *res = *out;
    res->outcome = r.outcome;
    res->lease_id = r.lease_id;
    if (r.reply_flags & PROTO_REPLY_SHADOW) res->flags |= DEJA_RESULT_SHADOW;
    if (r.count > 0) {
        if (res->hits[0].flags & DEJA_HIT_EXACT) res->flags |= DEJA_RESULT_EXACT;
        if (h->flags & PROTO_FLAG_BORDERLINE) res->flags |= DEJA_RESULT_BORDERLINE;
    }
    return 0;
}

/* One LOOKUP_EX round trip. A request that may wait on a lease gets
 * wait_ms on top of the request timeout unless the pool set the call's
 * deadline (which then already counts the wait). */
static int lookup_ex_roundtrip(deja_client *c, const deja_lookup_ex_req *req, uint32_t k,
                               deja_result **out) {
    uint32_t id = deja__take_ids(c, 1);
    int rc = encode_lookup_ex(c, req, k, id);
    if (rc != 0) return rc;
    int64_t saved = c->call_deadline_ms;
    if (saved == 0 && (req->flags & DEJA_LOOKUP_LEASE))
        c->call_deadline_ms = deja__now_ms() + c->request_timeout_ms + req->wait_ms;
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, PROTO_OP_LOOKUP_EX, id, &h, &body);
    c->call_deadline_ms = saved;
    if (rc != 0) return rc;
    return decode_lookup_ex(c, &h, body, k, out);
}

int deja__lookup_ex_on(deja_client *c, const deja_lookup_ex_req *req,
                       int64_t v1_deadline_ms, deja_result **out) {
    if (out) *out = NULL;
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    if (out == NULL) return deja__set_err(c, DEJA_ERR_INVALID_ARG, "out is NULL");
    if (req == NULL) return deja__set_err(c, DEJA_ERR_INVALID_ARG, "request is NULL");
    if (req->flags & ~(unsigned)LOOKUP_EX_FLAGS)
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "unknown lookup flags 0x%x",
                             req->flags);
    uint32_t k = req->k ? req->k : 1;
    if (k > PROTO_MAX_K)
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "k %u is not in 1..%u", k,
                             PROTO_MAX_K);
    if (!(req->threshold >= -1.0f && req->threshold <= 1.0f)) /* also refuses NaN */
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "threshold is not in [-1, 1]");
    if (c->version >= 2) {
        rc = lookup_ex_roundtrip(c, req, k, out);
        if (rc != DEJA_ERR_UNKNOWN_OP) return rc;
        c->version = 1;
        proto_buf_reset(&c->out);
    }
    int64_t saved = c->call_deadline_ms;
    if (v1_deadline_ms > 0 && (saved == 0 || v1_deadline_ms < saved))
        c->call_deadline_ms = v1_deadline_ms;
    rc =
        deja__lookup_prompt(c, req->ns, req->prompt, req->vector, req->dim,
                            req->threshold, k, req->flags & DEJA_LOOKUP_WANT_PROMPT, out);
    c->call_deadline_ms = saved;
    return rc;
}

int deja_lookup_ex(deja_client *c, const deja_lookup_ex_req *req, deja_result **out) {
    return deja__lookup_ex_on(c, req, 0, out);
}

/* An op that version 1 lacks: refused without sending on a connection that
 * negotiated 1, and remembered when a server answers it UNKNOWN_OP. */
static int v2_roundtrip(deja_client *c, uint8_t op, uint32_t id, proto_header *h,
                        const uint8_t **body) {
    if (c->version < 2) {
        proto_buf_reset(&c->out);
        return deja__set_err(c, DEJA_ERR_UNKNOWN_OP,
                             "%s: the server speaks protocol version 1",
                             proto_op_name(op));
    }
    int rc = deja__roundtrip(c, op, id, h, body);
    if (rc == DEJA_ERR_UNKNOWN_OP) c->version = 1;
    return rc;
}

int deja_lease_release(deja_client *c, const char *ns, uint64_t lease_id) {
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    proto_ns_id_req r = {.ns = (const uint8_t *)ns, .id = lease_id};
    if ((rc = deja__check_ns(c, ns, &r.ns_len)) != 0) return rc;
    uint32_t id = deja__take_ids(c, 1);
    rc = proto_encode_lease_release_req(&c->out, id, &r);
    if (rc != 0) return deja__set_err(c, rc, "cannot encode request");
    proto_header h;
    const uint8_t *body;
    rc = v2_roundtrip(c, PROTO_OP_LEASE_RELEASE, id, &h, &body);
    if (rc != 0) return rc;
    if (h.body_len != 0) return deja__malformed(c, PROTO_OP_LEASE_RELEASE);
    return 0;
}

static int ns_policy_call(deja_client *c, const char *ns, const proto_ns_policy *in,
                          deja_ns_policy *out) {
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    uint8_t ns_len;
    if ((rc = deja__check_ns(c, ns, &ns_len)) != 0) return rc;
    uint32_t id = deja__take_ids(c, 1);
    rc = proto_encode_ns_policy_req(&c->out, id, (const uint8_t *)ns, ns_len, in);
    if (rc != 0) return deja__set_err(c, rc, "cannot encode request");
    proto_header h;
    const uint8_t *body;
    rc = v2_roundtrip(c, PROTO_OP_NS_POLICY, id, &h, &body);
    if (rc != 0) return rc;
    proto_ns_policy got;
    if (proto_decode_ns_policy_resp(body, h.body_len, &got) != 0)
        return deja__malformed(c, PROTO_OP_NS_POLICY);
    if (out) {
        out->mode = got.mode;
        out->gray_band = got.gray_band;
    }
    return 0;
}

int deja_ns_policy_get(deja_client *c, const char *ns, deja_ns_policy *out) {
    if (c != NULL && out == NULL)
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "out is NULL");
    proto_ns_policy in = {.set = 0};
    return ns_policy_call(c, ns, &in, out);
}

int deja_ns_policy_set(deja_client *c, const char *ns, const deja_ns_policy *policy,
                       deja_ns_policy *out) {
    if (c != NULL && policy == NULL)
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "policy is NULL");
    /* Ranges are the server's to check (BAD_REQUEST); only what would not
     * fit the wire is refused here. */
    if (c != NULL && (policy->mode < 0 || policy->mode > 255))
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "mode %d is not a mode",
                             policy->mode);
    proto_ns_policy in = {.set = 1,
                          .mode = policy ? (uint8_t)policy->mode : 0,
                          .gray_band = policy ? policy->gray_band : 0};
    return ns_policy_call(c, ns, &in, out);
}
