"""Percentile sketches at a serialized budget: ours against ddsketch, KLL, t-digest, HdrHistogram.

For each budget (1, 4, 16 KiB) and seeded stream, every anchor gets its finest
setting whose serialized form fits the budget (actual bytes are printed), then the
relative error at p50/p90/p99/p99.9 against numpy's exact (linear) quantiles.
Throughput is measured in the same run, one value at a time and batched.
The closing summary compares our worst case with the best anchor's worst case.

Every registered estimator (``sketches.ESTIMATORS``: logbuckets, p2, reservoir) gets
its rows too, built by ``make_estimator`` at each budget (P² ignores the budget: its
size is fixed by the quantiles it tracks). The explicit-bounds section measures what
spreading an explicit-bucket histogram into a sketch costs (the table in
``sketches/explicit.py``), and the moments section what the exact running sum costs.

The codec section (also alone with ``--codec-only``, which needs none of the anchors)
times our serialization per 1 KiB sketch, format v4 (block Rice, numpy) against v3
(adaptive Rice, pure Python; its writer is kept for this): encoded_size, to_bytes,
from_bytes and quantiles right after an update (which re-fits the scale by size), as
medians over many sketches; the buckets a 1 KiB budget keeps under each format; and
the memory of a hot (expanded) 1 KiB sketch.

    .venv/bin/python benchmarks/sketches_bench.py               # n = 1e6 per stream
    .venv/bin/python benchmarks/sketches_bench.py --quick       # n = 1e5, under 2 minutes
    .venv/bin/python benchmarks/sketches_bench.py --codec-only  # the codec section only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import ESTIMATORS, LogBuckets, Moments, explicit_to_sketch, make_estimator  # noqa: E402
from sketches.mapping import MIN_SCALE  # noqa: E402

QS = (0.5, 0.9, 0.99, 0.999)
BUDGETS = (1024, 4096, 16384)


def streams(n: int, seed: int = 20251122) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ln = rng.lognormal(np.log(0.05), 0.8, n)
    half = n // 2
    bim = np.where(rng.random(n) < 0.7, rng.lognormal(np.log(0.02), 0.3, n), rng.lognormal(np.log(0.3), 0.3, n))
    shift = np.concatenate([rng.lognormal(np.log(0.05), 0.5, half), rng.lognormal(np.log(0.08), 0.5, n - half)])
    ms = np.round(rng.lognormal(np.log(20.0), 1.0, n))
    ms[rng.random(n) < 0.3] = 0.0
    ms[rng.random(n) < 0.05] = 250.0  # a timeout-like repeated value
    return {
        "lognormal": ln,
        "pareto1.5": (rng.pareto(1.5, n) + 1.0) * 0.01,
        "bimodal": bim,
        "exponential": rng.exponential(0.1, n),
        "uniform": rng.uniform(0.01, 1.0, n),
        "lognormal-sorted": np.sort(rng.lognormal(np.log(0.05), 0.8, n)),
        "level-shift": shift,
        "int-ms-zeros": ms / 1000.0,
    }


IID = ("lognormal", "pareto1.5", "bimodal", "exponential", "uniform")


@dataclass(slots=True, frozen=True)
class Result:
    sketch: str
    budget: int
    stream: str
    errors: tuple[float, ...]  # relative, at QS
    nbytes: int
    setting: str


# -- each anchor: build at a setting, serialize, query ---------------------------------
def ours(v: np.ndarray, budget: int):
    s = LogBuckets(max_bytes=budget)
    s.update_many(v)
    return len(s.to_bytes()), s.quantiles(QS), f"scale={s.scale}"


def _dd_builds(v: np.ndarray):
    from ddsketch import DDSketch
    from ddsketch.pb.proto import DDSketchProto

    vals = v.tolist()
    for alpha in (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16):
        d = DDSketch(relative_accuracy=alpha)
        add = d.add
        for x in vals:
            add(x)
        size = len(DDSketchProto.to_proto(d).SerializeToString())
        yield size, np.array([d.get_quantile_value(q) for q in QS]), f"alpha={alpha}"


def _kll_builds(v: np.ndarray):
    from datasketches import kll_doubles_sketch

    for k in (8, 16, 24, 32, 48, 64, 96, 128, 200, 300, 450, 700, 1000):
        s = kll_doubles_sketch(k)
        s.update(v)
        yield len(s.serialize()), np.array([s.get_quantile(q) for q in QS]), f"k={k}"


def _td_builds(v: np.ndarray):
    import fastdigest

    for c in (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048):
        t = fastdigest.TDigest.from_values(v, max_centroids=c)
        yield len(t.to_bytes()), np.array([t.quantile(q) for q in QS]), f"centroids={c}"


def _hdr_builds(v: np.ndarray):
    from hdrh.histogram import HdrHistogram

    us = np.round(v * 1e6).astype(np.int64).tolist()  # integers: microseconds
    hi = max(2, int(max(us)) + 1)
    for digits in (1, 2, 3, 4):
        h = HdrHistogram(1, hi, digits)
        rec = h.record_value
        for x in us:
            rec(x)
        est = np.array([h.get_value_at_percentile(q * 100.0) for q in QS], dtype=np.float64) / 1e6
        yield len(h.encode()), est, f"digits={digits}"


ANCHORS: dict[str, Callable] = {"ddsketch": _dd_builds, "kll": _kll_builds, "t-digest": _td_builds, "hdr": _hdr_builds}


def rel_errors(est: np.ndarray, true: np.ndarray) -> tuple[float, ...]:
    return tuple(float(abs(e / t - 1.0)) if t != 0 else float(abs(e - t)) for e, t in zip(est, true))


def best_fitting(builds, budget: int):
    """Among the builds that fit, the one with the most bytes (finest); else the smallest."""
    fitting = [b for b in builds if b[0] <= budget]
    return max(fitting, key=lambda b: b[0]) if fitting else min(builds, key=lambda b: b[0])


# -- the registered estimators (make_estimator) ------------------------------------------
def registered(stream: str, v: np.ndarray, true: np.ndarray, skip: tuple[str, ...] = ()) -> list[Result]:
    """Rows for every registered estimator at every budget (P² once: it has no budget)."""
    rows = []
    for name in ESTIMATORS:
        if name in skip:
            continue
        for budget in BUDGETS[:1] if name == "p2" else BUDGETS:
            e = make_estimator(name, max_bytes=budget, quantiles=QS, seed=0)
            e.update_many(v)
            rows.append(Result(f"est:{name}", budget, stream, rel_errors(e.quantiles(QS), true), e.nbytes, type(e).__name__))
    return rows


def print_registered(results: list[Result]) -> None:
    print()
    print("registered estimators (make_estimator), worst case over all streams (relative error %) and largest bytes:")
    names = sorted({r.sketch for r in results if r.sketch.startswith("est:")})
    for name in names:
        for budget in BUDGETS:
            rows = [r for r in results if r.sketch == name and r.budget == budget]
            if not rows:
                continue
            w = tuple(max(r.errors[i] for r in rows) for i in range(len(QS)))
            iid = tuple(max(r.errors[i] for r in rows if r.stream in IID) for i in range(len(QS)))
            label = "  n/a" if name == "est:p2" else f"{budget // 1024:>3}K"
            print(f"  {label} {name[4:]:<11} all " + " ".join(f"{e * 100:7.3f}" for e in w)
                  + "   i.i.d. " + " ".join(f"{e * 100:7.3f}" for e in iid) + f"   bytes <= {max(r.nbytes for r in rows)}")


# -- explicit-bounds histograms spread into a sketch ----------------------------------------
EXPLICIT_LAYOUTS = {
    "Prometheus default": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    "OpenTelemetry default": [x / 1000 for x in (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)],
    "exponential x1.2": (0.001 * 1.2 ** np.arange(64)).tolist(),
}


def print_explicit(n: int) -> None:
    """Worst relative error of p50/p90/p99 after spreading (lognormal, sigma 0.5-1.0)."""
    qs = (0.5, 0.9, 0.99)
    print()
    print(f"explicit-bounds histogram spread into LogBuckets (lognormal median 50 ms, sigma 0.5/0.8/1.0, n={n:,}); worst p50/p90/p99 error %:")
    for layout, bounds in EXPLICIT_LAYOUTS.items():
        cells = []
        for spread in ("log", "linear"):
            worst = np.zeros(3)
            for sigma in (0.5, 0.8, 1.0):
                v = np.random.default_rng(int(sigma * 10)).lognormal(np.log(0.05), sigma, n)
                counts = np.bincount(np.searchsorted(bounds, v, side="left"), minlength=len(bounds) + 1)
                s = explicit_to_sketch(bounds, counts.tolist(), sum=float(v.sum()), min=float(v.min()), max=float(v.max()), spread=spread)
                worst = np.maximum(worst, np.abs(s.quantiles(qs) / np.quantile(v, qs) - 1))
            cells.append(f"{spread} " + "/".join(f"{e * 100:.2f}" for e in worst))
        print(f"  {layout:<22} " + "   ".join(cells))


# -- moments: what the exact running sum costs ----------------------------------------------
def print_moments(reps: int = 7) -> None:
    """Moments.update_many per call and update per value, against numpy's sum of the
    same values (the anchor) measured in the same run: CPU-time medians."""
    rng = np.random.default_rng(6)
    v = rng.lognormal(np.log(0.05), 0.8, 200_000)

    def cpu(fn: Callable[[], None]) -> float:
        ts = []
        for _ in range(reps):
            t = time.process_time()
            fn()
            ts.append(time.process_time() - t)
        return statistics.median(ts)

    print()
    print("Moments (exact sum included), CPU-time medians; anchor: float(values.sum()) of the same array:")
    for size in (40, 200, 5000, 200_000):
        w = v[:size]
        k = max(1, 100_000 // size)
        m = Moments()
        t_m = cpu(lambda: [m.update_many(w) for _ in range(k)]) / k
        t_a = cpu(lambda: [float(w.sum()) for _ in range(k)]) / k
        print(f"  update_many n={size:<7,} {t_m * 1e6:9.1f} µs/call   anchor {t_a * 1e6:7.1f} µs   ratio {t_m / t_a:6.1f}x")
    xs = v[:50_000].tolist()
    m = Moments()
    t_m = cpu(lambda: [m.update(x) for x in xs]) / len(xs)
    acc = [0.0]

    def plain() -> None:
        s = 0.0
        for x in xs:
            s += x
        acc[0] = s
    t_a = cpu(plain) / len(xs)
    print(f"  update (one value)        {t_m * 1e9:9.0f} ns/value  anchor (float +=) {t_a * 1e9:5.0f} ns   ratio {t_m / t_a:6.1f}x")


# -- throughput ------------------------------------------------------------------------
def _median_time(fn: Callable[[], None], reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def throughput(v: np.ndarray, n_scalar: int, reps: int) -> dict[str, tuple[float | None, float | None]]:
    """values/s one at a time and batched (None where the library has no batch call)."""
    from datasketches import kll_doubles_sketch
    from ddsketch import DDSketch
    import fastdigest
    from hdrh.histogram import HdrHistogram

    xs = v[:n_scalar].tolist()
    us = np.round(v[:n_scalar] * 1e6).astype(np.int64).tolist()

    def loop(make, method, finish=None):
        def run():
            s = make()
            f = getattr(s, method)
            for x in xs:
                f(x)
            if finish:
                finish(s)  # ours buffers scalar updates: the timing includes the last flush
        return run

    def hdr_loop():
        h = HdrHistogram(1, 10**9, 2)
        f = h.record_value
        for x in us:
            f(x)

    out: dict[str, tuple[float | None, float | None]] = {}
    one = {
        "ours": loop(lambda: LogBuckets(1024), "update", lambda s: s.count),
        "ddsketch": loop(lambda: DDSketch(0.01), "add"),
        "kll": loop(lambda: kll_doubles_sketch(200), "update"),
        "t-digest": loop(lambda: fastdigest.TDigest(max_centroids=100), "update"),
        "hdr": hdr_loop,
    }
    batch = {
        "ours": lambda: LogBuckets(1024).update_many(v),
        "kll": lambda: kll_doubles_sketch(200).update(v),
        "t-digest": lambda: fastdigest.TDigest.from_values(v, max_centroids=100),
    }
    for name, fn in one.items():
        t1 = len(xs) / _median_time(fn, reps)
        tb = len(v) / _median_time(batch[name], reps) if name in batch else None
        out[name] = (t1, tb)
    return out


# -- codec: serialization cost per sketch, v4 against v3 ---------------------------------
class _V3Sized(LogBuckets):
    """LogBuckets whose budget is decided by the v3 (adaptive Rice) size, as before v4:
    the old scale choice and the old cost of a re-fit, for comparison only."""

    __slots__ = ()

    def encoded_size(self) -> int:
        return len(self._header()) + self.pos.encoded_size_v3() + self.neg.encoded_size_v3()

    def _fit(self):
        if self._buf:
            self._flush()
        elif self._fitted:
            return None
        while self.scale > MIN_SCALE and self.pos.span() + self.neg.span() > 8 * self.max_bytes:
            self._downscale(1)
        while self.scale > MIN_SCALE and self.encoded_size() > self.max_bytes:
            self._downscale(1)
        self._limit = 2 * (self.pos.arr.size + self.neg.arr.size) + 256
        self._fitted = True
        return None

    def to_bytes(self) -> bytes:
        return self._to_bytes_v3()


def _best_us(fn: Callable, item, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(item)
        ts.append(time.perf_counter() - t)
    return min(ts) * 1e6


def _codec_population(count: int, seed: int = 7) -> list[np.ndarray]:
    """Realistic per-key latency streams: lognormal (sigma 0.3-1.0) of 300-30,000 values,
    most around 3,000, plus some bimodal ones."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.choice([300, 3000, 3000, 3000, 30000]))
        if i % 5 == 4:
            v = np.where(rng.random(n) < 0.7, rng.lognormal(np.log(0.02), 0.3, n), rng.lognormal(np.log(0.3), 0.3, n))
        else:
            v = rng.lognormal(np.log(0.04), rng.uniform(0.3, 1.0), n)
        out.append(v)
    return out


