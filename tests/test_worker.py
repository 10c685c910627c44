"""The Worker object in-process, with fake Kafka clients and a fake clock: rebalances,
revocation mid-window, restore from checkpoint and commit ordering, in milliseconds.
The real-broker tests (test_e2e_kafka, test_faults_kafka) are the integration layer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from datagen import as_messages, shift_stream
from stream.partitions import PartitionedState
from stream.pipeline import PipelineConfig
from stream.events import Decoder
from stream.worker import Worker, WorkerTopics

TOPICS = WorkerTopics(input="in", shifts="shifts", dead_letter="dead", changelog="app-state")


@dataclass
class Rec:
    offset: int
    value: bytes | None
    timestamp: int = 0
    key: bytes | None = None
    headers: tuple = ()


@dataclass
class Broker:
    """Topic data and one shared event log (sends, flushes, commits, in order)."""

    input: dict[int, list[Rec]] = field(default_factory=dict)
    topics: dict[str, list[tuple[int | None, bytes | None, bytes | None]]] = field(default_factory=dict)
    log: list[tuple] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    reads: list[int] = field(default_factory=list)

    def load(self, partition: int, messages: list[bytes], keys: list[bytes | None] | None = None) -> None:
        recs = self.input.setdefault(partition, [])
        for i, m in enumerate(messages):
            recs.append(Rec(len(recs), m, key=keys[i] if keys else None, headers=(("h", b"1"),)))

    def published(self, topic: str) -> list[dict]:
        return [json.loads(v) for _, _, v in self.topics.get(topic, [])]

    async def read_changelog(self, partition: int, topic: str = TOPICS.changelog) -> list[tuple[bytes, bytes | None]]:
        self.reads.append(partition)
        return [(k, v) for p, k, v in self.topics.get(topic, []) if p == partition]

    def reader(self, topic: str):  # type: ignore[no-untyped-def]
        return lambda partition: self.read_changelog(partition, topic)


class FakeConsumer:
    def __init__(self, broker: Broker, max_per_partition: int = 50) -> None:
        self.b = broker
        self.assigned: set[TopicPartition] = set()
        self.pos: dict[TopicPartition, int] = {}
        self.max_per_partition = max_per_partition

    def assign(self, parts: list[int]) -> set[TopicPartition]:
        new = {TopicPartition("in", p) for p in parts}
        for tp in new:
            self.pos[tp] = self.b.committed.get(tp.partition, 0)
        self.assigned = new
        return new

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        out = {}
        for tp in sorted(self.assigned):
            recs = self.b.input.get(tp.partition, [])[self.pos[tp] : self.pos[tp] + min(max_records, self.max_per_partition)]
            if recs:
                out[tp] = recs
                self.pos[tp] += len(recs)
        await asyncio.sleep(0)
        return out

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.b.log.append(("commit", {tp.partition: o for tp, o in offsets.items()}))
        for tp, o in offsets.items():
            self.b.committed[tp.partition] = o

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    def seek(self, tp: Any, offset: int) -> None:
        self.pos[tp] = offset

    async def committed(self, tp: Any) -> int | None:
        return self.b.committed.get(tp.partition)

    def highwater(self, tp: Any) -> int | None:
        return len(self.b.input.get(tp.partition, [])) if tp in self.pos else None

    async def position(self, tp: Any) -> int:
        return self.pos[tp]


class FakeProducer:
    def __init__(self, broker: Broker) -> None:
        self.b = broker

    async def send(self, topic, value, key=None, partition=None, headers=None):  # type: ignore[no-untyped-def]
        self.b.topics.setdefault(topic, []).append((partition, key, value))
        self.b.log.append(("send", topic, partition, key, headers))

    async def flush(self) -> None:
        self.b.log.append(("flush",))


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def wall(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


def make_worker(broker: Broker, clock: FakeClock | None = None, checkpoint_age: float = 30.0) -> tuple[Worker, FakeConsumer]:
    clock = clock or FakeClock()
    config = PipelineConfig(snapshot_interval_s=10.0)
    state = PartitionedState(config, Decoder, max_checkpoint_age=checkpoint_age, clock=clock.monotonic)
    consumer = FakeConsumer(broker)
    w = Worker(state, TOPICS, consumer, FakeProducer(broker), broker.read_changelog, clock=clock, idle_close_after_s=2.0)
    return w, consumer


def data(seed: int = 1) -> tuple[list[bytes], list[bytes]]:
    """Two partitions: key A shifts (×1.5 from window 40 of 60), key B is steady."""
    events, _ = shift_stream(interval=10.0, snapshots=60, shift_snapshot=40, per_snapshot=100, seed=seed)
    a = as_messages([e for e in events if e["key"] == "A"], per_message=20)
    b = as_messages([e for e in events if e["key"] == "B"], per_message=20)
    return a, b


async def drain(w: Worker, steps: int = 1000) -> None:
    for _ in range(steps):
        before = sum(len(v) for v in w.consumer.b.input.values())  # type: ignore[attr-defined]
        await w.step()
        if all(w.consumer.pos[tp] >= len(w.consumer.b.input.get(tp.partition, [])) for tp in w.consumer.assigned):  # type: ignore[attr-defined]
            return
        assert before >= 0


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_one_shift_published_and_commit_follows_the_flushed_checkpoint():
    async def go() -> None:
        b = Broker()
        a, bb = data()
        b.load(0, a)
        b.load(1, bb)
        w, c = make_worker(b)
        await w.on_assigned(c.assign([0, 1]))
        await drain(w)
        await w.shutdown()
        shifts = [s for s in b.published("shifts") if s["type"] == "shift"]
        assert [s["key"] for s in shifts] == ["A"]
        assert b.committed == {0: len(a), 1: len(bb)}
        # every commit comes after a flush that follows every changelog send before it
        pending = False
        for ev in b.log:
            if ev[0] == "send" and ev[1] == TOPICS.changelog:
                pending = True
            elif ev[0] == "flush":
                pending = False
            elif ev[0] == "commit":
                assert not pending, "offsets committed before their checkpoint was flushed"

    run(go())


def test_revoke_mid_window_then_reassign_restores_and_counts_each_event_once():
    async def go() -> None:
        b = Broker()
        a, _ = data()
        b.load(0, a)
        # uninterrupted reference
        ref, rc = make_worker(Broker(input={0: list(b.input[0])}))
        await ref.on_assigned(rc.assign([0]))
        await drain(ref)
        await ref.shutdown()
        expected = [s for s in rc.b.published("shifts")]

        w1, c1 = make_worker(b)
        await w1.on_assigned(c1.assign([0]))
        for _ in range(3):  # part of the stream: a window is open
            await w1.step()
        assert w1.state.parts[0].pipeline.states["A"].windows, "revocation should land mid-window"
        await w1.on_revoked(set(c1.assigned))
        await w1.on_assigned(c1.assign([]))  # the partition went to another worker
        assert 0 not in w1.state.parts and b.committed[0] == 3 * 50
        # another worker takes the partition over from the changelog
        w2, c2 = make_worker(b)
        await w2.on_assigned(c2.assign([0]))
        await drain(w2)
        await w2.shutdown()
        got = b.published("shifts")
        assert got == expected  # same shift events, same ids, no duplicates
        total = sum(json.loads(m).__len__() for m in a)
        assert w1.state.stats.accepted + w2.state.stats.accepted - w2.state.stats.replayed == total

    run(go())


def test_a_batch_fetched_across_a_rebalance_is_put_back_not_applied():
    async def go() -> None:
        b = Broker()
        a, _ = data()
        b.load(0, a)
        w, c = make_worker(b)
        await w.on_assigned(c.assign([0]))
        await w.step()
        real_getmany = c.getmany

        async def getmany_then_rebalance(**kw):  # type: ignore[no-untyped-def]
            batch = await real_getmany(**kw)
            await w.on_revoked(set(c.assigned))
            await w.on_assigned(c.assign([0]))
            return batch

        c.getmany = getmany_then_rebalance  # type: ignore[method-assign]
        accepted = w.state.stats.accepted
        await w.step()
        c.getmany = real_getmany  # type: ignore[method-assign]
        assert w.state.stats.accepted == accepted  # nothing of the stale batch applied
        assert c.pos[TopicPartition("in", 0)] == 50  # sought back to the batch's first offset
        await drain(w)
        await w.shutdown()
        assert w.state.stats.accepted - w.state.stats.replayed == sum(len(json.loads(m)) for m in a)

    run(go())


def test_a_fully_processed_partition_is_committed_within_the_checkpoint_interval():
    """Issue 13 item 7: a shift in the last batch used to leave the offset uncommitted."""

    async def go() -> None:
        b = Broker()
        a, _ = data()
        b.load(0, a)
        clock = FakeClock()
        w, c = make_worker(b, clock, checkpoint_age=30.0)
        await w.on_assigned(c.assign([0]))
        while not b.published("shifts"):
            await w.step()
        end = c.pos[TopicPartition("in", 0)]
        del b.input[0][end:]  # the shift came in the last batch there is
        for _ in range(4):  # the idle timer, with no new input, over 40 s of wall time
            clock.t += 10.0
            await w.tick()
        assert b.committed.get(0) == end

    run(go())


def test_dead_letters_keep_the_original_key_and_headers():
    async def go() -> None:
        b = Broker()
        b.load(0, [b'{"key": "A", "value": -1, "ts": 1763800000}', b"not json"], keys=[b"k1", b"k2"])
        w, c = make_worker(b)
        await w.on_assigned(c.assign([0]))
        await w.step()
        sends = [ev for ev in b.log if ev[0] == "send" and ev[1] == "dead"]
        assert [s[3] for s in sends] == [b"k1", b"k2"]
        assert all(s[4] == [("h", b"1")] for s in sends)
        assert [d["reason"] for d in b.published("dead")] == ["negative_value", "invalid_json"]

    run(go())


def test_a_rebalance_keeps_the_state_of_partitions_still_owned():
    async def go() -> None:
        b = Broker()
        a, bb = data()
        b.load(0, a)
        b.load(1, bb)
        w, c = make_worker(b)
        await w.on_assigned(c.assign([0, 1]))
        for _ in range(2):
            await w.step()
        kept = w.state.parts[0].pipeline.states["A"]
        reads = list(b.reads)
        await w.on_revoked(set(c.assigned))  # a third worker joins...
        await w.on_assigned(c.assign([0]))  # ...and takes partition 1
        assert w.state.parts[0].pipeline.states["A"] is kept and b.reads == reads  # no reload
        assert 1 not in w.state.parts
        # partition 1 comes back after its other owner moved it on: reloaded, not reused
        other, oc = make_worker(b)
        await other.on_assigned(oc.assign([1]))
        await other.step()
        await other.shutdown()
        await w.on_revoked(set(c.assigned))
        await w.on_assigned(c.assign([0, 1]))
        await drain(w)
        await w.shutdown()
        assert b.reads == reads + [1, 1]  # the other worker's restore, then ours
        assert w.state.stats.accepted - w.state.stats.replayed + other.state.stats.accepted == sum(len(json.loads(m)) for m in a + bb)

    run(go())


# -- two-stage topology: stage 1 (partials) and stage 2 (merge), in-process ----------------

def two_stage(broker: Broker, n_partials: int = 2, sources: int = 4) -> tuple[Worker, FakeConsumer, Worker, FakeConsumer]:
    from stream.merge import MergeState

    clock = FakeClock()
    c1cfg = PipelineConfig(snapshot_interval_s=10.0, stage="partials")
    s1 = PartitionedState(c1cfg, Decoder, clock=clock.monotonic)
    topics1 = WorkerTopics("in", "shifts", "dead", "app-state", partials="app-partials", partials_partitions=n_partials, sources=sources)
    c1 = FakeConsumer(broker)
    w1 = Worker(s1, topics1, c1, FakeProducer(broker), broker.read_changelog, clock=clock)
    s2 = MergeState(PipelineConfig(snapshot_interval_s=10.0, stage="merge"), clock=clock.monotonic, stats=s1.stats)
    c2 = PartialsConsumer(broker, "app-partials")
    w2 = Worker(s2, WorkerTopics("app-partials", "shifts", "dead", "app-merge-state"), c2, FakeProducer(broker), broker.reader("app-merge-state"), clock=clock)
    return w1, c1, w2, c2


class PartialsConsumer(FakeConsumer):
    """Reads what stage 1 produced to the partials topic (by partition)."""

    def __init__(self, broker: Broker, topic: str) -> None:
        super().__init__(broker, max_per_partition=10_000)
        self.topic = topic

    def assign(self, parts: list[int]) -> set[TopicPartition]:
        self.assigned = {TopicPartition(self.topic, p) for p in parts}
        for tp in self.assigned:
            self.pos.setdefault(tp, 0)
        return self.assigned

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        out = {}
        for tp in sorted(self.assigned):
            recs = [Rec(i, v) for i, (p, _, v) in enumerate(r for r in self.b.topics.get(self.topic, []) if r[0] == tp.partition)]
            new = recs[self.pos[tp] :]
            if new:
                out[tp] = new
                self.pos[tp] += len(new)
        await asyncio.sleep(0)
        return out

    async def commit(self, offsets: dict[Any, int]) -> None:
        pass


def _spread(msgs_by_key: dict[str, list[bytes]], sources: int, keyed: bool) -> dict[int, list[bytes]]:
    """Keyed: each key on one partition; unkeyed: a key's messages round-robin over all."""
    out: dict[int, list[bytes]] = {p: [] for p in range(sources)}
    timed = sorted((json.loads(m)[0]["ts"], i, j, m) for i, key in enumerate(sorted(msgs_by_key)) for j, m in enumerate(msgs_by_key[key]))
    for _, i, j, m in timed:  # each partition in time order, as producers write it
        out[(i if keyed else j) % sources].append(m)
    return out


