"""Change-point detectors on labelled, seeded percentile-snapshot series.

Scores every detector in the same run (ours, apache-otava, ruptures and the field's
classic methods): precision / recall / F1 with a 5-snapshot margin, false alarms per
10,000 no-change snapshots, detection delay for the streaming ones, run time. Then
the speed anchors: EDivisive vs Otava on 10,000 points, StreamingEDivisive.update at
a 200-point history, and parity on the 13 vendored Otava series (tests/data/otava).

With ``--tcpd DIR`` (a clone of the Turing Change Point Dataset, or a folder holding
its ``<name>.json`` files and ``annotations.json``; default ``$SHIFTWATCH_TCPD``) it
also scores the detectors on TCPD's univariate series with the TCPD benchmark's F1
(van den Burg & Williams 2020: precision against the union of the annotators' points,
recall averaged over annotators, index 0 counted as a change point on both sides,
margin 5). Series: univariate, without missing values, not the five annotator
quality-control series: 25 series. The stream's detector sees each value as one
snapshot (a single metric, 1000 samples).

    .venv/bin/python benchmarks/detectors_bench.py [--quick] [--seed N] [--tcpd DIR [--tcpd-only]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors import EDivisive, SnapshotShiftDetector, StreamingEDivisive, make_streaming  # noqa: E402
from detectors.mdl import MDLGrouping  # noqa: E402
from detectors.perfherder import PerfherderTTest  # noqa: E402
from detectors.talos import TalosMixture  # noqa: E402

MARGIN = 5
METRICS = ("p50", "p90", "p99")
OTAVA = ROOT / "tests" / "data" / "otava"  # vendored Otava 0.8.0 series and outputs (see its NOTICE)


# ----------------------------------------------------------------------------- data


@dataclass
class Series:
    name: str
    kind: str  # "change" or "quiet"
    p: dict[str, np.ndarray]
    counts: np.ndarray
    truth: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.counts)


def _snap(rng, n, per, draw) -> tuple[dict[str, np.ndarray], np.ndarray]:
    out = np.empty((n, 3))
    for i in range(n):
        v = draw(i, rng, per)
        out[i] = np.quantile(v, [0.5, 0.9, 0.99])
    return {m: out[:, j] for j, m in enumerate(METRICS)}, np.full(n, per)


def lognormal(base=0.04, sigma=0.4):
    return lambda rng, k: base * np.exp(sigma * rng.standard_normal(k))


def bimodal(share_slow):
    def draw(rng, k):
        slow = rng.random(k) < share_slow
        return np.where(slow, 0.08 * np.exp(0.15 * rng.standard_normal(k)), 0.02 * np.exp(0.2 * rng.standard_normal(k)))

    return draw


def pareto(base=0.03, a=3.0):
    return lambda rng, k: base * (1.0 + rng.pareto(a, k))


def make_suite(seed: int, reps: int, quiet_len: int, per: int) -> list[Series]:
    rng = np.random.default_rng(seed)
    suite: list[Series] = []
    for r in range(reps):
        n = int(rng.integers(120, 200))
        a = int(rng.integers(40, n - 40))
        f = float(rng.choice([1.25, 1.4, 1.6, 0.7]))
        ln = lognormal()
        p, c = _snap(rng, n, per, lambda i, g, k: ln(g, k) * (f if i >= a else 1.0))
        suite.append(Series(f"median_step/{r}", "change", p, c, [a]))

        def tail(i, g, k, a=a):
            v = ln(g, k)
            if i >= a:
                kk = max(1, k // 40)
                v[:kk] *= 4.0
            return v

        p, c = _snap(rng, n, per, tail)
        suite.append(Series(f"tail_step/{r}", "change", p, c, [a]))
        lo, hi = lognormal(sigma=0.35), lognormal(sigma=0.7)
        p, c = _snap(rng, n, per, lambda i, g, k: (hi if i >= a else lo)(g, k))
        suite.append(Series(f"variance_change/{r}", "change", p, c, [a]))
        b0, b1 = bimodal(0.05), bimodal(0.3)
        p, c = _snap(rng, n, per, lambda i, g, k: (b1 if i >= a else b0)(g, k))
        suite.append(Series(f"mode_mix/{r}", "change", p, c, [a]))
        n2 = 200
        a1 = int(rng.integers(40, 100))
        a2 = a1 + int(rng.integers(20, 60))
        p, c = _snap(rng, n2, per, lambda i, g, k: ln(g, k) * (1.5 if a1 <= i < a2 else 1.0))
        suite.append(Series(f"regression_then_fix/{r}", "change", p, c, [a1, a2]))
        spikes = set()
        for s in 25 + 40 * np.arange(4) + rng.integers(0, 25, 4):  # brownouts >= 12 apart
            spikes.update(range(int(s), int(s) + int(rng.integers(1, 4))))
        p, c = _snap(rng, 200, per, lambda i, g, k: ln(g, k) * (3.0 if i in spikes else 1.0))
        suite.append(Series(f"brownouts/{r}", "quiet", p, c, []))
    for name, draw in (("lognormal", lognormal()), ("bimodal", bimodal(0.15)), ("pareto", pareto())):
        p, c = _snap(rng, quiet_len, per, lambda i, g, k, d=draw: d(g, k))
        suite.append(Series(f"no_change_{name}", "quiet", p, c, []))
    return suite


# ----------------------------------------------------------------------------- detectors


def _union(cps: list[int]) -> list[int]:
    out: list[int] = []
    for c in sorted(cps):
        if not out or c - out[-1] > MARGIN:
            out.append(c)
    return out


def per_metric(fn, metrics=METRICS, chunk: int | None = None):
    """Run a single-series detector on each metric (chunked if asked); union of indices."""

    def run(s: Series) -> tuple[list[int], list[int]]:
        cps = []
        for m in metrics:
            x = s.p[m]
            step = chunk or len(x)
            for a in range(0, len(x), step):
                cps += [a + c for c in fn(x[a : a + step])]
        return _union(cps), []

    return run


def snapshot_detector(s: Series) -> tuple[list[int], list[int]]:
    d = SnapshotShiftDetector()
    live: dict[int, int] = {}
    for i in range(s.n):
        for dec in d.update(30.0 * i, {m: float(s.p[m][i]) for m in METRICS}, int(s.counts[i])):
            if dec.kind == "shift":
                live[dec.index] = i
            else:
                live.pop(dec.index, None)
    idx = sorted(live)
    return idx, [live[k] for k in idx]


def otava_detector():
    from otava.analysis import compute_change_points

    def fn(x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [int(c.index) for c in compute_change_points(list(map(float, x)), 50, 0.001, 0.0)[0]]

    return fn


def ruptures_detector():
    import ruptures as rpt

    def fn(x):
        y = np.log(x)
        sigma = np.median(np.abs(np.diff(y))) / (0.6745 * np.sqrt(2)) + 1e-12
        # KernelCPD with the linear kernel is Pelt on the l2 cost, in C.
        bk = rpt.KernelCPD(kernel="linear", min_size=3).fit(y / sigma).predict(pen=3.0 * np.log(len(y)))
        return [b for b in bk if b < len(y)]

    return fn


def score(detected: list[int], truth: list[int]) -> tuple[int, int, int, list[int]]:
    """Greedy one-to-one matching within MARGIN: (tp, fp, fn, matched truth indices)."""
    used = set()
    tp = 0
    matched = []
    for t in truth:
        best = None
        for j, d in enumerate(detected):
            if j not in used and abs(d - t) <= MARGIN and (best is None or abs(d - t) < abs(detected[best] - t)):
                best = j
        if best is not None:
            used.add(best)
            tp += 1
            matched.append(best)
    return tp, len(detected) - tp, len(truth) - tp, matched


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small suite, for CI and smoke runs")
    ap.add_argument("--seed", type=int, default=20251122)
    ap.add_argument("--speed-only", action="store_true", help="only the speed anchors and parity")
    ap.add_argument("--tcpd", type=Path, default=os.environ.get("SHIFTWATCH_TCPD"), help="TCPD clone or folder of its JSON files")
    ap.add_argument("--tcpd-only", action="store_true", help="only the TCPD scores")
    args = ap.parse_args()
    reps, quiet_len, per = (3, 1200, 200) if args.quick else (10, 4000, 300)

    t0 = time.perf_counter()
    if args.tcpd is not None:
        tcpd(Path(args.tcpd))
    else:
        print("TCPD: skipped (clone the Turing Change Point Dataset and pass --tcpd DIR)")
    if args.tcpd_only:
        return 0
    if not args.speed_only:
        accuracy(args, reps, quiet_len, per)
    speed(args)
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


def accuracy(args, reps: int, quiet_len: int, per: int) -> None:
    t0 = time.perf_counter()
    suite = make_suite(args.seed, reps, quiet_len, per)
    print(f"suite: {len(suite)} series, {sum(s.n for s in suite)} snapshots, {per} samples each "
          f"(built in {time.perf_counter() - t0:.1f} s), margin {MARGIN}")

    dets: list[tuple[str, object]] = [
        ("shiftwatch SnapshotShiftDetector (stream)", snapshot_detector),
        ("shiftwatch EDivisive (per metric)", per_metric(lambda x: [c.index for c in EDivisive().detect(x)])),
        ("shiftwatch EDivisive on log, min_mag 0.1", per_metric(
            lambda x: [c.index for c in EDivisive(min_magnitude=0.1).detect(np.log(x))])),
        ("Perfherder t-test (per metric)", per_metric(lambda x: [c.index for c in PerfherderTTest().detect(x)])),
        ("CSIT MDL grouping (p50,p99; chunks 500)", per_metric(
            lambda x: [c.index for c in MDLGrouping(max_group=100).detect(x)], ("p50", "p99"), 500)),
        ("Talos mixture (p50,p99; stride 3)", per_metric(
            lambda x: [c.index for c in TalosMixture(stride=3, em_iters=30).detect(x)], ("p50", "p99"))),
    ]
    try:
        dets.append(("apache-otava 0.8.0 (per metric)", per_metric(otava_detector())))
    except ImportError:
        print("apache-otava not installed: skipped (pip install .[bench])")
    try:
        dets.append(("ruptures Pelt (KernelCPD linear) on log", per_metric(ruptures_detector())))
    except ImportError:
        print("ruptures not installed: skipped (pip install .[bench])")

    quiet_snaps = sum(s.n for s in suite if s.kind == "quiet")
    rows = []
    for name, run in dets:
        tp = fp = fn = 0
        qfp = 0
        delays: list[int] = []
        t = time.perf_counter()
        for s in suite:
            det, seen = run(s)
            a, b, c, matched = score(det, s.truth)
            if s.kind == "change":
                tp, fp, fn = tp + a, fp + b, fn + c
                delays += [seen[j] - det[j] for j in matched] if seen else []
            else:
                qfp += len(det)
        el = time.perf_counter() - t
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        fa = 1e4 * qfp / quiet_snaps
        med = statistics.median(delays) if delays else None
        rows.append((name, prec, rec, f1, fa, med, el))
        print(f"  done {name}: {el:.1f} s", flush=True)

    print()
    print(f"| detector | precision | recall | F1 | false alarms / 10k quiet | median delay | time s |")
    print(f"|---|---|---|---|---|---|---|")
    for name, prec, rec, f1, fa, med, el in rows:
        d = "batch" if med is None else f"{med:g}"
        print(f"| {name} | {prec:.3f} | {rec:.3f} | {f1:.3f} | {fa:.2f} | {d} | {el:.2f} |")

    # Per-scenario recall for ours, to see where it misses.
    print()
    by: dict[str, list[int]] = {}
    for s in suite:
        if s.kind == "change":
            det, _ = snapshot_detector(s)
            a, b, c, _ = score(det, s.truth)
            k = s.name.split("/")[0]
            v = by.setdefault(k, [0, 0, 0])
            v[0] += a
            v[1] += b
            v[2] += c
    print("SnapshotShiftDetector per scenario (tp/fp/fn): " + ", ".join(f"{k} {v[0]}/{v[1]}/{v[2]}" for k, v in by.items()))



# ----------------------------------------------------------------------------- TCPD


@dataclass
class TcpdSeries:
    name: str
    values: np.ndarray
    annotations: dict[str, list[int]]


def load_tcpd(root: Path) -> list[TcpdSeries]:
    """The univariate TCPD series without missing values, quality-control series left out."""
    ann = json.loads((root / "annotations.json").read_text())
    files = sorted(root.glob("datasets/*/*.json")) or sorted(root.glob("*.json"))
    out = []
    for f in files:
        if f.name == "annotations.json":
            continue
        d = json.loads(f.read_text())
        name = d.get("name", f.stem)
        if d.get("n_dim") != 1 or name.startswith("quality_control") or name not in ann:
            continue
        raw = d["series"][0]["raw"]
        if any(v is None for v in raw):
            continue
        out.append(TcpdSeries(name, np.asarray(raw, dtype=np.float64), ann[name]))
    return out


def _true_positives(truth: set[int], pred: set[int], margin: int) -> int:
    """Each true point matches the closest unused prediction within the margin."""
    left = set(pred)
    tp = 0
    for t in sorted(truth):
        close = sorted((abs(t - x), x) for x in left if abs(t - x) <= margin)
        if close:
            left.remove(close[0][1])
            tp += 1
    return tp


def tcpd_f1(annotations: dict[str, list[int]], predicted: list[int], margin: int = MARGIN) -> float:
    """TCPD's F1: precision over the union of annotations, recall averaged over annotators."""
    users = [set(v) | {0} for v in annotations.values()]
    pred = set(predicted) | {0}
    union = set().union(*users)
    p = _true_positives(union, pred, margin) / len(pred)
    r = sum(_true_positives(u, pred, margin) / len(u) for u in users) / len(users)
    return 2 * p * r / (p + r) if p + r else 0.0


