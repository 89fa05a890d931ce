/* deja-bench.c: the deja benchmark tool -- command line and main.
 *
 *   deja-bench index  [workload] [--ef 16,32,...] [--quant f32,int8] ...
 *   deja-bench server [workload] --addr HOST:PORT | --spawn  [...]
 *   deja-bench mixed  [workload] --addr HOST:PORT | --spawn  [...]
 *   deja-bench churn  [workload] --addr HOST:PORT | --spawn  [--cycles N] ...
 *
 * Makes the workload (synthetic, or .fvecs/.bvecs files), finds the exact
 * answers, runs one mode and prints the results with everything needed to
 * reproduce them. Speed figures belong here, not in test assertions.
 * Exit status: 0 after a completed run, 1 when the run failed (server
 * unusable, out of memory), 2 on a usage error, 3 when the run completed
 * but some answer was a false hit (an entry below the threshold) or, in
 * churn mode, a target was missed. */
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
#ifndef DEJA_VERSION
#define DEJA_VERSION "unknown"
#endif

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: deja-bench MODE [options]\n"
        "modes:\n"
        "  index    build indexes in-process and sweep ef: recall, QPS, latency, memory\n"
        "  server   load a dejad, then time lookups (closed loop, or open loop at "
        "--rate)\n"
        "  mixed    the application's cache loop: lookup, on a miss call the "
        "(simulated)\n"
        "           LLM and store; hit rate over time, LLM calls and money saved\n"
        "  churn    load a dejad, then cycles of deleting part of the entries and\n"
        "           storing as many new ones: recall, hit rate, short lookups and\n"
        "           memory per cycle against the exact answer and a fresh build\n"
        "workload (default: synthetic):\n"
        "  --synthetic N,NQ[,SEED]  N entries, NQ queries (index 20000,1000; server\n"
        "                           10000,2000; mixed 2000,10000 -- mixed streams the\n"
        "                           NQ queries and stores on a miss; N are the\n"
        "                           underlying questions; churn 100000,2000 -- N live\n"
        "                           entries, NQ new queries per measurement)\n"
        "  --dim D                  dimension (default 1536)\n"
        "  --mix P,R,N              query mix in percent: paraphrase, exact repeat,\n"
        "                           novel (default 60,10,30)\n"
        "  --zipf S                 topic popularity exponent, 0 = uniform (default 1)\n"
        "  --paraphrase LO,HI       cosine of a paraphrase to its source (0.86,0.98)\n"
        "  --topics T               topics (default N/50)\n"
        "  --base FILE --query FILE .fvecs or .bvecs files instead (L2-normalised)\n"
        "  --gt FILE                .ivecs ground truth (default: computed exactly and\n"
        "                           cached as QUERY.gt-BASE-kK.ivecs)\n"
        "  --base-limit N, --query-limit N   use the first N rows only\n"
        "  --write-data PREFIX      save the workload as PREFIX.base.fvecs and\n"
        "                           PREFIX.query.fvecs (plus its ground truth)\n"
        "common:\n"
        "  --threshold T            similarity threshold (default 0.85)\n"
        "  --k K                    results per search (index and churn 10, others 1)\n"
        "  --json | --csv           machine-readable output on stdout\n"
        "  --plot OUT.svg           chart through gnuplot (OUT.gp, OUT.dat always "
        "written)\n"
        "  --quiet                  no progress on stderr\n"
        "index mode:\n"
        "  --ef LIST                search breadths to sweep (default 16,32,64,128,256)\n"
        "  --M M                    HNSW links per node (default 16)\n"
        "  --ef-construction E      HNSW build breadth (default 200)\n"
        "  --quant LIST             f32, int8 or f32,int8 (default f32,int8; churn: "
        "one,\n"
        "                           the namespace's codes, default f32)\n"
        "  --faiss FACTORY          a FAISS baseline through deja's FAISS kind; repeat\n"
        "                           for several (default HNSW32)\n"
        "  --no-faiss, --no-flat    skip the FAISS baselines / the exact flat index\n"
        "  --threads N              search and build threads (default: all CPUs)\n"
        "  --min-time S             each QPS figure lasts at least S seconds (default "
        "1)\n"
        "server, mixed and churn modes:\n"
        "  --addr HOST:PORT         dejad address (default 127.0.0.1:7447; unix:/path)\n"
        "  --spawn                  start a private dejad on a free port instead\n"
        "  --dejad PATH             the dejad to spawn (default: next to deja-bench)\n"
        "  --data DIR               data folder of the spawned dejad (default: "
        "temporary)\n"
        "  --fsync MODE             --fsync of the spawned dejad (always|batch|off)\n"
        "  --dejad-arg ARG          one more argument for the spawned dejad "
        "(repeatable)\n"
        "  --connections C          client threads, one connection each (server 1,\n"
        "                           mixed and churn 16); --users is the same for mixed\n"
        "  --ns NAME                namespace, flushed first (default bench; churn:\n"
        "                           bench-churn, dropped and created first)\n"
        "  --response-bytes B       size of each cached response (default 1024)\n"
        "  --timeout-ms MS          request timeout (default 5000)\n"
        "  --auth-token T           token for servers started with --auth-token\n"
        "server mode:\n"
        "  --pipeline D             lookups in flight per connection (default 1; open\n"
        "                           loop 256)\n"
        "  --rate R                 open loop: R lookups/s in all, sent on schedule by\n"
        "                           one thread over all connections; latency measured\n"
        "                           from each request's scheduled time, and the send\n"
        "                           lag (how late requests left) reported beside it\n"
        "  --sender rt|normal       open loop's sending thread: rt (default) runs it\n"
        "                           SCHED_FIFO and polls before each due time for as\n"
        "                           long as its recent wakeups were late (20-500 us,\n"
        "                           at most 20%% of the interval), so that it sends on\n"
        "                           time even when dejad keeps every core busy (falls\n"
        "                           back to normal, with a note, where that is not\n"
        "                           permitted); normal keeps the default policy and\n"
        "                           sleeps until due\n"
        "  --duration S             seconds of lookups (default 10)\n"
        "  --count N                N lookups instead of a duration\n"
        "  --no-load                no flush, no stores: judge what the server holds\n"
        "                           (stored by an earlier run with the same workload)\n"
        "  --no-wait                start lookups at once, while the server's graph\n"
        "                           still catches up (after a restart); by default\n"
        "                           they wait until every entry is indexed\n"
        "mixed mode:\n"
        "  --llm-delay-ms MS        simulated LLM latency per miss (default 50)\n"
        "  --llm-cost USD           cost of one LLM call (default 0.01)\n"
        "  --intervals N            hit rate reported per 1/N of the stream (default "
        "10)\n"
        "  --llm-ms MS              the same as --llm-delay-ms\n"
        "  --burst G,W              instead of the stream: bursts of G paraphrases\n"
        "                           (cosine 0.90-0.98 to one new question) started\n"
        "                           within W ms by G users sharing one pool, each\n"
        "                           through deja_get_or_fetch; reports LLM calls,\n"
        "                           coalesced answers and p50/p99 latency of waiters,\n"
        "                           leaseholders and fetchers, with and without leases\n"
        "  --bursts N               bursts per pass (default 10; seed from --synthetic)\n"
        "  --burst-cos LO,HI        cosine of a burst's paraphrases to its question\n"
        "                           (default 0.90,0.98; 0.98,1 for near-identical)\n"
        "  --leases on|off|both     passes to run (default both: on, then off; the\n"
        "                           same seeded bursts, the namespace flushed before\n"
        "                           each)\n"
        "churn mode:\n"
        "  --cycles N               delete-and-insert cycles (default 10)\n"
        "  --churn-frac F           share of the live entries deleted and replaced by\n"
        "                           new ones (same generator model) per cycle (0.5)\n"
        "  targets                  recall@k and hit-rate gap within 0.02 of a fresh\n"
        "                           build, STATS memory and RssAnon within 5%% of\n"
        "                           cycle 0, no short lookups\n"
        "exit status: 0 ok, 1 run failed, 2 usage, 3 completed with false hits (churn:\n"
        "or a missed target)\n");
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

