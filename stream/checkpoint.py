"""Binary checkpoints of per-key state.

A record is ``MAGIC | version | crc32 | body``; the body holds the input offset the
state reflects and length-prefixed sections (the sketches' and detector's own
``to_bytes``). Every length is checked against what is left, so corrupt or hostile
bytes raise :class:`CheckpointError` — they are reported, never silently reset.

Version 2 keeps the recent snapshots as the history's own packed rows (32 bytes
each); version 1 records (72-byte float64 snapshots) are still read.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from typing import TYPE_CHECKING

from sketches import LogBuckets, Moments
from sketches._varint import Reader, uvarint_bytes, zigzag

from .records import Snapshot
from .window import Window

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import KeyState, PipelineConfig

__all__ = ["CheckpointError", "encode_key_state", "decode_key_state", "MAGIC", "VERSION"]

MAGIC = b"SWK"
VERSION = 3
_READABLE = (1, 2, 3)
_HEAD = struct.Struct("<3sBI")  # magic, version, crc32 of the body
_F64 = struct.Struct("<d")
_SNAP = struct.Struct("<ddq6d")  # version 1: start, end, count, mean, p50, p90, p99, min, max
_MAX_SECTIONS = 64
_MAX_RECENT = 10_000


class CheckpointError(ValueError):
    """A checkpoint record that cannot be trusted (corrupt, truncated, or foreign)."""


def _uvarint(n: int) -> bytes:
    return uvarint_bytes(n)


def _svarint(n: int) -> bytes:
    return uvarint_bytes(zigzag(n))


class _Reader(Reader):
    """The code base's one varint reader (sketches._varint), raising CheckpointError."""

    __slots__ = ()

    def __init__(self, buf: bytes) -> None:
        super().__init__(buf, CheckpointError)

    def f64(self) -> float:
        return _F64.unpack(self.take(8))[0]


def encode_key_state(st: "KeyState", offset: int) -> bytes:
    """Serialize one key's state as of input ``offset`` (the next offset to read)."""
    parts = [_uvarint(offset), _F64.pack(st.horizon)]
    for blob in (st.alltime_bytes(), st.moments.to_bytes(), st.detector.to_bytes() if st.detector is not None else b""):
        parts += [_uvarint(len(blob)), blob]
    parts.append(_uvarint(len(st.windows)))
    for w in sorted(st.windows):
        blob = st.windows[w].to_bytes()
        parts += [_svarint(w), _uvarint(len(blob)), blob]
    blob = st.recent.to_bytes()
    parts += [_uvarint(len(blob)), blob]
    # version 3: labels, example values, the low-traffic pool
    labels = json.dumps(st.labels, ensure_ascii=False).encode("utf-8", "surrogatepass") if st.labels else b""
    pool = st.pool.to_bytes() if st.pool is not None else b""
    for blob in (labels, st.examples_bytes(), pool):
        parts += [_uvarint(len(blob)), blob]
    if pool:
        parts += [_F64.pack(st.pool_start), _uvarint(st.pool_windows)]
    sources = json.dumps(st.sources).encode() if st.sources else b""
    parts += [_uvarint(len(sources)), sources]
    body = b"".join(parts)
    return _HEAD.pack(MAGIC, VERSION, zlib.crc32(body)) + body


def _read_v3(r: "_Reader", st: "KeyState", config: "PipelineConfig") -> None:
    labels = r.blob()
    if labels:
        pairs = json.loads(labels.decode("utf-8"))
        if not (isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs)):
            raise ValueError("labels are not (name, value) pairs")
        st.labels = tuple((a, b) for a, b in pairs)
    st.restore_examples(r.blob())
    pool = r.blob()
    if pool:
        st.pool = Window.from_bytes(pool, config.sketch_bytes)
        st.pool_start = r.f64()
        st.pool_windows = r.uvarint()
    sources = r.blob()
    if sources:
        st.sources = {int(w): int(m) for w, m in json.loads(sources).items()}


def decode_key_state(key: str, data: bytes, config: "PipelineConfig") -> tuple["KeyState", int]:
    """Rebuild a key's state; returns (state, offset). Raises :class:`CheckpointError`."""
    from .keystate import KeyState  # local: keystate imports this module's users

    if not isinstance(data, (bytes, bytearray)) or len(data) < _HEAD.size:
        raise CheckpointError(f"checkpoint of {key!r} is too short ({len(data) if data else 0} bytes)")
    magic, version, crc = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"checkpoint of {key!r} has a foreign header {bytes(magic)!r}")
    if version not in _READABLE:
        raise CheckpointError(f"checkpoint of {key!r} has unsupported version {version}")
    body = bytes(data[_HEAD.size :])
    if zlib.crc32(body) != crc:
        raise CheckpointError(f"checkpoint of {key!r} fails its CRC check (corrupt)")
    r = _Reader(body)
    try:
        offset = r.uvarint()
        horizon = r.f64()
        st = KeyState(key, config)
        blob = r.blob()
        LogBuckets.from_bytes(blob)  # validate; the key starts cold, thawed on its next event
        st._alltime, st._cold = None, blob
        st.moments = Moments.from_bytes(r.blob())
        blob = r.blob()
        if st.detector is not None:
            st.detector = type(st.detector).from_bytes(blob)
        n_windows = r.uvarint()
        if n_windows > _MAX_SECTIONS:
            raise CheckpointError(f"checkpoint of {key!r} claims {n_windows} open windows")
        for _ in range(n_windows):
            w = r.svarint()
            st.windows[w] = Window.from_bytes(r.blob(), config.sketch_bytes)
        if version >= 2:
            st.recent.restore(r.blob())
        else:
            n_recent = r.uvarint()
            if n_recent > _MAX_RECENT or n_recent * _SNAP.size > len(body) - r.pos:
                raise CheckpointError(f"checkpoint of {key!r} claims {n_recent} snapshots")
            for _ in range(n_recent):
                start, end, count, mean, p50, p90, p99, lo, hi = _SNAP.unpack(r.take(_SNAP.size))
                st.recent.append(Snapshot(key, start, end, count, mean, (p50, p90, p99), lo, hi))
        if version >= 3:
            _read_v3(r, st, config)
    except CheckpointError:
        raise
    except (ValueError, struct.error, OverflowError, MemoryError) as e:
        raise CheckpointError(f"checkpoint of {key!r} is invalid: {e}") from None
    if r.pos != len(body):
        raise CheckpointError(f"checkpoint of {key!r} has {len(body) - r.pos} trailing bytes")
    if math.isnan(horizon):
        raise CheckpointError(f"checkpoint of {key!r} has a NaN watermark")
    st.horizon = horizon
    return st, offset
