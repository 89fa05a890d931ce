/* idx-kernels-int8-vnni.c: the AVX-512 VNNI int8 inner-product kernel.
 * Built with -mavx512f -mavx512bw -mavx512vnni only; idx-simd.c calls it
 * only when the CPU has all three.
 *
 * vpdpbusd multiplies unsigned by signed bytes and adds groups of four
 * products into int32 lanes, without saturation. To use it on two signed
 * vectors, a is shifted into unsigned range (a + 128, an xor of the sign
 * bit), and the surplus 128 * sum(b) is removed at the end; sum(b) comes
 * from a second vpdpbusd against a vector of ones. The result is exact
 * for every input: the largest partial sum, 255 * 128 * n, fits in int32
 * for n <= 2^16. */
#include <immintrin.h>

#include "idx-private.h"

int32_t idx_dot_i8_vnni(const int8_t *a, const int8_t *b, size_t n) {
    const __m512i sign_bit = _mm512_set1_epi8((char)0x80);
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i acc0 = _mm512_setzero_si512();
    __m512i acc1 = _mm512_setzero_si512();
    __m512i sum_b = _mm512_setzero_si512();
    size_t i = 0;

    for (; i + 128 <= n; i += 128) {
        __m512i a0 = _mm512_loadu_si512((const void *)(a + i));
        __m512i b0 = _mm512_loadu_si512((const void *)(b + i));
        __m512i a1 = _mm512_loadu_si512((const void *)(a + i + 64));
        __m512i b1 = _mm512_loadu_si512((const void *)(b + i + 64));
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_xor_si512(a0, sign_bit), b0);
        acc1 = _mm512_dpbusd_epi32(acc1, _mm512_xor_si512(a1, sign_bit), b1);
        sum_b = _mm512_dpbusd_epi32(sum_b, ones, b0);
        sum_b = _mm512_dpbusd_epi32(sum_b, ones, b1);
    }
    for (; i < n; i += 64) {
        /* Masked-off bytes load as zero in both vectors: (0 + 128) * 0
         * adds nothing, and no byte past either vector is read. */
        size_t left = n - i < 64 ? n - i : 64;
        __mmask64 mask = left == 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
        __m512i a0 = _mm512_maskz_loadu_epi8(mask, a + i);
        __m512i b0 = _mm512_maskz_loadu_epi8(mask, b + i);
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_xor_si512(a0, sign_bit), b0);
        sum_b = _mm512_dpbusd_epi32(sum_b, ones, b0);
    }
    __m512i acc = _mm512_add_epi32(acc0, acc1);
    return _mm512_reduce_add_epi32(acc) - 128 * _mm512_reduce_add_epi32(sum_b);
}
