/* deja-cli-output.c: how deja-cli prints answers -- aligned text for
 * people, one JSON object per command for scripts, written with the
 * shared JSON writer (common/deja-json.h), whose escaper turns bytes that
 * are not UTF-8 into U+FFFD. */
#include <string.h>

#include "deja-cli.h"
#include "deja-json.h"

const char *cli_error_name(int code) {
    switch (code) {
#define CLI_ERROR_NAME_(name, value, msg)                                                \
    case value: return #name;
        DEJA_ERROR_TABLE(CLI_ERROR_NAME_)
#undef CLI_ERROR_NAME_
    default: return "UNKNOWN";
    }
}

void cli_json_begin(json_writer *w, FILE *f, int ok) {
    json_init(w, f);
    json_begin_object(w);
    json_key(w, "ok");
    json_bool(w, ok);
}

/* The members of a counter list, inside an open object. */
static void json_stats_members(json_writer *w, const deja_stats *s) {
    for (uint32_t i = 0; i < s->count; i++) {
        json_key(w, s->items[i].key);
        json_u64(w, s->items[i].value);
    }
}

void cli_print_stats(FILE *f, const deja_stats *s, const char *ns, int json) {
    if (json) {
        json_writer w;
        cli_json_begin(&w, f, 1);
        json_key(&w, "namespace");
        json_cstring(&w, ns);
        json_key(&w, "stats");
        json_begin_object(&w);
        json_stats_members(&w, s);
        json_end_object(&w);
        json_end_object(&w);
        json_end_line(&w);
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

static const char *outcome_name(int outcome) {
    static const char *const names[] = {"MISS", "HIT", "LEASE", "COALESCED"};
    return outcome >= 0 && outcome <= DEJA_OUTCOME_COALESCED ? names[outcome] : "?";
}

void cli_print_lookup(FILE *f, const deja_result *r, int json, int show_outcome) {
    if (json) {
        json_writer w;
        cli_json_begin(&w, f, 1);
        json_key(&w, "hit");
        json_bool(&w, r->count != 0);
        json_key(&w, "exact");
        json_bool(&w, (r->flags & DEJA_RESULT_EXACT) != 0);
        json_key(&w, "borderline");
        json_bool(&w, (r->flags & DEJA_RESULT_BORDERLINE) != 0);
        json_key(&w, "outcome");
        json_cstring(&w, outcome_name(r->outcome));
        json_key(&w, "lease_id");
        json_u64(&w, r->lease_id);
        json_key(&w, "shadow");
        json_bool(&w, (r->flags & DEJA_RESULT_SHADOW) != 0);
        json_key(&w, "count");
        json_u64(&w, r->count);
        json_key(&w, "hits");
        json_begin_array(&w);
        for (uint32_t i = 0; i < r->count; i++) {
            const deja_hit *h = &r->hits[i];
            json_begin_object(&w);
            json_key(&w, "id");
            json_u64(&w, h->id);
            json_key(&w, "similarity");
            json_number(&w, "%.6f", (double)h->similarity);
            json_key(&w, "borderline");
            json_bool(&w, (h->flags & DEJA_HIT_BORDERLINE) != 0);
            json_key(&w, "prompt");
            if (h->prompt)
                json_string(&w, h->prompt, h->prompt_len);
            else
                json_null(&w);
            json_key(&w, "response");
            json_string(&w, h->response, h->response_len);
            json_end_object(&w);
        }
        json_end_array(&w);
        json_key(&w, "shadow_hits");
        json_begin_array(&w);
        for (uint32_t i = 0; i < r->shadow_count; i++) {
            const deja_hit *h = &r->shadow[i];
            json_begin_object(&w);
            json_key(&w, "id");
            json_u64(&w, h->id);
            json_key(&w, "similarity");
            json_number(&w, "%.6f", (double)h->similarity);
            json_key(&w, "response");
            json_string(&w, h->response, h->response_len);
            json_end_object(&w);
        }
        json_end_array(&w);
        json_end_object(&w);
        json_end_line(&w);
        return;
    }
    if (show_outcome) {
        fprintf(f, "outcome %s", outcome_name(r->outcome));
        if (r->outcome == DEJA_OUTCOME_LEASE)
            fprintf(f, "  lease %llu", (unsigned long long)r->lease_id);
        if (r->flags & DEJA_RESULT_SHADOW) fputs("  (namespace in shadow mode)", f);
        fputc('\n', f);
        for (uint32_t i = 0; i < r->shadow_count; i++)
            fprintf(f, "SHADOW %u  id %llu  similarity %.4f%s\n", i + 1,
                    (unsigned long long)r->shadow[i].id, (double)r->shadow[i].similarity,
                    r->shadow[i].flags & DEJA_HIT_BORDERLINE ? "  (borderline)" : "");
    }
    if (r->count == 0) {
        fputs("MISS\n", f);
        return;
    }
    for (uint32_t i = 0; i < r->count; i++) {
        const deja_hit *h = &r->hits[i];
        fprintf(f, "HIT %u  id %llu  similarity %.4f%s%s\n", i + 1,
                (unsigned long long)h->id, (double)h->similarity,
                i == 0 && (r->flags & DEJA_RESULT_EXACT) ? "  (exact prompt)" : "",
                h->flags & DEJA_HIT_BORDERLINE ? "  (borderline)" : "");
        if (h->prompt) fprintf(f, "prompt: %.*s\n", (int)h->prompt_len, h->prompt);
        fwrite(h->response, 1, h->response_len, f);
        if (h->response_len == 0 || h->response[h->response_len - 1] != '\n')
            fputc('\n', f);
    }
}

void cli_print_ns_list(FILE *f, const deja_ns_list *l, int json) {
    if (json) {
        json_writer w;
        cli_json_begin(&w, f, 1);
        json_key(&w, "namespaces");
        json_begin_array(&w);
        for (uint32_t i = 0; i < l->count; i++)
            json_cstring(&w, l->names[i]);
        json_end_array(&w);
        json_end_object(&w);
        json_end_line(&w);
        return;
    }
    for (uint32_t i = 0; i < l->count; i++)
        fprintf(f, "%s\n", l->names[i]);
}

static const char *index_name(unsigned kind) {
    static const char *const names[] = {"default", "flat", "hnsw", "faiss"};
    return kind < 4 ? names[kind] : "unknown";
}

/* Writes the configuration's fields after its named enums: as members of
 * the object w has open, or as aligned lines on f when w is NULL. */
static void print_ns_numbers(FILE *f, json_writer *w, const deja_ns_config *c) {
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
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (w) {
            json_key(w, ints[i].key);
            json_u64(w, ints[i].value);
        } else {
            fprintf(f, "%-22s  %llu\n", ints[i].key, (unsigned long long)ints[i].value);
        }
    }
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        if (w) {
            json_key(w, floats[i].key);
            json_number(w, "%.6g", (double)floats[i].value);
        } else {
            fprintf(f, "%-22s  %.6g\n", floats[i].key, (double)floats[i].value);
        }
    }
}

