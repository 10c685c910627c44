"""Output records of the pipeline: snapshots and shift events.

Their JSON form is the public wire format (schemas in ``stream/schemas``); the
field order is fixed and no wall clock enters them, so the same input gives the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = ["Snapshot", "MetricMove", "ShiftEvent", "dumps", "event_id", "iso"]



def iso(t: float) -> str:
    """RFC 3339 UTC with millisecond precision."""
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def event_id(key: str, at: float) -> str:
    """Stable id of a shift: the same (key, at) always gives the same id, so
    consumers can de-duplicate re-deliveries (at-least-once)."""
    h = hashlib.sha256(f"{key}\x00{at!r}".encode("utf-8", "surrogatepass")).hexdigest()
    return h[:20]


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


DEFAULT_NAMES: tuple[str, ...] = ("p50", "p90", "p99")

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True, frozen=True)
class Snapshot:
    """Percentiles of one key over one closed event-time window [start, end).

    ``q`` holds the configured quantiles in the order of ``names`` (default p50, p90,
    p99); ``snap.p99`` reads one by name. ``windows`` > 1 when low traffic pooled
    consecutive windows into this one.
    """

    key: str
    start: float
    end: float
    count: int
    mean: float
    q: tuple[float, ...]
    min: float
    max: float
    names: tuple[str, ...] = DEFAULT_NAMES
    labels: Labels = ()
    windows: int = 1

    def __getattr__(self, name: str) -> float:
        try:
            return self.q[object.__getattribute__(self, "names").index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def quantiles(self) -> dict[str, float]:
        return dict(zip(self.names, self.q))

    def metrics(self) -> dict[str, float]:
        return {"mean": self.mean, **self.quantiles()}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "snapshot", "version": 1, "key": self.key}
        if self.labels:
            out["labels"] = dict(self.labels)
        out.update(start=self.start, end=self.end, count=self.count, mean=self.mean)
        out.update(zip(self.names, self.q))
        out.update(min=self.min, max=self.max, unit="seconds")
        if self.windows != 1:
            out["windows"] = self.windows
        return out


@dataclass(slots=True, frozen=True)
class MetricMove:
    metric: str
    before: float
    after: float
    relative_change: float
    pvalue: float

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "before": self.before,
            "after": self.after,
            "relative_change": self.relative_change,
            "pvalue": self.pvalue,
        }


@dataclass(slots=True, frozen=True)
class ShiftEvent:
    """One shift of one key: every metric that moved, with the evidence."""

    kind: str  # "shift" | "retraction"
    id: str
    key: str
    at: float
    detected_at: float
    direction: str
    pvalue: float
    metrics: tuple[MetricMove, ...]
    snapshots_before: int
    snapshots_after: int
    samples_before: int
    samples_after: int
    snapshot_interval_s: float
    detector: str
    labels: Labels = ()
    #: A few real values (seconds) from before and after ``at``, oldest first.
    examples_before: tuple[float, ...] = ()
    examples_after: tuple[float, ...] = ()
    #: Snapshot windows pooled per detector point (low-traffic keys); 1 when not pooled.
    pooled_windows: int = 1

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "version": 1, "id": self.id, "key": self.key}
        if self.labels:
            out["labels"] = dict(self.labels)
        out.update(self._body())
        if self.examples_before or self.examples_after:
            out["examples"] = {"before": list(self.examples_before), "after": list(self.examples_after)}
        if self.pooled_windows != 1:
            out["pooled_windows"] = self.pooled_windows
            out["pooled_window_s"] = self.pooled_windows * self.snapshot_interval_s
        return out

    def _body(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "at_iso": iso(self.at),
            "detected_at": self.detected_at,
            "direction": self.direction,
            "pvalue": self.pvalue,
            "metrics": [m.to_json() for m in self.metrics],
            "snapshots_before": self.snapshots_before,
            "snapshots_after": self.snapshots_after,
            "samples_before": self.samples_before,
            "samples_after": self.samples_after,
            "unit": "seconds",
            "snapshot_interval_s": self.snapshot_interval_s,
            "detector": self.detector,
        }
