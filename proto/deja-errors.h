/* deja-errors.h: the one error table shared by server, client and wire.
 *
 * Every fallible function in deja returns 0 or one of these negative codes.
 * Codes from 0 down to -99 travel on the wire: the status field of a reply
 * frame carries the code negated (DEJA_ERR_NOT_FOUND = -1 is status 1).
 * Codes from -100 down are local and never sent: most describe what
 * happened on the client's side; NOMEM and IO happen on either side, and
 * CORRUPT (a damaged record, data file or snapshot) only in the server's
 * store and index, whose callers log it, skip the record or quarantine the
 * namespace -- a client sees QUARANTINED or nothing, never CORRUPT.
 *
 * This header is installed next to deja.h; it must stay plain C with no
 * dependency on any other deja header. */
#ifndef DEJA_ERRORS_H
#define DEJA_ERRORS_H

/* X(NAME, code, message) */
#define DEJA_ERROR_TABLE(X)                                                              \
    X(OK, 0, "ok")                                                                       \
    X(NOT_FOUND, -1, "not found")                                                        \
    X(BAD_REQUEST, -2, "malformed request body")                                         \
    X(BAD_FRAME, -3, "malformed frame header")                                           \
    X(VERSION, -4, "unsupported protocol version")                                       \
    X(UNKNOWN_OP, -5, "unknown opcode")                                                  \
    X(TOO_LARGE, -6, "frame or field too large")                                         \
    X(AUTH_REQUIRED, -7, "authentication required")                                      \
    X(AUTH_FAILED, -8, "authentication failed")                                          \
    X(BAD_VECTOR, -9, "invalid vector (dim, NaN/Inf or zero norm)")                      \
    X(DIM_MISMATCH, -10, "vector dimension does not match the namespace")                \
    X(BAD_NAMESPACE, -11, "invalid namespace name")                                      \
    X(REJECTED, -12, "store rejected")                                                   \
    X(INTERNAL, -13, "internal server error")                                            \
    X(BUSY, -14, "server busy")                                                          \
    X(STORAGE_FULL, -15, "storage full")                                                 \
    X(SHUTTING_DOWN, -16, "server shutting down")                                        \
    X(EXISTS, -17, "namespace exists with another configuration")                        \
    X(FORBIDDEN, -18, "not allowed for this token")                                      \
    X(QUARANTINED, -19, "namespace quarantined: it could not be loaded at start")        \
    X(NOMEM, -100, "out of memory")                                                      \
    X(TIMEOUT, -101, "timed out")                                                        \
    X(CONNECT, -102, "cannot connect")                                                   \
    X(CLOSED, -103, "connection closed")                                                 \
    X(PROTOCOL, -104, "malformed reply from server")                                     \
    X(INVALID_ARG, -105, "invalid argument")                                             \
    X(IO, -106, "I/O error")                                                             \
    X(UNAVAILABLE, -107, "unavailable: circuit breaker open")                            \
    X(CORRUPT, -108, "damaged data on disk")

#define DEJA_ERROR_ENUM_(name, code, msg) DEJA_ERR_##name = (code),
enum deja_error { DEJA_ERROR_TABLE(DEJA_ERROR_ENUM_) };
#undef DEJA_ERROR_ENUM_

/* Lowest code that may appear on the wire (as status -code). */
#define DEJA_ERR_WIRE_MIN (-99)

/* Returns a static, human-readable message for any code; unknown codes get
 * "unknown error". Thread-safe. */
const char *deja_strerror(int code);

/* Returns the table name of a code ("NOT_FOUND", "BAD_REQUEST"...), or
 * "UNKNOWN". Static storage; thread-safe. */
const char *deja_error_name(int code);

#endif
