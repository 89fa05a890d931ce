/* idx-hnsw-graph.c: the HNSW graph algorithms (Malkov & Yashunin 2016):
 * greedy descent through the upper levels, best-first search of a level
 * with a bounded result set, the neighbour-selection heuristic, linking a
 * new node in, and the sweep: repairing the neighbourhood of removed
 * nodes and re-connecting nodes no path leads to (the design is in
 * idx-hnsw.c, REMOVAL).
 *
 * Concurrency (the full argument is at the top of idx-hnsw.c): readers
 * never lock. They copy a link list with atomic loads (a list caught
 * mid-update only holds ids some writer stored), and check a node's state
 * before reading its vector. Writers change a node's lists under that
 * node's version word (odd = locked), optimistically: they snapshot the
 * list and its even version, compute the new list without holding
 * anything (neighbour selection costs many inner products), then lock by
 * compare-and-swap from the snapshot's version, which fails if another
 * writer got there first. After a few failed attempts they lock first and
 * compute under the lock, so progress is guaranteed. A writer never holds
 * two node locks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "idx-hnsw-private.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Optimistic re-link attempts before a writer locks first. */
#define RELINK_OPTIMISTIC_TRIES 3
/* A search prefetches the first PREFETCH_BYTES of the vectors
 * PREFETCH_AHEAD neighbours ahead of the one being scored, so several
 * DRAM fetches overlap; the hardware prefetcher streams the rest once the
 * kernel reads on. That is a whole int8 vector at 1536-d and a quarter of
 * an f32 one: prefetching whole f32 vectors (96 lines) measured slower,
 * as the prefetches stall once the miss buffers are full. */
#define PREFETCH_AHEAD 2
#define PREFETCH_BYTES 1536u
/* Slots the sweep's scan for unreached nodes checks per unit of budget
 * (a node visit): a check is a byte load, so the scan adds a sixteenth
 * to a pass's calls. */
#define SWEEP_SCAN 16

/* ---- scoring ----------------------------------------------------------------*/

/* The kernels are fetched once per operation: reading the dispatch
 * pointers per node would cost a load each time. */
typedef struct scorer {
    idx_dot_fn dot;
    idx_dot_i8_fn dot8;
    const hnsw *h;
    const void *qvec;
    float qscale;
    uint32_t dim;
    int int8;
} scorer;

static scorer scorer_make(const hnsw *h, const hnsw_query *q) {
    scorer s = {idx_simd_dot_fn(),         idx_simd_dot_i8_fn(), h,
                q ? q->vec : NULL,         q ? q->scale : 0.0f,  h->base.dim,
                h->quant == IDX_QUANT_INT8};
    return s;
}

/* NaN (from a NaN component) becomes -inf: it keeps the heaps ordered,
 * and a -inf node is never accepted into results. */
static inline float score_fix(float s) {
    return s == s ? s : -INFINITY;
}

static inline float score_query(const scorer *s, const char *row) {
    if (s->int8)
        return score_fix(
            (float)s->dot8((const int8_t *)s->qvec, (const int8_t *)row, s->dim) *
            s->qscale * hnsw_row_scale(s->h, row));
    return score_fix(s->dot((const float *)s->qvec, (const float *)row, s->dim));
}

static inline float score_rows(const scorer *s, const char *a, const char *b) {
    if (s->int8)
        return score_fix((float)s->dot8((const int8_t *)a, (const int8_t *)b, s->dim) *
                         hnsw_row_scale(s->h, a) * hnsw_row_scale(s->h, b));
    return score_fix(s->dot((const float *)a, (const float *)b, s->dim));
}

float hnsw_score_row(const hnsw *h, const hnsw_query *q, const char *row) {
    scorer s = scorer_make(h, q);
    return score_query(&s, row);
}

static inline const char *row_of(const hnsw *h, uint32_t id) {
    return hnsw_row(h, hnsw_chunk(h, id), hnsw_slot(h, id));
}

