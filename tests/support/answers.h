/* answers.h: how unit tests of the cache engine tell which STORE's data a
 * lookup returned. The engine keeps no prompt or response bytes (the
 * server reads them from the store when it encodes a reply), so a test
 * stores through cache_prepare_store / cache_publish, holds a reference to
 * each published entry, and remembers the response it was stored with: a
 * lookup's entry is then traced back to its STORE exactly (an update
 * replaces the entry object, so the old and the new answer differ).
 * Header-only; one book per test process. */
#ifndef DEJA_TEST_ANSWERS_H
#define DEJA_TEST_ANSWERS_H

#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "harness.h"

typedef struct answer_book {
    cache_entry **entry;
    char (*response)[64];
    int n, cap;
} answer_book;

static answer_book answers;

/* cache_store, remembering what the entry was stored with. */
static inline int answers_store(cache *c, const cache_store_args *r, const float *v,
                                uint64_t *id) {
    cache_pending *p;
    int rc = cache_prepare_store(c, r, v, &p);
    if (rc) return rc;
    if (answers.n == answers.cap) {
        answers.cap = answers.cap ? 2 * answers.cap : 256;
        answers.entry =
            realloc(answers.entry, (size_t)answers.cap * sizeof *answers.entry);
        answers.response =
            realloc(answers.response, (size_t)answers.cap * sizeof *answers.response);
        ASSERT_TRUE(answers.entry && answers.response);
    }
    cache_entry *e = cache_pending_ref(p);
    rc = cache_publish(c, p, id);
    if (rc) {
        cache_entry_release(e);
        return rc;
    }
    size_t len = r->response_len < 63 ? r->response_len : 63;
    memcpy(answers.response[answers.n], r->response, len);
    answers.response[answers.n][len] = 0;
    answers.entry[answers.n++] = e;
    return 0;
}

/* The response e was stored with ("" for an entry stored otherwise). */
static inline const char *answers_response(const cache_entry *e) {
    for (int i = 0; i < answers.n; i++)
        if (answers.entry[i] == e) return answers.response[i];
    return "";
}

/* Drops the book's references (before cache_destroy is fine too: they
 * keep only the entries' heap parts alive). */
static inline void answers_close(void) {
    for (int i = 0; i < answers.n; i++)
        cache_entry_release(answers.entry[i]);
    answers.n = 0;
}

#endif