void cli_print_ns_info(FILE *f, const deja_ns_info *info, const char *ns, int json) {
    const deja_ns_config *c = &info->config;
    const char *quant = c->quant ? "int8" : "f32";
    const char *ttl_mode = c->ttl_mode ? "sliding" : "absolute";
    if (json) {
        json_writer w;
        cli_json_begin(&w, f, 1);
        json_key(&w, "namespace");
        json_cstring(&w, ns);
        json_key(&w, "config");
        json_begin_object(&w);
        json_key(&w, "index");
        json_cstring(&w, index_name(c->index_kind));
        json_key(&w, "quant");
        json_cstring(&w, quant);
        json_key(&w, "ttl_mode");
        json_cstring(&w, ttl_mode);
        json_key(&w, "allow_non_ok");
        json_bool(&w, (c->flags & DEJA_NS_ALLOW_NON_OK) != 0);
        json_key(&w, "no_dedup");
        json_bool(&w, (c->flags & DEJA_NS_NO_DEDUP) != 0);
        json_key(&w, "faiss_factory");
        json_cstring(&w, c->faiss_factory);
        print_ns_numbers(f, &w, c);
        json_end_object(&w);
        json_key(&w, "stats");
        json_begin_object(&w);
        json_stats_members(&w, &info->stats);
        json_end_object(&w);
        json_end_object(&w);
        json_end_line(&w);
        return;
    }
    fprintf(f, "%-22s  %s\n%-22s  %s\n%-22s  %s\n", "index", index_name(c->index_kind),
            "quant", quant, "ttl_mode", ttl_mode);
    if (c->faiss_factory) fprintf(f, "%-22s  %s\n", "faiss_factory", c->faiss_factory);
    if (c->flags & DEJA_NS_ALLOW_NON_OK) fprintf(f, "%-22s  yes\n", "allow_non_ok");
    if (c->flags & DEJA_NS_NO_DEDUP) fprintf(f, "%-22s  yes\n", "no_dedup");
    print_ns_numbers(f, NULL, c);
    fputs("\n", f);
    cli_print_stats(f, &info->stats, NULL, 0);
}

void cli_print_policy(FILE *f, const deja_ns_policy *p, const char *ns, int json) {
    const char *mode = p->mode == DEJA_NS_SHADOW ? "shadow" : "serve";
    if (json) {
        json_writer w;
        cli_json_begin(&w, f, 1);
        json_key(&w, "namespace");
        json_cstring(&w, ns);
        json_key(&w, "mode");
        json_cstring(&w, mode);
        json_key(&w, "gray_band");
        json_number(&w, "%.6g", (double)p->gray_band);
        json_end_object(&w);
        json_end_line(&w);
        return;
    }
    fprintf(f, "mode       %s\n", mode);
    if (p->gray_band > 0)
        fprintf(f, "gray_band  %.6g\n", (double)p->gray_band);
    else
        fputs("gray_band  none\n", f);
}
