/* bench-mixed.c: deja-bench's mixed mode -- the cache loop as an
 * application runs it, to show what a cache saves.
 *
 * N simulated users (threads, one connection each) take the requests of
 * the stream in order; for each one a user looks it up, and on a miss
 * "calls the LLM" (sleeps the configured delay and counts its cost), then
 * stores the answer under the request's own vector. The namespace is
 * flushed first, so the cache starts empty and fills the way it would in
 * production: the first questions of a topic miss, their paraphrases and
 * repeats later hit.
 *
 * The run is judged twice over, after the fact:
 *  - the sequential oracle: the same stream served one request at a time
 *    with exact search, each miss stored before the next request. Its hit
 *    rate is a property of the workload alone (the "oracle hit rate"). It
 *    is a reference, not a bound: concurrent users store some near
 *    duplicates it would not, and those can answer later requests.
 *  - as run: each lookup against exactly the entries whose store had been
 *    acknowledged before the lookup was sent. A miss that this says should
 *    have hit is a search miss of the server; a miss that only the
 *    sequential oracle would have hit came while another user was still
 *    waiting for the same answer from the LLM (concurrency, not the cache,
 *    lost it).
 * Every hit is checked against the exact similarity of the stored vector
 * it returned (false hits must be 0).
 *
 * Each request's record is written only by the thread that served it, so
 * the workers share nothing but the stream counter. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "deja.h"
#include "idx.h"

enum outcome { PENDING = 0, HIT = 1, MISS = 2, FAILED = 3 };

typedef struct mixed_ctx {
    const bench_opts *o;
    const synth_set *s;
    atomic_uint next;
    const char *filler;
    pthread_barrier_t start;
    bench_progress *progress;
    /* per request, indexed by stream position */
    uint64_t *sent_ns;  /* lookup sent */
    uint64_t *acked_ns; /* its answer's store acknowledged; 0 = not stored */
    uint64_t *store_id; /* the entry stored for it, UINT64_MAX = none */
    uint64_t *hit_id;   /* the entry that answered it */
    float *hit_sim;
    uint8_t *outcome;
} mixed_ctx;

typedef struct user {
    mixed_ctx *x;
    pthread_t thread;
    uint64_t llm_calls, stores, store_errors, errors, timeouts;
    bench_hist lookup_hist, store_hist, request_hist;
    uint64_t finish_ns;
    int failed;
} user;

static int conn_lost(int rc) {
    return rc == DEJA_ERR_CLOSED || rc == DEJA_ERR_TIMEOUT || rc == DEJA_ERR_IO ||
           rc == DEJA_ERR_PROTOCOL;
}

static void count_error(user *u, deja_client *cl, int rc, const char *what) {
    if (rc == DEJA_ERR_TIMEOUT)
        u->timeouts++;
    else
        u->errors++;
    if (u->errors + u->timeouts == 1)
        fprintf(stderr, "deja-bench: %s: %s (%s)\n", what, deja_strerror(rc),
                cl ? deja_last_error(cl) : "");
}

