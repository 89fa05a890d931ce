/* bench-server.c: deja-bench's load generator against a running dejad.
 *
 * Phase 1 flushes the namespace and stores every synthetic entry, the
 * entries split over C connections (one thread and one deja_client each).
 * Phase 2 is closed-loop: each of C threads keeps D lookups in flight on
 * its connection (deja_send_lookup / deja_recv_lookup), sends a new one as
 * soon as a reply arrives, and records the latency of every reply. Each
 * reply is judged against the exact oracle, so the report says both how
 * fast the server is and whether its answers were right.
 *
 * Threads share only read-only data (the data set, the oracle, the id
 * map); each owns its histogram and counters, merged after join. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "deja.h"
#include "idx.h"

/* A returned entry is a false hit when its exact similarity to the query
 * is below the threshold by more than float rounding can explain. */
#define FALSE_HIT_SLACK 1e-4f
#define SIM_TOLERANCE 1e-3f

typedef struct id_row {
    uint64_t id;
    uint32_t row;
} id_row;

/* Read-only state shared by all threads of a phase. */
typedef struct bench_ctx {
    const bench_opts *o;
    const synth_set *s;
    const bench_oracle *oracle;
    uint64_t *ids;      /* row -> entry id, filled by the load phase */
    id_row *by_id;      /* sorted by id, for judging replies */
    const char *filler; /* response_bytes of text */
    pthread_barrier_t start;
    uint64_t start_ns, end_ns;
} bench_ctx;

typedef struct worker {
    bench_ctx *ctx;
    uint32_t index;
    pthread_t thread;
    bench_result r; /* this thread's share; merged at the end */
    uint64_t finish_ns;
    int failed;
} worker;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int connect_client(const bench_opts *o, deja_client **c) {
    deja_options opts = {.connect_timeout_ms = 2000,
                         .request_timeout_ms = o->timeout_ms,
                         .auth_token = o->auth_token};
    int rc = deja_connect(o->addr, &opts, c);
    if (rc != 0)
        fprintf(stderr, "deja-bench: connect %s: %s\n", o->addr, deja_strerror(rc));
    return rc;
}

/* ---- load phase -------------------------------------------------------------*/

static void *load_main(void *arg) {
    worker *w = arg;
    bench_ctx *x = w->ctx;
    const synth_set *s = x->s;
    uint32_t c = x->o->connections;
    uint32_t lo = (uint32_t)((uint64_t)s->n * w->index / c);
    uint32_t hi = (uint32_t)((uint64_t)s->n * (w->index + 1) / c);
    size_t len = x->o->response_bytes;
    char *response = malloc(len + 1);
    deja_client *cl = NULL;
    if (response == NULL || connect_client(x->o, &cl) != 0) {
        w->failed = 1;
        free(response);
        pthread_barrier_wait(&x->start);
        return NULL;
    }
    memcpy(response, x->filler, len + 1);
    pthread_barrier_wait(&x->start);
    for (uint32_t i = lo; i < hi; i++) {
        /* A distinct head per entry makes responses checkable by eye. */
        char head[32];
        int n = snprintf(head, sizeof head, "entry %u: ", i);
        memcpy(response, head, (size_t)n < len ? (size_t)n : len);
        deja_store_req req = {
            .ns = x->o->ns,
            .vector = s->base + (size_t)i * s->dim,
            .dim = s->dim,
            .response = response,
            .response_len = len,
            .input_tokens = 100,
            .output_tokens = (uint32_t)(len / 4),
            .cost_micro_usd = 1500,
        };
        uint64_t t0 = now_ns();
        int rc = deja_store(cl, &req, &x->ids[i]);
        bench_hist_record(&w->r.store_hist, now_ns() - t0);
        if (rc == 0) {
            w->r.stores++;
            continue;
        }
        x->ids[i] = UINT64_MAX;
        if (w->r.store_errors++ == 0)
            fprintf(stderr, "deja-bench: store %u: %s (%s)\n", i, deja_strerror(rc),
                    deja_last_error(cl));
        if (rc == DEJA_ERR_CLOSED || rc == DEJA_ERR_TIMEOUT || rc == DEJA_ERR_IO ||
            rc == DEJA_ERR_PROTOCOL) {
            deja_close(cl);
            cl = NULL;
            if (connect_client(x->o, &cl) != 0) {
                w->r.store_errors += hi - i - 1;
                for (uint32_t j = i + 1; j < hi; j++)
                    x->ids[j] = UINT64_MAX;
                break;
            }
        }
    }
    w->finish_ns = now_ns();
    deja_close(cl);
    free(response);
    return NULL;
}

