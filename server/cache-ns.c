/* cache-ns.c: the namespace table -- creation (explicit, or implicit on a
 * first STORE with the server's defaults), configuration, drop, list, and
 * the counters STATS and NS_INFO report.
 *
 * The table is a small array under a rwlock: namespaces are few (one per
 * embedding model, LLM, system prompt and sampling parameters). A dropped
 * namespace is emptied and moved to a graveyard freed by cache_destroy, so
 * a pointer found under the table lock stays valid after it is released. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache-private.h"

#define DEFAULT_DEDUP 0.99f

static cache_ns *find_locked(cache *c, const uint8_t *name, uint8_t len) {
    for (size_t i = 0; i < c->ns_count; i++) {
        cache_ns *ns = c->ns[i];
        if (ns->name_len == len && memcmp(ns->name, name, len) == 0) return ns;
    }
    return NULL;
}

cache_ns *cache_find_ns(cache *c, const uint8_t *name, uint8_t len) {
    pthread_rwlock_rdlock(&c->ns_lock);
    cache_ns *ns = find_locked(c, name, len);
    pthread_rwlock_unlock(&c->ns_lock);
    return ns;
}

void cache_ns_free(cache_ns *ns) {
    size_t pos = 0;
    uint64_t id;
    void *val;
    while (u64map_next(&ns->entries, &pos, &id, &val))
        cache_entry_unref(val);
    u64map_close(&ns->entries);
    u64map_close(&ns->exact);
    u64map_close(&ns->snap_labels);
    idx_destroy(ns->main);
    idx_destroy(ns->fresh);
    free(ns->snap_removed);
    pthread_mutex_destroy(&ns->snap_mu);
    pthread_rwlock_destroy(&ns->lock);
    free(ns);
}

/* idx.h's HNSW defaults, for reporting a resolved configuration. */
#define HNSW_DEFAULT_M 16u
#define HNSW_DEFAULT_EF_CONSTRUCTION 200u
#define HNSW_DEFAULT_EF_SEARCH 64u

static enum cache_index_kind kind_of(enum idx_kind kind) {
    switch (kind) {
    case IDX_KIND_FLAT: return CACHE_INDEX_FLAT;
    case IDX_KIND_FAISS: return CACHE_INDEX_FAISS;
    default: return CACHE_INDEX_HNSW;
    }
}

static uint32_t default_u16(uint32_t requested, uint32_t server, uint32_t builtin) {
    uint32_t v = requested ? requested : server ? server : builtin;
    return v > UINT16_MAX ? UINT16_MAX : v;
}

/* The configuration req means on this server: every "0 = default" field
 * replaced by the default, and CACHE_NS_EXPLICIT set, so that the result
 * read back as a request means the same. Without EXPLICIT, quant 0 is the
 * server's --quant only when index_kind is 0 too (as it always was); the
 * HNSW parameters are filled in only for an HNSW namespace (others ignore
 * them, except that FAISS takes ef_search as its default nprobe). A dedup
 * of 0 and NO_DEDUP are the same thing, so both are set together; zeros
 * are positive, so equal configurations encode to equal bytes. */
static void resolve_config(const cache *c, const cache_ns_config *req,
                           cache_ns_config *out) {
    int literal = (req->flags & CACHE_NS_EXPLICIT) != 0;
    *out = *req;
    out->flags |= CACHE_NS_EXPLICIT;
    if (!req->index_kind)
        out->index_kind = kind_of(c->cfg.index_kind ? c->cfg.index_kind : IDX_KIND_HNSW);
    if (!literal && !req->index_kind) out->quant = c->cfg.quant;
    if (out->index_kind == CACHE_INDEX_HNSW) {
        out->hnsw_m = default_u16(req->hnsw_m, c->cfg.hnsw_m, HNSW_DEFAULT_M);
        out->hnsw_ef_construction =
            default_u16(req->hnsw_ef_construction, c->cfg.hnsw_ef_construction,
                        HNSW_DEFAULT_EF_CONSTRUCTION);
        out->hnsw_ef_search = default_u16(req->hnsw_ef_search, c->cfg.hnsw_ef_search,
                                          HNSW_DEFAULT_EF_SEARCH);
    } else if (out->index_kind == CACHE_INDEX_FAISS) {
        out->hnsw_ef_search = default_u16(req->hnsw_ef_search, c->cfg.hnsw_ef_search, 0);
    }
    if (!literal) {
        if (req->min_threshold == 0) out->min_threshold = atomic_load(&c->default_floor);
        if (req->dedup == 0) out->dedup = atomic_load(&c->default_dedup);
        if (req->default_ttl_s == 0) out->default_ttl_s = c->cfg.default_ttl_s;
    }
    if (req->flags & CACHE_NS_NO_DEDUP) out->dedup = 0;
    if (out->dedup == 0) {
        out->dedup = 0.0f;
        out->flags |= CACHE_NS_NO_DEDUP;
    }
    if (out->min_threshold == 0) out->min_threshold = 0.0f;
}

