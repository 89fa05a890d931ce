/* test-store-restart.c: what dejad acknowledged is there after a restart,
 * clean or not; what it deleted stays deleted; what expired while it was
 * down is not served.
 *
 * Talks to a real dejad on a real data folder through libdeja, restarting
 * the process on the same folder. Each test starts its own dejad and
 * stores what it needs (a_server_with_acknowledged_entries), and stops
 * and removes it at the end. */
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deja.h"
#include "harness.h"
#include "support/spawn.h"

#define DIM 32
#define N 200

/* The ids store_all got for the entries of "kept", by index. */
static uint64_t ids[N];

static void response_of(int i, char *buf, size_t cap) {
    snprintf(buf, cap, "stored answer #%d", i);
}

static deja_client *connect_or_fail(const test_server *s) {
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(s->addr, NULL, &c));
    return c;
}

static void store_all(deja_client *c) {
    for (int i = 0; i < N; i++) {
        float v[DIM];
        char resp[64];
        test_unit_vector((uint64_t)i, v, DIM);
        response_of(i, resp, sizeof resp);
        deja_store_req req = {.ns = "kept",
                              .vector = v,
                              .dim = DIM,
                              .response = resp,
                              .response_len = strlen(resp)};
        ASSERT_OK(deja_store(c, &req, &ids[i]));
    }
    /* A second namespace whose entries live one minute. */
    for (int i = 0; i < 10; i++) {
        float v[16];
        test_unit_vector(1000u + (uint64_t)i, v, 16);
        deja_store_req req = {.ns = "short",
                              .vector = v,
                              .dim = 16,
                              .response = "brief",
                              .response_len = 5,
                              .ttl_s = 60};
        ASSERT_OK(deja_store(c, &req, NULL));
    }
    /* A third that is flushed, and five deleted entries. */
    for (int i = 0; i < 5; i++) {
        float v[DIM];
        test_unit_vector(2000u + (uint64_t)i, v, DIM);
        deja_store_req req = {.ns = "flushed",
                              .vector = v,
                              .dim = DIM,
                              .response = "gone",
                              .response_len = 4};
        ASSERT_OK(deja_store(c, &req, NULL));
    }
    uint64_t removed;
    ASSERT_OK(deja_flush(c, "flushed", &removed));
    ASSERT_U64_EQ(removed, 5);
    for (int i = 0; i < 5; i++)
        ASSERT_OK(deja_delete(c, "kept", ids[i]));
}

/* Every surviving entry is found with its id and exact bytes; the deleted
 * ones are not. */
static void assert_kept_entries(deja_client *c) {
    for (int i = 0; i < N; i++) {
        float v[DIM];
        test_unit_vector((uint64_t)i, v, DIM);
        deja_result *r = NULL;
        ASSERT_OK(deja_lookup(c, "kept", v, DIM, 0.999f, 1, 0, &r));
        if (i < 5) {
            ASSERT_EQ(r->count, 0);
        } else {
            char want[64];
            response_of(i, want, sizeof want);
            ASSERT_EQ(r->count, 1);
            ASSERT_U64_EQ(r->hits[0].id, ids[i]);
            ASSERT_EQ(r->hits[0].response_len, strlen(want));
            ASSERT_MEM_EQ(r->hits[0].response, want, strlen(want));
        }
        deja_result_free(r);
    }
}

static uint64_t ns_entries(deja_client *c, const char *ns) {
    deja_stats *s = NULL;
    uint64_t v = 0;
    if (deja_stats_get(c, ns, &s) != 0) return 0; /* unknown namespace */
    ASSERT_OK(deja_stats_find(s, "entries", &v));
    deja_stats_free(s);
    return v;
}

static uint64_t stat_of(deja_client *c, const char *ns, const char *key) {
    deja_stats *s = NULL;
    uint64_t v = 0;
    ASSERT_OK(deja_stats_get(c, ns, &s));
    ASSERT_OK(deja_stats_find(s, key, &v));
    deja_stats_free(s);
    return v;
}

