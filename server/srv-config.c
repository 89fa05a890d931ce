/* srv-config.c: dejad's configuration -- one declarative table of keys
 * that drives the command line, --help, the config file (--config), its
 * validation (--check-config), the commented example (--example-config,
 * committed as deploy/dejad.conf) and what SIGHUP may change.
 *
 * Each key has a name (the long option and the file key), a type, a range
 * or a list of names, a default written once as the text a user would
 * type, a help line and the field it lands in. Defaults, the file and the
 * command line all go through the same parser, so they cannot disagree.
 * Precedence: defaults, then the file, then the flags. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idx.h"
#include "proto.h"
#include "srv.h"

enum key_type {
    K_STR,        /* a string; "" means unset where the key says so */
    K_UINT,       /* unsigned integer of `size` bytes in [min, max] */
    K_INT,        /* int in [min, max] */
    K_FLOAT,      /* float in [fmin, fmax] */
    K_ENUM,       /* one of names[], stored as values[] (int) */
    K_FLAG,       /* no argument on the command line; yes/no in the file */
    K_SECONDS_MS, /* seconds given, int64 milliseconds stored */
    K_ACTION,     /* command-line only: --help, --config ... */
};

enum { A_HELP = 1, A_VERSION, A_CONFIG, A_CHECK, A_EXAMPLE };

#define RELOAD 0x1u  /* SIGHUP applies a change of this key */
#define TESTING 0x2u /* for tests; left out of the example file */

typedef struct key_def {
    const char *name;
    enum key_type type;
    size_t offset, size;
    unsigned long long min, max;
    double fmin, fmax;
    const char *const *names;
    const int *values;
    const char *def; /* default as typed; NULL = none */
    const char *arg; /* argument name in --help */
    const char *help;
    unsigned flags;
    int action;
} key_def;

#define F(field) offsetof(srv_config, field), sizeof(((srv_config *)0)->field)

static const char *const fsync_names[] = {"always", "batch", "off", NULL};
static const int fsync_values[] = {0, 1, 2};
static const char *const corrupt_names[] = {"fail", "reset", NULL};
static const int corrupt_values[] = {0, 1};
static const char *const index_names[] = {"hnsw", "flat", NULL};
static const int index_values[] = {IDX_KIND_HNSW, IDX_KIND_FLAT};
static const char *const quant_names[] = {"f32", "int8", NULL};
static const int quant_values[] = {IDX_QUANT_F32, IDX_QUANT_INT8};
static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const int level_values[] = {SRV_LOG_ERROR, SRV_LOG_WARN, SRV_LOG_INFO,
                                   SRV_LOG_DEBUG};
static const char *const format_names[] = {"text", "json", NULL};
static const int format_values[] = {SRV_LOG_TEXT, SRV_LOG_JSON};
static const char *const yesno_names[] = {"no", "yes", NULL};
static const int yesno_values[] = {0, 1};

#define UINT(field, lo, hi) K_UINT, F(field), lo, hi, 0, 0, NULL, NULL
#define INT(field, lo, hi) K_INT, F(field), lo, hi, 0, 0, NULL, NULL
#define FLOAT(field, lo, hi) K_FLOAT, F(field), 0, 0, lo, hi, NULL, NULL
#define STR(field) K_STR, F(field), 0, 0, 0, 0, NULL, NULL
#define ENUM(field, set) K_ENUM, F(field), 0, 0, 0, 0, set##_names, set##_values
#define FLAG(field) K_FLAG, F(field), 0, 0, 0, 0, yesno_names, yesno_values
#define ACTION K_ACTION, 0, 0, 0, 0, 0, 0, NULL, NULL

