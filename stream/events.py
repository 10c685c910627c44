"""Decoding response-time events from raw message bytes.

Every message either yields events or dead-letter records — nothing is dropped
silently and nothing raises. Values are converted to seconds here, so every later
stage works in one unit.

Two paths, one answer. ``msgspec`` parses a well-formed message straight into
typed events (string key, numeric value and ts, in C) about 5x faster than
``json.loads`` builds dicts; the ranges are then checked a batch at a time.
Anything it refuses (invalid UTF-8, NaN literals, out-of-range numbers, wrong
types, RFC 3339 timestamps, missing fields) goes to the exact path — ``json`` plus
per-event checks — which decides what is accepted and writes the dead letters. So
the fast path changes speed, never results.

Poison is decided here, the same way on both paths and in replay: nesting deeper than
``DecodeLimits.max_depth`` is ``too_deep`` (checked without recursion, so it never depends
on the caller's stack), and a key or label holding a lone UTF-16 surrogate (``"\\ud800"``:
valid JSON, not valid Unicode, unencodable as UTF-8) is ``bad_key`` — such a string must
never reach a checkpoint or an output record.

Field mapping (``key_fields``, ``value_field``, ``ts_field``) reads other JSON shapes,
such as access logs; see :mod:`stream.decode.fields`.
"""

from __future__ import annotations

import base64
import json
import math
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Iterable, Union

import msgspec
import numpy as np

from .decode.depth import cheap_depth_bound, depth_exceeds
from .decode.fields import MISSING, FieldMap, TypedMapping, resolve, typed_mapping
from .labels import compose_key

__all__ = [
    "DecodeLimits",
    "DeadLetter",
    "Decoded",
    "HistPoint",
    "Decoder",
    "Source",
    "REASONS",
    "UNIT_SCALE",
    "TS_UNITS",
    "parse_timestamp",
]

#: Multiplier from an input unit to seconds.
UNIT_SCALE: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}

#: Divisor from a numeric timestamp's unit to epoch seconds (a division by a power of ten
#: is correctly rounded, a multiplication by 1e-3 is not).
TS_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}

#: Every reason code a dead-letter record can carry (documented in the README).
REASONS: tuple[str, ...] = (
    "invalid_json",
    "invalid_utf8",
    "not_an_object",
    "missing_field",
    "bad_key",
    "bad_value",
    "non_finite_value",
    "negative_value",
    "bad_timestamp",
    "too_large",
    "too_deep",
)


@dataclass(slots=True, frozen=True)
class Source:
    """Where a message came from (Kafka coordinates), for dead-letter records."""

    topic: str
    partition: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(slots=True, frozen=True)
class DeadLetter:
    """A rejected input with the original bytes and why it was rejected."""

    reason: str
    error: str
    raw: bytes
    index: int | None = None
    source: Source | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "dead_letter",
            "version": 1,
            "reason": self.reason,
            "error": self.error,
            "source": self.source.to_json() if self.source else None,
            "index": self.index,
            "raw_base64": base64.b64encode(self.raw).decode("ascii"),
        }


@dataclass(slots=True, frozen=True)
class DecodeLimits:
    """Bounds that keep one hostile message from hurting the worker."""

    max_message_bytes: int = 1 << 20
    max_key_chars: int = 256
    max_events_per_message: int = 100_000
    #: Largest accepted latency, in seconds (a week): beyond it a value is a bug upstream.
    max_value_s: float = 7 * 86400.0
    #: Timestamps must lie in [min_ts, max_ts] epoch seconds (1970 .. 2286).
    min_ts: float = 0.0
    max_ts: float = 1e10
    #: Deepest nesting accepted (the message's own object or array is level 1).
    max_depth: int = 64
    #: With a ts unit finer than seconds, a value before this (1980) that would be a
    #: plausible time in a coarser unit is taken as given in the wrong unit.
    plausible_min_ts: float = 315532800.0


@dataclass(slots=True, frozen=True)
class HistPoint:
    """One key's pre-aggregated distribution at event time ``ts`` (an OTLP histogram
    delta, in seconds): the pipeline merges it into the key's window and all-time state
    as if its ``count`` values had arrived one by one."""

    key: str
    ts: float
    sketch: Any  # a sketches.LogBuckets holding the point's counts
    count: int
    total: float  # exact sum of the values
    min: float
    max: float


