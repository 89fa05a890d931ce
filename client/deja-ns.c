/* deja-ns.c: namespace operations (NS_CREATE, NS_LIST, NS_INFO, NS_DROP)
 * on one connection, and their pool variants.
 *
 * Results are single allocations like lookup results: the struct, its
 * arrays and every string in one block, so one free() releases it. */
#include <stdlib.h>
#include <string.h>

#include "deja-private.h"

/* ---- configuration ------------------------------------------------------------ */

static int to_wire_config(deja_client *c, const deja_ns_config *in,
                          proto_ns_config *out) {
    if (in == NULL)
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "configuration is NULL");
    if (in->dim == 0 || in->dim > PROTO_MAX_DIM)
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "dim %u is not in 1..%u", in->dim,
                             PROTO_MAX_DIM);
    size_t factory_len = in->faiss_factory ? strlen(in->faiss_factory) : 0;
    if (factory_len > 255)
        return deja__set_err(c, DEJA_ERR_INVALID_ARG, "faiss_factory over 255 bytes");
    /* Ranges of the other fields are the server's to check (BAD_REQUEST
     * names the field); only what would not fit the wire is refused. */
    memset(out, 0, sizeof *out);
    out->dim = (uint16_t)in->dim;
    out->index_kind = in->index_kind;
    out->quant = in->quant;
    out->hnsw_m = in->hnsw_m;
    out->hnsw_ef_construction = in->hnsw_ef_construction;
    out->hnsw_ef_search = in->hnsw_ef_search;
    out->ttl_mode = in->ttl_mode;
    out->flags = in->flags;
    out->min_threshold = in->min_threshold;
    out->dedup = in->dedup;
    out->default_ttl_s = in->default_ttl_s;
    out->max_age_s = in->max_age_s;
    out->max_bytes = in->max_bytes;
    out->max_entries = in->max_entries;
    out->faiss_factory = (const uint8_t *)in->faiss_factory;
    out->faiss_factory_len = (uint8_t)factory_len;
    return 0;
}

int deja_ns_create(deja_client *c, const char *ns, const deja_ns_config *cfg) {
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    uint8_t ns_len;
    proto_ns_config wire;
    if ((rc = deja__check_ns(c, ns, &ns_len)) != 0) return rc;
    if ((rc = to_wire_config(c, cfg, &wire)) != 0) return rc;
    uint32_t id = deja__take_ids(c, 1);
    rc = proto_encode_ns_create_req(&c->out, id, (const uint8_t *)ns, ns_len, &wire);
    if (rc != 0) return deja__set_err(c, rc, "cannot encode request");
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, PROTO_OP_NS_CREATE, id, &h, &body);
    if (rc != 0) return rc;
    if (h.body_len != 0) return deja__malformed(c, PROTO_OP_NS_CREATE);
    return 0;
}

int deja_ns_drop(deja_client *c, const char *ns, uint64_t *removed) {
    return deja__ns_count_call(c, ns, PROTO_OP_NS_DROP, proto_encode_ns_drop_req,
                               removed);
}

/* ---- list ----------------------------------------------------------------------- */

typedef struct list_block {
    deja_ns_list list;
    const char *names[];
} list_block;

int deja_ns_list_get(deja_client *c, deja_ns_list **out) {
    if (out) *out = NULL;
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    if (out == NULL) return deja__set_err(c, DEJA_ERR_INVALID_ARG, "out is NULL");
    uint32_t id = deja__take_ids(c, 1);
    rc = proto_encode_ns_list_req(&c->out, id);
    if (rc != 0) return deja__set_err(c, rc, "cannot encode request");
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, PROTO_OP_NS_LIST, id, &h, &body);
    if (rc != 0) return rc;

    /* Two passes: count and size, then copy. */
    size_t pos = 0, count = 0, bytes = 0;
    const uint8_t *name;
    uint8_t name_len;
    while ((rc = proto_ns_list_next(body, h.body_len, &pos, &name, &name_len)) == 1) {
        count++;
        bytes += (size_t)name_len + 1;
    }
    if (rc < 0) return deja__malformed(c, PROTO_OP_NS_LIST);
    list_block *b = malloc(sizeof *b + count * sizeof(char *) + bytes);
    if (b == NULL) return deja__set_err(c, DEJA_ERR_NOMEM, "no memory for the list");
    char *p = (char *)(b->names + count);
    b->list.count = (uint32_t)count;
    b->list.names = count ? b->names : NULL;
    pos = 0;
    for (size_t i = 0;
         i < count && proto_ns_list_next(body, h.body_len, &pos, &name, &name_len) == 1;
         i++) {
        memcpy(p, name, name_len);
        p[name_len] = 0;
        b->names[i] = p;
        p += name_len + 1;
    }
    *out = &b->list;
    return 0;
}