void cache_ns_index_config(const cache *c, const cache_ns *ns, idx_config *out) {
    const cache_ns_config *cfg = &ns->config;
    static const enum idx_kind kinds[] = {0, IDX_KIND_FLAT, IDX_KIND_HNSW,
                                          IDX_KIND_FAISS};
    /* M and the ef values go to the index as before resolution (0 = the
     * server's setting, then the index's default), so that graph
     * snapshots written by earlier versions still match. */
    *out = (idx_config){
        .kind = kinds[ns->resolved.index_kind <= 3 ? ns->resolved.index_kind : 2],
        .dim = cfg->dim,
        .M = cfg->hnsw_m ? cfg->hnsw_m : c->cfg.hnsw_m,
        .ef_construction = cfg->hnsw_ef_construction ? cfg->hnsw_ef_construction
                                                     : c->cfg.hnsw_ef_construction,
        .ef_search = cfg->hnsw_ef_search ? cfg->hnsw_ef_search : c->cfg.hnsw_ef_search,
        .quant = ns->resolved.quant,
        /* A graph with a vector source keeps no f32 copies (cache.h). */
        .exact_external = c->cfg.vectors.vector != NULL,
        .faiss_factory = cfg->faiss_factory_len ? cfg->faiss_factory : NULL,
    };
}

/* The search breadths a client may ask for: every STORE into the graph and
 * every LOOKUP costs in proportion to them, so they are bounded like
 * dejad's own --hnsw-ef and --hnsw-ef-construction. */
#define NS_MAX_EF 4096u

static int check_bounds(const cache_ns_config *resolved, char *msg, size_t msg_cap) {
    if (resolved->hnsw_ef_construction <= NS_MAX_EF &&
        resolved->hnsw_ef_search <= NS_MAX_EF)
        return 0;
    if (msg && msg_cap)
        snprintf(msg, msg_cap, "hnsw_ef_construction and hnsw_ef_search are at most %u",
                 NS_MAX_EF);
    return DEJA_ERR_INVALID_ARG;
}

/* What the index of a configuration needs beyond its own checks: FAISS
 * only when the operator allowed it, and a factory string that is one
 * printable C string (a NUL inside would hide its tail from the grammar). */
static int check_faiss(const cache *c, const cache_ns_config *resolved, char *msg,
                       size_t msg_cap) {
    if (resolved->index_kind != CACHE_INDEX_FAISS) return 0;
    if (!c->cfg.allow_faiss) {
        if (msg && msg_cap)
            snprintf(msg, msg_cap,
                     "FAISS index kinds are disabled on this server (the operator "
                     "enables them with dejad --allow-faiss)");
        return DEJA_ERR_INVALID_ARG;
    }
    for (uint8_t i = 0; i < resolved->faiss_factory_len; i++) {
        uint8_t ch = (uint8_t)resolved->faiss_factory[i];
        if (ch < 0x21 || ch > 0x7e) {
            if (msg && msg_cap)
                snprintf(msg, msg_cap,
                         "the FAISS factory string must be printable ASCII without "
                         "spaces");
            return DEJA_ERR_INVALID_ARG;
        }
    }
    return 0;
}

/* Builds a namespace from its requested configuration, resolving every 0
 * to the server's default. */
static int ns_new(cache *c, const uint8_t *name, uint8_t len, const cache_ns_config *cfg,
                  cache_ns **out, char *msg, size_t msg_cap) {
    int rc = cache_ns_config_check(cfg, msg, msg_cap);
    if (rc) return rc;
    cache_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return DEJA_ERR_NOMEM;
    ns->config = *cfg;
    ns->config.faiss_factory[ns->config.faiss_factory_len] = 0;
    resolve_config(c, &ns->config, &ns->resolved);
    ns->dim = cfg->dim;
    ns->min_threshold = ns->resolved.min_threshold;
    ns->dedup = ns->resolved.dedup;
    ns->default_ttl_s = ns->resolved.default_ttl_s;
    atomic_init(&ns->shadow, cfg->shadow != 0);
    atomic_init(&ns->gray_band, cfg->gray_band);

    rc = check_bounds(&ns->resolved, msg, msg_cap);
    if (rc == 0) rc = check_faiss(c, &ns->resolved, msg, msg_cap);
    if (rc) {
        free(ns);
        return rc;
    }
    idx_config icfg;
    cache_ns_index_config(c, ns, &icfg);
    ns->main_external =
        icfg.kind == IDX_KIND_HNSW && icfg.quant == IDX_QUANT_INT8 && icfg.exact_external;
    rc = idx_create_msg(&icfg, &ns->main, msg, msg_cap);
    if (rc) {
        free(ns);
        return rc;
    }
    /* An index that synchronises its own inserts is fed in the background
     * through an exact staging index; one that does not takes inserts
     * directly under the namespace lock. */
    idx_config fcfg = {.kind = IDX_KIND_FLAT, .dim = cfg->dim};
    if (idx_concurrent_writes(ns->main) && idx_create(&fcfg, &ns->fresh) != 0) {
        idx_destroy(ns->main);
        free(ns);
        return DEJA_ERR_NOMEM;
    }
    memcpy(ns->name, name, len);
    ns->name_len = len;
    ns->created_ms = cache_now(c);
    pthread_rwlock_init(&ns->lock, NULL);
    pthread_mutex_init(&ns->snap_mu, NULL);
    u64map_init(&ns->entries);
    u64map_init(&ns->exact);
    u64map_init(&ns->snap_labels);
    *out = ns;
    return 0;
}

/* ---- quarantine -----------------------------------------------------------
 * A namespace whose record cannot be loaded is kept, out of service, in
 * the graveyard: its name stays taken (a STORE must not quietly start a
 * new namespace under it) and its entries stay on disk for the operator,
 * who can fix the cause and restart, or drop it. */

