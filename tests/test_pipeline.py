"""The Kafka-free core: windows, lateness, shifts, reconciliation, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sketches import LogBuckets
from stream.pipeline import KeyState, Pipeline, PipelineConfig
from stream.records import dumps

from datagen import T0, as_messages, shift_stream


def run(messages, interval=10.0, **kw):
    p = Pipeline(PipelineConfig(snapshot_interval_s=interval, **kw))
    out_snaps, out_shifts, out_dead = [], [], []
    for m in messages:
        o = p.feed(m)
        out_snaps += o.snapshots
        out_shifts += o.shifts
        out_dead += o.dead
    o = p.flush()
    out_snaps += o.snapshots
    out_shifts += o.shifts
    return p, out_snaps, out_shifts, out_dead


def test_snapshots_per_key_and_window_with_exact_counts():
    events, values = shift_stream(snapshots=6, shift_snapshot=99)
    p, snaps, shifts, dead = run(as_messages(events, 50))
    assert not dead and not shifts
    # Each key closes its own windows, in event-time order per key.
    assert sorted((s.start, s.key) for s in snaps[:4]) == [(T0, "A"), (T0, "B"), (T0 + 10, "A"), (T0 + 10, "B")]
    for key in "AB":
        starts = [s.start for s in snaps if s.key == key]
        assert starts == sorted(starts) == [T0 + 10 * i for i in range(6)]
    assert len(snaps) == 12
    a0 = [s for s in snaps if s.key == "A"][0]
    exact = values["A"][:300] / 1000
    assert a0.count == 300
    assert a0.mean == pytest.approx(exact.mean(), rel=1e-9)
    for q, got in ((0.5, a0.p50), (0.9, a0.p90), (0.99, a0.p99)):
        assert got == pytest.approx(np.quantile(exact, q), rel=0.03)
    assert a0.min == pytest.approx(exact.min()) and a0.max == pytest.approx(exact.max())


def test_late_events_count_all_time_but_not_in_closed_windows():
    lines = [
        {"key": "k", "value": 10, "ts": T0 + 1},
        {"key": "k", "value": 10, "ts": T0 + 25},  # watermark 25 - 1 (lateness) closes [0,10) and [10,20)
        {"key": "k", "value": 99, "ts": T0 + 5},  # late
        {"key": "k", "value": 20, "ts": T0 + 23.5},  # window [20,30) still open
    ]
    p, snaps, _, _ = run([json.dumps(e).encode() for e in lines], allowed_lateness_s=1.0)
    assert p.stats.late == 1 and p.stats.accepted == 4
    assert p.states["k"].moments.count == 4
    assert [(s.start - T0, s.count) for s in snaps] == [(0.0, 1), (20.0, 2)]


def test_batching_does_not_change_the_output():
    events, _ = shift_stream(snapshots=50, shift_snapshot=30, per_snapshot=60, seed=3)
    # Shuffle a little so some events arrive out of order.
    rng = np.random.default_rng(0)
    idx = np.arange(len(events))
    swaps = rng.integers(0, len(events) - 3, 400)
    for i in swaps:
        idx[i], idx[i + 2] = idx[i + 2], idx[i]
    events = [events[i] for i in idx]
    outs = []
    for per in (1, 7, 500):  # 500 takes the grouped, vectorised path
        p, snaps, shifts, _ = run(as_messages(events, per), allowed_lateness_s=0.0)
        # Means are float sums whose order depends on batching: compare them to 1e-12;
        # counts, quantiles (integer bucket counts), min, max and shifts exactly.
        snap_rows = {k: [(r.start, r.count, r.p50, r.p90, r.p99, r.min, r.max, round(r.mean, 12)) for r in snaps if r.key == k] for k in "AB"}
        shift_rows = {k: [dumps(r.to_json()) for r in shifts if r.key == k] for k in "AB"}
        outs.append((snap_rows, shift_rows, p.stats.late, p.stats.accepted))
    assert outs[0][2] > 0, "the shuffled input must contain late events"
    assert outs[0] == outs[1] == outs[2]


def test_one_shift_event_for_the_shifted_key_and_none_for_the_quiet_one():
    events, _ = shift_stream(snapshots=70, shift_snapshot=40, factor=1.5)
    p, snaps, shifts, _ = run(as_messages(events, 100))
    assert [s.key for s in shifts] == ["A"], [s.to_json() for s in shifts]
    ev = shifts[0]
    assert ev.kind == "shift" and ev.direction == "regression"
    assert abs(ev.at - (T0 + 400)) <= 3 * 10
    moved = {m.metric: m for m in ev.metrics}
    assert "p50" in moved
    assert moved["p50"].relative_change == pytest.approx(0.5, abs=0.1)
    assert ev.samples_before > 0 and ev.samples_after > 0
    assert ev.pvalue < 0.001
    assert p.stats.shifts == 1


def test_improvement_direction():
    events, _ = shift_stream(snapshots=70, shift_snapshot=40, factor=0.6, keys=("A",))
    _, _, shifts, _ = run(as_messages(events, 100))
    assert [(s.key, s.direction) for s in shifts] == [("A", "improvement")]


def test_counts_reconcile_with_mixed_good_and_bad_input():
    msgs = [
        b'{"key":"a","value":1,"ts":1763800000}',
        b"not json",
        b'[{"key":"a","value":2,"ts":1763800001},{"key":"a","value":"x","ts":1763800001},7]',
        b'{"key":"a","values":[1,-1,2],"ts":1763800002}',
    ]
    p, _, _, dead = run(msgs)
    assert p.stats.messages == 4
    assert p.stats.accepted == 4  # 1 + 1 + 2
    assert p.stats.rejected == len(dead) == 4
    assert p.stats.rejected_by_reason == {"invalid_json": 1, "bad_value": 1, "not_an_object": 1, "negative_value": 1}


def test_key_limit_evicts_the_least_recently_updated_key():
    msgs = [json.dumps({"key": k, "value": 1, "ts": T0 + i}).encode() for i, k in enumerate("abcab")]
    msgs.append(json.dumps({"key": "c", "value": 1, "ts": T0 + 6}).encode())
    p, *_ = run(msgs, max_keys=2)
    # a b | c evicts a | a evicts b | b evicts c | c evicts a
    assert list(p.states) == ["b", "c"]
    assert p.stats.evicted == 4


def test_cold_keys_keep_serialized_sketches_and_answer_the_same():
    events, _ = shift_stream(snapshots=20, shift_snapshot=99, per_snapshot=50, keys=tuple("ABCDE"), shifted="A", seed=4)
    msgs = as_messages(events, 10)
    hot, _, _, _ = run(msgs)
    cold, _, _, _ = run(msgs, hot_keys=2)
    frozen = [k for k, st in cold.states.items() if st._alltime is None]
    assert len(frozen) == 3
    for k in "ABCDE":
        a, b = hot.states[k], cold.states[k]
        assert list(a.alltime.quantiles([0.5, 0.99])) == list(b.alltime_view().quantiles([0.5, 0.99]))
    # A cold key thaws on its next event and carries on exactly.
    more = [json.dumps({"key": k, "value": 33.0, "ts": T0 + 500}).encode() for k in frozen]
    for m in more:
        hot.feed(m)
        cold.feed(m)
    for k in frozen:
        a, b = hot.states[k].alltime, cold.states[k].alltime_view()
        assert a.count == b.count
        assert list(a.quantiles([0.1, 0.5, 0.9, 0.99])) == list(b.quantiles([0.1, 0.5, 0.9, 0.99]))
    # One event does not thaw a cold key: it waits beside the serialized sketch.
    assert all(not cold.states[k].hot and cold.states[k]._pending for k in frozen)


def test_a_cold_key_takes_values_without_thawing_until_it_is_busy():
    """Many quiet keys cost no sketch decode per event; a busy one joins the hot keys."""
    p = Pipeline(PipelineConfig(snapshot_interval_s=10.0, hot_keys=3))
    ref = Pipeline(PipelineConfig(snapshot_interval_s=10.0))
    rng = np.random.default_rng(3)
    keys = [f"k{i}" for i in range(40)]
    for r in range(3):  # every key: 20 values a round, in one batch of 800 events
        ev = [{"key": k, "value": float(x), "ts": T0 + r + j / 100} for k in keys for j, x in enumerate(rng.lognormal(3, 0.5, 20))]
        raw = json.dumps(ev).encode()
        p.feed(raw)
        ref.feed(raw)
        cold = [st for st in p.states.values() if not st.hot]
        assert len(p.states) - len(cold) <= 3
        if r:  # new keys start hot and were frozen after round 0; since then values wait
            assert len(cold) == 37 and all(len(st._pending) == 20 * r for st in cold)
    # 60 values each: all but the hot ones still wait; reads and checkpoints fold them in.
    for k in keys:
        a, b = ref.states[k], p.states[k]
        assert a.alltime == b.alltime_view()
        was_hot, blob = b.hot, b.alltime_bytes()
        assert b.hot == was_hot and b._pending is None and LogBuckets.from_bytes(blob) == a.alltime
    # A busy key is thawed once its waiting values fill up, then updated in place.
    busy = [{"key": "k0", "value": 5.0, "ts": T0 + 9 + j / 1000} for j in range(KeyState.PENDING)]
    p.feed(json.dumps(busy).encode())
    assert p.states["k0"].hot and next(reversed(p._hot)) == "k0"


def test_recent_snapshots_read_back_as_float32_of_what_was_emitted():
    events, _ = shift_stream(snapshots=80, shift_snapshot=99, per_snapshot=40, keys=("A",), seed=5)
    p, snaps, shifts, _ = run(as_messages(events, 100), recent_snapshots=60)
    st = p.states["A"]
    assert len(snaps) == 80 and len(st.recent) == 60 and not shifts and st.shifts == ()
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    for got, s in zip(st.recent, snaps[-60:]):
        assert (got.key, got.start, got.end, got.count) == (s.key, s.start, s.end, s.count)
        assert (got.mean, got.p50, got.p90, got.p99, got.min, got.max) == tuple(
            f32(x) for x in (s.mean, s.p50, s.p90, s.p99, s.min, s.max)
        )
    assert st.recent.column("start") == [s.start for s in snaps[-60:]]
    assert st.recent.column("p99") == [f32(s.p99) for s in snaps[-60:]]
    assert len(st.recent._buf) == 60 * 32  # window number, count, six float32


def test_a_burst_of_open_windows_leaves_no_slack_behind():
    # A worker catching up reads many windows of a key in one batch; once they close,
    # the key's window table is small again.
    events, _ = shift_stream(snapshots=40, shift_snapshot=99, per_snapshot=20, keys=("A",), seed=6)
    p = Pipeline(PipelineConfig(snapshot_interval_s=10.0, allowed_lateness_s=1000.0))
    p.feed_many(as_messages(events, 100))
    st = p.states["A"]
    assert len(st.windows) > 30
    p.feed(json.dumps({"key": "A", "value": 1, "ts": T0 + 2000}).encode())
    assert len(st.windows) == 1 and st.windows.__sizeof__() <= {0: 0}.__sizeof__()