void deja_ns_list_free(deja_ns_list *l) {
    free(l); /* l is the first member of its list_block */
}

/* ---- info ------------------------------------------------------------------------ */

typedef struct info_block {
    deja_ns_info info;
    deja_stat items[];
} info_block;

int deja_ns_info_get(deja_client *c, const char *ns, deja_ns_info **out) {
    if (out) *out = NULL;
    int rc = deja__begin_call(c);
    if (rc != 0) return rc;
    if (out == NULL) return deja__set_err(c, DEJA_ERR_INVALID_ARG, "out is NULL");
    uint8_t ns_len;
    if ((rc = deja__check_ns(c, ns, &ns_len)) != 0) return rc;
    uint32_t id = deja__take_ids(c, 1);
    rc = proto_encode_ns_info_req(&c->out, id, (const uint8_t *)ns, ns_len);
    if (rc != 0) return deja__set_err(c, rc, "cannot encode request");
    proto_header h;
    const uint8_t *body;
    rc = deja__roundtrip(c, PROTO_OP_NS_INFO, id, &h, &body);
    if (rc != 0) return rc;

    proto_ns_config cfg;
    size_t off;
    if (proto_decode_ns_info_resp(body, h.body_len, &cfg, &off) != 0)
        return deja__malformed(c, PROTO_OP_NS_INFO);
    const uint8_t *stats = body + off;
    size_t stats_len = h.body_len - off, pos = 0, count = 0, bytes = 0;
    proto_stat st;
    while ((rc = proto_stats_next(stats, stats_len, &pos, &st)) == 1) {
        count++;
        bytes += (size_t)st.key_len + 1;
    }
    if (rc < 0) return deja__malformed(c, PROTO_OP_NS_INFO);
    bytes += (size_t)cfg.faiss_factory_len + 1;
    info_block *b = malloc(sizeof *b + count * sizeof(deja_stat) + bytes);
    if (b == NULL) return deja__set_err(c, DEJA_ERR_NOMEM, "no memory for the info");
    char *p = (char *)(b->items + count);
    deja_ns_config *out_cfg = &b->info.config;
    out_cfg->dim = cfg.dim;
    out_cfg->index_kind = cfg.index_kind;
    out_cfg->quant = cfg.quant;
    out_cfg->hnsw_m = cfg.hnsw_m;
    out_cfg->hnsw_ef_construction = cfg.hnsw_ef_construction;
    out_cfg->hnsw_ef_search = cfg.hnsw_ef_search;
    out_cfg->ttl_mode = cfg.ttl_mode;
    out_cfg->flags = cfg.flags;
    out_cfg->min_threshold = cfg.min_threshold;
    out_cfg->dedup = cfg.dedup;
    out_cfg->default_ttl_s = cfg.default_ttl_s;
    out_cfg->max_age_s = cfg.max_age_s;
    out_cfg->max_bytes = cfg.max_bytes;
    out_cfg->max_entries = cfg.max_entries;
    out_cfg->faiss_factory = NULL;
    if (cfg.faiss_factory_len) {
        memcpy(p, cfg.faiss_factory, cfg.faiss_factory_len);
        p[cfg.faiss_factory_len] = 0;
        out_cfg->faiss_factory = p;
        p += cfg.faiss_factory_len + 1;
    }
    b->info.stats.count = (uint32_t)count;
    b->info.stats.items = count ? b->items : NULL;
    pos = 0;
    for (size_t i = 0; i < count && proto_stats_next(stats, stats_len, &pos, &st) == 1;
         i++) {
        memcpy(p, st.key, st.key_len);
        p[st.key_len] = 0;
        b->items[i].key = p;
        b->items[i].value = st.value;
        p += st.key_len + 1;
    }
    *out = &b->info;
    return 0;
}

void deja_ns_info_free(deja_ns_info *info) {
    free(info); /* info is the first member of its info_block */
}