static cache_ns *quarantined_find_locked(cache *c, const uint8_t *name, uint8_t len) {
    for (size_t i = 0; i < c->graveyard_count; i++) {
        cache_ns *ns = c->graveyard[i];
        if (ns->quarantined && !ns->dropped && ns->name_len == len &&
            memcmp(ns->name, name, len) == 0)
            return ns;
    }
    return NULL;
}

static int graveyard_reserve_locked(cache *c) {
    if (c->graveyard_count < c->graveyard_cap) return 0;
    size_t cap = c->graveyard_cap ? c->graveyard_cap * 2 : 4;
    cache_ns **grown = realloc(c->graveyard, cap * sizeof *grown);
    if (!grown) return DEJA_ERR_NOMEM;
    c->graveyard = grown;
    c->graveyard_cap = cap;
    return 0;
}

static void quarantine_msg(const cache_ns *ns, char *msg, size_t msg_cap) {
    if (msg && msg_cap)
        snprintf(msg, msg_cap, "namespace '%s' is quarantined: %s", ns->name,
                 ns->quarantine_reason);
}

int cache_ns_quarantined(cache *c, const uint8_t *name, uint8_t len, char *msg,
                         size_t msg_cap) {
    pthread_rwlock_rdlock(&c->ns_lock);
    cache_ns *ns = quarantined_find_locked(c, name, len);
    if (ns) quarantine_msg(ns, msg, msg_cap);
    pthread_rwlock_unlock(&c->ns_lock);
    return ns ? DEJA_ERR_QUARANTINED : 0;
}

/* Records rec's namespace as quarantined for the reason why. Start-up
 * only. Returns QUARANTINED, or NOMEM. */
static int quarantine(cache *c, const cache_ns_image *rec, const char *why) {
    cache_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return DEJA_ERR_NOMEM;
    memcpy(ns->name, rec->name, rec->name_len);
    ns->name_len = rec->name_len;
    ns->ns_id = rec->ns_id;
    ns->dim = rec->dim;
    ns->created_ms = rec->created_ms;
    atomic_init(&ns->persisted, 1);
    ns->quarantined = 1;
    snprintf(ns->quarantine_reason, sizeof ns->quarantine_reason, "%s", why);
    pthread_rwlock_init(&ns->lock, NULL);
    pthread_mutex_init(&ns->snap_mu, NULL);
    u64map_init(&ns->entries);
    u64map_init(&ns->exact);
    u64map_init(&ns->snap_labels);
    pthread_rwlock_wrlock(&c->ns_lock);
    int rc = graveyard_reserve_locked(c);
    if (rc == 0) {
        c->graveyard[c->graveyard_count++] = ns;
        atomic_fetch_add(&c->quarantined, 1);
    }
    pthread_rwlock_unlock(&c->ns_lock);
    if (rc) {
        cache_ns_free(ns);
        return rc;
    }
    return DEJA_ERR_QUARANTINED;
}

static int table_add_locked(cache *c, cache_ns *ns) {
    if (c->ns_count == c->ns_cap) {
        size_t cap = c->ns_cap ? c->ns_cap * 2 : 8;
        cache_ns **grown = realloc(c->ns, cap * sizeof *grown);
        if (!grown) return DEJA_ERR_NOMEM;
        c->ns = grown;
        c->ns_cap = cap;
    }
    c->ns[c->ns_count++] = ns;
    return 0;
}

int cache_get_or_create_ns(cache *c, const uint8_t *name, uint8_t len, uint32_t dim,
                           const cache_ns_config *cfg, uint32_t ns_id, int persisted,
                           cache_ns **out) {
    cache_ns *ns = cache_find_ns(c, name, len);
    if (ns) {
        *out = ns;
        return 0;
    }
    if (cache_ns_quarantined(c, name, len, NULL, 0)) return DEJA_ERR_QUARANTINED;
    cache_ns_config defaults = {.dim = dim};
    char msg[160];
    cache_ns *fresh_ns;
    int rc = ns_new(c, name, len, cfg ? cfg : &defaults, &fresh_ns, msg, sizeof msg);
    if (rc) return rc;
    pthread_rwlock_wrlock(&c->ns_lock);
    ns = find_locked(c, name, len); /* another thread may have won */
    if (!ns && quarantined_find_locked(c, name, len)) {
        rc = DEJA_ERR_QUARANTINED;
    } else if (!ns && !ns_id && c->cfg.max_namespaces &&
               c->ns_count >= c->cfg.max_namespaces) {
        rc = DEJA_ERR_STORAGE_FULL; /* a client may not create namespaces without end */
    } else if (!ns) {
        fresh_ns->ns_id = ns_id ? ns_id : (uint32_t)atomic_fetch_add(&c->next_ns_id, 1);
        atomic_init(&fresh_ns->persisted, persisted);
        rc = table_add_locked(c, fresh_ns);
        if (rc == 0) ns = fresh_ns;
    }
    pthread_rwlock_unlock(&c->ns_lock);
    if (ns != fresh_ns) cache_ns_free(fresh_ns);
    if (rc) return rc;
    *out = ns;
    return 0;
}

void cache_ns_record(const cache_ns *ns, cache_ns_image *rec) {
    memset(rec, 0, sizeof *rec);
    rec->ns_id = ns->ns_id;
    rec->dim = ns->dim;
    rec->created_ms = ns->created_ms;
    rec->name_len = ns->name_len;
    memcpy(rec->name, ns->name, ns->name_len + 1u);
    rec->config = ns->config;
}

