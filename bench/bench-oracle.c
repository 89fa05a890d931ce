/* bench-oracle.c: the exact answer to every bench query, so that replies
 * can be judged (recall, the hit rate the data allows, false hits) and not
 * merely counted.
 *
 * Static workloads (index and server modes) get the exact top-k of every
 * query over the whole base from idx_exact_topk (FAISS's exact
 * inner-product kernel, or sgemm without FAISS): nq x n x dim
 * multiply-adds, done once. For file data the answer is cached next to
 * the query file (see bench_gt_cache_path), because a million-vector base
 * takes minutes; a ground truth the user brings with --gt is checked
 * against the exact answer on its first queries, since a file made for
 * L2 on unnormalised vectors would silently rank differently.
 *
 * Streams (mixed mode) need, for each query, the best of what was stored
 * before it: bench_stream_oracle processes the events in chunks, scoring a
 * chunk's queries against everything stored before the chunk in one exact
 * batch and against the chunk's own earlier stores one by one. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "idx.h"

/* Queries per exact batch: big enough for sgemm to run at full speed,
 * small enough for the progress bar to move. */
#define ORACLE_BLOCK 1024u
/* Stream events per chunk; each chunk's queries cost one exact batch. */
#define STREAM_CHUNK 512u
/* How many queries of a user's --gt are checked against the exact answer. */
#define GT_CHECK 32u

void bench_oracle_free(bench_oracle *o) {
    free(o->ids);
    free(o->sims);
    o->ids = NULL;
    o->sims = NULL;
}

static int oracle_alloc(bench_oracle *o, uint32_t nq, uint32_t k) {
    o->nq = nq;
    o->k = k;
    o->ids = malloc(((size_t)nq * k + 1) * sizeof *o->ids);
    o->sims = malloc(((size_t)nq * k + 1) * sizeof *o->sims);
    if (o->ids && o->sims) return 0;
    fprintf(stderr, "deja-bench: out of memory for the ground truth\n");
    bench_oracle_free(o);
    return -1;
}

/* Exact top-k of queries [q0, q1) into o's rows. */
static int compute_rows(const synth_set *s, bench_oracle *o, uint32_t q0, uint32_t q1) {
    uint32_t k = o->k;
    idx_hit *hits = malloc(((size_t)(q1 - q0) * k + 1) * sizeof *hits);
    if (hits == NULL) return DEJA_ERR_NOMEM;
    int rc = idx_exact_topk(s->base, s->n, s->queries + (size_t)q0 * s->dim, q1 - q0,
                            s->dim, k, hits);
    for (size_t i = 0; rc == 0 && i < (size_t)(q1 - q0) * k; i++) {
        size_t at = (size_t)q0 * k + i;
        int none = hits[i].label >= s->n;
        o->ids[at] = none ? UINT32_MAX : (uint32_t)hits[i].label;
        o->sims[at] = none ? -INFINITY : hits[i].score;
    }
    free(hits);
    return rc;
}

static int compute(const bench_opts *o, const synth_set *s, bench_oracle *out) {
    bench_progress *p = bench_progress_start(o->progress, "ground truth", s->nq, 0);
    int rc = 0;
    for (uint32_t q0 = 0; rc == 0 && q0 < s->nq; q0 += ORACLE_BLOCK) {
        uint32_t q1 = s->nq - q0 > ORACLE_BLOCK ? q0 + ORACLE_BLOCK : s->nq;
        rc = compute_rows(s, out, q0, q1);
        bench_progress_set(p, q1);
    }
    bench_progress_done(p);
    if (rc != 0)
        fprintf(stderr, "deja-bench: exact search failed: %s\n", deja_strerror(rc));
    return rc == 0 ? 0 : -1;
}

