"""A real OpenTelemetry Collector (core + contrib kafkaexporter v0.165.0, built here with Go
from the module proxy) between the SDK and the broker: the records it writes, in both
encodings, decode to exactly what the SDK sent. Skipped when Go is absent (the only skip)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry.trace import SpanKind

from stream.events import Decoded, DecodeLimits
from stream.otlp import OtlpDecoder
from stream.otlp.spans import SpanConfig, SpanKeys
from stream.otlp.spans_json import fast_json_spans
from test_otlp_common import T0, MetricMaker, SpanMaker

pytestmark = pytest.mark.kafka
RELEASE = "v0.165.0"
CORE_STABLE = "v1.71.0"  # the core modules at 1.x released with 0.165.0

GO_MOD = f"""module shiftwatch/otelcol

go 1.26.0

require (
\tgithub.com/open-telemetry/opentelemetry-collector-contrib/exporter/kafkaexporter {RELEASE}
\tgo.opentelemetry.io/collector/component {CORE_STABLE}
\tgo.opentelemetry.io/collector/confmap {CORE_STABLE}
\tgo.opentelemetry.io/collector/confmap/provider/fileprovider {CORE_STABLE}
\tgo.opentelemetry.io/collector/exporter {CORE_STABLE}
\tgo.opentelemetry.io/collector/otelcol {RELEASE}
\tgo.opentelemetry.io/collector/receiver {CORE_STABLE}
\tgo.opentelemetry.io/collector/receiver/otlpreceiver {RELEASE}
\tgo.opentelemetry.io/collector/service {RELEASE}
)
"""

MAIN_GO = """// A minimal Collector for shiftwatch's tests: OTLP receiver -> Kafka exporter.
package main

import (
\t"log"

\t"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/kafkaexporter"
\t"go.opentelemetry.io/collector/component"
\t"go.opentelemetry.io/collector/confmap"
\t"go.opentelemetry.io/collector/confmap/provider/fileprovider"
\t"go.opentelemetry.io/collector/exporter"
\t"go.opentelemetry.io/collector/otelcol"
\t"go.opentelemetry.io/collector/receiver"
\t"go.opentelemetry.io/collector/receiver/otlpreceiver"
\t"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func components() (otelcol.Factories, error) {
\tvar err error
\tf := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
\tif f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
\t\treturn f, err
\t}
\tf.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](kafkaexporter.NewFactory())
\treturn f, err
}

func main() {
\tset := otelcol.CollectorSettings{
\t\tBuildInfo: component.BuildInfo{Command: "otelcol-shiftwatch", Description: "shiftwatch test collector", Version: "0.165.0"},
\t\tFactories: components,
\t\tConfigProviderSettings: otelcol.ConfigProviderSettings{
\t\t\tResolverSettings: confmap.ResolverSettings{DefaultScheme: "file", ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory()}},
\t\t},
\t}
\tif err := otelcol.NewCommand(set).Execute(); err != nil {
\t\tlog.Fatal(err)
\t}
}
"""


def _collector() -> Path:
    """Build (once, cached) the Collector binary; fails loudly if Go is there but the build fails."""
    go = shutil.which("go") or (Path("/usr/local/go/bin/go") if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        pytest.skip("Go is not installed: the Collector cannot be built")
    d = Path(os.environ.get("SHIFTWATCH_CACHE", Path.home() / ".cache" / "shiftwatch")) / f"otelcol-{RELEASE}"
    binary = d / "otelcol-shiftwatch"
    if binary.exists():
        return binary
    d.mkdir(parents=True, exist_ok=True)
    (d / "go.mod").write_text(GO_MOD)
    (d / "main.go").write_text(MAIN_GO)
    for cmd in ([str(go), "mod", "tidy"], [str(go), "build", "-o", str(binary) + ".tmp", "."]):
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=3000)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{r.stderr[-4000:]}", pytrace=False)
    os.replace(str(binary) + ".tmp", binary)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(path: Path, port: int, bootstrap: str, topics: dict[str, str]) -> None:
    exporters = "".join(
        f"""  kafka/{enc}:
    brokers: ["{bootstrap}"]
    sending_queue: {{enabled: false}}
    partition_metrics_by_resource_attributes: true
    traces: {{topic: {topics['traces_' + enc]}, encoding: otlp_{enc}}}
    metrics: {{topic: {topics['metrics_' + enc]}, encoding: otlp_{enc}}}
