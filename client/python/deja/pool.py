"""deja.Pool: connections shared by many threads, per-call deadlines, and the
circuit breaker that makes the client fail open (docs/CLIENT.md).

One lock guards the idle stack, the connection count, the breaker and the
counters. It is never held while waiting on the network (connecting, a
request, even the peek that checks an idle connection), so a thread stuck on
a slow server never delays the fail-fast path of another. A connection in use
belongs to the thread that took it.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import (Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar,
                    Union)

from . import _fetch
from ._breaker import NEUTRAL, Breaker, classify_call, classify_connect
from ._url import Address, parse_url, resolve_token
from ._vector import encode_vector
from .client import CLIENT_NAME, Client
from .errors import Error, InvalidArgument, Timeout
from .types import (DEFAULT_THRESHOLD, BreakerState, Completion, LookupExResult, LookupRequest,
                    LookupResult, NamespaceConfig, NamespaceInfo, NsPolicy, Outcome, PolicyMode,
                    PoolStatus, StoreRequest, Text, Vector)

__all__ = ["Pool"]

T = TypeVar("T")
_monotonic = time.monotonic


class Pool:
    """A thread-safe, fail-open pool of connections: what applications use.

    Connects lazily (a server that is down at start costs nothing until the
    first call), keeps up to ``size`` connections, bounds every call by its
    deadline (waiting for a connection, connecting, sending and receiving all
    included), and puts a circuit breaker in front of the server: after
    ``breaker_failures`` consecutive failures every call fails at once with
    :class:`deja.Unavailable` for ``breaker_cooldown`` seconds, then one probe
    decides. Lookups never raise: on any error they return a miss whose
    ``error`` says why, so ``if result: use it, else ask the LLM`` is always right.

    Args:
        url: server address; ``None`` = ``$DEJA_URL``, else ``deja://127.0.0.1:7447``.
        token: AUTH token; ``None`` = ``$DEJA_AUTH_TOKEN``; ``""`` = none.
        size: most connections.
        connect_timeout: seconds for TCP connect + HELLO + AUTH (within the
            call's own deadline).
        lookup_timeout: deadline of lookup, lookup_many and ping (50 ms).
        write_timeout: deadline of store, store_many, delete, flush, stats and
            the namespace ops (writes are acknowledged once durable).
        breaker_failures: consecutive failures that open the breaker.
        breaker_cooldown: seconds the breaker stays open before a probe.
        clock: the breaker's clock (seconds), for tests and simulations;
            deadlines always use the monotonic clock.
        leases: ``get_or_fetch`` uses leases (semantic single-flight) on a
            server that speaks protocol version 2.
        lease_wait: seconds a ``get_or_fetch`` waits for another caller's
            fetch of a similar question (default 10), on top of the lookup
            timeout; set it near your model's usual latency.
        lease_time: seconds a lease this pool takes lasts if it is neither
            stored nor released (0 = the server's default, dejad 30 s).

    Raises:
        InvalidArgument: a bad address or option.
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
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        # Guarded by _lock:
        self._idle: List[Client] = []
        self._n_open = 0  # idle + in use + being opened
        self._breaker = Breaker(breaker_failures, breaker_cooldown, clock)

    def __repr__(self) -> str:
        return f"<deja.Pool {self._addr} {self._breaker.state.name}>"

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the idle connections. Calls still running close theirs when
        they end; the pool stays usable (it reconnects on demand)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._n_open -= len(idle)
        for c in idle:
            c.close()

    def status(self) -> PoolStatus:
        """The breaker's state, the connections and the counters (any thread)."""
        with self._lock:
            return self._breaker.status(self._n_open, len(self._idle))

    # ---- taking and giving back a connection -----------------------------------

    def _close_idle_locked(self) -> None:
        # When the breaker opens: those connections lead to a server presumed
        # down, and the probe must test a fresh one.
        for c in self._idle:
            c.close()
        self._n_open -= len(self._idle)
        self._idle.clear()

    def _record_locked(self, probe: bool, outcome: int, err: Optional[BaseException]) -> None:
        if self._breaker.record(probe, outcome, err):
            self._close_idle_locked()
            self._slot_freed.notify_all()

    def _acquire(self, deadline: float) -> Tuple[Client, bool]:
        """Takes a connection for a call ending at deadline: an idle one that
        is still sound, a new one while fewer than size are open, or the first
        that another thread gives back. Returns it and whether the call is the
        breaker's probe."""
        lock = self._lock
        lock.acquire()
        held = True
        try:
            probe = self._breaker.admit()
            while True:
                if self._idle:
                    c = self._idle.pop()
                    lock.release()
                    held = False
                    # An idle connection has nothing to read unless the server
                    # closed it (restart, shutdown): drop it and look again.
                    if not c._peer_closed():
                        return c, probe
                    c.close()
                    lock.acquire()
                    held = True
                    self._n_open -= 1
                    continue
                if self._n_open < self._size:
                    self._n_open += 1
                    self._breaker.connects += 1
                    lock.release()
                    held = False
                    try:
                        c = Client._for_pool(self._addr, self._token,
                                             min(deadline, _monotonic() + self._connect_timeout),
                                             self.write_timeout, self._client_name)
                        return c, probe
                    except BaseException as e:
                        lock.acquire()
                        held = True
                        self._n_open -= 1
                        self._breaker.connect_failures += 1
                        self._record_locked(probe, classify_connect(e), e)
                        self._slot_freed.notify()
                        raise
                left = deadline - _monotonic()
                if left <= 0:
                    # Local congestion says nothing about the server: neutral.
                    self._breaker.record(probe, NEUTRAL, None)
                    raise Timeout(f"all {self._size} connections stayed busy until the deadline")
                self._slot_freed.wait(left)
        finally:
            if held:
                lock.release()

    def _release(self, c: Client, probe: bool, outcome: int,
                 err: Optional[BaseException]) -> None:
        keep = c._reusable()
        with self._lock:
            self._record_locked(probe, outcome, err)
            # While open the pool keeps no connections.
            if keep and self._breaker.state != BreakerState.OPEN:
                self._idle.append(c)
                c = None  # type: ignore[assignment]
            else:
                self._n_open -= 1
            self._slot_freed.notify()
        if c is not None:
            c.close()

    def _run(self, timeout: float, op: Callable[[Client], T],
             judge: Optional[Callable[[T], Optional[Error]]] = None) -> T:
        """One pool call: op runs on a connection within the call's deadline.
        judge maps a batch's return value to the error that broke its stream
        (what the breaker judges), since per-request errors are answers."""
        deadline = _monotonic() + timeout
        c, probe = self._acquire(deadline)
        c._deadline = deadline
        err: Optional[BaseException] = None
        try:
            result = op(c)
            if judge is not None:
                err = judge(result)
            return result
        except BaseException as e:
            err = e
            raise
        finally:
            c._deadline = None
            self._release(c, probe, classify_call(err) if isinstance(err, Error) or err is None
                          else NEUTRAL, err)

    # ---- the calls ---------------------------------------------------------------

    def ping(self, payload: Text = b"", *, timeout: Optional[float] = None) -> bytes:
        """Round trip within the lookup timeout; returns the payload echoed.

        Raises:
            Unavailable (breaker open), Timeout, ConnectFailed, ConnectionClosed,
            NetworkError, ProtocolError, AuthFailed, VersionMismatch.
        """
        return self._run(timeout or self.lookup_timeout, lambda c: c.ping(payload))

    def lookup(self, ns: str, vector: Vector, *, k: int = 1,
               threshold: float = DEFAULT_THRESHOLD, ef: int = 0,
               prompt: Optional[Text] = None, want_prompt: bool = False,
               timeout: Optional[float] = None) -> LookupResult:
        """As :meth:`deja.Client.lookup`, within the lookup timeout (50 ms by
        default, or ``timeout`` seconds). Never raises: any error (the breaker
        open, a timeout, the server down, a bad argument) gives a miss with
        ``error`` set."""
        try:
            return self._run(timeout or self.lookup_timeout,
                             lambda c: c.lookup(ns, vector, k=k, threshold=threshold, ef=ef,
                                                prompt=prompt, want_prompt=want_prompt))
        except Error as e:
            return LookupResult(error=e)

    def store(self, ns: str, vector: Vector, response: Text, *, prompt: Optional[Text] = None,
              ttl: int = 0, input_tokens: int = 0, output_tokens: int = 0,
              cost_micro_usd: int = 0, completion: Completion = Completion.OK,
              timeout: Optional[float] = None) -> int:
        """As :meth:`deja.Client.store`, within the write timeout; also raises
        :class:`deja.Unavailable` when the breaker is open."""
        return self._run(timeout or self.write_timeout,
                         lambda c: c.store(ns, vector, response, prompt=prompt, ttl=ttl,
                                           input_tokens=input_tokens,
                                           output_tokens=output_tokens,
                                           cost_micro_usd=cost_micro_usd,
                                           completion=completion))

    def delete(self, ns: str, entry_id: int, *, timeout: Optional[float] = None) -> None:
        """As :meth:`deja.Client.delete`, within the write timeout."""
        self._run(timeout or self.write_timeout, lambda c: c.delete(ns, entry_id))

    def flush(self, ns: str, *, timeout: Optional[float] = None) -> int:
        """As :meth:`deja.Client.flush`, within the write timeout."""
        return self._run(timeout or self.write_timeout, lambda c: c.flush(ns))

    def stats(self, ns: Optional[str] = None, *, timeout: Optional[float] = None) -> Dict[str, int]:
        """As :meth:`deja.Client.stats`, within the write timeout."""
        return self._run(timeout or self.write_timeout, lambda c: c.stats(ns))

    def ns_create(self, ns: str, config: NamespaceConfig, *,
                  timeout: Optional[float] = None) -> None:
        """As :meth:`deja.Client.ns_create`, within the write timeout."""
        self._run(timeout or self.write_timeout, lambda c: c.ns_create(ns, config))

    def ns_list(self, *, timeout: Optional[float] = None) -> List[str]:
        """As :meth:`deja.Client.ns_list`, within the write timeout."""
        return self._run(timeout or self.write_timeout, lambda c: c.ns_list())

    def ns_info(self, ns: str, *, timeout: Optional[float] = None) -> NamespaceInfo:
        """As :meth:`deja.Client.ns_info`, within the write timeout."""
        return self._run(timeout or self.write_timeout, lambda c: c.ns_info(ns))

    def ns_drop(self, ns: str, *, timeout: Optional[float] = None) -> int:
        """As :meth:`deja.Client.ns_drop`, within the write timeout."""
        return self._run(timeout or self.write_timeout, lambda c: c.ns_drop(ns))

    def lookup_ex(self, ns: str, vector: Vector, *, k: int = 1,
                  threshold: float = DEFAULT_THRESHOLD, ef: int = 0,
                  prompt: Optional[Text] = None, want_prompt: bool = False,
                  lease: bool = False, wait: float = 0.0, lease_time: float = 0.0,
                  want_shadow: bool = False,
                  timeout: Optional[float] = None) -> LookupExResult:
        """As :meth:`deja.Client.lookup_ex`, within the lookup timeout plus
        ``wait`` (waiting for a free connection stays within the lookup
        timeout). Never raises: any error gives outcome ``MISS`` with
        ``error`` set (also :class:`deja.UnknownOp` from a version-1 server)."""
        def op(c: Client) -> LookupExResult:
            if lease and c._deadline is not None:
                c._deadline += wait
            return c.lookup_ex(ns, vector, k=k, threshold=threshold, ef=ef, prompt=prompt,
                               want_prompt=want_prompt, lease=lease, wait=wait,
                               lease_time=lease_time, want_shadow=want_shadow)
        try:
            return self._run(timeout or self.lookup_timeout, op)
        except Error as e:
            return LookupExResult(error=e)

    def store_ex(self, ns: str, vector: Vector, response: Text, *, lease_id: int = 0,
                 prompt: Optional[Text] = None, ttl: int = 0, input_tokens: int = 0,
                 output_tokens: int = 0, cost_micro_usd: int = 0,
                 completion: Completion = Completion.OK,
                 timeout: Optional[float] = None) -> int:
        """As :meth:`deja.Client.store_ex`, within the write timeout."""
        return self._run(timeout or self.write_timeout,
                         lambda c: c.store_ex(ns, vector, response, lease_id=lease_id,
                                              prompt=prompt, ttl=ttl,
                                              input_tokens=input_tokens,
                                              output_tokens=output_tokens,
                                              cost_micro_usd=cost_micro_usd,
                                              completion=completion))

    def lease_release(self, ns: str, lease_id: int, *, timeout: Optional[float] = None) -> None:
        """As :meth:`deja.Client.lease_release`, within the write timeout."""
        self._run(timeout or self.write_timeout, lambda c: c.lease_release(ns, lease_id))

    def ns_policy(self, ns: str, *, mode: Optional[PolicyMode] = None,
                  gray_band: Optional[float] = None,
                  timeout: Optional[float] = None) -> NsPolicy:
        """As :meth:`deja.Client.ns_policy`, within the write timeout."""
        return self._run(timeout or self.write_timeout,
                         lambda c: c.ns_policy(ns, mode=mode, gray_band=gray_band))

    def lookup_many(self, requests: Sequence[LookupRequest], *,
                    timeout: Optional[float] = None) -> List[LookupResult]:
        """Pipelined lookups on one connection within one lookup timeout for
        the whole batch (raise ``timeout`` for large batches). Never raises:
        each result carries its own ``error``, as :meth:`lookup` would."""
        requests = list(requests)
        if not requests:
            return []
        try:
            return self._run(timeout or self.lookup_timeout,
                             lambda c: c._lookup_many(requests), judge=lambda r: r[1])[0]
        except Error as e:
            return [LookupResult(error=e) for _ in requests]

    def store_many(self, requests: Sequence[StoreRequest], *,
                   timeout: Optional[float] = None) -> List[Union[int, Error]]:
        """Pipelined stores on one connection within one write timeout; per
        request, the entry id or the :class:`deja.Error` it failed with (also
        when the breaker refused the whole batch)."""
        requests = list(requests)
        if not requests:
            return []
        try:
            return self._run(timeout or self.write_timeout,
                             lambda c: c._store_many(requests), judge=lambda r: r[1])[0]
        except Error as e:
            return [e for _ in requests]

    # ---- the cache loop -------------------------------------------------------------

    def get_or_fetch(self, ns: str, vector: Vector, fetch: Callable[[], Any], *,
                     prompt: Optional[Text] = None, threshold: float = DEFAULT_THRESHOLD,
                     ttl: int = 0, leases: Optional[bool] = None,
                     lease_wait: Optional[float] = None) -> LookupResult:
        """Looks up the best entry (k = 1), sending ``prompt`` along for the
        server's exact tier; on a miss -- a real one or one caused by an error,
        such as an open breaker -- calls ``fetch()`` (your LLM call) and returns
        its answer, storing it (with the prompt and the answer's token/cost
        metadata) when its completion is OK and the lookup was a real miss.

        **Leases** (a server speaking protocol version 2, unless ``leases``
        is False): the lookup is a LOOKUP_EX that, on a miss, either makes
        this caller the one that fetches (a lease: its answer is stored with
        STORE_EX, which hands it to everyone waiting) or waits up to
        ``lease_wait`` seconds (default: the pool's) for another caller
        fetching a similar question, and returns that answer with
        ``coalesced`` set (``fetch`` is not called). A waiter whose wait ends
        first gets a lease of its own and fetches. If ``fetch`` raises, or
        returns a completion other than OK, the lease is released
        (LEASE_RELEASE) so that a waiter fetches instead. The call takes at
        most the lookup timeout plus ``lease_wait``, plus fetch and store.
        Against a version-1 server it is the plain lookup, as before.

        ``fetch`` takes no arguments and returns ``str``, ``bytes`` or a
        :class:`deja.Answer` (with completion, tokens, cost, ttl). Its
        exceptions propagate. The result has one hit: the cached one, the
        one another caller fetched (``coalesced``), or the fetched answer
        (``fetched``; ``stored`` and ``hits[0].id`` once stored); ``error``
        is the error of the lookup or store that failed on the way (the
        answer is good anyway).

        Raises:
            InvalidArgument: fetch returned something else, or a bad ``lease_wait``.
        """
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
                cached, lease_id = self._lookup_or_lease(ns, vec, threshold, prompt, wait)
            else:
                cached = self.lookup(ns, vec, threshold=threshold, prompt=prompt)
            lookup_err = cached.error
        if cached.hits:
            return cached
        if lease_id:
            return self._fetch_for_lease(ns, vec, fetch, prompt, ttl, lease_id)
        answer = _fetch.as_answer(fetch())
        entry_id, stored, err = 0, False, lookup_err
        if vec is not None and _fetch.should_store(answer, lookup_err):
            try:
                entry_id = self.store(ns, vec, answer.response, prompt=prompt,
                                      ttl=answer.ttl or ttl, input_tokens=answer.input_tokens,
                                      output_tokens=answer.output_tokens,
                                      cost_micro_usd=answer.cost_micro_usd)
                stored = True
            except Error as e:
                err = e
        return _fetch.fetched_result(answer, prompt, entry_id, stored, err)

    def _lookup_or_lease(self, ns: str, vec: object, threshold: float,
                         prompt: Optional[Text], wait: float) -> Tuple[LookupResult, int]:
        """get_or_fetch's lookup with leases: LOOKUP_EX (lease, wait) on a
        version-2 connection, the plain LOOKUP on a version-1 one. Returns
        the result and the lease this caller holds (0 for none); never raises."""
        def op(c: Client) -> Tuple[LookupResult, int]:
            if c.protocol_version < 2:
                return c.lookup(ns, vec, threshold=threshold, prompt=prompt), 0
            if c._deadline is not None:
                c._deadline += wait  # the lookup's own timeout, then the wait
            r = c.lookup_ex(ns, vec, threshold=threshold, prompt=prompt, lease=True,
                            wait=wait, lease_time=self.lease_time)
            return _fetch.from_lookup_ex(r), r.lease_id if r.outcome == Outcome.LEASE else 0
        try:
            return self._run(self.lookup_timeout, op)
        except Error as e:
            return LookupResult(error=e), 0

    def _fetch_for_lease(self, ns: str, vec: object, fetch: Callable[[], Any],
                         prompt: Optional[Text], ttl: int, lease_id: int) -> LookupResult:
        """The leaseholder's part: fetch, then STORE_EX with the lease (which
        answers the waiters), or release the lease when there is nothing to
        store, so that a waiter fetches instead."""
        try:
            answer = _fetch.as_answer(fetch())
        except BaseException:
            self._give_back(ns, lease_id)
            raise
        if answer.completion != Completion.OK:
            # Released rather than sent with its completion: a namespace that
            # allows non-OK answers would cache it, which get_or_fetch never does.
            self._give_back(ns, lease_id)
            return _fetch.fetched_result(answer, prompt, 0, False, None)
        entry_id, stored, err = 0, False, None
        try:
            entry_id = self.store_ex(ns, vec, answer.response, lease_id=lease_id, prompt=prompt,
                                     ttl=answer.ttl or ttl, input_tokens=answer.input_tokens,
                                     output_tokens=answer.output_tokens,
                                     cost_micro_usd=answer.cost_micro_usd)
            stored = True
        except Error as e:
            err = e  # a store the server refused ended the lease too
        return _fetch.fetched_result(answer, prompt, entry_id, stored, err)

    def _give_back(self, ns: str, lease_id: int) -> None:
        """Releases a lease, best effort: if this fails the lease expires."""
        try:
            self.lease_release(ns, lease_id)
        except Error:
            pass

    def semantic(self, ns: str, embed: Callable[[str], Vector], *,
                 threshold: float = DEFAULT_THRESHOLD, ttl: int = 0,
                 decode: bool = True) -> Callable[[Callable[[str], Any]], Callable[[str], Any]]:
        """Decorator form of :meth:`get_or_fetch` over a function ``prompt -> answer``::

            @pool.semantic(ns="gpt4o:support-v3", embed=embed)
            def ask(prompt: str) -> str:
                return call_the_llm(prompt)      # str, bytes or deja.Answer

        The wrapped function embeds the prompt, answers from the cache when it
        can and calls the function otherwise; it returns the answer as ``str``
        (``bytes`` with ``decode=False``). ``wrapped.get_or_fetch(prompt)``
        returns the full :class:`deja.LookupResult` instead.
        """
        def wrap(fn: Callable[[str], Any]) -> Callable[[str], Any]:
            def result(prompt: str) -> LookupResult:
                return self.get_or_fetch(ns, embed(prompt), lambda: fn(prompt), prompt=prompt,
                                         threshold=threshold, ttl=ttl)

            @functools.wraps(fn)
            def wrapper(prompt: str) -> Any:
                return _fetch.decode_response(result(prompt), decode)

            wrapper.get_or_fetch = result  # type: ignore[attr-defined]
            return wrapper
        return wrap
