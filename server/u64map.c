/* u64map.c: open-addressing u64 -> pointer map (see u64map.h). */
#include "u64map.h"

#include <stdlib.h>

#include "deja-errors.h"

/* A 64-bit finaliser spreads sequential entry ids over the table. */
static size_t slot_of(uint64_t key, size_t cap) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

void u64map_init(u64map *m) {
    m->keys = NULL;
    m->vals = NULL;
    m->cap = 0;
    m->count = 0;
}

void u64map_close(u64map *m) {
    free(m->keys);
    free(m->vals);
    u64map_init(m);
}

void *u64map_get(const u64map *m, uint64_t key) {
    if (m->cap == 0 || key == 0) return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == 0) return NULL;
    }
}

static void insert_fresh(uint64_t *keys, void **vals, size_t cap, uint64_t key,
                         void *val) {
    size_t i = slot_of(key, cap);
    while (keys[i] != 0) i = (i + 1) & (cap - 1);
    keys[i] = key;
    vals[i] = val;
}

static int grow(u64map *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint64_t *keys = calloc(cap, sizeof *keys);
    void **vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return DEJA_ERR_NOMEM;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) insert_fresh(keys, vals, cap, m->keys[i], m->vals[i]);
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int u64map_put(u64map *m, uint64_t key, void *val) {
    if (key == 0) return DEJA_ERR_INVALID_ARG;
    if (m->cap) {
        for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
            if (m->keys[i] == key) {
                m->vals[i] = val;
                return 0;
            }
            if (m->keys[i] == 0) break;
        }
    }
    /* Keep the load factor under 0.7 so probe runs stay short. */
    if ((m->count + 1) * 10 > m->cap * 7) {
        int rc = grow(m);
        if (rc) return rc;
    }
    insert_fresh(m->keys, m->vals, m->cap, key, val);
    m->count++;
    return 0;
}

void *u64map_del(u64map *m, uint64_t key) {
    if (m->cap == 0 || key == 0) return NULL;
    size_t mask = m->cap - 1, i = slot_of(key, m->cap);
    while (m->keys[i] != key) {
        if (m->keys[i] == 0) return NULL;
        i = (i + 1) & mask;
    }
    void *val = m->vals[i];
    /* Backward-shift: pull later members of the probe run into the hole
     * when their home slot does not lie cyclically in (hole, j]. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
        size_t home = slot_of(m->keys[j], m->cap);
        int stays = (hole <= j) ? (hole < home && home <= j)
                                : (hole < home || home <= j);
        if (!stays) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->keys[hole] = 0;
    m->vals[hole] = NULL;
    m->count--;
    return val;
}

size_t u64map_memory(const u64map *m) {
    return m->cap * (sizeof(uint64_t) + sizeof(void *));
}

int u64map_next(const u64map *m, size_t *pos, uint64_t *key, void **val) {
    for (size_t i = *pos; i < m->cap; i++) {
        if (m->keys[i]) {
            *key = m->keys[i];
            *val = m->vals[i];
            *pos = i + 1;
            return 1;
        }
    }
    *pos = m->cap;
    return 0;
}
