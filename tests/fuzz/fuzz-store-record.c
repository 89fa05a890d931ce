/* fuzz-store-record.c: libFuzzer target for the on-disk record decoders
 * (server/store-record.c): namespace, entry, vector, usage and meta
 * records, with the keys they are stored under, and the namespace
 * configuration the server then reads out of a namespace record.
 *
 * Input layout:
 *   u8  selector   low 3 bits: record kind (modulo 5); bit 7: write the
 *                  right checksum into the record before decoding, so the
 *                  fuzzer explores the layout checks behind the checksum
 *                  instead of stopping at it
 *   key            namespace records: u8 n, then n name bytes;
 *                  other records: 12 bytes (ns_id BE32, entry id BE64)
 *   record         the rest
 * Key and record are copied to heap blocks of exactly their sizes, so a
 * decoder that reads past either hits a redzone. A record that decodes is
 * encoded again from what was decoded and must come out byte for byte
 * identical (for the entry and usage layouts, whose padding the decoder
 * does not check, when that padding is zero). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

enum rec_kind { REC_NS, REC_ENTRY, REC_VECTOR, REC_USAGE, REC_META, REC_KINDS };

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static void fuzz_ns(const uint8_t *key, size_t key_len, const uint8_t *rec, size_t len) {
    store_ns_rec ns;
    int rc = store_ns_rec_decode(key, key_len, rec, len, &ns);
    CHECK(rc == 0 || rc == DEJA_ERR_CORRUPT);
    if (rc != 0) return;
    CHECK(ns.dim >= 1 && ns.dim <= 4096);
    CHECK(ns.config_len <= STORE_NS_CONFIG_MAX);
    CHECK(ns.name_len == key_len && ns.name[ns.name_len] == 0);
    uint8_t *again = malloc(STORE_NS_REC_MAX);
    CHECK(again != NULL);
    CHECK(store_ns_rec_encode(&ns, again) == len);
    CHECK(memcmp(again, rec, len) == 0);
    free(again);
    /* What srv-persist.c does next with the configuration: decode it; a
     * configuration of the current revision encodes back to its bytes. */
    store_ns_config cfg;
    rc = store_ns_config_decode(&ns, &cfg);
    CHECK(rc == 0 || rc == DEJA_ERR_CORRUPT);
    if (rc == 0 && ns.config_len == STORE_NS_CONFIG_FIXED + cfg.factory_len + 1u) {
        CHECK(cfg.factory[cfg.factory_len] == 0);
        store_ns_rec copy = ns;
        memset(copy.config, 0xAA, sizeof copy.config);
        store_ns_config_encode(&cfg, &copy);
        CHECK(copy.config_len == ns.config_len);
        CHECK(memcmp(copy.config, ns.config, ns.config_len) == 0);
    }
}

static void fuzz_entry(const uint8_t *key, const uint8_t *rec, size_t len) {
    store_entry_rec e;
    memset(&e, 0, sizeof e);
    int rc = store_entry_rec_decode(key, STORE_KEY_LEN, rec, len, &e);
    CHECK(rc == 0 || rc == DEJA_ERR_CORRUPT);
    if (rc != 0) return;
    CHECK(store_entry_rec_size(&e) == len);
    CHECK(e.prompt >= rec && e.prompt + e.prompt_len <= rec + len);
    CHECK(e.response >= rec && e.response + e.response_len <= rec + len);
    uint8_t k2[STORE_KEY_LEN];
    store_key_make(k2, e.ns_id, e.id);
    CHECK(memcmp(k2, key, STORE_KEY_LEN) == 0);
    if (!all_zero(rec + 52, 4)) return;
    uint8_t *again = malloc(len);
    CHECK(again != NULL);
    store_entry_rec_encode(key, &e, again);
    CHECK(memcmp(again, rec, len) == 0);
    free(again);
}

static void fuzz_vector(const uint8_t *key, const uint8_t *rec, size_t len) {
    store_entry_rec e;
    memset(&e, 0, sizeof e);
    int rc = store_vector_rec_decode(key, STORE_KEY_LEN, rec, len, &e);
    CHECK(rc == 0 || rc == DEJA_ERR_CORRUPT);
    if (rc != 0) return;
    CHECK(e.dim >= 1 && e.dim <= 4096 && store_vector_rec_size(e.dim) == len);
    /* The loader copies the vector out: the record is only 2-aligned. */
    float *aligned = malloc((size_t)e.dim * sizeof(float));
    CHECK(aligned != NULL);
    memcpy(aligned, e.vector, (size_t)e.dim * sizeof(float));
    uint8_t *again = malloc(len);
    CHECK(again != NULL);
    store_vector_rec_encode(key, aligned, e.dim, again);
    CHECK(memcmp(again, rec, len) == 0);
    free(again);
    free(aligned);
}

static void fuzz_usage(const uint8_t *key, const uint8_t *rec, size_t len) {
    store_usage_rec u;
    int rc = store_usage_rec_decode(key, STORE_KEY_LEN, rec, len, &u);
    CHECK(rc == 0 || rc == DEJA_ERR_CORRUPT);
    if (rc != 0) return;
    CHECK(len == STORE_USAGE_REC);
    if (!all_zero(rec + 17, 7)) return;
    uint8_t again[STORE_USAGE_REC];
    store_usage_rec_encode(key, &u, again);
    CHECK(memcmp(again, rec, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    enum rec_kind kind = (enum rec_kind)((data[0] & 7u) % REC_KINDS);
    int fix_sum = (data[0] & 0x80u) != 0;
    data++, size--;

    size_t key_len;
    if (kind == REC_NS) {
        if (size < 1) return 0;
        key_len = data[0];
        data++, size--;
    } else {
        key_len = STORE_KEY_LEN;
    }
    if (size < key_len) return 0;
    uint8_t *key = malloc(key_len ? key_len : 1);
    CHECK(key != NULL);
    if (key_len) memcpy(key, data, key_len);
    size_t len = size - key_len;
    uint8_t *rec = malloc(len ? len : 1);
    CHECK(rec != NULL);
    if (len) memcpy(rec, data + key_len, len);

    if (fix_sum && len >= 16) {
        uint64_t sum = store_record_sum(key, key_len, rec, len);
        memcpy(rec + 8, &sum, sizeof sum);
    }
    switch (kind) {
    case REC_NS: fuzz_ns(key, key_len, rec, len); break;
    case REC_ENTRY: fuzz_entry(key, rec, len); break;
    case REC_VECTOR: fuzz_vector(key, rec, len); break;
    case REC_USAGE: fuzz_usage(key, rec, len); break;
    case REC_META: {
        uint32_t fmt = store_meta_format_decode(rec, len);
        if (len != 4) CHECK(fmt == 0);
        break;
    }
    case REC_KINDS: break;
    }
    free(rec);
    free(key);
    return 0;
}
