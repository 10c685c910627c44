"""Replay speed: `shiftwatch replay` on a file of single-event JSON lines (issue target:
>= 150,000 events/s on one core), against an anchor measured in the same run.

Rows (events/s, median of ``--repeat`` runs, and the ratio to the anchor):

- anchor: ``json.loads`` of every line, nothing else (what a trivial reader costs);
- decode, line by line: ``Decoder.decode`` per line plus ``Decoded.extend`` (how replay
  decoded before it used the Kafka path's batched decoding);
- decode, batched: ``Decoder.decode_batch`` over blocks of 1000 lines (what replay does);
- decode, access logs mapped: the same for nested access-log lines read through
  ``key_fields``/``value_field``/``ts_field`` (the typed mapped fast path);
- replay, whole: ``replay_stream`` (reading, decoding, the pipeline, writing snapshots
  to a null sink), in this process, on one core;
- pipeline alone: ``Pipeline.process`` of the already decoded batches — the part of the
  whole replay that decoding cannot speed up.

    python benchmarks/replay_speed.py [--events 300000] [--keys 100] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import tempfile
import time
from typing import Callable

from stream.events import Decoded, Decoder, Source
from stream.replay import BATCH_LINES, replay_stream
from stream.settings import Settings

T0 = 1_763_800_000.0


def make_lines(n: int, keys: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        json.dumps({"key": f"svc{rng.randrange(keys)}", "value": round(rng.lognormvariate(3, 0.5), 3), "ts": round(T0 + i * 0.01, 3)}).encode()
        for i in range(n)
    ]


def make_access_lines(n: int, keys: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        json.dumps(
            {
                "@timestamp": f"2026-01-05T10:{(i // 6000) % 60:02d}:{(i // 100) % 60:02d}.{i % 100:02d}Z",
                "service": {"name": f"svc{rng.randrange(keys)}", "version": "1.4.2"},
                "http": {"route": rng.choice(["/api/cart", "/api/pay", "/api/items/{id}"]), "method": "GET", "status": 200},
                "duration_ms": round(rng.lognormvariate(3, 0.5), 3),
                "message": "request served",
            }
        ).encode()
        for i in range(n)
    ]


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` runs."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def blocks(lines: list[bytes]) -> list[list[bytes]]:
    return [lines[i : i + BATCH_LINES] for i in range(0, len(lines), BATCH_LINES)]


def decode_batched(decoder: Decoder, chunks: list[list[bytes]]) -> list[Decoded]:
    out, off = [], 0
    for c in chunks:
        out.append(decoder.decode_batch(((raw, off + j, None) for j, raw in enumerate(c, 1)), "f", 0))
        off += len(c)
    return out


def decode_by_line(decoder: Decoder, chunks: list[list[bytes]]) -> None:
    off = 0
    for c in chunks:
        batch = Decoded()
        for j, raw in enumerate(c, 1):
            batch.extend(decoder.decode(raw, Source("f", 0, off + j)))
        off += len(c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="100,000 events, 3 repeats")
    args = ap.parse_args()
    if args.quick:
        args.events = 100_000
    n = args.events
    lines = make_lines(n, args.keys, seed=1)
    chunks = blocks(lines)
    access = blocks(make_access_lines(n, args.keys, seed=2))
    settings = Settings(snapshot_interval=10.0)
    mapped = Decoder("ms", key_fields=("service.name", "http.route"), value_field="duration_ms", ts_field="@timestamp")

    rows: list[tuple[str, float]] = []
    anchor = timed(lambda: [json.loads(x) for x in lines], args.repeat)
    rows.append(("anchor: json.loads per line", anchor))
    rows.append(("decode, line by line (before)", timed(lambda: decode_by_line(settings.make_decoder(), chunks), args.repeat)))
    rows.append(("decode, batched (decode_batch)", timed(lambda: decode_batched(settings.make_decoder(), chunks), args.repeat)))
    rows.append(("decode, access logs mapped", timed(lambda: decode_batched(mapped, access), args.repeat)))

    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as fh:
        fh.write(b"\n".join(lines) + b"\n")
        path = fh.name
    try:

        def whole() -> None:
            with open(path, "rb") as f:
                replay_stream(settings.make_pipeline(), f, io.StringIO(), path, {"snapshot", "shift", "retraction", "dead_letter"})

        rows.append(("replay, whole (read, decode, pipeline, write)", timed(whole, args.repeat)))
    finally:
        os.unlink(path)

    decoded = decode_batched(settings.make_decoder(), chunks)

    def pipeline_only() -> None:
        p = settings.make_pipeline()
        for b in decoded:
            p.process(b)
        p.flush()

    rows.append(("pipeline alone (Pipeline.process)", timed(pipeline_only, args.repeat)))

    print(f"{n:,} single-event lines, {args.keys} keys, median of {args.repeat}; ratio = events/s over the anchor's")
    print(f"{'row':<48} {'events/s':>12} {'ratio':>7}")
    for name, secs in rows:
        print(f"{name:<48} {n / secs:>12,.0f} {anchor / secs:>7.2f}")
    target = 150_000
    whole_rate = n / dict(rows)["replay, whole (read, decode, pipeline, write)"]
    print(f"target: whole replay >= {target:,} events/s: {'met' if whole_rate >= target else 'NOT met'} ({whole_rate:,.0f})")


if __name__ == "__main__":
    main()
