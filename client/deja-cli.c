/* deja-cli.c: the command-line client for dejad, in the manner of
 * redis-cli: one command per run, readable text or --json, and exit
 * statuses a script can branch on (see usage_exit_codes below).
 *
 * The commands are a table (name, arguments, allowed options, handler,
 * help); one generic step parses options, checks them against the
 * command's list and its argument count, connects, and then runs the
 * handler, so handlers only do their own work. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deja-cli.h"
#include "deja-json.h"
#include "deja.h"

#define DEFAULT_URL "deja://127.0.0.1:7447"
#define DEFAULT_THRESHOLD 0.85
#define MAX_POSITIONAL 4

/* ---- options ----------------------------------------------------------------- */

enum {
    OPT_VEC = 1u << 0,
    OPT_ROW = 1u << 1,
    OPT_K = 1u << 2,
    OPT_THRESHOLD = 1u << 3,
    OPT_WITH_PROMPT = 1u << 4,
    OPT_RESPONSE = 1u << 5,
    OPT_RESPONSE_FILE = 1u << 6,
    OPT_PROMPT = 1u << 7,
    OPT_TTL = 1u << 8,
    OPT_COMPLETION = 1u << 9,
    OPT_COST = 1u << 10,      /* --input-tokens, --output-tokens, --cost */
    OPT_NS_CONFIG = 1u << 11, /* the namespace configuration of ns create */
    OPT_STAT = 1u << 12,      /* --ns, --interval, --count of stat */
    OPT_LOOKUP_EX = 1u << 13, /* --lease, --wait, --lease-ms, --shadow-hits, --outcome */
    OPT_POLICY = 1u << 14,    /* --mode, --gray-band of policy */
    OPT_GLOBAL = 1u << 31,
};

typedef struct cli_args {
    const char *url, *token;
    long timeout_ms, connect_ms;
    int json, help, version;
    const char *vec, *response, *response_file, *prompt;
    long row, k, ttl, completion;
    double threshold;
    int with_prompt;
    unsigned long long input_tokens, output_tokens, cost;
    deja_ns_config ns_cfg;
    const char *stat_ns;
    long interval_ms, count;
    int lease, shadow_hits, outcome;
    long wait_ms, lease_ms;
    int mode; /* -1 = not given */
    double gray_band;
    int gray_band_set;
    unsigned given;             /* OPT_* bits seen, to refuse ones the command ignores */
    const char *given_name[32]; /* the option seen for each bit */
    const char *pos[MAX_POSITIONAL];
    int npos;
} cli_args;

typedef struct cli_option {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 = none */
    int has_arg;
    unsigned bit;
} cli_option;

static const cli_option options[] = {
    {"url", 'u', 1, OPT_GLOBAL},
    {"token", 'a', 1, OPT_GLOBAL},
    {"timeout", 't', 1, OPT_GLOBAL},
    {"connect-timeout", 0, 1, OPT_GLOBAL},
    {"json", 0, 0, OPT_GLOBAL},
    {"help", 'h', 0, OPT_GLOBAL},
    {"version", 0, 0, OPT_GLOBAL},
    {"vec", 0, 1, OPT_VEC},
    {"row", 0, 1, OPT_ROW},
    {"k", 'k', 1, OPT_K},
    {"threshold", 0, 1, OPT_THRESHOLD},
    {"with-prompt", 0, 0, OPT_WITH_PROMPT},
    {"response", 0, 1, OPT_RESPONSE},
    {"response-file", 0, 1, OPT_RESPONSE_FILE},
    {"prompt", 0, 1, OPT_PROMPT},
    {"ttl", 0, 1, OPT_TTL},
    {"completion", 0, 1, OPT_COMPLETION},
    {"input-tokens", 0, 1, OPT_COST},
    {"output-tokens", 0, 1, OPT_COST},
    {"cost", 0, 1, OPT_COST},
    {"dim", 0, 1, OPT_NS_CONFIG},
    {"index", 0, 1, OPT_NS_CONFIG},
    {"quant", 0, 1, OPT_NS_CONFIG},
    {"hnsw-m", 0, 1, OPT_NS_CONFIG},
    {"ef-construction", 0, 1, OPT_NS_CONFIG},
    {"ef-search", 0, 1, OPT_NS_CONFIG},
    {"ttl-mode", 0, 1, OPT_NS_CONFIG},
    {"min-threshold", 0, 1, OPT_NS_CONFIG},
    {"dedup", 0, 1, OPT_NS_CONFIG},
    {"default-ttl", 0, 1, OPT_NS_CONFIG},
    {"max-age", 0, 1, OPT_NS_CONFIG},
    {"max-bytes", 0, 1, OPT_NS_CONFIG},
    {"max-entries", 0, 1, OPT_NS_CONFIG},
    {"allow-non-ok", 0, 0, OPT_NS_CONFIG},
    {"no-dedup", 0, 0, OPT_NS_CONFIG},
    {"faiss-factory", 0, 1, OPT_NS_CONFIG},
    {"ns", 0, 1, OPT_STAT},
    {"interval", 0, 1, OPT_STAT},
    {"count", 0, 1, OPT_STAT},
    {"lease", 0, 0, OPT_LOOKUP_EX},
    {"wait", 0, 1, OPT_LOOKUP_EX},
    {"lease-ms", 0, 1, OPT_LOOKUP_EX},
    {"shadow-hits", 0, 0, OPT_LOOKUP_EX},
    {"outcome", 0, 0, OPT_LOOKUP_EX},
    {"mode", 0, 1, OPT_POLICY},
    {"gray-band", 0, 1, OPT_POLICY},
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("deja-cli: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (deja-cli --help)\n", stderr);
    va_end(ap);
    return CLI_USAGE;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, unsigned long long *out) {
    char *end;
    errno = 0;
    if (*s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno) return -1;
    *out = v;
    return 0;
}

