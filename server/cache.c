/* cache.c: entries -- storing (with the exact tier and write-time dedup),
 * looking up (exact tier first, then the vector index), deleting, and the
 * per-hit accounting (hit counts, sliding TTL, tokens and money saved).
 *
 * Namespaces live in cache-ns.c, the TTL sweeper in cache-sweep.c, the
 * graph-building threads in cache-indexer.c. See cache.h for the contract
 * and docs/ARCHITECTURE.md for the locking. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

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
    atomic_init(&c->default_floor, cfg->min_threshold);
    atomic_init(&c->default_dedup, cfg->dedup);
    atomic_init(&c->budget_memory, cfg->max_memory);
    atomic_init(&c->budget_entries, cfg->max_entries);
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

void cache_destroy(cache *c) {
    if (!c) return;
    cache_indexer_stop(c->indexer);
    for (size_t i = 0; i < c->ns_count; i++)
        cache_ns_free(c->ns[i]);
    for (size_t i = 0; i < c->graveyard_count; i++)
        cache_ns_free(c->graveyard[i]);
    free(c->ns);
    free(c->graveyard);
    pthread_rwlock_destroy(&c->ns_lock);
    free(c);
}

void cache_set_clock(cache *c, cache_clock_fn fn, void *ctx) {
    c->clock = fn ? fn : realtime_ms;
    c->clock_ctx = ctx;
}

void cache_wait_indexed(cache *c) {
    cache_indexer_wait_idle(c->indexer);
}

void cache_wait_unindexed_below(cache *c, size_t limit) {
    cache_indexer_wait_below(c->indexer, limit);
}

int cache_each_usage(cache *c, int (*fn)(void *ctx, const cache_usage *u), void *ctx) {
    int rc = 0;
    pthread_rwlock_rdlock(&c->ns_lock);
    for (size_t i = 0; i < c->ns_count && rc == 0; i++) {
        cache_ns *ns = c->ns[i];
        pthread_rwlock_rdlock(&ns->lock);
        size_t pos = 0;
        uint64_t id;
        void *val;
        while (rc == 0 && u64map_next(&ns->entries, &pos, &id, &val)) {
            cache_entry *e = val;
            uint32_t hits = atomic_load(&e->hits);
            if (hits == 0) continue; /* nothing the entry record lacks */
            cache_usage u = {
                .ns_id = ns->ns_id,
                .id = id,
                .hits = hits,
                .lfu = atomic_load(&e->lfu),
                .last_hit_ms = atomic_load(&e->last_hit_ms),
                .expires_ms = atomic_load(&e->expires_ms),
            };
            rc = fn(ctx, &u);
        }
        pthread_rwlock_unlock(&ns->lock);
    }
    pthread_rwlock_unlock(&c->ns_lock);
    return rc;
}

void cache_set_next_ids(cache *c, uint64_t next_entry_id, uint32_t next_ns_id) {
    if (next_entry_id > atomic_load(&c->next_id))
        atomic_store(&c->next_id, next_entry_id);
    if (next_ns_id > atomic_load(&c->next_ns_id))
        atomic_store(&c->next_ns_id, next_ns_id);
}

/* ---- entries -----------------------------------------------------------------*/

void cache_entry_unref(cache_entry *e) {
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) free(e);
}

size_t cache_entry_size(const cache_entry *e) {
    (void)e;
    return sizeof(cache_entry);
}

static int entry_live(const cache_entry *e, uint64_t now_ms) {
    uint64_t exp = atomic_load_explicit(&e->expires_ms, memory_order_relaxed);
    return exp == 0 || exp > now_ms;
}

/* Allocates an entry of namespace ns_id; its bytes stay in the store. */
static cache_entry *entry_new(uint32_t ns_id, uint64_t id, uint32_t prompt_len,
                              uint32_t response_len) {
    cache_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    atomic_init(&e->refs, 1);
    e->ns_id = ns_id;
    e->id = id;
    e->prompt_len = prompt_len;
    e->response_len = response_len;
    return e;
}

/* ---- the vector source ---------------------------------------------------------*/

static const float *scope_vector(void *ctx, uint64_t label, float *scratch) {
    const cache_vec_scope *s = ctx;
    return s->c->cfg.vectors.vector(s->scope, s->ns_id, label, s->dim, scratch);
}

int cache_vec_scope_begin(const cache *c, const cache_ns *ns, cache_vec_scope *s) {
    *s = (cache_vec_scope){.c = c, .ns_id = ns->ns_id, .dim = ns->dim};
    if (!ns->main_external) return 0;
    s->scope = c->cfg.vectors.begin(c->cfg.vectors.ctx);
    if (!s->scope) return DEJA_ERR_NOMEM;
    s->src = (idx_exact_source){.vector = scope_vector, .ctx = s};
    return 0;
}

