/* deja-bench.c: the deja load generator -- command line and report.
 *
 *   deja-bench server --addr HOST:PORT [--synthetic N,NQ[,SEED]] [...]
 *
 * Generates a synthetic text-like data set (bench-synth.c), computes the
 * exact answers (bench-oracle.c), loads and queries a running dejad
 * (bench-server.c), and prints throughput, latency percentiles and answer
 * quality together with everything needed to reproduce the run: data set,
 * seed, concurrency, CPU and build type. Speed figures belong here, not in
 * test assertions. Exit status: 0 after a completed run, 1 when the server
 * could not be used, 2 on a usage error. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "deja.h"
#include "idx.h"

#ifndef DEJA_BUILD_TYPE
#define DEJA_BUILD_TYPE "unknown"
#endif
#ifndef DEJA_SANITIZE
#define DEJA_SANITIZE "none"
#endif

typedef struct cli {
    bench_opts o;
    synth_config synth;
    int json;
} cli;

static void usage(FILE *f) {
    fprintf(f,
            "usage: deja-bench server [options]\n"
            "  --addr HOST:PORT         dejad address (default 127.0.0.1:7447;\n"
            "                           unix:/path for a Unix socket)\n"
            "  --synthetic N,NQ[,SEED]  N entries and NQ queries (default 10000,2000,1)\n"
            "  --mix P,R,N              query mix in percent: paraphrase, exact repeat,\n"
            "                           novel (default 60,10,30)\n"
            "  --dim D                  vector dimension (default 1536)\n"
            "  --connections C          client threads, one connection each (default 1)\n"
            "  --pipeline D             lookups in flight per connection (default 1)\n"
            "  --duration S             seconds of lookups (default 10)\n"
            "  --threshold T            similarity threshold (default 0.85)\n"
            "  --k K                    hits per lookup (default 1)\n"
            "  --ns NAME                namespace, flushed first (default bench)\n"
            "  --response-bytes B       size of each cached response (default 1024)\n"
            "  --timeout-ms MS          request timeout (default 5000)\n"
            "  --auth-token T           token for servers started with --auth-token\n"
            "  --json                   print one JSON object on stdout\n"
            "  --quiet                  no progress messages on stderr\n");
}

/* ---- argument parsing --------------------------------------------------------*/

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || s[0] == '-' || v < lo || v > hi) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* Splits "a,b[,c]" into up to max unsigned numbers; returns how many. */
static int parse_list(const char *s, unsigned long long *v, int max) {
    int n = 0;
    const char *p = s;
    while (n < max) {
        char *end;
        if (*p < '0' || *p > '9') return -1;
        v[n++] = strtoull(p, &end, 10);
        if (*end == 0) return n;
        if (*end != ',') return -1;
        p = end + 1;
    }
    return -1;
}