/* Index of v in names[0..n), or -1. */
static int pick(const char *v, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(v, names[i]) == 0) return i;
    return -1;
}

static int parse_float(const char *s, double lo, double hi, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = (float)v;
    return 0;
}

/* The options of `ns create`, one field of deja_ns_config each. */
static int set_ns_option(deja_ns_config *cfg, const char *n, const char *v) {
    static const char *const kinds[] = {"default", "flat", "hnsw", "faiss"};
    static const char *const quants[] = {"f32", "int8"};
    static const char *const modes[] = {"absolute", "sliding"};
    long l;
    unsigned long long u;
    int i;
    if (strcmp(n, "dim") == 0) {
        if (parse_long(v, 1, 4096, &l)) return usage_error("--dim must be in 1..4096");
        cfg->dim = (uint32_t)l;
    } else if (strcmp(n, "index") == 0) {
        if ((i = pick(v, kinds, 4)) < 0)
            return usage_error("--index is default, flat, hnsw or faiss");
        cfg->index_kind = (uint8_t)i;
    } else if (strcmp(n, "quant") == 0) {
        if ((i = pick(v, quants, 2)) < 0) return usage_error("--quant is f32 or int8");
        cfg->quant = (uint8_t)i;
    } else if (strcmp(n, "ttl-mode") == 0) {
        if ((i = pick(v, modes, 2)) < 0)
            return usage_error("--ttl-mode is absolute or sliding");
        cfg->ttl_mode = (uint8_t)i;
    } else if (strcmp(n, "hnsw-m") == 0 || strcmp(n, "ef-construction") == 0 ||
               strcmp(n, "ef-search") == 0) {
        if (parse_long(v, 0, 65535, &l))
            return usage_error("--%s must be in 0..65535", n);
        uint16_t *field = n[0] == 'h'   ? &cfg->hnsw_m
                          : n[3] == 'c' ? &cfg->hnsw_ef_construction
                                        : &cfg->hnsw_ef_search;
        *field = (uint16_t)l;
    } else if (strcmp(n, "min-threshold") == 0) {
        if (parse_float(v, -1, 1, &cfg->min_threshold))
            return usage_error("--min-threshold must be in [-1, 1]");
    } else if (strcmp(n, "dedup") == 0) {
        if (parse_float(v, 0, 1, &cfg->dedup))
            return usage_error("--dedup must be in [0, 1]");
    } else if (strcmp(n, "default-ttl") == 0 || strcmp(n, "max-age") == 0) {
        if (parse_long(v, 0, 0xffffffffL, &l)) return usage_error("bad --%s", n);
        *(n[0] == 'd' ? &cfg->default_ttl_s : &cfg->max_age_s) = (uint32_t)l;
    } else if (strcmp(n, "max-bytes") == 0 || strcmp(n, "max-entries") == 0) {
        if (parse_u64(v, &u)) return usage_error("bad --%s", n);
        *(n[4] == 'b' ? &cfg->max_bytes : &cfg->max_entries) = u;
    } else if (strcmp(n, "allow-non-ok") == 0) {
        cfg->flags |= DEJA_NS_ALLOW_NON_OK;
    } else if (strcmp(n, "no-dedup") == 0) {
        cfg->flags |= DEJA_NS_NO_DEDUP;
    } else if (strcmp(n, "faiss-factory") == 0) {
        cfg->faiss_factory = v;
    }
    return 0;
}

