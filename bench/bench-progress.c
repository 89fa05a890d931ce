/* bench-progress.c: deja-bench's progress bar on stderr.
 *
 * Loading 100,000 entries or a ten-minute run is long enough that a
 * silent terminal looks hung, so phases show a bar with a count, the
 * elapsed time and an ETA. The bar is drawn by its own thread: workers
 * only bump an atomic counter, which costs them nothing measurable, and
 * the bar keeps moving while every worker is blocked on the network.
 * It is drawn only on a terminal (the caller decides), and erased when
 * the phase ends so that the report is not mixed with it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define BAR_WIDTH 30
#define REDRAW_NS 250000000L

struct bench_progress {
    char label[48];
    uint64_t total;
    double seconds;
    uint64_t start_ns;
    atomic_uint_fast64_t done;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    pthread_t thread;
};

static void format_duration(double s, char *out, size_t len) {
    if (s < 0 || s > 1e7)
        snprintf(out, len, "?");
    else if (s < 60)
        snprintf(out, len, "%.0fs", s);
    else if (s < 3600)
        snprintf(out, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(out, len, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void draw(bench_progress *p) {
    double elapsed = (double)(bench_now_ns() - p->start_ns) / 1e9;
    uint64_t done = atomic_load(&p->done);
    double frac = 0;
    if (p->total) frac = (double)done / (double)p->total;
    if (p->seconds > 0 && elapsed / p->seconds > frac) frac = elapsed / p->seconds;
    if (frac > 1) frac = 1;
    char bar[BAR_WIDTH + 1];
    int full = (int)(frac * BAR_WIDTH + 0.5);
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < full ? '#' : '.';
    bar[BAR_WIDTH] = 0;
    char el[16], eta[16];
    format_duration(elapsed, el, sizeof el);
    format_duration(frac > 0.001 ? elapsed * (1 - frac) / frac : -1, eta, sizeof eta);
    char count[48] = "";
    if (p->total)
        snprintf(count, sizeof count, " %llu/%llu", (unsigned long long)done,
                 (unsigned long long)p->total);
    else if (done)
        snprintf(count, sizeof count, " %llu", (unsigned long long)done);
    /* \r and erase-line keep the bar on one line of the terminal. */
    fprintf(stderr, "\r\033[K%s [%s] %3.0f%%%s  %s, ETA %s", p->label, bar, frac * 100,
            count, el, eta);
    fflush(stderr);
}

static void *progress_main(void *arg) {
    bench_progress *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        draw(p);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += REDRAW_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->wake, &p->lock, &until);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

bench_progress *bench_progress_start(int enabled, const char *label, uint64_t total,
                                     double seconds) {
    if (!enabled) return NULL;
    bench_progress *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->seconds = seconds;
    p->start_ns = bench_now_ns();
    atomic_init(&p->done, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (pthread_create(&p->thread, NULL, progress_main, p) != 0) {
        /* A missing progress bar is no reason to stop a benchmark. */
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->wake);
        free(p);
        return NULL;
    }
    return p;
}

void bench_progress_add(bench_progress *p, uint64_t n) {
    if (p) atomic_fetch_add_explicit(&p->done, n, memory_order_relaxed);
}

void bench_progress_set(bench_progress *p, uint64_t done) {
    if (p) atomic_store_explicit(&p->done, done, memory_order_relaxed);
}

void bench_progress_done(bench_progress *p) {
    if (p == NULL) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}
