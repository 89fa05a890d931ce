#!/usr/bin/env python3
"""connect-latency.py: how long a new client waits for dejad -- connect, then
PING -- measured over and over for a while, as p50 / p99 / max.

Used to show that periodic graph snapshots no longer stall accepting:

  bench/connect-latency.py --addr 127.0.0.1:7447 --seconds 20

Run it while dejad writes snapshots (--snapshot-interval, with entries
changing); the log line "graph snapshots of N entries written in T ms"
says when. Only talks to the address given (keep it on this machine).
"""
import argparse
import socket
import struct
import sys
import time


def once(host, port):
    t0 = time.perf_counter()
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(struct.pack("<2sBBHHII", b"DJ", 1, 3, 0, 0, 1, 0))
    got = b""
    while len(got) < 16:
        chunk = s.recv(16 - len(got))
        if not chunk:
            break
        got += chunk
    s.close()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", default="127.0.0.1:7447")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--pause-ms", type=float, default=5.0)
    args = ap.parse_args()
    host, port = args.addr.rsplit(":", 1)
    samples = []
    stop = time.time() + args.seconds
    while time.time() < stop:
        samples.append(once(host, int(port)))
        time.sleep(args.pause_ms / 1000.0)
    samples.sort()
    n = len(samples)
    print("connect+PING over %.0f s: %d samples, p50 %.3f ms, p99 %.3f ms, max %.3f ms"
          % (args.seconds, n, samples[n // 2] * 1e3, samples[min(n - 1, n * 99 // 100)] * 1e3,
             samples[-1] * 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