static int set_option(cli_args *a, const cli_option *o, const char *v) {
    const char *n = o->name;
    if (o->bit == OPT_NS_CONFIG) {
        int rc = set_ns_option(&a->ns_cfg, n, v);
        if (rc != 0) return rc;
    } else if (strcmp(n, "url") == 0)
        a->url = v;
    else if (strcmp(n, "token") == 0)
        a->token = v;
    else if (strcmp(n, "timeout") == 0) {
        if (parse_long(v, 1, 3600000, &a->timeout_ms))
            return usage_error("bad --timeout");
    } else if (strcmp(n, "connect-timeout") == 0) {
        if (parse_long(v, 1, 3600000, &a->connect_ms))
            return usage_error("bad --connect-timeout");
    } else if (strcmp(n, "json") == 0)
        a->json = 1;
    else if (strcmp(n, "help") == 0)
        a->help = 1;
    else if (strcmp(n, "version") == 0)
        a->version = 1;
    else if (strcmp(n, "vec") == 0)
        a->vec = v;
    else if (strcmp(n, "row") == 0) {
        if (parse_long(v, 0, 1L << 40, &a->row)) return usage_error("bad --row");
    } else if (strcmp(n, "k") == 0) {
        if (parse_long(v, 1, 256, &a->k)) return usage_error("-k must be in 1..256");
    } else if (strcmp(n, "threshold") == 0) {
        char *end;
        a->threshold = strtod(v, &end);
        if (end == v || *end || !(a->threshold >= -1 && a->threshold <= 1))
            return usage_error("--threshold must be in [-1, 1]");
    } else if (strcmp(n, "with-prompt") == 0)
        a->with_prompt = 1;
    else if (strcmp(n, "response") == 0)
        a->response = v;
    else if (strcmp(n, "response-file") == 0)
        a->response_file = v;
    else if (strcmp(n, "prompt") == 0)
        a->prompt = v;
    else if (strcmp(n, "ttl") == 0) {
        if (parse_long(v, 0, 0xffffffffL, &a->ttl)) return usage_error("bad --ttl");
    } else if (strcmp(n, "completion") == 0) {
        static const char *const names[] = {"ok", "error", "truncated", "filtered"};
        a->completion = -1;
        for (long i = 0; i < 4; i++)
            if (strcmp(v, names[i]) == 0) a->completion = i;
        if (a->completion < 0)
            return usage_error("--completion is ok, error, truncated or filtered");
    } else if (strcmp(n, "input-tokens") == 0) {
        if (parse_u64(v, &a->input_tokens) || a->input_tokens > 0xffffffffu)
            return usage_error("bad --input-tokens");
    } else if (strcmp(n, "output-tokens") == 0) {
        if (parse_u64(v, &a->output_tokens) || a->output_tokens > 0xffffffffu)
            return usage_error("bad --output-tokens");
    } else if (strcmp(n, "cost") == 0) {
        if (parse_u64(v, &a->cost)) return usage_error("bad --cost");
    } else if (strcmp(n, "ns") == 0) {
        a->stat_ns = v;
    } else if (strcmp(n, "lease") == 0) {
        a->lease = 1;
    } else if (strcmp(n, "shadow-hits") == 0) {
        a->shadow_hits = 1;
    } else if (strcmp(n, "outcome") == 0) {
        a->outcome = 1;
    } else if (strcmp(n, "wait") == 0) {
        if (parse_long(v, 0, 0xffffffffL, &a->wait_ms)) return usage_error("bad --wait");
    } else if (strcmp(n, "lease-ms") == 0) {
        if (parse_long(v, 0, 0xffffffffL, &a->lease_ms))
            return usage_error("bad --lease-ms");
    } else if (strcmp(n, "mode") == 0) {
        static const char *const modes[] = {"serve", "shadow"};
        if ((a->mode = pick(v, modes, 2)) < 0)
            return usage_error("--mode is serve or shadow");
    } else if (strcmp(n, "gray-band") == 0) {
        char *end;
        a->gray_band = strtod(v, &end);
        if (end == v || *end || !(a->gray_band >= 0.0 && a->gray_band <= 1.0))
            return usage_error("--gray-band must be in [0, 1] (0 = none)");
        a->gray_band_set = 1;
    } else if (strcmp(n, "interval") == 0) {
        unsigned long long ms;
        if (parse_u64(v, &ms) || ms < 10 || ms > 3600000)
            return usage_error("bad --interval");
        a->interval_ms = (long)ms;
    } else if (strcmp(n, "count") == 0) {
        unsigned long long count;
        if (parse_u64(v, &count) || count > 1000000000) return usage_error("bad --count");
        a->count = (long)count;
    }
    a->given |= o->bit;
    for (int b = 0; b < 32; b++)
        if (o->bit == 1u << b) a->given_name[b] = o->name;
    return 0;
}

/* getopt_long's tables, built from options[]: a long option's val is
 * LONG_VAL_BASE + its index there, and a short option maps to the same
 * entry. */
#define N_OPTIONS (sizeof options / sizeof options[0])
#define LONG_VAL_BASE 256

/* Options may come before or after the command; "--" ends them.
 *
 * getopt_long runs in return-in-order mode ('-' first in the option
 * string) so that positional arguments arrive in order, as code 1, among
 * the options. A negative number is a positional argument (it is never a
 * valid one, but its command says why), not a cluster of unknown short
 * options: so the digits are declared as short options with an optional
 * value, and "-12" comes back as '1' with the value "2". The leading ':'
 * makes a missing value a ':' rather than a '?', and opterr = 0 keeps
 * getopt's own messages out, so that every usage error reads the same. */
