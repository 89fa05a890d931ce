"""Every op round-trips; hits and misses; k > 1 order; exact tier; TTL;
namespaces never cross; every vector form gives the same hit."""

from __future__ import annotations

import array
import asyncio
import struct

import pytest

import deja
import deja.aio
from conftest import DIM, paraphrase, unit


def test_hello_ping_auth_without_token(client):
    info = client.hello()
    # dejad speaks versions 1 and 2 and picks the highest the client offers.
    assert info.version == 2 and 1 <= info.max_dim <= 4096 and info.max_frame >= 4096
    assert client.protocol_version == 2
    assert client.hello(max_version=1).version == 1 and client.protocol_version == 1
    assert client.hello().version == 2
    assert not info.auth_required and client.server_name.startswith("dejad")
    assert client.ping() == b""
    assert client.ping(b"hi" * 1000) == b"hi" * 1000
    assert client.ping("text") == b"text"
    client.auth("anything")  # a server without a token accepts every AUTH


def test_store_lookup_delete_flush_stats(client, ns, rng):
    v = unit(rng)
    eid = client.store(ns, v, "Paris.", prompt="What is the capital of France?", ttl=3600,
                       input_tokens=12, output_tokens=3, cost_micro_usd=150)
    assert eid > 0
    r = client.lookup(ns, v, want_prompt=True)
    assert r and len(r) == 1 and r.error is None
    hit = r.hit
    assert (hit.id, hit.response, hit.prompt, hit.text) == (
        eid, b"Paris.", b"What is the capital of France?", "Paris.")
    assert hit.similarity == pytest.approx(1.0, abs=1e-5)
    assert client.lookup(ns, v).hit.prompt is None  # only with want_prompt
    stats = client.stats(ns)
    assert stats["entries"] == 1 and stats["hits"] >= 2
    assert stats["tokens_saved"] >= 15 and stats["cost_saved_micro_usd"] >= 150
    assert client.stats()["entries"] >= 1
    client.delete(ns, eid)
    assert not client.lookup(ns, v)
    with pytest.raises(deja.NotFound):
        client.delete(ns, eid)
    for _ in range(3):
        client.store(ns, unit(rng), b"\x00binary\xff")
    assert client.flush(ns) == 3
    assert client.stats(ns)["entries"] == 0


def test_namespace_ops(client, ns):
    cfg = deja.NamespaceConfig(dim=8, index_kind=deja.IndexKind.FLAT, min_threshold=0.75,
                               default_ttl_s=600, ttl_mode=deja.TtlMode.SLIDING, max_age_s=3600,
                               flags=deja.NamespaceFlag.NO_DEDUP, max_entries=100)
    client.ns_create(ns, cfg)
    client.ns_create(ns, cfg)  # the same configuration again changes nothing
    with pytest.raises(deja.Exists):
        client.ns_create(ns, deja.NamespaceConfig(dim=16))
    assert ns in client.ns_list()
    info = client.ns_info(ns)
    got = info.config  # a server may resolve defaults (flag EXPLICIT): compare what was set
    assert (got.dim, got.index_kind, got.ttl_mode, got.min_threshold, got.default_ttl_s,
            got.max_age_s, got.max_entries) == (8, deja.IndexKind.FLAT, deja.TtlMode.SLIDING,
                                                0.75, 600, 3600, 100)
    assert got.flags & deja.NamespaceFlag.NO_DEDUP
    assert info.stats["entries"] == 0 and info.stats["min_threshold_milli"] == 750
    client.store(ns, [1.0] * 8, "x")
    assert client.ns_drop(ns) == 1
    assert ns not in client.ns_list()
    with pytest.raises(deja.NotFound):
        client.ns_info(ns)
    with pytest.raises(deja.NotFound):
        client.ns_drop(ns)
    with pytest.raises(deja.NotFound):
        client.stats(ns)


def test_hit_paraphrase_and_unrelated(client, ns, rng):
    v = unit(rng)
    eid = client.store(ns, v, "answer")
    near = paraphrase(rng, v, 0.9)
    r = client.lookup(ns, near, threshold=0.85)
    assert r.hit.id == eid and r.hit.similarity == pytest.approx(0.9, abs=0.01)
    assert not client.lookup(ns, near, threshold=0.95)  # the threshold is honoured
    assert not client.lookup(ns, unit(rng), threshold=0.5)  # unrelated: cos ~ 0
    assert not client.lookup(ns + "-other", v)  # an unknown namespace is a miss


def test_k_order(client, ns, rng):
    v = unit(rng)
    ids = {}
    for cos in (0.97, 0.9, 0.8, 0.7):
        ids[cos] = client.store(ns, paraphrase(rng, v, cos), f"c{cos}")
    r = client.lookup(ns, v, k=3, threshold=0.6)
    assert [h.id for h in r.hits] == [ids[0.97], ids[0.9], ids[0.8]]
    sims = [h.similarity for h in r.hits]
    assert sims == sorted(sims, reverse=True)
    assert len(client.lookup(ns, v, k=10, threshold=0.6)) == 4


