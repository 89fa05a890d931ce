"""The wire format of docs/PROTOCOL.md: frame headers, request bodies and
reply decoders. Pure functions on bytes, shared by the sync and asyncio
clients; nothing here touches a socket."""

from __future__ import annotations

import math
import struct
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import (BadNamespace, Error, InvalidArgument, ProtocolError,
                     error_for_status)
from .types import (Hit, IndexKind, LookupExResult, NamespaceConfig, NamespaceFlag,
                    NamespaceInfo, NsPolicy, Outcome, PolicyMode, Quant, ServerInfo, Text,
                    TtlMode)

VERSION = 1  # the frame format's version byte, 1 in protocol versions 1 and 2
#: The protocol versions this client speaks (HELLO min_version, max_version).
PROTOCOL_MIN, PROTOCOL_MAX = 1, 2
HEADER = struct.Struct("<HBBHHII")  # magic, version, opcode, flags, status, id, body_len
HEADER_SIZE = 16
MAGIC = 0x4A44  # "DJ" read as a little-endian u16

# The opcodes of proto/deja-ops.h's table, one OP_<NAME> per row;
# tests/test_tables.py fails if the two differ.
OP_HELLO, OP_AUTH, OP_PING = 0x01, 0x02, 0x03
OP_STORE, OP_LOOKUP, OP_DELETE, OP_FLUSH = 0x10, 0x11, 0x12, 0x13
OP_NS_CREATE, OP_NS_LIST, OP_NS_INFO, OP_NS_DROP = 0x14, 0x15, 0x16, 0x17
OP_LOOKUP_EX, OP_STORE_EX, OP_LEASE_RELEASE, OP_NS_POLICY = 0x18, 0x19, 0x1A, 0x1B
OP_STATS = 0x20

FLAG_REPLY = 0x8000
FLAG_WANT_PROMPT = 0x0001
FLAG_EXACT = 0x0002  # LOOKUP reply: hit 0 came from the exact (prompt) tier
FLAG_BORDERLINE = 0x0004  # LOOKUP / LOOKUP_EX reply: hit 0 is in the gray band
LOOKUP_LEASE = 0x0001  # LOOKUP_EX options
LOOKUP_WANT_SHADOW = 0x0002
HIT_EXACT = 0x01  # LOOKUP_EX hit_flags
HIT_BORDERLINE = 0x02
REPLY_SHADOW = 0x01  # LOOKUP_EX reply_flags
SERVER_AUTH_REQUIRED = 0x0001

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_K = 256
MAX_PING = 65536
MAX_NS = 255
# Replies are not bound by the server's request limit (k hits of large
# responses can exceed it); this only stops a corrupt length from making
# the client buffer without bound. The same figure as libdeja's.
MAX_REPLY = 256 * 1024 * 1024

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HELLO_REPLY = struct.Struct("<HHII")
_STORE_FIXED = struct.Struct("<HBBIIIQII")  # dim .. response_len (32 bytes)
_LOOKUP_FIXED = struct.Struct("<HHfHHI")    # dim, k, threshold, ef, reserved, prompt_len
_HIT = struct.Struct("<QfII")
_LOOKUP_EX_FIXED = struct.Struct("<HHfHHIII")  # dim, k, threshold, ef, options, wait, lease, plen
_LOOKUP_EX_HEAD = struct.Struct("<BBQ")        # outcome, reply_flags, lease_id
_HIT_EX = struct.Struct("<QfBBII")             # id, similarity, hit_flags, reserved, p, r
_POLICY_REQ = struct.Struct("<BBHf")           # set, mode, reserved, gray_band
_POLICY_REPLY = struct.Struct("<B3xf")         # mode, reserved, gray_band
_CONFIG = struct.Struct("<HBBHHHBBffIIQQ")  # 44 bytes


def header(opcode: int, request_id: int, body_len: int, flags: int = 0) -> bytes:
    """A request frame header."""
    return HEADER.pack(MAGIC, VERSION, opcode, flags, 0, request_id, body_len)


def text_bytes(t: Optional[Text], what: str) -> bytes:
    """Encodes a text field (str as UTF-8) or refuses a non-text value."""
    if t is None:
        return b""
    if isinstance(t, str):
        return t.encode("utf-8")
    if isinstance(t, (bytes, bytearray, memoryview)):
        return bytes(t)
    raise InvalidArgument(f"{what} must be str or bytes, not {type(t).__name__}")


_ns_cache: Dict[str, bytes] = {}


