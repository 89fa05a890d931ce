/* cache-sweep.c: the active TTL sweeper.
 *
 * Expired entries are never served (every lookup filters them), but they
 * hold memory and disk until something removes them. cache_sweep walks the
 * namespaces round-robin in bounded slices, each under one namespace's
 * write lock for at most SLICE entries, so a sweep never pauses lookups
 * for long; the server calls it on a timer and again at once while a
 * slice keeps finding many expired entries (see srv-server.c). */
#include <stdlib.h>
#include <time.h>

#include "cache-private.h"

#define SLICE 1000u

/* The longest the sweeper waits for a namespace's write lock. Lookups and
 * graph inserts hold the read lock for microseconds; only a snapshot of a
 * namespace without a staging index holds it for long, and the sweeper
 * passes a namespace being snapshotted by (in the others its removals
 * would only queue until the graph is written). The bound covers the race
 * where a snapshot starts just after that check: the sweeper runs on the
 * main loop, which must never stall. */
#define LOCK_WAIT_NS 20000000L

static int lock_for_sweep(cache_ns *ns) {
    if (atomic_load(&ns->snapshotting)) return -1;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += LOCK_WAIT_NS;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    return pthread_rwlock_timedwrlock(&ns->lock, &until) == 0 ? 0 : -1;
}

/* Sweeps up to budget entries of one namespace; returns how many it
 * examined and sets *wrapped when it reached the end of the table. A
 * namespace the sweeper cannot lock soon (a snapshot is being written) is
 * left for a later tick, reported as wrapped. */
static size_t sweep_ns(cache *c, cache_ns *ns, size_t budget, size_t *expired,
                       int *wrapped) {
    cache_entry *dead[SLICE];
    size_t ndead = 0, examined = 0;
    uint64_t now = cache_now(c);
    if (budget > SLICE) budget = SLICE;

    if (lock_for_sweep(ns) != 0) {
        *wrapped = 1;
        return 0;
    }
    size_t pos = ns->sweep_pos;
    uint64_t id;
    void *val;
    *wrapped = 0;
    while (examined < budget) {
        if (!u64map_next(&ns->entries, &pos, &id, &val)) {
            *wrapped = 1;
            pos = 0;
            break;
        }
        examined++;
        cache_entry *e = val;
        uint64_t exp = atomic_load_explicit(&e->expires_ms, memory_order_relaxed);
        if (exp && exp <= now) dead[ndead++] = e;
    }
    /* Unlink after the walk: removal reorders the table under the cursor.
     * Anything the reordering makes the cursor skip is met next round. */
    for (size_t i = 0; i < ndead; i++)
        cache_ns_unlink_locked(c, ns, dead[i]);
    ns->sweep_pos = pos;
    pthread_rwlock_unlock(&ns->lock);

    for (size_t i = 0; i < ndead; i++) {
        if (c->cfg.on_evict) c->cfg.on_evict(c->cfg.evict_ctx, ns->ns_id, dead[i]->id);
        cache_entry_unref(dead[i]);
    }
    atomic_fetch_add(&ns->n.evicted[CACHE_EVICT_TTL], ndead);
    *expired += ndead;
    return examined;
}

size_t cache_sweep(cache *c, size_t budget, size_t *expired) {
    *expired = 0;
    size_t examined = 0;
    /* Namespaces are visited in table order from where the last call
     * stopped; each gets slices until it wraps or the budget is spent. */
    for (size_t visited = 0; examined < budget; visited++) {
        pthread_rwlock_rdlock(&c->ns_lock);
        size_t count = c->ns_count;
        cache_ns *ns = NULL;
        if (count && visited < count) {
            size_t at = atomic_load(&c->sweep_ns);
            if (at >= count) atomic_store(&c->sweep_ns, at = 0);
            ns = c->ns[at];
        }
        pthread_rwlock_unlock(&c->ns_lock);
        if (!ns) break;
        int wrapped = 0;
        while (examined < budget && !wrapped) {
            size_t n = sweep_ns(c, ns, budget - examined, expired, &wrapped);
            examined += n;
            if (n == 0) break;
        }
        if (wrapped) atomic_fetch_add(&c->sweep_ns, 1); /* the sweeper's own cursor */
    }
    return examined;
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

size_t cache_sweep_tick(cache *c, size_t slice, uint32_t max_ms) {
    uint64_t start = mono_ms();
    size_t total = 0;
    for (;;) {
        size_t expired = 0;
        size_t examined = cache_sweep(c, slice, &expired);
        total += expired;
        /* Like Redis's active expiry: keep going while more than a tenth
         * of what a slice examines has expired, within the time limit. */
        if (examined == 0 || expired * 10 < examined) break;
        if (mono_ms() - start >= max_ms) break;
    }
    return total;
}
