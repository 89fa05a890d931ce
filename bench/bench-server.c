/* bench-server.c: deja-bench's server mode -- load and lookups against a
 * running dejad.
 *
 * Phase 1 flushes the namespace and stores every entry of the workload,
 * the entries split over C connections (one thread and one deja_client
 * each). Each entry carries the prompt "deja-bench row N", so a later run
 * with --no-load (say after a restart) can still tell which row a hit is.
 *
 * Phase 2 sends the queries, for a duration or a count, in one of two
 * ways:
 *  - closed loop (here): each thread keeps D lookups in flight on its
 *    connection and sends the next as soon as a reply arrives; latency
 *    runs from the send. This measures the most the server does with
 *    C x D requests outstanding.
 *  - open loop (--rate R, bench-openloop.c): one driver thread sends
 *    request i at t0 + i / R, whatever happened to earlier requests, and
 *    measures latency from that scheduled time (no coordinated omission).
 * Every reply is judged against the exact oracle, so the report says both
 * how fast the server is and whether its answers were right.
 *
 * Threads share only read-only data (the workload, the oracle, the id
 * map); each owns its histograms and counters, merged after join. */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-server-private.h"
#include "bench.h"
#include "deja.h"
#include "idx.h"

/* Open loop keeps this many lookups in flight per connection unless
 * --pipeline says otherwise: enough that a stall of the server leaves the
 * requests that come due meanwhile in its socket and queues, sent on
 * time, rather than in the bench waiting for a slot (which would be send
 * lag). Its driver never blocks on a socket, so depth costs nothing. */
#define OPEN_LOOP_DEPTH 256u
#define RECONNECT_PAUSE_NS 100000000ull

typedef struct worker {
    bench_ctx *ctx;
    uint32_t index;
    pthread_t thread;
    bench_result r; /* this thread's share; merged at the end */
    uint64_t finish_ns;
    int failed;
} worker;

/* ---- helpers shared with the other modes -------------------------------------*/

uint64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_connect(const bench_opts *o, deja_client **c) {
    deja_options opts = {.connect_timeout_ms = 2000,
                         .request_timeout_ms = o->timeout_ms,
                         .auth_token = o->auth_token};
    int rc = deja_connect(o->addr, &opts, c);
    if (rc != 0)
        fprintf(stderr, "deja-bench: connect %s: %s\n", o->addr, deja_strerror(rc));
    return rc;
}

