/* bench-synth.c: the synthetic, text-like vector workload of deja-bench.
 *
 * Model: a random orthonormal basis B of a rank-R subspace (R = 64), a
 * common "mean" direction every embedding leans towards, and T topic
 * centres. A point of topic t is
 *     normalise(B^T (a * mean + centre_t + s * g) + e * h)
 * with g a Gaussian in the subspace and h isotropic noise in full
 * dimension, and s varying by topic. With the constants below two
 * entries of one topic have a cosine of about 0.65 to 0.8, unrelated
 * entries about 0.15, and the nearest stored neighbour of a fresh point
 * (a novel query) lies between 0.7 and 0.9, above 0.85 about one time in
 * eight at 50 entries per topic: the band where a semantic cache has to
 * decide.
 *
 * Popularity: topic t (topics are numbered in random order already) has
 * weight 1 / (t + 1)^s; a query draws its topic from that law through a
 * cumulative table, then a source entry of the topic uniformly. With
 * s = 1 and 200 topics the most popular topic draws about 17% of the
 * queries and the top tenth of the topics about 60%.
 *
 * Everything is computed in plain loops in a fixed order (no BLAS, no
 * threads), so a seed names one data set. Separate random streams for the
 * model, the entries and the queries keep the entries unchanged when only
 * the query count or mix changes. A later batch (churn) keeps the model's
 * stream and takes entry and query streams of its own, so its vectors are
 * new prompts on the same topics; synth_queries asks about any set of
 * entries (the live set after churn), not only the set's own. */
#include "bench-synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNTH_DEFAULT_RANK 64
#define SYNTH_ENTRIES_PER_TOPIC 50

/* Shape constants, tuned by measuring the similarity distributions (see
 * the comment at the top); they are part of what a seed means. */
#define SYNTH_MEAN_WEIGHT 0.5   /* a: shared direction */
#define SYNTH_SPREAD 0.6        /* s: within-topic spread in the subspace */
#define SYNTH_SPREAD_JITTER 0.3 /* topics' s vary by +-30% */
#define SYNTH_ISO_NOISE 0.30    /* e: full-dimension noise */

/* ---- random numbers: xoshiro256** seeded through splitmix64 -------------- */

