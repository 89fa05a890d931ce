"""deja.Client: one blocking connection to dejad, for one thread at a time.

Every call is: check the arguments, encode one frame with a fresh request
id, send it, read frames until the reply, check that the reply answers
this request, decode. Anything that leaves the byte stream in doubt (a
timeout, an I/O error, a reply that does not parse or answers something
else) closes the connection, because the next reply could no longer be
matched to its request. The batches pipeline: they send while reading and
match replies by request id, in whatever order they come.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from . import _wire as w
from ._url import Address, parse_url, resolve_token
from ._vector import encode_vector
from .errors import (AuthRequired, CLOSING_STATUSES, ConnectFailed, ConnectionClosed, Error,
                     InvalidArgument, NetworkError, ProtocolError, Timeout, TooLarge,
                     error_for_status)
from .types import (DEFAULT_THRESHOLD, Completion, LookupExResult, LookupRequest, LookupResult,
                    NamespaceConfig, NamespaceInfo, NsPolicy, PolicyMode, ServerInfo,
                    StoreRequest, Text, Vector)

__all__ = ["Client", "CLIENT_NAME"]

#: The client name sent in HELLO.
CLIENT_NAME = "deja-python/0.1.0"

_CHUNK = 64 * 1024
# Bytes of encoded requests a batch keeps ahead of the socket: small enough
# to stay in reused heap memory (fresh pages are slow to fault in).
_SEND_WINDOW = 64 * 1024
_monotonic = time.monotonic
T = TypeVar("T")


def _os_error(e: OSError, what: str) -> Error:
    if isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return ConnectionClosed(f"{what}: {e.strerror or e}")
    return NetworkError(f"{what}: {e.strerror or e}")


def open_socket(addr: Address, deadline: float) -> socket.socket:
    """Connects to addr before deadline (monotonic seconds); TCP_NODELAY on.

    Raises:
        Timeout, ConnectFailed.
    """
    left = deadline - _monotonic()
    if left <= 0:
        raise Timeout("connect timed out")
    try:
        if addr.is_unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(left)
                s.connect(addr.path)
            except BaseException:
                s.close()
                raise
        else:
            s = socket.create_connection((addr.host, addr.port), timeout=left)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except socket.timeout:
        raise Timeout(f"connect timed out ({addr})") from None
    except OSError as e:
        raise ConnectFailed(f"connect: {e.strerror or e} ({addr})") from None
    return s


class Client:
    """One connection to dejad: every op of the protocol, for one thread at a
    time (threads that share one must serialise; use :class:`deja.Pool`).

    Connects, runs HELLO (offering protocol versions 1 and 2; the version the
    server chose is :attr:`protocol_version`) and (with a token) AUTH in the
    constructor. The version-2 methods (``lookup_ex``, ``store_ex``,
    ``lease_release``, ``ns_policy``) raise :class:`deja.UnknownOp` without
    sending anything when the server speaks version 1. After a
    ``Timeout``, ``ConnectionClosed``, ``NetworkError`` or ``ProtocolError``
    the connection is closed and later calls raise ``ConnectionClosed``; any
    other error leaves it usable.

    Args:
        url: server address (``deja://host:port``, ``unix:///path``, ...);
            ``None`` = ``$DEJA_URL``, else ``deja://127.0.0.1:7447``.
        token: AUTH token; ``None`` = ``$DEJA_AUTH_TOKEN``; ``""`` = no AUTH.
        timeout: seconds for each call (and for HELLO and AUTH here).
        connect_timeout: seconds for the socket connect.
        client_name: free text sent in HELLO, for the server's logs.

    Raises:
        InvalidArgument (bad address), ConnectFailed, Timeout, VersionMismatch,
        AuthFailed, AuthRequired (the server wants a token and none was given),
        ProtocolError.
    """

    def __init__(self, url: Union[str, Address, None] = None, token: Optional[str] = None, *,
                 timeout: float = 5.0, connect_timeout: float = 1.0,
                 client_name: str = CLIENT_NAME) -> None:
        now = _monotonic()
        self._init(url, timeout)
        self._open(resolve_token(token), now + connect_timeout, None, client_name)

    # ---- construction ---------------------------------------------------------

    def _init(self, url: Union[str, Address, None], timeout: float) -> None:
        self._addr = url if isinstance(url, Address) else parse_url(url)
        if not timeout > 0:
            raise InvalidArgument("timeout must be positive")
        self._timeout = float(timeout)
        self._sock: Optional[socket.socket] = None
        self._rbuf = bytearray()
        self._chunk = bytearray(_CHUNK)
        self._chunk_mv = memoryview(self._chunk)
        self._next_id = 1
        self._deadline: Optional[float] = None  # set by a pool for one call
        self._dirty = False  # a call is half done (stream in doubt)
        self._server: Optional[ServerInfo] = None
        self._max_frame = w.DEFAULT_MAX_FRAME

    @classmethod
    def _for_pool(cls, addr: Address, token: Optional[str], deadline: float,
                  write_timeout: float, client_name: str) -> "Client":
        """A connection opened by a pool: connect, HELLO and AUTH all end by deadline."""
        c = cls.__new__(cls)
        c._init(addr, write_timeout)
        c._open(token, deadline, deadline, client_name)
        return c

    def _open(self, token: Optional[str], connect_deadline: float,
              handshake_deadline: Optional[float], client_name: str) -> None:
        self._sock = open_socket(self._addr, connect_deadline)
        self._deadline = handshake_deadline
        try:
            info = self.hello(client_name)
            if token:
                self.auth(token)
            elif info.auth_required:
                raise AuthRequired("the server requires a token (DEJA_AUTH_TOKEN) and none was given")
        except BaseException:
            self.close()
            raise
        finally:
            self._deadline = None

    # ---- state -------------------------------------------------------------------

    @property
    def address(self) -> Address:
        """The server's address."""
        return self._addr

    @property
    def server(self) -> Optional[ServerInfo]:
        """What the server said in its last HELLO reply (name, limits, flags)."""
        return self._server

    @property
    def server_name(self) -> str:
        """The server's name and version from HELLO, e.g. ``"dejad 0.1.0"``."""
        return self._server.name if self._server else ""

    @property
    def protocol_version(self) -> int:
        """The protocol version negotiated by the last HELLO (1 or 2); 0 before any."""
        return self._server.version if self._server else 0

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by :meth:`close` or after a stream error)."""
        return self._sock is None

    def close(self) -> None:
        """Closes the connection. Safe to call more than once."""
        s, self._sock = self._sock, None
        self._rbuf.clear()
        if s is not None:
            s.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<deja.Client {self._addr} {state}>"

    # ---- framing -------------------------------------------------------------

    def _drop(self, err: Error) -> Error:
        self.close()
        return err

    def _sock_or_raise(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionClosed("connection is closed")
        return self._sock

    def _call_deadline(self, extra: float = 0.0) -> float:
        # A pool's deadline already covers the call's waiting (extra).
        if self._deadline is not None:
            return self._deadline
        return _monotonic() + self._timeout + extra

    def _take_ids(self, n: int) -> int:
        # A batch matches replies by id - first, so its ids must not wrap.
        if self._next_id > 0xFFFFFFFF - n:
            self._next_id = 1
        first = self._next_id
        self._next_id += n
        return first

    def _frame(self, op: int, rid: int, parts: Sequence[object], flags: int = 0) -> bytes:
        size = 0
        for p in parts:
            size += len(p)  # type: ignore[arg-type]
        if w.HEADER_SIZE + size > self._max_frame:
            raise TooLarge(f"request of {w.HEADER_SIZE + size} bytes exceeds the server's "
                           f"limit of {self._max_frame}")
        return b"".join([w.header(op, rid, size, flags), *parts])  # type: ignore[list-item]

    def _send(self, sock: socket.socket, data: bytes, deadline: float) -> None:
        left = deadline - _monotonic()
        if left <= 0:
            raise self._drop(Timeout("deadline passed before sending"))
        try:
            sock.settimeout(left)
            sock.sendall(data)
        except socket.timeout:
            raise self._drop(Timeout("send timed out")) from None
        except OSError as e:
            # The server may have answered (TOO_LARGE, AUTH_FAILED) and closed.
            err = self._pending_error()
            raise self._drop(err or _os_error(e, "send")) from None

    def _pending_error(self) -> Optional[Error]:
        """After a failed send: an error reply the server sent before closing."""
        try:
            self._sock.settimeout(0)  # type: ignore[union-attr]
            data = self._sock.recv(_CHUNK)  # type: ignore[union-attr]
        except OSError:
            return None
        self._rbuf += data
        if len(self._rbuf) >= w.HEADER_SIZE:
            _, _, _, flags, status, _, blen = w.HEADER.unpack_from(self._rbuf)
            if status and len(self._rbuf) >= w.HEADER_SIZE + blen:
                return w.reply_error(status, bytes(self._rbuf[w.HEADER_SIZE:w.HEADER_SIZE + blen]))
        return None

    def _recv_some(self, sock: socket.socket, deadline: float) -> None:
        left = deadline - _monotonic()
        if left <= 0:
            raise self._drop(Timeout("timed out waiting for the reply"))
        try:
            sock.settimeout(left)
            n = sock.recv_into(self._chunk)
        except socket.timeout:
            raise self._drop(Timeout("timed out waiting for the reply")) from None
        except OSError as e:
            raise self._drop(_os_error(e, "recv")) from None
        if n == 0:
            raise self._drop(ConnectionClosed("server closed the connection"))
        self._rbuf += self._chunk_mv[:n]

    def _next_frame(self) -> Optional[Tuple[int, int, int, int, bytes]]:
        """The next complete frame in the receive buffer, or None."""
        buf = self._rbuf
        if len(buf) < w.HEADER_SIZE:
            return None
        magic, version, op, flags, status, rid, blen = w.HEADER.unpack_from(buf)
        if magic != w.MAGIC or version != w.VERSION:
            raise self._drop(ProtocolError("reply frame with a bad magic or version"))
        if not flags & w.FLAG_REPLY:
            raise self._drop(ProtocolError("frame from the server lacks the reply flag"))
        if blen > w.MAX_REPLY:
            raise self._drop(ProtocolError(f"reply of {blen} bytes is over the client's limit"))
        end = w.HEADER_SIZE + blen
        if len(buf) < end:
            return None
        body = bytes(buf[w.HEADER_SIZE:end])
        del buf[:end]
        return op, flags, status, rid, body

    def _status_error(self, status: int, body: bytes) -> Error:
        err = w.reply_error(status, body)
        if status in CLOSING_STATUSES or status >= 100:
            self.close()  # the server closes after these
        return err

    def _roundtrip(self, op: int, parts: Sequence[object], flags: int = 0,
                   extra: float = 0.0) -> Tuple[int, bytes]:
        """Sends one request and returns the reply's (flags, body), or raises its
        error. extra: seconds the server may hold the reply back (a waiting
        LOOKUP_EX), added to the timeout."""
        sock = self._sock_or_raise()
        deadline = self._call_deadline(extra)
        rid = self._take_ids(1)
        frame = self._frame(op, rid, parts, flags)
        self._dirty = True
        self._send(sock, frame, deadline)
        while True:
            f = self._next_frame()
            if f is None:
                self._recv_some(sock, deadline)
                continue
            rop, rflags, status, rrid, body = f
            if rop != op or rrid != rid:
                if status:  # a connection-level error the server could not attribute
                    raise self._drop(self._status_error(status, body))
                raise self._drop(ProtocolError(
                    f"reply to request {rrid} op 0x{rop:02x} while waiting for {rid} op 0x{op:02x}"))
            self._dirty = False
            if status:
                raise self._status_error(status, body)
            return rflags, body

    def _decode(self, fn: Callable[[bytes], T], body: bytes) -> T:
        try:
            return fn(body)
        except ProtocolError as e:
            raise self._drop(e) from None

    # ---- the ops ------------------------------------------------------------------

    def hello(self, client_name: str = CLIENT_NAME, min_version: int = w.PROTOCOL_MIN,
              max_version: int = w.PROTOCOL_MAX) -> ServerInfo:
        """Negotiates the protocol version (HELLO) and learns the server's
        limits; the constructor already did this once (offering 1..2). The
        version the server picks (``ServerInfo.version``) decides whether the
        version-2 methods are available.

        Raises:
            VersionMismatch (no version in common), plus the connection errors.
        """
        _, body = self._roundtrip(w.OP_HELLO, [w.hello_body(min_version, max_version, client_name)])
        info = self._decode(w.decode_hello, body)
        self._server = info
        self._max_frame = info.max_frame
        return info

    def auth(self, token: Text) -> None:
        """Authenticates the connection (AUTH).

        Raises:
            AuthFailed (wrong token; the server closes the connection), plus
            the connection errors.
        """
        _, body = self._roundtrip(w.OP_AUTH, [w.auth_body(token)])
        self._decode(w.decode_empty, body)

    def ping(self, payload: Text = b"") -> bytes:
        """Round trip (PING, allowed before AUTH); returns the payload echoed.

        Raises:
            InvalidArgument (payload over 65536 bytes), plus the connection errors.
        """
        _, body = self._roundtrip(w.OP_PING, [w.check_ping(payload)])
        return body

    def store(self, ns: str, vector: Vector, response: Text, *, prompt: Optional[Text] = None,
              ttl: int = 0, input_tokens: int = 0, output_tokens: int = 0,
              cost_micro_usd: int = 0, completion: Completion = Completion.OK) -> int:
        """Stores one entry and returns its id (a new one, or the id of the
        live entry it updated: same prompt, or a near-identical vector). The
        reply comes once the entry is durable; it is visible to lookups then.

        Args:
            ns: namespace. vector: the prompt's embedding (any form, see README).
            response: the answer to cache (``str`` is stored as UTF-8).
            prompt: the prompt text, for the exact tier.
            ttl: seconds to live; 0 = the server's default.
            input_tokens, output_tokens, cost_micro_usd: what a later hit saves.
            completion: how the model call ended; only ``OK`` is cached.

        Raises:
            Rejected (completion not OK), DimMismatch, BadVector, BadNamespace,
            StorageFull, TooLarge, InvalidArgument, plus the connection errors.
        """
        dim, vec = encode_vector(vector)
        parts = w.store_parts(ns, dim, vec, response, prompt, ttl, input_tokens,
                              output_tokens, cost_micro_usd, completion)
        _, body = self._roundtrip(w.OP_STORE, parts)
        return self._decode(w.decode_u64, body)

    def lookup(self, ns: str, vector: Vector, *, k: int = 1,
               threshold: float = DEFAULT_THRESHOLD, ef: int = 0,
               prompt: Optional[Text] = None, want_prompt: bool = False) -> LookupResult:
        """Looks up the ``k`` (1..256) most similar live entries of ``ns`` with
        cosine similarity >= ``threshold``; a miss is an empty result.

        Args:
            ef: search breadth hint; 0 = the namespace's default.
            prompt: checked against the exact tier first (a prompt stored
                before answers by its text, without a vector search).
            want_prompt: return each hit's stored prompt.

        Raises:
            DimMismatch, BadVector, BadNamespace, InvalidArgument, plus the
            connection errors.
        """
        dim, vec = encode_vector(vector)
        parts = w.lookup_parts(ns, dim, vec, k, threshold, ef, prompt)
        flags, body = self._roundtrip(w.OP_LOOKUP, parts,
                                      w.FLAG_WANT_PROMPT if want_prompt else 0)
        hits, exact = self._decode(lambda b: w.decode_lookup(b, k, flags), body)
        return LookupResult(hits=hits, exact=exact,
                            borderline=bool(hits) and hits[0].borderline)

    def _need_v2(self, op: str) -> None:
        if self._server is not None and self._server.version < 2:
            raise error_for_status(5, f"{op} needs protocol version 2; the server speaks "
                                      f"version {self._server.version}")

    def lookup_ex(self, ns: str, vector: Vector, *, k: int = 1,
                  threshold: float = DEFAULT_THRESHOLD, ef: int = 0,
                  prompt: Optional[Text] = None, want_prompt: bool = False,
                  lease: bool = False, wait: float = 0.0, lease_time: float = 0.0,
                  want_shadow: bool = False) -> LookupExResult:
        """LOOKUP with leases and shadow hits (LOOKUP_EX, protocol version 2).

        Args:
            k, threshold, ef, prompt, want_prompt: as :meth:`lookup`.
            lease: on a miss, take a lease (outcome ``LEASE``: fetch the
                answer, then :meth:`store_ex` it with ``lease_id``, or
                :meth:`lease_release` it) or wait for a similar one another
                caller holds (outcome ``COALESCED``: its answer).
            wait: seconds this call may wait for another caller's lease
                (sent as whole milliseconds, rounded up); 0 = never wait. The
                call's timeout is extended by ``wait``: the server answers
                by then (``LEASE`` or ``MISS`` at the latest).
            lease_time: seconds a lease granted to this caller lasts; 0 = the
                server's default (dejad: 30 s, at most 600 s).
            want_shadow: in a namespace in shadow mode, return the hits it
                would have served as ``shadow_hits``.

        Raises:
            UnknownOp (the server speaks version 1; nothing is sent),
            DimMismatch, BadVector, BadNamespace, InvalidArgument (also
            ``wait`` or ``lease_time`` without ``lease``), plus the
            connection errors.
        """
        self._need_v2("LOOKUP_EX")
        dim, vec = encode_vector(vector)
        parts = w.lookup_ex_parts(ns, dim, vec, k, threshold, ef, prompt, lease, wait,
                                  lease_time, want_shadow)
        flags, body = self._roundtrip(w.OP_LOOKUP_EX, parts,
                                      w.FLAG_WANT_PROMPT if want_prompt else 0,
                                      extra=wait if lease else 0.0)
        return self._decode(lambda b: w.decode_lookup_ex(b, k, flags), body)

    def store_ex(self, ns: str, vector: Vector, response: Text, *, lease_id: int = 0,
                 prompt: Optional[Text] = None, ttl: int = 0, input_tokens: int = 0,
                 output_tokens: int = 0, cost_micro_usd: int = 0,
                 completion: Completion = Completion.OK) -> int:
        """:meth:`store` that also ends a lease (STORE_EX, protocol version 2):
        once the entry is committed the lease is fulfilled and its waiters
        get the entry; if the store fails (``Rejected`` for a completion
        other than OK, ...) the lease fails and one waiter gets a lease of
        its own. An unknown ``lease_id`` (expired, ended) or 0 makes this a
        plain STORE.

        Raises:
            UnknownOp (the server speaks version 1; nothing is sent), and
            the errors of :meth:`store`.
        """
        self._need_v2("STORE_EX")
        dim, vec = encode_vector(vector)
        parts = w.store_parts(ns, dim, vec, response, prompt, ttl, input_tokens,
                              output_tokens, cost_micro_usd, completion)
        parts.append(w.lease_id_bytes(lease_id))
        _, body = self._roundtrip(w.OP_STORE_EX, parts)
        return self._decode(w.decode_u64, body)

    def lease_release(self, ns: str, lease_id: int) -> None:
        """Gives a lease up without an answer (LEASE_RELEASE, protocol version
        2): it fails, and one caller waiting on it gets a lease of its own.

        Raises:
            NotFound (no such lease in ns: expired, ended or unknown),
            UnknownOp (the server speaks version 1; nothing is sent),
            BadNamespace, InvalidArgument, plus the connection errors.
        """
        self._need_v2("LEASE_RELEASE")
        _, body = self._roundtrip(w.OP_LEASE_RELEASE, [w.lease_release_body(ns, lease_id)])
        self._decode(w.decode_empty, body)

    def ns_policy(self, ns: str, *, mode: Optional[PolicyMode] = None,
                  gray_band: Optional[float] = None) -> NsPolicy:
        """Reads (no arguments) or sets a namespace's policy (NS_POLICY,
        protocol version 2) and returns it as it is after the request.

        Args:
            mode: ``PolicyMode.SHADOW``: lookups are computed and answered as
                misses (``lookup_ex(want_shadow=True)`` shows what would have
                been served); ``PolicyMode.SERVE``: normal.
            gray_band: 0 = no band; b in (0, 1]: vector-search hits below b
                are served flagged ``borderline``.

        Giving only one of the two reads the policy first and sets both (two
        requests, not atomic against another writer).

        Raises:
            NotFound (unknown namespace: create it first), UnknownOp (the
            server speaks version 1; nothing is sent), Quarantined,
            InvalidArgument, plus the connection errors.
        """
        self._need_v2("NS_POLICY")
        current = None
        if (mode is None) != (gray_band is None):
            current = self.ns_policy(ns)
        _, body = self._roundtrip(w.OP_NS_POLICY,
                                  [w.ns_policy_body(ns, mode, gray_band, current)])
        return self._decode(w.decode_ns_policy, body)

    def delete(self, ns: str, entry_id: int) -> None:
        """Deletes one entry (DELETE).

        Raises:
            NotFound (no such entry in ns), BadNamespace, plus the connection errors.
        """
        _, body = self._roundtrip(w.OP_DELETE, [w.delete_body(ns, entry_id)])
        self._decode(w.decode_empty, body)

    def flush(self, ns: str) -> int:
        """Deletes every entry of ``ns`` (FLUSH); returns how many went."""
        _, body = self._roundtrip(w.OP_FLUSH, [w.ns_field(ns)])
        return self._decode(w.decode_u64, body)

    def stats(self, ns: Optional[str] = None) -> Dict[str, int]:
        """Server-wide (``ns`` None) or per-namespace counters (STATS).

        Raises:
            NotFound (unknown namespace), BadNamespace, plus the connection errors.
        """
        _, body = self._roundtrip(w.OP_STATS, [w.ns_field(ns or "", allow_empty=True)])
        return self._decode(w.decode_stats, body)

    def ns_create(self, ns: str, config: NamespaceConfig) -> None:
        """Creates a namespace (NS_CREATE), durable when this returns. Creating
        one that exists with the same configuration changes nothing.

        Raises:
            Exists (it exists with another configuration), BadRequest (a field
            out of range), BadNamespace, UnknownOp (an older server).
        """
        _, body = self._roundtrip(w.OP_NS_CREATE, [w.ns_field(ns), w.config_bytes(config)])
        self._decode(w.decode_empty, body)

    def ns_list(self) -> List[str]:
        """The names of every namespace (NS_LIST)."""
        _, body = self._roundtrip(w.OP_NS_LIST, [])
        return self._decode(w.decode_ns_list, body)

    def ns_info(self, ns: str) -> NamespaceInfo:
        """A namespace's configuration and counters (NS_INFO).

        Raises:
            NotFound, BadNamespace, UnknownOp, plus the connection errors.
        """
        _, body = self._roundtrip(w.OP_NS_INFO, [w.ns_field(ns)])
        return self._decode(w.decode_ns_info, body)

    def ns_drop(self, ns: str) -> int:
        """Drops a namespace and its entries (NS_DROP); returns how many entries went.

        Raises:
            NotFound, BadNamespace, UnknownOp, plus the connection errors.
        """
        _, body = self._roundtrip(w.OP_NS_DROP, [w.ns_field(ns)])
        return self._decode(w.decode_u64, body)

    # ---- batches -------------------------------------------------------------------

    def lookup_many(self, requests: Sequence[LookupRequest]) -> List[LookupResult]:
        """Pipelined lookups on this connection: every request is sent before
        the replies are needed (replies are read while sending), within one
        timeout for the whole batch, and replies are matched by request id.

        Returns one result per request, in order, each with its own ``error``
        (a request refused by the server, or the connection failure that
        left it unanswered). Never raises for a request's failure.
        """
        results, _ = self._lookup_many(requests)
        return results

    def store_many(self, requests: Sequence[StoreRequest]) -> List[Union[int, Error]]:
        """Pipelined stores on this connection within one timeout. Returns, per
        request in order, the entry id or the :class:`deja.Error` it failed
        with. Replies come in any order (a store's waits for its commit)."""
        results, _ = self._store_many(requests)
        return results

    def _lookup_many(self, requests: Sequence[LookupRequest]
                     ) -> Tuple[List[LookupResult], Optional[Error]]:
        requests = list(requests)
        first = self._take_ids(len(requests))
        ks = [getattr(r, "k", 1) for r in requests]

        def encode(i: int) -> bytes:
            r = requests[i]
            if not isinstance(r, LookupRequest):
                raise InvalidArgument("lookup_many takes deja.LookupRequest objects")
            dim, vec = encode_vector(r.vector)
            parts = w.lookup_parts(r.ns, dim, vec, r.k, r.threshold, r.ef, r.prompt)
            return self._frame(w.OP_LOOKUP, first + i, parts,
                               w.FLAG_WANT_PROMPT if r.want_prompt else 0)

        def decode(i: int, flags: int, body: bytes) -> LookupResult:
            hits, exact = w.decode_lookup(body, ks[i], flags)
            return LookupResult(hits=hits, exact=exact,
                                borderline=bool(hits) and hits[0].borderline)

        outs, stream_err = self._pipeline(w.OP_LOOKUP, first, len(requests), encode, decode)
        return [o if isinstance(o, LookupResult) else LookupResult(error=o)  # type: ignore[arg-type]
                for o in outs], stream_err

    def _store_many(self, requests: Sequence[StoreRequest]
                    ) -> Tuple[List[Union[int, Error]], Optional[Error]]:
        requests = list(requests)
        first = self._take_ids(len(requests))

        def encode(i: int) -> bytes:
            r = requests[i]
            if not isinstance(r, StoreRequest):
                raise InvalidArgument("store_many takes deja.StoreRequest objects")
            dim, vec = encode_vector(r.vector)
            parts = w.store_parts(r.ns, dim, vec, r.response, r.prompt, r.ttl, r.input_tokens,
                                  r.output_tokens, r.cost_micro_usd, r.completion)
            return self._frame(w.OP_STORE, first + i, parts)

        outs, stream_err = self._pipeline(w.OP_STORE, first, len(requests), encode,
                                          lambda i, f, b: w.decode_u64(b))
        return outs, stream_err  # type: ignore[return-value]

    def _pipeline(self, op: int, first: int, n: int, encode: Callable[[int], bytes],
                  decode: Callable[[int, int, bytes], object]
                  ) -> Tuple[List[object], Optional[Error]]:
        """Sends n requests (encoded on the way, so that only a window of
        frames is in memory) while reading replies; returns one outcome per
        request (a decoded reply or an Error) and the error that broke the
        stream, if one did."""
        out: List[object] = [None] * n
        if n == 0:
            return out, None
        sock = self._sock
        stream_err: Optional[Error] = None
        if sock is None:
            stream_err = ConnectionClosed("connection is closed")
        else:
            deadline = self._call_deadline()
            self._dirty = True
            try:
                self._pump(sock, n, encode, deadline, op, first, out, decode)
                self._dirty = False
            except Error as e:
                stream_err = e
        if stream_err is not None:
            for i in range(n):
                if out[i] is None:
                    out[i] = stream_err
        return out, stream_err

    def _pump(self, sock: socket.socket, n: int, encode: Callable[[int], bytes],
              deadline: float, op: int, first: int, out: List[object],
              decode: Callable[[int, int, bytes], object]) -> None:
        # Replies are read while requests are still going out: sending
        # everything first would deadlock once replies fill the socket
        # buffers and dejad stops reading (--max-outbuf).
        pending = n  # requests without an outcome yet
        next_i = 0
        outbuf = bytearray()
        sock.settimeout(0.0)
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLOUT)
        sending = True
        readable_mask = select.POLLIN | select.POLLHUP | select.POLLERR
        while pending:
            while next_i < n and len(outbuf) < _SEND_WINDOW:
                try:
                    outbuf += encode(next_i)
                except Error as e:  # refused before sending: that request alone fails
                    out[next_i] = e
                    pending -= 1
                next_i += 1
            if outbuf:
                try:
                    sent = sock.send(outbuf)
                    del outbuf[:sent]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    err = self._pending_error()
                    raise self._drop(err or _os_error(e, "send")) from None
            if sending and not outbuf and next_i == n:
                poller.modify(sock, select.POLLIN)
                sending = False
            if not pending:
                break
            left = deadline - _monotonic()
            if left <= 0:
                raise self._drop(Timeout(f"batch timed out with {pending} replies missing"))
            events = poller.poll(int(left * 1000) + 1)
            if not any(ev & readable_mask for _, ev in events):
                continue
            try:
                got = sock.recv_into(self._chunk)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                raise self._drop(_os_error(e, "recv")) from None
            if got == 0:
                raise self._drop(ConnectionClosed("server closed the connection"))
            self._rbuf += self._chunk_mv[:got]
            while True:
                f = self._next_frame()
                if f is None:
                    break
                rop, rflags, status, rid, body = f
                i = rid - first
                if rop != op or not 0 <= i < next_i or out[i] is not None:
                    if status:
                        raise self._drop(self._status_error(status, body))
                    raise self._drop(ProtocolError(f"unexpected reply to request {rid}"))
                if status:
                    err = self._status_error(status, body)
                    out[i] = err
                    if self._sock is None:
                        raise err
                else:
                    try:
                        out[i] = decode(i, rflags, body)
                    except ProtocolError as e:
                        raise self._drop(e) from None
                pending -= 1

    # ---- for the pool ------------------------------------------------------------

    def _reusable(self) -> bool:
        return self._sock is not None and not self._dirty and not self._rbuf

    def _peer_closed(self) -> bool:
        """True if the server closed this idle connection (or sent something
        unasked); one non-blocking peek."""
        try:
            self._sock.settimeout(0.0)  # type: ignore[union-attr]
            self._sock.recv(1, socket.MSG_PEEK)  # type: ignore[union-attr]
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

