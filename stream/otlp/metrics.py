"""Histogram metrics -> :class:`~stream.events.HistPoint` deltas per series.

Series key: ``service.name`` + metric name + the point's attribute values (sorted by
attribute name); labels ``{"service.name", "metric.name", **attributes}``. Only
histograms whose unit is a time unit (or empty: the decoder's ``unit``) are latencies;
other metrics (gauges, sums, byte-size histograms) are counted as ignored, not errors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from ..events import DecodeLimits, Decoded, HistPoint
from ..labels import compose_key
from .attrs import attr_dict, service_name
from .cumulative import CumulativeDifferencer
from .points import Hist, PointReject, from_explicit, from_exponential
from .tosketch import hist_to_sketch

__all__ = ["MetricConfig", "TIME_UNITS", "decode_metrics"]

#: Metric units (UCUM, as OpenTelemetry writes them) -> seconds per unit.
TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}
_DELTA, _CUMULATIVE = 1, 2

DeadFn = Callable[[str, str, bytes, int | None], None]


@dataclass(slots=True, frozen=True)
class MetricConfig:
    default_scale: float  # seconds per unit for metrics without a unit
    names: frozenset[str] | None
    sketch_bytes: int
    limits: DecodeLimits


@dataclass(slots=True)
class _Ctx:
    svc: str
    res_id: bytes
    scope: str
    metric: str
    unit_scale: float


def _items(d: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(d.items())


def decode_metrics(req: Any, cfg: MetricConfig, diff: CumulativeDifferencer, out: Decoded, dead: DeadFn, default_ts: float | None) -> int:
    """Append the deltas of ``req``'s latency histograms to ``out.hists``; returns the
    number of metrics ignored (not latency histograms)."""
    ignored = 0
    for ri, rm in enumerate(req.resource_metrics):
        svc = service_name(rm.resource)
        if svc is None:
            dead("missing_service_name", f"resource_metrics[{ri}]: resource has no string service.name", rm.SerializeToString(), ri)
            continue
        res_id = msgspec.msgpack.encode(_items(attr_dict(rm.resource.attributes)))
        for si, sm in enumerate(rm.scope_metrics):
            scope = f"{sm.scope.name}\x00{sm.scope.version}"
            for mi, m in enumerate(sm.metrics):
                where = f"resource_metrics[{ri}].scope_metrics[{si}].metrics[{mi}] {m.name!r}"
                ignored += _metric(m, _Ctx(svc, res_id, scope, m.name, 0.0), cfg, diff, out, dead, default_ts, where, ri)
    return ignored


def _metric(m: Any, ctx: _Ctx, cfg: MetricConfig, diff: CumulativeDifferencer, out: Decoded, dead: DeadFn,
            default_ts: float | None, where: str, index: int) -> int:
    kind = m.WhichOneof("data")
    if kind not in ("histogram", "exponential_histogram") or (cfg.names is not None and m.name not in cfg.names):
        return 1
    scale = TIME_UNITS.get(m.unit) if m.unit else cfg.default_scale
    if scale is None:
        return 1
    ctx.unit_scale = scale
    data = getattr(m, kind)
    temporality = data.aggregation_temporality
    parse = from_explicit if kind == "histogram" else from_exponential
    for pi, dp in enumerate(data.data_points):
        try:
            if temporality not in (_DELTA, _CUMULATIVE):
                raise PointReject("bad_histogram", f"aggregation_temporality {temporality} is neither DELTA nor CUMULATIVE")
            h = parse(dp)
            attrs = attr_dict(dp.attributes)
            if temporality == _CUMULATIVE:
                h = diff.update(_stream_id(ctx, kind, attrs), h)
            if h is not None and h.count:  # an empty interval adds nothing
                _emit(h, attrs, ctx, cfg, out, default_ts)
        except PointReject as r:
            dead(r.reason, f"{where}.data_points[{pi}]: {r.error}", dp.SerializeToString(), index)
        except ValueError as e:  # the sketch refused the counts
            dead("bad_histogram", f"{where}.data_points[{pi}]: {e}", dp.SerializeToString(), index)
    return 0


def _stream_id(ctx: _Ctx, kind: str, attrs: dict[str, str]) -> bytes:
    body = msgspec.msgpack.encode((ctx.scope, ctx.metric, kind, _items(attrs)))
    return hashlib.blake2b(ctx.res_id + b"\x00" + body, digest_size=16).digest()


def _emit(h: Hist, attrs: dict[str, str], ctx: _Ctx, cfg: MetricConfig, out: Decoded, default_ts: float | None) -> None:
    lim = cfg.limits
    if h.time_ns:
        ts = h.time_ns * 1e-9
    elif default_ts is not None:
        ts = default_ts
    else:
        raise PointReject("bad_timestamp", "time_unix_nano is 0 and the record has no timestamp")
    if not lim.min_ts <= ts <= lim.max_ts:
        raise PointReject("bad_timestamp", f"time {ts:g} s is outside [{lim.min_ts:g}, {lim.max_ts:g}]")
    items = _items(attrs)
    key = compose_key([ctx.svc, ctx.metric, *(v for _, v in items)])
    if len(key) > lim.max_key_chars:
        raise PointReject("bad_key", f"series key is {len(key)} characters, the limit is {lim.max_key_chars}")
    sk = hist_to_sketch(h, ctx.unit_scale, cfg.sketch_bytes)
    out.hists.append(HistPoint(key, ts, sk, sk.count, sk.sum, sk.min, sk.max))
    if key not in out.labels:
        out.labels[key] = {"service.name": ctx.svc, "metric.name": ctx.metric, **attrs}