void cache_vec_scope_end(cache_vec_scope *s) {
    if (s->scope) s->c->cfg.vectors.end(s->scope);
    s->scope = NULL;
}

/* The exact tier's key: XXH3-128 of the prompt with every run of white
 * space collapsed to one space and the ends trimmed; case is kept (to a
 * model, "US" and "us" are different questions). A prompt that normalises
 * to nothing (empty, or only white space) has no key: out is {0, 0}, and
 * such an entry or lookup stays out of the exact tier, since every blank
 * prompt would otherwise be "the same question". A real key is never
 * {0, 0}. */
static int prompt_hash(const uint8_t *prompt, uint32_t len, uint64_t out[2]) {
    out[0] = out[1] = 0;
    if (len == 0) return 0;
    uint8_t *norm = malloc(len);
    if (!norm) return DEJA_ERR_NOMEM;
    size_t n = 0;
    int pending_space = 0;
    for (uint32_t i = 0; i < len; i++) {
        uint8_t ch = prompt[i];
        int space = ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' ||
                    ch == '\f';
        if (space) {
            pending_space = n > 0;
            continue;
        }
        if (pending_space) norm[n++] = ' ';
        pending_space = 0;
        norm[n++] = ch;
    }
    if (n > 0) {
        XXH128_hash_t h = XXH3_128bits(norm, n);
        out[0] = h.low64;
        out[1] = h.high64 | (h.low64 == 0 && h.high64 == 0);
    }
    free(norm);
    return 0;
}

/* Whether a prompt hash keys the exact tier (see prompt_hash). */
static int hash_keyed(const uint64_t hash[2]) {
    return (hash[0] | hash[1]) != 0;
}

static uint64_t exact_key(const uint64_t hash[2]) {
    return hash[0] ? hash[0] : 1;
}

/* The live entry whose prompt hashes to hash, or NULL. ns->lock held. */
static cache_entry *exact_find_locked(cache_ns *ns, const uint64_t hash[2],
                                      uint64_t now_ms) {
    cache_entry *e = u64map_get(&ns->exact, exact_key(hash));
    if (e && e->prompt_hash[0] == hash[0] && e->prompt_hash[1] == hash[1] &&
        entry_live(e, now_ms))
        return e;
    return NULL;
}

int cache_vector_of_locked(cache_ns *ns, const cache_vec_scope *s, uint64_t id,
                           float *out) {
    if (ns->fresh && idx_get(ns->fresh, id, out) == 0) return 0;
    if (!ns->main_external) return idx_get(ns->main, id, out);
    if (!s->scope) return DEJA_ERR_NOT_FOUND;
    const float *v = scope_vector((void *)s, id, out);
    if (!v) return DEJA_ERR_NOT_FOUND;
    if (v != out) memcpy(out, v, (size_t)ns->dim * sizeof(float));
    return 0;
}

typedef struct live_filter {
    const cache_ns *ns;
    uint64_t now_ms;
} live_filter;

/* Runs under the namespace read lock: expired entries are never returned,
 * even before the sweeper reclaims them. */
static int entry_is_live(void *ctx, uint64_t label) {
    const live_filter *f = ctx;
    const cache_entry *e = u64map_get(&f->ns->entries, label);
    return e && entry_live(e, f->now_ms);
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
        for (uint32_t j = 0; j < out && !dup; j++)
            dup = hits[j].label == hits[i].label;
        if (!dup) hits[out++] = hits[i];
    }
    return out;
}

/* Vector search of a namespace (graph + staging index), live entries
 * only. hits must hold 2k. ns->lock held for reading. */
static int search_locked(cache_ns *ns, const cache_vec_scope *s, const float *vec,
                         uint32_t k, uint32_t ef, float threshold, uint64_t now_ms,
                         idx_hit *hits, uint32_t *n) {
    live_filter filter = {.ns = ns, .now_ms = now_ms};
    uint32_t nm = 0, nf = 0;
    int rc = idx_search_src(ns->main, vec, k, ef, threshold, entry_is_live, &filter,
                            cache_vec_src(s), hits, &nm);
    if (rc == 0 && ns->fresh)
        rc = idx_search(ns->fresh, vec, k, threshold, entry_is_live, &filter, hits + nm,
                        &nf);
    *n = rc ? 0 : merge_hits(hits, nm, nf, k);
    return rc;
}

/* ---- stores ------------------------------------------------------------------*/

struct cache_pending {
    cache *c;
    cache_ns *ns;
    cache_entry *e;
    int replaces;          /* e->id names a live entry this one updates */
    cache_entry_image rec; /* its prompt and response point into bytes */
    cache_ns_image ns_rec;
    uint8_t *bytes; /* prompt then response, until the store has them */
    float vec[];    /* dim floats */
};

