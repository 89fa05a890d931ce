/* idx-labelmap.c: the label -> slot hash map shared by the index kinds.
 *
 * Every index keeps a 64-bit label per vector but stores vectors under a
 * dense 32-bit slot number (a flat row, an HNSW node id); this map finds
 * the slot of a label for remove and get. Open addressing with linear
 * probing and backward-shift deletion, so it never holds tombstones and a
 * long run of adds and removes does not slow lookups down. It is kept at
 * most half full, which keeps probes short.
 *
 * Not synchronised: the owner serialises writers (the flat index needs
 * exclusive access for writes anyway; HNSW guards the map with a
 * rwlock). */
#include <stdlib.h>

#include "idx-private.h"

#define LABELMAP_MIN_SLOTS 16u

/* Labels are the server's entry ids, often sequential; the splitmix64
 * finaliser spreads them over the table so probes stay short. */
static size_t map_home(const idx_labelmap *m, uint64_t label) {
    uint64_t h = label;
    h = (h ^ (h >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    h = (h ^ (h >> 27)) * UINT64_C(0x94d049bb133111eb);
    h ^= h >> 31;
    return (size_t)h & (m->slot_count - 1);
}

/* Returns the slot index holding label, or SIZE_MAX. */
static size_t map_slot_of(const idx_labelmap *m, uint64_t label) {
    if (m->slot_count == 0) return SIZE_MAX;
    size_t mask = m->slot_count - 1;
    for (size_t i = map_home(m, label);; i = (i + 1) & mask) {
        if (m->slots[i].value == IDX_LABELMAP_NONE) return SIZE_MAX;
        if (m->slots[i].label == label) return i;
    }
}

/* Places an entry known to be absent; a free slot exists because the
 * table is at most half full. */
static void map_place(idx_labelmap *m, uint64_t label, uint32_t value) {
    size_t mask = m->slot_count - 1;
    size_t i = map_home(m, label);
    while (m->slots[i].value != IDX_LABELMAP_NONE)
        i = (i + 1) & mask;
    m->slots[i].label = label;
    m->slots[i].value = value;
}

void idx_labelmap_init(idx_labelmap *m) {
    m->slots = NULL;
    m->slot_count = 0;
    m->count = 0;
}

void idx_labelmap_close(idx_labelmap *m) {
    free(m->slots);
    idx_labelmap_init(m);
}

int idx_labelmap_reserve(idx_labelmap *m, size_t entries) {
    if (entries > SIZE_MAX / 4) return DEJA_ERR_NOMEM;
    if (entries * 2 <= m->slot_count) return 0;
    size_t want = m->slot_count ? m->slot_count : LABELMAP_MIN_SLOTS;
    while (want < entries * 2)
        want *= 2;
    if (want > SIZE_MAX / sizeof(idx_labelmap_slot)) return DEJA_ERR_NOMEM;
    idx_labelmap_slot *slots = malloc(want * sizeof *slots);
    if (!slots) return DEJA_ERR_NOMEM;
    for (size_t i = 0; i < want; i++)
        slots[i].value = IDX_LABELMAP_NONE;

    idx_labelmap_slot *old = m->slots;
    size_t old_count = m->slot_count;
    m->slots = slots;
    m->slot_count = want;
    for (size_t i = 0; i < old_count; i++)
        if (old[i].value != IDX_LABELMAP_NONE) map_place(m, old[i].label, old[i].value);
    free(old);
    return 0;
}

uint32_t idx_labelmap_find(const idx_labelmap *m, uint64_t label) {
    size_t i = map_slot_of(m, label);
    return i == SIZE_MAX ? IDX_LABELMAP_NONE : m->slots[i].value;
}

void idx_labelmap_insert(idx_labelmap *m, uint64_t label, uint32_t value) {
    map_place(m, label, value);
    m->count++;
}

void idx_labelmap_set(idx_labelmap *m, uint64_t label, uint32_t value) {
    size_t i = map_slot_of(m, label);
    if (i != SIZE_MAX) m->slots[i].value = value;
}

int idx_labelmap_erase(idx_labelmap *m, uint64_t label) {
    size_t hole = map_slot_of(m, label);
    if (hole == SIZE_MAX) return DEJA_ERR_NOT_FOUND;
    size_t mask = m->slot_count - 1;
    for (size_t j = hole;;) {
        j = (j + 1) & mask;
        if (m->slots[j].value == IDX_LABELMAP_NONE) break;
        size_t home = map_home(m, m->slots[j].label);
        /* The entry at j may stay if its home lies cyclically in
         * (hole, j]: a probe from home reaches j without crossing the
         * hole. */
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays) continue;
        m->slots[hole] = m->slots[j];
        hole = j;
    }
    m->slots[hole].value = IDX_LABELMAP_NONE;
    m->count--;
    return 0;
}

size_t idx_labelmap_memory(const idx_labelmap *m) {
    return m->slot_count * sizeof(idx_labelmap_slot);
}
