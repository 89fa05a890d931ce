/* srv-metrics.c: the HTTP listener on --metrics-addr (GET /metrics in the
 * Prometheus text format, /healthz, /readyz) and the latency histograms
 * the server keeps for it.
 *
 * It runs on the main loop. Each HTTP connection reads one request head
 * (srv-http.c bounds it), gets one response and is closed; at most
 * METRICS_MAX_CONNS are open at once and each has METRICS_TIMEOUT_MS to
 * send its request. A scrape reads the cache's counters (a read lock per
 * namespace) and the server's atomic counters; nothing here blocks a
 * worker. Namespaces beyond METRICS_MAX_NAMESPACES are summed into one
 * series labelled namespace="(other)", so a client creating namespaces
 * cannot blow up the scrape or the time-series database. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv-http.h"
#include "srv-private.h"

#define METRICS_MAX_CONNS 64
#define METRICS_TIMEOUT_MS 10000
#define METRICS_MAX_NAMESPACES 100

/* ---- histograms ----------------------------------------------------------- */

static const double hist_bounds[SRV_HIST_BUCKETS] = {
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3,   2.5e-3, 5e-3,
    10e-3, 25e-3, 50e-3,  100e-3, 250e-3, 500e-3, 1.0,    2.5,
};

void srv_hist_add(srv_hist *h, uint64_t ns) {
    double sec = (double)ns * 1e-9;
    unsigned i = 0;
    while (i < SRV_HIST_BUCKETS && sec > hist_bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

uint64_t srv_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the text being built --------------------------------------------------- */

typedef struct text {
    char *data;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...) {
    if (t->failed) return;
    if (!t->data) {
        t->data = malloc(16384);
        if (!t->data) {
            t->failed = 1;
            return;
        }
        t->cap = 16384;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *grown = realloc(t->data, cap);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
}

static void family(text *t, const char *name, const char *type, const char *help) {
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_hist(text *t, const char *name, const char *help, const srv_hist *h) {
    family(t, name, "histogram", help);
    uint64_t cum = 0;
    for (unsigned i = 0; i < SRV_HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        put(t, "%s_bucket{le=\"%g\"} %llu\n", name, hist_bounds[i],
            (unsigned long long)cum);
    }
    cum += atomic_load_explicit(&h->bucket[SRV_HIST_BUCKETS], memory_order_relaxed);
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    put(t, "%s_sum %.9f\n", name,
        (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) * 1e-9);
    put(t, "%s_count %llu\n", name, (unsigned long long)cum);
}

/* ---- per-namespace counters ------------------------------------------------ */

/* The STATS keys exported per namespace, in this order. */
enum {
    K_LOOKUPS,
    K_EXACT,
    K_SEMANTIC,
    K_MISSES,
    K_STORES,
    K_DEDUP,
    K_REJECTED,
    K_EV_TTL,
    K_EV_LFU,
    K_EV_DELETE,
    K_EV_DROP,
    K_ENTRIES,
    K_INDEX_BYTES,
    K_ENTRY_BYTES,
    K_TOKENS,
    K_COST,
    K_UNINDEXED,
    K_COALESCED,
    K_BORDERLINE,
    K_SHADOW_HITS,
    K_SHADOW_EXACT,
    K_SIM_HIT_SUM,
    K_SIM_MISS_SUM,
    K_MEM_VECTORS,
    K_MEM_RERANK,
    K_MEM_GRAPH,
    K_MEM_OTHER,
    K_MEM_STAGING,
    K_MEM_TABLES,
    K_COUNT
};
static const char *const ns_keys[K_COUNT] = {
    "lookups",
    "exact_hits",
    "semantic_hits",
    "misses",
    "stores",
    "dedup_updates",
    "rejected_stores",
    "evicted_ttl",
    "evicted_lfu",
    "evicted_delete",
    "evicted_drop",
    "entries",
    "index_bytes",
    "entry_bytes",
    "tokens_saved",
    "cost_saved_micro_usd",
    "unindexed",
    "coalesced",
    "borderline_hits",
    "shadow_hits",
    "shadow_exact_hits",
    "sim_hit_sum_micro",
    "sim_miss_sum_micro",
    "index_vector_bytes",
    "index_rerank_bytes",
    "index_graph_bytes",
    "index_other_bytes",
    "staging_bytes",
    "entry_table_bytes",
};

/* The similarity histogram's buckets as STATS names them (PROTOCOL.md
 * 5.17): lt50, then 50..99 by hundredths. */
#define SIM_BUCKETS 51

typedef struct ns_row {
    char name[2 * CACHE_MAX_NS_LEN + 1]; /* escaped for a label value */
    uint64_t v[K_COUNT];
    uint64_t sim[2][SIM_BUCKETS]; /* [0] hits, [1] misses */
} ns_row;

/* The bucket of a STATS key sim_<hit|miss>_<lt50|NN>, or -1. */
static int sim_key(const char *key, int *outcome) {
    if (strncmp(key, "sim_hit_", 8) == 0) {
        *outcome = 0;
        key += 8;
    } else if (strncmp(key, "sim_miss_", 9) == 0) {
        *outcome = 1;
        key += 9;
    } else {
        return -1;
    }
    if (strcmp(key, "lt50") == 0) return 0;
    if (key[0] >= '5' && key[0] <= '9' && key[1] >= '0' && key[1] <= '9' && !key[2])
        return 1 + (key[0] - '5') * 10 + (key[1] - '0');
    return -1; /* none, the sums */
}

static void escape_label(char *out, const char *in, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\\' || in[i] == '"') out[o++] = '\\';
        out[o++] = in[i];
    }
    out[o] = 0;
}

static void fill_row(ns_row *row, const cache_stat *stats, uint16_t n, int add) {
    for (uint16_t i = 0; i < n; i++) {
        int outcome, b = sim_key(stats[i].key, &outcome);
        if (b >= 0) {
            row->sim[outcome][b] = (add ? row->sim[outcome][b] : 0) + stats[i].value;
            continue;
        }
        for (int k = 0; k < K_COUNT; k++)
            if (strcmp(stats[i].key, ns_keys[k]) == 0)
                row->v[k] = add ? row->v[k] + stats[i].value : stats[i].value;
    }
}

/* deja_lookup_best_similarity: the histogram of PROTOCOL.md 5.17, by
 * namespace and outcome; a bucket's le is its upper end (0.5 holds the
 * candidates below 0.50, 0.86 those in [0.85, 0.86)), 1 the last. */
static void sim_family(text *t, const ns_row *rows, size_t n) {
    static const char *const outcomes[] = {"hit", "miss"};
    const char *name = "deja_lookup_best_similarity";
    family(t, name, "histogram",
           "Similarity of each lookup's best candidate, by how the index answered "
           "(exact-tier hits and lookups that found no entry excluded).");
    for (size_t i = 0; i < n; i++)
        for (int o = 0; o < 2; o++) {
            uint64_t cum = 0;
            for (int b = 0; b < SIM_BUCKETS; b++) {
                cum += rows[i].sim[o][b];
                put(t, "%s_bucket{namespace=\"%s\",outcome=\"%s\",le=\"%.2f\"} %llu\n",
                    name, rows[i].name, outcomes[o],
                    b == SIM_BUCKETS - 1 ? 1.0 : 0.5 + 0.01 * b, (unsigned long long)cum);
            }
            put(t, "%s_bucket{namespace=\"%s\",outcome=\"%s\",le=\"+Inf\"} %llu\n", name,
                rows[i].name, outcomes[o], (unsigned long long)cum);
            put(t, "%s_sum{namespace=\"%s\",outcome=\"%s\"} %.6f\n", name, rows[i].name,
                outcomes[o],
                (double)rows[i].v[o ? K_SIM_MISS_SUM : K_SIM_HIT_SUM] * 1e-6);
            put(t, "%s_count{namespace=\"%s\",outcome=\"%s\"} %llu\n", name, rows[i].name,
                outcomes[o], (unsigned long long)cum);
        }
}

/* Reads every namespace's counters: at most METRICS_MAX_NAMESPACES rows
 * of their own, the rest summed into a last "(other)" row. */
static ns_row *collect_namespaces(srv_server *s, size_t *nrows) {
    enum { MAX_LIST = 4096 };
    char(*names)[CACHE_MAX_NS_LEN + 1] = malloc(MAX_LIST * sizeof *names);
    uint8_t *lens = malloc(MAX_LIST);
    ns_row *rows = calloc(METRICS_MAX_NAMESPACES + 1, sizeof *rows);
    *nrows = 0;
    if (!names || !lens || !rows) {
        free(names);
        free(lens);
        free(rows);
        return NULL;
    }
    uint16_t n = 0;
    cache_ns_list(s->cache, names, lens, MAX_LIST, &n);
    for (uint16_t i = 0; i < n; i++) {
        cache_stat stats[CACHE_STATS_MAX];
        uint16_t count = 0;
        if (cache_stats(s->cache, (const uint8_t *)names[i], lens[i], stats,
                        CACHE_STATS_MAX, &count) != 0)
            continue; /* dropped since it was listed */
        size_t r = *nrows < METRICS_MAX_NAMESPACES ? (*nrows)++ : METRICS_MAX_NAMESPACES;
        if (r == METRICS_MAX_NAMESPACES) {
            if (!rows[r].name[0]) {
                strcpy(rows[r].name, "(other)");
                (*nrows)++;
            }
            fill_row(&rows[r], stats, count, 1);
        } else {
            escape_label(rows[r].name, names[i], lens[i]);
            fill_row(&rows[r], stats, count, 0);
        }
    }
    free(names);
    free(lens);
    return rows;
}

static void ns_family(text *t, const ns_row *rows, size_t n, const char *name,
                      const char *type, const char *help, int key) {
    family(t, name, type, help);
    for (size_t i = 0; i < n; i++)
        put(t, "%s{namespace=\"%s\"} %llu\n", name, rows[i].name,
            (unsigned long long)rows[i].v[key]);
}

/* One family with a second label whose values map to keys. */
static void ns_family_by(text *t, const ns_row *rows, size_t n, const char *name,
                         const char *type, const char *help, const char *label,
                         const char *const *values, const int *keys, int nvalues) {
    family(t, name, type, help);
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < nvalues; j++)
            put(t, "%s{namespace=\"%s\",%s=\"%s\"} %llu\n", name, rows[i].name, label,
                values[j], (unsigned long long)rows[i].v[keys[j]]);
}

static void render(srv_server *s, text *t) {
    size_t n = 0;
    ns_row *rows = collect_namespaces(s, &n);
    if (!rows) {
        t->failed = 1;
        return;
    }
    ns_family(t, rows, n, "deja_lookups_total", "counter", "LOOKUP requests answered.",
              K_LOOKUPS);
    static const char *const tiers[] = {"exact", "semantic"};
    static const int tier_keys[] = {K_EXACT, K_SEMANTIC};
    ns_family_by(t, rows, n, "deja_hits_total", "counter",
                 "LOOKUPs answered with a hit, by tier (exact prompt or semantic).",
                 "tier", tiers, tier_keys, 2);
    ns_family(t, rows, n, "deja_misses_total", "counter", "LOOKUPs answered with no hit.",
              K_MISSES);
    ns_family(t, rows, n, "deja_stores_total", "counter", "STOREs acknowledged.",
              K_STORES);
    ns_family(t, rows, n, "deja_dedup_updates_total", "counter",
              "STOREs that updated a near-identical live entry instead of adding one.",
              K_DEDUP);
    ns_family(t, rows, n, "deja_rejected_stores_total", "counter",
              "STOREs refused (completion not cacheable).", K_REJECTED);
    static const char *const reasons[] = {"ttl", "lfu", "delete", "drop"};
    static const int reason_keys[] = {K_EV_TTL, K_EV_LFU, K_EV_DELETE, K_EV_DROP};
    ns_family_by(t, rows, n, "deja_evictions_total", "counter",
                 "Entries removed, by reason.", "reason", reasons, reason_keys, 4);
    ns_family(t, rows, n, "deja_entries", "gauge", "Live entries.", K_ENTRIES);
    static const char *const kinds[] = {"index", "entries"};
    static const int kind_keys[] = {K_INDEX_BYTES, K_ENTRY_BYTES};
    ns_family_by(t, rows, n, "deja_memory_bytes", "gauge",
                 "Memory held by the cache, by kind (index structures, entry blobs).",
                 "kind", kinds, kind_keys, 2);
    static const char *const index_kinds[] = {"vectors", "rerank",  "graph",
                                              "other",   "staging", "tables"};
    static const int index_kind_keys[] = {K_MEM_VECTORS, K_MEM_RERANK,  K_MEM_GRAPH,
                                          K_MEM_OTHER,   K_MEM_STAGING, K_MEM_TABLES};
    ns_family_by(t, rows, n, "deja_index_memory_bytes", "gauge",
                 "The index part of deja_memory_bytes by kind: vectors searched (f32 "
                 "rows or int8 codes), f32 copies for the int8 re-rank, graph links, "
                 "the rest of the graph, the staging index, the entry tables.",
                 "kind", index_kinds, index_kind_keys, 6);
    ns_family(t, rows, n, "deja_unindexed_entries", "gauge",
              "Entries waiting for the graph (served by the exact staging index).",
              K_UNINDEXED);
    ns_family(t, rows, n, "deja_tokens_saved_total", "counter",
              "LLM tokens (input + output) of the entries served by hits.", K_TOKENS);
    family(t, "deja_saved_dollars_total", "counter",
           "Cost in US dollars of the LLM calls that hits replaced.");
    for (size_t i = 0; i < n; i++)
        put(t, "deja_saved_dollars_total{namespace=\"%s\"} %.6f\n", rows[i].name,
            (double)rows[i].v[K_COST] * 1e-6);
    ns_family(t, rows, n, "deja_coalesced_total", "counter",
              "LOOKUP_EXs answered with another caller's leased answer (neither hits "
              "nor misses).",
              K_COALESCED);
    ns_family(t, rows, n, "deja_borderline_hits_total", "counter",
              "Hits whose best match was in the namespace's gray band.", K_BORDERLINE);
    static const char *const shadow_tiers[] = {"all", "exact"};
    static const int shadow_keys[] = {K_SHADOW_HITS, K_SHADOW_EXACT};
    ns_family_by(t, rows, n, "deja_shadow_hits_total", "counter",
                 "Lookups a namespace in shadow mode would have served (all tiers, and "
                 "the exact tier's share); they were answered as misses.",
                 "tier", shadow_tiers, shadow_keys, 2);
    sim_family(t, rows, n);
    free(rows);

    srv_lease_stats ls;
    srv_leases_stats(s->leases, &ls);
    family(t, "deja_leases_total", "counter",
           "Lease events (semantic single-flight), by event.");
    const struct {
        const char *event;
        uint64_t v;
    } lease_events[] = {
        {"granted", ls.granted}, {"fulfilled", ls.fulfilled}, {"failed", ls.failed},
        {"expired", ls.expired}, {"promoted", ls.promoted},   {"released", ls.released},
        {"refused", ls.refused},
    };
    for (size_t i = 0; i < sizeof lease_events / sizeof lease_events[0]; i++)
        put(t, "deja_leases_total{event=\"%s\"} %llu\n", lease_events[i].event,
            (unsigned long long)lease_events[i].v);
    family(t, "deja_lease_wait_timeouts_total", "counter",
           "Lookups that stopped waiting on a lease at their own deadline.");
    put(t, "deja_lease_wait_timeouts_total %llu\n", (unsigned long long)ls.wait_timeouts);
    family(t, "deja_leases_active", "gauge", "Leases pending.");
    put(t, "deja_leases_active %llu\n", (unsigned long long)ls.active);
    family(t, "deja_lease_waiters", "gauge", "Lookups waiting on a lease.");
    put(t, "deja_lease_waiters %llu\n", (unsigned long long)ls.waiters);

    family(t, "deja_namespaces", "gauge", "Namespaces.");
    put(t, "deja_namespaces %zu\n", n);
    family(t, "deja_connections", "gauge", "Client connections open.");
    put(t, "deja_connections %llu\n", (unsigned long long)atomic_load(&s->conns_open));
    family(t, "deja_connections_accepted_total", "counter",
           "Client connections accepted.");
    put(t, "deja_connections_accepted_total %llu\n",
        (unsigned long long)atomic_load(&s->conns_total));
    family(t, "deja_connections_refused_total", "counter",
           "Connections refused past --max-connections.");
    put(t, "deja_connections_refused_total %llu\n",
        (unsigned long long)atomic_load(&s->conns_refused));
    family(t, "deja_connections_idle_closed_total", "counter",
           "Connections closed after --idle-timeout.");
    put(t, "deja_connections_idle_closed_total %llu\n",
        (unsigned long long)atomic_load(&s->conns_idle_closed));
    family(t, "deja_requests_total", "counter", "Requests (frames) received.");
    put(t, "deja_requests_total %llu\n", (unsigned long long)atomic_load(&s->requests));
    family(t, "deja_received_bytes_total", "counter", "Bytes read from clients.");
    put(t, "deja_received_bytes_total %llu\n",
        (unsigned long long)atomic_load(&s->bytes_in));
    family(t, "deja_sent_bytes_total", "counter", "Bytes written to clients.");
    put(t, "deja_sent_bytes_total %llu\n",
        (unsigned long long)atomic_load(&s->bytes_out));
    family(t, "deja_client_buffer_bytes", "gauge",
           "Bytes held for clients (requests, unsent replies, uncommitted STOREs).");
    put(t, "deja_client_buffer_bytes %llu\n", (unsigned long long)srv_client_bytes(s));
    family(t, "deja_errors_total", "counter", "Error replies sent, by error name.");
    for (int st = 1; st < SRV_WIRE_STATUSES; st++) {
        uint64_t v = atomic_load(&s->errors[st]);
        if (v)
            put(t, "deja_errors_total{code=\"%s\"} %llu\n", deja_error_name(-st),
                (unsigned long long)v);
    }
    family(t, "deja_auth_failures_total", "counter", "AUTH attempts with a wrong token.");
    put(t, "deja_auth_failures_total %llu\n",
        (unsigned long long)atomic_load(&s->auth_failed));
    family(t, "deja_auth_throttled_total", "counter",
           "AUTH attempts refused unevaluated (too many waiting from one source).");
    put(t, "deja_auth_throttled_total %llu\n",
        (unsigned long long)atomic_load(&s->auth_throttled));

    uint64_t commits, committed, failed, disk, map;
    srv_writer_stats(s->writer, &commits, &committed, &failed);
    store_sizes(s->store, &disk, &map);
    family(t, "deja_commits_total", "counter", "LMDB transactions committed.");
    put(t, "deja_commits_total %llu\n", (unsigned long long)commits);
    family(t, "deja_committed_writes_total", "counter",
           "Writes committed (group commit).");
    put(t, "deja_committed_writes_total %llu\n", (unsigned long long)committed);
    family(t, "deja_failed_writes_total", "counter", "Writes that failed to commit.");
    put(t, "deja_failed_writes_total %llu\n", (unsigned long long)failed);
    family(t, "deja_disk_bytes", "gauge", "Size of the data file.");
    put(t, "deja_disk_bytes %llu\n", (unsigned long long)disk);
    family(t, "deja_map_bytes", "gauge", "Size of the LMDB map.");
    put(t, "deja_map_bytes %llu\n", (unsigned long long)map);
    family(t, "deja_snapshot_age_seconds", "gauge",
           "Seconds since the last graph snapshot was written (or since start).");
    put(t, "deja_snapshot_age_seconds %.3f\n",
        (double)(srv_now_ms() - atomic_load(&s->last_snapshot_ms)) / 1000.0);
    family(t, "deja_graph_inserts_since_snapshot", "gauge",
           "Entries moved into the graphs since the last graph snapshot: what a crash "
           "now would make the next start insert again.");
    put(t, "deja_graph_inserts_since_snapshot %llu\n",
        (unsigned long long)cache_graph_inserts_since_snapshot(s->cache));
    family(t, "deja_uptime_seconds", "gauge", "Seconds since dejad started.");
    put(t, "deja_uptime_seconds %.3f\n", (double)(srv_now_ms() - s->start_ms) / 1000.0);
    family(t, "deja_build_info", "gauge", "Always 1; the labels say which dejad runs.");
    put(t, "deja_build_info{version=\"%s\"} 1\n", DEJA_VERSION);

    render_hist(t, "deja_lookup_duration_seconds",
                "Time to serve a LOOKUP, from its frame to its encoded reply.",
                &s->lookup_hist);
    render_hist(t, "deja_store_ack_duration_seconds",
                "Time from a STORE's frame to its acknowledgement (durable and visible).",
                &s->store_hist);
    render_hist(t, "deja_commit_duration_seconds",
                "Time of one group commit (write transaction and sync).",
                srv_writer_hist(s->writer));
}

/* ---- HTTP connections ------------------------------------------------------ */

typedef struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write;
    uv_shutdown_t shutdown;
    srv_server *srv;
    char in[SRV_HTTP_MAX_HEAD];
    size_t in_len;
    char *out;
    int closing, handles;
} http_conn;

static void http_free(uv_handle_t *h) {
    http_conn *hc = h->data;
    if (--hc->handles) return;
    hc->srv->metrics_conns--;
    free(hc->out);
    free(hc);
}

static void http_close(http_conn *hc) {
    if (hc->closing) return;
    hc->closing = 1;
    uv_close((uv_handle_t *)&hc->timer, http_free);
    uv_close((uv_handle_t *)&hc->tcp, http_free);
}

static void http_close_timer(uv_timer_t *t) {
    http_close(t->data);
}

static void on_http_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* After the response: read and discard until the client closes (at most
 * LINGER_MS), so a client still sending is not reset before it has read
 * the response. */
#define LINGER_MS 2000

static void on_linger_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    http_conn *hc = st->data;
    if (nread < 0)
        http_close(hc);
    else
        hc->in_len = 0;
}

