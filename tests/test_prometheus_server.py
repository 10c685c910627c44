"""A real Prometheus server (Debian's package) scrapes shiftwatch; its HTTP API gives the
values the data implies: one key's histogram added up over two workers, and a running
worker's shift counter."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from stream.metrics import make_registry
from stream.pipeline import Pipeline, PipelineConfig
from stream.web import make_web_app, serve

from datagen import shift_stream
from worker_proc import Topics, WorkerProc, consume_until, free_port, produce, run

T0 = 1763800000.0


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed (scripts/install-system-deps.sh installs it)")
        pytest.skip("prometheus is not installed")
    return path


def query(port: int, expr: str, at: float | None = None) -> list[dict]:
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(params)
    doc = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def scalar(port: int, expr: str, at: float | None = None) -> float | None:
    res = query(port, expr, at)
    return float(res[0]["value"][1]) if res else None


class Prometheus:
    """A Prometheus process scraping ``targets`` every second."""

    def __init__(self, tmp: Path, targets: list[int], *flags: str) -> None:
        self.port = free_port()
        cfg = tmp / f"prometheus-{self.port}.yml"
        listed = ", ".join(f"'127.0.0.1:{t}'" for t in targets)
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: shiftwatch\n    static_configs:\n      - targets: [{listed}]\n"
        )
        self.log = tmp / f"prometheus-{self.port}.log"
        self.proc = subprocess.Popen(
            [prometheus_binary(), f"--config.file={cfg}", f"--storage.tsdb.path={tmp / f'tsdb-{self.port}'}",
             f"--web.listen-address=127.0.0.1:{self.port}", *flags],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"),
        )

    def wait_for(self, expr: str, ok: Callable[[float], bool], timeout: float = 60) -> float:
        deadline = time.time() + timeout
        v = None
        while time.time() < deadline:
            try:
                v = scalar(self.port, expr)
                if v is not None and ok(v):
                    return v
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{expr} = {v} after {timeout} s; log:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


class Exporters:
    """Pipelines with their web apps on one background event loop (in-process workers)."""

    def __init__(self, n: int) -> None:
        self.pipelines = [Pipeline(PipelineConfig(snapshot_interval_s=10)) for _ in range(n)]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners = [self.call(serve(make_web_app(p, make_registry(p)), "127.0.0.1", 0)) for p in self.pipelines]
        self.ports = [r.addresses[0][1] for r in self.runners]

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def feed(self, i: int, key: str, values_ms: np.ndarray, t0: float) -> None:
        async def go() -> None:  # on the loop, between scrapes, as a worker's batches are
            ev = [{"key": key, "value": float(v), "ts": t0 + k * 0.001} for k, v in enumerate(values_ms)]
            for j in range(0, len(ev), 1000):
                self.pipelines[i].feed(json.dumps(ev[j : j + 1000]).encode())

        self.call(go())

    def stop(self) -> None:
        for r in self.runners:
            self.call(r.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def assert_quantiles(port: int, inner: str, exact: np.ndarray, at: float | None, errors: list[float]) -> None:
    for q in (0.5, 0.99):
        got = scalar(port, f'histogram_quantile({q}, {inner})', at)
        want = float(np.quantile(exact, q))
        errors.append(abs(got - want) / want)
        print(f"p{q * 100:g} {got:.6f} vs exact {want:.6f} ({errors[-1]:.3%}): {inner}")
        assert got == pytest.approx(want, rel=0.05), (q, inner)


def test_prometheus_adds_up_one_key_over_two_workers(tmp_path):
    """An unkeyed topic spreads key A over both workers: Prometheus' sum by (key, le)
    gives A's true percentiles and exact counts; B lives on one worker only."""
    prometheus_binary()
    rng = np.random.default_rng(15)
    first = rng.lognormal(np.log(40.0), 0.6, 30000)  # ms
    second = rng.lognormal(np.log(90.0), 0.4, 20000)  # a slower regime, later
    b_values = rng.lognormal(np.log(5.0), 0.3, 4000)
    share = rng.integers(0, 2, first.size + second.size)  # which worker got each event
    ex = Exporters(2)
    ex.feed(0, "A", first[share[: first.size] == 0], T0)
    ex.feed(1, "A", first[share[: first.size] == 1], T0)
    ex.feed(1, "B", b_values, T0)
    prom = Prometheus(tmp_path, ex.ports)
    # Native histograms: Prometheus 2.x asks for protobuf then, and keeps only the native series.
    native = Prometheus(tmp_path, ex.ports, "--enable-feature=native-histograms")
    errors: list[float] = []
    native_count = 'histogram_count(sum by (key) (shiftwatch_latency_seconds{key="A"}))'
    try:
        count = 'sum by (key) (shiftwatch_latency_seconds_count{key="A"})'
        prom.wait_for('count(up{job="shiftwatch"} == 1)', lambda v: v == 2)
        prom.wait_for(count, lambda v: v == first.size)
        native.wait_for(native_count, lambda v: v == first.size)
        time.sleep(1.5)  # a second scrape of both, so "at" below sees the first regime everywhere
        t1 = time.time()
        assert scalar(prom.port, count, t1) == first.size  # exact, not estimated
        assert scalar(prom.port, 'sum(shiftwatch_latency_seconds_count{key="B"})', t1) == b_values.size
        total = scalar(prom.port, 'sum by (key) (shiftwatch_latency_seconds_sum{key="A"})', t1)
        assert total == pytest.approx(first.sum() / 1000, rel=1e-9)
        assert_quantiles(prom.port, 'sum by (key, le) (shiftwatch_latency_seconds_bucket{key="A"})', first / 1000, t1, errors)
        assert scalar(prom.port, 'histogram_quantile(0.5, sum by (key, le) (shiftwatch_latency_seconds_bucket{key="B"}))', t1) == pytest.approx(
            float(np.median(b_values / 1000)), rel=0.05
        )
        assert scalar(native.port, native_count, t1) == first.size
        assert scalar(native.port, 'histogram_sum(sum by (key) (shiftwatch_latency_seconds{key="A"}))', t1) == pytest.approx(first.sum() / 1000, rel=1e-9)
        assert scalar(native.port, "count(shiftwatch_latency_seconds_bucket)", t1) is None  # 2.42 keeps no classic series then
        assert_quantiles(native.port, 'sum by (key) (shiftwatch_latency_seconds{key="A"})', first / 1000, t1, errors)
        time.sleep(3)  # the rate() window below starts after t1 and sees a first-regime scrape
        ex.feed(0, "A", second[share[first.size :] == 0], T0 + 600)
        ex.feed(1, "A", second[share[first.size :] == 1], T0 + 600)
        prom.wait_for(count, lambda v: v == first.size + second.size)
        native.wait_for(native_count, lambda v: v == first.size + second.size)
        time.sleep(2.5)
        t2 = time.time()
        everything = np.concatenate([first, second]) / 1000
        assert_quantiles(prom.port, 'sum by (key, le) (shiftwatch_latency_seconds_bucket{key="A"})', everything, t2, errors)
        # What arrived since t1, the second regime alone: with @ (no extrapolation) and with rate().
        since = f'sum by (key, le) (shiftwatch_latency_seconds_bucket{{key="A"}} - shiftwatch_latency_seconds_bucket{{key="A"}} @ {t1:.3f})'
        assert_quantiles(prom.port, since, second / 1000, t2, errors)
        window = int(t2 - t1)  # starts after t1's scrapes: the first regime is the base, not counted
        assert_quantiles(prom.port, f'sum by (key, le) (rate(shiftwatch_latency_seconds_bucket{{key="A"}}[{window}s]))', second / 1000, t2, errors)
        assert_quantiles(native.port, 'sum by (key) (shiftwatch_latency_seconds{key="A"})', everything, t2, errors)
        assert_quantiles(native.port, f'sum by (key) (rate(shiftwatch_latency_seconds{{key="A"}}[{window}s]))', second / 1000, t2, errors)
        counted = scalar(prom.port, since.replace("sum by (key, le)", "sum by (key)").replace("_bucket", "_count"), t2)
        assert counted == second.size
    finally:
        prom.stop()
        native.stop()
        ex.stop()
    print(f"worst relative error of histogram_quantile p50/p99 over {len(errors)} queries: {max(errors):.4%}")


