/* deja-cli-output.c: how deja-cli prints answers -- aligned text for
 * people, one JSON object per command for scripts.
 *
 * Responses are bytes, not necessarily UTF-8, but JSON strings must be
 * valid Unicode: invalid bytes become U+FFFD rather than breaking the
 * document a script is about to parse. */
#include <string.h>

#include "deja-cli.h"

const char *cli_error_name(int code) {
    switch (code) {
#define CLI_ERROR_NAME_(name, value, msg)                                                \
    case value: return #name;
        DEJA_ERROR_TABLE(CLI_ERROR_NAME_)
#undef CLI_ERROR_NAME_
    default: return "UNKNOWN";
    }
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

void cli_json_string(FILE *f, const char *s, size_t len) {
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

void cli_print_stats(FILE *f, const deja_stats *s, const char *ns, int json) {
    if (json) {
        fputs("{\"ok\":true,\"namespace\":", f);
        if (ns)
            cli_json_string(f, ns, strlen(ns));
        else
            fputs("null", f);
        fputs(",\"stats\":{", f);
        for (uint32_t i = 0; i < s->count; i++) {
            if (i) fputc(',', f);
            cli_json_string(f, s->items[i].key, strlen(s->items[i].key));
            fprintf(f, ":%llu", (unsigned long long)s->items[i].value);
        }
        fputs("}}\n", f);
        return;
    }
    int width = 0;
    for (uint32_t i = 0; i < s->count; i++) {
        int n = (int)strlen(s->items[i].key);
        if (n > width) width = n;
    }
    for (uint32_t i = 0; i < s->count; i++)
        fprintf(f, "%-*s  %llu\n", width, s->items[i].key,
                (unsigned long long)s->items[i].value);
}

void cli_print_lookup(FILE *f, const deja_result *r, int json) {
    if (json) {
        fprintf(f, "{\"ok\":true,\"hit\":%s,\"exact\":%s,\"count\":%u,\"hits\":[",
                r->count ? "true" : "false",
                (r->flags & DEJA_RESULT_EXACT) ? "true" : "false", r->count);
        for (uint32_t i = 0; i < r->count; i++) {
            const deja_hit *h = &r->hits[i];
            fprintf(f, "%s{\"id\":%llu,\"similarity\":%.6f,\"prompt\":", i ? "," : "",
                    (unsigned long long)h->id, (double)h->similarity);
            if (h->prompt)
                cli_json_string(f, h->prompt, h->prompt_len);
            else
                fputs("null", f);
            fputs(",\"response\":", f);
            cli_json_string(f, h->response, h->response_len);
            fputc('}', f);
        }
        fputs("]}\n", f);
        return;
    }
    if (r->count == 0) {
        fputs("MISS\n", f);
        return;
    }
    for (uint32_t i = 0; i < r->count; i++) {
        const deja_hit *h = &r->hits[i];
        fprintf(f, "HIT %u  id %llu  similarity %.4f%s\n", i + 1,
                (unsigned long long)h->id, (double)h->similarity,
                i == 0 && (r->flags & DEJA_RESULT_EXACT) ? "  (exact prompt)" : "");
        if (h->prompt) fprintf(f, "prompt: %.*s\n", (int)h->prompt_len, h->prompt);
        fwrite(h->response, 1, h->response_len, f);
        if (h->response_len == 0 || h->response[h->response_len - 1] != '\n')
            fputc('\n', f);
    }
}

void cli_print_ns_list(FILE *f, const deja_ns_list *l, int json) {
    if (json) {
        fputs("{\"ok\":true,\"namespaces\":[", f);
        for (uint32_t i = 0; i < l->count; i++) {
            if (i) fputc(',', f);
            cli_json_string(f, l->names[i], strlen(l->names[i]));
        }
        fputs("]}\n", f);
        return;
    }
    for (uint32_t i = 0; i < l->count; i++)
        fprintf(f, "%s\n", l->names[i]);
}

static const char *index_name(unsigned kind) {
    static const char *const names[] = {"default", "flat", "hnsw", "faiss"};
    return kind < 4 ? names[kind] : "unknown";
}

/* Writes the configuration's fields after its named enums, as JSON members
 * (each preceded by a comma) or as aligned lines. */
static void print_ns_numbers(FILE *f, const deja_ns_config *c, int json) {
    const struct {
        const char *key;
        uint64_t value;
    } ints[] = {
        {"dim", c->dim},
        {"hnsw_m", c->hnsw_m},
        {"hnsw_ef_construction", c->hnsw_ef_construction},
        {"hnsw_ef_search", c->hnsw_ef_search},
        {"default_ttl_s", c->default_ttl_s},
        {"max_age_s", c->max_age_s},
        {"max_bytes", c->max_bytes},
        {"max_entries", c->max_entries},
    };
    const struct {
        const char *key;
        float value;
    } floats[] = {{"min_threshold", c->min_threshold}, {"dedup", c->dedup}};
    const char *ifmt = json ? ",\"%s\":%llu" : "%-22s  %llu\n";
    const char *ffmt = json ? ",\"%s\":%.6g" : "%-22s  %.6g\n";
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        fprintf(f, ifmt, ints[i].key, (unsigned long long)ints[i].value);
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        fprintf(f, ffmt, floats[i].key, (double)floats[i].value);
}

void cli_print_ns_info(FILE *f, const deja_ns_info *info, const char *ns, int json) {
    const deja_ns_config *c = &info->config;
    const char *quant = c->quant ? "int8" : "f32";
    const char *ttl_mode = c->ttl_mode ? "sliding" : "absolute";
    if (json) {
        fputs("{\"ok\":true,\"namespace\":", f);
        cli_json_string(f, ns, strlen(ns));
        fprintf(f,
                ",\"config\":{\"index\":\"%s\",\"quant\":\"%s\",\"ttl_mode\":\"%s\","
                "\"allow_non_ok\":%s,\"no_dedup\":%s,\"faiss_factory\":",
                index_name(c->index_kind), quant, ttl_mode,
                c->flags & DEJA_NS_ALLOW_NON_OK ? "true" : "false",
                c->flags & DEJA_NS_NO_DEDUP ? "true" : "false");
        if (c->faiss_factory)
            cli_json_string(f, c->faiss_factory, strlen(c->faiss_factory));
        else
            fputs("null", f);
        print_ns_numbers(f, c, 1);
        fputs("},\"stats\":{", f);
        for (uint32_t i = 0; i < info->stats.count; i++) {
            if (i) fputc(',', f);
            cli_json_string(f, info->stats.items[i].key,
                            strlen(info->stats.items[i].key));
            fprintf(f, ":%llu", (unsigned long long)info->stats.items[i].value);
        }
        fputs("}}\n", f);
        return;
    }
    fprintf(f, "%-22s  %s\n%-22s  %s\n%-22s  %s\n", "index", index_name(c->index_kind),
            "quant", quant, "ttl_mode", ttl_mode);
    if (c->faiss_factory) fprintf(f, "%-22s  %s\n", "faiss_factory", c->faiss_factory);
    if (c->flags & DEJA_NS_ALLOW_NON_OK) fprintf(f, "%-22s  yes\n", "allow_non_ok");
    if (c->flags & DEJA_NS_NO_DEDUP) fprintf(f, "%-22s  yes\n", "no_dedup");
    print_ns_numbers(f, c, 0);
    fputs("\n", f);
    cli_print_stats(f, &info->stats, NULL, 0);
}
