#!/usr/bin/env python3
"""test-ops-metrics.py: dejad's metrics, as a real Prometheus sees them.

Starts a real dejad with --metrics-addr, drives traffic over the wire
(STOREs with cost metadata, hitting and missing LOOKUPs, a bad request),
then checks that:
  - promtool accepts the /metrics output;
  - the counters there equal what STATS says over the protocol;
  - a real Prometheus server scraping dejad returns the same hit and saved
    money figures from its HTTP query API;
  - /healthz, /readyz and the HTTP reader's refusals behave;
  - every metric the Grafana dashboard (deploy/grafana-deja.json) queries
    is one dejad exports.
Usage: test-ops-metrics.py DEJAD SOURCE_ROOT
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

DEJAD, ROOT = sys.argv[1], sys.argv[2]
FAILED = []


def check(cond, what):
    print(("   ok   " if cond else "   FAIL ") + what)
    if not cond:
        FAILED.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_file(path, secs=10):
    for _ in range(int(secs * 20)):
        if os.path.exists(path) and open(path).read().strip():
            return int(open(path).read())
        time.sleep(0.05)
    raise RuntimeError("no " + path)


# ---- the wire -------------------------------------------------------------


def frame(opcode, body, rid=1):
    return struct.pack("<2sBBHHII", b"DJ", 1, opcode, 0, 0, rid, len(body)) + body


def recv_frame(sock):
    def exact(n):
        b = b""
        while len(b) < n:
            c = sock.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b
    head = exact(16)
    _, _, op, flags, status, rid, blen = struct.unpack("<2sBBHHII", head)
    return status, exact(blen)


def call(sock, opcode, body):
    sock.sendall(frame(opcode, body))
    return recv_frame(sock)


def vec(i, dim=16):
    v = [0.0] * dim
    v[i % dim] = 1.0
    v[(i + 1) % dim] = 0.2
    return struct.pack("<%df" % dim, *v)


def store(sock, ns, i, cost):
    body = (bytes([len(ns)]) + ns + struct.pack("<HBBIIIQII", 16, 0, 0, 0, 100, 50, cost, 0, 6)
            + vec(i) + b"answer")
    return call(sock, 0x10, body)[0]


def lookup(sock, ns, i):
    body = bytes([len(ns)]) + ns + struct.pack("<HHfHHI", 16, 1, 0.9, 0, 0, 0) + vec(i)
    status, reply = call(sock, 0x11, body)
    return status, struct.unpack("<H", reply[:2])[0] if status == 0 else 0


def stats(sock, ns=b""):
    status, body = call(sock, 0x20, bytes([len(ns)]) + ns)
    assert status == 0
    count = struct.unpack("<H", body[:2])[0]
    out, pos = {}, 2
    for _ in range(count):
        klen = body[pos]
        key = body[pos + 1:pos + 1 + klen].decode()
        out[key] = struct.unpack("<Q", body[pos + 1 + klen:pos + 9 + klen])[0]
        pos += 9 + klen
    return out


# ---- HTTP ------------------------------------------------------------------


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def raw_http(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    out = b""
    while True:
        try:
            c = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not c:
            break
        out += c
    s.close()
    return out.decode(errors="replace")


def sample(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return None


def main():
    tmp = tempfile.mkdtemp(prefix="deja-metrics-")
    port_file, mport_file = os.path.join(tmp, "port"), os.path.join(tmp, "mport")
    dejad = subprocess.Popen([DEJAD, "--port", "0", "--port-file", port_file, "--data",
                              os.path.join(tmp, "data"), "--unix", "", "--metrics-addr",
                              "127.0.0.1:0", "--metrics-port-file", mport_file])
    prom = None
    try:
        port, mport = wait_file(port_file), wait_file(mport_file)
        base = "http://127.0.0.1:%d" % mport

        print("-- traffic")
        s = socket.create_connection(("127.0.0.1", port))
        for i in range(10):
            assert store(s, b"shop/faq", i, 2500) == 0
        assert store(s, b"docs", 3, 1000) == 0
        hits = 0
        for i in range(10):
            hits += lookup(s, b"shop/faq", i)[1]  # 10 hits
        for i in range(5):
            hits += lookup(s, b"docs", 3)[1]  # 5 hits
        for i in range(4):
            lookup(s, b"docs", 9)  # 4 misses
        check(hits == 15, "15 hits, 4 misses driven")
        bad = call(s, 0x11, b"\x00")[0]
        check(bad != 0, "a malformed LOOKUP is answered with an error")
        st = stats(s)

        print("-- /metrics")
        code, text = http_get(base + "/metrics")
        check(code == 200, "GET /metrics answers 200")
        promtool = shutil.which("promtool")
        check(promtool is not None, "promtool is installed (scripts/deps.sh: prometheus)")
        if promtool:
            r = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                               capture_output=True)
            check(r.returncode == 0, "promtool check metrics passes" +
                  ("" if r.returncode == 0 else ": " + r.stdout + r.stderr))
        got_hits = sum(float(l.split()[-1]) for l in text.splitlines()
                       if l.startswith("deja_hits_total{"))
        check(got_hits == st["hits"] == 15, "deja_hits_total sums to STATS hits (%s, %s)"
              % (got_hits, st["hits"]))
        check(sample(text, "deja_hits_total", '{namespace="shop/faq",tier="semantic"}') == 10,
              "hits carry the namespace and tier labels")
        check(sample(text, "deja_misses_total", '{namespace="docs"}') == st["misses"] == 4,
              "misses per namespace")
        dollars = sum(float(l.split()[-1]) for l in text.splitlines()
                      if l.startswith("deja_saved_dollars_total{"))
        check(abs(dollars - st["cost_saved_micro_usd"] / 1e6) < 1e-9 and dollars > 0,
              "deja_saved_dollars_total = STATS cost_saved_micro_usd / 1e6 (%s)" % dollars)
        check(sample(text, "deja_tokens_saved_total", '{namespace="shop/faq"}') == 1500,
              "tokens saved per namespace")
        check(sample(text, "deja_entries", '{namespace="shop/faq"}') == 10, "entries gauge")
        check(sample(text, "deja_stores_total", '{namespace="docs"}') == 1, "stores counter")
        check(sample(text, "deja_errors_total", '{code="BAD_NAMESPACE"}') == 1,
              "errors by code")
        check(sample(text, "deja_lookup_duration_seconds_count") == 20,
              "lookup histogram counts every LOOKUP (%s)"
              % sample(text, "deja_lookup_duration_seconds_count"))
        check(sample(text, "deja_store_ack_duration_seconds_count") == 11,
              "STORE acknowledgement histogram")
        check(sample(text, "deja_connections") == 1, "connections gauge")
        # The similarity histogram (PROTOCOL.md 5.17) is STATS's sim_* keys.
        sim_hits = sum(v for k, v in st.items()
                       if k.startswith("sim_hit_") and not k.endswith("sum_micro"))
        sim_misses = sum(v for k, v in st.items()
                         if k.startswith("sim_miss_") and k not in
                         ("sim_miss_none", "sim_miss_sum_micro"))
        prom_sim_hits = sum(sample(text, "deja_lookup_best_similarity_count",
                                   '{namespace="%s",outcome="hit"}' % ns) or 0
                            for ns in ("shop/faq", "docs"))
        prom_sim_misses = sum(sample(text, "deja_lookup_best_similarity_count",
                                     '{namespace="%s",outcome="miss"}' % ns) or 0
                              for ns in ("shop/faq", "docs"))
        check(sim_hits > 0 and prom_sim_hits == sim_hits,
              "deja_lookup_best_similarity_count{outcome=hit} = STATS sim_hit_* (%s, %s)"
              % (prom_sim_hits, sim_hits))
        check(prom_sim_misses == sim_misses,
              "deja_lookup_best_similarity_count{outcome=miss} = STATS sim_miss_* (%s, %s)"
              % (prom_sim_misses, sim_misses))
        check(sample(text, "deja_lookup_best_similarity_bucket",
                     '{namespace="shop/faq",outcome="hit",le="+Inf"}') ==
              sample(text, "deja_lookup_best_similarity_count",
                     '{namespace="shop/faq",outcome="hit"}'),
              "the histogram's +Inf bucket equals its count")
        kinds_sum = sum(sample(text, "deja_index_memory_bytes",
                               '{namespace="shop/faq",kind="%s"}' % k) or 0
                        for k in ("vectors", "rerank", "graph", "other", "staging", "tables"))
        check(kinds_sum > 0 and kinds_sum == sample(text, "deja_memory_bytes",
                                                    '{namespace="shop/faq",kind="index"}'),
              "deja_index_memory_bytes by kind sums to deja_memory_bytes{kind=index} (%s)"
              % kinds_sum)
        check(sample(text, "deja_leases_total", '{event="granted"}') == 0 and
              sample(text, "deja_coalesced_total", '{namespace="shop/faq"}') == 0,
              "lease and coalesced families are exported")

        print("-- HTTP edges")
        check(http_get(base + "/healthz")[0] == 200, "/healthz is 200")
        code, conf = http_get(base + "/config")
        check(code == 200 and "max-connections 1024\n" in conf and "auth-token" not in conf,
              "/config dumps the effective configuration, without the token")
        check(http_get(base + "/readyz") == (200, "ready\n"), "/readyz is ready")
        check(http_get(base + "/nope")[0] == 404, "unknown path is 404")
        check(raw_http(mport, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            "HTTP/1.1 405"), "POST is 405")
        check(raw_http(mport, b"GET /metrics HTTP/2.0\r\n\r\n").startswith("HTTP/1.1 505"),
              "HTTP/2.0 is 505")
        check(raw_http(mport, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
              .startswith("HTTP/1.1 431"), "a head over 8 KiB is 431")
        check(raw_http(mport, b"\x16\x03\x01garbage\r\n\r\n").startswith("HTTP/1.1 400"),
              "garbage is 400")
        check(raw_http(mport, b"HEAD /healthz HTTP/1.0\r\n\r\n").endswith("\r\n\r\n"),
              "HEAD has no body")

        print("-- the Grafana dashboard")
        exported = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M) and
                       [m for m, _ in re.findall(r"^# TYPE (\S+) (\S+)", text, re.M)])
        dash = json.load(open(os.path.join(ROOT, "deploy", "grafana-deja.json")))
        exprs = []

        def walk(o):
            if isinstance(o, dict):
                for k, v in o.items():
                    if k in ("expr", "query") and isinstance(v, str):
                        exprs.append(v)
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)
        walk(dash)
        names = set()
        for e in exprs:
            names.update(re.findall(r"\bdeja_[a-z_]+", e))
        missing = sorted(n for n in names
                         if re.sub(r"_(bucket|sum|count)$", "", n) not in exported)
        check(len(exprs) >= 10 and not missing,
              "every metric in the dashboard's %d expressions is exported%s"
              % (len(exprs), (": missing " + ", ".join(missing)) if missing else ""))

        print("-- a real Prometheus")
        prom_bin = shutil.which("prometheus")
        check(prom_bin is not None, "prometheus is installed (scripts/deps.sh)")
        if prom_bin:
            pport = free_port()
            cfg = os.path.join(tmp, "prometheus.yml")
            with open(cfg, "w") as f:
                f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                        "  - job_name: deja\n    static_configs:\n"
                        "      - targets: ['127.0.0.1:%d']\n" % mport)
            prom = subprocess.Popen([prom_bin, "--config.file=" + cfg,
                                     "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                                     "--web.listen-address=127.0.0.1:%d" % pport],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def query(q):
                url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (pport, urllib.parse.quote(q))
                try:
                    code, body = http_get(url)
                    res = json.loads(body)["data"]["result"]
                    return float(res[0]["value"][1]) if res else None
                except (OSError, ValueError, KeyError):
                    return None
            prom_hits = prom_dollars = None
            for _ in range(120):
                prom_hits = query("sum(deja_hits_total)")
                prom_dollars = query("sum(deja_saved_dollars_total)")
                if prom_hits is not None and prom_dollars is not None:
                    break
                time.sleep(0.25)
            print("   Prometheus: sum(deja_hits_total) = %s, sum(deja_saved_dollars_total) = %s"
                  % (prom_hits, prom_dollars))
            check(prom_hits == st["hits"], "Prometheus's hit counter equals STATS hits")
            check(prom_dollars is not None and
                  abs(prom_dollars - st["cost_saved_micro_usd"] / 1e6) < 1e-6,
                  "Prometheus's saved money equals STATS cost_saved_micro_usd")
            prom_sim = query('sum(deja_lookup_best_similarity_count{outcome="hit"})')
            check(prom_sim == sim_hits,
                  "Prometheus's similarity histogram count equals STATS sim_hit_* (%s)"
                  % prom_sim)
            up = query('up{job="deja"}')
            check(up == 1, "Prometheus sees the target up")
        s.close()
    finally:
        if prom:
            prom.terminate()
            prom.wait(20)
        dejad.terminate()
        code = dejad.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    check(code == 0, "dejad exits cleanly")
    print("%d checks failed" % len(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