static const key_def keys[] = {
    {"config", ACTION, NULL, "FILE",
     "read settings from FILE (one 'key value' per line); flags override it", 0,
     A_CONFIG},
    {"check-config", ACTION, NULL, NULL,
     "validate the settings (file and flags) and exit: 0 if they are good", 0, A_CHECK},
    {"example-config", ACTION, NULL, NULL,
     "print a commented config file with every key at its default and exit", 0,
     A_EXAMPLE},
    {"host", STR(host), SRV_DEFAULT_HOST, "ADDR", "TCP listen address", 0, 0},
    {"port", INT(port, 0, 65535), "7447", "PORT", "TCP port, 0 = any free port", 0, 0},
    {"port-file", STR(port_file), NULL, "FILE",
     "write the bound TCP port to FILE once listening", TESTING, 0},
    {"data", STR(data_dir), SRV_DEFAULT_DATA, "DIR", "data folder, created if missing", 0,
     0},
    {"unix", STR(unix_path), NULL, "PATH",
     "Unix socket path (default DIR/dejad.sock; '' disables)", 0, 0},
    {"threads", UINT(threads, 1, 256), NULL, "N",
     "I/O worker threads (default: one per CPU)", 0, 0},
    {"max-frame", UINT(max_frame, PROTO_MIN_MAX_FRAME, INT32_MAX), "16777216", "BYTES",
     "largest accepted frame", 0, 0},
    {"max-outbuf", UINT(max_outbuf, 4096, SIZE_MAX / 2), "8388608", "BYTES",
     "unsent reply bytes per client before reads pause", 0, 0},
    {"max-connections", UINT(max_connections, 1, 1000000), "1024", "N",
     "open client connections; more are answered BUSY and closed", 0, 0},
    {"idle-timeout", UINT(idle_timeout_s, 0, 86400 * 30), "300", "SECONDS",
     "close a connection that completes no request and reads no reply for this long; "
     "0 = never",
     0, 0},
    {"max-client-memory", UINT(max_client_memory, 1u << 20, UINT64_MAX / 2), "268435456",
     "BYTES",
     "bytes held in all client buffers (requests and unsent replies); past it large "
     "frames are refused BUSY and replies pause",
     0, 0},
    {"auth-token", STR(auth_token), NULL, "TOKEN",
     "require AUTH with this token, which may do everything (or set DEJA_AUTH_TOKEN)", 0,
     0},
    {"tokens-file", STR(tokens_file), NULL, "FILE",
     "tenant tokens, one 'TOKEN PREFIX RIGHTS' per line; reloaded on SIGHUP", RELOAD, 0},
    {"protected-mode", ENUM(protected_mode, yesno), "yes", "yes|no",
     "refuse to listen on a non-loopback --host without a token", 0, 0},
    {"max-namespaces", UINT(max_namespaces, 1, 1000000), "4096", "N",
     "namespaces clients may create (each costs about 40 KB); more get STORAGE_FULL", 0,
     0},
    {"max-leases", UINT(max_leases, 16, 1000000), "4096", "N",
     "pending leases (LOOKUP_EX single-flight), a sixteenth of them per namespace; "
     "past it lookups miss without a lease",
     0, 0},
    {"max-lease-waiters", UINT(max_lease_waiters, 1, 10000000), "16384", "N",
     "lookups waiting on other callers' leases; past it lookups miss", 0, 0},
    {"allow-faiss", FLAG(allow_faiss), "no", NULL,
     "let NS_CREATE ask for FAISS index kinds (factory strings from a bounded grammar "
     "only)",
     0, 0},
    {"default-ttl", UINT(default_ttl_s, 0, UINT32_MAX / 1000), "604800", "SECONDS",
     "TTL of entries stored with ttl 0; 0 = never expire", 0, 0},
    {"fsync", ENUM(fsync_mode, fsync), "always", "MODE",
     "always: a STORE is acknowledged once durable; batch: once written, synced every "
     "--fsync-interval-ms; off: the OS syncs",
     0, 0},
    {"fsync-interval-ms", UINT(fsync_interval_ms, 1, 60000), "10", "MS",
     "longest unsynced window with --fsync batch", 0, 0},
    {"max-disk", UINT(max_disk, 1u << 20, UINT64_MAX / 2), "68719476736", "BYTES",
     "largest data file; STOREs past it fail with STORAGE_FULL", 0, 0},
    {"on-corrupt", ENUM(on_corrupt_reset, corrupt), "fail", "ACTION",
     "fail: exit when the data file is damaged; reset: move the folder aside and start "
     "empty",
     0, 0},
    {"index", ENUM(index_kind, index), "hnsw", "KIND",
     "index of new namespaces: hnsw or flat (exact scan)", 0, 0},
    {"hnsw-m", UINT(hnsw_m, 2, 128), "16", "M", "HNSW links per node", 0, 0},
    {"hnsw-ef-construction", UINT(hnsw_ef_construction, 1, 4096), "200", "EF",
     "HNSW build breadth", 0, 0},
    {"hnsw-ef", UINT(hnsw_ef_search, 1, 4096), "64", "EF",
     "HNSW search breadth when a LOOKUP sends ef 0", 0, 0},
    {"quant", ENUM(quant, quant), "f32", "Q",
     "vector codes for HNSW traversal: f32 or int8", 0, 0},
    {"index-threads", UINT(index_threads, 1, 64), NULL, "N",
     "threads moving new entries into the graph (default: one per CPU)", 0, 0},
    {"min-threshold", FLOAT(min_threshold, -1.0, 1.0), "0.5", "COS",
     "lookup threshold floor of namespaces that set none", RELOAD, 0},
    {"dedup", FLOAT(dedup, 0.0, 1.0), "0.99", "COS",
     "a STORE this similar to a live entry updates it; 0 = off", RELOAD, 0},
    {"max-memory", UINT(max_memory, 0, UINT64_MAX / 2), "0", "BYTES",
     "memory budget (indexes + entries); LFU eviction past it; 0 = none", RELOAD, 0},
    {"max-entries", UINT(max_entries, 0, UINT64_MAX / 2), "0", "N",
     "entry cap; LFU eviction past it; 0 = none", RELOAD, 0},
    {"max-unindexed", UINT(max_unindexed, 0, UINT64_MAX / 2), "100000", "N",
     "STOREs wait while more than N entries stored since start wait for the graph "
     "(the backlog a restart left does not count); 0 = never",
     0, 0},
    {"snapshot-interval", UINT(snapshot_interval_s, 0, 86400 * 7), "300", "SECONDS",
     "write graph snapshots this often when entries changed, so a restart after a crash "
     "skips most of the rebuild; 0 = only on shutdown",
     0, 0},
    {"snapshot-inserts", UINT(snapshot_inserts, 0, UINT64_MAX / 2), "20000", "N",
     "write graph snapshots also once N entries entered the graphs since the last one "
     "(spending at most a fifth of the time writing), so a crash leaves at most about N "
     "graph inserts to redo; 0 = by time only",
     0, 0},
    {"metrics-addr", STR(metrics_addr), NULL, "HOST:PORT",
     "serve Prometheus metrics (GET /metrics), /healthz and /readyz over HTTP here; keep "
     "it "
     "on a loopback or private address",
     0, 0},
    {"metrics-port-file", STR(metrics_port_file), NULL, "FILE",
     "write the bound metrics port to FILE once listening", TESTING, 0},
    {"log-level", ENUM(log_level, level), "info", "LEVEL", "error, warn, info or debug",
     RELOAD, 0},
    {"log-file", STR(log_file), NULL, "FILE",
     "append log lines to FILE instead of stderr; reopened on SIGHUP (for logrotate)", 0,
     0},
    {"log-format", ENUM(log_format, format), "text", "FORMAT",
     "text: one line per event; json: one JSON object per line", 0, 0},
    {"clock-offset", K_SECONDS_MS, F(clock_offset_ms), 0, 100u * 365u * 86400u, 0, 0,
     NULL, NULL, "0", "SECONDS",
     "testing only: run the cache's clock this far ahead (TTL tests)", TESTING, 0},
    {"help", ACTION, NULL, NULL, "print this help and exit", 0, A_HELP},
    {"version", ACTION, NULL, NULL, "print the version and exit", 0, A_VERSION},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static const key_def *find_key(const char *name, size_t len) {
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
            return &keys[i];
    return NULL;
}

static void *field(srv_config *cfg, const key_def *k) {
    return (char *)cfg + k->offset;
}

static const void *cfield(const srv_config *cfg, const key_def *k) {
    return (const char *)cfg + k->offset;
}

/* ---- values --------------------------------------------------------------- */

static void store_uint(void *p, size_t size, unsigned long long v) {
    switch (size) {
    case 1: *(uint8_t *)p = (uint8_t)v; break;
    case 2: *(uint16_t *)p = (uint16_t)v; break;
    case 4: *(uint32_t *)p = (uint32_t)v; break;
    default: *(uint64_t *)p = (uint64_t)v; break;
    }
}

static unsigned long long load_uint(const void *p, size_t size) {
    switch (size) {
    case 1: return *(const uint8_t *)p;
    case 2: return *(const uint16_t *)p;
    case 4: return *(const uint32_t *)p;
    default: return *(const uint64_t *)p;
    }
}

static void set_str(srv_config *cfg, const key_def *k, const char *value) {
    char **slot = field(cfg, k);
    free(*slot);
    *slot = value ? strdup(value) : NULL;
}

/* Parses value into k's field. Returns 0, or -1 with a message in err. */
static int set_value(srv_config *cfg, const key_def *k, const char *value, char *err,
                     size_t errlen) {
    char *end;
    switch (k->type) {
    case K_STR: set_str(cfg, k, value); return 0;
    case K_UINT:
    case K_INT:
    case K_SECONDS_MS: {
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-' || v < k->min ||
            v > k->max) {
            snprintf(err, errlen, "%s wants a number in %llu..%llu, got '%s'", k->name,
                     k->min, k->max, value);
            return -1;
        }
        if (k->type == K_INT)
            *(int *)field(cfg, k) = (int)v;
        else if (k->type == K_SECONDS_MS)
            *(int64_t *)field(cfg, k) = (int64_t)v * 1000;
        else
            store_uint(field(cfg, k), k->size, v);
        return 0;
    }
    case K_FLOAT: {
        float f = strtof(value, &end);
        if (end == value || *end || !(f >= k->fmin) || f > k->fmax) {
            snprintf(err, errlen, "%s wants a number in %g..%g, got '%s'", k->name,
                     k->fmin, k->fmax, value);
            return -1;
        }
        *(float *)field(cfg, k) = f;
        return 0;
    }
    case K_ENUM:
    case K_FLAG: {
        for (int i = 0; k->names[i]; i++) {
            if (strcmp(value, k->names[i]) == 0) {
                *(int *)field(cfg, k) = k->values[i];
                return 0;
            }
        }
        if (k->type == K_FLAG &&
            (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)) {
            *(int *)field(cfg, k) = 1;
            return 0;
        }
        if (k->type == K_FLAG &&
            (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)) {
            *(int *)field(cfg, k) = 0;
            return 0;
        }
        int n = snprintf(err, errlen, "%s wants ", k->name);
        for (int i = 0; k->names[i] && n > 0 && (size_t)n < errlen; i++)
            n += snprintf(err + n, errlen - (size_t)n, "%s%s",
                          i ? (k->names[i + 1] ? ", " : " or ") : "", k->names[i]);
        if (n > 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, ", got '%s'", value);
        return -1;
    }
    case K_ACTION: return 0;
    }
    return 0;
}