def ns_field(ns: str, allow_empty: bool = False) -> bytes:
    """``str8 namespace``. Only what the wire cannot carry is refused here
    (a name over 255 bytes, a non-string); the name rules are the server's
    to enforce, so a bad name comes back as BAD_NAMESPACE either way."""
    f = _ns_cache.get(ns) if isinstance(ns, str) else None
    if f is not None:
        return f
    if isinstance(ns, str):
        b = ns.encode("utf-8")
    elif isinstance(ns, (bytes, bytearray)):
        b = bytes(ns)
    else:
        raise InvalidArgument(f"namespace must be str, not {type(ns).__name__}")
    if len(b) > MAX_NS:
        raise BadNamespace(f"namespace of {len(b)} bytes is over {MAX_NS}")
    if not b and not allow_empty:
        raise BadNamespace("namespace is empty")
    f = bytes((len(b),)) + b
    if isinstance(ns, str) and len(_ns_cache) < 1024:
        _ns_cache[ns] = f
    return f


def _u32(v: int, what: str) -> int:
    if not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
        raise InvalidArgument(f"{what} must be an integer in 0..2^32-1, not {v!r}")
    return v


# ---- requests ------------------------------------------------------------------

def hello_body(min_version: int, max_version: int, client_name: str) -> bytes:
    name = client_name.encode("utf-8")[:65535]
    return struct.pack("<HHH", min_version, max_version, len(name)) + name


def auth_body(token: Text) -> bytes:
    t = text_bytes(token, "token")
    if len(t) > 65535:
        raise InvalidArgument("token is over 65535 bytes")
    return _U16.pack(len(t)) + t


def store_parts(ns: str, dim: int, vec: object, response: Text, prompt: Optional[Text],
                ttl: int, input_tokens: int, output_tokens: int, cost_micro_usd: int,
                completion: int) -> List[object]:
    """The body of a STORE as a list of bytes-like parts."""
    resp = text_bytes(response, "response")
    p = text_bytes(prompt, "prompt")
    if not 0 <= int(completion) <= 3:
        raise InvalidArgument(f"completion {completion} is not in 0..3")
    if not isinstance(cost_micro_usd, int) or not 0 <= cost_micro_usd < 1 << 64:
        raise InvalidArgument("cost_micro_usd must be an integer in 0..2^64-1")
    fixed = _STORE_FIXED.pack(dim, int(completion), 0, _u32(ttl, "ttl"),
                              _u32(input_tokens, "input_tokens"),
                              _u32(output_tokens, "output_tokens"), cost_micro_usd,
                              len(p), len(resp))
    return [ns_field(ns), fixed, vec, p, resp]


def lookup_parts(ns: str, dim: int, vec: object, k: int, threshold: float, ef: int,
                 prompt: Optional[Text]) -> List[object]:
    """The body of a LOOKUP as a list of bytes-like parts."""
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidArgument(f"k {k!r} is not in 1..{MAX_K}")
    if not (-1.0 <= threshold <= 1.0):  # also refuses NaN
        raise InvalidArgument(f"threshold {threshold!r} is not in [-1, 1]")
    if not isinstance(ef, int) or not 0 <= ef <= 0xFFFF:
        raise InvalidArgument(f"ef {ef!r} is not in 0..65535")
    p = text_bytes(prompt, "prompt")
    return [ns_field(ns), _LOOKUP_FIXED.pack(dim, k, threshold, ef, 0, len(p)), vec, p]


def _ms(seconds: float, what: str) -> int:
    """Seconds (float) as the whole milliseconds of a u32 field, rounded up so
    that a positive wait never becomes 0 ("never wait")."""
    if not isinstance(seconds, (int, float)) or not 0 <= seconds < 0xFFFFFFFF / 1000:
        raise InvalidArgument(f"{what} must be a number of seconds in [0, 4294967), "
                              f"not {seconds!r}")
    return min(0xFFFFFFFF, math.ceil(seconds * 1000))