/* Splits "a,b[,c...]" into up to max unsigned numbers; returns how many,
 * or -1. */
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

static int parse_pair(const char *s, double *a, double *b) {
    char *end;
    *a = strtod(s, &end);
    if (end == s || *end != ',') return -1;
    const char *p = end + 1;
    *b = strtod(p, &end);
    return end == p || *end ? -1 : 0;
}

enum {
    O_SYNTH = 256,
    O_DIM,
    O_MIX,
    O_ZIPF,
    O_PARA,
    O_TOPICS,
    O_BASE,
    O_QUERY,
    O_GT,
    O_BASE_LIMIT,
    O_QUERY_LIMIT,
    O_WRITE,
    O_THR,
    O_K,
    O_JSON,
    O_CSV,
    O_PLOT,
    O_QUIET,
    O_EF,
    O_M,
    O_EFC,
    O_QUANT,
    O_FAISS,
    O_NO_FAISS,
    O_NO_FLAT,
    O_THREADS,
    O_MIN_TIME,
    O_ADDR,
    O_SPAWN,
    O_DEJAD,
    O_DATA,
    O_FSYNC,
    O_DEJAD_ARG,
    O_CONN,
    O_USERS,
    O_NS,
    O_RESP,
    O_TIMEOUT,
    O_TOKEN,
    O_PIPE,
    O_RATE,
    O_SENDER,
    O_DUR,
    O_COUNT,
    O_NO_LOAD,
    O_NO_WAIT,
    O_DELAY,
    O_COST,
    O_INTERVALS,
    O_BURST,
    O_BURSTS,
    O_BURST_COS,
    O_LEASES,
    O_CYCLES,
    O_CHURN_FRAC,
    O_HELP
};