def _run_two_stage(spread: dict[int, list[bytes]]) -> tuple[list[dict], Any]:
    async def go() -> tuple[list[dict], Any]:
        b = Broker()
        for p, msgs in spread.items():
            b.load(p, msgs)
        w1, c1, w2, c2 = two_stage(b)
        await w1.on_assigned(c1.assign(list(spread)))
        await w2.on_assigned(c2.assign([0, 1]))
        for _ in range(200):
            await w1.step()
            await w2.step()
        w1.clock.t += 60  # type: ignore[attr-defined]
        await w1.tick()
        await w2.step()
        return b.published("shifts"), w2.state

    return run(go())


def test_two_stage_gives_the_same_shifts_however_the_producer_partitions():
    a, bb = data()
    by_key = {"A": a, "B": bb}
    keyed, ks = _run_two_stage(_spread(by_key, 4, keyed=True))
    unkeyed, us = _run_two_stage(_spread(by_key, 4, keyed=False))
    total = sum(len(json.loads(m)) for m in a + bb)
    assert ks.stats.late == us.stats.late == 0 and ks.stats.accepted == us.stats.accepted == total
    for st in (ks, us):  # every event reached stage 2's all-time state, once
        assert sum(s.moments.count for p in st.parts.values() for s in p.pipeline.states.values()) == total
    shifts = [s for s in keyed if s["type"] == "shift"]
    assert [s["key"] for s in shifts] == ["A"]
    strip = lambda docs: [{k: v for k, v in d.items() if k != "examples"} for d in docs]  # noqa: E731
    assert strip(keyed) == strip(unkeyed)  # same keys, at, ids, evidence


