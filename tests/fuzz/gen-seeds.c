/* gen-seeds.c: writes the seed corpora of the fuzz targets, each seed
 * through the real encoders or writers, so every seed is a valid input
 * that the target takes all the way through:
 *
 *   corpus/               fuzz-proto-frame    frame streams of each kind
 *   corpus-proto-body/    fuzz-proto-body     one request body per op
 *   corpus-client-reply/  fuzz-client-reply   reply streams for each call
 *   corpus-store-record/  fuzz-store-record   each record kind
 *   corpus-snapshot/      fuzz-snapshot       flat, HNSW and int8 snapshots
 *   corpus-tokens/        fuzz-tokens         tokens files
 *
 * Built with the fuzz targets (-Dfuzzing=true); run it when a format
 * changes:  build/tests/gen-seeds tests/fuzz
 * Output is deterministic, so rerunning it over the checked-in corpora
 * changes nothing unless a format did. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "idx.h"
#include "proto.h"
#include "store-record.h"

static char out_root[1024];

static void fail(const char *what) {
    fprintf(stderr, "gen-seeds: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void must(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "gen-seeds: %s: %s\n", what, deja_strerror(rc));
        exit(1);
    }
}

/* Writes prefix[0..prefix_len) then bytes[0..len) to DIR/name. */
static void emit2(const char *dir, const char *name, const void *prefix,
                  size_t prefix_len, const void *bytes, size_t len) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", out_root, dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) fail(path);
    snprintf(path, sizeof path, "%s/%s/%s", out_root, dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) fail(path);
    if ((prefix_len && fwrite(prefix, 1, prefix_len, f) != prefix_len) ||
        (len && fwrite(bytes, 1, len, f) != len) || fclose(f) != 0)
        fail(path);
}

static const uint8_t ns[] = "demo";
static const float vec[4] = {0.5f, -1.0f, 2.0f, 0.25f};
static uint8_t vec_bytes[16];

/* ---- frame streams (fuzz-proto-frame) ------------------------------------ */

/* Writes the two control bytes fuzz-proto-frame reads (where to split the
 * stream) and the frames in b to corpus/name, then empties b. */
static void frame_seed(const char *name, proto_buf *b, uint16_t split) {
    const uint8_t control[2] = {(uint8_t)split, (uint8_t)(split >> 8)};
    emit2("corpus", name, control, 2, b->data, b->len);
    proto_buf_reset(b);
}

