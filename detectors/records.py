"""Records shared by every detector: frozen, slotted, plain data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["regression", "improvement"]
DecisionKind = Literal["shift", "retraction"]


@dataclass(slots=True, frozen=True)
class ChangePoint:
    """One change point in a series.

    ``index`` is the first point of the new segment (0-based). Statistics are for the
    segments between this change point and its neighbours in the final answer.
    """

    index: int
    pvalue: float
    mean_before: float
    mean_after: float
    std_before: float
    std_after: float
    #: mean_after / mean_before - 1 (0 when mean_before is 0, as Otava does).
    relative_change: float
    #: max(|forward|, |backward|) relative change, the quantity Otava's merge uses.
    magnitude: float
    #: Divergence of the split that proposed this point (0 when not from E-Divisive).
    qhat: float = 0.0


@dataclass(slots=True, frozen=True)
class StreamEvent:
    """A change point confirmed or retracted by a streaming detector.

    ``id`` is stable: derived from the stream position of the change, so a replay of
    the same stream produces the same ids, and a retraction carries the id it retracts.
    """

    kind: DecisionKind
    id: str
    index: int
    t: float
    change: ChangePoint


@dataclass(slots=True, frozen=True)
class MetricChange:
    """How one metric (p50, p90, ...) moved at a shift."""

    metric: str
    before: float
    after: float
    relative_change: float
    pvalue: float


@dataclass(slots=True, frozen=True)
class ShiftDecision:
    """One shift of a key (all metrics that moved together), or its retraction."""

    kind: DecisionKind
    at: float
    index: int
    direction: Direction
    pvalue: float
    changes: tuple[MetricChange, ...]
    snapshots_before: int
    snapshots_after: int
    samples_before: int
    samples_after: int
