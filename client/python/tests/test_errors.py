"""Every error the server returns for bad input surfaces as its documented
exception, and the connection stays usable where the protocol says so."""

from __future__ import annotations

import asyncio
import math

import pytest

import deja
import deja.aio
from deja import _wire
from conftest import unit


def usable(c: deja.Client) -> bool:
    return not c.closed and c.ping(b"still here") == b"still here"


def test_errors_carry_name_code_status():
    e = deja.DimMismatch("dim 3")
    assert (e.name, e.code, e.status, e.message) == ("DIM_MISMATCH", -10, 10, "dim 3")
    assert isinstance(e, deja.InvalidRequest) and isinstance(e, deja.ServerError)
    assert isinstance(e, deja.Error) and str(e) == "DIM_MISMATCH: dim 3"
    t = deja.Timeout("slow")
    assert (t.name, t.code, t.status) == ("TIMEOUT", -101, None)
    assert isinstance(t, deja.TransportError)
    assert isinstance(deja.InvalidArgument("x"), ValueError)
    assert deja.Unavailable().code == -107
    # A status this client does not know yet is still a ServerError.
    u = deja.errors.error_for_status(42, "new")
    assert type(u) is deja.ServerError and (u.name, u.code, u.status) == ("STATUS_42", -42, 42)
    for status in range(1, 19):
        err = deja.errors.error_for_status(status)
        assert err.status == status and err.code == -status and err.name != f"STATUS_{status}"


def test_request_errors_keep_the_connection(client, ns, rng):
    client.store(ns, unit(rng, 8), "x")
    with pytest.raises(deja.DimMismatch) as ei:  # wrong dim
        client.lookup(ns, unit(rng, 9))
    assert ei.value.status == 10 and "dim" in ei.value.message
    assert usable(client)
    with pytest.raises(deja.DimMismatch):
        client.store(ns, unit(rng, 9), "x")
    assert usable(client)
    for bad in ([math.nan] * 8, [math.inf] + [1.0] * 7, [0.0] * 8):  # NaN, Inf, zero
        with pytest.raises(deja.BadVector):
            client.lookup(ns, bad)
        with pytest.raises(deja.BadVector):
            client.store(ns, bad, "x")
        assert usable(client)
    for name in ("has space", "tab\tname", "é", ""):
        with pytest.raises(deja.BadNamespace):
            client.lookup(name, unit(rng, 8))
        assert usable(client)
    with pytest.raises(deja.BadNamespace):  # over 255 bytes: refused before sending
        client.flush("n" * 256)
    with pytest.raises(deja.Rejected):
        client.store(ns, unit(rng, 8), "cut", completion=deja.Completion.TRUNCATED)
    assert usable(client)
    with pytest.raises(deja.UnknownOp):  # an op from the future
        client._roundtrip(0x7E, [b"body"])
    assert usable(client)
    with pytest.raises(deja.BadRequest):  # a body that does not match its layout
        client._roundtrip(_wire.OP_FLUSH, [_wire.ns_field(ns), b"trailing"])
    assert usable(client)
    with pytest.raises(deja.NotFound):
        client.delete(ns, 123456789)
    assert usable(client)


def test_argument_errors_send_nothing(client, ns, rng):
    v = unit(rng, 8)
    for kwargs in ({"k": 0}, {"k": 257}, {"threshold": 1.5}, {"threshold": math.nan},
                   {"ef": -1}):
        with pytest.raises(deja.InvalidArgument):
            client.lookup(ns, v, **kwargs)
    for vec in ([], "text", b"abc", 42, [1.0] * 4097):
        with pytest.raises(deja.InvalidArgument):
            client.lookup(ns, vec)
    with pytest.raises(deja.InvalidArgument):
        client.store(ns, v, 12345)  # a response must be text or bytes
    with pytest.raises(deja.InvalidArgument):
        client.ping(b"x" * 65537)
    with pytest.raises(deja.InvalidArgument):
        deja.Client("deja://host:99999")
    assert usable(client)


