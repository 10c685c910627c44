"""A seeded fleet of services over half a day, with known truth: our detection yardstick.

Why: clean stationary keys make every detector look perfect. A real fleet has keys from
0.1 to 20 events/s whose latency follows the daily load curve with no code change, slow
trends, integer-millisecond values, silent gaps, brownouts, events a few seconds out of
order, a fleet-wide incident, regressions fixed 40 minutes later, small shifts, shifts
of the tail only, and shifts on keys too slow to fill a snapshot. This module generates
such a fleet (same seed, same events), runs a detector over it, and scores the reported
shifts against the truth.

Scoring: a reported shift (type ``shift``; retractions do not undo it: the page went out)
matches a true change of the same key and direction when its ``at`` lies within the
tolerance of the change time: five snapshots (the margin of detectors_bench.py), plus on keys too slow to fill a snapshot
one pooled window (``min_samples`` / events per second at that time). One-to-one, nearest
first. F1 over all keys; false shifts per steady key-day on keys with no true change.

Engines: ``pipeline`` feeds the real ``stream.pipeline.Pipeline`` (batches of decoded
events in arrival order, interleaved over keys); ``windows`` builds the same closed
windows per key with the Pipeline's own lateness rule (tested to give the same shifts)
and can pool low-traffic windows (``stream.pooling.Pooler``) before the detector.

    .venv/bin/python benchmarks/fleet.py [--seed N] [--keys K] [--hours H] [--detector NAME] [--quick]
        [--engine pipeline|windows] [--no-pool] [--write events.jsonl]

Last full runs (120 keys, 12 h, ~23M events, 90 true changes, 57 steady keys; 2026-12-04):

| run | F1 | precision | recall | false / steady key-day | recall < 1 ev/s | small | tail | incident | low | reverted |
|---|---|---|---|---|---|---|---|---|---|---|
| before: snapshot, real Pipeline, no pooling, seed 1 | 0.205 | 0.122 | 0.644 | 8.39 | 0.158 | 1.0 | 1.0 | 0.55 | 0.0 | 1.0 |
| snapshot + the Pipeline's pooling, seed 1 | 0.231 | 0.130 | 1.000 | 12.2 | 1.000 | 1.0 | 1.0 | 1.0 | 1.0 | 1.0 |
| after: seasonal + pooling, seed 1 | 0.938 | 0.954 | 0.922 | 0.000 | 0.921 | 0.50 | 1.0 | 0.95 | 0.93 | 1.0 |
| after: seasonal + pooling, seed 2 | 0.966 | 0.977 | 0.956 | 0.070 | 0.912 | 0.875 | 1.0 | 0.95 | 0.93 | 1.0 |
| after: seasonal + pooling, seed 3 | 0.943 | 0.965 | 0.922 | 0.070 | 0.941 | 0.50 | 0.86 | 0.975 | 0.93 | 1.0 |
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = [
    "Step",
    "KeySpec",
    "Truth",
    "Fleet",
    "Reported",
    "Score",
    "make_fleet",
    "score",
    "run_pipeline",
    "run_windows",
    "key_windows",
    "DETECTORS",
]

T0 = 1_763_942_400.0 + 6 * 3600.0  # 06:00 UTC: the half day covers the morning ramp and the peaks
INTERVAL = 30.0
LATENESS = 3.0  # the Pipeline's default: 10 % of the interval
MIN_SAMPLES = 30
TOL_SNAPSHOTS = 5  # the margin of detectors_bench.py and of the TCPD evaluation
KINDS = ("shift", "small", "tail", "low", "incident", "reverted")


# ----------------------------------------------------------------------------- the fleet


@dataclass(slots=True, frozen=True)
class Step:
    """From ``at`` (epoch s) on, the key's latencies are x ``factor`` (tail: only a slow 5 %)."""

    at: float
    factor: float
    kind: str
    tail: bool = False


