/* test-index-simd.c: every inner-product kernel this CPU can run agrees
 * with the scalar kernel, for every length and alignment, never reads past
 * its inputs, the CPU detection agrees with /proc/cpuinfo, and DEJA_SIMD
 * forces the kernel choice. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "idx.h"

static uint64_t rng_state;

static void rng_seed(uint64_t seed) {
    rng_state = seed;
}

/* splitmix64: small, seedable, and the same on every platform. */
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static float rng_unit(void) {
    return (float)(rng_next() >> 40) / 16777216.0f;
}

static void fill_positive(float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        v[i] = rng_unit();
}

static void fill_unit_vector(float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        v[i] = 2.0f * rng_unit() - 1.0f;
    if (n > 0) ASSERT_OK(idx_normalize(v, (uint32_t)n));
}

static const idx_kernel *scalar_kernel(void) {
    const idx_kernel *k = idx_kernel_get(idx_kernel_count() - 1);
    ASSERT_TRUE(k != NULL);
    ASSERT_STR_EQ(k->name, "scalar");
    return k;
}

/* With positive components there is no cancellation, so the kernels'
 * different summation orders must agree to a relative 1e-5. */
static void check_relative(const idx_kernel *k, const float *a, const float *b,
                           size_t n) {
    float want = scalar_kernel()->dot(a, b, n);
    float got = k->dot(a, b, n);
    double tolerance = 1e-5 * fabs((double)want);
    if (n == 0) ASSERT_TRUE(got == 0.0f);
    if (fabs((double)got - (double)want) > tolerance)
        HARNESS_FAIL("kernel %s, n=%zu: %.9g vs scalar %.9g", k->name, n, (double)got,
                     (double)want);
}

static void check_absolute(const idx_kernel *k, const float *a, const float *b,
                           size_t n) {
    float want = scalar_kernel()->dot(a, b, n);
    float got = k->dot(a, b, n);
    if (fabs((double)got - (double)want) > 1e-5)
        HARNESS_FAIL("kernel %s, n=%zu: %.9g vs scalar %.9g", k->name, n, (double)got,
                     (double)want);
}

static void test_scalar_kernel_is_listed_last_and_always_supported(void) {
    idx_simd_init();
    ASSERT_GE(idx_kernel_count(), 1);
    const idx_kernel *k = scalar_kernel();
    ASSERT_EQ(k->supported, 1);
    ASSERT_TRUE(idx_kernel_get(idx_kernel_count()) == NULL);
    for (size_t i = 0; i < idx_kernel_count(); i++) {
        ASSERT_TRUE(idx_kernel_get(i)->name != NULL);
        ASSERT_TRUE(idx_kernel_get(i)->dot != NULL);
    }
}

static void test_scalar_kernel_computes_the_inner_product(void) {
    const float a[5] = {1, 2, 3, 4, 5};
    const float b[5] = {5, 4, 3, 2, 1};
    ASSERT_NEAR(scalar_kernel()->dot(a, b, 5), 35.0, 0.0);
    ASSERT_NEAR(scalar_kernel()->dot(a, b, 0), 0.0, 0.0);
}

static void test_kernels_match_scalar_for_every_length_up_to_100(void) {
    idx_simd_init();
    float a[101], b[101];
    rng_seed(1);
    for (size_t i = 0; i < idx_kernel_count(); i++) {
        const idx_kernel *k = idx_kernel_get(i);
        if (!k->supported) continue;
        for (size_t n = 0; n <= 100; n++) {
            fill_positive(a, n);
            fill_positive(b, n);
            check_relative(k, a, b, n);
            if (n == 0) continue;
            fill_unit_vector(a, n);
            fill_unit_vector(b, n);
            check_absolute(k, a, b, n);
        }
    }
}

static void test_kernels_match_scalar_on_unaligned_pointers(void) {
    idx_simd_init();
    /* One extra float so a + 1 still has n elements. */
    static float a[4097], b[4097];
    const size_t lengths[] = {1, 7, 15, 16, 17, 63, 64, 65, 100};
    rng_seed(2);
    for (size_t i = 0; i < idx_kernel_count(); i++) {
        const idx_kernel *k = idx_kernel_get(i);
        if (!k->supported) continue;
        for (size_t j = 0; j < sizeof lengths / sizeof lengths[0]; j++) {
            size_t n = lengths[j];
            fill_positive(a, n + 1);
            fill_positive(b, n + 1);
            check_relative(k, a + 1, b + 1, n);
            check_relative(k, a + 1, b, n);
            fill_unit_vector(a + 1, n);
            fill_unit_vector(b + 1, n);
            check_absolute(k, a + 1, b + 1, n);
        }
    }
}