/* Formats k's value in cfg the way a user would type it. */
static void format_value(const srv_config *cfg, const key_def *k, char *out, size_t len) {
    const void *p = cfield(cfg, k);
    out[0] = 0;
    switch (k->type) {
    case K_STR: {
        const char *s = *(const char *const *)p;
        snprintf(out, len, "%s", s ? s : "");
        break;
    }
    case K_UINT: snprintf(out, len, "%llu", load_uint(p, k->size)); break;
    case K_INT: snprintf(out, len, "%d", *(const int *)p); break;
    case K_SECONDS_MS:
        snprintf(out, len, "%lld", (long long)(*(const int64_t *)p / 1000));
        break;
    case K_FLOAT: snprintf(out, len, "%g", (double)*(const float *)p); break;
    case K_ENUM:
    case K_FLAG:
        for (int i = 0; k->names[i]; i++)
            if (k->values[i] == *(const int *)p) snprintf(out, len, "%s", k->names[i]);
        break;
    case K_ACTION: break;
    }
}

/* ---- help and the example file -------------------------------------------- */

/* Prints text wrapped at 80 columns, continuing lines at column indent. */
static void print_wrapped(FILE *f, const char *text, int col, int indent,
                          const char *prefix) {
    while (*text) {
        while (*text == ' ')
            text++;
        size_t word = strcspn(text, " ");
        if (word == 0) break;
        if (col > indent && col + 1 + (int)word > 80) {
            fprintf(f, "\n%*s%s", indent - (int)strlen(prefix), "", prefix);
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", (int)word, text);
        col += (int)word;
        text += word;
    }
    fputc('\n', f);
}

static void print_help(void) {
    printf("usage: dejad [options]\n\n"
           "deja semantic cache server for LLM responses.\n\n"
           "Every option can also be set in a config file (--config) as 'name value';\n"
           "options given here override the file.\n\noptions:\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        char left[64], help[512];
        snprintf(left, sizeof left, "--%s%s%s", k->name, k->arg ? " " : "",
                 k->arg ? k->arg : "");
        snprintf(help, sizeof help, "%s%s%s%s%s", k->help,
                 k->def && k->type != K_ACTION && k->type != K_FLAG ? " (default " : "",
                 k->def && k->type != K_ACTION && k->type != K_FLAG ? k->def : "",
                 k->def && k->type != K_ACTION && k->type != K_FLAG ? ")" : "",
                 k->flags & RELOAD ? "; SIGHUP reloads it" : "");
        printf("  %-26s ", left);
        print_wrapped(stdout, help, 29, 29, "");
    }
}

static void srv_config_print_example(FILE *f) {
    fprintf(f,
            "# dejad.conf: every dejad setting, at its default.\n"
            "#\n"
            "# One 'key value' per line; '#' starts a comment. Each key is also a\n"
            "# command-line option (--key value), and options override this file.\n"
            "# Keys marked 'SIGHUP reloads it' take effect on `systemctl reload dejad`\n"
            "# (or kill -HUP); the others need a restart.\n"
            "#\n"
            "# Generated by `dejad --example-config`; tests/test-ops-config.py checks\n"
            "# that deploy/dejad.conf matches it.\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        if (k->type == K_ACTION || (k->flags & TESTING)) continue;
        char help[512];
        snprintf(help, sizeof help, "%s%s", k->help,
                 k->flags & RELOAD ? "; SIGHUP reloads it" : "");
        fprintf(f, "\n# ");
        print_wrapped(f, help, 2, 2, "# ");
        fprintf(f, "#%s%s%s\n", k->name, k->def ? " " : "", k->def ? k->def : "");
    }
}

/* ---- parsing ------------------------------------------------------------------ */

static int apply_defaults(srv_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char err[256];
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].def && keys[i].type != K_ACTION &&
            set_value(cfg, &keys[i], keys[i].def, err, sizeof err) != 0) {
            fprintf(stderr, "dejad: bad built-in default: %s\n", err);
            return -1;
        }
    const char *token = getenv("DEJA_AUTH_TOKEN");
    if (token && token[0]) set_str(cfg, find_key("auth-token", 10), token);
    return 0;
}

