"""Percentile estimators and moments in bounded memory (numpy only, no I/O).

Every estimator implements :class:`Estimator` (``base.py``): ``update``,
``update_many``, ``merge`` (and ``+``), ``quantile(s)``, ``count``, ``to_bytes`` /
``from_bytes`` and ``nbytes`` (serialized size). The stream picks one by name with
:func:`make_estimator` from :data:`ESTIMATORS` (``registry.py``):

* ``logbuckets`` — :class:`LogBuckets`, base-2 exponential buckets in a byte budget;
  exactly mergeable, the default.
* ``p2`` — :class:`P2Quantiles`, P² markers for a fixed quantile set; merge is an
  approximation (see ``p2.py``).
* ``reservoir`` — :class:`Reservoir`, a seeded uniform sample; merges by weighted
  sampling.

:class:`Moments` sits beside them (count, exact sum, mean, variance, min, max).
Histogram formats (pure functions, no I/O): ``otel`` (OTLP exponential points:
import, export, downscale, cumulative deltas, exact merge), ``explicit`` (OTLP or
classic explicit-bounds points spread into a LogBuckets), ``prometheus`` (native
buckets of a chosen schema, classic ``le`` counts).

Adding an estimator ``foo``:

1. ``sketches/foo.py``: ``class Foo(Estimator)`` with the abstract methods and a
   ``create(*, max_bytes, quantiles, seed)`` classmethod (use what applies); its
   ``to_bytes`` starts with a version byte and ``from_bytes`` reads with
   ``_varint.Reader`` (bounded, raises ``ValueError``);
2. ``tests/test_sketches_foo.py`` (the shared contract tests in
   ``tests/test_sketches_base.py`` run over every registered estimator already);
3. one line ``"foo": Foo,`` in ``registry.py``.
"""

from ._varint import SketchDecodeError
from .base import Estimator
from .explicit import check_explicit, explicit_delta, explicit_to_sketch, merge_explicit
from .logbuckets import LogBuckets
from .mapping import LogMapping
from .moments import Moments
from .otel import (
    ExponentialHistogramDataPoint,
    OtelBuckets,
    PromNativeHistogram,
    check_point,
    downscale_point,
    from_otel,
    from_prometheus,
    merge_otel,
    point_delta,
    to_otel,
    to_prometheus,
)
from .p2 import P2Quantiles
from .prometheus import NativeBuckets, le_counts, native_buckets
from .registry import DEFAULT_ESTIMATOR, ESTIMATORS, make_estimator
from .reservoir import Reservoir
from .store import BucketStore

__all__ = [
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "Estimator",
    "make_estimator",
    "ExponentialHistogramDataPoint",
    "OtelBuckets",
    "PromNativeHistogram",
    "from_otel",
    "from_prometheus",
    "to_otel",
    "to_prometheus",
    "check_point",
    "downscale_point",
    "point_delta",
    "merge_otel",
    "check_explicit",
    "explicit_to_sketch",
    "merge_explicit",
    "explicit_delta",
    "NativeBuckets",
    "native_buckets",
    "le_counts",
    "BucketStore", "LogBuckets", "LogMapping", "Moments", "P2Quantiles", "Reservoir", "SketchDecodeError"]