int cache_ns_config_check(const cache_ns_config *cfg, char *msg, size_t msg_cap) {
    const char *why = NULL;
    if (cfg->dim < 1 || cfg->dim > CACHE_MAX_DIM)
        why = "dim is not in 1..4096";
    else if ((unsigned)cfg->index_kind > CACHE_INDEX_FAISS)
        why = "unknown index kind";
    else if ((unsigned)cfg->quant > IDX_QUANT_INT8)
        why = "unknown quantisation";
    else if ((unsigned)cfg->ttl_mode > CACHE_TTL_SLIDING)
        why = "unknown TTL mode";
    else if (cfg->flags & ~CACHE_NS_FLAGS_DEFINED)
        why = "undefined flag bits";
    else if (cfg->hnsw_m > UINT16_MAX || cfg->hnsw_ef_construction > UINT16_MAX ||
             cfg->hnsw_ef_search > UINT16_MAX)
        why = "HNSW parameters are at most 65535";
    else if (!isfinite(cfg->min_threshold) || cfg->min_threshold < -1.0f ||
             cfg->min_threshold > 1.0f)
        why = "min_threshold is not in [-1, 1]";
    else if (!isfinite(cfg->dedup) || cfg->dedup < 0.0f || cfg->dedup > 1.0f)
        why = "dedup is not in [0, 1]";
    else if (!isfinite(cfg->gray_band) || cfg->gray_band < 0.0f || cfg->gray_band > 1.0f)
        why = "gray_band is not 0 or in (0, 1]";
    else if ((cfg->faiss_factory_len > 0) != (cfg->index_kind == CACHE_INDEX_FAISS))
        why = "a factory string goes with a FAISS index kind, and only with it";
    /* The factory's characters are check_faiss's: it answers with the
     * grammar's message. */
    if (!why) return 0;
    if (msg && msg_cap) snprintf(msg, msg_cap, "%s", why);
    return DEJA_ERR_INVALID_ARG;
}

int cache_load_ns_quarantined(cache *c, const cache_ns_image *rec, const char *why) {
    return quarantine(c, rec, why);
}

/* Whether what persistence handed back can become a namespace; if not,
 * why says why. */
static int config_from_image(const cache_ns_image *rec, char *why, size_t why_cap) {
    char check[160];
    int rc = cache_ns_config_check(&rec->config, check, sizeof check);
    if (rc) {
        snprintf(why, why_cap, "its stored configuration is invalid (%s)", check);
        return rc;
    }
    if (rec->config.dim != rec->dim) {
        snprintf(why, why_cap, "its record says dim %u but its configuration %u",
                 rec->dim, rec->config.dim);
        return DEJA_ERR_INVALID_ARG;
    }
    return 0;
}

int cache_load_ns(cache *c, const cache_ns_image *rec) {
    char why[256] = "";
    const cache_ns_config *cfg = &rec->config;
    int rc = config_from_image(rec, why, sizeof why);
    if (rc == 0) {
        pthread_rwlock_rdlock(&c->ns_lock);
        for (size_t i = 0; i < c->ns_count && rc == 0; i++)
            if (c->ns[i]->ns_id == rec->ns_id ||
                (c->ns[i]->name_len == rec->name_len &&
                 memcmp(c->ns[i]->name, rec->name, rec->name_len) == 0)) {
                snprintf(why, sizeof why, "its id %u or name is already used by '%.64s'",
                         rec->ns_id, c->ns[i]->name);
                rc = DEJA_ERR_EXISTS;
            }
        pthread_rwlock_unlock(&c->ns_lock);
    }
    cache_ns *ns = NULL;
    if (rc == 0)
        rc = ns_new(c, (const uint8_t *)rec->name, rec->name_len, cfg, &ns, why,
                    sizeof why);
    if (rc == DEJA_ERR_NOMEM) return rc;
    if (rc) return quarantine(c, rec, why[0] ? why : deja_strerror(rc));
    ns->ns_id = rec->ns_id;
    ns->created_ms = rec->created_ms;
    atomic_init(&ns->persisted, 1);
    pthread_rwlock_wrlock(&c->ns_lock);
    rc = table_add_locked(c, ns);
    pthread_rwlock_unlock(&c->ns_lock);
    if (rc) cache_ns_free(ns);
    return rc;
}

/* Two configurations are the same when they resolve to the same values
 * (resolve_config makes zeros positive, so == on the floats is exact). */
static int config_equal(const cache_ns_config *a, const cache_ns_config *b) {
    /* The serving policy is not part of the configuration (NS_POLICY). */
    return a->dim == b->dim && a->index_kind == b->index_kind && a->quant == b->quant &&
           a->hnsw_m == b->hnsw_m && a->hnsw_ef_construction == b->hnsw_ef_construction &&
           a->hnsw_ef_search == b->hnsw_ef_search && a->ttl_mode == b->ttl_mode &&
           a->flags == b->flags && a->min_threshold == b->min_threshold &&
           a->dedup == b->dedup && a->default_ttl_s == b->default_ttl_s &&
           a->max_age_s == b->max_age_s && a->max_bytes == b->max_bytes &&
           a->max_entries == b->max_entries &&
           a->faiss_factory_len == b->faiss_factory_len &&
           memcmp(a->faiss_factory, b->faiss_factory, a->faiss_factory_len) == 0;
}