/* Ids from an .ivecs file; similarities recomputed exactly. */
static int from_ivecs(const char *path, const synth_set *s, bench_oracle *out,
                      int user_given) {
    char err[600];
    int32_t *gt;
    uint32_t rows, cols;
    if (bench_ivecs_read(path, s->nq, &gt, &rows, &cols, err, sizeof err) != 0) {
        fprintf(stderr, "deja-bench: %s\n", err);
        return -1;
    }
    if (rows < s->nq || cols < out->k) {
        fprintf(stderr,
                "deja-bench: %s has %u rows of %u ids; need %u rows of at least %u\n",
                path, rows, cols, s->nq, out->k);
        free(gt);
        return -1;
    }
    for (uint32_t q = 0; q < s->nq; q++) {
        const float *query = s->queries + (size_t)q * s->dim;
        for (uint32_t j = 0; j < out->k; j++) {
            int32_t id = gt[(size_t)q * cols + j];
            size_t at = (size_t)q * out->k + j;
            if (id < 0 || (uint32_t)id >= s->n) {
                /* -1 pads a short list; anything else is a mismatch. */
                if (id != -1) {
                    fprintf(stderr,
                            "deja-bench: %s: query %u lists entry %d, but the base "
                            "has %u rows\n",
                            path, q, id, s->n);
                    free(gt);
                    return -1;
                }
                out->ids[at] = UINT32_MAX;
                out->sims[at] = -INFINITY;
                continue;
            }
            out->ids[at] = (uint32_t)id;
            out->sims[at] = idx_dot(query, s->base + (size_t)id * s->dim, s->dim);
        }
    }
    free(gt);
    if (!user_given) return 0;

    /* A ground truth for another metric or another base looks just as
     * valid: compare its first rows with the exact cosine answer. */
    uint32_t check = s->nq < GT_CHECK ? s->nq : GT_CHECK, bad = 0;
    bench_oracle ex = {0};
    if (check && oracle_alloc(&ex, s->nq, out->k) == 0 &&
        compute_rows(s, &ex, 0, check) == 0) {
        for (uint32_t q = 0; q < check; q++)
            bad += fabsf(ex.sims[(size_t)q * ex.k] - out->sims[(size_t)q * out->k]) >
                   BENCH_SIM_TOLERANCE;
        if (bad)
            fprintf(stderr,
                    "deja-bench: warning: %s disagrees with the exact cosine top-1 on "
                    "%u of its first %u queries (ground truth for L2 on unnormalised "
                    "vectors, or for another base?); recall figures will be off\n",
                    path, bad, check);
    }
    bench_oracle_free(&ex);
    return 0;
}

static void write_cache(const bench_opts *o, const char *path, bench_oracle *out) {
    int32_t *ids = malloc(((size_t)out->nq * out->k + 1) * sizeof *ids);
    if (ids == NULL) return;
    for (size_t i = 0; i < (size_t)out->nq * out->k; i++)
        ids[i] = out->ids[i] == UINT32_MAX ? -1 : (int32_t)out->ids[i];
    if (bench_ivecs_write(path, ids, out->nq, out->k) == 0) {
        snprintf(out->source, sizeof out->source, "computed, cached in %s", path);
    } else if (!o->quiet) {
        /* A read-only data folder only costs the next run the same wait. */
        fprintf(stderr, "deja-bench: cannot cache the ground truth in %s: %s\n", path,
                strerror(errno));
    }
    free(ids);
}

int bench_oracle_get(const bench_opts *o, const synth_set *s, uint32_t k,
                     bench_oracle *out) {
    memset(out, 0, sizeof *out);
    if (oracle_alloc(out, s->nq, k) != 0) return -1;
    uint64_t t0 = bench_now_ns();
    int rc;
    char cache[4400] = "";
    if (o->gt_path) {
        rc = from_ivecs(o->gt_path, s, out, 1);
        snprintf(out->source, sizeof out->source, "ids from %s, similarities recomputed",
                 o->gt_path);
    } else {
        if (o->query_path)
            bench_gt_cache_path(o->query_path, o->base_path, o->base_limit, k, cache,
                                sizeof cache);
        if (cache[0] &&
            bench_gt_cache_valid(cache, o->base_path, o->query_path, s->nq, k) &&
            from_ivecs(cache, s, out, 0) == 0) {
            rc = 0;
            snprintf(out->source, sizeof out->source, "loaded from the cache %s", cache);
        } else {
            rc = compute(o, s, out);
            snprintf(out->source, sizeof out->source, "computed (idx_exact_topk)");
            if (rc == 0 && !cache[0] && o->write_data) {
                /* Saved synthetic data gets its cache too, named as a later
                 * run on those files will look for it. */
                char q[4200], b[4200];
                snprintf(q, sizeof q, "%s.query.fvecs", o->write_data);
                snprintf(b, sizeof b, "%s.base.fvecs", o->write_data);
                bench_gt_cache_path(q, b, 0, k, cache, sizeof cache);
            }
            if (rc == 0 && cache[0]) write_cache(o, cache, out);
        }
    }
    out->seconds = (double)(bench_now_ns() - t0) / 1e9;
    if (rc != 0) bench_oracle_free(out);
    return rc == 0 ? 0 : -1;
}

