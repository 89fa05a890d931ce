"""The package's protocol constants are the C headers' tables, exactly.

This client cannot include proto/deja-ops.h or proto/deja-errors.h, so it
keeps its own copy of the opcodes and error codes; these tests read both
tables from the headers and fail on any difference, in either direction,
so that the copies cannot drift from the server's."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Dict, List, NamedTuple

import pytest

import deja
import deja.aio
from deja import _wire, errors
from conftest import REPO_ROOT

OPS_H = REPO_ROOT / "proto" / "deja-ops.h"
ERRORS_H = REPO_ROOT / "proto" / "deja-errors.h"

#: Errors of the C table that this client has no class for, each with the
#: reason. A new code in the table fails the tests until it is added to
#: deja.errors or here.
NOT_IN_PYTHON = {
    "OK": "success is not an exception",
    "NOMEM": "Python raises its own MemoryError",
    "CORRUPT": "damage on the server's disk never reaches a client (logged, skipped or QUARANTINED)",
}


class Op(NamedTuple):
    NAME: str
    name: str
    code: int
    access: str
    ns: str


class Err(NamedTuple):
    name: str
    code: int
    message: str


def macro_body(path: Path, macro: str) -> str:
    """The replacement text of a function-like #define, continuation lines
    joined."""
    if not path.exists():
        pytest.fail(f"{path} not found: these tests run inside the deja source tree")
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    m = re.search(rf"^#define {macro}\(X\)(.*)$", text, re.MULTILINE)
    assert m, f"no #define {macro}(X) in {path}"
    return m.group(1)


def read_ops() -> List[Op]:
    body = macro_body(OPS_H, "PROTO_OP_TABLE")
    rows = re.findall(r"X\(\s*(\w+)\s*,\s*(\w+)\s*,\s*(0x[0-9A-Fa-f]+|\d+)\s*,"
                      r"\s*(\w+)\s*,\s*(\w+)\s*,", body)
    # A row this pattern does not read would be skipped silently: count them.
    assert len(rows) == body.count("X("), "a row of PROTO_OP_TABLE does not parse"
    return [Op(n, lower, int(code, 0), access, ns) for n, lower, code, access, ns in rows]


def read_errors() -> List[Err]:
    body = macro_body(ERRORS_H, "DEJA_ERROR_TABLE")
    rows = re.findall(r'X\(\s*(\w+)\s*,\s*(-?\d+)\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)', body)
    assert len(rows) == body.count("X("), "a row of DEJA_ERROR_TABLE does not parse"
    return [Err(n, int(code), msg) for n, code, msg in rows]


def test_the_tables_parse_and_hold_no_duplicates():
    ops = read_ops()
    assert len(ops) >= 12
    for key in ("NAME", "name", "code"):
        values = [getattr(op, key) for op in ops]
        assert len(set(values)) == len(values), key
    for op in ops:
        assert op.name == op.NAME.lower()
        assert op.access in ("PREAUTH", "READ", "WRITE", "ADMIN")
        assert op.ns in ("NONE", "NAMED", "ANY")
    errs = read_errors()
    assert len({e.name for e in errs}) == len(errs)
    assert len({e.code for e in errs}) == len(errs)


def test_opcode_constants_match_the_op_table():
    table: Dict[str, int] = {f"OP_{op.NAME}": op.code for op in read_ops()}
    ours = {k: v for k, v in vars(_wire).items() if k.startswith("OP_")}
    assert ours == table


@pytest.mark.parametrize("cls", [deja.Client, deja.aio.Client])
def test_every_op_is_a_method_named_as_in_the_table(cls):
    for op in read_ops():
        method = getattr(cls, op.name, None)
        assert method is not None and inspect.isfunction(method), f"{cls.__qualname__}.{op.name}"


def test_wire_statuses_match_the_error_table():
    wire = {-e.code: e.name for e in read_errors() if -99 <= e.code <= -1}
    ours = {status: cls.name for status, cls in errors._BY_STATUS.items()}
    assert ours == wire
    for status, cls in errors._BY_STATUS.items():
        assert cls.code == -status and cls().status == status


def test_every_error_class_is_a_row_of_the_error_table():
    table = {e.name: e.code for e in read_errors()}
    classes: Dict[str, int] = {}
    pending = list(errors.Error.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" in vars(cls):  # a class that names one error, not a family
            classes[cls.name] = cls.code
    assert {n: table.get(n) for n in classes} == classes
    missing = set(table) - set(classes)
    assert missing == set(NOT_IN_PYTHON), "add a class to deja.errors or a reason here"


def test_every_error_class_is_exported():
    exported = [getattr(deja, n) for n in errors.__all__ if n[0].isupper()]
    named = {e.name for e in read_errors()} - set(NOT_IN_PYTHON)
    assert named <= {cls.name for cls in exported}
