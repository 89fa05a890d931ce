/* bench.h: what the parts of deja-bench share -- the run options, the
 * exact-search oracle, the server load generator and its results.
 *
 * deja-bench.c parses the command line and prints the report;
 * bench-oracle.c computes the ground truth; bench-server.c drives dejad
 * through libdeja (load phase, then closed-loop lookups). */
#ifndef DEJA_BENCH_H
#define DEJA_BENCH_H

#include <stdint.h>

#include "bench-hist.h"
#include "bench-synth.h"

typedef struct bench_opts {
    const char *addr;
    const char *ns;
    const char *auth_token; /* NULL = none */
    uint32_t connections;   /* client threads, one deja_client each */
    uint32_t pipeline;      /* lookups in flight per connection */
    uint32_t k;
    float threshold;
    double duration_s; /* of the lookup phase */
    uint32_t response_bytes;
    int timeout_ms; /* request timeout */
    int quiet;      /* no progress lines on stderr */
} bench_opts;

/* Exact best match of every query among the stored vectors. */
typedef struct bench_oracle {
    float *best_sim;    /* nq */
    uint32_t *best_idx; /* nq: row of the best entry */
    double seconds;     /* time it took */
} bench_oracle;

/* Brute force over the whole set (flat index, BLAS). Returns 0 or -1. */
int bench_oracle_compute(const synth_set *s, bench_oracle *o);
void bench_oracle_free(bench_oracle *o);

typedef struct bench_result {
    char server_name[128];
    uint64_t flushed; /* entries removed from the namespace first */

    /* load phase */
    uint64_t stores, store_errors;
    double load_s;
    bench_hist store_hist;
    int64_t server_entries; /* "entries" from namespace STATS, or -1 */

    /* lookup phase */
    uint64_t lookups;        /* replies received (hit, miss or error) */
    uint64_t hits;           /* replies with count > 0 */
    uint64_t oracle_hits;    /* of the queries sent, exact best >= threshold */
    uint64_t false_hits;     /* a returned entry's exact similarity < threshold */
    uint64_t missed_hits;    /* miss although the oracle has a match */
    uint64_t not_best;       /* hit, but hits[0] worse than the exact best */
    uint64_t sim_mismatches; /* returned similarity off the exact one by > 1e-3 */
    uint64_t unknown_ids;    /* returned id not among the stored entries */
    uint64_t errors;         /* error replies, failed sends, reconnects */
    uint64_t timeouts;
    uint64_t kind_lookups[SYNTH_KINDS], kind_hits[SYNTH_KINDS], kind_oracle[SYNTH_KINDS];
    double lookup_s;
    bench_hist lookup_hist;
} bench_result;

/* Flushes o->ns, stores every entry of s with o->connections clients,
 * then runs lookups of s's queries for o->duration_s and judges each
 * reply against the oracle. r must be zeroed by the caller. Returns 0, or
 * -1 if the server could not be used at all (message on stderr). */
int bench_server_run(const bench_opts *o, const synth_set *s, const bench_oracle *oracle,
                     bench_result *r);

#endif