def test_exact_tier(client, ns, rng):
    v = unit(rng)
    eid = client.store(ns, v, "exact answer", prompt="How do I reset my password?")
    # Cosine 0.7: above the namespace's floor (0.5), below the threshold
    # (0.85), so only the prompt's text can make this a hit.
    other = paraphrase(rng, v, 0.7)
    assert not client.lookup(ns, other)
    r = client.lookup(ns, other, prompt="  How do I   reset my password?\n")
    assert r.hit.id == eid and r.hit.response == b"exact answer"
    assert r.exact and r.hit.exact and r.hit.similarity == pytest.approx(0.7, abs=0.01)
    assert not client.lookup(ns, other, prompt="   ")  # a blank prompt is no prompt
    # Under the floor even the same text does not match.
    assert not client.lookup(ns, unit(rng), prompt="How do I reset my password?")
    assert not client.lookup(ns, other, prompt="how do i reset my password?")  # case is kept
    # The same normalised prompt updates the entry instead of adding one.
    assert client.store(ns, unit(rng), "new answer", prompt="How do I reset  my password?") == eid
    assert client.lookup(ns, other, prompt="How do I reset my password?").hit.response == \
        b"new answer"


def test_ttl(spawn, rng):
    d = spawn()
    with deja.Client(d.url) as c:
        v1, v2 = unit(rng, 16), unit(rng, 16)
        short = c.store("ttl", v1, "short", ttl=60)
        long = c.store("ttl", v2, "long", ttl=3600)
        assert c.lookup("ttl", v1).hit.id == short
    d.stop()
    d.start("--clock-offset", "120")  # two minutes later for the cache's clock
    with deja.Client(d.url) as c:
        assert not c.lookup("ttl", v1)  # past its TTL: never returned
        assert c.lookup("ttl", v2).hit.id == long


def test_namespaces_never_cross(client, ns, rng):
    v = unit(rng)
    a = client.store(ns + "-a", v, "from a")
    b = client.store(ns + "-b", v, "from b")
    assert client.lookup(ns + "-a", v, k=5).hits[0].response == b"from a"
    assert [h.id for h in client.lookup(ns + "-b", v, k=5).hits] == [b]
    assert len(client.lookup(ns + "-a", v, k=5)) == 1
    client.flush(ns + "-a")
    assert not client.lookup(ns + "-a", v)
    assert client.lookup(ns + "-b", v).hit.id == b
    # Another dimension in another namespace is fine.
    client.store(ns + "-c", [1.0, 2.0], "two-d")
    assert client.lookup(ns + "-c", [1.0, 2.0]).hit.response == b"two-d"
    assert a != 0


def test_vector_forms_give_the_same_hit(client, ns, rng):
    np = pytest.importorskip("numpy")
    v = unit(rng)
    eid = client.store(ns, v, "same", prompt="same prompt")
    raw = struct.pack(f"<{DIM}f", *v)
    forms = [v, tuple(v), array.array("f", v), array.array("d", v), raw, bytearray(raw),
             memoryview(raw), np.array(v, dtype=np.float32), np.array(v, dtype=np.float64),
             np.array([v], dtype=np.float32), np.array(v, dtype=">f4"),
             np.repeat(np.array(v, dtype=np.float32), 2)[::2]]
    sims = set()
    for form in forms:
        r = client.lookup(ns, form, threshold=0.99)
        assert r.hit.id == eid, type(form)
        sims.add(r.hit.similarity)
    assert len(sims) == 1  # the very same float32 bits every time
    for form in forms[::3]:  # stores take every form too (the same prompt updates the entry)
        assert client.store(ns, form, "same", prompt="same prompt") == eid
    assert client.stats(ns)["entries"] == 1


def test_unix_socket_and_env_url(dejad, monkeypatch, rng):
    with deja.Client(dejad.unix_url) as c:
        assert c.ping(b"u") == b"u"
    monkeypatch.setenv("DEJA_URL", f"127.0.0.1:{dejad.port}")
    with deja.Client() as c:
        assert c.ping(b"e") == b"e"
    with deja.Pool(f"unix:{dejad.dir}/dejad.sock") as p:
        assert p.ping(b"p") == b"p"


def test_pool_ops(dejad, ns, rng):
    with deja.Pool(dejad.url, lookup_timeout=2, write_timeout=5) as pool:
        v = unit(rng)
        eid = pool.store(ns, v, "pooled", prompt="q")
        assert pool.lookup(ns, v).hit.id == eid
        assert pool.stats(ns)["entries"] == 1
        pool.ns_create(ns + "-n", deja.NamespaceConfig(dim=4))
        assert ns + "-n" in pool.ns_list()
        assert pool.ns_info(ns + "-n").config.dim == 4
        assert pool.ns_drop(ns + "-n") == 0
        ids = pool.store_many([deja.StoreRequest(ns, unit(rng), f"m{i}") for i in range(5)])
        assert all(isinstance(i, int) for i in ids)
        res = pool.lookup_many([deja.LookupRequest(ns, v), deja.LookupRequest(ns, [1.0])])
        assert res[0].hit.id == eid and isinstance(res[1].error, deja.DimMismatch)
        pool.delete(ns, eid)
        assert pool.flush(ns) == 5
        st = pool.status()
        assert st.breaker == deja.BreakerState.CLOSED and st.failures == 0 and st.connections >= 1