static int same_config(const cache *c, const cache_ns *ns, const cache_ns_config *req) {
    cache_ns_config resolved;
    resolve_config(c, req, &resolved);
    return config_equal(&ns->resolved, &resolved);
}

int cache_ns_create(cache *c, const uint8_t *name, uint8_t len,
                    const cache_ns_config *cfg, cache_ns_image *rec, int *created,
                    char *msg, size_t msg_cap) {
    *created = 0;
    cache_ns *ns = cache_find_ns(c, name, len);
    if (ns) return same_config(c, ns, cfg) ? 0 : DEJA_ERR_EXISTS;
    int rc = cache_ns_quarantined(c, name, len, msg, msg_cap);
    if (rc) return rc;
    cache_ns *fresh_ns;
    rc = ns_new(c, name, len, cfg, &fresh_ns, msg, msg_cap);
    if (rc) return rc;
    pthread_rwlock_wrlock(&c->ns_lock);
    ns = find_locked(c, name, len);
    cache_ns *held = ns ? NULL : quarantined_find_locked(c, name, len);
    if (held) {
        quarantine_msg(held, msg, msg_cap);
        rc = DEJA_ERR_QUARANTINED;
    } else if (!ns && c->cfg.max_namespaces && c->ns_count >= c->cfg.max_namespaces) {
        if (msg && msg_cap)
            snprintf(msg, msg_cap,
                     "the server holds its limit of %llu namespaces "
                     "(--max-namespaces)",
                     (unsigned long long)c->cfg.max_namespaces);
        rc = DEJA_ERR_STORAGE_FULL;
    } else if (!ns) {
        fresh_ns->ns_id = (uint32_t)atomic_fetch_add(&c->next_ns_id, 1);
        atomic_init(&fresh_ns->persisted, 0);
        rc = table_add_locked(c, fresh_ns);
    }
    pthread_rwlock_unlock(&c->ns_lock);
    if (ns || rc) {
        cache_ns_free(fresh_ns);
        if (rc) return rc;
        return same_config(c, ns, cfg) ? 0 : DEJA_ERR_EXISTS;
    }
    cache_ns_record(fresh_ns, rec);
    *created = 1;
    return 0;
}

void cache_ns_persisted(cache *c, uint32_t ns_id) {
    pthread_rwlock_rdlock(&c->ns_lock);
    for (size_t i = 0; i < c->ns_count; i++)
        if (c->ns[i]->ns_id == ns_id) atomic_store(&c->ns[i]->persisted, 1);
    pthread_rwlock_unlock(&c->ns_lock);
}

int cache_ns_drop(cache *c, const uint8_t *name, uint8_t len, uint64_t *removed,
                  cache_ns_image *rec) {
    *removed = 0;
    pthread_rwlock_wrlock(&c->ns_lock);
    cache_ns *ns = find_locked(c, name, len);
    cache_ns *held = ns ? NULL : quarantined_find_locked(c, name, len);
    if (held) {
        /* The operator's way out of a quarantine: the record and the
         * entries on disk go (the writer deletes them by id), the name is
         * free again. Its entries were never loaded, so none count here. */
        held->dropped = 1;
        atomic_fetch_sub(&c->quarantined, 1);
        pthread_rwlock_unlock(&c->ns_lock);
        memset(rec, 0, sizeof *rec);
        rec->ns_id = held->ns_id;
        rec->dim = held->dim;
        rec->created_ms = held->created_ms;
        rec->name_len = held->name_len;
        memcpy(rec->name, held->name, held->name_len + 1u);
        return 0;
    }
    int rc = ns ? 0 : DEJA_ERR_NOT_FOUND;
    if (ns && c->graveyard_count == c->graveyard_cap) {
        size_t cap = c->graveyard_cap ? c->graveyard_cap * 2 : 4;
        cache_ns **grown = realloc(c->graveyard, cap * sizeof *grown);
        if (grown) {
            c->graveyard = grown;
            c->graveyard_cap = cap;
        } else {
            rc = DEJA_ERR_NOMEM;
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < c->ns_count; i++)
            if (c->ns[i] == ns) c->ns[i] = c->ns[--c->ns_count];
        c->graveyard[c->graveyard_count++] = ns;
        atomic_store(&c->sweep_ns, 0);
    }
    pthread_rwlock_unlock(&c->ns_lock);
    if (rc) return rc;

    cache_ns_record(ns, rec);
    *removed = cache_ns_empty(c, ns, 1);
    atomic_fetch_add(&c->evicted[CACHE_EVICT_DROP], *removed);
    return 0;
}

int cache_ns_list(cache *c, char (*names)[CACHE_MAX_NS_LEN + 1], uint8_t *lens,
                  uint16_t max, uint16_t *count) {
    pthread_rwlock_rdlock(&c->ns_lock);
    uint16_t n = 0;
    for (size_t i = 0; i < c->ns_count && n < max; i++, n++) {
        memcpy(names[n], c->ns[i]->name, c->ns[i]->name_len + 1u);
        lens[n] = c->ns[i]->name_len;
    }
    /* Quarantined names are listed too: they are taken, and NS_INFO on
     * them says why they do not serve. */
    for (size_t i = 0; i < c->graveyard_count && n < max; i++) {
        const cache_ns *ns = c->graveyard[i];
        if (!ns->quarantined || ns->dropped) continue;
        memcpy(names[n], ns->name, ns->name_len + 1u);
        lens[n++] = ns->name_len;
    }
    pthread_rwlock_unlock(&c->ns_lock);
    *count = n;
    return 0;
}

