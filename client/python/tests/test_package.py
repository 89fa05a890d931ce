"""The package itself: offline install, typing marker, docstrings on every
public name, address parsing."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys

import pytest

import deja
import deja.aio
from deja import parse_url
from conftest import PACKAGE_ROOT


def test_installs_offline(tmp_path):
    # Build from a copy so that the source tree gets no build/ or egg-info.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PACKAGE_ROOT / name, src / name)
    shutil.copytree(PACKAGE_ROOT / "deja", src / "deja",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                        "--no-deps", "--no-index", "--quiet", "--target", str(target), str(src)],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0 and "No module named pip" in r.stderr:
        pytest.fail("pip is missing (Debian: python3-pip)")
    assert r.returncode == 0, r.stderr
    assert (target / "deja" / "py.typed").exists()
    check = subprocess.run([sys.executable, "-c", "import deja, deja.aio; print(deja.__file__)"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(target)),
                           cwd=str(tmp_path))
    assert check.returncode == 0 and str(target) in check.stdout


def _public(module):
    for name in getattr(module, "__all__", []):
        yield f"{module.__name__}.{name}", getattr(module, name)


def test_every_public_name_has_a_docstring():
    missing = []
    for qual, obj in [*_public(deja), *_public(deja.aio), *_public(deja.errors)]:
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(qual)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (inspect.isfunction(member) or
                                                isinstance(member, property)):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{qual}.{attr}")
    assert missing == []


def test_sync_and_async_apis_mirror():
    for sync_cls, async_cls in ((deja.Client, deja.aio.Client), (deja.Pool, deja.aio.Pool)):
        sync_names = {n for n in vars(sync_cls) if not n.startswith("_")}
        async_names = {n for n in vars(async_cls) if not n.startswith("_")}
        assert sync_names - async_names == set(), sync_cls
        for name in sync_names:
            s, a = getattr(sync_cls, name), getattr(async_cls, name)
            if inspect.isfunction(s) and name not in ("semantic", "status"):
                assert inspect.iscoroutinefunction(a), name
                assert list(inspect.signature(s).parameters) == \
                    list(inspect.signature(a).parameters), name


@pytest.mark.parametrize("url,expect", [
    ("deja://10.0.0.1:7000", ("10.0.0.1", 7000, "")),
    ("deja://cache.internal", ("cache.internal", 7447, "")),
    ("deja://[::1]:7448", ("::1", 7448, "")),
    ("unix:///run/deja.sock", ("", 7447, "/run/deja.sock")),
    ("unix:rel/deja.sock", ("", 7447, "rel/deja.sock")),
    ("/abs/deja.sock", ("", 7447, "/abs/deja.sock")),
    ("host:1234", ("host", 1234, "")),
    ("[fe80::1]", ("fe80::1", 7447, "")),
    ("::1", ("::1", 7447, "")),
])
def test_parse_url(url, expect):
    a = parse_url(url)
    assert (a.host, a.port, a.path) == expect


@pytest.mark.parametrize("url", ["", "deja://host:0", "deja://host:x", "unix://rel",
                                 "deja://[::1", "host:70000"])
def test_parse_url_refuses(url):
    with pytest.raises(deja.InvalidArgument):
        parse_url(url)


def test_env_defaults(monkeypatch):
    monkeypatch.delenv("DEJA_URL", raising=False)
    assert str(parse_url(None)) == "127.0.0.1:7447"
    monkeypatch.setenv("DEJA_URL", "unix:///tmp/x.sock")
    assert parse_url(None).path == "/tmp/x.sock"
    from deja._url import resolve_token
    monkeypatch.setenv("DEJA_AUTH_TOKEN", "tok")
    assert resolve_token(None) == "tok" and resolve_token("") is None
    assert resolve_token("given") == "given"


def test_encode_vector_time_is_reasonable():
    # Not a speed assertion (figures belong in bench.py): the buffer path
    # must not copy, the list path must be one struct call.
    from deja._vector import encode_vector
    import array
    a = array.array("f", [0.5] * 1536)
    dim, data = encode_vector(a)
    assert dim == 1536 and isinstance(data, memoryview) and data.obj is not None