@dataclass(slots=True)
class Decoded:
    """Events from one or more messages, as parallel lists, plus rejects."""

    keys: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    #: ``(key, n)`` for each stretch of consecutive events of one key, in order. The
    #: decoder keeps it, so grouping a batch by key costs one step per message rather
    #: than per event; :meth:`key_runs` recomputes it if the lists were filled directly.
    runs: list[tuple[str, int]] = field(default_factory=list)
    #: ``values`` and ``ts`` again as packed float64, filled by the decoder while the floats
    #: are fresh in cache: the pipeline reads them as numpy arrays without converting a list
    #: of 100,000 scattered float objects per batch. See :meth:`arrays`.
    vbuf: array = field(default_factory=lambda: array("d"))
    tbuf: array = field(default_factory=lambda: array("d"))
    #: key -> its labels (field path or attribute name -> value), for keys built from
    #: several fields (``--key-fields``, OTLP). Keys absent here have no labels.
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Pre-aggregated distributions (OTLP histogram deltas), merged into the key's window.
    hists: list["HistPoint"] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def extend(self, other: "Decoded") -> None:
        self.keys.extend(other.keys)
        self.values.extend(other.values)
        self.ts.extend(other.ts)
        self.vbuf.extend(other.vbuf)
        self.tbuf.extend(other.tbuf)
        self.dead.extend(other.dead)
        self.runs.extend(other.runs)
        self.labels.update(other.labels)
        self.hists.extend(other.hists)

    def append(self, key: str, value: float, ts: float) -> None:
        """One event, into every representation (lists, packed copies, runs)."""
        self.keys.append(key)
        self.values.append(value)
        self.ts.append(ts)
        self.vbuf.append(value)
        self.tbuf.append(ts)
        self.runs.append((key, 1))

    def append_many(self, keys: list[str], values: list[float], ts: list[float]) -> None:
        """Consecutive events; one run when they share a key (the usual batched message)."""
        n = len(keys)
        if keys.count(keys[0]) == n:
            self.keys.extend([keys[0]] * n)
            self.runs.append((keys[0], n))
        else:
            self.keys.extend(keys)
            self.runs.extend([(k, 1) for k in keys])
        self.values.extend(values)
        self.ts.extend(ts)
        self.vbuf.extend(values)
        self.tbuf.extend(ts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, ts) as float64 arrays: copied from the packed copies when they cover
        the lists (the decoder keeps them), else converted from the lists."""
        n = len(self.values)
        if len(self.vbuf) == n == len(self.tbuf) == len(self.ts):
            return np.frombuffer(self.vbuf, dtype=np.float64).copy(), np.frombuffer(self.tbuf, dtype=np.float64).copy()
        return np.asarray(self.values, dtype=np.float64), np.asarray(self.ts, dtype=np.float64)

    def key_runs(self) -> list[tuple[str, int]]:
        """``runs`` if it covers ``keys``, else the runs computed from ``keys``."""
        runs = self.runs
        if sum(n for _, n in runs) == len(self.keys) and all(self.keys[i] == k for i, k in _run_starts(runs)):
            return runs
        out: list[tuple[str, int]] = []
        for k in self.keys:
            if out and out[-1][0] == k:
                out[-1] = (k, out[-1][1] + 1)
            else:
                out.append((k, 1))
        return out


def _run_starts(runs: list[tuple[str, int]]) -> Iterable[tuple[int, str]]:
    pos = 0
    for k, n in runs:
        yield pos, k
        pos += n


class _Reject(Exception):
    """Internal: one event is invalid."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error

    def at(self, path: str) -> "_Reject":
        """The same reject, its message prefixed with the field's path."""
        return _Reject(self.reason, f"{path}: {self.error}")


