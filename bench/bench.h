/* bench.h: what the parts of deja-bench share -- the run options, the
 * workload and its exact answers, the modes and their results, and
 * the report.
 *
 * deja-bench.c parses the command line and runs one mode; bench-synth.c
 * and bench-files.c make the workload (synthetic, or .fvecs/.bvecs files);
 * bench-oracle.c finds the exact answers (and caches them next to file
 * data); bench-index.c, bench-server.c, bench-mixed.c and bench-churn.c
 * are the modes (server mode's open loop is bench-openloop.c, on the
 * sockets of bench-wire.c); bench-spawn.c starts a private dejad;
 * bench-report.c and bench-plot.c print the results; bench-progress.c
 * draws the progress bar.
 *
 * Threading: options, workload and oracle are written before a mode starts
 * and only read after; each worker thread owns its counters and
 * histograms, merged after join (the open loop has one thread, which
 * writes the result directly). */
#ifndef DEJA_BENCH_H
#define DEJA_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench-hist.h"
#include "bench-synth.h"
#include "deja-spawn.h"

enum bench_mode {
    BENCH_INDEX = 1,
    BENCH_SERVER = 2,
    BENCH_MIXED = 3,
    BENCH_CHURN = 4,
};

/* Exit status of deja-bench. A run that completed but saw a false hit (a
 * returned entry below the threshold) exits 3 so that scripts notice even
 * when they only look at the status. */
#define BENCH_EXIT_OK 0
#define BENCH_EXIT_FAILED 1
#define BENCH_EXIT_USAGE 2
#define BENCH_EXIT_FALSE_HITS 3
/* Churn mode exits 3 too when it completed but missed one of its targets
 * (recall, hit rate, memory, short lookups): the same "look at this". */
#define BENCH_EXIT_TARGETS 3

#define BENCH_MAX_EF 32
#define BENCH_MAX_FAISS 8
#define BENCH_MAX_DEJAD_ARGS 32
#define BENCH_MAX_INTERVALS 100
#define BENCH_MAX_CYCLES 1000

/* A returned entry is a false hit when its exact similarity to the query
 * is below the threshold by more than float rounding can explain. */
#define BENCH_FALSE_HIT_SLACK 1e-4f
/* A reported similarity further than this from the exact one is counted
 * as a mismatch (int8 codes or a wrong vector). */
#define BENCH_SIM_TOLERANCE 1e-3f

typedef struct bench_opts {
    enum bench_mode mode;
    const char *mode_name;

    /* workload: synthetic unless base_path / query_path are set */
    synth_config synth;
    const char *base_path, *query_path, *gt_path;
    uint32_t base_limit, query_limit; /* first rows of the files; 0 = all */
    const char *write_data;           /* prefix: save the workload as files */

    /* common */
    uint32_t k;
    float threshold;
    int json, csv, quiet;
    int progress;     /* draw progress bars: !quiet and stderr is a terminal */
    const char *plot; /* out.svg, or NULL */

    /* server and mixed */
    const char *addr, *ns, *auth_token;
    uint32_t connections; /* client threads, one connection each */
    uint32_t pipeline;    /* lookups in flight per connection */
    int pipeline_set;     /* --pipeline given (open loop picks its own) */
    double duration_s;    /* of the lookup phase; 0 = use count */
    uint64_t count;       /* lookups in all; 0 = use duration */
    double rate;          /* open loop: lookups per second in all; 0 = closed */
    int sender;           /* open loop: enum bench_sender */
    uint32_t response_bytes;
    int timeout_ms;
    int no_load; /* server: no flush, no stores; judge what the server holds */
    int no_wait; /* server: lookups do not wait for the graph to catch up */
    int spawn;   /* start a private dejad */
    const char *dejad_path, *spawn_data, *fsync;
    const char *dejad_args[BENCH_MAX_DEJAD_ARGS];
    int n_dejad_args;

    /* index */
    uint32_t threads; /* search and build threads */
    uint32_t ef[BENCH_MAX_EF];
    int n_ef;
    uint32_t M, ef_construction;
    int quant_f32, quant_int8;
    const char *faiss[BENCH_MAX_FAISS]; /* factory strings */
    int n_faiss;
    int no_flat;
    double min_seconds; /* each QPS measurement lasts at least this long */

    /* mixed */
    double llm_delay_ms;
    double llm_cost_usd; /* per call */
    uint32_t intervals;  /* hit rate reported per 1/intervals of the run */
    /* mixed --burst (bench-burst.c): 0 = the stream of bench-mixed.c */
    uint32_t burst_size;                 /* paraphrases per burst, one user each */
    uint32_t burst_spread_ms;            /* their starts spread over this window */
    double burst_cos_min, burst_cos_max; /* paraphrases' cosine to the question */
    uint32_t bursts;                     /* bursts per pass */
    int leases;                          /* enum bench_leases: passes to run */

    /* churn (quant_f32 / quant_int8 pick the namespace's codes) */
    uint32_t cycles;   /* delete-and-insert cycles */
    double churn_frac; /* share of the live entries replaced per cycle */
} bench_opts;

