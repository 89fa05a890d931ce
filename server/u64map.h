/* u64map.h: an open-addressing hash map from non-zero u64 keys to pointers.
 *
 * Linear probing with backward-shift deletion (no tombstones), so lookups
 * stay short under the constant insert/delete churn of a cache. Key 0 is
 * reserved for empty slots. Not synchronised: callers hold their own lock. */
#ifndef DEJA_U64MAP_H
#define DEJA_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct u64map {
    uint64_t *keys;
    void **vals;
    size_t cap;   /* power of two, or 0 */
    size_t count;
} u64map;

void u64map_init(u64map *m);
void u64map_close(u64map *m);

/* Returns the value for key or NULL. */
void *u64map_get(const u64map *m, uint64_t key);

/* Inserts or replaces. Returns 0 or DEJA_ERR_NOMEM (map unchanged). */
int u64map_put(u64map *m, uint64_t key, void *val);

/* Removes key and returns its value, or NULL if absent. */
void *u64map_del(u64map *m, uint64_t key);

/* Bytes allocated by the map. */
size_t u64map_memory(const u64map *m);

/* Iteration: *pos starts at 0; returns 1 with *key and *val filled while slots
 * remain, 0 at the end. The map must not change during iteration. */
int u64map_next(const u64map *m, size_t *pos, uint64_t *key, void **val);

#endif