def lookup_ex_parts(ns: str, dim: int, vec: object, k: int, threshold: float, ef: int,
                    prompt: Optional[Text], lease: bool, wait: float, lease_time: float,
                    want_shadow: bool) -> List[object]:
    """The body of a LOOKUP_EX as a list of bytes-like parts; ``wait`` and
    ``lease_time`` in seconds, sent as whole milliseconds (rounded up)."""
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidArgument(f"k {k!r} is not in 1..{MAX_K}")
    if not (-1.0 <= threshold <= 1.0):  # also refuses NaN
        raise InvalidArgument(f"threshold {threshold!r} is not in [-1, 1]")
    if not isinstance(ef, int) or not 0 <= ef <= 0xFFFF:
        raise InvalidArgument(f"ef {ef!r} is not in 0..65535")
    wait_ms = _ms(wait, "wait")
    lease_ms = _ms(lease_time, "lease_time")
    if not lease and (wait_ms or lease_ms):
        raise InvalidArgument("wait and lease_time need lease=True")
    options = (LOOKUP_LEASE if lease else 0) | (LOOKUP_WANT_SHADOW if want_shadow else 0)
    p = text_bytes(prompt, "prompt")
    return [ns_field(ns), _LOOKUP_EX_FIXED.pack(dim, k, threshold, ef, options, wait_ms,
                                                lease_ms, len(p)), vec, p]


def lease_id_bytes(lease_id: int) -> bytes:
    """``u64 lease_id`` (0 = none, for STORE_EX)."""
    if not isinstance(lease_id, int) or not 0 <= lease_id < 1 << 64:
        raise InvalidArgument(f"lease id {lease_id!r} is not a u64")
    return _U64.pack(lease_id)


def lease_release_body(ns: str, lease_id: int) -> bytes:
    """The body of a LEASE_RELEASE: ``str8 namespace``, ``u64 lease_id``."""
    if not isinstance(lease_id, int) or not 0 < lease_id < 1 << 64:
        raise InvalidArgument(f"lease id {lease_id!r} is not a non-zero u64")
    return ns_field(ns) + _U64.pack(lease_id)


def ns_policy_body(ns: str, mode: Optional[int], gray_band: Optional[float],
                   current: Optional[NsPolicy] = None) -> bytes:
    """The body of a NS_POLICY: a read when ``mode`` and ``gray_band`` are
    both None, else a set of both fields (``current`` supplies the one not
    given; the caller reads it first)."""
    if mode is None and gray_band is None:
        return ns_field(ns) + _POLICY_REQ.pack(0, 0, 0, 0.0)
    if mode is None or gray_band is None:
        if current is None:
            raise InvalidArgument("setting one policy field needs the current policy")
        mode = current.mode if mode is None else mode
        gray_band = current.gray_band if gray_band is None else gray_band
    if isinstance(mode, bool) or mode not in (PolicyMode.SERVE, PolicyMode.SHADOW):
        raise InvalidArgument(f"mode {mode!r} is not deja.PolicyMode.SERVE or SHADOW")
    if not isinstance(gray_band, (int, float)) or isinstance(gray_band, bool) \
            or not (gray_band == 0 or 0 < gray_band <= 1):  # also refuses NaN
        raise InvalidArgument(f"gray_band {gray_band!r} is neither 0 nor in (0, 1]")
    return ns_field(ns) + _POLICY_REQ.pack(1, int(mode), 0, float(gray_band))


def delete_body(ns: str, entry_id: int) -> bytes:
    if not isinstance(entry_id, int) or not 0 <= entry_id < 1 << 64:
        raise InvalidArgument(f"entry id {entry_id!r} is not a u64")
    return ns_field(ns) + _U64.pack(entry_id)


def config_bytes(cfg: NamespaceConfig) -> bytes:
    if not isinstance(cfg, NamespaceConfig):
        raise InvalidArgument("config must be a deja.NamespaceConfig")
    if not 1 <= cfg.dim <= 4096:
        raise InvalidArgument(f"dim {cfg.dim} is not in 1..4096")
    factory = cfg.faiss_factory.encode("utf-8")
    if len(factory) > 255:
        raise InvalidArgument("faiss_factory is over 255 bytes")
    try:
        fixed = _CONFIG.pack(cfg.dim, int(cfg.index_kind), int(cfg.quant), cfg.hnsw_m,
                             cfg.hnsw_ef_construction, cfg.hnsw_ef_search,
                             int(cfg.ttl_mode), int(cfg.flags), cfg.min_threshold,
                             cfg.dedup, cfg.default_ttl_s, cfg.max_age_s, cfg.max_bytes,
                             cfg.max_entries)
    except struct.error as e:
        raise InvalidArgument(f"namespace configuration field out of range: {e}") from None
    return fixed + bytes((len(factory),)) + factory


# ---- replies ---------------------------------------------------------------------

def malformed(what: str) -> ProtocolError:
    return ProtocolError(f"malformed reply: {what}")


def reply_error(status: int, body: bytes) -> Error:
    """The exception for an error reply (status 1..99)."""
    if status >= 100:
        return malformed(f"status {status} is out of range")
    msg = ""
    if len(body) >= 2:
        n = _U16.unpack_from(body)[0]
        if 2 + n <= len(body):
            msg = body[2:2 + n].decode("utf-8", "replace")
    return error_for_status(status, msg)


