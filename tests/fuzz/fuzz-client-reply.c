/* fuzz-client-reply.c: libFuzzer target for libdeja's reply handling --
 * everything the client does with bytes a server (or something posing as
 * one) sends: frame parsing of the stream, matching replies to requests,
 * error replies, and decoding each op's reply body into the caller's
 * result (lookup hits, stats, namespace list and info, ids and counts).
 *
 * Input layout: two selector bytes, each naming a client call (modulo the
 * table in run_call), then the byte stream "the server" sends. Each run
 * makes a Unix socket pair, writes the stream into one end and shuts it
 * for writing, and drives the real public calls (deja_lookup,
 * deja_stats_get, deja_lookup_many, ...) on a client whose connection is
 * the other end: the requests go into the socket unread, the replies come
 * from the fuzzer, and the end of the stream is a server that closed the
 * connection. Request ids start at 1, so a seed's replies use ids 1, 2,
 * ... in the order the calls take them.
 *
 * Whatever comes back must be a well-formed result or an error code, never
 * a crash, a leak or an unbounded allocation; results are walked in full
 * (so the sanitizers see any bad pointer) and their invariants checked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deja-private.h"
#include "deja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#define CALLS 19
#define BATCH 3

static const float vec[4] = {0.5f, -0.5f, 0.25f, 1.0f};

/* A client on an already connected socket, as deja__client_open leaves it
 * after HELLO (which this target skips: the frame fuzzer covers the HELLO
 * reply decoder). */
static deja_client *client_on(int fd) {
    deja_client *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    c->fd = fd;
    c->next_id = 1;
    c->request_timeout_ms = 2000;
    c->max_frame = PROTO_DEFAULT_MAX_FRAME;
    c->version = 2; /* the version-2 calls send their own ops */
    proto_buf_init(&c->out);
    return c;
}

/* Any code a call may return, and a closed connection only with one. */
static void check_code(const deja_client *c, int rc) {
    CHECK(rc <= 0);
    CHECK(deja_strerror(rc) != NULL);
    CHECK(deja_last_error(c) != NULL);
    CHECK(strlen(deja_last_error(c)) < sizeof c->errmsg);
}

static void walk_result(const deja_result *r, uint32_t k) {
    CHECK(r != NULL);
    CHECK(r->count <= k && r->count <= PROTO_MAX_K);
    CHECK((r->count == 0) == (r->hits == NULL));
    for (uint32_t i = 0; i < r->count; i++) {
        const deja_hit *h = &r->hits[i];
        CHECK(h->similarity == h->similarity); /* never NaN */
        CHECK(h->response != NULL && h->response[h->response_len] == 0);
        CHECK((h->prompt == NULL) == (h->prompt_len == 0));
        if (h->prompt) CHECK(h->prompt[h->prompt_len] == 0);
    }
}

static void walk_stats(const deja_stats *s) {
    CHECK((s->count == 0) == (s->items == NULL));
    for (uint32_t i = 0; i < s->count; i++) {
        size_t n = strlen(s->items[i].key);
        CHECK(n >= 1 && n <= 255);
        uint64_t v;
        CHECK(deja_stats_find(s, s->items[i].key, &v) == 0);
    }
}

