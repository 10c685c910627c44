"""Change-point detectors (numpy/scipy only, no I/O)."""

from .edivisive import EDivisive
from .records import ChangePoint, MetricChange, ShiftDecision, StreamEvent

__all__ = ["EDivisive", "ChangePoint", "MetricChange", "ShiftDecision", "StreamEvent"]
