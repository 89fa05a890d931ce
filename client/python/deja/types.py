"""Small frozen dataclasses and enums for requests and results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
import types as _types
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

if TYPE_CHECKING:
    from .errors import Error

__all__ = [
    "DEFAULT_THRESHOLD", "Completion", "IndexKind", "Quant", "TtlMode", "NamespaceFlag",
    "BreakerState", "Hit", "LookupResult", "LookupRequest", "StoreRequest", "Answer",
    "NamespaceConfig", "NamespaceInfo", "ServerInfo", "PoolStatus", "Vector",
    "Text", "Outcome", "PolicyMode", "NsPolicy", "LookupExResult", "SimilarityHistogram",
    "SIMILARITY_BUCKETS", "similarity_histogram",
]

#: The similarity threshold of lookups that give none (the same as deja-cli's).
DEFAULT_THRESHOLD = 0.85

#: A vector: a sequence of floats, an ``array('f')``, ``bytes``/``memoryview``
#: of little-endian float32, or anything with the buffer protocol (numpy).
Vector = Any

#: Text fields (prompts, responses): ``str`` is sent as UTF-8, bytes as they are.
Text = Union[str, bytes, bytearray, memoryview]


class Completion(enum.IntEnum):
    """How the model call that produced a response ended (STORE ``completion``).
    Only ``OK`` answers are cached; the server answers the others REJECTED."""
    OK = 0
    ERROR = 1
    TRUNCATED = 2
    FILTERED = 3


class IndexKind(enum.IntEnum):
    """A namespace's index (``index_kind``); ``DEFAULT`` is the server's ``--index``."""
    DEFAULT = 0
    FLAT = 1
    HNSW = 2
    FAISS = 3


class Quant(enum.IntEnum):
    """Vector codes for HNSW traversal."""
    F32 = 0
    INT8 = 1


class TtlMode(enum.IntEnum):
    """``ABSOLUTE``: an entry lives its TTL from its STORE; ``SLIDING``: a hit
    extends it by its TTL (up to ``max_age_s``)."""
    ABSOLUTE = 0
    SLIDING = 1


class NamespaceFlag(enum.IntFlag):
    """Bits of a namespace configuration's ``flags`` field (PROTOCOL.md 5.9)."""
    NONE = 0
    #: Cache answers of any completion, not only OK.
    ALLOW_NON_OK = 0x01
    #: Never merge near-identical STOREs (write-time dedup off).
    NO_DEDUP = 0x02
    #: ``quant``, ``min_threshold``, ``dedup`` and ``default_ttl_s`` are literal
    #: values, 0 included, instead of "0 = the server's default". Servers that
    #: know it return the resolved configuration with this bit set in NS_INFO.
    EXPLICIT = 0x04


class BreakerState(enum.IntEnum):
    """A pool's circuit breaker: ``CLOSED`` (calls go to the server), ``OPEN``
    (calls fail fast until the cool-down ends), ``HALF_OPEN`` (one probe decides)."""
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(frozen=True)
class Hit:
    """One cached entry returned by a lookup (or a fetched answer).

    Attributes:
        id: the entry id (0 for a fetched answer that was not stored).
        similarity: cosine similarity to the query vector.
        response: the cached response bytes.
        prompt: the stored prompt when ``want_prompt`` was asked and the entry
            has one (for a fetched answer: the prompt given), else ``None``.
        exact: the hit came from the server's exact (prompt) tier.
        borderline: the hit is in the namespace's gray band (protocol
            version 2, PROTOCOL.md 5.16): served, but the application may
            want to verify it before use. A LOOKUP reply flags only its
            first hit; LOOKUP_EX flags each hit.
    """
    id: int
    similarity: float
    response: bytes
    prompt: Optional[bytes] = None
    exact: bool = False
    borderline: bool = False

    @property
    def text(self) -> str:
        """The response decoded as UTF-8 (invalid bytes become U+FFFD)."""
        return self.response.decode("utf-8", "replace")