/* The best live entry of the staging index at least min similar to vec,
 * into *best (whose score it must beat). While the staging index holds at
 * most CACHE_DEDUP_WINDOW entries all of them are compared; beyond that,
 * the CACHE_DEDUP_WINDOW most recently staged (the ring ns->recent), so a
 * STORE never costs O(backlog): the indexer moves entries in about the
 * order they were staged, so the entries beyond the window are the oldest
 * of the backlog, the next to reach the graph. ns->lock held. */
static void dedup_staged_locked(cache_ns *ns, const float *vec, float min,
                                uint64_t now_ms, idx_hit *best) {
    live_filter filter = {.ns = ns, .now_ms = now_ms};
    size_t staged = idx_count(ns->fresh);
    if (staged == 0) return;
    if (staged <= CACHE_DEDUP_WINDOW) {
        idx_hit hit;
        uint32_t n = 0;
        if (idx_search(ns->fresh, vec, 1, min, entry_is_live, &filter, &hit, &n) == 0 &&
            n == 1 && hit.score > best->score)
            *best = hit;
        return;
    }
    uint64_t count =
        ns->recent_count < CACHE_DEDUP_WINDOW ? ns->recent_count : CACHE_DEDUP_WINDOW;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t id = ns->recent[i];
        float score;
        /* Scored where it is staged: copying each of the window's vectors
         * out first made this loop memory-bound, most of a STORE's CPU
         * while the graph lagged (issue #14). Not staged any more: in the
         * graph (searched already) or gone. */
        if (idx_score(ns->fresh, id, vec, &score) != 0 || !entry_is_live(&filter, id))
            continue;
        if (score >= min && score > best->score)
            *best = (idx_hit){.label = id, .score = score};
    }
}

/* Finds the live entry a new STORE should update instead of adding a
 * near-copy: the one with the same normalised prompt (exact tier), else
 * the most similar one at least ns->dedup similar, in the graph or the
 * staging index (dedup_staged_locked). Copies its vector to vec_out, so
 * the entry keeps its place in the index. Returns its id or 0. Sees only
 * published (acknowledged) entries: two STOREs in flight together do not
 * see each other (docs/PROTOCOL.md 5.10). */
static uint64_t find_replacement(const cache *c, cache_ns *ns, const uint64_t *hash,
                                 const float *vec, uint64_t now_ms, float *vec_out) {
    uint64_t id = 0;
    cache_vec_scope scope;
    if (cache_vec_scope_begin(c, ns, &scope) != 0) return 0; /* no dedup: a new entry */
    pthread_rwlock_rdlock(&ns->lock);
    cache_entry *e = hash ? exact_find_locked(ns, hash, now_ms) : NULL;
    if (e) {
        id = e->id;
    } else if (ns->dedup > 0) {
        idx_hit best = {.label = 0, .score = -INFINITY};
        idx_hit hits[1];
        uint32_t n = 0;
        live_filter filter = {.ns = ns, .now_ms = now_ms};
        /* A near-identical vector is the easiest thing a graph can find:
         * a narrow search (ef 16) is enough and keeps dedup cheap. */
        if (idx_search_src(ns->main, vec, 1, 16, ns->dedup, entry_is_live, &filter,
                           cache_vec_src(&scope), hits, &n) == 0 &&
            n == 1)
            best = hits[0];
        if (ns->fresh) dedup_staged_locked(ns, vec, ns->dedup, now_ms, &best);
        id = best.label;
    }
    if (id && cache_vector_of_locked(ns, &scope, id, vec_out) != 0) id = 0;
    pthread_rwlock_unlock(&ns->lock);
    cache_vec_scope_end(&scope);
    return id;
}