/* ---- counters ----------------------------------------------------------------*/

typedef struct totals {
    uint64_t entries, lookups, exact_hits, semantic_hits, misses, stores;
    uint64_t coalesced, borderline_hits, shadow_hits, shadow_exact_hits;
    uint64_t shadow_borderline_hits;
    uint64_t sim[2][CACHE_SIM_BUCKETS];
    uint64_t sim_sum_micro[2];
    uint64_t dedup_updates, rejected, tokens_saved, cost_saved, entry_hits;
    uint64_t evicted[CACHE_EVICT_REASONS];
    uint64_t index_bytes, entry_bytes, unindexed, index_entries, charged;
    /* index_bytes by kind (issue #14): the graph's scanned vectors (f32
     * rows or int8 codes), its f32 re-rank copies, its links, the rest of
     * it; the staging index; the entry and exact-tier tables. */
    uint64_t mem_vectors, mem_exact, mem_graph, mem_other, mem_staging, mem_tables;
} totals;

static void add_totals(cache_ns *ns, totals *t) {
    pthread_rwlock_rdlock(&ns->lock);
    t->entries += ns->entries.count;
    idx_memory_info mi;
    idx_memory_breakdown(ns->main, &mi);
    size_t tables = u64map_memory(&ns->entries) + u64map_memory(&ns->exact);
    t->mem_vectors += mi.vectors;
    t->mem_exact += mi.exact;
    t->mem_graph += mi.graph;
    t->mem_other += mi.other;
    t->mem_tables += tables;
    t->index_bytes += mi.vectors + mi.exact + mi.graph + mi.other + tables;
    t->index_entries += idx_count(ns->main);
    if (ns->fresh) {
        size_t staging = idx_memory(ns->fresh);
        t->mem_staging += staging;
        t->index_bytes += staging;
        t->unindexed += idx_count(ns->fresh);
    }
    t->entry_bytes += ns->entry_bytes;
    t->charged += ns->mem_charged;
    pthread_rwlock_unlock(&ns->lock);
    const cache_ns_counters *n = &ns->n;
    t->lookups += atomic_load(&n->lookups);
    t->exact_hits += atomic_load(&n->exact_hits);
    t->semantic_hits += atomic_load(&n->semantic_hits);
    t->misses += atomic_load(&n->misses);
    t->coalesced += atomic_load(&n->coalesced);
    t->borderline_hits += atomic_load(&n->borderline_hits);
    t->shadow_hits += atomic_load(&n->shadow_hits);
    t->shadow_exact_hits += atomic_load(&n->shadow_exact_hits);
    t->shadow_borderline_hits += atomic_load(&n->shadow_borderline_hits);
    for (int o = 0; o < 2; o++) {
        for (unsigned b = 0; b < CACHE_SIM_BUCKETS; b++)
            t->sim[o][b] += atomic_load_explicit(&n->sim[o][b], memory_order_relaxed);
        t->sim_sum_micro[o] += atomic_load(&n->sim_sum_micro[o]);
    }
    t->stores += atomic_load(&n->stores);
    t->dedup_updates += atomic_load(&n->dedup_updates);
    t->rejected += atomic_load(&n->rejected);
    t->tokens_saved += atomic_load(&n->tokens_saved);
    t->cost_saved += atomic_load(&n->cost_saved_micro_usd);
    t->entry_hits += atomic_load(&n->entry_hits);
    for (int r = 0; r < CACHE_EVICT_REASONS; r++)
        t->evicted[r] += atomic_load(&n->evicted[r]);
}

static uint16_t put_totals(const totals *t, cache_stat *stats, uint16_t n, uint16_t max) {
    const struct {
        const char *key;
        uint64_t value;
    } rows[] = {
        {"entries", t->entries},
        {"stores", t->stores},
        {"dedup_updates", t->dedup_updates},
        {"rejected_stores", t->rejected},
        {"lookups", t->lookups},
        {"hits", t->exact_hits + t->semantic_hits},
        {"exact_hits", t->exact_hits},
        {"semantic_hits", t->semantic_hits},
        {"misses", t->misses},
        {"deletes", t->evicted[CACHE_EVICT_DELETE]},
        {"evicted_ttl", t->evicted[CACHE_EVICT_TTL]},
        {"evicted_lfu", t->evicted[CACHE_EVICT_LFU]},
        {"evicted_delete", t->evicted[CACHE_EVICT_DELETE]},
        {"evicted_drop", t->evicted[CACHE_EVICT_DROP]},
        {"tokens_saved", t->tokens_saved},
        {"cost_saved_micro_usd", t->cost_saved},
        {"index_bytes", t->index_bytes},
        {"entry_bytes", t->entry_bytes},
        {"index_vector_bytes", t->mem_vectors},
        {"index_rerank_bytes", t->mem_exact},
        {"index_graph_bytes", t->mem_graph},
        {"index_other_bytes", t->mem_other},
        {"staging_bytes", t->mem_staging},
        {"entry_table_bytes", t->mem_tables},
        {"unindexed", t->unindexed},
        {"index_entries", t->index_entries},
        {"memory_charged", t->charged},
        {"entry_hits", t->entry_hits}, /* hits of live entries, kept across restarts */
        {"coalesced", t->coalesced},
        {"borderline_hits", t->borderline_hits},
        {"shadow_hits", t->shadow_hits},
        {"shadow_exact_hits", t->shadow_exact_hits},
        {"shadow_borderline_hits", t->shadow_borderline_hits},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && n < max; i++, n++) {
        stats[n].key = rows[i].key;
        stats[n].value = rows[i].value;
    }
    if (n < max) stats[n++] = (cache_stat){"sim_hit_sum_micro", t->sim_sum_micro[0]};
    if (n < max) stats[n++] = (cache_stat){"sim_miss_sum_micro", t->sim_sum_micro[1]};
    /* The similarity histogram, buckets that are not 0 (PROTOCOL.md 5.17). */
    for (int o = 0; o < 2; o++)
        for (unsigned b = 0; b < CACHE_SIM_BUCKETS && n < max; b++)
            if (t->sim[o][b]) {
                stats[n].key = cache_sim_key(o, b);
                stats[n].value = t->sim[o][b];
                n++;
            }
    return n;
}