def decode_hello(body: bytes) -> ServerInfo:
    if len(body) < 14:
        raise malformed("HELLO reply too short")
    version, max_dim, max_frame, flags = _HELLO_REPLY.unpack_from(body)
    n = _U16.unpack_from(body, 12)[0]
    if 14 + n != len(body):
        raise malformed("HELLO reply length")
    if version == 0 or not 1 <= max_dim <= 4096 or max_frame < 4096:
        raise malformed(f"HELLO reply version {version}, max_dim {max_dim}, "
                        f"max_frame {max_frame}")
    return ServerInfo(version=version, max_dim=max_dim, max_frame=max_frame,
                      auth_required=bool(flags & SERVER_AUTH_REQUIRED),
                      name=body[14:].decode("utf-8", "replace"), server_flags=flags)


def decode_u64(body: bytes) -> int:
    if len(body) != 8:
        raise malformed(f"expected 8 bytes, got {len(body)}")
    return _U64.unpack(body)[0]


def decode_empty(body: bytes) -> None:
    if body:
        raise malformed(f"expected an empty body, got {len(body)} bytes")


def decode_lookup(body: bytes, k: int, flags: int) -> Tuple[Tuple[Hit, ...], bool]:
    """Decodes a LOOKUP reply into its hits and the exact-tier flag; header
    flag BORDERLINE marks the first hit ``borderline``."""
    n = len(body)
    if n < 2:
        raise malformed("LOOKUP reply too short")
    count = _U16.unpack_from(body)[0]
    if count > k or count > MAX_K:
        raise malformed(f"{count} hits for k = {k}")
    exact = bool(flags & FLAG_EXACT) and count > 0
    borderline = bool(flags & FLAG_BORDERLINE)
    hits = []
    off = 2
    unpack = _HIT.unpack_from
    for i in range(count):
        if off + 20 > n:
            raise malformed("hit past the end")
        entry_id, sim, plen, rlen = unpack(body, off)
        off += 20
        end = off + plen + rlen
        if end > n or math.isnan(sim) or math.isinf(sim):
            raise malformed("hit length or similarity")
        prompt = body[off:off + plen] if plen else None
        hits.append(Hit(entry_id, sim, body[off + plen:end], prompt, exact and i == 0,
                        borderline and i == 0))
        off = end
    if off != n:
        raise malformed("trailing bytes after the hits")
    return tuple(hits), exact


def _hits_ex(body: bytes, off: int, k: int, what: str) -> Tuple[Tuple[Hit, ...], int]:
    """A ``u16 count`` and that many LOOKUP_EX hits from off; returns them and
    the offset after them."""
    n = len(body)
    if off + 2 > n:
        raise malformed(f"LOOKUP_EX reply: {what} count past the end")
    count = _U16.unpack_from(body, off)[0]
    if count > k or count > MAX_K:
        raise malformed(f"{count} {what} for k = {k}")
    off += 2
    hits = []
    unpack = _HIT_EX.unpack_from
    for _ in range(count):
        if off + 22 > n:
            raise malformed(f"LOOKUP_EX reply: {what} past the end")
        entry_id, sim, hflags, _reserved, plen, rlen = unpack(body, off)
        off += 22
        end = off + plen + rlen
        if end > n or math.isnan(sim) or math.isinf(sim):
            raise malformed(f"LOOKUP_EX reply: {what} length or similarity")
        prompt = body[off:off + plen] if plen else None
        hits.append(Hit(entry_id, sim, body[off + plen:end], prompt,
                        bool(hflags & HIT_EXACT), bool(hflags & HIT_BORDERLINE)))
        off = end
    return tuple(hits), off


def decode_lookup_ex(body: bytes, k: int, flags: int) -> LookupExResult:
    """Decodes a LOOKUP_EX reply. Refuses (PROTOCOL.md 5.11) an unknown
    outcome, ``count`` or ``shadow_count`` above k or 256, and outcome LEASE
    with lease id 0; reserved bits are ignored."""
    if len(body) < _LOOKUP_EX_HEAD.size:
        raise malformed("LOOKUP_EX reply too short")
    outcome, reply_flags, lease_id = _LOOKUP_EX_HEAD.unpack_from(body)
    if outcome > Outcome.COALESCED:
        raise malformed(f"LOOKUP_EX outcome {outcome} is unknown")
    if outcome == Outcome.LEASE and lease_id == 0:
        raise malformed("LOOKUP_EX outcome LEASE with lease id 0")
    hits, off = _hits_ex(body, _LOOKUP_EX_HEAD.size, k, "hits")
    shadow_hits, off = _hits_ex(body, off, k, "shadow hits")
    if off != len(body):
        raise malformed("trailing bytes after the LOOKUP_EX hits")
    return LookupExResult(outcome=Outcome(outcome), lease_id=lease_id, hits=hits,
                          shadow_hits=shadow_hits, shadow=bool(reply_flags & REPLY_SHADOW),
                          exact=bool(hits) and hits[0].exact,
                          borderline=bool(flags & FLAG_BORDERLINE) and bool(hits))


