"""Restart timing on a real broker: kill -9 one of two workers and start it again.

Measures seconds from the restart (new process launched) until the group's committed
offsets of every partition the killed worker held advance again, with static group
membership (--instance-id, the same id on restart) and, as the anchor measured in the same
run, without it (a new member: the group waits out the dead one's --session-timeout 10 s
and rebalances). Each run also checks that the per-key counts equal the input exactly.

    .venv/bin/python benchmarks/restart.py [--runs 3] [--topology keyed|two_stage]

Prints the median of each and the ratio static / dynamic (lower is better).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from kafka_broker import KafkaBroker  # noqa: E402
from test_worker_kafka_restart import restart_run  # noqa: E402


def measure(broker: KafkaBroker, static: bool, runs: int, extra: tuple[str, ...]) -> list[float]:
    out = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="restart-bench-") as d:
            r = restart_run(broker.bootstrap, Path(d), static=static, seed=700 + i, extra=extra)
        exact = "exact" if r.counts == r.expected else f"MISMATCH {r.counts} != {r.expected}"
        print(f"  {'static ' if static else 'dynamic'} run {i + 1}: resumed after {r.resume_s:5.2f} s; partitions {r.partitions};"
              f" other worker reassigned: {r.other_reassigned}; counts {exact}", flush=True)
        out.append(r.resume_s)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--topology", choices=("keyed", "two_stage"), default=None, help="the worker's --topology (default: its own default)")
    args = ap.parse_args(argv)
    extra = ("--topology", args.topology) if args.topology else ()
    broker = KafkaBroker().start()
    try:
        print(f"broker {broker.bootstrap}; 2 workers, 4 partitions, --session-timeout 10, --checkpoint-interval 1 {' '.join(extra)}", flush=True)
        static = measure(broker, True, args.runs, extra)
        dynamic = measure(broker, False, args.runs, extra)
    finally:
        broker.cleanup()
    s, d = statistics.median(static), statistics.median(dynamic)
    print(f"restart -> committed offsets advance, median of {args.runs}: with --instance-id {s:.2f} s; without {d:.2f} s (anchor)")
    print(f"ratio static/dynamic: {s / d:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
