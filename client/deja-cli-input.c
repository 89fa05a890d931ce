/* deja-cli-input.c: deja-cli's readers for vectors (.fvecs, .npy, text)
 * and for response texts given as files.
 *
 * Inputs are whatever a user points the tool at, so every length and count
 * read from a file is checked against the file's size and the protocol's
 * limits before it sizes anything. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "deja-cli.h"

#define CLI_MAX_DIM 4096

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static float le_f32(const uint8_t *p) {
    uint32_t u = le32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static double le_f64(const uint8_t *p) {
    uint64_t u = (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static int check_dim(uint64_t dim, const char *path, char *err, size_t errlen) {
    if (dim == 0 || dim > CLI_MAX_DIM)
        return fail(err, errlen, "%s: dimension %llu is not in 1..%d", path,
                    (unsigned long long)dim, CLI_MAX_DIM);
    return 0;
}

/* ---- .fvecs: per vector, int32 dim then dim float32, little-endian ---------- */

static int read_fvecs(FILE *f, const char *path, long row, float **vec, uint32_t *dim,
                      char *err, size_t errlen) {
    uint8_t head[4];
    for (long i = 0;; i++) {
        if (fread(head, 1, 4, f) != 4)
            return fail(err, errlen, "%s: has %ld vectors, row %ld asked for", path, i,
                        row);
        uint32_t d = le32(head);
        if (check_dim(d, path, err, errlen) != 0) return -1;
        if (i < row) {
            if (fseek(f, (long)d * 4, SEEK_CUR) != 0)
                return fail(err, errlen, "%s: %s", path, strerror(errno));
            continue;
        }
        uint8_t *raw = malloc((size_t)d * 4);
        float *v = malloc((size_t)d * sizeof *v);
        if (raw == NULL || v == NULL || fread(raw, 4, d, f) != d) {
            free(raw);
            free(v);
            return fail(err, errlen, "%s: vector %ld is cut short", path, i);
        }
        for (uint32_t j = 0; j < d; j++)
            v[j] = le_f32(raw + 4 * j);
        free(raw);
        *vec = v;
        *dim = d;
        return 0;
    }
}

/* ---- .npy: magic, version, header dict, then the raw array ------------------ */

/* Finds 'key': in the header dict and returns what follows, or NULL. */
static const char *npy_field(const char *hdr, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (p == NULL) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == ':')
        p++;
    return p;
}

static int read_npy(FILE *f, const char *path, long row, float **vec, uint32_t *dim,
                    char *err, size_t errlen) {
    uint8_t pre[12];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return fail(err, errlen, "%s: not an .npy file", path);
    size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) { /* versions 2 and 3 have a 4-byte header length */
        if (fread(pre + 10, 1, 2, f) != 2)
            return fail(err, errlen, "%s: cut short", path);
        hlen = le32(pre + 8);
    }
    if (hlen > 65536) return fail(err, errlen, "%s: header too large", path);
    char *hdr = calloc(1, hlen + 1);
    if (hdr == NULL || fread(hdr, 1, hlen, f) != hlen) {
        free(hdr);
        return fail(err, errlen, "%s: header cut short", path);
    }
    const char *descr = npy_field(hdr, "descr");
    const char *order = npy_field(hdr, "fortran_order");
    const char *shape = npy_field(hdr, "shape");
    int width = 0;
    if (descr && strncmp(descr, "'<f4'", 5) == 0) width = 4;
    if (descr && strncmp(descr, "'<f8'", 5) == 0) width = 8;
    unsigned long long dims[2] = {0, 0};
    int ndims = 0;
    if (shape && *shape == '(') {
        const char *p = shape + 1;
        while (ndims < 2) {
            while (*p == ' ')
                p++;
            if (!isdigit((unsigned char)*p)) break;
            dims[ndims++] = strtoull(p, (char **)&p, 10);
            while (*p == ' ' || *p == ',')
                p++;
        }
        if (*p != ')') ndims = 0;
    }
    int fortran = order == NULL || strncmp(order, "False", 5) != 0;
    free(hdr);
    if (width == 0)
        return fail(err, errlen, "%s: only little-endian float32/float64 arrays", path);
    if (ndims == 0 || (ndims == 2 && fortran))
        return fail(err, errlen, "%s: need a 1-D or C-ordered 2-D array", path);
    uint64_t rows = ndims == 2 ? dims[0] : 1, d = ndims == 2 ? dims[1] : dims[0];
    if (check_dim(d, path, err, errlen) != 0) return -1;
    if ((uint64_t)row >= rows)
        return fail(err, errlen, "%s: has %llu rows, row %ld asked for", path,
                    (unsigned long long)rows, row);
    if (fseek(f, (long)((uint64_t)row * d * (uint64_t)width), SEEK_CUR) != 0)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    uint8_t *raw = malloc((size_t)d * (size_t)width);
    float *v = malloc((size_t)d * sizeof *v);
    if (raw == NULL || v == NULL || fread(raw, (size_t)width, (size_t)d, f) != d) {
        free(raw);
        free(v);
        return fail(err, errlen, "%s: data cut short", path);
    }
    for (uint64_t j = 0; j < d; j++)
        v[j] = width == 4 ? le_f32(raw + 4 * j) : (float)le_f64(raw + 8 * j);
    free(raw);
    *vec = v;
    *dim = (uint32_t)d;
    return 0;
}

