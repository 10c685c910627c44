"""The one ingest path end to end in-process: configurable quantiles, estimators,
examples, labels, histogram points and low-traffic pooling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datagen import T0, as_messages, shift_stream
from sketches import LogBuckets
from stream.cli import main
from stream.events import Decoded, HistPoint
from stream.pipeline import Pipeline, PipelineConfig


def _run(config: PipelineConfig, msgs: list[bytes]) -> tuple[list, list]:
    p = Pipeline(config)
    snaps, shifts = [], []
    for m in msgs:
        out = p.feed(m)
        snaps += out.snapshots
        shifts += out.shifts
    out = p.flush()
    return snaps + out.snapshots, shifts + out.shifts


MSGS = as_messages(shift_stream(interval=10.0, snapshots=60, shift_snapshot=40, per_snapshot=200, seed=4)[0], per_message=40)


def test_the_quantile_set_flows_through_snapshots_detection_and_events():
    snaps, shifts = _run(PipelineConfig(snapshot_interval_s=10.0, quantiles=(0.5, 0.95, 0.999)), MSGS)
    doc = snaps[0].to_json()
    assert [k for k in doc if k.startswith("p")] == ["p50", "p95", "p999"]
    assert snaps[0].p999 >= snaps[0].p95 >= snaps[0].p50
    [ev] = [s for s in shifts if s.kind == "shift"]
    assert ev.key == "A" and {m.metric for m in ev.metrics} <= {"p50", "p95", "p999"}


def test_estimator_option_changes_the_window_estimator_not_the_answer():
    exact, _ = _run(PipelineConfig(snapshot_interval_s=10.0), MSGS)
    for name in ("p2", "reservoir"):
        snaps, shifts = _run(PipelineConfig(snapshot_interval_s=10.0, estimator=name), MSGS)
        assert len(snaps) == len(exact)
        ratio = np.array([s.p50 for s in snaps]) / np.array([s.p50 for s in exact])
        assert np.median(np.abs(ratio - 1)) < 0.1, name
        assert {s.key for s in shifts if s.kind == "shift"} == {"A"}, name  # B never shifts


def test_a_shift_carries_real_example_values_from_both_sides():
    _, shifts = _run(PipelineConfig(snapshot_interval_s=10.0), MSGS)
    ev = next(s for s in shifts if s.kind == "shift")
    doc = ev.to_json()
    before, after = doc["examples"]["before"], doc["examples"]["after"]
    assert 0 < len(before) <= 16 and 0 < len(after) <= 16
    inputs = {round(e["value"] / 1000.0, 9) for m in MSGS for e in json.loads(m) if e["key"] == "A"}
    assert {round(v, 9) for v in before + after} <= inputs  # real values, not estimates
    assert np.median(after) > np.median(before)  # A slowed down by 1.5x


def test_labels_of_a_composite_key_reach_snapshots_and_shifts():
    events = shift_stream(interval=10.0, snapshots=60, shift_snapshot=40, per_snapshot=200, seed=4)[0]
    lines = [json.dumps({"svc": {"name": e["key"]}, "route": "/api", "ms": e["value"], "t": e["ts"]}).encode() for e in events]
    from stream.events import Decoder

    p = Pipeline(PipelineConfig(snapshot_interval_s=10.0), Decoder(key_fields=("svc.name", "route"), value_field="ms", ts_field="t"))
    out = p.feed_many(lines)
    out.extend(p.flush())
    assert out.snapshots and out.snapshots[0].to_json()["labels"] in ({"svc.name": "A", "route": "/api"}, {"svc.name": "B", "route": "/api"})
    [ev] = [s for s in out.shifts if s.kind == "shift"]
    assert ev.to_json()["labels"] == {"svc.name": "A", "route": "/api"} and ev.key == "A|/api"


def test_histogram_points_merge_into_windows_like_their_values():
    rng = np.random.default_rng(3)
    p_values, p_hist = Pipeline(PipelineConfig(snapshot_interval_s=10.0)), Pipeline(PipelineConfig(snapshot_interval_s=10.0))
    a, b = [], []
    for w in range(5):
        v = 0.04 * np.exp(0.3 * rng.standard_normal(500))
        ts = T0 + w * 10 + 5.0
        d = Decoded()
        for x in v:
            d.append("k", float(x), ts)
        a += p_values.process(d).snapshots
        sk = LogBuckets()
        sk.update_many(v)
        b += p_hist.process(Decoded(hists=[HistPoint("k", ts, sk, len(v), float(v.sum()), float(v.min()), float(v.max()))])).snapshots
    a += p_values.flush().snapshots
    b += p_hist.flush().snapshots
    assert [s.count for s in a] == [s.count for s in b] == [500] * 5
    for x, y in zip(a, b):
        assert y.mean == pytest.approx(x.mean, rel=1e-9)
        assert y.p99 == pytest.approx(x.p99, rel=0.03) and y.p50 == pytest.approx(x.p50, rel=0.03)
    assert p_hist.states["k"].moments.sum == pytest.approx(p_values.states["k"].moments.sum, rel=1e-12)


def test_a_low_traffic_key_is_pooled_until_the_detector_has_enough_samples():
    rng = np.random.default_rng(8)
    events = []
    for w in range(400):  # 0.2 events/s: 2 per 10 s window, x2 from window 250
        for t in rng.random(2) * 10:
            events.append({"key": "quiet", "value": float(40 * np.exp(0.25 * rng.standard_normal()) * (2.0 if w >= 250 else 1.0)), "ts": T0 + w * 10 + float(t)})
    events.sort(key=lambda e: e["ts"])
    msgs = as_messages(events, 1)
    _, pooled = _run(PipelineConfig(snapshot_interval_s=10.0), msgs)
    _, unpooled = _run(PipelineConfig(snapshot_interval_s=10.0, pool_min_samples=0), msgs)
    assert not [s for s in unpooled if s.kind == "shift"]  # 2 samples a window: never enough
    [ev] = [s for s in pooled if s.kind == "shift"]
    assert ev.pooled_windows == 15 and ev.to_json()["pooled_window_s"] == 150.0
    assert abs(ev.at - (T0 + 2500)) <= 3 * 150


def test_replay_takes_the_quantile_and_estimator_options(tmp_path, capsys):
    path = tmp_path / "ev.jsonl"
    path.write_bytes(b"\n".join(MSGS) + b"\n")
    assert main(["replay", str(path), "--snapshot-interval", "10", "--quantiles", "0.5,0.99", "--estimator", "reservoir", "--emit", "snapshot"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert "p99" in first and "p90" not in first


@pytest.mark.parametrize("argv", [["--quantiles", "0.5,1.5"], ["--estimator", "tdigest"], ["--detector", "nope"], ["--snapshot-interval", "0"]])
def test_bad_pipeline_options_are_one_line_errors(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["replay", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and argv[0] in err


def test_every_registered_detector_runs_in_the_stream_and_survives_a_checkpoint():
    from detectors.base import streaming_names
    from stream.checkpoint import decode_key_state, encode_key_state

    for name in streaming_names():
        config = PipelineConfig(snapshot_interval_s=10.0, detector_name=name)
        p = Pipeline(config)
        half = len(MSGS) // 2
        shifts = [s for m in MSGS[:half] for s in p.feed(m).shifts]
        restored = Pipeline(config)
        for key, st in p.states.items():
            restored.adopt(decode_key_state(key, encode_key_state(st, 0), config)[0])
        rest = [m for m in MSGS[half:]]
        a = [s for m in rest for s in p.feed(m).shifts] + p.flush().shifts
        b = [s for m in rest for s in restored.feed(m).shifts] + restored.flush().shifts
        assert [e.to_json() for e in a] == [e.to_json() for e in b], name  # same decisions after a restore
        assert all(e.detector == name for e in shifts + a)
        assert "B" not in {e.key for e in shifts + a if e.kind == "shift"}, name


def test_replay_emits_incidents_when_asked(tmp_path, capsys):
    keys = ("a", "b", "c")
    events, _ = shift_stream(snapshots=60, shift_snapshot=40, factor=1.0, keys=keys, shifted="a", interval=10.0, per_snapshot=200)
    t_shift = events[0]["ts"] + 400
    for e in events:
        e["value"] *= 1.6 if e["ts"] >= t_shift else 1.0  # all three keys slow down together
    path = tmp_path / "ev.jsonl"
    path.write_bytes(b"\n".join(as_messages(events, 40)) + b"\n")
    assert main(["replay", str(path), "--snapshot-interval", "10", "--emit", "shift,incident"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shifts = [d for d in docs if d["type"] == "shift"]
    [incident] = [d for d in docs if d["type"] == "incident" and not d["update"]]
    assert sorted(incident["keys"]) == sorted(keys) and sorted(incident["shift_ids"]) == sorted(s["id"] for s in shifts)
