/* bench-synth.h: deja-bench's synthetic workload -- seeded, deterministic
 * unit vectors shaped like text embeddings, and queries against them.
 *
 * Text embeddings are not uniform on the sphere: they share a common
 * direction, live mostly in a low-rank subspace and cluster by topic. The
 * generator mimics that (a rank-64 subspace, ~n/50 topic centres, per-entry
 * noise plus a little isotropic noise) so that index and cache behaviour
 * (neighbour similarities, hit rates near the threshold) resemble a real
 * cache rather than the easy case of random vectors.
 *
 * Queries come in three kinds: paraphrases (an entry perturbed to a chosen
 * cosine, 0.86..0.98 by default), exact repeats of an entry, and novel
 * prompts (fresh points from the same topics, mostly below a 0.85
 * threshold). Topics are not equally popular: a query picks its topic with
 * a Zipf-like law (weight 1 / rank^s, s = 1 by default; 0 = uniform), then
 * a source entry of that topic uniformly, so a few topics draw most of
 * the traffic as in a real application. The same config and seed give the
 * same vectors bit for bit on the same libm; nothing depends on threads or
 * BLAS. */
#ifndef DEJA_BENCH_SYNTH_H
#define DEJA_BENCH_SYNTH_H

#include <stdint.h>

enum synth_kind {
    SYNTH_PARAPHRASE = 0,
    SYNTH_REPEAT = 1,
    SYNTH_NOVEL = 2,
    SYNTH_KINDS = 3,
};

typedef struct synth_config {
    uint32_t n;   /* stored entries */
    uint32_t nq;  /* queries */
    uint32_t dim; /* 1..4096 */
    uint64_t seed;
    uint32_t rank;             /* 0 = min(64, dim) */
    uint32_t topics;           /* 0 = max(1, n / 50) */
    double share[SYNTH_KINDS]; /* query mix, summing to 1 (default .6 .1 .3) */
    float paraphrase_min;      /* cosine of a paraphrase to its source */
    float paraphrase_max;
    double zipf; /* topic popularity exponent s >= 0 (default 1) */
    /* 0 draws the set a seed names. b > 0 draws other entries and queries
     * from the same model (basis, mean and topic centres), as a cache sees
     * new prompts on the same subjects over time: churn inserts them.
     * Set topics explicitly then, since its default follows n. */
    uint64_t batch;
} synth_config;

typedef struct synth_set {
    uint32_t n, nq, dim;
    float *base;      /* n x dim, unit rows: the entries to store */
    float *queries;   /* nq x dim, unit rows */
    uint8_t *kind;    /* nq: enum synth_kind of each query; NULL when the
                         queries came from a file (kind unknown) */
    uint32_t *source; /* nq: the entry a paraphrase/repeat came from, or
                         UINT32_MAX for a novel query; NULL for files */
    uint32_t *topic;  /* n: topic of each entry; NULL for files */
    uint32_t topics;
} synth_set;

/* Fills cfg with the defaults for n entries, nq queries, dim, seed. */
void synth_config_default(synth_config *cfg, uint32_t n, uint32_t nq, uint32_t dim,
                          uint64_t seed);

/* Generates the data set. Returns 0, or -1 on a bad config or no memory
 * (with a message on stderr). Free with synth_free. progress, when not
 * NULL, is called now and then with the vectors made so far and the
 * total (from the calling thread). */
typedef void (*synth_progress_fn)(void *ctx, uint64_t done, uint64_t total);
int synth_generate(const synth_config *cfg, synth_set *out, synth_progress_fn progress,
                   void *progress_ctx);

/* cfg->nq queries, mixed as cfg->share says, against n given entries
 * (base, n x cfg->dim unit rows, with their topics, each below the
 * model's topic count) instead of a set's own: paraphrases and repeats
 * take their source among them by the same Zipf law, novel queries are
 * fresh points of the model. The query stream is cfg->batch's, so with
 * batch 0 and the entries of synth_generate(cfg) the queries are the
 * same as that set's. Fills out's queries, kind and source (indexes into
 * base), nq, dim and topics; out->n is n but out->base and out->topic
 * stay NULL (the caller keeps the entries). Returns 0, or -1 on a bad
 * config or no memory (message on stderr). Free with synth_free. */
int synth_queries(const synth_config *cfg, const float *base, const uint32_t *topic,
                  uint32_t n, synth_set *out);

/* Frees what s holds (any pointer may be NULL) and zeroes it. */
void synth_free(synth_set *s);

/* "paraphrase", "repeat", "novel". */
const char *synth_kind_name(int kind);

#endif