/* How the open loop's driver thread is scheduled (--sender). */
enum bench_sender {
    BENCH_SENDER_RT = 0,     /* SCHED_FIFO, spins the last microseconds */
    BENCH_SENDER_NORMAL = 1, /* the default policy, sleeps until due */
};

enum bench_leases { BENCH_LEASES_BOTH = 0, BENCH_LEASES_ON = 1, BENCH_LEASES_OFF = 2 };

/* What a result needs to be reproduced: filled by deja-bench.c. */
typedef struct bench_env {
    char cpu[256];
    long cpus;
    char started[32]; /* UTC, ISO 8601 */
    char cmdline[2048];
    char dataset[1024];
    const char *version, *build_type, *sanitize;
    char kernels[64];
    double prep_s;     /* generating or reading the workload */
    char server[128];  /* the dejad's HELLO name (server, mixed) */
    char spawned[512]; /* how the private dejad was started, or "" */
    pid_t dejad_pid;   /* the spawned dejad (its RSS is read), or 0 */
} bench_env;

/* ---- progress (bench-progress.c) -------------------------------------------*/

/* A progress bar with ETA on stderr, drawn by its own thread every
 * quarter second, only when enabled (deja-bench passes isatty(2) && !quiet).
 * Every function accepts NULL, which is what a disabled bar is, so callers
 * never test. total counts units (stores, queries); seconds > 0 makes the
 * bar also advance with time (fixed-duration phases). add may be called
 * from any thread. */
typedef struct bench_progress bench_progress;
bench_progress *bench_progress_start(int enabled, const char *label, uint64_t total,
                                     double seconds);
void bench_progress_add(bench_progress *p, uint64_t n);
void bench_progress_set(bench_progress *p, uint64_t done);
/* Erases the bar, stops its thread and frees p. */
void bench_progress_done(bench_progress *p);

/* ---- files (bench-files.c) -----------------------------------------------------*/

/* Reads the first max_rows (0 = all) vectors of an .fvecs (float32) or
 * .bvecs (uint8) file, told apart by the extension, into *out (malloc'd,
 * rows x dim floats). Every record must have the same dimension (1..4096),
 * the file must hold whole records, and floats must be finite. Returns 0,
 * or -1 with a reason in err. */
int bench_vecs_read(const char *path, uint32_t max_rows, float **out, uint32_t *rows,
                    uint32_t *dim, char *err, size_t errlen);

/* Reads the first max_rows (0 = all) records of an .ivecs file into *out
 * (malloc'd, rows x cols int32). Same checks as bench_vecs_read (cols may
 * be up to 100000). */
int bench_ivecs_read(const char *path, uint32_t max_rows, int32_t **out, uint32_t *rows,
                     uint32_t *cols, char *err, size_t errlen);