static const struct option long_opts[] = {
    {"synthetic", required_argument, NULL, O_SYNTH},
    {"dim", required_argument, NULL, O_DIM},
    {"mix", required_argument, NULL, O_MIX},
    {"zipf", required_argument, NULL, O_ZIPF},
    {"paraphrase", required_argument, NULL, O_PARA},
    {"topics", required_argument, NULL, O_TOPICS},
    {"base", required_argument, NULL, O_BASE},
    {"query", required_argument, NULL, O_QUERY},
    {"gt", required_argument, NULL, O_GT},
    {"base-limit", required_argument, NULL, O_BASE_LIMIT},
    {"query-limit", required_argument, NULL, O_QUERY_LIMIT},
    {"write-data", required_argument, NULL, O_WRITE},
    {"threshold", required_argument, NULL, O_THR},
    {"k", required_argument, NULL, O_K},
    {"json", no_argument, NULL, O_JSON},
    {"csv", no_argument, NULL, O_CSV},
    {"plot", required_argument, NULL, O_PLOT},
    {"quiet", no_argument, NULL, O_QUIET},
    {"ef", required_argument, NULL, O_EF},
    {"M", required_argument, NULL, O_M},
    {"ef-construction", required_argument, NULL, O_EFC},
    {"quant", required_argument, NULL, O_QUANT},
    {"faiss", required_argument, NULL, O_FAISS},
    {"no-faiss", no_argument, NULL, O_NO_FAISS},
    {"no-flat", no_argument, NULL, O_NO_FLAT},
    {"threads", required_argument, NULL, O_THREADS},
    {"min-time", required_argument, NULL, O_MIN_TIME},
    {"addr", required_argument, NULL, O_ADDR},
    {"spawn", no_argument, NULL, O_SPAWN},
    {"dejad", required_argument, NULL, O_DEJAD},
    {"data", required_argument, NULL, O_DATA},
    {"fsync", required_argument, NULL, O_FSYNC},
    {"dejad-arg", required_argument, NULL, O_DEJAD_ARG},
    {"connections", required_argument, NULL, O_CONN},
    {"users", required_argument, NULL, O_USERS},
    {"ns", required_argument, NULL, O_NS},
    {"response-bytes", required_argument, NULL, O_RESP},
    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"auth-token", required_argument, NULL, O_TOKEN},
    {"pipeline", required_argument, NULL, O_PIPE},
    {"rate", required_argument, NULL, O_RATE},
    {"sender", required_argument, NULL, O_SENDER},
    {"duration", required_argument, NULL, O_DUR},
    {"count", required_argument, NULL, O_COUNT},
    {"no-load", no_argument, NULL, O_NO_LOAD},
    {"no-wait", no_argument, NULL, O_NO_WAIT},
    {"llm-delay-ms", required_argument, NULL, O_DELAY},
    {"llm-cost", required_argument, NULL, O_COST},
    {"intervals", required_argument, NULL, O_INTERVALS},
    {"llm-ms", required_argument, NULL, O_DELAY},
    {"burst", required_argument, NULL, O_BURST},
    {"bursts", required_argument, NULL, O_BURSTS},
    {"burst-cos", required_argument, NULL, O_BURST_COS},
    {"leases", required_argument, NULL, O_LEASES},
    {"cycles", required_argument, NULL, O_CYCLES},
    {"churn-frac", required_argument, NULL, O_CHURN_FRAC},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

/* Options that only make sense in some modes, as a bit per mode. */
#define M_INDEX (1u << BENCH_INDEX)
#define M_SERVER (1u << BENCH_SERVER)
#define M_MIXED (1u << BENCH_MIXED)
#define M_CHURN (1u << BENCH_CHURN)
#define M_NET (M_SERVER | M_MIXED | M_CHURN)

