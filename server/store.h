/* store.h: deja's durable store over LMDB -- the only code that talks to
 * LMDB.
 *
 * What is stored (one LMDB environment in the data folder):
 *   meta       "format" -> u32 format version (a newer or foreign folder is
 *              refused instead of misread)
 *   ns         namespace name -> namespace record (ns_id, dim, created)
 *   entries    (ns_id BE32, entry id BE64) -> entry record (times, cost
 *              metadata, prompt and response bytes)
 *   vectors    (ns_id BE32, entry id BE64) -> f32[dim], the source of truth
 *              the index is rebuilt from
 *   usage      (ns_id BE32, entry id BE64) -> hit count, LFU counter, last
 *              hit, current expiry: what changes on every hit, written back
 *              on clean shutdown instead of on every hit
 * Every record carries an XXH3-64 checksum of its bytes; a damaged record is
 * detected at load, skipped and counted, never served.
 *
 * Threading: store_open and store_load run on one thread before traffic;
 * after that only the commit thread calls store_apply / store_sync, and
 * any thread may read through a store_reader (below). */
#ifndef DEJA_STORE_H
#define DEJA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "deja-errors.h"

#define STORE_FORMAT_VERSION 1u

typedef struct store store;

enum store_fsync {
    STORE_FSYNC_ALWAYS = 0, /* each commit is durable before it returns */
    STORE_FSYNC_BATCH = 1,  /* commits reach the OS; store_sync flushes */
    STORE_FSYNC_OFF = 2,    /* the OS flushes when it likes */
};

typedef struct store_config {
    const char *dir;   /* the data folder (exists, locked by caller) */
    uint64_t max_disk; /* the map never grows past this many bytes */
    enum store_fsync fsync;
} store_config;

#define STORE_NS_CONFIG_MAX 320u

typedef struct store_ns_rec {
    uint32_t ns_id;
    uint32_t dim;
    uint64_t created_ms;
    uint8_t name_len;
    char name[256]; /* not NUL-terminated on disk; NUL-terminated here */
    /* The namespace's configuration in the store's own versioned encoding
     * (store_ns_config_encode / store_ns_config_decode); the record layout
     * carries it as opaque bytes, so a damaged configuration costs that
     * namespace's configuration, not the record. */
    uint16_t config_len;
    uint8_t config[STORE_NS_CONFIG_MAX];
} store_ns_rec;

/* ---- the namespace configuration record -------------------------------------
 * The store's own encoding, independent of any protocol version; its last
 * byte is a revision, so a later layout adds a revision instead of forcing
 * a migration. Little-endian; 45 + factory_len + 1 bytes:
 *    0 u16 dim              2 u8 index_kind        3 u8 quant
 *    4 u16 hnsw_m           6 u16 hnsw_ef_construction
 *    8 u16 hnsw_ef_search  10 u8 ttl_mode         11 u8 flags
 *   12 f32 min_threshold   16 f32 dedup           20 u32 default_ttl_s
 *   24 u32 max_age_s       28 u64 max_bytes       36 u64 max_entries
 *   44 u8 factory_len      45 factory[factory_len]
 *   revision 2 then: u8 shadow, f32 gray_band (the serving policy)
 *   then u8 revision (STORE_NS_CONFIG_REVISION)
 * Revision 2 added the serving policy (NS_POLICY) after the factory; a
 * revision-1 record reads with shadow 0 and no band, and is rewritten as
 * revision 2 the next time its namespace record is written.
 * Revision 1 is byte for byte what deja wrote before the store owned the
 * encoding (the protocol's v1 configuration block plus a revision byte), so
 * every data folder written since reads back. Two older forms read too: no
 * configuration at all (the first format: dim only, every field 0), and the
 * block without a revision byte, written before flag bit 2 was defined, whose
 * flags then keep only bits 0 and 1 (servers ignored the others). The
 * values are the server's (srv-persist.c maps them to the engine's); the
 * store checks layout, not meaning. */
#define STORE_NS_CONFIG_REVISION 2u
#define STORE_NS_CONFIG_FIXED 45u /* then factory, then the revision byte */