/* Write rows x cols records through a temporary file renamed into place,
 * so a reader never sees half a file. Return 0 or -1 with errno set. */
int bench_fvecs_write(const char *path, const float *v, uint32_t rows, uint32_t dim);
int bench_ivecs_write(const char *path, const int32_t *v, uint32_t rows, uint32_t cols);

/* L2-normalises every row with the index's normaliser (deja's metric is
 * the cosine). Returns the index of the first zero or non-finite row, or
 * -1 when all rows were fine. */
long bench_normalize_rows(float *v, uint32_t rows, uint32_t dim);

/* The ground-truth cache file of a query file against a base file:
 * "<query>.gt-<base file name>[-n<base rows>]-k<k>.ivecs", next to the
 * query file. The row count is part of the name when only the first rows
 * of the base are used. */
void bench_gt_cache_path(const char *query_path, const char *base_path,
                         uint32_t base_limit, uint32_t k, char *out, size_t outlen);

/* Nonzero when the cache file exists, has exactly nq records of k ids, and
 * is newer than both data files (so an edited data file invalidates it). */
int bench_gt_cache_valid(const char *gt_path, const char *base_path,
                         const char *query_path, uint32_t nq, uint32_t k);

/* Loads the workload: base + queries from files (normalised) or the
 * synthetic generator; describes it in desc. Returns 0 or -1 (message on
 * stderr). */
int bench_workload_load(const bench_opts *o, synth_set *s, char *desc, size_t desclen,
                        int progress);

/* ---- the exact answers (bench-oracle.c) -----------------------------------------*/

typedef struct bench_oracle {
    uint32_t nq, k;
    uint32_t *ids; /* nq x k base rows, best first; UINT32_MAX = none */
    float *sims;   /* nq x k exact similarities */
    double seconds;
    char source[600]; /* "computed", or which file it came from or went to */
} bench_oracle;

static inline float bench_oracle_best(const bench_oracle *o, uint32_t q) {
    return o->sims[(size_t)q * o->k];
}

/* The exact top-k of every query: from --gt (ids only; similarities are
 * recomputed), from the cache file next to file data, or computed with
 * idx_exact_topk (and then cached for file data). Returns 0 or -1. */
int bench_oracle_get(const bench_opts *o, const synth_set *s, uint32_t k,
                     bench_oracle *out);
void bench_oracle_free(bench_oracle *o);

/* The exact best earlier store of every query of a stream (mixed mode).
 * Events are processed in order; a query event (is_query) is scored
 * against the vectors of all store events before it. With store_misses, a
 * query whose best is below threshold is stored itself right after (the
 * sequential cache: it asks the LLM and keeps the answer), and no explicit
 * store events are expected. vec indexes rows of vecs. best[i] and
 * witness[i] (the event that matched, or UINT32_MAX) are written for
 * query events only. Returns 0 or -1 (no memory). */
typedef struct bench_stream_event {
    uint32_t vec;
    uint8_t is_query;
} bench_stream_event;
int bench_stream_oracle(const float *vecs, uint32_t dim, const bench_stream_event *ev,
                        size_t nev, float threshold, int store_misses, float *best,
                        uint32_t *witness);

/* ---- a private dejad (bench-spawn.c) ---------------------------------------------*/

typedef struct bench_spawn {
    dejad_proc proc;  /* common/deja-spawn.h */
    char tmpdir[256]; /* removed at stop */
    char data[512];
    char log[600];
    char addr[64];
    char desc[512];
} bench_spawn;

/* Starts dejad on a free loopback port (--port 0 --port-file) with a data
 * folder in a new temporary directory (or o->spawn_data), and waits until
 * it listens. Returns 0 or -1 (with dejad's log on stderr). */
int bench_spawn_start(const bench_opts *o, bench_spawn *sp);

/* SIGTERM, wait (then SIGKILL after 20 s), remove the temporary directory.
 * Returns dejad's exit status, or -1. */
int bench_spawn_stop(bench_spawn *sp);