static inline void prefetch_vector(const hnsw *h, const char *row) {
    uint32_t end = h->vec_bytes < PREFETCH_BYTES ? h->vec_bytes : PREFETCH_BYTES;
    for (uint32_t off = 0; off < end; off += 64)
        __builtin_prefetch(row + off, 0, 3);
}

/* ---- heaps ------------------------------------------------------------------*/

/* cand: max-heap (best candidate on top); res: min-heap (worst result on
 * top, the bound a new node must beat). */
static inline void max_push(hnsw_pair *a, uint32_t *n, float score, uint32_t id) {
    uint32_t i = (*n)++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (a[p].score >= score) break;
        a[i] = a[p];
        i = p;
    }
    a[i].score = score;
    a[i].id = id;
}

static inline void max_pop(hnsw_pair *a, uint32_t *n) {
    hnsw_pair last = a[--*n];
    uint32_t i = 0, size = *n;
    for (;;) {
        uint32_t l = 2 * i + 1, best = l;
        if (l >= size) break;
        if (l + 1 < size && a[l + 1].score > a[l].score) best = l + 1;
        if (a[best].score <= last.score) break;
        a[i] = a[best];
        i = best;
    }
    a[i] = last;
}

static inline void min_push(hnsw_pair *a, uint32_t *n, float score, uint32_t id) {
    uint32_t i = (*n)++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (a[p].score <= score) break;
        a[i] = a[p];
        i = p;
    }
    a[i].score = score;
    a[i].id = id;
}

static inline void min_pop(hnsw_pair *a, uint32_t *n) {
    hnsw_pair last = a[--*n];
    uint32_t i = 0, size = *n;
    for (;;) {
        uint32_t l = 2 * i + 1, best = l;
        if (l >= size) break;
        if (l + 1 < size && a[l + 1].score < a[l].score) best = l + 1;
        if (a[best].score >= last.score) break;
        a[i] = a[best];
        i = best;
    }
    a[i] = last;
}