typedef struct store_ns_config {
    uint16_t dim;
    uint8_t index_kind;
    uint8_t quant;
    uint16_t hnsw_m;
    uint16_t hnsw_ef_construction;
    uint16_t hnsw_ef_search;
    uint8_t ttl_mode;
    uint8_t flags;
    float min_threshold;
    float dedup;
    uint32_t default_ttl_s;
    uint32_t max_age_s;
    uint64_t max_bytes;
    uint64_t max_entries;
    uint8_t factory_len;
    char factory[256]; /* NUL-terminated here, not on disk */
    uint8_t shadow;    /* revision 2; 0 in older records */
    float gray_band;   /* revision 2; 0 in older records */
} store_ns_config;

/* Writes cfg into ns->config (revision STORE_NS_CONFIG_REVISION) and sets
 * ns->config_len. Reentrant. */
void store_ns_config_encode(const store_ns_config *cfg, store_ns_rec *ns);

/* Decodes ns->config (any revision above) into *cfg; an empty configuration
 * gives every field 0 but dim, which comes from ns->dim. Errors:
 * DEJA_ERR_CORRUPT (a layout or revision this store does not know). */
int store_ns_config_decode(const store_ns_rec *ns, store_ns_config *cfg);

typedef struct store_entry_rec {
    uint32_t ns_id;
    uint64_t id;
    uint64_t created_ms;
    uint64_t expires_ms; /* 0 = never */
    uint32_t input_tokens;
    uint32_t output_tokens;
    uint64_t cost_micro_usd;
    const uint8_t *prompt;
    uint32_t prompt_len;
    const uint8_t *response;
    uint32_t response_len;
    const float *vector; /* dim floats */
    uint32_t dim;
    /* Usage (from the usage table when present, at load only). */
    uint32_t hits;
    uint8_t lfu; /* 0 = none recorded */
    uint64_t last_hit_ms;
} store_entry_rec;

typedef struct store_usage_rec {
    uint32_t ns_id;
    uint64_t id;
    uint32_t hits;
    uint8_t lfu;
    uint64_t last_hit_ms;
    uint64_t expires_ms;
} store_usage_rec;

/* Opens (creating if empty) the LMDB environment in cfg->dir, clears stale
 * readers, and checks the format version. On failure returns
 * DEJA_ERR_STORAGE_FULL (cannot map), DEJA_ERR_VERSION (format from a newer
 * or foreign deja), DEJA_ERR_IO, or DEJA_ERR_CORRUPT for a damaged or
 * truncated data file; msg receives a sentence for the operator. */
int store_open(const store_config *cfg, store **out, char *msg, size_t msg_cap);

/* Closes the environment (flushing it). NULL is a no-op. */
void store_close(store *st);

typedef struct store_load_stats {
    uint64_t namespaces;
    uint64_t entries;
    uint64_t expired; /* dropped at load (and deleted from disk) */
    uint64_t damaged; /* checksum or layout failures, skipped */
    uint64_t max_id;  /* largest entry id seen */
    uint32_t max_ns_id;
} store_load_stats;

/* Callbacks get records valid only during the call. Returning nonzero from
 * a callback stops the load with that code. */
typedef int (*store_ns_fn)(void *ctx, const store_ns_rec *ns);
typedef int (*store_entry_fn)(void *ctx, const store_entry_rec *e);
/* Asked before an entry's vector is read: 0 means the caller has no use
 * for it (a graph node restored from a snapshot), and the entry callback
 * then gets vector NULL with dim taken from the record's size. The vector
 * record is then not read at all (at 1536-d, 6 KiB per entry); its
 * checksum is verified when it is next read (store_read_vector). */
typedef int (*store_want_vector_fn)(void *ctx, uint32_t ns_id, uint64_t id);

typedef struct store_load_fns {
    store_ns_fn ns;
    store_want_vector_fn want_vector; /* NULL: every vector is read */
    store_entry_fn entry;
    void *ctx;
} store_load_fns;