static int parse_args(int argc, char **argv, cli_args *a) {
    static struct option longopts[N_OPTIONS + 1];
    char optstring[3 + 10 * 3 + 2 * N_OPTIONS + 1] = "-:";
    size_t len = 2;
    for (char d = '0'; d <= '9'; d++) {
        optstring[len++] = d;
        optstring[len++] = ':';
        optstring[len++] = ':';
    }
    for (size_t j = 0; j < N_OPTIONS; j++) {
        longopts[j] = (struct option){
            options[j].name, options[j].has_arg ? required_argument : no_argument, NULL,
            LONG_VAL_BASE + (int)j};
        if (options[j].short_name) {
            optstring[len++] = options[j].short_name;
            if (options[j].has_arg) optstring[len++] = ':';
        }
    }
    optstring[len] = 0;

    char negative[MAX_POSITIONAL][32];
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        const char *positional = NULL;
        if (ch == 1) {
            positional = optarg;
        } else if (ch >= '0' && ch <= '9') {
            if (a->npos < MAX_POSITIONAL) {
                snprintf(negative[a->npos], sizeof negative[0], "-%c%s", ch,
                         optarg ? optarg : "");
                positional = negative[a->npos];
            } else {
                positional = "";
            }
        } else if (ch == ':') {
            return usage_error("%s needs a value", argv[optind - 1]);
        } else if (ch == '?') {
            if (optopt >= LONG_VAL_BASE)
                return usage_error("--%s takes no value",
                                   options[optopt - LONG_VAL_BASE].name);
            if (optopt) return usage_error("unknown option -%c", optopt);
            return usage_error("unknown option %s", argv[optind - 1]);
        }
        if (positional) {
            if (a->npos == MAX_POSITIONAL) return usage_error("too many arguments");
            a->pos[a->npos++] = positional;
            continue;
        }
        const cli_option *o = NULL;
        if (ch >= LONG_VAL_BASE) {
            o = &options[ch - LONG_VAL_BASE];
        } else {
            for (size_t j = 0; j < N_OPTIONS && !o; j++)
                if (options[j].short_name == ch) o = &options[j];
        }
        int rc = set_option(a, o, optarg);
        if (rc != 0) return rc;
    }
    for (; optind < argc; optind++) {
        if (a->npos == MAX_POSITIONAL) return usage_error("too many arguments");
        a->pos[a->npos++] = argv[optind];
    }
    return 0;
}

/* ---- errors and helpers --------------------------------------------------------- */

static int exit_status(int rc) {
    if (rc == 0) return CLI_OK;
    if (rc == DEJA_ERR_INVALID_ARG) return CLI_USAGE;
    if (rc == DEJA_ERR_UNKNOWN_OP) return CLI_UNSUPPORTED;
    if (rc >= DEJA_ERR_WIRE_MIN) return CLI_SERVER_ERROR;
    return CLI_CONN_ERROR;
}

/* Reports a failed call: a line on stderr, and with --json an object on
 * stdout as well, so a script reading stdout always gets one document. */
static int report(const cli_args *a, const char *what, int rc, const char *detail) {
    const char *msg = detail && detail[0] ? detail : deja_strerror(rc);
    if (rc == DEJA_ERR_UNKNOWN_OP)
        msg = "not supported by this server (an older protocol)";
    fprintf(stderr, "deja-cli: %s: %s: %s\n", what, cli_error_name(rc), msg);
    if (a->json) {
        json_writer w;
        cli_json_begin(&w, stdout, 0);
        json_key(&w, "error");
        json_cstring(&w, cli_error_name(rc));
        json_key(&w, "code");
        json_i64(&w, rc);
        json_key(&w, "message");
        json_cstring(&w, msg);
        json_end_object(&w);
        json_end_line(&w);
    }
    return exit_status(rc);
}

/* Reports a success: {"ok":true} with one number named key (if any) in
 * JSON, else text, a printf format for that number. */
static void print_ok(const cli_args *a, const char *key, uint64_t value, const char *text)
    __attribute__((format(printf, 4, 0)));
static void print_ok(const cli_args *a, const char *key, uint64_t value,
                     const char *text) {
    if (!a->json) {
        printf(text, (unsigned long long)value);
        return;
    }
    json_writer w;
    cli_json_begin(&w, stdout, 1);
    if (key) {
        json_key(&w, key);
        json_u64(&w, value);
    }
    json_end_object(&w);
    json_end_line(&w);
}

static int check_namespace(const char *ns) {
    size_t n = strlen(ns);
    if (n == 0 || n > 255) return usage_error("namespace must be 1..255 bytes");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ns[i] < 0x21 || (unsigned char)ns[i] > 0x7E)
            return usage_error("namespace \"%s\": printable ASCII without spaces only",
                               ns);
    return 0;
}