static void on_http_shutdown(uv_shutdown_t *req, int status) {
    if (status < 0) http_close(req->data);
}

static void on_http_written(uv_write_t *w, int status) {
    http_conn *hc = w->data;
    if (status < 0 || hc->closing) {
        http_close(hc);
        return;
    }
    hc->in_len = 0;
    hc->shutdown.data = hc;
    if (uv_shutdown(&hc->shutdown, (uv_stream_t *)&hc->tcp, on_http_shutdown) != 0 ||
        uv_read_start((uv_stream_t *)&hc->tcp, on_http_alloc, on_linger_read) != 0) {
        http_close(hc);
        return;
    }
    uv_timer_start(&hc->timer, http_close_timer, LINGER_MS, 0);
}

static void http_respond(http_conn *hc, int status, const char *type, const char *body,
                         size_t body_len, int head_only) {
    uv_read_stop((uv_stream_t *)&hc->tcp);
    text t = {0};
    put(&t,
        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
        "Connection: close\r\n%s\r\n",
        status, srv_http_reason(status), type, body_len,
        status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (!head_only && body_len) {
        if (!t.failed && t.cap - t.len < body_len + 1) {
            char *grown = realloc(t.data, t.len + body_len + 1);
            if (grown) {
                t.data = grown;
                t.cap = t.len + body_len + 1;
            } else {
                t.failed = 1;
            }
        }
        if (!t.failed) {
            memcpy(t.data + t.len, body, body_len);
            t.len += body_len;
        }
    }
    if (t.failed) {
        free(t.data);
        http_close(hc);
        return;
    }
    hc->out = t.data;
    uv_buf_t b = uv_buf_init(t.data, (unsigned)t.len);
    hc->write.data = hc;
    if (uv_write(&hc->write, (uv_stream_t *)&hc->tcp, &b, 1, on_http_written) != 0)
        http_close(hc);
}

static void put_config_line(void *ctx, const char *key, const char *value) {
    put(ctx, "%s %s\n", key, value);
}

static void http_serve(http_conn *hc, const srv_http_req *req) {
    srv_server *s = hc->srv;
    int head = req->method == SRV_HTTP_HEAD;
    if (strcmp(req->path, "/metrics") == 0) {
        text t = {0};
        render(s, &t);
        if (t.failed) {
            static const char oom[] = "out of memory\n";
            http_respond(hc, 503, "text/plain; charset=utf-8", oom, sizeof oom - 1, head);
        } else {
            http_respond(hc, 200, "text/plain; version=0.0.4; charset=utf-8", t.data,
                         t.len, head);
        }
        free(t.data);
    } else if (strcmp(req->path, "/config") == 0) {
        /* The effective configuration, in config-file form (no token). */
        text t = {0};
        srv_config_each(s->cfg, put_config_line, &t);
        if (t.failed)
            http_respond(hc, 503, "text/plain; charset=utf-8", "", 0, head);
        else
            http_respond(hc, 200, "text/plain; charset=utf-8", t.data, t.len, head);
        free(t.data);
    } else if (strcmp(req->path, "/healthz") == 0) {
        http_respond(hc, 200, "text/plain; charset=utf-8", "ok\n", 3, head);
    } else if (strcmp(req->path, "/readyz") == 0) {
        if (atomic_load(&s->ready))
            http_respond(hc, 200, "text/plain; charset=utf-8", "ready\n", 6, head);
        else
            http_respond(hc, 503, "text/plain; charset=utf-8", "not ready\n", 10, head);
    } else {
        http_respond(hc, 404, "text/plain; charset=utf-8", "not found\n", 10, head);
    }
}

static void on_http_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    http_conn *hc = h->data;
    buf->base = hc->in + hc->in_len;
    buf->len = sizeof hc->in - hc->in_len;
}

