/* srv-log.c: timestamped log lines on stderr.
 *
 * The level is set once at start, before any thread exists; each line is
 * formatted into a local buffer and written with one write(2) so lines from
 * different threads never interleave. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "srv.h"

static int log_level = SRV_LOG_INFO;

void srv_log_init(int level) { log_level = level; }

void srv_log(int level, const char *fmt, ...) {
    if (level > log_level) return;
    static const char *const tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, tags[level]);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
