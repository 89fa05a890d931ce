/* srv-persist.c: the adapter between the cache engine and the store -- the
 * one place that knows both cache.h and store.h.
 *
 * The engine hands out what it wants persisted in its own types
 * (cache_ns_image, cache_entry_image, cache_usage) and takes them back at
 * start; the store speaks records (store_ns_rec, store_entry_rec,
 * store_usage_rec) and encodes the namespace configuration in its own
 * versioned layout (store.h). This file maps one to the other, field by
 * field, so that neither side changes when the other does: a new engine
 * field is added here and to the store's next configuration revision, a
 * new record layout never reaches the engine.
 *
 * All functions are reentrant; the load functions run on the start-up
 * thread (they call cache_load_*). */
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "srv-private.h"

/* The configuration's codes as the store keeps them. These numbers are on
 * disk in every data folder: they never change meaning, new values are
 * added. */
enum {
    DISK_INDEX_DEFAULT = 0,
    DISK_INDEX_FLAT = 1,
    DISK_INDEX_HNSW = 2,
    DISK_INDEX_FAISS = 3,
    DISK_TTL_ABSOLUTE = 0,
    DISK_TTL_SLIDING = 1,
    DISK_QUANT_F32 = 0,
    DISK_QUANT_INT8 = 1,
};
#define DISK_NS_ALLOW_NON_OK 0x01u
#define DISK_NS_NO_DEDUP 0x02u
#define DISK_NS_EXPLICIT 0x04u

/* A disk value with no engine meaning becomes one that
 * cache_ns_config_check refuses, so the namespace is quarantined with a
 * reason instead of loading with a guess. */
#define ENGINE_UNKNOWN 0x7fu
#define ENGINE_UNKNOWN_FLAG 0x80000000u

static uint8_t disk_index_kind(enum cache_index_kind k) {
    switch (k) {
    case CACHE_INDEX_FLAT: return DISK_INDEX_FLAT;
    case CACHE_INDEX_HNSW: return DISK_INDEX_HNSW;
    case CACHE_INDEX_FAISS: return DISK_INDEX_FAISS;
    default: return DISK_INDEX_DEFAULT;
    }
}

static enum cache_index_kind engine_index_kind(uint8_t k) {
    switch (k) {
    case DISK_INDEX_DEFAULT: return CACHE_INDEX_DEFAULT;
    case DISK_INDEX_FLAT: return CACHE_INDEX_FLAT;
    case DISK_INDEX_HNSW: return CACHE_INDEX_HNSW;
    case DISK_INDEX_FAISS: return CACHE_INDEX_FAISS;
    default: return (enum cache_index_kind)ENGINE_UNKNOWN;
    }
}

static uint8_t disk_flags(uint32_t flags) {
    return (uint8_t)(((flags & CACHE_NS_ALLOW_NON_OK) ? DISK_NS_ALLOW_NON_OK : 0u) |
                     ((flags & CACHE_NS_NO_DEDUP) ? DISK_NS_NO_DEDUP : 0u) |
                     ((flags & CACHE_NS_EXPLICIT) ? DISK_NS_EXPLICIT : 0u));
}

static uint32_t engine_flags(uint8_t flags) {
    return ((flags & DISK_NS_ALLOW_NON_OK) ? CACHE_NS_ALLOW_NON_OK : 0u) |
           ((flags & DISK_NS_NO_DEDUP) ? CACHE_NS_NO_DEDUP : 0u) |
           ((flags & DISK_NS_EXPLICIT) ? CACHE_NS_EXPLICIT : 0u) |
           ((flags & ~(DISK_NS_ALLOW_NON_OK | DISK_NS_NO_DEDUP | DISK_NS_EXPLICIT))
                ? ENGINE_UNKNOWN_FLAG
                : 0u);
}

/* The engine bounds these to 16 bits (cache_ns_config_check), as the disk
 * layout does. */
static uint16_t u16_of(uint32_t v) {
    return v > UINT16_MAX ? UINT16_MAX : (uint16_t)v;
}

void srv_persist_ns_rec(const cache_ns_image *ns, store_ns_rec *rec) {
    memset(rec, 0, offsetof(store_ns_rec, config));
    rec->ns_id = ns->ns_id;
    rec->dim = ns->dim;
    rec->created_ms = ns->created_ms;
    rec->name_len = ns->name_len;
    memcpy(rec->name, ns->name, ns->name_len);
    rec->name[ns->name_len] = 0;
    const cache_ns_config *c = &ns->config;
    store_ns_config d = {
        .dim = u16_of(c->dim),
        .index_kind = disk_index_kind(c->index_kind),
        .quant = c->quant == IDX_QUANT_INT8 ? DISK_QUANT_INT8 : DISK_QUANT_F32,
        .hnsw_m = u16_of(c->hnsw_m),
        .hnsw_ef_construction = u16_of(c->hnsw_ef_construction),
        .hnsw_ef_search = u16_of(c->hnsw_ef_search),
        .ttl_mode =
            c->ttl_mode == CACHE_TTL_SLIDING ? DISK_TTL_SLIDING : DISK_TTL_ABSOLUTE,
        .flags = disk_flags(c->flags),
        .min_threshold = c->min_threshold,
        .dedup = c->dedup,
        .default_ttl_s = c->default_ttl_s,
        .max_age_s = c->max_age_s,
        .max_bytes = c->max_bytes,
        .max_entries = c->max_entries,
        .factory_len = c->faiss_factory_len,
        .shadow = c->shadow ? 1 : 0,
        .gray_band = c->gray_band,
    };
    memcpy(d.factory, c->faiss_factory, c->faiss_factory_len);
    store_ns_config_encode(&d, rec);
}