@dataclass(frozen=True)
class LookupResult:
    """What a lookup hands back: the hits, best first (empty on a miss).

    A pool's lookup never raises because deja is down, slow or restarting: it
    returns a miss with ``error`` set, so ``if result: use(result.hit) else:
    ask the LLM`` is always right. ``get_or_fetch`` also sets ``fetched``
    (``hits[0]`` is the fetched answer) and ``stored``.

    Attributes:
        hits: the hits, most similar first.
        error: ``None``, or the error that turned this lookup into a miss (pool
            and batch lookups), or that kept a fetched answer out of the cache.
        fetched: ``hits[0]`` came from the fetch function, not the cache.
        stored: the fetched answer was stored; ``hits[0].id`` is its id.
        exact: ``hits[0]`` came from the server's exact (prompt) tier.
        borderline: ``hits[0]`` is in the namespace's gray band (reply flag
            BORDERLINE, protocol version 2): verify it before use if it matters.
        coalesced: (``get_or_fetch`` with leases) ``hits[0]`` is the answer
            another caller fetched and stored while this one waited on its
            lease: this caller did not call its fetch function.
    """
    hits: Tuple[Hit, ...] = ()
    error: Optional["Error"] = None
    fetched: bool = False
    stored: bool = False
    exact: bool = False
    borderline: bool = False
    coalesced: bool = False

    def __bool__(self) -> bool:
        return bool(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def hit(self) -> Optional[Hit]:
        """The best hit, or ``None`` on a miss."""
        return self.hits[0] if self.hits else None

    @property
    def response(self) -> Optional[bytes]:
        """The best hit's response bytes, or ``None`` on a miss."""
        return self.hits[0].response if self.hits else None


@dataclass(frozen=True)
class LookupRequest:
    """One lookup of a ``lookup_many`` batch (the arguments of ``lookup``)."""
    ns: str
    vector: Vector
    k: int = 1
    threshold: float = DEFAULT_THRESHOLD
    ef: int = 0
    prompt: Optional[Text] = None
    want_prompt: bool = False


@dataclass(frozen=True)
class StoreRequest:
    """One store of a ``store_many`` batch (the arguments of ``store``)."""
    ns: str
    vector: Vector
    response: Text
    prompt: Optional[Text] = None
    ttl: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro_usd: int = 0
    completion: Completion = Completion.OK


@dataclass(frozen=True)
class Answer:
    """What a fetch function (the LLM call of ``get_or_fetch``) may return
    instead of a plain ``str``/``bytes``: the answer with how the call ended
    and the cost metadata stored with it (what a later hit saves).

    Attributes:
        response: the answer (``str`` is stored as UTF-8).
        completion: only ``Completion.OK`` answers are stored.
        input_tokens, output_tokens, cost_micro_usd: stored with the entry.
        ttl: seconds to live; 0 = the ``ttl`` given to ``get_or_fetch``.
    """
    response: Text
    completion: Completion = Completion.OK
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro_usd: int = 0
    ttl: int = 0


@dataclass(frozen=True)
class NamespaceConfig:
    """A namespace's configuration (PROTOCOL.md 5.9). Every field but ``dim``
    may stay 0, meaning the server's default."""
    dim: int
    index_kind: IndexKind = IndexKind.DEFAULT
    quant: Quant = Quant.F32
    hnsw_m: int = 0
    hnsw_ef_construction: int = 0
    hnsw_ef_search: int = 0
    ttl_mode: TtlMode = TtlMode.ABSOLUTE
    flags: NamespaceFlag = NamespaceFlag.NONE
    min_threshold: float = 0.0
    dedup: float = 0.0
    default_ttl_s: int = 0
    max_age_s: int = 0
    max_bytes: int = 0
    max_entries: int = 0
    faiss_factory: str = ""


@dataclass(frozen=True)
class NamespaceInfo:
    """A namespace's configuration as created, and its counters (``entries``,
    ``memory_bytes``, the effective ``min_threshold_milli``, ...)."""
    config: NamespaceConfig
    stats: Dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerInfo:
    """What the server said in its HELLO reply."""
    version: int
    max_dim: int
    max_frame: int
    auth_required: bool
    name: str
    server_flags: int = 0


@dataclass(frozen=True)
class PoolStatus:
    """A snapshot of a pool's health; the counters only grow."""
    breaker: BreakerState
    consecutive_failures: int
    open_remaining: float
    connections: int
    idle: int
    calls: int
    failures: int
    fast_fails: int
    trips: int
    connects: int
    connect_failures: int
    timeouts: int


# ---- protocol version 2 ----------------------------------------------------------

class Outcome(enum.IntEnum):
    """How the server answered a LOOKUP_EX (PROTOCOL.md 5.11)."""
    #: Nothing to serve and no lease: go to the model (no lease asked, the
    #: namespace is in shadow mode, or the server's lease bounds are reached).
    MISS = 0
    #: Hits from the cache, as LOOKUP would have answered.
    HIT = 1
    #: Nothing to serve; this caller holds ``lease_id``: it should fetch the
    #: answer and ``store_ex`` it with the lease id, or ``lease_release`` it.
    LEASE = 2
    #: This request waited on another caller's lease and is answered with
    #: the entry that caller stored (one hit).
    COALESCED = 3


class PolicyMode(enum.IntEnum):
    """How a namespace serves (NS_POLICY ``mode``): ``SERVE`` normally, or
    ``SHADOW``: every lookup is computed and answered as a miss."""
    SERVE = 0
    SHADOW = 1


@dataclass(frozen=True)
class NsPolicy:
    """A namespace's policy (NS_POLICY, PROTOCOL.md 5.14).

    Attributes:
        mode: ``PolicyMode.SERVE`` or ``PolicyMode.SHADOW``.
        gray_band: hits of a vector search below this similarity are served
            flagged ``borderline``; 0.0 = no band.
    """
    mode: PolicyMode = PolicyMode.SERVE
    gray_band: float = 0.0


@dataclass(frozen=True)
class LookupExResult:
    """What ``lookup_ex`` hands back (LOOKUP_EX, PROTOCOL.md 5.11).

    True when it has hits to serve (``HIT`` or ``COALESCED``).

    Attributes:
        outcome: how the server answered (:class:`Outcome`).
        lease_id: outcome ``LEASE``: the lease this caller now holds; else 0.
        hits: the hits served, best first (``HIT``, ``COALESCED``).
        shadow_hits: in a namespace in shadow mode, with ``want_shadow``: the
            hits it would have served, best first.
        shadow: the namespace is in shadow mode, so nothing was served.
        exact: ``hits[0]`` came from the exact (prompt) tier.
        borderline: ``hits[0]`` is in the gray band (reply flag BORDERLINE).
        error: ``None``; a pool's ``lookup_ex`` never raises because deja is
            down and returns outcome ``MISS`` with ``error`` set instead.
    """
    outcome: Outcome = Outcome.MISS
    lease_id: int = 0
    hits: Tuple[Hit, ...] = ()
    shadow_hits: Tuple[Hit, ...] = ()
    shadow: bool = False
    exact: bool = False
    borderline: bool = False
    error: Optional["Error"] = None

    def __bool__(self) -> bool:
        return bool(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def hit(self) -> Optional[Hit]:
        """The best hit, or ``None`` when nothing was served."""
        return self.hits[0] if self.hits else None

    @property
    def response(self) -> Optional[bytes]:
        """The best hit's response bytes, or ``None`` when nothing was served."""
        return self.hits[0].response if self.hits else None


#: The buckets of the similarity histogram (PROTOCOL.md 5.17), in order:
#: ``lt50`` (s < 0.50), ``"50"`` .. ``"99"`` (``"NN"``: NN/100 <= s <
#: (NN+1)/100; ``"99"``: s >= 0.99), and ``none`` (misses in a namespace with
#: no live entry to compare with).
SIMILARITY_BUCKETS: Tuple[str, ...] = ("lt50", *(str(i) for i in range(50, 100)), "none")


@dataclass(frozen=True)
class SimilarityHistogram:
    """The similarity of each lookup's best candidate, split by how the
    index answered (STATS / NS_INFO keys ``sim_hit_*`` and ``sim_miss_*``).

    Attributes:
        hit: bucket -> count for lookups that found a hit (or would have, in
            shadow mode); every bucket of :data:`SIMILARITY_BUCKETS` present.
        miss: the same for misses.
        hit_sum, miss_sum: the sums of the similarities counted (every bucket
            but ``none``; keys ``sim_hit_sum_micro``/``sim_miss_sum_micro``
            divided by 10^6), for a mean; 0.0 from a server without them.
    """
    hit: Mapping[str, int]
    miss: Mapping[str, int]
    hit_sum: float = 0.0
    miss_sum: float = 0.0

    @property
    def hits(self) -> int:
        """Lookups counted as hits."""
        return sum(self.hit.values())

    @property
    def misses(self) -> int:
        """Lookups counted as misses."""
        return sum(self.miss.values())


def similarity_histogram(counters: Mapping[str, int]) -> SimilarityHistogram:
    """The similarity histogram in a ``stats()`` dict or ``NamespaceInfo.stats``:
    every bucket of :data:`SIMILARITY_BUCKETS` for both outcomes, an absent
    key counting 0 (the server sends only buckets that are not 0). Keys that
    are not ``sim_hit_*``/``sim_miss_*`` buckets are ignored."""
    def side(outcome: str) -> Mapping[str, int]:
        prefix = f"sim_{outcome}_"
        return _types.MappingProxyType({b: int(counters.get(prefix + b, 0))
                                        for b in SIMILARITY_BUCKETS})
    return SimilarityHistogram(hit=side("hit"), miss=side("miss"),
                               hit_sum=counters.get("sim_hit_sum_micro", 0) / 1e6,
                               miss_sum=counters.get("sim_miss_sum_micro", 0) / 1e6)