static int pair_cmp(const void *pa, const void *pb) {
    const hnsw_pair *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

void hnsw_pairs_sort(hnsw_pair *p, uint32_t n) {
    if (n > 48) {
        qsort(p, n, sizeof *p, pair_cmp);
        return;
    }
    /* Insertion sort: the lists re-selected on every link change are
     * short, and qsort's indirect comparisons cost more than the moves. */
    for (uint32_t i = 1; i < n; i++) {
        hnsw_pair x = p[i];
        uint32_t j = i;
        while (j > 0 && pair_cmp(&p[j - 1], &x) > 0) {
            p[j] = p[j - 1];
            j--;
        }
        p[j] = x;
    }
}

void hnsw_res_drain(hnsw_ctx *c, uint32_t n, hnsw_pair *out) {
    /* The result heap pops worst first; filling from the back leaves the
     * best first. Cheaper than sorting a copy. */
    hnsw_pair *res = c->res.at;
    for (uint32_t left = n; left > 0;) {
        out[left - 1] = res[0];
        min_pop(res, &left);
    }
}

/* ---- search -----------------------------------------------------------------*/

static inline int accept_node(const hnsw_accept *acc, uint32_t id, uint8_t st,
                              float score) {
    if (score == -INFINITY) return 0;
    if (acc->build) return (st == HNSW_LIVE || st == HNSW_INSERTING) && id != acc->self;
    if (st != HNSW_LIVE) return 0;
    if (!acc->filter) return 1;
    return acc->filter(acc->filter_ctx, *hnsw_label_ptr(acc->h, id));
}

void hnsw_greedy(const hnsw *h, const hnsw_query *q, uint32_t *cur, float *cur_score,
                 int top, int bottom, uint32_t skip) {
    scorer s = scorer_make(h, q);
    uint32_t links[2 * HNSW_M_MAX];
    const char *rows[2 * HNSW_M_MAX];
    for (int level = top; level > bottom; level--) {
        for (int changed = 1; changed;) {
            changed = 0;
            const uint32_t *list = hnsw_list(h, *cur, level);
            if (!list) break;
            uint32_t n = hnsw_list_read(list, h->M, links), m = 0;
            for (uint32_t i = 0; i < n; i++) {
                if (links[i] == skip) continue;
                char *chunk = hnsw_chunk(h, links[i]);
                uint32_t slot = hnsw_slot(h, links[i]);
                if (hnsw_state_at(h, chunk, slot) == HNSW_FREE) continue;
                rows[m] = hnsw_row(h, chunk, slot);
                __builtin_prefetch(rows[m], 0, 3);
                links[m++] = links[i];
            }
            for (uint32_t i = 0; i < m; i++) {
                if (i + 1 < m) prefetch_vector(h, rows[i + 1]);
                float score = score_query(&s, rows[i]);
                if (score > *cur_score) {
                    *cur_score = score;
                    *cur = links[i];
                    changed = 1;
                }
            }
        }
    }
}

uint32_t hnsw_search_layer(const hnsw *h, hnsw_ctx *c, const hnsw_query *q,
                           uint32_t start, float start_score, int level, uint32_t ef,
                           const hnsw_accept *acc) {
    hnsw *hw = (hnsw *)h;
    scorer s = scorer_make(h, q);
    uint32_t cap = hnsw_cap(h, level);
    uint32_t *links = c->ids;
    uint32_t *todo = c->ids + cap;
    const char **rows = c->rows;
    hnsw_visited_begin(hw, c);
    uint16_t tag = c->tag;

    hnsw_pair *cand = c->cand.at, *res = c->res.at;
    uint32_t ncand = 0, nres = 0;
    if (start < c->visited_cap) c->visited[start] = tag;
    max_push(cand, &ncand, start_score, start);
    if (accept_node(acc, start, hnsw_state(h, start), start_score))
        min_push(res, &nres, start_score, start);
    float worst = nres ? res[0].score : -INFINITY;

    while (ncand > 0) {
        hnsw_pair cur = cand[0];
        if (nres >= ef && cur.score < worst) break;
        max_pop(cand, &ncand);
        const uint32_t *list = hnsw_list(h, cur.id, level);
        if (!list) continue;
        if (ncand > 0) {
            /* The next candidate's links are read next round. */
            __builtin_prefetch(row_of(h, cand[0].id) + h->hdr_off, 0, 3);
        }
        uint32_t n = hnsw_list_read(list, cap, links), m = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = links[i];
            if (id >= c->visited_cap && hnsw_visited_grow(hw, c, id) != 0) continue;
            if (c->visited[id] == tag) continue;
            c->visited[id] = tag;
            char *chunk = hnsw_chunk(h, id);
            uint32_t slot = hnsw_slot(h, id);
            /* FREE: removed (or not yet used); its vector may be being
             * rewritten, so it must not be read. */
            if (hnsw_state_at(h, chunk, slot) == HNSW_FREE) continue;
            rows[m] = hnsw_row(h, chunk, slot);
            todo[m++] = id;
        }
        for (uint32_t j = 0; j < m && j < PREFETCH_AHEAD; j++)
            prefetch_vector(h, rows[j]);
        for (uint32_t j = 0; j < m; j++) {
            if (j + PREFETCH_AHEAD < m) prefetch_vector(h, rows[j + PREFETCH_AHEAD]);
            float score = score_query(&s, rows[j]);
            if (nres >= ef && !(score > worst)) continue;
            if (ncand == c->cand.cap) {
                if (hnsw_pairs_reserve(hw, c, &c->cand, ncand + 1) != 0) continue;
                cand = c->cand.at;
            }
            max_push(cand, &ncand, score, todo[j]);
            uint32_t id = todo[j];
            if (accept_node(acc, id, hnsw_state(h, id), score)) {
                min_push(res, &nres, score, id);
                if (nres > ef) min_pop(res, &nres);
                worst = res[0].score;
            }
        }
    }
    c->res.n = nres;
    return nres;
}

/* ---- neighbour selection ----------------------------------------------------*/

/* The heuristic of the paper (algorithm 4, without extending or keeping
 * pruned candidates): walk the candidates best first and keep one only if
 * it is more similar to the base node than to every neighbour already
 * kept. This keeps links pointing in different directions, which is what
 * lets clustered data stay navigable. cands are sorted best first. */