def test_two_stage_crash_of_either_stage_loses_and_doubles_nothing():
    from stream.merge import MergeState

    a, bb = data()
    spread = _spread({"A": a, "B": bb}, 4, keyed=False)
    expected, _ = _run_two_stage(spread)
    total = sum(len(json.loads(m)) for m in a + bb)

    async def go() -> list[dict]:
        b = Broker()
        for p, msgs in spread.items():
            b.load(p, msgs)
        w1, c1, w2, c2 = two_stage(b)
        await w1.on_assigned(c1.assign(list(spread)))
        await w2.on_assigned(c2.assign([0, 1]))
        for _ in range(5):
            await w1.step()
            await w2.step()
        await w2.checkpoint(sorted(w2.state.parts))
        for _ in range(3):  # stage 2 applies more, then dies before its next checkpoint
            await w1.step()
            await w2.step()
        # stage 1 dies too (no checkpoint since its last one); both restart from their changelogs
        clock = w1.clock
        s2 = MergeState(PipelineConfig(snapshot_interval_s=10.0, stage="merge"), clock=clock.monotonic)  # type: ignore[attr-defined]
        c2b = PartialsConsumer(b, "app-partials")  # re-reads the partials topic from the start
        w2b = Worker(s2, w2.topics, c2b, FakeProducer(b), b.reader("app-merge-state"), clock=clock)
        await w2b.on_assigned(c2b.assign([0, 1]))
        w1b, c1b, _, _ = two_stage(b)
        w1b.state.stats = s2.stats
        await w1b.on_assigned(c1b.assign(list(spread)))  # resumes from stage 1's committed offsets
        for _ in range(200):
            await w1b.step()
            await w2b.step()
        w1b.clock.t += 60  # type: ignore[attr-defined]
        await w1b.tick()
        await w2b.step()
        merged = sum(s.moments.count for p in s2.parts.values() for s in p.pipeline.states.values())
        assert merged == total, (merged, total)
        return b.published("shifts")

    got = run(go())
    ids = [d["id"] for d in got if d["type"] == "shift"]
    assert len(set(ids)) == len(ids) and set(ids) == {d["id"] for d in expected if d["type"] == "shift"}