static void llm_call(double delay_ms) {
    if (delay_ms <= 0) return;
    uint64_t ns = (uint64_t)(delay_ms * 1e6);
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Stores request i's answer. Returns 0 or the error. */
static int store_answer(user *u, deja_client *cl, uint32_t i, char *response) {
    mixed_ctx *x = u->x;
    size_t len = x->o->response_bytes;
    char head[40], prompt[40];
    int n = snprintf(head, sizeof head, "answer %u: ", i);
    memcpy(response, head, (size_t)n < len ? (size_t)n : len);
    int plen = snprintf(prompt, sizeof prompt, "deja-bench request %u", i);
    deja_store_req req = {
        .ns = x->o->ns,
        .vector = x->s->queries + (size_t)i * x->s->dim,
        .dim = x->s->dim,
        .response = response,
        .response_len = len,
        .prompt = prompt,
        .prompt_len = (size_t)plen,
        .input_tokens = 100,
        .output_tokens = (uint32_t)(len / 4),
        .cost_micro_usd = (uint64_t)(x->o->llm_cost_usd * 1e6 + 0.5),
    };
    uint64_t t0 = bench_now_ns();
    int rc = deja_store(cl, &req, &x->store_id[i]);
    uint64_t t1 = bench_now_ns();
    bench_hist_record(&u->store_hist, t1 - t0);
    if (rc == 0) {
        x->acked_ns[i] = t1;
        u->stores++;
    } else {
        x->store_id[i] = UINT64_MAX;
        u->store_errors++;
        count_error(u, cl, rc, "store");
    }
    return rc;
}

static void *user_main(void *arg) {
    user *u = arg;
    mixed_ctx *x = u->x;
    const bench_opts *o = x->o;
    const synth_set *s = x->s;
    char *response = malloc(o->response_bytes + 1);
    deja_client *cl = NULL;
    if (response == NULL || bench_connect(o, &cl) != 0) {
        u->failed = 1;
        free(response);
        pthread_barrier_wait(&x->start);
        return NULL;
    }
    memcpy(response, x->filler, o->response_bytes + 1);
    pthread_barrier_wait(&x->start);
    uint32_t i;
    while ((i = atomic_fetch_add(&x->next, 1)) < s->nq) {
        if (cl == NULL && bench_connect(o, &cl) != 0) {
            /* The application would still answer its user: via the LLM. */
            x->outcome[i] = FAILED;
            u->errors++;
            llm_call(o->llm_delay_ms);
            u->llm_calls++;
            bench_progress_add(x->progress, 1);
            continue;
        }
        deja_result *res = NULL;
        uint64_t t0 = bench_now_ns();
        x->sent_ns[i] = t0;
        int rc = deja_lookup(cl, o->ns, s->queries + (size_t)i * s->dim, s->dim,
                             o->threshold, 1, 0, &res);
        uint64_t t1 = bench_now_ns();
        bench_hist_record(&u->lookup_hist, t1 - t0);
        if (rc == 0 && res->count > 0) {
            x->outcome[i] = HIT;
            x->hit_id[i] = res->hits[0].id;
            x->hit_sim[i] = res->hits[0].similarity;
            bench_hist_record(&u->request_hist, t1 - t0);
        } else {
            x->outcome[i] = rc == 0 ? MISS : FAILED;
            if (rc != 0) {
                count_error(u, cl, rc, "lookup");
                if (conn_lost(rc)) {
                    deja_close(cl);
                    cl = NULL;
                }
            }
            llm_call(o->llm_delay_ms);
            u->llm_calls++;
            int src = cl ? store_answer(u, cl, i, response) : 0;
            if (src != 0 && conn_lost(src)) {
                deja_close(cl);
                cl = NULL;
            }
            bench_hist_record(&u->request_hist, bench_now_ns() - t0);
        }
        deja_result_free(res);
        bench_progress_add(x->progress, 1);
    }
    u->finish_ns = bench_now_ns();
    deja_close(cl);
    free(response);
    return NULL;
}

/* ---- judging the run ----------------------------------------------------------*/

typedef struct id_req {
    uint64_t id;
    uint32_t req;
} id_req;

static int cmp_id_req(const void *a, const void *b) {
    uint64_t x = ((const id_req *)a)->id, y = ((const id_req *)b)->id;
    return x < y ? -1 : x > y;
}

typedef struct timed_event {
    uint64_t t;
    bench_stream_event ev;
} timed_event;

/* Stores sort before lookups sent at the same nanosecond: the store was
 * acknowledged by then. */
static int cmp_timed(const void *a, const void *b) {
    const timed_event *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return (int)x->ev.is_query - (int)y->ev.is_query;
}

static int judge(const bench_opts *o, const synth_set *s, const mixed_ctx *x,
                 bench_mixed_result *r) {
    uint32_t nq = s->nq, dim = s->dim;
    float thr = o->threshold;
    int rc = -1;
    bench_stream_event *seq_ev = malloc(((size_t)nq + 1) * sizeof *seq_ev);
    float *seq = malloc(((size_t)nq + 1) * sizeof *seq);
    uint32_t *witness = malloc((2 * (size_t)nq + 1) * sizeof *witness);
    timed_event *timed = malloc((2 * (size_t)nq + 1) * sizeof *timed);
    bench_stream_event *run_ev = malloc((2 * (size_t)nq + 1) * sizeof *run_ev);
    float *run_best = malloc((2 * (size_t)nq + 1) * sizeof *run_best);
    float *as_run = malloc(((size_t)nq + 1) * sizeof *as_run);
    id_req *by_id = malloc(((size_t)nq + 1) * sizeof *by_id);
    if (!seq_ev || !seq || !witness || !timed || !run_ev || !run_best || !as_run ||
        !by_id)
        goto out;

    for (uint32_t i = 0; i < nq; i++)
        seq_ev[i] = (bench_stream_event){.vec = i, .is_query = 1};
    if (bench_stream_oracle(s->queries, dim, seq_ev, nq, thr, 1, seq, witness) != 0)
        goto out;

    size_t nev = 0;
    for (uint32_t i = 0; i < nq; i++) {
        if (x->outcome[i] == HIT || x->outcome[i] == MISS)
            timed[nev++] = (timed_event){x->sent_ns[i], {i, 1}};
        if (x->acked_ns[i]) timed[nev++] = (timed_event){x->acked_ns[i], {i, 0}};
    }
    qsort(timed, nev, sizeof *timed, cmp_timed);
    for (size_t e = 0; e < nev; e++)
        run_ev[e] = timed[e].ev;
    if (bench_stream_oracle(s->queries, dim, run_ev, nev, thr, 0, run_best, witness) != 0)
        goto out;
    for (uint32_t i = 0; i < nq; i++)
        as_run[i] = -INFINITY;
    for (size_t e = 0; e < nev; e++)
        if (run_ev[e].is_query) as_run[run_ev[e].vec] = run_best[e];

    size_t nid = 0;
    for (uint32_t i = 0; i < nq; i++)
        if (x->acked_ns[i]) by_id[nid++] = (id_req){x->store_id[i], i};
    qsort(by_id, nid, sizeof *by_id, cmp_id_req);

    uint32_t intervals = r->intervals;
    for (uint32_t i = 0; i < nq; i++) {
        int hit = x->outcome[i] == HIT;
        int oracle_hit = seq[i] >= thr;
        int run_hit = as_run[i] >= thr;
        uint32_t slot = (uint32_t)((uint64_t)i * intervals / nq);
        int kind = s->kind ? s->kind[i] : -1;
        r->requests++;
        r->int_requests[slot]++;
        if (kind >= 0) r->kind_requests[kind]++;
        if (oracle_hit) {
            r->oracle_hits++;
            r->int_oracle[slot]++;
            if (kind >= 0) r->kind_oracle[kind]++;
        }
        if (run_hit && (hit || x->outcome[i] == MISS)) r->as_run_hits++;
        if (x->outcome[i] == MISS) {
            if (run_hit)
                r->missed_hits++;
            else if (oracle_hit)
                r->pending_misses++;
        }
        if (!hit) continue;
        r->hits++;
        r->int_hits[slot]++;
        if (kind >= 0) r->kind_hits[kind]++;
        id_req key = {x->hit_id[i], 0};
        const id_req *found = bsearch(&key, by_id, nid, sizeof *by_id, cmp_id_req);
        if (found == NULL) {
            /* Not stored by this run: the namespace was flushed first. */
            r->unknown_ids++;
            r->false_hits++;
            continue;
        }
        float exact = idx_dot(s->queries + (size_t)i * dim,
                              s->queries + (size_t)found->req * dim, dim);
        if (exact < thr - BENCH_FALSE_HIT_SLACK) r->false_hits++;
        if (fabsf(exact - x->hit_sim[i]) > BENCH_SIM_TOLERANCE) r->sim_mismatches++;
    }
    rc = 0;
out:
    if (rc != 0) fprintf(stderr, "deja-bench: out of memory judging the run\n");
    free(seq_ev);
    free(seq);
    free(witness);
    free(timed);
    free(run_ev);
    free(run_best);
    free(as_run);
    free(by_id);
    return rc;
}

/* ---- running -------------------------------------------------------------------*/

static int flush_namespace(const bench_opts *o, bench_env *env, bench_mixed_result *r) {
    deja_client *cl;
    if (bench_connect(o, &cl) != 0) return -1;
    snprintf(env->server, sizeof env->server, "%s", deja_server_name(cl));
    int rc = deja_flush(cl, o->ns, &r->flushed);
    if (rc != 0)
        fprintf(stderr, "deja-bench: flush %s: %s (%s)\n", o->ns, deja_strerror(rc),
                deja_last_error(cl));
    deja_close(cl);
    return rc == 0 ? 0 : -1;
}

static void free_ctx(mixed_ctx *x) {
    free((char *)x->filler);
    free(x->sent_ns);
    free(x->acked_ns);
    free(x->store_id);
    free(x->hit_id);
    free(x->hit_sim);
    free(x->outcome);
}

int bench_mixed_run(const bench_opts *o, const synth_set *s, bench_env *env,
                    bench_mixed_result *r) {
    memset(r, 0, sizeof *r);
    bench_hist_init(&r->lookup_hist);
    bench_hist_init(&r->store_hist);
    bench_hist_init(&r->request_hist);
    r->intervals = o->intervals;
    if (s->nq == 0) {
        fprintf(stderr, "deja-bench: the workload has no requests\n");
        return -1;
    }
    if (flush_namespace(o, env, r) != 0) return -1;

    size_t n1 = (size_t)s->nq + 1;
    mixed_ctx x = {.o = o, .s = s};
    atomic_init(&x.next, 0);
    x.filler = bench_make_filler(o->response_bytes);
    x.sent_ns = calloc(n1, sizeof *x.sent_ns);
    x.acked_ns = calloc(n1, sizeof *x.acked_ns);
    x.store_id = calloc(n1, sizeof *x.store_id);
    x.hit_id = calloc(n1, sizeof *x.hit_id);
    x.hit_sim = calloc(n1, sizeof *x.hit_sim);
    x.outcome = calloc(n1, sizeof *x.outcome);
    uint32_t n = o->connections;
    user *us = calloc(n, sizeof *us);
    if (!x.filler || !x.sent_ns || !x.acked_ns || !x.store_id || !x.hit_id ||
        !x.hit_sim || !x.outcome || !us) {
        fprintf(stderr, "deja-bench: out of memory\n");
        free(us);
        free_ctx(&x);
        return -1;
    }
    if (!o->quiet)
        fprintf(stderr,
                "deja-bench: %u requests from %u users, LLM delay %.0f ms, $%g per "
                "call\n",
                s->nq, n, o->llm_delay_ms, o->llm_cost_usd);
    x.progress = bench_progress_start(o->progress, "requests", s->nq, 0);
    pthread_barrier_init(&x.start, NULL, n + 1);
    for (uint32_t i = 0; i < n; i++) {
        us[i].x = &x;
        bench_hist_init(&us[i].lookup_hist);
        bench_hist_init(&us[i].store_hist);
        bench_hist_init(&us[i].request_hist);
        if (pthread_create(&us[i].thread, NULL, user_main, &us[i]) != 0) {
            fprintf(stderr, "deja-bench: cannot start thread %u\n", i);
            exit(BENCH_EXIT_FAILED);
        }
    }
    uint64_t start = bench_now_ns(), finish = start;
    pthread_barrier_wait(&x.start);
    uint32_t failed = 0;
    for (uint32_t i = 0; i < n; i++) {
        user *u = &us[i];
        pthread_join(u->thread, NULL);
        failed += (uint32_t)u->failed;
        if (u->finish_ns > finish) finish = u->finish_ns;
        r->llm_calls += u->llm_calls;
        r->stores += u->stores;
        r->store_errors += u->store_errors;
        r->errors += u->errors;
        r->timeouts += u->timeouts;
        bench_hist_merge(&r->lookup_hist, &u->lookup_hist);
        bench_hist_merge(&r->store_hist, &u->store_hist);
        bench_hist_merge(&r->request_hist, &u->request_hist);
    }
    pthread_barrier_destroy(&x.start);
    bench_progress_done(x.progress);
    free(us);
    r->wall_s = (double)(finish - start) / 1e9;
    int rc = -1;
    if (failed == n) {
        fprintf(stderr, "deja-bench: no user could connect\n");
    } else {
        r->errors += failed;
        if (!o->quiet) fprintf(stderr, "deja-bench: judging the run\n");
        rc = judge(o, s, &x, r);
    }
    r->cost_spent = (double)r->llm_calls * o->llm_cost_usd;
    r->cost_without = (double)s->nq * o->llm_cost_usd;
    r->llm_time_s = (double)r->llm_calls * o->llm_delay_ms / 1e3;
    r->llm_time_without_s = (double)s->nq * o->llm_delay_ms / 1e3;
    free_ctx(&x);
    return rc;
}
