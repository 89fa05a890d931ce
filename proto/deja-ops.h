/* deja-ops.h: the one opcode table of the protocol (versions 1 and 2; rows
 * 0x18..0x1B are version 2), shared by the codec,
 * the server's op table and the clients.
 *
 * Every fact about an op that more than one place needs lives in its row:
 * proto.h derives enum proto_op and proto_op_name() from it, srv-ops.c
 * builds its op table from it (binding each row's handler by name, so a
 * row without a handler does not compile), and the Python client's tests
 * parse it to check that client's constants (client/python/tests/
 * test_tables.py), as tests/test-proto-doc.py checks docs/PROTOCOL.md's
 * opcode table. Keep the rows in the form below (X, then the seven
 * columns, nothing else), so that a script can read them.
 *
 * It is reached through proto.h, which defines the limits the body bounds
 * name (PROTO_MAX_NS_LEN...) before it includes this file; it stays plain C
 * with no includes of its own, like deja-errors.h beside it.
 *
 * Columns, X(NAME, name, code, access, ns, min_body, max_body):
 *   NAME      PROTO_OP_<NAME>, and the op's name in messages ("NS_INFO").
 *   name      the same in lower case, as a token: code binds to it by
 *             pasting (the server's handler op_<name>), and it is the
 *             method's name in the clients (Python's Client.ns_info).
 *   code      the opcode byte on the wire.
 *   access    PREAUTH: allowed before AUTH, and no right is needed;
 *             READ, WRITE, ADMIN: an authenticated token's right it needs.
 *   ns        NONE: the body names no namespace; NAMED: it starts with
 *             str8 namespace; ANY: likewise, and an empty name means the
 *             whole server (STATS).
 *   min_body, max_body
 *             the smallest and largest bodies the layouts in PROTOCOL.md
 *             allow, counting an empty namespace and a dim of 0 as well
 *             formed so that the decoders answer them with BAD_NAMESPACE
 *             and BAD_VECTOR; the decoders check the exact layout. */
#ifndef DEJA_OPS_H
#define DEJA_OPS_H

/* X(NAME, name, code, access, ns, min_body, max_body) */
#define PROTO_OP_TABLE(X)                                                                \
    X(HELLO, hello, 0x01, PREAUTH, NONE, 6, 6 + 65535)                                   \
    X(AUTH, auth, 0x02, PREAUTH, NONE, 2, 2 + 65535)                                     \
    X(PING, ping, 0x03, PREAUTH, NONE, 0, PROTO_MAX_PING)                                \
    X(STORE, store, 0x10, WRITE, NAMED, 33, UINT32_MAX)                                  \
    X(LOOKUP, lookup, 0x11, READ, NAMED, 1, UINT32_MAX)                                  \
    X(DELETE, delete, 0x12, WRITE, NAMED, 9, 9 + PROTO_MAX_NS_LEN)                       \
    X(FLUSH, flush, 0x13, ADMIN, NAMED, 1, 1 + PROTO_MAX_NS_LEN)                         \
    X(NS_CREATE, ns_create, 0x14, ADMIN, NAMED, 1,                                       \
      1 + PROTO_MAX_NS_LEN + PROTO_NS_CONFIG_SIZE + 1 + 255)                             \
    X(NS_LIST, ns_list, 0x15, READ, NONE, 0, 0)                                          \
    X(NS_INFO, ns_info, 0x16, READ, NAMED, 1, 1 + PROTO_MAX_NS_LEN)                      \
    X(NS_DROP, ns_drop, 0x17, ADMIN, NAMED, 1, 1 + PROTO_MAX_NS_LEN)                     \
    X(LOOKUP_EX, lookup_ex, 0x18, READ, NAMED, 1, UINT32_MAX)                            \
    X(STORE_EX, store_ex, 0x19, WRITE, NAMED, 41, UINT32_MAX)                            \
    X(LEASE_RELEASE, lease_release, 0x1A, WRITE, NAMED, 9, 9 + PROTO_MAX_NS_LEN)         \
    X(NS_POLICY, ns_policy, 0x1B, ADMIN, NAMED, 9, 9 + PROTO_MAX_NS_LEN)                 \
    X(STATS, stats, 0x20, READ, ANY, 1, 1 + PROTO_MAX_NS_LEN)

#endif
