"""Per-sink filters: which events a sink receives (labels glob, key glob, direction,
minimum relative change). Retractions are not filtered here: a retraction goes to a
sink exactly when the shift it retracts went there (the runner decides that)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Mapping

from .config import Filter

__all__ = ["matches", "largest_change"]


def largest_change(event: Mapping[str, Any]) -> float:
    """The largest |relative change| of the moved percentiles (0 when none)."""
    vals = [abs(float(m.get("relative_change", 0.0))) for m in event.get("metrics") or [] if isinstance(m, Mapping)]
    return max(vals, default=0.0)


def _labels_match(f: Filter, labels: Mapping[str, Any]) -> bool:
    for name, glob in f.labels:
        v = labels.get(name)
        if v is None or not fnmatchcase(str(v), glob):
            return False
    return True


def matches(f: Filter, event: Mapping[str, Any]) -> bool:
    """True when the shift or incident passes the filter."""
    if event.get("direction") not in f.directions:
        return False
    labels = event.get("labels") if isinstance(event.get("labels"), Mapping) else {}
    if not _labels_match(f, labels):
        return False
    keys = [event["key"]] if "key" in event else list(event.get("keys") or [])
    if f.keys and not any(fnmatchcase(str(k), g) for k in keys for g in f.keys):
        return False
    if event.get("type") == "shift" and largest_change(event) < f.min_relative_change:
        return False
    return True