""" for enc in ("proto", "json"))
    path.write_text(f"""receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
{exporters}service:
  telemetry:
    metrics: {{level: none}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka/proto, kafka/json]}}
    metrics: {{receivers: [otlp], exporters: [kafka/proto, kafka/json]}}
""")


def _post(port: int, path: str, body: bytes, deadline: float, proc: subprocess.Popen, log: Path) -> None:
    """What the SDK's OTLP/HTTP exporter does: POST the encoded request as protobuf."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/x-protobuf"})
    while True:
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 200
                return
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None:
                pytest.fail(f"the Collector exited ({proc.returncode}):\n{log.read_text()[-3000:]}", pytrace=False)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


async def _read(bootstrap: str, topic: str, want: int, decoder: OtlpDecoder, key_fn, timeout: float = 60.0):
    """Decode the topic's records until ``key_fn(batches)`` reaches ``want``."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"g-{uuid.uuid4().hex[:8]}")
    await c.start()
    out, raws, end = [], [], time.monotonic() + timeout
    try:
        while key_fn(out) < want and time.monotonic() < end:
            for tp, recs in (await c.getmany(timeout_ms=500)).items():
                raws += [r.value for r in recs]
                out.append(decoder.decode_batch([(r.value, r.offset, r.timestamp / 1000.0) for r in recs], tp.topic, tp.partition))
    finally:
        await c.stop()
    return out, raws


def test_collector_kafka_exporter_records_decode_to_what_the_sdk_sent(kafka_broker, tmp_path):
    binary = _collector()
    suffix = uuid.uuid4().hex[:6]
    topics = {f"{sig}_{enc}": f"otlp_{sig}_{enc}_{suffix}" for sig in ("traces", "metrics") for enc in ("proto", "json")}
    for t in topics.values():
        kafka_broker.create_topic(t, 1)
    port = _free_port()
    _config(tmp_path / "otelcol.yaml", port, kafka_broker.bootstrap, topics)
    log = open(tmp_path / "otelcol.log", "wb")
    proc = subprocess.Popen([str(binary), "--config", f"file:{tmp_path / 'otelcol.yaml'}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        spans = SpanMaker("cart")
        for j in range(300):
            spans.span(f"GET /r{j % 3}", T0 + j * 1_000_000, (5 + j % 11) * 1_000_000, SpanKind.SERVER, error=j % 100 == 7)
        treq = spans.request()
        meters = MetricMaker(instance="a", exponential=True)
        meters.record([0.01, 0.02, 0.04] * 10, **{"http.route": "/api/cart"})
        mreq = meters.request()
        deadline = time.monotonic() + 60
        _post(port, "/v1/traces", treq.SerializeToString(), deadline, proc, tmp_path / "otelcol.log")
        _post(port, "/v1/metrics", mreq.SerializeToString(), deadline, proc, tmp_path / "otelcol.log")
        want = OtlpDecoder().decode(treq.SerializeToString())
        want_points = OtlpDecoder(signal="metrics").decode(mreq.SerializeToString()).hists
        for enc in ("proto", "json"):
            got, raws = asyncio.run(_read(kafka_broker.bootstrap, topics[f"traces_{enc}"], 300, OtlpDecoder(f"otlp_{enc}"), lambda bs: sum(len(b) for b in bs)))
            assert all(not b.dead for b in got), [d.error for b in got for d in b.dead]
            assert sorted((k, v, t) for b in got for k, v, t in zip(b.keys, b.values, b.ts)) == sorted(zip(want.keys, want.values, want.ts))
            assert {k: v for b in got for k, v in b.labels.items()} == want.labels
            if enc == "json":  # the Collector's own JSON takes the fast path
                cfg = SpanConfig(None, True, DecodeLimits())
                assert all(fast_json_spans(r, cfg, SpanKeys(), Decoded()) is not None for r in raws)
            pts, _ = asyncio.run(_read(kafka_broker.bootstrap, topics[f"metrics_{enc}"], 1, OtlpDecoder(f"otlp_{enc}"), lambda bs: sum(len(b.hists) for b in bs)))
            got_points = [p for b in pts for p in b.hists]
            assert [(p.key, p.count, p.total, p.sketch) for p in got_points] == [(p.key, p.count, p.total, p.sketch) for p in want_points]
        meters.shutdown()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if proc.returncode not in (0, -15, None):
            print((tmp_path / "otelcol.log").read_text()[-3000:])
