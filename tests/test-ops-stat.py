#!/usr/bin/env python3
"""test-ops-stat.py: `deja-cli stat`, the live view, as a person sees it.

Starts a real dejad, runs `deja-cli stat` in a tmux pane (a real
terminal) while traffic flows (through the Python client), and reads the
screen: a header, then one line per interval with lookups/s, the hit rate,
entries and the money saved. Then checks `--json` lines and `--ns`.
Usage: test-ops-stat.py DEJAD DEJA_CLI SOURCE_ROOT
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

DEJAD, CLI, ROOT = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import deja  # noqa: E402

FAILED = []


def check(cond, what):
    print(("   ok   " if cond else "   FAIL ") + what)
    if not cond:
        FAILED.append(what)


def vec(i, dim=32):
    v = [0.0] * dim
    v[i % dim] = 1.0
    return v


def traffic(url, stop):
    """Stores 20 entries, then looks them up (hits) and misses, until stop."""
    with deja.Client(url) as c:
        for i in range(20):
            c.store("shop", vec(i), "answer %d" % i, cost_micro_usd=1000)
        n = 0
        while not stop.is_set():
            c.lookup("shop", vec(n % 20))             # a hit
            if n % 4 == 0:
                c.lookup("shop", [1.0] * 32)          # a miss
            n += 1
            time.sleep(0.002)


def main():
    tmux = shutil.which("tmux")
    check(tmux is not None, "tmux is installed (scripts/deps.sh)")
    if not tmux:
        return 1
    tmp = tempfile.mkdtemp(prefix="deja-stat-")
    port_file = os.path.join(tmp, "port")
    dejad = subprocess.Popen([DEJAD, "--data", os.path.join(tmp, "data"), "--unix", "",
                              "--port", "0", "--port-file", port_file],
                             stderr=subprocess.DEVNULL)
    session = "deja-stat-%d" % os.getpid()
    stop = threading.Event()
    try:
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        url = "deja://127.0.0.1:%d" % int(open(port_file).read())
        t = threading.Thread(target=traffic, args=(url, stop))
        t.start()
        time.sleep(0.5)

        print("-- in a terminal")
        subprocess.run([tmux, "-L", session, "new-session", "-d", "-s", session, "-x", "120",
                        "-y", "20", "%s --url %s stat --interval 500 --count 4; sleep 60"
                        % (CLI, url)], check=True)
        screen = ""
        for _ in range(100):
            time.sleep(0.1)
            screen = subprocess.run([tmux, "-L", session, "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            if len([l for l in screen.splitlines() if l.strip()]) >= 5:
                break
        print("\n".join("   | " + l for l in screen.splitlines() if l.strip()))
        lines = [l.split() for l in screen.splitlines() if l.strip()]
        check(lines and lines[0][:4] == ["lookups/s", "hit%", "exact%", "sem%"],
              "a header names the columns")
        rows = [l for l in lines[1:] if len(l) >= 9]
        check(len(rows) == 4, "one line per interval, 4 lines for --count 4")
        if rows:
            last = rows[-1]
            check(float(last[0]) > 0, "lookups/s is counted")
            check(last[1] != "-" and 50.0 <= float(last[1]) <= 100.0,
                  "the hit rate is shown (%s%%; 4 of 5 lookups hit)" % last[1])
            check(last[6] == "20", "entries")
            check(last[-1].startswith("$") and float(last[-1][1:]) > 0,
                  "the money saved so far")

        print("-- JSON lines")
        r = subprocess.run([CLI, "--url", url, "--json", "stat", "--interval", "200",
                            "--count", "3"], capture_output=True, text=True, timeout=30)
        objs = [json.loads(l) for l in r.stdout.splitlines()]
        check(r.returncode == 0 and len(objs) == 3, "--json prints 3 objects for --count 3")
        check(all({"lookups_per_s", "hit_rate", "exact_hit_rate", "semantic_hit_rate",
                   "misses_per_s", "stores_per_s", "entries", "memory_bytes",
                   "saved_usd"} <= set(o) for o in objs), "every object has every field")
        check(objs and objs[-1]["entries"] == 20 and objs[-1]["lookups_per_s"] > 0,
              "values are live")

        print("-- one namespace")
        r = subprocess.run([CLI, "--url", url, "--json", "stat", "--ns", "shop", "--interval",
                            "200", "--count", "1"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and json.loads(r.stdout)["entries"] == 20, "--ns shop")
        r = subprocess.run([CLI, "--url", url, "stat", "--ns", "nothing", "--count", "1"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 3, "--ns of an unknown namespace exits 3 (NOT_FOUND)")
    finally:
        stop.set()
        subprocess.run([tmux, "-L", session, "kill-server"], capture_output=True)
        dejad.send_signal(signal.SIGTERM)
        dejad.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d checks failed" % len(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
