/* bench-burst.c: deja-bench mixed --burst G,W -- thundering herds, and
 * what leases (semantic single-flight, docs/PROTOCOL.md 5.15) save.
 *
 * Each burst is a new question nobody asked before: one random vector,
 * and G paraphrases of it (each at a cosine drawn from --burst-cos, by
 * default [0.90, 0.98], to it, so about 0.81 to 0.96 to each other). G users (threads
 * sharing one deja_pool of G connections, as an application's request threads would) send
 * one paraphrase each, their starts spread evenly over W ms, through deja_get_or_fetch
 * with a simulated LLM (a sleep of --llm-delay-ms). Without leases every user that
 * arrives before the first answer is stored misses and calls the LLM; with leases one
 * calls it and the others wait for its answer (COALESCED), except those whose paraphrase
 * is below the threshold to the leaseholder's question (they take a lease of their own: a
 * different question, as far as the threshold can tell).
 *
 * The same seeded bursts run once per --leases setting (both by default:
 * on, then off), each on the namespace flushed first, and the report puts
 * the two side by side: LLM calls, answers by kind, and the end-to-end
 * latency of each kind (from a user's call to its answer): waiters
 * (COALESCED: their wait is the rest of the leaseholder's LLM call),
 * fetchers (LLM calls, with or without a lease) and hits. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "deja.h"

/* What one user's call in one burst ended as. */
enum burst_kind { K_WAITER, K_LEASEHOLDER, K_FETCHER, K_HIT, K_ERROR, K_KINDS };
static const char *const kind_names[K_KINDS] = {"waiter (coalesced)", "leaseholder",
                                                "fetcher (no lease)", "hit", "error"};
static const char *const kind_keys[K_KINDS] = {"waiter", "leaseholder", "fetcher", "hit",
                                               "error"};

typedef struct burst_pass {
    int leases;
    uint64_t llm_calls, count[K_KINDS], server_coalesced;
    bench_hist hist[K_KINDS];
    double wall_s;
} burst_pass;

typedef struct burst_ctx {
    const bench_opts *o;
    deja_pool *pool;
    const float *vecs; /* bursts * G paraphrases */
    uint32_t g;
    atomic_uint_fast64_t llm_calls;
    pthread_barrier_t go, done;
    uint32_t burst; /* the burst running; set before go */
} burst_ctx;

typedef struct burst_user {
    burst_ctx *x;
    uint32_t index;
    pthread_t thread;
    uint64_t count[K_KINDS];
    bench_hist hist[K_KINDS];
} burst_user;

/* splitmix64: the bursts are the same for every pass and every run with
 * the same seed. */
static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double bench_uniform(uint64_t *state) {
    return (double)(next_u64(state) >> 11) / 9007199254740992.0;
}

