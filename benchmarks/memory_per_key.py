"""Memory per key (issue target: <= 8 KiB per key including its snapshot history;
100,000 live keys in one worker).

1. Steady state, tracemalloc. Keys get ``--snapshots`` (130) closed windows of
   ``--per-snapshot`` (40) samples each, more than the detector's ``min_count`` (30),
   so its history (120 snapshots) and the live-page history (60) are full, and one
   window is open, as in a live worker. Input goes in large batches (many windows per
   key each, the pipeline's grouped path). The number is the marginal cost of a key:
   traced memory after ``--steady-keys`` keys more than a warmed-up pipeline holds,
   divided by that count, so process-wide caches and free lists stay out of it.
   Cold keys (all-time sketch serialized: every key but the ``hot_keys`` most recent)
   and hot keys (sketch expanded) are measured apart, and so is the checkpoint record.
2. Capacity, RSS. ``--keys`` (100,000) live keys with full histories in one pipeline:
   restored from the checkpoint records of the steady-state keys (as after a
   rebalance), then one more window closed for every key through Pipeline.process.
   Resident memory growth per key, with the default ``hot_keys`` (2000) expanded.

    python benchmarks/memory_per_key.py [--keys 100000] [--quick]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import time
import tracemalloc

import numpy as np

import detectors.edivisive as edivisive
from stream.checkpoint import decode_key_state, encode_key_state
from stream.events import Decoded
from stream.pipeline import Pipeline, PipelineConfig

T0 = 1_763_800_000.0
INTERVAL = 10.0
CHUNK = 32  # windows per key in one batch


def batch(names: list[str], w0: int, w1: int, per: int, rng: np.random.Generator) -> Decoded:
    """Windows [w0, w1) of every key: ``per`` lognormal latencies (~40 ms) each, in key order."""
    nw = w1 - w0
    values = 0.040 * np.exp(0.4 * rng.standard_normal((len(names), nw, per)))
    ts = T0 + INTERVAL * np.arange(w0, w1)[:, None] + np.linspace(0.5, INTERVAL - 0.5, per)[None, :]
    d = Decoded()
    d.keys = np.repeat(np.array(names, dtype=object), nw * per).tolist()
    d.values = values.ravel().tolist()
    d.ts = np.broadcast_to(ts, (len(names), nw, per)).ravel().tolist()
    return d


def fill(p: Pipeline, names: list[str], snapshots: int, per: int, seed: int) -> float:
    """Close ``snapshots`` windows per key and leave the next one open; returns seconds."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    w = 0
    while w <= snapshots:
        w1 = min(w + CHUNK, snapshots + 1)
        p.process(batch(names, w, w1, per, rng))
        w = w1
    return time.perf_counter() - start


def settle() -> None:
    """Drop the detector's process-wide memo tables (bounded, not per key) and garbage."""
    for f in vars(edivisive).values():
        if hasattr(f, "cache_clear"):
            f.cache_clear()
    gc.collect()


def measure(keys: int, snapshots: int, per: int, hot: bool, base_keys: int = 30) -> tuple[dict[str, float], Pipeline]:
    config = PipelineConfig(snapshot_interval_s=INTERVAL, max_keys=keys + base_keys, hot_keys=keys + base_keys if hot else 0)
    fill(Pipeline(config), [f"warm-{i}" for i in range(3)], snapshots, per, seed=99)
    settle()
    tracemalloc.start()
    p = Pipeline(config)
    fill(p, [f"base-{i:06d}" for i in range(base_keys)], snapshots, per, seed=2)
    settle()
    before = tracemalloc.get_traced_memory()[0]
    names = [f"endpoint-{i:06d}" for i in range(keys)]
    secs = fill(p, names, snapshots, per, seed=1)
    settle()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    st = p.states[names[-1]]
    assert len(st.recent) == p.config.recent_snapshots and st.detector._len == st.detector.history and len(st.windows) == 1
    return {"bytes_per_key": used / keys, "fill_seconds": secs}, p