static int read_vector(const cli_args *a, float **vec, uint32_t *dim) {
    if (a->vec == NULL) return usage_error("--vec FILE is required");
    char err[512];
    if (cli_read_vector(a->vec, a->row, vec, dim, err, sizeof err) != 0) {
        fprintf(stderr, "deja-cli: %s\n", err);
        return CLI_USAGE;
    }
    return 0;
}

/* ---- commands -------------------------------------------------------------------- */

static int cmd_ping(deja_client *c, const cli_args *a) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = deja_ping(c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc != 0) return report(a, "ping", rc, deja_last_error(c));
    double ms =
        (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (a->json) {
        json_writer w;
        cli_json_begin(&w, stdout, 1);
        json_key(&w, "server");
        json_cstring(&w, deja_server_name(c));
        json_key(&w, "rtt_ms");
        json_number(&w, "%.3f", ms);
        json_end_object(&w);
        json_end_line(&w);
    } else {
        printf("PONG %s (%.3f ms)\n", deja_server_name(c), ms);
    }
    return CLI_OK;
}

static int stats_of(deja_client *c, const cli_args *a, const char *what, const char *ns) {
    deja_stats *s = NULL;
    int rc = deja_stats_get(c, ns, &s);
    if (rc != 0) return report(a, what, rc, deja_last_error(c));
    cli_print_stats(stdout, s, ns, a->json);
    deja_stats_free(s);
    return CLI_OK;
}

static int cmd_stat(deja_client *c, const cli_args *a) {
    if (a->stat_ns) {
        int rc = check_namespace(a->stat_ns);
        if (rc != 0) return rc;
    }
    int rc = cli_stat(c, a->stat_ns, a->interval_ms ? a->interval_ms : 1000, a->count,
                      a->json);
    return rc ? report(a, "stat", rc, deja_last_error(c)) : CLI_OK;
}

static int cmd_info(deja_client *c, const cli_args *a) {
    return stats_of(c, a, "info", NULL);
}

static int cmd_stats(deja_client *c, const cli_args *a) {
    if (a->npos == 1) {
        int rc = check_namespace(a->pos[0]);
        if (rc != 0) return rc;
    }
    return stats_of(c, a, "stats", a->npos == 1 ? a->pos[0] : NULL);
}

/* Checks an ns command line before connecting: the subcommand, its NAME,
 * and configuration options only with create (where --dim is required). */
static int ns_check(const cli_args *a) {
    static const char *const subs[] = {"list", "info", "create", "drop"};
    const char *sub = a->pos[0];
    int which = pick(sub, subs, 4);
    if (which < 0) return usage_error("ns: unknown subcommand \"%s\"", sub);
    int wants_name = which != 0;
    if (a->npos != 1 + wants_name)
        return usage_error("ns %s takes %s", sub, wants_name ? "a NAME" : "no argument");
    if (wants_name) {
        int rc = check_namespace(a->pos[1]);
        if (rc != 0) return rc;
    }
    if (which == 2 && a->ns_cfg.dim == 0) return usage_error("ns create needs --dim");
    if (which != 2 && (a->given & OPT_NS_CONFIG))
        return usage_error("ns %s does not take --%s", sub,
                           a->given_name[__builtin_ctz(OPT_NS_CONFIG)]);
    return 0;
}

static int cmd_ns(deja_client *c, const cli_args *a) {
    const char *sub = a->pos[0], *name = a->pos[1];
    char what[32];
    snprintf(what, sizeof what, "ns %s", sub);
    int rc;
    if (strcmp(sub, "list") == 0) {
        deja_ns_list *l = NULL;
        if ((rc = deja_ns_list_get(c, &l)) != 0)
            return report(a, what, rc, deja_last_error(c));
        cli_print_ns_list(stdout, l, a->json);
        deja_ns_list_free(l);
    } else if (strcmp(sub, "info") == 0) {
        deja_ns_info *info = NULL;
        if ((rc = deja_ns_info_get(c, name, &info)) != 0)
            return report(a, what, rc, deja_last_error(c));
        cli_print_ns_info(stdout, info, name, a->json);
        deja_ns_info_free(info);
    } else if (strcmp(sub, "create") == 0) {
        if ((rc = deja_ns_create(c, name, &a->ns_cfg)) != 0)
            return report(a, what, rc, deja_last_error(c));
        print_ok(a, NULL, 0, "OK\n");
    } else {
        uint64_t removed = 0;
        if ((rc = deja_ns_drop(c, name, &removed)) != 0)
            return report(a, what, rc, deja_last_error(c));
        print_ok(a, "removed", removed, "dropped, %llu entries removed\n");
    }
    return CLI_OK;
}