static uint32_t select_neighbours(const scorer *s, const hnsw_pair *cands, uint32_t n,
                                  uint32_t m, uint32_t *out) {
    const char *kept[2 * HNSW_M_MAX];
    uint32_t k = 0;
    for (uint32_t i = 0; i < n && k < m; i++) {
        const char *row = row_of(s->h, cands[i].id);
        int good = 1;
        for (uint32_t j = 0; j < k && good; j++)
            if (score_rows(s, row, kept[j]) > cands[i].score) good = 0;
        if (good) {
            kept[k] = row;
            out[k++] = cands[i].id;
        }
    }
    return k;
}

static inline int contains(const uint32_t *ids, uint32_t n, uint32_t id) {
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

static uint32_t version_lock(uint32_t *ver) {
    for (;;) {
        uint32_t v = __atomic_load_n(ver, __ATOMIC_RELAXED);
        if (!(v & 1) && __atomic_compare_exchange_n(ver, &v, v + 1, 0, __ATOMIC_ACQUIRE,
                                                    __ATOMIC_RELAXED))
            return v;
        cpu_relax();
    }
}

static uint32_t version_stable(const uint32_t *ver) {
    for (;;) {
        uint32_t v = __atomic_load_n(ver, __ATOMIC_ACQUIRE);
        if (!(v & 1)) return v;
        cpu_relax();
    }
}

static void version_unlock(uint32_t *ver) {
    uint32_t v = __atomic_load_n(ver, __ATOMIC_RELAXED);
    __atomic_store_n(ver, v + 1, __ATOMIC_RELEASE);
}

/* Count last: a reader that sees the new count sees the links before it. */
static void list_write_locked(uint32_t *list, const uint32_t *ids, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        __atomic_store_n(&list[1 + i], ids[i], __ATOMIC_RELEASE);
    __atomic_store_n(&list[0], n, __ATOMIC_RELEASE);
}

static inline int is_dead(uint8_t st) {
    return st == HNSW_FREE || st == HNSW_DELETED;
}

enum relink_mode {
    /* Adds the ids in add, appending while there is room and re-selecting
     * by the heuristic once the list overflows. */
    RELINK_ADD,
    /* If the list links to removed nodes, replaces it by the heuristic's
     * choice from its live links plus the links of the removed (DELETED)
     * ones -- the nodes that can best replace the paths through them. */
    RELINK_REPAIR,
    /* Adds add[0] without the heuristic: appended if there is room, else
     * in place of the link to the least similar (or a removed) node. */
    RELINK_FORCE,
};

/* Re-links node at level in the given mode. */
static void relink(hnsw *h, hnsw_ctx *c, uint32_t node, int level, const uint32_t *add,
                   uint32_t nadd, enum relink_mode mode) {
    int repair = mode == RELINK_REPAIR;
    scorer s = scorer_make(h, NULL);
    uint32_t cap = hnsw_cap(h, level);
    uint32_t *list = hnsw_list(h, node, level);
    if (!list) return;
    const char *node_row = row_of(h, node);
    uint32_t *ver = hnsw_version_ptr(h, node_row);
    /* merged: the node's links, then what is added; in repair mode the
     * removed nodes' links can bring up to cap * cap candidates, of which
     * the first MERGED_MAX are taken. */
    enum { MERGED_MAX = 8 * HNSW_M_MAX };
    uint32_t cur[2 * HNSW_M_MAX], merged[MERGED_MAX], out[2 * HNSW_M_MAX],
        more[2 * HNSW_M_MAX];

    for (int attempt = 0;; attempt++) {
        int locked = attempt >= RELINK_OPTIMISTIC_TRIES;
        uint32_t v = locked ? version_lock(ver) : version_stable(ver);
        uint32_t n = hnsw_list_read(list, cap, cur), nm = 0, nout;
        int changed = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (repair) {
                uint8_t st = hnsw_state(h, cur[i]);
                if (is_dead(st)) {
                    changed = 1;
                    continue;
                }
            }
            merged[nm++] = cur[i];
        }
        if (repair) {
            for (uint32_t i = 0; i < n; i++) {
                /* A FREE node's lists may already be a new node's. */
                if (hnsw_state(h, cur[i]) != HNSW_DELETED) continue;
                const uint32_t *dl = hnsw_list(h, cur[i], level);
                uint32_t nd = dl ? hnsw_list_read(dl, cap, more) : 0;
                for (uint32_t j = 0; j < nd && nm < MERGED_MAX; j++)
                    if (more[j] != node && !contains(merged, nm, more[j]))
                        merged[nm++] = more[j];
            }
        } else {
            for (uint32_t i = 0; i < nadd && nm < MERGED_MAX; i++) {
                if (add[i] == node || contains(merged, nm, add[i])) continue;
                merged[nm++] = add[i];
                changed = 1;
            }
        }
        if (!changed) {
            if (locked) version_unlock(ver);
            return;
        }
        if (!repair && nm <= cap) {
            memcpy(out, merged, nm * sizeof *out);
            nout = nm;
        } else if (mode == RELINK_FORCE) {
            /* Full: the added id (last) replaces the worst of the others. */
            uint32_t worst = 0;
            float worst_score = INFINITY;
            for (uint32_t i = 0; i + 1 < nm; i++) {
                float score = is_dead(hnsw_state(h, merged[i]))
                                  ? -INFINITY
                                  : score_rows(&s, node_row, row_of(h, merged[i]));
                if (score < worst_score) {
                    worst_score = score;
                    worst = i;
                }
            }
            memcpy(out, merged, (nm - 1) * sizeof *out);
            out[worst] = merged[nm - 1];
            nout = nm - 1;
        } else {
            hnsw_pair *work = c->work.at;
            uint32_t nw = 0;
            for (uint32_t i = 0; i < nm && nw < c->work.cap; i++) {
                /* Links to removed nodes are dropped here, which is also
                 * how stale links disappear over time. */
                if (is_dead(hnsw_state(h, merged[i]))) continue;
                work[nw].score = score_rows(&s, node_row, row_of(h, merged[i]));
                work[nw++].id = merged[i];
            }
            hnsw_pairs_sort(work, nw);
            nout = select_neighbours(&s, work, nw, cap, out);
        }
        if (!locked && !__atomic_compare_exchange_n(ver, &v, v + 1, 0, __ATOMIC_ACQUIRE,
                                                    __ATOMIC_RELAXED))
            continue;
        list_write_locked(list, out, nout);
        version_unlock(ver);
        return;
    }
}

