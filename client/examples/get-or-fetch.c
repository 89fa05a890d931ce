/* get-or-fetch.c: the basic way to use deja, as a runnable example.
 *
 *   deja-get-or-fetch [ADDRESS]       (default 127.0.0.1:7447)
 *
 * For each prompt: embed it, ask deja for a cached answer to a similar
 * prompt, and only on a miss call the (expensive) LLM and store its answer
 * for next time. Run it twice: the second run is served from the cache.
 *
 * A real application would get its vectors from an embedding model. To
 * stay self-contained this example makes a toy "embedding": every word
 * seeds a fixed pseudo-random vector and a prompt is the normalised sum of
 * its words' vectors. Two prompts sharing most of their words then have a
 * cosine similarity near shared / sqrt(words_a * words_b), which is enough
 * to show paraphrases hitting and different questions missing. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deja.h"

#define DIM 384
#define THRESHOLD 0.85f
#define NAMESPACE "example"
#define TTL_SECONDS 3600

/* ---- a toy embedding -------------------------------------------------------*/

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Adds the fixed random vector of one word (FNV-1a of its bytes as seed).
 * Short words ("is", "the", "of") count half: they say little about what
 * is asked, and real embedding models weigh them down too. */
static void add_word(const char *word, size_t len, float *v) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)word[i]) * 0x100000001B3ull;
    double weight = len <= 3 ? 0.5 : 1.0;
    for (int i = 0; i < DIM; i++) {
        double u = (double)(splitmix64(&h) >> 11) / 9007199254740992.0;
        v[i] += (float)(weight * (2.0 * u - 1.0));
    }
}

/* Lower-cases the prompt, splits it into words and sums their vectors. */
static void embed(const char *text, float v[DIM]) {
    memset(v, 0, DIM * sizeof v[0]);
    char word[64];
    size_t len = 0;
    for (const char *p = text;; p++) {
        if (*p && isalnum((unsigned char)*p)) {
            if (len < sizeof word) word[len++] = (char)tolower((unsigned char)*p);
            continue;
        }
        if (len > 0) add_word(word, len, v);
        len = 0;
        if (*p == 0) break;
    }
    /* deja normalises vectors itself; doing it here too keeps the numbers
     * printed below easy to reason about. */
    double norm = 0;
    for (int i = 0; i < DIM; i++)
        norm += (double)v[i] * v[i];
    if (norm > 0)
        for (int i = 0; i < DIM; i++)
            v[i] = (float)(v[i] / sqrt(norm));
}

/* ---- a stand-in for the expensive call -------------------------------------*/

/* Pretends to be an LLM: slow, and returns an answer the caller must free.
 * Token counts and cost are made up the way a real API would report them. */
static char *ask_llm(const char *prompt, uint32_t *in_tokens, uint32_t *out_tokens) {
    struct timespec think = {0, 300 * 1000 * 1000};
    nanosleep(&think, NULL);
    char *answer = malloc(512);
    if (answer == NULL) return NULL;
    snprintf(answer, 512, "(a thoughtful answer to \"%s\")", prompt);
    *in_tokens = (uint32_t)(strlen(prompt) / 4 + 1);
    *out_tokens = (uint32_t)(strlen(answer) / 4 + 1);
    return answer;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- get or fetch -------------------------------------------------------------*/

/* Answers one prompt from the cache if a similar enough prompt was answered
 * before, otherwise from the LLM (and then caches that answer). */
static int get_or_fetch(deja_client *c, const char *prompt) {
    float v[DIM];
    embed(prompt, v);

    double t0 = now_ms();
    deja_result *res = NULL;
    int rc =
        deja_lookup(c, NAMESPACE, v, DIM, THRESHOLD, 1, DEJA_LOOKUP_WANT_PROMPT, &res);
    if (rc != 0) {
        fprintf(stderr, "lookup: %s (%s)\n", deja_strerror(rc), deja_last_error(c));
        return rc;
    }
    double lookup_ms = now_ms() - t0;

    if (res->count > 0) {
        const deja_hit *hit = &res->hits[0];
        printf("HIT   %-40s similarity %.3f, %.2f ms\n", prompt, hit->similarity,
               lookup_ms);
        printf("      matched \"%s\"\n      -> %s\n", hit->prompt ? hit->prompt : "?",
               hit->response);
        deja_result_free(res);
        return 0;
    }
    deja_result_free(res);

    /* A miss: pay for the real call, then cache it for the next asker. */
    uint32_t in_tokens = 0, out_tokens = 0;
    t0 = now_ms();
    char *answer = ask_llm(prompt, &in_tokens, &out_tokens);
    if (answer == NULL) return DEJA_ERR_NOMEM;
    double llm_ms = now_ms() - t0;

    deja_store_req req = {
        .ns = NAMESPACE,
        .vector = v,
        .dim = DIM,
        .response = answer,
        .response_len = strlen(answer),
        .prompt = prompt,
        .prompt_len = strlen(prompt),
        .ttl_s = TTL_SECONDS,
        .input_tokens = in_tokens,
        .output_tokens = out_tokens,
        /* Illustrative prices: $3 per million input tokens, $15 output. */
        .cost_micro_usd = (uint64_t)in_tokens * 3 + (uint64_t)out_tokens * 15,
        .completion = 0,
    };
    uint64_t id = 0;
    rc = deja_store(c, &req, &id);
    if (rc != 0)
        fprintf(stderr, "store: %s (%s)\n", deja_strerror(rc), deja_last_error(c));
    printf("MISS  %-40s asked the LLM (%.0f ms), cached as entry %llu\n", prompt, llm_ms,
           (unsigned long long)id);
    printf("      -> %s\n", answer);
    free(answer);
    return rc;
}

int main(int argc, char **argv) {
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:7447";
    const char *prompts[] = {
        "What is the capital of France?",     "How do I reverse a list in Python?",
        "what is the capital city of France", /* paraphrase of the first */
        "how do I reverse a Python list",     /* paraphrase of the second */
        "What is the capital of Spain?",      /* close in words, different question */
        "Who painted the Mona Lisa?",
    };

    deja_client *c = NULL;
    int rc = deja_connect(addr, NULL, &c);
    if (rc != 0) {
        fprintf(stderr, "cannot connect to %s: %s\n", addr, deja_strerror(rc));
        return 1;
    }
    printf("connected to %s (%s), threshold %.2f\n\n", addr, deja_server_name(c),
           THRESHOLD);

    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
        if (get_or_fetch(c, prompts[i]) != 0 && deja_ping(c) == DEJA_ERR_CLOSED) {
            deja_close(c);
            return 1;
        }
    }
    deja_close(c);
    return 0;
}
