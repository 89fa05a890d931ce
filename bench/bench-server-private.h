/* bench-server-private.h: what server mode's two lookup drivers share --
 * the closed loop of bench-server.c (a thread per connection, through
 * libdeja) and the open loop of bench-openloop.c (one thread for every
 * connection, on its own sockets): the phase's read-only context and the
 * judging of a reply against the exact oracle. Not used outside bench/. */
#ifndef DEJA_BENCH_SERVER_PRIVATE_H
#define DEJA_BENCH_SERVER_PRIVATE_H

#include <pthread.h>
#include <stdint.h>

#include "bench.h"
#include "deja.h"

/* Every entry is stored with this prompt and its row number, so that a
 * run with --no-load can tell from a hit which row it is. */
#define BENCH_PROMPT_PREFIX "deja-bench row "

typedef struct bench_id_row {
    uint64_t id;
    uint32_t row;
} bench_id_row;

/* Read-only state shared by all threads of a phase. */
typedef struct bench_ctx {
    const bench_opts *o;
    const synth_set *s;
    const bench_oracle *oracle;
    uint64_t *ids;       /* row -> entry id, filled by the load phase */
    bench_id_row *by_id; /* sorted by id, for judging replies */
    int by_prompt;       /* --no-load: the row comes from the stored prompt */
    const char *filler;
    uint32_t depth;
    pthread_barrier_t start;
    uint64_t start_ns, end_ns;
    bench_progress *progress;
} bench_ctx;

/* Judges the reply to query q (hits[0..count), best first; count 0 is a
 * miss) against the exact oracle and adds it to r's answer counters.
 * A hit's prompt need not be NUL-terminated: prompt_len bounds it. */
void bench_judge(const bench_ctx *x, bench_result *r, uint32_t q, const deja_hit *hits,
                 uint32_t count);

/* Runs the open loop (--rate) over o->connections connections from one
 * driver thread, from now for o->duration_s or o->count lookups, and adds
 * its counters and histograms to r (bench-openloop.c). Returns the
 * phase's wall time in seconds, or -1 when no connection could be made. */
double bench_openloop_run(bench_ctx *x, bench_result *r);

#endif
