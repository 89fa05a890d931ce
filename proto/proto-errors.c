/* proto-errors.c: deja_strerror, generated from the shared error table in
 * deja-errors.h so that the enum, the messages and the wire statuses can
 * never drift apart. */
#include "deja-errors.h"

#include <stddef.h>

const char *deja_strerror(int code) {
    /* A switch rather than an indexed array: the codes are sparse (0..-16,
     * then -100..), and the compiler refuses duplicate case labels, which
     * catches a table edit that reuses a code. */
    switch (code) {
#define DEJA_ERROR_CASE_(name, value, msg)                                               \
    case value: return msg;
        DEJA_ERROR_TABLE(DEJA_ERROR_CASE_)
#undef DEJA_ERROR_CASE_
    default: return "unknown error";
    }
}

const char *deja_error_name(int code) {
    switch (code) {
#define DEJA_ERROR_NAME_(name, value, msg)                                               \
    case value: return #name;
        DEJA_ERROR_TABLE(DEJA_ERROR_NAME_)
#undef DEJA_ERROR_NAME_
    default: return "UNKNOWN";
    }
}
