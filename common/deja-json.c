/* deja-json.c: the JSON writer and string escaper shared by deja-cli and
 * deja-bench (see deja-json.h). */
#include "deja-json.h"

#include <inttypes.h>
#include <string.h>

void json_init(json_writer *w, FILE *f) {
    w->f = f;
    w->depth = 0;
    w->after_key = 0;
    w->has_member[0] = 0;
}

/* Writes the comma a value or key needs before it: none right after its
 * key, none for the first member of a container. */
static void separate(json_writer *w) {
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth > 0) {
        if (w->has_member[w->depth]) fputc(',', w->f);
        w->has_member[w->depth] = 1;
    }
}

static void open_container(json_writer *w, char c) {
    separate(w);
    fputc(c, w->f);
    if (w->depth + 1 < JSON_MAX_DEPTH) w->depth++;
    w->has_member[w->depth] = 0;
}

static void close_container(json_writer *w, char c) {
    fputc(c, w->f);
    if (w->depth > 0) w->depth--;
}

void json_begin_object(json_writer *w) {
    open_container(w, '{');
}
void json_end_object(json_writer *w) {
    close_container(w, '}');
}
void json_begin_array(json_writer *w) {
    open_container(w, '[');
}
void json_end_array(json_writer *w) {
    close_container(w, ']');
}

void json_key(json_writer *w, const char *key) {
    separate(w);
    json_escape(w->f, key, strlen(key));
    fputc(':', w->f);
    w->after_key = 1;
}

void json_string(json_writer *w, const char *s, size_t len) {
    separate(w);
    json_escape(w->f, s, len);
}

void json_cstring(json_writer *w, const char *s) {
    if (s == NULL)
        json_null(w);
    else
        json_string(w, s, strlen(s));
}

void json_u64(json_writer *w, uint64_t v) {
    separate(w);
    fprintf(w->f, "%" PRIu64, v);
}

void json_i64(json_writer *w, int64_t v) {
    separate(w);
    fprintf(w->f, "%" PRId64, v);
}

void json_number(json_writer *w, const char *fmt, double v) {
    separate(w);
    fprintf(w->f, fmt, v);
}

void json_bool(json_writer *w, int v) {
    json_raw(w, v ? "true" : "false");
}

void json_null(json_writer *w) {
    json_raw(w, "null");
}

void json_raw(json_writer *w, const char *text) {
    separate(w);
    fputs(text, w->f);
}

void json_end_line(json_writer *w) {
    fputc('\n', w->f);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    unsigned min;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are
     * not valid UTF-8. */
    if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
    return len;
}

void json_escape(FILE *f, const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c == '\r') {
            fputs("\\r", f);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else {
            size_t n = utf8_len(p + i, len - i);
            if (n == 0) {
                fputs("\\ufffd", f);
                i++;
            } else {
                fwrite(p + i, 1, n, f);
                i += n;
            }
        }
    }
    fputc('"', f);
}