/* ---- insert and repair ------------------------------------------------------*/

/* hnsw_connect, which also leaves the node's level-0 neighbours, best
 * first, in near0[0..M) and returns how many there are. */
static uint32_t connect_node(hnsw *h, hnsw_ctx *c, uint32_t id, int level, uint64_t e,
                             uint32_t *near0) {
    const char *row = row_of(h, id);
    hnsw_query q = {row, h->quant == IDX_QUANT_INT8 ? hnsw_row_scale(h, row) : 1.0f};
    scorer s = scorer_make(h, &q);
    uint32_t cur = (uint32_t)e;
    int top = (int)(e >> 32);
    float cur_score = score_query(&s, row_of(h, cur));
    hnsw_greedy(h, &q, &cur, &cur_score, top, level, id);

    /* Neighbours are chosen top-down (each level's search starts from the
     * best node of the level above) but linked bottom-up: once the node is
     * reachable on a level, its lists on every level below are already
     * filled, so a search descending onto it never meets a dead end. */
    hnsw_accept acc = {1, id, NULL, NULL, h};
    uint32_t selected[HNSW_MAX_LEVEL + 1][HNSW_M_MAX];
    uint32_t nselected[HNSW_MAX_LEVEL + 1];
    int first = level < top ? level : top;
    for (int l = first; l >= 0; l--) {
        uint32_t n =
            hnsw_search_layer(h, c, &q, cur, cur_score, l, h->ef_construction, &acc);
        hnsw_pair *work = c->work.at;
        hnsw_res_drain(c, n, work);
        /* A new node takes M links on every level, level 0 included;
         * the 2M room at level 0 is for links added to it later. */
        nselected[l] = select_neighbours(&s, work, n, h->M, selected[l]);
        if (n > 0) {
            cur = work[0].id;
            cur_score = work[0].score;
        }
    }
    for (int l = 0; l <= first; l++) {
        relink(h, c, id, l, selected[l], nselected[l], RELINK_ADD);
        for (uint32_t j = 0; j < nselected[l]; j++) {
            uint8_t st = hnsw_state(h, selected[l][j]);
            if (st == HNSW_LIVE || st == HNSW_INSERTING)
                relink(h, c, selected[l][j], l, &id, 1, RELINK_ADD);
        }
    }
    memcpy(near0, selected[0], nselected[0] * sizeof *near0);
    return nselected[0];
}