def parse_timestamp(ts: Any, limits: DecodeLimits, unit: str = "s") -> float:
    """Epoch seconds from a number in ``unit`` or an RFC 3339 string."""
    if isinstance(ts, bool):
        raise _Reject("bad_timestamp", "ts must be epoch seconds or an RFC 3339 string, got a boolean")
    if isinstance(ts, (int, float)):
        x = float(ts) if isinstance(ts, float) else _int_to_float(ts)
        div = TS_UNITS[unit]
        t = x if div == 1.0 else (x / div if isinstance(ts, float) else _int_div(ts, div))
        if not math.isfinite(t):
            raise _Reject("bad_timestamp", f"ts must be finite, got {ts!r}")
        if t > limits.max_ts or (div != 1.0 and t < limits.plausible_min_ts):
            likely = _ts_unit_hint(x, unit, limits)
            if likely is not None:
                extra = "" if unit == "s" else f" (ts_unit {unit})"
                raise _Reject(
                    "bad_timestamp", f"ts {ts!r} looks like epoch {_UNIT_NAMES[likely]}; shiftwatch expects epoch {_UNIT_NAMES[unit]}{extra}"
                )
    elif isinstance(ts, str):
        t = _parse_rfc3339(ts)
    else:
        raise _Reject("bad_timestamp", f"ts must be epoch seconds or an RFC 3339 string, got {type(ts).__name__}")
    if not (limits.min_ts <= t <= limits.max_ts):
        raise _Reject("bad_timestamp", f"ts {ts!r} is outside [{limits.min_ts:g}, {limits.max_ts:g}] epoch seconds")
    return t


def _parse_rfc3339(ts: str) -> float:
    if len(ts) > 64:
        raise _Reject("bad_timestamp", "ts string is longer than 64 characters")
    if ts[-1:] == "Z" and ts[:1].isdigit():
        # The common shape: Python 3.11 reads the trailing Z itself, as UTC (3x faster
        # than building "+00:00"); anything it refuses takes the general path below.
        try:
            return datetime.fromisoformat(ts).timestamp()
        except ValueError:
            pass
    text = ts.strip()
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise _Reject("bad_timestamp", f"ts {ts!r} is not RFC 3339") from None
    if dt.tzinfo is None:
        raise _Reject("bad_timestamp", f"ts {ts!r} has no UTC offset (RFC 3339 requires one)")
    return dt.timestamp()


def _ts_unit_hint(x: float, unit: str, limits: DecodeLimits) -> str | None:
    """The unit ``x`` was most likely given in: a finer one when it lands beyond
    ``max_ts`` (1.76e12 read as seconds is the year 57000), a coarser one when a fine
    unit puts it before 1980 while the coarser unit gives a plausible time."""
    order = list(TS_UNITS)
    i = order.index(unit)
    if x / TS_UNITS[unit] > limits.max_ts:
        for u in order[i + 1 :]:
            if x / TS_UNITS[u] <= limits.max_ts:
                return u
        return None
    for u in reversed(order[:i]):
        if limits.plausible_min_ts <= x / TS_UNITS[u] <= limits.max_ts:
            return u
    return None


def _not_unicode(s: str) -> str | None:
    """Why ``s`` cannot be encoded as UTF-8 (a lone surrogate), or None when it can."""
    if s.isascii():
        return None
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"not valid Unicode: lone surrogate U+{ord(s[e.start]):04X} at character {e.start}"
    return None


