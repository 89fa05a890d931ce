"""Protocol version 2 without a server: the request bodies of LOOKUP_EX,
STORE_EX, LEASE_RELEASE and NS_POLICY byte for byte (PROTOCOL.md 5.11 to
5.14), their replies decoded and refused when malformed, the BORDERLINE
flags, the similarity histogram, and against scripted servers: HELLO
offers 1..2, a version-1 server, a LOOKUP_EX answered after later
requests, a wait longer than the timeout, an abandoned lease given back."""

from __future__ import annotations

import asyncio
import math
import struct
import threading
import time

import pytest

import deja
import deja.aio
from deja import _wire as w
from conftest import read_frame, reply_frame

NAN = float("nan")


def body(parts) -> bytes:
    return b"".join(bytes(p) for p in parts)


def hit_ex(entry_id, sim, flags=0, prompt=b"", response=b"r", reserved=0) -> bytes:
    return struct.pack("<QfBBII", entry_id, sim, flags, reserved, len(prompt),
                       len(response)) + prompt + response


def lookup_ex_reply(outcome, lease_id=0, hits=(), shadow=(), reply_flags=0) -> bytes:
    return (struct.pack("<BBQH", outcome, reply_flags, lease_id, len(hits)) + b"".join(hits)
            + struct.pack("<H", len(shadow)) + b"".join(shadow))


# ---- requests ---------------------------------------------------------------------

def test_lookup_ex_request_layout():
    vec = struct.pack("<3f", 1.0, 2.0, 3.0)
    got = body(w.lookup_ex_parts("ns", 3, vec, 5, 0.8, 64, "hi", True, 0.25, 12.0, True))
    want = (b"\x02ns" + struct.pack("<HHfHHIII", 3, 5, 0.8, 64, 0x0003, 250, 12000, 2)
            + vec + b"hi")
    assert got == want
    assert len(got) == 25 + 2 + 4 * 3 + 2  # 25 + n + 4·dim + p
    plain = body(w.lookup_ex_parts("ns", 3, vec, 1, 0.85, 0, None, False, 0, 0, False))
    assert plain[3 + 2 + 2 + 4 + 2:][:14] == struct.pack("<HIII", 0, 0, 0, 0)


def test_lookup_ex_wait_is_whole_milliseconds_rounded_up():
    vec = struct.pack("<f", 1.0)
    def wait_ms(wait):
        b = body(w.lookup_ex_parts("n", 1, vec, 1, 0.5, 0, None, True, wait, 0, False))
        return struct.unpack_from("<I", b, 13 + 1)[0]  # 13 + n
    assert [wait_ms(x) for x in (0, 0.0001, 0.001, 0.3, 2)] == [0, 1, 1, 300, 2000]


@pytest.mark.parametrize("kw", [dict(lease=False, wait=1.0), dict(lease=False, lease_time=1.0),
                                dict(wait=-1), dict(wait=NAN), dict(lease_time=1e10),
                                dict(k=0), dict(k=257), dict(threshold=1.5), dict(ef=-1)])
def test_lookup_ex_refuses_bad_arguments(kw):
    args = dict(k=1, threshold=0.5, ef=0, prompt=None, lease=True, wait=0.0, lease_time=0.0,
                want_shadow=False)
    args.update(kw)
    with pytest.raises(deja.InvalidArgument):
        w.lookup_ex_parts("n", 1, b"\0\0\x80?", **args)


def test_store_ex_request_is_a_store_then_the_lease():
    vec = struct.pack("<2f", 1.0, 0.0)
    store = body(w.store_parts("ns", 2, vec, "resp", "prompt", 60, 1, 2, 3, 0))
    ex = store + w.lease_id_bytes(0x1122334455667788)
    assert ex[-8:] == bytes.fromhex("8877665544332211")
    assert len(ex) == 41 + 2 + 8 + 6 + 4
    with pytest.raises(deja.InvalidArgument):
        w.lease_id_bytes(-1)
    with pytest.raises(deja.InvalidArgument):
        w.lease_id_bytes(1 << 64)


