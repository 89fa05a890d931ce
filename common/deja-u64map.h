/* deja-u64map.h: the one hash map from 64-bit keys to 64-bit values.
 *
 * The index finds a vector's slot by its label with it, the cache finds an
 * entry by its id. Open addressing with linear probing and backward-shift
 * deletion, so it never holds tombstones and the constant insert/delete
 * churn of a cache does not lengthen probes; it is kept at most 70% full.
 * Any key is allowed; the value DEJA_U64MAP_NONE marks a free slot and
 * cannot be stored. Not synchronised: the owner serialises writers. */
#ifndef DEJA_U64MAP_H
#define DEJA_U64MAP_H

#include <stddef.h>
#include <stdint.h>

#define DEJA_U64MAP_NONE UINT64_MAX

typedef struct deja_u64map_slot {
    uint64_t key;
    uint64_t val; /* DEJA_U64MAP_NONE if the slot is free */
} deja_u64map_slot;

typedef struct deja_u64map {
    deja_u64map_slot *slots; /* cap is 0 or a power of two */
    size_t cap;
    size_t count;
} deja_u64map;

void deja_u64map_init(deja_u64map *m);
void deja_u64map_close(deja_u64map *m);

/* Makes room for `entries` keys in all, so that puts of new keys up to
 * that count cannot fail. 0 or DEJA_ERR_NOMEM (map unchanged). */
int deja_u64map_reserve(deja_u64map *m, size_t entries);

/* The value of key, or DEJA_U64MAP_NONE. */
uint64_t deja_u64map_get(const deja_u64map *m, uint64_t key);

/* Inserts or replaces. 0, DEJA_ERR_INVALID_ARG for val DEJA_U64MAP_NONE,
 * or DEJA_ERR_NOMEM (map unchanged). */
int deja_u64map_put(deja_u64map *m, uint64_t key, uint64_t val);

/* Removes key and returns its value, or DEJA_U64MAP_NONE if absent. */
uint64_t deja_u64map_del(deja_u64map *m, uint64_t key);

/* Bytes allocated by the map. */
size_t deja_u64map_memory(const deja_u64map *m);

/* Iteration: *pos starts at 0; returns 1 with *key and *val filled while
 * slots remain, 0 at the end. Removing the key just returned moves later
 * keys back, so a walk that removes may miss some (never repeats none). */
int deja_u64map_next(const deja_u64map *m, size_t *pos, uint64_t *key, uint64_t *val);

#endif