static void gen_proto_frame(void) {
    proto_buf b;
    proto_buf_init(&b);
    const float fvec[8] = {0.5f, -1.0f, 2.0f, 0.0f, 1e-3f, 3.0f, -0.25f, 1.0f};
    uint8_t fvec_bytes[sizeof fvec];
    proto_vector_write(fvec_bytes, fvec, 8);

    proto_hello_req hello = {1, 1, (const uint8_t *)"seed", 4};
    must(proto_encode_hello_req(&b, 1, &hello), "frame");
    frame_seed("hello-req", &b, 7);
    proto_hello_resp hello_resp = {
        .version = 1,
        .max_dim = 4096,
        .max_frame = PROTO_DEFAULT_MAX_FRAME,
        .server_flags = PROTO_SERVER_AUTH_REQUIRED,
        .server_name = (const uint8_t *)"dejad",
        .server_name_len = 5,
    };
    must(proto_encode_hello_resp(&b, 1, &hello_resp), "frame");
    frame_seed("hello-resp", &b, 20);

    proto_auth_req auth = {(const uint8_t *)"token", 5};
    must(proto_encode_auth_req(&b, 2, &auth), "frame");
    frame_seed("auth-req", &b, 3);
    must(proto_encode_empty_resp(&b, PROTO_OP_AUTH, 2), "frame");
    frame_seed("auth-resp", &b, 0);

    must(proto_encode_ping(&b, 3, 0, (const uint8_t *)"ping!", 5), "frame");
    must(proto_encode_ping(&b, 3, PROTO_FLAG_REPLY, (const uint8_t *)"ping!", 5),
         "frame");
    frame_seed("ping-req-resp", &b, 17);

    proto_store_req store = {
        .ns = ns,
        .ns_len = 4,
        .dim = 8,
        .completion = PROTO_COMPLETION_OK,
        .ttl_s = 60,
        .input_tokens = 10,
        .output_tokens = 20,
        .cost_micro_usd = 300,
        .vector = fvec_bytes,
        .prompt = (const uint8_t *)"q?",
        .prompt_len = 2,
        .response = (const uint8_t *)"answer",
        .response_len = 6,
    };
    must(proto_encode_store_req(&b, 4, &store), "frame");
    frame_seed("store-req", &b, 30);
    must(proto_encode_store_resp(&b, 4, 99), "frame");
    frame_seed("store-resp", &b, 1);

    proto_lookup_req lookup = {
        .ns = ns,
        .ns_len = 4,
        .dim = 8,
        .k = 4,
        .threshold = 0.9f,
        .ef = 32,
        .vector = fvec_bytes,
        .prompt = (const uint8_t *)"q?",
        .prompt_len = 2,
    };
    must(proto_encode_lookup_req(&b, 5, PROTO_FLAG_WANT_PROMPT, &lookup), "frame");
    frame_seed("lookup-req", &b, 25);
    must(proto_encode_lookup_resp(&b, 5, NULL, 0), "frame");
    frame_seed("lookup-resp-miss", &b, 0);
    const proto_hit hits[2] = {
        {99, 0.97f, (const uint8_t *)"q?", 2, (const uint8_t *)"answer", 6, 0},
        {12, 0.91f, NULL, 0, (const uint8_t *)"other", 5, 0},
    };
    /* The target sizes the hit array from the flags' low byte, which is 0
     * in a reply; the flags are patched so the seed decodes fully. */
    must(proto_encode_lookup_resp(&b, 5, hits, 2), "frame");
    b.data[4] = 4;
    frame_seed("lookup-resp-hits", &b, 40);

    proto_ns_id_req del = {ns, 4, 99};
    must(proto_encode_delete_req(&b, 6, &del), "frame");
    must(proto_encode_empty_resp(&b, PROTO_OP_DELETE, 6), "frame");
    frame_seed("delete-req-resp", &b, 9);

    must(proto_encode_flush_req(&b, 7, ns, 4), "frame");
    must(proto_encode_u64_resp(&b, PROTO_OP_FLUSH, 7, 3), "frame");
    frame_seed("flush-req-resp", &b, 18);

    must(proto_encode_stats_req(&b, 8, NULL, 0), "frame");
    must(proto_encode_stats_req(&b, 9, ns, 4), "frame");
    frame_seed("stats-req", &b, 16);
    const proto_stat stats[3] = {{"entries", 7, 3}, {"hits", 4, 10}, {"misses", 6, 2}};
    must(proto_encode_stats_resp(&b, 8, stats, 3), "frame");
    frame_seed("stats-resp", &b, 33);

    must(proto_encode_error(&b, PROTO_OP_LOOKUP, 10, DEJA_ERR_DIM_MISMATCH,
                            "namespace has dim 8"),
         "frame");
    frame_seed("error-resp", &b, 5);

    /* An unknown opcode is a complete frame the dispatcher refuses. */
    proto_header unknown = {PROTO_VERSION, 0x7E, 0, 0, 11, 3};
    must(proto_buf_reserve(&b, PROTO_HEADER_SIZE + 3), "frame");
    proto_header_write(b.data, &unknown);
    memcpy(b.data + PROTO_HEADER_SIZE, "abc", 3);
    b.len = PROTO_HEADER_SIZE + 3;
    frame_seed("unknown-op", &b, 2);

    /* A pipelined stream: several requests back to back. */
    must(proto_encode_hello_req(&b, 1, &hello), "frame");
    must(proto_encode_store_req(&b, 2, &store), "frame");
    must(proto_encode_lookup_req(&b, 3, 0, &lookup), "frame");
    must(proto_encode_stats_req(&b, 4, NULL, 0), "frame");
    must(proto_encode_ping(&b, 5, 0, NULL, 0), "frame");
    frame_seed("pipeline", &b, 100);

    /* The namespace ops, one frame each. */
    static const uint8_t model[] = "model-a:v1";
    proto_ns_config ncfg = {.dim = 16,
                            .hnsw_m = 16,
                            .hnsw_ef_construction = 200,
                            .hnsw_ef_search = 64,
                            .ttl_mode = PROTO_TTL_SLIDING,
                            .min_threshold = 0.9f,
                            .dedup = 0.99f,
                            .default_ttl_s = 3600,
                            .max_age_s = 7200,
                            .max_bytes = 1u << 20,
                            .max_entries = 1000};
    must(proto_encode_ns_create_req(&b, 1, model, 10, &ncfg), "frame");
    frame_seed("ns-create-req", &b, 0);
    proto_ns_config faiss = ncfg;
    faiss.index_kind = PROTO_INDEX_FAISS;
    faiss.faiss_factory = (const uint8_t *)"IVF16,Flat";
    faiss.faiss_factory_len = 10;
    must(proto_encode_ns_create_req(&b, 1, model, 10, &faiss), "frame");
    frame_seed("ns-create-faiss-req", &b, 0);
    must(proto_encode_ns_list_req(&b, 1), "frame");
    frame_seed("ns-list-req", &b, 0);
    const uint8_t *names[2] = {(const uint8_t *)"abc", model};
    const uint8_t name_lens[2] = {3, 10};
    must(proto_encode_ns_list_resp(&b, 1, names, name_lens, 2), "frame");
    frame_seed("ns-list-resp", &b, 0);
    must(proto_encode_ns_info_req(&b, 1, model, 10), "frame");
    frame_seed("ns-info-req", &b, 0);
    const proto_stat ns_stats[1] = {{"entries", 7, 42}};
    must(proto_encode_ns_info_resp(&b, 1, &ncfg, ns_stats, 1), "frame");
    frame_seed("ns-info-resp", &b, 0);
    must(proto_encode_ns_drop_req(&b, 1, model, 10), "frame");
    frame_seed("ns-drop-req", &b, 0);

    /* Protocol version 2. */
    proto_lookup_req lx = {.ns = model,
                           .ns_len = 10,
                           .dim = 4,
                           .k = 2,
                           .threshold = 0.85f,
                           .vector = vec_bytes,
                           .options = PROTO_LOOKUP_LEASE,
                           .wait_ms = 500,
                           .lease_ms = 30000};
    must(proto_encode_lookup_ex_req(&b, 1, 0, &lx), "frame");
    frame_seed("lookup-ex-req", &b, 0);
    proto_hit xh[1] = {
        {5, 0.88f, NULL, 0, (const uint8_t *)"ok", 2, PROTO_HIT_BORDERLINE}};
    proto_lookup_ex_resp xr = {
        .outcome = PROTO_OUTCOME_COALESCED, .hits = xh, .count = 1};
    must(proto_encode_lookup_ex_resp(&b, 1, PROTO_FLAG_BORDERLINE, &xr), "frame");
    frame_seed("lookup-ex-resp", &b, 0);
    proto_store_req sx = {.ns = model,
                          .ns_len = 10,
                          .dim = 4,
                          .vector = vec_bytes,
                          .response = (const uint8_t *)"ok",
                          .response_len = 2,
                          .lease_id = 77};
    must(proto_encode_store_ex_req(&b, 1, &sx), "frame");
    frame_seed("store-ex-req", &b, 0);
    proto_ns_id_req rx = {model, 10, 77};
    must(proto_encode_lease_release_req(&b, 1, &rx), "frame");
    frame_seed("lease-release-req", &b, 0);
    proto_ns_policy px = {.set = 1, .mode = PROTO_MODE_SHADOW, .gray_band = 0.9f};
    must(proto_encode_ns_policy_req(&b, 1, model, 10, &px), "frame");
    frame_seed("ns-policy-req", &b, 0);
    must(proto_encode_ns_policy_resp(&b, 1, &px), "frame");
    frame_seed("ns-policy-resp", &b, 0);

    proto_buf_free(&b);
}