static int is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

/* Reads the config file into cfg. Returns 0 or -1 (message printed,
 * naming the file, the line and the key). */
static int apply_file(srv_config *cfg, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dejad: cannot read config file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[4096];
    unsigned lineno = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            fprintf(stderr, "dejad: %s:%u: line too long\n", path, lineno);
            rc = -1;
            break;
        }
        while (len && (line[len - 1] == '\n' || is_blank(line[len - 1])))
            line[--len] = 0;
        char *p = line;
        while (is_blank(*p))
            p++;
        if (*p == 0 || *p == '#') continue;
        char *key = p;
        while (*p && !is_blank(*p))
            p++;
        size_t key_len = (size_t)(p - key);
        while (is_blank(*p))
            p++;
        const key_def *k = find_key(key, key_len);
        if (!k || k->type == K_ACTION) {
            fprintf(stderr, "dejad: %s:%u: unknown key '%.*s'\n", path, lineno,
                    (int)key_len, key);
            rc = -1;
            break;
        }
        /* A flag may stand alone, meaning yes. */
        const char *value = *p ? p : (k->type == K_FLAG ? "yes" : p);
        char err[512];
        if (set_value(cfg, k, value, err, sizeof err) != 0) {
            fprintf(stderr, "dejad: %s:%u: %s\n", path, lineno, err);
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}

