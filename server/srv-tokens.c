/* srv-tokens.c: tenant tokens -- the tokens file parser and the table that
 * AUTH matches presented tokens against (format in srv-tokens.h).
 *
 * Matching visits every token and compares every byte, so the time taken
 * says nothing about which token or which byte differed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "deja-errors.h"
#include "srv-tokens.h"

typedef struct token_rec {
    uint8_t bytes[SRV_TOKEN_MAX_LEN];
    uint8_t len;
    srv_scope scope;
} token_rec;

struct srv_tokens {
    token_rec *recs;
    size_t n, cap;
};

#define TOKENS_FILE_MAX (4u << 20)

int srv_tokens_create(srv_tokens **out) {
    *out = calloc(1, sizeof **out);
    return *out ? 0 : DEJA_ERR_NOMEM;
}

void srv_tokens_destroy(srv_tokens *t) {
    if (!t) return;
    /* Tokens are secrets: do not leave them in freed memory. */
    if (t->recs) memset(t->recs, 0, t->cap * sizeof *t->recs);
    free(t->recs);
    free(t);
}

size_t srv_tokens_count(const srv_tokens *t) {
    return t ? t->n : 0;
}

/* Compares a presented token with one record without an early exit. */
static unsigned token_diff(const token_rec *r, const uint8_t *token, size_t len) {
    unsigned diff = (unsigned)(len != r->len);
    size_t n = len < SRV_TOKEN_MAX_LEN ? len : SRV_TOKEN_MAX_LEN;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned)(token[i] ^ r->bytes[i]);
    return diff;
}

int srv_tokens_match(const srv_tokens *t, const uint8_t *token, size_t len,
                     srv_scope *scope) {
    if (!t || len == 0 || len > SRV_TOKEN_MAX_LEN) return 0;
    size_t found = SIZE_MAX;
    for (size_t i = 0; i < t->n; i++) {
        unsigned diff = token_diff(&t->recs[i], token, len);
        /* Branch-free select of the first match. */
        size_t is_match = (size_t)0 - (size_t)(diff == 0 && found == SIZE_MAX);
        found = (found & ~is_match) | (i & is_match);
    }
    if (found == SIZE_MAX) return 0;
    *scope = t->recs[found].scope;
    return 1;
}

int srv_tokens_find_id(const srv_tokens *t, uint64_t token_id, srv_scope *scope) {
    for (size_t i = 0; t && i < t->n; i++) {
        if (t->recs[i].scope.token_id == token_id) {
            *scope = t->recs[i].scope;
            return 1;
        }
    }
    return 0;
}

int srv_scope_allows_ns(const srv_scope *scope, const uint8_t *ns, size_t ns_len) {
    return ns_len >= scope->prefix_len &&
           memcmp(ns, scope->prefix, scope->prefix_len) == 0;
}

int srv_tokens_add(srv_tokens *t, const uint8_t *token, size_t len,
                   const srv_scope *scope) {
    if (len == 0 || len > SRV_TOKEN_MAX_LEN || t->n >= SRV_TOKENS_MAX)
        return DEJA_ERR_INVALID_ARG;
    for (size_t i = 0; i < t->n; i++)
        if (token_diff(&t->recs[i], token, len) == 0) return DEJA_ERR_INVALID_ARG;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        token_rec *grown = calloc(cap, sizeof *grown);
        if (!grown) return DEJA_ERR_NOMEM;
        if (t->recs) {
            memcpy(grown, t->recs, t->n * sizeof *grown);
            memset(t->recs, 0, t->cap * sizeof *t->recs);
            free(t->recs);
        }
        t->recs = grown;
        t->cap = cap;
    }
    token_rec *r = &t->recs[t->n++];
    memcpy(r->bytes, token, len);
    r->len = (uint8_t)len;
    r->scope = *scope;
    r->scope.token_id = XXH3_64bits(token, len);
    return 0;
}

static int line_error(char *err, size_t errlen, unsigned line, const char *fmt, ...) {
    if (err && errlen) {
        int n = snprintf(err, errlen, "line %u: ", line);
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return DEJA_ERR_INVALID_ARG;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

/* Splits the next white-space separated word off [*p, end). */
static size_t next_word(const char **p, const char *end, const char **word) {
    while (*p < end && is_space(**p))
        (*p)++;
    *word = *p;
    while (*p < end && !is_space(**p))
        (*p)++;
    return (size_t)(*p - *word);
}

static int parse_rights(const char *s, size_t len, unsigned *rights) {
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {
        {"read", SRV_RIGHT_READ}, {"write", SRV_RIGHT_WRITE}, {"admin", SRV_RIGHT_ADMIN}};
    *rights = 0;
    const char *end = s + len;
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        size_t n = (size_t)((comma ? comma : end) - s);
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == n && memcmp(names[i].name, s, n) == 0)
                bit = names[i].bit;
        if (!bit) return -1;
        *rights |= bit;
        s += n + (comma ? 1 : 0);
        if (comma && s == end) return -1; /* trailing comma */
    }
    return *rights ? 0 : -1;
}

