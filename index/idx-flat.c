/* idx-flat.c: the exact flat index. Every search scores every row, so the
 * layout is built for a fast linear scan:
 *
 *  - rows are f32, contiguous, each padded with zeros to a multiple of 16
 *    floats and 64-byte aligned, so no row straddles a cache line at its
 *    start and sgemm sees a plain strided matrix;
 *  - rows stay dense: removing a label moves the last row into its hole,
 *    so a scan never skips tombstones;
 *  - labels live in a parallel array, and the shared label map
 *    (idx-labelmap.c: open addressing without tombstones) finds the row
 *    of a label for idx_remove and idx_get. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "idx-private.h"

#define FLAT_ALIGN 64u
#define FLAT_LANES 16u /* floats per 64-byte line */
#define FLAT_DEFAULT_CAPACITY 64u
/* The label map holds 32-bit row numbers with one value reserved for
 * "none". */
#define FLAT_MAX_ROWS ((size_t)UINT32_MAX - 1u)

/* idx_search_batch scores blocks of BATCH_QUERIES x (rows that fit in
 * BATCH_ROW_BYTES) with one sgemm: the row block stays in the last-level
 * cache while every query block is scored against it, and the score block
 * (at most 64 x 4096 floats = 1 MiB) stays in L2 for the top-k pass. */
#define BATCH_QUERIES 64u
#define BATCH_MAX_ROWS 4096u
#define BATCH_MIN_ROWS 256u
#define BATCH_ROW_BYTES (4u << 20)

typedef struct idx_flat {
    struct idx base;
    uint32_t stride;           /* floats per row: dim rounded up to 16 */
    uint32_t initial_capacity; /* rows to allocate on the first add */
    size_t count;              /* rows in use */
    size_t capacity;           /* rows allocated in rows and labels */
    float *rows;               /* capacity * stride, FLAT_ALIGN-aligned */
    uint64_t *labels;          /* label of each row */
    idx_labelmap map;          /* label -> row */
} idx_flat;

static idx_flat *as_flat(idx *ix) {
    return (idx_flat *)ix;
}
static const idx_flat *as_cflat(const idx *ix) {
    return (const idx_flat *)ix;
}

static float *row_at(const idx_flat *f, size_t row) {
    return f->rows + row * f->stride;
}

/* ---- storage --------------------------------------------------------------*/

/* Grows rows and labels together, geometrically. Both new blocks are
 * allocated before either old one is released, so a failure leaves the
 * index as it was. */
static int rows_reserve(idx_flat *f, size_t rows) {
    if (rows <= f->capacity) return 0;
    if (rows > FLAT_MAX_ROWS) return DEJA_ERR_NOMEM;
    size_t want = f->capacity ? f->capacity : f->initial_capacity;
    while (want < rows)
        want = want > FLAT_MAX_ROWS / 2 ? FLAT_MAX_ROWS : want * 2;
    size_t row_bytes = (size_t)f->stride * sizeof(float);
    if (want > SIZE_MAX / row_bytes) return DEJA_ERR_NOMEM;

    /* row_bytes is a multiple of FLAT_ALIGN, as aligned_alloc requires. */
    float *new_rows = aligned_alloc(FLAT_ALIGN, want * row_bytes);
    uint64_t *new_labels = malloc(want * sizeof *new_labels);
    if (!new_rows || !new_labels) {
        free(new_rows);
        free(new_labels);
        return DEJA_ERR_NOMEM;
    }
    if (f->count) {
        memcpy(new_rows, f->rows, f->count * row_bytes);
        memcpy(new_labels, f->labels, f->count * sizeof *new_labels);
    }
    free(f->rows);
    free(f->labels);
    f->rows = new_rows;
    f->labels = new_labels;
    f->capacity = want;
    return 0;
}

static void flat_release(idx_flat *f) {
    free(f->rows);
    free(f->labels);
    idx_labelmap_close(&f->map);
    f->rows = NULL;
    f->labels = NULL;
    f->count = f->capacity = 0;
}

/* ---- the ops --------------------------------------------------------------*/

static void flat_destroy(idx *ix) {
    flat_release(as_flat(ix));
    free(ix);
}

static int flat_add(idx *ix, uint64_t label, const float *vec) {
    idx_flat *f = as_flat(ix);
    if (idx_labelmap_find(&f->map, label) != IDX_LABELMAP_NONE)
        return DEJA_ERR_INVALID_ARG;
    int rc = rows_reserve(f, f->count + 1);
    if (rc == 0) rc = idx_labelmap_reserve(&f->map, f->count + 1);
    if (rc != 0) return rc;

    size_t row = f->count;
    float *dst = row_at(f, row);
    memcpy(dst, vec, (size_t)f->base.dim * sizeof(float));
    /* The padding must be zero: the sgemm in search_batch reads only dim
     * columns, but a kernel handed the stride would add it in. */
    memset(dst + f->base.dim, 0, (size_t)(f->stride - f->base.dim) * sizeof(float));
    f->labels[row] = label;
    idx_labelmap_insert(&f->map, label, (uint32_t)row);
    f->count++;
    return 0;
}

