"""Fixtures: a real dejad on a free loopback port with a temporary data
folder (the binary from $DEJAD, default build/server/dejad), fresh
namespaces, and vectors."""

from __future__ import annotations

import itertools
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import pytest

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent
REPO_ROOT = PACKAGE_ROOT.parent.parent
# Test the source tree, not whatever deja may be installed.
sys.path.insert(0, str(PACKAGE_ROOT))

DIM = 1536


def pytest_collection_finish(session: pytest.Session) -> None:
    """A run that collects fewer tests than the test command expects fails:
    "no tests ran" must never pass silently (tests/run.sh sets the minimum).
    The test command also needs numpy, so the numpy tests cannot skip."""
    want = int(os.environ.get("DEJA_PY_MIN_TESTS", "0"))
    if len(session.items) < want:
        pytest.exit(f"collected {len(session.items)} tests, expected at least {want}",
                    returncode=1)
    if os.environ.get("DEJA_PY_REQUIRE_NUMPY") == "1":
        import importlib.util
        if importlib.util.find_spec("numpy") is None:
            pytest.exit("numpy is missing (Debian: python3-numpy, see scripts/deps.sh)",
                        returncode=1)


def dejad_path() -> str:
    path = os.environ.get("DEJAD") or str(REPO_ROOT / "build" / "server" / "dejad")
    if not os.access(path, os.X_OK):
        pytest.fail(f"dejad not found at {path} (set DEJAD or build it)", pytrace=False)
    return path


class Dejad:
    """One dejad process: start, kill, restart on the same port and data folder."""

    def __init__(self, *extra: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="deja-py-")
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        try:
            self.start(*extra)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"deja://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.dir}/dejad.sock"

    def start(self, *extra: str) -> None:
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        args = [dejad_path(), "--host", "127.0.0.1", "--port", str(self.port),
                "--port-file", port_file, "--data", self.dir,
                "--unix", os.path.join(self.dir, "dejad.sock"), "--log-level", "error",
                *extra]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(port_file) as f:
                    port = int(f.read().strip() or 0)
                if port > 0:
                    self.port = port
                    return
            except (FileNotFoundError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"dejad exited early with status {self.proc.returncode}")
            time.sleep(0.01)
        self.kill()
        raise RuntimeError("dejad did not listen within 10 s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def dejad() -> Iterator[Dejad]:
    """A dejad shared by the tests that only need a healthy server (each
    test works in namespaces of its own)."""
    d = Dejad()
    yield d
    d.close()


@pytest.fixture
def spawn() -> Iterator:
    """Starts dejads of the test's own (extra flags as arguments); stops them after."""
    started: List[Dejad] = []

    def start(*extra: str) -> Dejad:
        d = Dejad(*extra)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


_ns_counter = itertools.count()


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A namespace name no other test uses."""
    return f"py:{request.node.name[:40].replace('[', '-').replace(']', '')}:{next(_ns_counter)}"


@pytest.fixture
def client(dejad: Dejad) -> Iterator:
    import deja
    c = deja.Client(dejad.url, timeout=10)
    yield c
    c.close()


def unit(rng: random.Random, dim: int = DIM) -> List[float]:
    """A random unit vector."""
    v = [rng.gauss(0, 1) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def paraphrase(rng: random.Random, v: Sequence[float], cos: float) -> List[float]:
    """A unit vector whose cosine with unit vector v is about cos."""
    w = unit(rng, len(v))
    d = sum(a * b for a, b in zip(v, w))
    w = [b - d * a for a, b in zip(v, w)]  # orthogonal to v
    n = math.sqrt(sum(x * x for x in w))
    s = math.sqrt(1 - cos * cos)
    return [cos * a + s * b / n for a, b in zip(v, w)]


@pytest.fixture
def rng() -> random.Random:
    return random.Random(12)


class FakeServer:
    """A loopback listener for the cases dejad cannot show: a peer that
    accepts and never answers (handler None), or one with a scripted handler
    called with each accepted socket on its own thread."""

    def __init__(self, handler=None) -> None:
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"deja://127.0.0.1:{self.port}"
        self.handler = handler
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        import threading
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.handler is not None:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass  # the client went away, or the test closed the server

    def close(self) -> None:
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def read_frame(conn):
    """One frame from a socket: (opcode, request_id, body), or None at EOF."""
    import struct as _struct
    head = b""
    while len(head) < 16:
        chunk = conn.recv(16 - len(head))
        if not chunk:
            return None
        head += chunk
    _, _, op, _, _, rid, blen = _struct.unpack("<HBBHHII", head)
    body = b""
    while len(body) < blen:
        chunk = conn.recv(blen - len(body))
        if not chunk:
            return None
        body += chunk
    return op, rid, body


def reply_frame(op: int, rid: int, body: bytes, status: int = 0, flags: int = 0) -> bytes:
    import struct as _struct
    return _struct.pack("<HBBHHII", 0x4A44, 1, op, 0x8000 | flags, status, rid, len(body)) + body


def hello_reply(rid: int) -> bytes:
    import struct as _struct
    name = b"fake"
    return reply_frame(0x01, rid, _struct.pack("<HHIIH", 1, 4096, 1 << 24, 0, len(name)) + name)


@pytest.fixture
def fake_server():
    servers = []

    def start(handler=None) -> FakeServer:
        s = FakeServer(handler)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
