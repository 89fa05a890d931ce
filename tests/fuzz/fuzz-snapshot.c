/* fuzz-snapshot.c: libFuzzer target for the index snapshot loader
 * (index/idx-snapshot.c with the flat and HNSW payload readers), fed
 * through idx_snapshot_read itself: the input becomes a file in memory
 * (memfd) that is opened by its /proc/self/fd path, so the real buffered,
 * scatter-reading, checksumming code runs.
 *
 * Input layout:
 *   u8  config     low 2 bits: flat, HNSW f32, HNSW int8 (modulo 3);
 *                  bit 2: M 8 instead of 4; bits 6 and 7: write the right
 *                  header and trailer checksums into the file first, so the
 *                  fuzzer explores the payload checks behind them
 *   u8  dim        1 + (dim % 16)
 *   ... the snapshot file
 * The configuration is the caller's (the server's namespace), so it is
 * small and sane; the file is hostile. A malformed file must give an
 * error, never a crash, an out-of-bounds read or an allocation larger
 * than a constant times the file; a file that loads must be a working
 * index: it is searched, listed, added to and removed from. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* Offsets of idx-snapshot.c's framing. */
#define HEADER_HASHED 36u
#define HEADER_BYTES 44u
#define TRAILER_BYTES 8u

static int file_fd = -1;
static char file_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    idx_simd_init();
    file_fd = memfd_create("deja-fuzz-snapshot", MFD_CLOEXEC);
    CHECK(file_fd >= 0);
    snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    return 0;
}

static int count_label(void *ctx, uint64_t label) {
    (void)label;
    (*(size_t *)ctx)++;
    return 0;
}

/* A loaded index must answer like any other. */
static void exercise(idx *ix, const idx_config *cfg) {
    size_t n = idx_count(ix), listed = 0;
    CHECK(idx_each_label(ix, count_label, &listed) == 0);
    CHECK(listed == n);
    CHECK(idx_memory(ix) > 0);

    float q[16];
    for (uint32_t i = 0; i < cfg->dim; i++)
        q[i] = (float)(i + 1);
    CHECK(idx_normalize(q, cfg->dim) == 0);
    idx_hit hits[8];
    uint32_t got = 0;
    CHECK(idx_search(ix, q, 8, -INFINITY, NULL, NULL, hits, &got) == 0);
    CHECK(got <= 8 && got <= n);
    for (uint32_t i = 0; i < got; i++) {
        float back[16];
        CHECK(idx_get(ix, hits[i].label, back) == 0);
    }
    /* A label no snapshot here holds (the seeds use small ones), then the
     * best hit: both must work on the loaded structure. */
    uint64_t fresh = UINT64_C(0xFEEDFACECAFE);
    if (idx_add(ix, fresh, q) == 0) CHECK(idx_remove(ix, fresh) == 0);
    if (got > 0) CHECK(idx_remove(ix, hits[0].label) == 0);
    CHECK(idx_search(ix, q, 8, -INFINITY, NULL, NULL, hits, &got) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    unsigned sel = data[0];
    idx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.dim = 1u + data[1] % 16u;
    switch (sel & 3u) {
    case 0: cfg.kind = IDX_KIND_FLAT; break;
    case 1:
    case 2:
    default:
        cfg.kind = IDX_KIND_HNSW;
        cfg.quant = (sel & 3u) == 2 ? IDX_QUANT_INT8 : IDX_QUANT_F32;
        cfg.M = sel & 4u ? 8 : 4;
        cfg.ef_construction = 16;
        cfg.ef_search = 16;
        cfg.seed = 1;
        break;
    }
    size_t len = size - 2;
    uint8_t *file = malloc(len ? len : 1);
    CHECK(file != NULL);
    if (len) memcpy(file, data + 2, len);
    if ((sel & 0x40u) && len >= HEADER_BYTES) {
        uint64_t sum = XXH3_64bits(file, HEADER_HASHED);
        memcpy(file + HEADER_HASHED, &sum, sizeof sum);
    }
    if ((sel & 0x80u) && len >= HEADER_BYTES + TRAILER_BYTES) {
        uint64_t sum = XXH3_64bits(file, len - TRAILER_BYTES);
        memcpy(file + len - TRAILER_BYTES, &sum, sizeof sum);
    }
    CHECK(ftruncate(file_fd, 0) == 0);
    CHECK(pwrite(file_fd, file, len, 0) == (ssize_t)len);
    free(file);

    idx *ix = NULL;
    uint64_t tag = 0;
    char msg[256];
    int rc = idx_snapshot_read(file_path, &cfg, &ix, &tag, msg, sizeof msg);
    CHECK(rc == 0 || rc == DEJA_ERR_CORRUPT || rc == DEJA_ERR_VERSION ||
          rc == DEJA_ERR_INVALID_ARG);
    CHECK((rc == 0) == (ix != NULL));
    CHECK(rc == 0 || msg[0] != 0);
    if (ix) {
        CHECK(idx_dim(ix) == cfg.dim);
        exercise(ix, &cfg);
        idx_destroy(ix);
    }
    return 0;
}
