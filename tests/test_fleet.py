"""benchmarks/fleet.py: the fleet is seeded and has every kind, the fast engine is the
Pipeline's, and the scoring counts what it says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fleet as fl  # noqa: E402
from detectors import SnapshotShiftDetector  # noqa: E402
from stream.events import Decoder  # noqa: E402


@pytest.fixture(scope="module")
def small() -> fl.Fleet:
    return fl.make_fleet(seed=3, keys=12, hours=3.0)


def test_the_same_seed_gives_the_same_fleet_and_events_and_another_seed_does_not():
    a, b, c = fl.make_fleet(5, 30, 4.0), fl.make_fleet(5, 30, 4.0), fl.make_fleet(6, 30, 4.0)
    assert a.truth == b.truth and a.specs == b.specs
    assert a.truth != c.truth
    for x, y in zip(a.key_events(3), b.key_events(3)):
        assert np.array_equal(x, y)


def test_the_default_fleet_has_every_kind_of_key_and_change():
    f = fl.make_fleet(1)
    kinds = {t.kind for t in f.truth}
    assert kinds == set(fl.KINDS)
    rates = [s.rate for s in f.specs]
    assert min(rates) < 0.2 and max(rates) > 15
    labels = {s.label for s in f.specs}
    assert {"steady", "seasonal"} <= labels
    assert sum(1 for s in f.specs if s.gaps) >= 3 and sum(1 for s in f.specs if s.brownouts) >= 10
    assert sum(1 for s in f.specs if s.season >= 0.2) >= 20  # latency that follows the load curve
    # The incident: many keys shift within a minute of each other.
    starts = sorted(t.at for t in f.truth if t.kind == "incident" and t.direction == "regression")
    assert len(starts) >= 10 and starts[-1] - starts[0] <= 60
    # Reverted regressions are fixed 40 minutes later.
    for s in f.specs:
        if s.label == "reverted":
            assert s.steps[1].at - s.steps[0].at == 2400.0 and s.steps[0].factor * s.steps[1].factor == pytest.approx(1.0)
    assert any(t.rate < 1 for t in f.truth if t.kind != "low")


def test_events_are_whole_milliseconds_some_out_of_order_and_none_in_gaps():
    f = fl.make_fleet(1)
    i = next(s.index for s in f.specs if s.gaps and s.rate > 2)
    ts, ms = f.key_events(i)
    assert ms.dtype.kind == "i" and ms.min() >= 0
    assert (np.diff(ts) < -1.0).any()  # a few seconds out of order
    a, b = f.specs[i].gaps[0]
    assert not ((ts >= a) & (ts < b)).any()
    assert ((ts >= a - 600) & (ts < a)).any()


def test_the_window_engine_gives_the_real_pipelines_shifts(small):
    via_pipeline = fl.run_pipeline(small, SnapshotShiftDetector, pool_min_samples=0)
    via_windows = fl.run_windows(small, SnapshotShiftDetector, pool=False)
    key = lambda r: (r.key, r.kind, r.at, r.direction, r.detected_at)  # noqa: E731
    assert sorted(map(key, via_pipeline)) == sorted(map(key, via_windows))
    assert len(via_pipeline) > 0


def test_pooling_in_the_window_engine_is_the_pipelines(small):
    from detectors.seasonal import SeasonalShiftDetector

    via_pipeline = fl.run_pipeline(small, SeasonalShiftDetector)  # the Pipeline pools by default
    via_windows = fl.run_windows(small, SeasonalShiftDetector, pool=True)
    key = lambda r: (r.key, r.kind, r.at, r.direction)  # noqa: E731
    assert sorted(map(key, via_pipeline)) == sorted(map(key, via_windows))
    assert any(s.rate < 1 for s in small.specs)


def test_json_lines_decode_to_the_fleets_events(small, tmp_path):
    path = tmp_path / "fleet.jsonl"
    n = small.write_jsonl(str(path))
    kid, ts, ms = next(small.chunks())
    dec = Decoder()
    with open(path, "rb") as fh:
        lines = [next(fh) for _ in range(500)]
    d = dec.decode_many(lines)
    assert not d.dead and n > 10_000
    assert d.keys == [small.specs[k].key for k in kid[:500]]
    assert d.ts == ts[:500].tolist()
    assert d.values == (ms[:500] * 1e-3).tolist()
    assert json.loads(lines[0])["value"] == int(ms[0])


def test_scoring_matches_within_tolerance_same_direction_one_to_one(small):
    truth = small.truth
    perfect = [fl.Reported(t.key, "shift", t.at - 20, t.direction, t.at + 400) for t in truth]
    sc = fl.score(small, perfect)
    assert (sc.tp, sc.fp, sc.fn, sc.f1) == (len(truth), 0, 0, 1.0)
    t = truth[0]
    late = fl.Reported(t.key, "shift", t.at + fl.tolerance(small, next(s for s in small.specs if s.key == t.key), t.at) + 1, t.direction, t.at + 900)
    wrong_way = fl.Reported(t.key, "shift", t.at, "improvement" if t.direction == "regression" else "regression", t.at + 400)
    twice = fl.Reported(t.key, "shift", t.at + 30, t.direction, t.at + 400)
    sc = fl.score(small, [late, wrong_way, twice, perfect[0]])
    assert (sc.tp, sc.fp, sc.fn) == (1, 3, len(truth) - 1)
    assert sc.by_kind[t.kind][0] == 1
    steady = next(s for s in small.specs if not s.steps)
    retracted = fl.Reported(steady.key, "retraction", fl.T0 + 3600, "regression", fl.T0 + 4000)
    sc = fl.score(small, [fl.Reported(steady.key, "shift", fl.T0 + 3600, "regression", fl.T0 + 4000), retracted])
    assert sc.fp_steady == 1 and sc.retractions == 1
    assert sc.false_per_steady_key_day == pytest.approx(1 / (sc.steady_keys * 3.0 / 24))


def test_cli_prints_a_table_and_a_final_line_of_numbers(capsys):
    assert fl.main(["--seed", "4", "--keys", "10", "--hours", "3", "--detector", "snapshot", "--no-pool"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    nums = dict(kv.split("=") for kv in last.split())
    assert {"f1", "precision", "recall", "false_per_steady_key_day", "recall_under_1eps"} <= set(nums)
    assert 0.0 <= float(nums["f1"]) <= 1.0


def test_cli_bad_option_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        fl.main(["--keys", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--keys" in err[0]
