"""Records between the two stages: window partials and source watermarks.

Stage 1 (per input partition) folds a key's events into a window and, when its source
partition's watermark passes the window's end, publishes the window as a *partial* on
``<app_id>-partials``, keyed by key. Stage 2 (per partials partition) merges the partials
of one key's window from every source partition. A *watermark* record, sent to every
partials partition, says "source partition S will send no partial ending at or before t",
so stage 2 knows when a window is complete.

A partial carries the window's LogBuckets (exactly mergeable, at most ``--sketch-bytes``),
its Moments and one example value: about 1.1 KiB per key per window per source partition
at the default 1 KiB sketch, whatever the event rate.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from sketches import LogBuckets, Moments
from sketches._varint import Reader, uvarint_bytes, zigzag

from .window import Window

__all__ = ["WindowPartial", "SourceWatermark", "PartialError", "encode_partial", "encode_watermark", "decode_record"]

_PARTIAL, _WATERMARK = b"SWP", b"SWW"
_VERSION = 1
_F64 = struct.Struct("<d")


class PartialError(ValueError):
    """A partials-topic record that cannot be read."""


@dataclass(slots=True, frozen=True)
class WindowPartial:
    """One source partition's share of one key's window ``w``."""

    key: str
    w: int
    source: int
    sketch: LogBuckets
    moments: Moments
    labels: tuple[tuple[str, str], ...] = ()
    examples: tuple[float, ...] = ()
    #: Events of the key that came late at this source since its previous partial: they
    #: count in stage 2's all-time state, not in a window.
    late_sketch: LogBuckets | None = None
    late_moments: Moments | None = None

    def window(self, sketch_bytes: int) -> Window:
        """As an open window (its values already in a sketch)."""
        win = Window(sketch_bytes)
        win.values, win.sketch, win.moments, win.kept = None, self.sketch, self.moments, self.examples
        return win


@dataclass(slots=True, frozen=True)
class SourceWatermark:
    """Source partition ``source`` (of ``sources``) will send no partial for windows ending by ``t``."""

    source: int
    sources: int
    t: float


def _sketch(win: Window, sketch_bytes: int) -> LogBuckets:
    if win.values is None:
        return win.sketch  # type: ignore[no-any-return]
    sketch = LogBuckets(max_bytes=sketch_bytes)
    if len(win.values):
        sketch.update_many(np.frombuffer(win.values, dtype=np.float64))
    return sketch


def partial_of(
    key: str, w: int, source: int, win: Window, labels: tuple[tuple[str, str], ...], sketch_bytes: int, late: Window | None = None
) -> WindowPartial:
    """A closed stage-1 window as a partial (exact values folded into a sketch)."""
    late_sketch = _sketch(late, sketch_bytes) if late is not None else None
    return WindowPartial(
        key, w, source, _sketch(win, sketch_bytes), win.moments, labels, tuple(win.examples(1, w)), late_sketch, late.moments if late else None
    )


def encode_partial(p: WindowPartial) -> bytes:
    key = p.key.encode("utf-8", "surrogatepass")
    labels = json.dumps(p.labels, ensure_ascii=False).encode("utf-8", "surrogatepass") if p.labels else b""
    parts = [_PARTIAL, bytes([_VERSION]), uvarint_bytes(p.source), uvarint_bytes(zigzag(p.w))]
    for blob in (key, labels, p.sketch.to_bytes(), p.moments.to_bytes()):
        parts += [uvarint_bytes(len(blob)), blob]
    parts += [uvarint_bytes(len(p.examples)), b"".join(_F64.pack(x) for x in p.examples)]
    late = (p.late_sketch.to_bytes(), p.late_moments.to_bytes()) if p.late_sketch is not None and p.late_moments is not None else (b"", b"")
    for blob in late:
        parts += [uvarint_bytes(len(blob)), blob]
    return b"".join(parts)


def encode_watermark(wm: SourceWatermark) -> bytes:
    return _WATERMARK + bytes([_VERSION]) + uvarint_bytes(wm.source) + uvarint_bytes(wm.sources) + _F64.pack(wm.t)


def decode_record(data: bytes | None) -> WindowPartial | SourceWatermark:
    """A partial or a watermark; :class:`PartialError` for anything else."""
    if not data or len(data) < 4 or data[3] != _VERSION:
        raise PartialError("not a shiftwatch partials record (or an unknown version)")
    r = Reader(data[4:], PartialError)
    try:
        if data[:3] == _WATERMARK:
            source, sources = r.uvarint(limit=1 << 16), r.uvarint(limit=1 << 16)
            (t,) = _F64.unpack(r.take(8))
            r.end()
            if source >= sources:
                raise PartialError(f"watermark of source {source} of {sources}")
            return SourceWatermark(source, sources, t)
        if data[:3] != _PARTIAL:
            raise PartialError("not a shiftwatch partials record")
        source, wz = r.uvarint(limit=1 << 16), r.uvarint()
        key = r.blob(limit=4096).decode("utf-8", "surrogatepass")
        labels_raw = r.blob(limit=1 << 16)
        labels = tuple((str(a), str(b)) for a, b in json.loads(labels_raw)) if labels_raw else ()
        sketch, moments = LogBuckets.from_bytes(r.blob()), Moments.from_bytes(r.blob())
        n = r.uvarint(limit=64)
        examples = tuple(_F64.unpack(r.take(8))[0] for _ in range(n))
        late_s, late_m = r.blob(), r.blob()
        r.end()
        late = (LogBuckets.from_bytes(late_s), Moments.from_bytes(late_m)) if late_s else (None, None)
    except PartialError:
        raise
    except (ValueError, TypeError, struct.error) as e:
        raise PartialError(f"bad partials record: {e}") from None
    w = (wz >> 1) if not wz & 1 else -((wz + 1) >> 1)
    return WindowPartial(key, w, source, sketch, moments, labels, examples, *late)