/* ---- server mode (bench-server.c) ---------------------------------------------------*/

typedef struct bench_result {
    uint64_t flushed; /* entries removed from the namespace first */

    /* load phase */
    uint64_t stores, store_errors;
    double load_s;
    bench_hist store_hist;
    double index_wait_s; /* after the load, until STATS "unindexed" was 0 */
    int64_t unindexed;   /* STATS "unindexed" when the lookups began */
    /* namespace STATS after the load; -1 when the server has no such key */
    int64_t server_entries, dedup_updates, index_bytes, entry_bytes;
    uint32_t shared_ids; /* rows the server stored under another row's id
                            (write-time dedup of near-identical vectors) */

    /* lookup phase */
    int open_loop;
    uint32_t depth;          /* lookups in flight per connection, at most */
    uint64_t sent;           /* lookups sent */
    uint64_t lookups;        /* replies received (hit, miss or error) */
    uint64_t judged;         /* replies that were a hit or a miss */
    uint64_t hits;           /* replies with count > 0 */
    uint64_t oracle_hits;    /* of the queries answered, exact best >= threshold */
    uint64_t false_hits;     /* a returned entry's exact similarity < threshold */
    uint64_t missed_hits;    /* miss although the oracle has a match */
    uint64_t not_best;       /* hit, but hits[0] worse than the exact best */
    uint64_t sim_mismatches; /* returned similarity off the exact one */
    uint64_t unknown_ids;    /* returned entry not among the workload's rows */
    uint64_t errors;         /* error replies, failed sends, reconnects */
    uint64_t timeouts;
    uint64_t kind_lookups[SYNTH_KINDS], kind_hits[SYNTH_KINDS], kind_oracle[SYNTH_KINDS];
    double lookup_s;
    bench_hist lookup_hist; /* closed: from send; open: from the schedule */
    bench_hist lag_hist;    /* open loop: how late each send left */
    /* open loop: how the driver ran ("rt" or "normal"; "rt" only when
     * SCHED_FIFO was granted), how long before a due time it woke to poll,
     * the CPU it used, and how late its timer wakeups were */
    char sender[16];
    double spin_us;      /* the mean polling window (rt) */
    double sender_cpu_s; /* CPU time the driver thread used */
    bench_hist wake_hist;
    /* open loop: requests that, when due, found every slot busy, and
     * requests whose frame did not fit the socket at once (the server was
     * not reading): the server's share of the send lag */
    uint64_t sends_waited_slot, sends_waited_socket;
} bench_result;

/* Flushes o->ns and stores every entry of s with o->connections clients
 * (unless o->no_load), then runs lookups of s's queries for o->duration_s
 * or o->count, closed-loop or at o->rate, and judges every reply against
 * the oracle. Returns 0, or -1 if the server could not be used at all
 * (message on stderr). r is filled from zero. */
int bench_server_run(const bench_opts *o, const synth_set *s, const bench_oracle *oracle,
                     bench_env *env, bench_result *r);

/* ---- index mode (bench-index.c)
 * -------------------------------------------------------*/

typedef struct bench_index_row {
    char index[32];   /* deja-hnsw, deja-hnsw-int8, deja-flat, faiss-hnsw, ... */
    char params[128]; /* M, efConstruction, factory ... */
    uint32_t ef;      /* 0 = not applicable */
    int default_ef;   /* the index's default breadth (what dejad uses) */
    int skipped;
    char note[320]; /* why a row was skipped, or a remark */
    double build_s;
    double bytes_per_entry;
    size_t bytes;
    uint32_t threads;
    double qps_1t, qps; /* one thread, o->threads threads */
    double p50_us, p99_us, mean_us;
    double recall_at_1, recall_at_10, hit_recall;
    uint64_t oracle_hits, false_hits;
} bench_index_row;

typedef struct bench_index_result {
    bench_index_row *rows;
    int n_rows;
} bench_index_result;

