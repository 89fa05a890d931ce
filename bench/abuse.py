#!/usr/bin/env python3
"""abuse.py: measures what hostile clients cost a real dejad.

Starts dejad (default flags unless --dejad-arg adds some) on a free port
with a temporary data folder, runs each abuse case against it, and prints
dejad's resident memory (VmRSS, and the peak VmHWM) after each, plus the
AUTH guess rate. Every case is bounded in time and count and only talks to
127.0.0.1.

  bench/abuse.py --dejad build/server/dejad [--case big-frames ...]

Cases:
  big-frames   100 connections each announce a 16 MiB frame and send its
               body as fast as the server takes it, for 8 s
  idle         5,000 connections that send nothing
  no-read      200 connections pipelining LOOKUPs whose hits carry 256 KiB
               responses, never reading a reply, for 8 s
  auth         token guesses for 10 s, one connection per guess, from 1
               and from 32 threads (the server gets --auth-token)
"""
import argparse
import os
import resource
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

MAGIC = b"DJ"
OP_PING, OP_AUTH, OP_STORE, OP_LOOKUP, OP_STATS = 0x03, 0x02, 0x10, 0x11, 0x20


def frame(opcode, body, request_id=1):
    return struct.pack("<2sBBHHII", MAGIC, 1, opcode, 0, 0, request_id, len(body)) + body


def str8(b):
    return bytes([len(b)]) + b


def store_body(ns, vec, response):
    return (str8(ns) + struct.pack("<HBBIIIQII", len(vec), 0, 0, 0, 0, 0, 0, 0, len(response))
            + struct.pack("<%df" % len(vec), *vec) + response)


def lookup_body(ns, vec, k):
    return (str8(ns) + struct.pack("<HHfHHI", len(vec), k, 0.5, 0, 0, 0)
            + struct.pack("<%df" % len(vec), *vec))


def recv_frame(sock, timeout=10.0):
    sock.settimeout(timeout)
    head = b""
    while len(head) < 16:
        chunk = sock.recv(16 - len(head))
        if not chunk:
            return None
        head += chunk
    _, _, opcode, flags, status, rid, blen = struct.unpack("<2sBBHHII", head)
    body = b""
    while len(body) < blen:
        chunk = sock.recv(min(1 << 20, blen - len(body)))
        if not chunk:
            return None
        body += chunk
    return opcode, status, body


class Server:
    def __init__(self, dejad, extra):
        self.dir = tempfile.mkdtemp(prefix="deja-abuse-")
        port_file = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "dejad.log"), "w")
        self.proc = subprocess.Popen(
            [dejad, "--port", "0", "--port-file", port_file, "--data",
             os.path.join(self.dir, "data"), "--unix", ""] + extra,
            stdout=self.log, stderr=self.log)
        for _ in range(200):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        self.port = int(open(port_file).read())

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def mem(self):
        out = {}
        for line in open("/proc/%d/status" % self.proc.pid):
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) * 1024
        return out

    def alive(self):
        try:
            s = self.connect()
            s.sendall(frame(OP_PING, b"ok"))
            r = recv_frame(s, 5.0)
            s.close()
            return r is not None and r[1] == 0
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


def mib(n):
    return "%.1f MiB" % (n / 1048576.0)


def report(name, srv, base, extra=""):
    m = srv.mem()
    print("%-11s RSS %10s (baseline %s), peak %10s, server answers PING: %s%s"
          % (name, mib(m["VmRSS"]), mib(base), mib(m["VmHWM"]),
             "yes" if srv.alive() else "NO", extra))
    sys.stdout.flush()