/* ---- request bodies ------------------------------------------------------- */

/* The body of the one frame in b, after a selector byte; empties b. */
static void body_seed(const char *name, uint8_t selector, proto_buf *b) {
    emit2("corpus-proto-body", name, &selector, 1, b->data + PROTO_HEADER_SIZE,
          b->len - PROTO_HEADER_SIZE);
    proto_buf_reset(b);
}

static const proto_ns_config hnsw_cfg = {
    .dim = 4,
    .index_kind = PROTO_INDEX_HNSW,
    .quant = 1,
    .hnsw_m = 16,
    .hnsw_ef_construction = 100,
    .hnsw_ef_search = 32,
    .ttl_mode = PROTO_TTL_SLIDING,
    .flags = PROTO_NS_NO_DEDUP,
    .min_threshold = 0.8f,
    .dedup = 0.99f,
    .default_ttl_s = 3600,
    .max_age_s = 86400,
    .max_bytes = 1 << 20,
    .max_entries = 1000,
};

static void gen_proto_body(void) {
    proto_buf b;
    proto_buf_init(&b);
    proto_hello_req hello = {1, 1, (const uint8_t *)"seed", 4};
    must(proto_encode_hello_req(&b, 1, &hello), "hello");
    body_seed("hello", 0, &b);
    proto_auth_req auth = {(const uint8_t *)"s3cret-token", 12};
    must(proto_encode_auth_req(&b, 1, &auth), "auth");
    body_seed("auth", 1, &b);
    must(proto_encode_ping(&b, 1, 0, (const uint8_t *)"ping!", 5), "ping");
    body_seed("ping", 2, &b);
    proto_store_req store = {
        .ns = ns,
        .ns_len = 4,
        .dim = 4,
        .completion = PROTO_COMPLETION_OK,
        .ttl_s = 60,
        .input_tokens = 10,
        .output_tokens = 20,
        .cost_micro_usd = 300,
        .vector = vec_bytes,
        .prompt = (const uint8_t *)"q?",
        .prompt_len = 2,
        .response = (const uint8_t *)"answer",
        .response_len = 6,
    };
    must(proto_encode_store_req(&b, 1, &store), "store");
    body_seed("store", 3, &b);
    proto_lookup_req lookup = {
        .ns = ns,
        .ns_len = 4,
        .dim = 4,
        .k = 4,
        .threshold = 0.9f,
        .ef = 32,
        .vector = vec_bytes,
        .prompt = (const uint8_t *)"q?",
        .prompt_len = 2,
    };
    must(proto_encode_lookup_req(&b, 1, PROTO_FLAG_WANT_PROMPT, &lookup), "lookup");
    body_seed("lookup", 4, &b);
    proto_ns_id_req del = {ns, 4, 99};
    must(proto_encode_delete_req(&b, 1, &del), "delete");
    body_seed("delete", 5, &b);
    must(proto_encode_flush_req(&b, 1, ns, 4), "flush");
    body_seed("flush", 6, &b);
    must(proto_encode_ns_create_req(&b, 1, ns, 4, &hnsw_cfg), "ns_create");
    body_seed("ns-create-hnsw", 7, &b);
    proto_ns_config faiss = {.dim = 8,
                             .index_kind = PROTO_INDEX_FAISS,
                             .faiss_factory = (const uint8_t *)"IVF4,Flat",
                             .faiss_factory_len = 9};
    must(proto_encode_ns_create_req(&b, 1, ns, 4, &faiss), "ns_create faiss");
    body_seed("ns-create-faiss", 7, &b);
    must(proto_encode_ns_info_req(&b, 1, ns, 4), "ns_info");
    body_seed("ns-info", 8, &b);
    must(proto_encode_ns_drop_req(&b, 1, ns, 4), "ns_drop");
    body_seed("ns-drop", 9, &b);
    must(proto_encode_stats_req(&b, 1, NULL, 0), "stats");
    body_seed("stats-all", 10, &b);
    must(proto_encode_stats_req(&b, 1, ns, 4), "stats ns");
    body_seed("stats-ns", 10, &b);

    uint8_t cfg[PROTO_NS_CONFIG_SIZE + 1 + 255];
    uint8_t sel = 11;
    emit2("corpus-proto-body", "ns-config", &sel, 1, cfg,
          proto_ns_config_write(cfg, &hnsw_cfg));
    uint8_t vbody[2 + sizeof vec_bytes] = {4, 0};
    memcpy(vbody + 2, vec_bytes, sizeof vec_bytes);
    sel = 12;
    emit2("corpus-proto-body", "vector", &sel, 1, vbody, sizeof vbody);

    /* Protocol version 2. */
    lookup.options = PROTO_LOOKUP_LEASE | PROTO_LOOKUP_WANT_SHADOW;
    lookup.wait_ms = 2000;
    lookup.lease_ms = 30000;
    must(proto_encode_lookup_ex_req(&b, 1, PROTO_FLAG_WANT_PROMPT, &lookup), "lookup_ex");
    body_seed("lookup-ex", 13, &b);
    store.lease_id = 0x1234567890abcdefull;
    must(proto_encode_store_ex_req(&b, 1, &store), "store_ex");
    body_seed("store-ex", 14, &b);
    must(proto_encode_lease_release_req(&b, 1, &del), "lease_release");
    body_seed("lease-release", 15, &b);
    proto_ns_policy policy = {.set = 1, .mode = PROTO_MODE_SHADOW, .gray_band = 0.9f};
    must(proto_encode_ns_policy_req(&b, 1, ns, 4, &policy), "ns_policy");
    body_seed("ns-policy", 16, &b);
    proto_buf_free(&b);
}

