/* store-record.c: the store's record layouts (store-record.h), encoded and
 * decoded without LMDB. store.c moves these bytes in and out of its
 * tables; everything here is pure, so the record fuzzer runs it directly. */
#include "store-record.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "deja's on-disk format assumes a little-endian host"
#endif

#define MAGIC_ENTRY 0x31454A44u  /* "DJE1" */
#define MAGIC_VECTOR 0x31564A44u /* "DJV1" */
#define MAGIC_NS 0x314E4A44u     /* "DJN1" */
#define MAGIC_USAGE 0x31554A44u  /* "DJU1" */

#define DIM_MAX 4096u

static void put_u32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
}
static void put_u64(uint8_t *p, uint64_t v) {
    memcpy(p, &v, 8);
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

void store_key_make(uint8_t key[STORE_KEY_LEN], uint32_t ns_id, uint64_t id) {
    for (int i = 0; i < 4; i++)
        key[i] = (uint8_t)(ns_id >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        key[4 + i] = (uint8_t)(id >> (56 - 8 * i));
}

void store_key_parse(const uint8_t key[STORE_KEY_LEN], uint32_t *ns_id, uint64_t *id) {
    uint32_t n = 0;
    uint64_t v = 0;
    for (int i = 0; i < 4; i++)
        n = n << 8 | key[i];
    for (int i = 0; i < 8; i++)
        v = v << 8 | key[4 + i];
    *ns_id = n;
    *id = v;
}

uint64_t store_record_sum(const void *key, size_t key_len, const uint8_t *rec,
                          size_t len) {
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, key, key_len);
    XXH3_64bits_update(&st, rec, 8);
    XXH3_64bits_update(&st, rec + 16, len - 16);
    return XXH3_64bits_digest(&st);
}

/* ---- namespaces ------------------------------------------------------------*/

size_t store_ns_rec_encode(const store_ns_rec *ns, uint8_t rec[STORE_NS_REC_MAX]) {
    size_t len = STORE_NS_REC_FIXED + ns->config_len;
    memset(rec, 0, STORE_NS_REC_FIXED);
    put_u32(rec, MAGIC_NS);
    put_u32(rec + 4, ns->ns_id);
    put_u32(rec + 16, ns->dim);
    put_u32(rec + 20, ns->config_len);
    put_u64(rec + 24, ns->created_ms);
    memcpy(rec + STORE_NS_REC_FIXED, ns->config, ns->config_len);
    put_u64(rec + 8, store_record_sum(ns->name, ns->name_len, rec, len));
    return len;
}

int store_ns_rec_decode(const uint8_t *key, size_t key_len, const uint8_t *rec,
                        size_t len, store_ns_rec *ns) {
    if (len < STORE_NS_REC_FIXED || get_u32(rec) != MAGIC_NS || key_len == 0 ||
        key_len > 255)
        return DEJA_ERR_CORRUPT;
    uint32_t config_len = get_u32(rec + 20);
    if (config_len > STORE_NS_CONFIG_MAX || STORE_NS_REC_FIXED + config_len != len)
        return DEJA_ERR_CORRUPT;
    if (get_u64(rec + 8) != store_record_sum(key, key_len, rec, len))
        return DEJA_ERR_CORRUPT;
    ns->ns_id = get_u32(rec + 4);
    ns->dim = get_u32(rec + 16);
    ns->created_ms = get_u64(rec + 24);
    ns->config_len = (uint16_t)config_len;
    memcpy(ns->config, rec + STORE_NS_REC_FIXED, config_len);
    ns->name_len = (uint8_t)key_len;
    memcpy(ns->name, key, key_len);
    ns->name[key_len] = 0;
    return ns->dim >= 1 && ns->dim <= DIM_MAX ? 0 : DEJA_ERR_CORRUPT;
}

/* ---- namespace configurations (layout in store.h) --------------------------*/

/* The flag bits defined before revision 1: what an unrevised block keeps. */
#define LEGACY_FLAGS 0x03u

static void put_u16(uint8_t *p, uint16_t v) {
    memcpy(p, &v, 2);
}
static uint16_t get_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

void store_ns_config_encode(const store_ns_config *cfg, store_ns_rec *ns) {
    uint8_t *p = ns->config;
    put_u16(p, cfg->dim);
    p[2] = cfg->index_kind;
    p[3] = cfg->quant;
    put_u16(p + 4, cfg->hnsw_m);
    put_u16(p + 6, cfg->hnsw_ef_construction);
    put_u16(p + 8, cfg->hnsw_ef_search);
    p[10] = cfg->ttl_mode;
    p[11] = cfg->flags;
    memcpy(p + 12, &cfg->min_threshold, 4);
    memcpy(p + 16, &cfg->dedup, 4);
    put_u32(p + 20, cfg->default_ttl_s);
    put_u32(p + 24, cfg->max_age_s);
    put_u64(p + 28, cfg->max_bytes);
    put_u64(p + 36, cfg->max_entries);
    p[44] = cfg->factory_len;
    memcpy(p + STORE_NS_CONFIG_FIXED, cfg->factory, cfg->factory_len);
    uint8_t *tail = p + STORE_NS_CONFIG_FIXED + cfg->factory_len;
    tail[0] = cfg->shadow;
    memcpy(tail + 1, &cfg->gray_band, 4);
    tail[5] = STORE_NS_CONFIG_REVISION;
    ns->config_len = (uint16_t)(STORE_NS_CONFIG_FIXED + cfg->factory_len + 6u);
}

int store_ns_config_decode(const store_ns_rec *ns, store_ns_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    size_t len = ns->config_len;
    if (len == 0) { /* the first format: dim only */
        cfg->dim = (uint16_t)ns->dim;
        return ns->dim <= UINT16_MAX ? 0 : DEJA_ERR_CORRUPT;
    }
    const uint8_t *p = ns->config;
    if (len < STORE_NS_CONFIG_FIXED || len > STORE_NS_CONFIG_MAX) return DEJA_ERR_CORRUPT;
    size_t block = STORE_NS_CONFIG_FIXED + (size_t)p[44];
    int legacy = len == block;
    int rev1 = len == block + 1 && p[block] == 1;
    int rev2 = len == block + 6 && p[block + 5] == 2;
    if (!legacy && !rev1 && !rev2) return DEJA_ERR_CORRUPT;
    if (rev2) {
        cfg->shadow = p[block];
        memcpy(&cfg->gray_band, p + block + 1, 4);
    }
    cfg->dim = get_u16(p);
    cfg->index_kind = p[2];
    cfg->quant = p[3];
    cfg->hnsw_m = get_u16(p + 4);
    cfg->hnsw_ef_construction = get_u16(p + 6);
    cfg->hnsw_ef_search = get_u16(p + 8);
    cfg->ttl_mode = p[10];
    cfg->flags = legacy ? (uint8_t)(p[11] & LEGACY_FLAGS) : p[11];
    memcpy(&cfg->min_threshold, p + 12, 4);
    memcpy(&cfg->dedup, p + 16, 4);
    cfg->default_ttl_s = get_u32(p + 20);
    cfg->max_age_s = get_u32(p + 24);
    cfg->max_bytes = get_u64(p + 28);
    cfg->max_entries = get_u64(p + 36);
    cfg->factory_len = p[44];
    memcpy(cfg->factory, p + STORE_NS_CONFIG_FIXED, cfg->factory_len);
    cfg->factory[cfg->factory_len] = 0;
    return 0;
}

/* ---- entries and vectors ---------------------------------------------------*/

size_t store_entry_rec_size(const store_entry_rec *e) {
    return STORE_ENTRY_HDR + (size_t)e->prompt_len + e->response_len;
}

void store_entry_rec_encode(const uint8_t key[STORE_KEY_LEN], const store_entry_rec *e,
                            uint8_t *rec) {
    memset(rec, 0, STORE_ENTRY_HDR);
    put_u32(rec, MAGIC_ENTRY);
    put_u32(rec + 4, e->prompt_len);
    put_u64(rec + 16, e->created_ms);
    put_u64(rec + 24, e->expires_ms);
    put_u32(rec + 32, e->input_tokens);
    put_u32(rec + 36, e->output_tokens);
    put_u64(rec + 40, e->cost_micro_usd);
    put_u32(rec + 48, e->response_len);
    if (e->prompt_len) memcpy(rec + STORE_ENTRY_HDR, e->prompt, e->prompt_len);
    if (e->response_len)
        memcpy(rec + STORE_ENTRY_HDR + e->prompt_len, e->response, e->response_len);
    put_u64(rec + 8, store_record_sum(key, STORE_KEY_LEN, rec, store_entry_rec_size(e)));
}

int store_entry_rec_decode(const uint8_t *key, size_t key_len, const uint8_t *rec,
                           size_t len, store_entry_rec *e) {
    if (key_len != STORE_KEY_LEN || len < STORE_ENTRY_HDR || get_u32(rec) != MAGIC_ENTRY)
        return DEJA_ERR_CORRUPT;
    uint32_t prompt_len = get_u32(rec + 4), response_len = get_u32(rec + 48);
    if ((uint64_t)STORE_ENTRY_HDR + prompt_len + response_len != len)
        return DEJA_ERR_CORRUPT;
    if (get_u64(rec + 8) != store_record_sum(key, STORE_KEY_LEN, rec, len))
        return DEJA_ERR_CORRUPT;
    store_key_parse(key, &e->ns_id, &e->id);
    e->created_ms = get_u64(rec + 16);
    e->expires_ms = get_u64(rec + 24);
    e->input_tokens = get_u32(rec + 32);
    e->output_tokens = get_u32(rec + 36);
    e->cost_micro_usd = get_u64(rec + 40);
    e->prompt_len = prompt_len;
    e->prompt = rec + STORE_ENTRY_HDR;
    e->response_len = response_len;
    e->response = rec + STORE_ENTRY_HDR + prompt_len;
    return 0;
}

size_t store_vector_rec_size(uint32_t dim) {
    return STORE_VECTOR_HDR + (size_t)dim * 4;
}

void store_vector_rec_encode(const uint8_t key[STORE_KEY_LEN], const float *vector,
                             uint32_t dim, uint8_t *rec) {
    memset(rec, 0, STORE_VECTOR_HDR);
    put_u32(rec, MAGIC_VECTOR);
    put_u32(rec + 4, dim);
    memcpy(rec + STORE_VECTOR_HDR, vector, (size_t)dim * 4);
    put_u64(rec + 8,
            store_record_sum(key, STORE_KEY_LEN, rec, store_vector_rec_size(dim)));
}

int store_vector_rec_decode(const uint8_t *key, size_t key_len, const uint8_t *rec,
                            size_t len, store_entry_rec *e) {
    if (key_len != STORE_KEY_LEN || len < STORE_VECTOR_HDR ||
        get_u32(rec) != MAGIC_VECTOR)
        return DEJA_ERR_CORRUPT;
    uint32_t dim = get_u32(rec + 4);
    if (dim == 0 || dim > DIM_MAX || store_vector_rec_size(dim) != len)
        return DEJA_ERR_CORRUPT;
    if (get_u64(rec + 8) != store_record_sum(key, STORE_KEY_LEN, rec, len))
        return DEJA_ERR_CORRUPT;
    e->dim = dim;
    e->vector = (const float *)(const void *)(rec + STORE_VECTOR_HDR);
    return 0;
}

int store_vector_rec_dim(size_t len, uint32_t *dim) {
    if (len < STORE_VECTOR_HDR + 4 || (len - STORE_VECTOR_HDR) % 4)
        return DEJA_ERR_CORRUPT;
    size_t d = (len - STORE_VECTOR_HDR) / 4;
    if (d > DIM_MAX) return DEJA_ERR_CORRUPT;
    *dim = (uint32_t)d;
    return 0;
}

/* ---- usage and meta --------------------------------------------------------*/

void store_usage_rec_encode(const uint8_t key[STORE_KEY_LEN], const store_usage_rec *u,
                            uint8_t rec[STORE_USAGE_REC]) {
    memset(rec, 0, STORE_USAGE_REC);
    put_u32(rec, MAGIC_USAGE);
    put_u32(rec + 4, u->hits);
    rec[16] = u->lfu;
    put_u64(rec + 24, u->last_hit_ms);
    put_u64(rec + 32, u->expires_ms);
    put_u64(rec + 8, store_record_sum(key, STORE_KEY_LEN, rec, STORE_USAGE_REC));
}

int store_usage_rec_decode(const uint8_t *key, size_t key_len, const uint8_t *rec,
                           size_t len, store_usage_rec *u) {
    if (key_len != STORE_KEY_LEN || len != STORE_USAGE_REC ||
        get_u32(rec) != MAGIC_USAGE ||
        get_u64(rec + 8) != store_record_sum(key, STORE_KEY_LEN, rec, len))
        return DEJA_ERR_CORRUPT;
    store_key_parse(key, &u->ns_id, &u->id);
    u->hits = get_u32(rec + 4);
    u->lfu = rec[16];
    u->last_hit_ms = get_u64(rec + 24);
    u->expires_ms = get_u64(rec + 32);
    return 0;
}

uint32_t store_meta_format_decode(const uint8_t *rec, size_t len) {
    return len == 4 ? get_u32(rec) : 0;
}
