/* deja-fetch.c: deja_get_or_fetch, the seed pattern in one call -- look
 * up, on a miss ask the application's fetch function (the LLM), return its
 * answer and store it for the next asker.
 *
 * The application always gets an answer when its fetch function has one:
 * a lookup that failed (server down, breaker open) is treated as a miss,
 * and a store that failed only leaves a note in the result's error.
 *
 * With a version-2 server the lookup asks for a lease (semantic
 * single-flight, docs/PROTOCOL.md 5.15): a caller granted one fetches and
 * stores with its id, which answers every caller waiting on it; a caller
 * whose fetch fails, or whose answer will not be cached, releases the
 * lease at once, so that a waiter is promoted to fetch instead of waiting
 * for the lease to expire. */
#include <stdlib.h>
#include <string.h>

#include "deja-private.h"

struct deja_fetch {
    char *response; /* our copy of the answer; NULL until one is given */
    size_t response_len;
    uint8_t completion;
    uint32_t ttl_s;
    uint32_t input_tokens, output_tokens;
    uint64_t cost_micro_usd;
};

int deja_fetch_answer(deja_fetch *f, const void *response, size_t len,
                      uint8_t completion) {
    if (f == NULL || (response == NULL && len > 0) ||
        completion > PROTO_COMPLETION_FILTERED)
        return DEJA_ERR_INVALID_ARG;
    char *copy = malloc(len + 1);
    if (copy == NULL) return DEJA_ERR_NOMEM;
    if (len) memcpy(copy, response, len);
    copy[len] = 0;
    free(f->response);
    f->response = copy;
    f->response_len = len;
    f->completion = completion;
    return 0;
}

void deja_fetch_meta(deja_fetch *f, uint32_t ttl_s, uint32_t input_tokens,
                     uint32_t output_tokens, uint64_t cost_micro_usd) {
    if (f == NULL) return;
    f->ttl_s = ttl_s;
    f->input_tokens = input_tokens;
    f->output_tokens = output_tokens;
    f->cost_micro_usd = cost_micro_usd;
}

/* Stores the fetched answer when that is worth it; returns the result's
 * error (0 when stored or not meant to be) and sets *id on success. */
static int store_answer(deja_pool *p, const char *ns, const char *prompt,
                        const float *vector, uint32_t dim, const deja_fetch *f,
                        int lookup_rc, uint64_t lease_id, uint64_t *id) {
    /* Only a clean completion is cached (the server would refuse the rest
     * with REJECTED; asking costs a round trip for nothing). */
    if (f->completion != PROTO_COMPLETION_OK) return 0;
    /* After a failed lookup the server is down, overloaded or refusing
     * this request: a store would most likely fail too, after making the
     * application wait up to the write timeout. The lookup's error says
     * why nothing was stored. */
    if (lookup_rc != 0) return lookup_rc;
    deja_store_req req = {
        .ns = ns,
        .vector = vector,
        .dim = dim,
        .response = f->response,
        .response_len = f->response_len,
        .prompt = prompt,
        .prompt_len = prompt ? strlen(prompt) : 0,
        .ttl_s = f->ttl_s,
        .input_tokens = f->input_tokens,
        .output_tokens = f->output_tokens,
        .cost_micro_usd = f->cost_micro_usd,
        .completion = PROTO_COMPLETION_OK,
        .lease_id = lease_id,
    };
    return deja_pool_store(p, &req, id);
}

int deja_get_or_fetch(deja_pool *p, const char *ns, const char *prompt,
                      const float *vector, uint32_t dim, float threshold,
                      deja_fetch_fn fetch, void *ctx, deja_result **out) {
    if (out == NULL) return DEJA_ERR_INVALID_ARG;
    *out = NULL;
    if (fetch == NULL) {
        *out = deja__miss_result(DEJA_ERR_INVALID_ARG);
        return DEJA_ERR_INVALID_ARG;
    }
    deja_result *cached = NULL;
    /* The prompt goes along so that a server with an exact tier answers a
     * prompt asked before by its text, whatever its embedding. */
    int lookup_rc =
        deja__pool_lookup_lease(p, ns, prompt, vector, dim, threshold, &cached);
    if (cached->count > 0) {
        if (cached->outcome == DEJA_OUTCOME_COALESCED)
            cached->flags |= DEJA_RESULT_COALESCED;
        *out = cached;
        return 0;
    }
    int outcome = cached->outcome;
    uint64_t lease_id = outcome == DEJA_OUTCOME_LEASE ? cached->lease_id : 0;
    deja_result_free(cached);

    deja_fetch f;
    memset(&f, 0, sizeof f);
    int rc = fetch(ctx, prompt, &f);
    if (rc == 0 && f.response == NULL) rc = DEJA_ERR_INVALID_ARG; /* no answer given */
    /* No answer to cache: let a waiter fetch now rather than when the
     * lease expires. Its error is no concern of this caller. */
    if (lease_id != 0 && (rc != 0 || f.completion != PROTO_COMPLETION_OK))
        (void)deja_pool_lease_release(p, ns, lease_id);
    if (rc != 0) {
        free(f.response);
        *out = deja__miss_result(rc);
        return rc;
    }
    uint64_t id = 0;
    int store_rc = store_answer(p, ns, prompt, vector, dim, &f, lookup_rc, lease_id, &id);
    deja_result *r = deja__answer_result(id, 1.0f, f.response, f.response_len, prompt,
                                         prompt ? strlen(prompt) : 0);
    free(f.response);
    if (r == NULL) {
        *out = deja__miss_result(DEJA_ERR_NOMEM);
        return DEJA_ERR_NOMEM;
    }
    r->flags = DEJA_RESULT_FETCHED;
    r->outcome = outcome;
    if (f.completion == PROTO_COMPLETION_OK && store_rc == 0)
        r->flags |= DEJA_RESULT_STORED;
    r->error = store_rc;
    *out = r;
    return 0;
}