def parts(p: Pipeline) -> dict[str, float]:
    """Median bytes of the packed parts of a cold key and of its checkpoint record."""
    sts = [st for k, st in p.states.items() if k.startswith("endpoint-")][:200]
    win = lambda st: sum(len(w.values) * 8 for w in st.windows.values() if w.values is not None)  # noqa: E731
    return {
        "detector": float(np.median([len(st.detector._buf) for st in sts])),
        "recent": float(np.median([len(st.recent._buf) for st in sts])),
        "sketch": float(np.median([len(st.alltime_bytes()) for st in sts])),
        "window": float(np.median([win(st) for st in sts])),
        "checkpoint": float(np.median([len(encode_key_state(st, 0)) for st in sts])),
    }


def rss() -> int:
    """Current resident set size in bytes (peak RSS where /proc is missing)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)  # freed heap back to the OS, so only live memory counts
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def capacity(keys: int, records: list[bytes], per: int, snapshots: int, chunk: int = 5000) -> dict[str, float]:
    """RSS growth for ``keys`` live keys with full histories in one pipeline."""
    config = PipelineConfig(snapshot_interval_s=INTERVAL, max_keys=keys)
    settle()
    before = rss()
    p = Pipeline(config)
    names = [f"key-{i:07d}" for i in range(keys)]
    start = time.perf_counter()
    for i, name in enumerate(names):
        st, _ = decode_key_state(name, records[i % len(records)], config)
        p.adopt(st)
    restored = time.perf_counter() - start
    # One more window for every key: closes the open one (a snapshot through detector and
    # history) and opens the next; keys thaw and cool again as in a live worker.
    rng = np.random.default_rng(3)
    start = time.perf_counter()
    for i in range(0, keys, chunk):
        p.process(batch(names[i : i + chunk], snapshots + 1, snapshots + 2, per, rng))
    processed = time.perf_counter() - start
    settle()
    after = rss()
    st = p.states[names[-1]]
    assert len(st.recent) == config.recent_snapshots and st.detector._len == st.detector.history
    return {
        "live_keys": len(p.states),
        "bytes_per_key": (after - before) / keys,
        "restore_seconds": restored,
        "process_seconds": processed,
        "hot_keys": sum(st._alltime is not None for st in p.states.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000, help="live keys for the capacity run")
    ap.add_argument("--steady-keys", type=int, default=300, help="keys measured in the tracemalloc steady-state run")
    ap.add_argument("--snapshots", type=int, default=130, help="closed windows per key (detector history: 120)")
    ap.add_argument("--per-snapshot", type=int, default=40, help="samples per window (detector min_count: 30)")
    ap.add_argument("--quick", action="store_true", help="100 steady-state keys, 10,000 keys in the capacity run")
    a = ap.parse_args()
    steady_keys = min(a.steady_keys, 100) if a.quick else a.steady_keys
    cap_keys = min(a.keys, 10_000) if a.quick else a.keys
    cold, p = measure(steady_keys, a.snapshots, a.per_snapshot, hot=False)
    part = parts(p)
    records = [encode_key_state(st, 0) for k, st in p.states.items() if k.startswith("endpoint-")]
    del p
    hot, _ = measure(steady_keys, a.snapshots, a.per_snapshot, hot=True)
    print(
        f"steady state ({steady_keys} keys x {a.snapshots} windows of {a.per_snapshot} samples, tracemalloc): "
        f"cold key {cold['bytes_per_key']:.0f} bytes, hot key {hot['bytes_per_key']:.0f} bytes, "
        f"checkpoint record {part['checkpoint']:.0f} bytes (filled in {cold['fill_seconds']:.1f} s)"
    )
    print(
        f"  of a cold key: detector history {part['detector']:.0f}, recent snapshots {part['recent']:.0f}, "
        f"all-time sketch (serialized) {part['sketch']:.0f}, open window values {part['window']:.0f} bytes"
    )
    cap = capacity(cap_keys, records, a.per_snapshot, a.snapshots)
    print(
        f"capacity ({cap['live_keys']} live keys, full histories, {cap['hot_keys']} hot, RSS growth): "
        f"{cap['bytes_per_key']:.0f} bytes/key; restored in {cap['restore_seconds']:.1f} s, "
        f"one more window each in {cap['process_seconds']:.1f} s"
    )
    print(f"bytes_per_key={cold['bytes_per_key']:.0f} target=8192 ratio={cold['bytes_per_key'] / 8192:.2f} live_keys={cap['live_keys']}")


if __name__ == "__main__":
    main()
