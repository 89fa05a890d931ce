/* fuzz-tokens.c: libFuzzer target for the tokens file parser
 * (server/srv-tokens.c, format in srv-tokens.h).
 *
 * The input is the file's text, copied to a heap block of exactly its
 * size (the parser takes text that need not be NUL-terminated). A file
 * that parses is checked against the format, line by line, independently
 * of the parser: every token line's token must match with the line's
 * prefix and rights, be found again by its id, and its scope must allow
 * namespaces under its prefix. A file that does not parse must say why
 * in a NUL-terminated message naming a line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deja-errors.h"
#include "srv-tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static int blank(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

static size_t word(const char **p, const char *end, const char **w) {
    while (*p < end && blank(**p))
        (*p)++;
    *w = *p;
    while (*p < end && !blank(**p))
        (*p)++;
    return (size_t)(*p - *w);
}

/* Re-reads one line of a file that parsed: 1 if it held a token. */
static int check_line(const srv_tokens *t, const char *p, const char *end) {
    const char *tok, *prefix, *rights;
    size_t tok_len = word(&p, end, &tok);
    if (tok_len == 0 || tok[0] == '#') return 0;
    size_t prefix_len = word(&p, end, &prefix);
    size_t rights_len = word(&p, end, &rights);
    CHECK(prefix_len > 0 && rights_len > 0);
    CHECK(tok_len <= SRV_TOKEN_MAX_LEN);

    srv_scope scope, again;
    CHECK(srv_tokens_match(t, (const uint8_t *)tok, tok_len, &scope) == 1);
    CHECK(scope.rights != 0 && (scope.rights & ~SRV_RIGHTS_ALL) == 0);
    CHECK(srv_tokens_find_id(t, scope.token_id, &again) == 1);
    CHECK(again.rights == scope.rights && again.prefix_len == scope.prefix_len);
    if (prefix_len == 1 && prefix[0] == '*') {
        CHECK(scope.prefix_len == 0);
    } else {
        CHECK(scope.prefix_len == prefix_len && prefix_len <= 64);
        CHECK(memcmp(scope.prefix, prefix, prefix_len) == 0);
        CHECK(srv_scope_allows_ns(&scope, (const uint8_t *)prefix, prefix_len) == 1);
    }
    /* The rights word names exactly the bits granted. */
    unsigned want = 0;
    if (memmem(rights, rights_len, "read", 4)) want |= SRV_RIGHT_READ;
    if (memmem(rights, rights_len, "write", 5)) want |= SRV_RIGHT_WRITE;
    if (memmem(rights, rights_len, "admin", 5)) want |= SRV_RIGHT_ADMIN;
    CHECK(scope.rights == want);
    /* One byte more or less is another token (or none). */
    srv_scope other;
    if (tok_len > 1 && srv_tokens_match(t, (const uint8_t *)tok, tok_len - 1, &other))
        CHECK(other.token_id != scope.token_id);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    CHECK(text != NULL);
    if (size) memcpy(text, data, size);
    char err[256];
    memset(err, 'x', sizeof err);
    srv_tokens *t = NULL;
    int rc = srv_tokens_parse(text, size, &t, err, sizeof err);
    CHECK(rc == 0 || rc == DEJA_ERR_INVALID_ARG || rc == DEJA_ERR_NOMEM);
    if (rc != 0) {
        CHECK(t == NULL);
        CHECK(memchr(err, 0, sizeof err) != NULL);
        CHECK(strncmp(err, "line ", 5) == 0);
    } else {
        CHECK(t != NULL);
        size_t lines = 0;
        const char *p = text, *end = text + size;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *line_end = nl ? nl : end;
            lines += (size_t)check_line(t, p, line_end);
            p = nl ? nl + 1 : end;
        }
        CHECK(srv_tokens_count(t) == lines);
        CHECK(lines <= SRV_TOKENS_MAX);
        srv_tokens_destroy(t);
    }
    free(text);
    return 0;
}
