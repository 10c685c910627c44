"""/metrics text, parsed the way Prometheus parses it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.metrics import make_registry, render
from stream.pipeline import Pipeline, PipelineConfig

from datagen import as_messages, shift_stream


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_quantiles_counters_and_names():
    events, values = shift_stream(snapshots=20, shift_snapshot=99, per_snapshot=200)
    p = Pipeline(PipelineConfig(snapshot_interval_s=10))
    for m in as_messages(events, 100):
        p.feed(m)
    p.feed(b"oops")
    p.feed(b'{"key":"A","value":-1,"ts":1763800000}')
    text = render(make_registry(p)).decode()
    s = samples(text)
    exact = values["A"] / 1000
    for q in ("0.5", "0.9", "0.99"):
        got = s[("shiftwatch_latency_seconds", (("key", "A"), ("quantile", q)))]
        assert got == pytest.approx(np.quantile(exact, float(q)), rel=0.02)
    assert s[("shiftwatch_latency_seconds_count", (("key", "A"),))] == len(exact)
    assert s[("shiftwatch_latency_seconds_sum", (("key", "A"),))] == pytest.approx(exact.sum())
    assert s[("shiftwatch_events_accepted_total", ())] == 8000
    assert s[("shiftwatch_events_rejected_total", (("reason", "invalid_json"),))] == 1
    assert s[("shiftwatch_events_rejected_total", (("reason", "negative_value"),))] == 1
    assert s[("shiftwatch_messages_total", ())] == 82
    assert s[("shiftwatch_keys", ())] == 2
    assert "# TYPE shiftwatch_latency_seconds summary" in text
    # Every metric name follows the base-unit conventions.
    for name, _ in s:
        assert name.startswith("shiftwatch_")


def test_label_cap_exports_most_recent_keys_and_says_how_many_were_left_out():
    p = Pipeline(PipelineConfig(snapshot_interval_s=10))
    p.feed(json.dumps([{"key": f"k{i}", "value": 1, "ts": 1763800000 + i} for i in range(10)]).encode())
    s = samples(render(make_registry(p, max_label_keys=3)).decode())
    keys = {dict(lbl)["key"] for (name, lbl) in s if name == "shiftwatch_latency_seconds_count"}
    assert keys == {"k7", "k8", "k9"}
    assert s[("shiftwatch_keys_unexported", ())] == 7
