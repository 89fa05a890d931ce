/* test-integration-quarantine.c: a namespace that cannot be loaded at
 * start is quarantined and reported, and dejad starts and serves every
 * other namespace (issue #10).
 *
 * The data folder is written with the store API, as an older or damaged
 * server could have left it: a FAISS "PQ4x0" namespace with entries (a
 * factory string that used to crash every restart), a FAISS "Flat" one
 * (fine, but the server is started without --allow-faiss), one whose
 * configuration block is garbage, and one in the format written before
 * PROTO_NS_EXPLICIT with an undefined flag bit set (it must load with its
 * old meaning). Then dejad starts on it: the three bad namespaces answer
 * QUARANTINED with the reason, STATS counts them, their entries stay on
 * disk (the FAISS "Flat" one serves them once --allow-faiss is given),
 * and NS_DROP is the way out.
 *
 * Each test makes that data folder anew, on a dejad of its own that it
 * stops at the end, so that none depends on what another left behind. */
#include <unistd.h>

#include "harness.h"
#include "store.h"
#include "support/wire.h"

#define DIM 16

static const char *const allow_faiss[] = {"--allow-faiss", NULL};

/* A namespace record with the configuration encoded as the wire block,
 * optionally followed by the revision byte the server now appends. */
static store_ns_rec ns_record(uint32_t id, const char *name, const proto_ns_config *cfg,
                              int revision) {
    store_ns_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.ns_id = id;
    rec.dim = DIM;
    rec.created_ms = 1;
    rec.name_len = (uint8_t)strlen(name);
    memcpy(rec.name, name, rec.name_len);
    size_t len = proto_ns_config_write(rec.config, cfg);
    if (revision) rec.config[len++] = 1;
    rec.config_len = (uint16_t)len;
    return rec;
}

static store_entry_rec entry_record(uint32_t ns_id, uint64_t id, float *vec,
                                    const char *resp) {
    test_unit_vector(id, vec, DIM);
    return (store_entry_rec){.ns_id = ns_id,
                             .id = id,
                             .created_ms = 1,
                             .response = (const uint8_t *)resp,
                             .response_len = (uint32_t)strlen(resp),
                             .vector = vec,
                             .dim = DIM};
}

/* Writes the namespaces above, each with two entries (ids 1000 + 10*ns). */
static void write_bad_namespaces(const char *dir) {
    store_config scfg = {.dir = dir, .max_disk = 1ull << 30};
    store *st = NULL;
    char msg[256];
    int rc = store_open(&scfg, &st, msg, sizeof msg);
    if (rc) HARNESS_FAIL("store_open: %d %s", rc, msg);

    proto_ns_config pq = wire_faiss_config(DIM, "PQ4x0");
    proto_ns_config flat = wire_faiss_config(DIM, "Flat");
    proto_ns_config legacy = {.dim = DIM,
                              .index_kind = PROTO_INDEX_FLAT,
                              .flags = PROTO_NS_EXPLICIT}; /* bit 2, undefined then */
    store_ns_rec recs[4] = {
        ns_record(100, "faiss-pq", &pq, 0),
        ns_record(101, "faiss-flat", &flat, 1),
        ns_record(102, "garbage", &flat, 1),
        ns_record(103, "legacy", &legacy, 0),
    };
    recs[2].config[2] = 9; /* index_kind 9 */
    store_op ops[4 + 8];
    float vecs[8][DIM];
    store_entry_rec entries[8];
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        ops[n++] = (store_op){.kind = STORE_OP_PUT_NS, .ns = &recs[i]};
        for (int j = 0; j < 2; j++) {
            uint64_t id = 1000u + 10u * (uint64_t)i + (uint64_t)j;
            entries[2 * i + j] = entry_record(recs[i].ns_id, id, vecs[2 * i + j], "kept");
            ops[n++] =
                (store_op){.kind = STORE_OP_PUT_ENTRY, .entry = &entries[2 * i + j]};
        }
    }
    ASSERT_OK(store_apply(st, ops, n));
    store_close(st);
}

static void assert_quarantined(const char *name, const char *reason) {
    proto_ns_config cfg;
    proto_header h = wire_ns_info(name, &cfg, NULL, NULL);
    const char *msg = wire_error_message(&h);
    fprintf(stderr, "   NS_INFO %s -> %u %s\n", name, h.status, msg);
    ASSERT_EQ(h.status, -DEJA_ERR_QUARANTINED);
    ASSERT_TRUE(strstr(msg, "quarantined") != NULL);
    if (reason && !strstr(msg, reason))
        HARNESS_FAIL("NS_INFO %s: \"%s\" does not say why (%s)", name, msg, reason);
    /* A STORE must not quietly make a new namespace under the name, and
     * a LOOKUP must not pass for a miss. */
    uint64_t id;
    h = wire_store_as(name, DIM, 5, "new", &id);
    ASSERT_EQ(h.status, -DEJA_ERR_QUARANTINED);
    float v[DIM];
    test_unit_vector(5, v, DIM);
    h = wire_lookup_vec(name, DIM, v, 0.5f, &id, NULL);
    ASSERT_EQ(h.status, -DEJA_ERR_QUARANTINED);
    proto_ns_config bare = {.dim = DIM};
    h = wire_ns_create(name, &bare);
    ASSERT_EQ(h.status, -DEJA_ERR_QUARANTINED);
    ASSERT_TRUE(strstr(wire_error_message(&h), "quarantined") != NULL);
    ASSERT_TRUE(wire_list_has(name)); /* listed: the name is taken */
}