static int flat_remove(idx *ix, uint64_t label) {
    idx_flat *f = as_flat(ix);
    uint32_t found = idx_labelmap_find(&f->map, label);
    if (found == IDX_LABELMAP_NONE) return DEJA_ERR_NOT_FOUND;
    size_t row = found;
    size_t last = f->count - 1;
    idx_labelmap_erase(&f->map, label);
    if (row != last) {
        memcpy(row_at(f, row), row_at(f, last), (size_t)f->stride * sizeof(float));
        f->labels[row] = f->labels[last];
        idx_labelmap_set(&f->map, f->labels[row], (uint32_t)row);
    }
    f->count--;
    return 0;
}

/* Frees everything: a cleared index in a long-running cache should not
 * keep the high-water mark of its memory. */
static void flat_clear(idx *ix) {
    flat_release(as_flat(ix));
}

static int flat_score(const idx *ix, uint64_t label, const float *query, float *out) {
    const idx_flat *f = as_cflat(ix);
    uint32_t row = idx_labelmap_find(&f->map, label);
    if (row == IDX_LABELMAP_NONE) return DEJA_ERR_NOT_FOUND;
    *out = idx_dot(query, row_at(f, row), f->base.dim);
    return 0;
}

static int flat_get(const idx *ix, uint64_t label, float *out) {
    const idx_flat *f = as_cflat(ix);
    uint32_t row = idx_labelmap_find(&f->map, label);
    if (row == IDX_LABELMAP_NONE) return DEJA_ERR_NOT_FOUND;
    memcpy(out, row_at(f, row), (size_t)f->base.dim * sizeof(float));
    return 0;
}

static int flat_search(const idx *ix, const float *query, uint32_t k, uint32_t ef,
                       float min_score, idx_filter_fn filter, void *filter_ctx,
                       const idx_exact_source *src, idx_hit *out, uint32_t *nout) {
    (void)src;
    const idx_flat *f = as_cflat(ix);
    idx_dot_fn dot = idx_simd_dot_fn();
    idx_topk top = {out, k, 0};
    uint32_t dim = f->base.dim;

    for (size_t row = 0; row < f->count; row++) {
        float score = dot(query, row_at(f, row), dim);
        /* Written as !(>=) so a NaN score is dropped too. */
        if (!(score >= min_score)) continue;
        uint64_t label = f->labels[row];
        if (!idx_topk_would_enter(&top, score, label)) continue;
        /* The filter may be expensive (the server checks expiry and
         * namespace), so it runs only for hits that would be kept. */
        if (filter && !filter(filter_ctx, label)) continue;
        idx_topk_push(&top, score, label);
    }
    idx_topk_sort(&top);
    *nout = top.n;
    return 0;
}

static size_t batch_row_block(const idx_flat *f) {
    size_t rows = BATCH_ROW_BYTES / ((size_t)f->stride * sizeof(float));
    if (rows < BATCH_MIN_ROWS) rows = BATCH_MIN_ROWS;
    if (rows > BATCH_MAX_ROWS) rows = BATCH_MAX_ROWS;
    return rows;
}

