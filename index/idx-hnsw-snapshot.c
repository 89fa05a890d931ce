/* idx-hnsw-snapshot.c: HNSW snapshots -- the graph written out and read
 * back as a normal, fully working index, so a restart skips the build
 * (about a millisecond per 1536-d vector).
 *
 * Only LIVE nodes are written, renumbered densely in slot order
 * (0..n-1), so a snapshot of an index that never removed anything is an
 * exact copy: same ids, same links, same entry point, same searches. A
 * removed node still waiting for the sweep (DELETED) is left out; a list
 * that linked to it gets, in the room its link leaves, the removed node's
 * own live links of that level, which keeps the paths through it much as
 * the sweep's repair would (without the sweep's re-selection, which a
 * const writer cannot do to the lists it reads).
 *
 * Payload, after idx-snapshot.c's header (which holds dim, M,
 * ef_construction and quant), host order = little-endian:
 *
 *   u64 n                 live nodes
 *   u32 max_level         level of the entry point
 *   u32 entry             node id, UINT32_MAX when n = 0
 *   u64 rng               the level generator's state, so that adds after
 *                         a load draw the levels they would have drawn
 *   u64 labels[n]
 *   u8  levels[n]
 *   f32:  f32 vectors[n][dim]
 *   int8: i8 codes[n][dim], f32 scales[n], f32 exact[n][dim]
 *         (exact only when the index keeps its own f32 copies; an
 *         exact_external index writes quant 2 in the header instead of
 *         1, so neither kind of file is ever read as the other)
 *   level-0 lists, for each node:     u32 count (<= 2M), u32 ids[count]
 *   upper lists, for each node with level > 0, levels 1..level:
 *                                     u32 count (<= M), u32 ids[count]
 *
 * Reading rebuilds what an add would have left: chunks (vectors straight
 * into the rows by readv), the label map, upper link arrays, states, the
 * entry point. Every id is checked (below n, not the node itself, and at
 * upper levels a node that has that level) so a file that passes its
 * checksum by design still cannot make a search read out of bounds. */
#include <stdlib.h>
#include <string.h>

#include "idx-hnsw-private.h"

/* Rows handed to one scatter read: one readv's worth of iovecs. */
#define SNAP_BATCH 1024u

static const hnsw *as_chnsw(const idx *ix) {
    return (const hnsw *)ix;
}

void hnsw_snapshot_params(const idx *ix, idx_snap_params *out) {
    const hnsw *h = as_chnsw(ix);
    out->M = h->M;
    out->ef_construction = h->ef_construction;
    out->quant = (uint32_t)h->quant + (h->exact_external ? 1u : 0u);
}