/* A fresh dejad with everything store_all writes acknowledged: N
 * entries in "kept" (five of them deleted since), ten one-minute entries
 * in "short", and "flushed" emptied. The server is left running. */
static void a_server_with_acknowledged_entries(test_server *s) {
    ASSERT_OK(test_server_start(s, NULL));
    deja_client *c = connect_or_fail(s);
    store_all(c);
    deja_close(c);
}

static void test_a_clean_restart_keeps_entries_namespaces_and_deletes(void) {
    test_server srv;
    a_server_with_acknowledged_entries(&srv);
    deja_client *c = connect_or_fail(&srv);
    assert_kept_entries(c); /* 195 hits */
    ASSERT_U64_EQ(stat_of(c, "kept", "entry_hits"), N - 5);
    deja_close(c);
    ASSERT_EQ(test_server_shutdown(&srv), 0);

    ASSERT_OK(test_server_restart(&srv, NULL));
    c = connect_or_fail(&srv);
    /* Hit counters came back with the entries. */
    ASSERT_U64_EQ(stat_of(c, "kept", "entry_hits"), N - 5);
    assert_kept_entries(c);
    ASSERT_U64_EQ(stat_of(c, "kept", "entry_hits"), 2 * (N - 5));
    ASSERT_U64_EQ(ns_entries(c, "short"), 10);
    ASSERT_U64_EQ(ns_entries(c, "flushed"), 0);

    /* The namespace kept its dimension... */
    float small[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    deja_store_req req = {
        .ns = "kept", .vector = small, .dim = 8, .response = "x", .response_len = 1};
    ASSERT_EQ(deja_store(c, &req, NULL), DEJA_ERR_DIM_MISMATCH);
    /* ...and new ids never reuse old ones. */
    float v[DIM];
    test_unit_vector(99999, v, DIM);
    req.vector = v;
    req.dim = DIM;
    uint64_t fresh;
    ASSERT_OK(deja_store(c, &req, &fresh));
    ASSERT_GT(fresh, ids[N - 1]);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

static void test_a_kill_9_restart_keeps_every_acknowledged_entry(void) {
    test_server srv;
    a_server_with_acknowledged_entries(&srv);
    test_server_kill(&srv);
    ASSERT_OK(test_server_restart(&srv, NULL));
    deja_client *c = connect_or_fail(&srv);
    assert_kept_entries(c);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

static void test_entries_that_expired_while_down_are_not_served(void) {
    test_server srv;
    a_server_with_acknowledged_entries(&srv);
    ASSERT_EQ(test_server_shutdown(&srv), 0);
    const char *later[] = {"--clock-offset", "120", NULL};
    ASSERT_OK(test_server_restart(&srv, later));
    deja_client *c = connect_or_fail(&srv);
    ASSERT_U64_EQ(ns_entries(c, "short"), 0);
    float v[16];
    test_unit_vector(1000u, v, 16);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "short", v, 16, 0.5f, 1, 0, &r));
    ASSERT_EQ(r->count, 0);
    deja_result_free(r);
    assert_kept_entries(c); /* the seven-day default TTL still holds */
    deja_close(c);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

/* Flips one byte in the middle of every graph snapshot file. */
static int damage_snapshots(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "for f in '%s'/snapshots/*.idx; do [ -f \"$f\" ] || exit 1; "
             "size=$(stat -c %%s \"$f\"); "
             "printf '\\377' | dd of=\"$f\" bs=1 seek=$((size / 2)) conv=notrunc "
             "status=none || exit 1; done",
             dir);
    return system(cmd);
}

static void test_a_clean_restart_restores_the_graph_from_its_snapshot(void) {
    test_server srv;
    a_server_with_acknowledged_entries(&srv);
    ASSERT_EQ(test_server_shutdown(&srv), 0);
    ASSERT_OK(test_server_restart(&srv, NULL));
    deja_client *c = connect_or_fail(&srv);
    /* Every entry of the graph namespaces came back through a snapshot. */
    ASSERT_GE(stat_of(c, NULL, "snapshot_entries"), N - 5);
    assert_kept_entries(c);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

/* The snapshot files' names, inodes and modification times, one line
 * each: a rewrite (to a temporary file, then renamed) changes the line. */
static void snapshot_listing(const char *dir, char *out, size_t cap) {
    char cmd[600];
    snprintf(
        cmd, sizeof cmd,
        "cd '%s/snapshots' && for f in ns-*.idx; do stat -c '%%n %%i %%y' \"$f\"; done",
        dir);
    FILE *p = popen(cmd, "r");
    ASSERT_TRUE(p != NULL);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    ASSERT_EQ(pclose(p), 0);
    ASSERT_TRUE(n > 0);
}

/* A shutdown after a restart that changed nothing does not write the
 * graphs again (at a million entries that is seconds); what the next start
 * reads is still the graph, and one new entry makes the next shutdown
 * write them. */
static void test_a_shutdown_with_nothing_new_keeps_the_snapshots_it_read(void) {
    test_server srv;
    a_server_with_acknowledged_entries(&srv);
    ASSERT_EQ(test_server_shutdown(&srv), 0);
    char before[2048], after[2048];
    snapshot_listing(srv.dir, before, sizeof before);
    ASSERT_OK(test_server_restart(&srv, NULL));
    deja_client *c = connect_or_fail(&srv);
    assert_kept_entries(c); /* lookups change no graph */
    deja_close(c);
    ASSERT_EQ(test_server_shutdown(&srv), 0);
    snapshot_listing(srv.dir, after, sizeof after);
    ASSERT_STR_EQ(after, before);

    ASSERT_OK(test_server_restart(&srv, NULL));
    c = connect_or_fail(&srv);
    ASSERT_GE(stat_of(c, NULL, "snapshot_entries"), N - 5);
    assert_kept_entries(c);
    float v[DIM];
    test_unit_vector(5000, v, DIM);
    deja_store_req req = {
        .ns = "kept", .vector = v, .dim = DIM, .response = "new", .response_len = 3};
    ASSERT_OK(deja_store(c, &req, NULL));
    deja_close(c);
    ASSERT_EQ(test_server_shutdown(&srv), 0);
    snapshot_listing(srv.dir, after, sizeof after);
    ASSERT_TRUE(strcmp(after, before) != 0);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

/* The snapshots are the ones a clean shutdown writes. */
static void test_a_damaged_snapshot_falls_back_to_a_rebuild(void) {
    test_server srv;
    a_server_with_acknowledged_entries(&srv);
    ASSERT_EQ(test_server_shutdown(&srv), 0);
    ASSERT_EQ(damage_snapshots(srv.dir), 0);
    ASSERT_OK(test_server_restart(&srv, NULL));
    deja_client *c = connect_or_fail(&srv);
    ASSERT_U64_EQ(stat_of(c, NULL, "snapshot_entries"), 0);
    assert_kept_entries(c); /* served all the same, while the graph rebuilds */
    deja_close(c);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

static void test_a_periodic_snapshot_spares_the_rebuild_after_a_crash(void) {
    test_server p;
    const char *args[] = {"--snapshot-interval", "1", "--fsync", "batch", NULL};
    ASSERT_OK(test_server_start(&p, args));
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(p.addr, NULL, &c));
    for (int i = 0; i < 50; i++) {
        float v[DIM];
        test_unit_vector(5000u + (uint64_t)i, v, DIM);
        deja_store_req req = {.ns = "periodic",
                              .vector = v,
                              .dim = DIM,
                              .response = "p",
                              .response_len = 1};
        ASSERT_OK(deja_store(c, &req, NULL));
    }
    /* The snapshot timer fires every second; give it ten. */
    uint64_t written = 0;
    for (int tries = 0; tries < 200 && written == 0; tries++) {
        deja_stats *s = NULL;
        ASSERT_OK(deja_stats_get(c, NULL, &s));
        ASSERT_OK(deja_stats_find(s, "snapshots_written", &written));
        deja_stats_free(s);
        if (!written) usleep(50000);
    }
    ASSERT_GT(written, 0);
    deja_close(c);
    test_server_kill(&p);
    ASSERT_OK(test_server_restart(&p, args));
    ASSERT_OK(deja_connect(p.addr, NULL, &c));
    deja_stats *s = NULL;
    uint64_t restored = 0;
    ASSERT_OK(deja_stats_get(c, NULL, &s));
    ASSERT_OK(deja_stats_find(s, "snapshot_entries", &restored));
    deja_stats_free(s);
    ASSERT_GT(restored, 0); /* what the graph held at the last snapshot */
    float v[DIM];
    test_unit_vector(5007u, v, DIM);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "periodic", v, DIM, 0.999f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    deja_result_free(r);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&p), 0);
}

/* Regression (issue #14): after a kill -9, the entries the graph lacked
 * wait for it again, and STOREs waited behind them whenever they were more
 * than --max-unindexed: 13 of 30 crash loops acknowledged nothing for up to
 * 10 s. The restart backlog is searchable and no STORE's doing: STOREs
 * wait only for what they add themselves. */
static void test_a_restart_backlog_does_not_stall_stores(void) {
    enum { BACKLOG = 4000, BIG = 1536 };
    test_server p;
    /* A wide graph search per insertion makes the rebuild take seconds on
     * a fast machine too. */
    const char *first[] = {"--snapshot-interval",
                           "0",
                           "--index-threads",
                           "1",
                           "--hnsw-ef-construction",
                           "2000",
                           NULL};
    ASSERT_OK(test_server_start(&p, first));
    deja_client *c = connect_or_fail(&p);
    static float v[BIG];
    deja_store_req batch[100];
    uint64_t got[100];
    int codes[100];
    static float vecs[100][BIG];
    for (int i = 0; i < BACKLOG; i += 100) {
        for (int j = 0; j < 100; j++) {
            test_unit_vector(90000u + (uint64_t)(i + j), vecs[j], BIG);
            batch[j] = (deja_store_req){.ns = "backlog",
                                        .vector = vecs[j],
                                        .dim = BIG,
                                        .response = "b",
                                        .response_len = 1};
        }
        ASSERT_OK(deja_store_many(c, batch, 100, got, codes));
        for (int j = 0; j < 100; j++)
            ASSERT_EQ(codes[j], 0);
    }
    deja_close(c);
    test_server_kill(&p); /* no snapshot: the whole graph is backlog */
    /* A limit far below the backlog (4,000), one slow indexer thread. */
    const char *again[] = {"--snapshot-interval",
                           "0",
                           "--index-threads",
                           "1",
                           "--hnsw-ef-construction",
                           "2000",
                           "--max-unindexed",
                           "100",
                           NULL};
    ASSERT_OK(test_server_restart(&p, again));
    /* Each STORE within 2 s: the backlog takes the one indexer thread
     * several seconds at that breadth. */
    deja_options opts = {.request_timeout_ms = 2000};
    ASSERT_OK(deja_connect(p.addr, &opts, &c));
    /* Fewer than the limit: none of them waits (the 101st would wait for
     * the graph to take the oldest of its own, behind the backlog). */
    for (int i = 0; i < 50; i++) {
        test_unit_vector(99000u + (uint64_t)i, v, BIG);
        deja_store_req req = {.ns = "backlog",
                              .vector = v,
                              .dim = BIG,
                              .response = "new",
                              .response_len = 3};
        ASSERT_OK(deja_store(c, &req, NULL));
    }
    /* The premise: the graph had not caught up when those were
     * acknowledged (otherwise this test proves nothing). */
    uint64_t unindexed = stat_of(c, NULL, "unindexed");
    ASSERT_GT(unindexed, 100);
    /* And what was stored is found, backlog included. */
    test_unit_vector(99007u, v, BIG);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "backlog", v, BIG, 0.999f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    deja_result_free(r);
    test_unit_vector(90000u + 1234u, v, BIG);
    ASSERT_OK(deja_lookup(c, "backlog", v, BIG, 0.999f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    deja_result_free(r);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&p), 0);
}

static void store_in(deja_client *c, const char *ns, uint64_t seed, uint64_t *id) {
    float v[DIM];
    test_unit_vector(seed, v, DIM);
    deja_store_req req = {
        .ns = ns, .vector = v, .dim = DIM, .response = "h", .response_len = 1};
    ASSERT_OK(deja_store(c, &req, id));
}

static void store_held(deja_client *c, uint64_t seed, uint64_t *id) {
    store_in(c, "held", seed, id);
}

static int held_hits(deja_client *c, uint64_t seed) {
    float v[DIM];
    test_unit_vector(seed, v, DIM);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "held", v, DIM, 0.999f, 1, 0, &r));
    int n = (int)r->count;
    deja_result_free(r);
    return n;
}

