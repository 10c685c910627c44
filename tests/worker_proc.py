"""Run `shiftwatch worker` as a subprocess against the test broker, as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Topics:
    prefix: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:8])

    @property
    def events(self) -> str:
        return f"{self.prefix}-events"

    @property
    def shifts(self) -> str:
        return f"{self.prefix}-shifts"

    @property
    def dead(self) -> str:
        return f"{self.prefix}-dead"

    @property
    def app_id(self) -> str:
        return f"{self.prefix}-app"


class WorkerProc:
    def __init__(self, bootstrap: str, topics: Topics, workdir: Path, *extra: str, name: str = "w1",
                 env: dict[str, str] | None = None, split_stderr: bool = False) -> None:
        """env: extra environment (e.g. SHIFTWATCH_SASL_PASSWORD); split_stderr: stderr to
        its own file (``err_path``) instead of the log."""
        self.port = free_port()
        self.log_path = workdir / f"worker-{name}-{self.port}.log"
        self.err_path = workdir / f"worker-{name}-{self.port}.err" if split_stderr else None
        self.env = {**os.environ, **(env or {})}
        self.args = [
            sys.executable, "-m", "stream.cli", "worker",
            "--broker", f"kafka://{bootstrap}",
            "--input-topic", topics.events, "--shift-topic", topics.shifts, "--dead-letter-topic", topics.dead,
            "--app-id", topics.app_id, "--web-port", str(self.port), "--data-dir", str(workdir / f"data-{name}"),
            "--session-timeout", "6", "--idle-close-after", "2", "--log-level", os.environ.get("SW_TEST_LOG_LEVEL", "info"),
            *extra,
        ]
        self.proc: subprocess.Popen | None = None

    def launch(self) -> "WorkerProc":
        """Start the process without waiting for it to serve anything."""
        self.log = open(self.log_path, "ab")
        err = open(self.err_path, "ab") if self.err_path else subprocess.STDOUT
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=err, start_new_session=True, env=self.env)
        if self.err_path:
            err.close()
        return self

    def start(self, timeout: float = 60.0) -> "WorkerProc":
        return self.launch().wait_serving(timeout)

    def wait_serving(self, timeout: float = 60.0) -> "WorkerProc":
        """Wait until the launched process serves /healthz."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"worker did not serve /healthz within {timeout}s:\n{self.tail()}")

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()

    def get(self, path: str) -> bytes:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5).read()

    def probe(self, path: str) -> tuple[int, dict]:
        """(HTTP status, JSON body) of /healthz or /readyz, a 503 included."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait_ready(self, timeout: float = 60.0) -> dict:
        """Wait for /readyz 200; returns its body."""
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            try:
                status, last = self.probe("/readyz")
                if status == 200:
                    return last
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready within {timeout}s (last {last}):\n{self.tail()}")

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 << 20)
    await p.start()
    try:
        for key, value in messages:
            await p.send(topic, value, key=key)
        await p.flush()
    finally:
        await p.stop()


async def consume_until(bootstrap: str, topic: str, done, timeout: float, settle: float = 0.0) -> list:
    """Read ``topic`` from the start until ``done(records)`` is true (then ``settle``
    more seconds, to catch anything extra) or ``timeout`` passes."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await c.start()
    records: list = []
    try:
        deadline = time.time() + timeout
        settled_at = None
        while time.time() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for tp_records in batch.values():
                records.extend(tp_records)
            if settled_at is None and done(records):
                settled_at = time.time() + settle
            if settled_at is not None and time.time() >= settled_at:
                break
    finally:
        await c.stop()
    return records


def run(coro):
    return asyncio.run(coro)


def json_values(records) -> list[dict]:
    return [json.loads(r.value) for r in records]


async def produce_to(bootstrap: str, topic: str, messages: list[tuple[int | None, bytes | None, bytes]], seconds: float = 0.0) -> None:
    """Produce (partition, key, value) in order; partition None lets the key pick it.
    ``seconds`` > 0 paces the messages evenly over that long (a live stream)."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 << 20, acks="all", enable_idempotence=True)
    await p.start()
    try:
        start = time.time()
        for i, (part, key, value) in enumerate(messages):
            await p.send(topic, value, key=key, partition=part)
            if seconds > 0:
                await asyncio.sleep(max(0.0, start + seconds * (i + 1) / len(messages) - time.time()))
        await p.flush()
    finally:
        await p.stop()