@pytest.mark.kafka
def test_prometheus_scrapes_a_worker_histogram_and_shift_counter(kafka_broker, tmp_path):
    prometheus_binary()
    b = kafka_broker.bootstrap
    topics = Topics()
    events, values = shift_stream(interval=10.0, snapshots=70, shift_snapshot=40, per_snapshot=200, factor=1.5, seed=8)
    msgs = []
    for key in ("A", "B"):
        mine = [e for e in events if e["key"] == key]
        msgs += [(key.encode(), json.dumps(mine[i : i + 100]).encode()) for i in range(0, len(mine), 100)]
    # Two keys on a 4-partition topic leave partitions empty: they announce it after
    # --empty-partition-after (10 s), and the merge stage stops waiting for them.
    worker = WorkerProc(b, topics, tmp_path, "--snapshot-interval", "10").start()
    prom = Prometheus(tmp_path, [worker.port])
    try:
        run(produce(b, topics.events, msgs))
        shifts = run(consume_until(b, topics.shifts, lambda r: len(r) >= 1, timeout=120, settle=3))
        assert len(shifts) == 1
        exact = values["A"] / 1000
        prom.wait_for('sum(shiftwatch_shifts_total{key="A"})', lambda v: v == 1)
        prom.wait_for('shiftwatch_latency_seconds_count{key="A"}', lambda v: v == len(exact))
        assert scalar(prom.port, 'up{job="shiftwatch"}') == 1
        assert scalar(prom.port, 'shiftwatch_build_info{version!=""}') == 1
        assert scalar(prom.port, "process_resident_memory_bytes") > 0
        errors: list[float] = []
        assert_quantiles(prom.port, 'sum by (key, le) (shiftwatch_latency_seconds_bucket{key="A"})', exact, None, errors)
        p = query(prom.port, 'shiftwatch_snapshot_latency_seconds{key="A"}')
        assert sorted(r["metric"]["percentile"] for r in p) == ["p50", "p90", "p99"]
        b_shifts = query(prom.port, 'shiftwatch_shifts_total{key="B"}')
        assert sorted(r["metric"]["direction"] for r in b_shifts) == ["improvement", "regression"]
        assert all(r["value"][1] == "0" for r in b_shifts)
    finally:
        prom.stop()
        worker.stop()
