"""The circuit breaker shared by deja.Pool and deja.aio.Pool, with libdeja's
semantics (docs/CLIENT.md "Failing open").

A count of consecutive failed calls with three states: closed (calls go
through), open (calls fail at once until the cool-down ends), half-open
(one probe call goes through; its outcome closes or re-opens). Open ->
half-open happens lazily, at the first call after the cool-down, so nothing
runs in the background. The caller serialises access (the sync pool holds
its lock; the asyncio pool runs on one loop)."""

from __future__ import annotations

import time
from typing import Callable, Optional

from .errors import (Busy, ConnectionClosed, ConnectFailed, Error, InvalidArgument,
                     NetworkError, ProtocolError, ServerError, ShuttingDown, Timeout,
                     TooLarge, Unavailable)
from .types import BreakerState, PoolStatus

NEUTRAL, SUCCESS, FAILURE = 0, 1, 2

_FAILURES = (Timeout, ConnectFailed, ConnectionClosed, NetworkError, ProtocolError, Busy,
             ShuttingDown)


def classify_call(err: Optional[BaseException]) -> int:
    """Failures say the server is unreachable, unhealthy or not speaking our
    protocol. Every other reply from the server proves it alive, even an
    error about the request; errors found before anything was sent prove
    nothing either way."""
    if err is None:
        return SUCCESS
    if isinstance(err, _FAILURES):
        return FAILURE
    if isinstance(err, TooLarge):
        return NEUTRAL
    if isinstance(err, ServerError):
        return SUCCESS
    return NEUTRAL


def classify_connect(err: BaseException) -> int:
    """A connection that could not be set up is a failure whatever the reason,
    also a refused token or protocol version, which every later connect would
    meet again."""
    return NEUTRAL if isinstance(err, InvalidArgument) or not isinstance(err, Error) else FAILURE


class Breaker:
    """Breaker state and the pool's counters."""

    def __init__(self, failures: int, cooldown: float,
                 clock: Optional[Callable[[], float]]) -> None:
        self.failures_to_open = failures
        self.cooldown = cooldown
        self.clock = clock or time.monotonic
        self.state = BreakerState.CLOSED
        self.probing = False
        self.consecutive = 0
        self.opened_at = 0.0
        self.calls = self.failures = self.fast_fails = self.trips = 0
        self.connects = self.connect_failures = self.timeouts = 0

    def admit(self) -> bool:
        """At the start of a call: returns whether it is the half-open probe.

        Raises:
            Unavailable: the breaker is open, or another call is probing.
        """
        self.calls += 1
        if self.state == BreakerState.OPEN:
            left = self.opened_at + self.cooldown - self.clock()
            if left > 0:
                self.fast_fails += 1
                raise Unavailable(f"circuit breaker open after {self.consecutive} consecutive "
                                  f"failures ({left * 1000:.0f} ms of cool-down left)")
            self.state = BreakerState.HALF_OPEN
            self.probing = False
        if self.state == BreakerState.HALF_OPEN:
            if self.probing:
                self.fast_fails += 1
                raise Unavailable("circuit breaker half-open: another call is probing")
            self.probing = True
            return True
        return False

    def record(self, probe: bool, outcome: int, err: Optional[BaseException]) -> bool:
        """Applies a finished call's outcome; returns True when this opened the breaker."""
        tripped = False
        if isinstance(err, Timeout):
            self.timeouts += 1
        if outcome == SUCCESS:
            # Once the breaker has opened, only the probe may close it: a call
            # admitted before the trip that happens to succeed says little
            # about a server that just failed N times, and letting it close
            # the breaker would make a flapping server skip the cool-down.
            if self.state == BreakerState.CLOSED or probe:
                self.consecutive = 0
                self.state = BreakerState.CLOSED
        elif outcome == FAILURE:
            self.failures += 1
            self.consecutive += 1
            if ((self.state == BreakerState.HALF_OPEN and probe) or
                    (self.state == BreakerState.CLOSED
                     and self.consecutive >= self.failures_to_open)):
                self.state = BreakerState.OPEN
                self.opened_at = self.clock()
                self.trips += 1
                tripped = True
        if probe:
            self.probing = False
        return tripped

    def status(self, connections: int, idle: int) -> PoolStatus:
        """A snapshot for Pool.status()."""
        state = self.state
        remaining = 0.0
        if state == BreakerState.OPEN:
            left = self.opened_at + self.cooldown - self.clock()
            if left > 0:
                remaining = left
            else:
                state = BreakerState.HALF_OPEN  # the next call probes
        return PoolStatus(breaker=state, consecutive_failures=self.consecutive,
                          open_remaining=remaining, connections=connections, idle=idle,
                          calls=self.calls, failures=self.failures, fast_fails=self.fast_fails,
                          trips=self.trips, connects=self.connects,
                          connect_failures=self.connect_failures, timeouts=self.timeouts)
