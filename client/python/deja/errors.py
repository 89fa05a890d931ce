"""Exceptions raised by the deja client, one hierarchy under :class:`Error`.

Every error carries the protocol's error ``name`` (``"DIM_MISMATCH"``), its
``code`` from deja's one error table (negative, as in libdeja:
``-10``), the wire ``status`` (``10``; ``None`` for errors that happen on
the client's side and never travel) and the ``message`` (the server's text,
or the client's explanation). Programs decide on the class or on ``name``;
the message is for people.

Families::

    Error
    +-- ServerError            the server answered with an error status
    |   +-- InvalidRequest     BAD_REQUEST, BAD_FRAME, VERSION, UNKNOWN_OP,
    |   |                      TOO_LARGE, BAD_VECTOR, DIM_MISMATCH, BAD_NAMESPACE
    |   +-- AuthError          AUTH_REQUIRED, AUTH_FAILED, FORBIDDEN
    |   +-- Refused            NOT_FOUND, REJECTED, STORAGE_FULL, EXISTS, QUARANTINED
    |   +-- ServerFault        INTERNAL, BUSY, SHUTTING_DOWN
    +-- TransportError         TIMEOUT, CONNECT, CLOSED, IO, PROTOCOL, UNAVAILABLE
    +-- InvalidArgument        INVALID_ARG (also a ValueError)
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "Error", "ServerError", "InvalidRequest", "AuthError", "Refused", "ServerFault",
    "TransportError", "InvalidArgument",
    "NotFound", "BadRequest", "BadFrame", "VersionMismatch", "UnknownOp", "TooLarge",
    "AuthRequired", "AuthFailed", "BadVector", "DimMismatch", "BadNamespace",
    "Rejected", "InternalError", "Busy", "StorageFull", "ShuttingDown", "Exists",
    "Timeout", "ConnectFailed", "ConnectionClosed", "ProtocolError", "NetworkError",
    "Unavailable", "Forbidden", "Quarantined", "error_for_status",
]


class Error(Exception):
    """Base class of every error the deja client raises or reports.

    Attributes:
        name: the protocol's error name, e.g. ``"DIM_MISMATCH"``.
        code: the error's code in deja's error table (negative).
        status: the wire status (``-code``) for errors the server sends,
            ``None`` for errors local to the client (codes -100 and below).
        message: a readable explanation (the server's message when it gave one).
    """

    name: str = "ERROR"
    code: int = 0

    def __init__(self, message: str = "", *, status: Optional[int] = None,
                 name: Optional[str] = None) -> None:
        if name is not None:
            self.name = name
        if status is not None:
            self.code = -status
        self.status: Optional[int] = -self.code if -99 <= self.code < 0 else None
        self.message = message or self.name
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.message != self.name else self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, name={self.name!r}, code={self.code})"


# ---- server statuses -------------------------------------------------------

class ServerError(Error):
    """The server answered the request with an error status (1..99).

    Statuses this client does not know yet (the protocol allows new ones)
    are raised as a plain :class:`ServerError` named ``STATUS_<n>``."""


class InvalidRequest(ServerError):
    """The server could not accept the request as sent (malformed frame or
    body, bad vector, wrong dimension, bad namespace name, ...)."""


class AuthError(ServerError):
    """Authentication is needed or was refused."""


class Refused(ServerError):
    """A well-formed request the cache's state refuses: no such entry, a
    non-OK completion, no room, a namespace that exists differently."""


class ServerFault(ServerError):
    """The server is overloaded, stopping, or failed internally."""


class NotFound(Refused):
    """NOT_FOUND (1): no such entry (DELETE) or namespace (STATS, NS_INFO, NS_DROP)."""
    name, code = "NOT_FOUND", -1


class BadRequest(InvalidRequest):
    """BAD_REQUEST (2): malformed request body or header fields; the
    connection stays open."""
    name, code = "BAD_REQUEST", -2


class BadFrame(InvalidRequest):
    """BAD_FRAME (3): bad magic; the server closed the connection."""
    name, code = "BAD_FRAME", -3


class VersionMismatch(InvalidRequest):
    """VERSION (4): no protocol version in common with the server."""
    name, code = "VERSION", -4


class UnknownOp(InvalidRequest):
    """UNKNOWN_OP (5): the server does not know this operation (an older
    server); the connection stays open."""
    name, code = "UNKNOWN_OP", -5


class TooLarge(InvalidRequest):
    """TOO_LARGE (6): the request is over the server's frame limit. Raised
    before sending when the client knows the limit (nothing sent, the
    connection stays usable); from the server it closes the connection."""
    name, code = "TOO_LARGE", -6


class AuthRequired(AuthError):
    """AUTH_REQUIRED (7): the server has a token and this connection has not
    authenticated; the connection stays open."""
    name, code = "AUTH_REQUIRED", -7


class AuthFailed(AuthError):
    """AUTH_FAILED (8): wrong token; the server closed the connection."""
    name, code = "AUTH_FAILED", -8


class BadVector(InvalidRequest):
    """BAD_VECTOR (9): bad dimension, a NaN or Inf component, or a zero vector."""
    name, code = "BAD_VECTOR", -9


class DimMismatch(InvalidRequest):
    """DIM_MISMATCH (10): the vector's dimension differs from the namespace's."""
    name, code = "DIM_MISMATCH", -10


class BadNamespace(InvalidRequest):
    """BAD_NAMESPACE (11): the namespace name is not 1..255 bytes of 0x21..0x7E."""
    name, code = "BAD_NAMESPACE", -11


class Rejected(Refused):
    """REJECTED (12): a STORE whose completion is not OK (never cached)."""
    name, code = "REJECTED", -12


class InternalError(ServerFault):
    """INTERNAL (13): a server bug or unexpected failure."""
    name, code = "INTERNAL", -13


class Busy(ServerFault):
    """BUSY (14): the server is overloaded; retry later. Sent for a refused
    connection or AUTH, the server closes the connection after it."""
    name, code = "BUSY", -14


class StorageFull(Refused):
    """STORAGE_FULL (15): no room for the entry; lookups keep working."""
    name, code = "STORAGE_FULL", -15


class ShuttingDown(ServerFault):
    """SHUTTING_DOWN (16): the server is stopping."""
    name, code = "SHUTTING_DOWN", -16


class Exists(Refused):
    """EXISTS (17): NS_CREATE of a namespace that exists with another configuration."""
    name, code = "EXISTS", -17


class Forbidden(AuthError):
    """FORBIDDEN (18): the connection's (tenant) token may not do this op,
    or not in this namespace (outside its prefix); the connection stays open."""
    name, code = "FORBIDDEN", -18


class Quarantined(Refused):
    """QUARANTINED (19): the namespace could not be loaded at the server's
    start (the message says why) and is out of service until NS_DROP."""
    name, code = "QUARANTINED", -19


# ---- the client's own errors ------------------------------------------------

class TransportError(Error):
    """The request did not get an answer: the connection failed, timed out,
    closed, carried a malformed reply, or the breaker refused the call."""


class Timeout(TransportError):
    """TIMEOUT (-101): the call's deadline passed. A sync connection is closed
    afterwards (a late reply could be taken for the next one)."""
    name, code = "TIMEOUT", -101


class ConnectFailed(TransportError):
    """CONNECT (-102): cannot connect to the server."""
    name, code = "CONNECT", -102


class ConnectionClosed(TransportError):
    """CLOSED (-103): the connection is closed (by the server, or earlier by
    the client after a stream error)."""
    name, code = "CLOSED", -103


class ProtocolError(TransportError):
    """PROTOCOL (-104): a malformed reply from the server; the connection is closed."""
    name, code = "PROTOCOL", -104


class InvalidArgument(Error, ValueError):
    """INVALID_ARG (-105): an argument the client refuses before sending
    anything (also a :class:`ValueError`)."""
    name, code = "INVALID_ARG", -105


class NetworkError(TransportError):
    """IO (-106): an I/O error on the socket; the connection is closed."""
    name, code = "IO", -106


class Unavailable(TransportError):
    """UNAVAILABLE (-107): a pool's circuit breaker is open; no request was sent."""
    name, code = "UNAVAILABLE", -107


# One class per wire row of proto/deja-errors.h's table; tests/test_tables.py
# fails if a status, name or code differs from it.
_BY_STATUS: Dict[int, Type[ServerError]] = {
    cls.code * -1: cls
    for cls in (NotFound, BadRequest, BadFrame, VersionMismatch, UnknownOp, TooLarge,
                AuthRequired, AuthFailed, BadVector, DimMismatch, BadNamespace, Rejected,
                InternalError, Busy, StorageFull, ShuttingDown, Exists, Forbidden, Quarantined)
}

# Statuses after which the server closes the connection (PROTOCOL.md 3).
CLOSING_STATUSES = frozenset((3, 6, 8))


def error_for_status(status: int, message: str = "") -> ServerError:
    """Returns the exception for a wire status (1..99) and the server's message."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        return ServerError(message, status=status, name=f"STATUS_{status}")
    return cls(message)
