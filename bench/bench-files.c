/* bench-files.c: deja-bench's data files -- the .fvecs / .bvecs / .ivecs
 * formats of the standard ANN benchmarks (SIFT, GIST, Deep...), the
 * ground-truth cache kept next to them, and loading a workload.
 *
 * Each record of these formats is a little-endian int32 dimension d
 * followed by d components (float32, uint8 or int32); a file is records
 * back to back with no header. Real files get truncated by interrupted
 * downloads and mixed up by name, so a reader checks that the file holds
 * whole records of one dimension before trusting a byte, and says which
 * record is wrong. Vectors are L2-normalised on load: deja scores by
 * cosine, and so does the ground truth computed here. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "idx.h"

#define IVECS_MAX_COLS 100000u

/* Reads whole records of elt-byte components; *out gets rows x dim
 * components as stored. */
static int read_records(const char *path, size_t elt, uint32_t max_dim, uint32_t max_rows,
                        void **out, uint32_t *rows_out, uint32_t *dim_out, char *err,
                        size_t errlen) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int32_t d = 0;
    unsigned char *data = NULL;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 4 || fread(&d, 4, 1, f) != 1) {
        snprintf(err, errlen, "%s: empty or unreadable", path);
        goto fail;
    }
    if (d < 1 || (uint32_t)d > max_dim) {
        snprintf(err, errlen,
                 "%s: first record has dimension %d (want 1..%u): not this format", path,
                 d, max_dim);
        goto fail;
    }
    size_t rec = 4 + (size_t)d * elt;
    if ((size_t)st.st_size % rec != 0) {
        snprintf(err, errlen,
                 "%s: %lld bytes is not a whole number of %zu-byte records "
                 "(dimension %d): truncated, or another format",
                 path, (long long)st.st_size, rec, d);
        goto fail;
    }
    size_t total = (size_t)st.st_size / rec;
    if (total > UINT32_MAX) {
        snprintf(err, errlen, "%s: more than 2^32 records", path);
        goto fail;
    }
    size_t rows = max_rows && max_rows < total ? max_rows : total;
    size_t row_bytes = (size_t)d * elt;
    data = malloc(rows * row_bytes + 1);
    if (data == NULL) {
        snprintf(err, errlen, "%s: out of memory for %zu records", path, rows);
        goto fail;
    }
    rewind(f);
    for (size_t i = 0; i < rows; i++) {
        int32_t di;
        if (fread(&di, 4, 1, f) != 1 ||
            fread(data + i * row_bytes, 1, row_bytes, f) != row_bytes) {
            snprintf(err, errlen, "%s: read error at record %zu", path, i);
            goto fail;
        }
        if (di != d) {
            snprintf(err, errlen, "%s: record %zu has dimension %d, the first has %d",
                     path, i, di, d);
            goto fail;
        }
    }
    fclose(f);
    *out = data;
    *rows_out = (uint32_t)rows;
    *dim_out = (uint32_t)d;
    return 0;
fail:
    free(data);
    fclose(f);
    return -1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int bench_vecs_read(const char *path, uint32_t max_rows, float **out, uint32_t *rows,
                    uint32_t *dim, char *err, size_t errlen) {
    void *raw;
    *out = NULL;
    if (ends_with(path, ".bvecs")) {
        if (read_records(path, 1, 4096, max_rows, &raw, rows, dim, err, errlen) != 0)
            return -1;
        float *v = malloc((size_t)*rows * *dim * sizeof *v + 1);
        if (v == NULL) {
            free(raw);
            snprintf(err, errlen, "%s: out of memory", path);
            return -1;
        }
        const uint8_t *b = raw;
        for (size_t i = 0; i < (size_t)*rows * *dim; i++)
            v[i] = (float)b[i];
        free(raw);
        *out = v;
        return 0;
    }
    if (!ends_with(path, ".fvecs")) {
        snprintf(err, errlen, "%s: expected an .fvecs or .bvecs file", path);
        return -1;
    }
    if (read_records(path, 4, 4096, max_rows, &raw, rows, dim, err, errlen) != 0)
        return -1;
    float *v = raw;
    for (size_t i = 0; i < (size_t)*rows * *dim; i++) {
        if (!isfinite(v[i])) {
            snprintf(err, errlen, "%s: record %zu has a non-finite component", path,
                     i / *dim);
            free(raw);
            return -1;
        }
    }
    *out = v;
    return 0;
}

int bench_ivecs_read(const char *path, uint32_t max_rows, int32_t **out, uint32_t *rows,
                     uint32_t *cols, char *err, size_t errlen) {
    void *raw;
    if (read_records(path, 4, IVECS_MAX_COLS, max_rows, &raw, rows, cols, err, errlen) !=
        0)
        return -1;
    *out = raw;
    return 0;
}

static int write_records(const char *path, const void *v, uint32_t rows, uint32_t cols,
                         size_t elt) {
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >=
        sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) return -1;
    int32_t d = (int32_t)cols;
    size_t row_bytes = (size_t)cols * elt;
    const unsigned char *p = v;
    int ok = 1;
    for (uint32_t i = 0; ok && i < rows; i++)
        ok = fwrite(&d, 4, 1, f) == 1 &&
             fwrite(p + (size_t)i * row_bytes, 1, row_bytes, f) == row_bytes;
    /* fsync before rename: after a crash the name points at whole data. */
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok && rename(tmp, path) == 0) return 0;
    if (ok) e = errno;
    unlink(tmp);
    errno = e ? e : EIO;
    return -1;
}

int bench_fvecs_write(const char *path, const float *v, uint32_t rows, uint32_t dim) {
    return write_records(path, v, rows, dim, sizeof(float));
}

