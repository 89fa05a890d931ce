/* idx-snapshot.c: index snapshots -- the generic half. It validates the
 * arguments, frames the file and dispatches the payload to the kind
 * (idx_ops.snapshot_*), and provides the buffered streams the kinds write
 * and read through, which keep the checksum as the bytes pass.
 *
 * File format, version 1, every integer little-endian:
 *
 *   offset  size  field
 *   0       4     magic "DJIX"
 *   4       4     format version (1)
 *   8       4     kind (enum idx_kind)
 *   12      4     dim
 *   16      4     M                (0 for kinds without one)
 *   20      4     ef_construction  (0 for kinds without one)
 *   24      4     quant            (0 for kinds without one)
 *   28      8     tag (the caller's)
 *   36      8     XXH3-64 of bytes 0..36
 *   44      ...   the kind's payload (idx-flat.c, idx-hnsw-snapshot.c)
 *   end-8   8     XXH3-64 of every byte before it
 *
 * The header carries its own checksum so that a damaged header reads as
 * damaged (CORRUPT) and only an intact one of another configuration
 * reads as INVALID_ARG; magic and version are judged before it, since a
 * file of another version may lay its header out differently.
 *
 * Writing goes to path.tmp, is fsynced, renamed over path and the folder
 * fsynced, so a crash leaves the old snapshot or the new one, never half
 * of one. Reading checks every count against the bytes left in the file
 * before allocating for it, so a damaged or hostile file costs at most a
 * constant (set by the configuration) times its own size in memory, and
 * is refused by its structure or, failing that, by the final checksum. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t inside the streams */
#include <xxhash.h>

#include "idx-private.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "deja's snapshot format assumes a little-endian host"
#endif

#define SNAP_MAGIC "DJIX"
#define SNAP_VERSION 1u
#define SNAP_HEADER_BYTES 44u
#define SNAP_HEADER_HASHED 36u
#define SNAP_TRAILER_BYTES 8u
/* Stream buffer: large enough that syscalls cost nothing next to the
 * copy, small enough to stay in L2/L3 while the checksum reads it. */
#define SNAP_BUF_BYTES (1u << 20)
/* Elements at least this large are read straight into place. */
#define SNAP_DIRECT_MIN 2048u
#define SNAP_IOV_MAX 1024

/* The streams embed an XXH3_state_t, whose SIMD code needs it 64-byte
 * aligned (XXH3_createState aligns it the same way). */
