"""Spans -> one latency sample per span: duration (end - start) at the end time.

The per-span work is one list comprehension over the protobuf objects (upb's field
access is the cost); checks, durations and grouping by series run on numpy arrays.
Series: ``service.name`` + span name; error spans (status ERROR) go to their own
series, labelled ``status.code="error"``, when ``error_spans="separate"`` (the
default), because failures are often much faster or slower than successes and a
changing error rate would otherwise read as a latency shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..events import Decoded, DecodeLimits
from ..labels import compose_key
from .attrs import service_name

__all__ = ["SPAN_KINDS", "SpanConfig", "SpanKeys", "decode_spans", "scope_rows"]

#: Span kind names (as ``--span-kinds`` takes them) -> OTLP enum values.
SPAN_KINDS: dict[str, int] = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_ERROR = 2
_KEY_CACHE_MAX = 65536

#: dead(reason, error, raw, index) -> None, records one dead letter.
DeadFn = Callable[[str, str, bytes, int | None], None]


@dataclass(slots=True, frozen=True)
class SpanConfig:
    kinds: np.ndarray | None  # allowed kind enum values, None: all
    separate_errors: bool
    limits: DecodeLimits


class SpanKeys:
    """(service, span name, error) -> (key, labels), cached: most spans repeat a few names."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, bool], tuple[str, dict[str, str]]] = {}

    def get(self, svc: str, name: str, err: bool) -> tuple[str, dict[str, str]]:
        hit = self._cache.get((svc, name, err))
        if hit is not None:
            return hit
        if len(self._cache) >= _KEY_CACHE_MAX:
            self._cache.clear()
        labels = {"service.name": svc, "span.name": name}
        parts = [svc, name]
        if err:
            labels["status.code"] = "error"
            parts.append("error")
        hit = self._cache[(svc, name, err)] = (compose_key(parts), labels)
        return hit


def decode_spans(req: Any, cfg: SpanConfig, keys: SpanKeys, out: Decoded, dead: DeadFn) -> int:
    """Append every kept span of ``req`` to ``out``; returns the number filtered out by kind."""
    filtered = 0
    pos = 0  # span position within the request, for dead letters
    for ri, rs in enumerate(req.resource_spans):
        n_res = sum(len(ss.spans) for ss in rs.scope_spans)
        svc = service_name(rs.resource)
        if svc is None:
            dead("missing_service_name", f"resource_spans[{ri}]: resource has no string service.name ({n_res} spans)", rs.SerializeToString(), ri)
            pos += n_res
            continue
        for ss in rs.scope_spans:
            filtered += _scope(ss.spans, svc, pos, cfg, keys, out, dead)
            pos += len(ss.spans)
    return filtered


def _scope(spans: Any, svc: str, pos: int, cfg: SpanConfig, keys: SpanKeys, out: Decoded, dead: DeadFn) -> int:
    if not spans:
        return 0
    rows = [(s.name, s.start_time_unix_nano, s.end_time_unix_nano, s.kind, s.status.code) for s in spans]
    return scope_rows(rows, lambda i: spans[i].SerializeToString(), svc, pos, cfg, keys, out, dead)


def scope_rows(rows: list[tuple[str, int, int, int, int]], raw_of: Callable[[int], bytes], svc: str, pos: int,
               cfg: SpanConfig, keys: SpanKeys, out: Decoded, dead: DeadFn) -> int:
    """One scope's spans as ``(name, start_ns, end_ns, kind, status_code)`` rows."""
    names, start, end, kind, status = zip(*rows)
    start_a = np.array(start, dtype=np.uint64)
    end_a = np.array(end, dtype=np.uint64)
    keep = np.ones(len(rows), dtype=bool) if cfg.kinds is None else np.isin(np.array(kind, dtype=np.int64), cfg.kinds)
    filtered = len(rows) - int(keep.sum())
    lim = cfg.limits
    ts = end_a.astype(np.float64) / 1e9
    dur = (end_a - start_a).astype(np.int64).astype(np.float64) / 1e9  # exact in integers first
    bad = keep & ((end_a < start_a) | (start_a == 0) | (ts < lim.min_ts) | (ts > lim.max_ts) | (dur > lim.max_value_s))
    if bad.any():
        for i in np.flatnonzero(bad).tolist():
            dead("bad_span", f"spans[{pos + i}] {names[i]!r}: {_why(start[i], end[i], lim)}", raw_of(i), pos + i)
        keep &= ~bad
    err = np.array(status, dtype=np.int64) == _STATUS_ERROR if cfg.separate_errors else None
    _append_grouped(names, err, keep, dur, ts, svc, keys, out, dead, pos, lim.max_key_chars)
    return filtered


def _append_grouped(names: tuple, err: np.ndarray | None, keep: np.ndarray, dur: np.ndarray, ts: np.ndarray,
                    svc: str, keys: SpanKeys, out: Decoded, dead: DeadFn, pos: int, max_key: int) -> None:
    """One ``append_many`` run per series, in order of first appearance."""
    groups: dict[tuple[str, bool], list[int]] = {}
    errs = err.tolist() if err is not None else None
    for i in np.flatnonzero(keep).tolist():
        groups.setdefault((names[i], errs[i] if errs is not None else False), []).append(i)
    for (name, is_err), idx in groups.items():
        key, labels = keys.get(svc, name, is_err)
        if len(key) > max_key:
            dead("bad_key", f"spans[{pos + idx[0]}]: series key is {len(key)} characters, the limit is {max_key} ({len(idx)} spans)", key.encode(), pos + idx[0])
            continue
        sel = np.array(idx, dtype=np.intp)
        out.append_many([key] * len(idx), dur[sel].tolist(), ts[sel].tolist())
        out.labels[key] = labels


def _why(start: int, end: int, lim: DecodeLimits) -> str:
    if start == 0:
        return "start_time_unix_nano is 0"
    if end < start:
        return f"ends before it starts (start {start}, end {end} ns)"
    t = end * 1e-9
    if not lim.min_ts <= t <= lim.max_ts:
        return f"end time {t:g} s is outside [{lim.min_ts:g}, {lim.max_ts:g}]"
    return f"duration {(end - start) * 1e-9:g} s exceeds the limit of {lim.max_value_s:g} s"
