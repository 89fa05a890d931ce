"""deja: the Python client of the deja semantic cache server.

Standard library only. :class:`Client` is one connection with every op of
the protocol; :class:`Pool` is what applications use: thread-safe, lazy,
bounded by per-call deadlines and failing open behind a circuit breaker
(a lookup never raises because deja is down: it returns a miss whose
``error`` says why). :mod:`deja.aio` mirrors both for asyncio.

    pool = deja.Pool("deja://127.0.0.1:7447")
    r = pool.get_or_fetch("gpt4o:support-v3", embedding, lambda: ask_llm(prompt),
                          prompt=prompt)
    print(r.hit.text)
"""

from .client import CLIENT_NAME, Client
from .errors import (AuthError, AuthFailed, AuthRequired, BadFrame, BadNamespace, BadRequest,
                     BadVector, Busy, ConnectFailed, ConnectionClosed, DimMismatch, Error,
                     Exists, InternalError, InvalidArgument, InvalidRequest, NetworkError,
                     NotFound, ProtocolError, Refused, Rejected, ServerError, ServerFault,
                     ShuttingDown, StorageFull, Timeout, Forbidden, TooLarge, TransportError,
                     Unavailable, UnknownOp, VersionMismatch, Quarantined)
from ._url import Address, parse_url
from .pool import Pool
from .types import (DEFAULT_THRESHOLD, SIMILARITY_BUCKETS, Answer, BreakerState, Completion,
                    Hit, IndexKind, LookupExResult, LookupRequest, LookupResult,
                    NamespaceConfig, NamespaceFlag, NamespaceInfo, NsPolicy, Outcome,
                    PolicyMode, PoolStatus, Quant, ServerInfo, SimilarityHistogram,
                    StoreRequest, TtlMode, similarity_histogram)

__version__ = "0.1.0"

__all__ = [
    "Client", "Pool", "CLIENT_NAME", "Address", "parse_url", "DEFAULT_THRESHOLD",
    "Answer", "BreakerState", "Completion", "Hit", "IndexKind", "LookupRequest",
    "LookupResult", "NamespaceConfig", "NamespaceFlag", "NamespaceInfo", "PoolStatus",
    "Quant", "ServerInfo", "StoreRequest", "TtlMode", "LookupExResult", "NsPolicy",
    "Outcome", "PolicyMode", "SimilarityHistogram", "SIMILARITY_BUCKETS",
    "similarity_histogram",
    "Error", "ServerError", "InvalidRequest", "AuthError", "Refused", "ServerFault",
    "TransportError", "InvalidArgument", "NotFound", "BadRequest", "BadFrame",
    "VersionMismatch", "UnknownOp", "TooLarge", "AuthRequired", "AuthFailed", "BadVector",
    "DimMismatch", "BadNamespace", "Rejected", "InternalError", "Busy", "StorageFull",
    "ShuttingDown", "Exists", "Timeout", "ConnectFailed", "ConnectionClosed",
    "ProtocolError", "NetworkError", "Unavailable", "Forbidden", "Quarantined",
]
