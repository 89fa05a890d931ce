/* bench-index.c: deja-bench's index mode -- the vector indexes measured
 * in-process, with no server and no network in the way.
 *
 * Every configured index (deja's HNSW in f32 and int8, FAISS indexes
 * through deja's FAISS kind, the exact flat index) is built from the
 * workload's base and searched with every query at every ef of the sweep.
 * A row reports build time, memory per entry, QPS on one thread and on
 * --threads threads, latency percentiles of the one-thread pass, recall@1
 * and recall@10 against the exact answer, and hit recall at the
 * threshold: of the queries whose exact best match reaches the threshold,
 * the share for which the index also returns an entry that does -- for a
 * cache, the figure that matters most.
 *
 * Recall counts a returned entry as correct when its exact similarity is
 * at least the exact k-th best (minus float rounding), as ann-benchmarks
 * does, so ties between equally similar entries never count as misses.
 * Each index is destroyed before the next one is built, so peak memory is
 * the workload plus one index. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "idx.h"

/* idx.h documents ef_search 0 as 64: the breadth dejad searches with
 * unless configured otherwise, so that row is marked as the default. */
#define HNSW_DEFAULT_EF 64u
#define TIE_EPS 1e-6f
#define BUILD_CHUNK 64u

typedef struct index_spec {
    char name[32];
    char params[128];
    idx_config cfg;
    int sweep; /* ef changes the search (HNSW's breadth, IVF's nprobe) */
} index_spec;

/* ---- building --------------------------------------------------------------------*/

typedef struct build_job {
    idx *ix;
    const synth_set *s;
    atomic_uint next;
    atomic_int failed;
    bench_progress *progress;
} build_job;

static void *build_main(void *arg) {
    build_job *b = arg;
    for (;;) {
        uint32_t lo = atomic_fetch_add(&b->next, BUILD_CHUNK);
        if (lo >= b->s->n || atomic_load(&b->failed)) break;
        uint32_t hi = b->s->n - lo > BUILD_CHUNK ? lo + BUILD_CHUNK : b->s->n;
        for (uint32_t i = lo; i < hi; i++) {
            int rc = idx_add(b->ix, i, b->s->base + (size_t)i * b->s->dim);
            if (rc != 0) {
                if (atomic_exchange(&b->failed, rc) == 0)
                    fprintf(stderr, "deja-bench: add %u: %s\n", i, deja_strerror(rc));
                return NULL;
            }
        }
        bench_progress_add(b->progress, hi - lo);
    }
    return NULL;
}

/* Adds every base row under its row number, on several threads when the
 * index takes concurrent adds. Returns 0 or a DEJA_ERR_* code. */
static int build(idx *ix, const synth_set *s, uint32_t threads, const char *name,
                 int progress) {
    char label[64];
    snprintf(label, sizeof label, "building %s", name);
    build_job b = {.ix = ix, .s = s};
    atomic_init(&b.next, 0);
    atomic_init(&b.failed, 0);
    b.progress = bench_progress_start(progress, label, s->n, 0);
    if (!idx_concurrent_writes(ix)) threads = 1;
    pthread_t *t = calloc(threads, sizeof *t);
    uint32_t started = 0;
    for (uint32_t i = 1; t && i < threads; i++)
        if (pthread_create(&t[i], NULL, build_main, &b) == 0) started = i;
    build_main(&b);
    for (uint32_t i = 1; i <= started; i++)
        pthread_join(t[i], NULL);
    free(t);
    bench_progress_done(b.progress);
    return atomic_load(&b.failed);
}

/* ---- searching -----------------------------------------------------------------*/

typedef struct search_job {
    const idx *ix;
    const synth_set *s;
    uint32_t k, ef;
    uint32_t q0, q1;   /* this thread's queries */
    uint64_t until_ns; /* keep passing over them until then */
    pthread_barrier_t *start;
    bench_hist *hist; /* latencies, or NULL */
    idx_hit *results; /* nq x k from the first pass, or NULL */
    uint32_t *nres;
    bench_progress *progress;
    uint64_t searches, finish_ns;
    int rc;
} search_job;