/* A random unit vector: Gaussian components (Box-Muller), normalised. */
static void bench_unit_vector(uint64_t *state, float *v, uint32_t dim) {
    double norm = 0;
    for (uint32_t j = 0; j < dim; j++) {
        double u1 = bench_uniform(state), u2 = bench_uniform(state);
        if (u1 < 1e-12) u1 = 1e-12;
        v[j] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        norm += (double)v[j] * v[j];
    }
    for (uint32_t j = 0; j < dim; j++)
        v[j] = (float)(v[j] / sqrt(norm));
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int simulated_llm(void *ctx, const char *prompt, deja_fetch *f) {
    burst_ctx *x = ctx;
    (void)prompt;
    atomic_fetch_add(&x->llm_calls, 1);
    sleep_ns((uint64_t)(x->o->llm_delay_ms * 1e6));
    char answer[64];
    int n = snprintf(answer, sizeof answer, "answer to burst %u", x->burst);
    deja_fetch_meta(f, 0, 100, 25, (uint64_t)(x->o->llm_cost_usd * 1e6 + 0.5));
    return deja_fetch_answer(f, answer, (size_t)n, 0);
}

static void *user_main(void *arg) {
    burst_user *u = arg;
    burst_ctx *x = u->x;
    uint32_t bursts = x->o->bursts;
    for (uint32_t b = 0; b < bursts; b++) {
        pthread_barrier_wait(&x->go);
        /* Starts spread evenly over the burst's window. */
        sleep_ns((uint64_t)x->o->burst_spread_ms * 1000000ull * u->index / x->g);
        const float *v = x->vecs + ((size_t)b * x->g + u->index) * x->o->synth.dim;
        deja_result *r = NULL;
        uint64_t t0 = bench_now_ns();
        int rc = deja_get_or_fetch(x->pool, x->o->ns, NULL, v, x->o->synth.dim,
                                   x->o->threshold, simulated_llm, x, &r);
        uint64_t took = bench_now_ns() - t0;
        enum burst_kind k = K_ERROR;
        if (rc == 0 && (r->flags & DEJA_RESULT_COALESCED))
            k = K_WAITER;
        else if (rc == 0 && (r->flags & DEJA_RESULT_FETCHED))
            k = r->outcome == DEJA_OUTCOME_LEASE ? K_LEASEHOLDER : K_FETCHER;
        else if (rc == 0)
            k = K_HIT;
        u->count[k]++;
        bench_hist_record(&u->hist[k], took);
        deja_result_free(r);
        pthread_barrier_wait(&x->done);
    }
    return NULL;
}

/* The bursts' vectors: burst b's question from the seed, then its G
 * paraphrases, the same for every pass. */
static float *make_bursts(const bench_opts *o) {
    uint32_t dim = o->synth.dim, g = o->burst_size;
    float *v = malloc((size_t)o->bursts * g * dim * sizeof *v);
    float *base = malloc(dim * sizeof *base), *noise = malloc(dim * sizeof *noise);
    if (v == NULL || base == NULL || noise == NULL) {
        free(v);
        free(base);
        free(noise);
        return NULL;
    }
    uint64_t state = o->synth.seed * 0x9e3779b97f4a7c15ull + 0x42;
    for (uint32_t b = 0; b < o->bursts; b++) {
        bench_unit_vector(&state, base, dim);
        for (uint32_t i = 0; i < g; i++) {
            /* q = c * base + sqrt(1 - c^2) * (unit noise orthogonal to base) */
            double c = o->burst_cos_min +
                       (o->burst_cos_max - o->burst_cos_min) * bench_uniform(&state);
            bench_unit_vector(&state, noise, dim);
            double dot = 0, norm = 0;
            for (uint32_t j = 0; j < dim; j++)
                dot += (double)noise[j] * base[j];
            for (uint32_t j = 0; j < dim; j++) {
                noise[j] = (float)(noise[j] - dot * base[j]);
                norm += (double)noise[j] * noise[j];
            }
            double s = sqrt(1.0 - c * c) / sqrt(norm);
            float *q = v + ((size_t)b * g + i) * dim;
            for (uint32_t j = 0; j < dim; j++)
                q[j] = (float)(c * base[j] + s * noise[j]);
        }
    }
    free(base);
    free(noise);
    return v;
}

/* A namespace counter; 0 when absent (an unknown namespace, an older
 * server). */
static uint64_t ns_counter(deja_pool *p, const char *ns, const char *key) {
    deja_stats *st = NULL;
    uint64_t v = 0;
    if (deja_pool_stats(p, ns, &st) == 0) (void)deja_stats_find(st, key, &v);
    deja_stats_free(st);
    return v;
}

static int run_pass(const bench_opts *o, const float *vecs, int leases, burst_pass *out) {
    memset(out, 0, sizeof *out);
    out->leases = leases;
    for (int k = 0; k < K_KINDS; k++)
        bench_hist_init(&out->hist[k]);
    uint32_t g = o->burst_size;
    deja_pool_options po = {
        .size = g,
        .connect_timeout_ms = 2000,
        .lookup_timeout_ms = o->timeout_ms,
        .write_timeout_ms = o->timeout_ms,
        .auth_token = o->auth_token,
        /* Long enough for any waiter to see the leaseholder's answer. */
        .lease_wait_ms = leases ? (int)(o->llm_delay_ms * 4 + o->burst_spread_ms + 1000)
                                : DEJA_LEASES_OFF,
    };
    burst_ctx x = {.o = o, .vecs = vecs, .g = g};
    atomic_init(&x.llm_calls, 0);
    int rc = deja_pool_create(o->addr, &po, &x.pool);
    if (rc != 0) {
        fprintf(stderr, "deja-bench: pool: %s\n", deja_pool_last_error());
        return -1;
    }
    uint64_t removed, coalesced_before = ns_counter(x.pool, o->ns, "coalesced");
    if ((rc = deja_pool_flush(x.pool, o->ns, &removed)) != 0) {
        fprintf(stderr, "deja-bench: flush %s: %s (%s)\n", o->ns, deja_strerror(rc),
                deja_pool_last_error());
        deja_pool_destroy(x.pool);
        return -1;
    }
    burst_user *us = calloc(g, sizeof *us);
    if (us == NULL) {
        deja_pool_destroy(x.pool);
        return -1;
    }
    pthread_barrier_init(&x.go, NULL, g + 1);
    pthread_barrier_init(&x.done, NULL, g + 1);
    for (uint32_t i = 0; i < g; i++) {
        us[i] = (burst_user){.x = &x, .index = i};
        for (int k = 0; k < K_KINDS; k++)
            bench_hist_init(&us[i].hist[k]);
        if (pthread_create(&us[i].thread, NULL, user_main, &us[i]) != 0) {
            fprintf(stderr, "deja-bench: cannot start thread %u\n", i);
            exit(BENCH_EXIT_FAILED);
        }
    }
    uint64_t t0 = bench_now_ns();
    for (uint32_t b = 0; b < o->bursts; b++) {
        x.burst = b;
        pthread_barrier_wait(&x.go);
        pthread_barrier_wait(&x.done);
    }
    out->wall_s = (double)(bench_now_ns() - t0) / 1e9;
    for (uint32_t i = 0; i < g; i++) {
        pthread_join(us[i].thread, NULL);
        for (int k = 0; k < K_KINDS; k++) {
            out->count[k] += us[i].count[k];
            bench_hist_merge(&out->hist[k], &us[i].hist[k]);
        }
    }
    pthread_barrier_destroy(&x.go);
    pthread_barrier_destroy(&x.done);
    free(us);
    out->llm_calls = atomic_load(&x.llm_calls);
    /* Counters outlive FLUSH: this pass's share is the difference. */
    out->server_coalesced = ns_counter(x.pool, o->ns, "coalesced") - coalesced_before;
    deja_pool_destroy(x.pool);
    return 0;
}

static double ms_at(const bench_hist *h, double q) {
    return (double)bench_hist_quantile(h, q) / 1e6;
}

static void report_text(const bench_opts *o, const bench_env *env, const burst_pass *p,
                        int n) {
    uint64_t requests = (uint64_t)o->bursts * o->burst_size;
    printf("deja-bench mixed --burst: %u bursts of %u paraphrases (cosine %.2f-%.2f to "
           "a new question) within %u ms, LLM %.0f ms, threshold %.2f, dim %u\n",
           o->bursts, o->burst_size, o->burst_cos_min, o->burst_cos_max,
           o->burst_spread_ms, o->llm_delay_ms, (double)o->threshold, o->synth.dim);
    printf("server %s; %s\n", env->server[0] ? env->server : o->addr, env->cmdline);
    for (int i = 0; i < n; i++) {
        printf("\nleases %s: %llu requests, %llu LLM calls (%.2f per burst), "
               "server coalesced %llu, %.2f s\n",
               p[i].leases ? "on" : "off", (unsigned long long)requests,
               (unsigned long long)p[i].llm_calls,
               (double)p[i].llm_calls / (o->bursts ? o->bursts : 1),
               (unsigned long long)p[i].server_coalesced, p[i].wall_s);
        printf("  %-20s %8s %10s %10s %10s\n", "answered as", "count", "p50 ms", "p99 ms",
               "max ms");
        for (int k = 0; k < K_KINDS; k++) {
            if (p[i].count[k] == 0) continue;
            printf("  %-20s %8llu %10.1f %10.1f %10.1f\n", kind_names[k],
                   (unsigned long long)p[i].count[k], ms_at(&p[i].hist[k], 0.5),
                   ms_at(&p[i].hist[k], 0.99), ms_at(&p[i].hist[k], 1.0));
        }
    }
    if (n == 2 && p[1].llm_calls > 0)
        printf("\nLLM calls: %llu with leases, %llu without (%.1f%% saved)\n",
               (unsigned long long)p[0].llm_calls, (unsigned long long)p[1].llm_calls,
               100.0 * (1.0 - (double)p[0].llm_calls / (double)p[1].llm_calls));
}

static void report_json(const bench_opts *o, const bench_env *env, const burst_pass *p,
                        int n) {
    printf(
        "{\"mode\":\"mixed-burst\",\"bursts\":%u,\"burst_size\":%u,\"spread_ms\":%u,"
        "\"llm_delay_ms\":%g,\"threshold\":%g,\"dim\":%u,\"server\":\"%s\",\"passes\":[",
        o->bursts, o->burst_size, o->burst_spread_ms, o->llm_delay_ms,
        (double)o->threshold, o->synth.dim, env->server);
    for (int i = 0; i < n; i++) {
        printf("%s{\"leases\":%s,\"llm_calls\":%llu,\"server_coalesced\":%llu,"
               "\"wall_s\":%.3f",
               i ? "," : "", p[i].leases ? "true" : "false",
               (unsigned long long)p[i].llm_calls,
               (unsigned long long)p[i].server_coalesced, p[i].wall_s);
        for (int k = 0; k < K_KINDS; k++)
            printf(",\"%s\":{\"count\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f}",
                   kind_keys[k], (unsigned long long)p[i].count[k],
                   ms_at(&p[i].hist[k], 0.5), ms_at(&p[i].hist[k], 0.99));
        printf("}");
    }
    printf("]}\n");
}

int bench_burst_run(const bench_opts *o, bench_env *env) {
    float *vecs = make_bursts(o);
    if (vecs == NULL) {
        fprintf(stderr, "deja-bench: out of memory\n");
        return -1;
    }
    deja_client *cl;
    if (bench_connect(o, &cl) != 0) {
        free(vecs);
        return -1;
    }
    snprintf(env->server, sizeof env->server, "%s (protocol %u)", deja_server_name(cl),
             deja_protocol_version(cl));
    deja_close(cl);
    burst_pass passes[2];
    int n = 0, rc = 0;
    if (o->leases != BENCH_LEASES_OFF) {
        if (!o->quiet) fprintf(stderr, "deja-bench: bursts with leases\n");
        rc |= run_pass(o, vecs, 1, &passes[n++]);
    }
    if (rc == 0 && o->leases != BENCH_LEASES_ON) {
        if (!o->quiet) fprintf(stderr, "deja-bench: bursts without leases\n");
        rc |= run_pass(o, vecs, 0, &passes[n++]);
    }
    free(vecs);
    if (rc != 0) return -1;
    if (o->json)
        report_json(o, env, passes, n);
    else
        report_text(o, env, passes, n);
    return 0;
}
