/* cache.c: namespaces, entries and the index behind each namespace.
 *
 * See cache.h for the contract. The namespace table is a small array under
 * a rwlock: namespaces are few (one per model + prompt + params) and are
 * never freed while the server runs, so a pointer found under the table
 * lock stays valid after it is released. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache-private.h"

static uint64_t realtime_ms(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int cache_create(const cache_config *cfg, cache **out) {
    cache *c = calloc(1, sizeof *c);
    if (!c) return DEJA_ERR_NOMEM;
    c->cfg = *cfg;
    if (cache_indexer_start(c, cfg->indexer_threads ? cfg->indexer_threads : 1,
                            &c->indexer) != 0) {
        free(c);
        return DEJA_ERR_NOMEM;
    }
    pthread_rwlock_init(&c->ns_lock, NULL);
    atomic_init(&c->next_id, 1);
    atomic_init(&c->next_ns_id, 1);
    c->clock = realtime_ms;
    *out = c;
    return 0;
}

static void entry_unref(cache_entry *e) {
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

static void ns_free(cache_ns *ns) {
    size_t pos = 0;
    uint64_t id;
    void *val;
    while (u64map_next(&ns->entries, &pos, &id, &val)) entry_unref(val);
    u64map_close(&ns->entries);
    idx_destroy(ns->main);
    idx_destroy(ns->fresh);
    pthread_rwlock_destroy(&ns->lock);
    free(ns);
}

void cache_destroy(cache *c) {
    if (!c) return;
    cache_indexer_stop(c->indexer);
    for (size_t i = 0; i < c->ns_count; i++) ns_free(c->ns[i]);
    free(c->ns);
    pthread_rwlock_destroy(&c->ns_lock);
    free(c);
}

void cache_set_clock(cache *c, cache_clock_fn fn, void *ctx) {
    c->clock = fn ? fn : realtime_ms;
    c->clock_ctx = ctx;
}

static cache_ns *find_ns_locked(cache *c, const uint8_t *name, uint8_t len) {
    for (size_t i = 0; i < c->ns_count; i++) {
        cache_ns *ns = c->ns[i];
        if (ns->name_len == len && memcmp(ns->name, name, len) == 0) return ns;
    }
    return NULL;
}

static cache_ns *find_ns(cache *c, const uint8_t *name, uint8_t len) {
    pthread_rwlock_rdlock(&c->ns_lock);
    cache_ns *ns = find_ns_locked(c, name, len);
    pthread_rwlock_unlock(&c->ns_lock);
    return ns;
}

/* Finds the namespace or creates it with the given dimension; a new one
 * gets ns_id (0 = the next free id) and the given persisted state. */
static int get_or_create_ns(cache *c, const uint8_t *name, uint8_t len,
                            uint32_t dim, uint32_t ns_id, int persisted,
                            cache_ns **out) {
    cache_ns *ns = find_ns(c, name, len);
    if (ns) {
        *out = ns;
        return 0;
    }
    pthread_rwlock_wrlock(&c->ns_lock);
    ns = find_ns_locked(c, name, len); /* another thread may have won */
    if (ns) goto done;
    if (c->ns_count == c->ns_cap) {
        size_t cap = c->ns_cap ? c->ns_cap * 2 : 8;
        cache_ns **grown = realloc(c->ns, cap * sizeof *grown);
        if (!grown) goto nomem;
        c->ns = grown;
        c->ns_cap = cap;
    }
    ns = calloc(1, sizeof *ns);
    if (!ns) goto nomem;
    idx_config icfg = {
        .kind = c->cfg.index_kind ? c->cfg.index_kind : IDX_KIND_HNSW,
        .dim = dim,
        .M = c->cfg.hnsw_m,
        .ef_construction = c->cfg.hnsw_ef_construction,
        .ef_search = c->cfg.hnsw_ef_search,
        .quant = c->cfg.quant,
    };
    idx_config fcfg = {.kind = IDX_KIND_FLAT, .dim = dim};
    if (idx_create(&icfg, &ns->main) != 0) {
        free(ns);
        goto nomem;
    }
    /* An index that synchronises its own inserts is fed in the background
     * through an exact staging index; one that does not takes inserts
     * directly under the namespace lock. */
    if (idx_concurrent_writes(ns->main) && idx_create(&fcfg, &ns->fresh) != 0) {
        idx_destroy(ns->main);
        free(ns);
        goto nomem;
    }
    memcpy(ns->name, name, len);
    ns->name_len = len;
    ns->dim = dim;
    ns->ns_id = ns_id ? ns_id : (uint32_t)atomic_fetch_add(&c->next_ns_id, 1);
    ns->created_ms = c->clock(c->clock_ctx);
    atomic_init(&ns->persisted, persisted);
    pthread_rwlock_init(&ns->lock, NULL);
    u64map_init(&ns->entries);
    c->ns[c->ns_count++] = ns;
done:
    pthread_rwlock_unlock(&c->ns_lock);
    *out = ns;
    return 0;
nomem:
    pthread_rwlock_unlock(&c->ns_lock);
    return DEJA_ERR_NOMEM;
}