@dataclass(slots=True, frozen=True)
class KeySpec:
    key: str
    index: int
    rate: float  # mean events/s over the run (the load curve modulates it)
    median_ms: float
    sigma: float
    season: float  # log-latency per unit of log-load (0: load-insensitive)
    bump: tuple[float, float, float]  # (log amplitude, centre s after T0, width s): a lunch hump
    trend: float  # log-latency per hour (a slow leak)
    ou_sd: float  # slow random wander of the level (log sd)
    ou_tau: float  # its time scale, seconds
    label: str  # steady | seasonal | one of KINDS
    steps: tuple[Step, ...] = ()
    gaps: tuple[tuple[float, float], ...] = ()
    brownouts: tuple[tuple[float, float, float], ...] = ()  # (start, end, factor)


@dataclass(slots=True, frozen=True)
class Truth:
    key: str
    at: float
    direction: str  # regression | improvement
    kind: str
    rate: float


def load_curve(t: np.ndarray | float) -> np.ndarray:
    """Relative load by time of day: night trough, a late-morning and an afternoon peak."""
    h = (np.asarray(t, dtype=np.float64) - T0) / 3600.0 + 6.0
    peaks = 0.85 * np.exp(-0.5 * ((h - 11.0) / 2.0) ** 2) + np.exp(-0.5 * ((h - 15.5) / 2.3) ** 2)
    return 0.22 + 0.78 * np.minimum(peaks, 1.0)