/* ---- text: one vector per line ------------------------------------------------ */

static int parse_text_line(const char *line, const char *path, long lineno, float **vec,
                           uint32_t *dim, char *err, size_t errlen) {
    float *v = malloc(CLI_MAX_DIM * sizeof *v);
    if (v == NULL) return fail(err, errlen, "out of memory");
    uint32_t n = 0;
    const char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',' || *p == '[' || *p == ']' ||
               *p == '\r' || *p == '\n')
            p++;
        if (*p == 0) break;
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(x)) {
            free(v);
            return fail(err, errlen, "%s:%ld: not a finite number at \"%.20s\"", path,
                        lineno, p);
        }
        if (n == CLI_MAX_DIM) {
            free(v);
            return fail(err, errlen, "%s:%ld: more than %d numbers", path, lineno,
                        CLI_MAX_DIM);
        }
        v[n++] = (float)x;
        p = end;
    }
    *vec = v;
    *dim = n;
    return 0;
}

static int read_text(FILE *f, const char *path, long row, float **vec, uint32_t *dim,
                     char *err, size_t errlen) {
    char *line = NULL;
    size_t cap = 0;
    long seen = 0, lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        const char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == 0 || *p == '#') continue;
        if (seen++ < row) continue;
        int rc = parse_text_line(p, path, lineno, vec, dim, err, errlen);
        if (rc == 0 && *dim == 0) {
            free(*vec);
            *vec = NULL;
            rc = fail(err, errlen, "%s:%ld: no numbers", path, lineno);
        }
        free(line);
        return rc;
    }
    free(line);
    return fail(err, errlen, "%s: has %ld vectors, row %ld asked for", path, seen, row);
}

int cli_read_vector(const char *path, long row, float **vec, uint32_t *dim, char *err,
                    size_t errlen) {
    *vec = NULL;
    *dim = 0;
    if (row < 0) return fail(err, errlen, "row must be 0 or more");
    if (strcmp(path, "-") == 0)
        return read_text(stdin, "stdin", row, vec, dim, err, errlen);
    FILE *f = fopen(path, "rb");
    if (f == NULL) return fail(err, errlen, "%s: %s", path, strerror(errno));
    int rc;
    if (ends_with(path, ".fvecs"))
        rc = read_fvecs(f, path, row, vec, dim, err, errlen);
    else if (ends_with(path, ".npy"))
        rc = read_npy(f, path, row, vec, dim, err, errlen);
    else
        rc = read_text(f, path, row, vec, dim, err, errlen);
    fclose(f);
    return rc;
}

int cli_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) return fail(err, errlen, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 1 >= cap) {
            char *bigger = cap < ((size_t)1 << 31) ? realloc(buf, cap * 2) : NULL;
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = buf == NULL || ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        free(buf);
        return fail(err, errlen, "%s: cannot read it", path);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}
