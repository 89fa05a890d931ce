/* get-or-fetch.c: the basic way to use deja, as a runnable example.
 *
 *   deja-get-or-fetch [ADDRESS]       (default deja://127.0.0.1:7447)
 *
 * For each prompt: embed it, ask deja for a cached answer to a similar
 * prompt, and only on a miss call the (expensive) LLM and store its answer
 * for next time -- all of it one deja_get_or_fetch call on a deja_pool.
 * Run it twice: the second run is served from the cache. Run it with no
 * server: every prompt goes to the LLM, and nothing else goes wrong.
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

/* deja calls this on a miss: ask the LLM and report its answer. */
static int fetch_from_llm(void *ctx, const char *prompt, deja_fetch *f) {
    double *llm_ms = ctx;
    uint32_t in_tokens = 0, out_tokens = 0;
    double t0 = now_ms();
    char *answer = ask_llm(prompt, &in_tokens, &out_tokens);
    if (answer == NULL) return 1; /* our own code: no answer */
    *llm_ms = now_ms() - t0;
    /* deja copies the answer, so it can be freed at once. 0 = completed
     * normally; a truncated or filtered answer would not be cached. */
    int rc = deja_fetch_answer(f, answer, strlen(answer), 0);
    free(answer);
    /* Illustrative prices: $3 per million input tokens, $15 output. */
    deja_fetch_meta(f, TTL_SECONDS, in_tokens, out_tokens,
                    (uint64_t)in_tokens * 3 + (uint64_t)out_tokens * 15);
    return rc;
}

/* Answers one prompt from the cache if a similar enough prompt was answered
 * before, otherwise from the LLM (and then caches that answer). */
static void answer(deja_pool *pool, const char *prompt) {
    float v[DIM];
    embed(prompt, v);
    double llm_ms = 0, t0 = now_ms();
    deja_result *r = NULL;
    int rc = deja_get_or_fetch(pool, NAMESPACE, prompt, v, DIM, THRESHOLD, fetch_from_llm,
                               &llm_ms, &r);
    double total_ms = now_ms() - t0;
    if (rc != 0) {
        /* Only the LLM failing leaves us without an answer: deja being
         * down just means every prompt goes to the LLM. */
        printf("FAIL  %-40s no answer (%d)\n", prompt, rc);
    } else if (!(r->flags & DEJA_RESULT_FETCHED)) {
        printf("HIT   %-40s similarity %.3f, %.2f ms\n", prompt, r->hits[0].similarity,
               total_ms);
        printf("      -> %s\n", r->hits[0].response);
    } else {
        printf("MISS  %-40s asked the LLM (%.0f ms), %s\n", prompt, llm_ms,
               r->flags & DEJA_RESULT_STORED ? "cached" : "not cached");
        if (r->error) printf("      (deja: %s)\n", deja_pool_last_error());
        printf("      -> %s\n", r->hits[0].response);
    }
    deja_result_free(r); /* one call frees the answer, hit or fetched */
}

int main(int argc, char **argv) {
    const char *addr = argc > 1 ? argv[1] : "deja://127.0.0.1:7447";
    const char *prompts[] = {
        "What is the capital of France?",     "How do I reverse a list in Python?",
        "what is the capital city of France", /* paraphrase of the first */
        "how do I reverse a Python list",     /* paraphrase of the second */
        "What is the capital of Spain?",      /* close in words, different question */
        "Who painted the Mona Lisa?",
    };

    /* A pool connects lazily and never fails because deja is down: the
     * application starts and answers either way. */
    deja_pool *pool = NULL;
    int rc = deja_pool_create(addr, NULL, &pool);
    if (rc != 0) {
        fprintf(stderr, "bad address %s: %s\n", addr, deja_pool_last_error());
        return 1;
    }
    printf("deja at %s, threshold %.2f\n\n", addr, THRESHOLD);
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++)
        answer(pool, prompts[i]);

    deja_pool_status st;
    deja_pool_get_status(pool, &st);
    printf("\n%llu deja calls, %llu failed, breaker %s\n", (unsigned long long)st.calls,
           (unsigned long long)st.failures,
           st.breaker == DEJA_BREAKER_CLOSED ? "closed" : "open");
    deja_pool_destroy(pool);
    return 0;
}
