/* idx-kernels-avx512.c: the AVX-512 inner-product kernel. This is the only
 * file built with the AVX-512 flags (F, VL, BW, DQ); idx-simd.c calls it
 * only when the CPU and the OS support all of them. */
#include <immintrin.h>

#include "idx-private.h"

float idx_dot_avx512(const float *a, const float *b, size_t n) {
    /* Four accumulators of 16 lanes keep four FMAs in flight, which is as
     * many as two loads per FMA can feed; the scan is then limited by
     * memory rather than by the FMA latency chain. */
    __m512 acc0 = _mm512_setzero_ps();
    __m512 acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps();
    __m512 acc3 = _mm512_setzero_ps();
    size_t i = 0;

    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16),
                               acc1);
        acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32),
                               acc2);
        acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48),
                               acc3);
    }
    for (; i + 16 <= n; i += 16)
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    if (i < n) {
        /* Masked loads fault on no lane that is masked off, so the tail
         * reads nothing past either vector. */
        __mmask16 mask = (__mmask16)((1u << (n - i)) - 1u);
        acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i),
                               _mm512_maskz_loadu_ps(mask, b + i), acc1);
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}