int cache_prepare_store(cache *c, const cache_store_args *req, const float *vec,
                        cache_pending **out) {
    *out = NULL;
    if (req->dim < 1 || req->dim > CACHE_MAX_DIM) return DEJA_ERR_INVALID_ARG;
    cache_ns *ns = cache_find_ns(c, req->ns, req->ns_len);
    /* Only a namespace created to allow it caches non-ok completions, so an
     * unknown namespace is never created by a rejected STORE. */
    int allow = ns && (ns->config.flags & CACHE_NS_ALLOW_NON_OK);
    if (req->completion != CACHE_COMPLETION_OK && !allow) {
        atomic_fetch_add(&c->rejected, 1);
        if (ns) atomic_fetch_add(&ns->n.rejected, 1);
        return DEJA_ERR_REJECTED;
    }
    if (!ns) {
        int rc =
            cache_get_or_create_ns(c, req->ns, req->ns_len, req->dim, NULL, 0, 0, &ns);
        if (rc) return rc;
    }
    if (ns->dim != req->dim) return DEJA_ERR_DIM_MISMATCH;

    size_t vec_bytes = (size_t)req->dim * sizeof(float);
    cache_pending *p = malloc(sizeof *p + vec_bytes + (size_t)req->prompt_len +
                              (size_t)req->response_len + 1);
    if (!p) return DEJA_ERR_NOMEM;
    p->bytes = (uint8_t *)p->vec + vec_bytes;
    if (req->prompt_len) memcpy(p->bytes, req->prompt, req->prompt_len);
    if (req->response_len)
        memcpy(p->bytes + req->prompt_len, req->response, req->response_len);
    uint64_t hash[2];
    if (prompt_hash(req->prompt, req->prompt_len, hash) != 0) {
        free(p);
        return DEJA_ERR_NOMEM;
    }
    uint64_t now = cache_now(c);
    uint64_t target =
        find_replacement(c, ns, hash_keyed(hash) ? hash : NULL, vec, now, p->vec);
    if (!target) memcpy(p->vec, vec, (size_t)req->dim * sizeof(float));

    cache_entry *e =
        entry_new(ns->ns_id, target ? target : atomic_fetch_add(&c->next_id, 1),
                  req->prompt_len, req->response_len);
    if (!e) {
        free(p);
        return DEJA_ERR_NOMEM;
    }
    e->created_ms = now;
    e->ttl_s = req->ttl_s ? req->ttl_s : ns->default_ttl_s;
    atomic_init(&e->expires_ms, e->ttl_s ? now + (uint64_t)e->ttl_s * 1000u : 0);
    e->input_tokens = req->input_tokens;
    e->output_tokens = req->output_tokens;
    e->cost_micro_usd = req->cost_micro_usd;
    e->completion = (uint8_t)req->completion;
    atomic_init(&e->lfu, CACHE_LFU_INIT);
    atomic_init(&e->last_hit_ms, now);
    e->prompt_hash[0] = hash[0];
    e->prompt_hash[1] = hash[1];
    p->c = c;
    p->ns = ns;
    p->e = e;
    p->replaces = target != 0;
    p->rec = (cache_entry_image){
        .ns_id = ns->ns_id,
        .id = e->id,
        .created_ms = e->created_ms,
        .expires_ms = atomic_load(&e->expires_ms),
        .input_tokens = e->input_tokens,
        .output_tokens = e->output_tokens,
        .cost_micro_usd = e->cost_micro_usd,
        .prompt = p->bytes,
        .prompt_len = e->prompt_len,
        .response = p->bytes + e->prompt_len,
        .response_len = e->response_len,
        .vector = p->vec,
        .dim = ns->dim,
    };
    cache_ns_record(ns, &p->ns_rec);
    *out = p;
    return 0;
}

const cache_entry_image *cache_pending_entry(const cache_pending *p) {
    return &p->rec;
}

const cache_ns_image *cache_pending_ns(const cache_pending *p, int *ns_persisted) {
    *ns_persisted = atomic_load(&p->ns->persisted);
    return &p->ns_rec;
}

void cache_pending_ns_persisted(cache_pending *p) {
    atomic_store(&p->ns->persisted, 1);
}

cache_entry *cache_pending_ref(cache_pending *p) {
    atomic_fetch_add_explicit(&p->e->refs, 1, memory_order_relaxed);
    return p->e;
}

void cache_discard(cache_pending *p) {
    if (!p) return;
    cache_entry_unref(p->e);
    free(p);
}

void cache_ns_charge_locked(cache *c, cache_ns *ns, int refresh_share) {
    size_t count = ns->entries.count;
    if (refresh_share || ns->index_share == 0) {
        size_t idx_bytes = idx_memory(ns->main) + u64map_memory(&ns->entries) +
                           u64map_memory(&ns->exact);
        if (ns->fresh) idx_bytes += idx_memory(ns->fresh);
        ns->index_share = count ? idx_bytes / count : 0;
    }
    size_t charged = ns->entry_bytes + count * ns->index_share;
    atomic_fetch_add(&c->mem_total, charged - ns->mem_charged); /* wraps right */
    ns->mem_charged = charged;
}

/* Queues a removal from main while a snapshot writes it without the lock
 * (cache-snapshot.c applies the queue when it is done). Should the queue
 * not grow, the node stays in the graph: no lookup returns it (its entry
 * is gone) and the next start's reconciliation removes it. */
static void snap_defer_locked(cache_ns *ns, uint64_t id) {
    if (ns->snap_removed_n == ns->snap_removed_cap) {
        size_t cap = ns->snap_removed_cap ? ns->snap_removed_cap * 2 : 256;
        uint64_t *grown = realloc(ns->snap_removed, cap * sizeof *grown);
        if (!grown) return;
        ns->snap_removed = grown;
        ns->snap_removed_cap = cap;
    }
    ns->snap_removed[ns->snap_removed_n++] = id;
}

