#!/usr/bin/env python3
"""test-store-format1.py: a data folder written by an earlier dejad loads,
and serves every entry and every namespace configuration it held.

tests/data/format1/ was written by the dejad of commit b677658 (store format
1, namespace configurations in revision 1 of their record, which then was
the wire encoding of the configuration block plus a revision byte) with
tests/data/gen-format1.py. This test copies it to a temporary folder,
starts the dejad under test on the copy with the settings it was written
with, and reads back through the Python client: each namespace's
configuration (as NS_INFO resolves it) and counters, and each entry by its
vector (id, response, prompt), the hit counts written back at shutdown
included. Then it restarts dejad on the same folder, so that what the new
dejad writes reads back too.
Usage: test-store-format1.py DEJAD SOURCE_ROOT
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

DEJAD, ROOT = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import deja  # noqa: E402
from deja import IndexKind, NamespaceFlag, Quant, TtlMode  # noqa: E402

DIM = 8
FAILED = []


def check(cond, what):
    print(("   ok   " if cond else "   FAIL ") + what)
    if not cond:
        FAILED.append(what)


def vec(seed):
    """The vectors gen-format1.py stored."""
    v = [((seed * 31 + i * 17) % 23) - 11.0 for i in range(DIM)]
    v[seed % DIM] += 40.0
    return v


# namespace -> [(vector seed, entry id, response, prompt)], as written.
ENTRIES = {
    "implicit": [(0, 1, b"implicit answer 0", b"implicit q0"),
                 (1, 3, b"implicit answer 1", b"implicit q1"),
                 (2, 5, b"implicit answer 2", b"implicit q2")],
    "tuned": [(10, 2, b"tuned answer 0", b"tuned q0"),
              (11, 4, b"tuned answer 1", b"tuned q1"),
              (12, 6, b"tuned answer 2", b"tuned q2")],
    "literal": [(20, 7, b"partial answer", b""),
                (21, 8, b"", b"")],
}

# namespace -> (ns_id, the resolved configuration's fields, entry_hits).
CONFIGS = {
    "tuned": (1, dict(index_kind=IndexKind.HNSW, quant=Quant.F32, hnsw_m=8,
                      hnsw_ef_construction=64, hnsw_ef_search=32,
                      ttl_mode=TtlMode.ABSOLUTE, flags=NamespaceFlag.EXPLICIT,
                      min_threshold=0.5, dedup=0.97, default_ttl_s=0, max_age_s=0,
                      max_bytes=0, max_entries=1000, faiss_factory=""), 1),
    "literal": (2, dict(index_kind=IndexKind.FLAT, quant=Quant.F32, hnsw_m=0,
                        hnsw_ef_construction=0, hnsw_ef_search=0,
                        ttl_mode=TtlMode.SLIDING,
                        flags=NamespaceFlag.EXPLICIT | NamespaceFlag.ALLOW_NON_OK
                        | NamespaceFlag.NO_DEDUP,
                        min_threshold=-0.25, dedup=0.0, default_ttl_s=0, max_age_s=0,
                        max_bytes=1 << 20, max_entries=0, faiss_factory=""), 0),
    "implicit": (3, dict(index_kind=IndexKind.HNSW, quant=Quant.F32, hnsw_m=16,
                         hnsw_ef_construction=200, hnsw_ef_search=64,
                         ttl_mode=TtlMode.ABSOLUTE, flags=NamespaceFlag.EXPLICIT,
                         min_threshold=0.5, dedup=0.99, default_ttl_s=0, max_age_s=0,
                         max_bytes=0, max_entries=0, faiss_factory=""), 3),
}


def start(data, tmp):
    port_file = os.path.join(tmp, "port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    p = subprocess.Popen([DEJAD, "--data", data, "--unix", "", "--port", "0",
                          "--port-file", port_file, "--default-ttl", "0", "--threads", "1"])
    for _ in range(400):
        if os.path.exists(port_file) and open(port_file).read().strip():
            return p, "deja://127.0.0.1:%d" % int(open(port_file).read())
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    raise SystemExit("dejad did not start on the format-1 folder")


def read_back(url, label, round_no):
    """round_no: how many read_backs came before (each hit every entry once)."""
    print("-- %s" % label)
    with deja.Client(url) as c:
        check(sorted(c.ns_list()) == sorted(CONFIGS), "NS_LIST names the three namespaces")
        for name, (ns_id, fields, entry_hits) in CONFIGS.items():
            info = c.ns_info(name)
            cfg = info.config
            check(cfg.dim == DIM, "%s: dim %d" % (name, cfg.dim))
            for key, want in fields.items():
                got = getattr(cfg, key)
                same = abs(got - want) < 1e-6 if isinstance(want, float) else got == want
                check(same, "%s: %s is %r (want %r)" % (name, key, got, want))
            check(info.stats.get("ns_id") == ns_id, "%s: ns_id %s" % (name, info.stats.get("ns_id")))
            check(info.stats.get("entries") == len(ENTRIES[name]),
                  "%s: %s entries" % (name, info.stats.get("entries")))
            entry_hits += round_no * len(ENTRIES[name])
            check(info.stats.get("entry_hits") == entry_hits,
                  "%s: entry_hits %s (hit counts written at shutdown)"
                  % (name, info.stats.get("entry_hits")))
        for name, entries in ENTRIES.items():
            for seed, entry_id, response, prompt in entries:
                r = c.lookup(name, vec(seed), threshold=0.999, want_prompt=True)
                hit = r.hits[0] if r.hits else None
                check(hit is not None and hit.id == entry_id and hit.response == response
                      and (hit.prompt or b"") == prompt,
                      "%s: entry %d reads back (%r)" % (name, entry_id, hit))
        st = c.stats()
        check(st.get("entries") == 8, "STATS: 8 entries (%s)" % st.get("entries"))
        check(st.get("quarantined_namespaces") == 0, "STATS: nothing quarantined")


def main():
    tmp = tempfile.mkdtemp(prefix="deja-format1-")
    data = os.path.join(tmp, "data")
    shutil.copytree(os.path.join(ROOT, "tests", "data", "format1"), data)
    p = None
    try:
        p, url = start(data, tmp)
        read_back(url, "the format-1 folder, as written by the earlier dejad", 0)
        p.terminate()
        check(p.wait(30) == 0, "dejad stops cleanly")
        p, url = start(data, tmp)
        read_back(url, "the same folder after the dejad under test wrote to it", 1)
        p.terminate()
        check(p.wait(30) == 0, "dejad stops cleanly")
        p = None
    finally:
        if p is not None:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failed" % len(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
