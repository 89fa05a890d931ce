/* idx-simd.c: the kernel table and the run-time choice of kernel.
 *
 * The table is data, best first and scalar last; idx_simd_init() marks
 * which entries this CPU can run and makes the first runnable one (or the
 * one DEJA_SIMD names) active. The active kernel is the only mutable
 * global in deja: it is set on one thread before any index is used and
 * only read afterwards. */
#include <stdlib.h>
#include <string.h>

#include "idx-private.h"

struct kernel_entry {
    idx_kernel pub;
    int (*cpu_has)(void); /* NULL: runs everywhere */
};

#ifdef HAVE_AVX2
static int cpu_has_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

#ifdef HAVE_AVX512
/* The same four extensions the kernel file is compiled with, so the
 * compiler is free to use any of them there. __builtin_cpu_supports also
 * checks that the OS saves the ZMM state (XCR0). */
static int cpu_has_avx512(void) {
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq");
}
#endif

static struct kernel_entry kernels[] = {
#ifdef HAVE_AVX512
    {{"avx512", idx_dot_avx512, 0}, cpu_has_avx512},
#endif
#ifdef HAVE_AVX2
    {{"avx2", idx_dot_avx2, 0}, cpu_has_avx2},
#endif
    {{"scalar", idx_dot_scalar, 1}, NULL},
};

#define KERNEL_COUNT (sizeof kernels / sizeof kernels[0])
#define SCALAR_INDEX (KERNEL_COUNT - 1)

/* Scalar until idx_simd_init() runs, so a caller that forgets it gets
 * correct (if slow) results rather than a crash. */
static const struct kernel_entry *active = &kernels[SCALAR_INDEX];

/* Re-detects and re-reads DEJA_SIMD on every call, so a test can setenv()
 * and call it again to switch kernels. A DEJA_SIMD naming a kernel this
 * CPU cannot run selects the best runnable one below it (avx512 on an
 * AVX2-only CPU gives avx2); an unknown name is ignored. */
void idx_simd_init(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
#endif
    for (size_t i = 0; i < KERNEL_COUNT; i++)
        kernels[i].pub.supported =
            kernels[i].cpu_has ? kernels[i].cpu_has() : 1;

    size_t first = 0;
    const char *want = getenv("DEJA_SIMD");
    if (want && *want) {
        for (size_t i = 0; i < KERNEL_COUNT; i++) {
            if (strcmp(want, kernels[i].pub.name) == 0) {
                first = i;
                break;
            }
        }
    }
    active = &kernels[SCALAR_INDEX];
    for (size_t i = first; i < KERNEL_COUNT; i++) {
        if (kernels[i].pub.supported) {
            active = &kernels[i];
            break;
        }
    }
}

const char *idx_simd_name(void) { return active->pub.name; }

float idx_dot(const float *a, const float *b, size_t n) {
    return active->pub.dot(a, b, n);
}

idx_dot_fn idx_simd_dot_fn(void) { return active->pub.dot; }

size_t idx_kernel_count(void) { return KERNEL_COUNT; }

const idx_kernel *idx_kernel_get(size_t i) {
    return i < KERNEL_COUNT ? &kernels[i].pub : NULL;
}