def codec_speed(count: int) -> dict[str, dict]:
    """Per sketch, the best of 3 timings (1 for the update: it changes the sketch), v3
    and v4 of the same values timed alternately (the machine's speed drifts); medians."""
    pop = _codec_population(count)
    labels = {"v3 (adaptive Rice)": _V3Sized, "v4 (block Rice)": LogBuckets}
    sketches: dict[str, list] = {}
    for label, cls in labels.items():
        sk = sketches[label] = []
        for v in pop:
            s = cls(1024)
            s.update_many(v)
            s.quantiles([0.5])
            sk.append(s)

    def update_then_read(s: LogBuckets) -> None:
        s.update(0.04)
        s.quantiles([0.5, 0.9, 0.99])

    ops: dict[str, tuple[Callable, int, bool]] = {
        "encoded_size": (lambda s: s.encoded_size(), 3, False),
        "to_bytes": (lambda s: s.to_bytes(), 3, False),
        "from_bytes": (LogBuckets.from_bytes, 3, True),
        "quantiles after update": (update_then_read, 1, False),
    }
    blobs = {label: [s.to_bytes() for s in sk] for label, sk in sketches.items()}
    times: dict[str, dict[str, list[float]]] = {label: {op: [] for op in ops} for label in labels}
    for op, (fn, reps, on_bytes) in ops.items():
        for i in range(count):
            for label in labels:
                item = blobs[label][i] if on_bytes else sketches[label][i]
                times[label][op].append(_best_us(fn, item, reps))
    res: dict[str, dict] = {}
    for label, sk in sketches.items():
        r = res[label] = {op: statistics.median(ts) for op, ts in times[label].items()}
        r["bytes"] = statistics.median(len(b) for b in blobs[label])
        r["buckets"] = statistics.median(len(s.pos) + len(s.neg) for s in sk)
        r["scale"] = statistics.median(s.scale for s in sk)
        if labels[label] is LogBuckets:  # the same buckets in both formats
            ratio = sorted(len(b) / len(s._to_bytes_v3()) for s, b in zip(sk, blobs[label]))
            r["v4/v3 size"] = (statistics.median(ratio), ratio[0], ratio[-1])
    return res


