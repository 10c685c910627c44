"""Memory per key, measured with tracemalloc (issue target: <= 8 KiB per key including
its snapshot history; 100,000 live keys in one worker).

Each key gets enough events for a full detector window and live-page history, so the
number is the steady state, not a fresh key. Prints bytes per key for a small and a
large key count, and the serialized checkpoint size per key.

    python benchmarks/memory_per_key.py [--keys 100000] [--snapshots 60]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np

from stream.checkpoint import encode_key_state
from stream.events import Decoded
from stream.pipeline import Pipeline, PipelineConfig

T0 = 1_763_800_000.0


def fill(keys: int, snapshots: int, per_snapshot: int, seed: int = 1) -> tuple[Pipeline, float]:
    rng = np.random.default_rng(seed)
    p = Pipeline(PipelineConfig(snapshot_interval_s=10.0, max_keys=max(keys, 1)))
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


def measure(keys: int, snapshots: int, per_snapshot: int) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    p, secs = fill(keys, snapshots, per_snapshot)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    sample = list(p.states.values())[: min(200, keys)]
    ckpt = float(np.median([len(encode_key_state(st, 0)) for st in sample]))
    return {"keys": keys, "bytes_per_key": used / keys, "checkpoint_bytes_per_key": ckpt, "fill_seconds": secs, "live_keys": len(p.states)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--snapshots", type=int, default=60)
    ap.add_argument("--per-snapshot", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="10,000 keys instead of --keys")
    a = ap.parse_args()
    big = 10_000 if a.quick else a.keys
    rows = [measure(1000, a.snapshots, a.per_snapshot), measure(big, a.snapshots, a.per_snapshot)]
    print(f"{'keys':>8} {'bytes/key':>10} {'ckpt bytes/key':>15} {'live keys':>10} {'fill s':>8}")
    for r in rows:
        print(f"{r['keys']:>8} {r['bytes_per_key']:>10.0f} {r['checkpoint_bytes_per_key']:>15.0f} {r['live_keys']:>10} {r['fill_seconds']:>8.1f}")
    last = rows[-1]
    print(f"bytes_per_key={last['bytes_per_key']:.0f} target=8192 ratio={last['bytes_per_key'] / 8192:.2f} live_keys={last['live_keys']}")


if __name__ == "__main__":
    main()