static void *search_main(void *arg) {
    search_job *j = arg;
    idx_hit local[256];
    pthread_barrier_wait(j->start);
    for (int pass = 0;; pass++) {
        for (uint32_t q = j->q0; q < j->q1; q++) {
            const float *query = j->s->queries + (size_t)q * j->s->dim;
            idx_hit *out =
                pass == 0 && j->results ? j->results + (size_t)q * j->k : local;
            uint32_t nout = 0;
            uint64_t t0 = bench_now_ns();
            int rc = idx_search_ef(j->ix, query, j->k, j->ef, -INFINITY, NULL, NULL, out,
                                   &nout);
            if (j->hist) bench_hist_record(j->hist, bench_now_ns() - t0);
            if (rc != 0) {
                j->rc = rc;
                j->finish_ns = bench_now_ns();
                return NULL;
            }
            if (pass == 0 && j->nres) j->nres[q] = nout;
            j->searches++;
            if (pass == 0) bench_progress_add(j->progress, 1);
        }
        if (bench_now_ns() >= j->until_ns) break;
    }
    j->finish_ns = bench_now_ns();
    return NULL;
}

/* Searches every query on `threads` threads, passing over the queries
 * until min_s has gone by. Returns queries per second, or -1. */
static double measure(const idx *ix, const synth_set *s, uint32_t k, uint32_t ef,
                      uint32_t threads, double min_s, bench_hist *hist, idx_hit *results,
                      uint32_t *nres, bench_progress *progress) {
    search_job *jobs = calloc(threads, sizeof *jobs);
    pthread_t *t = calloc(threads, sizeof *t);
    pthread_barrier_t start;
    if (!jobs || !t) {
        free(jobs);
        free(t);
        return -1;
    }
    pthread_barrier_init(&start, NULL, threads);
    for (uint32_t i = 0; i < threads; i++)
        jobs[i] = (search_job){.ix = ix,
                               .s = s,
                               .k = k,
                               .ef = ef,
                               .q0 = (uint32_t)((uint64_t)s->nq * i / threads),
                               .q1 = (uint32_t)((uint64_t)s->nq * (i + 1) / threads),
                               .start = &start,
                               .hist = hist,
                               .results = results,
                               .nres = nres,
                               .progress = progress};
    /* The deadline is set before anyone starts; a late thread only makes
     * its own share shorter, and every thread passes over its queries at
     * least once. */
    uint64_t t0 = bench_now_ns();
    for (uint32_t i = 0; i < threads; i++)
        jobs[i].until_ns = t0 + (uint64_t)(min_s * 1e9);
    uint32_t started = 1;
    for (uint32_t i = 1; i < threads; i++) {
        if (pthread_create(&t[i], NULL, search_main, &jobs[i]) != 0) {
            /* Without all threads the barrier would never open. */
            fprintf(stderr, "deja-bench: cannot start search thread\n");
            exit(BENCH_EXIT_FAILED);
        }
        started++;
    }
    search_main(&jobs[0]);
    uint64_t searches = 0, finish = t0;
    int rc = jobs[0].rc;
    for (uint32_t i = 0; i < started; i++) {
        if (i) pthread_join(t[i], NULL);
        searches += jobs[i].searches;
        if (jobs[i].finish_ns > finish) finish = jobs[i].finish_ns;
        if (jobs[i].rc) rc = jobs[i].rc;
    }
    pthread_barrier_destroy(&start);
    free(jobs);
    free(t);
    if (rc != 0) {
        fprintf(stderr, "deja-bench: search failed: %s\n", deja_strerror(rc));
        return -1;
    }
    double secs = (double)(finish - t0) / 1e9;
    return secs > 0 ? (double)searches / secs : 0;
}

/* Recall and hit recall of one pass's results. */
static void score(const bench_opts *o, const synth_set *s, const bench_oracle *oracle,
                  uint32_t k, const idx_hit *res, const uint32_t *nres,
                  bench_index_row *row) {
    double r1 = 0, r10 = 0;
    uint32_t at10 = k < 10 ? k : 10;
    uint64_t oracle_hits = 0, found = 0, false_hits = 0;
    for (uint32_t q = 0; q < s->nq; q++) {
        const float *query = s->queries + (size_t)q * s->dim;
        const float *gt = oracle->sims + (size_t)q * oracle->k;
        const idx_hit *r = res + (size_t)q * k;
        float first_exact = -INFINITY;
        uint32_t good = 0;
        for (uint32_t i = 0; i < nres[q] && i < at10; i++) {
            float exact =
                r[i].label < s->n
                    ? idx_dot(query, s->base + (size_t)r[i].label * s->dim, s->dim)
                    : -INFINITY;
            if (i == 0) first_exact = exact;
            if (exact >= gt[at10 - 1] - TIE_EPS) good++;
        }
        r1 += first_exact >= gt[0] - TIE_EPS;
        r10 += (double)good / at10;
        if (gt[0] >= o->threshold) {
            oracle_hits++;
            if (first_exact >= o->threshold) found++;
        }
        /* As dejad would answer: the reported score decides the hit. */
        if (nres[q] && r[0].score >= o->threshold &&
            first_exact < o->threshold - BENCH_FALSE_HIT_SLACK)
            false_hits++;
    }
    row->recall_at_1 = s->nq ? r1 / s->nq : 0;
    row->recall_at_10 = s->nq ? r10 / s->nq : 0;
    row->oracle_hits = oracle_hits;
    row->false_hits = false_hits;
    row->hit_recall = oracle_hits ? (double)found / (double)oracle_hits : 1.0;
}