@dataclass(slots=True)
class Fleet:
    seed: int
    hours: float
    specs: tuple[KeySpec, ...]
    truth: tuple[Truth, ...]
    interval: float = INTERVAL

    @property
    def t_end(self) -> float:
        return T0 + self.hours * 3600.0

    def _load_mean(self) -> float:
        return float(load_curve(np.arange(T0, self.t_end, 60.0)).mean())

    def _ou(self, spec: KeySpec) -> np.ndarray:
        """The key's slow wander on a 30 s grid (its own seeded stream)."""
        rng = np.random.default_rng([self.seed, spec.index, 10_000])
        n = int(self.hours * 3600 / 30) + 2
        a = math.exp(-30.0 / spec.ou_tau)
        z = rng.standard_normal(n) * spec.ou_sd * math.sqrt(1 - a * a)
        x = np.empty(n)
        x[0] = rng.standard_normal() * spec.ou_sd
        for i in range(1, n):
            x[i] = a * x[i - 1] + z[i]
        return x

    def log_level(self, spec: KeySpec, ts: np.ndarray, ou: np.ndarray | None = None) -> np.ndarray:
        """Log multiplier of the key's latency at event times ``ts`` (no steps, no noise)."""
        ou = self._ou(spec) if ou is None else ou
        lv = spec.season * np.log(load_curve(ts) / self._load_mean())
        amp, centre, width = spec.bump
        if amp:
            lv = lv + amp * np.exp(-0.5 * ((ts - T0 - centre) / width) ** 2)
        lv = lv + spec.trend * (ts - T0) / 3600.0
        return lv + np.interp(ts - T0, np.arange(len(ou)) * 30.0, ou)

    def key_chunk(self, i: int, hour: int, ou: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Key ``i``'s events of one hour: (arrival time, event ts, value in integer ms), in arrival order."""
        spec = self.specs[i]
        rng = np.random.default_rng([self.seed, spec.index, hour])
        lo = T0 + hour * 3600.0
        hi = min(lo + 3600.0, self.t_end)
        sec = np.arange(lo, hi, 1.0)
        lam = spec.rate * load_curve(sec + 0.5) / self._load_mean()
        for a, b in spec.gaps:
            lam[(sec >= a) & (sec < b)] = 0.0
        counts = rng.poisson(lam)
        ts = np.repeat(sec, counts) + rng.random(int(counts.sum()))
        ts = np.round(ts, 3)
        for a, b in spec.gaps:  # silent: not one event inside
            ts = ts[(ts < a) | (ts >= b)]
        n = len(ts)
        lv = self.log_level(spec, ts, ou) + spec.sigma * rng.standard_normal(n)
        tail_p = np.full(n, 0.01)
        for s in spec.steps:
            after = ts >= s.at
            if s.tail:
                tail_p[after] = 0.06
            else:
                lv[after] += math.log(s.factor)
        for a, b, f in spec.brownouts:
            lv[(ts >= a) & (ts < b)] += math.log(f)
        slow = rng.random(n) < tail_p
        lv[slow] += math.log(5.0) + 0.3 * rng.standard_normal(int(slow.sum()))
        ms = np.maximum(np.rint(spec.median_ms * np.exp(lv)), 0).astype(np.int64)
        # Most events arrive within a second; one in twenty is one to six seconds late.
        delay = rng.exponential(0.4, n)
        late = rng.random(n) < 0.05
        delay[late] = rng.uniform(1.0, 6.0, int(late.sum()))
        arrival = ts + delay
        order = np.argsort(arrival, kind="stable")
        return arrival[order], ts[order], ms[order]

    def hours_range(self) -> range:
        return range(int(math.ceil(self.hours)))

    def key_events(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """All of key ``i``'s events in arrival order: (ts, value ms)."""
        ou = self._ou(self.specs[i])
        parts = [self.key_chunk(i, h, ou) for h in self.hours_range()]
        return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The whole fleet hour by hour, interleaved in arrival order: (key index, ts, ms)."""
        ous = [self._ou(s) for s in self.specs]
        for h in self.hours_range():
            parts = [self.key_chunk(i, h, ous[i]) for i in range(len(self.specs))]
            arr = np.concatenate([p[0] for p in parts])
            kid = np.concatenate([np.full(len(p[0]), i, dtype=np.int64) for i, p in enumerate(parts)])
            ts = np.concatenate([p[1] for p in parts])
            ms = np.concatenate([p[2] for p in parts])
            order = np.argsort(arr, kind="stable")
            yield kid[order], ts[order], ms[order]

    def rate_at(self, spec: KeySpec, t: float) -> float:
        return spec.rate * float(load_curve(t)) / self._load_mean()

    def write_jsonl(self, path: str) -> int:
        """Single-event JSON lines, ``{"key","value"(ms),"ts"}``, in arrival order."""
        names = [s.key for s in self.specs]
        n = 0
        with open(path, "w", encoding="utf-8") as fh:
            for kid, ts, ms in self.chunks():
                fh.writelines(f'{{"key":"{names[k]}","value":{v},"ts":{t!r}}}\n' for k, t, v in zip(kid.tolist(), ts.tolist(), ms.tolist()))
                n += len(kid)
        return n


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _labels(rng: np.random.Generator, keys: int) -> list[str]:
    """Scenario per key: over half steady or seasonal (a sixth of those join the incident)."""
    mix = [("steady", 0.2), ("seasonal", 0.35), ("shift", 0.06), ("small", 0.07), ("tail", 0.06), ("low", 0.12), ("reverted", 0.06)]
    labels = []
    for name, frac in mix:
        labels += [name] * max(1, round(frac * keys))
    labels = (labels + ["seasonal"] * keys)[:keys]
    rng.shuffle(labels)
    return labels


def _rate(rng: np.random.Generator, label: str) -> float:
    if label == "low":
        return _loguniform(rng, 0.1, 0.9)
    if label in ("small", "tail"):
        return _loguniform(rng, 3.0, 20.0)
    if label in ("shift", "reverted"):
        return _loguniform(rng, 1.0, 20.0)
    return _loguniform(rng, 0.1, 20.0)


def _steps(rng: np.random.Generator, label: str, hours: float) -> tuple[Step, ...]:
    t_lo, t_hi = T0 + min(1.5, 0.35 * hours) * 3600, T0 + (hours - min(1.0, 0.2 * hours)) * 3600
    at = float(rng.uniform(t_lo, t_hi))
    up = rng.random() < 0.7
    if label == "shift":
        f = rng.uniform(1.25, 1.8) if up else rng.uniform(0.6, 0.8)
    elif label == "small":
        f = rng.uniform(1.12, 1.2) if up else rng.uniform(0.83, 0.89)
    elif label == "low":
        f = rng.uniform(1.6, 2.5) if up else rng.uniform(0.45, 0.6)
    elif label == "tail":
        return (Step(at, 1.0, "tail", tail=True),)
    elif label == "reverted":
        at = float(rng.uniform(t_lo, max(t_lo, t_hi - 2400 - 600)))
        f = rng.uniform(1.3, 2.0)
        return (Step(at, f, "reverted"), Step(at + 2400.0, 1.0 / f, "reverted"))
    else:
        return ()
    return (Step(at, float(f), label),)


def _far(t: float, steps: Sequence[Step], margin: float) -> bool:
    return all(abs(t - s.at) > margin for s in steps)


def _gaps(rng: np.random.Generator, steps: Sequence[Step], hours: float) -> tuple[tuple[float, float], ...]:
    if rng.random() >= 0.15:
        return ()
    for _ in range(20):
        a = float(rng.uniform(T0 + 1800, T0 + (hours - 1) * 3600))
        b = a + float(rng.uniform(600, 5400))
        if all(not (a - 1800 < s.at < b + 1800) for s in steps):
            return ((a, b),)
    return ()


def _brownouts(rng: np.random.Generator, steps: Sequence[Step], hours: float) -> tuple[tuple[float, float, float], ...]:
    if rng.random() >= 0.25:
        return ()
    out = []
    for _ in range(int(rng.integers(1, 4))):
        a = float(rng.uniform(T0 + 1800, T0 + hours * 3600 - 600))
        if _far(a, steps, 900):
            out.append((a, a + float(rng.uniform(60, 300)), float(rng.uniform(1.8, 4.0))))
    return tuple(sorted(out))


def _season(rng: np.random.Generator, label: str) -> tuple[float, tuple[float, float, float], float]:
    """Load sensitivity, lunch hump, trend: strong on seasonal keys, some on most others."""
    strong = label == "seasonal"
    if not strong and rng.random() < 0.4:
        return 0.0, (0.0, 0.0, 1.0), 0.0
    season = rng.uniform(0.2, 0.65) if strong else rng.uniform(0.05, 0.35)
    bump = (0.0, 0.0, 1.0)
    if rng.random() < (0.4 if strong else 0.15):
        bump = (float(rng.uniform(0.12, 0.35)), float(rng.uniform(5.0, 7.5) * 3600), float(rng.uniform(2400, 4200)))
    trend = float(rng.uniform(-0.02, 0.05)) if rng.random() < 0.3 else 0.0
    return float(season), bump, trend


def make_fleet(seed: int = 1, keys: int = 120, hours: float = 12.0) -> Fleet:
    """A fleet with every kind of key; the same arguments always give the same fleet."""
    if keys < 10 or not 3.0 <= hours <= 24.0:
        raise ValueError("keys must be >= 10 and hours in [3, 24]")
    rng = np.random.default_rng([seed, 0])
    labels = _labels(rng, keys)
    specs: list[KeySpec] = []
    for i, label in enumerate(labels):
        steps = _steps(rng, label, hours)
        season, bump, trend = _season(rng, label)
        specs.append(
            KeySpec(
                key=f"svc-{i:03d}-{label}",
                index=i,
                rate=_rate(rng, label),
                median_ms=_loguniform(rng, 4.0, 400.0),
                sigma=float(rng.uniform(0.3, 0.8)),
                season=season,
                bump=bump,
                trend=trend,
                ou_sd=float(rng.uniform(0.01, 0.035)),
                ou_tau=float(rng.uniform(900, 2400)),
                label=label,
                steps=steps,
                gaps=_gaps(rng, steps, hours),
                brownouts=_brownouts(rng, steps, hours),
            )
        )
    specs = _incident(rng, specs, hours)
    truth = [
        Truth(s.key, st.at, "regression" if st.factor > 1 or st.tail else "improvement", st.kind, s.rate)
        for s in specs
        for st in s.steps
    ]
    return Fleet(seed, hours, tuple(specs), tuple(sorted(truth, key=lambda x: (x.at, x.key))))


def _incident(rng: np.random.Generator, specs: list[KeySpec], hours: float) -> list[KeySpec]:
    """A dependency slows down: a sixth of the keys shift within a minute, recover 1-2 h later."""
    start = T0 + 0.45 * hours * 3600
    end = start + float(rng.uniform(3600, 7200))
    pool = [s for s in specs if s.label in ("steady", "seasonal") and not s.gaps]
    members = rng.choice(len(pool), size=max(2, len(specs) // 6), replace=False)
    chosen = {pool[int(j)].index for j in members}
    out = []
    for s in specs:
        if s.index in chosen:
            f = float(rng.uniform(1.4, 2.0))
            a = start + float(rng.uniform(0, 60))
            steps = (Step(a, f, "incident"), Step(end + float(rng.uniform(0, 60)), 1.0 / f, "incident"))
            brown = tuple(b for b in s.brownouts if _far(b[0], steps, 900))
            s = replace(s, key=f"svc-{s.index:03d}-incident", steps=steps, brownouts=brown, label="incident")
        out.append(s)
    return out


# ----------------------------------------------------------------------------- running detectors


@dataclass(slots=True, frozen=True)
class Reported:
    key: str
    kind: str  # shift | retraction
    at: float
    direction: str
    detected_at: float
    window_s: float = 0.0  # pooled window length behind the decision (0: not pooled)


def _detectors() -> dict[str, Callable[[], object]]:
    from detectors import SnapshotShiftDetector

    out: dict[str, Callable[[], object]] = {"snapshot": SnapshotShiftDetector}
    try:
        from detectors.seasonal import SeasonalShiftDetector

        out["seasonal"] = SeasonalShiftDetector
    except ImportError:  # pragma: no cover - while the module is being written
        pass
    try:  # every registered streaming detector, by its registry name (trend, edivisive, ...)
        from functools import partial

        from detectors.base import make_streaming, streaming_names

        for name in streaming_names():
            out.setdefault(name, partial(make_streaming, name))
    except ImportError:  # pragma: no cover
        pass
    return out


DETECTORS = _detectors


def run_pipeline(
    fleet: Fleet, detector_factory: Callable[[], object] | None = None, batch: int = 5000, pool_min_samples: int | None = None
) -> list[Reported]:
    """The real Pipeline on the fleet's events, in arrival order, ``batch`` decoded events
    at a time; ``pool_min_samples`` 0 switches the Pipeline's own pooling off (None: its default)."""
    from stream.events import Decoded
    from stream.pipeline import Pipeline, PipelineConfig

    kw: dict[str, object] = {"detector_factory": detector_factory} if detector_factory is not None else {}
    if pool_min_samples is not None:
        kw["pool_min_samples"] = pool_min_samples
    pipe = Pipeline(PipelineConfig(snapshot_interval_s=fleet.interval, **kw))
    names = np.array([s.key for s in fleet.specs], dtype=object)
    out: list[Reported] = []

    def take(shifts: Iterable) -> None:
        for e in shifts:
            out.append(Reported(e.key, e.kind, float(e.at), e.direction, float(e.detected_at)))

    for kid, ts, ms in fleet.chunks():
        vals = ms.astype(np.float64) * 1e-3  # the Decoder's ms -> s
        for a in range(0, len(kid), batch):
            b = a + batch
            d = Decoded(keys=names[kid[a:b]].tolist(), values=vals[a:b].tolist(), ts=ts[a:b].tolist())
            take(pipe.process(d).shifts)
    take(pipe.flush().shifts)
    return out


def key_windows(fleet: Fleet, i: int) -> list[tuple[float, float, np.ndarray]]:
    """Key ``i``'s closed windows (start, end, values in s) as the Pipeline closes them:
    an event is late (left out) when its window ended at or before the key's newest
    earlier event time minus the lateness."""
    ts, ms = fleet.key_events(i)
    if not len(ts):
        return []
    iv = fleet.interval
    before = np.empty_like(ts)
    before[0] = -np.inf
    before[1:] = np.maximum.accumulate(ts[:-1]) - LATENESS
    w = np.floor(ts / iv)
    keep = (w + 1) * iv > before
    w, v = w[keep], ms[keep].astype(np.float64) * 1e-3
    order = np.argsort(w, kind="stable")
    w, v = w[order], v[order]
    cuts = np.flatnonzero(np.diff(w)) + 1
    return [(float(g[0]) * iv, (float(g[0]) + 1) * iv, vals) for g, vals in zip(np.split(w, cuts), np.split(v, cuts))]


QS = (0.5, 0.9, 0.99)


def run_windows(fleet: Fleet, detector_factory: Callable[[], object], pool: bool = True, min_samples: int = MIN_SAMPLES) -> list[Reported]:
    """Per key: closed windows -> (pooled to ``min_samples`` when ``pool``) -> detector."""
    out: list[Reported] = []
    for i, spec in enumerate(fleet.specs):
        det = detector_factory()
        pooler = None
        if pool:
            from stream.pooling import Pooler

            pooler = Pooler(min_samples)
        for start, end, vals in key_windows(fleet, i):
            if pooler is None:
                q = np.quantile(vals, QS)
                t, n, length = start, len(vals), 0.0
            else:
                pw = pooler.add(start, end, vals, len(vals))
                if pw is None:
                    continue
                q = (pw.p50, pw.p90, pw.p99)
                t, n, length = pw.start, pw.count, pw.end - pw.start
            for d in det.update(t, {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2])}, n):
                out.append(Reported(spec.key, d.kind, float(d.at), d.direction, end, length))
    return out


