/* cache-ns.c: the namespace table -- creation (explicit, or implicit on a
 * first STORE with the server's defaults), configuration, drop, list, and
 * the counters STATS and NS_INFO report.
 *
 * The table is a small array under a rwlock: namespaces are few (one per
 * embedding model, LLM, system prompt and sampling parameters). A dropped
 * namespace is emptied and moved to a graveyard freed by cache_destroy, so
 * a pointer found under the table lock stays valid after it is released. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache-private.h"

#define DEFAULT_DEDUP 0.99f

static cache_ns *find_locked(cache *c, const uint8_t *name, uint8_t len) {
    for (size_t i = 0; i < c->ns_count; i++) {
        cache_ns *ns = c->ns[i];
        if (ns->name_len == len && memcmp(ns->name, name, len) == 0) return ns;
    }
    return NULL;
}

cache_ns *cache_find_ns(cache *c, const uint8_t *name, uint8_t len) {
    pthread_rwlock_rdlock(&c->ns_lock);
    cache_ns *ns = find_locked(c, name, len);
    pthread_rwlock_unlock(&c->ns_lock);
    return ns;
}

void cache_ns_free(cache_ns *ns) {
    size_t pos = 0;
    uint64_t id;
    void *val;
    while (u64map_next(&ns->entries, &pos, &id, &val)) cache_entry_unref(val);
    u64map_close(&ns->entries);
    u64map_close(&ns->exact);
    u64map_close(&ns->snap_labels);
    idx_destroy(ns->main);
    idx_destroy(ns->fresh);
    pthread_rwlock_destroy(&ns->lock);
    free(ns);
}

void cache_ns_index_config(const cache *c, const cache_ns *ns, idx_config *out) {
    const proto_ns_config *cfg = &ns->config;
    static const enum idx_kind kinds[] = {0, IDX_KIND_FLAT, IDX_KIND_HNSW, IDX_KIND_FAISS};
    enum idx_kind kind = kinds[cfg->index_kind <= 3 ? cfg->index_kind : 0];
    *out = (idx_config){
        .kind = kind ? kind : (c->cfg.index_kind ? c->cfg.index_kind : IDX_KIND_HNSW),
        .dim = cfg->dim,
        .M = cfg->hnsw_m ? cfg->hnsw_m : c->cfg.hnsw_m,
        .ef_construction = cfg->hnsw_ef_construction ? cfg->hnsw_ef_construction
                                                     : c->cfg.hnsw_ef_construction,
        .ef_search = cfg->hnsw_ef_search ? cfg->hnsw_ef_search : c->cfg.hnsw_ef_search,
        .quant = cfg->index_kind ? (enum idx_quant)cfg->quant : c->cfg.quant,
        .faiss_factory = cfg->faiss_factory_len ? ns->faiss_factory : NULL,
    };
}

/* Builds a namespace from its requested configuration, resolving every 0
 * to the server's default. */
static int ns_new(cache *c, const uint8_t *name, uint8_t len, const proto_ns_config *cfg,
                  cache_ns **out, char *msg, size_t msg_cap) {
    cache_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return DEJA_ERR_NOMEM;
    ns->config = *cfg;
    if (cfg->faiss_factory_len) memcpy(ns->faiss_factory, cfg->faiss_factory,
                                       cfg->faiss_factory_len);
    ns->config.faiss_factory = (const uint8_t *)ns->faiss_factory;
    ns->dim = cfg->dim;
    ns->min_threshold = cfg->min_threshold != 0 ? cfg->min_threshold
                                                : c->cfg.min_threshold;
    ns->dedup = (cfg->flags & PROTO_NS_NO_DEDUP) ? 0
                : cfg->dedup != 0                 ? cfg->dedup
                                                  : c->cfg.dedup;
    ns->default_ttl_s = cfg->default_ttl_s ? cfg->default_ttl_s : c->cfg.default_ttl_s;

    idx_config icfg;
    cache_ns_index_config(c, ns, &icfg);
    int rc = idx_create_msg(&icfg, &ns->main, msg, msg_cap);
    if (rc) {
        free(ns);
        return rc;
    }
    /* An index that synchronises its own inserts is fed in the background
     * through an exact staging index; one that does not takes inserts
     * directly under the namespace lock. */
    idx_config fcfg = {.kind = IDX_KIND_FLAT, .dim = cfg->dim};
    if (idx_concurrent_writes(ns->main) && idx_create(&fcfg, &ns->fresh) != 0) {
        idx_destroy(ns->main);
        free(ns);
        return DEJA_ERR_NOMEM;
    }
    memcpy(ns->name, name, len);
    ns->name_len = len;
    ns->created_ms = cache_now(c);
    pthread_rwlock_init(&ns->lock, NULL);
    u64map_init(&ns->entries);
    u64map_init(&ns->exact);
    u64map_init(&ns->snap_labels);
    *out = ns;
    return 0;
}

