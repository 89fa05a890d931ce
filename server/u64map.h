/* u64map.h: the cache's id -> pointer map, a typed view of the project's
 * one u64 map (common/deja-u64map.h). Not synchronised: callers hold their
 * own lock. Key 0 is never an entry id. */
#ifndef DEJA_SERVER_U64MAP_H
#define DEJA_SERVER_U64MAP_H

#include <stddef.h>
#include <stdint.h>

#include "deja-u64map.h"

typedef deja_u64map u64map;

static inline void u64map_init(u64map *m) {
    deja_u64map_init(m);
}
static inline void u64map_close(u64map *m) {
    deja_u64map_close(m);
}

/* Returns the value for key or NULL. */
static inline void *u64map_get(const u64map *m, uint64_t key) {
    uint64_t v = deja_u64map_get(m, key);
    return v == DEJA_U64MAP_NONE ? NULL : (void *)(uintptr_t)v;
}

/* Inserts or replaces. Returns 0 or DEJA_ERR_NOMEM (map unchanged). */
static inline int u64map_put(u64map *m, uint64_t key, void *val) {
    return deja_u64map_put(m, key, (uint64_t)(uintptr_t)val);
}

/* Removes key and returns its value, or NULL if absent. */
static inline void *u64map_del(u64map *m, uint64_t key) {
    uint64_t v = deja_u64map_del(m, key);
    return v == DEJA_U64MAP_NONE ? NULL : (void *)(uintptr_t)v;
}

/* Bytes allocated by the map. */
static inline size_t u64map_memory(const u64map *m) {
    return deja_u64map_memory(m);
}

/* Iteration: *pos starts at 0; returns 1 with *key and *val filled while
 * slots remain, 0 at the end. */
static inline int u64map_next(const u64map *m, size_t *pos, uint64_t *key, void **val) {
    uint64_t v;
    if (!deja_u64map_next(m, pos, key, &v)) return 0;
    *val = (void *)(uintptr_t)v;
    return 1;
}

#endif
