"""What one step of the pipeline produces, and the counters that reconcile it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import DeadLetter
from .records import ShiftEvent, Snapshot

__all__ = ["Output", "Stats"]


@dataclass(slots=True)
class Stats:
    """Counters; they reconcile: received == accepted + rejected."""

    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    late: int = 0
    snapshots: int = 0
    shifts: int = 0
    retractions: int = 0
    evicted: int = 0
    replayed: int = 0
    checkpoint_errors: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    #: Input the Kafka client could not even hand over (undecodable record batches).
    input_errors_by_reason: dict[str, int] = field(default_factory=dict)
    shifts_by_key_direction: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(slots=True)
class Output:
    snapshots: list[Snapshot] = field(default_factory=list)
    shifts: list[ShiftEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    #: Two-stage topology, stage 1: closed window partials, and source partition -> watermark.
    partials: list[Any] = field(default_factory=list)
    watermarks: dict[int, float] = field(default_factory=dict)

    def extend(self, other: "Output") -> None:
        self.snapshots.extend(other.snapshots)
        self.shifts.extend(other.shifts)
        self.dead.extend(other.dead)
        self.partials.extend(other.partials)
        self.watermarks.update(other.watermarks)