/* ---- streams --------------------------------------------------------------------*/

typedef struct stored_set {
    float *rows;     /* n x dim */
    uint32_t *event; /* n: the event that stored each row */
    size_t n, cap;
} stored_set;

static int stored_push(stored_set *st, const float *v, uint32_t dim, uint32_t event) {
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 1024;
        float *rows = realloc(st->rows, cap * dim * sizeof *rows);
        if (rows == NULL) return -1;
        st->rows = rows;
        uint32_t *ev = realloc(st->event, cap * sizeof *ev);
        if (ev == NULL) return -1;
        st->event = ev;
        st->cap = cap;
    }
    memcpy(st->rows + st->n * dim, v, dim * sizeof *v);
    st->event[st->n++] = event;
    return 0;
}

int bench_stream_oracle(const float *vecs, uint32_t dim, const bench_stream_event *ev,
                        size_t nev, float threshold, int store_misses, float *best,
                        uint32_t *witness) {
    stored_set st = {0};
    float *qbuf = malloc((size_t)STREAM_CHUNK * dim * sizeof *qbuf);
    idx_hit *hits = malloc(STREAM_CHUNK * sizeof *hits);
    /* This chunk's stores, as event numbers, before they join st. */
    uint32_t *local = malloc(STREAM_CHUNK * sizeof *local);
    int rc = -1;
    if (!qbuf || !hits || !local) goto out;
    for (size_t c0 = 0; c0 < nev; c0 += STREAM_CHUNK) {
        size_t c1 = nev - c0 > STREAM_CHUNK ? c0 + STREAM_CHUNK : nev;
        uint32_t nq = 0, nlocal = 0;
        for (size_t i = c0; i < c1; i++)
            if (ev[i].is_query)
                memcpy(qbuf + (size_t)nq++ * dim, vecs + (size_t)ev[i].vec * dim,
                       dim * sizeof *qbuf);
        if (nq && st.n && idx_exact_topk(st.rows, st.n, qbuf, nq, dim, 1, hits) != 0)
            goto out;
        uint32_t j = 0;
        for (size_t i = c0; i < c1; i++) {
            const float *v = vecs + (size_t)ev[i].vec * dim;
            if (!ev[i].is_query) {
                local[nlocal++] = (uint32_t)i;
                continue;
            }
            float b = -INFINITY;
            uint32_t w = UINT32_MAX;
            if (st.n && hits[j].label < st.n) {
                b = hits[j].score;
                w = st.event[hits[j].label];
            }
            j++;
            for (uint32_t l = 0; l < nlocal; l++) {
                float d = idx_dot(v, vecs + (size_t)ev[local[l]].vec * dim, dim);
                if (d > b) {
                    b = d;
                    w = local[l];
                }
            }
            best[i] = b;
            witness[i] = w;
            if (store_misses && !(b >= threshold)) local[nlocal++] = (uint32_t)i;
        }
        for (uint32_t l = 0; l < nlocal; l++)
            if (stored_push(&st, vecs + (size_t)ev[local[l]].vec * dim, dim, local[l]) !=
                0)
                goto out;
    }
    rc = 0;
out:
    if (rc != 0) fprintf(stderr, "deja-bench: stream oracle: out of memory\n");
    free(st.rows);
    free(st.event);
    free(qbuf);
    free(hits);
    free(local);
    return rc;
}