/* Waits until the graph holds every entry and a snapshot newer than
 * `after` (a snapshots_written count) is on disk; returns the count. */
static uint64_t wait_for_snapshot(deja_client *c, uint64_t after) {
    uint64_t written = after;
    for (int tries = 0; tries < 400; tries++) {
        written = stat_of(c, NULL, "snapshots_written");
        if (written > after && stat_of(c, "held", "unindexed") == 0) return written;
        usleep(50000);
    }
    ASSERT_GT(written, after);
    return written;
}

/* A periodic snapshot writes the graph without the namespace's lock: a
 * STORE or a DELETE made while it is written is answered at once (at a
 * million entries the write takes seconds, and every STORE waited for
 * it). Here the writer is held in the middle of its write: its temporary
 * file is a pipe of one page that the test does not drain. The DELETE
 * reaches the graph once the write is done, so the snapshots after it
 * hold the live entries only. */
static void test_a_snapshot_being_written_holds_up_no_store_or_delete(void) {
    enum { M = 300 }; /* a graph of about 40 KB: ten pipe pages */
    test_server srv;
    const char *args[] = {"--snapshot-interval", "1", NULL};
    ASSERT_OK(test_server_start(&srv, args));
    deja_options opts = {.request_timeout_ms = 3000};
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(srv.addr, &opts, &c));
    uint64_t doomed = 0;
    for (int i = 0; i < M; i++)
        store_held(c, 7000u + (uint64_t)i, i == 0 ? &doomed : NULL);
    uint64_t written = wait_for_snapshot(c, 0);

    char pipe_path[512];
    snprintf(pipe_path, sizeof pipe_path, "%s/snapshots/ns-%llu.idx.tmp", srv.dir,
             (unsigned long long)stat_of(c, "held", "ns_id"));
    ASSERT_EQ(mkfifo(pipe_path, 0644), 0);
    int rfd = open(pipe_path, O_RDONLY | O_NONBLOCK);
    ASSERT_TRUE(rfd >= 0);
    ASSERT_TRUE(fcntl(rfd, F_SETPIPE_SZ, 4096) >= 4096);
    store_held(c, 7000u + M, NULL); /* something new to write */
    struct pollfd pfd = {.fd = rfd, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 10000), 1); /* the writer is in, and stuck */

    uint64_t added = 0;
    store_held(c, 7001u + M, &added);
    ASSERT_OK(deja_delete(c, "held", doomed));
    ASSERT_EQ(held_hits(c, 7000u), 0);
    ASSERT_EQ(held_hits(c, 7001u + M), 1);

    /* Let the writer go (its fsync fails on a pipe: nothing is renamed). */
    ASSERT_EQ(fcntl(rfd, F_SETFL, 0), 0);
    char buf[4096];
    while (read(rfd, buf, sizeof buf) > 0) {
    }
    close(rfd);
    wait_for_snapshot(c, written);
    ASSERT_EQ(test_server_shutdown(&srv), 0);

    ASSERT_OK(test_server_restart(&srv, NULL));
    deja_close(c);
    ASSERT_OK(deja_connect(srv.addr, &opts, &c));
    /* M + 2 stored, one deleted: the graph dropped it. */
    ASSERT_U64_EQ(stat_of(c, NULL, "snapshot_entries"), M + 1);
    ASSERT_EQ(held_hits(c, 7000u), 0);
    ASSERT_EQ(held_hits(c, 7001u + M), 1);
    ASSERT_U64_EQ(ns_entries(c, "held"), M + 1);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

