/* bench-oracle.c: the exact answer to every bench query, so that the
 * server's replies can be judged (hit rate the data allows, false hits,
 * misses, worse-than-best hits) and not merely counted.
 *
 * The vectors go into idx's flat index and idx_search_batch scores all
 * queries against all entries with sgemm: nq x n x dim multiply-adds, a
 * few seconds for 10^4 x 10^4 x 1536, done once before the run. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"
#include "idx.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void bench_oracle_free(bench_oracle *o) {
    free(o->best_sim);
    free(o->best_idx);
    o->best_sim = NULL;
    o->best_idx = NULL;
}

int bench_oracle_compute(const synth_set *s, bench_oracle *o) {
    double t0 = now_s();
    o->best_sim = malloc(((size_t)s->nq + 1) * sizeof *o->best_sim);
    o->best_idx = malloc(((size_t)s->nq + 1) * sizeof *o->best_idx);
    idx_hit *hits = malloc(((size_t)s->nq + 1) * sizeof *hits);
    uint32_t *nout = malloc(((size_t)s->nq + 1) * sizeof *nout);
    idx *ix = NULL;
    idx_config cfg = {.kind = IDX_KIND_FLAT, .dim = s->dim, .initial_capacity = s->n};
    int rc = -1;
    if (!o->best_sim || !o->best_idx || !hits || !nout || idx_create(&cfg, &ix) != 0) {
        fprintf(stderr, "oracle: out of memory\n");
        goto out;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        if (idx_add(ix, i, s->base + (size_t)i * s->dim) != 0) {
            fprintf(stderr, "oracle: cannot add entry %u\n", i);
            goto out;
        }
    }
    if (s->nq > 0 && idx_search_batch(ix, s->queries, s->nq, 1, hits, nout) != 0) {
        fprintf(stderr, "oracle: batch search failed\n");
        goto out;
    }
    for (uint32_t q = 0; q < s->nq; q++) {
        /* Every query has a best match: the set is never empty. */
        o->best_sim[q] = nout[q] ? hits[q].score : -2.0f;
        o->best_idx[q] = nout[q] ? (uint32_t)hits[q].label : UINT32_MAX;
    }
    o->seconds = now_s() - t0;
    rc = 0;
out:
    idx_destroy(ix);
    free(hits);
    free(nout);
    if (rc != 0) bench_oracle_free(o);
    return rc;
}
