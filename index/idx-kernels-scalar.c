/* idx-kernels-scalar.c: the portable inner-product kernels, f32 and int8
 * (for quantised HNSW). They are the reference the SIMD kernels are tested
 * against and the fallback on CPUs without AVX2; idx_bruteforce() always
 * uses the f32 one. */
#include "idx-private.h"

float idx_dot_scalar(const float *a, const float *b, size_t n) {
    /* Eight independent sums let the additions of consecutive elements
     * overlap instead of waiting on one another's latency, and give the
     * compiler something it may pack into the baseline SSE registers. */
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    float s4 = 0.0f, s5 = 0.0f, s6 = 0.0f, s7 = 0.0f;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        s0 += a[i + 0] * b[i + 0];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
        s4 += a[i + 4] * b[i + 4];
        s5 += a[i + 5] * b[i + 5];
        s6 += a[i + 6] * b[i + 6];
        s7 += a[i + 7] * b[i + 7];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

int32_t idx_dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n) {
    /* Integer sums are exact in any order, so the SIMD kernels must match
     * this one bit for bit; four sums only shorten the dependency chain.
     * |a[i] * b[i]| <= 2^14, so n <= 2^17 cannot overflow. */
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (int32_t)a[i + 0] * (int32_t)b[i + 0];
        s1 += (int32_t)a[i + 1] * (int32_t)b[i + 1];
        s2 += (int32_t)a[i + 2] * (int32_t)b[i + 2];
        s3 += (int32_t)a[i + 3] * (int32_t)b[i + 3];
    }
    for (; i < n; i++)
        s0 += (int32_t)a[i] * (int32_t)b[i];
    return (s0 + s1) + (s2 + s3);
}
