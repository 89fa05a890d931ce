/* deja-u64map.c: open-addressing u64 -> u64 map (see deja-u64map.h). */
#include "deja-u64map.h"

#include <stdlib.h>

#include "deja-errors.h"

#define MIN_SLOTS 16u

/* Keys are often sequential (entry ids); the splitmix64 finaliser spreads
 * them over the table so probe runs stay short. */
static size_t home_of(uint64_t key, size_t cap) {
    key = (key ^ (key >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    key = (key ^ (key >> 27)) * UINT64_C(0x94d049bb133111eb);
    key ^= key >> 31;
    return (size_t)key & (cap - 1);
}

/* The slot holding key, or SIZE_MAX. */
static size_t slot_of(const deja_u64map *m, uint64_t key) {
    if (m->cap == 0) return SIZE_MAX;
    size_t mask = m->cap - 1;
    for (size_t i = home_of(key, m->cap);; i = (i + 1) & mask) {
        if (m->slots[i].val == DEJA_U64MAP_NONE) return SIZE_MAX;
        if (m->slots[i].key == key) return i;
    }
}

/* Places a key known to be absent into a table with a free slot. */
static void place(deja_u64map_slot *slots, size_t cap, uint64_t key, uint64_t val) {
    size_t i = home_of(key, cap);
    while (slots[i].val != DEJA_U64MAP_NONE)
        i = (i + 1) & (cap - 1);
    slots[i].key = key;
    slots[i].val = val;
}

static int fits(size_t entries, size_t cap) {
    return entries <= cap / 10 * 7 + cap % 10 * 7 / 10;
}

void deja_u64map_init(deja_u64map *m) {
    m->slots = NULL;
    m->cap = 0;
    m->count = 0;
}

void deja_u64map_close(deja_u64map *m) {
    free(m->slots);
    deja_u64map_init(m);
}

int deja_u64map_reserve(deja_u64map *m, size_t entries) {
    if (fits(entries, m->cap)) return 0;
    if (entries > SIZE_MAX / 4 / sizeof(deja_u64map_slot)) return DEJA_ERR_NOMEM;
    size_t cap = m->cap ? m->cap : MIN_SLOTS;
    while (!fits(entries, cap))
        cap *= 2;
    deja_u64map_slot *slots = malloc(cap * sizeof *slots);
    if (!slots) return DEJA_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++)
        slots[i].val = DEJA_U64MAP_NONE;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].val != DEJA_U64MAP_NONE)
            place(slots, cap, m->slots[i].key, m->slots[i].val);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

uint64_t deja_u64map_get(const deja_u64map *m, uint64_t key) {
    size_t i = slot_of(m, key);
    return i == SIZE_MAX ? DEJA_U64MAP_NONE : m->slots[i].val;
}

int deja_u64map_put(deja_u64map *m, uint64_t key, uint64_t val) {
    if (val == DEJA_U64MAP_NONE) return DEJA_ERR_INVALID_ARG;
    size_t i = slot_of(m, key);
    if (i != SIZE_MAX) {
        m->slots[i].val = val;
        return 0;
    }
    if (!fits(m->count + 1, m->cap)) {
        size_t want = m->count + 1 > m->cap ? m->count + 1 : m->cap; /* doubles */
        int rc = deja_u64map_reserve(m, want);
        if (rc) return rc;
    }
    place(m->slots, m->cap, key, val);
    m->count++;
    return 0;
}

uint64_t deja_u64map_del(deja_u64map *m, uint64_t key) {
    size_t hole = slot_of(m, key);
    if (hole == SIZE_MAX) return DEJA_U64MAP_NONE;
    uint64_t val = m->slots[hole].val;
    size_t mask = m->cap - 1;
    for (size_t j = (hole + 1) & mask; m->slots[j].val != DEJA_U64MAP_NONE;
         j = (j + 1) & mask) {
        /* The key at j may stay if its home lies cyclically in (hole, j]:
         * a probe from its home reaches j without crossing the hole. */
        size_t home = home_of(m->slots[j].key, m->cap);
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays) continue;
        m->slots[hole] = m->slots[j];
        hole = j;
    }
    m->slots[hole].val = DEJA_U64MAP_NONE;
    m->count--;
    return val;
}

size_t deja_u64map_memory(const deja_u64map *m) {
    return m->cap * sizeof(deja_u64map_slot);
}

int deja_u64map_next(const deja_u64map *m, size_t *pos, uint64_t *key, uint64_t *val) {
    for (size_t i = *pos; i < m->cap; i++) {
        if (m->slots[i].val != DEJA_U64MAP_NONE) {
            *key = m->slots[i].key;
            *val = m->slots[i].val;
            *pos = i + 1;
            return 1;
        }
    }
    *pos = m->cap;
    return 0;
}
