/* srv-http.c: the bounded HTTP/1.x request-head reader behind the metrics
 * listener (see srv-http.h). */
#include <string.h>

#include "srv-http.h"

const char *srv_http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* RFC 9110 token characters (methods, header names). */
static int is_tchar(unsigned char c) {
    if (c >= '0' && c <= '9') return 1;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Finds the end of the head ("\r\n\r\n", or "\n\n" from lenient clients).
 * Returns its length including the blank line, or 0. */
static size_t head_length(const char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

/* Checks one header line "name: value" (without its line end). */
static int header_ok(const char *p, size_t n) {
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= n || p[i] != ':') return 0;
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
    }
    return 1;
}

int srv_http_parse(const char *buf, size_t len, srv_http_req *req) {
    size_t scan = len < SRV_HTTP_MAX_HEAD ? len : SRV_HTTP_MAX_HEAD;
    size_t head = head_length(buf, scan);
    if (head == 0) return len >= SRV_HTTP_MAX_HEAD ? 431 : 0;
    memset(req, 0, sizeof *req);
    req->head_len = head;

    /* Request line: METHOD SP target SP HTTP/1.x */
    const char *end = memchr(buf, '\n', head);
    size_t line = (size_t)(end - buf);
    if (line && buf[line - 1] == '\r') line--;
    const char *sp1 = memchr(buf, ' ', line);
    if (!sp1 || sp1 == buf) return 400;
    for (const char *p = buf; p < sp1; p++)
        if (!is_tchar((unsigned char)*p)) return 400;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', line - (size_t)(target - buf));
    if (!sp2 || sp2 == target) return 400;
    size_t vlen = line - (size_t)(sp2 + 1 - buf);
    const char *version = sp2 + 1;
    if (vlen != 8 || memcmp(version, "HTTP/1.", 7) != 0) {
        return vlen >= 5 && memcmp(version, "HTTP/", 5) == 0 ? 505 : 400;
    }
    if (version[7] != '0' && version[7] != '1') return 505;
    size_t mlen = (size_t)(sp1 - buf);
    if (mlen == 3 && memcmp(buf, "GET", 3) == 0)
        req->method = SRV_HTTP_GET;
    else if (mlen == 4 && memcmp(buf, "HEAD", 4) == 0)
        req->method = SRV_HTTP_HEAD;
    else
        return 405;

    size_t tlen = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    if (target[0] != '/') return 400;
    if (plen > SRV_HTTP_MAX_PATH) return 414;
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c >= 0x7f) return 400;
    }
    memcpy(req->path, target, plen);
    req->path[plen] = 0;

    /* Header lines: shape only. */
    unsigned count = 0;
    const char *p = end + 1;
    const char *stop = buf + head;
    while (p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        size_t n = (size_t)(nl - p);
        if (n && p[n - 1] == '\r') n--;
        if (n == 0) break; /* the blank line */
        if (++count > SRV_HTTP_MAX_HEADERS) return 431;
        if (!header_ok(p, n)) return 400;
        p = nl + 1;
    }
    return 200;
}
