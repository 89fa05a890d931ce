/* bench-plot.c: --plot out.svg -- charts of a run through gnuplot.
 *
 * deja does not depend on gnuplot: the data (out.dat) and the script
 * (out.gp) are always written next to the chart, and gnuplot is run only
 * when it is on PATH; otherwise deja-bench says how to install it, and
 * `gnuplot out.gp` draws the same chart later. Charts:
 *  - index: recall@10 against QPS, one line per index over the ef sweep
 *    (the usual ANN trade-off chart, QPS on a log scale);
 *  - server: latency by percentile, HdrHistogram style, the x axis
 *    stretched so that 99%, 99.9% and 99.99% get equal room;
 *  - mixed: hit rate over the stream against the sequential oracle's. */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

typedef struct plot_files {
    char svg[4096], gp[4100], dat[4100];
    FILE *gpf, *datf;
} plot_files;

static int open_files(const char *path, plot_files *p) {
    snprintf(p->svg, sizeof p->svg, "%s", path);
    size_t n = strlen(p->svg);
    size_t stem = n > 4 && !strcmp(p->svg + n - 4, ".svg") ? n - 4 : n;
    snprintf(p->gp, sizeof p->gp, "%.*s.gp", (int)stem, p->svg);
    snprintf(p->dat, sizeof p->dat, "%.*s.dat", (int)stem, p->svg);
    p->gpf = fopen(p->gp, "w");
    p->datf = fopen(p->dat, "w");
    if (p->gpf && p->datf) return 0;
    fprintf(stderr, "deja-bench: cannot write %s / %s: %s\n", p->gp, p->dat,
            strerror(errno));
    if (p->gpf) fclose(p->gpf);
    if (p->datf) fclose(p->datf);
    return -1;
}

/* A gnuplot single-quoted string: only ' needs doubling inside. */
static void gp_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static void gp_header(FILE *f, const plot_files *p, const char *title,
                      const bench_env *env) {
    fprintf(f, "# Written by deja-bench; run `gnuplot %s` to draw %s.\n", p->gp, p->svg);
    fprintf(f, "set terminal svg size 1000,640 dynamic noenhanced font 'sans,12'\n");
    fprintf(f, "set output ");
    gp_quote(f, p->svg);
    char full[2048];
    snprintf(full, sizeof full, "%s\n%s\n%s (%ld cpus), build %s", title, env->dataset,
             env->cpu, env->cpus, env->build_type);
    /* gnuplot titles take a newline as "\n" inside double quotes only. */
    fprintf(f, "\nset title \"");
    for (const char *s = full; *s; s++) {
        if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else
            fputc(*s, f);
    }
    fprintf(f, "\" font 'sans,11'\nset grid\n");
}

static int is_executable_on_path(const char *name) {
    const char *path = getenv("PATH");
    if (path == NULL) return 0;
    char dir[4096];
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(dir, sizeof dir, "%.*s/%s", (int)len, len ? path : ".", name);
        if (access(dir, X_OK) == 0) return 1;
        path += len;
        if (*path == ':') path++;
    }
    return 0;
}

/* Closes the files and runs gnuplot on the script. */
static int finish(plot_files *p, int quiet) {
    int bad = ferror(p->gpf) || ferror(p->datf);
    bad |= fclose(p->gpf) != 0;
    bad |= fclose(p->datf) != 0;
    if (bad) {
        fprintf(stderr, "deja-bench: cannot write %s / %s\n", p->gp, p->dat);
        return -1;
    }
    if (!is_executable_on_path("gnuplot")) {
        fprintf(stderr,
                "deja-bench: gnuplot not installed: apt-get install gnuplot-nox; then "
                "`gnuplot %s` draws %s (data in %s)\n",
                p->gp, p->svg, p->dat);
        return 0;
    }
    pid_t pid;
    char *argv[] = {"gnuplot", p->gp, NULL};
    int rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    int status = 0;
    if (rc != 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "deja-bench: gnuplot %s failed; the data is in %s\n", p->gp,
                p->dat);
        return -1;
    }
    if (!quiet) fprintf(stderr, "deja-bench: wrote %s\n", p->svg);
    return 0;
}

