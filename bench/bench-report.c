/* bench-report.c: deja-bench's output -- a readable table, one JSON
 * object (--json) or CSV (--csv) for each mode.
 *
 * A number without its configuration cannot be reproduced or compared,
 * so every format carries the full configuration with the results: the
 * command line, the dataset and seed, every parameter, the CPU, the build
 * type and the kernels. JSON and CSV are written from the same list of
 * named fields, so the two never disagree; in CSV every line repeats the
 * configuration columns and stands alone. JSON goes through the writer
 * deja-cli uses too (common/deja-json.h), so strings are escaped one way
 * in both programs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "deja-json.h"

/* ---- named fields ---------------------------------------------------------*/

typedef struct field {
    const char *key;
    char *val; /* formatted; strings unquoted */
    int is_str;
} field;

typedef struct fields {
    field f[128];
    int n;
} fields;

static void f_put(fields *fs, const char *key, const char *val, int is_str) {
    if (fs->n == (int)(sizeof fs->f / sizeof fs->f[0])) return;
    char *copy = strdup(val ? val : "");
    if (copy == NULL) return;
    fs->f[fs->n++] = (field){key, copy, is_str};
}

static void f_str(fields *fs, const char *key, const char *v) {
    f_put(fs, key, v, 1);
}

static void f_num(fields *fs, const char *key, const char *fmt, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, fmt, v);
    f_put(fs, key, buf, 0);
}

static void f_u64(fields *fs, const char *key, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    f_put(fs, key, buf, 0);
}

static void f_i64(fields *fs, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    f_put(fs, key, buf, 0);
}

static void f_bool(fields *fs, const char *key, int v) {
    f_put(fs, key, v ? "true" : "false", 0);
}

static void fields_free(fields *fs) {
    for (int i = 0; i < fs->n; i++)
        free(fs->f[i].val);
    fs->n = 0;
}

static double ratio(uint64_t a, uint64_t b) {
    return b ? (double)a / (double)b : 0;
}

/* The fields as members of the object w has open. */
static void json_fields(json_writer *w, const fields *fs) {
    for (int i = 0; i < fs->n; i++) {
        json_key(w, fs->f[i].key);
        if (fs->f[i].is_str)
            json_cstring(w, fs->f[i].val);
        else
            json_raw(w, fs->f[i].val);
    }
}

/* {"config":{...} and the members of res (if any), left open for more. */
static void json_begin_report(json_writer *w, const fields *cfg, const fields *res) {
    json_init(w, stdout);
    json_begin_object(w);
    json_key(w, "config");
    json_begin_object(w);
    json_fields(w, cfg);
    json_end_object(w);
    if (res) json_fields(w, res);
}

/* "by_kind":{"KIND":{COUNT_KEY:n,"hit_rate":..,"oracle_hit_rate":..},...} */
static void json_by_kind(json_writer *w, const char *count_key, const uint64_t *count,
                         const uint64_t *hits, const uint64_t *oracle) {
    json_key(w, "by_kind");
    json_begin_object(w);
    for (int k = 0; k < SYNTH_KINDS; k++) {
        json_key(w, synth_kind_name(k));
        json_begin_object(w);
        json_key(w, count_key);
        json_u64(w, count[k]);
        json_key(w, "hit_rate");
        json_number(w, "%.5f", ratio(hits[k], count[k]));
        json_key(w, "oracle_hit_rate");
        json_number(w, "%.5f", ratio(oracle[k], count[k]));
        json_end_object(w);
    }
    json_end_object(w);
}