def test_lease_release_request():
    assert w.lease_release_body("ab", 7) == b"\x02ab" + struct.pack("<Q", 7)
    with pytest.raises(deja.InvalidArgument):
        w.lease_release_body("ab", 0)


def test_ns_policy_requests():
    assert w.ns_policy_body("ns", None, None) == b"\x02ns" + bytes(8)
    assert w.ns_policy_body("ns", deja.PolicyMode.SHADOW, 0.9) == \
        b"\x02ns" + struct.pack("<BBHf", 1, 1, 0, 0.9)
    assert w.ns_policy_body("ns", deja.PolicyMode.SERVE, 0) == \
        b"\x02ns" + struct.pack("<BBHf", 1, 0, 0, 0.0)
    current = deja.NsPolicy(deja.PolicyMode.SHADOW, 0.5)
    assert w.ns_policy_body("ns", None, 0.75, current) == \
        b"\x02ns" + struct.pack("<BBHf", 1, 1, 0, 0.75)
    assert w.ns_policy_body("ns", deja.PolicyMode.SERVE, None, current) == \
        b"\x02ns" + struct.pack("<BBHf", 1, 0, 0, 0.5)
    for mode, band in ((2, 0.5), (True, 0.5), (0, 1.5), (0, -0.1), (0, NAN), (0, math.inf)):
        with pytest.raises(deja.InvalidArgument):
            w.ns_policy_body("ns", mode, band)


def test_hello_offers_versions_1_to_2():
    assert w.hello_body(w.PROTOCOL_MIN, w.PROTOCOL_MAX, "x") == struct.pack("<HHH", 1, 2, 1) + b"x"
    assert w.header(w.OP_LOOKUP_EX, 9, 0)[2] == 1  # the frame version byte stays 1


# ---- replies --------------------------------------------------------------------------

def test_lookup_ex_reply_decodes():
    raw = lookup_ex_reply(1, 0, [hit_ex(5, 0.95, 0, b"p", b"one"),
                                 hit_ex(6, 0.87, w.HIT_BORDERLINE, b"", b"two")])
    r = w.decode_lookup_ex(raw, 2, w.FLAG_BORDERLINE)
    assert r.outcome is deja.Outcome.HIT and r.lease_id == 0 and not r.shadow
    assert [(h.id, h.response, h.prompt, h.exact, h.borderline) for h in r.hits] == [
        (5, b"one", b"p", False, False), (6, b"two", None, False, True)]
    assert r.hits[0].similarity == pytest.approx(0.95) and r.borderline and not r.exact
    assert r and r.hit.id == 5 and r.response == b"one" and r.shadow_hits == ()

    r = w.decode_lookup_ex(lookup_ex_reply(1, 0, [hit_ex(5, 0.7, w.HIT_EXACT)]), 1, w.FLAG_EXACT)
    assert r.exact and r.hit.exact and not r.borderline

    r = w.decode_lookup_ex(lookup_ex_reply(2, 0xDEADBEEF12345678), 1, 0)
    assert r.outcome is deja.Outcome.LEASE and r.lease_id == 0xDEADBEEF12345678 and not r

    r = w.decode_lookup_ex(lookup_ex_reply(0, 0, [], [hit_ex(8, 0.9, 0x03)], w.REPLY_SHADOW
                                           | 0x80), 3, 0)
    assert r.outcome is deja.Outcome.MISS and r.shadow and not r.hits
    assert r.shadow_hits[0].id == 8 and r.shadow_hits[0].exact and r.shadow_hits[0].borderline

    r = w.decode_lookup_ex(lookup_ex_reply(3, 0, [hit_ex(9, 0.93)]), 1, 0)
    assert r.outcome is deja.Outcome.COALESCED and r.hit.id == 9


