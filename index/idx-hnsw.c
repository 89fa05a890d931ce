/* idx-hnsw.c: deja's HNSW index (IDX_KIND_HNSW) -- the idx_ops, the entry
 * point, and int8 quantisation. The graph algorithms are in
 * idx-hnsw-graph.c and the storage in idx-hnsw-store.c.
 *
 * Scores are inner products of L2-normalised vectors (cosine). Level 0
 * holds up to 2M links per node, upper levels M; a new node gets M links
 * on each of its levels, chosen by the paper's heuristic from
 * ef_construction candidates; levels are drawn with mult = 1 / ln(M)
 * from a seeded generator, so a single-threaded build is reproducible.
 *
 * CONCURRENCY. Searches, adds and removes may all run at once
 * (concurrent_writes = 1); only clear and destroy need exclusive access.
 *
 *  - Searches take no lock and write no shared memory except their own
 *    context's epoch slot, so they never wait for each other or for
 *    writers. They read link lists with atomic loads, without a version
 *    check: a list caught mid-update is a mix of old and new ids, each a
 *    node some writer linked, which costs that one search a little recall
 *    and nothing else (the alternative, a seqlock retry, would make
 *    readers wait on writers).
 *  - Writers change one node's lists under its version word (a spinlock
 *    whose odd values mean locked), optimistically (see
 *    idx-hnsw-graph.c), and never hold two. Slot allocation and the
 *    limbo take alloc_lock; entry point changes take entry_lock; the
 *    label map has its own rwlock; the sweep runs under sweep_lock, taken
 *    with trylock so nobody waits for it (its marks are resized under
 *    alloc_lock too, which an allocation holds to mark a reused slot).
 *    Lock order: map_lock and sweep_lock each before alloc_lock; a node
 *    lock may be taken under sweep_lock, never the reverse; entry_lock is
 *    held alone.
 *  - Storage never moves (chunks), so a pointer a search holds stays
 *    valid. What can change under a search is a slot's contents, when a
 *    removed node's slot is reused. That is what node states and epochs
 *    are for.
 *
 * REMOVAL AND SLOT REUSE. A node's state (FREE, INSERTING, LIVE,
 * DELETED) is read with seq_cst loads before its vector, label, level or
 * upper links; FREE nodes are never read (searches skip them).
 *
 *   idx_remove marks the node DELETED at once: from then on it is never
 *   returned, but searches still traverse it, so the graph around it
 *   keeps working. If it was the entry point, the live node of the
 *   highest level replaces it. The node then waits in the limbo for the
 *   sweep.
 *
 *   The sweep repairs the graph. Every add and remove advances it by a
 *   few dozen nodes (while removed nodes wait), and for every list that
 *   links to a DELETED node it re-selects the list by the heuristic from
 *   its live links plus the DELETED nodes' links -- the nodes that can
 *   best replace the paths through them. Because the sweep reads every
 *   list, it finds all the links to a removed node, not only the mutual
 *   ones that the node's own lists point back to; a node removed before a
 *   pass began is unreferenced when that pass ends. (An add racing with
 *   the sweep may still store a link to it; such a link is harmless, see
 *   below.) The pass then sets the node FREE, increments the epoch
 *   counter (seq_cst) and tags the node with the old epoch E.
 *
 *   A pass is a breadth-first walk of level 0 from the entry point: a
 *   visit repairs the node's lists, then queues the live nodes its
 *   level-0 list (as repaired) links to and the walk has not reached, so
 *   the walk sees the graph as it will be once the removed nodes are
 *   gone. When the queue runs out, the pass scans the slots for live
 *   nodes the walk missed. Repairs alone can leave such nodes: one whose
 *   only in-links came from removed nodes, one pruned from every list
 *   that held it when the list was re-selected, or two near-duplicates
 *   that only link to each other. No search can find them, at any
 *   breadth. The sweep rescues each like an insert connects a new node
 *   (M neighbours by the heuristic, and it joins their lists); if none of
 *   its neighbours that the walk reached kept it, it replaces the worst
 *   link of the nearest such one. Then it is queued, so the walk goes on
 *   from it and what only it leads to is not rescued again. Every live
 *   node is thus either walked (and repaired) or rescued and walked; a
 *   node allocated in a reused slot during the pass is neither (marked
 *   NEW when allocated, skipped by the scan): it was linked after the
 *   pass began, to nodes not removed before it, so it needs no repair,
 *   and the walk may have passed the lists that link to it. Marks are a
 *   byte per slot and the queue four; the sweeper alone changes both,
 *   except the NEW bit, and resizes them at the start of a pass under
 *   alloc_lock as well. The walk's view is approximate under concurrent
 *   writers -- a node linked in after the walk passed its new in-links,
 *   or reachable only through a slot allocated fresh during the pass,
 *   looks missed and is re-connected needlessly; one that lost its last
 *   in-link after the walk reached it waits for the next pass -- but
 *   neither outcome is wrong, only extra work or a pass of delay. The
 *   sweep runs only while removed nodes wait for it, so a node that an
 *   insert's re-selection leaves unreachable when none do waits for the
 *   next removal's pass.
 *
 *   Every operation that reads nodes holds a context that announced the
 *   epoch it started in (load epoch, seq_cst store into its slot). A
 *   context that announced an epoch > E read the counter after the
 *   increment, so it sees FREE and never reads the old node; a context
 *   still announcing an epoch <= E may have read the node before it was
 *   FREE. So the slot is reused only when every active context announced
 *   an epoch > E. A context whose announcement the allocator has not seen
 *   yet is safe too: in the seq_cst total order its announcement comes
 *   after the allocator's scan, which comes after the FREE store. When no
 *   other operation is running, reuse is immediate.
 *
 *   A link that survives to a reused slot points at the new node, which
 *   is harmless: every id is checked before use, and such links go when
 *   the list is next re-selected.
 *
 *   Cost: removed nodes hold their slots for about one sweep pass (n / 64
 *   operations over n live nodes, plus n / 1024 for the scan), so under
 *   steady churn a few percent of the slots wait; each link to a removed
 *   node costs one re-selection, the same work an insert does for its
 *   neighbours. A rescue costs about an insert, and an operation does at
 *   most one; they are rare: on clustered data at cosine 0.6 none at
 *   all, and on dense near-duplicates (M 6, cosine ~0.995, the churn test)
 *   one per ~300 operations. The marks and queue add 5 bytes per slot.
 *
 * INT8. With IDX_QUANT_INT8 the level-0 rows hold int8 codes instead of
 * f32: a symmetric per-vector scale, code = round(x / s * 127) with
 * s = max|x| (kept per node as s / 127), so codes use the full range
 * whatever the vector's spread, and every node is quantised on its own
 * (no training, which suits an online index). Each component is off by
 * at most s / 254; for unit vectors the traversal score q.x is then off
 * by at most sqrt(dim) * (s_q + s_x) / 254 in the worst case, and by
 * about sqrt((s_q^2 + s_x^2) / 3) / 254 typically (independent rounding),
 * which is ~5e-4 for 1536-d embeddings. The f32 vectors live apart from
 * the rows (exact storage in the chunk, never touched by traversal) and
 * re-rank the search's ef best candidates exactly, so returned scores are
 * exact f32 cosines; get returns the f32 vector. With exact_external the
 * index keeps no f32 copies at all (codes and links only, about a quarter
 * of the bytes at 1536-d): the re-rank reads each candidate's vector from
 * the caller's source (the server's LMDB map), and skips candidates whose
 * int8 score plus the bound above (computed per candidate from the two
 * scales and the query's L1 norm) is still below min_score, since they
 * cannot reach it: a lookup with a threshold fetches only the few
 * candidates near or above it.
 *
 * FILTER AND THRESHOLD. The search's result set (ef entries, ef raised to
 * k) admits only LIVE nodes the filter accepts, and the filter is called
 * for nodes about to enter it (the best ef so far, a superset of the top
 * k). Rejected and deleted nodes are still traversed. Because rejected
 * nodes do not fill the result set, a selective filter makes the search
 * run on until it has ef accepted nodes or has exhausted the graph: it
 * degrades towards a scan instead of returning too few results.
 * min_score is applied to the final results, not to the traversal: a
 * threshold must not stop the search at the first low-scoring hop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "idx-hnsw-private.h"

#define HNSW_DEFAULT_M 16u
#define HNSW_DEFAULT_EF_CONSTRUCTION 200u
#define HNSW_DEFAULT_EF_SEARCH 64u
#define HNSW_DEFAULT_SEED UINT64_C(0x2545f4914f6cdd1d)
#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)
/* Nodes the sweep visits per add or remove while removed nodes wait for
 * it. A pass over n nodes then takes about n / 64 operations, so removed
 * nodes hold their slots for about that long: a few percent of the index
 * under steady churn, for a walk of ~64 * 33 link ids per operation. */
