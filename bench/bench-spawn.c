/* bench-spawn.c: --spawn, a private dejad for one benchmark run.
 *
 * The server gets a free loopback port (--port 0, learnt from
 * --port-file, so parallel runs never collide), a data folder in a fresh
 * temporary directory (or --data DIR, kept), and its log in that
 * directory, shown when it fails to start. The binary is --dejad PATH, or
 * the dejad next to deja-bench (installed side by side), or the one in the
 * build tree (server/dejad beside bench/), or dejad on PATH.
 *
 * dejad stays in deja-bench's process group, so Ctrl-C at the terminal
 * stops both. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

/* Loading a large data folder can take a while before dejad listens. */
#define START_TIMEOUT_MS 300000
#define STOP_TIMEOUT_MS 20000

static int is_executable(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static void find_dejad(const bench_opts *o, char *out, size_t len) {
    if (o->dejad_path) {
        snprintf(out, len, "%s", o->dejad_path);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            static const char *const near[] = {"%s/dejad", "%s/../server/dejad"};
            for (size_t i = 0; i < sizeof near / sizeof near[0]; i++) {
                snprintf(out, len, near[i], self);
                if (is_executable(out)) return;
            }
        }
    }
    snprintf(out, len, "dejad"); /* searched on PATH */
}

int bench_spawn_start(const bench_opts *o, bench_spawn *sp) {
    memset(sp, 0, sizeof *sp);
    if (dejad_spawn_mkdtemp("deja-bench", sp->tmpdir, sizeof sp->tmpdir) != 0) {
        fprintf(stderr, "deja-bench: mkdtemp in %s: %s\n",
                getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                strerror(errno));
        return -1;
    }
    if (o->spawn_data)
        snprintf(sp->data, sizeof sp->data, "%s", o->spawn_data);
    else
        snprintf(sp->data, sizeof sp->data, "%s/data", sp->tmpdir);
    snprintf(sp->log, sizeof sp->log, "%s/dejad.log", sp->tmpdir);
    char dejad[PATH_MAX];
    find_dejad(o, dejad, sizeof dejad);

    const char *args[8 + BENCH_MAX_DEJAD_ARGS];
    int argc = 0;
    if (o->fsync) {
        args[argc++] = "--fsync";
        args[argc++] = o->fsync;
    }
    if (o->auth_token) {
        args[argc++] = "--auth-token";
        args[argc++] = o->auth_token;
    }
    for (int i = 0; i < o->n_dejad_args; i++)
        args[argc++] = o->dejad_args[i];
    args[argc] = NULL;

    /* The description lists the arguments dejad_spawn gives, in order. */
    int len =
        snprintf(sp->desc, sizeof sp->desc,
                 "spawned %s --port 0 --port-file %s/port --data %s --unix %s/dejad.sock",
                 dejad, sp->tmpdir, sp->data, sp->tmpdir);
    for (int i = 0; i < argc && len < (int)sizeof sp->desc; i++) {
        /* The token is a secret: the report shows that one was set. */
        const char *shown =
            i > 0 && !strcmp(args[i - 1], "--auth-token") ? "***" : args[i];
        len += snprintf(sp->desc + len, sizeof sp->desc - (size_t)len, " %s", shown);
    }

    dejad_spawn_opts so = {
        .who = "deja-bench",
        .dejad = dejad,
        .run_dir = sp->tmpdir,
        .data = sp->data,
        .log = sp->log,
        .args = args,
        .start_timeout_ms = START_TIMEOUT_MS,
        .hint = " (use --dejad PATH)",
    };
    if (dejad_spawn(&so, &sp->proc) != 0) {
        bench_spawn_stop(sp);
        return -1;
    }
    snprintf(sp->addr, sizeof sp->addr, "%s", sp->proc.addr);
    return 0;
}

int bench_spawn_stop(bench_spawn *sp) {
    int result = -1;
    if (sp->proc.pid > 0) {
        result = dejad_spawn_stop(&sp->proc, STOP_TIMEOUT_MS);
        if (result != 0) dejad_spawn_print_log(&sp->proc);
    }
    if (sp->tmpdir[0]) {
        /* Only the directory made by bench_spawn_start; a --data folder
         * given by the user lives elsewhere and is kept. */
        dejad_spawn_rmtree(sp->tmpdir);
        sp->tmpdir[0] = 0;
    }
    return result;
}