char *bench_make_filler(size_t len) {
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

int bench_ns_stats_get(const bench_opts *o, bench_ns_stats *st) {
    static const struct {
        const char *key;
        size_t offset;
    } keys[] = {
        {"entries", offsetof(bench_ns_stats, entries)},
        {"unindexed", offsetof(bench_ns_stats, unindexed)},
        {"dedup_updates", offsetof(bench_ns_stats, dedup_updates)},
        {"index_bytes", offsetof(bench_ns_stats, index_bytes)},
        {"entry_bytes", offsetof(bench_ns_stats, entry_bytes)},
        {"min_threshold_milli", offsetof(bench_ns_stats, min_threshold_milli)},
        {"index_vector_bytes", offsetof(bench_ns_stats, vector_bytes)},
        {"index_graph_bytes", offsetof(bench_ns_stats, graph_bytes)},
        {"entry_table_bytes", offsetof(bench_ns_stats, table_bytes)},
    };
    deja_client *cl;
    deja_stats *ds = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        *(int64_t *)((char *)st + keys[i].offset) = -1;
    if (bench_connect(o, &cl) != 0) return -1;
    int rc = deja_stats_get(cl, o->ns, &ds);
    for (size_t i = 0; rc == 0 && i < sizeof keys / sizeof keys[0]; i++) {
        uint64_t v;
        if (deja_stats_find(ds, keys[i].key, &v) == 0)
            *(int64_t *)((char *)st + keys[i].offset) = (int64_t)v;
    }
    deja_stats_free(ds);
    deja_close(cl);
    return rc == 0 ? 0 : -1;
}

static int is_conn_error(int rc) {
    return rc == DEJA_ERR_CLOSED || rc == DEJA_ERR_TIMEOUT || rc == DEJA_ERR_IO ||
           rc == DEJA_ERR_PROTOCOL;
}

static void sleep_until(uint64_t t_ns) {
    struct timespec ts = {.tv_sec = (time_t)(t_ns / 1000000000ull),
                          .tv_nsec = (long)(t_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
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
    if (response == NULL || bench_connect(x->o, &cl) != 0) {
        w->failed = 1;
        free(response);
        pthread_barrier_wait(&x->start);
        return NULL;
    }
    memcpy(response, x->filler, len + 1);
    pthread_barrier_wait(&x->start);
    for (uint32_t i = lo; i < hi; i++) {
        /* A distinct head per entry makes responses checkable by eye. */
        char head[32], prompt[40];
        int n = snprintf(head, sizeof head, "entry %u: ", i);
        memcpy(response, head, (size_t)n < len ? (size_t)n : len);
        int plen = snprintf(prompt, sizeof prompt, BENCH_PROMPT_PREFIX "%u", i);
        deja_store_req req = {
            .ns = x->o->ns,
            .vector = s->base + (size_t)i * s->dim,
            .dim = s->dim,
            .response = response,
            .response_len = len,
            .prompt = prompt,
            .prompt_len = (size_t)plen,
            .input_tokens = 100,
            .output_tokens = (uint32_t)(len / 4),
            .cost_micro_usd = 1500,
        };
        uint64_t t0 = bench_now_ns();
        int rc = deja_store(cl, &req, &x->ids[i]);
        bench_hist_record(&w->r.store_hist, bench_now_ns() - t0);
        bench_progress_add(x->progress, 1);
        if (rc == 0) {
            w->r.stores++;
            continue;
        }
        x->ids[i] = UINT64_MAX;
        if (w->r.store_errors++ == 0)
            fprintf(stderr, "deja-bench: store %u: %s (%s)\n", i, deja_strerror(rc),
                    deja_last_error(cl));
        if (is_conn_error(rc)) {
            deja_close(cl);
            cl = NULL;
            if (bench_connect(x->o, &cl) != 0) {
                w->r.store_errors += hi - i - 1;
                for (uint32_t j = i + 1; j < hi; j++)
                    x->ids[j] = UINT64_MAX;
                break;
            }
        }
    }
    w->finish_ns = bench_now_ns();
    deja_close(cl);
    free(response);
    return NULL;
}

/* ---- judging a reply ----------------------------------------------------------*/

static int cmp_id_row(const void *a, const void *b) {
    uint64_t x = ((const bench_id_row *)a)->id, y = ((const bench_id_row *)b)->id;
    return x < y ? -1 : x > y;
}

/* The exact similarity of the query to a returned entry, from the
 * workload row(s) the entry holds: the row named by its prompt (after
 * --no-load), or every row the server gave its id. Several rows share an
 * id when the server merged near-identical vectors (write-time dedup);
 * it kept one of them, so the best of them is taken. Returns 0, or -1
 * when the entry is none of the workload's. */
static int exact_similarity(const bench_ctx *x, const float *query, const deja_hit *h,
                            float *out) {
    const synth_set *s = x->s;
    if (x->by_prompt) {
        size_t plen = sizeof BENCH_PROMPT_PREFIX - 1;
        if (h->prompt == NULL || h->prompt_len <= plen ||
            memcmp(h->prompt, BENCH_PROMPT_PREFIX, plen) != 0)
            return -1;
        /* Digits up to prompt_len: the open loop's prompts point into a
         * reply frame and are not NUL-terminated. */
        uint64_t row = 0;
        for (size_t i = plen; i < h->prompt_len; i++) {
            unsigned char ch = (unsigned char)h->prompt[i];
            if (ch < '0' || ch > '9' || i - plen >= 10) return -1;
            row = row * 10 + (ch - '0');
        }
        if (row >= s->n) return -1;
        *out = idx_dot(query, s->base + (size_t)row * s->dim, s->dim);
        return 0;
    }
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->by_id[mid].id < h->id)
            lo = mid + 1;
        else
            hi = mid;
    }
    float best = -INFINITY;
    int found = 0;
    for (; lo < s->n && x->by_id[lo].id == h->id; lo++) {
        float d = idx_dot(query, s->base + (size_t)x->by_id[lo].row * s->dim, s->dim);
        if (d > best) best = d;
        found = 1;
    }
    *out = best;
    return found ? 0 : -1;
}

void bench_judge(const bench_ctx *x, bench_result *r, uint32_t q, const deja_hit *hits,
                 uint32_t count) {
    const synth_set *s = x->s;
    float threshold = x->o->threshold;
    const float *query = s->queries + (size_t)q * s->dim;
    float best = bench_oracle_best(x->oracle, q);
    int oracle_hit = best >= threshold;
    int kind = s->kind ? s->kind[q] : -1;
    r->judged++;
    if (kind >= 0) r->kind_lookups[kind]++;
    if (oracle_hit) {
        r->oracle_hits++;
        if (kind >= 0) r->kind_oracle[kind]++;
    }
    if (count == 0) {
        if (oracle_hit) r->missed_hits++;
        return;
    }
    r->hits++;
    if (kind >= 0) r->kind_hits[kind]++;
    int is_false = 0;
    for (uint32_t i = 0; i < count; i++) {
        const deja_hit *h = &hits[i];
        float exact;
        if (exact_similarity(x, query, h, &exact) != 0) {
            /* Not an entry of this workload: nothing says it is similar. */
            r->unknown_ids++;
            is_false = 1;
            continue;
        }
        if (exact < threshold - BENCH_FALSE_HIT_SLACK) is_false = 1;
        if (fabsf(exact - h->similarity) > BENCH_SIM_TOLERANCE) r->sim_mismatches++;
        if (i == 0 && best - exact > BENCH_SIM_TOLERANCE) r->not_best++;
    }
    if (is_false) r->false_hits++;
}

/* ---- lookup phase, closed loop --------------------------------------------------*/

typedef struct slot {
    uint32_t request_id;
    uint32_t query;
    uint64_t sent_ns; /* latency runs from here */
    int busy;
} slot;

static void count_error(worker *w, deja_client *cl, int rc, const char *what) {
    if (rc == DEJA_ERR_TIMEOUT)
        w->r.timeouts++;
    else
        w->r.errors++;
    if (w->r.errors + w->r.timeouts == 1)
        fprintf(stderr, "deja-bench: %s: %s (%s)\n", what, deja_strerror(rc),
                cl ? deja_last_error(cl) : "");
}

/* A dead connection took every request in flight with it: the one whose
 * wait failed is counted by the caller, the rest here, as lost the same
 * way. */
static void drop_connection(worker *w, deja_client **cl, slot *slots, uint32_t depth,
                            int rc) {
    uint32_t busy = 0;
    for (uint32_t i = 0; i < depth; i++)
        busy += (uint32_t)slots[i].busy;
    if (busy > 1) {
        if (rc == DEJA_ERR_TIMEOUT)
            w->r.timeouts += busy - 1;
        else
            w->r.errors += busy - 1;
    }
    memset(slots, 0, depth * sizeof *slots);
    deja_close(*cl);
    *cl = NULL;
}

static void *lookup_main(void *arg) {
    worker *w = arg;
    bench_ctx *x = w->ctx;
    const bench_opts *o = x->o;
    uint32_t depth = x->depth, nconn = o->connections;
    slot *slots = calloc(depth, sizeof *slots);
    deja_client *cl = NULL;
    if (slots == NULL || bench_connect(o, &cl) != 0) {
        w->failed = 1;
        free(slots);
        pthread_barrier_wait(&x->start);
        return NULL;
    }
    /* Threads start at different points of the query list so that they do
     * not all ask the same question at the same moment. */
    uint32_t next_q = (uint32_t)((uint64_t)x->s->nq * w->index / nconn);
    uint64_t budget = UINT64_MAX;
    if (o->count)
        budget = o->count * (w->index + 1) / nconn - o->count * w->index / nconn;
    unsigned flags = x->by_prompt ? DEJA_LOOKUP_WANT_PROMPT : 0;
    pthread_barrier_wait(&x->start);

    for (;;) {
        uint64_t now = bench_now_ns();
        int done_sending = w->r.sent >= budget || now >= x->end_ns;
        if (cl == NULL) {
            if (done_sending) break;
            sleep_until(now + RECONNECT_PAUSE_NS);
            if (bench_connect(o, &cl) != 0) {
                w->r.errors++;
                continue;
            }
        }
        uint32_t in_flight = 0;
        for (uint32_t i = 0; i < depth; i++) {
            if (!slots[i].busy) {
                if (done_sending || w->r.sent >= budget) continue;
                uint32_t q = next_q;
                next_q = (q + 1) % x->s->nq;
                int rc = deja_send_lookup(
                    cl, o->ns, x->s->queries + (size_t)q * x->s->dim, x->s->dim,
                    o->threshold, o->k, flags, &slots[i].request_id);
                w->r.sent++;
                if (rc != 0) {
                    count_error(w, cl, rc, "send lookup");
                    if (is_conn_error(rc)) {
                        drop_connection(w, &cl, slots, depth, rc);
                        break;
                    }
                    continue;
                }
                slots[i] = (slot){slots[i].request_id, q, now, 1};
            }
            in_flight++;
        }
        if (cl == NULL) continue;
        if (in_flight == 0) {
            if (done_sending) break;
            continue;
        }

        uint32_t rid = 0;
        deja_result *res = NULL;
        int rc = deja_recv_lookup(cl, &rid, &res);
        uint64_t done = bench_now_ns();
        if (rc != 0 && is_conn_error(rc)) {
            count_error(w, cl, rc, "receive lookup");
            drop_connection(w, &cl, slots, depth, rc);
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
        bench_progress_add(x->progress, 1);
        bench_hist_record(&w->r.lookup_hist, done - sl->sent_ns);
        if (rc == 0)
            bench_judge(x, &w->r, sl->query, res->hits, res->count);
        else
            count_error(w, cl, rc, "lookup");
        deja_result_free(res);
    }
    w->finish_ns = bench_now_ns();
    deja_close(cl);
    free(slots);
    return NULL;
}

/* ---- running a phase --------------------------------------------------------------*/

static void merge(bench_result *r, const bench_result *t) {
    r->stores += t->stores;
    r->store_errors += t->store_errors;
    bench_hist_merge(&r->store_hist, &t->store_hist);
    r->sent += t->sent;
    r->lookups += t->lookups;
    r->judged += t->judged;
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
    bench_hist_merge(&r->lag_hist, &t->lag_hist);
}

/* Runs fn on o->connections threads that start together; merges their
 * results into r. Returns the phase's wall time in seconds, or -1 when no
 * thread could connect. */
static double run_phase(bench_ctx *x, void *(*fn)(void *), double duration_s,
                        bench_result *r) {
    uint32_t n = x->o->connections;
    worker *ws = calloc(n, sizeof *ws);
    if (ws == NULL) return -1;
    pthread_barrier_init(&x->start, NULL, n + 1);
    uint32_t started = 0;
    for (uint32_t i = 0; i < n; i++) {
        ws[i].ctx = x;
        ws[i].index = i;
        bench_hist_init(&ws[i].r.store_hist);
        bench_hist_init(&ws[i].r.lookup_hist);
        bench_hist_init(&ws[i].r.lag_hist);
        if (pthread_create(&ws[i].thread, NULL, fn, &ws[i]) != 0) {
            /* The barrier counts on n threads: without them, give up. */
            fprintf(stderr, "deja-bench: cannot start thread %u\n", i);
            exit(BENCH_EXIT_FAILED);
        }
        started++;
    }
    /* The clock starts once every thread has connected. */
    x->start_ns = bench_now_ns();
    x->end_ns = duration_s > 0 ? x->start_ns + (uint64_t)(duration_s * 1e9) : UINT64_MAX;
    pthread_barrier_wait(&x->start);
    uint64_t finish = x->start_ns;
    uint32_t failed = 0;
    for (uint32_t i = 0; i < started; i++) {
        pthread_join(ws[i].thread, NULL);
        failed += (uint32_t)ws[i].failed;
        if (ws[i].finish_ns > finish) finish = ws[i].finish_ns;
        merge(r, &ws[i].r);
    }
    pthread_barrier_destroy(&x->start);
    free(ws);
    if (failed == n) return -1;
    if (failed) r->errors += failed;
    return (double)(finish - x->start_ns) / 1e9;
}

/* Flushes the namespace so the server holds exactly the workload, and
 * returns the server's name. */
static int prepare(const bench_opts *o, bench_env *env, bench_result *r) {
    deja_client *cl;
    if (bench_connect(o, &cl) != 0) return -1;
    snprintf(env->server, sizeof env->server, "%s", deja_server_name(cl));
    if (!o->no_load) {
        int rc = deja_flush(cl, o->ns, &r->flushed);
        if (rc != 0) {
            fprintf(stderr, "deja-bench: flush %s: %s (%s)\n", o->ns, deja_strerror(rc),
                    deja_last_error(cl));
            deja_close(cl);
            return -1;
        }
    }
    deja_close(cl);
    return 0;
}

static int load(bench_ctx *x, bench_result *r) {
    const bench_opts *o = x->o;
    const synth_set *s = x->s;
    /* Rows a failed thread never stored keep an id no server hands out. */
    memset(x->ids, 0xff, (size_t)s->n * sizeof *x->ids);
    if (!o->quiet)
        fprintf(stderr, "deja-bench: storing %u entries over %u connections\n", s->n,
                o->connections);
    x->progress = bench_progress_start(o->progress, "storing", s->n, 0);
    r->load_s = run_phase(x, load_main, 0, r);
    bench_progress_done(x->progress);
    x->progress = NULL;
    if (r->load_s < 0) return -1;
    if (r->stores == 0) {
        /* Lookups against an empty set would measure nothing but errors. */
        fprintf(stderr, "deja-bench: no entry could be stored in %s\n", o->ns);
        return -1;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        x->by_id[i].id = x->ids[i];
        x->by_id[i].row = i;
    }
    qsort(x->by_id, s->n, sizeof *x->by_id, cmp_id_row);
    for (uint32_t i = 1; i < s->n; i++)
        if (x->by_id[i].id == x->by_id[i - 1].id && x->by_id[i].id != UINT64_MAX)
            r->shared_ids++;
    if (r->shared_ids && !o->quiet)
        fprintf(stderr,
                "deja-bench: %u rows were stored under the id of a near-identical "
                "earlier row (server dedup); hits on them are judged by the best of "
                "the rows\n",
                r->shared_ids);
    return 0;
}

/* dejad's indexer threads move entries into the graph behind the STOREs:
 * lookups measure the steady state only once the backlog is gone, and how
 * long the graph took to catch up is a figure of its own. */
double bench_wait_indexed(const bench_opts *o) {
    bench_ns_stats st;
    uint64_t t0 = bench_now_ns();
    if (bench_ns_stats_get(o, &st) != 0 || st.unindexed <= 0) return 0;
    if (!o->quiet)
        fprintf(stderr, "deja-bench: waiting for %lld entries to join the index\n",
                (long long)st.unindexed);
    int64_t initial = st.unindexed;
    bench_progress *p =
        bench_progress_start(o->progress, "indexing", (uint64_t)initial, 0);
    while (st.unindexed > 0) {
        bench_progress_set(p, (uint64_t)(initial - st.unindexed));
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
        if (bench_ns_stats_get(o, &st) != 0) break;
    }
    bench_progress_done(p);
    return (double)(bench_now_ns() - t0) / 1e9;
}

int bench_server_run(const bench_opts *o, const synth_set *s, const bench_oracle *oracle,
                     bench_env *env, bench_result *r) {
    memset(r, 0, sizeof *r);
    bench_hist_init(&r->store_hist);
    bench_hist_init(&r->lookup_hist);
    bench_hist_init(&r->lag_hist);
    bench_hist_init(&r->wake_hist);
    if (s->nq == 0) {
        fprintf(stderr, "deja-bench: the workload has no queries\n");
        return -1;
    }
    if (prepare(o, env, r) != 0) return -1;

    bench_ctx x = {.o = o, .s = s, .oracle = oracle, .by_prompt = o->no_load};
    x.ids = malloc(((size_t)s->n + 1) * sizeof *x.ids);
    x.by_id = malloc(((size_t)s->n + 1) * sizeof *x.by_id);
    x.filler = bench_make_filler(o->response_bytes);
    int rc = -1;
    if (!x.ids || !x.by_id || !x.filler) {
        fprintf(stderr, "deja-bench: out of memory\n");
        goto out;
    }
    if (!o->no_load && load(&x, r) != 0) goto out;
    if (!o->no_wait) r->index_wait_s = bench_wait_indexed(o);
    bench_ns_stats st;
    bench_ns_stats_get(o, &st);
    r->server_entries = st.entries;
    r->unindexed = st.unindexed;
    r->dedup_updates = st.dedup_updates;
    r->index_bytes = st.index_bytes;
    r->entry_bytes = st.entry_bytes;
    if (o->no_load && st.entries >= 0 && (uint64_t)st.entries != s->n)
        fprintf(stderr,
                "deja-bench: warning: %s holds %lld entries, the workload has %u; "
                "hits on other entries count as unknown\n",
                o->ns, (long long)st.entries, s->n);
    if (st.min_threshold_milli > 0 && o->threshold * 1000 < st.min_threshold_milli)
        fprintf(stderr,
                "deja-bench: warning: the server raises every threshold of %s to its "
                "floor %.3f; hits are judged at %.3f\n",
                o->ns, st.min_threshold_milli / 1000.0, o->threshold);

    r->open_loop = o->rate > 0;
    x.depth = o->pipeline;
    if (r->open_loop && !o->pipeline_set) x.depth = OPEN_LOOP_DEPTH;
    r->depth = x.depth;
    if (!o->quiet) {
        char what[64];
        if (o->count)
            snprintf(what, sizeof what, "%llu lookups", (unsigned long long)o->count);
        else
            snprintf(what, sizeof what, "lookups for %.1f s", o->duration_s);
        if (r->open_loop)
            fprintf(stderr,
                    "deja-bench: %s at %.0f/s over %u connections (up to %u in "
                    "flight each)\n",
                    what, o->rate, o->connections, x.depth);
        else
            fprintf(stderr, "deja-bench: %s, %u connections x %u in flight\n", what,
                    o->connections, x.depth);
    }
    x.progress = bench_progress_start(o->progress, "lookups", o->count,
                                      o->count ? 0 : o->duration_s);
    if (r->open_loop)
        r->lookup_s = bench_openloop_run(&x, r);
    else
        r->lookup_s = run_phase(&x, lookup_main, o->count ? 0 : o->duration_s, r);
    bench_progress_done(x.progress);
    if (r->lookup_s < 0) goto out;
    rc = 0;
out:
    free(x.ids);
    free(x.by_id);
    free((char *)x.filler);
    return rc;
}