def stream_on_values(x: np.ndarray, name: str = "edivisive", **opts) -> list[int]:
    """A stream detector fed one snapshot per value; the shifts still standing at the end."""
    d = make_streaming(name, metrics=("value",), **opts)
    live: set[int] = set()
    for i, v in enumerate(x):
        for dec in d.update(float(i), {"value": float(v)}, 1000):
            (live.add if dec.kind == "shift" else live.discard)(dec.index)
    return sorted(live)


def tcpd(root: Path) -> None:
    suite = load_tcpd(root)
    print(f"TCPD: {len(suite)} univariate series from {root}, margin {MARGIN}")
    dets: list[tuple[str, object]] = [
        ("zero (no change point)", lambda x: []),
        ("shiftwatch stream default (make_streaming('edivisive'))", stream_on_values),
        ("shiftwatch EDivisive (batch, defaults)", lambda x: [c.index for c in EDivisive().detect(x)]),
        ("Perfherder t-test (batch)", lambda x: [c.index for c in PerfherderTTest().detect(x)]),
        ("CSIT MDL grouping (batch)", lambda x: [c.index for c in MDLGrouping().detect(x)]),
        ("stream: perfherder adapter", lambda x: stream_on_values(x, "perfherder")),
    ]
    try:
        import ruptures as rpt

        def binseg(x):
            y = (x - x.mean()) / (x.std() + 1e-12)
            bk = rpt.Binseg(model="l2").fit(y).predict(pen=2.0 * np.log(len(y)))
            return [b for b in bk if b < len(y)]

        dets.append(("ruptures Binseg l2 (pen 2 log n, standardised)", binseg))
    except ImportError:
        pass
    per_series: dict[str, list[float]] = {}
    print("| detector | mean F1 | time s |")
    print("|---|---|---|")
    for name, fn in dets:
        t = time.perf_counter()
        f1s = [tcpd_f1(s.annotations, fn(s.values)) for s in suite]
        per_series[name] = f1s
        print(f"| {name} | {statistics.mean(f1s):.3f} | {time.perf_counter() - t:.2f} |", flush=True)
    stream = per_series[dets[1][0]]
    zero = per_series[dets[0][0]]
    print("stream default per series (F1, zero baseline): " + ", ".join(
        f"{s.name} {f:.2f}/{z:.2f}" for s, f, z in zip(suite, stream, zero)))
    print()