static size_t entry_size(const cache_entry *e) {
    return sizeof *e + e->prompt_len + 1 + e->response_len + 1;
}

struct cache_pending {
    cache *c;
    cache_ns *ns;
    cache_entry *e;
    store_entry_rec rec;
    store_ns_rec ns_rec;
    float vec[]; /* dim floats */
};

/* Allocates an entry blob: header, prompt, NUL, response, NUL. */
static cache_entry *entry_new(uint64_t id, const uint8_t *prompt, uint32_t prompt_len,
                              const uint8_t *response, uint32_t response_len) {
    cache_entry *e = malloc(sizeof *e + (size_t)prompt_len + 1 + (size_t)response_len + 1);
    if (!e) return NULL;
    memset(e, 0, sizeof *e);
    atomic_init(&e->refs, 1);
    e->id = id;
    e->prompt_len = prompt_len;
    e->response_len = response_len;
    if (prompt_len) memcpy(e->data, prompt, prompt_len);
    e->data[prompt_len] = 0;
    uint8_t *resp = e->data + prompt_len + 1;
    if (response_len) memcpy(resp, response, response_len);
    resp[response_len] = 0;
    return e;
}

int cache_prepare_store(cache *c, const proto_store_req *req, const float *vec,
                        cache_pending **out) {
    *out = NULL;
    if (req->completion != PROTO_COMPLETION_OK) {
        atomic_fetch_add(&c->rejected, 1);
        return DEJA_ERR_REJECTED;
    }
    cache_ns *ns;
    int rc = get_or_create_ns(c, req->ns, req->ns_len, req->dim, 0, 0, &ns);
    if (rc) return rc;
    if (ns->dim != req->dim) return DEJA_ERR_DIM_MISMATCH;

    cache_pending *p = malloc(sizeof *p + (size_t)req->dim * sizeof(float));
    if (!p) return DEJA_ERR_NOMEM;
    cache_entry *e = entry_new(atomic_fetch_add(&c->next_id, 1), req->prompt,
                               req->prompt_len, req->response, req->response_len);
    if (!e) {
        free(p);
        return DEJA_ERR_NOMEM;
    }
    e->created_ms = c->clock(c->clock_ctx);
    uint32_t ttl = req->ttl_s ? req->ttl_s : c->cfg.default_ttl_s;
    e->expires_ms = ttl ? e->created_ms + (uint64_t)ttl * 1000u : 0;
    e->input_tokens = req->input_tokens;
    e->output_tokens = req->output_tokens;
    e->cost_micro_usd = req->cost_micro_usd;
    memcpy(p->vec, vec, (size_t)req->dim * sizeof(float));
    p->c = c;
    p->ns = ns;
    p->e = e;
    p->rec = (store_entry_rec){
        .ns_id = ns->ns_id,
        .id = e->id,
        .created_ms = e->created_ms,
        .expires_ms = e->expires_ms,
        .input_tokens = e->input_tokens,
        .output_tokens = e->output_tokens,
        .cost_micro_usd = e->cost_micro_usd,
        .prompt = e->data,
        .prompt_len = e->prompt_len,
        .response = e->data + e->prompt_len + 1,
        .response_len = e->response_len,
        .vector = p->vec,
        .dim = ns->dim,
    };
    p->ns_rec.ns_id = ns->ns_id;
    p->ns_rec.dim = ns->dim;
    p->ns_rec.created_ms = ns->created_ms;
    p->ns_rec.name_len = ns->name_len;
    memcpy(p->ns_rec.name, ns->name, ns->name_len + 1u);
    *out = p;
    return 0;
}