static unsigned option_modes(int ch) {
    switch (ch) {
    case O_QUANT: return M_INDEX | M_CHURN;
    case O_CYCLES:
    case O_CHURN_FRAC: return M_CHURN;
    case O_EF:
    case O_M:
    case O_EFC:
    case O_FAISS:
    case O_NO_FAISS:
    case O_NO_FLAT:
    case O_THREADS:
    case O_MIN_TIME:
    case O_GT: return M_INDEX | (ch == O_GT ? M_SERVER : 0);
    case O_ADDR:
    case O_SPAWN:
    case O_DEJAD:
    case O_DATA:
    case O_FSYNC:
    case O_DEJAD_ARG:
    case O_CONN:
    case O_NS:
    case O_RESP:
    case O_TIMEOUT:
    case O_TOKEN: return M_NET;
    case O_PIPE:
    case O_RATE:
    case O_SENDER:
    case O_DUR:
    case O_COUNT:
    case O_NO_LOAD: return M_SERVER;
    case O_NO_WAIT: return M_SERVER;
    case O_USERS:
    case O_DELAY:
    case O_COST:
    case O_INTERVALS:
    case O_BURST:
    case O_BURSTS:
    case O_BURST_COS:
    case O_LEASES: return M_MIXED;
    default: return M_INDEX | M_NET;
    }
}

static void set_defaults(bench_opts *o, enum bench_mode mode, uint32_t *n, uint32_t *nq) {
    memset(o, 0, sizeof *o);
    o->mode = mode;
    o->mode_name = mode == BENCH_INDEX    ? "index"
                   : mode == BENCH_SERVER ? "server"
                   : mode == BENCH_MIXED  ? "mixed"
                                          : "churn";
    o->threshold = 0.85f;
    o->k = mode == BENCH_INDEX || mode == BENCH_CHURN ? 10 : 1;
    o->addr = "127.0.0.1:7447";
    o->ns = mode == BENCH_CHURN ? "bench-churn" : "bench";
    o->connections = mode == BENCH_MIXED || mode == BENCH_CHURN ? 16 : 1;
    o->cycles = 10;
    o->churn_frac = 0.5;
    o->pipeline = 1;
    o->duration_s = 10;
    o->response_bytes = 1024;
    o->timeout_ms = 5000;
    o->M = 16;
    o->ef_construction = 200;
    o->min_seconds = 1.0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cpus > 0 ? (uint32_t)cpus : 1;
    o->llm_delay_ms = 50;
    o->llm_cost_usd = 0.01;
    o->intervals = 10;
    o->bursts = 10;
    o->burst_cos_min = 0.90;
    o->burst_cos_max = 0.98;
    static const uint32_t ef[] = {16, 32, 64, 128, 256};
    for (size_t i = 0; i < sizeof ef / sizeof ef[0]; i++)
        o->ef[o->n_ef++] = ef[i];
    o->quant_f32 = 1;
    o->quant_int8 = mode == BENCH_INDEX;
    switch (mode) {
    case BENCH_INDEX: *n = 20000, *nq = 1000; break;
    case BENCH_SERVER: *n = 10000, *nq = 2000; break;
    case BENCH_MIXED: *n = 2000, *nq = 10000; break;
    case BENCH_CHURN: *n = 100000, *nq = 2000; break;
    }
}