int srv_config_parse(srv_config *cfg, int argc, char **argv) {
    if (apply_defaults(cfg) != 0) return -1;
    struct option longopts[NKEYS + 1];
    for (size_t i = 0; i < NKEYS; i++) {
        int takes = keys[i].type == K_FLAG ||
                            (keys[i].type == K_ACTION && keys[i].action != A_CONFIG)
                        ? no_argument
                        : required_argument;
        longopts[i] = (struct option){keys[i].name, takes, NULL, (int)i + 256};
    }
    memset(&longopts[NKEYS], 0, sizeof longopts[NKEYS]);

    /* First pass: actions, and the config file, which comes before flags. */
    int action = 0;
    const char *file = NULL;
    opterr = 0;
    optind = 0; /* glibc: start over, even on another argv */
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c < 256 || c >= 256 + (int)NKEYS) {
            fprintf(stderr, "dejad: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            srv_config_free(cfg);
            return -1;
        }
        const key_def *k = &keys[c - 256];
        if (k->action == A_CONFIG)
            file = optarg;
        else if (k->action && !action)
            action = k->action;
    }
    if (optind < argc) {
        fprintf(stderr, "dejad: unexpected argument '%s' (see --help)\n", argv[optind]);
        srv_config_free(cfg);
        return -1;
    }
    if (action == A_HELP || action == A_VERSION || action == A_EXAMPLE) {
        if (action == A_HELP)
            print_help();
        else if (action == A_VERSION)
            printf("dejad %s\n", DEJA_VERSION);
        else
            srv_config_print_example(stdout);
        srv_config_free(cfg);
        return 1;
    }
    if (file && apply_file(cfg, file) != 0) {
        srv_config_free(cfg);
        return -1;
    }
    cfg->config_file = file ? strdup(file) : NULL;

    /* Second pass: the flags, over the file. */
    optind = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const key_def *k = &keys[c - 256];
        if (k->type == K_ACTION) continue;
        char err[512];
        if (set_value(cfg, k, k->type == K_FLAG ? "yes" : optarg, err, sizeof err) != 0) {
            fprintf(stderr, "dejad: --%s\n", err);
            srv_config_free(cfg);
            return -1;
        }
    }
    /* An empty token or address means none. */
    if (cfg->auth_token && !cfg->auth_token[0])
        set_str(cfg, find_key("auth-token", 10), NULL);
    if (cfg->metrics_addr && !cfg->metrics_addr[0])
        set_str(cfg, find_key("metrics-addr", 12), NULL);
    if (action == A_CHECK) {
        printf("dejad: configuration is valid%s%s\n", file ? " (" : "", file ? file : "");
        if (file) printf(")\n");
        srv_config_free(cfg);
        return 1;
    }
    return 0;
}

void srv_config_free(srv_config *cfg) {
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == K_STR) set_str(cfg, &keys[i], NULL);
    free(cfg->config_file);
    cfg->config_file = NULL;
}

void srv_config_diff(const srv_config *a, const srv_config *b,
                     void (*fn)(void *ctx, const char *key, const char *value,
                                int reloadable),
                     void *ctx) {
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        if (k->type == K_ACTION) continue;
        char va[256], vb[256];
        format_value(a, k, va, sizeof va);
        format_value(b, k, vb, sizeof vb);
        if (strcmp(va, vb) != 0) fn(ctx, k->name, vb, (k->flags & RELOAD) != 0);
    }
}

void srv_config_each(const srv_config *cfg,
                     void (*fn)(void *ctx, const char *key, const char *value),
                     void *ctx) {
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        if (k->type == K_ACTION || strcmp(k->name, "auth-token") == 0) continue;
        char v[256];
        format_value(cfg, k, v, sizeof v);
        fn(ctx, k->name, v);
    }
}
