/* srv-tokens.h: tenant tokens -- the tokens file parser and the token
 * table that AUTH checks against.
 *
 * A tokens file has one token per line:
 *
 *     TOKEN  PREFIX  RIGHTS
 *
 * TOKEN is 1..255 bytes of printable ASCII without white space; PREFIX is
 * the namespace prefix the token may touch (`*` for every namespace, or
 * 1..64 namespace-name bytes, for example `teamA/`); RIGHTS is a
 * comma-separated list of `read` (LOOKUP, NS_INFO and STATS of its own
 * namespaces), `write` (STORE, DELETE) and `admin` (FLUSH, NS_CREATE,
 * NS_DROP, and server-wide STATS when the prefix is `*`). `#` starts a
 * comment; blank lines are ignored. A table is immutable once built, so
 * any thread may read it; the server swaps whole tables on reload. */
#ifndef DEJA_SRV_TOKENS_H
#define DEJA_SRV_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#define SRV_RIGHT_READ 0x1u
#define SRV_RIGHT_WRITE 0x2u
#define SRV_RIGHT_ADMIN 0x4u
#define SRV_RIGHTS_ALL (SRV_RIGHT_READ | SRV_RIGHT_WRITE | SRV_RIGHT_ADMIN)

#define SRV_TOKEN_MAX_LEN 255u
#define SRV_TOKENS_MAX 4096u

/* What an authenticated connection may do. prefix_len 0 = every
 * namespace. */
typedef struct srv_scope {
    char prefix[65];
    uint8_t prefix_len;
    unsigned rights;   /* SRV_RIGHT_* */
    uint64_t token_id; /* a hash of the token: finds it again after reload */
} srv_scope;

typedef struct srv_tokens srv_tokens;

/* Parses a tokens file held in memory (text need not be NUL-terminated).
 * Returns 0 and a new table in *out, DEJA_ERR_INVALID_ARG with a message
 * naming the line in err (a bad line, a duplicate token, more than
 * SRV_TOKENS_MAX tokens), or DEJA_ERR_NOMEM. Any thread. */
int srv_tokens_parse(const char *text, size_t len, srv_tokens **out, char *err,
                     size_t errlen);

/* Reads and parses the file at path (at most 4 MiB). Errors as
 * srv_tokens_parse, plus DEJA_ERR_IO when it cannot be read. */
int srv_tokens_load(const char *path, srv_tokens **out, char *err, size_t errlen);

/* Adds one token (for --auth-token) to a table. Returns 0,
 * DEJA_ERR_INVALID_ARG (bad length, duplicate, table full) or
 * DEJA_ERR_NOMEM. Only before the table is shared. */
int srv_tokens_add(srv_tokens *t, const uint8_t *token, size_t len,
                   const srv_scope *scope);

/* Creates an empty table. Returns 0 or DEJA_ERR_NOMEM. */
int srv_tokens_create(srv_tokens **out);

/* Looks a presented token up. Compares against every token in time that
 * depends only on the table's size and the presented length, never on
 * where a difference is. Returns 1 and fills *scope when it matches, 0
 * otherwise. */
int srv_tokens_match(const srv_tokens *t, const uint8_t *token, size_t len,
                     srv_scope *scope);

/* Finds the token with this token_id (after a reload). Returns 1 and fills
 * *scope, or 0 when the token is gone. */
int srv_tokens_find_id(const srv_tokens *t, uint64_t token_id, srv_scope *scope);

size_t srv_tokens_count(const srv_tokens *t);

void srv_tokens_destroy(srv_tokens *t);

/* 1 when the scope allows the namespace name (its prefix matches). */
int srv_scope_allows_ns(const srv_scope *scope, const uint8_t *ns, size_t ns_len);

#endif