static int table_add_locked(cache *c, cache_ns *ns) {
    if (c->ns_count == c->ns_cap) {
        size_t cap = c->ns_cap ? c->ns_cap * 2 : 8;
        cache_ns **grown = realloc(c->ns, cap * sizeof *grown);
        if (!grown) return DEJA_ERR_NOMEM;
        c->ns = grown;
        c->ns_cap = cap;
    }
    c->ns[c->ns_count++] = ns;
    return 0;
}

int cache_get_or_create_ns(cache *c, const uint8_t *name, uint8_t len, uint32_t dim,
                           const proto_ns_config *cfg, uint32_t ns_id, int persisted,
                           cache_ns **out) {
    cache_ns *ns = cache_find_ns(c, name, len);
    if (ns) {
        *out = ns;
        return 0;
    }
    proto_ns_config defaults = {.dim = (uint16_t)dim};
    char msg[160];
    cache_ns *fresh_ns;
    int rc = ns_new(c, name, len, cfg ? cfg : &defaults, &fresh_ns, msg, sizeof msg);
    if (rc) return rc;
    pthread_rwlock_wrlock(&c->ns_lock);
    ns = find_locked(c, name, len); /* another thread may have won */
    if (!ns) {
        fresh_ns->ns_id = ns_id ? ns_id : (uint32_t)atomic_fetch_add(&c->next_ns_id, 1);
        atomic_init(&fresh_ns->persisted, persisted);
        rc = table_add_locked(c, fresh_ns);
        if (rc == 0) ns = fresh_ns;
    }
    pthread_rwlock_unlock(&c->ns_lock);
    if (ns != fresh_ns) cache_ns_free(fresh_ns);
    if (rc) return rc;
    *out = ns;
    return 0;
}

void cache_ns_record(const cache_ns *ns, store_ns_rec *rec) {
    memset(rec, 0, offsetof(store_ns_rec, config));
    rec->ns_id = ns->ns_id;
    rec->dim = ns->dim;
    rec->created_ms = ns->created_ms;
    rec->name_len = ns->name_len;
    memcpy(rec->name, ns->name, ns->name_len + 1u);
    rec->config_len = (uint16_t)proto_ns_config_write(rec->config, &ns->config);
}

int cache_load_ns(cache *c, const store_ns_rec *rec) {
    proto_ns_config cfg = {.dim = (uint16_t)rec->dim};
    if (rec->config_len && proto_ns_config_read(rec->config, rec->config_len, &cfg) != 0)
        return DEJA_ERR_BAD_REQUEST;
    if (cfg.dim != rec->dim) return DEJA_ERR_BAD_REQUEST;
    cache_ns *ns;
    int rc = cache_get_or_create_ns(c, (const uint8_t *)rec->name, rec->name_len,
                                    rec->dim, &cfg, rec->ns_id, 1, &ns);
    if (rc) return rc;
    ns->created_ms = rec->created_ms;
    return ns->ns_id == rec->ns_id && ns->dim == rec->dim ? 0 : DEJA_ERR_INTERNAL;
}

/* Two configurations are the same when they encode to the same bytes. */
static int same_config(const proto_ns_config *a, const proto_ns_config *b) {
    uint8_t ea[STORE_NS_CONFIG_MAX], eb[STORE_NS_CONFIG_MAX];
    size_t la = proto_ns_config_write(ea, a), lb = proto_ns_config_write(eb, b);
    return la == lb && memcmp(ea, eb, la) == 0;
}

int cache_ns_create(cache *c, const uint8_t *name, uint8_t len,
                    const proto_ns_config *cfg, store_ns_rec *rec, int *created,
                    char *msg, size_t msg_cap) {
    *created = 0;
    cache_ns *ns = cache_find_ns(c, name, len);
    if (ns) return same_config(&ns->config, cfg) ? 0 : DEJA_ERR_EXISTS;
    cache_ns *fresh_ns;
    int rc = ns_new(c, name, len, cfg, &fresh_ns, msg, msg_cap);
    if (rc) return rc;
    pthread_rwlock_wrlock(&c->ns_lock);
    ns = find_locked(c, name, len);
    if (!ns) {
        fresh_ns->ns_id = (uint32_t)atomic_fetch_add(&c->next_ns_id, 1);
        atomic_init(&fresh_ns->persisted, 0);
        rc = table_add_locked(c, fresh_ns);
    }
    pthread_rwlock_unlock(&c->ns_lock);
    if (ns || rc) {
        cache_ns_free(fresh_ns);
        if (rc) return rc;
        return same_config(&ns->config, cfg) ? 0 : DEJA_ERR_EXISTS;
    }
    cache_ns_record(fresh_ns, rec);
    *created = 1;
    return 0;
}

