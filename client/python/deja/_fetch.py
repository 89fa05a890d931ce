"""Pieces of get_or_fetch shared by the sync and asyncio pools."""

from __future__ import annotations

from typing import Optional

from . import _wire as w
from .errors import Error, InvalidArgument
from .types import Answer, Completion, Hit, LookupExResult, LookupResult, Outcome, Text

#: A pool's default ``lease_wait``: seconds a get_or_fetch waits for another
#: caller's fetch of a similar question before fetching itself.
DEFAULT_LEASE_WAIT = 10.0


def as_answer(value: object) -> Answer:
    """What the fetch function returned, as an Answer.

    Raises:
        InvalidArgument: it returned neither str, bytes nor deja.Answer.
    """
    if isinstance(value, Answer):
        return value
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return Answer(value)
    raise InvalidArgument(f"the fetch function returned {type(value).__name__}, "
                          "not str, bytes or deja.Answer")


def should_store(answer: Answer, lookup_error: Optional[Error]) -> bool:
    """Only a clean completion is cached (the server would refuse the rest
    with REJECTED), and not after a failed lookup: the server is then down,
    overloaded or refusing the request, and a store would only make the
    caller wait up to the write timeout."""
    return answer.completion == Completion.OK and lookup_error is None


def fetched_result(answer: Answer, prompt: Optional[Text], entry_id: int, stored: bool,
                   error: Optional[Error]) -> LookupResult:
    """The result of get_or_fetch for a fetched answer."""
    p = w.text_bytes(prompt, "prompt") or None
    hit = Hit(id=entry_id, similarity=1.0, response=w.text_bytes(answer.response, "response"),
              prompt=p)
    return LookupResult(hits=(hit,), error=error, fetched=True, stored=stored)


def decode_response(result: LookupResult, decode: bool) -> object:
    """What a @semantic-wrapped function returns: the answer as str or bytes."""
    resp = result.response or b""
    return resp.decode("utf-8", "replace") if decode else resp


def from_lookup_ex(r: LookupExResult) -> LookupResult:
    """A LOOKUP_EX answer as get_or_fetch's result: the hits (HIT), or the
    entry another caller stored while this one waited (COALESCED)."""
    return LookupResult(hits=r.hits, exact=r.exact, borderline=r.borderline,
                        coalesced=r.outcome == Outcome.COALESCED)


def check_lease_wait(value: float) -> float:
    """Validates a ``lease_wait`` (seconds, >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value < 4294967:
        raise InvalidArgument(f"lease_wait must be a number of seconds >= 0, not {value!r}")
    return float(value)