/* ---- judging a reply ----------------------------------------------------------*/

static int cmp_id_row(const void *a, const void *b) {
    uint64_t x = ((const id_row *)a)->id, y = ((const id_row *)b)->id;
    return x < y ? -1 : x > y;
}

static uint32_t row_of(const bench_ctx *x, uint64_t id) {
    size_t lo = 0, hi = x->s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->by_id[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < x->s->n && x->by_id[lo].id == id) return x->by_id[lo].row;
    return UINT32_MAX;
}

static void judge(worker *w, uint32_t q, const deja_result *res) {
    const bench_ctx *x = w->ctx;
    const synth_set *s = x->s;
    float threshold = x->o->threshold;
    const float *query = s->queries + (size_t)q * s->dim;
    int kind = s->kind[q];
    int oracle_hit = x->oracle->best_sim[q] >= threshold;
    bench_result *r = &w->r;
    r->kind_lookups[kind]++;
    if (oracle_hit) {
        r->oracle_hits++;
        r->kind_oracle[kind]++;
    }
    if (res->count == 0) {
        if (oracle_hit) r->missed_hits++;
        return;
    }
    r->hits++;
    r->kind_hits[kind]++;
    int is_false = 0;
    for (uint32_t i = 0; i < res->count; i++) {
        const deja_hit *h = &res->hits[i];
        uint32_t row = row_of(x, h->id);
        if (row == UINT32_MAX) {
            r->unknown_ids++;
            is_false = 1;
            continue;
        }
        float exact = idx_dot(query, s->base + (size_t)row * s->dim, s->dim);
        if (exact < threshold - FALSE_HIT_SLACK) is_false = 1;
        if (fabsf(exact - h->similarity) > SIM_TOLERANCE) r->sim_mismatches++;
        if (i == 0 && x->oracle->best_sim[q] - exact > SIM_TOLERANCE) r->not_best++;
    }
    if (is_false) r->false_hits++;
}

/* ---- lookup phase ----------------------------------------------------------------*/

typedef struct slot {
    uint32_t request_id;
    uint32_t query;
    uint64_t sent_ns;
    int busy;
} slot;

static int is_conn_error(int rc) {
    return rc == DEJA_ERR_CLOSED || rc == DEJA_ERR_TIMEOUT || rc == DEJA_ERR_IO ||
           rc == DEJA_ERR_PROTOCOL;
}

/* Sends the next query into slot sl. Returns 0 or the send's error. */
static int send_next(worker *w, deja_client *cl, slot *sl, uint32_t *next_q) {
    const bench_ctx *x = w->ctx;
    uint32_t q = *next_q;
    *next_q = (q + 1) % x->s->nq;
    sl->query = q;
    sl->sent_ns = now_ns();
    int rc = deja_send_lookup(cl, x->o->ns, x->s->queries + (size_t)q * x->s->dim,
                              x->s->dim, x->o->threshold, x->o->k, 0, &sl->request_id);
    sl->busy = rc == 0;
    return rc;
}

static void count_error(worker *w, deja_client *cl, int rc, const char *what) {
    if (rc == DEJA_ERR_TIMEOUT)
        w->r.timeouts++;
    else
        w->r.errors++;
    if (w->r.errors + w->r.timeouts == 1)
        fprintf(stderr, "deja-bench: %s: %s (%s)\n", what, deja_strerror(rc),
                cl ? deja_last_error(cl) : "");
}