/* Builds every configured index from s's base, sweeps ef, and measures
 * each row against the oracle (k >= 10 columns). Returns 0 or -1. */
int bench_index_run(const bench_opts *o, const synth_set *s, const bench_oracle *oracle,
                    bench_index_result *r);
void bench_index_result_free(bench_index_result *r);

/* ---- mixed mode (bench-mixed.c) -----------------------------------------------------*/

typedef struct bench_mixed_result {
    uint64_t flushed;
    uint64_t requests, hits, llm_calls, stores, store_errors, errors, timeouts;
    uint64_t false_hits, sim_mismatches, unknown_ids;
    uint64_t oracle_hits;    /* hits of the sequential exact oracle */
    uint64_t as_run_hits;    /* exact best among entries acknowledged before
                                the lookup was sent is >= threshold */
    uint64_t missed_hits;    /* miss although as-run says hit: index misses */
    uint64_t pending_misses; /* oracle hit, but its answer was still being
                                generated by another user */
    uint64_t kind_requests[SYNTH_KINDS], kind_hits[SYNTH_KINDS], kind_oracle[SYNTH_KINDS];
    uint32_t intervals;
    uint64_t int_requests[BENCH_MAX_INTERVALS], int_hits[BENCH_MAX_INTERVALS],
        int_oracle[BENCH_MAX_INTERVALS];
    double wall_s;
    double cost_spent, cost_without;
    double llm_time_s, llm_time_without_s; /* user-visible LLM waiting */
    bench_hist lookup_hist, store_hist, request_hist;
} bench_mixed_result;

/* Runs the cache loop of an application over s's queries in stream order
 * (s's base is not stored: it is the set of underlying questions the
 * stream paraphrases). Returns 0 or -1 when the server was unusable. */
int bench_mixed_run(const bench_opts *o, const synth_set *s, bench_env *env,
                    bench_mixed_result *r);

/* ---- mixed --burst (bench-burst.c)
 * ---------------------------------------------------*/

/* Runs o->bursts bursts of o->burst_size users asking paraphrases of one
 * new question at once through deja_get_or_fetch, with leases and/or
 * without (o->leases), and prints the comparison (text or --json) on
 * stdout. Returns 0, or -1 when the server could not be used. */
int bench_burst_run(const bench_opts *o, bench_env *env);

/* ---- shared helpers (bench-server.c)
 * -------------------------------------------------*/

uint64_t bench_now_ns(void);
/* Connects with o's timeouts and token; prints the failure. */
struct deja_client;
int bench_connect(const bench_opts *o, struct deja_client **c);
/* A response of len bytes of readable text. */
char *bench_make_filler(size_t len);
/* Namespace counters from STATS; a key the server does not send is -1. */
typedef struct bench_ns_stats {
    int64_t entries, unindexed, dedup_updates, index_bytes, entry_bytes;
    int64_t min_threshold_milli;
    /* index_bytes by kind: scanned vectors, graph links, entry tables */
    int64_t vector_bytes, graph_bytes, table_bytes;
} bench_ns_stats;
/* Fills *st for o->ns. Returns 0, or -1 when STATS failed (all -1). */
int bench_ns_stats_get(const bench_opts *o, bench_ns_stats *st);
/* STOREs are acknowledged before their entry joins the graph: waits until
 * o->ns has no unindexed entry (polling STATS, with a progress bar), and
 * returns how long that took in seconds. */
double bench_wait_indexed(const bench_opts *o);

/* ---- churn mode (bench-churn.c) -------------------------------------------------*/

/* The figures of the namespace at one point of a churn run: after the
 * load (cycle 0), after each cycle, and for the fresh build. */