static void test_kernels_match_scalar_on_embedding_lengths(void) {
    idx_simd_init();
    static float a[4097], b[4097];
    const size_t lengths[] = {384, 768, 1024, 1536, 3072, 4096};
    rng_seed(3);
    for (size_t i = 0; i < idx_kernel_count(); i++) {
        const idx_kernel *k = idx_kernel_get(i);
        if (!k->supported) continue;
        for (size_t j = 0; j < sizeof lengths / sizeof lengths[0]; j++) {
            size_t n = lengths[j];
            for (size_t offset = 0; offset <= 1; offset++) {
                fill_unit_vector(a + offset, n);
                fill_unit_vector(b + offset, n);
                check_absolute(k, a + offset, b + offset, n);
                /* a . a of a unit vector is 1. */
                ASSERT_NEAR(k->dot(a + offset, a + offset, n), 1.0, 1e-5);
                fill_positive(a + offset, n);
                fill_positive(b + offset, n);
                check_relative(k, a + offset, b + offset, n);
            }
        }
    }
}

/* Vectors that end exactly at a PROT_NONE page: a kernel whose tail read
 * one float too far would crash here. */
static void test_kernels_never_read_past_the_end(void) {
    idx_simd_init();
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, (size_t)page * 4, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(map != MAP_FAILED);
    ASSERT_EQ(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    ASSERT_EQ(mprotect(map + 3 * page, (size_t)page, PROT_NONE), 0);
    float *a_end = (float *)(map + page);
    float *b_end = (float *)(map + 3 * page);
    rng_seed(4);
    for (size_t i = 0; i < idx_kernel_count(); i++) {
        const idx_kernel *k = idx_kernel_get(i);
        if (!k->supported) continue;
        for (size_t n = 1; n <= 100; n++) {
            fill_positive(a_end - n, n);
            fill_positive(b_end - n, n);
            check_relative(k, a_end - n, b_end - n, n);
        }
    }
    munmap(map, (size_t)page * 4);
}

static void test_deja_simd_scalar_forces_the_scalar_kernel(void) {
    ASSERT_EQ(setenv("DEJA_SIMD", "scalar", 1), 0);
    idx_simd_init();
    ASSERT_STR_EQ(idx_simd_name(), "scalar");
    float a[3] = {1, 2, 3}, b[3] = {4, 5, 6};
    ASSERT_NEAR(idx_dot(a, b, 3), 32.0, 0.0);
    unsetenv("DEJA_SIMD");
    idx_simd_init();
}

static void test_deja_simd_forces_each_supported_kernel(void) {
    for (size_t i = 0; i < idx_kernel_count(); i++) {
        const idx_kernel *k = idx_kernel_get(i);
        if (!k->supported) continue;
        ASSERT_EQ(setenv("DEJA_SIMD", k->name, 1), 0);
        idx_simd_init();
        ASSERT_STR_EQ(idx_simd_name(), k->name);
    }
    unsetenv("DEJA_SIMD");
    idx_simd_init();
}

/* ---- CPU detection, checked against the kernel's view ----------------------
 *
 * idx_simd_init asks the CPU (cpuid through __builtin_cpu_supports). The
 * expectations here come from elsewhere: the flags Linux lists in
 * /proc/cpuinfo, which it clears when the OS does not save the register
 * state a feature needs. So a detection that is wrong -- a missing or
 * extra feature test, a kernel marked runnable on a CPU without it --
 * makes these tests fail instead of agreeing with itself. */

/* The features each kernel needs, in /proc/cpuinfo's spelling (the same
 * sets idx-simd.c tests, written out independently). */
static const struct {
    const char *name;
    const char *flags[5];
} kernel_needs[] =
    {
        {"avx512", {"avx512f", "avx512vl", "avx512bw", "avx512dq"}},
        {"avx2", {"avx2", "fma"}},
        {"scalar", {0}},
},
  kernel_i8_needs[] = {
      {"avx512vnni", {"avx512f", "avx512bw", "avx512_vnni"}},
      {"avx512bw", {"avx512f", "avx512bw"}},
      {"avx2", {"avx2"}},
      {"scalar", {0}},
};

/* The "flags" line of the first processor in /proc/cpuinfo, with a space
 * before and after, or "" where there is none (not x86, no /proc). */
static void cpuinfo_flags(char *out, size_t cap) {
    out[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) return;
    static char line[16384];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        char *colon = strchr(line, ':');
        if (colon == NULL) continue;
        line[strcspn(line, "\n")] = 0;
        snprintf(out, cap, "%s ", colon + 1);
        break;
    }
    fclose(f);
}

static int cpu_has_all(const char *flags, const char *const *need) {
    for (int i = 0; i < 5 && need[i]; i++) {
        char word[64];
        snprintf(word, sizeof word, " %s ", need[i]);
        if (strstr(flags, word) == NULL) return 0;
    }
    return 1;
}

/* Whether the CPU can run the named kernel by /proc/cpuinfo; fails the
 * test on a kernel the table above does not know. */
