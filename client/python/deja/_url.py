"""Server addresses, in the forms libdeja takes (docs/CLIENT.md "Addresses")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from .errors import InvalidArgument

DEFAULT_PORT = 7447
DEFAULT_URL = f"deja://127.0.0.1:{DEFAULT_PORT}"


@dataclass(frozen=True)
class Address:
    """A parsed server address: a Unix socket ``path``, or ``host`` and ``port``."""
    host: str = ""
    port: int = DEFAULT_PORT
    path: str = ""

    @property
    def is_unix(self) -> bool:
        """True for a Unix socket address."""
        return bool(self.path)

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _port(s: str, full: str) -> int:
    if not s.isdigit() or len(s) > 5 or not 1 <= int(s) <= 65535:
        raise InvalidArgument(f'bad port in address "{full}"')
    return int(s)


def parse_url(url: Optional[str] = None) -> Address:
    """Parses ``deja://host:port``, ``deja://host`` (port 7447), ``deja://[::1]:7447``,
    ``unix:///abs/path.sock``, and the short forms ``host:port``, ``host``,
    ``[v6]:port``, ``unix:path`` and ``/path``. ``None`` means ``$DEJA_URL``,
    else ``deja://127.0.0.1:7447``.

    Raises:
        InvalidArgument: the address cannot be parsed.
    """
    if url is None:
        url = os.environ.get("DEJA_URL") or DEFAULT_URL
    if not isinstance(url, str) or not url:
        raise InvalidArgument("empty address")
    full = url
    path = None
    if url.startswith("unix://"):
        path = url[7:]
        if not path.startswith("/"):
            raise InvalidArgument(f'"{full}": unix:// needs an absolute path (unix:///path)')
    elif url.startswith("unix:"):
        path = url[5:]
    elif url.startswith("/"):
        path = url
    elif url.startswith("deja://"):
        url = url[7:]
    if path is not None:
        if not path or len(path.encode()) >= 108:
            raise InvalidArgument(f'bad Unix socket path in "{full}"')
        return Address(path=path)
    if url.startswith("["):
        close = url.find("]")
        if close < 2:
            raise InvalidArgument(f'bad address "{full}"')
        host, rest = url[1:close], url[close + 1:]
        if rest and not rest.startswith(":"):
            raise InvalidArgument(f'bad address "{full}"')
        return Address(host=host, port=_port(rest[1:], full) if rest else DEFAULT_PORT)
    if url.count(":") > 1:  # a bare IPv6 literal
        return Address(host=url)
    host, sep, port = url.partition(":")
    if not host or len(host) > 255 or "/" in host:
        raise InvalidArgument(f'bad address "{full}"')
    return Address(host=host, port=_port(port, full) if sep else DEFAULT_PORT)


def resolve_token(token: Optional[str]) -> Optional[str]:
    """The token to send: ``token``, else ``$DEJA_AUTH_TOKEN``; ``""`` means none."""
    if token is None:
        token = os.environ.get("DEJA_AUTH_TOKEN")
    return token or None