def test_get_or_fetch_and_decorator(dejad, ns, rng):
    with deja.Pool(dejad.url, lookup_timeout=2, write_timeout=5) as pool:
        v = unit(rng)
        calls = []

        def fetch():
            calls.append(1)
            return deja.Answer("from the LLM", input_tokens=10, output_tokens=4,
                               cost_micro_usd=99)

        r = pool.get_or_fetch(ns, v, fetch, prompt="first question")
        assert r.fetched and r.stored and r.error is None and r.hit.id > 0
        assert r.hit.response == b"from the LLM" and r.hit.prompt == b"first question"
        r2 = pool.get_or_fetch(ns, paraphrase(rng, v, 0.95), fetch, prompt="other words")
        assert not r2.fetched and r2.hit.id == r.hit.id and len(calls) == 1
        # The exact tier answers the same prompt whatever its embedding.
        r3 = pool.get_or_fetch(ns, paraphrase(rng, v, 0.7), fetch, prompt="first  question")
        assert not r3.fetched and r3.hit.id == r.hit.id and r3.exact
        # Only completed answers are stored.
        bad = pool.get_or_fetch(ns, unit(rng), lambda: deja.Answer(
            "cut", completion=deja.Completion.TRUNCATED), prompt="truncated")
        assert bad.fetched and not bad.stored and bad.hit.response == b"cut"
        assert pool.stats(ns)["entries"] == 1
        assert pool.stats(ns)["cost_saved_micro_usd"] == 2 * 99
        with pytest.raises(deja.InvalidArgument):
            pool.get_or_fetch(ns, unit(rng), lambda: None)

        embeddings = {"hello": unit(rng), "hi there": None}
        embeddings["hi there"] = paraphrase(rng, embeddings["hello"], 0.93)

        @pool.semantic(ns=ns, embed=lambda p: embeddings[p])
        def ask(prompt: str) -> str:
            calls.append(prompt)
            return f"answer to {prompt}"

        assert ask("hello") == "answer to hello"
        assert ask("hi there") == "answer to hello"  # a paraphrase: served from the cache
        assert calls[-1] == "hello" and ask.__name__ == "ask"
        assert ask.get_or_fetch("hello").fetched is False


def test_aio_client_and_pool_ops(dejad, ns, rng):
    async def main():
        v = unit(rng)
        async with deja.aio.Client(dejad.url) as c:
            assert (await c.hello()).version == 2 and c.protocol_version == 2
            assert await c.ping(b"a") == b"a"
            eid = await c.store(ns, v, "async", prompt="p", ttl=60)
            r = await c.lookup(ns, v, want_prompt=True)
            assert r.hit.id == eid and r.hit.prompt == b"p"
            assert (await c.stats(ns))["entries"] == 1
            await c.ns_create(ns + "-n", deja.NamespaceConfig(dim=3))
            assert ns + "-n" in await c.ns_list()
            assert (await c.ns_info(ns + "-n")).config.dim == 3
            assert await c.ns_drop(ns + "-n") == 0
            ids = await c.store_many([deja.StoreRequest(ns, unit(rng), "s")] * 1)
            res = await c.lookup_many([deja.LookupRequest(ns, v)] * 3)
            assert [x.hit.id for x in res] == [eid] * 3 and isinstance(ids[0], int)
            with pytest.raises(deja.DimMismatch):
                await c.lookup(ns, [1.0, 2.0])
            await c.delete(ns, eid)
            assert await c.flush(ns) == 1
        async with deja.aio.Pool(dejad.url, lookup_timeout=2, write_timeout=5) as p:
            eid = await p.store(ns, v, "pooled")
            assert (await p.lookup(ns, v)).hit.id == eid
            r = await p.get_or_fetch(ns, unit(rng), lambda: "fetched", prompt="q")
            assert r.fetched and r.stored

            async def fetch_async():
                return deja.Answer("async fetched")
            r = await p.get_or_fetch(ns, unit(rng), fetch_async, prompt="q2")
            assert r.stored and r.hit.response == b"async fetched"

            @p.semantic(ns=ns, embed=lambda s: v)
            async def ask(prompt):
                return "never called"
            assert await ask("anything") == "pooled"  # v is cached
            assert (await p.ping(b"z")) == b"z"
            assert p.status().breaker == deja.BreakerState.CLOSED

    asyncio.run(main())