/* Snapshots are written by count too: once --snapshot-inserts entries
 * entered the graph since the last one, whatever the interval (here never
 * by time), so a crash after a burst of STOREs leaves few graph inserts to
 * redo. With the count off, nothing is written before the shutdown. */
static void test_a_burst_of_stores_is_snapshotted_by_count(void) {
    enum { BURST = 250 };
    test_server srv;
    const char *by_count[] = {"--snapshot-interval", "0", "--snapshot-inserts", "100",
                              NULL};
    ASSERT_OK(test_server_start(&srv, by_count));
    deja_client *c = connect_or_fail(&srv);
    for (int i = 0; i < BURST; i++)
        store_in(c, "burst", 9000u + (uint64_t)i, NULL);
    uint64_t written = 0, pending = BURST;
    for (int tries = 0; tries < 200; tries++) {
        written = stat_of(c, NULL, "snapshots_written");
        pending = stat_of(c, NULL, "graph_inserts_since_snapshot");
        if (written >= 1 && pending < 100 && stat_of(c, "burst", "unindexed") == 0) break;
        usleep(50000);
    }
    ASSERT_GE(written, 1); /* at 100 inserts or more, then 100 more */
    ASSERT_LT(pending, 100);
    deja_close(c);
    test_server_kill(&srv);
    ASSERT_OK(test_server_restart(&srv, by_count));
    c = connect_or_fail(&srv);
    ASSERT_GT(stat_of(c, NULL, "snapshot_entries"), BURST - 100);
    ASSERT_U64_EQ(ns_entries(c, "burst"), BURST);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&srv), 0);

    const char *by_time_only[] = {"--snapshot-interval", "0", "--snapshot-inserts", "0",
                                  NULL};
    ASSERT_OK(test_server_start(&srv, by_time_only));
    c = connect_or_fail(&srv);
    for (int i = 0; i < BURST; i++)
        store_in(c, "burst", 9000u + (uint64_t)i, NULL);
    for (int tries = 0; tries < 200 && stat_of(c, "burst", "unindexed") > 0; tries++)
        usleep(50000);
    usleep(300000); /* three sweeper ticks */
    ASSERT_U64_EQ(stat_of(c, NULL, "graph_inserts_since_snapshot"), BURST);
    ASSERT_U64_EQ(stat_of(c, NULL, "snapshots_written"), 0);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

