/* json.h: the one JSON writer of deja's programs (deja-cli, deja-bench).
 * Not installed.
 *
 * A json_writer writes one document to a FILE as values are given to it,
 * placing the commas itself, so callers say what they write (a key, a
 * number, a string) rather than how it is punctuated. Numbers are written
 * with the printf format the caller names, so every figure keeps the
 * precision its reader expects. Strings go through json_escape, the one
 * escaper: bytes are not necessarily UTF-8, but a JSON document must be
 * valid Unicode, so invalid bytes become U+FFFD rather than breaking the
 * document a script is about to parse.
 *
 * Nothing is buffered beyond the FILE; a writer is used by one thread. */
#ifndef DEJA_JSON_H
#define DEJA_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Deepest nesting of objects and arrays a writer tracks. */
#define JSON_MAX_DEPTH 16

typedef struct json_writer {
    FILE *f;
    int depth;     /* open objects and arrays */
    int after_key; /* a key was written; its value comes next */
    unsigned char
        has_member[JSON_MAX_DEPTH]; /* the container at each depth holds a value */
} json_writer;

/* Starts a writer on f (nothing is written). */
void json_init(json_writer *w, FILE *f);

/* Opens / closes an object or an array (as a value: after a key, inside
 * an array, or at the top). */
void json_begin_object(json_writer *w);
void json_end_object(json_writer *w);
void json_begin_array(json_writer *w);
void json_end_array(json_writer *w);

/* Writes the member name inside an object; the next call writes its value. */
void json_key(json_writer *w, const char *key);

/* Values. json_string takes len bytes (not necessarily UTF-8, may hold
 * NULs); json_cstring writes null for a NULL s. json_number formats v with
 * a printf format for one double ("%.3f"); json_raw writes text as it is
 * (a number or literal the caller formatted). */
void json_string(json_writer *w, const char *s, size_t len);
void json_cstring(json_writer *w, const char *s);
void json_u64(json_writer *w, uint64_t v);
void json_i64(json_writer *w, int64_t v);
void json_number(json_writer *w, const char *fmt, double v);
void json_bool(json_writer *w, int v);
void json_null(json_writer *w);
void json_raw(json_writer *w, const char *text);

/* Ends a top-level document with a newline (one document per line). */
void json_end_line(json_writer *w);

/* The escaper: writes len bytes of s to f as a JSON string, quotes
 * included. '"' and '\\' are escaped, \n \t \r get their short forms,
 * other control bytes and DEL become \u00XX, and bytes that do not start
 * a valid UTF-8 sequence become \ufffd. */
void json_escape(FILE *f, const char *s, size_t len);

#endif