static void *lookup_main(void *arg) {
    worker *w = arg;
    bench_ctx *x = w->ctx;
    uint32_t depth = x->o->pipeline;
    slot *slots = calloc(depth, sizeof *slots);
    deja_client *cl = NULL;
    if (slots == NULL || connect_client(x->o, &cl) != 0) {
        w->failed = 1;
        free(slots);
        pthread_barrier_wait(&x->start);
        return NULL;
    }
    /* Threads start at different points of the query list so that they do
     * not all ask the same question at the same moment. */
    uint32_t next_q = (uint32_t)((uint64_t)x->s->nq * w->index / x->o->connections);
    pthread_barrier_wait(&x->start);

    int refill = 1;
    for (;;) {
        uint64_t now = now_ns();
        if (refill && now < x->end_ns) {
            refill = 0;
            for (uint32_t i = 0; i < depth; i++) {
                if (slots[i].busy) continue;
                int rc = send_next(w, cl, &slots[i], &next_q);
                if (rc != 0) {
                    count_error(w, cl, rc, "send lookup");
                    if (is_conn_error(rc)) break;
                }
            }
        }
        if (deja_in_flight(cl) == 0) {
            if (now >= x->end_ns) break;
            /* Everything was lost with the connection: start over. */
            deja_close(cl);
            cl = NULL;
            memset(slots, 0, depth * sizeof *slots);
            if (connect_client(x->o, &cl) != 0) {
                w->r.errors++;
                break;
            }
            refill = 1;
            continue;
        }
        uint32_t rid = 0;
        deja_result *res = NULL;
        int rc = deja_recv_lookup(cl, &rid, &res);
        uint64_t done = now_ns();
        if (rc != 0 && is_conn_error(rc)) {
            count_error(w, cl, rc, "receive lookup");
            memset(slots, 0, depth * sizeof *slots);
            continue;
        }
        slot *sl = NULL;
        for (uint32_t i = 0; i < depth; i++) {
            if (slots[i].busy && slots[i].request_id == rid) {
                sl = &slots[i];
                break;
            }
        }
        if (sl == NULL) {
            count_error(w, cl, DEJA_ERR_PROTOCOL, "reply to an unknown request");
            deja_result_free(res);
            continue;
        }
        sl->busy = 0;
        w->r.lookups++;
        bench_hist_record(&w->r.lookup_hist, done - sl->sent_ns);
        if (rc == 0)
            judge(w, sl->query, res);
        else
            count_error(w, cl, rc, "lookup");
        deja_result_free(res);
        if (done < x->end_ns) {
            rc = send_next(w, cl, sl, &next_q);
            if (rc != 0) count_error(w, cl, rc, "send lookup");
        }
    }
    w->finish_ns = now_ns();
    deja_close(cl);
    free(slots);
    return NULL;
}

/* ---- running a phase --------------------------------------------------------------*/

/* Runs fn on o->connections threads that start together; merges their
 * results into r. Returns the phase's wall time in seconds, or -1 when no
 * thread could connect. */
static double run_phase(bench_ctx *x, void *(*fn)(void *), double duration_s,
                        bench_result *r) {
    uint32_t n = x->o->connections;
    worker *ws = calloc(n, sizeof *ws);
    if (ws == NULL) return -1;
    pthread_barrier_init(&x->start, NULL, n + 1);
    for (uint32_t i = 0; i < n; i++) {
        ws[i].ctx = x;
        ws[i].index = i;
        bench_hist_init(&ws[i].r.store_hist);
        bench_hist_init(&ws[i].r.lookup_hist);
        if (pthread_create(&ws[i].thread, NULL, fn, &ws[i]) != 0) {
            fprintf(stderr, "deja-bench: cannot start thread %u\n", i);
            exit(1);
        }
    }
    /* The clock starts once every thread has connected. */
    x->start_ns = now_ns();
    x->end_ns = x->start_ns + (uint64_t)(duration_s * 1e9);
    pthread_barrier_wait(&x->start);
    uint64_t finish = x->start_ns;
    uint32_t failed = 0;
    for (uint32_t i = 0; i < n; i++) {
        pthread_join(ws[i].thread, NULL);
        worker *w = &ws[i];
        failed += (uint32_t)w->failed;
        if (w->finish_ns > finish) finish = w->finish_ns;
        bench_result *t = &w->r;
        r->stores += t->stores;
        r->store_errors += t->store_errors;
        bench_hist_merge(&r->store_hist, &t->store_hist);
        r->lookups += t->lookups;
        r->hits += t->hits;
        r->oracle_hits += t->oracle_hits;
        r->false_hits += t->false_hits;
        r->missed_hits += t->missed_hits;
        r->not_best += t->not_best;
        r->sim_mismatches += t->sim_mismatches;
        r->unknown_ids += t->unknown_ids;
        r->errors += t->errors;
        r->timeouts += t->timeouts;
        for (int k = 0; k < SYNTH_KINDS; k++) {
            r->kind_lookups[k] += t->kind_lookups[k];
            r->kind_hits[k] += t->kind_hits[k];
            r->kind_oracle[k] += t->kind_oracle[k];
        }
        bench_hist_merge(&r->lookup_hist, &t->lookup_hist);
    }
    pthread_barrier_destroy(&x->start);
    free(ws);
    if (failed == n) return -1;
    if (failed) r->errors += failed;
    return (double)(finish - x->start_ns) / 1e9;
}