# ----------------------------------------------------------------------------- scoring


@dataclass(slots=True)
class Score:
    tp: int
    fp: int
    fn: int
    fp_steady: int
    steady_keys: int
    retractions: int
    hours: float
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [found, total]
    under_1: list[int] = field(default_factory=lambda: [0, 0])
    delays: list[float] = field(default_factory=list)
    false_keys: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_per_steady_key_day(self) -> float:
        days = self.steady_keys * self.hours / 24.0
        return self.fp_steady / days if days else 0.0

    def kind_recall(self, kind: str) -> float:
        f, n = self.by_kind.get(kind, [0, 0])
        return f / n if n else float("nan")


def tolerance(fleet: Fleet, spec: KeySpec, t: float, min_samples: int = MIN_SAMPLES) -> float:
    """Five snapshots, plus one pooled window where the key cannot fill a snapshot."""
    r = fleet.rate_at(spec, t)
    pooled = min_samples / r if r * fleet.interval < min_samples else 0.0
    return TOL_SNAPSHOTS * fleet.interval + pooled


def score(fleet: Fleet, reported: Sequence[Reported], min_samples: int = MIN_SAMPLES) -> Score:
    specs = {s.key: s for s in fleet.specs}
    truth_by_key: dict[str, list[Truth]] = {}
    for tr in fleet.truth:
        truth_by_key.setdefault(tr.key, []).append(tr)
    shifts_by_key: dict[str, list[Reported]] = {}
    for r in reported:
        if r.kind == "shift":
            shifts_by_key.setdefault(r.key, []).append(r)
    steady = [k for k in specs if k not in truth_by_key]
    sc = Score(0, 0, 0, 0, len(steady), sum(r.kind == "retraction" for r in reported), fleet.hours)
    for kind in KINDS:
        sc.by_kind[kind] = [0, 0]
    for key, spec in specs.items():
        truths, shifts = truth_by_key.get(key, []), shifts_by_key.get(key, [])
        pairs = sorted(
            (abs(r.at - tr.at), ti, ri)
            for ti, tr in enumerate(truths)
            for ri, r in enumerate(shifts)
            if r.direction == tr.direction and abs(r.at - tr.at) <= tolerance(fleet, spec, tr.at, min_samples)
        )
        used_t: set[int] = set()
        used_r: set[int] = set()
        for _, ti, ri in pairs:
            if ti in used_t or ri in used_r:
                continue
            used_t.add(ti)
            used_r.add(ri)
            sc.delays.append(shifts[ri].detected_at - truths[ti].at)
        for ti, tr in enumerate(truths):
            hit = ti in used_t
            sc.by_kind[tr.kind][0] += hit
            sc.by_kind[tr.kind][1] += 1
            if tr.rate < 1.0:
                sc.under_1[0] += hit
                sc.under_1[1] += 1
        sc.tp += len(used_t)
        sc.fn += len(truths) - len(used_t)
        nfp = len(shifts) - len(used_r)
        sc.fp += nfp
        if not truths:
            sc.fp_steady += nfp
        if nfp:
            sc.false_keys.append(f"{key}:{nfp}")
    return sc