static void *stream_alloc(size_t bytes) {
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* ---- the writer -------------------------------------------------------------*/

/* Write-behind: every SNAP_SYNC_BYTES written, writeback of that window
 * is started and the one before it waited for, so the file never has
 * more than two windows dirty. Without it a million-entry graph (1.6 GB
 * in int8, 6 GB in f32) sat in the page cache until the final fsync,
 * and the commit thread's fdatasyncs queued behind its writeback: STOREs
 * waited up to 0.93 s at 1M int8 (0.46 s with it). (Advisory: on a file
 * that cannot do it, such as a pipe, nothing happens; the final fsync is
 * what makes it durable.) */
#define SNAP_SYNC_BYTES (32u << 20)

struct idx_snap_writer {
    XXH3_state_t hash;
    int fd;
    int err;
    unsigned char *buf;
    size_t len;
    uint64_t written; /* bytes written to fd */
    uint64_t synced;  /* start of the window not yet handed to writeback */
    uint64_t prev;    /* start of the window handed to it last */
};

/* Writes all of p, retrying short writes. */
static int write_all(int fd, const void *p, size_t n) {
    const char *at = p;
    while (n > 0) {
        ssize_t done = write(fd, at, n);
        if (done < 0) {
            if (errno == EINTR) continue;
            return DEJA_ERR_IO;
        }
        at += done;
        n -= (size_t)done;
    }
    return 0;
}

/* Writes n bytes of the stream, with write-behind (SNAP_SYNC_BYTES). */
static int writer_write(idx_snap_writer *w, const void *p, size_t n) {
    int rc = write_all(w->fd, p, n);
    if (rc) return rc;
    w->written += n;
    if (w->written - w->synced >= SNAP_SYNC_BYTES) {
        (void)sync_file_range(w->fd, (off64_t)w->synced,
                              (off64_t)(w->written - w->synced), SYNC_FILE_RANGE_WRITE);
        if (w->synced > w->prev) /* the window before: wait for it */
            (void)sync_file_range(w->fd, (off64_t)w->prev, (off64_t)(w->synced - w->prev),
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER);
        w->prev = w->synced;
        w->synced = w->written;
    }
    return 0;
}

static int writer_flush(idx_snap_writer *w) {
    if (w->err || w->len == 0) return w->err;
    XXH3_64bits_update(&w->hash, w->buf, w->len);
    w->err = writer_write(w, w->buf, w->len);
    w->len = 0;
    return w->err;
}

int idx_snap_put(idx_snap_writer *w, const void *p, size_t n) {
    if (w->err || n == 0) return w->err;
    if (n >= SNAP_BUF_BYTES) {
        /* A large block skips the buffer: no copy, same bytes, same hash
         * order (the buffer is flushed first). */
        if (writer_flush(w)) return w->err;
        XXH3_64bits_update(&w->hash, p, n);
        w->err = writer_write(w, p, n);
        return w->err;
    }
    if (w->len + n > SNAP_BUF_BYTES && writer_flush(w)) return w->err;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return 0;
}

int idx_snap_put_u32(idx_snap_writer *w, uint32_t v) {
    return idx_snap_put(w, &v, sizeof v);
}

int idx_snap_put_u64(idx_snap_writer *w, uint64_t v) {
    return idx_snap_put(w, &v, sizeof v);
}

/* ---- the reader -------------------------------------------------------------*/

struct idx_snap_reader {
    XXH3_state_t hash;
    int fd;
    uint64_t limit;    /* bytes before the trailing checksum */
    uint64_t file_pos; /* bytes read from fd so far, all hashed */
    uint64_t consumed; /* bytes handed out */
    unsigned char *buf;
    size_t pos, len;
    char *msg;
    size_t msg_cap;
};

int idx_snap_bad(idx_snap_reader *r, const char *why) {
    if (r->msg && r->msg_cap > 0) snprintf(r->msg, r->msg_cap, "%s", why);
    return DEJA_ERR_CORRUPT;
}

uint64_t idx_snap_left(const idx_snap_reader *r) {
    return r->limit - r->consumed;
}

/* Refills the (empty) buffer, hashing what arrives. The caller has
 * checked that payload bytes are left. */
static int reader_fill(idx_snap_reader *r) {
    uint64_t left = r->limit - r->file_pos;
    size_t want = left < SNAP_BUF_BYTES ? (size_t)left : SNAP_BUF_BYTES;
    ssize_t got;
    do {
        got = read(r->fd, r->buf, want);
    } while (got < 0 && errno == EINTR);
    if (got < 0) return DEJA_ERR_IO;
    if (got == 0) return idx_snap_bad(r, "file shrank while being read");
    XXH3_64bits_update(&r->hash, r->buf, (size_t)got);
    r->file_pos += (uint64_t)got;
    r->pos = 0;
    r->len = (size_t)got;
    return 0;
}

int idx_snap_get(idx_snap_reader *r, void *p, size_t n) {
    if (n > idx_snap_left(r)) return idx_snap_bad(r, "truncated");
    unsigned char *to = p;
    while (n > 0) {
        if (r->pos == r->len) {
            int rc = reader_fill(r);
            if (rc) return rc;
        }
        size_t take = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(to, r->buf + r->pos, take);
        r->pos += take;
        r->consumed += take;
        to += take;
        n -= take;
    }
    return 0;
}

int idx_snap_get_u32(idx_snap_reader *r, uint32_t *v) {
    return idx_snap_get(r, v, sizeof *v);
}

int idx_snap_get_u64(idx_snap_reader *r, uint64_t *v) {
    return idx_snap_get(r, v, sizeof *v);
}

int idx_snap_get_scatter(idx_snap_reader *r, void *const *dst, size_t count,
                         size_t elem) {
    if (count == 0 || elem == 0) return 0;
    if (count > idx_snap_left(r) / elem) return idx_snap_bad(r, "truncated");
    if (elem < SNAP_DIRECT_MIN) {
        for (size_t i = 0; i < count; i++) {
            int rc = idx_snap_get(r, dst[i], elem);
            if (rc) return rc;
        }
        return 0;
    }
    /* Whatever is buffered goes first, possibly ending mid-element. */
    size_t e = 0, off = 0;
    while (e < count && r->pos < r->len) {
        size_t take = r->len - r->pos < elem - off ? r->len - r->pos : elem - off;
        memcpy((char *)dst[e] + off, r->buf + r->pos, take);
        r->pos += take;
        r->consumed += take;
        off += take;
        if (off == elem) e++, off = 0;
    }
    /* The buffer is empty, so the file offset is r->consumed; the rest
     * comes straight into place, and is hashed there in file order. */
    while (e < count) {
        struct iovec iov[SNAP_IOV_MAX];
        int k = 0;
        for (size_t i = e; i < count && k < SNAP_IOV_MAX; i++, k++) {
            size_t skip = i == e ? off : 0;
            iov[k].iov_base = (char *)dst[i] + skip;
            iov[k].iov_len = elem - skip;
        }
        ssize_t got;
        do {
            got = readv(r->fd, iov, k);
        } while (got < 0 && errno == EINTR);
        if (got < 0) return DEJA_ERR_IO;
        if (got == 0) return idx_snap_bad(r, "file shrank while being read");
        r->file_pos += (uint64_t)got;
        r->consumed += (uint64_t)got;
        for (size_t rest = (size_t)got; rest > 0;) {
            size_t take = rest < elem - off ? rest : elem - off;
            XXH3_64bits_update(&r->hash, (char *)dst[e] + off, take);
            rest -= take;
            off += take;
            if (off == elem) e++, off = 0;
        }
    }
    return 0;
}

/* ---- the header -------------------------------------------------------------*/

typedef struct snap_header {
    uint32_t version, kind, dim;
    idx_snap_params params;
    uint64_t tag;
} snap_header;

/* Offsets of the header fields (see the top of the file). */
enum {
    HDR_VERSION = 4,
    HDR_KIND = 8,
    HDR_DIM = 12,
    HDR_M = 16,
    HDR_EF_CONSTRUCTION = 20,
    HDR_QUANT = 24,
    HDR_TAG = 28,
};

static void put32(unsigned char *at, uint32_t v) {
    memcpy(at, &v, sizeof v);
}
static uint32_t get32(const unsigned char *at) {
    uint32_t v;
    memcpy(&v, at, sizeof v);
    return v;
}

static void header_encode(const snap_header *hd, unsigned char out[SNAP_HEADER_BYTES]) {
    memcpy(out, SNAP_MAGIC, 4);
    put32(out + HDR_VERSION, hd->version);
    put32(out + HDR_KIND, hd->kind);
    put32(out + HDR_DIM, hd->dim);
    put32(out + HDR_M, hd->params.M);
    put32(out + HDR_EF_CONSTRUCTION, hd->params.ef_construction);
    put32(out + HDR_QUANT, hd->params.quant);
    memcpy(out + HDR_TAG, &hd->tag, sizeof hd->tag);
    uint64_t sum = XXH3_64bits(out, SNAP_HEADER_HASHED);
    memcpy(out + SNAP_HEADER_HASHED, &sum, sizeof sum);
}

/* Checks magic, version and the header's checksum, in that order. */
static int header_decode(idx_snap_reader *r, const unsigned char in[SNAP_HEADER_BYTES],
                         snap_header *hd) {
    if (memcmp(in, SNAP_MAGIC, 4) != 0)
        return idx_snap_bad(r, "not a deja index snapshot (bad magic)");
    hd->version = get32(in + HDR_VERSION);
    if (hd->version != SNAP_VERSION) {
        if (r->msg && r->msg_cap > 0)
            snprintf(r->msg, r->msg_cap, "snapshot format %u, this build reads %u",
                     hd->version, SNAP_VERSION);
        return DEJA_ERR_VERSION;
    }
    uint64_t sum;
    memcpy(&sum, in + SNAP_HEADER_HASHED, sizeof sum);
    if (sum != XXH3_64bits(in, SNAP_HEADER_HASHED))
        return idx_snap_bad(r, "damaged header (checksum mismatch)");
    hd->kind = get32(in + HDR_KIND);
    hd->dim = get32(in + HDR_DIM);
    hd->params.M = get32(in + HDR_M);
    hd->params.ef_construction = get32(in + HDR_EF_CONSTRUCTION);
    hd->params.quant = get32(in + HDR_QUANT);
    memcpy(&hd->tag, in + HDR_TAG, sizeof hd->tag);
    return 0;
}

static void kind_params(const idx *ix, idx_snap_params *out) {
    memset(out, 0, sizeof *out);
    if (ix->ops->snapshot_params) ix->ops->snapshot_params(ix, out);
}

/* INVALID_ARG, naming the first field that differs, when the file's
 * configuration is not the one ix was created with. */
static int config_compare(idx_snap_reader *r, const snap_header *hd, const idx *ix) {
    idx_snap_params want;
    kind_params(ix, &want);
    const struct {
        const char *name;
        uint32_t file, cfg;
    } fields[] = {
        {"dim", hd->dim, ix->dim},
        {"M", hd->params.M, want.M},
        {"ef_construction", hd->params.ef_construction, want.ef_construction},
        {"quant", hd->params.quant, want.quant},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].file == fields[i].cfg) continue;
        if (r->msg && r->msg_cap > 0)
            snprintf(r->msg, r->msg_cap, "snapshot has %s %u, the configuration %u",
                     fields[i].name, fields[i].file, fields[i].cfg);
        return DEJA_ERR_INVALID_ARG;
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------------*/

/* fsyncs the folder holding path, so the rename survives a crash. */
static int sync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        if ((size_t)(slash - path) >= sizeof dir) return DEJA_ERR_INVALID_ARG;
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return DEJA_ERR_IO;
    int rc = fsync(fd) == 0 ? 0 : DEJA_ERR_IO;
    close(fd);
    return rc;
}