/* Parses one option into o; returns 0 or -1 for a bad value. */
static int parse_one(bench_opts *o, int ch, const char *arg, uint32_t *n, uint32_t *nq,
                     uint64_t *seed, double *mix, int *faiss_given) {
    unsigned long long v[BENCH_MAX_EF];
    double d, e;
    int cnt;
    switch (ch) {
    case O_SYNTH:
        cnt = parse_list(arg, v, 3);
        if (cnt < 2 || v[0] < 1 || v[0] > 50000000 || v[1] < 1 || v[1] > 50000000)
            return -1;
        *n = (uint32_t)v[0];
        *nq = (uint32_t)v[1];
        if (cnt == 3) *seed = v[2];
        return 0;
    case O_DIM: return parse_u32(arg, 1, 4096, &o->synth.dim);
    case O_MIX:
        cnt = parse_list(arg, v, 3);
        if (cnt != 3 || v[0] + v[1] + v[2] != 100) return -1;
        for (int i = 0; i < 3; i++)
            mix[i] = (double)v[i] / 100.0;
        return 0;
    case O_ZIPF: return parse_double(arg, 0, 10, &o->synth.zipf);
    case O_PARA:
        if (parse_pair(arg, &d, &e) != 0 || !(d > 0 && d <= e && e <= 1)) return -1;
        o->synth.paraphrase_min = (float)d;
        o->synth.paraphrase_max = (float)e;
        return 0;
    case O_TOPICS: return parse_u32(arg, 1, 50000000, &o->synth.topics);
    case O_BASE: o->base_path = arg; return 0;
    case O_QUERY: o->query_path = arg; return 0;
    case O_GT: o->gt_path = arg; return 0;
    case O_BASE_LIMIT: return parse_u32(arg, 1, UINT32_MAX, &o->base_limit);
    case O_QUERY_LIMIT: return parse_u32(arg, 1, UINT32_MAX, &o->query_limit);
    case O_WRITE: o->write_data = arg; return 0;
    case O_THR:
        if (parse_double(arg, -1, 1, &d) != 0) return -1;
        o->threshold = (float)d;
        return 0;
    case O_K: return parse_u32(arg, 1, 256, &o->k);
    case O_JSON: o->json = 1; return 0;
    case O_CSV: o->csv = 1; return 0;
    case O_PLOT: o->plot = arg; return 0;
    case O_QUIET: o->quiet = 1; return 0;
    case O_EF:
        cnt = parse_list(arg, v, BENCH_MAX_EF);
        if (cnt < 1) return -1;
        for (int i = 0; i < cnt; i++) {
            if (v[i] < 1 || v[i] > 100000) return -1;
            o->ef[i] = (uint32_t)v[i];
        }
        o->n_ef = cnt;
        return 0;
    case O_M: return parse_u32(arg, 2, 256, &o->M);
    case O_EFC: return parse_u32(arg, 1, 100000, &o->ef_construction);
    case O_QUANT:
        o->quant_f32 = strstr(arg, "f32") != NULL;
        o->quant_int8 = strstr(arg, "int8") != NULL;
        return (o->quant_f32 || o->quant_int8) &&
                       (!strcmp(arg, "f32") || !strcmp(arg, "int8") ||
                        !strcmp(arg, "f32,int8") || !strcmp(arg, "int8,f32"))
                   ? 0
                   : -1;
    case O_FAISS:
        if (!*faiss_given) o->n_faiss = 0;
        *faiss_given = 1;
        if (o->n_faiss == BENCH_MAX_FAISS || !*arg) return -1;
        o->faiss[o->n_faiss++] = arg;
        return 0;
    case O_NO_FAISS:
        o->n_faiss = 0;
        *faiss_given = 1;
        return 0;
    case O_NO_FLAT: o->no_flat = 1; return 0;
    case O_THREADS: return parse_u32(arg, 1, 1024, &o->threads);
    case O_MIN_TIME: return parse_double(arg, 0, 3600, &o->min_seconds);
    case O_ADDR: o->addr = arg; return 0;
    case O_SPAWN: o->spawn = 1; return 0;
    case O_DEJAD: o->dejad_path = arg; return 0;
    case O_DATA: o->spawn_data = arg; return 0;
    case O_FSYNC:
        if (strcmp(arg, "always") && strcmp(arg, "batch") && strcmp(arg, "off"))
            return -1;
        o->fsync = arg;
        return 0;
    case O_DEJAD_ARG:
        if (o->n_dejad_args == BENCH_MAX_DEJAD_ARGS) return -1;
        o->dejad_args[o->n_dejad_args++] = arg;
        return 0;
    case O_CONN:
    case O_USERS: return parse_u32(arg, 1, 4096, &o->connections);
    case O_NS: o->ns = arg; return 0;
    case O_RESP: return parse_u32(arg, 0, 64u << 20, &o->response_bytes);
    case O_TIMEOUT: {
        uint32_t ms;
        if (parse_u32(arg, 1, 3600000, &ms) != 0) return -1;
        o->timeout_ms = (int)ms;
        return 0;
    }
    case O_TOKEN: o->auth_token = arg; return 0;
    case O_PIPE: o->pipeline_set = 1; return parse_u32(arg, 1, 1024, &o->pipeline);
    case O_RATE: return parse_double(arg, 0.001, 1e9, &o->rate);
    case O_SENDER:
        if (!strcmp(arg, "rt"))
            o->sender = BENCH_SENDER_RT;
        else if (!strcmp(arg, "normal"))
            o->sender = BENCH_SENDER_NORMAL;
        else
            return -1;
        return 0;
    case O_DUR: return parse_double(arg, 0.001, 86400 * 7, &o->duration_s);
    case O_COUNT:
        cnt = parse_list(arg, v, 1);
        if (cnt != 1 || v[0] < 1) return -1;
        o->count = v[0];
        return 0;
    case O_NO_LOAD: o->no_load = 1; return 0;
    case O_NO_WAIT: o->no_wait = 1; return 0;
    case O_DELAY: return parse_double(arg, 0, 3600e3, &o->llm_delay_ms);
    case O_COST: return parse_double(arg, 0, 1e6, &o->llm_cost_usd);
    case O_INTERVALS: return parse_u32(arg, 1, BENCH_MAX_INTERVALS, &o->intervals);
    case O_BURST:
        cnt = parse_list(arg, v, 2);
        if (cnt != 2 || v[0] < 1 || v[0] > 4096 || v[1] > 600000) return -1;
        o->burst_size = (uint32_t)v[0];
        o->burst_spread_ms = (uint32_t)v[1];
        return 0;
    case O_BURSTS: return parse_u32(arg, 1, 100000, &o->bursts);
    case O_BURST_COS:
        if (parse_pair(arg, &d, &e) != 0 || !(d > 0 && d <= e && e <= 1)) return -1;
        o->burst_cos_min = d;
        o->burst_cos_max = e;
        return 0;
    case O_LEASES:
        if (!strcmp(arg, "both"))
            o->leases = BENCH_LEASES_BOTH;
        else if (!strcmp(arg, "on"))
            o->leases = BENCH_LEASES_ON;
        else if (!strcmp(arg, "off"))
            o->leases = BENCH_LEASES_OFF;
        else
            return -1;
        return 0;
    case O_CYCLES: return parse_u32(arg, 1, BENCH_MAX_CYCLES, &o->cycles);
    case O_CHURN_FRAC:
        if (parse_double(arg, 0, 1, &d) != 0 || d == 0) return -1;
        o->churn_frac = d;
        return 0;
    }
    return -1;
}