static char *make_filler(size_t len) {
    static const char words[] =
        "The cached answer repeats this sentence to reach the configured "
        "response size, as a long model reply would. ";
    char *p = malloc(len + 1);
    if (p == NULL) return NULL;
    for (size_t i = 0; i < len; i++)
        p[i] = words[i % (sizeof words - 1)];
    p[len] = 0;
    return p;
}

/* Flushes the namespace so the server holds exactly the data set, and
 * returns the server's name. */
static int prepare(const bench_opts *o, bench_result *r) {
    deja_client *cl;
    if (connect_client(o, &cl) != 0) return -1;
    snprintf(r->server_name, sizeof r->server_name, "%s", deja_server_name(cl));
    int rc = deja_flush(cl, o->ns, &r->flushed);
    if (rc != 0) {
        fprintf(stderr, "deja-bench: flush %s: %s (%s)\n", o->ns, deja_strerror(rc),
                deja_last_error(cl));
        deja_close(cl);
        return -1;
    }
    deja_close(cl);
    return 0;
}

static void read_server_entries(const bench_opts *o, bench_result *r) {
    deja_client *cl;
    deja_stats *st = NULL;
    uint64_t v;
    r->server_entries = -1;
    if (connect_client(o, &cl) != 0) return;
    if (deja_stats_get(cl, o->ns, &st) == 0 && deja_stats_find(st, "entries", &v) == 0)
        r->server_entries = (int64_t)v;
    deja_stats_free(st);
    deja_close(cl);
}

int bench_server_run(const bench_opts *o, const synth_set *s, const bench_oracle *oracle,
                     bench_result *r) {
    bench_hist_init(&r->store_hist);
    bench_hist_init(&r->lookup_hist);
    if (prepare(o, r) != 0) return -1;

    bench_ctx x = {.o = o, .s = s, .oracle = oracle};
    x.ids = malloc((size_t)s->n * sizeof *x.ids);
    x.by_id = malloc((size_t)s->n * sizeof *x.by_id);
    x.filler = make_filler(o->response_bytes);
    int rc = -1;
    if (!x.ids || !x.by_id || !x.filler) {
        fprintf(stderr, "deja-bench: out of memory\n");
        goto out;
    }

    /* Rows a failed thread never stored keep an id no server hands out. */
    memset(x.ids, 0xff, (size_t)s->n * sizeof *x.ids);
    if (!o->quiet)
        fprintf(stderr, "deja-bench: storing %u entries over %u connections\n", s->n,
                o->connections);
    r->load_s = run_phase(&x, load_main, 0, r);
    if (r->load_s < 0) goto out;
    if (r->stores == 0) {
        /* Lookups against an empty set would measure nothing but errors. */
        fprintf(stderr, "deja-bench: no entry could be stored in %s\n", o->ns);
        goto out;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        x.by_id[i].id = x.ids[i];
        x.by_id[i].row = i;
    }
    qsort(x.by_id, s->n, sizeof *x.by_id, cmp_id_row);
    for (uint32_t i = 1; i < s->n; i++) {
        if (x.by_id[i].id == x.by_id[i - 1].id && x.by_id[i].id != UINT64_MAX)
            fprintf(stderr, "deja-bench: server gave id %llu to two entries\n",
                    (unsigned long long)x.by_id[i].id);
    }
    read_server_entries(o, r);

    if (!o->quiet)
        fprintf(stderr, "deja-bench: lookups for %.1f s, %u connections x %u in flight\n",
                o->duration_s, o->connections, o->pipeline);
    r->lookup_s = run_phase(&x, lookup_main, o->duration_s, r);
    if (r->lookup_s < 0) goto out;
    rc = 0;
out:
    free(x.ids);
    free(x.by_id);
    free((char *)x.filler);
    return rc;
}
