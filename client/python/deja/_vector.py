"""Turns the vector forms an application has into little-endian float32 bytes.

Buffers (``bytes``, ``memoryview``, ``array('f')``, numpy float32 arrays) are
used as they are, without a copy on little-endian hosts; lists and tuples are
packed by one ``struct`` call; other dtypes go through numpy's own ``astype``
when the object has one. Nothing here loops over the floats in Python.
"""

from __future__ import annotations

import array
import struct
import sys
from typing import Any, Dict, Tuple, Union

from .errors import BadVector, InvalidArgument

MAX_DIM = 4096
_LITTLE = sys.byteorder == "little"
_F32_FORMATS = ("f", "<f", "=f") if _LITTLE else ("<f",)
_packers: Dict[int, struct.Struct] = {}

Wire = Union[bytes, memoryview]


def _packer(dim: int) -> struct.Struct:
    p = _packers.get(dim)
    if p is None:
        p = _packers[dim] = struct.Struct(f"<{dim}f")
    return p


def _check_dim(dim: int) -> int:
    if not 1 <= dim <= MAX_DIM:
        raise InvalidArgument(f"vector dimension {dim} is not in 1..{MAX_DIM}")
    return dim


def _pack_sequence(v: Any) -> Tuple[int, Wire]:
    dim = _check_dim(len(v))
    try:
        return dim, _packer(dim).pack(*v)
    except OverflowError:
        raise BadVector("a vector component is outside the float32 range") from None
    except (struct.error, TypeError) as e:
        raise InvalidArgument(f"vector components must be numbers ({e})") from None


def encode_vector(v: Any) -> Tuple[int, Wire]:
    """Returns ``(dim, data)``: the vector as ``dim`` little-endian float32s.

    Raises:
        InvalidArgument: not a vector, a dimension outside 1..4096, or a byte
            length that is not a multiple of 4.
    """
    if isinstance(v, (list, tuple)):
        return _pack_sequence(v)
    if isinstance(v, array.array):
        if v.typecode != "f":
            v = array.array("f", v)  # converts in C
        if not _LITTLE:
            v = array.array("f", v)
            v.byteswap()
        return _check_dim(len(v)), memoryview(v).cast("B")
    try:
        mv = memoryview(v)
    except TypeError:
        if hasattr(v, "__len__") and hasattr(v, "__getitem__"):
            return _pack_sequence(v)
        raise InvalidArgument(f"a vector cannot be a {type(v).__name__}") from None
    fmt = mv.format
    if mv.itemsize == 1 and fmt in ("B", "b", "c"):
        if mv.nbytes % 4:
            raise InvalidArgument(f"{mv.nbytes} bytes are not a whole number of float32s")
        data: Wire = mv.cast("B") if mv.c_contiguous else mv.tobytes()
        return _check_dim(mv.nbytes // 4), data
    if mv.ndim > 1 and not (mv.ndim == 2 and mv.shape is not None and mv.shape[0] == 1):
        raise InvalidArgument(f"a vector must be one-dimensional, not of shape {mv.shape}")
    if fmt not in _F32_FORMATS or not mv.c_contiguous:
        astype = getattr(v, "astype", None)
        if astype is not None:  # numpy and look-alikes convert in C
            mv = memoryview(astype("<f4", order="C"))
        elif fmt in ("d", "<d", "=d", "f", ">f", "!f", ">d", "!d"):
            mv = memoryview(array.array("f", mv.tolist() if mv.ndim != 1 else mv))
            if not _LITTLE:
                a = array.array("f", mv)
                a.byteswap()
                mv = memoryview(a)
        else:
            raise InvalidArgument(f"a vector buffer of format {fmt!r} is not float32")
    return _check_dim(mv.nbytes // 4), mv.cast("B")