def hot_sketch_memory(n: int, keys: int) -> tuple[float, float]:
    """tracemalloc bytes per hot (expanded) 1 KiB sketch, lognormal sigma 0.4, fed one
    value at a time then read: now, and as before v4 (the v3 scale choice, int64
    arrays: measured with _V3Sized, its arrays counted at 8 bytes per bucket)."""
    out = []
    for cls in (LogBuckets, _V3Sized):
        rng = np.random.default_rng(3)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        sk = []
        for _ in range(keys):
            s = cls(1024)
            for x in rng.lognormal(np.log(0.04), 0.4, n).tolist():
                s.update(x)
            s.quantiles([0.5])
            sk.append(s)
        used = (tracemalloc.get_traced_memory()[0] - base) / keys
        tracemalloc.stop()
        if cls is _V3Sized:
            used += sum(st.arr.size * (8 - st.arr.itemsize) for s in sk for st in (s.pos, s.neg)) / keys
        out.append(used)
    return out[0], out[1]


def buckets_at_1k(n: int) -> list[tuple[str, int, int, int, int, int]]:
    """(stream, v3 scale, v3 buckets, v4 scale, v4 buckets, v4 bytes) at a 1 KiB budget."""
    rng = np.random.default_rng(20251122)
    data = {
        "lognormal s=0.4": rng.lognormal(np.log(0.04), 0.4, n),
        "lognormal s=0.8": rng.lognormal(np.log(0.05), 0.8, n),
        "bimodal": np.where(rng.random(n) < 0.7, rng.lognormal(np.log(0.02), 0.3, n), rng.lognormal(np.log(0.3), 0.3, n)),
        "uniform": rng.uniform(0.01, 1.0, n),
    }
    rows = []
    for name, v in data.items():
        old, new = _V3Sized(1024), LogBuckets(1024)
        old.update_many(v)
        new.update_many(v)
        old.quantiles([0.5])
        new.quantiles([0.5])
        rows.append((name, old.scale, len(old.pos) + len(old.neg), new.scale, len(new.pos) + len(new.neg), len(new.to_bytes())))
    return rows