def test_oversized_frame(spawn, rng):
    d = spawn("--max-frame", "65536")
    with deja.Client(d.url) as c:
        assert c.server.max_frame == 65536
        # Known from HELLO: refused before sending, the connection stays usable.
        with pytest.raises(deja.TooLarge):
            c.store("big", unit(rng, 8), b"x" * 70000)
        assert usable(c)
        # The server's own answer: TOO_LARGE, then it closes the connection.
        c._max_frame = 1 << 30
        with pytest.raises(deja.TooLarge):
            c.store("big", unit(rng, 8), b"x" * 200000)
        assert c.closed
        with pytest.raises(deja.ConnectionClosed):
            c.ping()


def test_auth(spawn, rng):
    d = spawn("--auth-token", "s3cret")
    with pytest.raises(deja.AuthFailed) as ei:
        deja.Client(d.url, token="wrong")
    assert ei.value.status == 8
    with pytest.raises(deja.AuthRequired):
        deja.Client(d.url, token="")  # the server wants a token
    with deja.Client(d.url, token="s3cret") as c:
        assert c.server.auth_required
        c.store("auth", unit(rng, 8), "ok")
        assert c.lookup("auth", unit(rng, 8), threshold=-1)
    # A pool with a wrong token: lookups are misses that say why.
    with deja.Pool(d.url, token="wrong", connect_timeout=5, lookup_timeout=5) as p:
        r = p.lookup("auth", unit(rng, 8))
        assert not r and isinstance(r.error, deja.AuthFailed)


def test_pool_lookup_never_raises_on_bad_input(dejad, ns, rng):
    with deja.Pool(dejad.url, lookup_timeout=2) as p:
        p.store(ns, unit(rng, 8), "x")
        for args, err in (((ns, unit(rng, 9)), deja.DimMismatch),
                          ((ns, [0.0] * 8), deja.BadVector),
                          (("bad name", unit(rng, 8)), deja.BadNamespace),
                          ((ns, "not a vector"), deja.InvalidArgument)):
            r = p.lookup(*args)
            assert not r and isinstance(r.error, err)
        assert p.status().failures == 0  # answers from a live server are not failures
        with pytest.raises(deja.DimMismatch):
            p.store(ns, unit(rng, 9), "x")


def test_aio_errors(dejad, ns, rng):
    async def main():
        async with deja.aio.Client(dejad.url) as c:
            await c.store(ns, unit(rng, 8), "x")
            with pytest.raises(deja.DimMismatch):
                await c.lookup(ns, unit(rng, 9))
            with pytest.raises(deja.BadVector):
                await c.lookup(ns, [0.0] * 8)
            with pytest.raises(deja.BadNamespace):
                await c.lookup("a b", unit(rng, 8))
            with pytest.raises(deja.NotFound):
                await c.delete(ns, 987654321)
            assert await c.ping(b"ok") == b"ok" and not c.closed
    asyncio.run(main())


def test_tenant_tokens(spawn, rng, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("ops-token * read,write,admin\nteam-a teamA/ read,write\n"
                      "reader teamA/ read\n")
    d = spawn("--tokens-file", str(tokens))
    v = unit(rng, 8)
    with deja.Client(d.url, token="ops-token") as ops:
        ops.store("teamB/x", v, "b")
    with deja.Client(d.url, token="team-a") as a:
        eid = a.store("teamA/faq", v, "a")
        assert a.lookup("teamA/faq", v).hit.id == eid
        with pytest.raises(deja.Forbidden) as ei:  # outside its prefix
            a.lookup("teamB/x", v)
        assert (ei.value.status, ei.value.name) == (18, "FORBIDDEN")
        assert isinstance(ei.value, deja.AuthError)
        with pytest.raises(deja.Forbidden):  # no admin right
            a.flush("teamA/faq")
        assert usable(a)
        assert a.ns_list() == ["teamA/faq"]  # only its own namespaces
    with deja.Client(d.url, token="reader") as r:
        with pytest.raises(deja.Forbidden):
            r.store("teamA/faq", v, "no write right")
        assert r.lookup("teamA/faq", v).hit.id == eid
    with deja.Pool(d.url, token="team-a", lookup_timeout=2) as p:
        res = p.lookup("teamB/x", v)
        assert isinstance(res.error, deja.Forbidden)
        assert p.status().failures == 0  # an answer, not a failure