static int parse_args(int argc, char **argv, cli *c) {
    enum {
        O_ADDR = 256,
        O_SYNTH,
        O_MIX,
        O_DIM,
        O_CONN,
        O_PIPE,
        O_DUR,
        O_THR,
        O_K,
        O_NS,
        O_RESP,
        O_TIMEOUT,
        O_TOKEN,
        O_JSON,
        O_QUIET,
        O_HELP
    };
    static const struct option opts[] = {
        {"addr", required_argument, NULL, O_ADDR},
        {"synthetic", required_argument, NULL, O_SYNTH},
        {"mix", required_argument, NULL, O_MIX},
        {"dim", required_argument, NULL, O_DIM},
        {"connections", required_argument, NULL, O_CONN},
        {"pipeline", required_argument, NULL, O_PIPE},
        {"duration", required_argument, NULL, O_DUR},
        {"threshold", required_argument, NULL, O_THR},
        {"k", required_argument, NULL, O_K},
        {"ns", required_argument, NULL, O_NS},
        {"response-bytes", required_argument, NULL, O_RESP},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"auth-token", required_argument, NULL, O_TOKEN},
        {"json", no_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    bench_opts *o = &c->o;
    *o = (bench_opts){.addr = "127.0.0.1:7447",
                      .ns = "bench",
                      .connections = 1,
                      .pipeline = 1,
                      .k = 1,
                      .threshold = 0.85f,
                      .duration_s = 10,
                      .response_bytes = 1024,
                      .timeout_ms = 5000};
    uint32_t n = 10000, nq = 2000, dim = 1536;
    uint64_t seed = 1;
    double mix[SYNTH_KINDS] = {0.6, 0.1, 0.3};
    c->json = 0;

    if (argc < 2 || strcmp(argv[1], "server") != 0) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage(stdout);
            exit(0);
        }
        fprintf(stderr, "deja-bench: the first argument must be a mode: server\n");
        usage(stderr);
        return -1;
    }
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        unsigned long long v[3];
        double d = 0;
        int bad = 0, cnt;
        switch (ch) {
        case O_ADDR: o->addr = optarg; break;
        case O_SYNTH:
            cnt = parse_list(optarg, v, 3);
            bad = cnt < 2 || v[0] < 1 || v[0] > 50000000 || v[1] < 1 || v[1] > 10000000;
            if (!bad) {
                n = (uint32_t)v[0];
                nq = (uint32_t)v[1];
                if (cnt == 3) seed = v[2];
            }
            break;
        case O_MIX:
            cnt = parse_list(optarg, v, 3);
            bad = cnt != 3 || v[0] + v[1] + v[2] != 100;
            for (int i = 0; !bad && i < 3; i++)
                mix[i] = (double)v[i] / 100.0;
            break;
        case O_DIM: bad = parse_u32(optarg, 1, 4096, &dim); break;
        case O_CONN: bad = parse_u32(optarg, 1, 4096, &o->connections); break;
        case O_PIPE: bad = parse_u32(optarg, 1, 1024, &o->pipeline); break;
        case O_DUR: bad = parse_double(optarg, 0.001, 86400, &o->duration_s); break;
        case O_THR:
            bad = parse_double(optarg, -1, 1, &d);
            o->threshold = (float)d;
            break;
        case O_K: bad = parse_u32(optarg, 1, 256, &o->k); break;
        case O_NS: o->ns = optarg; break;
        case O_RESP: bad = parse_u32(optarg, 0, 64u << 20, &o->response_bytes); break;
        case O_TIMEOUT: {
            uint32_t ms;
            bad = parse_u32(optarg, 1, 3600000, &ms);
            o->timeout_ms = (int)ms;
            break;
        }
        case O_TOKEN: o->auth_token = optarg; break;
        case O_JSON: c->json = 1; break;
        case O_QUIET: o->quiet = 1; break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (bad) {
            fprintf(stderr, "deja-bench: bad value for --%s: %s\n",
                    opts[ch - O_ADDR].name, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "deja-bench: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    synth_config_default(&c->synth, n, nq, dim, seed);
    for (int i = 0; i < SYNTH_KINDS; i++)
        c->synth.share[i] = mix[i];
    return 0;
}

/* ---- environment -------------------------------------------------------------*/

static void cpu_model(char *out, size_t len) {
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *p = strchr(line, ':');
        if (p == NULL) continue;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        p[strcspn(p, "\n")] = 0;
        snprintf(out, len, "%s", p);
        break;
    }
    fclose(f);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- report --------------------------------------------------------------------*/

static double us(const bench_hist *h, double q) {
    return (double)bench_hist_quantile(h, q) / 1000.0;
}

static double ratio(uint64_t a, uint64_t b) {
    return b ? (double)a / (double)b : 0;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

typedef struct env_info {
    char cpu[256];
    long cpus;
    double gen_s;
} env_info;

static void print_table(const cli *c, const env_info *env, const bench_oracle * or,
                        const bench_result *r) {
    const bench_opts *o = &c->o;
    const synth_config *sc = &c->synth;
    printf("deja-bench server  %s (%s)\n", o->addr, r->server_name);
    printf("  dataset     synthetic n=%u nq=%u seed=%llu mix=%.0f/%.0f/%.0f dim=%u\n",
           sc->n, sc->nq, (unsigned long long)sc->seed, sc->share[0] * 100,
           sc->share[1] * 100, sc->share[2] * 100, sc->dim);
    printf("  run         connections=%u pipeline=%u k=%u threshold=%.3f "
           "duration=%.1fs ns=%s response=%uB\n",
           o->connections, o->pipeline, o->k, o->threshold, o->duration_s, o->ns,
           o->response_bytes);
    printf("  machine     %s (%ld cpus), build %s, sanitize %s, kernels %s\n", env->cpu,
           env->cpus, DEJA_BUILD_TYPE, DEJA_SANITIZE, idx_simd_name());
    printf("  prep        generated in %.2f s, oracle in %.2f s; flushed %llu\n",
           env->gen_s, or->seconds, (unsigned long long)r->flushed);
    printf("load\n");
    printf("  stores      %llu in %.2f s = %.0f stores/s (p50 %.1f us, p99 %.1f us), "
           "errors %llu\n",
           (unsigned long long)r->stores, r->load_s,
           r->load_s > 0 ? (double)r->stores / r->load_s : 0, us(&r->store_hist, 0.5),
           us(&r->store_hist, 0.99), (unsigned long long)r->store_errors);
    if (r->server_entries >= 0)
        printf("  server      reports %lld entries in %s\n", (long long)r->server_entries,
               o->ns);
    printf("lookups\n");
    printf("  throughput  %llu in %.2f s = %.0f lookups/s\n",
           (unsigned long long)r->lookups, r->lookup_s,
           r->lookup_s > 0 ? (double)r->lookups / r->lookup_s : 0);
    printf("  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  "
           "mean %.1f\n",
           us(&r->lookup_hist, 0.5), us(&r->lookup_hist, 0.9), us(&r->lookup_hist, 0.99),
           us(&r->lookup_hist, 0.999), us(&r->lookup_hist, 1.0),
           bench_hist_mean(&r->lookup_hist) / 1000.0);
    uint64_t judged = r->kind_lookups[0] + r->kind_lookups[1] + r->kind_lookups[2];
    printf("  hit rate    %.4f (oracle %.4f)\n", ratio(r->hits, judged),
           ratio(r->oracle_hits, judged));
    for (int k = 0; k < SYNTH_KINDS; k++)
        printf("    %-10s  %.4f (oracle %.4f) of %llu\n", synth_kind_name(k),
               ratio(r->kind_hits[k], r->kind_lookups[k]),
               ratio(r->kind_oracle[k], r->kind_lookups[k]),
               (unsigned long long)r->kind_lookups[k]);
    printf("  answers     false_hits %llu  missed_hits %llu  not_best %llu  "
           "sim_mismatches %llu  unknown_ids %llu\n",
           (unsigned long long)r->false_hits, (unsigned long long)r->missed_hits,
           (unsigned long long)r->not_best, (unsigned long long)r->sim_mismatches,
           (unsigned long long)r->unknown_ids);
    printf("  errors      %llu  timeouts %llu\n", (unsigned long long)r->errors,
           (unsigned long long)r->timeouts);
}

static void print_json(const cli *c, const env_info *env, const bench_oracle * or,
                       const bench_result *r) {
    const bench_opts *o = &c->o;
    const synth_config *sc = &c->synth;
    uint64_t judged = r->kind_lookups[0] + r->kind_lookups[1] + r->kind_lookups[2];
    FILE *f = stdout;
    fprintf(f, "{\"mode\":\"server\",\"config\":{\"addr\":");
    json_str(f, o->addr);
    fprintf(f, ",\"server\":");
    json_str(f, r->server_name);
    fprintf(f,
            ",\"dataset\":\"synthetic\",\"n\":%u,\"nq\":%u,\"seed\":%llu,"
            "\"mix\":[%.2f,%.2f,%.2f],\"dim\":%u,\"connections\":%u,"
            "\"pipeline\":%u,\"k\":%u,\"threshold\":%.4f,\"duration_s\":%.3f,"
            "\"ns\":",
            sc->n, sc->nq, (unsigned long long)sc->seed, sc->share[0], sc->share[1],
            sc->share[2], sc->dim, o->connections, o->pipeline, o->k, o->threshold,
            o->duration_s);
    json_str(f, o->ns);
    fprintf(f, ",\"response_bytes\":%u,\"cpu\":", o->response_bytes);
    json_str(f, env->cpu);
    fprintf(f,
            ",\"cpus\":%ld,\"build_type\":\"%s\",\"sanitize\":\"%s\","
            "\"kernels\":\"%s\"},",
            env->cpus, DEJA_BUILD_TYPE, DEJA_SANITIZE, idx_simd_name());
    fprintf(f, "\"generate_s\":%.3f,\"oracle_s\":%.3f,\"flushed\":%llu,", env->gen_s,
            or->seconds, (unsigned long long)r->flushed);
    fprintf(f,
            "\"stores\":%llu,\"store_errors\":%llu,\"load_s\":%.3f,"
            "\"stores_per_s\":%.1f,\"store_p50_us\":%.1f,\"store_p99_us\":%.1f,"
            "\"server_entries\":%lld,",
            (unsigned long long)r->stores, (unsigned long long)r->store_errors, r->load_s,
            r->load_s > 0 ? (double)r->stores / r->load_s : 0, us(&r->store_hist, 0.5),
            us(&r->store_hist, 0.99), (long long)r->server_entries);
    fprintf(f,
            "\"lookups\":%llu,\"lookup_s\":%.3f,\"lookups_per_s\":%.1f,"
            "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
            "\"max_us\":%.1f,\"mean_us\":%.1f,",
            (unsigned long long)r->lookups, r->lookup_s,
            r->lookup_s > 0 ? (double)r->lookups / r->lookup_s : 0,
            us(&r->lookup_hist, 0.5), us(&r->lookup_hist, 0.9), us(&r->lookup_hist, 0.99),
            us(&r->lookup_hist, 0.999), us(&r->lookup_hist, 1.0),
            bench_hist_mean(&r->lookup_hist) / 1000.0);
    fprintf(f, "\"hit_rate\":%.5f,\"oracle_hit_rate\":%.5f,\"by_kind\":{",
            ratio(r->hits, judged), ratio(r->oracle_hits, judged));
    for (int k = 0; k < SYNTH_KINDS; k++)
        fprintf(f,
                "%s\"%s\":{\"lookups\":%llu,\"hit_rate\":%.5f,"
                "\"oracle_hit_rate\":%.5f}",
                k ? "," : "", synth_kind_name(k), (unsigned long long)r->kind_lookups[k],
                ratio(r->kind_hits[k], r->kind_lookups[k]),
                ratio(r->kind_oracle[k], r->kind_lookups[k]));
    fprintf(f,
            "},\"false_hits\":%llu,\"missed_hits\":%llu,\"not_best\":%llu,"
            "\"sim_mismatches\":%llu,\"unknown_ids\":%llu,\"errors\":%llu,"
            "\"timeouts\":%llu}\n",
            (unsigned long long)r->false_hits, (unsigned long long)r->missed_hits,
            (unsigned long long)r->not_best, (unsigned long long)r->sim_mismatches,
            (unsigned long long)r->unknown_ids, (unsigned long long)r->errors,
            (unsigned long long)r->timeouts);
}

int main(int argc, char **argv) {
    cli c;
    if (parse_args(argc, argv, &c) != 0) return 2;
    idx_simd_init();

    env_info env;
    cpu_model(env.cpu, sizeof env.cpu);
    env.cpus = sysconf(_SC_NPROCESSORS_ONLN);

    if (!c.o.quiet)
        fprintf(stderr, "deja-bench: generating %u entries and %u queries, dim %u\n",
                c.synth.n, c.synth.nq, c.synth.dim);
    double t0 = now_s();
    synth_set set;
    if (synth_generate(&c.synth, &set) != 0) return 1;
    env.gen_s = now_s() - t0;

    bench_oracle oracle;
    if (bench_oracle_compute(&set, &oracle) != 0) {
        synth_free(&set);
        return 1;
    }

    bench_result *r = calloc(1, sizeof *r);
    int rc = 1;
    if (r != NULL && bench_server_run(&c.o, &set, &oracle, r) == 0) {
        if (c.json)
            print_json(&c, &env, &oracle, r);
        else
            print_table(&c, &env, &oracle, r);
        rc = 0;
    }
    free(r);
    bench_oracle_free(&oracle);
    synth_free(&set);
    return rc;
}