const store_entry_rec *cache_pending_entry(const cache_pending *p) { return &p->rec; }

const store_ns_rec *cache_pending_ns(const cache_pending *p, int *ns_persisted) {
    *ns_persisted = atomic_load(&p->ns->persisted);
    return &p->ns_rec;
}

void cache_pending_ns_persisted(cache_pending *p) { atomic_store(&p->ns->persisted, 1); }

void cache_discard(cache_pending *p) {
    if (!p) return;
    entry_unref(p->e);
    free(p);
}

/* Inserts an entry and its vector into a namespace: into the staging
 * index (and the indexer's queue) when there is one, else into main. */
static int ns_insert(cache *c, cache_ns *ns, cache_entry *e, const float *vec) {
    pthread_rwlock_wrlock(&ns->lock);
    int rc = u64map_put(&ns->entries, e->id, e);
    if (rc == 0) {
        rc = idx_add(ns->fresh ? ns->fresh : ns->main, e->id, vec);
        if (rc) u64map_del(&ns->entries, e->id);
    }
    if (rc == 0) ns->entry_bytes += entry_size(e);
    pthread_rwlock_unlock(&ns->lock);
    if (rc == 0 && ns->fresh) cache_indexer_push(c->indexer, ns, e->id);
    return rc;
}

int cache_publish(cache *c, cache_pending *p, uint64_t *id_out) {
    int rc = ns_insert(c, p->ns, p->e, p->vec);
    if (rc) {
        cache_discard(p);
        return rc;
    }
    atomic_fetch_add(&p->ns->stores, 1);
    *id_out = p->e->id;
    free(p); /* the table holds the entry's reference now */
    return 0;
}

int cache_store(cache *c, const proto_store_req *req, const float *vec,
                uint64_t *id_out) {
    cache_pending *p;
    int rc = cache_prepare_store(c, req, vec, &p);
    return rc ? rc : cache_publish(c, p, id_out);
}

int cache_load_ns(cache *c, const store_ns_rec *rec) {
    cache_ns *ns;
    int rc = get_or_create_ns(c, (const uint8_t *)rec->name, rec->name_len, rec->dim,
                              rec->ns_id, 1, &ns);
    if (rc) return rc;
    ns->created_ms = rec->created_ms;
    return ns->ns_id == rec->ns_id && ns->dim == rec->dim ? 0 : DEJA_ERR_INTERNAL;
}

static cache_ns *find_ns_by_id(cache *c, uint32_t ns_id) {
    pthread_rwlock_rdlock(&c->ns_lock);
    cache_ns *found = NULL;
    for (size_t i = 0; i < c->ns_count && !found; i++)
        if (c->ns[i]->ns_id == ns_id) found = c->ns[i];
    pthread_rwlock_unlock(&c->ns_lock);
    return found;
}

int cache_load_entry(cache *c, const store_entry_rec *rec) {
    cache_ns *ns = find_ns_by_id(c, rec->ns_id);
    if (!ns) return DEJA_ERR_NOT_FOUND;
    if (ns->dim != rec->dim) return DEJA_ERR_DIM_MISMATCH;
    cache_entry *e = entry_new(rec->id, rec->prompt, rec->prompt_len, rec->response,
                               rec->response_len);
    if (!e) return DEJA_ERR_NOMEM;
    e->created_ms = rec->created_ms;
    e->expires_ms = rec->expires_ms;
    e->input_tokens = rec->input_tokens;
    e->output_tokens = rec->output_tokens;
    e->cost_micro_usd = rec->cost_micro_usd;
    int rc = ns_insert(c, ns, e, rec->vector);
    if (rc) entry_unref(e);
    return rc;
}

