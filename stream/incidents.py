"""Incidents: many keys shifting together page once.

``IncidentGrouper`` is fed shift events in the order they are detected and groups
shifts of the same direction whose ``at`` lie within ``window_intervals`` snapshot
intervals of each other (the whole group spans at most that much event time). When a
group first holds ``min_keys`` distinct keys it emits one ``incident`` record; every
later key that joins emits the record again with the same ``id`` and ``"update": true``
(so a consumer can replace the earlier one). The ``id`` is derived from the founding
members' shift ids (sorted), so the same input gives the same incidents, byte for byte.

No I/O and no wall clock: ``detected_at`` is the ``detected_at`` of the shift that
completed or grew the incident. Retractions do not shrink an incident (it did page);
a retracted shift that has not joined one yet is forgotten. Memory is bounded: shifts
and incidents older than ``retain_intervals`` behind the newest ``at`` are dropped, and
at most ``max_pending`` unmatched shifts are kept per direction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .records import ShiftEvent

__all__ = ["Incident", "IncidentConfig", "IncidentGrouper", "incident_id"]

_STATE_VERSION = 1


def incident_id(shift_ids: list[str]) -> str:
    """Stable id of an incident from its founding members' shift ids."""
    h = hashlib.sha256(("incident\x00" + "\x00".join(sorted(shift_ids))).encode()).hexdigest()
    return h[:20]


@dataclass(slots=True, frozen=True)
class IncidentConfig:
    min_keys: int = 3
    window_intervals: float = 3.0
    retain_intervals: float = 20.0
    max_pending: int = 10_000

    def __post_init__(self) -> None:
        if self.min_keys < 2:
            raise ValueError(f"min_keys must be >= 2, got {self.min_keys}")
        if not self.window_intervals > 0:
            raise ValueError(f"window_intervals must be > 0, got {self.window_intervals}")
        if self.retain_intervals < self.window_intervals:
            raise ValueError("retain_intervals must be >= window_intervals")


@dataclass(slots=True, frozen=True)
class Incident:
    """One incident record (wire format ``type: incident``, version 1)."""

    id: str
    direction: str
    first_at: float
    last_at: float
    keys: tuple[str, ...]
    shift_ids: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    detected_at: float
    update: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "incident",
            "version": 1,
            "id": self.id,
            "direction": self.direction,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "keys": list(self.keys),
            "shift_ids": list(self.shift_ids),
            "labels": dict(self.labels),
            "detected_at": self.detected_at,
            "update": self.update,
        }


@dataclass(slots=True)
class _Member:
    id: str
    key: str
    at: float
    labels: dict[str, str] | None


@dataclass(slots=True)
class _Open:
    id: str
    direction: str
    members: list[_Member] = field(default_factory=list)

    @property
    def first_at(self) -> float:
        return min(m.at for m in self.members)

    @property
    def last_at(self) -> float:
        return max(m.at for m in self.members)