void cache_ns_unlink_locked(cache *c, cache_ns *ns, cache_entry *e) {
    u64map_del(&ns->entries, e->id);
    if (hash_keyed(e->prompt_hash) &&
        u64map_get(&ns->exact, exact_key(e->prompt_hash)) == e)
        u64map_del(&ns->exact, exact_key(e->prompt_hash));
    /* It is in one of the two indexes (or, mid-move, momentarily both). */
    if (ns->fresh) idx_remove(ns->fresh, e->id);
    if (atomic_load(&ns->snapshotting) && ns->fresh)
        snap_defer_locked(ns, e->id);
    else
        idx_remove(ns->main, e->id);
    ns->entry_bytes -= cache_entry_size(e);
    atomic_fetch_sub(&ns->n.entry_hits, atomic_load(&e->hits));
    atomic_fetch_sub(&c->entries_total, 1);
    atomic_fetch_add(&c->changes, 1);
    cache_ns_charge_locked(c, ns, 0);
}

/* Puts e in the tables: replacing old (same id, same vector: the index is
 * untouched) or as a new entry (into the staging index and the indexer's
 * queue when there is one, else into main). loaded: read from disk at
 * start, so the indexer counts it as restart backlog. */
static int ns_insert(cache *c, cache_ns *ns, cache_entry *e, const float *vec, int loaded,
                     int *replaced) {
    *replaced = 0;
    /* Once in the table the entry belongs to it: a FLUSH or NS_DROP on
     * another thread may free it as soon as the lock is released, so
     * nothing below the unlock may touch e. */
    uint64_t id = e->id;
    pthread_rwlock_wrlock(&ns->lock);
    if (ns->dropped) {
        pthread_rwlock_unlock(&ns->lock);
        return DEJA_ERR_NOT_FOUND;
    }
    cache_entry *old = u64map_get(&ns->entries, e->id);
    int rc = u64map_put(&ns->entries, e->id, e);
    if (rc == 0 && old) {
        if (hash_keyed(old->prompt_hash) &&
            u64map_get(&ns->exact, exact_key(old->prompt_hash)) == old)
            u64map_del(&ns->exact, exact_key(old->prompt_hash));
        ns->entry_bytes -= cache_entry_size(old);
        *replaced = 1;
    } else if (rc == 0 && u64map_get(&ns->snap_labels, e->id)) {
        /* At start, from an adopted snapshot: already in the graph. */
        *replaced = 2;
    } else if (rc == 0) {
        /* Only a snapshot's entries may come without their vector. */
        rc = vec ? idx_add(ns->fresh ? ns->fresh : ns->main, e->id, vec)
                 : DEJA_ERR_CORRUPT;
        if (rc)
            u64map_del(&ns->entries, e->id);
        else if (ns->fresh)
            ns->recent[ns->recent_count++ % CACHE_DEDUP_WINDOW] = e->id;
    }
    if (rc == 0 && hash_keyed(e->prompt_hash)) {
        /* A lost exact-map slot only costs the exact tier, not the entry. */
        (void)u64map_put(&ns->exact, exact_key(e->prompt_hash), e);
    }
    if (rc == 0) {
        ns->entry_bytes += cache_entry_size(e);
        if (*replaced != 1) atomic_fetch_add(&c->entries_total, 1);
        atomic_fetch_add(&c->changes, 1);
        /* The index share is re-measured every 256 entries: often enough
         * to follow growth, rarely enough to cost nothing. */
        cache_ns_charge_locked(c, ns, (ns->entries.count & 255) == 1);
    }
    pthread_rwlock_unlock(&ns->lock);
    if (old && rc == 0) cache_entry_unref(old);
    if (rc == 0 && !*replaced && ns->fresh && c->indexer)
        cache_indexer_push(c->indexer, ns, id, loaded);
    if (*replaced == 2) *replaced = 0;
    return rc;
}

int cache_publish(cache *c, cache_pending *p, uint64_t *id_out) {
    int replaced;
    uint64_t id = p->e->id; /* p->e may be freed once published (ns_insert) */
    int rc = ns_insert(c, p->ns, p->e, p->vec, 0, &replaced);
    if (rc) {
        cache_discard(p);
        return rc;
    }
    atomic_fetch_add(replaced ? &p->ns->n.dedup_updates : &p->ns->n.stores, 1);
    *id_out = id;
    cache_ns *ns = p->ns;
    free(p); /* the table holds the entry's reference now */
    if (!replaced) cache_enforce_budgets(c, ns);
    return 0;
}