static void put_stat(cache_stat *stats, uint16_t *n, uint16_t max, const char *key,
                     uint64_t value) {
    if (*n >= max) return;
    stats[*n].key = key;
    stats[*n].value = value;
    (*n)++;
}

int cache_stats(cache *c, const uint8_t *name, uint8_t len, cache_stat *stats,
                uint16_t max, uint16_t *count) {
    totals t;
    memset(&t, 0, sizeof t);
    uint16_t n = 0;
    if (len) {
        cache_ns *ns = cache_find_ns(c, name, len);
        if (!ns)
            return cache_ns_quarantined(c, name, len, NULL, 0) ? DEJA_ERR_QUARANTINED
                                                               : DEJA_ERR_NOT_FOUND;
        add_totals(ns, &t);
        put_stat(stats, &n, max, "dim", ns->dim);
        put_stat(stats, &n, max, "ns_id", ns->ns_id);
    } else {
        pthread_rwlock_rdlock(&c->ns_lock);
        for (size_t i = 0; i < c->ns_count; i++)
            add_totals(c->ns[i], &t);
        put_stat(stats, &n, max, "namespaces", c->ns_count);
        pthread_rwlock_unlock(&c->ns_lock);
        put_stat(stats, &n, max, "snapshot_entries", atomic_load(&c->snapshot_entries));
        put_stat(stats, &n, max, "quarantined_namespaces", atomic_load(&c->quarantined));
        /* Rejections of STOREs that never reached a namespace count too. */
        t.rejected = atomic_load(&c->rejected);
        t.evicted[CACHE_EVICT_DROP] += atomic_load(&c->evicted[CACHE_EVICT_DROP]);
    }
    *count = put_totals(&t, stats, n, max);
    return 0;
}

void cache_set_policy(cache *c, float min_threshold, float dedup, uint64_t max_memory,
                      uint64_t max_entries) {
    atomic_store(&c->budget_memory, max_memory);
    atomic_store(&c->budget_entries, max_entries);
    pthread_rwlock_wrlock(&c->ns_lock);
    atomic_store(&c->default_floor, min_threshold);
    atomic_store(&c->default_dedup, dedup);
    for (size_t i = 0; i < c->ns_count; i++) {
        /* Namespaces that asked for the server's default follow it; a
         * value of their own (or EXPLICIT) stays. */
        cache_ns *ns = c->ns[i];
        if (ns->config.flags & CACHE_NS_EXPLICIT) continue;
        pthread_rwlock_wrlock(&ns->lock);
        if (ns->config.min_threshold == 0) {
            ns->min_threshold = min_threshold;
            ns->resolved.min_threshold = min_threshold;
        }
        if (ns->config.dedup == 0 && !(ns->config.flags & CACHE_NS_NO_DEDUP)) {
            ns->dedup = dedup;
            ns->resolved.dedup = dedup;
            if (dedup == 0)
                ns->resolved.flags |= CACHE_NS_NO_DEDUP;
            else
                ns->resolved.flags &= ~CACHE_NS_NO_DEDUP;
        }
        pthread_rwlock_unlock(&ns->lock);
    }
    pthread_rwlock_unlock(&c->ns_lock);
}

int cache_stats_prefix(cache *c, const uint8_t *prefix, uint8_t prefix_len,
                       cache_stat *stats, uint16_t max, uint16_t *count) {
    totals t;
    memset(&t, 0, sizeof t);
    uint16_t n = 0;
    uint64_t matched = 0;
    pthread_rwlock_rdlock(&c->ns_lock);
    for (size_t i = 0; i < c->ns_count; i++) {
        cache_ns *ns = c->ns[i];
        if (ns->name_len < prefix_len || memcmp(ns->name, prefix, prefix_len) != 0)
            continue;
        add_totals(ns, &t);
        matched++;
    }
    pthread_rwlock_unlock(&c->ns_lock);
    put_stat(stats, &n, max, "namespaces", matched);
    *count = put_totals(&t, stats, n, max);
    return 0;
}