def case_big_frames(srv):
    socks, stop = [], time.time() + 8
    for _ in range(100):
        s = srv.connect()
        s.setblocking(False)
        try:
            s.send(struct.pack("<2sBBHHII", MAGIC, 1, OP_PING, 0, 0, 1, (16 << 20) - 17))
        except OSError:
            pass
        socks.append(s)
    chunk = b"x" * 65536
    sent = [0] * len(socks)
    busy = 0
    index = {s.fileno(): i for i, s in enumerate(socks)}
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLOUT)
    while time.time() < stop:
        for fd, _ in poller.poll(100):
            i = index[fd]
            s = socks[i]
            if sent[i] < (16 << 20) - 18:
                try:
                    sent[i] += s.send(chunk[: (16 << 20) - 18 - sent[i]])
                except OSError:
                    pass
    for s in socks:
        s.setblocking(True)
        try:
            r = recv_frame(s, 0.2)
            busy += r is not None and r[1] == 14
        except OSError:
            pass
    return socks, " (%d of 100 answered BUSY, %.0f MiB sent)" % (busy, sum(sent) / 1048576.0)


def case_idle(srv):
    socks, refused = [], 0
    for _ in range(5000):
        try:
            socks.append(srv.connect())
        except OSError:
            refused += 1
    time.sleep(2)
    closed = 0
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    closed = len(poller.poll(0))
    return socks, " (%d connected; %d got BUSY and were closed)" % (len(socks), closed)


def case_no_read(srv):
    dim = 64
    s = srv.connect()
    vec = [1.0] + [0.0] * (dim - 1)
    for i in range(8):
        v = list(vec)
        v[1 + i] = 0.01
        s.sendall(frame(OP_STORE, store_body(b"big", v, b"r" * (256 << 10))))
        recv_frame(s)
    s.close()
    req = frame(OP_LOOKUP, lookup_body(b"big", vec, 8)) * 64
    socks, stop = [], time.time() + 8
    for _ in range(200):
        c = srv.connect()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.setblocking(False)
        socks.append(c)
    index = {c.fileno(): c for c in socks}
    poller = select.poll()
    for c in socks:
        poller.register(c, select.POLLOUT)
    while time.time() < stop:
        for fd, _ in poller.poll(100):
            c = index[fd]
            try:
                c.send(req)
            except OSError:
                pass
    return socks, ""


def case_auth(srv, threads):
    count, lock, stop = [0], threading.Lock(), time.time() + 10

    def guesser(n):
        while time.time() < stop:
            try:
                s = srv.connect()
                tok = b"guess-%d-%d" % (n, count[0])
                s.sendall(frame(OP_AUTH, struct.pack("<H", len(tok)) + tok))
                r = recv_frame(s, max(0.1, stop - time.time()))
                s.close()
                if r is not None and r[1] == 8:
                    with lock:
                        count[0] += 1
            except OSError:
                pass

    ts = [threading.Thread(target=guesser, args=(i,)) for i in range(threads)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return count[0], time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dejad", default="build/server/dejad")
    ap.add_argument("--dejad-arg", action="append", default=[])
    ap.add_argument("--case", action="append",
                    choices=["big-frames", "idle", "no-read", "auth"])
    args = ap.parse_args()
    cases = args.case or ["big-frames", "idle", "no-read", "auth"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    print("dejad %s %s" % (args.dejad, " ".join(args.dejad_arg)))
    for name in cases:
        if name == "auth":
            srv = Server(args.dejad, args.dejad_arg + ["--auth-token", "the-real-token"])
            for threads in (1, 32):
                n, secs = case_auth(srv, threads)
                print("auth        %d threads: %d wrong guesses answered in %.1f s = %.1f guesses/s"
                      % (threads, n, secs, n / secs))
            srv.stop()
            continue
        srv = Server(args.dejad, args.dejad_arg)
        time.sleep(0.5)
        base = srv.mem()["VmRSS"]
        fn = {"big-frames": case_big_frames, "idle": case_idle, "no-read": case_no_read}[name]
        socks, extra = fn(srv)
        report(name, srv, base, extra) if name != "idle" else None
        if name == "idle":
            m = srv.mem()
            print("idle        RSS %10s (baseline %s), peak %10s%s" % (mib(m["VmRSS"]), mib(base), mib(m["VmHWM"]), extra))
        for s in socks:
            s.close()
        code = srv.stop()
        if code != 0:
            print("dejad exited with %d" % code)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
