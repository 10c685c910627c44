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

SNAPSHOT_QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


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


@dataclass(slots=True, frozen=True)
class Snapshot:
    """Percentiles of one key over one closed event-time window [start, end)."""

    key: str
    start: float
    end: float
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    def metrics(self) -> dict[str, float]:
        return {"mean": self.mean, "p50": self.p50, "p90": self.p90, "p99": self.p99}

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "version": 1,
            "key": self.key,
            "start": self.start,
            "end": self.end,
            "count": self.count,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "min": self.min,
            "max": self.max,
            "unit": "seconds",
        }


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

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "version": 1,
            "id": self.id,
            "key": self.key,
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
