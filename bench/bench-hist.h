/* bench-hist.h: a log-linear latency histogram for deja-bench.
 *
 * Like HdrHistogram: every power of two is split into 128 equal buckets,
 * so any recorded value is known to within 0.8% (the reported value is
 * the bucket's midpoint, within 0.4%) from 1 ns up to 34 s, in a fixed
 * 30 KB table. Recording is a few instructions and never allocates, so
 * each worker thread keeps its own histogram and they are merged at the
 * end. */
#ifndef DEJA_BENCH_HIST_H
#define DEJA_BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_MAX_EXP 35 /* values clamp at 2^35 - 1 ns (34 s) */
#define BENCH_HIST_BUCKETS                                                               \
    (BENCH_HIST_SUB * (BENCH_HIST_MAX_EXP - BENCH_HIST_SUB_BITS + 1))

typedef struct bench_hist {
    uint64_t count;
    uint64_t min_ns, max_ns;
    double sum_ns;
    uint64_t buckets[BENCH_HIST_BUCKETS];
} bench_hist;

void bench_hist_init(bench_hist *h);

/* Records one latency in nanoseconds. */
void bench_hist_record(bench_hist *h, uint64_t ns);

/* Adds src's counts into dst. */
void bench_hist_merge(bench_hist *dst, const bench_hist *src);

/* The value at quantile q in [0, 1] (0.5 = median), in nanoseconds; 0 for
 * an empty histogram. q = 1 returns the exact maximum. */
uint64_t bench_hist_quantile(const bench_hist *h, double q);

double bench_hist_mean(const bench_hist *h);

#endif
