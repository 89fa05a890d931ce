#!/usr/bin/env python3
"""test-proto-doc.py: docs/PROTOCOL.md says what the headers say.

The spec comes first and proto/ mirrors it, so its tables must agree with
the two tables the code is built from: the opcode table (section 4) with
proto/deja-ops.h, row for row (code, name, whether it is allowed before
AUTH), the token rights of section 5.2 with each op's access column, and
the status table (section 6) with proto/deja-errors.h, row for row.
Usage: test-proto-doc.py SOURCE_ROOT
"""
import os
import re
import sys

ROOT = sys.argv[1]
FAILED = []


def check(cond, what):
    print(("   ok   " if cond else "   FAIL ") + what)
    if not cond:
        FAILED.append(what)


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def macro_body(text, macro):
    """A function-like #define's replacement text, continuations joined."""
    text = text.replace("\\\n", " ")
    m = re.search(r"^#define %s\(X\)(.*)$" % macro, text, re.MULTILINE)
    if not m:
        sys.exit("no #define %s(X)" % macro)
    return m.group(1)


def header_ops():
    body = macro_body(read("proto", "deja-ops.h"), "PROTO_OP_TABLE")
    rows = re.findall(r"X\(\s*(\w+)\s*,\s*(\w+)\s*,\s*(0x[0-9A-Fa-f]+|\d+)\s*,"
                      r"\s*(\w+)\s*,", body)
    check(len(rows) == body.count("X("), "every row of PROTO_OP_TABLE parses")
    return {int(code, 0): (name, access) for name, _, code, access in rows}


def header_errors():
    body = macro_body(read("proto", "deja-errors.h"), "DEJA_ERROR_TABLE")
    rows = re.findall(r'X\(\s*(\w+)\s*,\s*(-?\d+)\s*,', body)
    check(len(rows) == body.count("X("), "every row of DEJA_ERROR_TABLE parses")
    return {int(code): name for name, code in rows}


def section(doc, title):
    """The text of the section whose heading starts with title."""
    m = re.search(r"^## %s.*?$(.*?)(?=^## )" % re.escape(title), doc,
                  re.MULTILINE | re.DOTALL)
    if not m:
        sys.exit("PROTOCOL.md has no section '%s'" % title)
    return m.group(1)


def main():
    doc = read("docs", "PROTOCOL.md")
    ops = header_ops()

    print("-- the opcode table (section 4)")
    rows = re.findall(r"^\|\s*`0x([0-9A-Fa-f]{2})`\s*\|\s*(\w+)\s*\|.*\|\s*([\w ]+?)\s*\|\s*$",
                      section(doc, "4. Opcodes"), re.MULTILINE)
    documented = {int(code, 16): (name, before) for code, name, before in rows}
    check(len(documented) == len(rows), "no opcode is documented twice")
    check(sorted(documented) == sorted(ops),
          "the same opcodes: doc %s, header %s" %
          ([hex(c) for c in sorted(documented)], [hex(c) for c in sorted(ops)]))
    for code, (name, access) in sorted(ops.items()):
        doc_name, before = documented.get(code, (None, None))
        check(doc_name == name, "0x%02x is %s (doc says %s)" % (code, name, doc_name))
        want = "allowed" if access == "PREAUTH" else "no"
        check(before == want, "%s before AUTH: %s (doc says %s)" % (name, want, before))

    print("-- the token rights (section 5.2)")
    prose = " ".join(doc.split())
    for right in ("read", "write", "admin"):
        m = re.search(r"`%s` \(([A-Z_, ]+)\)" % right, prose)
        check(m is not None, "the %s right lists its ops" % right)
        if m:
            listed = sorted(n.strip() for n in m.group(1).split(","))
            want = sorted(n for n, a in ops.values() if a == right.upper())
            check(listed == want, "%s: %s (doc says %s)" % (right, want, listed))

    print("-- the status table (section 6)")
    errors = header_errors()
    rows = re.findall(r"^\|\s*(\d+|—)\s*\|\s*([−-]?\d+)\s*\|\s*`(\w+)`\s*\|",
                      section(doc, "6. Errors"), re.MULTILINE)
    documented = {}
    for status, code, name in rows:
        code = int(code.replace("−", "-"))
        documented[code] = name
        if status != "—":
            check(int(status) == -code, "%s: status %s is -code" % (name, status))
        else:
            check(code <= -100, "%s: no status only for client codes" % name)
    check(sorted(documented) == sorted(errors),
          "the same codes: doc %s, header %s" % (sorted(documented), sorted(errors)))
    for code, name in sorted(errors.items(), reverse=True):
        check(documented.get(code) == name,
              "%d is %s (doc says %s)" % (code, name, documented.get(code)))

    if FAILED:
        print("%d check(s) failed" % len(FAILED))
        return 1
    print("docs/PROTOCOL.md agrees with proto/deja-ops.h and proto/deja-errors.h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
