"""The two shapes a detector takes, and the registries that name them.

Why: the stream picks its detector by name (``--detector NAME``) and must know nothing
of a method's insides. A batch detector turns a whole series into change points; a
streaming detector takes one key's closed snapshots in order and returns decisions,
and its state survives a checkpoint. Adding a method is one new module, its test, and
one line in ``BATCH_DETECTORS`` or ``STREAMING_DETECTORS`` below. Entries are
``"module:Class"`` strings imported on first use, so this module imports no method
and a method module can import this one.

Every batch detector also runs in the stream: ``make_streaming`` wraps it in
``detectors.adapter.BatchStreamingDetector`` (the batch method over the key's recent
snapshots, each change point reported once).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .records import ChangePoint, ShiftDecision

__all__ = [
    "BATCH_DETECTORS",
    "DEFAULT_METRICS",
    "STREAMING_DETECTORS",
    "BatchDetector",
    "Decision",
    "Series",
    "StreamingDetector",
    "batch_class",
    "make_batch",
    "make_streaming",
    "option_names",
    "streaming_class",
    "streaming_names",
]

Series = Union[Sequence[float], np.ndarray]
#: What a streaming detector returns: a shift, or the retraction of one.
Decision = ShiftDecision
#: The quantile set a detector watches unless told otherwise (the stream passes its own).
DEFAULT_METRICS: tuple[str, ...] = ("p50", "p90", "p99")


class BatchDetector(ABC):
    """Configure once, then ``detect(series)``: change points, sorted by index, where
    ``index`` is the first point of the new segment (0-based).

    A method whose decision at a point depends only on ``reach`` points either side
    may say so with a ``reach`` attribute; the stream adapter then re-runs it on the
    newest points only.
    """

    __slots__ = ()

    @abstractmethod
    def detect(self, series: Series) -> list[ChangePoint]:
        """Change points of ``series``; ``ValueError`` on a non-finite or non-1-d series."""


class StreamingDetector(ABC):
    """One key's detector: ``update`` per closed snapshot, decisions in order.

    Constructed as ``cls(metrics=..., lower_is_better=..., **options)``. ``values``
    maps metric names to the snapshot's values; a snapshot missing a metric, with a
    non-finite value or too few samples is ignored (never an exception). The same
    ``at`` is never reported twice; a retraction names the ``at`` it retracts.
    ``to_bytes`` is deterministic and ``from_bytes(to_bytes())`` continues identically;
    ``from_bytes`` raises ``ValueError`` on anything malformed.
    """

    __slots__ = ()

    @abstractmethod
    def update(self, t: float, values: Mapping[str, float], count: int) -> list[Decision]:
        """Feed one closed snapshot (time ``t``, ``count`` samples)."""

    @abstractmethod
    def to_bytes(self) -> bytes:
        """The whole state, version byte first."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, b: bytes) -> "StreamingDetector":
        """Inverse of ``to_bytes``."""


# One line per method: name -> "module:Class" (modules under detectors/).
BATCH_DETECTORS: Mapping[str, str] = MappingProxyType(
    {
        "edivisive": "edivisive:EDivisive",
        "perfherder": "perfherder:PerfherderTTest",
        "mdl": "mdl:MDLGrouping",
        "talos": "talos:TalosMixture",
    }
)
STREAMING_DETECTORS: Mapping[str, str] = MappingProxyType(
    {
        "edivisive": "snapshot:SnapshotShiftDetector",  # the stream's default
        "trend": "seasonal:SeasonalShiftDetector",  # trend-aware: daily load curves and drifts are not shifts
    }
)


def _resolve(table: Mapping[str, str], name: str, what: str) -> type:
    target = table.get(name)
    if target is None:
        raise ValueError(f"unknown {what} detector {name!r}; choices: {', '.join(sorted(table))}")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def batch_class(name: str) -> type[BatchDetector]:
    """The class registered as batch detector ``name``; ``ValueError`` listing choices."""
    return _resolve(BATCH_DETECTORS, name, "batch")


def streaming_names() -> tuple[str, ...]:
    """Every name ``make_streaming`` accepts: streaming detectors and adapted batch ones."""
    return tuple(sorted(set(STREAMING_DETECTORS) | set(BATCH_DETECTORS)))


def streaming_class(name: str) -> type[StreamingDetector] | None:
    """The native streaming class for ``name``, None for an adapted batch detector."""
    if name in STREAMING_DETECTORS:
        return _resolve(STREAMING_DETECTORS, name, "streaming")
    if name in BATCH_DETECTORS:
        return None
    raise ValueError(f"unknown detector {name!r}; choices: {', '.join(streaming_names())}")


def make_batch(name: str, **options: Any) -> BatchDetector:
    """``batch_class(name)(**options)``; a bad option is a ``ValueError`` naming it."""
    cls = batch_class(name)
    _check_options(cls, name, options)
    return _construct(cls, name, options)


def make_streaming(
    name: str, metrics: Sequence[str] = DEFAULT_METRICS, lower_is_better: bool = True, **options: Any
) -> StreamingDetector:
    """A streaming detector for one key, by name (see ``streaming_names()``).

    ``options`` are the class's keyword arguments; for an adapted batch detector they
    are the adapter's (``history``, ``min_count``, ...) and the batch detector's own.
    """
    cls = streaming_class(name)
    if cls is None:
        from .adapter import BatchStreamingDetector

        return BatchStreamingDetector.for_batch(name, metrics=metrics, lower_is_better=lower_is_better, **options)
    _check_options(cls, name, options)
    return _construct(cls, name, {"metrics": tuple(metrics), "lower_is_better": lower_is_better, **options})


def option_names(cls: type) -> tuple[str, ...]:
    """Keyword options a detector class accepts (dataclass fields or ``__init__`` keywords)."""
    return tuple(_option_defaults(cls))


def _option_defaults(cls: type) -> dict[str, Any]:
    if dataclasses.is_dataclass(cls):
        return {f.name: f.default for f in dataclasses.fields(cls) if f.init}
    params = inspect.signature(cls.__init__).parameters.values()
    skip = ("self", "batch", "metrics", "lower_is_better")
    return {p.name: p.default for p in params if p.name not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _construct(cls: type, name: str, kwargs: Mapping[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except TypeError as e:  # a value of the wrong type: still the caller's bad option
        raise ValueError(f"bad option for detector {name!r}: {e}") from None


def _check_options(cls: type, name: str, options: Mapping[str, Any], extra: Sequence[str] = ()) -> None:
    """Unknown names, and values of another type than the option's default, are refused
    here with the option's name (the constructor checks ranges)."""
    defaults = _option_defaults(cls)
    for key, value in options.items():
        if key not in defaults:
            raise ValueError(f"unknown option {key!r} for detector {name!r}; options: {', '.join((*extra, *defaults))}")
        d = defaults[key]
        if isinstance(d, bool):
            ok = isinstance(value, bool)
        elif isinstance(d, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(d, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = True
        if not ok:
            raise ValueError(f"option {key!r} of detector {name!r} must be a {type(d).__name__}, not {value!r}")