static int cmd_delete(deja_client *c, const cli_args *a) {
    unsigned long long id;
    if (parse_u64(a->pos[1], &id)) return usage_error("delete: ID must be a number");
    int rc = deja_delete(c, a->pos[0], id);
    if (rc != 0) return report(a, "delete", rc, deja_last_error(c));
    print_ok(a, NULL, 0, "OK\n");
    return CLI_OK;
}

static int cmd_flush(deja_client *c, const cli_args *a) {
    uint64_t removed = 0;
    int rc = deja_flush(c, a->pos[0], &removed);
    if (rc != 0) return report(a, "flush", rc, deja_last_error(c));
    print_ok(a, "removed", removed, "removed %llu\n");
    return CLI_OK;
}

static int cmd_lookup(deja_client *c, const cli_args *a) {
    float *vec;
    uint32_t dim;
    int rc = read_vector(a, &vec, &dim);
    if (rc != 0) return rc;
    deja_result *r = NULL;
    unsigned flags = a->with_prompt ? DEJA_LOOKUP_WANT_PROMPT : 0;
    int ex = (a->given & OPT_LOOKUP_EX) != 0;
    if (ex) {
        deja_lookup_ex_req req = {
            .ns = a->pos[0],
            .vector = vec,
            .dim = dim,
            .threshold = (float)a->threshold,
            .k = (uint32_t)a->k,
            .flags = flags | (a->lease ? DEJA_LOOKUP_LEASE : 0) |
                     (a->shadow_hits ? DEJA_LOOKUP_WANT_SHADOW : 0),
            .wait_ms = (uint32_t)a->wait_ms,
            .lease_ms = (uint32_t)a->lease_ms,
        };
        rc = deja_lookup_ex(c, &req, &r);
    } else {
        rc = deja_lookup(c, a->pos[0], vec, dim, (float)a->threshold, (uint32_t)a->k,
                         flags, &r);
    }
    free(vec);
    if (rc != 0) return report(a, "lookup", rc, deja_last_error(c));
    cli_print_lookup(stdout, r, a->json, ex);
    int status = r->count ? CLI_OK : CLI_MISS;
    deja_result_free(r);
    return status;
}

static int cmd_store(deja_client *c, const cli_args *a) {
    if ((a->response == NULL) == (a->response_file == NULL))
        return usage_error("store: give exactly one of --response and --response-file");
    char *file_text = NULL;
    size_t len = 0;
    if (a->response_file) {
        char err[512];
        if (cli_read_file(a->response_file, &file_text, &len, err, sizeof err) != 0) {
            fprintf(stderr, "deja-cli: %s\n", err);
            return CLI_USAGE;
        }
    }
    float *vec;
    uint32_t dim;
    int rc = read_vector(a, &vec, &dim);
    if (rc != 0) {
        free(file_text);
        return rc;
    }
    deja_store_req req = {
        .ns = a->pos[0],
        .vector = vec,
        .dim = dim,
        .response = file_text ? file_text : a->response,
        .response_len = file_text ? len : strlen(a->response),
        .prompt = a->prompt,
        .prompt_len = a->prompt ? strlen(a->prompt) : 0,
        .ttl_s = (uint32_t)a->ttl,
        .input_tokens = (uint32_t)a->input_tokens,
        .output_tokens = (uint32_t)a->output_tokens,
        .cost_micro_usd = a->cost,
        .completion = (uint8_t)a->completion,
    };
    uint64_t id = 0;
    rc = deja_store(c, &req, &id);
    free(vec);
    free(file_text);
    if (rc != 0) return report(a, "store", rc, deja_last_error(c));
    print_ok(a, "id", id, "stored as entry %llu\n");
    return CLI_OK;
}

static int cmd_policy(deja_client *c, const cli_args *a) {
    const char *ns = a->pos[0];
    deja_ns_policy pol;
    int rc = deja_ns_policy_get(c, ns, &pol);
    if (rc == 0 && (a->given & OPT_POLICY)) {
        /* Options not given keep the namespace's current values. */
        if (a->mode >= 0) pol.mode = a->mode;
        if (a->gray_band_set) pol.gray_band = (float)a->gray_band;
        rc = deja_ns_policy_set(c, ns, &pol, &pol);
    }
    if (rc != 0) return report(a, "policy", rc, deja_last_error(c));
    cli_print_policy(stdout, &pol, ns, a->json);
    return CLI_OK;
}

/* ---- the command table ------------------------------------------------------------ */

typedef struct cli_command {
    const char *name;
    int min_args, max_args; /* positional arguments after the name */
    unsigned options;       /* OPT_* accepted besides the global ones */
    int ns_arg;             /* index of a namespace argument to check, or -1 */
    int (*run)(deja_client *c, const cli_args *a);
    const char *synopsis;
    const char *help;
} cli_command;

