/* test-store-crash.c: an acknowledged STORE survives kill -9.
 *
 * Writer threads store entries as fast as they can over several
 * connections and keep a ledger of every id the server acknowledged. The
 * server is killed with SIGKILL at a random moment, 20 times; after each
 * restart every acknowledged entry must be found by its vector, with its id
 * and its exact response bytes. Runs with the default --fsync always. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "deja.h"
#include "harness.h"
#include "support/spawn.h"

#define DIM 24
#define WRITERS 4
#define ROUNDS 20
#define MAX_LEDGER 200000

typedef struct ledger_entry {
    uint64_t seed; /* the vector and the response derive from it */
    uint64_t id;   /* as acknowledged */
} ledger_entry;

static test_server srv;
static ledger_entry ledger[MAX_LEDGER];
static atomic_size_t ledger_len;
static atomic_uint_fast64_t next_seed = 1;
static atomic_int stop_writers;

static void response_of(uint64_t seed, char *buf, size_t cap) {
    /* Sizes vary so records straddle pages differently. */
    int pad = (int)(seed % 300);
    int n = snprintf(buf, cap, "answer-%llu-", (unsigned long long)seed);
    for (int i = 0; i < pad && n + 1 < (int)cap; i++)
        buf[n++] = (char)('a' + (seed + i) % 26);
    buf[n] = 0;
}

static void *writer(void *arg) {
    (void)arg;
    deja_options opts = {.connect_timeout_ms = 1000, .request_timeout_ms = 5000};
    deja_client *c = NULL;
    if (deja_connect(srv.addr, &opts, &c) != 0) return NULL;
    while (!atomic_load(&stop_writers)) {
        uint64_t seed = atomic_fetch_add(&next_seed, 1);
        float v[DIM];
        char resp[400];
        test_unit_vector(seed, v, DIM);
        response_of(seed, resp, sizeof resp);
        deja_store_req req = {.ns = "crash",
                              .vector = v,
                              .dim = DIM,
                              .response = resp,
                              .response_len = strlen(resp)};
        uint64_t id;
        if (deja_store(c, &req, &id) != 0) break; /* killed mid-request */
        size_t at = atomic_fetch_add(&ledger_len, 1);
        if (at < MAX_LEDGER) ledger[at] = (ledger_entry){seed, id};
    }
    deja_close(c);
    return NULL;
}

static void verify_ledger(void) {
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(srv.addr, NULL, &c));
    size_t n = atomic_load(&ledger_len);
    if (n > MAX_LEDGER) n = MAX_LEDGER;
    for (size_t i = 0; i < n; i++) {
        float v[DIM];
        char want[400];
        test_unit_vector(ledger[i].seed, v, DIM);
        response_of(ledger[i].seed, want, sizeof want);
        deja_result *r = NULL;
        ASSERT_OK(deja_lookup(c, "crash", v, DIM, 0.9999f, 1, 0, &r));
        if (r->count != 1)
            HARNESS_FAIL("acknowledged entry %llu (seed %llu) is missing",
                         (unsigned long long)ledger[i].id,
                         (unsigned long long)ledger[i].seed);
        ASSERT_U64_EQ(r->hits[0].id, ledger[i].id);
        ASSERT_EQ(r->hits[0].response_len, strlen(want));
        ASSERT_MEM_EQ(r->hits[0].response, want, strlen(want));
        deja_result_free(r);
    }
    deja_close(c);
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void test_every_acknowledged_store_survives_20_kills(void) {
    ASSERT_OK(test_server_start(&srv, NULL));
    unsigned rng = (unsigned)time(NULL);
    fprintf(stderr, "crash test seed %u\n", rng);
    for (int round = 0; round < ROUNDS; round++) {
        atomic_store(&stop_writers, 0);
        pthread_t t[WRITERS];
        for (int i = 0; i < WRITERS; i++)
            pthread_create(&t[i], NULL, writer, NULL);
        /* A random moment, from right away to ~300 ms into the writes:
         * the kill is meant to land mid-commit some of the time. */
        sleep_us((long)(rand_r(&rng) % 300000));
        test_server_kill(&srv);
        atomic_store(&stop_writers, 1);
        for (int i = 0; i < WRITERS; i++)
            pthread_join(t[i], NULL);
        ASSERT_OK(test_server_restart(&srv, NULL));
        verify_ledger();
    }
    fprintf(stderr, "%zu acknowledged stores verified after %d kills\n",
            atomic_load(&ledger_len), ROUNDS);
    ASSERT_GT(atomic_load(&ledger_len), 100);
    ASSERT_OK(test_server_stop(&srv)); /* and the last start exits cleanly */
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    RUN(test_every_acknowledged_store_survives_20_kills);
    return harness_result();
}
