"""deploy/prometheus: promtool checks the config and the rules, and unit-tests every
alert (deploy/prometheus/alerts_test.yml). Needs promtool (Debian: prometheus)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
ALERTS = ("ShiftDetected", "DeadLetterRateRising", "ConsumerLagHigh", "WorkerDown", "EventsStalled")
RECORDS = tuple(f"key:shiftwatch_latency_seconds:{q}_rate5m" for q in ("p50", "p90", "p99")) + ("key:shiftwatch_latency_seconds:rate5m",)


def need(binary: str) -> str:
    """Path of a system tool; missing fails under CI=true (scripts/install-system-deps.sh installs it), else skips."""
    path = shutil.which(binary)
    if path:
        return path
    msg = f"{binary} not found (run scripts/install-system-deps.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def documented_metrics() -> set[str]:
    """Names in DEVELOPERS.md's table; a histogram's series add _bucket, _count and _sum."""
    text = (ROOT / "DEVELOPERS.md").read_text()
    rows = re.findall(r"^\| `(shiftwatch_[a-z0-9_]+)` \| ([a-z]+)", text, re.M)
    names = {n for n, _ in rows}
    names |= {n + s for n, kind in rows if kind == "histogram" for s in ("_bucket", "_count", "_sum")}
    assert len(names) >= 10, names
    return names


def promtool(*args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([need("promtool"), *args], cwd=PROM, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"promtool {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}"
    return p


def test_promtool_check_config():
    out = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in out.stdout + out.stderr


def test_promtool_check_rules():
    out = promtool("check", "rules", "alerts.yml")
    assert f"{len(ALERTS) + len(RECORDS)} rules found" in out.stdout + out.stderr


def test_promtool_unit_tests_every_alert():
    out = promtool("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in out.stdout + out.stderr
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired == quiet == set(ALERTS), (fired, quiet)


def test_recording_rules_are_unit_tested():
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    exprs = " ".join(c["expr"] for t in tests for c in t.get("promql_expr_test", []))
    for name in RECORDS:
        assert re.search(re.escape(name) + r"\b", exprs), name


def test_rules_use_documented_metrics_only():
    known = documented_metrics()
    assert {"shiftwatch_latency_seconds_bucket", "shiftwatch_shifts_total"} <= known
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert sorted(r["alert"] for r in alerts) == sorted(ALERTS)
    assert sorted(r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r) == sorted(RECORDS)
    for g in rules["groups"]:
        for r in g["rules"]:
            text = r["expr"] + json.dumps(r.get("annotations", {}))
            used = set(re.findall(r"(?<![:a-z0-9_])shiftwatch_[a-z0-9_]+", text))
            assert used <= known, f"{r.get('alert') or r['record']} uses undocumented {used - known}"
    for r in alerts:
        assert r["labels"]["severity"] in ("info", "warning", "critical")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
    # No rule reads the summary quantiles of old (`quantile` label): histograms only.
    assert "quantile=" not in (PROM / "alerts.yml").read_text()


def test_scrape_config_matches_the_compose_workers():
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert cfg["rule_files"] == ["alerts.yml"]
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "shiftwatch")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    workers = sorted(s for s in compose["services"] if s.startswith("worker"))
    assert sorted(targets) == [f"{w}:6066" for w in workers]