int cache_ns_info(cache *c, const uint8_t *name, uint8_t len, cache_ns_config *cfg,
                  cache_stat *stats, uint16_t max, uint16_t *count) {
    cache_ns *ns = cache_find_ns(c, name, len);
    if (!ns)
        return cache_ns_quarantined(c, name, len, NULL, 0) ? DEJA_ERR_QUARANTINED
                                                           : DEJA_ERR_NOT_FOUND;
    /* The resolved block: unambiguous (a negative floor, f32 on an int8
     * server, dedup off), and a valid NS_CREATE of the same namespace. */
    *cfg = ns->resolved;
    int rc = cache_stats(c, name, len, stats, max, count);
    if (rc == 0) {
        /* The effective values as counters too, for clients that read
         * only those (kept from before the block was resolved). */
        uint16_t n = *count;
        uint64_t index_bytes = 0, entry_bytes = 0;
        for (uint16_t i = 0; i < *count; i++) {
            if (strcmp(stats[i].key, "index_bytes") == 0) index_bytes = stats[i].value;
            if (strcmp(stats[i].key, "entry_bytes") == 0) entry_bytes = stats[i].value;
        }
        put_stat(stats, &n, max, "memory_bytes", index_bytes + entry_bytes);
        /* A u64 cannot be negative: floors below 0 read 0 here, and the
         * block's min_threshold has the exact value. */
        put_stat(stats, &n, max, "min_threshold_milli",
                 ns->min_threshold > 0 ? (uint64_t)lroundf(ns->min_threshold * 1000.0f)
                                       : 0);
        put_stat(stats, &n, max, "dedup_milli", (uint64_t)lroundf(ns->dedup * 1000.0f));
        put_stat(stats, &n, max, "default_ttl_s", ns->default_ttl_s);
        put_stat(stats, &n, max, "shadow", (uint64_t)atomic_load(&ns->shadow));
        float band = atomic_load(&ns->gray_band);
        put_stat(stats, &n, max, "gray_band_milli", (uint64_t)lroundf(band * 1000.0f));
        *count = n;
    }
    return rc;
}

/* ---- serving policy and histogram keys ---------------------------------------*/

int cache_ns_policy(cache *c, const uint8_t *name, uint8_t len, const cache_policy *set,
                    cache_policy *out, int *changed, cache_ns_image *rec) {
    *changed = 0;
    cache_ns *ns = cache_find_ns(c, name, len);
    if (!ns)
        return cache_ns_quarantined(c, name, len, NULL, 0) ? DEJA_ERR_QUARANTINED
                                                           : DEJA_ERR_NOT_FOUND;
    if (!set) { /* a read: the atomics every lookup reads */
        out->shadow = atomic_load(&ns->shadow);
        out->gray_band = atomic_load(&ns->gray_band);
        return 0;
    }
    if (!isfinite(set->gray_band) || set->gray_band < 0.0f || set->gray_band > 1.0f)
        return DEJA_ERR_INVALID_ARG;
    pthread_rwlock_wrlock(&ns->lock);
    if (ns->config.shadow != (set->shadow != 0) ||
        ns->config.gray_band != set->gray_band) {
        ns->config.shadow = ns->resolved.shadow = set->shadow != 0;
        ns->config.gray_band = ns->resolved.gray_band = set->gray_band + 0.0f;
        atomic_store(&ns->shadow, ns->config.shadow);
        atomic_store(&ns->gray_band, ns->config.gray_band);
        cache_ns_record(ns, rec);
        *changed = 1;
    }
    out->shadow = ns->config.shadow;
    out->gray_band = ns->config.gray_band;
    pthread_rwlock_unlock(&ns->lock);
    return 0;
}

/* Static key strings: sim_hit_lt50, sim_hit_50 .. sim_hit_99, and the
 * same for misses, with sim_miss_none. */
#define SIM_ROW(o)                                                                       \
    "sim_" o "_lt50", "sim_" o "_50", "sim_" o "_51", "sim_" o "_52", "sim_" o "_53",    \
        "sim_" o "_54", "sim_" o "_55", "sim_" o "_56", "sim_" o "_57", "sim_" o "_58",  \
        "sim_" o "_59", "sim_" o "_60", "sim_" o "_61", "sim_" o "_62", "sim_" o "_63",  \
        "sim_" o "_64", "sim_" o "_65", "sim_" o "_66", "sim_" o "_67", "sim_" o "_68",  \
        "sim_" o "_69", "sim_" o "_70", "sim_" o "_71", "sim_" o "_72", "sim_" o "_73",  \
        "sim_" o "_74", "sim_" o "_75", "sim_" o "_76", "sim_" o "_77", "sim_" o "_78",  \
        "sim_" o "_79", "sim_" o "_80", "sim_" o "_81", "sim_" o "_82", "sim_" o "_83",  \
        "sim_" o "_84", "sim_" o "_85", "sim_" o "_86", "sim_" o "_87", "sim_" o "_88",  \
        "sim_" o "_89", "sim_" o "_90", "sim_" o "_91", "sim_" o "_92", "sim_" o "_93",  \
        "sim_" o "_94", "sim_" o "_95", "sim_" o "_96", "sim_" o "_97", "sim_" o "_98",  \
        "sim_" o "_99", "sim_" o "_none"

static const char *const sim_keys[2][CACHE_SIM_BUCKETS] = {{SIM_ROW("hit")},
                                                           {SIM_ROW("miss")}};

const char *cache_sim_key(int outcome, unsigned bucket) {
    return sim_keys[outcome ? 1 : 0][bucket < CACHE_SIM_BUCKETS ? bucket : 0];
}
