"""Prometheus exposition of a pipeline's live state.

A custom collector reads the pipeline at scrape time instead of updating metric
objects per event: the hot path only bumps plain integers, and quantiles come
straight from the sketches. Each pipeline gets its own registry (no global state).
Scrapes run on the same event loop as the pipeline, so no locking is needed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .events import REASONS

if TYPE_CHECKING:  # pragma: no cover
    from .partitions import StateView

__all__ = ["PipelineCollector", "make_registry", "render", "CONTENT_TYPE", "EXPORTED_QUANTILES"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EXPORTED_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)


class PipelineCollector(Collector):
    """Collects shiftwatch_* metrics from a pipeline or a worker's partitioned state.

    ``max_label_keys`` caps the per-key series (the most recently updated keys
    are exported); ``shiftwatch_keys_unexported`` says how many were left out.
    """

    def __init__(
        self,
        pipeline: "StateView",
        max_label_keys: int = 1000,
        clock: Callable[[], float] = time.time,
        last_event_wallclock: Callable[[], float | None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.max_label_keys = max_label_keys
        self.clock = clock
        self.last_event_wallclock = last_event_wallclock

    def collect(self) -> Iterator[Metric]:
        p = self.pipeline
        s = p.stats
        summary = Metric("shiftwatch_latency_seconds", "All-time response-time quantiles per key (from the sketch).", "summary")
        snap = GaugeMetricFamily(
            "shiftwatch_snapshot_latency_seconds",
            "Response-time quantiles per key in the last closed snapshot window.",
            labels=["key", "quantile"],
        )
        exported = 0
        exported_keys: list[str] = []
        for st in p.keys_recent_first(self.max_label_keys):
            key = st.key
            exported += 1
            exported_keys.append(key)
            if st.moments.count:
                for q, v in zip(EXPORTED_QUANTILES, st.alltime_view().quantiles(list(EXPORTED_QUANTILES))):
                    summary.add_sample("shiftwatch_latency_seconds", {"key": key, "quantile": _fmt(q)}, float(v))
                summary.add_sample("shiftwatch_latency_seconds_sum", {"key": key}, float(st.moments.mean * st.moments.count))
                summary.add_sample("shiftwatch_latency_seconds_count", {"key": key}, float(st.moments.count))
            if st.recent:
                last = st.recent[-1]
                snap.add_metric([key, "0.5"], last.p50)
                snap.add_metric([key, "0.9"], last.p90)
                snap.add_metric([key, "0.99"], last.p99)
        yield summary
        yield snap
        yield CounterMetricFamily("shiftwatch_messages", "Kafka messages (or input lines) received.", value=s.messages)
        yield CounterMetricFamily("shiftwatch_events_accepted", "Events accepted into per-key state.", value=s.accepted)
        rej = CounterMetricFamily("shiftwatch_events_rejected", "Events rejected to the dead-letter output, by reason.", labels=["reason"])
        # Every reason from 0, so rate() and increase() see the first rejection.
        for reason in REASONS:
            rej.add_metric([reason], s.rejected_by_reason.get(reason, 0))
        yield rej
        yield CounterMetricFamily("shiftwatch_events_late", "Accepted events whose snapshot window had already closed.", value=s.late)
        yield CounterMetricFamily("shiftwatch_snapshots", "Snapshot windows closed.", value=s.snapshots)
        shifts = CounterMetricFamily("shiftwatch_shifts", "Shift events emitted, by key and direction.", labels=["key", "direction"])
        # Exported keys start at 0 in both directions, so increase() sees a key's first shift.
        for key in exported_keys:
            for direction in ("improvement", "regression"):
                shifts.add_metric([key, direction], s.shifts_by_key_direction.get((key, direction), 0))
        yield shifts
        yield CounterMetricFamily("shiftwatch_retractions", "Shift events later retracted.", value=s.retractions)
        n_keys = p.key_count()
        yield GaugeMetricFamily("shiftwatch_keys", "Live keys in this worker.", value=n_keys)
        yield GaugeMetricFamily("shiftwatch_keys_unexported", "Live keys left out of per-key series by the label cap.", value=max(0, n_keys - exported))
        yield CounterMetricFamily("shiftwatch_checkpoint_errors", "Checkpoint records that failed validation at restore (reported, not silently reset).", value=s.checkpoint_errors)
        yield CounterMetricFamily("shiftwatch_events_replayed", "Events skipped after a restart because the restored state already held them.", value=s.replayed)
        yield CounterMetricFamily("shiftwatch_keys_evicted", "Keys evicted by the live-key limit.", value=s.evicted)
        wall = self.last_event_wallclock() if self.last_event_wallclock else None
        if wall is not None:
            yield GaugeMetricFamily("shiftwatch_last_event_timestamp_seconds", "Wall-clock time the last event was processed.", value=wall)
        if p.max_ts > 0:
            yield GaugeMetricFamily(
                "shiftwatch_event_time_lag_seconds", "Wall clock minus the newest event time seen.", value=self.clock() - p.max_ts
            )


def _fmt(q: float) -> str:
    return repr(q)


def make_registry(pipeline: "StateView", **kwargs: object) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PipelineCollector(pipeline, **kwargs))  # type: ignore[arg-type]
    return reg


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