/* Header, payload and checksum into the open file fd. */
static int write_stream(const idx *ix, int fd, uint64_t tag) {
    idx_snap_writer *w = stream_alloc(sizeof *w);
    unsigned char *buf = malloc(SNAP_BUF_BYTES);
    int rc = DEJA_ERR_NOMEM;
    if (w && buf) {
        memset(w, 0, sizeof *w);
        XXH3_64bits_reset(&w->hash);
        w->fd = fd;
        w->buf = buf;
        snap_header hd = {SNAP_VERSION, (uint32_t)ix->kind, ix->dim, {0, 0, 0}, tag};
        kind_params(ix, &hd.params);
        unsigned char head[SNAP_HEADER_BYTES];
        header_encode(&hd, head);
        rc = idx_snap_put(w, head, sizeof head);
        if (rc == 0) rc = ix->ops->snapshot_write(ix, w);
        if (rc == 0) rc = writer_flush(w);
        if (rc == 0) {
            /* The checksum itself is not hashed. */
            uint64_t sum = XXH3_64bits_digest(&w->hash);
            rc = write_all(fd, &sum, sizeof sum);
        }
    }
    free(buf);
    free(w);
    return rc;
}

int idx_snapshot_write(const idx *ix, const char *path, uint64_t tag) {
    if (!ix || !path || !path[0] || !ix->ops->snapshot_write) return DEJA_ERR_INVALID_ARG;
    size_t path_len = strlen(path);
    char *tmp = malloc(path_len + 5);
    if (!tmp) return DEJA_ERR_NOMEM;
    memcpy(tmp, path, path_len);
    memcpy(tmp + path_len, ".tmp", 5);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(tmp);
        return DEJA_ERR_IO;
    }
    int rc = write_stream(ix, fd, tag);
    /* The data must be on disk before the rename makes it the snapshot. */
    if (rc == 0 && fsync(fd) != 0) rc = DEJA_ERR_IO;
    if (close(fd) != 0 && rc == 0) rc = DEJA_ERR_IO;
    if (rc == 0 && rename(tmp, path) != 0) rc = DEJA_ERR_IO;
    if (rc == 0)
        rc = sync_parent(path);
    else
        unlink(tmp);
    free(tmp);
    return rc;
}

