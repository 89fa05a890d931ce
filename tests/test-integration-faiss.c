/* test-integration-faiss.c: hostile FAISS factory strings over the wire
 * (issue #10). Every string that crashed or stalled dejad is sent in an
 * NS_CREATE to a real dejad, first one started without --allow-faiss
 * (FAISS kinds are off: BAD_REQUEST naming the option), then one started
 * with it (the allow-list grammar refuses each: BAD_REQUEST naming the
 * reason). After each refusal the server must still answer: PING, and a
 * STORE and LOOKUP in another namespace. An allowed IVF then lives through
 * STORE, LOOKUP and DELETE (IVF0,Flat used to abort on DELETE).
 *
 * Each test starts its own dejad, with or without --allow-faiss, and
 * stops it at the end: none depends on what another left behind. */
#include <unistd.h>

#include "harness.h"
#include "support/hostile-faiss.h"
#include "support/wire.h"

#define DIM 16

static const char *const hostile[] = {HOSTILE_FAISS_FROM_ISSUE_10};
#define NHOSTILE (sizeof hostile / sizeof hostile[0])

/* The server answers and serves another namespace. */
static void assert_healthy(uint64_t seed) {
    wire_ping();
    uint64_t id = wire_store("healthy", DIM, seed, "still here");
    ASSERT_U64_EQ(wire_lookup("healthy", DIM, seed, 0.99f), id);
}

/* A fresh dejad on a fresh data folder, connected; allow_faiss adds
 * --allow-faiss to its command line. */
static void start_a_server(test_server *s, int allow_faiss) {
    const char *args[] = {allow_faiss ? "--allow-faiss" : NULL, NULL};
    ASSERT_OK(test_server_start(s, args));
    wire_connect(s);
}

/* Closes the connection and stops the server, which must exit cleanly. */
static void stop_the_server(test_server *s) {
    wire_close();
    ASSERT_EQ(test_server_stop(s), 0);
}

static void send_every_hostile_string(const char *must_mention) {
    for (size_t i = 0; i < NHOSTILE; i++) {
        char name[32];
        snprintf(name, sizeof name, "hostile-%zu", i);
        proto_ns_config cfg = wire_faiss_config(DIM, hostile[i]);
        proto_header h = wire_ns_create(name, &cfg);
        const char *msg = wire_error_message(&h);
        fprintf(stderr, "   %-20s -> %u %s\n", hostile[i], h.status, msg);
        ASSERT_EQ(h.status, -DEJA_ERR_BAD_REQUEST);
        ASSERT_TRUE(strstr(msg, must_mention) != NULL);
        ASSERT_TRUE(!wire_list_has(name));
        assert_healthy(100 + i);
    }
}

static void test_faiss_kinds_are_off_without_allow_faiss(void) {
    test_server srv;
    start_a_server(&srv, 0);
    send_every_hostile_string("--allow-faiss");
    /* Even the harmless one: FAISS is the operator's choice. */
    proto_ns_config flat = wire_faiss_config(DIM, "Flat");
    proto_header h = wire_ns_create("faiss-flat", &flat);
    ASSERT_EQ(h.status, -DEJA_ERR_BAD_REQUEST);
    ASSERT_TRUE(strstr(wire_error_message(&h), "--allow-faiss") != NULL);
    ASSERT_TRUE(!wire_list_has("faiss-flat"));
    stop_the_server(&srv);
}

static void test_grammar_refuses_every_hostile_string_with_allow_faiss(void) {
    test_server srv;
    start_a_server(&srv, 1);
    send_every_hostile_string("refused");
    /* A string with a NUL inside cannot hide a tail from the grammar. */
    proto_ns_config cfg = {.dim = DIM,
                           .index_kind = PROTO_INDEX_FAISS,
                           .faiss_factory = (const uint8_t *)"Flat\0PQ0",
                           .faiss_factory_len = 8};
    ASSERT_EQ(wire_ns_create("hidden-tail", &cfg).status, -DEJA_ERR_BAD_REQUEST);
    assert_healthy(200);
    stop_the_server(&srv);
}

/* What the grammar allows works end to end, DELETE included. */
static void test_an_allowed_ivf_stores_finds_and_deletes(void) {
    test_server srv;
    start_a_server(&srv, 1);
    proto_ns_config cfg = wire_faiss_config(DIM, "IVF4,Flat");
    ASSERT_EQ(wire_ns_create("faiss-ivf", &cfg).status, 0);
    ASSERT_EQ(wire_ns_create("faiss-ivf", &cfg).status, 0); /* idempotent */
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = wire_store("faiss-ivf", DIM, 300 + i, "ivf");
    ASSERT_U64_EQ(wire_lookup("faiss-ivf", DIM, 301, 0.99f), ids[1]);
    proto_buf b;
    proto_buf_init(&b);
    proto_ns_id_req del = {(const uint8_t *)"faiss-ivf", 9, ids[1]};
    ASSERT_OK(proto_encode_delete_req(&b, 9, &del));
    ASSERT_EQ(wire_roundtrip(&b).status, 0);
    proto_buf_free(&b);
    ASSERT_U64_EQ(wire_lookup("faiss-ivf", DIM, 301, 0.99f), 0);
    proto_ns_config got;
    ASSERT_EQ(wire_ns_info("faiss-ivf", &got, NULL, NULL).status, 0);
    ASSERT_EQ(got.index_kind, PROTO_INDEX_FAISS);
    ASSERT_EQ(got.faiss_factory_len, 9);
    ASSERT_MEM_EQ(got.faiss_factory, "IVF4,Flat", 9);
    assert_healthy(400);
    stop_the_server(&srv);
}

int main(void) {
    RUN(test_faiss_kinds_are_off_without_allow_faiss);
#ifdef HAVE_FAISS /* without FAISS every FAISS kind is refused anyway */
    RUN(test_grammar_refuses_every_hostile_string_with_allow_faiss);
    RUN(test_an_allowed_ivf_stores_finds_and_deletes);
#endif
    return harness_result();
}
