/* srv-auth.c: the guard against token guessing -- a table of recent AUTH
 * failures per source address that spaces out verdicts.
 *
 * A source with no recent failure gets its verdict at once. After a failure
 * every further AUTH from that source is answered in turn, one verdict per
 * penalty interval (25 ms after the first failure, doubling per failure up
 * to SRV_AUTH_MAX_PENALTY_MS), and at most SRV_AUTH_MAX_PENDING may wait at
 * a time; more are refused BUSY without being evaluated. Successful AUTHs
 * from such a source wait in the same line, so opening many connections and
 * reading success from the fast replies does not work around the spacing.
 * Failures are forgotten after SRV_AUTH_FORGET_MS without one.
 *
 * A source is an IPv4 address, an IPv6 /64, or the peer uid of a Unix
 * socket. The table is small and fixed; when it is full the least recently
 * failing source in a probe window is forgotten. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "srv-private.h"

#define GUARD_SLOTS 1024u
#define GUARD_PROBE 8u

typedef struct guard_slot {
    srv_source src;
    int used;
    uint32_t failures;
    uint32_t pending;
    uint64_t next_free_ms; /* earliest time of the next verdict */
    uint64_t last_fail_ms;
} guard_slot;

struct srv_auth_guard {
    pthread_mutex_t mu;
    guard_slot slots[GUARD_SLOTS];
};

int srv_auth_guard_create(srv_auth_guard **out) {
    srv_auth_guard *g = calloc(1, sizeof *g);
    if (!g) return DEJA_ERR_NOMEM;
    pthread_mutex_init(&g->mu, NULL);
    *out = g;
    return 0;
}

void srv_auth_guard_destroy(srv_auth_guard *g) {
    if (!g) return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static uint64_t penalty_ms(uint32_t failures) {
    uint32_t shift = failures > 1 ? failures - 1 : 0;
    if (shift > 16) shift = 16;
    uint64_t p = 25ull << shift;
    return p < SRV_AUTH_MAX_PENALTY_MS ? p : SRV_AUTH_MAX_PENALTY_MS;
}

/* Finds the source's slot, or claims one (forgetting the stalest source in
 * the probe window when all are taken). Caller holds g->mu. */
static guard_slot *slot_for_locked(srv_auth_guard *g, const srv_source *src, int create) {
    size_t h = (size_t)XXH3_64bits(src, sizeof *src) % GUARD_SLOTS;
    guard_slot *victim = NULL;
    for (unsigned i = 0; i < GUARD_PROBE; i++) {
        guard_slot *s = &g->slots[(h + i) % GUARD_SLOTS];
        if (s->used && memcmp(&s->src, src, sizeof *src) == 0) return s;
        /* Reuse a free slot first, then the one whose last failure is
         * oldest; never one with verdicts still pending. */
        if (s->used && s->pending) continue;
        if (!victim ||
            (victim->used && (!s->used || s->last_fail_ms < victim->last_fail_ms)))
            victim = s;
    }
    if (!create || !victim) return NULL;
    memset(victim, 0, sizeof *victim);
    victim->src = *src;
    victim->used = 1;
    return victim;
}

int64_t srv_auth_guard_reserve(srv_auth_guard *g, const srv_source *src, uint64_t now) {
    pthread_mutex_lock(&g->mu);
    guard_slot *s = slot_for_locked(g, src, 0);
    if (s && s->pending == 0 && now - s->last_fail_ms > SRV_AUTH_FORGET_MS)
        s->failures = 0;
    int64_t delay = 0;
    if (s && (s->failures || s->pending)) {
        if (s->pending >= SRV_AUTH_MAX_PENDING) {
            delay = -1;
        } else {
            uint64_t slot = s->next_free_ms > now ? s->next_free_ms : now;
            s->next_free_ms = slot + penalty_ms(s->failures);
            delay = (int64_t)(slot - now);
        }
    }
    if (s && delay >= 0) s->pending++;
    pthread_mutex_unlock(&g->mu);
    return delay;
}

void srv_auth_guard_verdict(srv_auth_guard *g, const srv_source *src, int ok,
                            uint64_t now) {
    pthread_mutex_lock(&g->mu);
    guard_slot *s = slot_for_locked(g, src, ok == 0);
    if (s) {
        if (s->pending) s->pending--;
        if (ok == 0) {
            s->failures++;
            s->last_fail_ms = now;
            uint64_t next = now + penalty_ms(s->failures);
            if (s->next_free_ms < next) s->next_free_ms = next;
        }
    }
    pthread_mutex_unlock(&g->mu);
}