static void test_a_second_server_cannot_open_the_same_folder(void) {
    test_server srv;
    a_server_with_acknowledged_entries(&srv);
    test_server other = srv;
    other.pid = 0;
    other.port = 0;
    /* Same data folder, another port: it must refuse and exit. */
    ASSERT_EQ(test_server_restart(&other, NULL), -1);
    ASSERT_EQ(test_server_stop(&srv), 0);
}

int main(void) {
    RUN(test_a_clean_restart_keeps_entries_namespaces_and_deletes);
    RUN(test_a_kill_9_restart_keeps_every_acknowledged_entry);
    RUN(test_entries_that_expired_while_down_are_not_served);
    RUN(test_a_clean_restart_restores_the_graph_from_its_snapshot);
    RUN(test_a_shutdown_with_nothing_new_keeps_the_snapshots_it_read);
    RUN(test_a_damaged_snapshot_falls_back_to_a_rebuild);
    RUN(test_a_restart_backlog_does_not_stall_stores);
    RUN(test_a_periodic_snapshot_spares_the_rebuild_after_a_crash);
    RUN(test_a_snapshot_being_written_holds_up_no_store_or_delete);
    RUN(test_a_burst_of_stores_is_snapshotted_by_count);
    RUN(test_a_second_server_cannot_open_the_same_folder);
    return harness_result();
}
