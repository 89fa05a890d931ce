/* srv-config.c: dejad's command line -- defaults, parsing and --help.
 *
 * The flag table below is the single list of options: the parser and the
 * help text are both generated from it, so they cannot disagree. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idx.h"
#include "proto.h"
#include "srv.h"

enum {
    OPT_HOST = 'h' + 256,
    OPT_PORT,
    OPT_PORT_FILE,
    OPT_DATA,
    OPT_UNIX,
    OPT_THREADS,
    OPT_MAX_FRAME,
    OPT_MAX_OUTBUF,
    OPT_DEFAULT_TTL,
    OPT_AUTH_TOKEN,
    OPT_LOG_LEVEL,
    OPT_FSYNC,
    OPT_FSYNC_INTERVAL,
    OPT_MAX_DISK,
    OPT_ON_CORRUPT,
    OPT_CLOCK_OFFSET,
    OPT_INDEX,
    OPT_HNSW_M,
    OPT_HNSW_EFC,
    OPT_HNSW_EF,
    OPT_QUANT,
    OPT_INDEX_THREADS,
    OPT_MIN_THRESHOLD,
    OPT_DEDUP,
    OPT_MAX_MEMORY,
    OPT_MAX_ENTRIES,
    OPT_MAX_UNINDEXED,
    OPT_SNAPSHOT_INTERVAL,
    OPT_ALLOW_FAISS,
    OPT_MAX_CONNECTIONS,
    OPT_IDLE_TIMEOUT,
    OPT_MAX_CLIENT_MEMORY,
    OPT_TOKENS_FILE,
    OPT_PROTECTED_MODE,
    OPT_HELP,
    OPT_VERSION,
};

typedef struct flag_doc {
    struct option opt;
    const char *arg;
    const char *help;
} flag_doc;

static const flag_doc flags[] = {
    {{"host", required_argument, NULL, OPT_HOST}, "ADDR",
     "TCP listen address (default " SRV_DEFAULT_HOST ")"},
    {{"port", required_argument, NULL, OPT_PORT}, "PORT",
     "TCP port, 0 = any free port (default 7447)"},
    {{"port-file", required_argument, NULL, OPT_PORT_FILE}, "FILE",
     "write the bound TCP port to FILE once listening"},
    {{"data", required_argument, NULL, OPT_DATA}, "DIR",
     "data folder, created if missing (default " SRV_DEFAULT_DATA ")"},
    {{"unix", required_argument, NULL, OPT_UNIX}, "PATH",
     "Unix socket path (default DIR/dejad.sock; '' disables)"},
    {{"threads", required_argument, NULL, OPT_THREADS}, "N",
     "I/O worker threads (default: one per CPU)"},
    {{"max-frame", required_argument, NULL, OPT_MAX_FRAME}, "BYTES",
     "largest accepted frame (default 16777216)"},
    {{"max-outbuf", required_argument, NULL, OPT_MAX_OUTBUF}, "BYTES",
     "unsent reply bytes per client before reads pause (default 8388608)"},
    {{"default-ttl", required_argument, NULL, OPT_DEFAULT_TTL}, "SECONDS",
     "TTL of entries stored with ttl 0; 0 = never expire (default 604800)"},
    {{"auth-token", required_argument, NULL, OPT_AUTH_TOKEN}, "TOKEN",
     "require AUTH with this token (or set DEJA_AUTH_TOKEN)"},
    {{"fsync", required_argument, NULL, OPT_FSYNC}, "MODE",
     "always: a STORE is acknowledged once durable (default); batch: once "
     "written, synced every --fsync-interval-ms; off: the OS syncs"},
    {{"fsync-interval-ms", required_argument, NULL, OPT_FSYNC_INTERVAL}, "MS",
     "longest unsynced window with --fsync batch (default 10)"},
    {{"max-disk", required_argument, NULL, OPT_MAX_DISK}, "BYTES",
     "largest data file; STOREs past it fail with STORAGE_FULL (default 64 GiB)"},
    {{"on-corrupt", required_argument, NULL, OPT_ON_CORRUPT}, "ACTION",
     "fail: exit when the data file is damaged (default); reset: move the "
     "folder aside and start empty"},
    {{"index", required_argument, NULL, OPT_INDEX}, "KIND",
     "index of new namespaces: hnsw (default) or flat (exact scan)"},
    {{"hnsw-m", required_argument, NULL, OPT_HNSW_M}, "M",
     "HNSW links per node (default 16)"},
    {{"hnsw-ef-construction", required_argument, NULL, OPT_HNSW_EFC}, "EF",
     "HNSW build breadth (default 200)"},
    {{"hnsw-ef", required_argument, NULL, OPT_HNSW_EF}, "EF",
     "HNSW search breadth when a LOOKUP sends ef 0 (default 64)"},
    {{"quant", required_argument, NULL, OPT_QUANT}, "Q",
     "vector codes for HNSW traversal: f32 (default) or int8"},
    {{"index-threads", required_argument, NULL, OPT_INDEX_THREADS}, "N",
     "threads moving new entries into the graph (default: one per CPU)"},
    {{"min-threshold", required_argument, NULL, OPT_MIN_THRESHOLD}, "COS",
     "lookup threshold floor of namespaces that set none (default 0.5)"},
    {{"dedup", required_argument, NULL, OPT_DEDUP}, "COS",
     "a STORE this similar to a live entry updates it (default 0.99; 0 = off)"},
    {{"max-memory", required_argument, NULL, OPT_MAX_MEMORY}, "BYTES",
     "memory budget (indexes + entries); LFU eviction past it (default: none)"},
    {{"max-entries", required_argument, NULL, OPT_MAX_ENTRIES}, "N",
     "entry cap; LFU eviction past it (default: none)"},
    {{"max-unindexed", required_argument, NULL, OPT_MAX_UNINDEXED}, "N",
     "STOREs wait while more than N entries wait for the graph; 0 = never "
     "(default 100000)"},
    {{"snapshot-interval", required_argument, NULL, OPT_SNAPSHOT_INTERVAL}, "SECONDS",
     "write graph snapshots this often when entries changed, so a restart "
     "after a crash skips most of the rebuild; 0 = only on shutdown "
     "(default 300)"},
    {{"allow-faiss", no_argument, NULL, OPT_ALLOW_FAISS}, NULL,
     "let NS_CREATE ask for FAISS index kinds (factory strings from a "
     "bounded grammar only; off by default)"},
    {{"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS}, "N",
     "open client connections; more are answered BUSY and closed "
     "(default 1024)"},
    {{"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT}, "SECONDS",
     "close a connection that completes no request and reads no reply for "
     "this long; 0 = never (default 300)"},
    {{"max-client-memory", required_argument, NULL, OPT_MAX_CLIENT_MEMORY}, "BYTES",
     "bytes held in all client buffers (requests and unsent replies); past "
     "it large frames are refused BUSY and replies pause (default 268435456)"},
    {{"tokens-file", required_argument, NULL, OPT_TOKENS_FILE}, "FILE",
     "tenant tokens, one 'TOKEN PREFIX RIGHTS' per line; reloaded on SIGHUP"},
    {{"protected-mode", required_argument, NULL, OPT_PROTECTED_MODE}, "yes|no",
     "refuse to listen on a non-loopback --host without a token (default yes)"},
    {{"clock-offset", required_argument, NULL, OPT_CLOCK_OFFSET}, "SECONDS",
     "testing only: run the cache's clock this far ahead (TTL tests)"},
    {{"log-level", required_argument, NULL, OPT_LOG_LEVEL}, "LEVEL",
     "error, warn, info or debug (default info)"},
    {{"help", no_argument, NULL, OPT_HELP}, NULL, "print this help and exit"},
    {{"version", no_argument, NULL, OPT_VERSION}, NULL, "print the version and exit"},
};
#define NFLAGS (sizeof flags / sizeof flags[0])

static void print_help(void) {
    printf("usage: dejad [options]\n\n"
           "deja semantic cache server for LLM responses.\n\noptions:\n");
    for (size_t i = 0; i < NFLAGS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", flags[i].opt.name,
                 flags[i].arg ? " " : "", flags[i].arg ? flags[i].arg : "");
        /* Wrap the text at 80 columns, continuing under its first word. */
        const char *text = flags[i].help;
        printf("  %-26s ", left);
        int col = 29;
        while (*text) {
            while (*text == ' ') text++;
            size_t word = strcspn(text, " ");
            if (word == 0) break;
            if (col > 29 && col + 1 + (int)word > 80) {
                printf("\n%29s", "");
                col = 29;
            } else if (col > 29) {
                putchar(' ');
                col++;
            }
            printf("%.*s", (int)word, text);
            col += (int)word;
            text += word;
        }
        putchar('\n');
    }
}

