/* cache.h: the cache engine -- namespaces, entries and their indexes.
 *
 * A namespace is a hard partition: its own dimension (fixed by its first
 * STORE), its own index and its own entry table. Lookups search exactly one
 * namespace, so no similarity can ever cross namespaces.
 *
 * Entries are immutable, reference-counted blobs (response and prompt
 * bytes). A lookup takes a reference to each hit under the namespace's read
 * lock and releases the lock before the reply is encoded, so encoding and
 * network I/O never hold a lock; deleting an entry only drops the table's
 * reference.
 *
 * Threading: every function may be called from any I/O thread. Lock order:
 * cache->ns_lock (namespace table) before ns->lock (one namespace); never
 * two namespace locks at once. */
#ifndef DEJA_CACHE_H
#define DEJA_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

typedef struct cache cache;

typedef struct cache_config {
    uint32_t default_ttl_s; /* applied to STOREs with ttl 0 */
} cache_config;

/* An entry as a lookup returns it: valid until cache_entry_release. */
typedef struct cache_entry cache_entry;

typedef struct cache_match {
    cache_entry *entry;
    float similarity;
} cache_match;

/* Milliseconds on the cache's clock (CLOCK_REALTIME by default, so that
 * expiry times stay meaningful across restarts). */
typedef uint64_t (*cache_clock_fn)(void *ctx);

int cache_create(const cache_config *cfg, cache **out);
void cache_destroy(cache *c);

/* Replaces the clock (tests drive time with it). Call before any traffic. */
void cache_set_clock(cache *c, cache_clock_fn fn, void *ctx);

/* Stores an entry from a decoded STORE request whose vector was already
 * read and normalised into vec. *id_out receives the new entry id.
 * Errors: REJECTED (completion != ok), DIM_MISMATCH, NOMEM. */
int cache_store(cache *c, const proto_store_req *req, const float *vec,
                uint64_t *id_out);

/* Finds up to req->k live entries with similarity >= req->threshold.
 * matches[0..PROTO_MAX_K) receives them best first with a reference held
 * on each; *count their number. An unknown namespace is a miss.
 * Errors: DIM_MISMATCH, NOMEM. */
int cache_lookup(cache *c, const proto_lookup_req *req, const float *vec,
                 cache_match *matches, uint16_t *count);

/* Drops a reference taken by cache_lookup. */
void cache_entry_release(cache_entry *e);

/* Read-only views of an entry held by a reference. */
uint64_t cache_entry_id(const cache_entry *e);
const uint8_t *cache_entry_response(const cache_entry *e, uint32_t *len);
const uint8_t *cache_entry_prompt(const cache_entry *e, uint32_t *len);

/* Deletes one entry of a namespace. Errors: NOT_FOUND. */
int cache_delete(cache *c, const uint8_t *ns, uint8_t ns_len, uint64_t id);

/* Deletes every entry of a namespace; *removed receives how many. An
 * unknown namespace removes 0. */
int cache_flush(cache *c, const uint8_t *ns, uint8_t ns_len, uint64_t *removed);

/* Fills stats[0..max) with counters: server-wide when ns_len is 0,
 * otherwise for that namespace (NOT_FOUND if unknown). Keys are static
 * strings. *count receives the number filled. */
int cache_stats(cache *c, const uint8_t *ns, uint8_t ns_len, proto_stat *stats,
                uint16_t max, uint16_t *count);

#endif
