"""Change-point detectors (numpy/scipy only, no I/O).

Configure once, then ``detect(values)`` (batch) or ``update(...)`` (streaming).
"""

from .edivisive import EDivisive
from .records import ChangePoint, MetricChange, ShiftDecision, StreamEvent
from .snapshot import SnapshotShiftDetector
from .streaming import StreamingEDivisive

__all__ = ["EDivisive", "StreamingEDivisive", "SnapshotShiftDetector", "ChangePoint", "MetricChange", "ShiftDecision", "StreamEvent"]