/* ---- reading ----------------------------------------------------------------*/

/* Everything after the open: header, configuration, payload, checksum.
 * *out is set only on success. */
static int read_stream(idx_snap_reader *r, const idx_config *cfg, idx **out,
                       uint64_t *tag) {
    unsigned char head[SNAP_HEADER_BYTES];
    int rc = idx_snap_get(r, head, sizeof head);
    if (rc) return rc;
    snap_header hd;
    memset(&hd, 0, sizeof hd);
    rc = header_decode(r, head, &hd);
    if (rc) return rc;
    if (hd.kind != (uint32_t)cfg->kind) {
        if (r->msg && r->msg_cap > 0)
            snprintf(r->msg, r->msg_cap,
                     "snapshot of index kind %u, the configuration %u", hd.kind,
                     (unsigned)cfg->kind);
        return DEJA_ERR_INVALID_ARG;
    }
    idx *ix = NULL;
    rc = idx_create_msg(cfg, &ix, r->msg, r->msg_cap);
    if (rc) return rc;
    if (!ix->ops->snapshot_read) {
        if (r->msg && r->msg_cap > 0)
            snprintf(r->msg, r->msg_cap, "index kind %s has no snapshots", ix->ops->name);
        idx_destroy(ix);
        return DEJA_ERR_INVALID_ARG;
    }
    rc = config_compare(r, &hd, ix);
    if (rc == 0) rc = ix->ops->snapshot_read(ix, r);
    if (rc == 0 && idx_snap_left(r) != 0)
        rc = idx_snap_bad(r, "unexpected bytes after the payload");
    if (rc == 0) {
        /* The buffer never reaches past limit, so the trailer is next. */
        unsigned char trailer[SNAP_TRAILER_BYTES];
        ssize_t got;
        do {
            got = pread(r->fd, trailer, sizeof trailer, (off_t)r->limit);
        } while (got < 0 && errno == EINTR);
        uint64_t sum;
        memcpy(&sum, trailer, sizeof sum);
        if (got < 0)
            rc = DEJA_ERR_IO;
        else if (got != (ssize_t)sizeof trailer)
            rc = idx_snap_bad(r, "truncated");
        else if (sum != XXH3_64bits_digest(&r->hash))
            rc = idx_snap_bad(r, "damaged (checksum mismatch)");
    }
    if (rc) {
        idx_destroy(ix);
        return rc;
    }
    *out = ix;
    *tag = hd.tag;
    return 0;
}