void hnsw_connect(hnsw *h, hnsw_ctx *c, uint32_t id, int level, uint64_t e) {
    uint32_t near0[HNSW_M_MAX];
    connect_node(h, c, id, level, e, near0);
}

/* ---- the sweep --------------------------------------------------------------*/

static inline int is_linked(uint8_t st) {
    return st == HNSW_LIVE || st == HNSW_INSERTING;
}

/* Marks id reached; returns 1 if it was not (the caller queues it).
 * Only the sweeper sets this bit, so a plain load tells whether it is
 * set; an allocation may set NEW at the same time, hence the atomic or,
 * which runs once per node and pass. */
static int mark_reached(hnsw *h, uint32_t id) {
    uint8_t *mark = &h->sweep_marks[id];
    if (__atomic_load_n(mark, __ATOMIC_RELAXED) & HNSW_MARK_REACHED) return 0;
    __atomic_fetch_or(mark, HNSW_MARK_REACHED, __ATOMIC_RELAXED);
    return 1;
}

static void queue_push(hnsw *h, uint32_t id) {
    /* Each slot of the pass is queued at most once, so the queue (one
     * entry per slot) cannot overflow; the check is belt and braces. */
    if (h->sweep_qtail < h->sweep_marks_len) h->sweep_queue[h->sweep_qtail++] = id;
}

/* Visits node: repairs every list of it that links to a removed node,
 * then queues the live nodes its level-0 list (as repaired) links to and
 * the walk has not reached yet. A removed node is neither repaired nor
 * walked through: the walk sees the graph as it will be once the removed
 * nodes are gone. */
static void sweep_visit(hnsw *h, hnsw_ctx *c, uint32_t node) {
    if (!is_linked(hnsw_state(h, node))) return;
    uint32_t links[2 * HNSW_M_MAX];
    int top = *hnsw_level_ptr(h, node);
    for (int l = 0; l <= top; l++) {
        const uint32_t *list = hnsw_list(h, node, l);
        if (!list) continue;
        uint32_t n = hnsw_list_read(list, hnsw_cap(h, l), links);
        for (uint32_t i = 0; i < n; i++) {
            if (is_dead(hnsw_state(h, links[i]))) {
                relink(h, c, node, l, NULL, 0, RELINK_REPAIR);
                break;
            }
        }
    }
    if (h->sweep_marks_len == 0) return;
    uint32_t n = hnsw_list_read(hnsw_list(h, node, 0), h->M0, links);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = links[i];
        if (id < h->sweep_marks_len && is_linked(hnsw_state(h, id)) &&
            mark_reached(h, id))
            queue_push(h, id);
    }
}

/* Re-connects node, which the walk from the entry point did not reach, the
 * way an insert connects a new node: its M nearest by the heuristic become
 * its links, and it is added to their lists. Those lists may prune it
 * again (each keeps what the heuristic prefers), and a neighbour that
 * keeps it may itself be unreached (two near-duplicates linking only to
 * each other), so unless a reached neighbour kept it, it goes into the
 * list of its nearest reached neighbour in place of that list's worst
 * link. The heuristic keeps a candidate whose base is its nearest
 * neighbour unless the list is full of better ones, so that is rare. */
