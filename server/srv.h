/* srv.h: the dejad daemon -- configuration, lifecycle and logging.
 *
 * main() parses a srv_config, then srv_run() owns the process until a
 * SIGINT/SIGTERM shuts it down. Everything the server needs hangs off one
 * srv_server context created in srv_run; there are no mutable globals.
 * Threads, locks and data flow are described in docs/ARCHITECTURE.md. */
#ifndef DEJA_SRV_H
#define DEJA_SRV_H

#include <stddef.h>
#include <stdint.h>

#define SRV_DEFAULT_PORT 7447
#define SRV_DEFAULT_HOST "127.0.0.1"
#define SRV_DEFAULT_DATA "./deja-data"
#define SRV_DEFAULT_TTL_S (7u * 24u * 3600u)
#define SRV_DEFAULT_MAX_OUTBUF (8u * 1024u * 1024u)
#define SRV_PREAUTH_MAX_FRAME (64u * 1024u)
#define SRV_DEFAULT_MAX_DISK (64ull << 30)
#define SRV_DEFAULT_FSYNC_INTERVAL_MS 10u
#define SRV_DEFAULT_MAX_CONNECTIONS 1024u
#define SRV_DEFAULT_IDLE_TIMEOUT_S 300u
#define SRV_DEFAULT_MAX_CLIENT_MEMORY (256ull << 20)

typedef struct srv_config {
    const char *host;        /* TCP listen address */
    int port;                /* 0 = ephemeral (see port_file) */
    const char *port_file;   /* written with the bound port once listening */
    const char *data_dir;    /* created if missing; locked while running */
    const char *unix_path;   /* "" = no Unix socket; NULL = DATA/dejad.sock */
    unsigned threads;        /* I/O worker loops; 0 = one per CPU */
    uint32_t max_frame;      /* largest accepted frame, header included */
    size_t max_outbuf;       /* per-connection unsent bytes before reads pause */
    uint32_t default_ttl_s;  /* TTL for STOREs that send 0 */
    const char *auth_token;  /* NULL = no authentication */
    int log_level;           /* 0 error, 1 warn, 2 info, 3 debug */
    int fsync_mode;          /* enum store_fsync */
    uint32_t fsync_interval_ms; /* --fsync batch: longest unsynced window */
    uint64_t max_disk;       /* data file limit in bytes */
    int on_corrupt_reset;    /* move a damaged data folder aside, start empty */
    int64_t clock_offset_ms; /* testing: shifts the cache's clock */
    int index_kind;          /* enum idx_kind for new namespaces */
    uint32_t hnsw_m, hnsw_ef_construction, hnsw_ef_search;
    int quant;               /* enum idx_quant */
    unsigned index_threads;  /* graph builders */
    float min_threshold;     /* default lookup threshold floor */
    float dedup;             /* default write-time dedup similarity; 0 = off */
    uint64_t max_memory;     /* budget for index + in-memory entries; 0 = none */
    uint64_t max_entries;    /* entry cap; 0 = none */
    uint64_t max_unindexed;  /* STOREs wait while more entries wait for the graph */
    uint32_t snapshot_interval_s; /* periodic graph snapshots; 0 = only at exit */
    int allow_faiss;         /* accept FAISS factory strings (bounded grammar) */
    uint32_t max_connections; /* open client connections; more get BUSY */
    uint32_t idle_timeout_s; /* close connections idle this long; 0 = never */
    uint64_t max_client_memory; /* bytes held in all client buffers */
    const char *tokens_file; /* tenant tokens (reloaded on SIGHUP) */
    int protected_mode;      /* refuse a non-loopback --host without tokens */
} srv_config;

/* Fills cfg with defaults, then applies argv. Returns 0 to run, 1 when
 * --help or --version was printed (exit 0), -1 on a bad flag (a message
 * was printed; exit 2). */
int srv_config_parse(srv_config *cfg, int argc, char **argv);

/* Runs the server until SIGINT/SIGTERM. Returns the process exit code. */
int srv_run(const srv_config *cfg);

enum { SRV_LOG_ERROR, SRV_LOG_WARN, SRV_LOG_INFO, SRV_LOG_DEBUG };

/* Sets the level below which srv_log prints nothing (once, at start). */
void srv_log_init(int level);

/* Prints one timestamped line to stderr. Thread-safe (one write). */
void srv_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
