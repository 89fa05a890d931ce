/* idx-kernels-avx2.c: the AVX2 + FMA inner-product kernel. This is the only
 * file built with -mavx2 -mfma, so nothing else in deja can emit those
 * instructions by accident; idx-simd.c calls it only when the CPU has
 * both. */
#include <immintrin.h>

#include "idx-private.h"

/* Eight -1s then eight 0s: loading 8 lanes starting at (8 - r) gives a
 * mask selecting the first r lanes, for the tail of a vector. */
static const int32_t tail_mask_src[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                          0,  0,  0,  0,  0,  0,  0,  0};

static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 shuf = _mm_movehdup_ps(s);
    s = _mm_add_ps(s, shuf);
    shuf = _mm_movehl_ps(shuf, s);
    s = _mm_add_ss(s, shuf);
    return _mm_cvtss_f32(s);
}

float idx_dot_avx2(const float *a, const float *b, size_t n) {
    /* Four accumulators cover the FMA latency (4 cycles) at the rate two
     * loads per FMA allow; more only add reduction work for short rows. */
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps();
    __m256 acc3 = _mm256_setzero_ps();
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 =
            _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16),
                               acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24),
                               acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    if (i < n) {
        /* Masked-off lanes are not read, so the tail never touches memory
         * past the end of either vector. */
        __m256i mask = _mm256_loadu_si256((const __m256i *)(tail_mask_src + 8 - (n - i)));
        acc1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, mask),
                               _mm256_maskload_ps(b + i, mask), acc1);
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}
