"""A real Prometheus server scrapes a running worker; its HTTP API returns the per-key
quantiles and the shift counter with the values the data implies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from datagen import shift_stream
from worker_proc import Topics, WorkerProc, consume_until, free_port, produce, run

pytestmark = pytest.mark.kafka


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed (scripts/install-system-deps.sh installs it)")
        pytest.skip("prometheus is not installed")
    return path


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    doc = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def test_prometheus_scrapes_quantiles_and_shift_counter(kafka_broker, tmp_path):
    binary = prometheus_binary()
    b = kafka_broker.bootstrap
    topics = Topics()
    events, values = shift_stream(interval=10.0, snapshots=70, shift_snapshot=40, per_snapshot=200, factor=1.5, seed=8)
    msgs = []
    for key in ("A", "B"):
        mine = [e for e in events if e["key"] == key]
        msgs += [(key.encode(), json.dumps(mine[i : i + 100]).encode()) for i in range(0, len(mine), 100)]
    worker = WorkerProc(b, topics, tmp_path, "--snapshot-interval", "10").start()
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: shiftwatch\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{worker.port}']\n"
    )
    prom = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"),
    )
    try:
        run(produce(b, topics.events, msgs))
        shifts = run(consume_until(b, topics.shifts, lambda r: len(r) >= 1, timeout=120, settle=3))
        assert len(shifts) == 1
        exact = values["A"] / 1000
        deadline = time.time() + 60
        p50 = shifts_total = up = None
        while time.time() < deadline:
            try:
                up = query(prom_port, 'up{job="shiftwatch"}')
                p50 = query(prom_port, 'shiftwatch_latency_seconds{key="A",quantile="0.5"}')
                shifts_total = query(prom_port, 'sum(shiftwatch_shifts_total{key="A"})')
                count = query(prom_port, 'shiftwatch_latency_seconds_count{key="A"}')
                if p50 and shifts_total and count and float(count[0]["value"][1]) == len(exact) and float(shifts_total[0]["value"][1]) == 1:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert up and up[0]["value"][1] == "1"
        assert float(p50[0]["value"][1]) == pytest.approx(np.quantile(exact, 0.5), rel=0.02)
        p99 = query(prom_port, 'shiftwatch_latency_seconds{key="A",quantile="0.99"}')
        assert float(p99[0]["value"][1]) == pytest.approx(np.quantile(exact, 0.99), rel=0.02)
        assert float(shifts_total[0]["value"][1]) == 1
        b_shifts = query(prom_port, 'shiftwatch_shifts_total{key="B"}')
        assert sorted(r["metric"]["direction"] for r in b_shifts) == ["improvement", "regression"]
        assert all(r["value"][1] == "0" for r in b_shifts)
    finally:
        prom.terminate()
        prom.wait(20)
        worker.stop()
