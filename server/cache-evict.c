/* cache-evict.c: LFU eviction under memory and entry budgets.
 *
 * Like Redis's allkeys-lfu: each entry has an 8-bit logarithmic hit
 * counter (starting at CACHE_LFU_INIT, incremented with probability
 * 1 / ((counter - init) * LOG_FACTOR + 1), decremented by one per
 * DECAY_MS since the last hit), and a victim is chosen among SAMPLES
 * entries drawn at random, so eviction costs O(1) and needs no global
 * order.
 *
 * Beyond Redis: among sampled entries whose counters are within one of
 * the lowest (a near-tie), an entry with a near-duplicate still cached
 * (another live entry at least as similar as the namespace answers hits
 * at) goes first, since losing it costs no hits: its duplicate still
 * answers the same questions. See docs/ARCHITECTURE.md.
 *
 * Budgets: a namespace with its own max_bytes / max_entries is held to
 * them by evicting only its own entries; the server-wide --max-memory and
 * --max-entries evict from namespaces without a budget of their own, so a
 * flood into one namespace never evicts a budgeted namespace's entries. */
#include <stdlib.h>

#include "cache-private.h"

#define LOG_FACTOR 10u
#define DECAY_MS 60000u
#define SAMPLES 16u
#define TIE_CHECKS 3u
#define MAX_EVICT_PER_CALL 64u
#define DUP_THRESHOLD_MIN 0.85f

/* A cheap per-thread generator: eviction sampling need not be strong. */
static uint64_t rng_next(void) {
    static _Thread_local uint64_t s;
    if (s == 0) s = (uint64_t)(uintptr_t)&s * 0x9E3779B97F4A7C15ULL | 1;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

uint8_t cache_lfu_value(const cache_entry *e, uint64_t now_ms) {
    uint8_t v = atomic_load_explicit(&e->lfu, memory_order_relaxed);
    uint64_t last = atomic_load_explicit(&e->last_hit_ms, memory_order_relaxed);
    uint64_t periods = now_ms > last ? (now_ms - last) / DECAY_MS : 0;
    return periods >= v ? 0 : (uint8_t)(v - periods);
}

void cache_lfu_touch(cache_entry *e, uint64_t now_ms) {
    uint8_t v = cache_lfu_value(e, now_ms);
    if (v < 255) {
        double base = v > CACHE_LFU_INIT ? v - CACHE_LFU_INIT : 0;
        double p = 1.0 / (base * LOG_FACTOR + 1.0);
        if ((double)(rng_next() >> 11) / 9007199254740992.0 < p) v++;
    }
    /* Racing hits may lose an increment: the counter is an estimate. */
    atomic_store_explicit(&e->lfu, v, memory_order_relaxed);
    atomic_store_explicit(&e->last_hit_ms, now_ms, memory_order_relaxed);
}

typedef struct sample {
    cache_entry *e;
    uint8_t lfu;
    uint64_t last_hit;
} sample;

static int sample_order(const void *a, const void *b) {
    const sample *x = a, *y = b;
    if (x->lfu != y->lfu) return x->lfu < y->lfu ? -1 : 1;
    return (x->last_hit > y->last_hit) - (x->last_hit < y->last_hit);
}

/* Draws up to SAMPLES distinct entries at random slots. ns->lock held. */
static uint32_t draw_locked(cache_ns *ns, uint64_t now, sample *out) {
    const u64map *m = &ns->entries;
    uint32_t n = 0;
    if (m->count == 0) return 0;
    for (uint32_t tries = 0; tries < SAMPLES * 2 && n < SAMPLES && n < m->count;
         tries++) {
        size_t pos = (size_t)(rng_next() % m->cap);
        uint64_t id;
        void *val;
        if (!u64map_next(m, &pos, &id, &val)) {
            pos = 0;
            if (!u64map_next(m, &pos, &id, &val)) break;
        }
        int seen = 0;
        for (uint32_t i = 0; i < n && !seen; i++)
            seen = out[i].e == val;
        if (seen) continue;
        cache_entry *e = val;
        out[n].e = e;
        out[n].lfu = cache_lfu_value(e, now);
        out[n].last_hit = atomic_load_explicit(&e->last_hit_ms, memory_order_relaxed);
        n++;
    }
    return n;
}

/* Whether another live entry is at least the namespace's hit threshold
 * similar to e. ns->lock held for reading. */
static int has_near_duplicate_locked(cache_ns *ns, const cache_vec_scope *scope,
                                     const cache_entry *e, uint64_t now) {
    float vec[CACHE_MAX_DIM];
    if (cache_vector_of_locked(ns, scope, e->id, vec) != 0) return 0;
    float thr =
        ns->min_threshold > DUP_THRESHOLD_MIN ? ns->min_threshold : DUP_THRESHOLD_MIN;
    idx_hit hits[2];
    uint32_t n = 0, nf = 0;
    if (idx_search_src(ns->main, vec, 2, 0, thr, NULL, NULL, cache_vec_src(scope), hits,
                       &n) != 0)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        cache_entry *o = u64map_get(&ns->entries, hits[i].label);
        if (hits[i].label != e->id && o) {
            uint64_t exp = atomic_load(&o->expires_ms);
            if (exp == 0 || exp > now) return 1;
        }
    }
    if (ns->fresh && idx_search(ns->fresh, vec, 2, thr, NULL, NULL, hits, &nf) == 0)
        for (uint32_t i = 0; i < nf; i++)
            if (hits[i].label != e->id && u64map_get(&ns->entries, hits[i].label))
                return 1;
    return 0;
}