typedef struct rng {
    uint64_t s[4];
    int has_spare;
    double spare;
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    r->has_spare = 0;
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(rng *r) {
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n): the multiply-shift bias is < n / 2^32. */
static uint32_t rng_below(rng *r, uint32_t n) {
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Standard normal by Box-Muller, keeping the second value for next time. */
static double rng_gauss(rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1, u2 = rng_uniform(r);
    do
        u1 = rng_uniform(r);
    while (u1 <= 1e-300);
    double mag = sqrt(-2.0 * log(u1));
    r->spare = mag * sin(2.0 * M_PI * u2);
    r->has_spare = 1;
    return mag * cos(2.0 * M_PI * u2);
}

/* ---- the model -------------------------------------------------------------*/

typedef struct model {
    uint32_t dim, rank, topics;
    float *basis;   /* rank x dim, orthonormal rows */
    double *mean;   /* rank, unit */
    double *centre; /* topics x rank, unit rows */
    double *spread; /* topics: s of each topic */
} model;

static double dot_d(const double *a, const double *b, uint32_t n) {
    double s = 0;
    for (uint32_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void unit_gauss(rng *r, double *v, uint32_t n) {
    double norm;
    do {
        for (uint32_t i = 0; i < n; i++)
            v[i] = rng_gauss(r);
        norm = sqrt(dot_d(v, v, n));
    } while (norm < 1e-9);
    for (uint32_t i = 0; i < n; i++)
        v[i] /= norm;
}

static void model_free(model *m) {
    free(m->basis);
    free(m->mean);
    free(m->centre);
    free(m->spread);
}

static int model_build(model *m, uint32_t dim, uint32_t rank, uint32_t topics,
                       uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->dim = dim;
    m->rank = rank;
    m->topics = topics;
    rng r;
    rng_seed(&r, seed, 1);
    double *rows = malloc((size_t)rank * dim * sizeof *rows);
    m->basis = malloc((size_t)rank * dim * sizeof *m->basis);
    m->mean = malloc(rank * sizeof *m->mean);
    m->centre = malloc((size_t)topics * rank * sizeof *m->centre);
    m->spread = malloc(topics * sizeof *m->spread);
    if (!rows || !m->basis || !m->mean || !m->centre || !m->spread) {
        free(rows);
        model_free(m);
        return -1;
    }
    /* Modified Gram-Schmidt in double: rank <= dim random Gaussian rows
     * are independent with probability 1, and re-drawing covers the rest. */
    for (uint32_t i = 0; i < rank; i++) {
        double *v = rows + (size_t)i * dim;
        for (;;) {
            unit_gauss(&r, v, dim);
            for (uint32_t j = 0; j < i; j++) {
                const double *u = rows + (size_t)j * dim;
                double p = dot_d(v, u, dim);
                for (uint32_t d = 0; d < dim; d++)
                    v[d] -= p * u[d];
            }
            double norm = sqrt(dot_d(v, v, dim));
            if (norm > 1e-6) {
                for (uint32_t d = 0; d < dim; d++)
                    v[d] /= norm;
                break;
            }
        }
    }
    for (size_t i = 0; i < (size_t)rank * dim; i++)
        m->basis[i] = (float)rows[i];
    free(rows);
    unit_gauss(&r, m->mean, rank);
    /* Topics differ in how tightly they cluster (narrow technical
     * questions vs broad chat), which widens the nearest-neighbour
     * similarities of new prompts into a realistic band around 0.85. */
    for (uint32_t t = 0; t < topics; t++) {
        unit_gauss(&r, m->centre + (size_t)t * rank, rank);
        m->spread[t] =
            SYNTH_SPREAD * (1.0 + SYNTH_SPREAD_JITTER * (2.0 * rng_uniform(&r) - 1.0));
    }
    return 0;
}

static void normalise_f(float *v, uint32_t dim) {
    double s = 0;
    for (uint32_t d = 0; d < dim; d++)
        s += (double)v[d] * v[d];
    double inv = s > 0 ? 1.0 / sqrt(s) : 0;
    for (uint32_t d = 0; d < dim; d++)
        v[d] = (float)(v[d] * inv);
}

/* out = B^T coef + iso * h, where h has unit expected norm. The loop order
 * (rank outer, dim inner) lets the compiler vectorise without reordering
 * any sum, which keeps results bit-exact across builds. */
static void model_embed(const model *m, rng *r, const double *coef, double iso,
                        float *out) {
    uint32_t dim = m->dim;
    /* Uniform noise with variance 1/dim per component: cheaper than
     * Gaussian and indistinguishable once summed in a dot product. */
    double amp = iso * sqrt(3.0 / dim);
    for (uint32_t d = 0; d < dim; d++)
        out[d] = (float)(amp * (2.0 * rng_uniform(r) - 1.0));
    for (uint32_t k = 0; k < m->rank; k++) {
        float c = (float)coef[k];
        const float *b = m->basis + (size_t)k * dim;
        for (uint32_t d = 0; d < dim; d++)
            out[d] += c * b[d];
    }
    normalise_f(out, dim);
}

/* A new point of topic t. coef: rank doubles of scratch. */
static void model_point(const model *m, rng *r, uint32_t t, double *coef, float *out) {
    const double *c = m->centre + (size_t)t * m->rank;
    double s = m->spread[t] / sqrt((double)m->rank);
    for (uint32_t k = 0; k < m->rank; k++)
        coef[k] = SYNTH_MEAN_WEIGHT * m->mean[k] + c[k] + s * rng_gauss(r);
    model_embed(m, r, coef, SYNTH_ISO_NOISE, out);
}

/* q = cos * src + sin * u, u a text-like direction orthogonal to src, so
 * that the paraphrase has exactly the chosen cosine to its source. */
static void model_paraphrase(const model *m, rng *r, const float *src, double cosine,
                             double *coef, float *out) {
    uint32_t dim = m->dim;
    for (;;) {
        for (uint32_t k = 0; k < m->rank; k++)
            coef[k] = rng_gauss(r) / sqrt((double)m->rank);
        model_embed(m, r, coef, SYNTH_ISO_NOISE / SYNTH_SPREAD, out);
        double p = 0;
        for (uint32_t d = 0; d < dim; d++)
            p += (double)out[d] * src[d];
        double norm = 0;
        for (uint32_t d = 0; d < dim; d++) {
            out[d] = (float)(out[d] - p * src[d]);
            norm += (double)out[d] * out[d];
        }
        if (norm > 1e-6) {
            double sine = sqrt(1.0 - cosine * cosine), inv = 1.0 / sqrt(norm);
            for (uint32_t d = 0; d < dim; d++)
                out[d] = (float)(cosine * src[d] + sine * inv * out[d]);
            normalise_f(out, dim);
            return;
        }
    }
}

/* ---- public ----------------------------------------------------------------*/

void synth_config_default(synth_config *cfg, uint32_t n, uint32_t nq, uint32_t dim,
                          uint64_t seed) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n = n;
    cfg->nq = nq;
    cfg->dim = dim;
    cfg->seed = seed;
    cfg->share[SYNTH_PARAPHRASE] = 0.6;
    cfg->share[SYNTH_REPEAT] = 0.1;
    cfg->share[SYNTH_NOVEL] = 0.3;
    cfg->paraphrase_min = 0.86f;
    cfg->paraphrase_max = 0.98f;
    cfg->zipf = 1.0;
}

const char *synth_kind_name(int kind) {
    switch (kind) {
    case SYNTH_PARAPHRASE: return "paraphrase";
    case SYNTH_REPEAT: return "repeat";
    case SYNTH_NOVEL: return "novel";
    default: return "?";
    }
}

void synth_free(synth_set *s) {
    free(s->base);
    free(s->queries);
    free(s->kind);
    free(s->source);
    free(s->topic);
    memset(s, 0, sizeof *s);
}

/* Entries of each topic, as one array in topic order (CSR layout). */
typedef struct topic_index {
    uint32_t *start;   /* topics + 1 */
    uint32_t *members; /* n */
    double *cdf;       /* topics: cumulative popularity, last = 1 */
} topic_index;

static void topic_index_free(topic_index *ti) {
    free(ti->start);
    free(ti->members);
    free(ti->cdf);
}

static int topic_index_build(topic_index *ti, const uint32_t *topic, uint32_t n,
                             uint32_t topics, double zipf) {
    ti->start = calloc((size_t)topics + 1, sizeof *ti->start);
    ti->members = malloc((size_t)n * sizeof *ti->members);
    ti->cdf = malloc((size_t)topics * sizeof *ti->cdf);
    if (!ti->start || !ti->members || !ti->cdf) return -1;
    for (uint32_t i = 0; i < n; i++)
        ti->start[topic[i] + 1]++;
    for (uint32_t t = 0; t < topics; t++)
        ti->start[t + 1] += ti->start[t];
    uint32_t *fill = malloc((size_t)topics * sizeof *fill);
    if (fill == NULL) return -1;
    memcpy(fill, ti->start, (size_t)topics * sizeof *fill);
    for (uint32_t i = 0; i < n; i++)
        ti->members[fill[topic[i]]++] = i;
    free(fill);
    double sum = 0;
    for (uint32_t t = 0; t < topics; t++) {
        sum += pow((double)t + 1.0, -zipf);
        ti->cdf[t] = sum;
    }
    for (uint32_t t = 0; t < topics; t++)
        ti->cdf[t] /= sum;
    ti->cdf[topics - 1] = 1.0;
    return 0;
}

static uint32_t pick_topic(const topic_index *ti, uint32_t topics, rng *r) {
    double u = rng_uniform(r);
    uint32_t lo = 0, hi = topics - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ti->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A popular entry: a Zipf-chosen topic, then one of its entries. A topic
 * that drew no entries (possible with few entries per topic) hands the
 * choice to the whole set. */
static uint32_t pick_source(const topic_index *ti, uint32_t topics, uint32_t n, rng *r) {
    uint32_t t = pick_topic(ti, topics, r);
    uint32_t count = ti->start[t + 1] - ti->start[t];
    if (count == 0) return rng_below(r, n);
    return ti->members[ti->start[t] + rng_below(r, count)];
}

/* Random streams of the draws: 1 is the model's, then two per batch (its
 * entries and its queries), so batch 0 keeps the streams it always had. */
static uint64_t entry_stream(const synth_config *cfg) {
    return 2 + 2 * cfg->batch;
}

static uint64_t query_stream(const synth_config *cfg) {
    return 3 + 2 * cfg->batch;
}

static int config_ok(const synth_config *cfg) {
    if (cfg->n == 0 || cfg->dim == 0 || cfg->dim > 4096) {
        fprintf(stderr, "synth: need n >= 1 and dim in 1..4096\n");
        return 0;
    }
    double total = cfg->share[0] + cfg->share[1] + cfg->share[2];
    if (!(total > 0.99 && total < 1.01) || cfg->share[0] < 0 || cfg->share[1] < 0 ||
        cfg->share[2] < 0 ||
        !(cfg->paraphrase_min > 0 && cfg->paraphrase_min <= cfg->paraphrase_max &&
          cfg->paraphrase_max <= 1) ||
        !(cfg->zipf >= 0 && cfg->zipf <= 10)) {
        fprintf(stderr, "synth: bad query mix, paraphrase range or Zipf exponent\n");
        return 0;
    }
    return 1;
}

static uint32_t rank_of(const synth_config *cfg) {
    uint32_t rank = cfg->rank ? cfg->rank : SYNTH_DEFAULT_RANK;
    return rank > cfg->dim ? cfg->dim : rank;
}

static uint32_t topics_of(const synth_config *cfg) {
    uint32_t topics = cfg->topics ? cfg->topics : cfg->n / SYNTH_ENTRIES_PER_TOPIC;
    return topics ? topics : 1;
}

static int alloc_queries(synth_set *out, uint32_t nq, uint32_t dim) {
    out->queries = malloc(((size_t)nq + 1) * dim * sizeof(float));
    out->kind = malloc((size_t)nq + 1);
    out->source = malloc(((size_t)nq + 1) * sizeof(uint32_t));
    return out->queries && out->kind && out->source ? 0 : -1;
}

/* The nq queries of out against base (n rows whose topics ti indexes),
 * from cfg's query stream. made counts vectors for the progress callback,
 * which goes up to all. */
static void make_queries(const synth_config *cfg, const model *m, const topic_index *ti,
                         const float *base, uint32_t n, synth_set *out, double *coef,
                         synth_progress_fn progress, void *progress_ctx, uint64_t made,
                         uint64_t all) {
    uint32_t nq = out->nq, dim = m->dim, topics = m->topics;
    rng r;
    rng_seed(&r, cfg->seed, query_stream(cfg));
    /* Exact counts per kind, then a shuffle, so that a short run still
     * sees the configured mix. */
    uint32_t np = (uint32_t)(nq * cfg->share[SYNTH_PARAPHRASE] + 0.5);
    uint32_t nr = (uint32_t)(nq * cfg->share[SYNTH_REPEAT] + 0.5);
    if (np > nq) np = nq;
    if (nr > nq - np) nr = nq - np;
    for (uint32_t q = 0; q < nq; q++)
        out->kind[q] = q < np        ? SYNTH_PARAPHRASE
                       : q < np + nr ? SYNTH_REPEAT
                                     : SYNTH_NOVEL;
    for (uint32_t q = nq; q > 1; q--) {
        uint32_t j = rng_below(&r, q);
        uint8_t t = out->kind[q - 1];
        out->kind[q - 1] = out->kind[j];
        out->kind[j] = t;
    }
    float lo = cfg->paraphrase_min, hi = cfg->paraphrase_max;
    for (uint32_t q = 0; q < nq; q++) {
        float *v = out->queries + (size_t)q * dim;
        if (progress && (++made & 1023) == 0) progress(progress_ctx, made, all);
        if (out->kind[q] == SYNTH_NOVEL) {
            out->source[q] = UINT32_MAX;
            model_point(m, &r, pick_topic(ti, topics, &r), coef, v);
            continue;
        }
        uint32_t src = pick_source(ti, topics, n, &r);
        const float *e = base + (size_t)src * dim;
        out->source[q] = src;
        if (out->kind[q] == SYNTH_REPEAT)
            memcpy(v, e, dim * sizeof(float));
        else
            model_paraphrase(m, &r, e, lo + (hi - lo) * rng_uniform(&r), coef, v);
    }
    if (progress) progress(progress_ctx, all, all);
}

int synth_generate(const synth_config *cfg, synth_set *out, synth_progress_fn progress,
                   void *progress_ctx) {
    memset(out, 0, sizeof *out);
    if (!config_ok(cfg)) return -1;
    uint32_t dim = cfg->dim, n = cfg->n, nq = cfg->nq;
    uint32_t rank = rank_of(cfg), topics = topics_of(cfg);

    model m;
    topic_index ti = {0};
    double *coef = malloc(rank * sizeof *coef);
    out->n = n;
    out->nq = nq;
    out->dim = dim;
    out->topics = topics;
    out->base = malloc((size_t)n * dim * sizeof(float));
    out->topic = malloc((size_t)n * sizeof(uint32_t));
    if (!coef || !out->base || !out->topic || alloc_queries(out, nq, dim) != 0 ||
        model_build(&m, dim, rank, topics, cfg->seed) != 0) {
        fprintf(stderr, "synth: out of memory for %u x %u vectors\n", n, dim);
        free(coef);
        synth_free(out);
        return -1;
    }

    uint64_t made = 0, all = (uint64_t)n + nq;
    rng r;
    rng_seed(&r, cfg->seed, entry_stream(cfg));
    for (uint32_t i = 0; i < n; i++) {
        out->topic[i] = rng_below(&r, topics);
        model_point(&m, &r, out->topic[i], coef, out->base + (size_t)i * dim);
        if (progress && (++made & 1023) == 0) progress(progress_ctx, made, all);
    }
    if (topic_index_build(&ti, out->topic, n, topics, cfg->zipf) != 0) {
        fprintf(stderr, "synth: out of memory\n");
        topic_index_free(&ti);
        free(coef);
        model_free(&m);
        synth_free(out);
        return -1;
    }
    make_queries(cfg, &m, &ti, out->base, n, out, coef, progress, progress_ctx, made,
                 all);
    topic_index_free(&ti);
    free(coef);
    model_free(&m);
    return 0;
}

int synth_queries(const synth_config *cfg, const float *base, const uint32_t *topic,
                  uint32_t n, synth_set *out) {
    memset(out, 0, sizeof *out);
    if (!config_ok(cfg)) return -1;
    uint32_t dim = cfg->dim, rank = rank_of(cfg), topics = topics_of(cfg);
    if (n == 0 || base == NULL || topic == NULL) {
        fprintf(stderr, "synth: queries need entries to paraphrase\n");
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (topic[i] >= topics) {
            fprintf(stderr, "synth: entry %u has topic %u of %u\n", i, topic[i], topics);
            return -1;
        }
    }
    model m;
    topic_index ti = {0};
    double *coef = malloc(rank * sizeof *coef);
    out->n = n;
    out->nq = cfg->nq;
    out->dim = dim;
    out->topics = topics;
    int rc = -1;
    if (coef && alloc_queries(out, cfg->nq, dim) == 0 &&
        model_build(&m, dim, rank, topics, cfg->seed) == 0) {
        if (topic_index_build(&ti, topic, n, topics, cfg->zipf) == 0) {
            make_queries(cfg, &m, &ti, base, n, out, coef, NULL, NULL, 0, cfg->nq);
            rc = 0;
        }
        model_free(&m);
    }
    if (rc != 0) {
        fprintf(stderr, "synth: out of memory for %u queries\n", cfg->nq);
        synth_free(out);
    }
    topic_index_free(&ti);
    free(coef);
    return rc;
}