int cache_store(cache *c, const cache_store_args *req, const float *vec,
                uint64_t *id_out) {
    cache_pending *p;
    int rc = cache_prepare_store(c, req, vec, &p);
    return rc ? rc : cache_publish(c, p, id_out);
}

static cache_ns *ns_by_id(cache *c, uint32_t ns_id) {
    cache_ns *ns = NULL;
    pthread_rwlock_rdlock(&c->ns_lock);
    for (size_t i = 0; i < c->ns_count && !ns; i++)
        if (c->ns[i]->ns_id == ns_id) ns = c->ns[i];
    pthread_rwlock_unlock(&c->ns_lock);
    return ns;
}

int cache_load_wants_vector(cache *c, uint32_t ns_id, uint64_t id) {
    cache_ns *ns = ns_by_id(c, ns_id);
    if (!ns) return 1;
    pthread_rwlock_rdlock(&ns->lock);
    int in_graph = u64map_get(&ns->snap_labels, id) != NULL;
    pthread_rwlock_unlock(&ns->lock);
    return !in_graph;
}

int cache_load_entry(cache *c, const cache_entry_image *rec) {
    cache_ns *ns = ns_by_id(c, rec->ns_id);
    if (!ns) return DEJA_ERR_NOT_FOUND;
    if (ns->dim != rec->dim) return DEJA_ERR_DIM_MISMATCH;
    cache_entry *e = entry_new(ns->ns_id, rec->id, rec->prompt_len, rec->response_len);
    if (!e) return DEJA_ERR_NOMEM;
    e->created_ms = rec->created_ms;
    atomic_init(&e->expires_ms, rec->expires_ms);
    e->ttl_s = rec->expires_ms > rec->created_ms
                   ? (uint32_t)((rec->expires_ms - rec->created_ms) / 1000u)
                   : 0;
    e->input_tokens = rec->input_tokens;
    e->output_tokens = rec->output_tokens;
    e->cost_micro_usd = rec->cost_micro_usd;
    atomic_init(&e->lfu, rec->lfu ? rec->lfu : CACHE_LFU_INIT);
    atomic_init(&e->last_hit_ms, rec->last_hit_ms ? rec->last_hit_ms : rec->created_ms);
    atomic_init(&e->hits, rec->hits);
    /* The exact map is not stored: it is rebuilt from the prompts. */
    if (prompt_hash(rec->prompt, rec->prompt_len, e->prompt_hash)) {
        cache_entry_unref(e);
        return DEJA_ERR_NOMEM;
    }
    int replaced;
    int rc = ns_insert(c, ns, e, rec->vector, 1, &replaced);
    if (rc)
        cache_entry_unref(e);
    else
        atomic_fetch_add(&ns->n.entry_hits, rec->hits);
    return rc;
}

/* ---- lookups -----------------------------------------------------------------*/

/* What a hit does to its entry: its use counts for eviction, a sliding
 * TTL moves. The same for a would-be hit in shadow mode, so that a
 * namespace in shadow mode holds what it would hold if it served. */
static void touch_hit(cache_ns *ns, cache_entry *e, uint64_t now_ms) {
    atomic_fetch_add_explicit(&e->hits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ns->n.entry_hits, 1, memory_order_relaxed);
    cache_lfu_touch(e, now_ms); /* also moves last_hit_ms */
    if (ns->config.ttl_mode == CACHE_TTL_SLIDING && e->ttl_s) {
        uint64_t until = now_ms + (uint64_t)e->ttl_s * 1000u;
        if (ns->config.max_age_s) {
            uint64_t cap = e->created_ms + (uint64_t)ns->config.max_age_s * 1000u;
            if (until > cap) until = cap;
        }
        uint64_t cur = atomic_load(&e->expires_ms);
        while (cur && until > cur &&
               !atomic_compare_exchange_weak(&e->expires_ms, &cur, until)) {
        }
    }
}

/* A served hit saves what producing its answer cost. */
static void account_saved(cache_ns *ns, const cache_entry *e) {
    atomic_fetch_add(&ns->n.tokens_saved, (uint64_t)e->input_tokens + e->output_tokens);
    atomic_fetch_add(&ns->n.cost_saved_micro_usd, e->cost_micro_usd);
}

/* The histogram bucket of a best candidate's similarity (PROTOCOL.md
 * 5.17): 0 below 0.50, 1..50 for 0.50..0.99 by hundredths. */
static unsigned sim_bucket(float s) {
    if (!(s >= 0.5f)) return CACHE_SIM_LT50;
    double hundredths = floor((double)s * 100.0);
    if (hundredths >= 99.0) return CACHE_SIM_LT50 + 50;
    return CACHE_SIM_LT50 + 1 + (unsigned)(hundredths - 50.0);
}

