"""The README documents every option and every metric the worker exports."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from stream.metrics import make_registry, render
from stream.pipeline import Pipeline, PipelineConfig
from stream.settings import OPTIONS, markdown_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_configuration_table_is_the_settings_table():
    """Regenerate with `python -m stream.settings` when an option changes."""
    assert markdown_table() in README
    for opt in OPTIONS:
        assert f"`{opt.env}`" in README, opt.name


def test_every_exported_metric_is_in_the_metrics_table():
    p = Pipeline(PipelineConfig(snapshot_interval_s=1))
    p.feed(json.dumps([{"key": "k", "value": 1, "ts": 1763800000 + i} for i in range(5)]).encode())
    names = set()
    for fam in text_string_to_metric_families(render(make_registry(p, last_event_wallclock=lambda: 1.0)).decode()):
        names.add(fam.name + ("_total" if fam.type == "counter" else ""))
    assert names, "no metrics exported"
    for name in names:
        assert f"| `{name}` |" in README, name