@pytest.mark.parametrize("raw,k", [
    (lookup_ex_reply(4), 1),                                     # unknown outcome
    (lookup_ex_reply(255), 1),
    (lookup_ex_reply(2, 0), 1),                                  # LEASE without a lease id
    (lookup_ex_reply(1, 0, [hit_ex(1, 0.9)] * 2), 1),            # count above k
    (lookup_ex_reply(0, 0, [], [hit_ex(1, 0.9)] * 3), 2),        # shadow_count above k
    (struct.pack("<BBQH", 1, 0, 0, 257), 256),                   # count above 256
    (lookup_ex_reply(1, 0, []) + b"x", 1),                       # trailing bytes
    (lookup_ex_reply(1, 0, [hit_ex(1, 0.9)])[:-3], 1),           # cut short
    (lookup_ex_reply(1, 0, [hit_ex(1, NAN)]), 1),                # NaN similarity
    (lookup_ex_reply(1, 0, [hit_ex(1, math.inf)]), 1),
    (struct.pack("<BBQ", 1, 0, 0), 1),                           # no count at all
    (b"\x01", 1),
])
def test_lookup_ex_reply_malformed(raw, k):
    with pytest.raises(deja.ProtocolError):
        w.decode_lookup_ex(raw, k, 0)


def test_ns_policy_reply():
    assert w.decode_ns_policy(struct.pack("<B3xf", 1, 0.9)) == \
        deja.NsPolicy(deja.PolicyMode.SHADOW, pytest.approx(0.9))
    assert w.decode_ns_policy(bytes(8)) == deja.NsPolicy(deja.PolicyMode.SERVE, 0.0)
    for raw in (bytes(7), bytes(9), struct.pack("<B3xf", 2, 0.5),
                struct.pack("<B3xf", 0, 1.5), struct.pack("<B3xf", 0, -0.5),
                struct.pack("<B3xf", 0, NAN)):
        with pytest.raises(deja.ProtocolError):
            w.decode_ns_policy(raw)


def test_lookup_reply_borderline_flag():
    raw = struct.pack("<H", 2) + b"".join(struct.pack("<QfII", i, 0.87, 0, 1) + b"x"
                                          for i in (1, 2))
    hits, exact = w.decode_lookup(raw, 2, w.FLAG_BORDERLINE)
    assert [h.borderline for h in hits] == [True, False] and not exact
    hits, _ = w.decode_lookup(raw, 2, 0)
    assert not any(h.borderline for h in hits)


def test_similarity_histogram():
    h = deja.similarity_histogram({"sim_hit_91": 3, "sim_hit_99": 1, "sim_miss_lt50": 2,
                                   "sim_miss_none": 4, "sim_miss_84": 5, "hits": 99,
                                   "sim_hit_bogus": 7, "sim_hit_sum_micro": 3_720_000})
    assert list(h.hit) == list(deja.SIMILARITY_BUCKETS) == list(h.miss)
    assert len(deja.SIMILARITY_BUCKETS) == 52
    assert h.hit["91"] == 3 and h.hit["99"] == 1 and h.hit["50"] == 0 and h.hit["none"] == 0
    assert h.miss["lt50"] == 2 and h.miss["none"] == 4 and h.miss["84"] == 5
    assert (h.hits, h.misses) == (4, 11)
    assert h.hit_sum == pytest.approx(3.72) and h.miss_sum == 0.0
    with pytest.raises(TypeError):
        h.hit["91"] = 0  # type: ignore[index]
    empty = deja.similarity_histogram({})
    assert empty.hits == empty.misses == 0


# ---- scripted servers ---------------------------------------------------------------

def hello_v(rid: int, version: int) -> bytes:
    name = b"fake"
    return reply_frame(0x01, rid, struct.pack("<HHIIH", version, 4096, 1 << 24, 0, len(name))
                       + name)