/* ---- the configurations ------------------------------------------------------------*/

static const char *faiss_row_name(const char *factory) {
    if (!strncmp(factory, "HNSW", 4)) return "faiss-hnsw";
    if (!strncmp(factory, "IVF", 3)) return "faiss-ivf";
    if (!strcmp(factory, "Flat")) return "faiss-flat";
    return "faiss";
}

static int make_specs(const bench_opts *o, const synth_set *s, index_spec *specs) {
    int n = 0;
    uint32_t M = o->M ? o->M : 16, efc = o->ef_construction ? o->ef_construction : 200;
    for (int quant = 0; quant < 2; quant++) {
        if (quant == 0 ? !o->quant_f32 : !o->quant_int8) continue;
        index_spec *sp = &specs[n++];
        snprintf(sp->name, sizeof sp->name, quant ? "deja-hnsw-int8" : "deja-hnsw");
        snprintf(sp->params, sizeof sp->params, "M=%u efConstruction=%u quant=%s", M, efc,
                 quant ? "int8" : "f32");
        sp->cfg = (idx_config){.kind = IDX_KIND_HNSW,
                               .dim = s->dim,
                               .initial_capacity = s->n,
                               .M = M,
                               .ef_construction = efc,
                               .quant = quant ? IDX_QUANT_INT8 : IDX_QUANT_F32};
        sp->sweep = 1;
    }
    for (int i = 0; i < o->n_faiss; i++) {
        index_spec *sp = &specs[n++];
        snprintf(sp->name, sizeof sp->name, "%s", faiss_row_name(o->faiss[i]));
        /* A baseline: built in FAISS's baseline mode, which accepts types
         * that cannot remove (HNSW in FAISS 1.7.3), sets an HNSW's
         * efConstruction to --ef-construction and sweeps ef as its
         * efSearch; for a top-level IVF, ef is nprobe. */
        int hnsw = !strncmp(o->faiss[i], "HNSW", 4);
        sp->sweep = hnsw || !strncmp(o->faiss[i], "IVF", 3);
        if (hnsw)
            snprintf(sp->params, sizeof sp->params,
                     "factory=%s efConstruction=%u "
                     "(ef = efSearch)",
                     o->faiss[i], efc);
        else
            snprintf(sp->params, sizeof sp->params, "factory=%s%s", o->faiss[i],
                     sp->sweep ? " (ef = nprobe)" : " (FAISS defaults otherwise)");
        sp->cfg = (idx_config){.kind = IDX_KIND_FAISS,
                               .dim = s->dim,
                               .initial_capacity = s->n,
                               .ef_construction = efc,
                               .faiss_factory = o->faiss[i],
                               .faiss_baseline = 1};
    }
    if (!o->no_flat) {
        index_spec *sp = &specs[n++];
        snprintf(sp->name, sizeof sp->name, "deja-flat");
        snprintf(sp->params, sizeof sp->params, "exact");
        sp->cfg =
            (idx_config){.kind = IDX_KIND_FLAT, .dim = s->dim, .initial_capacity = s->n};
    }
    return n;
}

static bench_index_row *new_row(bench_index_result *r, const index_spec *sp) {
    bench_index_row *rows = realloc(r->rows, (size_t)(r->n_rows + 1) * sizeof *rows);
    if (rows == NULL) return NULL;
    r->rows = rows;
    bench_index_row *row = &rows[r->n_rows++];
    memset(row, 0, sizeof *row);
    snprintf(row->index, sizeof row->index, "%s", sp->name);
    snprintf(row->params, sizeof row->params, "%s", sp->params);
    return row;
}