def test_two_stage_does_not_wait_the_merge_grace_for_empty_input_partitions():
    """Two keys on a 4-partition topic: partitions 2 and 3 never hold an event. Read to
    their end, they say so, and stage 2 closes windows once the partitions with data
    have passed them — not a merge grace (30 s here) later."""
    a, bb = data()
    expected, _ = _run_two_stage(_spread({"A": a, "B": bb}, 4, keyed=True))

    async def go(highwater_known: bool) -> tuple[int, list[dict]]:
        b = Broker()
        for p, msgs in _spread({"A": a, "B": bb}, 4, keyed=True).items():
            b.load(p, msgs)
        w1, c1, w2, c2 = two_stage(b)
        if not highwater_known:  # the client has no fetch response yet: maybe a backlog
            c1.highwater = lambda tp: None  # type: ignore[method-assign]
        await w1.on_assigned(c1.assign([0, 1, 2, 3]))
        await w2.on_assigned(c2.assign([0, 1]))
        for _ in range(200):
            await w1.step()
            await w2.step()
        assert w2.state.stats.snapshots == 0  # partitions 2 and 3 not heard from: waiting
        w1.clock.t += max(w1.idle_close_after_s, w1.empty_partition_after_s)  # type: ignore[attr-defined]
        await w1.tick()
        await w2.step()
        return w2.state.stats.snapshots, b.published("shifts")

    snapshots, shifts = run(go(highwater_known=True))
    assert snapshots > 0 and shifts == expected
    assert run(go(highwater_known=False)) == (0, [])
