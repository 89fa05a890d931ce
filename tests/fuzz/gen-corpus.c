/* gen-corpus.c: writes the seed corpus of fuzz-proto-frame, one small file
 * per frame kind, through the real encoders so every seed is a valid frame.
 *
 * Not part of the build; run it by hand when the protocol changes:
 *   cc -Iproto tests/fuzz/gen-corpus.c proto/proto-*.c -lm -o /tmp/gen-corpus
 *   /tmp/gen-corpus tests/fuzz/corpus
 * Each file starts with the two control bytes the target reads (where to
 * split the stream), then the frames. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static const char *out_dir;

/* Writes control bytes + the frames in b to out_dir/name, then empties b. */
static void emit(const char *name, proto_buf *b, uint16_t split) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    const uint8_t control[2] = {(uint8_t)split, (uint8_t)(split >> 8)};
    if (fwrite(control, 1, 2, f) != 2 || fwrite(b->data, 1, b->len, f) != b->len ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    proto_buf_reset(b);
}

static void must(int rc) {
    if (rc != 0) {
        fprintf(stderr, "encode failed: %s\n", deja_strerror(rc));
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUSDIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    proto_buf b;
    proto_buf_init(&b);
    const uint8_t *ns = (const uint8_t *)"demo";
    const float vec[8] = {0.5f, -1.0f, 2.0f, 0.0f, 1e-3f, 3.0f, -0.25f, 1.0f};
    uint8_t vec_bytes[sizeof vec];
    proto_vector_write(vec_bytes, vec, 8);

    proto_hello_req hello = {1, 1, (const uint8_t *)"seed", 4};
    must(proto_encode_hello_req(&b, 1, &hello));
    emit("hello-req", &b, 7);
    proto_hello_resp hello_resp = {
        .version = 1,
        .max_dim = 4096,
        .max_frame = PROTO_DEFAULT_MAX_FRAME,
        .server_flags = PROTO_SERVER_AUTH_REQUIRED,
        .server_name = (const uint8_t *)"dejad",
        .server_name_len = 5,
    };
    must(proto_encode_hello_resp(&b, 1, &hello_resp));
    emit("hello-resp", &b, 20);

    proto_auth_req auth = {(const uint8_t *)"token", 5};
    must(proto_encode_auth_req(&b, 2, &auth));
    emit("auth-req", &b, 3);
    must(proto_encode_empty_resp(&b, PROTO_OP_AUTH, 2));
    emit("auth-resp", &b, 0);

    must(proto_encode_ping(&b, 3, 0, (const uint8_t *)"ping!", 5));
    must(proto_encode_ping(&b, 3, PROTO_FLAG_REPLY, (const uint8_t *)"ping!", 5));
    emit("ping-req-resp", &b, 17);

    proto_store_req store = {
        .ns = ns,
        .ns_len = 4,
        .dim = 8,
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
    must(proto_encode_store_req(&b, 4, &store));
    emit("store-req", &b, 30);
    must(proto_encode_store_resp(&b, 4, 99));
    emit("store-resp", &b, 1);

    proto_lookup_req lookup = {
        .ns = ns,
        .ns_len = 4,
        .dim = 8,
        .k = 4,
        .threshold = 0.9f,
        .ef = 32,
        .vector = vec_bytes,
        .prompt = (const uint8_t *)"q?",
        .prompt_len = 2,
    };
    must(proto_encode_lookup_req(&b, 5, PROTO_FLAG_WANT_PROMPT, &lookup));
    emit("lookup-req", &b, 25);
    must(proto_encode_lookup_resp(&b, 5, NULL, 0));
    emit("lookup-resp-miss", &b, 0);
    const proto_hit hits[2] = {
        {99, 0.97f, (const uint8_t *)"q?", 2, (const uint8_t *)"answer", 6},
        {12, 0.91f, NULL, 0, (const uint8_t *)"other", 5},
    };
    /* The target sizes the hit array from the flags' low byte, which is 0
     * in a reply; the flags are patched so the seed decodes fully. */
    must(proto_encode_lookup_resp(&b, 5, hits, 2));
    b.data[4] = 4;
    emit("lookup-resp-hits", &b, 40);

    proto_ns_id_req del = {ns, 4, 99};
    must(proto_encode_delete_req(&b, 6, &del));
    must(proto_encode_empty_resp(&b, PROTO_OP_DELETE, 6));
    emit("delete-req-resp", &b, 9);

    must(proto_encode_flush_req(&b, 7, ns, 4));
    must(proto_encode_u64_resp(&b, PROTO_OP_FLUSH, 7, 3));
    emit("flush-req-resp", &b, 18);

    must(proto_encode_stats_req(&b, 8, NULL, 0));
    must(proto_encode_stats_req(&b, 9, ns, 4));
    emit("stats-req", &b, 16);
    const proto_stat stats[3] = {{"entries", 7, 3}, {"hits", 4, 10}, {"misses", 6, 2}};
    must(proto_encode_stats_resp(&b, 8, stats, 3));
    emit("stats-resp", &b, 33);

    must(proto_encode_error(&b, PROTO_OP_LOOKUP, 10, DEJA_ERR_DIM_MISMATCH,
                            "namespace has dim 8"));
    emit("error-resp", &b, 5);

    /* An unknown opcode is a complete frame the dispatcher refuses. */
    proto_header unknown = {PROTO_VERSION, 0x7E, 0, 0, 11, 3};
    must(proto_buf_reserve(&b, PROTO_HEADER_SIZE + 3));
    proto_header_write(b.data, &unknown);
    memcpy(b.data + PROTO_HEADER_SIZE, "abc", 3);
    b.len = PROTO_HEADER_SIZE + 3;
    emit("unknown-op", &b, 2);

    /* A pipelined stream: several requests back to back. */
    must(proto_encode_hello_req(&b, 1, &hello));
    must(proto_encode_store_req(&b, 2, &store));
    must(proto_encode_lookup_req(&b, 3, 0, &lookup));
    must(proto_encode_stats_req(&b, 4, NULL, 0));
    must(proto_encode_ping(&b, 5, 0, NULL, 0));
    emit("pipeline", &b, 100);

    proto_buf_free(&b);
    return 0;
}