def speed(args) -> None:
    """Speed anchors, each against its reference in the same run; repetitions are
    interleaved so that load from elsewhere hits both sides alike."""
    print()
    rng = np.random.default_rng(args.seed)
    x = rng.normal(100.0, 2.0, 10_000)
    for a in range(1000, 10_000, 1500):
        x[a:] *= rng.choice([1.05, 0.95])
    ed = EDivisive()
    ed.detect(x[:500])
    reps_t = 7
    try:
        from otava.analysis import compute_change_points

        xs = list(map(float, x))
        mine, theirs_t = [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(reps_t):
                mine.append(_timed(lambda: ed.detect(x)))
                theirs_t.append(_timed(lambda: compute_change_points(xs, 50, 0.001, 0.0)))
            same = [c.index for c in ed.detect(x)] == [int(c.index) for c in compute_change_points(xs, 50, 0.001, 0.0)[0]]
        ours, theirs = min(mine), min(theirs_t)
        print(f"EDivisive.detect, 10,000 points: {ours * 1e3:.1f} ms; Otava {theirs * 1e3:.1f} ms; "
              f"speed-up {theirs / ours:.1f}x; same indices: {same}")
    except ImportError:
        ours = min(_timed(lambda: ed.detect(x)) for _ in range(reps_t))
        print(f"EDivisive.detect, 10,000 points: {ours * 1e3:.1f} ms (Otava not installed)")

    y = rng.normal(100.0, 2.0, 3000 if args.quick else 6000)
    for a in range(500, len(y), 700):
        y[a:] *= 1.1 if (a // 700) % 2 else 1 / 1.1
    runs = []
    for _ in range(3):
        s = StreamingEDivisive(history=200)
        for v in y[:400]:
            s.update(v)
        t = time.perf_counter()
        for v in y[400:]:
            s.update(v)
        runs.append((time.perf_counter() - t) / (len(y) - 400) * 1e6)
    print(f"StreamingEDivisive.update, history 200: {min(runs):.0f} us per update "
          f"(mean over {len(y) - 400} updates, best of 3 runs; runs {', '.join(f'{r:.0f}' for r in runs)})")

    exp = json.loads((OTAVA / "expected.json").read_text())["datasets"]
    ok = 0
    for name, e in exp.items():
        v = json.loads((OTAVA / "datasets" / f"{name}.json").read_text())["values"]
        ok += [c.index for c in EDivisive().detect(v)] == e["otava_default_indexes"]
    print(f"parity with Otava 0.8.0 defaults: {ok}/{len(exp)} series identical")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    raise SystemExit(main())
