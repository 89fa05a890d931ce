/* deja-cli-stat.c: `deja-cli stat`, a live view in the spirit of
 * `redis-cli --stat` -- one line per interval with the rates and totals an
 * operator watches: lookups/s, hit rate (exact and semantic), misses/s,
 * stores/s, entries, memory and the money saved so far.
 *
 * Rates are the change of STATS counters between two samples divided by
 * the time between them, so the first line comes one interval after the
 * start. The text header is repeated every 20 lines. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "deja-cli.h"
#include "deja-json.h"

typedef struct sample {
    double t; /* seconds, monotonic */
    uint64_t lookups, hits, exact, semantic, misses, stores, entries, memory, cost;
} sample;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t stat_or_zero(const deja_stats *s, const char *key) {
    uint64_t v = 0;
    deja_stats_find(s, key, &v);
    return v;
}

static int take(deja_client *c, const char *ns, sample *out) {
    deja_stats *s = NULL;
    int rc = deja_stats_get(c, ns, &s);
    if (rc != 0) return rc;
    out->t = now_s();
    out->lookups = stat_or_zero(s, "lookups");
    out->hits = stat_or_zero(s, "hits");
    out->exact = stat_or_zero(s, "exact_hits");
    out->semantic = stat_or_zero(s, "semantic_hits");
    out->misses = stat_or_zero(s, "misses");
    out->stores = stat_or_zero(s, "stores");
    out->entries = stat_or_zero(s, "entries");
    out->memory = stat_or_zero(s, "index_bytes") + stat_or_zero(s, "entry_bytes");
    out->cost = stat_or_zero(s, "cost_saved_micro_usd");
    deja_stats_free(s);
    return 0;
}

static void human_bytes(char *out, size_t len, uint64_t b) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* Prints "ddd.d" or "-" when nothing was looked up in the interval. */
static void percent(char *out, size_t len, uint64_t part, uint64_t whole) {
    if (whole == 0)
        snprintf(out, len, "-");
    else
        snprintf(out, len, "%.1f", 100.0 * (double)part / (double)whole);
}

static void print_line(const sample *a, const sample *b, int json, unsigned lineno) {
    double dt = b->t - a->t > 1e-6 ? b->t - a->t : 1e-6;
    uint64_t dl = b->lookups - a->lookups;
    uint64_t dh = b->hits - a->hits;
    uint64_t de = b->exact - a->exact;
    uint64_t ds = b->semantic - a->semantic;
    double lookups = (double)dl / dt, misses = (double)(b->misses - a->misses) / dt;
    double stores = (double)(b->stores - a->stores) / dt;
    if (json) {
        json_writer w;
        json_init(&w, stdout);
        json_begin_object(&w);
        json_key(&w, "lookups_per_s");
        json_number(&w, "%.1f", lookups);
        const char *rate_keys[] = {"hit_rate", "exact_hit_rate", "semantic_hit_rate"};
        uint64_t rate_parts[] = {dh, de, ds};
        for (int i = 0; i < 3; i++) {
            json_key(&w, rate_keys[i]);
            if (dl)
                json_number(&w, "%.4f", (double)rate_parts[i] / (double)dl);
            else
                json_null(&w);
        }
        json_key(&w, "misses_per_s");
        json_number(&w, "%.1f", misses);
        json_key(&w, "stores_per_s");
        json_number(&w, "%.1f", stores);
        json_key(&w, "entries");
        json_u64(&w, b->entries);
        json_key(&w, "memory_bytes");
        json_u64(&w, b->memory);
        json_key(&w, "saved_usd");
        json_number(&w, "%.6f", (double)b->cost * 1e-6);
        json_end_object(&w);
        json_end_line(&w);
        fflush(stdout);
        return;
    }
    if (lineno % 20 == 0)
        printf("%10s %6s %6s %6s %10s %10s %10s %10s %12s\n", "lookups/s", "hit%",
               "exact%", "sem%", "misses/s", "stores/s", "entries", "memory", "saved");
    char hit[16], ex[16], se[16], mem[32], saved[32];
    percent(hit, sizeof hit, dh, dl);
    percent(ex, sizeof ex, de, dl);
    percent(se, sizeof se, ds, dl);
    human_bytes(mem, sizeof mem, b->memory);
    snprintf(saved, sizeof saved, "$%.2f", (double)b->cost * 1e-6);
    printf("%10.0f %6s %6s %6s %10.0f %10.0f %10llu %10s %12s\n", lookups, hit, ex, se,
           misses, stores, (unsigned long long)b->entries, mem, saved);
    fflush(stdout);
}

int cli_stat(deja_client *c, const char *ns, long interval_ms, long count, int json) {
    sample prev, cur;
    int rc = take(c, ns, &prev);
    if (rc != 0) return rc;
    for (long n = 0; count <= 0 || n < count; n++) {
        struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        rc = take(c, ns, &cur);
        if (rc != 0) return rc;
        print_line(&prev, &cur, json, (unsigned)n);
        prev = cur;
    }
    return 0;
}
