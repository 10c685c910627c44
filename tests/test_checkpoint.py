"""Checkpoints: exact restore, skip-by-offset after a crash, corrupt bytes reported."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings, strategies as st

from stream.checkpoint import CheckpointError, decode_key_state
from stream.events import Decoder
from stream.partitions import PartitionedState
from stream.pipeline import PipelineConfig
from stream.records import dumps

from datagen import as_messages, shift_stream

CONFIG = PipelineConfig(snapshot_interval_s=10.0)


def messages():
    events, _ = shift_stream(snapshots=70, shift_snapshot=40, per_snapshot=200, seed=9)
    return as_messages(events, 50)


def run_partition(state: PartitionedState, msgs, start=0, stop=None, checkpoint_at=()):
    """Feed messages [start, stop) of partition 0 at offsets = index; returns outputs and checkpoints."""
    shifts, snaps, checkpoints = [], [], {}
    for off in range(start, len(msgs) if stop is None else stop):
        decoded = state.part(0).pipeline.decoder.decode(msgs[off])
        out = state.process(0, off, decoded)
        shifts += [dumps(s.to_json()) for s in out.shifts]
        snaps += [dumps(s.to_json()) for s in out.snapshots]
        if off in checkpoint_at:
            checkpoints[off] = state.checkpoint_records(0)
    return shifts, snaps, checkpoints


def new_state() -> PartitionedState:
    return PartitionedState(CONFIG, lambda: Decoder())


def key_summary(state: PartitionedState):
    pipe = state.parts[0].pipeline
    return {
        k: (s.moments.count, round(s.moments.mean, 12), [round(float(x), 12) for x in s.alltime.quantiles([0.5, 0.9, 0.99])])
        for k, s in sorted(pipe.states.items())
    }


def test_restore_after_a_crash_neither_loses_nor_double_counts():
    msgs = messages()
    # Reference: one uninterrupted run.
    ref = new_state()
    ref_shifts, ref_snaps, _ = run_partition(ref, msgs)
    assert ref_shifts, "the reference run must contain a shift"

    # Crashed run: checkpoint at offset 150, keep going to 230, then die.
    a = new_state()
    shifts_a, snaps_a, cps = run_partition(a, msgs, 0, 231, checkpoint_at={150})
    # The committed offset trails the checkpoint (commits cover earlier batches): resume from 140.
    b = new_state()
    b.restore(0, cps[150])
    shifts_b, snaps_b, _ = run_partition(b, msgs, 140)
    assert b.stats.replayed == sum(len(json.loads(m)) for m in msgs[140:151])
    assert key_summary(b) == key_summary(ref)
    # After the restart the worker publishes exactly the tail of the reference output
    # (the part after the checkpoint), byte for byte; together nothing is missing.
    assert snaps_b == ref_snaps[len(ref_snaps) - len(snaps_b) :]
    assert shifts_b == ref_shifts[len(ref_shifts) - len(shifts_b) :]
    assert set(snaps_a) | set(snaps_b) == set(ref_snaps)
    assert set(shifts_a) | set(shifts_b) == set(ref_shifts)


def test_round_trip_keeps_detector_and_windows_exact():
    msgs = messages()
    a = new_state()
    run_partition(a, msgs, 0, 120)
    recs = a.checkpoint_records(0)
    b = new_state()
    b.restore(0, recs)
    # Both continue with the same input (offsets past the checkpoint): identical outputs.
    out_a = run_partition(a, msgs, 120)
    out_b = run_partition(b, msgs, 120)
    assert out_a[:2] == out_b[:2]
    assert key_summary(a) == key_summary(b)


def test_corrupt_records_are_reported_not_silently_reset(caplog):
    msgs = messages()
    a = new_state()
    run_partition(a, msgs, 0, 60)
    recs = dict(a.checkpoint_records(0))
    bad = bytearray(recs[b"A"])
    bad[len(bad) // 2] ^= 0xFF
    recs[b"A"] = bytes(bad)
    b = new_state()
    with caplog.at_level(logging.ERROR, logger="shiftwatch.state"):
        n = b.restore(0, list(recs.items()))
    assert n == 1 and b.stats.checkpoint_errors == 1
    assert "CRC" in caplog.text and "'A'" in caplog.text
    assert "A" not in b.parts[0].pipeline.states and "B" in b.parts[0].pipeline.states


def test_evicted_keys_are_tombstoned():
    state = PartitionedState(PipelineConfig(snapshot_interval_s=10.0, max_keys=1), lambda: Decoder())
    state.process(0, 0, Decoder().decode(b'{"key":"a","value":1,"ts":100}'))
    state.process(0, 1, Decoder().decode(b'{"key":"b","value":1,"ts":101}'))
    recs = dict(state.checkpoint_records(0))
    assert recs[b"a"] is None and recs[b"b"] is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_decode(data):
    with pytest.raises(CheckpointError):
        decode_key_state("k", data, CONFIG)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_is_detected(pos, flip):
    a = new_state()
    a.process(0, 0, Decoder().decode(json.dumps([{"key": "k", "value": v, "ts": 100 + v} for v in range(1, 40)]).encode()))
    (_, good), = a.checkpoint_records(0)
    bad = bytearray(good)
    bad[pos % len(bad)] ^= flip
    with pytest.raises(CheckpointError):
        decode_key_state("k", bytes(bad), CONFIG)
    assert decode_key_state("k", good, CONFIG)[1] == 1


def test_a_key_in_two_partitions_is_merged_for_metrics():
    state = new_state()
    vals0 = [{"key": "k", "value": v, "ts": 100 + v} for v in range(1, 51)]
    vals1 = [{"key": "k", "value": v, "ts": 100 + v} for v in range(51, 101)]
    state.process(0, 0, Decoder().decode(json.dumps(vals0).encode()))
    state.process(1, 0, Decoder().decode(json.dumps(vals1).encode()))
    (merged,) = state.keys_recent_first(10)
    assert merged.moments.count == 100
    assert merged.moments.mean == pytest.approx(0.0505)
    assert merged.alltime.quantile(0.5) == pytest.approx(0.0505, rel=0.02)
    assert state.key_count() == 2  # one state per partition


def test_restored_recent_snapshots_read_back_identically():
    msgs = messages()
    a = new_state()
    run_partition(a, msgs)
    b = new_state()
    b.restore(0, a.checkpoint_records(0))
    pa, pb = a.parts[0].pipeline, b.parts[0].pipeline
    for key, st in pa.states.items():
        assert len(st.recent) == 60
        assert list(pb.states[key].recent) == list(st.recent)
        assert pb.states[key].recent.column("end") == st.recent.column("end")
    # and a second round trip writes the same bytes
    assert dict(b.checkpoint_records(0)) == dict(a.checkpoint_records(0))


def test_version_1_records_with_float64_snapshots_are_still_read():
    import struct
    import zlib

    from stream.checkpoint import _SNAP, _uvarint, encode_key_state

    msgs = messages()
    a = new_state()
    _, snaps, _ = run_partition(a, msgs, 0, 400)
    pipe = a.parts[0].pipeline
    emitted = [json.loads(s) for s in snaps]
    records = []
    for key, st in pipe.states.items():
        rec = encode_key_state(st, 400)
        assert rec[3] == 3 and st.pool is None and not st.labels
        exb = st.examples_bytes()
        tail = _uvarint(0) + _uvarint(len(exb)) + exb + _uvarint(0) + _uvarint(0)  # version 3's sections
        assert rec.endswith(tail)
        body, blob = rec[8 : len(rec) - len(tail)], st.recent.to_bytes()
        head = body[: len(body) - len(blob) - len(_uvarint(len(blob)))]
        # What version 1 wrote: the emitted snapshots, float64 throughout.
        recent = [s for s in emitted if s["key"] == key][-len(st.recent) :]
        rows = [_SNAP.pack(*(s[f] for f in ("start", "end", "count", "mean", "p50", "p90", "p99", "min", "max"))) for s in recent]
        body1 = head + _uvarint(len(rows)) + b"".join(rows)
        records.append((key.encode(), struct.pack("<3sBI", b"SWK", 1, zlib.crc32(body1)) + body1))
    b = new_state()
    assert b.restore(0, records) == 2 and b.stats.checkpoint_errors == 0
    for key, st in pipe.states.items():
        assert list(b.parts[0].pipeline.states[key].recent) == list(st.recent)
    assert run_partition(a, msgs, 400)[:2] == run_partition(b, msgs, 400)[:2]
    ra, rb = dict(a.checkpoint_records(0)), dict(b.checkpoint_records(0))
    assert ra.keys() == rb.keys()
    for k in ra:
        # The same state; only the last bits of the sketch's float sum may depend on how
        # updates were batched (the restored key was cold and took them in one batch).
        sa, _ = decode_key_state(k.decode(), ra[k], CONFIG)
        sb, _ = decode_key_state(k.decode(), rb[k], CONFIG)
        assert sa.alltime == sb.alltime and sa.alltime.sum == pytest.approx(sb.alltime.sum, rel=1e-12)
        assert sa.moments.to_bytes() == sb.moments.to_bytes() and sa.detector.to_bytes() == sb.detector.to_bytes()
        assert list(sa.recent) == list(sb.recent) and sa.horizon == sb.horizon


def test_history_records_are_compact():
    msgs = messages()
    a = new_state()
    run_partition(a, msgs)
    for _, rec in a.checkpoint_records(0):
        st, _ = decode_key_state("x", rec, CONFIG)
        assert len(st.recent) == 60 and len(st.recent.to_bytes()) == 21 + 60 * 32


def test_recent_snapshots_keep_their_times_under_another_interval():
    msgs = messages()
    a = new_state()
    run_partition(a, msgs, 0, 200)
    for key, rec in a.checkpoint_records(0):
        before = list(a.parts[0].pipeline.states[key.decode()].recent)
        for cfg in (PipelineConfig(snapshot_interval_s=30.0), PipelineConfig(snapshot_interval_s=10.0, recent_snapshots=5)):
            st, _ = decode_key_state(key.decode(), rec, cfg)
            assert list(st.recent) == before[-cfg.recent_snapshots :]
