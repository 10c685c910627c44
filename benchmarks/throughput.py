"""Throughput of the shiftwatch worker against a real Kafka broker, with two ceilings.

One run starts its own KRaft broker (``tests/kafka_broker.py``, full JIT), pre-produces
seeded input to 4-partition topics, then measures each consumer alone on the machine:

  raw aiokafka   getmany() loop + json.loads of every value (a subprocess); on OTLP
                 input ExportTraceServiceRequest.FromString + a walk over the spans
  bare Faust     an agent that does nothing (``async for _ in stream: pass``), a worker
                 subprocess from an app module generated in a temp dir; it times itself
                 (from its first message, for --min-seconds or the whole input)
  shiftwatch     ``python -m stream.cli worker`` as a subprocess, once with
                 ``--topology keyed`` and once with ``--topology two_stage`` (the default:
                 stage 1 per input partition publishes window partials to
                 ``<app_id>-partials``, stage 2 merges them, in the same process);
                 samples/s from scraping ``shiftwatch_events_accepted_total`` on its
                 /metrics (first accepted → all). That counter is stage 1's in both
                 topologies; stage 2 runs in the same process, so the end (the worker's
                 CPU going idle, below) includes the merging that keeps up with it.

on three inputs: one sample per message (``{"key","value","ts"}``), 100 samples per
message (a JSON array of 100 events of one key, the message keyed by that key), and
OTLP (``--input-format otlp_proto``): records as the Collector's Kafka exporter writes
them, key None, each one ExportTraceServiceRequest of ~500 spans (opentelemetry-sdk
spans encoded by opentelemetry-exporter-otlp-proto-common, as benchmarks/otlp_bench.py
builds them; a sample is a span). The JSON inputs are keyed by our key, so both
topologies give the same answer on them; the OTLP input is not, which is what
two_stage is for (keyed is shown for its cost only).
Rates are counted from the first observation to the last (the first batch and the
startup are excluded). Repetitions are interleaved; the table shows medians.

    .venv/bin/python benchmarks/throughput.py [--quick] [--repeat N] [--profile DIR] [--otlp N]
        [--worker-env CONSUMER_MAX_FETCH_SIZE=8388608] [--worker-arg=--batch-size --worker-arg=500]

shiftwatch's end time comes from the worker's CPU time in /proc going idle (a /metrics
scrape costs the worker tens of ms for 100 keys, so it is scraped only to confirm);
the table also shows the worker's CPU share of the window and CPU-µs per sample.
After the timed runs, the partials topic of each input's last two-stage run is read
back (benchmarks/partials_bytes.py): bytes per key per window per source partition,
median and max (target ≤ 2 KiB).
--profile samples one more (untimed, two_stage) shiftwatch run per input with py-spy
(on PATH or $PY_SPY) and prints where the time goes: Faust, json.loads, our
validation, sketches, checkpoints.

The last line is ``samples_per_s=<n> ratio_vs_raw_aiokafka=<x> ratio_vs_bare_faust=<y>
ratio_two_stage_vs_keyed=<z>``: the keyed worker's samples/s on batched input; that ÷
raw aiokafka samples/s on the same batched input; the keyed worker's msgs/s on
single-sample input ÷ the bare Faust agent's; two_stage ÷ keyed samples/s on batched
input (issue 15 target ≥ 0.8). OTLP spans/s (target ≥ 150,000 per worker) is in the
ratios block.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
T0 = 1_763_800_000.0
PARTITIONS = 4
BATCH = 100  # samples per batched message

# ----------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_broker_module():
    spec = importlib.util.spec_from_file_location("shiftwatch_kafka_broker", ROOT / "tests" / "kafka_broker.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def make_broker(mod):
    class BenchBroker(mod.KafkaBroker):
        """The test broker without its fsync-per-message setting (a durability knob for
        the fault tests that only slows pre-producing here; consumers read page cache)."""

        def _properties(self) -> Path:
            p = super()._properties()
            p.write_text("".join(l for l in p.read_text().splitlines(True) if not l.startswith("log.flush.interval.messages")))
            return p

    return BenchBroker(fast_jit=False, heap="1g")


def kill_group(proc: subprocess.Popen | None, sig: int = signal.SIGKILL, wait: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


LIVE: list[subprocess.Popen] = []
#: Extra environment of the Faust worker subprocesses (--worker-env).
WORKER_ENV: dict[str, str] = {}


def spawn(args: list[str], log_path: Path, **kw) -> subprocess.Popen:
    log = open(log_path, "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kw)
    log.close()
    LIVE.append(proc)
    return proc


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------- input


@dataclass
class Dataset:
    name: str
    topic: str
    messages: list[tuple[bytes, bytes]]  # (key, value); emptied once produced
    samples: int
    n_messages: int = 0
    #: The worker's --input-format (json, or otlp_proto: spans are the samples).
    input_format: str = "json"

    def __post_init__(self) -> None:
        self.n_messages = self.n_messages or len(self.messages)


def make_single(n: int, keys: int, rate: float, seed: int) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    kidx = rng.integers(0, keys, n)
    vals = rng.lognormal(np.log(20.0), 0.6, n)  # milliseconds, median 20 ms
    ts = T0 + np.arange(n) / rate
    names = [f"svc-{i:03d}" for i in range(keys)]
    return [
        (names[k].encode(), b'{"key":"%s","value":%.3f,"ts":%.4f}' % (names[k].encode(), v, t))
        for k, v, t in zip(kidx.tolist(), vals.tolist(), ts.tolist())
    ]


def make_batched(n_msgs: int, keys: int, rate: float, seed: int) -> list[tuple[bytes, bytes]]:
    """Message j: 100 events of one key, event times continuing the global timeline."""
    rng = np.random.default_rng(seed + 1)
    kidx = rng.integers(0, keys, n_msgs)
    vals = rng.lognormal(np.log(20.0), 0.6, (n_msgs, BATCH))
    ts = T0 + np.arange(n_msgs * BATCH).reshape(n_msgs, BATCH) / rate
    out = []
    for k, row_v, row_t in zip(kidx.tolist(), vals.tolist(), ts.tolist()):
        name = b"svc-%03d" % k
        body = b",".join(b'{"key":"%s","value":%.3f,"ts":%.4f}' % (name, v, t) for v, t in zip(row_v, row_t))
        out.append((name, b"[" + body + b"]"))
    return out


def make_otlp(n_records: int, seed: int, rate: float, base: int = 8) -> list[tuple[None, bytes]]:
    """Records as the Collector's Kafka exporter writes them: key None, each value one
    ExportTraceServiceRequest of ~500 spans (benchmarks/otlp_bench.py's SDK spans).

    The SDK makes ~7,000 spans/s, so ``base`` requests are made with it and the rest are
    copies (protobuf message classes) whose span times are shifted on by whole multiples
    of the base's time range. End times are first rescaled to ``rate`` spans per second
    of event time (durations kept), as dense as the JSON inputs: partials cost per window,
    so a sparse timeline would overstate stage 1's and stage 2's share."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
    from otlp_bench import make_records

    reqs = [ExportTraceServiceRequest.FromString(b) for b in make_records(min(base, n_records), seed=seed)]
    spans = [s for r in reqs for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    t_lo = min(s.end_time_unix_nano for s in spans)
    span_ns = round(len(spans) / rate * 1e9)
    c = span_ns / max(1, max(s.end_time_unix_nano for s in spans) - t_lo)
    for sp in spans:
        dur = sp.end_time_unix_nano - sp.start_time_unix_nano
        sp.end_time_unix_nano = t_lo + round((sp.end_time_unix_nano - t_lo) * c)
        sp.start_time_unix_nano = sp.end_time_unix_nano - dur
    out: list[tuple[None, bytes]] = []
    for i in range(n_records):
        req = ExportTraceServiceRequest()
        req.CopyFrom(reqs[i % len(reqs)])
        shift = (i // len(reqs)) * (span_ns + 1_000)
        if shift:
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        sp.start_time_unix_nano += shift
                        sp.end_time_unix_nano += shift
        out.append((None, req.SerializeToString()))
    return out


def count_spans(value: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest.FromString(value)
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


async def create_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=1 << 20, max_request_size=4 << 20)
    await p.start()
    t = time.perf_counter()
    try:
        pending = []
        for k, v in messages:
            pending.append(await p.send(topic, v, key=k))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await p.stop()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- consumers

RAW_CODE = """
import asyncio, json, sys, time
from aiokafka import AIOKafkaConsumer, TopicPartition

def otlp_loads():
    # The least an OTLP consumer does: parse each request (the samples are its spans).
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    parse = ExportTraceServiceRequest.FromString
    return lambda b: [s for rs in parse(b).resource_spans for ss in rs.scope_spans for s in ss.spans]

async def main(bootstrap, topic, expected, partitions, min_seconds, fmt):
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        loads = json.loads if fmt == "json" else otlp_loads()
        msgs = samples = 0
        t0 = None
        m0 = s0 = 0
        passes = 0
        while True:
            # One pass over the topic; passes repeat (from the page cache) until the
            # timed part lasts min_seconds, so small --quick inputs still time well.
            seen = 0
            while seen < expected:
                batch = await c.getmany(timeout_ms=1000, max_records=1000)
                for recs in batch.values():
                    for r in recs:
                        doc = loads(r.value)
                        samples += len(doc) if type(doc) is list else 1
                    seen += len(recs)
                msgs += sum(len(recs) for recs in batch.values())
                if t0 is None and msgs:
                    t0, m0, s0 = time.perf_counter(), msgs, samples
            passes += 1
            if time.perf_counter() - t0 >= min_seconds:
                break
            for tp in tps:
                c.seek(tp, 0)
        dt = time.perf_counter() - t0
        print(json.dumps({"messages": msgs - m0, "samples": samples - s0, "seconds": dt, "passes": passes}))
    finally:
        await c.stop()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]))
"""

BARE_APP = '''
import json, os, time
import faust

N = int(os.environ["BENCH_N"])
OUT = os.environ["BENCH_OUT"]
MODE = os.environ.get("BENCH_MODE", "iter")
MIN_SECONDS = float(os.environ.get("BENCH_MIN_SECONDS", "inf"))
app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=os.environ["BENCH_BROKER"],
    value_serializer="raw",
    key_serializer="raw",
    web_enabled=False,
    store="memory://",
    datadir=os.environ["BENCH_DATADIR"],
    topic_partitions=4,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=6.0,
    broker_heartbeat_interval=0.6,
    broker_rebalance_timeout=10.0,
)
topic = app.topic(os.environ["BENCH_TOPIC"], value_type=bytes, key_type=bytes, partitions=None)


def report(n, n0, t0):
    with open(OUT + ".tmp", "w") as f:
        json.dump({"messages": n - n0, "seconds": time.perf_counter() - t0}, f)
    os.replace(OUT + ".tmp", OUT)


@app.agent(topic, concurrency=1)
async def bare(stream):
    n = 0
    t0 = None
    if MODE == "take":
        async for batch in stream.take_events(1000, within=0.2):
            n += len(batch)
            if t0 is None:
                t0, n0 = time.perf_counter(), n
            if t0 != float("inf") and (n >= N or time.perf_counter() - t0 >= MIN_SECONDS):
                report(n, n0, t0)
                t0 = float("inf")
        return
    async for _ in stream:
        n += 1
        if t0 is None:
            t0, n0 = time.perf_counter(), n
        if t0 != float("inf") and (n == N or (n % 256 == 0 and time.perf_counter() - t0 >= MIN_SECONDS)):
            report(n, n0, t0)
            t0 = float("inf")


if __name__ == "__main__":
    app.main()
'''


@dataclass
class Result:
    messages: float
    samples: float
    seconds: float
    #: Seconds spent in each /metrics scrape inside the timed window (shiftwatch only).
    scrapes: list[float] = field(default_factory=list)
    #: CPU seconds the consumer process used in the timed window (shiftwatch only).
    cpu_s: float = float("nan")
    #: The run's partials topic (two-stage shiftwatch runs only).
    partials_topic: str = ""

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


def run_raw(bootstrap: str, ds: Dataset, work: Path, timeout: float, min_seconds: float = 1.0) -> Result:
    log = work / f"raw-{ds.name}.log"
    out_path = work / f"raw-{ds.name}-{uuid.uuid4().hex[:6]}.json"
    with open(out_path, "wb") as out, open(log, "ab") as err:
        proc = subprocess.Popen([PY, "-c", RAW_CODE, bootstrap, ds.topic, str(ds.n_messages), str(PARTITIONS), str(min_seconds), ds.input_format], stdout=out, stderr=err, start_new_session=True)
        LIVE.append(proc)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"raw aiokafka consumer did not finish {ds.name} within {timeout:.0f}s:\n{tail(log)}") from None
        finally:
            kill_group(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"raw aiokafka consumer failed ({proc.returncode}):\n{tail(log)}")
    r = json.loads(out_path.read_text())
    return Result(r["messages"], r["samples"], r["seconds"])


def run_bare_faust(bootstrap: str, ds: Dataset, work: Path, timeout: float, mode: str = "iter", min_seconds: float = 2.0) -> Result:
    run = work / f"bare-{mode}-{ds.name}-{uuid.uuid4().hex[:6]}"
    run.mkdir()
    (run / "bare_app.py").write_text(BARE_APP)
    out = run / "result.json"
    env = dict(
        os.environ,
        **WORKER_ENV,
        BENCH_N=str(ds.n_messages),
        BENCH_OUT=str(out),
        BENCH_MODE=mode,
        BENCH_MIN_SECONDS=str(min_seconds),
        BENCH_APP_ID=f"bench-bare-{uuid.uuid4().hex[:8]}",
        BENCH_BROKER=f"kafka://{bootstrap}",
        BENCH_DATADIR=str(run / "data"),
        BENCH_TOPIC=ds.topic,
        PYTHONPATH=str(run),
    )
    log = run / "worker.log"
    proc = spawn([PY, str(run / "bare_app.py"), "worker", "-l", "warn", "--without-web"], log, cwd=run, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not out.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"bare Faust worker exited with {proc.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare Faust worker did not finish {ds.name} within {timeout:.0f}s:\n{tail(log)}")
            time.sleep(0.05)
    finally:
        kill_group(proc)
    r = json.loads(out.read_text())
    per = ds.samples / ds.n_messages
    return Result(r["messages"], r["messages"] * per, r["seconds"])


def cpu_ticks(pid: int) -> tuple[int, str] | None:
    """(user + system clock ticks, state letter) of a process, from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12]), fields[0]


_ACCEPTED = re.compile(rb"^shiftwatch_events_accepted_total (\S+)$", re.M)
_MESSAGES = re.compile(rb"^shiftwatch_messages_total (\S+)$", re.M)


def scrape(port: int) -> tuple[float, float] | None:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return None
    a = _ACCEPTED.search(body)
    m = _MESSAGES.search(body)
    if a is None:
        return None
    return float(a.group(1)), float(m.group(1)) if m else float("nan")


@dataclass
class Shiftwatch:
    bootstrap: str
    ds: Dataset
    work: Path
    extra: list[str] = field(default_factory=list)
    topology: str = "two_stage"
    proc: subprocess.Popen | None = None
    log: Path | None = None
    port: int = 0
    app_id: str = ""
    scrapes: list[float] = field(default_factory=list)

    def start(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.port = free_port()
        self.app_id = f"bench-sw-{tag}"
        run = self.work / f"shiftwatch-{self.ds.name}-{tag}"
        run.mkdir()
        self.log = run / "worker.log"
        args = [
            PY, "-m", "stream.cli", "worker",
            "--broker", f"kafka://{self.bootstrap}",
            "--input-topic", self.ds.topic,
            "--shift-topic", f"bench-shifts-{tag}", "--dead-letter-topic", f"bench-dead-{tag}",
            "--app-id", self.app_id, "--topology", self.topology, "--input-format", self.ds.input_format,
            "--web-host", "127.0.0.1", "--web-port", str(self.port),
            "--data-dir", str(run / "data"), "--partitions", str(PARTITIONS),
            "--session-timeout", "6", "--log-level", "warn",
            *self.extra,
        ]  # fmt: skip
        self.proc = spawn(args, self.log, cwd=ROOT, env={**os.environ, **WORKER_ENV})

    def measure(self, timeout: float, poll: float) -> Result:
        """The first /metrics scrape that shows accepted events starts the clock; the
        end is the last moment the worker was busy before it went idle with every
        sample accepted. A scrape costs the worker real CPU (per-key quantiles, tens of
        ms for 100 keys), so in between the worker's CPU time is watched through
        /proc (free for the worker) and /metrics is scraped only to confirm the end."""
        assert self.proc is not None and self.log is not None
        expected = self.ds.samples
        deadline = time.monotonic() + timeout
        pid = self.proc.pid
        first: tuple[float, float, float] | None = None
        got: tuple[float, float] | None = None
        self.scrapes = []
        while first is None:
            self._check(deadline, got, expected)
            got = scrape(self.port)
            if got is not None and got[0] > 0:
                first = (time.perf_counter(), *got)
            else:
                time.sleep(poll)
        busy_at = first[0]
        cpu = cpu0 = busy_cpu = cpu_ticks(pid)
        idle = 0
        last: float | None = None
        # Idle this long before a confirming scrape: the agent itself pauses up to
        # --batch-within (0.2 s) waiting for a batch to fill, and on fetches.
        idle_polls = max(2, round(0.35 / poll))
        while True:
            self._check(deadline, got, expected)
            time.sleep(poll)
            now_cpu = cpu_ticks(pid)
            now = time.perf_counter()
            if cpu is None or now_cpu is None:  # no /proc: scrape every time
                idle = idle_polls
            elif now_cpu[0] - cpu[0] > 1 or now_cpu[1] == "R":
                busy_at, busy_cpu, idle = now, now_cpu, 0
            else:
                idle += 1
            cpu = now_cpu
            if idle >= idle_polls:
                t_req = time.perf_counter()
                got = scrape(self.port)
                self.scrapes.append(time.perf_counter() - t_req)
                # All accepted — or the count stood still over 3 s of idling (some
                # samples dead-lettered or filtered: the note below says how many).
                stuck = got is not None and got[0] == last and cpu is not None and now - busy_at >= 3.0
                if got is not None and (got[0] >= expected or stuck):
                    end = busy_at if cpu is not None else time.perf_counter()
                    self.scrapes.pop()  # after the end
                    break
                last = got[0] if got is not None else None
                idle = 0
        if got[0] != expected:
            print(f"  note: accepted {got[0]:.0f}, produced {expected} samples", file=sys.stderr)
        cpu_s = (busy_cpu[0] - cpu0[0]) / os.sysconf("SC_CLK_TCK") if cpu0 and busy_cpu else float("nan")
        topic = f"{self.app_id}-partials" if self.topology == "two_stage" else ""
        return Result(got[1] - first[2], got[0] - first[1], end - first[0], list(self.scrapes), cpu_s, topic)

    def _check(self, deadline: float, got: tuple[float, float] | None, expected: int) -> None:
        assert self.proc is not None and self.log is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"shiftwatch worker exited with {self.proc.returncode}:\n{tail(self.log)}")
        if time.monotonic() > deadline:
            n = got[0] if got else 0
            raise RuntimeError(f"shiftwatch accepted {n:.0f} of {expected} samples in time:\n{tail(self.log)}")

    def stop(self) -> None:
        kill_group(self.proc)


def run_shiftwatch(bootstrap: str, ds: Dataset, work: Path, timeout: float, poll: float, extra: list[str], topology: str) -> Result:
    sw = Shiftwatch(bootstrap, ds, work, list(extra), topology)
    sw.start()
    try:
        return sw.measure(timeout, poll)
    finally:
        sw.stop()


# ----------------------------------------------------------------------------- profiling


def profile_shiftwatch(bootstrap: str, ds: Dataset, work: Path, outdir: Path, timeout: float, extra: list[str]) -> Path | None:
    """One more shiftwatch run with py-spy sampling it (collapsed stacks), after the timed runs."""
    pyspy = shutil.which("py-spy") or os.environ.get("PY_SPY")
    if not pyspy:
        print("  (py-spy not found: set PY_SPY=/path/to/py-spy; skipping the profile)", file=sys.stderr)
        return None
    outdir.mkdir(parents=True, exist_ok=True)
    sw = Shiftwatch(bootstrap, ds, work, list(extra))
    sw.start()
    spy = None
    out = outdir / f"shiftwatch-{ds.name}.folded"
    try:
        # Start sampling once messages flow, stop when all are accepted.
        deadline = time.monotonic() + timeout
        while True:
            got = scrape(sw.port)
            if got and got[0] > 0:
                break
            if time.monotonic() > deadline or sw.proc.poll() is not None:
                raise RuntimeError(f"shiftwatch did not start:\n{tail(sw.log)}")
            time.sleep(0.05)
        spy = subprocess.Popen([pyspy, "record", "--pid", str(sw.proc.pid), "-r", "250", "-f", "raw", "-o", str(out), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        LIVE.append(spy)
        sw.measure(timeout, 0.25)
    finally:
        if spy is not None and spy.poll() is None:
            os.killpg(spy.pid, signal.SIGINT)
            try:
                spy.wait(20)
            except subprocess.TimeoutExpired:
                kill_group(spy)
        sw.stop()
    return out if out.exists() else None


def _bucket(frames: list[str]) -> str:
    """Where one sampled stack's time goes; frames run from the root to the leaf."""

    def has(*pats: str) -> bool:
        return any(p in f for f in frames for p in pats)

    if has("stream/web.py"):
        return "/metrics scrapes (the benchmark's polling)"
    if has("stream/otlp/"):
        return "decode: OTLP (protobuf parse, span rows)"
    if has("stream/events.py"):
        return "decode: json.loads" if has("json/decoder.py", "json/__init__.py") else "decode: our validation"
    if has("checkpoint (stream/app.py", "stream/checkpoint.py", "checkpoint_records"):
        return "checkpoint: encode + produce"
    if has("stream/merge.py"):
        return "stage 2: merge partials (decode, merge, close, detect)"
    if has("stream/partials.py"):
        return "stage 1: partials (fold window into sketch, encode)"
    if has("stream/pipeline.py", "stream/partitions.py"):
        if has("sketches/"):
            return "pipeline: sketch updates"
        if has("detectors/"):
            return "pipeline: detectors"
        return "pipeline: per-key bookkeeping"
    if has("apply (stream/app.py", "read_input (stream/app.py"):
        return "reader loop: publish, commit, other"
    if has("aiokafka/"):
        return "aiokafka client (fetch, heartbeat)"
    if has("faust/", "mode/"):
        return "Faust: fetcher, acks, services"
    if "select" in frames[-1]:
        return "idle (epoll wait)"
    return "asyncio loop, other"


def summarize_profile(path: Path, top: int = 10) -> str:
    """Share of sampled time per bucket, plus the top self-time frames."""
    share: collections.Counter[str] = collections.Counter()
    selfs: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        c = int(n)
        total += c
        frames = stack.split(";")
        selfs[frames[-1]] += c
        share[_bucket(frames)] += c
    if not total:
        return "  (empty profile)"
    lines = [f"  {path.name}: {total} samples"]
    lines += [f"    {100 * c / total:5.1f}%  {b}" for b, c in share.most_common()]
    lines.append("    top self time:")
    lines += [f"    {100 * c / total:5.1f}%  {f[:100]}" for f, c in selfs.most_common(top)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


TOPOLOGIES = ("keyed", "two_stage")
Results = dict[tuple[str, str], list[Result]]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts, one repetition (about a minute)")
    ap.add_argument("--repeat", type=int, default=None, help="interleaved repetitions (default 3; 1 with --quick)")
    ap.add_argument("--single", type=int, default=None, help="single-sample messages (default 600,000; 300,000 quick)")
    ap.add_argument("--batched", type=int, default=None, help="100-sample messages (default 60,000; 25,000 quick)")
    ap.add_argument("--otlp", type=int, default=None, help="OTLP records of ~500 spans (default 4,000; 1,000 quick; 0: no OTLP row)")
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10_000.0, help="event-time samples (spans) per second of the input (default 10,000: 100 keys × 100/s)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bootstrap", help="use this running broker (HOST:PORT) instead of starting one")
    ap.add_argument("--profile", metavar="DIR", help="after the timed runs, py-spy one shiftwatch run per input into DIR and summarize")
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between polls of the worker (/proc CPU time, /metrics before the start)")
    ap.add_argument("--worker-arg", action="append", default=[], help="extra argument for `stream.cli worker` (repeatable)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment for the Faust workers, shiftwatch and bare alike (Faust reads e.g. "
                         "CONSUMER_MAX_FETCH_SIZE, STREAM_BUFFER_MAXSIZE, BROKER_MAX_POLL_RECORDS); repeatable")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (worker logs, generated app)")
    ap.add_argument("--skip", default="", help="comma list of runs to skip: raw,bare,shiftwatch,keyed,two_stage")
    args = ap.parse_args()
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--worker-env wants NAME=VALUE, got {item!r}")
        WORKER_ENV[name] = value
    return args


def make_datasets(args: argparse.Namespace, bootstrap: str, say) -> list[Dataset]:
    """Seeded inputs, produced to fresh 4-partition topics (message lists dropped after)."""
    quick = args.quick
    n_single = args.single or (300_000 if quick else 600_000)
    n_batched = args.batched or (25_000 if quick else 60_000)
    n_otlp = (1_000 if quick else 4_000) if args.otlp is None else args.otlp
    tag = uuid.uuid4().hex[:8]
    out = [Dataset("single", f"bench-single-{tag}", make_single(n_single, args.keys, args.rate, args.seed), n_single),
           Dataset("batched", f"bench-batched-{tag}", make_batched(n_batched, args.keys, args.rate, args.seed), n_batched * BATCH)]  # fmt: skip
    if n_otlp:
        t = time.perf_counter()
        msgs = make_otlp(n_otlp, args.seed, args.rate)
        base = [count_spans(v) for _, v in msgs[:8]]  # record i is a time-shifted copy of record i % 8
        spans = sum(base[i % len(base)] for i in range(n_otlp))
        out.append(Dataset("otlp", f"bench-otlp-{tag}", msgs, spans, input_format="otlp_proto"))  # type: ignore[arg-type]
        say(f"built {n_otlp:,} OTLP requests in {time.perf_counter() - t:.1f}s")
    asyncio.run(create_topics(bootstrap, [ds.topic for ds in out]))
    for ds in out:
        dt = asyncio.run(produce(bootstrap, ds.topic, ds.messages))  # type: ignore[arg-type]
        mb = sum(len(v) for _, v in ds.messages) / 1e6
        say(f"produced {ds.n_messages:,} {ds.name} messages ({ds.samples:,} samples, {mb:.1f} MB) in {dt:.1f}s")
        ds.messages = []
    return out


def plan_runs(args: argparse.Namespace, bootstrap: str, work: Path, timeout: float, datasets: list[Dataset]) -> list[tuple[str, Dataset, Any]]:
    skip = set(filter(None, args.skip.split(",")))
    by = {ds.name: ds for ds in datasets}
    runs: list[tuple[str, Dataset, Any]] = []
    if "raw" not in skip:
        runs += [("raw aiokafka", ds, lambda ds: run_raw(bootstrap, ds, work, timeout)) for ds in datasets]
    if "bare" not in skip:
        runs.append(("bare Faust", by["single"], lambda ds: run_bare_faust(bootstrap, ds, work, timeout)))
        if not args.quick:
            runs.append(("bare Faust", by["batched"], lambda ds: run_bare_faust(bootstrap, ds, work, timeout)))
            runs.append(("bare Faust take(1000)", by["single"], lambda ds: run_bare_faust(bootstrap, ds, work, timeout, "take")))
    if "shiftwatch" not in skip:
        for ds in datasets:
            for topo in TOPOLOGIES:
                if topo not in skip:
                    fn = lambda ds, topo=topo: run_shiftwatch(bootstrap, ds, work, timeout, args.poll, args.worker_arg, topo)  # noqa: E731
                    runs.append((f"shiftwatch {topo}", ds, fn))
    return runs


def run_all(runs: list[tuple[str, Dataset, Any]], repeat: int, say) -> tuple[Results, dict[tuple[str, str], str]]:
    """Every run ``repeat`` times, interleaved; a run that fails once is not retried."""
    results: Results = collections.defaultdict(list)
    errors: dict[tuple[str, str], str] = {}
    for rep in range(repeat):
        for name, ds, fn in runs:
            key = (name, ds.name)
            if key in errors:
                continue
            try:
                r = fn(ds)
            except RuntimeError as e:
                errors[key] = str(e)
                say(f"{name} / {ds.name}: FAILED: {e}")
                continue
            results[key].append(r)
            say(f"rep {rep + 1}/{repeat} {name:22s} {ds.name:8s} {fmt(r.msgs_per_s):>10s} msgs/s {fmt(r.samples_per_s):>11s} samples/s ({r.seconds:.2f}s)")
    return results, errors


def rate(results: Results, name: str, ds: str, what: str) -> float:
    return med([getattr(r, what) for r in results.get((name, ds), [])])


def print_table(results: Results, errors: dict[tuple[str, str], str], header: str) -> None:
    print()
    print(header)
    print(f"{'consumer':24s} {'input':8s} {'msgs/s':>10s} {'samples/s':>11s}  {'runs (samples/s)'}")
    for (name, ds), rs in results.items():
        runs_s = ", ".join(fmt(r.samples_per_s) for r in rs)
        print(f"{name:24s} {ds:8s} {fmt(rate(results, name, ds, 'msgs_per_s')):>10s} {fmt(rate(results, name, ds, 'samples_per_s')):>11s}  {runs_s}")
    for (name, ds), rs in results.items():
        if not name.startswith("shiftwatch"):
            continue
        sc = [x for r in rs for x in r.scrapes]
        window = sum(r.seconds for r in rs) or float("nan")
        frac = sum(sum(r.scrapes) for r in rs) / window
        util = sum(r.cpu_s for r in rs) / window
        per = 1e6 * sum(r.cpu_s for r in rs) / (sum(r.samples for r in rs) or float("nan"))
        print(f"  ({name} {ds}: worker on CPU {100 * util:.0f}% of the timed window, {per:.1f} CPU-µs per sample; "
              f"{len(sc)} early /metrics scrapes, {100 * frac:.1f}% of the window)")  # fmt: skip
    for (name, ds), err in errors.items():
        print(f"{name:24s} {ds:8s} {'FAILED':>10s}  {err.splitlines()[0][:80]}")


def print_ratios(results: Results) -> dict[str, float]:
    """The ratios against this run's anchors; returns the last line's numbers."""
    r = lambda name, ds, what="samples_per_s": rate(results, name, ds, what)  # noqa: E731
    kb, tb = r("shiftwatch keyed", "batched"), r("shiftwatch two_stage", "batched")
    ks, ts = r("shiftwatch keyed", "single", "msgs_per_s"), r("shiftwatch two_stage", "single", "msgs_per_s")
    raw_b, raw_s, bare_s = r("raw aiokafka", "batched"), r("raw aiokafka", "single", "msgs_per_s"), r("bare Faust", "single", "msgs_per_s")
    ot, ok, raw_o = r("shiftwatch two_stage", "otlp"), r("shiftwatch keyed", "otlp"), r("raw aiokafka", "otlp")
    print()
    print("ratios (medians):")
    print(f"  keyed batched samples/s ÷ raw aiokafka batched samples/s     = {kb / raw_b:.3f}   (target ≥ 0.5; ≥ 200,000 samples/s)")
    print(f"  two_stage batched samples/s ÷ raw aiokafka batched samples/s = {tb / raw_b:.3f}")
    print(f"  two_stage ÷ keyed, batched samples/s                         = {tb / kb:.3f}   (target ≥ 0.8)")
    print(f"  two_stage ÷ keyed, single msgs/s                             = {ts / ks:.3f}   (target ≥ 0.8)")
    print(f"  keyed single msgs/s ÷ bare Faust single msgs/s               = {ks / bare_s:.3f}   (target ≥ 0.8)")
    print(f"  two_stage single msgs/s ÷ bare Faust single msgs/s           = {ts / bare_s:.3f}")
    print(f"  bare Faust single msgs/s ÷ raw aiokafka single msgs/s        = {bare_s / raw_s:.3f}")
    print(f"  keyed batched ÷ single samples/s                             = {kb / r('shiftwatch keyed', 'single'):.1f}")
    if ot == ot or ok == ok:
        print(f"  OTLP spans/s: two_stage {fmt(ot)}, keyed {fmt(ok)} (target ≥ 150,000 per worker); "
              f"÷ raw aiokafka + ParseFromString {fmt(raw_o)} spans/s = {ot / raw_o:.3f} (two_stage), {ok / raw_o:.3f} (keyed)")  # fmt: skip
    return {"samples_per_s": kb, "raw": kb / raw_b, "bare": ks / bare_s, "two_stage": tb / kb, "spans": ot}


def print_partials(results: Results, bootstrap: str) -> None:
    """Bytes per key per window per source partition on the last two-stage run's partials topic, per input."""
    from partials_bytes import TARGET, measure

    print()
    print(f"partials topic (last two_stage run per input; target ≤ {TARGET:,} B per key per window per source partition):")
    for (name, ds), rs in results.items():
        if name == "shiftwatch two_stage" and rs and rs[-1].partials_topic:
            try:
                print(f"  {ds:8s} {measure(bootstrap, rs[-1].partials_topic).line()}")
            except Exception as e:  # a report line, never the run's result
                print(f"  {ds:8s} could not read {rs[-1].partials_topic}: {e}")


def main() -> int:
    args = parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    timeout = 90.0 if args.quick else 600.0
    started = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {msg}", file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="shiftwatch-throughput-"))
    broker = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            broker = make_broker(load_broker_module())
            broker.start()
            bootstrap = broker.bootstrap
            say(f"broker on {bootstrap} (started in {broker.startup_seconds:.1f}s, full JIT)")
        datasets = make_datasets(args, bootstrap, say)
        results, errors = run_all(plan_runs(args, bootstrap, work, timeout, datasets), repeat, say)
        sizes = ", ".join(f"{ds.name} = {ds.n_messages:,} msgs / {ds.samples:,} samples" for ds in datasets)
        print_table(results, errors, f"throughput on {os.cpu_count()} cores, {PARTITIONS} partitions, {args.keys} keys, medians of {repeat}; {sizes}")
        if WORKER_ENV or args.worker_arg:
            print(f"worker environment {WORKER_ENV}, extra worker arguments {args.worker_arg}")
        last = print_ratios(results)
        print_partials(results, bootstrap)

        if args.profile and "shiftwatch" not in args.skip and not errors:
            say("profiling shiftwatch with py-spy (untimed runs)")
            print()
            print("where shiftwatch's time goes (py-spy, inclusive by first matching frame from the leaf):")
            for ds in datasets:
                try:
                    p = profile_shiftwatch(bootstrap, ds, work, Path(args.profile), timeout, args.worker_arg)
                except RuntimeError as e:
                    print(f"  profile of {ds.name} failed: {str(e).splitlines()[0]}")
                    continue
                if p:
                    print(summarize_profile(p))

        say("done")
        print(f"samples_per_s={last['samples_per_s']:.0f} ratio_vs_raw_aiokafka={last['raw']:.3f} "
              f"ratio_vs_bare_faust={last['bare']:.3f} ratio_two_stage_vs_keyed={last['two_stage']:.3f}")  # fmt: skip
        return 0 if not errors else 1
    finally:
        for p in LIVE:
            kill_group(p)
        if broker is not None:
            broker.cleanup()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