#define HNSW_SWEEP_BUDGET 64u

static hnsw *as_hnsw(idx *ix) {
    return (hnsw *)ix;
}
static const hnsw *as_chnsw(const idx *ix) {
    return (const hnsw *)ix;
}

/* ---- helpers ----------------------------------------------------------------*/

static int random_level(hnsw *h) {
    uint64_t z = __atomic_add_fetch(&h->rng, GOLDEN, __ATOMIC_RELAXED);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    double u = (double)((z >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
    double level = -log(u) * h->level_mult;
    return level >= HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : (int)level;
}

/* Quantises x into codes[0..dim) (zero-padded to pad bytes); returns the
 * scale s / 127 that turns codes back into values. Non-finite
 * components quantise to 0. */
static float quantize(const float *x, uint32_t dim, int8_t *codes, uint32_t pad) {
    float amax = 0.0f;
    for (uint32_t i = 0; i < dim; i++) {
        float a = fabsf(x[i]);
        if (a > amax && a <= 3.4e38f) amax = a;
    }
    memset(codes, 0, pad);
    if (amax == 0.0f) return 0.0f;
    float inv = 127.0f / amax;
    for (uint32_t i = 0; i < dim; i++) {
        float v = x[i] * inv;
        if (!(v >= -127.0f)) v = v < 0.0f ? -127.0f : 0.0f; /* -inf, NaN */
        if (v > 127.0f) v = 127.0f;
        codes[i] = (int8_t)(v >= 0.0f ? (int)(v + 0.5f) : -(int)(0.5f - v));
    }
    return amax / 127.0f;
}

static uint64_t entry_pack(uint32_t id, int level) {
    return (uint64_t)level << 32 | id;
}

/* The live node of the highest level (lowest id among equals), or NONE.
 * O(slots), run only when the entry point is removed. The caller holds a
 * context, so a node seen LIVE keeps its level while it is read. */
static uint64_t entry_pick(const hnsw *h) {
    uint64_t best = HNSW_ENTRY_NONE;
    int best_level = -1;
    uint32_t used = hnsw_slots_used(h);
    for (uint32_t id = 0; id < used; id++) {
        if (hnsw_state(h, id) != HNSW_LIVE) continue;
        int level = *hnsw_level_ptr(h, id);
        if (level > best_level) {
            best_level = level;
            best = entry_pack(id, level);
        }
    }
    return best;
}

/* Writes a new node's vector, label and level into its (FREE) slot. */
static int node_init(hnsw *h, uint32_t id, uint64_t label, int level, const float *vec) {
    int rc = hnsw_upper_alloc(h, id, level);
    if (rc != 0) return rc;
    char *chunk = hnsw_chunk(h, id);
    uint32_t slot = hnsw_slot(h, id);
    char *row = hnsw_row(h, chunk, slot);
    uint32_t dim = h->base.dim;
    if (h->quant == IDX_QUANT_INT8) {
        float scale = quantize(vec, dim, (int8_t *)row, h->vec_bytes);
        memcpy(row + h->hdr_off + HNSW_HDR_SCALE, &scale, sizeof scale);
        if (h->exact_stride) {
            float *exact = hnsw_exact_ptr(h, id);
            memcpy(exact, vec, (size_t)dim * sizeof(float));
            memset(exact + dim, 0, (size_t)(h->exact_stride - dim) * sizeof(float));
        }
    } else {
        memcpy(row, vec, (size_t)dim * sizeof(float));
        memset(row + (size_t)dim * sizeof(float), 0,
               h->vec_bytes - (size_t)dim * sizeof(float));
    }
    /* No writer touches a FREE slot's lists (any that held it has left
     * its epoch), so a plain reset suffices; the version keeps counting
     * so an old snapshot can never match. */
    __atomic_store_n((uint32_t *)(row + h->hdr_off + HNSW_HDR_LIST), 0, __ATOMIC_RELEASE);
    *hnsw_label_ptr(h, id) = label;
    *hnsw_level_ptr(h, id) = (uint8_t)level;
    return 0;
}

/* ---- the ops ----------------------------------------------------------------*/

static void hnsw_clear(idx *ix) {
    hnsw *h = as_hnsw(ix);
    hnsw_storage_free(h);
    idx_labelmap_close(&h->map);
    h->entry = HNSW_ENTRY_NONE;
    h->live = 0;
}

static void hnsw_destroy(idx *ix) {
    hnsw *h = as_hnsw(ix);
    hnsw_clear(ix);
    pthread_mutex_destroy(&h->alloc_lock);
    pthread_mutex_destroy(&h->entry_lock);
    pthread_mutex_destroy(&h->sweep_lock);
    pthread_rwlock_destroy(&h->map_lock);
    free(h);
}

static int label_present(hnsw *h, uint64_t label) {
    pthread_rwlock_rdlock(&h->map_lock);
    int present = idx_labelmap_find(&h->map, label) != IDX_LABELMAP_NONE;
    pthread_rwlock_unlock(&h->map_lock);
    return present;
}

/* Reserves the label for id; INVALID_ARG if present, NOMEM. */
static int label_claim(hnsw *h, uint64_t label, uint32_t id) {
    int rc = 0;
    pthread_rwlock_wrlock(&h->map_lock);
    if (idx_labelmap_find(&h->map, label) != IDX_LABELMAP_NONE)
        rc = DEJA_ERR_INVALID_ARG;
    else
        rc = idx_labelmap_reserve(&h->map, h->map.count + 1);
    if (rc == 0) idx_labelmap_insert(&h->map, label, id);
    pthread_rwlock_unlock(&h->map_lock);
    return rc;
}

static int hnsw_add(idx *ix, uint64_t label, const float *vec) {
    hnsw *h = as_hnsw(ix);
    if (label_present(h, label)) return DEJA_ERR_INVALID_ARG;
    hnsw_ctx *c = hnsw_ctx_enter(h);
    if (!c) return DEJA_ERR_NOMEM;
    /* Everything that can fail happens before the node becomes visible,
     * so a failed add leaves no trace in the graph. */
    uint32_t id;
    int rc = hnsw_ctx_reserve(h, c, h->ef_construction);
    if (rc == 0) rc = hnsw_slot_alloc(h, &id);
    if (rc != 0) {
        hnsw_ctx_leave(c);
        return rc;
    }
    int level = random_level(h);
    rc = node_init(h, id, label, level, vec);
    if (rc == 0) rc = label_claim(h, label, id);
    if (rc != 0) {
        hnsw_slot_unalloc(h, id);
        hnsw_ctx_leave(c);
        return rc;
    }
    /* Traversable from here on; returned only once LIVE. */
    hnsw_state_set(h, id, HNSW_INSERTING);

    uint64_t e = hnsw_entry_load(h);
    if (e == HNSW_ENTRY_NONE) {
        pthread_mutex_lock(&h->entry_lock);
        e = __atomic_load_n(&h->entry, __ATOMIC_SEQ_CST);
        if (e == HNSW_ENTRY_NONE)
            __atomic_store_n(&h->entry, entry_pack(id, level), __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&h->entry_lock);
        if (e == HNSW_ENTRY_NONE) goto live;
        e = hnsw_entry_load(h);
        if (e == HNSW_ENTRY_NONE) goto live;
    }
    hnsw_connect(h, c, id, level, e);

    if (level > (int)(e >> 32)) {
        /* Before LIVE: a remover cannot take this node yet, so the entry
         * point never names a node already removed. */
        pthread_mutex_lock(&h->entry_lock);
        uint64_t now = __atomic_load_n(&h->entry, __ATOMIC_SEQ_CST);
        if (now == HNSW_ENTRY_NONE || level > (int)(now >> 32))
            __atomic_store_n(&h->entry, entry_pack(id, level), __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&h->entry_lock);
    }
live:
    hnsw_state_set(h, id, HNSW_LIVE);
    __atomic_fetch_add(&h->live, 1, __ATOMIC_RELAXED);
    hnsw_sweep(h, c, HNSW_SWEEP_BUDGET);
    hnsw_ctx_leave(c);
    return 0;
}

static int hnsw_remove(idx *ix, uint64_t label) {
    hnsw *h = as_hnsw(ix);
    hnsw_ctx *c = hnsw_ctx_enter(h);
    if (!c) return DEJA_ERR_NOMEM;
    int rc = hnsw_ctx_reserve(h, c, 0);
    if (rc == 0) rc = hnsw_limbo_reserve(h);
    if (rc != 0) {
        hnsw_ctx_leave(c);
        return rc;
    }
    pthread_rwlock_wrlock(&h->map_lock);
    uint32_t id = idx_labelmap_find(&h->map, label);
    /* A node still being inserted counts as absent: its add has not
     * returned, so the remove is ordered before it. */
    if (id == IDX_LABELMAP_NONE || hnsw_state(h, id) != HNSW_LIVE) {
        pthread_rwlock_unlock(&h->map_lock);
        hnsw_limbo_unreserve(h);
        hnsw_ctx_leave(c);
        return DEJA_ERR_NOT_FOUND;
    }
    idx_labelmap_erase(&h->map, label);
    hnsw_state_set(h, id, HNSW_DELETED);
    __atomic_fetch_sub(&h->live, 1, __ATOMIC_RELAXED);
    pthread_rwlock_unlock(&h->map_lock);

    pthread_mutex_lock(&h->entry_lock);
    uint64_t e = __atomic_load_n(&h->entry, __ATOMIC_SEQ_CST);
    if (e != HNSW_ENTRY_NONE && (uint32_t)e == id)
        __atomic_store_n(&h->entry, entry_pick(h), __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&h->entry_lock);

    hnsw_slot_remove(h, id);
    hnsw_sweep(h, c, HNSW_SWEEP_BUDGET);
    hnsw_ctx_leave(c);
    return 0;
}

static int hnsw_get(const idx *ix, uint64_t label, float *out) {
    hnsw *h = (hnsw *)as_chnsw(ix);
    if (h->exact_external) return DEJA_ERR_INVALID_ARG;
    int rc = 0;
    /* The map lock keeps the node from being removed (hence reused)
     * while it is copied. */
    pthread_rwlock_rdlock(&h->map_lock);
    uint32_t id = idx_labelmap_find(&h->map, label);
    if (id == IDX_LABELMAP_NONE || hnsw_state(h, id) != HNSW_LIVE) {
        rc = DEJA_ERR_NOT_FOUND;
    } else {
        const void *src =
            h->quant == IDX_QUANT_INT8
                ? (const void *)hnsw_exact_ptr(h, id)
                : (const void *)hnsw_row(h, hnsw_chunk(h, id), hnsw_slot(h, id));
        memcpy(out, src, (size_t)h->base.dim * sizeof(float));
    }
    pthread_rwlock_unlock(&h->map_lock);
    return rc;
}

/* How many of the best int8 candidates are re-scored exactly. */
static uint32_t rerank_count(uint32_t k, uint32_t ef, uint32_t n) {
    uint32_t r = ef > 2 * k ? ef : 2 * k;
    return r < n ? r : n;
}

/* Re-scores res[0..n) (int8 scores, best first, LIVE when found) with the
 * exact f32 inner product, for the k best of them; a candidate removed
 * meanwhile, or whose vector the source no longer has, gets NaN, which
 * the caller drops. An index with its own f32 copies re-scores all n. An
 * exact_external one fetches only candidates that can still matter: not
 * one whose int8 score plus its error bound is below min_score, nor,
 * once k candidates are scored, below the k-th best exact score so far
 * (those get NaN too). The bound: q.x - q'.x' = q.(x - x') + (q - q').x',
 * where each component of x - x' is at most s_x / 2 (s = a vector's
 * stored scale) and |x'|_1 <= sqrt(dim) |x|_2 + dim s_x / 2, with
 * |x|_2 = 1 (the server stores unit vectors; 1% slack covers rounding).
 * kth holds the best exact scores so far, ascending (k floats). */
static void rerank(const hnsw *h, hnsw_ctx *c, const float *query, float qscale,
                   uint32_t k, float min_score, const idx_exact_source *src,
                   hnsw_pair *res, uint32_t n, float *kth) {
    uint32_t dim = h->base.dim;
    idx_dot_fn dot = idx_simd_dot_fn();
    int prune = h->exact_external;
    float q_l1 = 0.0f, root_dim = sqrtf((float)dim);
    if (prune)
        for (uint32_t i = 0; i < dim; i++)
            q_l1 += fabsf(query[i]);
    uint32_t scored = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = res[i].id;
        if (hnsw_state(h, id) != HNSW_LIVE) {
            res[i].score = NAN;
            continue;
        }
        if (prune) {
            float sx =
                hnsw_row_scale(h, hnsw_row(h, hnsw_chunk(h, id), hnsw_slot(h, id)));
            float err = q_l1 * sx * 0.5f + qscale * 0.5f * (root_dim + dim * sx * 0.5f);
            float best_possible = res[i].score + err * 1.01f + 1e-5f;
            if (best_possible < min_score || (scored == k && best_possible < kth[0])) {
                res[i].score = NAN;
                continue;
            }
        }
        const float *v;
        if (h->exact_stride) {
            v = hnsw_exact_ptr(h, id);
        } else {
            v = src->vector(src->ctx, *hnsw_label_ptr(h, id), c->scratch);
            if (!v) {
                res[i].score = NAN;
                continue;
            }
        }
        float score = dot(query, v, dim);
        res[i].score = score;
        if (!prune || !(score >= min_score)) continue;
        /* Keep the k best exact scores, ascending: kth[0] is the bar. */
        if (scored < k) {
            uint32_t j = scored++;
            while (j > 0 && kth[j - 1] > score) {
                kth[j] = kth[j - 1];
                j--;
            }
            kth[j] = score;
        } else if (score > kth[0]) {
            uint32_t j = 0;
            while (j + 1 < k && kth[j + 1] < score) {
                kth[j] = kth[j + 1];
                j++;
            }
            kth[j] = score;
        }
    }
}

static int hnsw_search(const idx *ix, const float *query, uint32_t k, uint32_t ef,
                       float min_score, idx_filter_fn filter, void *filter_ctx,
                       const idx_exact_source *src, idx_hit *out, uint32_t *nout) {
    hnsw *h = (hnsw *)as_chnsw(ix);
    if (h->exact_external && !src) return DEJA_ERR_INVALID_ARG;
    if (ef == 0) ef = h->ef_search;
    if (ef < k) ef = k;
    /* A breadth beyond the number of nodes finds nothing more; the cap
     * keeps an absurd k or ef from sizing the scratch. */
    uint32_t used = hnsw_slots_used(h);
    if (ef > used) ef = used > 0 ? used : 1;
    hnsw_ctx *c = hnsw_ctx_enter(h);
    if (!c) return DEJA_ERR_NOMEM;
    int rc = hnsw_ctx_reserve(h, c, ef);
    if (rc != 0) {
        hnsw_ctx_leave(c);
        return rc;
    }
    /* The query goes into aligned scratch in the rows' format: every
     * load of it in the kernels is then an aligned one, where a caller's
     * 16-byte aligned vector would split a cache line on each. */
    hnsw_query q = {c->query, 1.0f};
    if (h->quant == IDX_QUANT_INT8) {
        q.scale = quantize(query, h->base.dim, c->query, h->vec_bytes);
    } else {
        size_t bytes = (size_t)h->base.dim * sizeof(float);
        memcpy(c->query, query, bytes);
        memset((char *)c->query + bytes, 0, h->vec_bytes - bytes);
    }

    idx_topk top = {out, k, 0};
    uint64_t e = hnsw_entry_load(h);
    if (e != HNSW_ENTRY_NONE) {
        uint32_t cur = (uint32_t)e;
        float cur_score =
            hnsw_score_row(h, &q, hnsw_row(h, hnsw_chunk(h, cur), hnsw_slot(h, cur)));
        hnsw_greedy(h, &q, &cur, &cur_score, (int)(e >> 32), 0, HNSW_NONE);
        hnsw_accept acc = {0, HNSW_NONE, filter, filter_ctx, h};
        uint32_t n = hnsw_search_layer(h, c, &q, cur, cur_score, 0, ef, &acc);
        hnsw_pair *res = c->res.at;
        if (h->quant == IDX_QUANT_INT8) {
            hnsw_res_drain(c, n, c->work.at);
            res = c->work.at;
            n = rerank_count(k, ef, n);
            /* The k-th best bar lives in the candidate heap, unused now. */
            rerank(h, c, query, q.scale, k, min_score, src, res, n, (float *)c->cand.at);
        }
        for (uint32_t i = 0; i < n; i++) {
            float score = res[i].score;
            /* Written as !(>=) so a NaN score is dropped too. A node
             * removed since it was found is dropped as well. */
            if (!(score >= min_score) || hnsw_state(h, res[i].id) != HNSW_LIVE) continue;
            uint64_t label = *hnsw_label_ptr(h, res[i].id);
            if (idx_topk_would_enter(&top, score, label))
                idx_topk_push(&top, score, label);
        }
    }
    idx_topk_sort(&top);
    *nout = top.n;
    hnsw_ctx_leave(c);
    return 0;
}

static size_t hnsw_count(const idx *ix) {
    return __atomic_load_n(&as_chnsw(ix)->live, __ATOMIC_RELAXED);
}

static size_t hnsw_memory_op(const idx *ix) {
    return hnsw_memory(as_chnsw(ix));
}

static void hnsw_memory_info_op(const idx *ix, idx_memory_info *out) {
    hnsw_memory_split(as_chnsw(ix), out);
}

static const struct idx_ops hnsw_ops = {
    .name = "hnsw",
    .destroy = hnsw_destroy,
    .add = hnsw_add,
    .remove = hnsw_remove,
    .clear = hnsw_clear,
    .get = hnsw_get,
    .search = hnsw_search,
    .count = hnsw_count,
    .memory = hnsw_memory_op,
    .memory_info = hnsw_memory_info_op,
    .concurrent_writes = 1,
    .snapshot_params = hnsw_snapshot_params,
    .snapshot_write = hnsw_snapshot_write,
    .snapshot_read = hnsw_snapshot_read,
    .each_label = hnsw_each_label,
};

int idx_hnsw_create(const idx_config *cfg, idx **out) {
    uint32_t M = cfg->M ? cfg->M : HNSW_DEFAULT_M;
    if (M < 2 || M > HNSW_M_MAX) return DEJA_ERR_INVALID_ARG;
    if (cfg->quant != IDX_QUANT_F32 && cfg->quant != IDX_QUANT_INT8)
        return DEJA_ERR_INVALID_ARG;
    hnsw *h = calloc(1, sizeof *h);
    if (!h) return DEJA_ERR_NOMEM;
    h->base.ops = &hnsw_ops;
    h->base.kind = IDX_KIND_HNSW;
    h->base.dim = cfg->dim;
    h->M = M;
    h->M0 = 2 * M;
    h->ef_construction =
        cfg->ef_construction ? cfg->ef_construction : HNSW_DEFAULT_EF_CONSTRUCTION;
    h->ef_search = cfg->ef_search ? cfg->ef_search : HNSW_DEFAULT_EF_SEARCH;
    h->quant = cfg->quant;
    h->exact_external = cfg->quant == IDX_QUANT_INT8 && cfg->exact_external;
    h->level_mult = 1.0 / log((double)M);
    h->rng = cfg->seed ? cfg->seed : HNSW_DEFAULT_SEED;
    h->initial_capacity = cfg->initial_capacity;
    h->entry = HNSW_ENTRY_NONE;
    h->epoch = 1; /* 0 means "idle" in a context */
    idx_labelmap_init(&h->map);
    hnsw_layout_init(h, cfg);
    pthread_mutex_init(&h->alloc_lock, NULL);
    pthread_mutex_init(&h->entry_lock, NULL);
    pthread_mutex_init(&h->sweep_lock, NULL);
    h->sweep_pass = 1;
    pthread_rwlock_init(&h->map_lock, NULL);
    if (cfg->initial_capacity) {
        /* Honour the hint now, so failure is reported here. */
        int rc = hnsw_storage_reserve(h, cfg->initial_capacity);
        if (rc == 0) rc = idx_labelmap_reserve(&h->map, cfg->initial_capacity);
        if (rc != 0) {
            hnsw_destroy(&h->base);
            return rc;
        }
    }
    *out = &h->base;
    return 0;
}