def summary(sc: Score) -> dict[str, float]:
    """The final key=value numbers."""
    out = {
        "f1": sc.f1,
        "precision": sc.precision,
        "recall": sc.recall,
        "false_per_steady_key_day": sc.false_per_steady_key_day,
        "recall_under_1eps": sc.under_1[0] / sc.under_1[1] if sc.under_1[1] else float("nan"),
    }
    for kind in KINDS:
        out[f"recall_{kind}"] = sc.kind_recall(kind)
    out.update(tp=sc.tp, fp=sc.fp, fn=sc.fn, fp_steady=sc.fp_steady, retractions=sc.retractions)
    out["median_delay_s"] = float(np.median(sc.delays)) if sc.delays else float("nan")
    return out


def table(fleet: Fleet, sc: Score) -> str:
    n_events = sum(s.rate for s in fleet.specs) * fleet.hours * 3600
    lines = [
        f"fleet seed {fleet.seed}: {len(fleet.specs)} keys, {fleet.hours:g} h, ~{n_events / 1e6:.1f}M events, "
        f"{len(fleet.truth)} true changes, {sc.steady_keys} steady keys",
        f"{'kind':<10} {'found':>5} {'of':>4} {'recall':>7}",
    ]
    for kind in KINDS:
        f, n = sc.by_kind[kind]
        lines.append(f"{kind:<10} {f:>5} {n:>4} {f / n if n else float('nan'):>7.3f}")
    f, n = sc.under_1
    lines.append(f"{'<1 ev/s':<10} {f:>5} {n:>4} {f / n if n else float('nan'):>7.3f}")
    lines.append(
        f"precision {sc.precision:.3f}  recall {sc.recall:.3f}  F1 {sc.f1:.3f}  false shifts {sc.fp} "
        f"({sc.fp_steady} on steady keys: {sc.false_per_steady_key_day:.3f} per steady key-day)  retractions {sc.retractions}"
    )
    if sc.false_keys:
        lines.append("false shifts by key: " + " ".join(sc.false_keys[:30]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keys", type=int, default=120)
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--detector", default="seasonal", help="snapshot (the stream's default, also 'edivisive') | seasonal (registered as 'trend') | any registered name")
    ap.add_argument("--engine", choices=("pipeline", "windows"), default="windows")
    ap.add_argument("--no-pool", action="store_true", help="feed every 30 s window to the detector, however few samples (the Pipeline before pooling)")
    ap.add_argument("--quick", action="store_true", help="40 keys, 8 hours")
    ap.add_argument("--write", metavar="FILE", help="write the fleet's events as JSON lines and exit")
    a = ap.parse_args(argv)
    if a.quick:
        a.keys, a.hours = 40, 8.0
    if a.keys < 10 or not 3 <= a.hours <= 24:
        ap.exit(2, "fleet.py: error: --keys must be >= 10 and --hours in [3, 24]\n")
    if a.detector not in DETECTORS():
        ap.exit(2, f"fleet.py: error: unknown detector {a.detector!r}; choose from {sorted(DETECTORS())}\n")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = _args(argv)
    fleet = make_fleet(a.seed, a.keys, a.hours)
    if a.write:
        n = fleet.write_jsonl(a.write)
        print(f"wrote {n} events to {a.write}")
        return 0
    factory = DETECTORS()[a.detector]
    t = time.perf_counter()
    if a.engine == "pipeline":
        reported = run_pipeline(fleet, factory, pool_min_samples=0 if a.no_pool else None)
    else:
        reported = run_windows(fleet, factory, pool=not a.no_pool)
    elapsed = time.perf_counter() - t
    sc = score(fleet, reported)
    print(f"detector {a.detector}, engine {a.engine}, pooling {'off' if a.no_pool else 'on'}, {elapsed:.1f} s")
    print(table(fleet, sc))
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary(sc).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