int idx_snapshot_read(const char *path, const idx_config *cfg, idx **out, uint64_t *tag,
                      char *msg, size_t msg_cap) {
    if (msg && msg_cap > 0) msg[0] = '\0';
    if (out) *out = NULL;
    if (!path || !cfg || !out || !tag) return DEJA_ERR_INVALID_ARG;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return DEJA_ERR_NOT_FOUND;
        if (msg && msg_cap > 0) snprintf(msg, msg_cap, "open: %s", strerror(errno));
        return DEJA_ERR_IO;
    }
    idx_snap_reader *r = stream_alloc(sizeof *r);
    unsigned char *buf = malloc(SNAP_BUF_BYTES);
    int rc = DEJA_ERR_NOMEM;
    struct stat st;
    if (!r || !buf) {
        /* rc says NOMEM */
    } else if (fstat(fd, &st) != 0) {
        rc = DEJA_ERR_IO;
    } else if (!S_ISREG(st.st_mode)) {
        rc = DEJA_ERR_CORRUPT;
        if (msg && msg_cap > 0) snprintf(msg, msg_cap, "not a regular file");
    } else if ((uint64_t)st.st_size < SNAP_HEADER_BYTES + SNAP_TRAILER_BYTES) {
        rc = DEJA_ERR_CORRUPT;
        if (msg && msg_cap > 0)
            snprintf(msg, msg_cap, "%lld bytes: too short for a snapshot",
                     (long long)st.st_size);
    } else {
        memset(r, 0, sizeof *r);
        XXH3_64bits_reset(&r->hash);
        r->fd = fd;
        r->limit = (uint64_t)st.st_size - SNAP_TRAILER_BYTES;
        r->buf = buf;
        r->msg = msg;
        r->msg_cap = msg_cap;
        /* The whole file is read once, front to back. */
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        rc = read_stream(r, cfg, out, tag);
    }
    free(buf);
    free(r);
    close(fd);
    return rc;
}

int idx_each_label(const idx *ix, int (*fn)(void *ctx, uint64_t label), void *ctx) {
    if (!ix || !fn || !ix->ops->each_label) return DEJA_ERR_INVALID_ARG;
    return ix->ops->each_label(ix, fn, ctx);
}
