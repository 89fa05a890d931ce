/* test-server-store.c: the LMDB store keeps what it acknowledged, refuses
 * what it cannot read, and never returns a damaged record.
 *
 * Works on real LMDB files in a temporary folder; the damage cases reach
 * into the file with LMDB itself (or by truncating it) to break exactly one
 * thing at a time. */
#include <lmdb.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "store.h"

#define DIM 8

static char dir[256];

static void fresh_dir(void) {
    char cmd[300];
    if (dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ASSERT_EQ(system(cmd), 0);
    }
    snprintf(dir, sizeof dir, "/tmp/deja-store-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
}

static store *open_store(uint64_t max_disk) {
    store_config cfg = {.dir = dir, .max_disk = max_disk, .fsync = STORE_FSYNC_OFF};
    store *st = NULL;
    char msg[256];
    int rc = store_open(&cfg, &st, msg, sizeof msg);
    if (rc) HARNESS_FAIL("store_open: %d %s", rc, msg);
    return st;
}

static store_ns_rec ns_rec(uint32_t ns_id, const char *name) {
    store_ns_rec ns = {.ns_id = ns_id, .dim = DIM, .created_ms = 5};
    ns.name_len = (uint8_t)strlen(name);
    memcpy(ns.name, name, ns.name_len + 1u);
    return ns;
}

static float vec[DIM] = {0.5f, 0.5f, 0.5f, 0.5f, 0, 0, 0, 0};

static store_entry_rec entry_rec(uint32_t ns_id, uint64_t id, const char *resp,
                                 uint64_t expires_ms) {
    store_entry_rec e = {.ns_id = ns_id,
                         .id = id,
                         .created_ms = 1,
                         .expires_ms = expires_ms,
                         .input_tokens = 10,
                         .output_tokens = 20,
                         .cost_micro_usd = 300,
                         .prompt = (const uint8_t *)"prompt",
                         .prompt_len = 6,
                         .response = (const uint8_t *)resp,
                         .response_len = (uint32_t)strlen(resp),
                         .vector = vec,
                         .dim = DIM};
    return e;
}

typedef struct seen {
    int namespaces;
    int entries;
    uint64_t ids[64];
    char responses[64][32];
} seen;

static int on_ns(void *ctx, const store_ns_rec *ns) {
    ((seen *)ctx)->namespaces++;
    return ns->dim == DIM ? 0 : -1;
}

static int on_entry(void *ctx, const store_entry_rec *e) {
    seen *s = ctx;
    if (s->entries < 64) {
        s->ids[s->entries] = e->id;
        snprintf(s->responses[s->entries], 32, "%.*s", (int)e->response_len,
                 (const char *)e->response);
    }
    s->entries++;
    return memcmp(e->vector, vec, sizeof vec) == 0 ? 0 : -1;
}

static void put_three(store *st) {
    store_ns_rec ns = ns_rec(1, "alpha");
    store_entry_rec e1 = entry_rec(1, 10, "ten", 0), e2 = entry_rec(1, 11, "eleven", 0),
                    e3 = entry_rec(1, 12, "twelve", 0);
    store_op ops[4] = {{.kind = STORE_OP_PUT_NS, .ns = &ns},
                       {.kind = STORE_OP_PUT_ENTRY, .entry = &e1},
                       {.kind = STORE_OP_PUT_ENTRY, .entry = &e2},
                       {.kind = STORE_OP_PUT_ENTRY, .entry = &e3}};
    ASSERT_OK(store_apply(st, ops, 4));
}

static seen load_all(store *st, uint64_t now_ms, store_load_stats *stats) {
    seen s;
    memset(&s, 0, sizeof s);
    char msg[256];
    store_load_fns fns = {.ns = on_ns, .entry = on_entry, .ctx = &s};
    int rc = store_load(st, now_ms, &fns, stats, msg, sizeof msg);
    if (rc) HARNESS_FAIL("store_load: %d %s", rc, msg);
    return s;
}

static void test_what_was_applied_comes_back_after_reopening(void) {
    fresh_dir();
    store *st = open_store(0);
    put_three(st);
    store_close(st);
    st = open_store(0);
    store_load_stats stats;
    seen s = load_all(st, 100, &stats);
    ASSERT_EQ(s.namespaces, 1);
    ASSERT_EQ(s.entries, 3);
    ASSERT_U64_EQ(s.ids[1], 11);
    ASSERT_STR_EQ(s.responses[1], "eleven");
    ASSERT_U64_EQ(stats.max_id, 12);
    ASSERT_EQ(stats.max_ns_id, 1);
    store_close(st);
}

static void test_deletes_and_namespace_flushes_are_durable(void) {
    fresh_dir();
    store *st = open_store(0);
    put_three(st);
    store_op del = {.kind = STORE_OP_DEL_ENTRY, .ns_id = 1, .id = 11};
    ASSERT_OK(store_apply(st, &del, 1));
    store_close(st);
    st = open_store(0);
    store_load_stats stats;
    seen s = load_all(st, 100, &stats);
    ASSERT_EQ(s.entries, 2);
    store_op flush = {.kind = STORE_OP_DEL_NS_ENTRIES, .ns_id = 1};
    ASSERT_OK(store_apply(st, &flush, 1));
    ASSERT_U64_EQ(flush.removed, 2);
    s = load_all(st, 100, &stats);
    ASSERT_EQ(s.entries, 0);
    ASSERT_EQ(s.namespaces, 1);
    store_close(st);
}

static void test_expired_entries_are_dropped_at_load(void) {
    fresh_dir();
    store *st = open_store(0);
    store_ns_rec ns = ns_rec(1, "ttl");
    store_entry_rec live = entry_rec(1, 1, "live", 5000),
                    dead = entry_rec(1, 2, "dead", 1000);
    store_op ops[3] = {{.kind = STORE_OP_PUT_NS, .ns = &ns},
                       {.kind = STORE_OP_PUT_ENTRY, .entry = &live},
                       {.kind = STORE_OP_PUT_ENTRY, .entry = &dead}};
    ASSERT_OK(store_apply(st, ops, 3));
    store_load_stats stats;
    seen s = load_all(st, 1000, &stats);
    ASSERT_EQ(s.entries, 1);
    ASSERT_STR_EQ(s.responses[0], "live");
    ASSERT_U64_EQ(stats.expired, 1);
    /* ...and deleted from disk, not just skipped. */
    s = load_all(st, 0, &stats);
    ASSERT_EQ(s.entries, 1);
    store_close(st);
}

/* Rewrites the value of key in table with one flipped byte, through LMDB,
 * so the file stays structurally valid and only the checksum can tell. */
static void flip_record_byte(const char *table, uint32_t ns_id, uint64_t id, size_t at) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ASSERT_OK(mdb_env_create(&env));
    mdb_env_set_maxdbs(env, 8);
    ASSERT_OK(mdb_env_open(env, dir, 0, 0644));
    ASSERT_OK(mdb_txn_begin(env, NULL, 0, &txn));
    ASSERT_OK(mdb_dbi_open(txn, table, 0, &dbi));
    uint8_t key[12];
    for (int i = 0; i < 4; i++)
        key[i] = (uint8_t)(ns_id >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        key[4 + i] = (uint8_t)(id >> (56 - 8 * i));
    MDB_val k = {12, key}, v;
    ASSERT_OK(mdb_get(txn, dbi, &k, &v));
    uint8_t copy[4096];
    ASSERT_LT(at, v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[at] ^= 0x20;
    MDB_val nv = {v.mv_size, copy};
    ASSERT_OK(mdb_put(txn, dbi, &k, &nv, 0));
    ASSERT_OK(mdb_txn_commit(txn));
    mdb_env_close(env);
}

static void test_a_damaged_response_is_skipped_not_served(void) {
    fresh_dir();
    store *st = open_store(0);
    put_three(st);
    store_close(st);
    flip_record_byte("entries", 1, 11, 60); /* a byte of the prompt */
    st = open_store(0);
    store_load_stats stats;
    seen s = load_all(st, 100, &stats);
    ASSERT_EQ(s.entries, 2);
    ASSERT_U64_EQ(s.ids[0], 10);
    ASSERT_U64_EQ(s.ids[1], 12);
    ASSERT_U64_EQ(stats.damaged, 1);
    store_close(st);
}

static void test_a_damaged_vector_is_skipped_not_served(void) {
    fresh_dir();
    store *st = open_store(0);
    put_three(st);
    store_close(st);
    flip_record_byte("vectors", 1, 12, 20);
    st = open_store(0);
    store_load_stats stats;
    seen s = load_all(st, 100, &stats);
    ASSERT_EQ(s.entries, 2);
    ASSERT_U64_EQ(stats.damaged, 1);
    store_close(st);
}

/* The loader asks before it reads a vector; entries whose vector is not
 * wanted (graph nodes restored from a snapshot) arrive without one, with
 * the dim their record's size implies -- and since the record is not read,
 * its damage is found where it is next read, not here. */
static int want_odd(void *ctx, uint32_t ns_id, uint64_t id) {
    (void)ctx;
    return ns_id == 1 && id % 2 == 1;
}

static int on_entry_maybe_vector(void *ctx, const store_entry_rec *e) {
    seen *s = ctx;
    if (s->entries < 64) s->ids[s->entries] = e->id;
    s->entries++;
    if (e->dim != DIM) return -1;
    if (e->id % 2 == 1)
        return e->vector && memcmp(e->vector, vec, sizeof vec) == 0 ? 0 : -2;
    return e->vector == NULL ? 0 : -3;
}

static void test_vectors_the_loader_does_not_want_are_not_read(void) {
    fresh_dir();
    store *st = open_store(0);
    put_three(st);
    store_close(st);
    flip_record_byte("vectors", 1, 12, 20); /* damaged, and not wanted */
    st = open_store(0);
    store_load_stats stats;
    seen s;
    memset(&s, 0, sizeof s);
    char msg[256];
    store_load_fns fns = {
        .ns = on_ns, .want_vector = want_odd, .entry = on_entry_maybe_vector, .ctx = &s};
    ASSERT_OK(store_load(st, 100, &fns, &stats, msg, sizeof msg));
    ASSERT_EQ(s.entries, 3);
    ASSERT_U64_EQ(s.ids[0], 10);
    ASSERT_U64_EQ(s.ids[1], 11);
    ASSERT_U64_EQ(s.ids[2], 12);
    ASSERT_U64_EQ(stats.damaged, 0);
    /* The same damage is still refused where the vector is read. */
    store_reader *rd = NULL;
    ASSERT_OK(store_reader_begin(st, &rd));
    float scratch[DIM];
    const float *v = NULL;
    ASSERT_EQ(store_read_vector(rd, 1, 12, DIM, scratch, &v), DEJA_ERR_CORRUPT);
    ASSERT_OK(store_read_vector(rd, 1, 11, DIM, scratch, &v));
    ASSERT_TRUE(memcmp(v, vec, sizeof vec) == 0);
    store_reader_end(rd);
    store_close(st);
}

static void test_a_folder_of_another_format_is_refused(void) {
    fresh_dir();
    store *st = open_store(0);
    store_close(st);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ASSERT_OK(mdb_env_create(&env));
    mdb_env_set_maxdbs(env, 8);
    ASSERT_OK(mdb_env_open(env, dir, 0, 0644));
    ASSERT_OK(mdb_txn_begin(env, NULL, 0, &txn));
    ASSERT_OK(mdb_dbi_open(txn, "meta", 0, &dbi));
    uint32_t future = STORE_FORMAT_VERSION + 1;
    MDB_val k = {6, "format"}, v = {4, &future};
    ASSERT_OK(mdb_put(txn, dbi, &k, &v, 0));
    ASSERT_OK(mdb_txn_commit(txn));
    mdb_env_close(env);

    store_config cfg = {.dir = dir, .fsync = STORE_FSYNC_OFF};
    char msg[256] = "";
    ASSERT_EQ(store_open(&cfg, &st, msg, sizeof msg), DEJA_ERR_VERSION);
    ASSERT_TRUE(strstr(msg, "format") != NULL);
    ASSERT_TRUE(st == NULL);
}

static void test_a_truncated_data_file_is_refused_without_a_crash(void) {
    fresh_dir();
    store *st = open_store(0);
    for (uint64_t id = 1; id <= 200; id++) {
        store_ns_rec ns = ns_rec(1, "big");
        char resp[32];
        snprintf(resp, sizeof resp, "response %llu", (unsigned long long)id);
        store_entry_rec e = entry_rec(1, id, resp, 0);
        store_op ops[2] = {{.kind = STORE_OP_PUT_NS, .ns = &ns},
                           {.kind = STORE_OP_PUT_ENTRY, .entry = &e}};
        ASSERT_OK(store_apply(st, ops, 2));
    }
    store_close(st);
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat sb;
    ASSERT_OK(stat(path, &sb));
    ASSERT_OK(truncate(path, sb.st_size / 2));
    store_config cfg = {.dir = dir, .fsync = STORE_FSYNC_OFF};
    char msg[256] = "";
    ASSERT_EQ(store_open(&cfg, &st, msg, sizeof msg), DEJA_ERR_CORRUPT);
    ASSERT_TRUE(strstr(msg, "truncated") != NULL);
}

static void test_a_full_map_fails_puts_but_not_deletes(void) {
    fresh_dir();
    store *st = open_store(1u << 20); /* 1 MiB at most */
    store_ns_rec ns = ns_rec(1, "full");
    store_op put_ns = {.kind = STORE_OP_PUT_NS, .ns = &ns};
    ASSERT_OK(store_apply(st, &put_ns, 1));
    static char big[16 * 1024];
    memset(big, 'z', sizeof big - 1);
    int full_at = 0;
    for (uint64_t id = 1; id <= 200 && !full_at; id++) {
        store_entry_rec e = entry_rec(1, id, big, 0);
        store_op op = {.kind = STORE_OP_PUT_ENTRY, .entry = &e};
        int rc = store_apply(st, &op, 1);
        if (rc) {
            ASSERT_EQ(rc, DEJA_ERR_STORAGE_FULL);
            ASSERT_EQ(op.result, DEJA_ERR_STORAGE_FULL);
            full_at = (int)id;
        }
    }
    ASSERT_GT(full_at, 10);
    /* A batch that mixes a delete with a put that cannot fit: the delete
     * goes through on its own. */
    store_entry_rec e = entry_rec(1, 999, big, 0);
    store_op mixed[2] = {{.kind = STORE_OP_DEL_ENTRY, .ns_id = 1, .id = 1},
                         {.kind = STORE_OP_PUT_ENTRY, .entry = &e}};
    store_apply(st, mixed, 2);
    ASSERT_EQ(mixed[0].result, 0);
    store_load_stats stats;
    seen s = load_all(st, 0, &stats);
    ASSERT_EQ(s.entries, full_at - 2 + (mixed[1].result == 0));
    store_close(st);
}

/* The namespace configuration is the store's own record (store.h): what
 * is encoded decodes to the same values, revision byte last; the older
 * forms still read; anything else is CORRUPT, never a guess. */
static void test_namespace_configurations_have_a_versioned_record_of_their_own(void) {
    store_ns_config cfg = {.dim = DIM,
                           .index_kind = 3,
                           .quant = 1,
                           .hnsw_m = 12,
                           .hnsw_ef_construction = 100,
                           .hnsw_ef_search = 40,
                           .ttl_mode = 1,
                           .flags = 0x05,
                           .min_threshold = -0.5f,
                           .dedup = 0.95f,
                           .default_ttl_s = 60,
                           .max_age_s = 600,
                           .max_bytes = 1u << 20,
                           .max_entries = 99,
                           .factory_len = 4,
                           .shadow = 1,
                           .gray_band = 0.9f};
    memcpy(cfg.factory, "Flat", 5);
    store_ns_rec ns = ns_rec(1, "cfg");
    store_ns_config_encode(&cfg, &ns);
    /* Revision 2: the block, the serving policy (u8, f32), the revision. */
    ASSERT_EQ(ns.config_len, STORE_NS_CONFIG_FIXED + 4 + 5 + 1);
    ASSERT_EQ(ns.config[ns.config_len - 1], STORE_NS_CONFIG_REVISION);
    store_ns_config back;
    ASSERT_OK(store_ns_config_decode(&ns, &back));
    ASSERT_EQ(back.dim, DIM);
    ASSERT_EQ(back.index_kind, 3);
    ASSERT_EQ(back.quant, 1);
    ASSERT_EQ(back.hnsw_m, 12);
    ASSERT_EQ(back.hnsw_ef_construction, 100);
    ASSERT_EQ(back.hnsw_ef_search, 40);
    ASSERT_EQ(back.ttl_mode, 1);
    ASSERT_EQ(back.flags, 0x05);
    ASSERT_TRUE(back.min_threshold == -0.5f && back.dedup == 0.95f);
    ASSERT_EQ(back.default_ttl_s, 60);
    ASSERT_EQ(back.max_age_s, 600);
    ASSERT_U64_EQ(back.max_bytes, 1u << 20);
    ASSERT_U64_EQ(back.max_entries, 99);
    ASSERT_EQ(back.factory_len, 4);
    ASSERT_TRUE(strcmp(back.factory, "Flat") == 0);
    ASSERT_EQ(back.shadow, 1);
    ASSERT_TRUE(back.gray_band == 0.9f);

    /* Revision 1 (every data folder written before the serving policy):
     * the block and its revision byte; no policy. */
    store_ns_rec rev1 = ns;
    rev1.config_len = STORE_NS_CONFIG_FIXED + 4 + 1;
    rev1.config[rev1.config_len - 1] = 1;
    ASSERT_OK(store_ns_config_decode(&rev1, &back));
    ASSERT_EQ(back.flags, 0x05);
    ASSERT_EQ(back.shadow, 0);
    ASSERT_TRUE(back.gray_band == 0.0f);

    /* Written before flag bit 2 existed: no revision byte, and the bits
     * servers then ignored mean nothing. */
    store_ns_rec legacy = ns;
    legacy.config_len = STORE_NS_CONFIG_FIXED + 4;
    ASSERT_OK(store_ns_config_decode(&legacy, &back));
    ASSERT_EQ(back.flags, 0x01);
    ASSERT_EQ(back.max_entries, 99);

    /* The first format: no configuration, every field 0 but dim. */
    store_ns_rec bare = ns_rec(2, "bare");
    ASSERT_OK(store_ns_config_decode(&bare, &back));
    ASSERT_EQ(back.dim, DIM);
    ASSERT_EQ(back.index_kind, 0);
    ASSERT_EQ(back.factory_len, 0);

    /* An unknown revision, or a length that fits no form, is damage. */
    store_ns_rec later = ns;
    later.config[later.config_len - 1] = STORE_NS_CONFIG_REVISION + 1;
    ASSERT_EQ(store_ns_config_decode(&later, &back), DEJA_ERR_CORRUPT);
    store_ns_rec cut = ns;
    cut.config_len = 20;
    ASSERT_EQ(store_ns_config_decode(&cut, &back), DEJA_ERR_CORRUPT);
    store_ns_rec longer = ns;
    longer.config_len += 3;
    ASSERT_EQ(store_ns_config_decode(&longer, &back), DEJA_ERR_CORRUPT);
}

int main(void) {
    RUN(test_namespace_configurations_have_a_versioned_record_of_their_own);
    RUN(test_what_was_applied_comes_back_after_reopening);
    RUN(test_deletes_and_namespace_flushes_are_durable);
    RUN(test_expired_entries_are_dropped_at_load);
    RUN(test_a_damaged_response_is_skipped_not_served);
    RUN(test_a_damaged_vector_is_skipped_not_served);
    RUN(test_vectors_the_loader_does_not_want_are_not_read);
    RUN(test_a_folder_of_another_format_is_refused);
    RUN(test_a_truncated_data_file_is_refused_without_a_crash);
    RUN(test_a_full_map_fails_puts_but_not_deletes);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return harness_result();
}