static void rescue_node(hnsw *h, hnsw_ctx *c, uint32_t node) {
    uint64_t e = hnsw_entry_load(h);
    if (e == HNSW_ENTRY_NONE || (uint32_t)e == node) return;
    /* A remove's context has no room yet for an insert's search. */
    if (hnsw_ctx_reserve(h, c, h->ef_construction) != 0) return;
    uint32_t near0[HNSW_M_MAX], links[2 * HNSW_M_MAX];
    uint32_t n = connect_node(h, c, node, 0, e, near0);
    uint32_t anchor = HNSW_NONE;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = near0[i];
        if (!is_linked(hnsw_state(h, id))) continue;
        if (id < h->sweep_marks_len &&
            !(__atomic_load_n(&h->sweep_marks[id], __ATOMIC_RELAXED) & HNSW_MARK_REACHED))
            continue;
        uint32_t m = hnsw_list_read(hnsw_list(h, id, 0), h->M0, links);
        if (contains(links, m, node)) return;
        if (anchor == HNSW_NONE) anchor = id;
    }
    if (anchor != HNSW_NONE) relink(h, c, anchor, 0, &node, 1, RELINK_FORCE);
}

static void sweep_begin(hnsw *h) {
    h->sweep_running = 1;
    h->sweep_cursor = 0;
    h->sweep_qhead = h->sweep_qtail = 0;
    h->sweep_end = hnsw_slots_used(h);
    /* Without marks (NOMEM) the pass repairs slot by slot and rescues
     * nothing, as the sweep did before it walked the graph. */
    if (hnsw_sweep_marks_reset(h, h->sweep_end) != 0) return;
    uint64_t e = hnsw_entry_load(h);
    if (e != HNSW_ENTRY_NONE && (uint32_t)e < h->sweep_marks_len &&
        mark_reached(h, (uint32_t)e))
        queue_push(h, (uint32_t)e);
}

void hnsw_sweep(hnsw *h, hnsw_ctx *c, uint32_t budget) {
    if (__atomic_load_n(&h->limbo_pending, __ATOMIC_RELAXED) == 0) return;
    /* One sweeper at a time; the others go on with their own work
     * instead of waiting. */
    if (pthread_mutex_trylock(&h->sweep_lock) != 0) return;
    if (!h->sweep_running) sweep_begin(h);
    uint32_t visits = 0, scanned = 0;
    int rescued = 0;
    for (;;) {
        if (h->sweep_qhead < h->sweep_qtail) {
            if (visits == budget) break;
            sweep_visit(h, c, h->sweep_queue[h->sweep_qhead++]);
            visits++;
            continue;
        }
        /* The walk has run out: scan the slots for a node it missed. */
        if (h->sweep_cursor >= h->sweep_end) {
            hnsw_sweep_pass_done(h);
            h->sweep_running = 0;
            break;
        }
        uint32_t id = h->sweep_cursor;
        if (h->sweep_marks_len == 0) {
            if (visits == budget) break;
            h->sweep_cursor++;
            sweep_visit(h, c, id);
            visits++;
            continue;
        }
        if (scanned == budget * SWEEP_SCAN) break;
        scanned++;
        if (__atomic_load_n(&h->sweep_marks[id], __ATOMIC_RELAXED) != 0) {
            h->sweep_cursor++;
            continue;
        }
        uint8_t st = hnsw_state(h, id);
        if (st == HNSW_LIVE) {
            /* A rescue costs about an insert: one per call. */
            if (rescued) break;
            rescue_node(h, c, id);
            rescued = 1;
        } else if (st != HNSW_INSERTING) {
            h->sweep_cursor++;
            continue;
        }
        /* Repaired and walked from like any node; what it reaches is not
         * unreachable any more. */
        h->sweep_cursor++;
        mark_reached(h, id);
        queue_push(h, id);
    }
    pthread_mutex_unlock(&h->sweep_lock);
}