/* ---- client replies ------------------------------------------------------- */

/* Two call selectors, then the reply stream in b; empties b. */
static void reply_seed(const char *name, uint8_t call0, uint8_t call1, proto_buf *b) {
    const uint8_t calls[2] = {call0, call1};
    emit2("corpus-client-reply", name, calls, 2, b->data, b->len);
    proto_buf_reset(b);
}

static void gen_client_reply(void) {
    proto_buf b;
    proto_buf_init(&b);
    must(proto_encode_ping(&b, 1, PROTO_FLAG_REPLY, NULL, 0), "ping");
    must(proto_encode_ping(&b, 2, PROTO_FLAG_REPLY, NULL, 0), "ping");
    reply_seed("ping-ping", 0, 0, &b);
    must(proto_encode_store_resp(&b, 1, 42), "store");
    must(proto_encode_u64_resp(&b, PROTO_OP_FLUSH, 2, 3), "flush");
    reply_seed("store-flush", 1, 3, &b);
    must(proto_encode_empty_resp(&b, PROTO_OP_DELETE, 1), "delete");
    must(proto_encode_u64_resp(&b, PROTO_OP_NS_DROP, 2, 5), "drop");
    reply_seed("delete-drop", 2, 11, &b);
    const proto_hit hits[2] = {
        {99, 0.97f, NULL, 0, (const uint8_t *)"answer", 6, 0},
        {12, 0.91f, NULL, 0, (const uint8_t *)"other", 5, 0},
    };
    const proto_hit prompted[1] = {
        {99, 0.97f, (const uint8_t *)"q?", 2, (const uint8_t *)"answer", 6, 0},
    };
    must(proto_encode_lookup_resp(&b, 1, hits, 2), "lookup");
    must(proto_encode_lookup_resp(&b, 2, prompted, 1), "lookup");
    reply_seed("lookup-lookup", 4, 5, &b);
    const proto_stat stats[3] = {{"entries", 7, 3}, {"hits", 4, 10}, {"misses", 6, 2}};
    must(proto_encode_stats_resp(&b, 1, stats, 3), "stats");
    must(proto_encode_stats_resp(&b, 2, stats, 1), "stats");
    reply_seed("stats-stats", 6, 7, &b);
    const uint8_t *names[2] = {ns, (const uint8_t *)"teamA/x"};
    const uint8_t name_lens[2] = {4, 7};
    must(proto_encode_empty_resp(&b, PROTO_OP_NS_CREATE, 1), "ns_create");
    must(proto_encode_ns_list_resp(&b, 2, names, name_lens, 2), "ns_list");
    reply_seed("create-list", 8, 9, &b);
    must(proto_encode_ns_info_resp(&b, 1, &hnsw_cfg, stats, 3), "ns_info");
    must(proto_encode_ping(&b, 2, PROTO_FLAG_REPLY, NULL, 0), "ping");
    reply_seed("info-ping", 10, 0, &b);
    /* Pipelined lookups answered out of order. */
    must(proto_encode_lookup_resp(&b, 3, hits, 1), "lookup");
    must(proto_encode_lookup_resp(&b, 1, NULL, 0), "lookup");
    must(proto_encode_lookup_resp(&b, 2, hits, 2), "lookup");
    reply_seed("pipelined", 12, 0, &b);
    must(proto_encode_lookup_resp(&b, 2, hits, 2), "lookup");
    must(proto_encode_error(&b, PROTO_OP_LOOKUP, 1, DEJA_ERR_DIM_MISMATCH, "dim 8"),
         "error");
    must(proto_encode_lookup_resp(&b, 3, prompted, 1), "lookup");
    reply_seed("lookup-many", 13, 0, &b);
    must(proto_encode_store_resp(&b, 1, 7), "store");
    must(proto_encode_error(&b, PROTO_OP_STORE, 2, DEJA_ERR_REJECTED, "not ok"), "error");
    must(proto_encode_store_resp(&b, 3, 8), "store");
    reply_seed("store-many", 14, 0, &b);
    must(proto_encode_error(&b, PROTO_OP_LOOKUP, 1, DEJA_ERR_BAD_NAMESPACE, "bad"),
         "error");
    must(proto_encode_error(&b, 0, 0, DEJA_ERR_TOO_LARGE, "frame too large"), "error");
    reply_seed("errors", 4, 6, &b);
    /* Protocol version 2: a lease, then its release; a coalesced answer
     * and a shadow namespace's would-be hits, then a policy. */
    proto_lookup_ex_resp lease = {.outcome = PROTO_OUTCOME_LEASE, .lease_id = 77};
    must(proto_encode_lookup_ex_resp(&b, 1, 0, &lease), "lookup_ex");
    must(proto_encode_empty_resp(&b, PROTO_OP_LEASE_RELEASE, 2), "lease_release");
    reply_seed("lookup-ex-lease-release", 15, 17, &b);
    proto_hit flagged[2] = {
        {99, 0.97f, NULL, 0, (const uint8_t *)"answer", 6, PROTO_HIT_BORDERLINE},
        {12, 0.91f, NULL, 0, (const uint8_t *)"other", 5, PROTO_HIT_EXACT},
    };
    proto_lookup_ex_resp coalesced = {
        .outcome = PROTO_OUTCOME_COALESCED, .hits = flagged, .count = 1};
    must(proto_encode_lookup_ex_resp(&b, 1, PROTO_FLAG_BORDERLINE, &coalesced),
         "lookup_ex");
    reply_seed("lookup-ex-coalesced", 16, 0, &b);
    proto_lookup_ex_resp shadow = {.outcome = PROTO_OUTCOME_MISS,
                                   .reply_flags = PROTO_REPLY_SHADOW,
                                   .shadow = flagged,
                                   .shadow_count = 2};
    must(proto_encode_lookup_ex_resp(&b, 1, 0, &shadow), "lookup_ex");
    proto_ns_policy policy = {.mode = PROTO_MODE_SHADOW, .gray_band = 0.9f};
    must(proto_encode_ns_policy_resp(&b, 2, &policy), "ns_policy");
    reply_seed("lookup-ex-shadow-policy", 16, 18, &b);
    proto_buf_free(&b);
}