def _member(event: ShiftEvent | Mapping[str, Any]) -> tuple[str, str, _Member, float, float]:
    """(type, direction, member, interval, detected_at) of a shift event or its JSON."""
    d = event.to_json() if isinstance(event, ShiftEvent) else event
    try:
        labels = d.get("labels")
        lab = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else None
        m = _Member(str(d["id"]), str(d["key"]), float(d["at"]), lab)
        interval = float(d.get("snapshot_interval_s", 30.0))
        return str(d["type"]), str(d.get("direction", "")), m, interval, float(d.get("detected_at", d["at"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"not a shift event: {type(e).__name__}: {e}") from None


def _shared_labels(members: list[_Member]) -> tuple[tuple[str, str], ...]:
    if any(m.labels is None for m in members):
        return ()
    common = dict(members[0].labels or {})
    for m in members[1:]:
        common = {k: v for k, v in common.items() if (m.labels or {}).get(k) == v}
    return tuple(sorted(common.items()))


class IncidentGrouper:
    """Groups shift events into incidents; ``update(event) -> list[Incident]``
    (ValueError on a record that is not a shift event; the state is then unchanged)."""

    def __init__(self, config: IncidentConfig | None = None) -> None:
        self.config = config or IncidentConfig()
        self._pending: dict[str, list[_Member]] = {}
        self._open: list[_Open] = []
        self._newest_at: float | None = None
        self._interval = 30.0

    def update(self, event: ShiftEvent | Mapping[str, Any]) -> list[Incident]:
        kind, direction, m, interval, detected_at = _member(event)
        if kind == "retraction":
            for lst in self._pending.values():
                lst[:] = [p for p in lst if p.id != m.id]
            return []
        if kind != "shift":
            return []
        self._interval = interval
        self._newest_at = m.at if self._newest_at is None else max(self._newest_at, m.at)
        self._expire()
        span = self.config.window_intervals * interval
        joined = self._join_open(direction, m, span, detected_at)
        if joined is not None:
            return joined
        return self._try_found(direction, m, span, detected_at)

    def _join_open(self, direction: str, m: _Member, span: float, detected_at: float) -> list[Incident] | None:
        for inc in self._open:
            if inc.direction != direction:
                continue
            if any(x.id == m.id for x in inc.members):
                return []
            lo, hi = min(inc.first_at, m.at), max(inc.last_at, m.at)
            if hi - lo <= span:
                if any(x.key == m.key for x in inc.members):
                    return []  # a key counts once; its second shift adds nothing
                inc.members.append(m)
                return [self._record(inc, detected_at, update=True)]
        return None

    def _try_found(self, direction: str, m: _Member, span: float, detected_at: float) -> list[Incident]:
        pending = self._pending.setdefault(direction, [])
        if any(p.id == m.id for p in pending):
            return []
        pending.append(m)
        pending.sort(key=lambda p: (p.at, p.id))
        if len(pending) > self.config.max_pending:
            del pending[0]
        for start in pending:
            if not (start.at <= m.at <= start.at + span):
                continue
            group: dict[str, _Member] = {}
            for p in pending:
                if start.at <= p.at <= start.at + span and p.key not in group:
                    group[p.key] = p
            if len(group) >= self.config.min_keys:
                members = sorted(group.values(), key=lambda p: (p.at, p.id))
                inc = _Open(incident_id([p.id for p in members]), direction, members)
                taken = {p.id for p in members}
                pending[:] = [p for p in pending if p.id not in taken]
                self._open.append(inc)
                return [self._record(inc, detected_at, update=False)]
        return []

    def _record(self, inc: _Open, detected_at: float, update: bool) -> Incident:
        members = sorted(inc.members, key=lambda p: (p.at, p.id))
        return Incident(
            id=inc.id,
            direction=inc.direction,
            first_at=inc.first_at,
            last_at=inc.last_at,
            keys=tuple(sorted({p.key for p in members})),
            shift_ids=tuple(sorted(p.id for p in members)),
            labels=_shared_labels(members),
            detected_at=detected_at,
            update=update,
        )

    def _expire(self) -> None:
        assert self._newest_at is not None
        horizon = self._newest_at - self.config.retain_intervals * self._interval
        self._open = [o for o in self._open if o.last_at >= horizon]
        for lst in self._pending.values():
            lst[:] = [p for p in lst if p.at >= horizon]

    # ---- checkpoint state ----

    def to_bytes(self) -> bytes:
        """Version byte, then JSON of the config and the open state (for checkpoints)."""
        c = self.config
        doc = {
            "config": [c.min_keys, c.window_intervals, c.retain_intervals, c.max_pending],
            "newest_at": self._newest_at,
            "interval": self._interval,
            "pending": {d: [_dump(p) for p in lst] for d, lst in sorted(self._pending.items())},
            "open": [{"id": o.id, "direction": o.direction, "members": [_dump(p) for p in o.members]} for o in self._open],
        }
        return bytes([_STATE_VERSION]) + json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, b: bytes) -> "IncidentGrouper":
        if not b or b[0] != _STATE_VERSION:
            raise ValueError("incident grouper state: unknown version")
        try:
            doc = json.loads(b[1:])
            g = cls(IncidentConfig(*doc["config"]))
            g._newest_at = None if doc["newest_at"] is None else float(doc["newest_at"])
            g._interval = float(doc["interval"])
            g._pending = {str(d): [_load(p) for p in lst] for d, lst in doc["pending"].items()}
            g._open = [_Open(str(o["id"]), str(o["direction"]), [_load(p) for p in o["members"]]) for o in doc["open"]]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"incident grouper state: {e}") from None
        return g


def _dump(m: _Member) -> list[Any]:
    return [m.id, m.key, m.at, m.labels]


def _load(x: list[Any]) -> _Member:
    i, k, at, lab = x
    return _Member(str(i), str(k), float(at), None if lab is None else {str(a): str(b) for a, b in lab.items()})