static const cli_command commands[] = {
    {"ping", 0, 0, 0, -1, cmd_ping, "ping",
     "Round trip to the server; prints its name and the time taken.\n"},
    {"info", 0, 0, 0, -1, cmd_info, "info",
     "Server-wide counters (STATS): entries, hits, misses, connections,\n"
     "commits, disk bytes, ...\n"},
    {"stats", 0, 1, 0, -1, cmd_stats, "stats [NS]",
     "Counters of the server, or of namespace NS (STATS).\n"},
    {"stat", 0, 0, OPT_STAT, -1, cmd_stat, "stat [--ns NS] [--interval MS] [--count N]",
     "A live view: every second (--interval), one line with lookups/s, the hit\n"
     "rate (all, exact-prompt and semantic), misses/s, stores/s, entries, memory\n"
     "and the money saved so far, for the server or namespace NS. Runs until\n"
     "interrupted, or for N lines. With --json, one JSON object per line.\n"},
    {"ns", 1, 2, OPT_NS_CONFIG, -1, cmd_ns,
     "ns list | ns info NAME | ns drop NAME | ns create NAME --dim N [config]",
     "Namespaces. `ns info NAME` prints the configuration and counters (exit 3\n"
     "with NOT_FOUND if there is none); `ns drop NAME` removes the namespace\n"
     "and its entries. A namespace is also created by its first store, with\n"
     "the server's defaults. `ns create` takes its configuration as options\n"
     "(0 or absent = the server's default; exit 3 with EXISTS if the namespace\n"
     "exists with another configuration):\n"
     "  --dim N                 vector dimension, 1..4096 (required)\n"
     "  --index KIND            default, flat, hnsw or faiss\n"
     "  --faiss-factory S       index_factory string (with --index faiss)\n"
     "  --quant Q               f32 or int8 (HNSW traversal codes)\n"
     "  --hnsw-m N, --ef-construction N, --ef-search N\n"
     "  --min-threshold COS     floor under every lookup threshold\n"
     "  --dedup COS             a store this similar updates an entry\n"
     "  --no-dedup              never merge near-identical stores\n"
     "  --allow-non-ok          cache answers of any completion\n"
     "  --default-ttl S         TTL of stores that give none\n"
     "  --ttl-mode MODE         absolute, or sliding (a hit extends the TTL)\n"
     "  --max-age S             sliding: longest total life\n"
     "  --max-bytes N, --max-entries N   budgets of the namespace\n"
     "A server without namespace ops (an older protocol) gives exit 5.\n"},
    {"delete", 2, 2, 0, 0, cmd_delete, "delete NS ID",
     "Deletes entry ID of namespace NS (exit 3 with NOT_FOUND if absent).\n"},
    {"flush", 1, 1, 0, 0, cmd_flush, "flush NS", "Deletes every entry of NS.\n"},
    {"lookup", 1, 1,
     OPT_VEC | OPT_ROW | OPT_K | OPT_THRESHOLD | OPT_WITH_PROMPT | OPT_LOOKUP_EX, 0,
     cmd_lookup,
     "lookup NS --vec FILE [--row N] [-k K] [--threshold T] [--with-prompt]\n"
     "          [--outcome] [--lease [--wait MS] [--lease-ms MS]] [--shadow-hits]",
     "Looks up the K (default 1) entries of NS most similar to the vector, with\n"
     "cosine similarity >= T (default 0.85). Exit 0 on a hit, 1 on a miss. A hit\n"
     "in the namespace's gray band is marked (borderline).\n"
     "  --vec FILE      .fvecs, .npy (float32/64, 1-D or 2-D) or text (one vector\n"
     "                  per line, numbers separated by spaces or commas); - = stdin\n"
     "  --row N         which vector of the file (default 0, the first)\n"
     "  --with-prompt   also print the stored prompts\n"
     "  --outcome       print how the server answered: MISS, HIT, LEASE or\n"
     "                  COALESCED (LOOKUP_EX; a version-1 server: MISS or HIT)\n"
     "  --lease         on a miss take a lease (its id is printed; it ends when\n"
     "                  deja-cli exits and its connection closes) or wait up to\n"
     "                  --wait MS (default 0: never) for a similar one; exit 0\n"
     "                  for COALESCED. --lease-ms: the lease's life (default:\n"
     "                  the server's)\n"
     "  --shadow-hits   in a namespace in shadow mode, print the would-be hits\n"},
    {"policy", 1, 1, OPT_POLICY, 0, cmd_policy,
     "policy NS [--mode serve|shadow] [--gray-band B]",
     "Prints how NS serves (NS_POLICY); with options, changes it first (options\n"
     "not given keep their value). --mode shadow: lookups compute and count\n"
     "their hits but answer misses; --gray-band B (0 < B <= 1, 0 = none): hits\n"
     "below B are served marked borderline. A version-1 server gives exit 5.\n"},
    {"store", 1, 1,
     OPT_VEC | OPT_ROW | OPT_RESPONSE | OPT_RESPONSE_FILE | OPT_PROMPT | OPT_TTL |
         OPT_COMPLETION | OPT_COST,
     0, cmd_store,
     "store NS --vec FILE (--response TEXT | --response-file FILE) [--prompt TEXT]\n"
     "          [--ttl S] [--completion ok|error|truncated|filtered]\n"
     "          [--input-tokens N] [--output-tokens N] [--cost MICRO_USD]",
     "Stores a response under the vector; prints the new entry id. The reply\n"
     "comes once the entry is durable. Only --completion ok (the default) is\n"
     "cached: the others exit 3 with REJECTED. --ttl 0 = server default.\n"},
};

