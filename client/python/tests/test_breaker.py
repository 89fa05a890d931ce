"""Failing open: dejad killed mid-run, a server that accepts and never
answers, the breaker's states, and recovery when dejad returns. Timing
assertions are bounds with slack (DEJA_TEST_SLACK_MS, default 100 ms)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import deja
import deja.aio
from conftest import unit

SLACK = int(os.environ.get("DEJA_TEST_SLACK_MS", "100")) / 1000


def timed(fn, *args, **kwargs):
    t0 = time.monotonic()
    r = fn(*args, **kwargs)
    return r, time.monotonic() - t0


def test_breaker_dejad_killed_and_restarted(spawn, rng):
    d = spawn()
    v = unit(rng, 32)
    pool = deja.Pool(d.url, lookup_timeout=0.05, breaker_failures=3, breaker_cooldown=0.3)
    eid = pool.store("b", v, "cached")
    assert pool.lookup("b", v).hit.id == eid
    d.kill()

    # Every lookup returns within its deadline, as a miss that says why.
    errors = []
    for _ in range(3):
        r, took = timed(pool.lookup, "b", v)
        assert not r and r.error is not None and took < 0.05 + SLACK
        errors.append(r.error)
    assert all(isinstance(e, (deja.ConnectFailed, deja.ConnectionClosed, deja.Timeout))
               for e in errors)
    st = pool.status()
    assert st.breaker == deja.BreakerState.OPEN and st.trips == 1
    assert st.open_remaining > 0 and st.connections == 0

    # Open: fails fast, without a connect attempt.
    connects = st.connects
    t0 = time.monotonic()
    for _ in range(1000):
        r = pool.lookup("b", v)
        assert isinstance(r.error, deja.Unavailable) and not r
    assert time.monotonic() - t0 < 0.25  # well under a millisecond each
    with pytest.raises(deja.Unavailable):
        pool.store("b", v, "x")
    assert pool.status().connects == connects and pool.status().fast_fails >= 1000

    # After the cool-down one probe goes out; it fails (still down): open again.
    time.sleep(0.35)
    r, took = timed(pool.lookup, "b", v)
    assert not r and not isinstance(r.error, deja.Unavailable) and took < 0.05 + SLACK
    assert pool.status().breaker == deja.BreakerState.OPEN and pool.status().trips == 2

    # dejad returns (same port, same data): the next probe closes the breaker.
    d.start()
    deadline = time.monotonic() + 5
    while True:
        r, took = timed(pool.lookup, "b", v)
        assert took < 0.05 + SLACK
        if r:
            break
        assert time.monotonic() < deadline, r.error
        time.sleep(0.02)
    assert r.hit.id == eid and r.hit.response == b"cached"  # durable across the kill
    assert pool.status().breaker == deja.BreakerState.CLOSED
    assert pool.status().consecutive_failures == 0
    pool.close()


def test_get_or_fetch_when_dejad_is_down(spawn, rng):
    d = spawn()
    pool = deja.Pool(d.url, breaker_failures=2, breaker_cooldown=5)
    d.kill()
    for i in range(4):
        r, took = timed(pool.get_or_fetch, "down", unit(rng, 8), lambda: "from the LLM",
                        prompt=f"q{i}")
        # The app gets its answer; nothing is stored and the error says why.
        assert r.fetched and not r.stored and r.hit.response == b"from the LLM"
        assert r.error is not None and took < 0.05 + SLACK
    assert isinstance(r.error, deja.Unavailable)


def test_silent_server(fake_server, rng):
    srv = fake_server(None)  # accepts (the kernel does) and never answers
    t0 = time.monotonic()
    with pytest.raises(deja.Timeout):
        deja.Client(srv.url, timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 0.2 + SLACK

    pool = deja.Pool(srv.url, lookup_timeout=0.05, breaker_failures=3, breaker_cooldown=10)
    for i in range(3):
        r, took = timed(pool.lookup, "s", unit(rng, 8))
        assert isinstance(r.error, deja.Timeout) and took < 0.05 + SLACK
    st = pool.status()
    assert st.breaker == deja.BreakerState.OPEN and st.timeouts == 3
    connects = st.connects
    r, took = timed(pool.lookup, "s", unit(rng, 8))
    assert isinstance(r.error, deja.Unavailable) and took < SLACK
    assert pool.status().connects == connects  # no network attempt
    res = pool.lookup_many([deja.LookupRequest("s", unit(rng, 8))] * 3)
    assert all(isinstance(x.error, deja.Unavailable) for x in res)


def test_breaker_half_open_admits_one_probe():
    now = [0.0]
    pool = deja.Pool("deja://127.0.0.1:1", breaker_failures=2, breaker_cooldown=1.0,
                     clock=lambda: now[0])  # port 1: connection refused
    for _ in range(2):
        assert isinstance(pool.lookup("x", [1.0]).error, deja.ConnectFailed)
    assert pool.status().breaker == deja.BreakerState.OPEN
    now[0] = 0.5
    assert isinstance(pool.lookup("x", [1.0]).error, deja.Unavailable)
    now[0] = 1.5
    assert pool.status().breaker == deja.BreakerState.HALF_OPEN
    assert isinstance(pool.lookup("x", [1.0]).error, deja.ConnectFailed)  # the probe
    assert pool.status().breaker == deja.BreakerState.OPEN and pool.status().trips == 2


def test_aio_pool_fails_open(spawn, fake_server, rng):
    d = spawn()
    srv = fake_server(None)

    async def main():
        v = unit(rng, 16)
        pool = deja.aio.Pool(d.url, lookup_timeout=0.05, breaker_failures=3,
                             breaker_cooldown=0.3)
        eid = await pool.store("a", v, "cached")
        assert (await pool.lookup("a", v)).hit.id == eid
        d.kill()
        loop = asyncio.get_running_loop()
        for _ in range(5):
            t0 = loop.time()
            r = await pool.lookup("a", v)
            assert not r and r.error is not None and loop.time() - t0 < 0.05 + SLACK
        assert pool.status().breaker == deja.BreakerState.OPEN
        d.start()
        await asyncio.sleep(0.35)
        deadline = loop.time() + 5
        while not (r := await pool.lookup("a", v)):
            assert loop.time() < deadline, r.error
            await asyncio.sleep(0.02)
        assert r.hit.id == eid and pool.status().breaker == deja.BreakerState.CLOSED
        await pool.close()

        silent = deja.aio.Pool(srv.url, lookup_timeout=0.05, breaker_failures=3)
        t0 = loop.time()
        results = await asyncio.gather(*[silent.lookup("a", v) for _ in range(20)])
        assert loop.time() - t0 < 0.05 + SLACK
        assert all(not r and r.error is not None for r in results)
        assert silent.status().breaker == deja.BreakerState.OPEN
        async with deja.aio.Client(srv.url, timeout=0.1):
            pass  # HELLO never answered: Timeout
    with pytest.raises(deja.Timeout):
        asyncio.run(main())
