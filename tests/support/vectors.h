/* vectors.h: seeded synthetic vectors for the index tests -- random unit
 * vectors, clustered data shaped like embeddings, "paraphrase" queries
 * near stored vectors, and recall against brute force. Header-only so
 * each test file stays one translation unit. */
#ifndef DEJA_TEST_VECTORS_H
#define DEJA_TEST_VECTORS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "idx.h"

typedef struct vec_rng {
    uint64_t state;
} vec_rng;

/* splitmix64: small, seedable, and the same on every platform. */
static inline uint64_t vec_rng_next(vec_rng *r) {
    uint64_t z = (r->state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline float vec_rng_unit(vec_rng *r) {
    return (float)(vec_rng_next(r) >> 40) / 16777216.0f;
}

/* Standard normal (Box-Muller). */
static inline float vec_rng_normal(vec_rng *r) {
    float u1 = vec_rng_unit(r), u2 = vec_rng_unit(r);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

static inline void vec_normalize(float *v, uint32_t dim) {
    double s = 0.0;
    for (uint32_t i = 0; i < dim; i++)
        s += (double)v[i] * v[i];
    float inv = s > 0.0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (uint32_t i = 0; i < dim; i++)
        v[i] *= inv;
}

/* v = normalize(base + noise * gaussian). */
static inline void vec_perturb(vec_rng *r, const float *base, float noise, uint32_t dim,
                               float *v) {
    for (uint32_t i = 0; i < dim; i++)
        v[i] = base[i] + noise * vec_rng_normal(r);
    vec_normalize(v, dim);
}

static inline float *vec_random_units(vec_rng *r, size_t n, uint32_t dim) {
    float *v = malloc(n * dim * sizeof *v + 1);
    if (!v) abort();
    for (size_t i = 0; i < n; i++) {
        for (uint32_t j = 0; j < dim; j++)
            v[i * dim + j] = vec_rng_normal(r);
        vec_normalize(v + i * dim, dim);
    }
    return v;
}

/* n unit vectors around `clusters` random centres; spread is the norm of
 * the noise added to a (unit) centre: 0.8 puts same-cluster pairs at
 * cosine ~0.6, as in embedding data where topics cluster loosely; larger
 * spreads make neighbours harder to find. */
static inline float *vec_clustered_spread(vec_rng *r, size_t n, uint32_t dim,
                                          uint32_t clusters, float spread) {
    float *centres = vec_random_units(r, clusters, dim);
    float *v = malloc(n * dim * sizeof *v + 1);
    if (!v) abort();
    float noise = spread / sqrtf((float)dim);
    for (size_t i = 0; i < n; i++)
        vec_perturb(r, centres + (vec_rng_next(r) % clusters) * dim, noise, dim,
                    v + i * dim);
    free(centres);
    return v;
}

static inline float *vec_clustered(vec_rng *r, size_t n, uint32_t dim,
                                   uint32_t clusters) {
    return vec_clustered_spread(r, n, dim, clusters, 0.8f);
}

/* A query at cosine ~0.9 from a random one of the n stored rows. */
static inline void vec_paraphrase(vec_rng *r, const float *base, size_t n, uint32_t dim,
                                  float *q) {
    const float *src = base + (vec_rng_next(r) % n) * dim;
    vec_perturb(r, src, 0.45f / sqrtf((float)dim), dim, q);
}

/* q = c * src + sqrt(1 - c^2) * u, u a random unit vector orthogonal to
 * src: a paraphrase at exactly cosine c from src. */
static inline void vec_paraphrase_at(vec_rng *r, const float *src, float c, uint32_t dim,
                                     float *q) {
    double p = 0.0, norm = 0.0;
    for (uint32_t i = 0; i < dim; i++)
        q[i] = vec_rng_normal(r);
    for (uint32_t i = 0; i < dim; i++)
        p += (double)q[i] * src[i];
    for (uint32_t i = 0; i < dim; i++) {
        q[i] = (float)(q[i] - p * src[i]);
        norm += (double)q[i] * q[i];
    }
    double s = sqrt(1.0 - (double)c * c) / sqrt(norm);
    for (uint32_t i = 0; i < dim; i++)
        q[i] = (float)(c * src[i] + s * q[i]);
    vec_normalize(q, dim);
}

/* Fraction of want's labels found in got (recall@k of one query). */
static inline double vec_recall(const idx_hit *got, uint32_t ngot, const idx_hit *want,
                                uint32_t nwant) {
    if (nwant == 0) return 1.0;
    uint32_t found = 0;
    for (uint32_t i = 0; i < nwant; i++)
        for (uint32_t j = 0; j < ngot; j++)
            if (got[j].label == want[i].label) {
                found++;
                break;
            }
    return (double)found / nwant;
}

#endif