/* The story every test starts from: dejad writes a healthy namespace
 * "good" (one entry, seed 7, whose id goes to *good_id) and stops; the
 * namespaces of write_bad_namespaces are added to its folder; dejad starts
 * again without --allow-faiss and quarantines three of them. The server
 * is left running and connected. */
static void a_server_that_quarantined_three_namespaces(test_server *s,
                                                       uint64_t *good_id) {
    ASSERT_OK(test_server_start(s, NULL));
    wire_connect(s);
    *good_id = wire_store("good", DIM, 7, "good answer");
    wire_close();
    ASSERT_EQ(test_server_shutdown(s), 0);
    write_bad_namespaces(s->dir);
    ASSERT_OK(test_server_restart(s, NULL));
    wire_connect(s);
    ASSERT_U64_EQ(wire_stat("", "quarantined_namespaces"), 3);
}

/* Stops the server on a clean shutdown and starts it again on the same
 * folder with extra_args, connected. */
static void restart_the_server(test_server *s, const char *const *extra_args) {
    wire_close();
    ASSERT_EQ(test_server_shutdown(s), 0);
    ASSERT_OK(test_server_restart(s, extra_args));
    wire_connect(s);
}

/* Closes the connection and stops the server, which must exit cleanly. */
static void stop_the_server(test_server *s) {
    wire_close();
    ASSERT_EQ(test_server_stop(s), 0);
}

static void test_dejad_starts_and_serves_the_other_namespaces(void) {
    test_server srv;
    uint64_t good_id;
    a_server_that_quarantined_three_namespaces(&srv, &good_id);
    wire_ping();
    ASSERT_U64_EQ(wire_lookup("good", DIM, 7, 0.99f), good_id);
    ASSERT_U64_EQ(wire_stat("", "quarantined_namespaces"), 3);
    assert_quarantined("faiss-pq", "--allow-faiss");
    assert_quarantined("faiss-flat", "--allow-faiss");
    assert_quarantined("garbage", "configuration");
    /* The legacy record loads, and its undefined bit meant nothing. */
    uint64_t dedup;
    proto_ns_config cfg;
    ASSERT_EQ(wire_ns_info("legacy", &cfg, "dedup_milli", &dedup).status, 0);
    ASSERT_U64_EQ(dedup, 990); /* the server's default, not "0 = off" */
    ASSERT_U64_EQ(wire_lookup("legacy", DIM, 1030, 0.99f), 1030);
    /* New namespaces get ids of their own, and work. */
    uint64_t id = wire_store("after", DIM, 8, "new namespace");
    ASSERT_U64_EQ(wire_lookup("after", DIM, 8, 0.99f), id);
    ASSERT_TRUE(id > 1031); /* entry ids continue after the quarantined ones */
    stop_the_server(&srv);
}

/* Nothing was deleted: with --allow-faiss the FAISS "Flat" namespace loads
 * with its entries; "PQ4x0" stays quarantined (the grammar refuses it). */
static void test_quarantined_entries_stay_on_disk(void) {
    test_server srv;
    uint64_t good_id;
    a_server_that_quarantined_three_namespaces(&srv, &good_id);
    restart_the_server(&srv, allow_faiss);
#ifdef HAVE_FAISS
    ASSERT_U64_EQ(wire_lookup("faiss-flat", DIM, 1010, 0.99f), 1010);
    ASSERT_U64_EQ(wire_lookup("faiss-flat", DIM, 1011, 0.99f), 1011);
    ASSERT_U64_EQ(wire_stat("", "quarantined_namespaces"), 2);
#endif
    assert_quarantined("faiss-pq", "PQ4x0");
    ASSERT_U64_EQ(wire_lookup("good", DIM, 7, 0.99f), good_id);
    stop_the_server(&srv);
}

/* NS_DROP deletes a quarantined namespace and its entries, and frees the
 * name: a STORE then makes a new, empty namespace that survives a
 * restart without the old entries. The drop is made on a server started
 * with --allow-faiss, where "PQ4x0" is still quarantined. */
static void test_drop_is_the_way_out(void) {
    test_server srv;
    uint64_t good_id;
    a_server_that_quarantined_three_namespaces(&srv, &good_id);
    restart_the_server(&srv, allow_faiss);
    ASSERT_EQ(wire_ns_drop("faiss-pq").status, 0);
    ASSERT_TRUE(!wire_list_has("faiss-pq"));
    uint64_t id = wire_store("faiss-pq", DIM, 9, "fresh");
    restart_the_server(&srv, NULL);
    ASSERT_U64_EQ(wire_lookup("faiss-pq", DIM, 9, 0.99f), id);
    ASSERT_U64_EQ(wire_lookup("faiss-pq", DIM, 1000, 0.99f), 0);
    ASSERT_U64_EQ(wire_stat("faiss-pq", "entries"), 1);
    ASSERT_U64_EQ(wire_lookup("good", DIM, 7, 0.99f), good_id);
    stop_the_server(&srv);
}

int main(void) {
    RUN(test_dejad_starts_and_serves_the_other_namespaces);
    RUN(test_quarantined_entries_stay_on_disk);
    RUN(test_drop_is_the_way_out);
    return harness_result();
}