static void on_http_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    http_conn *hc = st->data;
    if (nread < 0) {
        http_close(hc);
        return;
    }
    hc->in_len += (size_t)nread;
    srv_http_req req;
    int status = srv_http_parse(hc->in, hc->in_len, &req);
    if (status == 0 && hc->in_len < sizeof hc->in) return;
    if (status == 0) status = 431;
    if (status == 200) {
        http_serve(hc, &req);
    } else {
        const char *reason = srv_http_reason(status);
        http_respond(hc, status, "text/plain; charset=utf-8", reason, strlen(reason), 0);
    }
}

static void on_http_timeout(uv_timer_t *t) {
    http_conn *hc = t->data;
    uv_timer_stop(t);
    if (!hc->out) {
        static const char msg[] = "Request Timeout";
        http_respond(hc, 408, "text/plain; charset=utf-8", msg, sizeof msg - 1, 0);
    } else {
        http_close(hc);
    }
}

static void on_http_connection(uv_stream_t *server, int status) {
    srv_server *s = server->data;
    if (status < 0) return;
    http_conn *hc = calloc(1, sizeof *hc);
    if (!hc) return;
    hc->srv = s;
    hc->handles = 2;
    uv_tcp_init(s->loop, &hc->tcp);
    uv_timer_init(s->loop, &hc->timer);
    hc->tcp.data = hc->timer.data = hc;
    s->metrics_conns++;
    if (uv_accept(server, (uv_stream_t *)&hc->tcp) != 0 ||
        s->metrics_conns > METRICS_MAX_CONNS) {
        http_close(hc);
        return;
    }
    uv_timer_start(&hc->timer, on_http_timeout, METRICS_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&hc->tcp, on_http_alloc, on_http_read);
}