def decode_ns_policy(body: bytes) -> NsPolicy:
    """Decodes a NS_POLICY reply (8 bytes); refuses an unknown mode and a
    band that is neither 0 nor finite in (0, 1]."""
    if len(body) != _POLICY_REPLY.size:
        raise malformed(f"NS_POLICY reply of {len(body)} bytes, expected 8")
    mode, band = _POLICY_REPLY.unpack(body)
    if mode > PolicyMode.SHADOW or not (band == 0 or 0 < band <= 1):
        raise malformed(f"NS_POLICY reply mode {mode}, gray band {band!r}")
    return NsPolicy(mode=PolicyMode(mode), gray_band=band)


def _str8_list(body: bytes, off: int, count: int) -> Tuple[List[str], int]:
    out = []
    for _ in range(count):
        if off >= len(body):
            raise malformed("name past the end")
        m = body[off]
        if off + 1 + m > len(body):
            raise malformed("name past the end")
        out.append(body[off + 1:off + 1 + m].decode("ascii", "replace"))
        off += 1 + m
    return out, off


def _decode_kv(body: bytes, off: int) -> Dict[str, int]:
    if off + 2 > len(body):
        raise malformed("counters too short")
    count = _U16.unpack_from(body, off)[0]
    off += 2
    out = {}
    for _ in range(count):
        if off >= len(body):
            raise malformed("counter past the end")
        m = body[off]
        if off + 1 + m + 8 > len(body):
            raise malformed("counter past the end")
        key = body[off + 1:off + 1 + m].decode("ascii", "replace")
        out[key] = _U64.unpack_from(body, off + 1 + m)[0]
        off += 1 + m + 8
    if off != len(body):
        raise malformed("trailing bytes after the counters")
    return out


def decode_stats(body: bytes) -> Dict[str, int]:
    return _decode_kv(body, 0)


def decode_ns_list(body: bytes) -> List[str]:
    if len(body) < 2:
        raise malformed("NS_LIST reply too short")
    names, off = _str8_list(body, 2, _U16.unpack_from(body)[0])
    if off != len(body):
        raise malformed("trailing bytes after the names")
    return names


def _enum(cls, v):  # keeps unknown values readable instead of failing
    try:
        return cls(v)
    except ValueError:
        return v


def decode_ns_info(body: bytes) -> NamespaceInfo:
    if len(body) < _CONFIG.size + 1:
        raise malformed("NS_INFO reply too short")
    (dim, kind, quant, m, efc, efs, ttl_mode, flags, min_thr, dedup, dttl, max_age,
     max_bytes, max_entries) = _CONFIG.unpack_from(body)
    f = body[_CONFIG.size]
    off = _CONFIG.size + 1 + f
    if off > len(body):
        raise malformed("faiss_factory past the end")
    cfg = NamespaceConfig(dim=dim, index_kind=_enum(IndexKind, kind), quant=_enum(Quant, quant),
                          hnsw_m=m, hnsw_ef_construction=efc, hnsw_ef_search=efs,
                          ttl_mode=_enum(TtlMode, ttl_mode), flags=NamespaceFlag(flags),
                          min_threshold=min_thr, dedup=dedup, default_ttl_s=dttl,
                          max_age_s=max_age, max_bytes=max_bytes, max_entries=max_entries,
                          faiss_factory=body[_CONFIG.size + 1:off].decode("utf-8", "replace"))
    return NamespaceInfo(config=cfg, stats=_decode_kv(body, off))


def check_ping(payload: object) -> bytes:
    p = text_bytes(payload, "payload")  # type: ignore[arg-type]
    if len(p) > MAX_PING:
        raise InvalidArgument(f"PING payload of {len(p)} bytes is over {MAX_PING}")
    return p


def frame_size(parts: Sequence[object]) -> int:
    return sum(memoryview(p).nbytes for p in parts)  # type: ignore[arg-type]
