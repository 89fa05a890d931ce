/* deja-spawn.h: starts a private dejad on a free loopback port, for the
 * integration tests (tests/support/spawn.c) and deja-bench --spawn
 * (bench/bench-spawn.c). Not installed.
 *
 * dejad is started with --port 0 (or a port given, for a restart on the
 * same address) and --port-file, and is ready once that file names the
 * port it listens on, so parallel runs never collide. The caller's
 * messages name it (`who`), and its output can go to a log file that is
 * shown when it fails. One thread starts and stops a given server. */
#ifndef DEJA_SPAWN_H
#define DEJA_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

typedef struct dejad_spawn_opts {
    const char *who;     /* prefix of messages on stderr ("spawn", "deja-bench") */
    const char *dejad;   /* the binary; without a '/' it is searched on PATH */
    const char *run_dir; /* holds the port file and the Unix socket */
    const char *data;    /* --data */
    const char *host;    /* --host, or NULL for dejad's default */
    int port;            /* --port; 0 = a free one */
    const char *log; /* dejad's stdout and stderr (stdin /dev/null), or NULL to inherit */
    const char *const *args; /* more arguments, NULL-terminated; may be NULL */
    long start_timeout_ms;   /* until it listens */
    const char *hint; /* added to "cannot start" (" (use --dejad PATH)"), or NULL */
} dejad_spawn_opts;

typedef struct dejad_proc {
    pid_t pid; /* 0 when not running */
    int port;
    char addr[64];       /* "127.0.0.1:PORT" */
    char unix_path[512]; /* RUN_DIR/dejad.sock */
    char log[512];       /* copied from the options, or "" */
    char who[32];
} dejad_proc;

/* Starts dejad as o says and waits until it listens. Returns 0, or -1
 * with the reason on stderr (and the log, if any): the binary cannot be
 * started, it exited first, or it did not listen in time (it is then
 * killed). */
int dejad_spawn(const dejad_spawn_opts *o, dejad_proc *p);

/* SIGTERM, then waits up to timeout_ms for it to exit, and SIGKILL after
 * that. Returns dejad's exit status (0 = clean), or -1 if it was killed,
 * died of a signal or was not running. */
int dejad_spawn_stop(dejad_proc *p, long timeout_ms);

/* SIGKILL and reap (nothing if not running). */
void dejad_spawn_kill(dejad_proc *p);

/* Copies dejad's log to stderr between two marker lines (nothing without
 * a log). */
void dejad_spawn_print_log(const dejad_proc *p);

/* Makes a new directory $TMPDIR/PREFIX-XXXXXX (/tmp without TMPDIR) into
 * out. Returns 0 or -1 with errno set (out is then ""). */
int dejad_spawn_mkdtemp(const char *prefix, char *out, size_t len);

/* Removes dir and everything in it, without following links. Returns 0
 * or -1 if anything could not be removed. */
int dejad_spawn_rmtree(const char *dir);

#endif