/* Reads every namespace, then every live entry with its vector, in key
 * order. Entries whose expiry is <= now_ms are deleted from disk instead
 * of being returned. Errors: DEJA_ERR_CORRUPT for structural damage
 * (msg says where), or a callback's code. */
int store_load(store *st, uint64_t now_ms, const store_load_fns *fns,
               store_load_stats *stats, char *msg, size_t msg_cap);

enum store_op_kind {
    STORE_OP_PUT_NS = 1,
    STORE_OP_PUT_ENTRY = 2,
    STORE_OP_DEL_ENTRY = 3,
    STORE_OP_DEL_NS_ENTRIES = 4,
    STORE_OP_DEL_NS = 5, /* the namespace record and all its entries */
    STORE_OP_PUT_USAGE = 6,
};

typedef struct store_op {
    enum store_op_kind kind;
    const store_ns_rec *ns;       /* PUT_NS, DEL_NS */
    const store_entry_rec *entry; /* PUT_ENTRY */
    const store_usage_rec *usage; /* PUT_USAGE */
    uint32_t ns_id;               /* DEL_ENTRY, DEL_NS_ENTRIES */
    uint64_t id;                  /* DEL_ENTRY */
    int result;                   /* out: 0, NOT_FOUND, STORAGE_FULL, IO */
    uint64_t removed;             /* out: DEL_NS_ENTRIES, DEL_NS */
} store_op;

/* Applies ops in one write transaction and commits it (durably in
 * STORE_FSYNC_ALWAYS). When the map is full it grows (doubling, up to
 * max_disk) and retries; if the batch still does not fit, the ops are
 * applied one transaction each so that deletes and small puts succeed and
 * only what does not fit fails with DEJA_ERR_STORAGE_FULL. Each op's
 * result says what happened to it; the return value is 0 when every op
 * succeeded (NOT_FOUND counts as success), else the first failure. */
int store_apply(store *st, store_op *ops, size_t n);

/* Flushes committed transactions to disk (for STORE_FSYNC_BATCH). */
int store_sync(store *st);

/* The id of the last committed LMDB transaction (tags graph snapshots). */
uint64_t store_last_txn(store *st);

/* Bytes of the data file and of the current map. */
void store_sizes(store *st, uint64_t *file_bytes, uint64_t *map_bytes);

/* ---- reading while serving --------------------------------------------------
 * A hit's response and an int8 re-rank's f32 vectors are read where they
 * already are, in the map, instead of from copies on the heap. A reader
 * is one LMDB read transaction: a consistent snapshot of the store as of
 * store_reader_begin, whose pages LMDB will not reuse until
 * store_reader_end, so what a read returns stays valid (and unchanged by
 * concurrent writes, deletes and evictions) until then. A reader is held
 * for one request's search and reply encoding (microseconds); while it is
 * held the map cannot grow, so a STORE that needs a bigger map waits for
 * it. A thread holds at most one reader at a time: a second begin on the
 * same thread may deadlock against a waiting growth. Readers come from a
 * pool and may be used on any thread, one thread at a time. */
typedef struct store_reader store_reader;

/* Begins a read at the latest committed state. Errors: NOMEM, IO. */
int store_reader_begin(store *st, store_reader **out);

/* Ends the read; every pointer it returned becomes invalid. NULL: no-op. */
void store_reader_end(store_reader *rd);

/* Reads entry (ns_id, id): times, cost figures, prompt and response, the
 * last two pointing into the map until the reader ends. The record's
 * checksum is verified. Errors: NOT_FOUND (deleted, or committed after
 * the read began), CORRUPT, IO. */
int store_read_entry(store_reader *rd, uint32_t ns_id, uint64_t id, store_entry_rec *e);

/* *out = the f32 vector of (ns_id, id), dim floats, checksum verified:
 * a pointer into the map when it is float-aligned there, else into
 * scratch[dim], where it is copied. Valid until the reader ends. Errors:
 * NOT_FOUND, CORRUPT (damaged, or not dim floats), IO. */
int store_read_vector(store_reader *rd, uint32_t ns_id, uint64_t id, uint32_t dim,
                      float *scratch, const float **out);

#endif
