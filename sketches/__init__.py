"""Percentile estimators and moments in bounded memory (numpy only, no I/O)."""

from ._varint import SketchDecodeError
from .logbuckets import LogBuckets
from .moments import Moments

__all__ = ["LogBuckets", "Moments", "SketchDecodeError"]