/* Evicts one entry of ns. Returns 1 if it did. */
static int evict_one(cache *c, cache_ns *ns) {
    uint64_t now = cache_now(c);
    sample s[SAMPLES];
    /* Without a scope the duplicate check finds nothing: plain LFU. */
    cache_vec_scope scope;
    if (cache_vec_scope_begin(c, ns, &scope) != 0) scope.scope = NULL;
    pthread_rwlock_rdlock(&ns->lock);
    uint32_t n = draw_locked(ns, now, s);
    cache_entry *victim = NULL;
    if (n) {
        qsort(s, n, sizeof *s, sample_order);
        victim = s[0].e;
        for (uint32_t i = 0; i < n && i < TIE_CHECKS && s[i].lfu <= s[0].lfu + 1; i++) {
            if (has_near_duplicate_locked(ns, &scope, s[i].e, now)) {
                victim = s[i].e;
                break;
            }
        }
        atomic_fetch_add_explicit(&victim->refs, 1, memory_order_relaxed);
    }
    pthread_rwlock_unlock(&ns->lock);
    cache_vec_scope_end(&scope);
    if (!victim) return 0;

    /* Between the locks the entry may have gone (deleted, replaced). */
    pthread_rwlock_wrlock(&ns->lock);
    int present = u64map_get(&ns->entries, victim->id) == victim;
    if (present) cache_ns_unlink_locked(c, ns, victim);
    pthread_rwlock_unlock(&ns->lock);
    if (present) {
        if (c->cfg.on_evict) c->cfg.on_evict(c->cfg.evict_ctx, ns->ns_id, victim->id);
        atomic_fetch_add(&ns->n.evicted[CACHE_EVICT_LFU], 1);
        cache_entry_unref(victim); /* the table's reference */
    }
    cache_entry_unref(victim); /* ours */
    return present;
}

static int ns_over_budget(cache_ns *ns) {
    pthread_rwlock_rdlock(&ns->lock);
    int over = (ns->config.max_entries && ns->entries.count > ns->config.max_entries) ||
               (ns->config.max_bytes && ns->mem_charged > ns->config.max_bytes);
    pthread_rwlock_unlock(&ns->lock);
    return over;
}

static int has_own_budget(const cache_ns *ns) {
    return ns->config.max_entries || ns->config.max_bytes;
}

static int server_over_budget(cache *c) {
    uint64_t max_entries = atomic_load(&c->budget_entries);
    uint64_t max_memory = atomic_load(&c->budget_memory);
    return (max_entries && atomic_load(&c->entries_total) > max_entries) ||
           (max_memory && atomic_load(&c->mem_total) > max_memory);
}

/* For the server-wide budget: the largest namespace without a budget of
 * its own (that is where the entries to spare are), or NULL. */
static cache_ns *largest_unbudgeted(cache *c) {
    cache_ns *best = NULL;
    size_t best_count = 0;
    pthread_rwlock_rdlock(&c->ns_lock);
    for (size_t i = 0; i < c->ns_count; i++) {
        cache_ns *ns = c->ns[i];
        if (has_own_budget(ns)) continue;
        size_t count = ns->entries.count; /* a hint; read without its lock */
        if (!best || count > best_count) {
            best = ns;
            best_count = count;
        }
    }
    pthread_rwlock_unlock(&c->ns_lock);
    return best;
}

void cache_enforce_budgets(cache *c, cache_ns *ns) {
    unsigned evicted = 0;
    if (has_own_budget(ns))
        while (evicted < MAX_EVICT_PER_CALL && ns_over_budget(ns) && evict_one(c, ns))
            evicted++;
    while (evicted < MAX_EVICT_PER_CALL && server_over_budget(c)) {
        cache_ns *from = largest_unbudgeted(c);
        /* Only budgeted namespaces left: each answers to its own budget. */
        if (!from || !evict_one(c, from)) break;
        evicted++;
    }
}