/* Parses an unsigned decimal in [min, max]. */
static int parse_uint(const char *name, const char *s, unsigned long long min,
                      unsigned long long max, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "dejad: --%s wants a number in %llu..%llu, got '%s'\n",
                name, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int srv_config_parse(srv_config *cfg, int argc, char **argv) {
    memset(cfg, 0, sizeof *cfg);
    cfg->host = SRV_DEFAULT_HOST;
    cfg->port = SRV_DEFAULT_PORT;
    cfg->data_dir = SRV_DEFAULT_DATA;
    cfg->max_frame = PROTO_DEFAULT_MAX_FRAME;
    cfg->max_outbuf = SRV_DEFAULT_MAX_OUTBUF;
    cfg->default_ttl_s = SRV_DEFAULT_TTL_S;
    cfg->log_level = SRV_LOG_INFO;
    cfg->fsync_mode = 0;
    cfg->fsync_interval_ms = SRV_DEFAULT_FSYNC_INTERVAL_MS;
    cfg->max_disk = SRV_DEFAULT_MAX_DISK;
    cfg->index_kind = IDX_KIND_HNSW;
    cfg->min_threshold = 0.5f;
    cfg->max_unindexed = 100000;
    cfg->snapshot_interval_s = 300;
    cfg->dedup = 0.99f;
    cfg->max_connections = SRV_DEFAULT_MAX_CONNECTIONS;
    cfg->idle_timeout_s = SRV_DEFAULT_IDLE_TIMEOUT_S;
    cfg->max_client_memory = SRV_DEFAULT_MAX_CLIENT_MEMORY;
    cfg->protected_mode = 1;
    cfg->auth_token = getenv("DEJA_AUTH_TOKEN");
    if (cfg->auth_token && !cfg->auth_token[0]) cfg->auth_token = NULL;

    struct option longopts[NFLAGS + 1];
    for (size_t i = 0; i < NFLAGS; i++) longopts[i] = flags[i].opt;
    memset(&longopts[NFLAGS], 0, sizeof longopts[NFLAGS]);

    opterr = 0;
    optind = 1;
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_HOST: cfg->host = optarg; break;
        case OPT_PORT:
            if (parse_uint("port", optarg, 0, 65535, &v)) return -1;
            cfg->port = (int)v;
            break;
        case OPT_PORT_FILE: cfg->port_file = optarg; break;
        case OPT_DATA: cfg->data_dir = optarg; break;
        case OPT_UNIX: cfg->unix_path = optarg; break;
        case OPT_THREADS:
            if (parse_uint("threads", optarg, 1, 256, &v)) return -1;
            cfg->threads = (unsigned)v;
            break;
        case OPT_MAX_FRAME:
            if (parse_uint("max-frame", optarg, PROTO_MIN_MAX_FRAME, INT32_MAX, &v))
                return -1;
            cfg->max_frame = (uint32_t)v;
            break;
        case OPT_MAX_OUTBUF:
            if (parse_uint("max-outbuf", optarg, 4096, SIZE_MAX, &v)) return -1;
            cfg->max_outbuf = (size_t)v;
            break;
        case OPT_DEFAULT_TTL:
            if (parse_uint("default-ttl", optarg, 0, UINT32_MAX / 1000, &v)) return -1;
            cfg->default_ttl_s = (uint32_t)v;
            break;
        case OPT_FSYNC: {
            static const char *const modes[] = {"always", "batch", "off"};
            int found = -1;
            for (int i = 0; i < 3; i++)
                if (strcmp(optarg, modes[i]) == 0) found = i;
            if (found < 0) {
                fprintf(stderr, "dejad: --fsync wants always, batch or off, got '%s'\n",
                        optarg);
                return -1;
            }
            cfg->fsync_mode = found;
            break;
        }
        case OPT_FSYNC_INTERVAL:
            if (parse_uint("fsync-interval-ms", optarg, 1, 60000, &v)) return -1;
            cfg->fsync_interval_ms = (uint32_t)v;
            break;
        case OPT_MAX_DISK:
            if (parse_uint("max-disk", optarg, 1u << 20, UINT64_MAX / 2, &v)) return -1;
            cfg->max_disk = v;
            break;
        case OPT_ON_CORRUPT:
            if (strcmp(optarg, "fail") == 0) cfg->on_corrupt_reset = 0;
            else if (strcmp(optarg, "reset") == 0) cfg->on_corrupt_reset = 1;
            else {
                fprintf(stderr, "dejad: --on-corrupt wants fail or reset, got '%s'\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_INDEX:
            if (strcmp(optarg, "hnsw") == 0) cfg->index_kind = IDX_KIND_HNSW;
            else if (strcmp(optarg, "flat") == 0) cfg->index_kind = IDX_KIND_FLAT;
            else {
                fprintf(stderr, "dejad: --index wants hnsw or flat, got '%s'\n", optarg);
                return -1;
            }
            break;
        case OPT_HNSW_M:
            if (parse_uint("hnsw-m", optarg, 2, 128, &v)) return -1;
            cfg->hnsw_m = (uint32_t)v;
            break;
        case OPT_HNSW_EFC:
            if (parse_uint("hnsw-ef-construction", optarg, 1, 4096, &v)) return -1;
            cfg->hnsw_ef_construction = (uint32_t)v;
            break;
        case OPT_HNSW_EF:
            if (parse_uint("hnsw-ef", optarg, 1, 4096, &v)) return -1;
            cfg->hnsw_ef_search = (uint32_t)v;
            break;
        case OPT_QUANT:
            if (strcmp(optarg, "f32") == 0) cfg->quant = IDX_QUANT_F32;
            else if (strcmp(optarg, "int8") == 0) cfg->quant = IDX_QUANT_INT8;
            else {
                fprintf(stderr, "dejad: --quant wants f32 or int8, got '%s'\n", optarg);
                return -1;
            }
            break;
        case OPT_INDEX_THREADS:
            if (parse_uint("index-threads", optarg, 1, 64, &v)) return -1;
            cfg->index_threads = (unsigned)v;
            break;
        case OPT_MIN_THRESHOLD:
        case OPT_DEDUP: {
            char *end;
            float f = strtof(optarg, &end);
            if (end == optarg || *end || !(f >= (c == OPT_DEDUP ? 0.0f : -1.0f)) || f > 1.0f) {
                fprintf(stderr, "dejad: --%s wants a cosine in %s..1, got '%s'\n",
                        c == OPT_DEDUP ? "dedup" : "min-threshold",
                        c == OPT_DEDUP ? "0" : "-1", optarg);
                return -1;
            }
            if (c == OPT_DEDUP) cfg->dedup = f;
            else cfg->min_threshold = f;
            break;
        }
        case OPT_MAX_MEMORY:
            if (parse_uint("max-memory", optarg, 1u << 20, UINT64_MAX / 2, &v)) return -1;
            cfg->max_memory = v;
            break;
        case OPT_MAX_ENTRIES:
            if (parse_uint("max-entries", optarg, 1, UINT64_MAX / 2, &v)) return -1;
            cfg->max_entries = v;
            break;
        case OPT_MAX_UNINDEXED:
            if (parse_uint("max-unindexed", optarg, 0, UINT64_MAX / 2, &v)) return -1;
            cfg->max_unindexed = v;
            break;
        case OPT_SNAPSHOT_INTERVAL:
            if (parse_uint("snapshot-interval", optarg, 0, 86400 * 7, &v)) return -1;
            cfg->snapshot_interval_s = (uint32_t)v;
            break;
        case OPT_ALLOW_FAISS: cfg->allow_faiss = 1; break;
        case OPT_MAX_CONNECTIONS:
            if (parse_uint("max-connections", optarg, 1, 1000000, &v)) return -1;
            cfg->max_connections = (uint32_t)v;
            break;
        case OPT_IDLE_TIMEOUT:
            if (parse_uint("idle-timeout", optarg, 0, 86400 * 30, &v)) return -1;
            cfg->idle_timeout_s = (uint32_t)v;
            break;
        case OPT_MAX_CLIENT_MEMORY:
            if (parse_uint("max-client-memory", optarg, 1u << 20, UINT64_MAX / 2, &v))
                return -1;
            cfg->max_client_memory = v;
            break;
        case OPT_TOKENS_FILE: cfg->tokens_file = optarg; break;
        case OPT_PROTECTED_MODE:
            if (strcmp(optarg, "yes") == 0) cfg->protected_mode = 1;
            else if (strcmp(optarg, "no") == 0) cfg->protected_mode = 0;
            else {
                fprintf(stderr, "dejad: --protected-mode wants yes or no, got '%s'\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_CLOCK_OFFSET:
            if (parse_uint("clock-offset", optarg, 0, 100u * 365u * 86400u, &v))
                return -1;
            cfg->clock_offset_ms = (int64_t)v * 1000;
            break;
        case OPT_AUTH_TOKEN: cfg->auth_token = optarg[0] ? optarg : NULL; break;
        case OPT_LOG_LEVEL: {
            static const char *const names[] = {"error", "warn", "info", "debug"};
            int found = -1;
            for (int i = 0; i < 4; i++)
                if (strcmp(optarg, names[i]) == 0) found = i;
            if (found < 0) {
                fprintf(stderr, "dejad: unknown --log-level '%s'\n", optarg);
                return -1;
            }
            cfg->log_level = found;
            break;
        }
        case OPT_HELP: print_help(); return 1;
        case OPT_VERSION: printf("dejad %s\n", DEJA_VERSION); return 1;
        default:
            fprintf(stderr, "dejad: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dejad: unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    return 0;
}
