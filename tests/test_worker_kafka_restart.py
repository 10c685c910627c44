"""Fast, quiet restarts (issue 13 item 3): static group membership on the real broker.

Two workers (--instance-id w1 / w2) share a 4-partition topic under steady input. One is
killed with SIGKILL and started again with the same instance id: its partitions must
resume (the group's committed offsets for them advance again) within 10 s of the
restart, without the other worker being handed them, and the per-key counts of both
workers must equal the input exactly. benchmarks/restart.py times the same scenario."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from test_faults_kafka import counts_from, dataset, wait_counts
from worker_proc import Topics, WorkerProc

pytestmark = pytest.mark.kafka

PARTITIONS = 4
KEYS = tuple("ABCDEFGH")
PARTITION_OF = {k: i % PARTITIONS for i, k in enumerate(KEYS)}  # two keys per partition: every one gets input


class SteadyProducer(threading.Thread):
    """Sends msgs evenly over `seconds`, each key to its own fixed partition."""

    def __init__(self, bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]], seconds: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.msgs, self.seconds = bootstrap, topic, msgs, seconds
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # surfaced by the caller
            self.error = e

    async def _run(self) -> None:
        p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
        await p.start()
        try:
            start = time.time()
            for i, (key, value) in enumerate(self.msgs):
                await p.send(self.topic, value, key=key, partition=PARTITION_OF[key.decode()])
                await asyncio.sleep(max(0.0, start + self.seconds * (i + 1) / len(self.msgs) - time.time()))
            await p.flush()
        finally:
            await p.stop()


async def _admin(bootstrap: str, fn):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await fn(admin)
    finally:
        await admin.close()


def create_topic(bootstrap: str, topic: str) -> None:
    asyncio.run(_admin(bootstrap, lambda a: a.create_topics([NewTopic(topic, PARTITIONS, 1)])))


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed input offsets by partition (admin list_consumer_group_offsets)."""
    offsets = asyncio.run(_admin(bootstrap, lambda a: a.list_consumer_group_offsets(group)))
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic}


_ASSIGNED = re.compile(r"partitions \[([0-9, ]*)\] assigned")


def assignments(w: WorkerProc) -> list[list[int]]:
    """Every assignment the worker logged, oldest first."""
    return [[int(x) for x in m.group(1).split(",") if x.strip()] for m in _ASSIGNED.finditer(w.log_path.read_text(errors="replace"))]


def wait_split(a: WorkerProc, b: WorkerProc, timeout: float = 60.0) -> list[int]:
    """Wait until the two workers hold disjoint halves of the partitions; returns a's."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pa, pb = (assignments(a) or [[]])[-1], (assignments(b) or [[]])[-1]
        if pa and pb and sorted(pa + pb) == list(range(PARTITIONS)):
            return pa
        time.sleep(0.2)
    raise AssertionError(f"no 2-way split within {timeout}s:\n{a.tail()}\n{b.tail()}")


@dataclass(slots=True)
class RestartRun:
    resume_s: float  # restart (new process launched) -> every partition of the killed worker committed further
    partitions: list[int]  # the killed worker's partitions
    other_reassigned: bool  # the surviving worker was handed a new assignment after the kill
    counts: dict[str, float]  # per-key counts of both workers at the end
    expected: dict[str, int]


def restart_run(bootstrap: str, workdir: Path, static: bool, seconds: float = 20.0, kill_at: float = 6.0, seed: int = 500) -> RestartRun:
    """Two workers under steady input; kill -9 one at kill_at s, start it again 1 s later."""
    topics = Topics()
    create_topic(bootstrap, topics.events)
    msgs, expected = dataset(seed)
    common = ("--snapshot-interval", "10", "--session-timeout", "10", "--checkpoint-interval", "1")
    ident = lambda name: ("--instance-id", name) if static else ()  # noqa: E731
    w1 = WorkerProc(bootstrap, topics, workdir, *common, *ident("w1"), name="w1").start()
    w2 = WorkerProc(bootstrap, topics, workdir, *common, *ident("w2"), name="w2").start()
    again = None
    try:
        parts = wait_split(w1, w2)
        w1.wait_ready(), w2.wait_ready()
        prod = SteadyProducer(bootstrap, topics.events, msgs, seconds)
        prod.start()
        time.sleep(kill_at)
        w1.kill()
        seen = len(assignments(w2))
        time.sleep(1.0)
        before = committed(bootstrap, topics.app_id, topics.events)
        t0 = time.monotonic()
        again = WorkerProc(bootstrap, topics, workdir, *common, *ident("w1"), name="w1").launch()
        resume = None
        while resume is None and time.monotonic() - t0 < 90:
            now = committed(bootstrap, topics.app_id, topics.events)
            if all(now.get(p, -1) > before.get(p, -1) for p in parts):
                resume = time.monotonic() - t0
            else:
                time.sleep(0.1)
        assert resume is not None, f"partitions {parts} did not resume within 90 s:\n{again.tail()}\n{w2.tail()}"
        prod.join(seconds + 60)
        assert prod.error is None, prod.error
        again.wait_serving(30)
        got = wait_counts(expected, again, w2)
        time.sleep(2)  # anything counted twice would show up now
        got = counts_from(again, w2)
        return RestartRun(resume, parts, len(assignments(w2)) > seen, got, expected)
    finally:
        for w in (again, w1, w2):
            if w is not None:
                w.stop()


def test_kill_9_and_restart_with_the_same_instance_id_resumes_within_10_s(kafka_broker, tmp_path):
    r = restart_run(kafka_broker.bootstrap, tmp_path, static=True)
    assert r.resume_s < 10.0, r
    assert not r.other_reassigned, "a static member's restart must not move partitions to the other worker"
    assert r.counts == r.expected, r