void cache_ns_persisted(cache *c, uint32_t ns_id) {
    pthread_rwlock_rdlock(&c->ns_lock);
    for (size_t i = 0; i < c->ns_count; i++)
        if (c->ns[i]->ns_id == ns_id) atomic_store(&c->ns[i]->persisted, 1);
    pthread_rwlock_unlock(&c->ns_lock);
}

int cache_ns_drop(cache *c, const uint8_t *name, uint8_t len, uint64_t *removed,
                  store_ns_rec *rec) {
    *removed = 0;
    pthread_rwlock_wrlock(&c->ns_lock);
    cache_ns *ns = find_locked(c, name, len);
    int rc = ns ? 0 : DEJA_ERR_NOT_FOUND;
    if (ns && c->graveyard_count == c->graveyard_cap) {
        size_t cap = c->graveyard_cap ? c->graveyard_cap * 2 : 4;
        cache_ns **grown = realloc(c->graveyard, cap * sizeof *grown);
        if (grown) {
            c->graveyard = grown;
            c->graveyard_cap = cap;
        } else {
            rc = DEJA_ERR_NOMEM;
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < c->ns_count; i++)
            if (c->ns[i] == ns) c->ns[i] = c->ns[--c->ns_count];
        c->graveyard[c->graveyard_count++] = ns;
        c->sweep_ns = 0;
    }
    pthread_rwlock_unlock(&c->ns_lock);
    if (rc) return rc;

    cache_ns_record(ns, rec);
    pthread_rwlock_wrlock(&ns->lock);
    ns->dropped = 1;
    u64map old = ns->entries;
    u64map_init(&ns->entries);
    u64map_close(&ns->exact);
    idx_clear(ns->main);
    if (ns->fresh) idx_clear(ns->fresh);
    ns->entry_bytes = 0;
    atomic_fetch_sub(&c->entries_total, old.count);
    atomic_fetch_add(&c->changes, 1);
    ns->index_share = 0;
    cache_ns_charge_locked(c, ns, 0);
    pthread_rwlock_unlock(&ns->lock);
    size_t pos = 0;
    uint64_t id;
    void *val;
    while (u64map_next(&old, &pos, &id, &val)) cache_entry_unref(val);
    *removed = old.count;
    u64map_close(&old);
    atomic_fetch_add(&c->evicted[CACHE_EVICT_DROP], *removed);
    return 0;
}

int cache_ns_list(cache *c, char (*names)[PROTO_MAX_NS_LEN + 1], uint8_t *lens,
                  uint16_t max, uint16_t *count) {
    pthread_rwlock_rdlock(&c->ns_lock);
    uint16_t n = 0;
    for (size_t i = 0; i < c->ns_count && n < max; i++, n++) {
        memcpy(names[n], c->ns[i]->name, c->ns[i]->name_len + 1u);
        lens[n] = c->ns[i]->name_len;
    }
    pthread_rwlock_unlock(&c->ns_lock);
    *count = n;
    return 0;
}

/* ---- counters ----------------------------------------------------------------*/

typedef struct totals {
    uint64_t entries, lookups, exact_hits, semantic_hits, misses, stores;
    uint64_t dedup_updates, rejected, tokens_saved, cost_saved, entry_hits;
    uint64_t evicted[CACHE_EVICT_REASONS];
    uint64_t index_bytes, entry_bytes, unindexed, index_entries, charged;
} totals;

static void add_totals(cache_ns *ns, totals *t) {
    pthread_rwlock_rdlock(&ns->lock);
    t->entries += ns->entries.count;
    t->index_bytes += idx_memory(ns->main) + u64map_memory(&ns->entries) +
                      u64map_memory(&ns->exact);
    t->index_entries += idx_count(ns->main);
    if (ns->fresh) {
        t->index_bytes += idx_memory(ns->fresh);
        t->unindexed += idx_count(ns->fresh);
    }
    t->entry_bytes += ns->entry_bytes;
    t->charged += ns->mem_charged;
    pthread_rwlock_unlock(&ns->lock);
    const cache_ns_counters *n = &ns->n;
    t->lookups += atomic_load(&n->lookups);
    t->exact_hits += atomic_load(&n->exact_hits);
    t->semantic_hits += atomic_load(&n->semantic_hits);
    t->misses += atomic_load(&n->misses);
    t->stores += atomic_load(&n->stores);
    t->dedup_updates += atomic_load(&n->dedup_updates);
    t->rejected += atomic_load(&n->rejected);
    t->tokens_saved += atomic_load(&n->tokens_saved);
    t->cost_saved += atomic_load(&n->cost_saved_micro_usd);
    t->entry_hits += atomic_load(&n->entry_hits);
    for (int r = 0; r < CACHE_EVICT_REASONS; r++) t->evicted[r] += atomic_load(&n->evicted[r]);
}