static int flat_search_batch(const idx *ix, const float *queries, uint32_t nq, uint32_t k,
                             idx_hit *out, uint32_t *nout) {
    const idx_flat *f = as_cflat(ix);
    uint32_t dim = f->base.dim;
    for (uint32_t q = 0; q < nq; q++)
        nout[q] = 0;
    if (f->count == 0) return 0;

    size_t block_rows = batch_row_block(f);
    if (block_rows > f->count) block_rows = f->count;
    size_t block_queries = nq < BATCH_QUERIES ? nq : BATCH_QUERIES;
    float *scores = malloc(block_queries * block_rows * sizeof *scores);
    if (!scores) return DEJA_ERR_NOMEM;

    /* Rows outside, queries inside: each row block is read from memory
     * once for all queries. The heap of query q lives in its own output
     * slice and persists across row blocks, its size in nout[q]. */
    for (size_t r0 = 0; r0 < f->count; r0 += block_rows) {
        size_t nr = f->count - r0 < block_rows ? f->count - r0 : block_rows;
        for (size_t q0 = 0; q0 < nq; q0 += block_queries) {
            size_t nb = nq - q0 < block_queries ? nq - q0 : block_queries;
            /* scores[nb x nr] = queries[nb x dim] * rows[nr x dim]^T; the
             * rows' zero padding is skipped by ldb = stride. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)nr,
                        (int)dim, 1.0f, queries + q0 * dim, (int)dim, row_at(f, r0),
                        (int)f->stride, 0.0f, scores, (int)nr);
            for (size_t qi = 0; qi < nb; qi++) {
                idx_topk top = {out + (q0 + qi) * k, k, nout[q0 + qi]};
                const float *qs = scores + qi * nr;
                for (size_t j = 0; j < nr; j++) {
                    if (isnan(qs[j])) continue;
                    uint64_t label = f->labels[r0 + j];
                    if (idx_topk_would_enter(&top, qs[j], label))
                        idx_topk_push(&top, qs[j], label);
                }
                nout[q0 + qi] = top.n;
            }
        }
    }
    free(scores);

    for (uint32_t q = 0; q < nq; q++) {
        idx_topk top = {out + (size_t)q * k, k, nout[q]};
        idx_topk_sort(&top);
    }
    return 0;
}

static size_t flat_count(const idx *ix) {
    return as_cflat(ix)->count;
}

static size_t flat_memory(const idx *ix) {
    const idx_flat *f = as_cflat(ix);
    return sizeof *f + f->capacity * f->stride * sizeof(float) +
           f->capacity * sizeof(uint64_t) + idx_labelmap_memory(&f->map);
}

/* ---- snapshots ------------------------------------------------------------*/

/* Payload (after idx-snapshot.c's header): u64 count, u64 labels[count],
 * then count rows of f32[dim] (without the padding). */
static int flat_snapshot_write(const idx *ix, idx_snap_writer *w) {
    const idx_flat *f = as_cflat(ix);
    size_t row_bytes = (size_t)f->base.dim * sizeof(float);
    int rc = idx_snap_put_u64(w, f->count);
    if (rc == 0) rc = idx_snap_put(w, f->labels, f->count * sizeof *f->labels);
    if (rc == 0 && f->stride == f->base.dim)
        return idx_snap_put(w, f->rows, f->count * row_bytes);
    for (size_t row = 0; rc == 0 && row < f->count; row++)
        rc = idx_snap_put(w, row_at(f, row), row_bytes);
    return rc;
}

#define FLAT_SCATTER_BATCH 1024u

static int flat_snapshot_read(idx *ix, idx_snap_reader *r) {
    idx_flat *f = as_flat(ix);
    uint32_t dim = f->base.dim;
    size_t row_bytes = (size_t)dim * sizeof(float);
    uint64_t count;
    int rc = idx_snap_get_u64(r, &count);
    if (rc) return rc;
    /* Checked against the bytes left before anything is allocated. */
    if (count > FLAT_MAX_ROWS ||
        count > idx_snap_left(r) / (sizeof(uint64_t) + row_bytes))
        return idx_snap_bad(r, "row count exceeds the file");
    rc = rows_reserve(f, count);
    if (rc == 0) rc = idx_labelmap_reserve(&f->map, count);
    if (rc == 0) rc = idx_snap_get(r, f->labels, count * sizeof *f->labels);
    if (rc) return rc;
    for (size_t row = 0; row < count; row++) {
        if (idx_labelmap_find(&f->map, f->labels[row]) != IDX_LABELMAP_NONE)
            return idx_snap_bad(r, "a label appears twice");
        idx_labelmap_insert(&f->map, f->labels[row], (uint32_t)row);
    }
    f->count = count;
    void *dst[FLAT_SCATTER_BATCH];
    for (size_t row = 0; row < count; row += FLAT_SCATTER_BATCH) {
        size_t n = count - row < FLAT_SCATTER_BATCH ? count - row : FLAT_SCATTER_BATCH;
        for (size_t i = 0; i < n; i++) {
            float *dest = row_at(f, row + i);
            dst[i] = dest;
            /* Zero padding, as flat_add leaves it. */
            memset(dest + dim, 0, (size_t)(f->stride - dim) * sizeof(float));
        }
        rc = idx_snap_get_scatter(r, dst, n, row_bytes);
        if (rc) return rc;
    }
    return 0;
}

static int flat_each_label(const idx *ix, int (*fn)(void *ctx, uint64_t label),
                           void *ctx) {
    const idx_flat *f = as_cflat(ix);
    for (size_t row = 0; row < f->count; row++) {
        int rc = fn(ctx, f->labels[row]);
        if (rc) return rc;
    }
    return 0;
}

static const struct idx_ops flat_ops = {
    .name = "flat",
    .destroy = flat_destroy,
    .add = flat_add,
    .remove = flat_remove,
    .clear = flat_clear,
    .get = flat_get,
    .score = flat_score,
    .search = flat_search,
    .search_batch = flat_search_batch,
    .count = flat_count,
    .memory = flat_memory,
    .snapshot_write = flat_snapshot_write,
    .snapshot_read = flat_snapshot_read,
    .each_label = flat_each_label,
};

int idx_flat_create(const idx_config *cfg, idx **out) {
    idx_flat *f = calloc(1, sizeof *f);
    if (!f) return DEJA_ERR_NOMEM;
    f->base.ops = &flat_ops;
    f->base.kind = IDX_KIND_FLAT;
    f->base.dim = cfg->dim;
    f->stride = (cfg->dim + FLAT_LANES - 1) / FLAT_LANES * FLAT_LANES;
    f->initial_capacity =
        cfg->initial_capacity ? cfg->initial_capacity : FLAT_DEFAULT_CAPACITY;
    if (cfg->initial_capacity) {
        /* Honour the hint now, so a server that knows its size does not
         * pay for the doublings; failure here is reported, not deferred. */
        int rc = rows_reserve(f, cfg->initial_capacity);
        if (rc == 0) rc = idx_labelmap_reserve(&f->map, cfg->initial_capacity);
        if (rc != 0) {
            flat_destroy(&f->base);
            return rc;
        }
    }
    *out = &f->base;
    return 0;
}