def print_codec(quick: bool) -> None:
    count = 60 if quick else 300
    res = codec_speed(count)
    print()
    print(f"serialization per 1 KiB sketch, median over {count} sketches (µs):")
    ops = ("encoded_size", "to_bytes", "from_bytes", "quantiles after update")
    print(f"  {'format':<20}" + "".join(f"{o:>24}" for o in ops) + f"{'bytes':>8}{'buckets':>9}{'scale':>7}")
    for label, r in res.items():
        print(f"  {label:<20}" + "".join(f"{r[o]:24.1f}" for o in ops) + f"{r['bytes']:8.0f}{r['buckets']:9.0f}{r['scale']:7.1f}")
    old, new = res["v3 (adaptive Rice)"], res["v4 (block Rice)"]
    print(f"  {'speed-up':<20}" + "".join(f"{old[o] / new[o]:23.1f}x" for o in ops))
    med, lo, hi = new["v4/v3 size"]
    print(f"  the same buckets in v4: {med:.2f} of their v3 size (median; {lo:.2f}-{hi:.2f})")
    print()
    print("buckets kept at 1 KiB (v3 -> v4):")
    for n in (3000, 100_000 if quick else 1_000_000):
        for name, s3, b3, s4, b4, nb in buckets_at_1k(n):
            print(f"  n={n:<9,} {name:<16} scale {s3:3d} -> {s4:3d}   buckets {b3:5d} -> {b4:5d}   ({nb} bytes)")
    print()
    for n, keys in ((3000, 20), (300_000 if quick else 1_000_000, 2)):
        now, before = hot_sketch_memory(n, keys)
        print(f"hot 1 KiB sketch of {n:,} values: {now:,.0f} bytes in memory (before v4: {before:,.0f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 1e5 per stream (runs in under 2 minutes)")
    ap.add_argument("--n", type=int, default=None, help="values per stream")
    ap.add_argument("--no-p2", action="store_true", help="skip the (pure-Python, slow) P² estimator rows")
    ap.add_argument("--codec-only", action="store_true", help="only the codec section (no anchor libraries needed)")
    args = ap.parse_args()
    if args.codec_only:
        print_codec(args.quick)
        return
    n = args.n or (100_000 if args.quick else 1_000_000)
    t_start = time.perf_counter()
    data = streams(n)
    results: list[Result] = []
    for name, v in data.items():
        true = np.quantile(v, QS)
        for budget in BUDGETS:
            size, est, setting = ours(v, budget)
            results.append(Result("ours", budget, name, rel_errors(est, true), size, setting))
        for anchor, gen in ANCHORS.items():
            builds = list(gen(v))
            for budget in BUDGETS:
                size, est, setting = best_fitting(builds, budget)
                results.append(Result(anchor, budget, name, rel_errors(est, true), size, setting))
        results += registered(name, v, true, skip=("p2",) if args.no_p2 else ())
        print(f"# {name}: done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

    print(f"n = {n:,} values per stream; relative error in %; bytes = actual serialized size")
    hdr = f"{'budget':>6} {'stream':<17} {'sketch':<14} " + " ".join(f"{'p' + format(q * 100, 'g'):>7}" for q in QS) + f" {'bytes':>6}  setting"
    for budget in BUDGETS:
        rows = [r for r in results if r.budget == budget]
        if not rows:
            continue
        print()
        print(hdr)
        for r in rows:
            errs = " ".join(f"{e * 100:7.3f}" for e in r.errors)
            print(f"{budget // 1024:>5}K {r.stream:<17} {r.sketch:<14} {errs} {r.nbytes:6d}  {r.setting}")

    # -- worst cases --------------------------------------------------------------------
    print()
    print("worst case over all streams (relative error %):")
    sketches = ["ours"] + list(ANCHORS)
    worst: dict[tuple[str, int], tuple[float, ...]] = {}
    for budget in BUDGETS:
        for sk in sketches:
            rows = [r for r in results if r.sketch == sk and r.budget == budget]
            w = tuple(max(r.errors[i] for r in rows) for i in range(len(QS)))
            worst[sk, budget] = w
            over = sum(r.nbytes > budget for r in rows)
            flag = f"  ({over} streams over budget)" if over else ""
            print(f"  {budget // 1024:>2}K {sk:<9} " + " ".join(f"{e * 100:7.3f}" for e in w) + flag)
    print_registered(results)

    # -- throughput -----------------------------------------------------------------------
    tp = throughput(data["lognormal"], n_scalar=min(n, 200_000), reps=3)
    print()
    print("update throughput (median of 3), million values/s:  one-at-a-time   batched")
    for name, (t1, tb) in tp.items():
        print(f"  {name:<9} {t1 / 1e6:12.2f}   {tb / 1e6 if tb else float('nan'):10.2f}")

    # -- summary ----------------------------------------------------------------------------
    ow = worst["ours", 1024]
    eligible = [a for a in ANCHORS if all(r.nbytes <= 1024 for r in results if r.sketch == a and r.budget == 1024)]
    best = min(eligible or list(ANCHORS), key=lambda a: max(worst[a, 1024]))
    bw = worst[best, 1024]
    speed = tp["ours"][0] / tp["ddsketch"][0]
    ok = [
        ("p99 <= 0.5%", ow[2] <= 0.005),
        ("all <= 1%", max(ow) <= 0.01),
        ("1-at-a-time >= 1.5x ddsketch", speed >= 1.5),
        ("batched >= 20M/s", (tp["ours"][1] or 0) >= 20e6),
    ]
    print()
    print(
        "SUMMARY 1KiB worst case p50/p90/p99/p99.9: ours "
        + "/".join(f"{e * 100:.3f}%" for e in ow)
        + f" vs best anchor {best} "
        + "/".join(f"{e * 100:.3f}%" for e in bw)
        + f" ({max(bw) / max(ow):.1f}x lower worst case); one-at-a-time {speed:.2f}x ddsketch;"
        + f" batched {tp['ours'][1] / 1e6:.1f}M/s; targets: "
        + ", ".join(f"{k} {'MET' if v else 'MISSED'}" for k, v in ok)
    )
    print_explicit(n)
    print_moments()
    print_codec(args.quick)
    print(f"(total {time.perf_counter() - t_start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
