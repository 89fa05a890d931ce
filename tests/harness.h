/* harness.h: the minimal test harness every deja test uses.
 *
 * A test file defines `static void test_name(void)` functions and a main
 * that calls RUN(test_name) for each and returns harness_result(). Asserts
 * are typed and print both operands with file and line; a failed assert
 * ends the current test (longjmp) and the file's exit status is non-zero.
 *
 * Each RUN forks: the test runs in a child process under a timeout
 * (HARNESS_TIMEOUT_S, then SIGKILL) and the parent reports it, so a test
 * that crashes, hangs or leaves its state damaged fails alone, and no
 * test sees what an earlier one changed. What main() sets up before the
 * RUNs (a dejad, a fixture) is inherited by every test; what a test
 * changes dies with its child. A test that stops or restarts a dejad
 * starts its own (only the process that started a server can wait for
 * it), builds the state it needs with the file's fixture helpers, and
 * stops it before it returns. The file as a whole is its own process
 * under a meson timeout. */
#ifndef DEJA_TEST_HARNESS_H
#define DEJA_TEST_HARNESS_H

#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long one test may run before it is killed and counted failed. */
#ifndef HARNESS_TIMEOUT_S
#define HARNESS_TIMEOUT_S 120
#endif

static jmp_buf harness_jmp;
static int harness_failed_tests;
static int harness_run_tests;

#define HARNESS_FAIL(...)                                                                \
    do {                                                                                 \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                  \
        fprintf(stderr, __VA_ARGS__);                                                    \
        fprintf(stderr, "\n");                                                           \
        longjmp(harness_jmp, 1);                                                         \
    } while (0)

#define ASSERT_TRUE(c)                                                                   \
    do {                                                                                 \
        if (!(c)) HARNESS_FAIL("ASSERT_TRUE(%s) failed", #c);                            \
    } while (0)

#define ASSERT_INT_OP_(a, op, b)                                                         \
    do {                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                              \
        if (!(a_ op b_))                                                                 \
            HARNESS_FAIL("ASSERT(%s %s %s): %lld vs %lld", #a, #op, #b, a_, b_);         \
    } while (0)
#define ASSERT_EQ(a, b) ASSERT_INT_OP_(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP_(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP_(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP_(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP_(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP_(a, >=, b)

#define ASSERT_U64_EQ(a, b)                                                              \
    do {                                                                                 \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                 \
        if (a_ != b_)                                                                    \
            HARNESS_FAIL("ASSERT_U64_EQ(%s, %s): %" PRIu64 " vs %" PRIu64, #a, #b, a_,   \
                         b_);                                                            \
    } while (0)

/* Returns DEJA_ERR_* names readably when deja_strerror is linked. */
#define ASSERT_OK(e)                                                                     \
    do {                                                                                 \
        int r_ = (e);                                                                    \
        if (r_ != 0) HARNESS_FAIL("ASSERT_OK(%s): got %d", #e, r_);                      \
    } while (0)

#define ASSERT_NEAR(a, b, eps)                                                           \
    do {                                                                                 \
        double a_ = (double)(a), b_ = (double)(b);                                       \
        if (!(fabs(a_ - b_) <= (double)(eps)))                                           \
            HARNESS_FAIL("ASSERT_NEAR(%s, %s, %s): %.9g vs %.9g", #a, #b, #eps, a_, b_); \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                              \
    do {                                                                                 \
        const char *a_ = (a), *b_ = (b);                                                 \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                           \
            HARNESS_FAIL("ASSERT_STR_EQ(%s, %s): \"%s\" vs \"%s\"", #a, #b,              \
                         a_ ? a_ : "(null)", b_ ? b_ : "(null)");                        \
    } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                                           \
    do {                                                                                 \
        size_t n_ = (size_t)(n);                                                         \
        if (memcmp((a), (b), n_) != 0)                                                   \
            HARNESS_FAIL("ASSERT_MEM_EQ(%s, %s, %zu): contents differ", #a, #b, n_);     \
    } while (0)

/* Waits for the test in child pid; returns its wait status, or -1 after
 * killing it at the timeout. Polls (from 1 ms up to 20 ms) rather than
 * catching SIGCHLD, so the harness installs no signal handler that a test
 * could trip over. */
static inline int harness_wait(pid_t pid) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long pause_ms = 1;
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) return status;
        if (got < 0) return 0x7f00; /* lost: reported as a failure */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= HARNESS_TIMEOUT_S) {
            kill(-pid, SIGKILL); /* the test and whatever it started */
            waitpid(pid, NULL, 0);
            return -1;
        }
        struct timespec ts = {0, pause_ms * 1000000L};
        nanosleep(&ts, NULL);
        if (pause_ms < 20) pause_ms *= 2;
    }
}

/* Runs one test in a child process and reports it. The child leaves
 * through exit(), not _exit(), so that a leak checker and stdio see a
 * normal end of the process. It leads its own process group, so that a
 * process the test started and left running (a dejad it never stopped)
 * is found, killed and reported as a failure: a stray server would hold
 * the test's output pipe open and hang the runner. */
static inline void harness_run(const char *name, void (*fn)(void)) {
    harness_run_tests++;
    fprintf(stderr, "-- %s\n", name);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("harness: fork");
        harness_failed_tests++;
        fprintf(stderr, "   FAIL %s\n", name);
        return;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (setjmp(harness_jmp) == 0) {
            fn();
            exit(0);
        }
        exit(1);
    }
    setpgid(pid, pid); /* whichever of the two runs first */
    int status = harness_wait(pid);
    int stray = status != -1 && kill(-pid, 0) == 0;
    if (stray) {
        kill(-pid, SIGKILL);
        fprintf(stderr, "   %s left a process running; killed it\n", name);
    }
    if (!stray && status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        fprintf(stderr, "   ok   %s\n", name);
        return;
    }
    harness_failed_tests++;
    if (status == -1)
        fprintf(stderr, "   FAIL %s (killed after %d s)\n", name, HARNESS_TIMEOUT_S);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "   FAIL %s (signal %d)\n", name, WTERMSIG(status));
    else
        fprintf(stderr, "   FAIL %s\n", name);
}

#define RUN(fn) harness_run(#fn, fn)

static inline int harness_result(void) {
    fprintf(stderr, "%d of %d tests failed\n", harness_failed_tests, harness_run_tests);
    return harness_failed_tests ? 1 : 0;
}

#endif
