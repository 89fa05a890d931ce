/* idx-kernels-scalar.c: the portable inner-product kernel. It is the
 * reference the SIMD kernels are tested against, the fallback on CPUs
 * without AVX2, and the kernel idx_bruteforce() always uses. */
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
    for (; i < n; i++) s0 += a[i] * b[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}