class Decoder:
    """Turns message bytes into (key, seconds, ts) events and dead letters.

    Configure once (input unit, limits, numeric ``ts_unit``, field mapping), then call
    :meth:`decode` per message or :meth:`decode_batch` per batch. ``default_ts`` (for
    instance the Kafka record timestamp, in seconds) is used when an event carries no ts.

    Field mapping: ``key_fields`` (dotted paths; several make a composite key with
    :func:`stream.labels.compose_key`), ``value_field``, ``ts_field``. When ``key_fields``
    is given, every key's labels ``{path: value}`` are recorded in ``Decoded.labels``.
    Key fields may hold strings, integers (written in decimal) or booleans (``true`` /
    ``false``); floats, null, arrays and objects are ``bad_key``.
    """

    __slots__ = ("unit", "scale", "limits", "ts_unit", "ts_div", "fields", "_types", "_typed", "_segs", "_fast_fn", "_lines")

    def __init__(
        self,
        unit: str = "ms",
        limits: DecodeLimits | None = None,
        *,
        ts_unit: str = "s",
        key_fields: "tuple[str, ...] | list[str] | str | None" = None,
        value_field: str = "value",
        ts_field: str = "ts",
    ) -> None:
        if unit not in UNIT_SCALE:
            raise ValueError(f"unknown input unit {unit!r}; choose one of {sorted(UNIT_SCALE)}")
        if ts_unit not in TS_UNITS:
            raise ValueError(f"unknown ts unit {ts_unit!r}; choose one of {', '.join(TS_UNITS)}")
        self.unit = unit
        self.scale = UNIT_SCALE[unit]
        self.limits = limits or DecodeLimits()
        self.ts_unit = ts_unit
        self.ts_div = TS_UNITS[ts_unit]
        if isinstance(key_fields, str):
            key_fields = tuple(p.strip() for p in key_fields.split(","))
        self.fields = FieldMap(tuple(key_fields) if key_fields is not None else ("key",), value_field, ts_field, key_fields is not None)
        self._types = _fast_types(self.limits.max_key_chars, ts_unit != "s")
        self._segs = {p: tuple(p.split(".")) for p in (*self.fields.key_fields, value_field, ts_field)}
        if self.fields.is_default:
            self._typed: TypedMapping | None = None
            self._fast_fn = self._fast
            self._lines = self._types.event
        else:
            self._typed = typed_mapping(self.fields, self.limits.max_key_chars, ts_unit != "s")
            self._fast_fn = self._fast_mapped if self._typed is not None else _never
            self._lines = self._typed.event if self._typed is not None else self._types.event

    @property
    def mapped(self) -> bool:
        """True when events are read by field mapping rather than as ``{key, value, ts}``."""
        return not self.fields.is_default

    # -- one value -------------------------------------------------------
    def _value(self, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Reject("bad_value", f"value must be a number, got {type(v).__name__}")
        x = float(v) if isinstance(v, float) else _int_to_float(v)
        if not math.isfinite(x):
            raise _Reject("non_finite_value", f"value must be finite, got {v!r}")
        if x < 0.0:
            raise _Reject("negative_value", f"value must be >= 0 (a response time), got {v!r}")
        s = x * self.scale
        if s > self.limits.max_value_s:
            raise _Reject("bad_value", f"value {v!r} {self.unit} exceeds the limit of {self.limits.max_value_s:g} s")
        return s

    def _key(self, k: Any) -> str:
        if not isinstance(k, str):
            raise _Reject("bad_key", f"key must be a string, got {type(k).__name__}")
        if not k:
            raise _Reject("bad_key", "key must not be empty")
        if len(k) > self.limits.max_key_chars:
            raise _Reject("bad_key", f"key is {len(k)} characters, the limit is {self.limits.max_key_chars}")
        why = _not_unicode(k)
        if why:
            raise _Reject("bad_key", f"key is {why}")
        return k

    def _event(self, obj: Any, default_ts: float | None, out: Decoded) -> None:
        if not isinstance(obj, dict):
            raise _Reject("not_an_object", f"an event must be a JSON object, got {_json_type(obj)}")
        if self.mapped:
            self._mapped_event(obj, default_ts, out)
            return
        if "values" in obj and "value" not in obj:
            self._columnar(obj, default_ts, out)
            return
        for name in ("key", "value"):
            if name not in obj:
                raise _Reject("missing_field", f"event has no {name!r} field")
        key = self._key(obj["key"])
        value = self._value(obj["value"])
        ts = self._ts(obj, default_ts)
        out.append(key, value, ts)

    def _ts(self, obj: dict[str, Any], default_ts: float | None) -> float:
        if "ts" in obj:
            return parse_timestamp(obj["ts"], self.limits, self.ts_unit)
        if default_ts is None:
            raise _Reject("missing_field", "event has no 'ts' field and the message has no timestamp")
        return default_ts

    def _columnar(self, obj: dict[str, Any], default_ts: float | None, out: Decoded) -> None:
        """``{"key": k, "values": [...], "ts": [...] | t}``: many samples of one key."""
        if "key" not in obj:
            raise _Reject("missing_field", "columnar event has no 'key' field")
        key = self._key(obj["key"])
        values = obj["values"]
        if not isinstance(values, list):
            raise _Reject("bad_value", f"'values' must be an array, got {_json_type(values)}")
        if len(values) > self.limits.max_events_per_message:
            raise _Reject("too_large", f"{len(values)} values in one message; the limit is {self.limits.max_events_per_message}")
        ts_field = obj.get("ts", default_ts)
        if isinstance(ts_field, list):
            if len(ts_field) != len(values):
                raise _Reject("bad_timestamp", f"'ts' has {len(ts_field)} entries but 'values' has {len(values)}")
            stamps = ts_field
        else:
            if ts_field is None:
                raise _Reject("missing_field", "columnar event has no 'ts' field and the message has no timestamp")
            # The message timestamp is already seconds; a 'ts' field is in ts_unit.
            t = parse_timestamp(ts_field, self.limits, self.ts_unit if "ts" in obj else "s")
            stamps = None
        for i, v in enumerate(values):
            try:
                val = self._value(v)
                ts = parse_timestamp(stamps[i], self.limits, self.ts_unit) if stamps is not None else t
            except _Reject as r:
                out.dead.append(DeadLetter(r.reason, f"values[{i}]: {r.error}", _dump(v), index=i))
                continue
            out.append(key, val, ts)

    # -- mapped events ---------------------------------------------------
    def _mapped_event(self, obj: dict[str, Any], default_ts: float | None, out: Decoded) -> None:
        """One event read through the field mapping; errors name the field's path."""
        fm, segs = self.fields, self._segs
        parts = [self._key_part(resolve(obj, p, segs[p]), p) for p in fm.key_fields]
        key = compose_key(parts)
        if len(key) > self.limits.max_key_chars:
            raise _Reject("bad_key", f"key ({','.join(fm.key_fields)}) is {len(key)} characters, the limit is {self.limits.max_key_chars}")
        v = resolve(obj, fm.value_field, segs[fm.value_field])
        if v is MISSING:
            raise _Reject("missing_field", f"event has no {fm.value_field!r} field")
        try:
            value = self._value(v)
        except _Reject as r:
            raise r.at(fm.value_field) from None
        t = resolve(obj, fm.ts_field, segs[fm.ts_field])
        if t is MISSING:
            if default_ts is None:
                raise _Reject("missing_field", f"event has no {fm.ts_field!r} field and the message has no timestamp")
            ts = default_ts
        else:
            try:
                ts = parse_timestamp(t, self.limits, self.ts_unit)
            except _Reject as r:
                raise r.at(fm.ts_field) from None
        out.append(key, value, ts)
        if fm.labelled and key not in out.labels:
            out.labels[key] = dict(zip(fm.key_fields, parts))

    def _key_part(self, v: Any, path: str) -> str:
        if v is MISSING:
            raise _Reject("missing_field", f"event has no {path!r} field")
        if type(v) is str:
            s = v
        elif type(v) is bool:
            s = "true" if v else "false"
        elif type(v) is int:
            s = str(v)
        else:
            raise _Reject("bad_key", f"{path}: a key field must be a string, integer or boolean, got {_json_type(v)}")
        if not s:
            raise _Reject("bad_key", f"{path}: must not be empty")
        if len(s) > self.limits.max_key_chars:
            raise _Reject("bad_key", f"{path}: is {len(s)} characters, the limit is {self.limits.max_key_chars}")
        why = _not_unicode(s)
        if why:
            raise _Reject("bad_key", f"{path}: {why}")
        return s

    # -- one message -----------------------------------------------------
    def decode(self, raw: bytes, source: Source | None = None, default_ts: float | None = None) -> Decoded:
        """Decode one message; never raises for bad input."""
        return self._decode(raw, source, default_ts, fast=True)

    def _decode(self, raw: bytes, source: Source | None, default_ts: float | None, fast: bool) -> Decoded:
        out = Decoded()
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            out.dead.append(DeadLetter("invalid_json", f"message value is {type(raw).__name__}, not bytes", b"", source=source))
            return out
        raw = bytes(raw)
        if len(raw) > self.limits.max_message_bytes:
            out.dead.append(
                DeadLetter("too_large", f"message is {len(raw)} bytes, the limit is {self.limits.max_message_bytes}", raw, source=source)
            )
            return out
        if fast and self._fast_fn(raw, default_ts, out):
            return out
        doc = self._parse(raw, source, out)
        if doc is _FAILED:
            return out
        if isinstance(doc, list):
            self._array(doc, raw, source, default_ts, out)
            return out
        try:
            if cheap_depth_bound(raw) > self.limits.max_depth and depth_exceeds(doc, self.limits.max_depth):
                raise _Reject("too_deep", f"JSON nesting is deeper than {self.limits.max_depth} levels")
            self._event(doc, default_ts, out)
        except _Reject as r:
            # A columnar message may have added some good values before failing.
            out.dead.append(DeadLetter(r.reason, r.error, raw, source=source))
        # Columnar rejects carry their element bytes; give them the source too.
        if source is not None and out.dead:
            out.dead = [d if d.source else _with_source(d, source) for d in out.dead]
        return out

    def _parse(self, raw: bytes, source: Source | None, out: Decoded) -> Any:
        """json.loads of the message, or _FAILED with its dead letter added."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            out.dead.append(DeadLetter("invalid_utf8", f"message is not UTF-8: {e}", raw, source=source))
            return _FAILED
        try:
            return json.loads(text)
        except RecursionError:
            out.dead.append(DeadLetter("too_deep", f"JSON nesting is deeper than {self.limits.max_depth} levels", raw, source=source))
        except ValueError as e:
            out.dead.append(DeadLetter("invalid_json", f"invalid JSON: {e}", raw, source=source))
        return _FAILED

    def _array(self, doc: list[Any], raw: bytes, source: Source | None, default_ts: float | None, out: Decoded) -> None:
        """A JSON array of events: each element is accepted or dead-lettered alone."""
        if len(doc) > self.limits.max_events_per_message:
            out.dead.append(
                DeadLetter("too_large", f"{len(doc)} events in one message; the limit is {self.limits.max_events_per_message}", raw, source=source)
            )
            return
        limit = self.limits.max_depth
        containers = sum(1 for x in doc if type(x) is dict or type(x) is list)
        check_depth = cheap_depth_bound(raw, containers) > limit
        for i, item in enumerate(doc):
            try:
                if check_depth and depth_exceeds(item, limit - 1):
                    raise _Reject("too_deep", f"JSON nesting is deeper than {limit} levels")
                self._event(item, default_ts, out)
            except _Reject as r:
                out.dead.append(DeadLetter(r.reason, f"[{i}]: {r.error}", _dump(item), index=i, source=source))
            except RecursionError:  # pragma: no cover - the depth check comes first
                out.dead.append(DeadLetter("too_deep", f"[{i}]: JSON nesting is too deep", b"", index=i, source=source))

    def _fast(self, raw: bytes, default_ts: float | None, out: Decoded) -> bool:
        """Typed parsing and batch range checks for messages that are entirely valid.

        Returns False, having added nothing, whenever the exact path must decide.
        """
        head = raw[:1] if raw[:1] not in _WS else raw.lstrip()[:1]
        n_containers = 1
        try:
            if head == b"[":
                evs = self._types.array.decode(raw)
                if not evs or len(evs) > self.limits.max_events_per_message:
                    return False
                keys = [e.key for e in evs]
                vals = [e.value for e in evs]
                stamps = [e.ts for e in evs]
                n_containers = len(evs)
            elif head == b"{":
                try:
                    e = self._types.event.decode(raw)
                    keys, vals, stamps = [e.key], [e.value], [e.ts]
                except msgspec.ValidationError:
                    if b'"value"' in raw:  # a bad single event; the exact path says why
                        return False
                    c = self._types.columnar.decode(raw)
                    n = len(c.values)
                    if not n or n > self.limits.max_events_per_message:
                        return False
                    if type(c.ts) is list:
                        if len(c.ts) != n:
                            return False
                        stamps = c.ts
                    else:
                        stamps = [c.ts] * n
                    keys, vals = [c.key] * n, c.values
            else:
                return False
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return False
        if cheap_depth_bound(raw, n_containers) > self.limits.max_depth:
            return False
        return self._accept(keys, vals, stamps, default_ts, out, None)

    def _fast_mapped(self, raw: bytes, default_ts: float | None, out: Decoded) -> bool:
        """The typed path for a field mapping: structs shaped like the paths."""
        tm = self._typed
        assert tm is not None
        head = raw[:1] if raw[:1] not in _WS else raw.lstrip()[:1]
        try:
            if head == b"[":
                evs = tm.array.decode(raw)
                if not evs or len(evs) > self.limits.max_events_per_message:
                    return False
            elif head == b"{":
                evs = [tm.event.decode(raw)]
            else:
                return False
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return False
        if cheap_depth_bound(raw, len(evs)) > self.limits.max_depth:
            return False
        return self._accept_mapped(evs, default_ts, out, False)

    def _accept_mapped(self, evs: list[Any], default_ts: "float | None | list[float | None]", out: Decoded, per_event: bool) -> bool:
        """Keys (composed), values and stamps of typed mapped events, then :meth:`_accept`."""
        tm = self._typed
        assert tm is not None
        if len(tm.keys) == 1:
            g = tm.keys[0]
            keys = [g(e) for e in evs]
            parts = [[k] for k in keys] if self.fields.labelled else None
        else:
            parts = [[g(e) for g in tm.keys] for e in evs]
            keys = [_compose(p) for p in parts]
            if max(map(len, keys)) > self.limits.max_key_chars:
                return False
        vals = [tm.value(e) for e in evs]
        stamps = [tm.ts(e) for e in evs]
        return self._accept(keys, vals, stamps, default_ts, out, parts, per_event)

    def _accept(
        self,
        keys: list[str],
        vals: list[float],
        stamps: list[Any],
        default_ts: "float | None | list[float | None]",
        out: Decoded,
        parts: list[list[str]] | None,
        per_event: bool = False,
    ) -> bool:
        """Range checks of typed events, then append them all; False leaves it to the exact path.

        ``default_ts`` is one message's timestamp, or (``per_event``: each event is its own
        record) a list of them, one per event.
        """
        lim = self.limits
        div = self.ts_div
        strings = False
        for t in stamps:
            if type(t) is str:
                strings = True
                break
        if strings:
            try:
                stamps = [parse_timestamp(t, lim) if type(t) is str else _to_seconds(t, div) for t in stamps]
            except _Reject:
                return False
        elif div != 1.0:
            stamps = [_to_seconds(t, div) for t in stamps]
        total = sum(stamps)
        if total != total:  # NaN: only the absent-ts default can be NaN
            # an event without ts: the message timestamp (already seconds) stands in, if there is one
            if type(default_ts) is list:
                stamps = [d if t != t else t for t, d in zip(stamps, default_ts)]
                if None in stamps:
                    return False
            elif default_ts is None:
                return False
            else:
                stamps = [default_ts if t != t else t for t in stamps]
        # msgspec never yields NaN or inf for a JSON number, so min/max suffice.
        scale = self.scale
        lo = lim.min_ts if self.ts_div == 1.0 else max(lim.min_ts, lim.plausible_min_ts)
        if min(vals) < 0.0 or max(vals) * scale > lim.max_value_s or min(stamps) < lo or max(stamps) > lim.max_ts:
            return False
        vals = [v * scale for v in vals] if scale != 1.0 else vals
        if per_event:  # as if each event had been decoded alone: one run per event
            out.keys.extend(keys)
            out.runs.extend([(k, 1) for k in keys])
            out.values.extend(vals)
            out.ts.extend(stamps)
            out.vbuf.extend(vals)
            out.tbuf.extend(stamps)
        else:
            out.append_many(keys, vals, stamps)
        if parts is not None:
            labels, paths = out.labels, self.fields.key_fields
            for k, p in zip(keys, parts):
                if k not in labels:
                    labels[k] = dict(zip(paths, p))
        return True

    def decode_batch(self, items: Iterable[tuple[bytes | None, int, float | None]], topic: str, partition: int) -> Decoded:
        """Decode many records of one partition — ``(value, offset, default_ts)`` — into one batch.

        The same result as :meth:`decode` per record, concatenated; valid records append
        straight to the batch, so a record costs little more than its parse.
        """
        out = Decoded()
        fast, limit = self._fast_fn, self.limits.max_message_bytes
        items = items if type(items) is list else list(items)
        for start in range(0, len(items), _JOIN):
            chunk = items[start : start + _JOIN]
            if len(chunk) > 1 and self._fast_joined(chunk, out):
                continue
            for raw, offset, default_ts in chunk:
                if type(raw) is bytes and len(raw) <= limit and fast(raw, default_ts, out):
                    continue
                out.extend(self._decode(raw, Source(topic, partition, offset), default_ts, fast=False))  # type: ignore[arg-type]
        return out

    def _fast_joined(self, chunk: list[tuple[bytes | None, int, float | None]], out: Decoded) -> bool:
        """Many single-event records in one typed parse (``decode_lines`` of the records
        joined by newlines), for a batch where every record is one valid event.

        Sound because each record must start with ``{`` and end with ``}``: a newline
        cannot sit inside a JSON string, and after a closing brace inside an unclosed
        container the next token cannot be ``{``, so every record holds at least one whole
        value of its own; as many values as records means exactly one each. Anything else
        (or any check failing) returns False having added nothing, and the records are
        decoded one by one.
        """
        if self._fast_fn is _never:
            return False
        limit = self.limits.max_message_bytes
        raws = []
        for raw, _, _ in chunk:
            if type(raw) is not bytes or len(raw) > limit or raw[:1] != b"{" or raw[-1:] != b"}":
                return False
            raws.append(raw)
        buf = b"\n".join(raws)
        try:
            evs = self._lines.decode_lines(buf)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return False
        if len(evs) != len(raws) or max(map(cheap_depth_bound, raws)) > self.limits.max_depth:
            return False
        dts = [d for _, _, d in chunk]
        if self._typed is not None:
            return self._accept_mapped(evs, dts, out, True)
        return self._accept([e.key for e in evs], [e.value for e in evs], [e.ts for e in evs], dts, out, None, True)

    def decode_many(self, raws: Iterable[bytes]) -> Decoded:
        out = Decoded()
        for raw in raws:
            out.extend(self.decode(raw))
        return out


_NAN = math.nan
_WS = (b" ", b"\t", b"\n", b"\r")
_FAILED: Any = object()
#: Records per joined typed parse in :meth:`Decoder.decode_batch`: large enough to pay
#: for itself, small enough that one bad record costs only its chunk a second parse.
_JOIN = 128


def _compose(parts: list[str]) -> str:
    """``compose_key(parts)``, without its escaping work when no part needs escaping."""
    k = "|".join(parts)
    if "\\" in k or k.count("|") != len(parts) - 1:
        return compose_key(parts)
    return k


def _to_seconds(t: float | int, div: float) -> float:
    return t / div if type(t) is float else _int_div(t, div)  # type: ignore[arg-type]


def _never(raw: bytes, default_ts: float | None, out: Decoded) -> bool:
    """No typed path (overlapping field paths): the exact path decides every message."""
    return False


@dataclass(slots=True, frozen=True)
class _FastTypes:
    event: msgspec.json.Decoder
    array: msgspec.json.Decoder
    columnar: msgspec.json.Decoder


def _fast_types(max_key_chars: int, int_ts: bool = False) -> _FastTypes:
    """msgspec decoders for the three valid message shapes (keys bounded as configured).

    ``ts`` defaults to NaN, which JSON cannot express, so NaN means "absent". A string
    ``ts`` (RFC 3339) is parsed by the exact path's own function.
    """
    Key = Annotated[str, msgspec.Meta(min_length=1, max_length=max_key_chars)]
    Num: Any = Union[int, float] if int_ts else float  # integers kept exact for a finer ts unit
    Event = msgspec.defstruct("Event", [("key", Key), ("value", float), ("ts", Union[Num, str], _NAN)], gc=False)
    Columnar = msgspec.defstruct("Columnar", [("key", Key), ("values", list[float]), ("ts", Union[Num, list[Num]], _NAN)], gc=False)
    return _FastTypes(msgspec.json.Decoder(Event), msgspec.json.Decoder(list[Event]), msgspec.json.Decoder(Columnar))


def _with_source(d: DeadLetter, source: Source) -> DeadLetter:
    return DeadLetter(d.reason, d.error, d.raw, d.index, source)


def _int_div(v: int, div: float) -> float:
    """``v / div`` correctly rounded for an integer (a nanosecond count exceeds 2**53)."""
    try:
        return v / int(div)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _int_to_float(v: int) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _dump(v: Any) -> bytes:
    """The JSON bytes of one rejected element (what a dead letter carries)."""
    try:
        return json.dumps(v, separators=(",", ":"), allow_nan=True).encode("utf-8")
    except (ValueError, RecursionError):  # pragma: no cover - json.loads output always re-dumps
        return repr(v).encode("utf-8", "backslashreplace")
