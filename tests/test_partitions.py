"""Checkpoint scheduling of a worker's partitions: what is written when, and what a
restart recovers from it."""

from __future__ import annotations

from dataclasses import dataclass

from stream.events import Decoder
from stream.partitions import PartitionedState
from stream.pipeline import PipelineConfig
from stream.records import dumps

from datagen import as_messages, shift_stream

CONFIG = PipelineConfig(snapshot_interval_s=10.0)


@dataclass
class Rec:
    offset: int
    value: bytes
    timestamp: int = -1


def records():
    """Key A shifts; key B is steady. One message per 50 events of one key."""
    events, _ = shift_stream(snapshots=70, shift_snapshot=40, per_snapshot=200, seed=9)
    steady, _ = shift_stream(snapshots=70, shift_snapshot=10**6, per_snapshot=200, seed=10)
    events = [e for e in events if e["key"] == "A"] + [dict(e, key="B") for e in steady if e["key"] == "A"]
    events.sort(key=lambda e: (e["ts"], e["key"]))
    return [Rec(i, m) for i, m in enumerate(as_messages(events, 50))]


def test_a_shift_checkpoints_only_its_key_and_a_restart_does_not_republish_it():
    recs = records()
    state = PartitionedState(CONFIG, lambda: Decoder(), max_checkpoint_age=1e9, min_checkpoint_gap=1e9)
    shifts, written = [], {}
    for i in range(0, len(recs), 7):
        out = state.process_records("in", 0, recs[i : i + 7])
        shifts += out.shifts
        for part in state.urgent_partitions():
            urgent = state.urgent_records(part)
            # Only the key that shifted is written; B stays dirty for the full checkpoint.
            assert [k for k, _ in urgent] == [b"A"]
            assert "B" in state.parts[part].pipeline.dirty
            written.update(urgent)
        if shifts:
            break
    assert [s.key for s in shifts] == ["A"] and state.due_partitions() == []
    stop = i + 7
    # Crash now: a new owner restores A from its urgent record (B had no checkpoint) and
    # re-reads the partition from the start (nothing was committed).
    again = PartitionedState(CONFIG, lambda: Decoder())
    again.restore(0, list(written.items()))
    replayed = again.process_records("in", 0, recs[:stop]).shifts
    assert replayed == [], "the shift was checkpointed with its key: it is not published twice"
    # A's events up to the checkpoint were skipped, B's applied: the counts match the first run.
    first, second = state.parts[0].pipeline.states, again.parts[0].pipeline.states
    assert first["A"].moments.count == second["A"].moments.count
    assert first["B"].moments.count == second["B"].moments.count
    rest_a = state.process_records("in", 0, recs[stop:])
    rest_b = again.process_records("in", 0, recs[stop:])
    assert [dumps(s.to_json()) for s in rest_a.shifts] == [dumps(s.to_json()) for s in rest_b.shifts]


def test_checkpoints_of_a_slow_partition_are_spaced_by_their_cost():
    state = PartitionedState(CONFIG, lambda: Decoder(), max_checkpoint_age=30.0, min_checkpoint_gap=1.0)
    recs = records()
    state.process_records("in", 0, recs[:40])
    p = state.parts[0]
    p.due = True
    now = p.last_checkpoint
    assert state.due_partitions(now + 1.5) == [0]
    state.checkpoint_records(0)
    state.process_records("in", 0, recs[40:80])
    p.due = True
    # A checkpoint that took 2 s (100,000 keys, say) waits 10x that, not 1 s...
    p.cost = 2.0
    assert state.due_partitions(p.last_checkpoint + 1.5) == []
    assert state.due_partitions(p.last_checkpoint + 20.5) == [0]
    # ...and one that took 5 s stretches even the maximum age.
    p.cost, p.due = 5.0, False
    assert state.due_partitions(p.last_checkpoint + 31.0) == []
    assert state.due_partitions(p.last_checkpoint + 50.5) == [0]
