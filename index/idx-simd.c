/* idx-simd.c: the kernel tables and the run-time choice of kernels.
 *
 * Two tables, f32 and int8, each data, best first and scalar last;
 * idx_simd_init() marks which entries this CPU can run and makes the first
 * runnable one of each (at or below the level DEJA_SIMD names) active.
 * The active kernels are the only mutable globals in deja: they are set
 * on one thread before any index is used and only read afterwards. */
#include <stdlib.h>
#include <string.h>

#include "idx-private.h"

/* DEJA_SIMD names a level (the f32 kernel names); each kernel belongs to
 * one, so forcing "avx2" also keeps the int8 kernels at AVX2 or below. */
enum simd_level { LEVEL_AVX512, LEVEL_AVX2, LEVEL_SCALAR };

struct kernel_entry {
    idx_kernel pub;
    int (*cpu_has)(void); /* NULL: runs everywhere */
    enum simd_level level;
};

struct kernel_i8_entry {
    idx_kernel_i8 pub;
    int (*cpu_has)(void);
    enum simd_level level;
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
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
}
#endif

#ifdef HAVE_AVX512_INT8
static int cpu_has_avx512bw(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}
#endif

#ifdef HAVE_AVX512_VNNI
static int cpu_has_avx512vnni(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}
#endif

#ifdef HAVE_AVX2_INT8
static int cpu_has_avx2_only(void) {
    return __builtin_cpu_supports("avx2");
}
#endif

static struct kernel_entry kernels[] = {
#ifdef HAVE_AVX512
    {{"avx512", idx_dot_avx512, 0}, cpu_has_avx512, LEVEL_AVX512},
#endif
#ifdef HAVE_AVX2
    {{"avx2", idx_dot_avx2, 0}, cpu_has_avx2, LEVEL_AVX2},
#endif
    {{"scalar", idx_dot_scalar, 1}, NULL, LEVEL_SCALAR},
};

static struct kernel_i8_entry kernels_i8[] = {
#ifdef HAVE_AVX512_VNNI
    {{"avx512vnni", idx_dot_i8_vnni, 0}, cpu_has_avx512vnni, LEVEL_AVX512},
#endif
#ifdef HAVE_AVX512_INT8
    {{"avx512bw", idx_dot_i8_avx512bw, 0}, cpu_has_avx512bw, LEVEL_AVX512},
#endif
#ifdef HAVE_AVX2_INT8
    {{"avx2", idx_dot_i8_avx2, 0}, cpu_has_avx2_only, LEVEL_AVX2},
#endif
    {{"scalar", idx_dot_i8_scalar, 1}, NULL, LEVEL_SCALAR},
};

#define KERNEL_COUNT (sizeof kernels / sizeof kernels[0])
#define SCALAR_INDEX (KERNEL_COUNT - 1)
#define KERNEL_I8_COUNT (sizeof kernels_i8 / sizeof kernels_i8[0])

/* Scalar until idx_simd_init() runs, so a caller that forgets it gets
 * correct (if slow) results rather than a crash. */
static const struct kernel_entry *active = &kernels[SCALAR_INDEX];
static const struct kernel_i8_entry *active_i8 = &kernels_i8[KERNEL_I8_COUNT - 1];

/* Re-detects and re-reads DEJA_SIMD on every call, so a test can setenv()
 * and call it again to switch kernels. A DEJA_SIMD naming a kernel this
 * CPU cannot run selects the best runnable one below it (avx512 on an
 * AVX2-only CPU gives avx2); an unknown name is ignored. */
void idx_simd_init(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
#endif
    for (size_t i = 0; i < KERNEL_COUNT; i++)
        kernels[i].pub.supported = kernels[i].cpu_has ? kernels[i].cpu_has() : 1;

    for (size_t i = 0; i < KERNEL_I8_COUNT; i++)
        kernels_i8[i].pub.supported = kernels_i8[i].cpu_has ? kernels_i8[i].cpu_has() : 1;

    enum simd_level want_level = LEVEL_AVX512;
    const char *want = getenv("DEJA_SIMD");
    if (want && *want) {
        for (size_t i = 0; i < KERNEL_COUNT; i++) {
            if (strcmp(want, kernels[i].pub.name) == 0) {
                want_level = kernels[i].level;
                break;
            }
        }
    }
    active = &kernels[SCALAR_INDEX];
    for (size_t i = 0; i < KERNEL_COUNT; i++) {
        if (kernels[i].level >= want_level && kernels[i].pub.supported) {
            active = &kernels[i];
            break;
        }
    }
    active_i8 = &kernels_i8[KERNEL_I8_COUNT - 1];
    for (size_t i = 0; i < KERNEL_I8_COUNT; i++) {
        if (kernels_i8[i].level >= want_level && kernels_i8[i].pub.supported) {
            active_i8 = &kernels_i8[i];
            break;
        }
    }
}

const char *idx_simd_name(void) {
    return active->pub.name;
}

float idx_dot(const float *a, const float *b, size_t n) {
    return active->pub.dot(a, b, n);
}

idx_dot_fn idx_simd_dot_fn(void) {
    return active->pub.dot;
}

size_t idx_kernel_count(void) {
    return KERNEL_COUNT;
}

const idx_kernel *idx_kernel_get(size_t i) {
    return i < KERNEL_COUNT ? &kernels[i].pub : NULL;
}

const char *idx_simd_i8_name(void) {
    return active_i8->pub.name;
}

idx_dot_i8_fn idx_simd_dot_i8_fn(void) {
    return active_i8->pub.dot;
}

size_t idx_kernel_i8_count(void) {
    return KERNEL_I8_COUNT;
}

const idx_kernel_i8 *idx_kernel_i8_get(size_t i) {
    return i < KERNEL_I8_COUNT ? &kernels_i8[i].pub : NULL;
}