void cache_wait_indexed(cache *c) { cache_indexer_wait_idle(c->indexer); }

void cache_set_next_ids(cache *c, uint64_t next_entry_id, uint32_t next_ns_id) {
    if (next_entry_id > atomic_load(&c->next_id)) atomic_store(&c->next_id, next_entry_id);
    if (next_ns_id > atomic_load(&c->next_ns_id)) atomic_store(&c->next_ns_id, next_ns_id);
}

typedef struct live_filter {
    const cache_ns *ns;
    uint64_t now_ms;
} live_filter;

/* Runs under the namespace read lock: expired entries are never returned,
 * even before anything reclaims them. */
static int entry_is_live(void *ctx, uint64_t label) {
    const live_filter *f = ctx;
    const cache_entry *e = u64map_get(&f->ns->entries, label);
    return e && (e->expires_ms == 0 || e->expires_ms > f->now_ms);
}

static int hit_order(const void *a, const void *b) {
    const idx_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->label > y->label) - (x->label < y->label);
}

/* Merges the graph's n hits and the staging index's nf hits (stored right
 * after them) into the best k, dropping a label seen twice (an entry
 * caught between the two). Returns the count. */
static uint32_t merge_hits(idx_hit *hits, uint32_t n, uint32_t nf, uint32_t k) {
    if (nf == 0) return n;
    qsort(hits, n + nf, sizeof *hits, hit_order);
    uint32_t out = 0;
    for (uint32_t i = 0; i < n + nf && out < k; i++) {
        int dup = 0;
        for (uint32_t j = 0; j < out && !dup; j++) dup = hits[j].label == hits[i].label;
        if (!dup) hits[out++] = hits[i];
    }
    return out;
}

int cache_lookup(cache *c, const proto_lookup_req *req, const float *vec,
                 cache_match *matches, uint16_t *count) {
    *count = 0;
    cache_ns *ns = find_ns(c, req->ns, req->ns_len);
    if (!ns) return 0;
    if (ns->dim != req->dim) return DEJA_ERR_DIM_MISMATCH;

    idx_hit hits[2 * PROTO_MAX_K];
    uint32_t n = 0, nf = 0;
    live_filter filter = {.ns = ns, .now_ms = c->clock(c->clock_ctx)};
    uint32_t k = req->k > PROTO_MAX_K ? PROTO_MAX_K : req->k;

    pthread_rwlock_rdlock(&ns->lock);
    int rc = idx_search_ef(ns->main, vec, k, req->ef, req->threshold, entry_is_live,
                           &filter, hits, &n);
    if (rc == 0 && ns->fresh) {
        rc = idx_search(ns->fresh, vec, k, req->threshold, entry_is_live, &filter,
                        hits + n, &nf);
        n = merge_hits(hits, n, nf, k);
    }
    uint16_t found = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        cache_entry *e = u64map_get(&ns->entries, hits[i].label);
        if (!e) continue;
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        matches[found].entry = e;
        matches[found].similarity = hits[i].score;
        found++;
    }
    pthread_rwlock_unlock(&ns->lock);
    if (rc) return rc;

    atomic_fetch_add(&ns->lookups, 1);
    atomic_fetch_add(found ? &ns->hits : &ns->misses, 1);
    *count = found;
    return 0;
}

void cache_entry_release(cache_entry *e) { entry_unref(e); }

uint64_t cache_entry_id(const cache_entry *e) { return e->id; }

const uint8_t *cache_entry_response(const cache_entry *e, uint32_t *len) {
    *len = e->response_len;
    return e->data + e->prompt_len + 1;
}

const uint8_t *cache_entry_prompt(const cache_entry *e, uint32_t *len) {
    *len = e->prompt_len;
    return e->data;
}

