"""Memory per key (issue target: <= 8 KiB per key including its snapshot history;
100,000 live keys in one worker).

1. Steady state, tracemalloc: a few hundred keys fed 130 snapshots each, so the
   detector history and the live-page history are full; bytes per key in memory
   and per checkpoint record.
2. Capacity, RSS: 100,000 live keys (3 snapshots each) in one pipeline.

    python benchmarks/memory_per_key.py [--keys 100000] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc

import numpy as np

from stream.checkpoint import encode_key_state
from stream.events import Decoded
from stream.pipeline import Pipeline, PipelineConfig

T0 = 1_763_800_000.0


def fill(keys: int, snapshots: int, per_snapshot: int, seed: int = 1, hot_keys: int = 2000) -> tuple[Pipeline, float]:
    rng = np.random.default_rng(seed)
    p = Pipeline(PipelineConfig(snapshot_interval_s=10.0, max_keys=max(keys, 1), hot_keys=hot_keys))
    names = [f"endpoint-{i:06d}" for i in range(keys)]
    start = time.perf_counter()
    for w in range(snapshots + 1):
        d = Decoded()
        for name in names:
            v = (40.0 * np.exp(0.4 * rng.standard_normal(per_snapshot)) / 1000).tolist()
            d.keys.extend([name] * per_snapshot)
            d.values.extend(v)
            d.ts.extend((T0 + w * 10 + np.linspace(0.5, 9.5, per_snapshot)).tolist())
        p.process(d)
    return p, time.perf_counter() - start


def measure(keys: int, snapshots: int, per_snapshot: int, hot_keys: int) -> dict[str, float]:
    """tracemalloc over a pipeline filled to steady state (full detector history)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    p, secs = fill(keys, snapshots, per_snapshot, hot_keys=hot_keys)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    sample = list(p.states.values())[: min(200, keys)]
    ckpt = float(np.median([len(encode_key_state(st, 0)) for st in sample]))
    return {"keys": keys, "bytes_per_key": used / keys, "checkpoint_bytes_per_key": ckpt, "fill_seconds": secs, "live_keys": len(p.states)}


def capacity(keys: int, snapshots: int, per_snapshot: int) -> dict[str, float]:
    """Resident memory growth (ru_maxrss) for many live keys, without tracemalloc's overhead."""
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    p, secs = fill(keys, snapshots, per_snapshot)
    gc.collect()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"keys": keys, "bytes_per_key": (after - before) / keys, "fill_seconds": secs, "live_keys": len(p.states)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000, help="live keys for the capacity run")
    ap.add_argument("--steady-keys", type=int, default=300, help="keys for the tracemalloc steady-state run")
    ap.add_argument("--snapshots", type=int, default=130, help="snapshots per key in the steady-state run")
    ap.add_argument("--per-snapshot", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="20,000 keys in the capacity run")
    a = ap.parse_args()
    # Between batches a worker holds at most hot_keys (default 2000) keys expanded; the rest are cold.
    steady = measure(a.steady_keys, a.snapshots, a.per_snapshot, hot_keys=0)
    hot = measure(a.steady_keys, a.snapshots, a.per_snapshot, hot_keys=a.steady_keys)
    print(f"steady state ({steady['keys']} keys x {a.snapshots} snapshots, tracemalloc): "
          f"cold key {steady['bytes_per_key']:.0f} bytes, hot key {hot['bytes_per_key']:.0f} bytes, "
          f"checkpoint {steady['checkpoint_bytes_per_key']:.0f} bytes")
    cap = capacity(20_000 if a.quick else a.keys, 3, a.per_snapshot)
    print(f"capacity ({cap['live_keys']} live keys x 3 snapshots, RSS growth): {cap['bytes_per_key']:.0f} bytes/key, filled in {cap['fill_seconds']:.1f} s")
    print(f"bytes_per_key={steady['bytes_per_key']:.0f} target=8192 ratio={steady['bytes_per_key'] / 8192:.2f} live_keys={cap['live_keys']}")


if __name__ == "__main__":
    main()
