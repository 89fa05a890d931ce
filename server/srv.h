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
/* Before AUTH: the largest HELLO (6 + a 65,535-byte name), with its
 * header. Every HELLO, AUTH and PING the protocol allows fits. */
#define SRV_PREAUTH_MAX_FRAME (16u + 6u + 65535u)
#define SRV_DEFAULT_MAX_DISK (64ull << 30)
#define SRV_DEFAULT_FSYNC_INTERVAL_MS 10u
#define SRV_DEFAULT_MAX_CONNECTIONS 1024u
#define SRV_DEFAULT_IDLE_TIMEOUT_S 300u
#define SRV_DEFAULT_MAX_CLIENT_MEMORY (256ull << 20)

typedef struct srv_config {
    const char *host;           /* TCP listen address */
    int port;                   /* 0 = ephemeral (see port_file) */
    const char *port_file;      /* written with the bound port once listening */
    const char *data_dir;       /* created if missing; locked while running */
    const char *unix_path;      /* "" = no Unix socket; NULL = DATA/dejad.sock */
    unsigned threads;           /* I/O worker loops; 0 = one per CPU */
    uint32_t max_frame;         /* largest accepted frame, header included */
    size_t max_outbuf;          /* per-connection unsent bytes before reads pause */
    uint32_t default_ttl_s;     /* TTL for STOREs that send 0 */
    const char *auth_token;     /* NULL = no authentication */
    int log_level;              /* 0 error, 1 warn, 2 info, 3 debug */
    int fsync_mode;             /* enum store_fsync */
    uint32_t fsync_interval_ms; /* --fsync batch: longest unsynced window */
    uint64_t max_disk;          /* data file limit in bytes */
    int on_corrupt_reset;       /* move a damaged data folder aside, start empty */
    int64_t clock_offset_ms;    /* testing: shifts the cache's clock */
    int index_kind;             /* enum idx_kind for new namespaces */
    uint32_t hnsw_m, hnsw_ef_construction, hnsw_ef_search;
    int quant;                     /* enum idx_quant */
    unsigned index_threads;        /* graph builders */
    float min_threshold;           /* default lookup threshold floor */
    float dedup;                   /* default write-time dedup similarity; 0 = off */
    uint64_t max_memory;           /* budget for index + in-memory entries; 0 = none */
    uint64_t max_entries;          /* entry cap; 0 = none */
    uint64_t max_unindexed;        /* STOREs wait while more entries wait for the graph */
    uint32_t snapshot_interval_s;  /* periodic graph snapshots; 0 = only at exit */
    uint64_t snapshot_inserts;     /* and after this many graph inserts; 0 = by time */
    int allow_faiss;               /* accept FAISS factory strings (bounded grammar) */
    uint64_t max_namespaces;       /* namespaces clients may create */
    uint64_t max_leases;           /* pending leases, server-wide */
    uint64_t max_lease_waiters;    /* lookups waiting on leases */
    uint32_t max_connections;      /* open client connections; more get BUSY */
    uint32_t idle_timeout_s;       /* close connections idle this long; 0 = never */
    uint64_t max_client_memory;    /* bytes held in all client buffers */
    const char *tokens_file;       /* tenant tokens (reloaded on SIGHUP) */
    int protected_mode;            /* refuse a non-loopback --host without tokens */
    const char *metrics_addr;      /* HOST:PORT for /metrics; NULL = off */
    const char *metrics_port_file; /* written with the bound metrics port */
    const char *log_file;          /* NULL = stderr */
    int log_format;                /* SRV_LOG_TEXT or SRV_LOG_JSON */
    char *config_file;             /* --config, kept for SIGHUP */
} srv_config;

enum { SRV_LOG_TEXT, SRV_LOG_JSON };

/* Fills cfg with the defaults, then the --config file if one is named,
 * then the flags of argv. Returns 0 to run; 1 when --help, --version,
 * --example-config or --check-config did their job (exit 0; cfg is
 * empty); -1 on a bad flag, file line or value (a message naming it was
 * printed; exit 2; cfg is empty). Strings in cfg are owned by it until
 * srv_config_free. */
int srv_config_parse(srv_config *cfg, int argc, char **argv);

/* Frees the strings of a parsed configuration. */
void srv_config_free(srv_config *cfg);

/* Calls fn for every key whose value differs between a and b, with b's
 * value and whether SIGHUP may apply it. */
void srv_config_diff(const srv_config *a, const srv_config *b,
                     void (*fn)(void *ctx, const char *key, const char *value,
                                int reloadable),
                     void *ctx);

/* Calls fn for every key with its value as text (the auth token left
 * out). */
void srv_config_each(const srv_config *cfg,
                     void (*fn)(void *ctx, const char *key, const char *value),
                     void *ctx);

/* Runs the server until SIGINT/SIGTERM. argc/argv are parsed again on
 * SIGHUP (with the config file) to reload what may be reloaded. Returns
 * the process exit code. */
int srv_run(srv_config *cfg, int argc, char **argv);

enum { SRV_LOG_ERROR, SRV_LOG_WARN, SRV_LOG_INFO, SRV_LOG_DEBUG };

/* Sets the level below which srv_log prints nothing. Any thread. */
void srv_log_init(int level);

/* Applies the log settings of cfg (level, format, --log-file). Returns 0,
 * or -1 when the log file cannot be opened (a message on stderr). Main
 * thread, before other threads start. */
int srv_log_open(const srv_config *cfg);

/* Opens the log file again (after logrotate moved it). Returns 0 or -1. */
int srv_log_reopen(void);

/* Goes back to stderr and closes the log file. */
void srv_log_close(void);

/* Prints one timestamped line to stderr. Thread-safe (one write). */
void srv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A log site that clients can trigger (refused accepts, failed AUTH,
 * failed commits): at most SRV_LOG_BURST lines per 10 s window; the first
 * line of the next window says how many were suppressed. Zero-initialise;
 * any thread. */
#define SRV_LOG_BURST 5u
typedef struct srv_log_limit {
    _Atomic unsigned long long window; /* 10-second window number */
    _Atomic unsigned printed, suppressed;
} srv_log_limit;

void srv_log_limited(srv_log_limit *lim, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
