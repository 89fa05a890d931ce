#!/usr/bin/env python3
"""gen-format1.py: how tests/data/format1/ was written (kept for the record;
the test only reads the folder).

Run once, with the dejad of commit b677658 (store format 1, namespace
configuration block revision 1), before the store got its own encoding of
the namespace configuration:

    gen-format1.py OLD_DEJAD OUT_DIR

It starts dejad with --default-ttl 0 (so that nothing ever expires), creates
namespaces of every kind of configuration record the store holds (implicit
with dim only, explicit HNSW parameters, flat with literal values and a
sliding TTL, non-ok completions allowed), stores a few entries with prompts,
hits some of them (usage records), and stops dejad cleanly. The expected
contents are in tests/test-store-format1.c."""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
import deja  # noqa: E402
from deja import IndexKind, NamespaceConfig, NamespaceFlag, TtlMode, Completion  # noqa: E402

DIM = 8


def vec(seed: int) -> list:
    v = [((seed * 31 + i * 17) % 23) - 11.0 for i in range(DIM)]
    v[seed % DIM] += 40.0
    return v


def main() -> None:
    dejad, out = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        p = subprocess.Popen([dejad, "--port", "0", "--port-file", port_file, "--data", out,
                              "--unix", "", "--default-ttl", "0", "--threads", "1"])
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        port = int(open(port_file).read())
        with deja.Client(f"deja://127.0.0.1:{port}") as c:
            c.ns_create("tuned", NamespaceConfig(dim=DIM, index_kind=IndexKind.HNSW, hnsw_m=8,
                                                 hnsw_ef_construction=64, hnsw_ef_search=32,
                                                 min_threshold=0.5, dedup=0.97,
                                                 max_entries=1000))
            c.ns_create("literal", NamespaceConfig(dim=DIM, index_kind=IndexKind.FLAT,
                                                   ttl_mode=TtlMode.SLIDING,
                                                   flags=NamespaceFlag.EXPLICIT
                                                   | NamespaceFlag.ALLOW_NON_OK,
                                                   min_threshold=-0.25, max_age_s=0,
                                                   max_bytes=1 << 20))
            for i in range(3):
                c.store("implicit", vec(i), f"implicit answer {i}", prompt=f"implicit q{i}",
                        input_tokens=10 + i, output_tokens=20 + i, cost_micro_usd=100 + i)
                c.store("tuned", vec(10 + i), f"tuned answer {i}", prompt=f"tuned q{i}")
            c.store("literal", vec(20), "partial answer", completion=Completion.TRUNCATED)
            c.store("literal", vec(21), "")
            for _ in range(3):
                c.lookup("implicit", vec(1), threshold=0.99)
            c.lookup("tuned", vec(12), threshold=0.99)
        p.send_signal(signal.SIGTERM)
        p.wait(30)


if __name__ == "__main__":
    main()
