"""deja.aio: the asyncio client, mirroring :class:`deja.Client` and
:class:`deja.Pool` method for method, as coroutines.

One :class:`Client` multiplexes: concurrent awaits on one connection are
pipelined, each request carries its own id and its reply is matched by it
whatever the order. So a timed-out request is simply abandoned -- its late
reply is recognised by its id and dropped -- and, unlike the sync client,
the connection stays usable for the other requests in flight. This is also
what lets a LOOKUP_EX wait on a lease (its reply comes after the replies to
later requests) while the connection serves other calls. A LOOKUP_EX with
a lease that is abandoned (timed out, cancelled) and then answered with a
lease gives that lease back at once (LEASE_RELEASE), so that the callers
waiting on it are not held up until it expires.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import socket
from typing import (Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar,
                    Union)

from . import _fetch
from . import _wire as w
from ._breaker import NEUTRAL, Breaker, classify_call, classify_connect
from ._url import Address, parse_url, resolve_token
from ._vector import encode_vector
from .client import CLIENT_NAME
from .errors import (AuthRequired, CLOSING_STATUSES, ConnectFailed, ConnectionClosed, Error,
                     InvalidArgument, NetworkError, ProtocolError, Timeout, TooLarge,
                     TransportError, error_for_status)
from .types import (DEFAULT_THRESHOLD, BreakerState, Completion, LookupExResult, LookupRequest,
                    LookupResult, NamespaceConfig, NamespaceInfo, NsPolicy, Outcome, PolicyMode,
                    PoolStatus, ServerInfo, StoreRequest, Text, Vector)

__all__ = ["Client", "Pool"]

T = TypeVar("T")

# Abandoned LOOKUP_EX requests with a lease whose late replies are watched
# for a lease to give back, per connection; past this many the oldest go.
_MAX_ORPHANS = 1024

# The deadline (loop time) of the pool call running in this task, if any.
_call_deadline: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar(
    "deja_call_deadline", default=None)
# Set while a connection runs its own HELLO and AUTH.
_handshaking: contextvars.ContextVar[bool] = contextvars.ContextVar("deja_handshaking",
                                                                    default=False)


def _extend_call_deadline(extra: float) -> None:
    """Moves the running pool call's deadline by extra seconds (the wait of a
    LOOKUP_EX, on top of the lookup timeout); the pool resets it after."""
    d = _call_deadline.get()
    if d is not None:
        _call_deadline.set(d + extra)


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    """Marks a connect task's exception as seen: the callers waiting on it
    get the error themselves (or have given up at their deadline)."""
    if not fut.cancelled():
        fut.exception()


class _Protocol(asyncio.Protocol):
    """Receives frames for one Client and wakes the requests they answer."""

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.buf = bytearray()
        self.transport: Optional[asyncio.Transport] = None
        self.paused = False
        self.drain_waiters: List[asyncio.Future] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        client = self.client
        unpack = w.HEADER.unpack_from
        while len(buf) >= w.HEADER_SIZE:
            magic, version, op, flags, status, rid, blen = unpack(buf)
            if magic != w.MAGIC or version != w.VERSION or not flags & w.FLAG_REPLY \
                    or blen > w.MAX_REPLY:
                client._fail_all(ProtocolError("malformed reply frame header"))
                return
            end = w.HEADER_SIZE + blen
            if len(buf) < end:
                return
            body = bytes(buf[w.HEADER_SIZE:end])
            del buf[:end]
            client._on_frame(op, flags, status, rid, body)
            if client._transport is None:
                return

    def connection_lost(self, exc: Optional[Exception]) -> None:
        err: Error
        if exc is None or isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            err = ConnectionClosed("server closed the connection")
        else:
            err = NetworkError(f"connection lost: {exc}")
        self.client._fail_all(err)
        self._wake(err)

    def eof_received(self) -> Optional[bool]:
        return False  # close the transport

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake(None)

    def _wake(self, err: Optional[Error]) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for f in waiters:
            if not f.done():
                if err is None:
                    f.set_result(None)
                else:
                    f.set_exception(err)


class Client:
    """One asyncio connection to dejad with every op of the protocol, as
    :class:`deja.Client`. Concurrent calls are pipelined over the connection.

    Nothing happens in the constructor: the connection (HELLO, AUTH) opens
    at ``await client.connect()``, ``async with``, or the first call.

    Args: as :class:`deja.Client` (``url``, ``token``, ``timeout``,
    ``connect_timeout``, ``client_name``).
    """

    def __init__(self, url: Union[str, Address, None] = None, token: Optional[str] = None, *,
                 timeout: float = 5.0, connect_timeout: float = 1.0,
                 client_name: str = CLIENT_NAME) -> None:
        self._addr = url if isinstance(url, Address) else parse_url(url)
        if not timeout > 0 or not connect_timeout > 0:
            raise InvalidArgument("timeouts must be positive")
        self._token = resolve_token(token)
        self._timeout = float(timeout)
        self._connect_timeout = float(connect_timeout)
        self._client_name = client_name
        self._transport: Optional[asyncio.Transport] = None
        self._protocol: Optional[_Protocol] = None
        self._pending: Dict[int, Tuple[asyncio.Future, int]] = {}
        self._next_id = 1
        self._server: Optional[ServerInfo] = None
        self._max_frame = w.DEFAULT_MAX_FRAME
        self._connecting: Optional[asyncio.Future] = None
        self._was_open = False
        # request id -> str8 namespace of abandoned LOOKUP_EX with a lease.
        self._orphans: Dict[int, bytes] = {}

    # ---- state -------------------------------------------------------------------

    @property
    def address(self) -> Address:
        """The server's address."""
        return self._addr

    @property
    def server(self) -> Optional[ServerInfo]:
        """What the server said in its last HELLO reply."""
        return self._server

    @property
    def server_name(self) -> str:
        """The server's name and version from HELLO."""
        return self._server.name if self._server else ""

    @property
    def protocol_version(self) -> int:
        """The protocol version negotiated by the last HELLO (1 or 2); 0 before any."""
        return self._server.version if self._server else 0

    @property
    def closed(self) -> bool:
        """True when no connection is open (before connecting, or once closed)."""
        return self._transport is None

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    def __repr__(self) -> str:
        return f"<deja.aio.Client {self._addr} {'closed' if self.closed else 'open'}>"

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; requests in flight fail with ConnectionClosed."""
        self._fail_all(ConnectionClosed("connection closed by the client"))

    # ---- connecting ----------------------------------------------------------------

    async def connect(self) -> "Client":
        """Opens the connection, runs HELLO and (with a token) AUTH. Does nothing
        when already open. A client whose connection failed or was closed
        reconnects here.

        Raises:
            ConnectFailed, Timeout, VersionMismatch, AuthFailed, AuthRequired,
            ProtocolError.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        await self._ensure_open(now + self._connect_timeout, None)
        return self

    async def _ensure_open(self, connect_deadline: float, handshake_deadline: Optional[float]) -> None:
        if self._transport is not None and self._server is not None:
            return
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(
                self._open(connect_deadline, handshake_deadline))
            self._connecting.add_done_callback(_retrieve)
        fut = self._connecting
        try:
            await asyncio.shield(fut)
        finally:
            if fut.done() and self._connecting is fut:
                self._connecting = None

    async def _open(self, connect_deadline: float, handshake_deadline: Optional[float]) -> None:
        loop = asyncio.get_running_loop()
        self._was_open = True
        left = connect_deadline - loop.time()
        addr = self._addr
        try:
            if left <= 0:
                raise asyncio.TimeoutError
            factory = functools.partial(_Protocol, self)
            if addr.is_unix:
                coro = loop.create_unix_connection(factory, addr.path)
            else:
                coro = loop.create_connection(factory, addr.host, addr.port)
            transport, protocol = await asyncio.wait_for(coro, left)
        except asyncio.TimeoutError:
            raise Timeout(f"connect timed out ({addr})") from None
        except OSError as e:
            raise ConnectFailed(f"connect: {e.strerror or e} ({addr})") from None
        if not addr.is_unix:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._transport, self._protocol = transport, protocol  # type: ignore[assignment]
        self._max_frame = w.DEFAULT_MAX_FRAME
        token = _call_deadline.set(handshake_deadline)
        _handshaking.set(True)  # this task's own context: no reset needed
        try:
            info = await self.hello(self._client_name)
            if self._token:
                await self.auth(self._token)
            elif info.auth_required:
                raise AuthRequired("the server requires a token (DEJA_AUTH_TOKEN) and none was given")
        except BaseException:
            self._fail_all(ConnectionClosed("connection closed"))
            raise
        finally:
            _call_deadline.reset(token)

    def _fail_all(self, err: Error) -> None:
        """Closes the connection and fails every request in flight with err."""
        t, self._transport = self._transport, None
        self._server = None if t is not None else self._server
        pending, self._pending = self._pending, {}
        self._orphans.clear()  # the server ends a closed connection's leases
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # a failed request nobody awaits is not an error
        if t is not None:
            t.close()

    # ---- requests ---------------------------------------------------------------------

    def _on_frame(self, op: int, flags: int, status: int, rid: int, body: bytes) -> None:
        entry = self._pending.pop(rid, None)
        if entry is None:
            if status and (rid == 0 or status in CLOSING_STATUSES):
                # A connection-level error the server could not attribute.
                self._fail_all(w.reply_error(status, body))
                return
            orphan_ns = self._orphans.pop(rid, None)
            if orphan_ns is not None and not status and op == w.OP_LOOKUP_EX:
                self._give_back(orphan_ns, body)
            return  # the late reply of an abandoned request
        fut, want_op = entry
        if op != want_op:
            self._fail_all(ProtocolError(f"reply to request {rid} has op 0x{op:02x}"))
            if not fut.done():
                fut.set_exception(ProtocolError(f"reply to request {rid} has op 0x{op:02x}"))
            return
        if fut.done():
            return
        if status:
            fut.set_exception(w.reply_error(status, body))
            if status in CLOSING_STATUSES or status >= 100:
                self._fail_all(ConnectionClosed("the server closed the connection after "
                                                f"status {status}"))
        else:
            fut.set_result((flags, body))

    def _give_back(self, ns_field: bytes, body: bytes) -> None:
        """Releases the lease in the late reply of an abandoned LOOKUP_EX, if
        it granted one; the LEASE_RELEASE's own reply is dropped."""
        if len(body) < 10 or body[0] != 2 or self._transport is None:
            return
        lease_id = int.from_bytes(body[2:10], "little")
        if lease_id:
            rid = self._take_ids(1)
            self._transport.write(self._frame(w.OP_LEASE_RELEASE, rid,
                                              [ns_field, lease_id.to_bytes(8, "little")]))

    def _take_ids(self, n: int) -> int:
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

    async def _deadline(self, extra: float = 0.0) -> float:
        """This call's deadline (loop time): a pool's, or the client's timeout
        plus extra (seconds the server may hold the reply back). The first
        call of a client never connected opens the connection; calls made
        while it is opening wait for its HELLO and AUTH."""
        loop = asyncio.get_running_loop()
        d = _call_deadline.get()
        if d is None:
            d = loop.time() + self._timeout + extra
        if not _handshaking.get():
            if self._transport is None and not self._was_open:
                await self._ensure_open(min(d, loop.time() + self._connect_timeout), d)
            elif self._connecting is not None and not self._connecting.done():
                try:
                    await asyncio.wait_for(asyncio.shield(self._connecting),
                                           max(0.0, d - loop.time()))
                except asyncio.TimeoutError:
                    raise Timeout("timed out waiting for the connection") from None
        if self._transport is None:
            raise ConnectionClosed("connection is closed")
        return d

    def _expire(self, rids: Sequence[int], what: str) -> None:
        for rid in rids:
            entry = self._pending.pop(rid, None)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(Timeout(what))

    async def _drain(self, deadline: float) -> None:
        p = self._protocol
        if p is None or not p.paused:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        p.drain_waiters.append(fut)
        try:
            await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise Timeout("timed out sending the request") from None

    async def _roundtrip(self, op: int, parts: Sequence[object], flags: int = 0,
                         extra: float = 0.0, lease_ns: Optional[bytes] = None
                         ) -> Tuple[int, bytes]:
        """One request: its reply's (flags, body), or its error. extra: as
        _deadline. lease_ns: a LOOKUP_EX with a lease in this namespace
        (str8): if abandoned, a lease in its late reply is given back."""
        deadline = await self._deadline(extra)
        loop = asyncio.get_running_loop()
        rid = self._take_ids(1)
        frame = self._frame(op, rid, parts, flags)
        fut = loop.create_future()
        self._pending[rid] = (fut, op)
        self._transport.write(frame)  # type: ignore[union-attr]
        timer = loop.call_at(deadline, self._expire, (rid,), "timed out waiting for the reply")
        try:
            await self._drain(deadline)
            return await fut
        finally:
            timer.cancel()
            self._pending.pop(rid, None)
            if lease_ns is not None and self._transport is not None:
                # Timed out or cancelled: the reply may still come, with a lease.
                if not fut.done() or fut.cancelled() or isinstance(fut.exception(), Timeout):
                    if len(self._orphans) >= _MAX_ORPHANS:
                        del self._orphans[next(iter(self._orphans))]
                    self._orphans[rid] = lease_ns

    # ---- the ops (as deja.Client) --------------------------------------------------

    async def hello(self, client_name: str = CLIENT_NAME, min_version: int = w.PROTOCOL_MIN,
                    max_version: int = w.PROTOCOL_MAX) -> ServerInfo:
        """As :meth:`deja.Client.hello`."""
        _, body = await self._roundtrip(w.OP_HELLO,
                                        [w.hello_body(min_version, max_version, client_name)])
        info = self._checked(w.decode_hello, body)
        self._server = info
        self._max_frame = info.max_frame
        return info

    async def auth(self, token: Text) -> None:
        """As :meth:`deja.Client.auth`."""
        _, body = await self._roundtrip(w.OP_AUTH, [w.auth_body(token)])
        self._checked(w.decode_empty, body)

    async def ping(self, payload: Text = b"") -> bytes:
        """As :meth:`deja.Client.ping`."""
        _, body = await self._roundtrip(w.OP_PING, [w.check_ping(payload)])
        return body

    async def store(self, ns: str, vector: Vector, response: Text, *,
                    prompt: Optional[Text] = None, ttl: int = 0, input_tokens: int = 0,
                    output_tokens: int = 0, cost_micro_usd: int = 0,
                    completion: Completion = Completion.OK) -> int:
        """As :meth:`deja.Client.store`."""
        dim, vec = encode_vector(vector)
        parts = w.store_parts(ns, dim, vec, response, prompt, ttl, input_tokens,
                              output_tokens, cost_micro_usd, completion)
        _, body = await self._roundtrip(w.OP_STORE, parts)
        return self._checked(w.decode_u64, body)

    async def lookup(self, ns: str, vector: Vector, *, k: int = 1,
                     threshold: float = DEFAULT_THRESHOLD, ef: int = 0,
                     prompt: Optional[Text] = None, want_prompt: bool = False) -> LookupResult:
        """As :meth:`deja.Client.lookup`."""
        dim, vec = encode_vector(vector)
        parts = w.lookup_parts(ns, dim, vec, k, threshold, ef, prompt)
        flags, body = await self._roundtrip(w.OP_LOOKUP, parts,
                                            w.FLAG_WANT_PROMPT if want_prompt else 0)
        hits, exact = self._checked(lambda b: w.decode_lookup(b, k, flags), body)
        return LookupResult(hits=hits, exact=exact,
                            borderline=bool(hits) and hits[0].borderline)

    def _need_v2(self, op: str) -> None:
        if self._server is not None and self._server.version < 2:
            raise error_for_status(5, f"{op} needs protocol version 2; the server speaks "
                                      f"version {self._server.version}")

    async def _ensure_v2(self, op: str) -> None:
        # The first call of a client never connected learns the version first.
        if self._server is None and self._transport is None and not self._was_open:
            await self._deadline()
        self._need_v2(op)

    async def lookup_ex(self, ns: str, vector: Vector, *, k: int = 1,
                        threshold: float = DEFAULT_THRESHOLD, ef: int = 0,
                        prompt: Optional[Text] = None, want_prompt: bool = False,
                        lease: bool = False, wait: float = 0.0, lease_time: float = 0.0,
                        want_shadow: bool = False) -> LookupExResult:
        """As :meth:`deja.Client.lookup_ex`. While it waits on a lease the
        connection keeps serving other calls; if it is abandoned (timeout,
        cancellation) and later answered with a lease, the lease is released."""
        await self._ensure_v2("LOOKUP_EX")
        dim, vec = encode_vector(vector)
        parts = w.lookup_ex_parts(ns, dim, vec, k, threshold, ef, prompt, lease, wait,
                                  lease_time, want_shadow)
        flags, body = await self._roundtrip(w.OP_LOOKUP_EX, parts,
                                            w.FLAG_WANT_PROMPT if want_prompt else 0,
                                            extra=wait if lease else 0.0,
                                            lease_ns=parts[0] if lease else None)  # type: ignore[arg-type]
        return self._checked(lambda b: w.decode_lookup_ex(b, k, flags), body)

    async def store_ex(self, ns: str, vector: Vector, response: Text, *, lease_id: int = 0,
                       prompt: Optional[Text] = None, ttl: int = 0, input_tokens: int = 0,
                       output_tokens: int = 0, cost_micro_usd: int = 0,
                       completion: Completion = Completion.OK) -> int:
        """As :meth:`deja.Client.store_ex`."""
        await self._ensure_v2("STORE_EX")
        dim, vec = encode_vector(vector)
        parts = w.store_parts(ns, dim, vec, response, prompt, ttl, input_tokens,
                              output_tokens, cost_micro_usd, completion)
        parts.append(w.lease_id_bytes(lease_id))
        _, body = await self._roundtrip(w.OP_STORE_EX, parts)
        return self._checked(w.decode_u64, body)

    async def lease_release(self, ns: str, lease_id: int) -> None:
        """As :meth:`deja.Client.lease_release`."""
        await self._ensure_v2("LEASE_RELEASE")
        _, body = await self._roundtrip(w.OP_LEASE_RELEASE, [w.lease_release_body(ns, lease_id)])
        self._checked(w.decode_empty, body)

    async def ns_policy(self, ns: str, *, mode: Optional[PolicyMode] = None,
                        gray_band: Optional[float] = None) -> NsPolicy:
        """As :meth:`deja.Client.ns_policy`."""
        await self._ensure_v2("NS_POLICY")
        current = None
        if (mode is None) != (gray_band is None):
            current = await self.ns_policy(ns)
        _, body = await self._roundtrip(w.OP_NS_POLICY,
                                        [w.ns_policy_body(ns, mode, gray_band, current)])
        return self._checked(w.decode_ns_policy, body)

    async def delete(self, ns: str, entry_id: int) -> None:
        """As :meth:`deja.Client.delete`."""
        _, body = await self._roundtrip(w.OP_DELETE, [w.delete_body(ns, entry_id)])
        self._checked(w.decode_empty, body)

    async def flush(self, ns: str) -> int:
        """As :meth:`deja.Client.flush`."""
        _, body = await self._roundtrip(w.OP_FLUSH, [w.ns_field(ns)])
        return self._checked(w.decode_u64, body)

    async def stats(self, ns: Optional[str] = None) -> Dict[str, int]:
        """As :meth:`deja.Client.stats`."""
        _, body = await self._roundtrip(w.OP_STATS, [w.ns_field(ns or "", allow_empty=True)])
        return self._checked(w.decode_stats, body)

    async def ns_create(self, ns: str, config: NamespaceConfig) -> None:
        """As :meth:`deja.Client.ns_create`."""
        _, body = await self._roundtrip(w.OP_NS_CREATE, [w.ns_field(ns), w.config_bytes(config)])
        self._checked(w.decode_empty, body)

    async def ns_list(self) -> List[str]:
        """As :meth:`deja.Client.ns_list`."""
        _, body = await self._roundtrip(w.OP_NS_LIST, [])
        return self._checked(w.decode_ns_list, body)

    async def ns_info(self, ns: str) -> NamespaceInfo:
        """As :meth:`deja.Client.ns_info`."""
        _, body = await self._roundtrip(w.OP_NS_INFO, [w.ns_field(ns)])
        return self._checked(w.decode_ns_info, body)

    async def ns_drop(self, ns: str) -> int:
        """As :meth:`deja.Client.ns_drop`."""
        _, body = await self._roundtrip(w.OP_NS_DROP, [w.ns_field(ns)])
        return self._checked(w.decode_u64, body)

    def _checked(self, fn: Callable[[bytes], T], body: bytes) -> T:
        try:
            return fn(body)
        except ProtocolError as e:
            self._fail_all(ConnectionClosed("closed after a malformed reply"))
            raise e from None

    # ---- batches -----------------------------------------------------------------------

    async def lookup_many(self, requests: Sequence[LookupRequest]) -> List[LookupResult]:
        """As :meth:`deja.Client.lookup_many`: one result per request, each with
        its own ``error``; never raises for a request's failure."""
        results, _ = await self._lookup_many(requests)
        return results

    async def store_many(self, requests: Sequence[StoreRequest]) -> List[Union[int, Error]]:
        """As :meth:`deja.Client.store_many`: per request, the id or its Error."""
        results, _ = await self._store_many(requests)
        return results

    async def _lookup_many(self, requests: Sequence[LookupRequest]
                           ) -> Tuple[List[LookupResult], Optional[Error]]:
        ks = [getattr(r, "k", 1) for r in requests]

        def encode(r: LookupRequest) -> Tuple[List[object], int]:
            dim, vec = encode_vector(r.vector)
            return (w.lookup_parts(r.ns, dim, vec, r.k, r.threshold, r.ef, r.prompt),
                    w.FLAG_WANT_PROMPT if r.want_prompt else 0)

        def decode(i: int, flags: int, body: bytes) -> LookupResult:
            hits, exact = w.decode_lookup(body, ks[i], flags)
            return LookupResult(hits=hits, exact=exact,
                                borderline=bool(hits) and hits[0].borderline)

        outs, err = await self._batch(w.OP_LOOKUP, requests, encode, decode, "lookup_many",
                                      LookupRequest)
        return [o if isinstance(o, LookupResult) else LookupResult(error=o) for o in outs], err

    async def _store_many(self, requests: Sequence[StoreRequest]
                          ) -> Tuple[List[Union[int, Error]], Optional[Error]]:
        def encode(r: StoreRequest) -> Tuple[List[object], int]:
            dim, vec = encode_vector(r.vector)
            return (w.store_parts(r.ns, dim, vec, r.response, r.prompt, r.ttl, r.input_tokens,
                                  r.output_tokens, r.cost_micro_usd, r.completion), 0)

        return await self._batch(w.OP_STORE, requests, encode,
                                 lambda i, f, b: w.decode_u64(b), "store_many", StoreRequest)

    async def _batch(self, op: int, requests: Sequence[Any],
                     encode: Callable[[Any], Tuple[List[object], int]],
                     decode: Callable[[int, int, bytes], Any], name: str, kind: type
                     ) -> Tuple[List[Any], Optional[Error]]:
        n = len(requests)
        outs: List[Any] = [None] * n
        if n == 0:
            return outs, None
        try:
            deadline = await self._deadline()
        except Error as e:
            return [e] * n, e
        loop = asyncio.get_running_loop()
        first = self._take_ids(n)
        frames = []
        futs: Dict[int, asyncio.Future] = {}
        for i, r in enumerate(requests):
            if not isinstance(r, kind):
                outs[i] = InvalidArgument(f"{name} takes deja.{kind.__name__} objects")
                continue
            try:
                parts, flags = encode(r)
                frames.append(self._frame(op, first + i, parts, flags))
            except Error as e:
                outs[i] = e
                continue
            fut = loop.create_future()
            futs[i] = fut
            self._pending[first + i] = (fut, op)
        rids = [first + i for i in futs]
        if self._transport is None:  # lost while encoding
            for i, fut in futs.items():
                self._pending.pop(first + i, None)
                outs[i] = ConnectionClosed("connection is closed")
            return outs, ConnectionClosed("connection is closed")
        self._transport.writelines(frames)
        timer = loop.call_at(deadline, self._expire, rids,
                             f"{name} timed out waiting for the reply")
        stream_err: Optional[Error] = None
        try:
            if futs:
                await asyncio.wait(list(futs.values()))
        finally:
            timer.cancel()
            for rid in rids:
                self._pending.pop(rid, None)
        for i, fut in futs.items():
            if fut.cancelled():
                outs[i] = ConnectionClosed("cancelled")
                continue
            exc = fut.exception()
            if exc is None:
                flags, body = fut.result()
                try:
                    outs[i] = decode(i, flags, body)
                except ProtocolError as e:
                    outs[i] = e
                    stream_err = stream_err or e
            else:
                outs[i] = exc
                if isinstance(exc, TransportError) and stream_err is None:
                    stream_err = exc  # type: ignore[assignment]
        if isinstance(stream_err, ProtocolError):
            self._fail_all(ConnectionClosed("closed after a malformed reply"))
        return outs, stream_err


