/* cache-private.h: the structures shared by the cache engine's files
 * (cache.c: namespaces and entries; cache-indexer.c: the threads that move
 * fresh entries into the graph). Not a public API. */
#ifndef DEJA_CACHE_PRIVATE_H
#define DEJA_CACHE_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache.h"
#include "idx.h"
#include "u64map.h"

typedef struct cache_indexer cache_indexer;

struct cache_entry {
    atomic_uint refs;
    uint64_t id;
    uint64_t created_ms;
    uint64_t expires_ms; /* 0 = never */
    uint32_t input_tokens;
    uint32_t output_tokens;
    uint64_t cost_micro_usd;
    uint32_t prompt_len;
    uint32_t response_len;
    /* prompt bytes, NUL, response bytes, NUL */
    uint8_t data[];
};

typedef struct cache_ns {
    char name[PROTO_MAX_NS_LEN + 1];
    uint8_t name_len;
    uint32_t dim;
    uint32_t ns_id;         /* key prefix of its entries on disk */
    uint64_t created_ms;
    atomic_int persisted;   /* its record is on disk */
    /* lock guards entries, entry_bytes, fresh, and main when main is not
     * concurrent. A concurrent main (HNSW) is searched and extended under
     * the read lock (it synchronises itself); cleared, and pruned of
     * deleted labels, under the write lock. */
    pthread_rwlock_t lock;
    idx *main;  /* the namespace's index (HNSW by default) */
    idx *fresh; /* exact index of entries not yet in main; NULL when main
                 * takes inserts directly (flat) */
    u64map entries; /* entry id -> cache_entry* (the table's reference) */
    size_t entry_bytes;
    atomic_uint_fast64_t stores, lookups, hits, misses, deletes;
} cache_ns;

struct cache {
    cache_config cfg;
    pthread_rwlock_t ns_lock; /* guards ns, ns_count, ns_cap */
    cache_ns **ns;
    size_t ns_count, ns_cap;
    atomic_uint_fast64_t next_id;
    atomic_uint_fast32_t next_ns_id;
    atomic_uint_fast64_t rejected;
    cache_clock_fn clock;
    void *clock_ctx;
    cache_indexer *indexer;
};

/* ---- the indexer (cache-indexer.c) ----------------------------------------
 * A STORE must not wait for a graph insertion (1-2 ms of CPU for a 1536-d
 * vector at ef_construction 200), so a published entry goes first into its
 * namespace's exact `fresh` index, which lookups search along with the
 * graph, and indexer threads move it into the graph in the background. */

int cache_indexer_start(cache *c, unsigned threads, cache_indexer **out);

/* Finishes nothing: drops the queue and joins the threads. Entries still
 * in `fresh` stay searchable there. */
void cache_indexer_stop(cache_indexer *ix);

/* Queues entry id of ns for the graph. */
void cache_indexer_push(cache_indexer *ix, cache_ns *ns, uint64_t id);

/* Entries queued or being moved. */
size_t cache_indexer_backlog(cache_indexer *ix);

/* Blocks until the queue is empty and no move is in progress (tests,
 * benchmarks, shutdown). */
void cache_indexer_wait_idle(cache_indexer *ix);

#endif
