/* bench-hist.c: the log-linear latency histogram (see bench-hist.h). */
#include "bench-hist.h"

#include <string.h>

void bench_hist_init(bench_hist *h) {
    memset(h, 0, sizeof *h);
    h->min_ns = UINT64_MAX;
}

/* Values below 2^SUB_BITS have one bucket each; above, the top SUB_BITS+1
 * significant bits select the bucket (the leading 1 picks the power of
 * two, the next SUB_BITS the linear slice within it). */
static uint32_t bucket_of(uint64_t v) {
    const uint64_t top = (1ull << BENCH_HIST_MAX_EXP) - 1;
    if (v > top) v = top;
    if (v < BENCH_HIST_SUB) return (uint32_t)v;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t sub = (uint32_t)(v >> (e - BENCH_HIST_SUB_BITS)) - BENCH_HIST_SUB;
    return BENCH_HIST_SUB * (e - BENCH_HIST_SUB_BITS + 1) + sub;
}

/* The midpoint of bucket b's value range. */
static uint64_t value_of(uint32_t b) {
    if (b < BENCH_HIST_SUB) return b;
    uint32_t e = b / BENCH_HIST_SUB - 1 + BENCH_HIST_SUB_BITS;
    uint64_t sub = b % BENCH_HIST_SUB;
    uint32_t shift = e - BENCH_HIST_SUB_BITS;
    uint64_t lo = (BENCH_HIST_SUB + sub) << shift;
    return lo + ((1ull << shift) >> 1);
}

void bench_hist_record(bench_hist *h, uint64_t ns) {
    h->buckets[bucket_of(ns)]++;
    h->count++;
    h->sum_ns += (double)ns;
    if (ns < h->min_ns) h->min_ns = ns;
    if (ns > h->max_ns) h->max_ns = ns;
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src) {
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns) dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
}

uint64_t bench_hist_quantile(const bench_hist *h, double q) {
    if (h->count == 0) return 0;
    if (q >= 1.0) return h->max_ns;
    if (q < 0) q = 0;
    /* The rank of the q-quantile, 1-based: the smallest value with at
     * least q * count values at or below it. */
    double want = q * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want || rank < 1) rank++;
    uint64_t seen = 0;
    for (uint32_t b = 0; b < BENCH_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t v = value_of(b);
            /* Never report beyond what was actually seen. */
            if (v > h->max_ns) v = h->max_ns;
            if (v < h->min_ns) v = h->min_ns;
            return v;
        }
    }
    return h->max_ns;
}

double bench_hist_mean(const bench_hist *h) {
    return h->count ? h->sum_ns / (double)h->count : 0;
}