static uint16_t put_totals(const totals *t, proto_stat *stats, uint16_t n, uint16_t max) {
    const struct {
        const char *key;
        uint64_t value;
    } rows[] = {
        {"entries", t->entries},
        {"stores", t->stores},
        {"dedup_updates", t->dedup_updates},
        {"rejected_stores", t->rejected},
        {"lookups", t->lookups},
        {"hits", t->exact_hits + t->semantic_hits},
        {"exact_hits", t->exact_hits},
        {"semantic_hits", t->semantic_hits},
        {"misses", t->misses},
        {"deletes", t->evicted[CACHE_EVICT_DELETE]},
        {"evicted_ttl", t->evicted[CACHE_EVICT_TTL]},
        {"evicted_lfu", t->evicted[CACHE_EVICT_LFU]},
        {"evicted_delete", t->evicted[CACHE_EVICT_DELETE]},
        {"evicted_drop", t->evicted[CACHE_EVICT_DROP]},
        {"tokens_saved", t->tokens_saved},
        {"cost_saved_micro_usd", t->cost_saved},
        {"index_bytes", t->index_bytes},
        {"entry_bytes", t->entry_bytes},
        {"unindexed", t->unindexed},
        {"index_entries", t->index_entries},
        {"memory_charged", t->charged},
        {"entry_hits", t->entry_hits}, /* hits of live entries, kept across restarts */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && n < max; i++, n++) {
        stats[n].key = rows[i].key;
        stats[n].key_len = (uint8_t)strlen(rows[i].key);
        stats[n].value = rows[i].value;
    }
    return n;
}

static void put_stat(proto_stat *stats, uint16_t *n, uint16_t max, const char *key,
                     uint64_t value) {
    if (*n >= max) return;
    stats[*n].key = key;
    stats[*n].key_len = (uint8_t)strlen(key);
    stats[*n].value = value;
    (*n)++;
}

int cache_stats(cache *c, const uint8_t *name, uint8_t len, proto_stat *stats,
                uint16_t max, uint16_t *count) {
    totals t;
    memset(&t, 0, sizeof t);
    uint16_t n = 0;
    if (len) {
        cache_ns *ns = cache_find_ns(c, name, len);
        if (!ns) return DEJA_ERR_NOT_FOUND;
        add_totals(ns, &t);
        put_stat(stats, &n, max, "dim", ns->dim);
        put_stat(stats, &n, max, "ns_id", ns->ns_id);
    } else {
        pthread_rwlock_rdlock(&c->ns_lock);
        for (size_t i = 0; i < c->ns_count; i++) add_totals(c->ns[i], &t);
        put_stat(stats, &n, max, "namespaces", c->ns_count);
        pthread_rwlock_unlock(&c->ns_lock);
        put_stat(stats, &n, max, "snapshot_entries", atomic_load(&c->snapshot_entries));
        /* Rejections of STOREs that never reached a namespace count too. */
        t.rejected = atomic_load(&c->rejected);
        t.evicted[CACHE_EVICT_DROP] += atomic_load(&c->evicted[CACHE_EVICT_DROP]);
    }
    *count = put_totals(&t, stats, n, max);
    return 0;
}

int cache_ns_info(cache *c, const uint8_t *name, uint8_t len, proto_ns_config *cfg,
                  char *factory, proto_stat *stats, uint16_t max, uint16_t *count) {
    cache_ns *ns = cache_find_ns(c, name, len);
    if (!ns) return DEJA_ERR_NOT_FOUND;
    *cfg = ns->config;
    memcpy(factory, ns->faiss_factory, sizeof ns->faiss_factory);
    cfg->faiss_factory = (const uint8_t *)factory;
    int rc = cache_stats(c, name, len, stats, max, count);
    if (rc == 0) {
        /* The effective values next to the requested ones. */
        uint16_t n = *count;
        uint64_t index_bytes = 0, entry_bytes = 0;
        for (uint16_t i = 0; i < *count; i++) {
            if (strncmp(stats[i].key, "index_bytes", stats[i].key_len) == 0)
                index_bytes = stats[i].value;
            if (strncmp(stats[i].key, "entry_bytes", stats[i].key_len) == 0)
                entry_bytes = stats[i].value;
        }
        put_stat(stats, &n, max, "memory_bytes", index_bytes + entry_bytes);
        /* Floors below 0 (not useful for a cache) are reported as 0. */
        put_stat(stats, &n, max, "min_threshold_milli",
                 ns->min_threshold > 0 ? (uint64_t)lroundf(ns->min_threshold * 1000.0f)
                                       : 0);
        put_stat(stats, &n, max, "dedup_milli", (uint64_t)lroundf(ns->dedup * 1000.0f));
        put_stat(stats, &n, max, "default_ttl_s", ns->default_ttl_s);
        *count = n;
    }
    return rc;
}