static const char usage_head[] =
    "usage: deja-cli [--url URL] [--token T] [--timeout MS] [--json] COMMAND [ARGS]\n"
    "       deja-cli help [COMMAND] | COMMAND --help\n";

static const char usage_options[] =
    "options (anywhere on the line):\n"
    "  -u, --url URL          deja://host:port, unix:///path, host:port or /path\n"
    "                         (default $DEJA_URL, else " DEFAULT_URL ")\n"
    "  -a, --token T          AUTH token (default $DEJA_AUTH_TOKEN)\n"
    "  -t, --timeout MS       per request (default 5000)\n"
    "      --connect-timeout MS  (default 1000)\n"
    "      --json             one JSON object on stdout, also for errors\n"
    "                         "
    "({\"ok\":false,\"error\":NAME,\"code\":N,\"message\":...})\n"
    "      --version          print the version and exit\n";

static const char usage_exit_codes[] =
    "exit status:\n"
    "  0  success (lookup: a hit)\n"
    "  1  lookup: a miss\n"
    "  2  usage error, or an input file that cannot be read\n"
    "  3  the server answered with an error (NOT_FOUND, DIM_MISMATCH, REJECTED,\n"
    "     AUTH_FAILED, ...)\n"
    "  4  connection error: cannot connect, timeout, connection lost\n"
    "  5  not supported by this server\n";

static void print_help(const cli_command *only) {
    if (only) {
        printf("usage: deja-cli [options] %s\n\n%s\n%s\n%s", only->synopsis, only->help,
               usage_options, usage_exit_codes);
        return;
    }
    printf("%s\ncommands:\n", usage_head);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %s\n", commands[i].synopsis);
    printf("\n%s\n%s", usage_options, usage_exit_codes);
}

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

int main(int argc, char **argv) {
    cli_args a;
    memset(&a, 0, sizeof a);
    a.k = 1;
    a.threshold = DEFAULT_THRESHOLD;
    a.mode = -1;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) return rc;
    if (a.version) {
        printf("deja-cli %s\n", DEJA_VERSION);
        return CLI_OK;
    }

    if (a.npos == 0) {
        if (a.help) {
            print_help(NULL);
            return CLI_OK;
        }
        fputs(usage_head, stderr);
        return CLI_USAGE;
    }
    if (strcmp(a.pos[0], "help") == 0) {
        const cli_command *cmd = a.npos > 1 ? find_command(a.pos[1]) : NULL;
        if (a.npos > 1 && cmd == NULL) return usage_error("no command \"%s\"", a.pos[1]);
        print_help(cmd);
        return CLI_OK;
    }
    const cli_command *cmd = find_command(a.pos[0]);
    if (cmd == NULL) return usage_error("unknown command \"%s\"", a.pos[0]);
    if (a.help) {
        print_help(cmd);
        return CLI_OK;
    }
    /* From here on the positional arguments are the command's own. */
    memmove(a.pos, a.pos + 1, (size_t)(a.npos - 1) * sizeof a.pos[0]);
    a.npos--;
    if (a.npos < cmd->min_args || a.npos > cmd->max_args)
        return usage_error("usage: %s", cmd->synopsis);
    unsigned stray = a.given & ~(cmd->options | OPT_GLOBAL);
    for (int b = 0; stray && b < 32; b++)
        if (stray & (1u << b))
            return usage_error("%s does not take --%s", cmd->name, a.given_name[b]);
    if (cmd->ns_arg >= 0 && (rc = check_namespace(a.pos[cmd->ns_arg])) != 0) return rc;
    if (cmd->run == cmd_ns && (rc = ns_check(&a)) != 0) return rc;

    const char *url = a.url ? a.url : getenv("DEJA_URL");
    if (url == NULL || url[0] == 0) url = DEFAULT_URL;
    const char *token = a.token ? a.token : getenv("DEJA_AUTH_TOKEN");
    if (token && token[0] == 0) token = NULL;
    deja_options opts = {
        .connect_timeout_ms = (int)a.connect_ms,
        .request_timeout_ms = (int)a.timeout_ms,
        .auth_token = token,
    };
    deja_client *c = NULL;
    rc = deja_connect(url, &opts, &c);
    if (rc != 0) {
        char what[300];
        snprintf(what, sizeof what, "connect %s", url);
        return report(&a, what, rc, deja_last_error(NULL));
    }
    int status = cmd->run(c, &a);
    deja_close(c);
    return status;
}
