/* cache-indexer.c: the threads that move freshly published entries from a
 * namespace's exact staging index into its graph.
 *
 * Why: acknowledging a STORE must not wait for a graph insertion, which
 * costs 1-2 ms of CPU per 1536-d vector. An entry is searchable from the
 * moment it is published (lookups search the staging index exactly, next
 * to the graph), and joins the graph here. Bound: the staging index is a
 * flat scan, so while inserts outpace the graph (about a thousand a second
 * per indexer thread at ef_construction 200) lookups get slower in
 * proportion to the backlog; STATS reports it as `unindexed`.
 *
 * A move: read the vector from `fresh` (read lock), insert it into the
 * graph (read lock: the graph synchronises its own inserts, and lookups go
 * on), then under the write lock drop it from `fresh`, or from the graph
 * if the entry was deleted or flushed meanwhile. */
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cache-private.h"

typedef struct move {
    cache_ns *ns;
    uint64_t id;
    int loaded; /* restart backlog: read from disk at start */
} move;

struct cache_indexer {
    cache *c;
    pthread_mutex_t mu; /* guards queue, head, len, cap, busy, stopping */
    pthread_cond_t work, idle;
    move *queue; /* ring buffer */
    size_t head, len, cap;
    unsigned busy; /* threads in the middle of a move */
    /* Moves of entries loaded at start (queued or busy): the graph's
     * restart backlog, which backpressure does not count (below). */
    size_t loaded;
    int stopping;
    int paused;       /* a snapshot is being written: no moves */
    unsigned waiting; /* STOREs blocked in cache_indexer_wait_below */
    unsigned nthreads;
    pthread_t threads[];
};

static void move_one(cache *c, const move *m, float *vec) {
    cache_ns *ns = m->ns;
    pthread_rwlock_rdlock(&ns->lock);
    int rc = idx_get(ns->fresh, m->id, vec);
    pthread_rwlock_unlock(&ns->lock);
    if (rc) return; /* deleted or flushed before its turn */

    pthread_rwlock_rdlock(&ns->lock);
    rc = idx_add(ns->main, m->id, vec);
    pthread_rwlock_unlock(&ns->lock);
    if (rc) return; /* stays in fresh, still searchable */

    atomic_fetch_add(&c->graph_inserts, 1);
    pthread_rwlock_wrlock(&ns->lock);
    if (u64map_get(&ns->entries, m->id))
        idx_remove(ns->fresh, m->id);
    else
        idx_remove(ns->main, m->id);
    /* The graph changed: the next snapshot must not be skipped. */
    atomic_fetch_add(&c->changes, 1);
    /* A drained staging index gives back the memory a burst made it take,
     * and the namespace's charge follows (the index share was measured
     * with the burst in it). */
    if (idx_count(ns->fresh) == 0) {
        idx_clear(ns->fresh);
        cache_ns_charge_locked(c, ns, 1);
    }
    pthread_rwlock_unlock(&ns->lock);
}

/* Graph building is background work: in Linux's SCHED_IDLE class a thread
 * runs only on a core nothing else wants, and is preempted at once when
 * an I/O worker wakes up, so STOREs and lookups do not queue behind graph
 * insertions. (A nice value alone still lets an insertion hold a core for
 * a scheduler slice, milliseconds.) Where SCHED_IDLE is unavailable, a
 * high nice value is the fallback. But once STOREs wait for the graph
 * (the backlog passed --max-unindexed), the graph is what the writes wait
 * for: idle-class threads would then starve whenever anything else on the
 * host keeps the cores busy (a 1M-entry load next to other work had STOREs
 * time out after 5 s), so the threads run in the normal class until no
 * STORE waits. */
static void set_background(int background) {
#ifdef SCHED_IDLE
    struct sched_param param = {.sched_priority = 0};
    if (pthread_setschedparam(pthread_self(), background ? SCHED_IDLE : SCHED_OTHER,
                              &param) == 0)
        return;
#endif
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), background ? 19 : 0);
}

static void *indexer_main(void *arg) {
    cache_indexer *ix = arg;
    int background = 1;
    pthread_setname_np(pthread_self(), "deja-indexer"); /* top -H, perf */
    set_background(1);
    float *vec = aligned_alloc(64, 4096 * sizeof(float));
    pthread_mutex_lock(&ix->mu);
    while (vec) {
        if (background != (ix->waiting == 0)) {
            background = ix->waiting == 0;
            set_background(background);
        }
        while ((ix->len == 0 || ix->paused) && !ix->stopping)
            pthread_cond_wait(&ix->work, &ix->mu);
        if (ix->stopping) break;
        move m = ix->queue[ix->head];
        ix->head = (ix->head + 1) % ix->cap;
        ix->len--;
        ix->busy++;
        pthread_mutex_unlock(&ix->mu);
        move_one(ix->c, &m, vec);
        pthread_mutex_lock(&ix->mu);
        ix->busy--;
        if (m.loaded) ix->loaded--;
        /* Waiters want "idle" or "below a limit": wake them now and then,
         * not on every move. */
        if ((ix->len == 0 && ix->busy == 0) || (ix->len & 255) == 0 ||
            (ix->paused && ix->busy == 0))
            pthread_cond_broadcast(&ix->idle);
    }
    pthread_mutex_unlock(&ix->mu);
    free(vec);
    return NULL;
}