typedef struct bench_churn_point {
    uint32_t cycle;
    uint32_t deleted, stored; /* by this cycle (cycle 0: stored = the load) */
    uint64_t errors;          /* failed deletes, stores and lookups */
    double delete_s, store_s, index_wait_s, oracle_s, lookup_s;
    uint32_t queries;
    double recall;                     /* recall@k of lookups at threshold -1 */
    uint64_t hits, oracle_hits;        /* lookups at o->threshold */
    uint64_t short_threshold;          /* fewer hits than live entries >= T */
    uint64_t short_all;                /* threshold -1: fewer than min(k, live) */
    uint64_t false_hits, unknown_ids;  /* a hit below T - slack; an id not live */
    uint64_t sim_mismatches;           /* reported similarity off the exact one */
    int64_t server_entries, unindexed; /* STATS; -1 = not sent */
    int64_t memory_bytes;              /* index_bytes + entry_bytes */
    int64_t index_bytes, entry_bytes, vector_bytes, graph_bytes, table_bytes;
    int64_t rss_bytes, rss_anon_bytes; /* spawned dejad's VmRSS, RssAnon; -1 */
    int64_t disk_bytes;                /* the server's data file; -1 */
} bench_churn_point;

typedef struct bench_churn_result {
    uint32_t n_points; /* cycle 0 (the load) and one per cycle */
    bench_churn_point points[BENCH_MAX_CYCLES + 1];
    bench_churn_point fresh; /* the final live set stored into an empty namespace */
    /* The summary, against the fresh build and cycle 0. The hit-rate gap
     * is oracle hit rate minus hit rate: the hits the index lost. */
    double max_recall_diff; /* max over points of |recall - fresh recall| */
    double max_hit_diff;    /* max |hit rate - fresh hit rate| */
    double max_gap_diff;    /* max |gap - fresh gap| */
    double final_recall_diff, final_hit_diff; /* last cycle vs fresh: same
                                                 entries, same queries */
    double mem_drift_max, mem_drift_min;      /* memory / cycle 0's - 1 */
    double rss_drift_max, rss_drift_min;      /* VmRSS; 0 when unknown */
    double anon_drift_max, anon_drift_min;    /* RssAnon; 0 when unknown */
    int have_rss;
    uint64_t short_total, false_total, errors_total;
    /* Targets of issue #14: each 1 when met. ok_rss judges RssAnon, the
     * process's own memory: VmRSS also counts the pages of the data file
     * that LMDB maps, which follow the file, not the live set. */
    int ok_recall, ok_hit, ok_memory, ok_rss, ok_short;
} bench_churn_result;

/* Loads s's base into a new namespace o->ns (f32 or int8 codes, no floor,
 * no dedup, no TTL), then runs o->cycles cycles of deleting o->churn_frac
 * of the live entries and storing as many new ones from the generator,
 * measuring recall, hit rate, short lookups and memory after the load and
 * after each cycle against the exact answer over the live set, and
 * finally the same for a fresh build of the final live set. s is the live
 * set: churned rows of s->base and s->topic are replaced in place. Returns
 * 0, or -1 when the run could not complete (message on stderr). */
int bench_churn_run(const bench_opts *o, synth_set *s, bench_env *env,
                    bench_churn_result *r);

/* ---- report (bench-report.c, bench-plot.c) ------------------------------------------*/

void bench_report_index(const bench_opts *o, const bench_env *env,
                        const bench_oracle *oracle, const bench_index_result *r);
void bench_report_server(const bench_opts *o, const bench_env *env,
                         const bench_oracle *oracle, const bench_result *r,
                         const synth_set *s);
void bench_report_mixed(const bench_opts *o, const bench_env *env,
                        const bench_mixed_result *r, const synth_set *s);
void bench_report_churn(const bench_opts *o, const bench_env *env,
                        const bench_churn_result *r);

/* Write out.gp and out.dat next to path (an .svg) and run gnuplot when it
 * is installed; otherwise say how to install it. Return 0 or -1. */
int bench_plot_index(const char *path, const bench_env *env, const bench_index_result *r);
int bench_plot_server(const char *path, const bench_env *env, const bench_result *r);
int bench_plot_mixed(const char *path, const bench_env *env, const bench_mixed_result *r);

#endif
