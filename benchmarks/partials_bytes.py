"""Bytes the two-stage topology writes to ``<app_id>-partials``, per key per window per source partition.

Stage 1 publishes one partial (``SWP`` record) per key, per window, per source (input)
partition that saw the key, plus watermark records (``SWW``) per source partition per
window boundary. This reads the whole topic after a run, groups partial bytes by
(key, window, source) — a re-published partial adds to its triple, so duplicates
show — and prints the median and max per triple (target <= 2 KiB) and the watermark
overhead. benchmarks/throughput.py calls :func:`measure` after its two-stage runs;
alone, against a broker that still has the topic:

    .venv/bin/python benchmarks/partials_bytes.py --bootstrap HOST:PORT --topic APP_ID-partials
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stream.partials import WindowPartial, decode_record  # noqa: E402

TARGET = 2048  # bytes per key per window per source partition (issue 15)


@dataclass(slots=True, frozen=True)
class PartialsBytes:
    """What one run wrote to its partials topic."""

    partials: int  # SWP records
    triples: int  # distinct (key, window, source)
    keys: int
    windows: int
    sources: int
    median: float  # bytes per triple
    max: int
    mean: float
    watermarks: int  # SWW records
    watermark_bytes: int
    other: int  # records that are neither

    def line(self) -> str:
        return (f"{self.partials:,} partials ({self.triples:,} key×window×source; {self.keys} keys, {self.windows} windows, "
                f"{self.sources} sources): median {self.median:,.0f} B, max {self.max:,} B, mean {self.mean:,.0f} B "
                f"per key per window per source partition (target <= {TARGET:,}); "
                f"+ {self.watermarks:,} watermark records, {self.watermark_bytes:,} B in all")  # fmt: skip


async def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every record value of ``topic``, from the start to its end offsets now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or await _partitions(c, topic))]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = await c.end_offsets(tps)
        out: list[bytes] = []
        while [tp for tp in tps if await c.position(tp) < end[tp]]:
            for recs in (await c.getmany(timeout_ms=1000, max_records=5000)).values():
                out += [r.value for r in recs if r.value is not None]
        return out
    finally:
        await c.stop()


async def _partitions(c, topic: str) -> set[int]:
    await c._client.force_metadata_update()
    return c.partitions_for_topic(topic) or set()


def summarize(values: list[bytes]) -> PartialsBytes:
    per: collections.Counter[tuple[str, int, int]] = collections.Counter()
    wm = wm_bytes = other = partials = 0
    for v in values:
        if v.startswith(b"SWW"):
            wm, wm_bytes = wm + 1, wm_bytes + len(v)
            continue
        if not v.startswith(b"SWP"):
            other += 1
            continue
        p = decode_record(v)
        assert isinstance(p, WindowPartial)
        per[(p.key, p.w, p.source)] += len(v)
        partials += 1
    sizes = list(per.values())
    return PartialsBytes(
        partials, len(per), len({k for k, _, _ in per}), len({w for _, w, _ in per}), len({s for _, _, s in per}),
        statistics.median(sizes) if sizes else float("nan"), max(sizes, default=0),
        sum(sizes) / len(sizes) if sizes else float("nan"), wm, wm_bytes, other,
    )  # fmt: skip


def measure(bootstrap: str, topic: str) -> PartialsBytes:
    return summarize(asyncio.run(read_topic(bootstrap, topic)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    args = ap.parse_args()
    r = measure(args.bootstrap, args.topic)
    print(r.line())
    print(f"partials_bytes_median={r.median:.0f} partials_bytes_max={r.max} target_met={r.max <= TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
