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
 * after that only the commit thread calls store_apply / store_sync. The
 * store never keeps a read transaction open. */
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
    const char *dir;         /* the data folder (exists, locked by caller) */
    uint64_t max_disk;       /* the map never grows past this many bytes */
    enum store_fsync fsync;
} store_config;

#define STORE_NS_CONFIG_MAX 320u

typedef struct store_ns_rec {
    uint32_t ns_id;
    uint32_t dim;
    uint64_t created_ms;
    uint8_t name_len;
    char name[256]; /* not NUL-terminated on disk; NUL-terminated here */
    /* The namespace's configuration, opaque to the store (the server keeps
     * it in the wire encoding of proto_ns_config). */
    uint16_t config_len;
    uint8_t config[STORE_NS_CONFIG_MAX];
} store_ns_rec;

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
    uint8_t lfu;         /* 0 = none recorded */
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
 * or foreign deja), DEJA_ERR_IO, or DEJA_ERR_BAD_FRAME for a corrupt or
 * truncated data file; msg receives a sentence for the operator. */
int store_open(const store_config *cfg, store **out, char *msg, size_t msg_cap);

/* Closes the environment (flushing it). NULL is a no-op. */
void store_close(store *st);

typedef struct store_load_stats {
    uint64_t namespaces;
    uint64_t entries;
    uint64_t expired;   /* dropped at load (and deleted from disk) */
    uint64_t damaged;   /* checksum or layout failures, skipped */
    uint64_t max_id;    /* largest entry id seen */
    uint32_t max_ns_id;
} store_load_stats;

/* Callbacks get records valid only during the call. Returning nonzero from
 * a callback stops the load with that code. */
typedef int (*store_ns_fn)(void *ctx, const store_ns_rec *ns);
typedef int (*store_entry_fn)(void *ctx, const store_entry_rec *e);

/* Reads every namespace, then every live entry with its vector, in key
 * order. Entries whose expiry is <= now_ms are deleted from disk instead
 * of being returned. Errors: DEJA_ERR_BAD_FRAME for structural corruption
 * (msg says where), or a callback's code. */
int store_load(store *st, uint64_t now_ms, store_ns_fn on_ns,
               store_entry_fn on_entry, void *ctx, store_load_stats *stats,
               char *msg, size_t msg_cap);

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

#endif
