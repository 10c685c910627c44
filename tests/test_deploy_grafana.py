"""deploy/grafana: the provisioned datasource, the dashboard provider, and the dashboard
JSON (queries use only the metrics of DEVELOPERS.md, one datasource uid throughout)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "shiftwatch.json"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
BUILTIN_METRICS = {"up"}  # Prometheus' own scrape health


def documented_metrics() -> set[str]:
    text = (ROOT / "DEVELOPERS.md").read_text()
    rows = re.findall(r"^\| `(shiftwatch_[a-z0-9_]+)` \| ([^|]+)\|", text, re.M)
    assert len(rows) >= 10, rows
    names = {n for n, _ in rows}
    names |= {n + s for n, kind in rows if kind.strip().startswith("histogram") for s in HISTOGRAM_SUFFIXES}
    return names


@pytest.fixture(scope="module")
def dash() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def datasource() -> dict:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert len(ds) == 1
    return ds[0]


def panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def queries(d: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, annotation and query variable."""
    out = []
    for p in panels(d):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t['refId']}", t["expr"]))
    for a in d["annotations"]["list"]:
        if a.get("datasource", {}).get("type") == "prometheus":
            expr = a.get("expr") or a.get("target", {}).get("expr")
            out.append((f"annotation {a['name']!r}", expr))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", q))
    return out


def metric_names(expr: str) -> set[str]:
    """Identifiers in metric position: not a function call, not inside {...}, not a label list."""
    e = re.sub(r"label_values\(([^,()]*),\s*\w+\s*\)", r"(\1)", expr)  # Grafana: label_values(metric, label)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)  # strings
    e = re.sub(r"\{[^}]*\}", "{}", e)  # matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\[[^\]]*\]", "[]", e)  # ranges
    e = re.sub(r"\$\w+|\$\{[^}]*\}", "", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word in {"by", "without", "on", "ignoring", "and", "or", "unless", "bool", "offset", "label_values"}:
            continue
        names.add(word)
    return names


def test_dashboard_basics(dash):
    assert dash["uid"] == "shiftwatch" and dash["title"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    # No two panels overlap on the grid.
    cells = set()
    for p in panels(dash):
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
        assert g["x"] + g["w"] <= 24


def test_queries_use_only_documented_metrics(dash):
    known = documented_metrics() | BUILTIN_METRICS
    qs = queries(dash)
    assert len(qs) >= 15
    for where, expr in qs:
        used = metric_names(expr)
        assert used, f"{where}: no metric in {expr!r}"
        assert used <= known, f"{where}: {sorted(used - known)} are not in DEVELOPERS.md ({expr!r})"
        assert set(re.findall(r"\bshiftwatch_[a-z0-9_]+", expr)) <= known, where


def test_metric_name_extraction():
    assert metric_names('sum by (key) (rate(shiftwatch_latency_seconds_sum{key=~"$key"}[$__rate_interval]))') == {"shiftwatch_latency_seconds_sum"}
    assert metric_names("time() - shiftwatch_last_event_timestamp_seconds") == {"shiftwatch_last_event_timestamp_seconds"}
    assert metric_names("label_values(shiftwatch_latency_seconds_count, key)") == {"shiftwatch_latency_seconds_count"}
    assert metric_names("max by (key, percentile) (shiftwatch_snapshot_latency_seconds) > 0 or up") == {"shiftwatch_snapshot_latency_seconds", "up"}
    assert metric_names('histogram_quantile(0.99, sum by (key, le) (rate(x_bucket{key=~"$key"}[5m])))') == {"x_bucket"}


def test_the_required_views_exist(dash):
    exprs = " ".join(e for _, e in queries(dash))
    for needle in (
        # per-key percentiles added up over workers
        'histogram_quantile(0.99, sum by (key, le) (rate(shiftwatch_latency_seconds_bucket{key=~"$key"}[$__rate_interval])))',
        'histogram_quantile(0.5, sum by (key, le) (rate(shiftwatch_latency_seconds_bucket{key=~"$key"}[$__rate_interval])))',
        'shiftwatch_snapshot_latency_seconds{key=~"$key", percentile=~"$percentile"}',  # snapshot percentiles
        "rate(shiftwatch_events_accepted_total",  # event rate
        "rate(shiftwatch_events_rejected_total",  # rejection rate
        "shiftwatch_event_time_lag_seconds",  # lag
        "shiftwatch_keys",  # live keys
    ):
        assert needle in exprs, needle
    shifts = [a for a in dash["annotations"]["list"] if "shiftwatch_shifts_total" in (a.get("expr") or "")]
    assert shifts and shifts[0]["enable"] and "increase(shiftwatch_shifts_total" in shifts[0]["expr"]
    key_var = next(v for v in dash["templating"]["list"] if v["name"] == "key")
    assert key_var["multi"] and key_var["includeAll"]
    assert "label_values(shiftwatch_latency_seconds_count, key)" in json.dumps(key_var["query"])
    # Summaries' quantile label is gone: no query may select on it.
    assert "quantile=" not in exprs and "quantile)" not in exprs
    heat = [p for p in panels(dash) if p["type"] == "heatmap"]
    assert heat and heat[0]["targets"][0]["format"] == "heatmap" and "shiftwatch_latency_seconds_bucket" in heat[0]["targets"][0]["expr"]


def test_datasource_uids_are_consistent(dash, datasource):
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    uid = datasource["uid"]
    seen = 0

    def walk(node):
        nonlocal seen
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and ds.get("type") != "grafana":
                assert ds == {"type": "prometheus", "uid": uid}, ds
                seen += 1
            elif isinstance(ds, str):
                pytest.fail(f"datasource by name {ds!r}; use {{type, uid}}")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dash)
    assert seen >= len(queries(dash))


def test_dashboard_provider_points_at_the_mounted_directory():
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "shiftwatch.yml").read_text())
    p = prov["providers"][0]
    assert p["type"] == "file" and p["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARD.parent.name == "dashboards"
