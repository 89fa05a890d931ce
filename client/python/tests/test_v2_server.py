"""Protocol version 2 against a real dejad: leases (many callers, one
fetch), a failing leaseholder, waits that end on time, shadow mode, the
gray band, the similarity histogram, and version-1 use of the same server."""

from __future__ import annotations

import asyncio
import random
import struct
import threading
import time
from typing import List

import pytest

import deja
import deja.aio
from conftest import paraphrase, unit

DIM = 64


def paraphrases(rng: random.Random, n: int) -> List[List[float]]:
    """n vectors at cosine 0.9 to 0.98 of one new random vector."""
    base = unit(rng, DIM)
    return [paraphrase(rng, base, rng.uniform(0.9, 0.98)) for _ in range(n)]


def run_threads(n: int, target) -> List[object]:
    """Runs target(i) on n threads released together; returns each result
    or the exception it raised."""
    out: List[object] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = target(i)
        except BaseException as e:  # noqa: B036 (the test inspects it)
            out[i] = e
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


class CountingFetch:
    """A fetch function that sleeps, counts its calls and can fail the first."""

    def __init__(self, sleep: float = 0.3, fail_first: bool = False) -> None:
        self.sleep = sleep
        self.fail_first = fail_first
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.sleep)
        if self.fail_first and n == 1:
            raise RuntimeError("the model failed")
        return f"answer {n}"


def test_many_callers_one_fetch(dejad, ns, rng):
    n = 30
    vecs = paraphrases(rng, n)
    fetch = CountingFetch(0.3)
    with deja.Pool(dejad.url, size=n, connect_timeout=2, lookup_timeout=2,
                   write_timeout=5) as pool:
        assert pool.ping(timeout=2) == b""
        results = run_threads(n, lambda i: pool.get_or_fetch(ns, vecs[i], fetch,
                                                             threshold=0.75))
        stats = pool.stats(ns)
    assert all(isinstance(r, deja.LookupResult) for r in results), results
    assert fetch.calls == 1
    assert {r.hit.response for r in results} == {b"answer 1"}
    assert sum(r.fetched for r in results) == 1 and sum(r.coalesced for r in results) == n - 1
    assert all(r.stored for r in results if r.fetched)
    assert all(r.error is None and not (r.fetched and r.coalesced) for r in results)
    assert stats["coalesced"] == n - 1 and stats["entries"] == 1


def test_many_tasks_one_fetch(dejad, ns, rng):
    n = 30
    vecs = paraphrases(rng, n)
    calls = []

    async def fetch() -> str:
        calls.append(1)
        await asyncio.sleep(0.3)
        return "async answer"

    async def main():
        async with deja.aio.Pool(dejad.url, size=4, connect_timeout=2, lookup_timeout=2,
                                 write_timeout=5) as pool:
            await pool.ping(timeout=2)
            results = await asyncio.gather(*(pool.get_or_fetch(ns, v, fetch, threshold=0.75)
                                             for v in vecs))
            return results, await pool.stats(ns)
    results, stats = asyncio.run(main())
    assert len(calls) == 1
    assert {r.hit.response for r in results} == {b"async answer"}
    assert sum(r.coalesced for r in results) == n - 1 and stats["coalesced"] == n - 1


def test_failing_leaseholder_hands_over(dejad, ns, rng):
    n = 10
    vecs = paraphrases(rng, n)
    fetch = CountingFetch(0.2, fail_first=True)
    with deja.Pool(dejad.url, size=n, connect_timeout=2, lookup_timeout=2,
                   write_timeout=5) as pool:
        pool.ping(timeout=2)
        results = run_threads(n, lambda i: pool.get_or_fetch(ns, vecs[i], fetch,
                                                             threshold=0.75))
        stats = pool.stats(ns)
    failed = [r for r in results if isinstance(r, BaseException)]
    answered = [r for r in results if isinstance(r, deja.LookupResult)]
    assert len(failed) == 1 and isinstance(failed[0], RuntimeError)
    assert fetch.calls == 2  # the failed holder, then the promoted waiter
    assert {r.hit.response for r in answered} == {b"answer 2"} and len(answered) == n - 1
    assert sum(r.fetched for r in answered) == 1
    assert sum(r.coalesced for r in answered) == n - 2 == stats["coalesced"]


