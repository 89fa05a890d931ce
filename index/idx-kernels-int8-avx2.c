/* idx-kernels-int8-avx2.c: the AVX2 int8 inner-product kernel, which HNSW
 * traverses int8-quantised graphs with. Built with -mavx2 only, and
 * called only when the CPU has AVX2.
 *
 * The result is exact (int32, the same as the scalar kernel for every
 * input, -128 included): each byte is widened to int16 and pairs are
 * multiplied and summed by vpmaddwd into int32 lanes, which cannot
 * overflow for n <= 2^17. The usual vpmaddubsw trick (unsigned x signed
 * bytes) is faster but saturates at int16, so it would not be exact. */
#include <immintrin.h>

#include "idx-private.h"

static int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

int32_t idx_dot_i8_avx2(const int8_t *a, const int8_t *b, size_t n) {
    /* Two accumulators hide the latency of vpmaddwd + vpaddd. */
    __m256i acc0 = _mm256_setzero_si256();
    __m256i acc1 = _mm256_setzero_si256();
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        __m256i va = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256i vb = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i a_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(va));
        __m256i b_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(vb));
        __m256i a_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(va, 1));
        __m256i b_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(vb, 1));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a_lo, b_lo));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a_hi, b_hi));
    }
    for (; i + 16 <= n; i += 16) {
        __m256i a16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256i b16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a16, b16));
    }
    int32_t sum = hsum_epi32(_mm256_add_epi32(acc0, acc1));
    /* AVX2 has no byte-masked load; a tail of under 16 bytes is cheap in
     * scalar code and never reads past either vector. */
    for (; i < n; i++)
        sum += (int32_t)a[i] * (int32_t)b[i];
    return sum;
}