class _Conn:
    """A pooled asyncio connection and the calls using it now."""
    __slots__ = ("client", "users", "ready")

    def __init__(self, client: Client, ready: "asyncio.Future[None]") -> None:
        self.client = client
        self.users = 0
        self.ready = ready


class Pool:
    """The asyncio pool, as :class:`deja.Pool`: lazy connections, per-call
    deadlines (lookups 50 ms), the same fail-open circuit breaker, and lookups
    that never raise. Connections are multiplexed: a call goes to the open
    connection with the fewest calls in flight, and a new one is opened (up
    to ``size``) only when every open one is busy.

    Args: as :class:`deja.Pool`.
    """

    def __init__(self, url: Union[str, Address, None] = None, token: Optional[str] = None, *,
                 size: int = 8, connect_timeout: float = 0.1, lookup_timeout: float = 0.05,
                 write_timeout: float = 1.0, breaker_failures: int = 5,
                 breaker_cooldown: float = 1.0, clock: Optional[Callable[[], float]] = None,
                 client_name: str = CLIENT_NAME, leases: bool = True,
                 lease_wait: float = _fetch.DEFAULT_LEASE_WAIT,
                 lease_time: float = 0.0) -> None:
        self._addr = url if isinstance(url, Address) else parse_url(url)
        if size < 1 or min(connect_timeout, lookup_timeout, write_timeout) <= 0 \
                or breaker_failures < 1 or breaker_cooldown < 0:
            raise InvalidArgument("size, timeouts and breaker_failures must be positive")
        self._token = resolve_token(token)
        self._size = size
        self._connect_timeout = connect_timeout
        self.lookup_timeout = lookup_timeout
        self.write_timeout = write_timeout
        self.leases = bool(leases)
        self.lease_wait = _fetch.check_lease_wait(lease_wait)
        self.lease_time = _fetch.check_lease_wait(lease_time)
        self._client_name = client_name
        self._conns: List[_Conn] = []
        self._breaker = Breaker(breaker_failures, breaker_cooldown, clock)

    def __repr__(self) -> str:
        return f"<deja.aio.Pool {self._addr} {self._breaker.state.name}>"

    async def __aenter__(self) -> "Pool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes every connection; calls in flight fail (lookups as misses)."""
        conns, self._conns = self._conns, []
        for pc in conns:
            await pc.client.close()

    def status(self) -> PoolStatus:
        """The breaker's state, the connections and the counters."""
        live = [pc for pc in self._conns if not pc.client.closed or not pc.ready.done()]
        return self._breaker.status(len(live), sum(1 for pc in live if pc.users == 0))

    # ---- taking and giving back a connection -------------------------------------

    def _close_unused(self) -> None:
        keep = []
        for pc in self._conns:
            if pc.users == 0 and pc.ready.done():
                pc.client._fail_all(ConnectionClosed("closed by the pool (breaker open)"))
            else:
                keep.append(pc)
        self._conns = keep

    def _record(self, probe: bool, outcome: int, err: Optional[BaseException]) -> None:
        if self._breaker.record(probe, outcome, err):
            self._close_unused()

    async def _acquire(self, deadline: float) -> Tuple[_Conn, bool]:
        probe = self._breaker.admit()
        self._conns = [pc for pc in self._conns
                       if not pc.ready.done() or pc.ready.exception() is None
                       and not pc.client.closed]
        best = min(self._conns, key=lambda pc: pc.users, default=None)
        loop = asyncio.get_running_loop()
        if best is None or (best.users > 0 and len(self._conns) < self._size):
            client = Client(self._addr, self._token or "", timeout=self.write_timeout,
                            connect_timeout=self._connect_timeout,
                            client_name=self._client_name)
            connect_deadline = min(deadline, loop.time() + self._connect_timeout)
            ready = asyncio.ensure_future(client._ensure_open(connect_deadline, connect_deadline))
            ready.add_done_callback(_retrieve)
            best = _Conn(client, ready)
            self._conns.append(best)
            self._breaker.connects += 1
            opener = True
        else:
            opener = False
        best.users += 1
        if not best.ready.done():
            try:
                await asyncio.wait_for(asyncio.shield(best.ready),
                                       max(0.0, deadline - loop.time()))
            except BaseException as e:
                best.users -= 1
                err: BaseException = e
                if isinstance(e, asyncio.TimeoutError):
                    err = Timeout("connect timed out")
                if opener:
                    self._breaker.connect_failures += 1
                    if best in self._conns and best.ready.done():
                        self._conns.remove(best)
                self._record(probe, classify_connect(err), err)
                if err is e:
                    raise
                raise err from None
        elif best.ready.exception() is not None:
            best.users -= 1
            err2 = best.ready.exception()
            self._record(probe, classify_connect(err2), err2)  # type: ignore[arg-type]
            raise err2  # type: ignore[misc]
        return best, probe

    def _release(self, pc: _Conn, probe: bool, outcome: int, err: Optional[BaseException]) -> None:
        pc.users -= 1
        self._record(probe, outcome, err)
        # While open the pool keeps no connections.
        if pc.client.closed or (self._breaker.state == BreakerState.OPEN and pc.users == 0):
            if pc in self._conns:
                self._conns.remove(pc)
            if not pc.client.closed and pc.users == 0:
                pc.client._fail_all(ConnectionClosed("closed by the pool (breaker open)"))

    async def _run(self, timeout: float, op: Callable[[Client], Awaitable[T]],
                   judge: Optional[Callable[[T], Optional[Error]]] = None) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pc, probe = await self._acquire(deadline)
        token = _call_deadline.set(deadline)
        err: Optional[BaseException] = None
        try:
            result = await op(pc.client)
            if judge is not None:
                err = judge(result)
            return result
        except BaseException as e:
            err = e
            raise
        finally:
            _call_deadline.reset(token)
            self._release(pc, probe, classify_call(err) if isinstance(err, Error) or err is None
                          else NEUTRAL, err)

    # ---- the calls (as deja.Pool) ------------------------------------------------

    async def ping(self, payload: Text = b"", *, timeout: Optional[float] = None) -> bytes:
        """As :meth:`deja.Pool.ping`."""
        return await self._run(timeout or self.lookup_timeout, lambda c: c.ping(payload))

    async def lookup(self, ns: str, vector: Vector, *, k: int = 1,
                     threshold: float = DEFAULT_THRESHOLD, ef: int = 0,
                     prompt: Optional[Text] = None, want_prompt: bool = False,
                     timeout: Optional[float] = None) -> LookupResult:
        """As :meth:`deja.Pool.lookup`: never raises; errors give a miss with ``error``."""
        try:
            return await self._run(timeout or self.lookup_timeout,
                                   lambda c: c.lookup(ns, vector, k=k, threshold=threshold,
                                                      ef=ef, prompt=prompt,
                                                      want_prompt=want_prompt))
        except Error as e:
            return LookupResult(error=e)

    async def store(self, ns: str, vector: Vector, response: Text, *,
                    prompt: Optional[Text] = None, ttl: int = 0, input_tokens: int = 0,
                    output_tokens: int = 0, cost_micro_usd: int = 0,
                    completion: Completion = Completion.OK,
                    timeout: Optional[float] = None) -> int:
        """As :meth:`deja.Pool.store`."""
        return await self._run(timeout or self.write_timeout,
                               lambda c: c.store(ns, vector, response, prompt=prompt, ttl=ttl,
                                                 input_tokens=input_tokens,
                                                 output_tokens=output_tokens,
                                                 cost_micro_usd=cost_micro_usd,
                                                 completion=completion))

    async def delete(self, ns: str, entry_id: int, *, timeout: Optional[float] = None) -> None:
        """As :meth:`deja.Pool.delete`."""
        await self._run(timeout or self.write_timeout, lambda c: c.delete(ns, entry_id))

    async def flush(self, ns: str, *, timeout: Optional[float] = None) -> int:
        """As :meth:`deja.Pool.flush`."""
        return await self._run(timeout or self.write_timeout, lambda c: c.flush(ns))

    async def stats(self, ns: Optional[str] = None, *,
                    timeout: Optional[float] = None) -> Dict[str, int]:
        """As :meth:`deja.Pool.stats`."""
        return await self._run(timeout or self.write_timeout, lambda c: c.stats(ns))

    async def ns_create(self, ns: str, config: NamespaceConfig, *,
                        timeout: Optional[float] = None) -> None:
        """As :meth:`deja.Pool.ns_create`."""
        await self._run(timeout or self.write_timeout, lambda c: c.ns_create(ns, config))

    async def ns_list(self, *, timeout: Optional[float] = None) -> List[str]:
        """As :meth:`deja.Pool.ns_list`."""
        return await self._run(timeout or self.write_timeout, lambda c: c.ns_list())

    async def ns_info(self, ns: str, *, timeout: Optional[float] = None) -> NamespaceInfo:
        """As :meth:`deja.Pool.ns_info`."""
        return await self._run(timeout or self.write_timeout, lambda c: c.ns_info(ns))

    async def ns_drop(self, ns: str, *, timeout: Optional[float] = None) -> int:
        """As :meth:`deja.Pool.ns_drop`."""
        return await self._run(timeout or self.write_timeout, lambda c: c.ns_drop(ns))

    async def lookup_ex(self, ns: str, vector: Vector, *, k: int = 1,
                        threshold: float = DEFAULT_THRESHOLD, ef: int = 0,
                        prompt: Optional[Text] = None, want_prompt: bool = False,
                        lease: bool = False, wait: float = 0.0, lease_time: float = 0.0,
                        want_shadow: bool = False,
                        timeout: Optional[float] = None) -> LookupExResult:
        """As :meth:`deja.Pool.lookup_ex`: never raises."""
        async def op(c: Client) -> LookupExResult:
            if lease:
                _extend_call_deadline(wait)
            return await c.lookup_ex(ns, vector, k=k, threshold=threshold, ef=ef,
                                     prompt=prompt, want_prompt=want_prompt, lease=lease,
                                     wait=wait, lease_time=lease_time,
                                     want_shadow=want_shadow)
        try:
            return await self._run(timeout or self.lookup_timeout, op)
        except Error as e:
            return LookupExResult(error=e)

    async def store_ex(self, ns: str, vector: Vector, response: Text, *, lease_id: int = 0,
                       prompt: Optional[Text] = None, ttl: int = 0, input_tokens: int = 0,
                       output_tokens: int = 0, cost_micro_usd: int = 0,
                       completion: Completion = Completion.OK,
                       timeout: Optional[float] = None) -> int:
        """As :meth:`deja.Pool.store_ex`."""
        return await self._run(timeout or self.write_timeout,
                               lambda c: c.store_ex(ns, vector, response, lease_id=lease_id,
                                                    prompt=prompt, ttl=ttl,
                                                    input_tokens=input_tokens,
                                                    output_tokens=output_tokens,
                                                    cost_micro_usd=cost_micro_usd,
                                                    completion=completion))

    async def lease_release(self, ns: str, lease_id: int, *,
                            timeout: Optional[float] = None) -> None:
        """As :meth:`deja.Pool.lease_release`."""
        await self._run(timeout or self.write_timeout, lambda c: c.lease_release(ns, lease_id))

    async def ns_policy(self, ns: str, *, mode: Optional[PolicyMode] = None,
                        gray_band: Optional[float] = None,
                        timeout: Optional[float] = None) -> NsPolicy:
        """As :meth:`deja.Pool.ns_policy`."""
        return await self._run(timeout or self.write_timeout,
                               lambda c: c.ns_policy(ns, mode=mode, gray_band=gray_band))

    async def lookup_many(self, requests: Sequence[LookupRequest], *,
                          timeout: Optional[float] = None) -> List[LookupResult]:
        """As :meth:`deja.Pool.lookup_many`: never raises."""
        requests = list(requests)
        if not requests:
            return []
        try:
            return (await self._run(timeout or self.lookup_timeout,
                                    lambda c: c._lookup_many(requests), judge=lambda r: r[1]))[0]
        except Error as e:
            return [LookupResult(error=e) for _ in requests]

    async def store_many(self, requests: Sequence[StoreRequest], *,
                         timeout: Optional[float] = None) -> List[Union[int, Error]]:
        """As :meth:`deja.Pool.store_many`."""
        requests = list(requests)
        if not requests:
            return []
        try:
            return (await self._run(timeout or self.write_timeout,
                                    lambda c: c._store_many(requests), judge=lambda r: r[1]))[0]
        except Error as e:
            return [e for _ in requests]

    # ---- the cache loop ----------------------------------------------------------------

    async def get_or_fetch(self, ns: str, vector: Vector,
                           fetch: Callable[[], Any], *, prompt: Optional[Text] = None,
                           threshold: float = DEFAULT_THRESHOLD, ttl: int = 0,
                           leases: Optional[bool] = None,
                           lease_wait: Optional[float] = None) -> LookupResult:
        """As :meth:`deja.Pool.get_or_fetch` (leases included); ``fetch`` may
        be a coroutine function or a plain one."""
        use_leases = self.leases if leases is None else leases
        wait = self.lease_wait if lease_wait is None else _fetch.check_lease_wait(lease_wait)
        lease_id = 0
        try:
            dim, vec = encode_vector(vector)
        except Error as e:
            vec, lookup_err = None, e
            cached = LookupResult(error=e)
        else:
            if use_leases:
                cached, lease_id = await self._lookup_or_lease(ns, vec, threshold, prompt, wait)
            else:
                cached = await self.lookup(ns, vec, threshold=threshold, prompt=prompt)
            lookup_err = cached.error
        if cached.hits:
            return cached
        if lease_id:
            return await self._fetch_for_lease(ns, vec, fetch, prompt, ttl, lease_id)
        value = fetch()
        if inspect.isawaitable(value):
            value = await value
        answer = _fetch.as_answer(value)
        entry_id, stored, err = 0, False, lookup_err
        if vec is not None and _fetch.should_store(answer, lookup_err):
            try:
                entry_id = await self.store(ns, vec, answer.response, prompt=prompt,
                                            ttl=answer.ttl or ttl,
                                            input_tokens=answer.input_tokens,
                                            output_tokens=answer.output_tokens,
                                            cost_micro_usd=answer.cost_micro_usd)
                stored = True
            except Error as e:
                err = e
        return _fetch.fetched_result(answer, prompt, entry_id, stored, err)

    async def _lookup_or_lease(self, ns: str, vec: object, threshold: float,
                               prompt: Optional[Text], wait: float) -> Tuple[LookupResult, int]:
        """As deja.Pool._lookup_or_lease."""
        async def op(c: Client) -> Tuple[LookupResult, int]:
            if c.protocol_version < 2:
                return await c.lookup(ns, vec, threshold=threshold, prompt=prompt), 0
            _extend_call_deadline(wait)
            r = await c.lookup_ex(ns, vec, threshold=threshold, prompt=prompt, lease=True,
                                  wait=wait, lease_time=self.lease_time)
            return _fetch.from_lookup_ex(r), r.lease_id if r.outcome == Outcome.LEASE else 0
        try:
            return await self._run(self.lookup_timeout, op)
        except Error as e:
            return LookupResult(error=e), 0

    async def _fetch_for_lease(self, ns: str, vec: object, fetch: Callable[[], Any],
                               prompt: Optional[Text], ttl: int, lease_id: int) -> LookupResult:
        """As deja.Pool._fetch_for_lease."""
        try:
            value = fetch()
            if inspect.isawaitable(value):
                value = await value
            answer = _fetch.as_answer(value)
        except BaseException:
            await self._give_back(ns, lease_id)
            raise
        if answer.completion != Completion.OK:
            await self._give_back(ns, lease_id)
            return _fetch.fetched_result(answer, prompt, 0, False, None)
        entry_id, stored, err = 0, False, None
        try:
            entry_id = await self.store_ex(ns, vec, answer.response, lease_id=lease_id,
                                           prompt=prompt, ttl=answer.ttl or ttl,
                                           input_tokens=answer.input_tokens,
                                           output_tokens=answer.output_tokens,
                                           cost_micro_usd=answer.cost_micro_usd)
            stored = True
        except Error as e:
            err = e
        return _fetch.fetched_result(answer, prompt, entry_id, stored, err)

    async def _give_back(self, ns: str, lease_id: int) -> None:
        """Releases a lease, best effort: if this fails the lease expires."""
        try:
            await self.lease_release(ns, lease_id)
        except Error:
            pass

    def semantic(self, ns: str, embed: Callable[[str], Any], *,
                 threshold: float = DEFAULT_THRESHOLD, ttl: int = 0, decode: bool = True
                 ) -> Callable[[Callable[[str], Awaitable[Any]]], Callable[[str], Awaitable[Any]]]:
        """As :meth:`deja.Pool.semantic`, over an ``async def`` function
        ``prompt -> answer``; ``embed`` may be async or plain."""
        def wrap(fn: Callable[[str], Awaitable[Any]]) -> Callable[[str], Awaitable[Any]]:
            async def result(prompt: str) -> LookupResult:
                vec = embed(prompt)
                if inspect.isawaitable(vec):
                    vec = await vec
                return await self.get_or_fetch(ns, vec, lambda: fn(prompt), prompt=prompt,
                                               threshold=threshold, ttl=ttl)

            @functools.wraps(fn)
            async def wrapper(prompt: str) -> Any:
                return _fetch.decode_response(await result(prompt), decode)

            wrapper.get_or_fetch = result  # type: ignore[attr-defined]
            return wrapper
        return wrap