int hnsw_each_label(const idx *ix, int (*fn)(void *ctx, uint64_t label), void *ctx) {
    const hnsw *h = as_chnsw(ix);
    uint32_t used = hnsw_slots_used(h);
    for (uint32_t id = 0; id < used; id++) {
        if (hnsw_state(h, id) != HNSW_LIVE) continue;
        int rc = fn(ctx, *hnsw_label_ptr(h, id));
        if (rc) return rc;
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------------*/

static int has_id(const uint32_t *ids, uint32_t n, uint32_t id) {
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

/* Whether old id `id` may appear in a level-`level` list of the file:
 * live, and having that level. */
static int link_ok(const hnsw *h, const uint32_t *renum, uint32_t used, uint32_t id,
                   int level) {
    return id < used && renum[id] != HNSW_NONE && *hnsw_level_ptr(h, id) >= level;
}

/* The level-`level` list of old node `self`, in new ids, into out; returns
 * its length. Links to nodes that are not live are dropped, and the room
 * they leave goes to the live links of the DELETED ones among them. */
static uint32_t list_translate(const hnsw *h, const uint32_t *renum, uint32_t used,
                               uint32_t self, int level, uint32_t *out) {
    uint32_t cap = hnsw_cap(h, level);
    uint32_t raw[2 * HNSW_M_MAX], sub[2 * HNSW_M_MAX];
    uint32_t n = hnsw_list_read(hnsw_list(h, self, level), cap, raw), m = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = raw[i];
        if (id != self && link_ok(h, renum, used, id, level) &&
            !has_id(out, m, renum[id]))
            out[m++] = renum[id];
    }
    for (uint32_t i = 0; i < n && m < cap; i++) {
        uint32_t id = raw[i];
        if (id >= used || hnsw_state(h, id) != HNSW_DELETED ||
            *hnsw_level_ptr(h, id) < level)
            continue;
        uint32_t ns = hnsw_list_read(hnsw_list(h, id, level), cap, sub);
        for (uint32_t j = 0; j < ns && m < cap; j++)
            if (sub[j] != self && link_ok(h, renum, used, sub[j], level) &&
                !has_id(out, m, renum[sub[j]]))
                out[m++] = renum[sub[j]];
    }
    return m;
}

/* The node the file names as entry point: the index's own if it is live
 * and of the top level, else the lowest live id of the top level. */
static uint32_t entry_choose(const hnsw *h, const uint32_t *renum, uint32_t used,
                             int *max_level) {
    int top = -1;
    uint32_t first_top = HNSW_NONE;
    for (uint32_t id = 0; id < used; id++) {
        if (renum[id] == HNSW_NONE) continue;
        int level = *hnsw_level_ptr(h, id);
        if (level > top) top = level, first_top = id;
    }
    *max_level = top < 0 ? 0 : top;
    uint64_t e = __atomic_load_n(&((hnsw *)h)->entry, __ATOMIC_SEQ_CST);
    if (e != HNSW_ENTRY_NONE) {
        uint32_t id = (uint32_t)e;
        if (id < used && renum[id] != HNSW_NONE && *hnsw_level_ptr(h, id) == top)
            return id;
    }
    return first_top;
}

/* Writes the nodes' vectors in the file's order (see the top). */
static int vectors_write(const hnsw *h, idx_snap_writer *w, const uint32_t *renum,
                         uint32_t used) {
    size_t dim = h->base.dim;
    int int8 = h->quant == IDX_QUANT_INT8;
    int rc = 0;
    for (uint32_t id = 0; rc == 0 && id < used; id++)
        if (renum[id] != HNSW_NONE)
            rc = idx_snap_put(w, hnsw_row(h, hnsw_chunk(h, id), hnsw_slot(h, id)),
                              int8 ? dim : dim * sizeof(float));
    if (!int8) return rc;
    for (uint32_t id = 0; rc == 0 && id < used; id++) {
        if (renum[id] == HNSW_NONE) continue;
        float scale = hnsw_row_scale(h, hnsw_row(h, hnsw_chunk(h, id), hnsw_slot(h, id)));
        rc = idx_snap_put(w, &scale, sizeof scale);
    }
    for (uint32_t id = 0; rc == 0 && h->exact_stride && id < used; id++)
        if (renum[id] != HNSW_NONE)
            rc = idx_snap_put(w, hnsw_exact_ptr(h, id), dim * sizeof(float));
    return rc;
}

static int lists_write(const hnsw *h, idx_snap_writer *w, const uint32_t *renum,
                       uint32_t used) {
    uint32_t list[2 * HNSW_M_MAX];
    int rc = 0;
    for (uint32_t id = 0; rc == 0 && id < used; id++) {
        if (renum[id] == HNSW_NONE) continue;
        uint32_t n = list_translate(h, renum, used, id, 0, list);
        rc = idx_snap_put_u32(w, n);
        if (rc == 0) rc = idx_snap_put(w, list, (size_t)n * sizeof *list);
    }
    for (uint32_t id = 0; rc == 0 && id < used; id++) {
        if (renum[id] == HNSW_NONE) continue;
        int top = *hnsw_level_ptr(h, id);
        for (int level = 1; rc == 0 && level <= top; level++) {
            uint32_t n = list_translate(h, renum, used, id, level, list);
            rc = idx_snap_put_u32(w, n);
            if (rc == 0) rc = idx_snap_put(w, list, (size_t)n * sizeof *list);
        }
    }
    return rc;
}

int hnsw_snapshot_write(const idx *ix, idx_snap_writer *w) {
    const hnsw *h = as_chnsw(ix);
    uint32_t used = hnsw_slots_used(h);
    uint32_t *renum = malloc(((size_t)used + 1) * sizeof *renum);
    if (!renum) return DEJA_ERR_NOMEM;
    uint32_t n = 0;
    for (uint32_t id = 0; id < used; id++)
        renum[id] = hnsw_state(h, id) == HNSW_LIVE ? n++ : HNSW_NONE;

    int max_level;
    uint32_t entry = entry_choose(h, renum, used, &max_level);
    int rc = idx_snap_put_u64(w, n);
    if (rc == 0) rc = idx_snap_put_u32(w, (uint32_t)max_level);
    if (rc == 0) rc = idx_snap_put_u32(w, entry == HNSW_NONE ? HNSW_NONE : renum[entry]);
    if (rc == 0) rc = idx_snap_put_u64(w, __atomic_load_n(&h->rng, __ATOMIC_RELAXED));
    for (uint32_t id = 0; rc == 0 && id < used; id++)
        if (renum[id] != HNSW_NONE) rc = idx_snap_put_u64(w, *hnsw_label_ptr(h, id));
    for (uint32_t id = 0; rc == 0 && id < used; id++)
        if (renum[id] != HNSW_NONE) rc = idx_snap_put(w, hnsw_level_ptr(h, id), 1);
    if (rc == 0) rc = vectors_write(h, w, renum, used);
    if (rc == 0) rc = lists_write(h, w, renum, used);
    free(renum);
    return rc;
}

/* ---- reading ----------------------------------------------------------------*/

/* Nodes [first, first + count) lie in one chunk from first on: the run
 * a contiguous per-chunk array (labels, levels, states) covers. */
static uint32_t chunk_run(const hnsw *h, uint32_t first, uint32_t n) {
    uint32_t room = (h->chunk_mask + 1) - hnsw_slot(h, first);
    return n - first < room ? n - first : room;
}

/* Reads count elements of elem bytes for nodes 0..n-1 into place(id). */
typedef void *(*node_place_fn)(const hnsw *h, uint32_t id);

static void *place_row(const hnsw *h, uint32_t id) {
    return hnsw_row(h, hnsw_chunk(h, id), hnsw_slot(h, id));
}

static void *place_scale(const hnsw *h, uint32_t id) {
    return (char *)place_row(h, id) + h->hdr_off + HNSW_HDR_SCALE;
}

static void *place_exact(const hnsw *h, uint32_t id) {
    return hnsw_exact_ptr(h, id);
}

static int nodes_read(hnsw *h, idx_snap_reader *r, uint32_t n, node_place_fn place,
                      size_t elem) {
    void *dst[SNAP_BATCH];
    for (uint32_t first = 0; first < n; first += SNAP_BATCH) {
        uint32_t count = n - first < SNAP_BATCH ? n - first : SNAP_BATCH;
        for (uint32_t i = 0; i < count; i++)
            dst[i] = place(h, first + i);
        int rc = idx_snap_get_scatter(r, dst, count, elem);
        if (rc) return rc;
    }
    return 0;
}

/* Reads one list of node id at level into its place and checks it. */
static int list_read(hnsw *h, idx_snap_reader *r, uint32_t n, uint32_t id, int level) {
    uint32_t *list = hnsw_list(h, id, level);
    uint32_t count;
    int rc = idx_snap_get_u32(r, &count);
    if (rc) return rc;
    if (count > hnsw_cap(h, level)) return idx_snap_bad(r, "link list too long");
    rc = idx_snap_get(r, list + 1, (size_t)count * sizeof *list);
    if (rc) return rc;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t to = list[1 + i];
        if (to >= n || to == id)
            return idx_snap_bad(r, "link to a node that is not there");
        if (level > 0 && *hnsw_level_ptr(h, to) < level)
            return idx_snap_bad(r, "link to a node without that level");
    }
    list[0] = count;
    return 0;
}

/* Labels and levels, straight into each chunk's arrays; the labels go
 * into the map, and the upper link arrays are sized from the levels. */
static int nodes_meta_read(hnsw *h, idx_snap_reader *r, uint32_t n, int max_level,
                           uint32_t entry) {
    for (uint32_t first = 0; first < n;) {
        uint32_t run = chunk_run(h, first, n);
        int rc =
            idx_snap_get(r, hnsw_label_ptr(h, first), (size_t)run * sizeof(uint64_t));
        if (rc) return rc;
        first += run;
    }
    uint64_t upper_lists = 0;
    for (uint32_t first = 0; first < n;) {
        uint32_t run = chunk_run(h, first, n);
        uint8_t *levels = hnsw_level_ptr(h, first);
        int rc = idx_snap_get(r, levels, run);
        if (rc) return rc;
        for (uint32_t i = 0; i < run; i++) {
            if (levels[i] > max_level) return idx_snap_bad(r, "node above the top level");
            upper_lists += levels[i];
        }
        first += run;
    }
    if (*hnsw_level_ptr(h, entry) != max_level)
        return idx_snap_bad(r, "entry point below the top level");
    /* Each list costs at least its count word in the file: the upper
     * arrays are allocated only for lists the file can hold. */
    size_t vec = h->quant != IDX_QUANT_INT8 ? (size_t)h->base.dim * 4
                 : h->exact_stride          ? (size_t)h->base.dim * 5 + 4
                                            : (size_t)h->base.dim + 4;
    if (upper_lists > (idx_snap_left(r) - (uint64_t)n * (vec + 4)) / 4)
        return idx_snap_bad(r, "more link lists than the file holds");

    for (uint32_t id = 0; id < n; id++) {
        uint64_t label = *hnsw_label_ptr(h, id);
        if (idx_labelmap_find(&h->map, label) != IDX_LABELMAP_NONE)
            return idx_snap_bad(r, "a label appears twice");
        idx_labelmap_insert(&h->map, label, id);
        int level = *hnsw_level_ptr(h, id);
        if (level > 0 && hnsw_upper_alloc(h, id, level) != 0) return DEJA_ERR_NOMEM;
    }
    return 0;
}

int hnsw_snapshot_read(idx *ix, idx_snap_reader *r) {
    hnsw *h = (hnsw *)ix;
    uint64_t n64, rng;
    uint32_t max_level, entry;
    int rc = idx_snap_get_u64(r, &n64);
    if (rc == 0) rc = idx_snap_get_u32(r, &max_level);
    if (rc == 0) rc = idx_snap_get_u32(r, &entry);
    if (rc == 0) rc = idx_snap_get_u64(r, &rng);
    if (rc) return rc;
    if (n64 == 0) {
        if (entry != HNSW_NONE || max_level != 0)
            return idx_snap_bad(r, "entry point in an empty graph");
        h->rng = rng;
        return 0;
    }
    size_t dim = h->base.dim;
    int int8 = h->quant == IDX_QUANT_INT8;
    /* Per node at least: label, level, vector, level-0 count. Checked
     * before the chunks are allocated, so their size follows the file's. */
    int exact = int8 && h->exact_stride;
    uint64_t per_node = 8 + 1 + (!int8 ? dim * 4 : exact ? dim * 5 + 4 : dim + 4) + 4;
    uint64_t slots = (n64 + h->chunk_mask) & ~(uint64_t)h->chunk_mask;
    if (n64 > idx_snap_left(r) / per_node || slots > HNSW_NONE)
        return idx_snap_bad(r, "node count exceeds the file");
    uint32_t n = (uint32_t)n64;
    if (max_level > HNSW_MAX_LEVEL || entry >= n)
        return idx_snap_bad(r, "entry point out of range");

    rc = hnsw_storage_reserve(h, n);
    if (rc == 0) rc = idx_labelmap_reserve(&h->map, n);
    if (rc == 0) rc = nodes_meta_read(h, r, n, (int)max_level, entry);
    if (rc == 0) rc = nodes_read(h, r, n, place_row, int8 ? dim : dim * sizeof(float));
    if (rc == 0 && int8) rc = nodes_read(h, r, n, place_scale, sizeof(float));
    if (rc == 0 && exact) rc = nodes_read(h, r, n, place_exact, dim * sizeof(float));
    for (uint32_t id = 0; rc == 0 && id < n; id++)
        rc = list_read(h, r, n, id, 0);
    for (uint32_t id = 0; rc == 0 && id < n; id++) {
        int top = *hnsw_level_ptr(h, id);
        for (int level = 1; rc == 0 && level <= top; level++)
            rc = list_read(h, r, n, id, level);
    }
    if (rc) return rc;

    /* Nobody else sees the index yet: plain stores publish nothing
     * early, and whoever receives the index synchronises with us. */
    for (uint32_t first = 0; first < n;) {
        uint32_t run = chunk_run(h, first, n);
        memset(hnsw_chunk(h, first) + h->off_state + hnsw_slot(h, first), HNSW_LIVE, run);
        first += run;
    }
    h->next_fresh = n;
    h->live = n;
    h->entry = (uint64_t)max_level << 32 | entry;
    h->rng = rng;
    return 0;
}