/* Parses one non-blank, non-comment line into t. */
static int parse_line(srv_tokens *t, const char *p, const char *end, unsigned lineno,
                      char *err, size_t errlen) {
    const char *tok, *prefix, *rights_s, *extra;
    size_t tok_len = next_word(&p, end, &tok);
    size_t prefix_len = next_word(&p, end, &prefix);
    size_t rights_len = next_word(&p, end, &rights_s);
    size_t extra_len = next_word(&p, end, &extra);
    if (!prefix_len || !rights_len || extra_len)
        return line_error(err, errlen, lineno, "want 'TOKEN PREFIX RIGHTS'");
    if (tok_len > SRV_TOKEN_MAX_LEN)
        return line_error(err, errlen, lineno, "token longer than %u bytes",
                          SRV_TOKEN_MAX_LEN);
    for (size_t i = 0; i < tok_len; i++)
        if ((unsigned char)tok[i] < 0x21 || (unsigned char)tok[i] > 0x7e)
            return line_error(err, errlen, lineno, "token has a non-printable byte");
    srv_scope scope;
    memset(&scope, 0, sizeof scope);
    if (!(prefix_len == 1 && prefix[0] == '*')) {
        if (prefix_len > 64)
            return line_error(err, errlen, lineno, "prefix longer than 64 bytes");
        for (size_t i = 0; i < prefix_len; i++)
            if ((unsigned char)prefix[i] < 0x21 || (unsigned char)prefix[i] > 0x7e)
                return line_error(err, errlen, lineno, "prefix has a non-printable byte");
        memcpy(scope.prefix, prefix, prefix_len);
        scope.prefix_len = (uint8_t)prefix_len;
    }
    if (parse_rights(rights_s, rights_len, &scope.rights) != 0)
        return line_error(err, errlen, lineno,
                          "rights are a comma-separated list of read, write, admin");
    int rc = srv_tokens_add(t, (const uint8_t *)tok, tok_len, &scope);
    if (rc == DEJA_ERR_INVALID_ARG)
        return line_error(err, errlen, lineno,
                          t->n >= SRV_TOKENS_MAX ? "more than %u tokens"
                                                 : "duplicate token",
                          SRV_TOKENS_MAX);
    return rc;
}

int srv_tokens_parse(const char *text, size_t len, srv_tokens **out, char *err,
                     size_t errlen) {
    srv_tokens *t;
    int rc = srv_tokens_create(&t);
    if (rc) return rc;
    const char *p = text, *end = text + len;
    unsigned lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        lineno++;
        const char *q = p;
        while (q < line_end && is_space(*q))
            q++;
        if (q < line_end && *q != '#') {
            if (memchr(q, 0, (size_t)(line_end - q))) {
                rc = line_error(err, errlen, lineno, "NUL byte");
            } else {
                rc = parse_line(t, q, line_end, lineno, err, errlen);
            }
            if (rc) {
                srv_tokens_destroy(t);
                return rc;
            }
        }
        p = nl ? nl + 1 : end;
    }
    *out = t;
    return 0;
}

int srv_tokens_load(const char *path, srv_tokens **out, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return DEJA_ERR_IO;
    }
    char *buf = malloc(TOKENS_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return DEJA_ERR_NOMEM;
    }
    size_t n = fread(buf, 1, TOKENS_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    int rc;
    if (bad) {
        snprintf(err, errlen, "cannot read %s", path);
        rc = DEJA_ERR_IO;
    } else if (n > TOKENS_FILE_MAX) {
        snprintf(err, errlen, "%s is larger than %u bytes", path, TOKENS_FILE_MAX);
        rc = DEJA_ERR_INVALID_ARG;
    } else {
        char msg[256] = "";
        rc = srv_tokens_parse(buf, n, out, msg, sizeof msg);
        if (rc) snprintf(err, errlen, "%s: %s", path, msg);
    }
    memset(buf, 0, n < TOKENS_FILE_MAX ? n : TOKENS_FILE_MAX);
    free(buf);
    return rc;
}