int cache_indexer_start(cache *c, unsigned threads, cache_indexer **out) {
    cache_indexer *ix = calloc(1, sizeof *ix + threads * sizeof(pthread_t));
    if (!ix) return DEJA_ERR_NOMEM;
    ix->c = c;
    pthread_mutex_init(&ix->mu, NULL);
    pthread_cond_init(&ix->work, NULL);
    pthread_cond_init(&ix->idle, NULL);
    for (; ix->nthreads < threads; ix->nthreads++)
        if (pthread_create(&ix->threads[ix->nthreads], NULL, indexer_main, ix) != 0)
            break;
    if (ix->nthreads == 0) {
        cache_indexer_stop(ix);
        return DEJA_ERR_NOMEM;
    }
    *out = ix;
    return 0;
}

void cache_indexer_stop(cache_indexer *ix) {
    if (!ix) return;
    pthread_mutex_lock(&ix->mu);
    ix->stopping = 1;
    pthread_cond_broadcast(&ix->work);
    pthread_cond_broadcast(&ix->idle);
    pthread_mutex_unlock(&ix->mu);
    for (unsigned i = 0; i < ix->nthreads; i++)
        pthread_join(ix->threads[i], NULL);
    pthread_mutex_destroy(&ix->mu);
    pthread_cond_destroy(&ix->work);
    pthread_cond_destroy(&ix->idle);
    free(ix->queue);
    free(ix);
}

void cache_indexer_push(cache_indexer *ix, cache_ns *ns, uint64_t id, int loaded) {
    pthread_mutex_lock(&ix->mu);
    if (ix->len == ix->cap) {
        size_t cap = ix->cap ? ix->cap * 2 : 1024;
        move *grown = malloc(cap * sizeof *grown);
        if (!grown) {
            /* The entry stays in fresh: searchable, just not in the graph. */
            pthread_mutex_unlock(&ix->mu);
            return;
        }
        for (size_t i = 0; i < ix->len; i++)
            grown[i] = ix->queue[(ix->head + i) % ix->cap];
        free(ix->queue);
        ix->queue = grown;
        ix->head = 0;
        ix->cap = cap;
    }
    ix->queue[(ix->head + ix->len) % ix->cap] = (move){ns, id, loaded};
    ix->len++;
    if (loaded) ix->loaded++;
    pthread_cond_signal(&ix->work);
    pthread_mutex_unlock(&ix->mu);
}

size_t cache_indexer_backlog(cache_indexer *ix) {
    pthread_mutex_lock(&ix->mu);
    size_t n = ix->len + ix->busy;
    pthread_mutex_unlock(&ix->mu);
    return n;
}

void cache_indexer_pause(cache_indexer *ix) {
    pthread_mutex_lock(&ix->mu);
    ix->paused = 1;
    while (ix->busy > 0)
        pthread_cond_wait(&ix->idle, &ix->mu);
    pthread_mutex_unlock(&ix->mu);
}

void cache_indexer_resume(cache_indexer *ix) {
    pthread_mutex_lock(&ix->mu);
    ix->paused = 0;
    pthread_cond_broadcast(&ix->work);
    pthread_mutex_unlock(&ix->mu);
}

/* The backlog of entries published since start: what STOREs add faster
 * than the graph takes them. The restart backlog (entries loaded from disk
 * that the snapshot lacked) is not theirs to wait for: it is searchable
 * already, and making STOREs wait for it stalled writes for as long as the
 * graph took to catch up after a crash (issue #14). New entries queue
 * behind it (FIFO), so STOREs still wait once more than limit of their own
 * are queued, and then for the backlog ahead of those: the limit bounds
 * what they may add while it drains. */
void cache_indexer_wait_below(cache_indexer *ix, size_t limit) {
    pthread_mutex_lock(&ix->mu);
    ix->waiting++;
    while (ix->len + ix->busy - ix->loaded > limit && !ix->stopping)
        pthread_cond_wait(&ix->idle, &ix->mu);
    ix->waiting--;
    pthread_mutex_unlock(&ix->mu);
}

void cache_indexer_wait_idle(cache_indexer *ix) {
    pthread_mutex_lock(&ix->mu);
    while ((ix->len || ix->busy) && !ix->stopping)
        pthread_cond_wait(&ix->idle, &ix->mu);
    pthread_mutex_unlock(&ix->mu);
}