int bench_ivecs_write(const char *path, const int32_t *v, uint32_t rows, uint32_t cols) {
    return write_records(path, v, rows, cols, sizeof(int32_t));
}

long bench_normalize_rows(float *v, uint32_t rows, uint32_t dim) {
    for (uint32_t i = 0; i < rows; i++)
        if (idx_normalize(v + (size_t)i * dim, dim) != 0) return (long)i;
    return -1;
}

void bench_gt_cache_path(const char *query_path, const char *base_path,
                         uint32_t base_limit, uint32_t k, char *out, size_t outlen) {
    const char *slash = strrchr(base_path, '/');
    const char *base_name = slash ? slash + 1 : base_path;
    char limit[24] = "";
    if (base_limit) snprintf(limit, sizeof limit, "-n%u", base_limit);
    snprintf(out, outlen, "%s.gt-%s%s-k%u.ivecs", query_path, base_name, limit, k);
}

static int newer_or_same(const struct stat *a, const struct stat *b) {
    if (a->st_mtim.tv_sec != b->st_mtim.tv_sec)
        return a->st_mtim.tv_sec > b->st_mtim.tv_sec;
    return a->st_mtim.tv_nsec >= b->st_mtim.tv_nsec;
}

int bench_gt_cache_valid(const char *gt_path, const char *base_path,
                         const char *query_path, uint32_t nq, uint32_t k) {
    struct stat g, b, q;
    if (stat(gt_path, &g) != 0 || stat(base_path, &b) != 0 || stat(query_path, &q) != 0)
        return 0;
    if ((uint64_t)g.st_size != (uint64_t)nq * (4 + 4ull * k)) return 0;
    return newer_or_same(&g, &b) && newer_or_same(&g, &q);
}

/* ---- loading a workload --------------------------------------------------------*/

static void synth_progress(void *ctx, uint64_t done, uint64_t total) {
    (void)total;
    bench_progress_set(ctx, done);
}

static int load_files(const bench_opts *o, synth_set *s, char *desc, size_t desclen) {
    char err[600];
    uint32_t n = 0, nq, dim = 0, qdim;
    /* Mixed mode streams the queries alone: a base is optional there. */
    if ((o->base_path && bench_vecs_read(o->base_path, o->base_limit, &s->base, &n, &dim,
                                         err, sizeof err) != 0) ||
        bench_vecs_read(o->query_path, o->query_limit, &s->queries, &nq, &qdim, err,
                        sizeof err) != 0) {
        fprintf(stderr, "deja-bench: %s\n", err);
        return -1;
    }
    if (!o->base_path) dim = qdim;
    s->n = n;
    s->nq = nq;
    s->dim = dim;
    if (qdim != dim) {
        fprintf(stderr, "deja-bench: %s has dimension %u but %s has %u\n", o->query_path,
                qdim, o->base_path, dim);
        return -1;
    }
    long bad = bench_normalize_rows(s->base, n, dim);
    if (bad >= 0) {
        fprintf(stderr, "deja-bench: %s: record %ld is a zero vector\n", o->base_path,
                bad);
        return -1;
    }
    bad = bench_normalize_rows(s->queries, nq, dim);
    if (bad >= 0) {
        fprintf(stderr, "deja-bench: %s: record %ld is a zero vector\n", o->query_path,
                bad);
        return -1;
    }
    snprintf(
        desc, desclen, "files base=%s (%u x %u%s) query=%s (%u%s)%s%s, L2-normalised",
        o->base_path ? o->base_path : "none", n, dim, o->base_limit ? ", first rows" : "",
        o->query_path, nq, o->query_limit ? ", first rows" : "", o->gt_path ? " gt=" : "",
        o->gt_path ? o->gt_path : "");
    return 0;
}

int bench_workload_load(const bench_opts *o, synth_set *s, char *desc, size_t desclen,
                        int progress) {
    memset(s, 0, sizeof *s);
    if (o->query_path) {
        if (load_files(o, s, desc, desclen) != 0) {
            synth_free(s);
            return -1;
        }
        return 0;
    }
    const synth_config *c = &o->synth;
    bench_progress *p =
        bench_progress_start(progress, "generating", (uint64_t)c->n + c->nq, 0);
    int rc = synth_generate(c, s, synth_progress, p);
    bench_progress_done(p);
    if (rc != 0) return -1;
    snprintf(desc, desclen,
             "synthetic n=%u nq=%u dim=%u seed=%llu mix=%.0f/%.0f/%.0f "
             "(paraphrase/repeat/novel) paraphrase_cos=%.2f..%.2f zipf=%.2f topics=%u",
             c->n, c->nq, c->dim, (unsigned long long)c->seed, c->share[0] * 100,
             c->share[1] * 100, c->share[2] * 100, c->paraphrase_min, c->paraphrase_max,
             c->zipf, s->topics);
    if (o->write_data) {
        char path[4096];
        snprintf(path, sizeof path, "%s.base.fvecs", o->write_data);
        if (bench_fvecs_write(path, s->base, s->n, s->dim) != 0) {
            fprintf(stderr, "deja-bench: cannot write %s: %s\n", path, strerror(errno));
            synth_free(s);
            return -1;
        }
        snprintf(path, sizeof path, "%s.query.fvecs", o->write_data);
        if (bench_fvecs_write(path, s->queries, s->nq, s->dim) != 0) {
            fprintf(stderr, "deja-bench: cannot write %s: %s\n", path, strerror(errno));
            synth_free(s);
            return -1;
        }
        if (!o->quiet)
            fprintf(stderr, "deja-bench: wrote %s.base.fvecs and %s.query.fvecs\n",
                    o->write_data, o->write_data);
    }
    return 0;
}