/* ---- store records -------------------------------------------------------- */

static void record_seed(const char *name, uint8_t selector, const uint8_t *key,
                        size_t key_len, const uint8_t *rec, size_t len) {
    uint8_t head[1 + 1 + 255];
    size_t n = 0;
    head[n++] = selector;
    if ((selector & 7u) == 0) head[n++] = (uint8_t)key_len;
    memcpy(head + n, key, key_len);
    emit2("corpus-store-record", name, head, n + key_len, rec, len);
}

static void gen_store_record(void) {
    store_ns_rec nsr;
    memset(&nsr, 0, sizeof nsr);
    nsr.ns_id = 3;
    nsr.dim = 4;
    nsr.created_ms = 1700000000000ull;
    nsr.name_len = 4;
    memcpy(nsr.name, ns, 4);
    nsr.config_len = (uint16_t)proto_ns_config_write(nsr.config, &hnsw_cfg);
    uint8_t rec[STORE_NS_REC_MAX];
    size_t len = store_ns_rec_encode(&nsr, rec);
    record_seed("ns", 0x80, ns, 4, rec, len);
    record_seed("ns-nosum", 0x00, ns, 4, rec, len);
    nsr.config_len = 0;
    len = store_ns_rec_encode(&nsr, rec);
    record_seed("ns-implicit", 0x80, ns, 4, rec, len);

    uint8_t key[STORE_KEY_LEN];
    store_key_make(key, 3, 77);
    store_entry_rec e;
    memset(&e, 0, sizeof e);
    e.ns_id = 3;
    e.id = 77;
    e.created_ms = 1700000000000ull;
    e.expires_ms = 1700000600000ull;
    e.input_tokens = 12;
    e.output_tokens = 34;
    e.cost_micro_usd = 560;
    e.prompt = (const uint8_t *)"q?";
    e.prompt_len = 2;
    e.response = (const uint8_t *)"answer";
    e.response_len = 6;
    e.vector = vec;
    e.dim = 4;
    uint8_t big[256];
    store_entry_rec_encode(key, &e, big);
    record_seed("entry", 0x81, key, sizeof key, big, store_entry_rec_size(&e));
    record_seed("entry-nosum", 0x01, key, sizeof key, big, store_entry_rec_size(&e));
    store_vector_rec_encode(key, vec, 4, big);
    record_seed("vector", 0x82, key, sizeof key, big, store_vector_rec_size(4));
    store_usage_rec u = {3, 77, 9, 6, 1700000300000ull, 1700000900000ull};
    store_usage_rec_encode(key, &u, big);
    record_seed("usage", 0x83, key, sizeof key, big, STORE_USAGE_REC);
    uint32_t fmt = STORE_FORMAT_VERSION;
    record_seed("meta", 0x84, key, sizeof key, (const uint8_t *)&fmt, sizeof fmt);
}

