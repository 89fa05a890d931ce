/* harness.h: the minimal test harness every deja test uses.
 *
 * A test file defines `static void test_name(void)` functions and a main
 * that calls RUN(test_name) for each and returns harness_result(). Asserts
 * are typed and print both operands with file and line; a failed assert
 * ends the current test (longjmp) and the file's exit status is non-zero.
 * Each test file is its own process under a meson timeout. */
#ifndef DEJA_TEST_HARNESS_H
#define DEJA_TEST_HARNESS_H

#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static jmp_buf harness_jmp;
static int harness_failed_tests;
static int harness_run_tests;

#define HARNESS_FAIL(...)                                                      \
    do {                                                                       \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                        \
        fprintf(stderr, __VA_ARGS__);                                          \
        fprintf(stderr, "\n");                                                 \
        longjmp(harness_jmp, 1);                                               \
    } while (0)

#define ASSERT_TRUE(c)                                                         \
    do {                                                                       \
        if (!(c)) HARNESS_FAIL("ASSERT_TRUE(%s) failed", #c);                  \
    } while (0)

#define ASSERT_INT_OP_(a, op, b)                                               \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (!(a_ op b_))                                                       \
            HARNESS_FAIL("ASSERT(%s %s %s): %lld vs %lld", #a, #op, #b, a_,    \
                         b_);                                                  \
    } while (0)
#define ASSERT_EQ(a, b) ASSERT_INT_OP_(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP_(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP_(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP_(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP_(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP_(a, >=, b)

#define ASSERT_U64_EQ(a, b)                                                    \
    do {                                                                       \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                       \
        if (a_ != b_)                                                          \
            HARNESS_FAIL("ASSERT_U64_EQ(%s, %s): %" PRIu64 " vs %" PRIu64, #a, \
                         #b, a_, b_);                                          \
    } while (0)

/* Returns DEJA_ERR_* names readably when deja_strerror is linked. */
#define ASSERT_OK(e)                                                           \
    do {                                                                       \
        int r_ = (e);                                                          \
        if (r_ != 0) HARNESS_FAIL("ASSERT_OK(%s): got %d", #e, r_);            \
    } while (0)

#define ASSERT_NEAR(a, b, eps)                                                 \
    do {                                                                       \
        double a_ = (double)(a), b_ = (double)(b);                             \
        if (!(fabs(a_ - b_) <= (double)(eps)))                                 \
            HARNESS_FAIL("ASSERT_NEAR(%s, %s, %s): %.9g vs %.9g", #a, #b,      \
                         #eps, a_, b_);                                        \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                    \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                 \
            HARNESS_FAIL("ASSERT_STR_EQ(%s, %s): \"%s\" vs \"%s\"", #a, #b,    \
                         a_ ? a_ : "(null)", b_ ? b_ : "(null)");              \
    } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                                 \
    do {                                                                       \
        size_t n_ = (size_t)(n);                                               \
        if (memcmp((a), (b), n_) != 0)                                         \
            HARNESS_FAIL("ASSERT_MEM_EQ(%s, %s, %zu): contents differ", #a,    \
                         #b, n_);                                              \
    } while (0)

#define RUN(fn)                                                                \
    do {                                                                       \
        harness_run_tests++;                                                   \
        fprintf(stderr, "-- %s\n", #fn);                                       \
        if (setjmp(harness_jmp) == 0) {                                        \
            fn();                                                              \
            fprintf(stderr, "   ok   %s\n", #fn);                              \
        } else {                                                               \
            harness_failed_tests++;                                            \
            fprintf(stderr, "   FAIL %s\n", #fn);                              \
        }                                                                      \
    } while (0)

static inline int harness_result(void) {
    fprintf(stderr, "%d of %d tests failed\n", harness_failed_tests,
            harness_run_tests);
    return harness_failed_tests ? 1 : 0;
}

#endif