class Script:
    """A fake server speaking the given version: records every request
    (op, rid, body) and answers through on_request(conn, op, rid, body)."""

    def __init__(self, version, on_request=None):
        self.version = version
        self.on_request = on_request
        self.seen = []
        self.hello_body = None

    def __call__(self, conn):
        f = read_frame(conn)
        self.hello_body = f[2]
        conn.sendall(hello_v(f[1], self.version))
        while True:
            f = read_frame(conn)
            if f is None:
                return
            self.seen.append(f)
            if self.on_request:
                self.on_request(conn, *f)


def test_client_offers_1_to_2_and_shows_the_version(fake_server):
    script = Script(2)
    srv = fake_server(script)
    with deja.Client(srv.url) as c:
        assert c.protocol_version == 2 and c.server.version == 2
    assert script.hello_body[:4] == struct.pack("<HH", 1, 2)


def test_version_1_server_v2_methods_raise_unknown_op_unsent(fake_server):
    def answer(conn, op, rid, body):
        if op == 0x03:
            conn.sendall(reply_frame(op, rid, body))
    script = Script(1, answer)
    srv = fake_server(script)
    with deja.Client(srv.url) as c:
        assert c.protocol_version == 1
        for call in (lambda: c.lookup_ex("n", [1.0], lease=True, wait=1),
                     lambda: c.store_ex("n", [1.0], "x", lease_id=3),
                     lambda: c.lease_release("n", 3), lambda: c.ns_policy("n")):
            with pytest.raises(deja.UnknownOp) as e:
                call()
            assert e.value.status == 5 and "version 2" in str(e.value)
        assert c.ping(b"ok") == b"ok"  # the connection is fine

    async def main():
        async with deja.aio.Client(srv.url) as ac:
            assert ac.protocol_version == 1
            with pytest.raises(deja.UnknownOp):
                await ac.lookup_ex("n", [1.0])
            with pytest.raises(deja.UnknownOp):
                await ac.ns_policy("n", mode=deja.PolicyMode.SHADOW, gray_band=0.9)
    asyncio.run(main())
    assert [op for op, _, _ in script.seen] == [0x03]


def test_get_or_fetch_against_a_version_1_server_uses_lookup_and_store(fake_server):
    def answer(conn, op, rid, body):
        if op == w.OP_LOOKUP:
            conn.sendall(reply_frame(op, rid, struct.pack("<H", 0)))
        elif op == w.OP_STORE:
            conn.sendall(reply_frame(op, rid, struct.pack("<Q", 77)))
    script = Script(1, answer)
    srv = fake_server(script)
    with deja.Pool(srv.url, lookup_timeout=2, write_timeout=2) as pool:
        r = pool.get_or_fetch("n", [1.0, 0.0], lambda: "fresh")
        assert r.fetched and r.stored and r.hit.id == 77 and not r.coalesced

    async def main():
        async with deja.aio.Pool(srv.url, lookup_timeout=2, write_timeout=2) as pool:
            r = await pool.get_or_fetch("n", [1.0, 0.0], lambda: "fresh")
            assert r.fetched and r.stored and r.hit.id == 77
    asyncio.run(main())
    assert [op for op, _, _ in script.seen] == [w.OP_LOOKUP, w.OP_STORE] * 2


def test_waiting_lookup_ex_answered_after_later_requests(fake_server):
    """The server holds a LOOKUP_EX back (it waits on a lease) and answers a
    PING sent after it first: the asyncio client matches by request id."""
    held = []

    def answer(conn, op, rid, body):
        if op == w.OP_LOOKUP_EX:
            held.append(rid)
        elif op == w.OP_PING:
            conn.sendall(reply_frame(op, rid, body))
            for r in held:
                conn.sendall(reply_frame(w.OP_LOOKUP_EX, r, lookup_ex_reply(
                    3, 0, [hit_ex(42, 0.93, 0, b"", b"theirs")]), flags=w.FLAG_BORDERLINE))
            held.clear()
    srv = fake_server(Script(2, answer))

    async def main():
        async with deja.aio.Client(srv.url, timeout=2) as c:
            waiting = asyncio.ensure_future(c.lookup_ex("n", [1.0], lease=True, wait=5))
            await asyncio.sleep(0.05)
            assert await c.ping(b"later") == b"later"
            r = await waiting
            assert r.outcome is deja.Outcome.COALESCED and r.hit.response == b"theirs"
            assert r.borderline
    asyncio.run(main())