static void run_call(deja_client *c, unsigned which) {
    int rc = 0;
    uint64_t n = 0;
    deja_store_req store = {
        .ns = "fz",
        .vector = vec,
        .dim = 4,
        .response = "answer",
        .response_len = 6,
        .prompt = "q?",
        .prompt_len = 2,
    };
    switch (which % CALLS) {
    case 0: rc = deja_ping(c); break;
    case 1: rc = deja_store(c, &store, &n); break;
    case 2: rc = deja_delete(c, "fz", 7); break;
    case 3: rc = deja_flush(c, "fz", &n); break;
    case 4:
    case 5: {
        uint32_t k = which % CALLS == 4 ? 4 : PROTO_MAX_K;
        deja_result *r = NULL;
        rc = deja_lookup(c, "fz", vec, 4, 0.5f, k,
                         which % CALLS == 5 ? DEJA_LOOKUP_WANT_PROMPT : 0, &r);
        CHECK((rc == 0) == (r != NULL));
        /* The decoder bounds hits by the protocol's 256, not by k. */
        if (r) walk_result(r, PROTO_MAX_K);
        deja_result_free(r);
        break;
    }
    case 6:
    case 7: {
        deja_stats *s = NULL;
        rc = deja_stats_get(c, which % CALLS == 6 ? NULL : "fz", &s);
        CHECK((rc == 0) == (s != NULL));
        if (s) walk_stats(s);
        deja_stats_free(s);
        break;
    }
    case 8: {
        deja_ns_config cfg = {.dim = 4, .index_kind = 2, .dedup = 0.99f};
        rc = deja_ns_create(c, "fz", &cfg);
        break;
    }
    case 9: {
        deja_ns_list *l = NULL;
        rc = deja_ns_list_get(c, &l);
        CHECK((rc == 0) == (l != NULL));
        if (l) {
            CHECK((l->count == 0) == (l->names == NULL));
            for (uint32_t i = 0; i < l->count; i++) {
                size_t len = strlen(l->names[i]);
                CHECK(len >= 1 && len <= 255);
            }
        }
        deja_ns_list_free(l);
        break;
    }
    case 10: {
        deja_ns_info *info = NULL;
        rc = deja_ns_info_get(c, "fz", &info);
        CHECK((rc == 0) == (info != NULL));
        if (info) {
            CHECK(info->config.dim >= 1 && info->config.dim <= PROTO_MAX_DIM);
            if (info->config.faiss_factory)
                CHECK(strlen(info->config.faiss_factory) <= 255);
            walk_stats(&info->stats);
        }
        deja_ns_info_free(info);
        break;
    }
    case 11: rc = deja_ns_drop(c, "fz", &n); break;
    case 12: {
        /* Pipelined lookups: replies may come in any order. */
        uint32_t sent = 0;
        for (int i = 0; i < BATCH; i++) {
            uint32_t id;
            if (deja_send_lookup(c, "fz", vec, 4, 0.0f, 8, 0, &id) == 0) sent++;
        }
        CHECK(deja_in_flight(c) == sent || c->fd < 0);
        for (uint32_t i = 0; i < sent; i++) {
            uint32_t id;
            deja_result *r = NULL;
            rc = deja_recv_lookup(c, &id, &r);
            if (r) walk_result(r, PROTO_MAX_K);
            deja_result_free(r);
            if (rc != 0 && c->fd < 0) break;
        }
        break;
    }
    case 13: {
        deja_lookup_req reqs[BATCH];
        deja_result *out[BATCH];
        for (int i = 0; i < BATCH; i++)
            reqs[i] = (deja_lookup_req){"fz",
                                        vec,
                                        4,
                                        0.5f,
                                        (uint32_t)(i + 1),
                                        i == 2 ? DEJA_LOOKUP_WANT_PROMPT : 0};
        rc = deja_lookup_many(c, reqs, BATCH, out);
        for (int i = 0; i < BATCH; i++) {
            CHECK(out[i] != NULL);
            walk_result(out[i], PROTO_MAX_K);
            CHECK(out[i]->count == 0 || out[i]->error == 0);
        }
        deja_results_free(out, BATCH);
        break;
    }
    case 14: {
        deja_store_req reqs[BATCH] = {store, store, store};
        uint64_t ids[BATCH];
        int codes[BATCH];
        rc = deja_store_many(c, reqs, BATCH, ids, codes);
        for (int i = 0; i < BATCH; i++)
            CHECK(codes[i] <= 0);
        break;
    }
    case 15:
    case 16: { /* LOOKUP_EX: outcome, lease id, hits and shadow hits */
        uint32_t k = which % CALLS == 15 ? 1 : 4;
        deja_lookup_ex_req req = {
            .ns = "fz",
            .vector = vec,
            .dim = 4,
            .threshold = 0.5f,
            .k = k,
            .flags = DEJA_LOOKUP_LEASE | DEJA_LOOKUP_WANT_SHADOW,
            .wait_ms = 10,
        };
        deja_result *r = NULL;
        rc = deja_lookup_ex(c, &req, &r);
        if (rc == 0) {
            walk_result(r, k);
            CHECK(r->shadow_count <= k);
            for (uint32_t i = 0; i < r->shadow_count; i++)
                CHECK(r->shadow[i].response[r->shadow[i].response_len] == 0);
            CHECK(r->outcome != DEJA_OUTCOME_LEASE || r->lease_id != 0);
        }
        deja_result_free(r);
        break;
    }
    case 17: rc = deja_lease_release(c, "fz", 7); break;
    case 18: {
        deja_ns_policy pol;
        rc = deja_ns_policy_get(c, "fz", &pol);
        if (rc == 0)
            CHECK(pol.gray_band == 0 || (pol.gray_band > 0 && pol.gray_band <= 1));
        break;
    }
    }
    check_code(c, rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    /* Room for the whole stream and for every request the calls send, so
     * neither side ever waits on the other. */
    int room = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    const uint8_t *stream = data + 2;
    size_t len = size - 2;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(sv[1], stream + off, len - off);
        CHECK(w > 0);
        off += (size_t)w;
    }
    CHECK(shutdown(sv[1], SHUT_WR) == 0);

    deja_client *c = client_on(sv[0]);
    for (int i = 0; i < 2 && c->fd >= 0; i++)
        run_call(c, data[i]);
    deja_close(c);
    close(sv[1]);
    return 0;
}
