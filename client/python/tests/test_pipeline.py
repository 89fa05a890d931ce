"""Pipelining (1,000 requests, replies out of order), the pool under 16
threads, and asyncio with 100 concurrent lookups on one connection."""

from __future__ import annotations

import asyncio
import struct
import threading

import deja
import deja.aio
from conftest import hello_reply, paraphrase, read_frame, reply_frame, unit


def test_pipeline_1000_against_dejad(client, ns, rng):
    vecs = [unit(rng, 64) for _ in range(1000)]
    ids = client.store_many([deja.StoreRequest(ns, v, f"r{i}") for i, v in enumerate(vecs)])
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == 1000
    reqs = [deja.LookupRequest(ns, paraphrase(rng, v, 0.97), threshold=0.9) for v in vecs]
    results = client.lookup_many(reqs)
    assert [r.hit.id if r else None for r in results] == ids
    assert [r.hit.response for r in results[:3]] == [b"r0", b"r1", b"r2"]
    # One bad request in a batch fails alone; the others and the connection are fine.
    mixed = client.lookup_many([reqs[0], deja.LookupRequest(ns, [1.0, 2.0]),
                                deja.LookupRequest(ns, vecs[2], k=0), reqs[3]])
    assert mixed[0].hit.id == ids[0] and mixed[3].hit.id == ids[3]
    assert isinstance(mixed[1].error, deja.DimMismatch)
    assert isinstance(mixed[2].error, deja.InvalidArgument)
    assert client.ping(b"after") == b"after"


def _reverse_server(conn):
    """Answers HELLO, then reads whole batches of LOOKUPs and answers each
    batch in reverse order, every hit naming its request id."""
    first = read_frame(conn)
    conn.sendall(hello_reply(first[1]))
    batch = []
    while True:
        f = read_frame(conn)
        if f is None:
            return
        op, rid, body = f
        batch.append(rid)
        if len(batch) == 1000:
            out = []
            for r in reversed(batch):
                resp = b"answer %d" % r
                out.append(reply_frame(op, r, struct.pack("<HQfII", 1, r, 0.5, 0, len(resp)) + resp))
            conn.sendall(b"".join(out))
            batch = []


def test_out_of_order_replies(fake_server):
    srv = fake_server(_reverse_server)
    v = [1.0] * 16
    with deja.Client(srv.url) as c:
        reqs = [deja.LookupRequest("ns", v, threshold=0.1) for _ in range(1000)]
        first_id = c._next_id
        results = c.lookup_many(reqs)
        assert [r.hit.id for r in results] == list(range(first_id, first_id + 1000))
        assert all(r.hit.response == b"answer %d" % r.hit.id for r in results)

    async def main():
        async with deja.aio.Client(srv.url) as c:
            first_id = c._next_id
            results = await c.lookup_many(reqs)
            assert [r.hit.id for r in results] == list(range(first_id, first_id + 1000))
    asyncio.run(main())


def test_aio_out_of_order_with_dejad(dejad, ns, rng):
    """Stores and lookups in flight together on one connection: dejad answers
    a store after its commit, so replies overtake each other."""
    async def main():
        async with deja.aio.Client(dejad.url) as c:
            base = [unit(rng, 32) for _ in range(20)]
            ids = await c.store_many([deja.StoreRequest(ns, v, "base") for v in base])
            order = []
            on_frame = c._on_frame

            def spy(op, flags, status, rid, body):
                order.append(rid)
                on_frame(op, flags, status, rid, body)
            c._on_frame = spy
            jobs = []
            for i in range(500):
                jobs.append(c.store(ns, unit(rng, 32), f"new{i}"))
                jobs.append(c.lookup(ns, base[i % 20], threshold=0.99))
            out = await asyncio.gather(*jobs)
            assert all(isinstance(x, int) for x in out[0::2])
            assert [r.hit.id for r in out[1::2]] == [ids[i % 20] for i in range(500)]
            assert len(order) == 1000
            assert order != sorted(order)  # replies did come out of order
    asyncio.run(main())


def test_pool_16_threads(dejad, ns, rng):
    vecs = [unit(rng, 128) for _ in range(64)]
    with deja.Pool(dejad.url, size=4, lookup_timeout=5, write_timeout=10) as pool:
        ids = pool.store_many([deja.StoreRequest(ns, v, f"v{i}") for i, v in enumerate(vecs)])
        errors = []

        def worker(t):
            for j in range(100):
                i = (t * 7 + j) % len(vecs)
                r = pool.lookup(ns, vecs[i], threshold=0.99)
                if not r or r.hit.id != ids[i] or r.hit.response != b"v%d" % i:
                    errors.append((t, j, r))
                if j % 25 == 0:
                    pool.stats(ns)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        st = pool.status()
        assert st.connections <= 4 and st.failures == 0 and st.calls >= 1600
        assert st.breaker == deja.BreakerState.CLOSED


def test_aio_100_concurrent_lookups_one_connection(dejad, ns, rng):
    async def main():
        vecs = [unit(rng) for _ in range(10)]
        async with deja.aio.Client(dejad.url) as c:
            ids = await c.store_many([deja.StoreRequest(ns, v, f"a{i}") for i, v in enumerate(vecs)])
            before = (await c.stats())["connections_total"]
            results = await asyncio.gather(*[c.lookup(ns, vecs[i % 10]) for i in range(100)])
            assert [r.hit.id for r in results] == [ids[i % 10] for i in range(100)]
            assert (await c.stats())["connections_total"] == before  # no other connection
            assert c.in_flight == 0

        async with deja.aio.Pool(dejad.url, size=2, lookup_timeout=5) as p:
            results = await asyncio.gather(*[p.lookup(ns, vecs[i % 10]) for i in range(100)])
            assert [r.hit.id for r in results] == [ids[i % 10] for i in range(100)]
            assert p.status().connections <= 2
    asyncio.run(main())