def test_timeout_covers_the_wait(fake_server):
    """A LOOKUP_EX whose reply comes after the client's timeout but within
    timeout + wait is not a timeout, in either client."""
    def answer(conn, op, rid, body):
        if op == w.OP_LOOKUP_EX:
            def late():
                time.sleep(0.6)
                conn.sendall(reply_frame(op, rid, lookup_ex_reply(2, 99)))
            threading.Thread(target=late, daemon=True).start()
    srv = fake_server(Script(2, answer))
    with deja.Client(srv.url, timeout=0.3) as c:
        r = c.lookup_ex("n", [1.0], lease=True, wait=0.5)
        assert r.outcome is deja.Outcome.LEASE and r.lease_id == 99
        with pytest.raises(deja.Timeout):  # without the wait the same reply is late
            c.lookup_ex("n", [1.0], lease=True, wait=0)

    async def main():
        async with deja.aio.Client(srv.url, timeout=0.3) as ac:
            r = await ac.lookup_ex("n", [1.0], lease=True, wait=0.5)
            assert r.lease_id == 99
    asyncio.run(main())


def test_abandoned_lease_is_given_back(fake_server):
    """asyncio: a LOOKUP_EX cancelled while the server holds it, answered
    later with a lease: the client releases that lease at once."""
    got = []
    done = threading.Event()

    def answer(conn, op, rid, body):
        if op == w.OP_LOOKUP_EX:
            def late():
                time.sleep(0.3)
                conn.sendall(reply_frame(op, rid, lookup_ex_reply(2, 0xABCDEF)))
            threading.Thread(target=late, daemon=True).start()
        elif op == w.OP_LEASE_RELEASE:
            got.append(body)
            conn.sendall(reply_frame(op, rid, b""))
            done.set()
        elif op == w.OP_PING:
            conn.sendall(reply_frame(op, rid, body))
    srv = fake_server(Script(2, answer))

    async def main():
        async with deja.aio.Client(srv.url, timeout=5) as c:
            t = asyncio.ensure_future(c.lookup_ex("space", [1.0], lease=True, wait=2))
            await asyncio.sleep(0.1)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            await asyncio.sleep(0.5)
            assert await c.ping() == b""
    asyncio.run(main())
    assert done.wait(2)
    assert got == [b"\x05space" + struct.pack("<Q", 0xABCDEF)]


def test_malformed_lookup_ex_reply_closes_the_connection(fake_server):
    def answer(conn, op, rid, body):
        conn.sendall(reply_frame(op, rid, lookup_ex_reply(9)))
    srv = fake_server(Script(2, answer))
    with deja.Client(srv.url) as c:
        with pytest.raises(deja.ProtocolError):
            c.lookup_ex("n", [1.0])
        assert c.closed


def _lease_server(fake_server, outcome_reply):
    """A version-2 fake that answers every LOOKUP_EX with outcome_reply and
    STORE_EX (id 55), LEASE_RELEASE and STORE (id 66) as dejad would."""
    def answer(conn, op, rid, body):
        if op == w.OP_LOOKUP_EX:
            conn.sendall(reply_frame(op, rid, outcome_reply))
        elif op == w.OP_STORE_EX:
            conn.sendall(reply_frame(op, rid, struct.pack("<Q", 55)))
        elif op == w.OP_STORE:
            conn.sendall(reply_frame(op, rid, struct.pack("<Q", 66)))
        elif op == w.OP_LEASE_RELEASE:
            conn.sendall(reply_frame(op, rid, b""))
    script = Script(2, answer)
    return script, fake_server(script)


