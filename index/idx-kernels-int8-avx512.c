/* idx-kernels-int8-avx512.c: the AVX-512BW int8 inner-product kernel, for
 * CPUs with AVX-512 but without VNNI. Built with -mavx512f -mavx512bw
 * only; idx-simd.c calls it only when the CPU has both.
 *
 * Exact for every input, like the AVX2 kernel: bytes are widened to
 * int16 and vpmaddwd sums pairs of products into int32 lanes. */
#include <immintrin.h>

#include "idx-private.h"

int32_t idx_dot_i8_avx512bw(const int8_t *a, const int8_t *b, size_t n) {
    __m512i acc0 = _mm512_setzero_si512();
    __m512i acc1 = _mm512_setzero_si512();
    size_t i = 0;

    for (; i < n; i += 64) {
        /* The tail uses masked loads: they read no byte past either
         * vector and give zeros, which add nothing to the sum. */
        __mmask64 mask = n - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - i)) - 1);
        __m512i va = _mm512_maskz_loadu_epi8(mask, a + i);
        __m512i vb = _mm512_maskz_loadu_epi8(mask, b + i);
        __m512i a_lo = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(va));
        __m512i b_lo = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(vb));
        __m512i a_hi = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(va, 1));
        __m512i b_hi = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(vb, 1));
        acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a_lo, b_lo));
        acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(a_hi, b_hi));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}
