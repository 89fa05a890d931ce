#!/usr/bin/env python3
"""test-ops-config.py: dejad's configuration and logs, as an operator meets them.

- deploy/dejad.conf is exactly what `dejad --example-config` prints, and
  lists every key --help lists (bar the actions and the testing keys);
- a config file is read (comments, blank lines), flags override it, and
  --check-config names the file, the line and the key of a bad value or an
  unknown key;
- SIGHUP reopens --log-file (logrotate), applies a new log-level from the
  file, and names a changed key that needs a restart;
- --log-format json writes one JSON object per line.
Usage: test-ops-config.py DEJAD SOURCE_ROOT
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

DEJAD, ROOT = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import deja  # noqa: E402

FAILED = []


def check(cond, what):
    print(("   ok   " if cond else "   FAIL ") + what)
    if not cond:
        FAILED.append(what)


def run(*args):
    return subprocess.run([DEJAD] + list(args), capture_output=True, text=True, timeout=30)


def wait_for(pred, secs=10):
    for _ in range(int(secs * 20)):
        if pred():
            return True
        time.sleep(0.05)
    return False


def ping(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(struct.pack("<2sBBHHII", b"DJ", 1, 3, 0, 0, 1, 0))
    head = s.recv(16)
    s.close()
    return len(head) == 16


def main():
    tmp = tempfile.mkdtemp(prefix="deja-config-")
    try:
        print("-- the example file")
        example = run("--example-config")
        check(example.returncode == 0, "--example-config exits 0")
        committed = open(os.path.join(ROOT, "deploy", "dejad.conf")).read()
        check(example.stdout == committed,
              "deploy/dejad.conf matches `dejad --example-config` (regenerate it with "
              "`dejad --example-config > deploy/dejad.conf`)")
        help_keys = set(re.findall(r"^  --([a-z0-9-]+)", run("--help").stdout, re.M))
        file_keys = set(re.findall(r"^#([a-z0-9-]+)", example.stdout, re.M))
        left_out = {"config", "check-config", "example-config", "help", "version",
                    "port-file", "metrics-port-file", "clock-offset"}
        check(file_keys == help_keys - left_out,
              "the example lists every key of --help (%d keys)" % len(file_keys))
        check(run("--config", "/dev/null", "--check-config").returncode == 0,
              "the defaults are valid")
        example_path = os.path.join(tmp, "example.conf")
        open(example_path, "w").write(committed)
        check(run("--config", example_path, "--check-config").returncode == 0,
              "the commented example is a valid config")

        print("-- the file and the flags")
        conf = os.path.join(tmp, "dejad.conf")
        data = os.path.join(tmp, "data")
        log = os.path.join(tmp, "dejad.log")
        port_file = os.path.join(tmp, "port")
        with open(conf, "w") as f:
            f.write("# a comment\n\n  max-connections 77   \nlog-level warn\n"
                    "data %s\nlog-file %s\nunix\n" % (data, log))
        r = run("--config", conf, "--check-config")
        check(r.returncode == 0, "a good file passes --check-config")
        with open(os.path.join(tmp, "bad.conf"), "w") as f:
            f.write("port 7447\n\nmax-connections lots\n")
        r = run("--config", os.path.join(tmp, "bad.conf"), "--check-config")
        check(r.returncode == 2 and "bad.conf:3: max-connections" in r.stderr,
              "a bad value names the file, the line and the key: " + r.stderr.strip())
        with open(os.path.join(tmp, "typo.conf"), "w") as f:
            f.write("max-conections 5\n")
        r = run("--config", os.path.join(tmp, "typo.conf"), "--check-config")
        check(r.returncode == 2 and "typo.conf:1: unknown key 'max-conections'" in r.stderr,
              "an unknown key is refused: " + r.stderr.strip())
        r = run("--config", conf, "--max-connections", "0", "--check-config")
        check(r.returncode == 2 and "--max-connections" in r.stderr,
              "a bad flag is refused over a good file")

        print("-- a running dejad: flags over the file, SIGHUP")
        p = subprocess.Popen([DEJAD, "--config", conf, "--port", "0", "--port-file", port_file,
                              "--log-level", "info"], stderr=subprocess.PIPE)
        try:
            check(wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip()),
                  "dejad starts from the file")
            port = int(open(port_file).read())
            check(ping(port), "it answers")
            text = open(log).read()
            check("ready:" in text, "--log-file gets the log (info: the flag overrides the "
                  "file's warn)")
            # logrotate: move the file away, SIGHUP, a new file appears.
            os.rename(log, log + ".1")
            with open(conf, "a") as f:
                f.write("max-connections 99\n")
            p.send_signal(signal.SIGHUP)
            check(wait_for(lambda: os.path.exists(log) and "reload done" in open(log).read()),
                  "SIGHUP reopens the log file")
            text = open(log).read()
            check("max-connections changed to '99'; it needs a restart" in text,
                  "a changed key that needs a restart is named")
            # The flag --log-level info wins over any file value, so a level
            # change must come from a run without the flag: checked below.
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        check(p.returncode == 0, "dejad exits cleanly")

        os.remove(port_file)
        os.remove(log)
        p = subprocess.Popen([DEJAD, "--config", conf, "--port", "0", "--port-file", port_file],
                             stderr=subprocess.PIPE)
        try:
            wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip())
            before = open(log).read()
            check("ready:" not in before,
                  "log-level warn from the file hides info lines")
            with open(conf, "a") as f:
                f.write("log-level info\n")
            p.send_signal(signal.SIGHUP)
            check(wait_for(lambda: "reload done" in open(log).read()),
                  "SIGHUP applies log-level from the file (info lines appear)")
            check("log-level is now 'info'" in open(log).read(), "the reload says what changed")
            # Thresholds and budgets: a namespace that follows the server's
            # default floor follows a new one; one with its own keeps it.
            url = "deja://127.0.0.1:%d" % int(open(port_file).read())
            with deja.Client(url) as c:
                c.store("follows", [1.0, 0.0, 0.0, 0.0], "a")
                c.ns_create("own", deja.NamespaceConfig(dim=4, min_threshold=0.6))
                before = c.ns_info("follows").config.min_threshold
                with open(conf, "a") as f:
                    f.write("min-threshold 0.9\nmax-entries 2\n")
                p.send_signal(signal.SIGHUP)
                wait_for(lambda: open(log).read().count("reload done") >= 2)
                after = c.ns_info("follows").config.min_threshold
                own = c.ns_info("own").config.min_threshold
                check(abs(before - 0.5) < 1e-6 and abs(after - 0.9) < 1e-6 and
                      abs(own - 0.6) < 1e-6,
                      "SIGHUP applies min-threshold to namespaces on the default (%.2f -> "
                      "%.2f; own floor %.2f kept)" % (before, after, own))
                for i in range(4):
                    v = [0.0] * 4
                    v[i] = 1.0
                    c.store("follows", [x + 0.1 * (j == (i + 1) % 4) for j, x in
                                        enumerate(v)], "b%d" % i)
                entries = c.stats()["entries"]
                check(entries <= 2, "SIGHUP applies max-entries (%d entries left)" % entries)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(30)

        print("-- JSON lines")
        jlog = os.path.join(tmp, "json.log")
        os.remove(port_file)
        p = subprocess.Popen([DEJAD, "--data", os.path.join(tmp, "d2"), "--unix", "", "--port",
                              "0", "--port-file", port_file, "--log-format", "json",
                              "--log-file", jlog])
        wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip())
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        lines = open(jlog).read().splitlines()
        objs = []
        for line in lines:
            try:
                objs.append(json.loads(line))
            except ValueError:
                pass
        check(len(lines) >= 3 and len(objs) == len(lines) and
              all({"ts", "level", "msg"} <= set(o) for o in objs),
              "every line is a JSON object with ts, level, msg (%d lines)" % len(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d checks failed" % len(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
