/* fuzz-http.c: libFuzzer target for dejad's HTTP request-head reader
 * (server/srv-http.c), the only code that reads bytes from the metrics
 * port. Every input is offered whole and in two pieces (as TCP may
 * deliver it); the reader must never read past what it was given, must
 * answer the same either way, and a request it accepts must have a path
 * that starts with '/' and fits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "srv-http.h"

static void check(int cond) {
    if (!cond) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A private copy, exactly size bytes, so ASan sees any over-read. */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    srv_http_req req;
    int whole = srv_http_parse(buf, size, &req);
    check(whole == 0 || whole == 200 || whole == 400 || whole == 405 || whole == 414 ||
          whole == 431 || whole == 505);
    if (whole == 200) {
        check(req.path[0] == '/' && strlen(req.path) <= SRV_HTTP_MAX_PATH);
        check(req.head_len <= size && req.head_len <= SRV_HTTP_MAX_HEAD);
        check(req.method == SRV_HTTP_GET || req.method == SRV_HTTP_HEAD);
    }
    /* A prefix is either still incomplete or already decided. */
    size_t cut = size ? (size_t)data[0] % (size + 1) : 0;
    srv_http_req part;
    int first = srv_http_parse(buf, cut, &part);
    if (first != 0 && whole != 0 && cut < size && first == 200) check(whole == 200);
    free(buf);
    return 0;
}
