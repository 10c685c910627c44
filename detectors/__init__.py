"""Change-point detectors (numpy/scipy only, no I/O).

Configure once, then ``detect(values)`` (batch) or ``update(...)`` (streaming).
"""

from .edivisive import EDivisive
from .records import ChangePoint, MetricChange, ShiftDecision, StreamEvent
from .snapshot import SnapshotShiftDetector

__all__ = ["EDivisive", "SnapshotShiftDetector", "ChangePoint", "MetricChange", "ShiftDecision", "StreamEvent"]