def test_waiter_gets_its_own_lease_at_its_deadline(dejad, ns, rng):
    a, b = paraphrases(rng, 2)
    with deja.Client(dejad.url, timeout=2) as holder, deja.Client(dejad.url, timeout=2) as c:
        held = holder.lookup_ex(ns, a, threshold=0.75, lease=True)
        assert held.outcome is deja.Outcome.LEASE and held.lease_id != 0 and not held
        t0 = time.monotonic()
        r = c.lookup_ex(ns, b, threshold=0.75, lease=True, wait=0.5)
        took = time.monotonic() - t0
        assert r.outcome in (deja.Outcome.LEASE, deja.Outcome.MISS)
        assert 0.45 <= took <= 1.5, took
        if r.outcome is deja.Outcome.LEASE:
            assert r.lease_id not in (0, held.lease_id)
            c.lease_release(ns, r.lease_id)
        # Without a wait the answer is immediate: a lease of its own.
        t0 = time.monotonic()
        r = c.lookup_ex(ns, b, threshold=0.75, lease=True, wait=0)
        assert time.monotonic() - t0 < 0.4 and r.outcome is deja.Outcome.LEASE
        c.lease_release(ns, r.lease_id)
        # get_or_fetch with a short lease_wait fetches itself once its wait ends.
        with deja.Pool(dejad.url, lookup_timeout=1, lease_wait=0.3) as pool:
            t0 = time.monotonic()
            got = pool.get_or_fetch(ns, b, lambda: "own", threshold=0.75)
            assert got.fetched and not got.coalesced and got.hit.response == b"own"
            assert 0.25 <= time.monotonic() - t0 <= 1.3
        holder.lease_release(ns, held.lease_id)
        with pytest.raises(deja.NotFound):
            holder.lease_release(ns, held.lease_id)


def test_aio_waiter_deadline_and_one_connection(dejad, ns, rng):
    """asyncio: a waiter ends at its deadline; on one connection a waiting
    LOOKUP_EX is answered after the STORE_EX sent behind it."""
    a, b, c2 = paraphrases(rng, 3)

    async def main():
        async with deja.aio.Client(dejad.url, timeout=2) as c:
            held = await c.lookup_ex(ns, a, threshold=0.75, lease=True)
            assert held.outcome is deja.Outcome.LEASE
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            r = await c.lookup_ex(ns, b, threshold=0.75, lease=True, wait=0.4)
            assert 0.35 <= loop.time() - t0 <= 1.4 and r.outcome is not deja.Outcome.COALESCED
            if r.lease_id:
                await c.lease_release(ns, r.lease_id)
            waiting = asyncio.ensure_future(c.lookup_ex(ns, c2, threshold=0.75, lease=True,
                                                        wait=5, want_prompt=True))
            await asyncio.sleep(0.1)
            assert not waiting.done() and c.in_flight == 1
            eid = await c.store_ex(ns, a, "stored by the holder", prompt="q",
                                   lease_id=held.lease_id)
            r = await waiting
            assert r.outcome is deja.Outcome.COALESCED and r.hit.id == eid
            assert r.hit.response == b"stored by the holder" and r.hit.prompt == b"q"
    asyncio.run(main())


def test_store_ex_with_an_unknown_lease_is_a_store(client, ns, rng):
    v = unit(rng, DIM)
    eid = client.store_ex(ns, v, "plain", lease_id=0x1234)
    assert client.lookup(ns, v).hit.id == eid
    r = client.lookup_ex(ns, v)
    assert r.outcome is deja.Outcome.HIT and r.hit.id == eid and r.lease_id == 0
    with pytest.raises(deja.Rejected):
        client.store_ex(ns, unit(rng, DIM), "bad", completion=deja.Completion.ERROR)


def test_shadow_mode_and_gray_band(client, ns, rng):
    v = unit(rng, DIM)
    eid = client.store(ns, v, "cached", prompt="the prompt")
    assert client.ns_policy(ns) == deja.NsPolicy(deja.PolicyMode.SERVE, 0.0)
    pol = client.ns_policy(ns, mode=deja.PolicyMode.SHADOW)
    assert pol == deja.NsPolicy(deja.PolicyMode.SHADOW, 0.0)

    assert not client.lookup(ns, v)  # shadow: computed, answered as a miss
    r = client.lookup_ex(ns, v, want_shadow=True)
    assert r.outcome is deja.Outcome.MISS and r.shadow and not r.hits
    assert [h.id for h in r.shadow_hits] == [eid]
    r = client.lookup_ex(ns, v, lease=True, wait=1)  # no lease in shadow mode
    assert r.outcome is deja.Outcome.MISS and r.lease_id == 0 and r.shadow_hits == ()
    r = client.lookup_ex(ns, paraphrase(rng, v, 0.7), want_shadow=True,
                         prompt="the prompt")  # exact tier (floor 0.5), would-be
    assert r.shadow and r.shadow_hits[0].exact
    stats = client.stats(ns)
    assert stats["shadow_hits"] >= 2 and stats.get("shadow_exact_hits", 0) >= 1

    # Serving again, with a gray band at 0.95.
    pol = client.ns_policy(ns, mode=deja.PolicyMode.SERVE, gray_band=0.95)
    assert pol.mode is deja.PolicyMode.SERVE and pol.gray_band == pytest.approx(0.95)
    assert client.ns_policy(ns, mode=deja.PolicyMode.SERVE).gray_band == pytest.approx(0.95)
    near = paraphrase(rng, v, 0.905)
    r = client.lookup(ns, near, threshold=0.85)
    assert r.hit.id == eid and r.borderline and r.hit.borderline
    rx = client.lookup_ex(ns, near, threshold=0.85)
    assert rx.outcome is deja.Outcome.HIT and rx.borderline and rx.hit.borderline
    same = client.lookup_ex(ns, v)
    assert same.hit.id == eid and not same.borderline and not same.hit.borderline
    ex = client.lookup_ex(ns, near, prompt="the prompt")  # the exact tier is never borderline
    assert ex.exact and ex.hit.exact and not ex.hit.borderline and not ex.borderline
    info = client.ns_info(ns).stats
    assert info["shadow"] == 0 and info["gray_band_milli"] == 950
    assert info["borderline_hits"] >= 2

    hist = deja.similarity_histogram(client.stats(ns))
    assert hist.hit["90"] >= 2 and hist.hit["99"] >= 1
    assert hist.hits >= 3 and set(hist.hit) == set(deja.SIMILARITY_BUCKETS)

    assert client.ns_policy(ns, gray_band=0) == deja.NsPolicy(deja.PolicyMode.SERVE, 0.0)
    assert not client.lookup(ns, near, threshold=0.85).borderline
    with pytest.raises(deja.NotFound):
        client.ns_policy(ns + "-none")
    with pytest.raises(deja.InvalidArgument):
        client.ns_policy(ns, mode=deja.PolicyMode.SERVE, gray_band=1.5)