int bench_plot_index(const char *path, const bench_env *env,
                     const bench_index_result *r) {
    plot_files p;
    if (open_files(path, &p) != 0) return -1;
    gp_header(p.gpf, &p, "deja-bench index: recall@10 vs queries per second", env);
    /* Offsets keep the points at recall 1 off the frame; each point is
     * labelled with its ef. */
    fprintf(p.gpf, "set xlabel 'recall@10'\nset ylabel 'queries per second (all "
                   "threads)'\nset logscale y\nset key bottom left\n"
                   "set offsets graph 0.03, graph 0.03, graph 0.08, graph 0.08\nplot ");
    /* One data block per index: gnuplot's `index N` selects block N. */
    int block = 0;
    for (int i = 0; i < r->n_rows; i++) {
        const bench_index_row *w = &r->rows[i];
        if (w->skipped) continue;
        int first = i == 0 || strcmp(w->index, r->rows[i - 1].index) != 0;
        if (first) {
            if (block) fprintf(p.datf, "\n\n");
            fprintf(p.datf, "# %s: recall_at_10 qps qps_1t ef recall_at_1 hit_recall\n",
                    w->index);
            fprintf(p.gpf,
                    "%s'%s' index %d using 1:2 with linespoints pt 7 ps 0.8 title ",
                    block ? ", \\\n     " : "", p.dat, block);
            gp_quote(p.gpf, w->index);
            fprintf(p.gpf,
                    ", \\\n     '%s' index %d using 1:2:(($4) > 0 ? sprintf('ef %%d', "
                    "$4) : '') with labels offset 0,0.8 font ',9' notitle",
                    p.dat, block);
            block++;
        }
        fprintf(p.datf, "%.5f %.1f %.1f %u %.5f %.5f\n", w->recall_at_10, w->qps,
                w->qps_1t, w->ef, w->recall_at_1, w->hit_recall);
    }
    if (block == 0) fprintf(p.gpf, "NaN notitle");
    fprintf(p.gpf, "\n");
    return finish(&p, 0);
}

int bench_plot_server(const char *path, const bench_env *env, const bench_result *r) {
    plot_files p;
    if (open_files(path, &p) != 0) return -1;
    gp_header(p.gpf, &p,
              r->open_loop ? "deja-bench server: lookup latency by percentile (open loop)"
                           : "deja-bench server: lookup latency by percentile",
              env);
    /* gnuplot reads tic labels as format strings, so a literal percent
     * sign is %% there, written %%%% through fprintf. */
    fprintf(p.gpf,
            "set xlabel 'percentile'\nset ylabel 'latency (us)'\nset logscale x\n"
            "set xtics ('0%%%%' 1, '50%%%%' 2, '90%%%%' 10, '99%%%%' 100, "
            "'99.9%%%%' 1000, '99.99%%%%' 10000, '99.999%%%%' 100000)\n"
            "set key top left\n"
            "plot '%s' using 1:2 with lines lw 2 title 'lookups'\n",
            p.dat);
    /* x = 1 / (1 - q): each extra nine takes the same width. Points stop
     * where fewer than one sample lies beyond. */
    fprintf(p.datf, "# 1/(1-q) latency_us q\n");
    const bench_hist *h = &r->lookup_hist;
    for (int i = 0; i <= 60; i++) {
        double tail = 1.0;
        for (int j = 0; j < i; j++)
            tail /= 1.2589254117941673; /* 10^(1/10): ten points per nine */
        double q = 1.0 - tail;
        if (h->count == 0 || tail * (double)h->count < 1.0) break;
        fprintf(p.datf, "%.3f %.3f %.6f\n", 1.0 / tail,
                (double)bench_hist_quantile(h, q) / 1000.0, q);
    }
    return finish(&p, 0);
}

int bench_plot_mixed(const char *path, const bench_env *env,
                     const bench_mixed_result *r) {
    plot_files p;
    if (open_files(path, &p) != 0) return -1;
    gp_header(p.gpf, &p, "deja-bench mixed: hit rate over the stream", env);
    fprintf(p.gpf,
            "set xlabel 'share of the stream (%%)'\nset ylabel 'hit rate'\n"
            "set yrange [0:1]\nset key bottom right\n"
            "plot '%s' using 1:2 with linespoints lw 2 title 'deja', \\\n"
            "     '%s' using 1:3 with linespoints title 'sequential exact oracle'\n",
            p.dat, p.dat);
    fprintf(p.datf, "# stream_percent hit_rate oracle_hit_rate requests\n");
    for (uint32_t i = 0; i < r->intervals; i++) {
        uint64_t n = r->int_requests[i];
        fprintf(p.datf, "%.2f %.5f %.5f %llu\n", 100.0 * (i + 0.5) / r->intervals,
                n ? (double)r->int_hits[i] / n : 0, n ? (double)r->int_oracle[i] / n : 0,
                (unsigned long long)n);
    }
    return finish(&p, 0);
}
