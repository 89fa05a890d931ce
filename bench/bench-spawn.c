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
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

/* Loading a large data folder can take a while before dejad listens. */
#define START_TIMEOUT_NS 300000000000ull
#define STOP_TIMEOUT_NS 20000000000ull
#define POLL_NS 20000000ull

static void pause_ns(uint64_t ns) {
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

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
    snprintf(out, len, "dejad"); /* posix_spawnp searches PATH */
}

static void print_log(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    char line[1024];
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

int bench_spawn_start(const bench_opts *o, bench_spawn *sp) {
    memset(sp, 0, sizeof *sp);
    sp->pid = -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(sp->tmpdir, sizeof sp->tmpdir, "%s/deja-bench-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(sp->tmpdir) == NULL) {
        fprintf(stderr, "deja-bench: mkdtemp %s: %s\n", sp->tmpdir, strerror(errno));
        sp->tmpdir[0] = 0;
        return -1;
    }
    if (o->spawn_data)
        snprintf(sp->data, sizeof sp->data, "%s", o->spawn_data);
    else
        snprintf(sp->data, sizeof sp->data, "%s/data", sp->tmpdir);
    snprintf(sp->log, sizeof sp->log, "%s/dejad.log", sp->tmpdir);
    char port_file[300], unix_path[300], dejad[PATH_MAX];
    snprintf(port_file, sizeof port_file, "%s/port", sp->tmpdir);
    snprintf(unix_path, sizeof unix_path, "%s/dejad.sock", sp->tmpdir);
    find_dejad(o, dejad, sizeof dejad);

    const char *argv[16 + BENCH_MAX_DEJAD_ARGS];
    int argc = 0;
    argv[argc++] = dejad;
    argv[argc++] = "--port";
    argv[argc++] = "0";
    argv[argc++] = "--port-file";
    argv[argc++] = port_file;
    argv[argc++] = "--data";
    argv[argc++] = sp->data;
    argv[argc++] = "--unix";
    argv[argc++] = unix_path;
    if (o->fsync) {
        argv[argc++] = "--fsync";
        argv[argc++] = o->fsync;
    }
    if (o->auth_token) {
        argv[argc++] = "--auth-token";
        argv[argc++] = o->auth_token;
    }
    for (int i = 0; i < o->n_dejad_args; i++)
        argv[argc++] = o->dejad_args[i];
    argv[argc] = NULL;

    int len = snprintf(sp->desc, sizeof sp->desc, "spawned");
    for (int i = 0; i < argc && len < (int)sizeof sp->desc; i++) {
        /* The token is a secret: the report shows that one was set. */
        const char *shown = i > 0 && argv[i - 1] && !strcmp(argv[i - 1], "--auth-token")
                                ? "***"
                                : argv[i];
        len += snprintf(sp->desc + len, sizeof sp->desc - (size_t)len, " %s", shown);
    }

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, sp->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    int rc = posix_spawnp(&sp->pid, dejad, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "deja-bench: cannot start %s: %s (use --dejad PATH)\n", dejad,
                strerror(rc));
        sp->pid = -1;
        bench_spawn_stop(sp);
        return -1;
    }

    uint64_t deadline = bench_now_ns() + START_TIMEOUT_NS;
    while (bench_now_ns() < deadline) {
        int status;
        if (waitpid(sp->pid, &status, WNOHANG) == sp->pid) {
            fprintf(stderr, "deja-bench: %s exited before listening (status %d)\n", dejad,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
            print_log(sp->log);
            sp->pid = -1;
            bench_spawn_stop(sp);
            return -1;
        }
        FILE *f = fopen(port_file, "r");
        int port = 0;
        if (f) {
            if (fscanf(f, "%d", &port) != 1) port = 0;
            fclose(f);
        }
        if (port > 0) {
            snprintf(sp->addr, sizeof sp->addr, "127.0.0.1:%d", port);
            return 0;
        }
        pause_ns(POLL_NS);
    }
    fprintf(stderr, "deja-bench: %s did not start listening in time\n", dejad);
    print_log(sp->log);
    bench_spawn_stop(sp);
    return -1;
}

int bench_spawn_stop(bench_spawn *sp) {
    int result = -1;
    if (sp->pid > 0) {
        kill(sp->pid, SIGTERM);
        uint64_t deadline = bench_now_ns() + STOP_TIMEOUT_NS;
        int status = 0;
        pid_t got = 0;
        while ((got = waitpid(sp->pid, &status, WNOHANG)) == 0 &&
               bench_now_ns() < deadline)
            pause_ns(POLL_NS);
        if (got == 0) {
            fprintf(stderr, "deja-bench: dejad did not stop in time; killing it\n");
            kill(sp->pid, SIGKILL);
            waitpid(sp->pid, &status, 0);
        } else if (got == sp->pid && WIFEXITED(status)) {
            result = WEXITSTATUS(status);
        }
        if (result != 0) print_log(sp->log);
        sp->pid = -1;
    }
    if (sp->tmpdir[0]) {
        /* Only the directory made by bench_spawn_start; a --data folder
         * given by the user lives elsewhere and is kept. */
        nftw(sp->tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        sp->tmpdir[0] = 0;
    }
    return result;
}