/* ---- snapshots ------------------------------------------------------------ */

static void snapshot_seed(const char *name, uint8_t selector, const idx_config *cfg,
                          uint32_t count) {
    idx *ix;
    must(idx_create(cfg, &ix), "idx_create");
    /* Deterministic, spread-out vectors. */
    uint32_t state = 12345;
    for (uint32_t i = 0; i < count; i++) {
        float v[16];
        for (uint32_t d = 0; d < cfg->dim; d++) {
            state = state * 1103515245u + 12345u;
            v[d] = (float)((state >> 8) & 0xFFFF) / 65536.0f - 0.5f;
        }
        must(idx_normalize(v, cfg->dim), "normalize");
        must(idx_add(ix, i + 1, v), "idx_add");
    }
    if (count > 2) must(idx_remove(ix, 2), "idx_remove"); /* a DELETED node */
    char path[] = "/tmp/deja-gen-seeds-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) fail("mkstemp");
    close(fd);
    must(idx_snapshot_write(ix, path, 0x1234), "snapshot_write");
    idx_destroy(ix);
    FILE *f = fopen(path, "rb");
    if (!f) fail(path);
    static uint8_t buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    unlink(path);
    const uint8_t head[2] = {selector, (uint8_t)(cfg->dim - 1)};
    emit2("corpus-snapshot", name, head, 2, buf, len);
}

