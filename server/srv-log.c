/* srv-log.c: dejad's log -- levels, stderr or a file, text or JSON lines,
 * journald priorities, rate-limited sites, reopening on SIGHUP.
 *
 * Each line is formatted into a local buffer and written with one write(2)
 * (O_APPEND for a file), so lines from different threads never
 * interleave. Under systemd (JOURNAL_STREAM set and no --log-file) text
 * lines start with the syslog priority ("<6>") and carry no timestamp,
 * since journald adds its own. The level, the format and the descriptor
 * are process-wide: set at start, and changed only by SIGHUP (level,
 * reopened file), so they are atomics. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "srv.h"

static atomic_int log_level = SRV_LOG_INFO;
static atomic_int log_fd = STDERR_FILENO;
static int log_format = SRV_LOG_TEXT;
static int log_journal; /* stderr is connected to journald */
static const char *log_path;

void srv_log_init(int level) {
    atomic_store(&log_level, level);
}

static int open_log(const char *path) {
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int srv_log_open(const srv_config *cfg) {
    srv_log_init(cfg->log_level);
    log_format = cfg->log_format;
    log_path = cfg->log_file;
    log_journal = !log_path && getenv("JOURNAL_STREAM") != NULL;
    if (!log_path) return 0;
    int fd = open_log(log_path);
    if (fd < 0) {
        fprintf(stderr, "dejad: cannot open log file %s: %s\n", log_path,
                strerror(errno));
        return -1;
    }
    atomic_store(&log_fd, fd);
    return 0;
}

int srv_log_reopen(void) {
    if (!log_path) return 0;
    int fd = open_log(log_path);
    if (fd < 0) return -1;
    int old = atomic_exchange(&log_fd, fd);
    if (old != STDERR_FILENO) close(old);
    return 0;
}

void srv_log_close(void) {
    int old = atomic_exchange(&log_fd, STDERR_FILENO);
    if (old != STDERR_FILENO) close(old);
}

static void log_line(int level, const char *prefix, const char *fmt, va_list ap);

void srv_log(int level, const char *fmt, ...) {
    if (level > atomic_load(&log_level)) return;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, "", fmt, ap);
    va_end(ap);
}

void srv_log_limited(srv_log_limit *lim, int level, const char *fmt, ...) {
    if (level > atomic_load(&log_level)) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now = (unsigned long long)ts.tv_sec / 10u;
    unsigned long long seen = atomic_load(&lim->window);
    char prefix[96] = "";
    if (seen != now && atomic_compare_exchange_strong(&lim->window, &seen, now)) {
        unsigned dropped = atomic_exchange(&lim->suppressed, 0);
        atomic_store(&lim->printed, 0);
        if (dropped)
            snprintf(prefix, sizeof prefix, "(%u similar lines suppressed) ", dropped);
    }
    if (atomic_fetch_add(&lim->printed, 1) >= SRV_LOG_BURST) {
        atomic_fetch_add(&lim->suppressed, 1);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    log_line(level, prefix, fmt, ap);
    va_end(ap);
}

/* Appends s to out as the inside of a JSON string. */
static int json_escape(char *out, size_t cap, const char *s) {
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = 0;
    return (int)o;
}

static void log_line(int level, const char *prefix, const char *fmt, va_list ap) {
    static const char *const tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    static const char *const names[] = {"error", "warn", "info", "debug"};
    static const int syslog_prio[] = {3, 4, 6, 7};
    char msg[1024];
    int m = snprintf(msg, sizeof msg, "%s", prefix);
    if (m >= 0 && m < (int)sizeof msg)
        vsnprintf(msg + m, sizeof msg - (size_t)m, fmt, ap);

    char stamp[64];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
             tm.tm_sec, ts.tv_nsec / 1000000L);

    char line[2400];
    int n;
    if (log_format == SRV_LOG_JSON) {
        char esc[2200];
        json_escape(esc, sizeof esc, msg);
        n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}",
                     stamp, names[level], esc);
    } else if (log_journal) {
        n = snprintf(line, sizeof line, "<%d>%s", syslog_prio[level], msg);
    } else {
        n = snprintf(line, sizeof line, "%s %s %s", stamp, tags[level], msg);
    }
    if (n < 0) return;
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(atomic_load(&log_fd), line, (size_t)n);
    (void)w;
}