/* The lowest similarity the histogram tells apart: searches look down to
 * it, so a miss still learns its best candidate (the index applies the
 * threshold to its results only, so this costs no extra traversal). */
#define SIM_FLOOR 0.5f

int cache_search(cache *c, const cache_query *req, const float *vec, cache_match *matches,
                 cache_result *res) {
    memset(res, 0, sizeof *res);
    res->threshold = req->threshold > atomic_load(&c->default_floor)
                         ? req->threshold
                         : atomic_load(&c->default_floor);
    cache_ns *ns = cache_find_ns(c, req->ns, req->ns_len);
    if (!ns) return cache_ns_quarantined(c, req->ns, req->ns_len, NULL, 0);
    if (ns->dim != req->dim) return DEJA_ERR_DIM_MISMATCH;

    /* A caller may tighten the threshold, never loosen it below the
     * namespace's floor. */
    float floor_ = atomic_load(&ns->min_threshold);
    float threshold = req->threshold > floor_ ? req->threshold : floor_;
    float band = atomic_load(&ns->gray_band);
    int shadow = atomic_load(&ns->shadow);
    res->threshold = threshold;
    res->shadow = shadow;
    uint32_t k = req->k > CACHE_MAX_K ? CACHE_MAX_K : req->k;
    uint64_t now = cache_now(c);
    uint64_t hash[2];
    int have_hash =
        prompt_hash(req->prompt, req->prompt_len, hash) == 0 && hash_keyed(hash);

    idx_hit hits[2 * CACHE_MAX_K];
    uint32_t n = 0;
    uint16_t found = 0;
    int exact = 0, rc = 0, empty = 0;
    float best = -INFINITY;
    cache_vec_scope scope;
    rc = cache_vec_scope_begin(c, ns, &scope);
    if (rc) return rc;
    pthread_rwlock_rdlock(&ns->lock);
    cache_entry *e = have_hash ? exact_find_locked(ns, hash, now) : NULL;
    float stored[CACHE_MAX_DIM];
    float cosine = -INFINITY;
    if (e && cache_vector_of_locked(ns, &scope, e->id, stored) == 0)
        cosine = idx_dot(vec, stored, ns->dim);
    if (e && cosine >= floor_) {
        /* The exact tier: the same question, by its text, answers without
         * a vector search and whatever the request's threshold (the text
         * is stronger evidence than the embedding, and a client asking
         * for 1.0 still gets its own question back). The namespace's floor
         * still holds, so an embedding from another model or of another
         * context never matches; the cosine reported is the true one and
         * the reply says which tier answered (PROTOCOL.md 5.10). */
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        matches[0] = (cache_match){.entry = e, .similarity = cosine, .exact = 1};
        found = 1;
        exact = 1;
    } else {
        float low = threshold < SIM_FLOOR ? threshold : SIM_FLOOR;
        rc = search_locked(ns, &scope, vec, k, req->ef, low, now, hits, &n);
        empty = ns->entries.count == 0;
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            cache_entry *h = u64map_get(&ns->entries, hits[i].label);
            if (!h) continue;
            if (hits[i].score > best) best = hits[i].score;
            if (!(hits[i].score >= threshold)) continue;
            atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
            matches[found++] = (cache_match){
                .entry = h,
                .similarity = hits[i].score,
                .borderline = band > 0.0f && hits[i].score < band,
            };
        }
    }
    pthread_rwlock_unlock(&ns->lock);
    cache_vec_scope_end(&scope);
    if (rc) return rc;

    res->count = found;
    res->best = best;
    res->have_best = best > -INFINITY;
    cache_ns_counters *cn = &ns->n;
    if (!exact) {
        /* A hit always has a best candidate; a miss may have none. */
        unsigned b = res->have_best ? sim_bucket(best)
                     : empty        ? CACHE_SIM_NONE
                                    : CACHE_SIM_LT50;
        atomic_fetch_add_explicit(&cn->sim[found ? 0 : 1][b], 1, memory_order_relaxed);
        if (res->have_best && best > 0)
            atomic_fetch_add_explicit(&cn->sim_sum_micro[found ? 0 : 1],
                                      (uint64_t)llround((double)best * 1e6),
                                      memory_order_relaxed);
    }
    if (found) touch_hit(ns, matches[0].entry, now);
    if (shadow) {
        /* Computed, counted as what it would have been, and served as a
         * miss (PROTOCOL.md 5.16). */
        if (found) {
            atomic_fetch_add(&cn->shadow_hits, 1);
            if (exact) atomic_fetch_add(&cn->shadow_exact_hits, 1);
            if (matches[0].borderline) atomic_fetch_add(&cn->shadow_borderline_hits, 1);
        }
        atomic_fetch_add(&cn->lookups, 1);
        atomic_fetch_add(&cn->misses, 1);
        return 0;
    }
    if (found) {
        atomic_fetch_add(&cn->lookups, 1);
        atomic_fetch_add(exact ? &cn->exact_hits : &cn->semantic_hits, 1);
        if (matches[0].borderline) atomic_fetch_add(&cn->borderline_hits, 1);
        /* The answer served is the best hit; it is what the hit saved. */
        account_saved(ns, matches[0].entry);
    } else if (!req->defer_miss) {
        atomic_fetch_add(&cn->lookups, 1);
        atomic_fetch_add(&cn->misses, 1);
    }
    return 0;
}