static const char *option_name(int ch) {
    for (const struct option *p = long_opts; p->name; p++)
        if (p->val == ch) return p->name;
    return "?";
}

/* Checks that the options fit together; seen[] marks the options given.
 * Returns 0 or -1 (message printed). */
static int check(const bench_opts *o, const unsigned char *seen) {
    if (o->json && o->csv) {
        fprintf(stderr, "deja-bench: --json and --csv exclude each other\n");
        return -1;
    }
    if ((o->base_path != NULL) != (o->query_path != NULL) && o->mode != BENCH_MIXED) {
        fprintf(stderr, "deja-bench: --base and --query go together\n");
        return -1;
    }
    if (o->mode == BENCH_MIXED && o->base_path && !o->query_path) {
        fprintf(stderr, "deja-bench: mixed mode streams --query; --base alone is not "
                        "a stream\n");
        return -1;
    }
    if (o->gt_path && !o->query_path) {
        fprintf(stderr, "deja-bench: --gt needs --base and --query\n");
        return -1;
    }
    if (o->write_data && o->query_path) {
        fprintf(stderr, "deja-bench: --write-data saves a synthetic workload\n");
        return -1;
    }
    if (o->spawn && seen[O_ADDR]) {
        fprintf(stderr, "deja-bench: --spawn picks its own address; drop --addr\n");
        return -1;
    }
    if ((seen[O_DATA] || seen[O_DEJAD] || seen[O_FSYNC] || seen[O_DEJAD_ARG]) &&
        !o->spawn) {
        fprintf(stderr, "deja-bench: --data, --dejad, --fsync and --dejad-arg are for "
                        "--spawn\n");
        return -1;
    }
    if (o->no_load && o->spawn && !o->spawn_data) {
        fprintf(stderr, "deja-bench: --no-load with --spawn needs --data DIR holding "
                        "an earlier run's entries\n");
        return -1;
    }
    if ((seen[O_BURSTS] || seen[O_LEASES] || seen[O_BURST_COS]) && o->burst_size == 0) {
        fprintf(stderr,
                "deja-bench: --bursts, --burst-cos and --leases go with --burst G,W\n");
        return -1;
    }
    if (seen[O_SENDER] && o->rate <= 0) {
        fprintf(stderr, "deja-bench: --sender is for the open loop (--rate)\n");
        return -1;
    }
    if (seen[O_COUNT] && seen[O_DUR]) {
        fprintf(stderr, "deja-bench: --count and --duration exclude each other\n");
        return -1;
    }
    if (o->mode == BENCH_CHURN) {
        /* New entries come from the generator's model: file data has none. */
        if (o->base_path || o->query_path || o->write_data || o->plot) {
            fprintf(stderr, "deja-bench: churn mode takes a synthetic workload and "
                            "has no --base, --query, --write-data or --plot\n");
            return -1;
        }
        if (o->quant_f32 && o->quant_int8) {
            fprintf(stderr, "deja-bench: churn mode takes one --quant: f32 or int8\n");
            return -1;
        }
    }
    return 0;
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage(stdout);
            exit(BENCH_EXIT_OK);
        }
        if (argc >= 2 && !strcmp(argv[1], "--version")) {
            printf("deja-bench %s\n", DEJA_VERSION);
            exit(BENCH_EXIT_OK);
        }
        fprintf(stderr, "deja-bench: the first argument must be a mode: index, server, "
                        "mixed or churn (--help for usage)\n");
        return -1;
    }
    enum bench_mode mode;
    if (!strcmp(argv[1], "index"))
        mode = BENCH_INDEX;
    else if (!strcmp(argv[1], "server"))
        mode = BENCH_SERVER;
    else if (!strcmp(argv[1], "mixed"))
        mode = BENCH_MIXED;
    else if (!strcmp(argv[1], "churn"))
        mode = BENCH_CHURN;
    else {
        fprintf(stderr, "deja-bench: unknown mode %s: index, server, mixed or churn\n",
                argv[1]);
        return -1;
    }
    uint32_t n, nq;
    set_defaults(o, mode, &n, &nq);
    uint64_t seed = 1;
    double mix[SYNTH_KINDS] = {0.6, 0.1, 0.3};
    int faiss_given = 0;
    unsigned char seen[O_HELP + 1] = {0};
    o->synth.dim = 1536;
    o->synth.zipf = 1.0;
    o->synth.paraphrase_min = 0.86f;
    o->synth.paraphrase_max = 0.98f;
    o->n_faiss = 1;
    o->faiss[0] = "HNSW32";

    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (ch == O_HELP) {
            usage(stdout);
            exit(BENCH_EXIT_OK);
        }
        if (ch == '?') return -1;
        if (!(option_modes(ch) & (1u << mode))) {
            fprintf(stderr, "deja-bench: --%s does not apply to %s mode\n",
                    option_name(ch), o->mode_name);
            return -1;
        }
        seen[ch] = 1;
        if (parse_one(o, ch, optarg, &n, &nq, &seed, mix, &faiss_given) != 0) {
            fprintf(stderr, "deja-bench: bad value for --%s: %s\n", option_name(ch),
                    optarg ? optarg : "");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "deja-bench: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    synth_config c;
    synth_config_default(&c, n, nq, o->synth.dim, seed);
    c.zipf = o->synth.zipf;
    c.topics = o->synth.topics;
    c.paraphrase_min = o->synth.paraphrase_min;
    c.paraphrase_max = o->synth.paraphrase_max;
    for (int i = 0; i < SYNTH_KINDS; i++)
        c.share[i] = mix[i];
    o->synth = c;
    return check(o, seen);
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

/* The command line as a shell would take it back. */
static void join_args(int argc, char **argv, char *out, size_t len) {
    size_t at = 0;
    out[0] = 0;
    for (int i = 0; i < argc && at + 4 < len; i++) {
        const char *a = i == 0 ? "deja-bench" : argv[i];
        int plain = *a && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789-_=.,:/+@%") == strlen(a);
        /* An auth token must not end up in a shared report. */
        if (i > 0 && !strcmp(argv[i - 1], "--auth-token")) a = "***", plain = 1;
        at += (size_t)snprintf(out + at, len - at, i ? " " : "");
        if (plain) {
            at += (size_t)snprintf(out + at, len - at, "%s", a);
            continue;
        }
        at += (size_t)snprintf(out + at, len - at, "'");
        for (; *a && at + 5 < len; a++)
            at += (size_t)snprintf(out + at, len - at, *a == '\'' ? "'\\''" : "%c", *a);
        at += (size_t)snprintf(out + at, len - at, "'");
    }
}

static void fill_env(int argc, char **argv, bench_env *env) {
    memset(env, 0, sizeof *env);
    cpu_model(env->cpu, sizeof env->cpu);
    env->cpus = sysconf(_SC_NPROCESSORS_ONLN);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(env->started, sizeof env->started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    join_args(argc, argv, env->cmdline, sizeof env->cmdline);
    env->version = DEJA_VERSION;
    env->build_type = DEJA_BUILD_TYPE;
    env->sanitize = DEJA_SANITIZE;
    snprintf(env->kernels, sizeof env->kernels, "%s/%s", idx_simd_name(),
             idx_simd_i8_name());
}

/* ---- main -----------------------------------------------------------------------*/

static int run_index(const bench_opts *o, bench_env *env, const synth_set *s) {
    bench_oracle oracle;
    uint32_t k = o->k < 10 ? 10 : o->k;
    if (bench_oracle_get(o, s, k, &oracle) != 0) return BENCH_EXIT_FAILED;
    bench_index_result r;
    int rc = BENCH_EXIT_FAILED;
    if (bench_index_run(o, s, &oracle, &r) == 0) {
        bench_report_index(o, env, &oracle, &r);
        if (o->plot) bench_plot_index(o->plot, env, &r);
        rc = BENCH_EXIT_OK;
        for (int i = 0; i < r.n_rows; i++)
            if (r.rows[i].false_hits) rc = BENCH_EXIT_FALSE_HITS;
    }
    bench_index_result_free(&r);
    bench_oracle_free(&oracle);
    return rc;
}

static int run_server(const bench_opts *o, bench_env *env, const synth_set *s) {
    bench_oracle oracle;
    if (bench_oracle_get(o, s, 1, &oracle) != 0) return BENCH_EXIT_FAILED;
    bench_result *r = malloc(sizeof *r);
    int rc = BENCH_EXIT_FAILED;
    if (r && bench_server_run(o, s, &oracle, env, r) == 0) {
        bench_report_server(o, env, &oracle, r, s);
        if (o->plot) bench_plot_server(o->plot, env, r);
        rc = r->false_hits ? BENCH_EXIT_FALSE_HITS : BENCH_EXIT_OK;
    }
    free(r);
    bench_oracle_free(&oracle);
    return rc;
}

static int run_mixed(const bench_opts *o, bench_env *env, const synth_set *s) {
    if (o->burst_size > 0)
        return bench_burst_run(o, env) == 0 ? BENCH_EXIT_OK : BENCH_EXIT_FAILED;
    bench_mixed_result *r = malloc(sizeof *r);
    int rc = BENCH_EXIT_FAILED;
    if (r && bench_mixed_run(o, s, env, r) == 0) {
        bench_report_mixed(o, env, r, s);
        if (o->plot) bench_plot_mixed(o->plot, env, r);
        rc = r->false_hits ? BENCH_EXIT_FALSE_HITS : BENCH_EXIT_OK;
    }
    free(r);
    return rc;
}

static int run_churn(const bench_opts *o, bench_env *env, synth_set *s) {
    bench_churn_result *r = malloc(sizeof *r);
    int rc = BENCH_EXIT_FAILED;
    if (r && bench_churn_run(o, s, env, r) == 0) {
        bench_report_churn(o, env, r);
        int met = r->ok_recall && r->ok_hit && r->ok_memory && r->ok_rss && r->ok_short;
        rc = met && !r->false_total ? BENCH_EXIT_OK : BENCH_EXIT_TARGETS;
    }
    free(r);
    return rc;
}

int main(int argc, char **argv) {
    bench_opts o;
    if (parse_args(argc, argv, &o) != 0) return BENCH_EXIT_USAGE;
    idx_simd_init();
    bench_env env;
    fill_env(argc, argv, &env);
    /* Progress bars only on a terminal; phase messages still go to a
     * redirected stderr unless --quiet. */
    o.progress = !o.quiet && isatty(2);

    uint64_t t0 = bench_now_ns();
    synth_set set;
    memset(&set, 0, sizeof set);
    /* Bursts make their own vectors: no stream to load. */
    if (o.burst_size == 0 &&
        bench_workload_load(&o, &set, env.dataset, sizeof env.dataset, o.progress) != 0)
        return BENCH_EXIT_FAILED;
    env.prep_s = (double)(bench_now_ns() - t0) / 1e9;
    if (!o.quiet && o.burst_size == 0)
        fprintf(stderr, "deja-bench: workload ready in %.1f s: %s\n", env.prep_s,
                env.dataset);

    bench_spawn sp;
    int spawned = 0;
    if (o.spawn && o.mode != BENCH_INDEX) {
        if (bench_spawn_start(&o, &sp) != 0) {
            synth_free(&set);
            return BENCH_EXIT_FAILED;
        }
        spawned = 1;
        o.addr = sp.addr;
        env.dejad_pid = sp.proc.pid;
        snprintf(env.spawned, sizeof env.spawned, "%s", sp.desc);
        if (!o.quiet) fprintf(stderr, "deja-bench: dejad listening on %s\n", o.addr);
    }

    int rc;
    switch (o.mode) {
    case BENCH_INDEX: rc = run_index(&o, &env, &set); break;
    case BENCH_SERVER: rc = run_server(&o, &env, &set); break;
    case BENCH_CHURN: rc = run_churn(&o, &env, &set); break;
    default: rc = run_mixed(&o, &env, &set); break;
    }
    if (spawned) {
        int status = bench_spawn_stop(&sp);
        if (status != 0)
            fprintf(stderr, "deja-bench: the spawned dejad exited with status %d\n",
                    status);
    }
    synth_free(&set);
    return rc;
}