def _get_or_fetch(url, fetch, asyncio_pool, **kw):
    if not asyncio_pool:
        with deja.Pool(url, lookup_timeout=2, write_timeout=2) as pool:
            return pool.get_or_fetch("lns", [1.0, 0.0], fetch, **kw)

    async def main():
        async with deja.aio.Pool(url, lookup_timeout=2, write_timeout=2) as pool:
            return await pool.get_or_fetch("lns", [1.0, 0.0], fetch, **kw)
    return asyncio.run(main())


@pytest.mark.parametrize("asyncio_pool", [False, True], ids=["sync", "asyncio"])
def test_get_or_fetch_lease_paths(fake_server, asyncio_pool):
    lease = lookup_ex_reply(2, 0x0102030405060708)
    tail = struct.pack("<Q", 0x0102030405060708)

    # LEASE: fetch, then STORE_EX carrying the lease id.
    script, srv = _lease_server(fake_server, lease)
    r = _get_or_fetch(srv.url, lambda: "mine", asyncio_pool, prompt="q")
    assert r.fetched and r.stored and r.hit.id == 55 and not r.coalesced
    assert [op for op, _, _ in script.seen] == [w.OP_LOOKUP_EX, w.OP_STORE_EX]
    assert script.seen[1][2].endswith(b"mine" + tail)
    options = struct.unpack_from("<H", script.seen[0][2], 11 + 3)[0]
    wait_ms = struct.unpack_from("<I", script.seen[0][2], 13 + 3)[0]
    assert options == w.LOOKUP_LEASE and wait_ms == 10000  # the pool's lease_wait

    # LEASE, and fetch raises: the lease is released, the error propagates.
    script, srv = _lease_server(fake_server, lease)
    def broken():
        raise RuntimeError("model down")
    with pytest.raises(RuntimeError):
        _get_or_fetch(srv.url, broken, asyncio_pool, lease_wait=0.5)
    assert [op for op, _, _ in script.seen] == [w.OP_LOOKUP_EX, w.OP_LEASE_RELEASE]
    assert script.seen[1][2] == b"\x03lns" + tail
    assert struct.unpack_from("<I", script.seen[0][2], 13 + 3)[0] == 500

    # LEASE, and a non-OK completion: released, not stored, answer returned.
    script, srv = _lease_server(fake_server, lease)
    r = _get_or_fetch(srv.url, lambda: deja.Answer("cut", completion=deja.Completion.TRUNCATED),
                      asyncio_pool)
    assert r.fetched and not r.stored and r.hit.response == b"cut"
    assert [op for op, _, _ in script.seen] == [w.OP_LOOKUP_EX, w.OP_LEASE_RELEASE]

    # COALESCED: another caller's answer, fetch not called.
    script, srv = _lease_server(fake_server, lookup_ex_reply(3, 0, [hit_ex(9, 0.95, 0, b"",
                                                                              b"theirs")]))
    r = _get_or_fetch(srv.url, broken, asyncio_pool)
    assert r.coalesced and not r.fetched and r.hit.response == b"theirs"

    # MISS (shadow mode, or the lease bounds reached): fetch and a plain STORE.
    script, srv = _lease_server(fake_server, lookup_ex_reply(0, 0, [], [], w.REPLY_SHADOW))
    r = _get_or_fetch(srv.url, lambda: "x", asyncio_pool)
    assert r.fetched and r.stored and r.hit.id == 66
    assert [op for op, _, _ in script.seen] == [w.OP_LOOKUP_EX, w.OP_STORE]

    # leases=False: the version-1 loop, also on a version-2 server.
    script, srv = _lease_server(fake_server, lease)
    def plain(conn, op, rid, body):
        if op == w.OP_LOOKUP:
            conn.sendall(reply_frame(op, rid, struct.pack("<H", 0)))
        else:
            script_answer(conn, op, rid, body)
    script_answer = script.on_request
    script.on_request = plain
    r = _get_or_fetch(srv.url, lambda: "x", asyncio_pool, leases=False)
    assert [op for op, _, _ in script.seen] == [w.OP_LOOKUP, w.OP_STORE] and r.stored