int cache_lookup(cache *c, const cache_query *req, const float *vec, cache_match *matches,
                 uint16_t *count) {
    cache_result res;
    int rc = cache_search(c, req, vec, matches, &res);
    *count = rc ? 0 : res.count;
    if (rc == 0 && res.shadow) { /* a shadow namespace serves nothing */
        for (uint16_t i = 0; i < res.count; i++)
            cache_entry_unref(matches[i].entry);
        *count = 0;
    }
    return rc;
}

void cache_count_outcome(cache *c, const uint8_t *name, uint8_t len,
                         enum cache_outcome outcome) {
    cache_ns *ns = cache_find_ns(c, name, len);
    if (!ns) return;
    atomic_fetch_add(&ns->n.lookups, 1);
    atomic_fetch_add(
        outcome == CACHE_OUTCOME_COALESCED ? &ns->n.coalesced : &ns->n.misses, 1);
}

cache_entry *cache_entry_ref(cache_entry *e) {
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

void cache_entry_release(cache_entry *e) {
    cache_entry_unref(e);
}

uint64_t cache_entry_id(const cache_entry *e) {
    return e->id;
}

uint32_t cache_entry_ns_id(const cache_entry *e) {
    return e->ns_id;
}

/* ---- deletes -----------------------------------------------------------------*/

uint64_t cache_ns_empty(cache *c, cache_ns *ns, int drop) {
    /* Clearing main waits for a snapshot writing it without the lock. */
    pthread_mutex_lock(&ns->snap_mu);
    pthread_rwlock_wrlock(&ns->lock);
    if (drop) ns->dropped = 1;
    u64map old = ns->entries;
    u64map_init(&ns->entries);
    u64map_close(&ns->exact);
    idx_clear(ns->main);
    if (ns->fresh) idx_clear(ns->fresh);
    ns->recent_count = 0;
    ns->entry_bytes = 0;
    ns->sweep_pos = 0;
    atomic_store(&ns->n.entry_hits, 0);
    atomic_fetch_sub(&c->entries_total, old.count);
    atomic_fetch_add(&c->changes, 1);
    ns->index_share = 0;
    cache_ns_charge_locked(c, ns, 1); /* nothing left: charged 0 */
    pthread_rwlock_unlock(&ns->lock);
    pthread_mutex_unlock(&ns->snap_mu);

    /* The table's references go after the lock: a lookup may still hold
     * its own reference to any of them. */
    size_t pos = 0;
    uint64_t id;
    void *val;
    while (u64map_next(&old, &pos, &id, &val))
        cache_entry_unref(val);
    uint64_t removed = old.count;
    u64map_close(&old);
    return removed;
}

int cache_delete(cache *c, const uint8_t *name, uint8_t len, uint64_t id,
                 uint32_t *ns_id) {
    cache_ns *ns = cache_find_ns(c, name, len);
    if (!ns) {
        int rc = cache_ns_quarantined(c, name, len, NULL, 0);
        return rc ? rc : DEJA_ERR_NOT_FOUND;
    }
    *ns_id = ns->ns_id;
    pthread_rwlock_wrlock(&ns->lock);
    cache_entry *e = u64map_get(&ns->entries, id);
    if (e) cache_ns_unlink_locked(c, ns, e);
    pthread_rwlock_unlock(&ns->lock);
    if (!e) return DEJA_ERR_NOT_FOUND;
    atomic_fetch_add(&ns->n.evicted[CACHE_EVICT_DELETE], 1);
    cache_entry_unref(e);
    return 0;
}

int cache_flush(cache *c, const uint8_t *name, uint8_t len, uint64_t *removed,
                uint32_t *ns_id) {
    *removed = 0;
    *ns_id = 0;
    cache_ns *ns = cache_find_ns(c, name, len);
    if (!ns) return cache_ns_quarantined(c, name, len, NULL, 0);
    *ns_id = ns->ns_id;
    *removed = cache_ns_empty(c, ns, 0);
    atomic_fetch_add(&ns->n.evicted[CACHE_EVICT_DELETE], *removed);
    return 0;
}
