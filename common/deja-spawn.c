/* deja-spawn.c: starts and stops a private dejad (see deja-spawn.h). */
#include "deja-spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define POLL_MS 10
#define MAX_ARGS 128

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The port dejad wrote to path, or 0 while it has not. */
static int read_port(const char *path) {
    FILE *f = fopen(path, "r");
    int port = 0;
    if (f == NULL) return 0;
    if (fscanf(f, "%d", &port) != 1 || port <= 0 || port > 65535) port = 0;
    fclose(f);
    return port;
}

void dejad_spawn_print_log(const dejad_proc *p) {
    if (p->log[0] == 0) return;
    FILE *f = fopen(p->log, "r");
    if (f == NULL) return;
    char line[1024];
    fprintf(stderr, "---- %s ----\n", p->log);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

int dejad_spawn(const dejad_spawn_opts *o, dejad_proc *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->who, sizeof p->who, "%s", o->who ? o->who : "spawn");
    snprintf(p->log, sizeof p->log, "%s", o->log ? o->log : "");
    char port_file[512], port_arg[16];
    snprintf(port_file, sizeof port_file, "%s/port", o->run_dir);
    snprintf(p->unix_path, sizeof p->unix_path, "%s/dejad.sock", o->run_dir);
    snprintf(port_arg, sizeof port_arg, "%d", o->port);
    /* A port file left by an earlier run on this folder would be read as
     * this run's port before dejad has written its own. */
    unlink(port_file);

    const char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = o->dejad;
    if (o->host) {
        argv[argc++] = "--host";
        argv[argc++] = o->host;
    }
    argv[argc++] = "--port";
    argv[argc++] = port_arg;
    argv[argc++] = "--port-file";
    argv[argc++] = port_file;
    argv[argc++] = "--data";
    argv[argc++] = o->data;
    argv[argc++] = "--unix";
    argv[argc++] = p->unix_path;
    for (int i = 0; o->args && o->args[i]; i++) {
        if (argc == MAX_ARGS) {
            fprintf(stderr, "%s: too many arguments for dejad\n", p->who);
            return -1;
        }
        argv[argc++] = o->args[i];
    }
    argv[argc] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (o->log) {
        posix_spawn_file_actions_addopen(&fa, 1, o->log, O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    int rc = posix_spawnp(&p->pid, o->dejad, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot start %s: %s%s\n", p->who, o->dejad, strerror(rc),
                o->hint ? o->hint : "");
        p->pid = 0;
        return -1;
    }

    long long deadline = now_ms() + o->start_timeout_ms;
    for (;;) {
        int port = read_port(port_file);
        if (port > 0) {
            p->port = port;
            snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", port);
            return 0;
        }
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            fprintf(stderr, "%s: %s exited before listening (status %d)\n", p->who,
                    o->dejad,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
            dejad_spawn_print_log(p);
            p->pid = 0;
            return -1;
        }
        if (now_ms() >= deadline) break;
        sleep_ms(POLL_MS);
    }
    fprintf(stderr, "%s: %s did not listen within %ld s\n", p->who, o->dejad,
            o->start_timeout_ms / 1000);
    dejad_spawn_print_log(p);
    dejad_spawn_kill(p);
    return -1;
}

int dejad_spawn_stop(dejad_proc *p, long timeout_ms) {
    if (p->pid <= 0) return -1;
    kill(p->pid, SIGTERM);
    long long deadline = now_ms() + timeout_ms;
    int status = 0;
    pid_t got;
    while ((got = waitpid(p->pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        sleep_ms(POLL_MS);
    if (got != p->pid) {
        fprintf(stderr, "%s: dejad did not stop in time; killing it\n", p->who);
        dejad_spawn_kill(p);
        return -1;
    }
    p->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void dejad_spawn_kill(dejad_proc *p) {
    if (p->pid <= 0) return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

int dejad_spawn_mkdtemp(const char *prefix, char *out, size_t len) {
    const char *tmp = getenv("TMPDIR");
    snprintf(out, len, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    if (mkdtemp(out) == NULL) {
        int saved = errno;
        out[0] = 0;
        errno = saved;
        return -1;
    }
    return 0;
}

/* Stops the walk at the first entry that cannot be removed. */
static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int dejad_spawn_rmtree(const char *dir) {
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0) return 0;
    return errno == ENOENT ? 0 : -1;
}
