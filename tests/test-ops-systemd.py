#!/usr/bin/env python3
"""test-ops-systemd.py: dejad as a systemd service.

- deploy/dejad.service passes `systemd-analyze verify` (where the tool is
  installed; ExecStart pointed at the built dejad);
- Type=notify: dejad sends READY=1 to $NOTIFY_SOCKET only once it listens,
  RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM;
- under journald ($JOURNAL_STREAM) log lines carry the syslog priority.
Usage: test-ops-systemd.py DEJAD SOURCE_ROOT BUILD_ROOT
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DEJAD, ROOT, BUILD = sys.argv[1], sys.argv[2], sys.argv[3]
FAILED = []


def check(cond, what):
    print(("   ok   " if cond else "   FAIL ") + what)
    if not cond:
        FAILED.append(what)


def main():
    tmp = tempfile.mkdtemp(prefix="deja-systemd-")
    try:
        print("-- the unit file")
        unit = open(os.path.join(ROOT, "deploy", "dejad.service")).read()
        for key in ("Type=notify", "StateDirectory=deja", "ExecReload=/bin/kill -HUP $MAINPID",
                    "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                    "MemoryMax="):
            check(key in unit, "the unit has " + key)
        analyze = shutil.which("systemd-analyze")
        if analyze:
            local = os.path.join(tmp, "dejad.service")
            open(local, "w").write(unit.replace("/usr/local/bin/dejad", os.path.abspath(DEJAD)))
            # Documentation=man:dejad(1) is checked too: the built page.
            man1 = os.path.join(tmp, "man", "man1")
            os.makedirs(man1)
            shutil.copy(os.path.join(BUILD, "man", "dejad.1"), man1)
            env = dict(os.environ, MANPATH=os.path.join(tmp, "man") + ":")
            r = subprocess.run([analyze, "verify", local], capture_output=True, text=True,
                               timeout=60, cwd=tmp, env=env)
            check(r.returncode == 0 and "dejad.service" not in r.stderr,
                  "systemd-analyze verify passes" + ("" if r.returncode == 0 and
                                                     "dejad.service" not in r.stderr
                                                     else ": " + r.stderr))
        else:
            print("   (systemd-analyze not installed: verify skipped)")

        print("-- readiness")
        notify_path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        sock.settimeout(15)
        port_file = os.path.join(tmp, "port")
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        stopped = False
        p = subprocess.Popen([DEJAD, "--data", os.path.join(tmp, "data"), "--unix", "",
                              "--port", "0", "--port-file", port_file], env=env,
                             stderr=subprocess.DEVNULL)
        try:
            msg = sock.recv(4096).decode()
            listening = os.path.exists(port_file)
            check("READY=1" in msg and listening,
                  "READY=1 arrives once dejad listens (%r)" % msg)
            port = int(open(port_file).read())
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.close()
            p.send_signal(signal.SIGHUP)
            msgs = [sock.recv(4096).decode(), sock.recv(4096).decode()]
            check("RELOADING=1" in msgs[0] and "READY=1" in msgs[1],
                  "SIGHUP: RELOADING=1, then READY=1")
            p.send_signal(signal.SIGTERM)
            stopped = True
            msg = sock.recv(4096).decode()
            check("STOPPING=1" in msg, "SIGTERM: STOPPING=1")
        finally:
            if p.poll() is None and not stopped:
                p.send_signal(signal.SIGTERM)
            p.wait(30)
        check(p.returncode == 0, "dejad exits cleanly")

        print("-- journald")
        env = dict(os.environ, JOURNAL_STREAM="8:1234")
        env.pop("NOTIFY_SOCKET", None)
        os.remove(port_file)
        p = subprocess.Popen([DEJAD, "--data", os.path.join(tmp, "data2"), "--unix", "",
                              "--port", "0", "--port-file", port_file], env=env,
                             stderr=subprocess.PIPE, text=True)
        for _ in range(200):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=30)[1]
        lines = [l for l in err.splitlines() if l]
        check(lines and all(l[:3] in ("<3>", "<4>", "<6>", "<7>") for l in lines),
              "every line starts with its syslog priority, e.g. %r" % (lines[:1],))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d checks failed" % len(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