void srv_persist_entry_rec(const cache_entry_image *e, store_entry_rec *rec) {
    *rec = (store_entry_rec){
        .ns_id = e->ns_id,
        .id = e->id,
        .created_ms = e->created_ms,
        .expires_ms = e->expires_ms,
        .input_tokens = e->input_tokens,
        .output_tokens = e->output_tokens,
        .cost_micro_usd = e->cost_micro_usd,
        .prompt = e->prompt,
        .prompt_len = e->prompt_len,
        .response = e->response,
        .response_len = e->response_len,
        .vector = e->vector,
        .dim = e->dim,
    };
}

void srv_persist_usage_rec(const cache_usage *u, store_usage_rec *rec) {
    *rec = (store_usage_rec){
        .ns_id = u->ns_id,
        .id = u->id,
        .hits = u->hits,
        .lfu = u->lfu,
        .last_hit_ms = u->last_hit_ms,
        .expires_ms = u->expires_ms,
    };
}

int srv_persist_load_ns(cache *c, const store_ns_rec *rec) {
    cache_ns_image ns;
    memset(&ns, 0, sizeof ns);
    ns.ns_id = rec->ns_id;
    ns.dim = rec->dim;
    ns.created_ms = rec->created_ms;
    ns.name_len = rec->name_len;
    memcpy(ns.name, rec->name, rec->name_len);
    store_ns_config d;
    int rc = store_ns_config_decode(rec, &d);
    if (rc) {
        char why[160];
        snprintf(why, sizeof why, "its stored configuration is unreadable (%s)",
                 deja_strerror(rc));
        return cache_load_ns_quarantined(c, &ns, why);
    }
    cache_ns_config *e = &ns.config;
    *e = (cache_ns_config){
        .dim = d.dim,
        .index_kind = engine_index_kind(d.index_kind),
        .quant = d.quant == DISK_QUANT_F32    ? IDX_QUANT_F32
                 : d.quant == DISK_QUANT_INT8 ? IDX_QUANT_INT8
                                              : (enum idx_quant)ENGINE_UNKNOWN,
        .hnsw_m = d.hnsw_m,
        .hnsw_ef_construction = d.hnsw_ef_construction,
        .hnsw_ef_search = d.hnsw_ef_search,
        .ttl_mode = d.ttl_mode == DISK_TTL_ABSOLUTE ? CACHE_TTL_ABSOLUTE
                    : d.ttl_mode == DISK_TTL_SLIDING
                        ? CACHE_TTL_SLIDING
                        : (enum cache_ttl_mode)ENGINE_UNKNOWN,
        .flags = engine_flags(d.flags),
        .min_threshold = d.min_threshold,
        .dedup = d.dedup,
        .default_ttl_s = d.default_ttl_s,
        .max_age_s = d.max_age_s,
        .max_bytes = d.max_bytes,
        .max_entries = d.max_entries,
        .faiss_factory_len = d.factory_len,
        /* Another value than 0 or 1 is not ours: cache_ns_config_check does
         * not see it, so refuse it here by making the band invalid. */
        .shadow = d.shadow == 1,
        .gray_band = d.shadow > 1 ? NAN : d.gray_band,
    };
    memcpy(e->faiss_factory, d.factory, d.factory_len);
    e->faiss_factory[d.factory_len] = 0;
    return cache_load_ns(c, &ns);
}

int srv_persist_load_entry(cache *c, const store_entry_rec *rec) {
    cache_entry_image e = {
        .ns_id = rec->ns_id,
        .id = rec->id,
        .created_ms = rec->created_ms,
        .expires_ms = rec->expires_ms,
        .input_tokens = rec->input_tokens,
        .output_tokens = rec->output_tokens,
        .cost_micro_usd = rec->cost_micro_usd,
        .prompt = rec->prompt,
        .prompt_len = rec->prompt_len,
        .response = rec->response,
        .response_len = rec->response_len,
        .vector = rec->vector,
        .dim = rec->dim,
        .hits = rec->hits,
        .lfu = rec->lfu,
        .last_hit_ms = rec->last_hit_ms,
    };
    return cache_load_entry(c, &e);
}

/* ---- the engine's vector source ------------------------------------------------*/

static void *vectors_begin(void *ctx) {
    srv_server *s = ctx;
    store_reader *rd = NULL;
    if (!s->store || store_reader_begin(s->store, &rd) != 0) return NULL;
    return rd;
}

static const float *vectors_get(void *scope, uint32_t ns_id, uint64_t id, uint32_t dim,
                                float *scratch) {
    const float *v = NULL;
    return store_read_vector(scope, ns_id, id, dim, scratch, &v) == 0 ? v : NULL;
}

static void vectors_end(void *scope) {
    store_reader_end(scope);
}

cache_vector_source srv_persist_vector_source(srv_server *s) {
    return (cache_vector_source){
        .begin = vectors_begin, .vector = vectors_get, .end = vectors_end, .ctx = s};
}

int srv_persist_read_hit(store_reader *rd, const cache_entry *e, int want_prompt,
                         proto_hit *h) {
    store_entry_rec rec;
    int rc = store_read_entry(rd, cache_entry_ns_id(e), cache_entry_id(e), &rec);
    if (rc) return rc;
    h->response = rec.response;
    h->response_len = rec.response_len;
    h->prompt = want_prompt ? rec.prompt : NULL;
    h->prompt_len = want_prompt ? rec.prompt_len : 0;
    return 0;
}