static void csv_cell(FILE *f, const char *s) {
    if (strpbrk(s, ",\"\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_line(FILE *f, const fields *a, const fields *b, int header) {
    const fields *parts[2] = {a, b};
    int first = 1;
    for (int p = 0; p < 2; p++) {
        for (int i = 0; parts[p] && i < parts[p]->n; i++) {
            if (!first) fputc(',', f);
            first = 0;
            csv_cell(f, header ? parts[p]->f[i].key : parts[p]->f[i].val);
        }
    }
    fputc('\n', f);
}

static double us(const bench_hist *h, double q) {
    return (double)bench_hist_quantile(h, q) / 1000.0;
}

/* ---- configuration ----------------------------------------------------------*/

static void config_fields(const bench_opts *o, const bench_env *env,
                          const bench_oracle *oracle, fields *fs) {
    f_str(fs, "mode", o->mode_name);
    f_str(fs, "started", env->started);
    f_str(fs, "command", env->cmdline);
    f_str(fs, "dataset", env->dataset);
    if (!o->query_path) {
        f_u64(fs, "seed", o->synth.seed);
        f_num(fs, "zipf", "%.3f", o->synth.zipf);
    }
    f_str(fs, "cpu", env->cpu);
    f_i64(fs, "cpus", env->cpus);
    f_str(fs, "version", env->version);
    f_str(fs, "build_type", env->build_type);
    f_str(fs, "sanitize", env->sanitize);
    f_str(fs, "kernels", env->kernels);
    f_num(fs, "prep_s", "%.3f", env->prep_s);
    f_num(fs, "threshold", "%.4f", o->threshold);
    f_u64(fs, "k", o->k);
    if (oracle) {
        f_str(fs, "ground_truth", oracle->source);
        f_num(fs, "ground_truth_s", "%.3f", oracle->seconds);
    }
    if (o->mode == BENCH_INDEX) {
        char list[512] = "";
        size_t len = 0;
        for (int i = 0; i < o->n_ef && len < sizeof list - 12; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%u", i ? "," : "",
                                    o->ef[i]);
        f_u64(fs, "threads", o->threads);
        f_str(fs, "ef_sweep", list);
        f_u64(fs, "M", o->M);
        f_u64(fs, "ef_construction", o->ef_construction);
        f_str(fs, "quant",
              o->quant_f32 && o->quant_int8 ? "f32,int8"
              : o->quant_f32                ? "f32"
                                            : "int8");
        len = 0;
        list[0] = 0;
        for (int i = 0; i < o->n_faiss && len < sizeof list - 2; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ";" : "",
                                    o->faiss[i]);
        f_str(fs, "faiss", list);
        f_bool(fs, "flat", !o->no_flat);
        f_num(fs, "min_seconds", "%.2f", o->min_seconds);
        return;
    }
    f_str(fs, "addr", o->addr);
    f_str(fs, "server", env->server);
    f_str(fs, "spawned", env->spawned);
    f_str(fs, "ns", o->ns);
    f_u64(fs, "connections", o->connections);
    f_u64(fs, "response_bytes", o->response_bytes);
    f_i64(fs, "timeout_ms", o->timeout_ms);
    if (o->mode == BENCH_SERVER) {
        f_u64(fs, "pipeline", o->pipeline);
        f_num(fs, "rate", "%.1f", o->rate);
        f_num(fs, "duration_s", "%.3f", o->count ? 0 : o->duration_s);
        f_u64(fs, "count", o->count);
        f_bool(fs, "no_load", o->no_load);
        f_bool(fs, "no_wait", o->no_wait);
    } else if (o->mode == BENCH_MIXED) {
        f_num(fs, "llm_delay_ms", "%.3f", o->llm_delay_ms);
        f_num(fs, "llm_cost_usd", "%.6f", o->llm_cost_usd);
    } else {
        f_u64(fs, "live_entries", o->synth.n);
        f_u64(fs, "queries", o->synth.nq);
        f_u64(fs, "cycles", o->cycles);
        f_num(fs, "churn_frac", "%.4f", o->churn_frac);
        f_str(fs, "quant", o->quant_int8 ? "int8" : "f32");
    }
}

static void print_config(const bench_opts *o, const bench_env *env,
                         const bench_oracle *oracle) {
    printf("deja-bench %s   %s\n", o->mode_name, env->started);
    printf("  command      %s\n", env->cmdline);
    printf("  dataset      %s\n", env->dataset);
    printf("  machine      %s (%ld cpus); deja %s, build %s, sanitize %s, kernels %s\n",
           env->cpu, env->cpus, env->version, env->build_type, env->sanitize,
           env->kernels);
    if (o->mode != BENCH_INDEX) {
        printf("  server       %s at %s%s%s\n", env->server, o->addr,
               env->spawned[0] ? "; " : "", env->spawned);
        printf("  namespace    %s, responses of %u bytes, timeout %d ms\n", o->ns,
               o->response_bytes, o->timeout_ms);
    }
    printf("  prepared     workload in %.2f s", env->prep_s);
    if (oracle) printf("; ground truth %s in %.2f s", oracle->source, oracle->seconds);
    printf("\n");
}

/* ---- index mode ----------------------------------------------------------------*/

static void index_row_fields(const bench_index_row *w, fields *fs) {
    f_str(fs, "index", w->index);
    f_str(fs, "params", w->params);
    f_u64(fs, "ef", w->ef);
    f_bool(fs, "default_ef", w->default_ef);
    f_bool(fs, "skipped", w->skipped);
    f_str(fs, "note", w->note);
    f_num(fs, "build_s", "%.3f", w->build_s);
    f_num(fs, "bytes_per_entry", "%.1f", w->bytes_per_entry);
    f_u64(fs, "bytes", w->bytes);
    f_u64(fs, "threads", w->threads);
    f_num(fs, "qps", "%.1f", w->qps);
    f_num(fs, "qps_1t", "%.1f", w->qps_1t);
    f_num(fs, "p50_us", "%.1f", w->p50_us);
    f_num(fs, "p99_us", "%.1f", w->p99_us);
    f_num(fs, "mean_us", "%.1f", w->mean_us);
    f_num(fs, "recall_at_1", "%.5f", w->recall_at_1);
    f_num(fs, "recall_at_10", "%.5f", w->recall_at_10);
    f_num(fs, "hit_recall", "%.5f", w->hit_recall);
    f_u64(fs, "oracle_hits", w->oracle_hits);
    f_u64(fs, "false_hits", w->false_hits);
}

void bench_report_index(const bench_opts *o, const bench_env *env,
                        const bench_oracle *oracle, const bench_index_result *r) {
    fields cfg = {0};
    config_fields(o, env, oracle, &cfg);
    if (o->json) {
        json_writer w;
        json_begin_report(&w, &cfg, NULL);
        json_key(&w, "results");
        json_begin_array(&w);
        for (int i = 0; i < r->n_rows; i++) {
            fields row = {0};
            index_row_fields(&r->rows[i], &row);
            json_begin_object(&w);
            json_fields(&w, &row);
            json_end_object(&w);
            fields_free(&row);
        }
        json_end_array(&w);
        json_end_object(&w);
        json_end_line(&w);
    } else if (o->csv) {
        for (int i = 0; i < r->n_rows; i++) {
            fields row = {0};
            index_row_fields(&r->rows[i], &row);
            if (i == 0) csv_line(stdout, &cfg, &row, 1);
            csv_line(stdout, &cfg, &row, 0);
            fields_free(&row);
        }
    } else {
        print_config(o, env, oracle);
        printf("  run          %u queries, k=%u, threshold %.3f, %u threads, each QPS "
               "figure over >= %.1f s\n",
               oracle->nq, oracle->k, o->threshold, o->threads, o->min_seconds);
        printf("\n%-15s %5s %8s %8s %9s %9s %8s %8s %7s %7s %7s %5s\n", "index", "ef",
               "build_s", "B/entry", "QPS_1t", "QPS_all", "p50_us", "p99_us", "R@1",
               "R@10", "hitrec", "false");
        for (int i = 0; i < r->n_rows; i++) {
            const bench_index_row *w = &r->rows[i];
            if (w->skipped) {
                printf("%-15s skipped: %s\n", w->index, w->note);
                continue;
            }
            char ef[16];
            snprintf(ef, sizeof ef, w->ef ? "%u%s" : "-", w->ef,
                     w->default_ef ? "*" : "");
            printf("%-15s %5s %8.1f %8.0f %9.0f %9.0f %8.1f %8.1f %7.4f %7.4f %7.4f "
                   "%5llu\n",
                   w->index, ef, w->build_s, w->bytes_per_entry, w->qps_1t, w->qps,
                   w->p50_us, w->p99_us, w->recall_at_1, w->recall_at_10, w->hit_recall,
                   (unsigned long long)w->false_hits);
        }
        uint64_t oracle_hits = 0;
        for (int i = 0; i < r->n_rows; i++)
            if (!r->rows[i].skipped) oracle_hits = r->rows[i].oracle_hits;
        printf("\n  * = the index's default ef (what dejad searches with). QPS_all = %u "
               "threads. hitrec: of the %llu queries whose exact best is >= %.2f, the "
               "share the index also answers with an entry >= %.2f.\n",
               o->threads, (unsigned long long)oracle_hits, o->threshold, o->threshold);
        for (int i = 0; i < r->n_rows; i++)
            if (!r->rows[i].skipped &&
                (i == 0 || strcmp(r->rows[i].index, r->rows[i - 1].index)))
                printf("  %-15s %s\n", r->rows[i].index, r->rows[i].params);
    }
    fields_free(&cfg);
}

/* ---- server mode ---------------------------------------------------------------*/

static void server_fields(const bench_opts *o, const bench_result *r, fields *fs) {
    f_bool(fs, "open_loop", r->open_loop);
    f_u64(fs, "depth", r->depth);
    f_u64(fs, "flushed", r->flushed);
    f_u64(fs, "stores", r->stores);
    f_u64(fs, "store_errors", r->store_errors);
    f_num(fs, "load_s", "%.3f", r->load_s);
    f_num(fs, "stores_per_s", "%.1f", r->load_s > 0 ? (double)r->stores / r->load_s : 0);
    f_num(fs, "store_p50_us", "%.1f", us(&r->store_hist, 0.5));
    f_num(fs, "store_p99_us", "%.1f", us(&r->store_hist, 0.99));
    f_num(fs, "index_wait_s", "%.3f", r->index_wait_s);
    f_num(fs, "unindexed_at_start", "%lld", (long long)r->unindexed);
    f_num(fs, "indexed_stores_per_s", "%.1f",
          r->load_s + r->index_wait_s > 0
              ? (double)r->stores / (r->load_s + r->index_wait_s)
              : 0);
    f_i64(fs, "server_entries", r->server_entries);
    f_i64(fs, "dedup_updates", r->dedup_updates);
    f_u64(fs, "shared_ids", r->shared_ids);
    f_i64(fs, "index_bytes", r->index_bytes);
    f_i64(fs, "entry_bytes", r->entry_bytes);
    f_u64(fs, "sent", r->sent);
    f_u64(fs, "lookups", r->lookups);
    f_num(fs, "lookup_s", "%.3f", r->lookup_s);
    f_num(fs, "lookups_per_s", "%.1f",
          r->lookup_s > 0 ? (double)r->lookups / r->lookup_s : 0);
    f_num(fs, "target_rate", "%.1f", o->rate);
    f_num(fs, "p50_us", "%.1f", us(&r->lookup_hist, 0.5));
    f_num(fs, "p90_us", "%.1f", us(&r->lookup_hist, 0.9));
    f_num(fs, "p99_us", "%.1f", us(&r->lookup_hist, 0.99));
    f_num(fs, "p999_us", "%.1f", us(&r->lookup_hist, 0.999));
    f_num(fs, "max_us", "%.1f", us(&r->lookup_hist, 1.0));
    f_num(fs, "mean_us", "%.1f", bench_hist_mean(&r->lookup_hist) / 1000.0);
    if (r->open_loop) {
        f_num(fs, "send_lag_p50_us", "%.1f", us(&r->lag_hist, 0.5));
        f_num(fs, "send_lag_p99_us", "%.1f", us(&r->lag_hist, 0.99));
        f_num(fs, "send_lag_max_us", "%.1f", us(&r->lag_hist, 1.0));
        f_str(fs, "sender", r->sender);
        f_num(fs, "sender_spin_us", "%.1f", r->spin_us);
        f_num(fs, "sender_cpu_s", "%.3f", r->sender_cpu_s);
        f_num(fs, "wakeup_late_p50_us", "%.1f", us(&r->wake_hist, 0.5));
        f_num(fs, "wakeup_late_p99_us", "%.1f", us(&r->wake_hist, 0.99));
        f_num(fs, "wakeup_late_max_us", "%.1f", us(&r->wake_hist, 1.0));
        f_u64(fs, "sends_waited_slot", r->sends_waited_slot);
        f_u64(fs, "sends_waited_socket", r->sends_waited_socket);
    }
}

static void server_quality_fields(const bench_result *r, uint64_t judged, fields *fs) {
    double hit = ratio(r->hits, judged), oracle = ratio(r->oracle_hits, judged);
    f_num(fs, "hit_rate", "%.5f", hit);
    f_num(fs, "oracle_hit_rate", "%.5f", oracle);
    f_num(fs, "hit_rate_vs_oracle", "%.5f", oracle > 0 ? hit / oracle : 0);
    f_u64(fs, "judged", judged);
    f_u64(fs, "hits", r->hits);
    f_u64(fs, "oracle_hits", r->oracle_hits);
    f_u64(fs, "false_hits", r->false_hits);
    f_u64(fs, "missed_hits", r->missed_hits);
    f_u64(fs, "not_best", r->not_best);
    f_u64(fs, "sim_mismatches", r->sim_mismatches);
    f_u64(fs, "unknown_ids", r->unknown_ids);
    f_u64(fs, "errors", r->errors);
    f_u64(fs, "timeouts", r->timeouts);
}

void bench_report_server(const bench_opts *o, const bench_env *env,
                         const bench_oracle *oracle, const bench_result *r,
                         const synth_set *s) {
    /* Rates are over the replies that could be judged (not errors). */
    uint64_t judged = r->judged;
    fields cfg = {0}, res = {0};
    config_fields(o, env, oracle, &cfg);
    server_fields(o, r, &res);
    server_quality_fields(r, judged, &res);
    if (o->json) {
        json_writer w;
        json_begin_report(&w, &cfg, &res);
        if (s->kind)
            json_by_kind(&w, "lookups", r->kind_lookups, r->kind_hits, r->kind_oracle);
        json_end_object(&w);
        json_end_line(&w);
    } else if (o->csv) {
        csv_line(stdout, &cfg, &res, 1);
        csv_line(stdout, &cfg, &res, 0);
    } else {
        print_config(o, env, oracle);
        char what[160];
        if (r->open_loop)
            snprintf(what, sizeof what,
                     "open loop at %.0f/s, up to %u in flight per connection, "
                     "sender %s",
                     o->rate, r->depth, r->sender);
        else
            snprintf(what, sizeof what, "closed loop, %u in flight per connection",
                     r->depth);
        printf("  run          %u connections, %s; %s; k=%u threshold=%.3f\n",
               o->connections, what, o->count ? "fixed count" : "fixed duration", o->k,
               o->threshold);
        printf("load\n");
        if (o->no_load)
            printf("  skipped      --no-load: lookups against what the server held\n");
        if (o->no_wait)
            printf("  no wait      --no-wait: lookups began with %lld entries not yet in "
                   "the "
                   "graph\n",
                   (long long)r->unindexed);
        else
            printf("  stores       %llu in %.2f s = %.0f stores/s (p50 %.1f us, p99 %.1f "
                   "us), errors %llu; flushed %llu first\n",
                   (unsigned long long)r->stores, r->load_s,
                   r->load_s > 0 ? (double)r->stores / r->load_s : 0,
                   us(&r->store_hist, 0.5), us(&r->store_hist, 0.99),
                   (unsigned long long)r->store_errors, (unsigned long long)r->flushed);
        if (r->index_wait_s > 0)
            printf("  indexing     the graph caught up %.2f s after the last store: %.0f "
                   "entries/s stored and indexed\n",
                   r->index_wait_s, (double)r->stores / (r->load_s + r->index_wait_s));
        if (r->server_entries >= 0) {
            printf("  server       reports %lld entries in %s",
                   (long long)r->server_entries, o->ns);
            if (r->index_bytes >= 0 && r->server_entries > 0)
                printf(", index %.0f B/entry",
                       (double)r->index_bytes / r->server_entries);
            if (r->entry_bytes >= 0 && r->server_entries > 0)
                printf(", records %.0f B/entry",
                       (double)r->entry_bytes / r->server_entries);
            if (r->dedup_updates > 0)
                printf(", %lld dedup updates", (long long)r->dedup_updates);
            printf("\n");
        }
        printf("lookups\n");
        printf("  throughput   %llu in %.2f s = %.0f lookups/s",
               (unsigned long long)r->lookups, r->lookup_s,
               r->lookup_s > 0 ? (double)r->lookups / r->lookup_s : 0);
        if (r->open_loop) printf(" (target %.0f/s)", o->rate);
        printf("\n");
        printf("  latency us   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean "
               "%.1f%s\n",
               us(&r->lookup_hist, 0.5), us(&r->lookup_hist, 0.9),
               us(&r->lookup_hist, 0.99), us(&r->lookup_hist, 0.999),
               us(&r->lookup_hist, 1.0), bench_hist_mean(&r->lookup_hist) / 1000.0,
               r->open_loop ? "  (from the scheduled time)" : "");
        if (r->open_loop) {
            printf("  send lag us  p50 %.1f  p99 %.1f  max %.1f (sends behind schedule; "
                   "%llu waited for a free slot, %llu for socket space)\n",
                   us(&r->lag_hist, 0.5), us(&r->lag_hist, 0.99), us(&r->lag_hist, 1.0),
                   (unsigned long long)r->sends_waited_slot,
                   (unsigned long long)r->sends_waited_socket);
            printf("  sender       %s: timer wakeups late p50 %.1f  p99 %.1f  max %.1f "
                   "us; polls %.0f us before each due time (mean); %.0f%% of a core\n",
                   r->sender, us(&r->wake_hist, 0.5), us(&r->wake_hist, 0.99),
                   us(&r->wake_hist, 1.0), r->spin_us,
                   r->lookup_s > 0 ? 100 * r->sender_cpu_s / r->lookup_s : 0);
        }
        double hit = ratio(r->hits, judged), orc = ratio(r->oracle_hits, judged);
        printf("  hit rate     %.4f, exact oracle %.4f (%.2f%% of it)\n", hit, orc,
               orc > 0 ? 100 * hit / orc : 0);
        if (s->kind)
            for (int k = 0; k < SYNTH_KINDS; k++)
                printf("    %-11s %.4f (oracle %.4f) of %llu\n", synth_kind_name(k),
                       ratio(r->kind_hits[k], r->kind_lookups[k]),
                       ratio(r->kind_oracle[k], r->kind_lookups[k]),
                       (unsigned long long)r->kind_lookups[k]);
        printf("  answers      false_hits %llu  missed_hits %llu  not_best %llu  "
               "sim_mismatches %llu  unknown_ids %llu\n",
               (unsigned long long)r->false_hits, (unsigned long long)r->missed_hits,
               (unsigned long long)r->not_best, (unsigned long long)r->sim_mismatches,
               (unsigned long long)r->unknown_ids);
        printf("  errors       %llu  timeouts %llu\n", (unsigned long long)r->errors,
               (unsigned long long)r->timeouts);
    }
    fields_free(&cfg);
    fields_free(&res);
}

/* ---- mixed mode ------------------------------------------------------------------*/

static void mixed_fields(const bench_mixed_result *r, fields *fs) {
    double saved = r->cost_without - r->cost_spent;
    f_u64(fs, "flushed", r->flushed);
    f_u64(fs, "requests", r->requests);
    f_num(fs, "wall_s", "%.3f", r->wall_s);
    f_num(fs, "requests_per_s", "%.1f", r->wall_s > 0 ? r->requests / r->wall_s : 0);
    f_u64(fs, "hits", r->hits);
    f_num(fs, "hit_rate", "%.5f", ratio(r->hits, r->requests));
    f_num(fs, "oracle_hit_rate", "%.5f", ratio(r->oracle_hits, r->requests));
    f_num(fs, "as_run_oracle_hit_rate", "%.5f", ratio(r->as_run_hits, r->requests));
    f_u64(fs, "llm_calls", r->llm_calls);
    f_u64(fs, "llm_calls_avoided", r->requests - r->llm_calls);
    f_num(fs, "cost_usd", "%.4f", r->cost_spent);
    f_num(fs, "cost_without_cache_usd", "%.4f", r->cost_without);
    f_num(fs, "saved_usd", "%.4f", saved);
    f_num(fs, "saved_share", "%.5f", r->cost_without > 0 ? saved / r->cost_without : 0);
    f_num(fs, "llm_wait_s", "%.3f", r->llm_time_s);
    f_num(fs, "llm_wait_without_cache_s", "%.3f", r->llm_time_without_s);
    f_num(fs, "lookup_p50_us", "%.1f", us(&r->lookup_hist, 0.5));
    f_num(fs, "lookup_p99_us", "%.1f", us(&r->lookup_hist, 0.99));
    f_num(fs, "store_p50_us", "%.1f", us(&r->store_hist, 0.5));
    f_num(fs, "store_p99_us", "%.1f", us(&r->store_hist, 0.99));
    f_num(fs, "request_p50_us", "%.1f", us(&r->request_hist, 0.5));
    f_num(fs, "request_p99_us", "%.1f", us(&r->request_hist, 0.99));
    f_num(fs, "request_mean_us", "%.1f", bench_hist_mean(&r->request_hist) / 1000.0);
    f_u64(fs, "stores", r->stores);
    f_u64(fs, "store_errors", r->store_errors);
    f_u64(fs, "false_hits", r->false_hits);
    f_u64(fs, "missed_hits", r->missed_hits);
    f_u64(fs, "pending_misses", r->pending_misses);
    f_u64(fs, "sim_mismatches", r->sim_mismatches);
    f_u64(fs, "unknown_ids", r->unknown_ids);
    f_u64(fs, "errors", r->errors);
    f_u64(fs, "timeouts", r->timeouts);
}

void bench_report_mixed(const bench_opts *o, const bench_env *env,
                        const bench_mixed_result *r, const synth_set *s) {
    fields cfg = {0}, res = {0};
    config_fields(o, env, NULL, &cfg);
    mixed_fields(r, &res);
    if (o->json) {
        json_writer w;
        json_begin_report(&w, &cfg, &res);
        json_key(&w, "intervals");
        json_begin_array(&w);
        for (uint32_t i = 0; i < r->intervals; i++) {
            json_begin_object(&w);
            json_key(&w, "requests");
            json_u64(&w, r->int_requests[i]);
            json_key(&w, "hit_rate");
            json_number(&w, "%.5f", ratio(r->int_hits[i], r->int_requests[i]));
            json_key(&w, "oracle_hit_rate");
            json_number(&w, "%.5f", ratio(r->int_oracle[i], r->int_requests[i]));
            json_end_object(&w);
        }
        json_end_array(&w);
        if (s->kind)
            json_by_kind(&w, "requests", r->kind_requests, r->kind_hits, r->kind_oracle);
        json_end_object(&w);
        json_end_line(&w);
        fields_free(&cfg);
        fields_free(&res);
        return;
    }
    if (o->csv) {
        char series[8 * BENCH_MAX_INTERVALS + 1] = "";
        size_t len = 0;
        for (uint32_t i = 0; i < r->intervals && len < sizeof series - 8; i++)
            len +=
                (size_t)snprintf(series + len, sizeof series - len, "%s%.4f",
                                 i ? ";" : "", ratio(r->int_hits[i], r->int_requests[i]));
        f_str(&res, "hit_rate_by_interval", series);
        csv_line(stdout, &cfg, &res, 1);
        csv_line(stdout, &cfg, &res, 0);
        fields_free(&cfg);
        fields_free(&res);
        return;
    }
    print_config(o, env, NULL);
    printf("  run          %u users, LLM call %.0f ms and $%g, %u requests; the cache "
           "starts empty (flushed %llu)\n",
           o->connections, o->llm_delay_ms, o->llm_cost_usd, s->nq,
           (unsigned long long)r->flushed);
    printf("cache\n");
    printf("  hit rate     %.4f; oracle %.4f (one request at a time, exact search); "
           "exact over what had been stored before each lookup %.4f\n",
           ratio(r->hits, r->requests), ratio(r->oracle_hits, r->requests),
           ratio(r->as_run_hits, r->requests));
    if (s->kind)
        for (int k = 0; k < SYNTH_KINDS; k++)
            printf("    %-11s %.4f (oracle %.4f) of %llu\n", synth_kind_name(k),
                   ratio(r->kind_hits[k], r->kind_requests[k]),
                   ratio(r->kind_oracle[k], r->kind_requests[k]),
                   (unsigned long long)r->kind_requests[k]);
    printf("  over time    ");
    for (uint32_t i = 0; i < r->intervals; i++)
        printf("%s%.2f", i ? " " : "", ratio(r->int_hits[i], r->int_requests[i]));
    printf("  (hit rate per 1/%u of the stream)\n", r->intervals);
    printf("  oracle       ");
    for (uint32_t i = 0; i < r->intervals; i++)
        printf("%s%.2f", i ? " " : "", ratio(r->int_oracle[i], r->int_requests[i]));
    printf("\n");
    printf("  misses       %llu while the matching answer was still being generated, "
           "%llu search misses\n",
           (unsigned long long)r->pending_misses, (unsigned long long)r->missed_hits);
    printf("savings\n");
    printf("  LLM calls    %llu made, %llu avoided (%.1f%%)\n",
           (unsigned long long)r->llm_calls,
           (unsigned long long)(r->requests - r->llm_calls),
           100 * ratio(r->requests - r->llm_calls, r->requests));
    printf("  cost         $%.2f instead of $%.2f: saved $%.2f (%.1f%%)\n", r->cost_spent,
           r->cost_without, r->cost_without - r->cost_spent,
           r->cost_without > 0 ? 100 * (r->cost_without - r->cost_spent) / r->cost_without
                               : 0);
    printf("  LLM waiting  %.1f s instead of %.1f s (summed over requests)\n",
           r->llm_time_s, r->llm_time_without_s);
    printf("latency\n");
    printf("  request      p50 %.1f us  p99 %.1f us  mean %.1f us (lookup + LLM on a "
           "miss + store)\n",
           us(&r->request_hist, 0.5), us(&r->request_hist, 0.99),
           bench_hist_mean(&r->request_hist) / 1000.0);
    printf("  lookup       p50 %.1f us  p99 %.1f us;  store p50 %.1f us  p99 %.1f us\n",
           us(&r->lookup_hist, 0.5), us(&r->lookup_hist, 0.99), us(&r->store_hist, 0.5),
           us(&r->store_hist, 0.99));
    printf("  wall         %.2f s, %.0f requests/s\n", r->wall_s,
           r->wall_s > 0 ? r->requests / r->wall_s : 0);
    printf("answers\n");
    printf("  false_hits %llu  sim_mismatches %llu  unknown_ids %llu  stores %llu  "
           "store_errors %llu  errors %llu  timeouts %llu\n",
           (unsigned long long)r->false_hits, (unsigned long long)r->sim_mismatches,
           (unsigned long long)r->unknown_ids, (unsigned long long)r->stores,
           (unsigned long long)r->store_errors, (unsigned long long)r->errors,
           (unsigned long long)r->timeouts);
    fields_free(&cfg);
    fields_free(&res);
}

/* ---- churn mode ------------------------------------------------------------------*/

static double mib(int64_t bytes) {
    return bytes >= 0 ? (double)bytes / (1024.0 * 1024.0) : -1;
}

static void churn_point_fields(const bench_churn_point *p, const char *phase,
                               fields *fs) {
    f_str(fs, "phase", phase);
    f_u64(fs, "cycle", p->cycle);
    f_u64(fs, "deleted", p->deleted);
    f_u64(fs, "stored", p->stored);
    f_num(fs, "delete_s", "%.3f", p->delete_s);
    f_num(fs, "deletes_per_s", "%.1f", p->delete_s > 0 ? p->deleted / p->delete_s : 0);
    f_num(fs, "store_s", "%.3f", p->store_s);
    f_num(fs, "stores_per_s", "%.1f", p->store_s > 0 ? p->stored / p->store_s : 0);
    f_num(fs, "index_wait_s", "%.3f", p->index_wait_s);
    f_num(fs, "oracle_s", "%.3f", p->oracle_s);
    f_num(fs, "lookup_s", "%.3f", p->lookup_s);
    f_u64(fs, "queries", p->queries);
    f_num(fs, "recall", "%.5f", p->recall);
    f_num(fs, "hit_rate", "%.5f", ratio(p->hits, p->queries));
    f_num(fs, "oracle_hit_rate", "%.5f", ratio(p->oracle_hits, p->queries));
    f_u64(fs, "short_threshold", p->short_threshold);
    f_u64(fs, "short_all", p->short_all);
    f_u64(fs, "false_hits", p->false_hits);
    f_u64(fs, "unknown_ids", p->unknown_ids);
    f_u64(fs, "sim_mismatches", p->sim_mismatches);
    f_u64(fs, "errors", p->errors);
    f_i64(fs, "server_entries", p->server_entries);
    f_i64(fs, "memory_bytes", p->memory_bytes);
    f_i64(fs, "index_bytes", p->index_bytes);
    f_i64(fs, "entry_bytes", p->entry_bytes);
    f_i64(fs, "index_vector_bytes", p->vector_bytes);
    f_i64(fs, "index_graph_bytes", p->graph_bytes);
    f_i64(fs, "entry_table_bytes", p->table_bytes);
    f_i64(fs, "rss_bytes", p->rss_bytes);
    f_i64(fs, "rss_anon_bytes", p->rss_anon_bytes);
    f_i64(fs, "disk_bytes", p->disk_bytes);
}

static void churn_summary_fields(const bench_churn_result *r, fields *fs) {
    f_num(fs, "fresh_recall", "%.5f", r->fresh.recall);
    f_num(fs, "fresh_hit_rate", "%.5f", ratio(r->fresh.hits, r->fresh.queries));
    f_num(fs, "max_recall_diff", "%.5f", r->max_recall_diff);
    f_num(fs, "max_hit_rate_diff", "%.5f", r->max_hit_diff);
    f_num(fs, "max_hit_gap_diff", "%.5f", r->max_gap_diff);
    f_num(fs, "final_recall_diff", "%.5f", r->final_recall_diff);
    f_num(fs, "final_hit_rate_diff", "%.5f", r->final_hit_diff);
    f_num(fs, "memory_drift_max", "%.5f", r->mem_drift_max);
    f_num(fs, "memory_drift_min", "%.5f", r->mem_drift_min);
    f_num(fs, "rss_drift_max", "%.5f", r->rss_drift_max);
    f_num(fs, "rss_drift_min", "%.5f", r->rss_drift_min);
    f_num(fs, "rss_anon_drift_max", "%.5f", r->anon_drift_max);
    f_num(fs, "rss_anon_drift_min", "%.5f", r->anon_drift_min);
    f_u64(fs, "short_lookups", r->short_total);
    f_u64(fs, "false_hits_total", r->false_total);
    f_u64(fs, "errors_total", r->errors_total);
    f_bool(fs, "ok_recall", r->ok_recall);
    f_bool(fs, "ok_hit_rate", r->ok_hit);
    f_bool(fs, "ok_memory", r->ok_memory);
    f_bool(fs, "ok_rss", r->ok_rss);
    f_bool(fs, "ok_short_lookups", r->ok_short);
}

static void churn_row(const char *label, const bench_churn_point *p) {
    printf("%-6s %7u %7u %7.0f %7.0f %6.1f %8.4f %7.4f %7.4f %7.4f %6llu %5llu %5llu "
           "%8.1f %7.1f %7.1f %7.1f %8.1f %8.1f %8.1f\n",
           label, p->deleted, p->stored, p->delete_s > 0 ? p->deleted / p->delete_s : 0,
           p->store_s > 0 ? p->stored / p->store_s : 0, p->index_wait_s, p->recall,
           ratio(p->hits, p->queries), ratio(p->oracle_hits, p->queries),
           ratio(p->oracle_hits, p->queries) - ratio(p->hits, p->queries),
           (unsigned long long)p->short_threshold, (unsigned long long)p->short_all,
           (unsigned long long)p->false_hits, mib(p->memory_bytes), mib(p->vector_bytes),
           mib(p->graph_bytes), mib(p->table_bytes), mib(p->rss_bytes),
           mib(p->rss_anon_bytes), mib(p->disk_bytes));
}

static const char *met(int ok) {
    return ok ? "met" : "MISSED";
}

void bench_report_churn(const bench_opts *o, const bench_env *env,
                        const bench_churn_result *r) {
    fields cfg = {0}, sum = {0};
    config_fields(o, env, NULL, &cfg);
    churn_summary_fields(r, &sum);
    if (o->json) {
        json_writer w;
        json_begin_report(&w, &cfg, &sum);
        json_key(&w, "cycles");
        json_begin_array(&w);
        for (uint32_t i = 0; i < r->n_points; i++) {
            fields row = {0};
            churn_point_fields(&r->points[i], "cycle", &row);
            json_begin_object(&w);
            json_fields(&w, &row);
            json_end_object(&w);
            fields_free(&row);
        }
        json_end_array(&w);
        fields row = {0};
        churn_point_fields(&r->fresh, "fresh", &row);
        json_key(&w, "fresh");
        json_begin_object(&w);
        json_fields(&w, &row);
        json_end_object(&w);
        fields_free(&row);
        json_end_object(&w);
        json_end_line(&w);
    } else if (o->csv) {
        /* One line per point, each with the configuration and the summary. */
        for (uint32_t i = 0; i <= r->n_points; i++) {
            fields row = {0};
            if (i < r->n_points)
                churn_point_fields(&r->points[i], "cycle", &row);
            else
                churn_point_fields(&r->fresh, "fresh", &row);
            for (int j = 0; j < sum.n; j++)
                f_put(&row, sum.f[j].key, sum.f[j].val, sum.f[j].is_str);
            if (i == 0) csv_line(stdout, &cfg, &row, 1);
            csv_line(stdout, &cfg, &row, 0);
            fields_free(&row);
        }
    } else {
        print_config(o, env, NULL);
        printf("  run          %u live entries, %u cycles of deleting %.0f%% and storing "
               "as many new; %u connections; %u queries per measurement, k=%u, "
               "threshold %.3f; %s codes\n",
               o->synth.n, o->cycles, 100 * o->churn_frac, o->connections, o->synth.nq,
               o->k, o->threshold, o->quant_int8 ? "int8" : "f32");
        printf("\n%-6s %7s %7s %7s %7s %6s %8s %7s %7s %7s %6s %5s %5s %8s %7s %7s %7s "
               "%8s %8s %8s\n",
               "cycle", "deleted", "stored", "del/s", "store/s", "idx_s", "recall", "hit",
               "oracle", "gap", "shortT", "short", "false", "mem_MiB", "vec_MiB", "graph",
               "tables", "RSS_MiB", "anon_MiB", "disk_MiB");
        for (uint32_t i = 0; i < r->n_points; i++) {
            char label[16];
            snprintf(label, sizeof label, "%u", r->points[i].cycle);
            churn_row(label, &r->points[i]);
        }
        churn_row("fresh", &r->fresh);
        printf("\n  recall = recall@%u of lookups at threshold -1; hit/oracle = hit rate "
               "at %.2f and the exact one; gap = oracle - hit; shortT / short = lookups "
               "with fewer hits than live entries >= %.2f / than min(k, live); mem = "
               "STATS index + entry bytes; disk = the data file\n",
               o->k, o->threshold, o->threshold);
        printf("summary (targets of issue #14)\n");
        printf("  recall       max |recall - fresh %.4f| = %.4f (target <= 0.02): %s; "
               "last cycle %.4f\n",
               r->fresh.recall, r->max_recall_diff, met(r->ok_recall),
               r->final_recall_diff);
        printf("  hit rate     max |gap - fresh gap| = %.4f, last cycle |hit - fresh "
               "hit| = %.4f (same entries and queries) (target <= 0.02): %s; raw max "
               "|hit - fresh %.4f| = %.4f over cycles with other queries\n",
               r->max_gap_diff, r->final_hit_diff, met(r->ok_hit),
               ratio(r->fresh.hits, r->fresh.queries), r->max_hit_diff);
        printf("  memory       STATS drift vs cycle 0 %+.2f%% .. %+.2f%% (target within "
               "5%%): %s\n",
               100 * r->mem_drift_min, 100 * r->mem_drift_max, met(r->ok_memory));
        if (r->have_rss)
            printf("  RSS          RssAnon drift vs cycle 0 %+.2f%% .. %+.2f%% (target "
                   "within 5%%): %s; VmRSS %+.2f%% .. %+.2f%% (with the data file's "
                   "mapped pages)\n",
                   100 * r->anon_drift_min, 100 * r->anon_drift_max, met(r->ok_rss),
                   100 * r->rss_drift_min, 100 * r->rss_drift_max);
        else
            printf("  RSS          unknown (the server was not spawned)\n");
        printf("  short        %llu short lookups (target 0): %s; false hits %llu, "
               "errors %llu\n",
               (unsigned long long)r->short_total, met(r->ok_short),
               (unsigned long long)r->false_total, (unsigned long long)r->errors_total);
    }
    fields_free(&cfg);
    fields_free(&sum);
}