int srv_metrics_listen(srv_server *s) {
    const char *addr = s->cfg->metrics_addr;
    if (!addr || !addr[0]) return 0;
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        srv_log(SRV_LOG_ERROR, "--metrics-addr wants HOST:PORT, got '%s'", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    /* [::1]:9447 */
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    struct sockaddr_storage sa;
    if (*end || port < 0 || port > 65535 ||
        (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&sa) != 0 &&
         uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&sa) != 0)) {
        srv_log(SRV_LOG_ERROR, "--metrics-addr wants HOST:PORT, got '%s'", addr);
        return -1;
    }
    uv_tcp_init(s->loop, &s->metrics);
    s->metrics.data = s;
    s->have_metrics = 1;
    int rc = uv_tcp_bind(&s->metrics, (struct sockaddr *)&sa, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->metrics, 64, on_http_connection);
    if (rc) {
        srv_log(SRV_LOG_ERROR, "cannot listen on %s for metrics: %s", addr,
                uv_strerror(rc));
        return -1;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->metrics, (struct sockaddr *)&bound, &len);
    int bport =
        ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                          : ((struct sockaddr_in *)&bound)->sin_port);
    srv_log(SRV_LOG_INFO, "metrics on http://%s:%d/metrics", host, bport);
    if (s->cfg->metrics_port_file &&
        srv_write_port_file(s->cfg->metrics_port_file, bport)) {
        srv_log(SRV_LOG_ERROR, "cannot write %s", s->cfg->metrics_port_file);
        return -1;
    }
    return 0;
}