static int expect_runnable(const char *flags, int i8, const char *name) {
    size_t n = i8 ? sizeof kernel_i8_needs / sizeof kernel_i8_needs[0]
                  : sizeof kernel_needs / sizeof kernel_needs[0];
    for (size_t i = 0; i < n; i++) {
        const char *known = i8 ? kernel_i8_needs[i].name : kernel_needs[i].name;
        if (strcmp(known, name) == 0)
            return cpu_has_all(flags,
                               i8 ? kernel_i8_needs[i].flags : kernel_needs[i].flags);
    }
    HARNESS_FAIL("kernel %s%s is not in this test's table of features", name,
                 i8 ? " (int8)" : "");
}

static void test_each_kernel_is_supported_exactly_when_proc_cpuinfo_says_so(void) {
    char flags[16384];
    cpuinfo_flags(flags, sizeof flags);
    if (flags[0] == 0) {
        fprintf(stderr, "   (no flags in /proc/cpuinfo: only scalar can be checked)\n");
        ASSERT_STR_EQ(idx_kernel_get(idx_kernel_count() - 1)->name, "scalar");
        return;
    }
    unsetenv("DEJA_SIMD");
    idx_simd_init();
    for (size_t i = 0; i < idx_kernel_count(); i++) {
        const idx_kernel *k = idx_kernel_get(i);
        if ((k->supported != 0) != expect_runnable(flags, 0, k->name))
            HARNESS_FAIL("kernel %s: supported = %d, /proc/cpuinfo disagrees", k->name,
                         k->supported);
    }
    for (size_t i = 0; i < idx_kernel_i8_count(); i++) {
        const idx_kernel_i8 *k = idx_kernel_i8_get(i);
        /* supported is a truth value here (__builtin_cpu_supports's own). */
        if ((k->supported != 0) != expect_runnable(flags, 1, k->name))
            HARNESS_FAIL("int8 kernel %s: supported = %d, /proc/cpuinfo disagrees",
                         k->name, k->supported);
    }
}

/* The expected default is the first kernel built in (listed) that the
 * CPU runs by /proc/cpuinfo, not by the supported flags idx_simd_init
 * wrote itself. */
static void test_without_deja_simd_the_best_kernel_the_cpu_has_is_active(void) {
    char flags[16384];
    cpuinfo_flags(flags, sizeof flags);
    unsetenv("DEJA_SIMD");
    idx_simd_init();
    const char *best = "scalar", *best_i8 = "scalar";
    if (flags[0]) {
        for (size_t i = idx_kernel_count(); i-- > 0;)
            if (expect_runnable(flags, 0, idx_kernel_get(i)->name))
                best = idx_kernel_get(i)->name;
        for (size_t i = idx_kernel_i8_count(); i-- > 0;)
            if (expect_runnable(flags, 1, idx_kernel_i8_get(i)->name))
                best_i8 = idx_kernel_i8_get(i)->name;
    }
    ASSERT_STR_EQ(idx_simd_name(), best);
    ASSERT_STR_EQ(idx_simd_i8_name(), best_i8);
}

static void test_unknown_deja_simd_value_is_ignored(void) {
    unsetenv("DEJA_SIMD");
    idx_simd_init();
    const char *best = idx_simd_name();
    ASSERT_EQ(setenv("DEJA_SIMD", "sse9", 1), 0);
    idx_simd_init();
    ASSERT_STR_EQ(idx_simd_name(), best);
    unsetenv("DEJA_SIMD");
    idx_simd_init();
}

/* Asking for avx512 on a CPU without it must still give a kernel the CPU
 * can run: the best supported one below it. */
static void test_forcing_an_unsupported_kernel_falls_back_to_a_supported_one(void) {
    for (size_t i = 0; i < idx_kernel_count(); i++) {
        ASSERT_EQ(setenv("DEJA_SIMD", idx_kernel_get(i)->name, 1), 0);
        idx_simd_init();
        size_t active = idx_kernel_count();
        for (size_t j = 0; j < idx_kernel_count(); j++)
            if (strcmp(idx_kernel_get(j)->name, idx_simd_name()) == 0) active = j;
        ASSERT_LT(active, idx_kernel_count());
        ASSERT_GE(active, i);
        ASSERT_EQ(idx_kernel_get(active)->supported, 1);
    }
    unsetenv("DEJA_SIMD");
    idx_simd_init();
}

int main(void) {
    RUN(test_scalar_kernel_is_listed_last_and_always_supported);
    RUN(test_scalar_kernel_computes_the_inner_product);
    RUN(test_kernels_match_scalar_for_every_length_up_to_100);
    RUN(test_kernels_match_scalar_on_unaligned_pointers);
    RUN(test_kernels_match_scalar_on_embedding_lengths);
    RUN(test_kernels_never_read_past_the_end);
    RUN(test_deja_simd_scalar_forces_the_scalar_kernel);
    RUN(test_deja_simd_forces_each_supported_kernel);
    RUN(test_each_kernel_is_supported_exactly_when_proc_cpuinfo_says_so);
    RUN(test_without_deja_simd_the_best_kernel_the_cpu_has_is_active);
    RUN(test_unknown_deja_simd_value_is_ignored);
    RUN(test_forcing_an_unsupported_kernel_falls_back_to_a_supported_one);
    return harness_result();
}
