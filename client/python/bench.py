#!/usr/bin/env python3
"""bench.py: the Python client's figures next to libdeja's, on one dejad.

Starts a private dejad, loads 10,000 x 1536 entries with deja-bench (which
also writes its query vectors), then times, on the same server and the same
queries:

  * deja.Client.lookup, one connection, one request at a time: lookups/s,
    p50 and p99;
  * libdeja on one connection (deja-bench server --no-load);
  * deja.Client.lookup_many, one connection, pipelined batches: lookups/s;
  * encoding one 1536-d vector from a list, an array('f') and numpy arrays.

Usage (from the repository root, after a build):
  nice -n 10 python3 client/python/bench.py [--duration S] [--batch N] [--json]
Binaries: $DEJAD (default build/server/dejad), $DEJA_BENCH (default
build/bench/deja-bench).
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree

import deja  # noqa: E402
from deja._vector import encode_vector  # noqa: E402

NS = "bench"
THRESHOLD = 0.85


def start_dejad(binary: str, data: str) -> "tuple[subprocess.Popen, int]":
    port_file = os.path.join(data, "port")
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--port-file",
                             port_file, "--data", data, "--unix", "", "--fsync", "batch",
                             "--log-level", "error"])
    for _ in range(1000):
        try:
            port = int(open(port_file).read().strip() or 0)
            if port:
                return proc, port
        except (FileNotFoundError, ValueError):
            pass
        if proc.poll() is not None:
            sys.exit("dejad exited early")
        time.sleep(0.01)
    proc.kill()
    sys.exit("dejad did not start")


def deja_bench(binary: str, *args: str) -> Dict:
    out = subprocess.run([binary, "server", *args, "--json", "--quiet"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def read_fvecs(path: str) -> List[memoryview]:
    data = memoryview(open(path, "rb").read())
    rows = []
    off = 0
    while off < len(data):
        dim = int.from_bytes(data[off:off + 4], "little")
        rows.append(data[off + 4:off + 4 + 4 * dim])  # raw little-endian float32
        off += 4 + 4 * dim
    return rows


def pct(sorted_values: List[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def python_single(url: str, queries: List[memoryview], duration: float) -> Dict:
    lat = []
    hits = 0
    with deja.Client(url) as c:
        for q in queries[:200]:  # warm-up
            c.lookup(NS, q, threshold=THRESHOLD)
        clock = time.perf_counter
        start = clock()
        end = start + duration
        i = 0
        n = len(queries)
        while True:
            t0 = clock()
            r = c.lookup(NS, queries[i % n], threshold=THRESHOLD)
            t1 = clock()
            lat.append(t1 - t0)
            hits += bool(r)
            i += 1
            if t1 >= end:
                break
        elapsed = clock() - start
    lat.sort()
    return {"lookups": i, "lookups_per_s": i / elapsed, "p50_us": pct(lat, 0.5) * 1e6,
            "p99_us": pct(lat, 0.99) * 1e6, "hit_rate": hits / i}


def python_pipelined(url: str, queries: List[memoryview], duration: float, batch: int) -> Dict:
    reqs = [deja.LookupRequest(NS, q, threshold=THRESHOLD) for q in queries]
    done = hits = errors = 0
    with deja.Client(url, timeout=60) as c:
        c.lookup_many(reqs[:batch])  # warm-up
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < duration:
            chunk = [reqs[(i + j) % len(reqs)] for j in range(batch)]
            i += batch
            for r in c.lookup_many(chunk):
                done += 1
                hits += bool(r)
                errors += r.error is not None
        elapsed = time.perf_counter() - start
    return {"lookups": done, "lookups_per_s": done / elapsed, "batch": batch,
            "hit_rate": hits / max(done, 1), "errors": errors}


def encode_times() -> Dict[str, float]:
    rng = random.Random(1)
    v = [rng.gauss(0, 1) for _ in range(1536)]
    forms = {"list": v, "array('f')": array.array("f", v)}
    try:
        import numpy as np
        forms["numpy float32"] = np.array(v, dtype=np.float32)
        forms["numpy float64"] = np.array(v, dtype=np.float64)
    except ImportError:
        pass
    out = {}
    for name, form in forms.items():
        n, t = timeit.Timer(lambda: encode_vector(form)).autorange()
        best = min(timeit.repeat(lambda: encode_vector(form), number=n, repeat=5)) / n
        out[name] = best * 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per figure")
    ap.add_argument("--batch", type=int, default=1000, help="lookups per lookup_many")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    dejad = os.environ.get("DEJAD") or str(REPO / "build" / "server" / "dejad")
    bench = os.environ.get("DEJA_BENCH") or str(REPO / "build" / "bench" / "deja-bench")

    tmp = tempfile.mkdtemp(prefix="deja-pybench-")
    proc, port = start_dejad(dejad, tmp)
    url = f"deja://127.0.0.1:{port}"
    addr = f"127.0.0.1:{port}"
    try:
        print(f"loading 10,000 x 1536 entries into {addr} with deja-bench ...", file=sys.stderr)
        load = deja_bench(bench, "--addr", addr, "--synthetic", "10000,2000", "--write-data",
                          os.path.join(tmp, "w"), "--count", "2000")
        queries = read_fvecs(os.path.join(tmp, "w.query.fvecs"))
        with deja.Client(url) as c:
            entries = c.stats(NS)["entries"]
        py = python_single(url, queries, args.duration)
        c_fig = deja_bench(bench, "--addr", addr, "--synthetic", "10000,2000", "--no-load",
                           "--duration", str(args.duration))
        pipe = python_pipelined(url, queries, args.duration, args.batch)
        enc = encode_times()
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    libdeja = {"lookups_per_s": c_fig["lookups_per_s"], "p50_us": c_fig["p50_us"],
               "p99_us": c_fig["p99_us"], "hit_rate": c_fig["hit_rate"]}
    result = {"entries": entries, "dim": 1536, "python_single": py, "libdeja_single": libdeja,
              "python_pipelined": pipe, "encode_us": enc,
              "python_vs_libdeja": py["lookups_per_s"] / libdeja["lookups_per_s"],
              "pipelined_vs_libdeja": pipe["lookups_per_s"] / libdeja["lookups_per_s"],
              "python": sys.version.split()[0], "load_stores_per_s": load["stores_per_s"]}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"dejad with {entries} entries x 1536, threshold {THRESHOLD}, k 1, "
          f"{args.duration:g} s per figure, Python {result['python']}")
    print(f"{'one connection':34} {'lookups/s':>10} {'p50 us':>8} {'p99 us':>8} {'hit rate':>8}")
    print(f"{'python deja.Client.lookup':34} {py['lookups_per_s']:10.0f} {py['p50_us']:8.1f} "
          f"{py['p99_us']:8.1f} {py['hit_rate']:8.3f}")
    print(f"{'libdeja (deja-bench --no-load)':34} {libdeja['lookups_per_s']:10.0f} "
          f"{libdeja['p50_us']:8.1f} {libdeja['p99_us']:8.1f} {libdeja['hit_rate']:8.3f}")
    print(f"{'python lookup_many (batch %d)' % args.batch:34} {pipe['lookups_per_s']:10.0f} "
          f"{'':>8} {'':>8} {pipe['hit_rate']:8.3f}")
    print(f"python / libdeja: {result['python_vs_libdeja']:.0%} (goal >= 50%); "
          f"pipelined / libdeja: {result['pipelined_vs_libdeja']:.0%} (goal >= 100%)")
    print("encode one 1536-d vector: " +
          ", ".join(f"{k} {v:.2f} us" for k, v in enc.items()))


if __name__ == "__main__":
    main()