int cache_delete(cache *c, const uint8_t *name, uint8_t len, uint64_t id,
                 uint32_t *ns_id) {
    cache_ns *ns = find_ns(c, name, len);
    if (!ns) return DEJA_ERR_NOT_FOUND;
    *ns_id = ns->ns_id;
    pthread_rwlock_wrlock(&ns->lock);
    cache_entry *e = u64map_del(&ns->entries, id);
    if (e) {
        /* It is in one of the two (or, mid-move, momentarily both). */
        if (ns->fresh) idx_remove(ns->fresh, id);
        idx_remove(ns->main, id);
        ns->entry_bytes -= entry_size(e);
    }
    pthread_rwlock_unlock(&ns->lock);
    if (!e) return DEJA_ERR_NOT_FOUND;
    atomic_fetch_add(&ns->deletes, 1);
    entry_unref(e);
    return 0;
}

int cache_flush(cache *c, const uint8_t *name, uint8_t len, uint64_t *removed,
                uint32_t *ns_id) {
    *removed = 0;
    *ns_id = 0;
    cache_ns *ns = find_ns(c, name, len);
    if (!ns) return 0;
    *ns_id = ns->ns_id;
    pthread_rwlock_wrlock(&ns->lock);
    u64map old = ns->entries;
    u64map_init(&ns->entries);
    idx_clear(ns->main);
    if (ns->fresh) idx_clear(ns->fresh);
    ns->entry_bytes = 0;
    pthread_rwlock_unlock(&ns->lock);

    size_t pos = 0;
    uint64_t id;
    void *val;
    while (u64map_next(&old, &pos, &id, &val)) entry_unref(val);
    *removed = old.count;
    u64map_close(&old);
    atomic_fetch_add(&ns->deletes, *removed);
    return 0;
}

typedef struct ns_totals {
    uint64_t entries, stores, lookups, hits, misses, deletes;
    uint64_t index_bytes, entry_bytes, unindexed, graph_entries;
} ns_totals;

static void ns_add_totals(cache_ns *ns, ns_totals *t) {
    pthread_rwlock_rdlock(&ns->lock);
    t->entries += ns->entries.count;
    t->index_bytes += idx_memory(ns->main) + u64map_memory(&ns->entries);
    t->graph_entries += idx_count(ns->main);
    if (ns->fresh) {
        t->index_bytes += idx_memory(ns->fresh);
        t->unindexed += idx_count(ns->fresh);
    }
    t->entry_bytes += ns->entry_bytes;
    pthread_rwlock_unlock(&ns->lock);
    t->stores += atomic_load(&ns->stores);
    t->lookups += atomic_load(&ns->lookups);
    t->hits += atomic_load(&ns->hits);
    t->misses += atomic_load(&ns->misses);
    t->deletes += atomic_load(&ns->deletes);
}

int cache_stats(cache *c, const uint8_t *name, uint8_t len, proto_stat *stats,
                uint16_t max, uint16_t *count) {
    ns_totals t = {0};
    uint16_t n = 0;
#define STAT(k, v)                                                             \
    do {                                                                       \
        if (n < max) {                                                         \
            stats[n].key = (k);                                                \
            stats[n].key_len = (uint8_t)strlen(k);                             \
            stats[n].value = (v);                                              \
            n++;                                                               \
        }                                                                      \
    } while (0)
    if (len) {
        cache_ns *ns = find_ns(c, name, len);
        if (!ns) return DEJA_ERR_NOT_FOUND;
        ns_add_totals(ns, &t);
        STAT("dim", ns->dim);
    } else {
        pthread_rwlock_rdlock(&c->ns_lock);
        for (size_t i = 0; i < c->ns_count; i++) ns_add_totals(c->ns[i], &t);
        STAT("namespaces", c->ns_count);
        pthread_rwlock_unlock(&c->ns_lock);
        STAT("rejected_stores", atomic_load(&c->rejected));
    }
    STAT("entries", t.entries);
    STAT("stores", t.stores);
    STAT("lookups", t.lookups);
    STAT("hits", t.hits);
    STAT("misses", t.misses);
    STAT("deletes", t.deletes);
    STAT("index_bytes", t.index_bytes);
    STAT("unindexed", t.unindexed); /* waiting in the staging index */
    STAT("index_entries", t.graph_entries);
    STAT("entry_bytes", t.entry_bytes);
#undef STAT
    *count = n;
    return 0;
}