static void gen_snapshot(void) {
    idx_config flat = {.kind = IDX_KIND_FLAT, .dim = 4};
    snapshot_seed("flat", 0xC0, &flat, 6);
    snapshot_seed("flat-empty", 0xC0, &flat, 0);
    idx_config hnsw = {.kind = IDX_KIND_HNSW,
                       .dim = 4,
                       .M = 4,
                       .ef_construction = 16,
                       .ef_search = 16,
                       .seed = 1};
    snapshot_seed("hnsw", 0xC1, &hnsw, 24);
    snapshot_seed("hnsw-empty", 0xC1, &hnsw, 0);
    snapshot_seed("hnsw-nosum", 0x01, &hnsw, 5);
    hnsw.M = 8;
    hnsw.quant = IDX_QUANT_INT8;
    hnsw.dim = 3;
    snapshot_seed("hnsw-int8", 0xC6, &hnsw, 16);
}

/* ---- tokens files --------------------------------------------------------- */

static void text_seed(const char *name, const char *text) {
    emit2("corpus-tokens", name, NULL, 0, text, strlen(text));
}

static void gen_tokens(void) {
    text_seed("basic", "# tokens for the demo\n"
                       "admin-token-0123456789 * read,write,admin\n"
                       "\n"
                       "teamA-reader   teamA/  read\n"
                       "teamB-writer\tteamB/\twrite,read\r\n");
    text_seed("one", "tok * admin");
    text_seed("bad-rights", "tok teamA/ read,,write\n");
    text_seed("duplicate", "same * read\nsame * write\n");
    text_seed("comment-only", "   # nothing here\n\t\n");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FUZZDIR (the folder holding corpus-*/)\n", argv[0]);
        return 2;
    }
    snprintf(out_root, sizeof out_root, "%s", argv[1]);
    idx_simd_init();
    proto_vector_write(vec_bytes, vec, 4);
    gen_proto_frame();
    gen_proto_body();
    gen_client_reply();
    gen_store_record();
    gen_snapshot();
    gen_tokens();
    return 0;
}
