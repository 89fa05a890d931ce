/* deja-cli.h: what deja-cli's files share (not installed): reading vectors
 * and texts from files, and printing results as text or JSON (with common/deja-json.h).
 */
#ifndef DEJA_CLI_H
#define DEJA_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "deja.h"

/* Exit statuses, documented in --help and docs/CLIENT.md. */
enum cli_exit {
    CLI_OK = 0,           /* success; lookup: a hit */
    CLI_MISS = 1,         /* lookup: a miss */
    CLI_USAGE = 2,        /* bad command line or unreadable input file */
    CLI_SERVER_ERROR = 3, /* the server answered with an error */
    CLI_CONN_ERROR = 4,   /* cannot connect, timeout, connection lost */
    CLI_UNSUPPORTED = 5,  /* the server lacks the operation */
};

/* Reads vector number `row` (0 = the first) from path: an .fvecs file, an
 * .npy file (float32 or float64, 1-D or 2-D, C order), or else text with
 * one vector per line (numbers separated by spaces or commas, optional
 * [ ], lines starting with # skipped). "-" reads text from stdin. On
 * success *vec is malloc()ed (the caller frees it). Returns 0 or -1 with
 * the reason in err. */
int cli_read_vector(const char *path, long row, float **vec, uint32_t *dim, char *err,
                    size_t errlen);

/* Reads a whole file ("-" = stdin) into a malloc()ed, NUL-terminated
 * buffer. Returns 0 or -1 with the reason in err. */
int cli_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen);

struct json_writer;

/* Starts a JSON answer on f: `{"ok":true` (or false), left open for the
 * rest of its members. */
void cli_json_begin(struct json_writer *w, FILE *f, int ok);

/* The DEJA_ERR_* name of a code without the prefix ("DIM_MISMATCH"). */
const char *cli_error_name(int code);

/* Printers for each kind of answer, in text or JSON. */
void cli_print_stats(FILE *f, const deja_stats *s, const char *ns, int json);
/* show_outcome: a line with the outcome (and lease) before the hits, and
 * the shadow hits, as deja_lookup_ex reports them. */
void cli_print_lookup(FILE *f, const deja_result *r, int json, int show_outcome);
void cli_print_policy(FILE *f, const deja_ns_policy *p, const char *ns, int json);
void cli_print_ns_list(FILE *f, const deja_ns_list *l, int json);
void cli_print_ns_info(FILE *f, const deja_ns_info *info, const char *ns, int json);

/* The live view (deja-cli-stat.c): every interval_ms, one line of rates
 * and totals of the server or of namespace ns (NULL), count lines (0 =
 * until interrupted). Returns 0 or the error of a failed STATS. */
int cli_stat(deja_client *c, const char *ns, long interval_ms, long count, int json);

#endif