/* Builds one index and measures each of its rows. Returns 0, or -1 when
 * the run cannot go on (out of memory); an index that cannot be made is
 * a skipped row, not a failure. */
static int run_spec(const bench_opts *o, const synth_set *s, const bench_oracle *oracle,
                    const index_spec *sp, bench_index_result *r) {
    char msg[320] = "";
    idx *ix = NULL;
    uint32_t k = oracle->k;
    int rc = idx_create_msg(&sp->cfg, &ix, msg, sizeof msg);
    if (rc != 0) {
        bench_index_row *row = new_row(r, sp);
        if (row == NULL) return -1;
        row->skipped = 1;
        snprintf(row->note, sizeof row->note, "cannot create: %s (%s)", msg,
                 deja_strerror(rc));
        if (!o->quiet) fprintf(stderr, "deja-bench: %s: %s\n", sp->name, row->note);
        return 0;
    }
    if (!o->quiet)
        fprintf(stderr, "deja-bench: building %s (%s)\n", sp->name, sp->params);
    uint64_t t0 = bench_now_ns();
    rc = build(ix, s, o->threads, sp->name, o->progress);
    double build_s = (double)(bench_now_ns() - t0) / 1e9;
    if (rc != 0) {
        bench_index_row *row = new_row(r, sp);
        idx_destroy(ix);
        if (row == NULL) return -1;
        row->skipped = 1;
        snprintf(row->note, sizeof row->note, "build failed: %s", deja_strerror(rc));
        return 0;
    }
    size_t bytes = idx_memory(ix);
    idx_hit *res = malloc(((size_t)s->nq * k + 1) * sizeof *res);
    uint32_t *nres = calloc((size_t)s->nq + 1, sizeof *nres);
    bench_hist *hist = malloc(sizeof *hist);
    if (!res || !nres || !hist) {
        free(res);
        free(nres);
        free(hist);
        idx_destroy(ix);
        return -1;
    }
    int n_ef = sp->sweep ? o->n_ef : 1;
    for (int e = 0; e < n_ef; e++) {
        uint32_t ef = sp->sweep ? o->ef[e] : 0;
        bench_index_row *row = new_row(r, sp);
        if (row == NULL) break;
        row->ef = ef;
        row->default_ef = sp->cfg.kind == IDX_KIND_HNSW && ef == HNSW_DEFAULT_EF;
        row->build_s = build_s;
        row->bytes = bytes;
        row->bytes_per_entry = s->n ? (double)bytes / s->n : 0;
        row->threads = o->threads;
        char label[64];
        snprintf(label, sizeof label, "%s ef=%u", sp->name, ef);
        bench_hist_init(hist);
        bench_progress *p = bench_progress_start(o->progress, label, s->nq, 0);
        row->qps_1t = measure(ix, s, k, ef, 1, o->min_seconds, hist, res, nres, p);
        bench_progress_done(p);
        if (row->qps_1t >= 0 && o->threads > 1) {
            p = bench_progress_start(o->progress, label, 0, o->min_seconds);
            row->qps =
                measure(ix, s, k, ef, o->threads, o->min_seconds, NULL, NULL, NULL, p);
            bench_progress_done(p);
        } else {
            row->qps = row->qps_1t;
        }
        if (row->qps_1t < 0 || row->qps < 0) {
            row->skipped = 1;
            snprintf(row->note, sizeof row->note, "search failed");
            continue;
        }
        row->p50_us = (double)bench_hist_quantile(hist, 0.5) / 1e3;
        row->p99_us = (double)bench_hist_quantile(hist, 0.99) / 1e3;
        row->mean_us = bench_hist_mean(hist) / 1e3;
        score(o, s, oracle, k, res, nres, row);
    }
    free(res);
    free(nres);
    free(hist);
    idx_destroy(ix);
    return 0;
}

void bench_index_result_free(bench_index_result *r) {
    free(r->rows);
    r->rows = NULL;
    r->n_rows = 0;
}

int bench_index_run(const bench_opts *o, const synth_set *s, const bench_oracle *oracle,
                    bench_index_result *r) {
    memset(r, 0, sizeof *r);
    index_spec specs[2 + BENCH_MAX_FAISS + 1];
    int n = make_specs(o, s, specs);
    if (n == 0) {
        fprintf(stderr, "deja-bench: no index to measure\n");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (run_spec(o, s, oracle, &specs[i], r) != 0) {
            fprintf(stderr, "deja-bench: out of memory measuring %s\n", specs[i].name);
            return -1;
        }
    }
    return 0;
}