def test_similarity_histogram_of_misses(client, ns, rng):
    client.ns_create(ns, deja.NamespaceConfig(dim=DIM))
    assert not client.lookup(ns, unit(rng, DIM))  # nothing to compare with
    v = unit(rng, DIM)
    client.store(ns, v, "x")
    assert not client.lookup(ns, paraphrase(rng, v, 0.845), threshold=0.85)
    hist = deja.similarity_histogram(client.stats(ns))
    assert hist.miss["none"] == 1 and hist.miss["84"] == 1 and hist.misses == 2
    assert hist.miss_sum == pytest.approx(0.845, abs=0.002)  # "none" is not summed
    assert hist.hits == 0


def test_aio_client_v2_ops(dejad, ns, rng):
    async def main():
        v = unit(rng, DIM)
        async with deja.aio.Client(dejad.url) as c, deja.aio.Pool(dejad.url,
                                                                  lookup_timeout=1) as pool:
            eid = await c.store(ns, v, "a")
            assert await c.ns_policy(ns, mode=deja.PolicyMode.SHADOW, gray_band=0.5) == \
                deja.NsPolicy(deja.PolicyMode.SHADOW, 0.5)
            r = await pool.lookup_ex(ns, v, want_shadow=True)
            assert r.shadow and r.shadow_hits[0].id == eid and r.error is None
            assert (await pool.ns_policy(ns, mode=deja.PolicyMode.SERVE)).gray_band == 0.5
            r = await pool.lookup_ex(ns, unit(rng, DIM), lease=True, wait=0.1)
            assert r.outcome is deja.Outcome.LEASE
            assert await pool.store_ex(ns, unit(rng, DIM), "b", lease_id=r.lease_id) > 0
            r2 = await c.lookup_ex(ns, unit(rng, DIM), lease=True)
            await pool.lease_release(ns, r2.lease_id)
    asyncio.run(main())


def test_version_1_use_of_a_version_2_server(dejad, ns, rng):
    """A client that offers only version 1 gets version 1, its ops work as
    before, and the version-2 ops are refused before anything is sent."""
    v = unit(rng, DIM)
    with deja.Client(dejad.url) as c:
        assert c.hello(max_version=1).version == 1
        eid = c.store(ns, v, "old")
        r = c.lookup(ns, v)
        assert r.hit.id == eid and not r.borderline
        with pytest.raises(deja.UnknownOp):
            c.lookup_ex(ns, v)
        with pytest.raises(deja.UnknownOp):
            c.ns_policy(ns)
        assert c.ping(b"still fine") == b"still fine"
    # A raw version-1 HELLO, as an old client sends it.
    import socket
    s = socket.create_connection(("127.0.0.1", dejad.port), timeout=5)
    try:
        s.sendall(struct.pack("<HBBHHII", 0x4A44, 1, 1, 0, 0, 7, 6) + struct.pack("<HHH", 1, 1, 0))
        head = s.recv(16, socket.MSG_WAITALL)
        body = s.recv(struct.unpack_from("<I", head, 12)[0], socket.MSG_WAITALL)
        assert head[2] == 1 and struct.unpack_from("<H", body)[0] == 1
    finally:
        s.close()
    # get_or_fetch without leases keeps the version-1 loop on this server.
    with deja.Pool(dejad.url, lookup_timeout=1, leases=False) as pool:
        r = pool.get_or_fetch(ns, unit(rng, DIM), lambda: "fresh")
        assert r.fetched and r.stored and not r.coalesced
        assert pool.get_or_fetch(ns, v, lambda: "unused").hit.id == eid
