"""``shiftwatch shifts`` and ``shiftwatch plot``: shift events and snapshots for people."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

from .records import iso
from .replay import replay_stream
from .settings import Settings

__all__ = ["load_records", "format_shifts", "run_shifts", "run_plot", "Records"]


@dataclass(slots=True)
class Records:
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    shifts: list[dict[str, Any]] = field(default_factory=list)


def _collect(lines: Iterable[str], into: Records) -> int:
    """Add snapshot/shift/retraction records; returns how many lines were events instead."""
    raw_events = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            raw_events += 1
            continue
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "snapshot":
            into.snapshots.setdefault(doc["key"], []).append(doc)
        elif kind in ("shift", "retraction", "incident"):
            into.shifts.append(doc)
        elif kind != "dead_letter":
            raw_events += 1
    return raw_events


def load_records(path: str, settings: Settings) -> Records:
    """Records from replay output, or — if the file holds raw events — from replaying it."""
    recs = Records()
    with open(path, encoding="utf-8", errors="replace") as fh:
        raw_events = _collect(fh, recs)
    if raw_events and not recs.snapshots:
        import io

        buf = io.StringIO()
        with open(path, "rb") as fh:
            replay_stream(settings.make_pipeline(), fh, buf, path, {"snapshot", "shift", "retraction"})
        recs = Records()
        _collect(buf.getvalue().splitlines(), recs)
    return recs


def format_shifts(shifts: list[dict[str, Any]]) -> str:
    """A fixed-width table, newest last: when, key, direction, what moved, evidence."""
    rows = [("at (UTC)", "key", "event", "moved", "p-value", "snapshots b/a", "id")]
    for s in shifts:
        if s.get("type") == "retraction":
            rows.append((iso(s["at"])[:19], s["key"], "retracted", "", "", "", s["id"]))
            continue
        if s.get("type") == "incident":
            keys = s.get("keys", [])
            rows.append((iso(s["first_at"])[:19], f"{len(keys)} keys", f"incident ({s.get('direction', '')})", ", ".join(keys[:5]), "", "", s["id"]))
            continue
        moved = ", ".join(
            f"{m['metric']} {m['before'] * 1000:.1f}→{m['after'] * 1000:.1f} ms ({m['relative_change']:+.0%})" for m in s["metrics"]
        )
        rows.append(
            (
                iso(s["at"])[:19],
                s["key"],
                s["direction"],
                moved,
                f"{s['pvalue']:.1e}",
                f"{s['snapshots_before']}/{s['snapshots_after']}",
                s["id"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def _read_topic(settings: Settings, follow: bool, out: TextIO) -> list[dict[str, Any]]:
    """Every shift event on the change topic from the beginning; with ``follow``, keep going."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    conn = settings.connection("shiftwatch-shifts")
    c = AIOKafkaConsumer(**conn.consumer_kwargs(enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"))
    await c.start()
    docs: list[dict[str, Any]] = []
    try:
        parts = c.partitions_for_topic(settings.shift_topic)
        if not parts:
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(settings.shift_topic) or set()
        tps = [TopicPartition(settings.shift_topic, p) for p in sorted(parts)]
        if not tps:
            return docs
        c.assign(tps)
        for tp, off in (await c.beginning_offsets(tps)).items():
            c.seek(tp, off)
        end = await c.end_offsets(tps)
        while True:
            batch = await c.getmany(timeout_ms=1000)
            new = [json.loads(r.value) for recs in batch.values() for r in recs]
            docs.extend(new)
            if follow:
                for d in new:
                    out.write(format_shifts([d]).splitlines()[-1] + "\n")
                    out.flush()
                continue
            positions = [await c.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps)):
                break
    finally:
        await c.stop()
    return docs


def run_shifts(settings: Settings, path: str | None, follow: bool) -> int:
    if path:
        recs = Records()
        with open(path, encoding="utf-8", errors="replace") as fh:
            _collect(fh, recs)
        shifts = recs.shifts
    else:
        shifts = asyncio.run(_read_topic(settings, follow, sys.stdout))
    print(format_shifts(shifts))
    return 0


def run_plot(path: str, out_dir: str, settings: Settings) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("shiftwatch plot needs matplotlib: pip install 'shiftwatch[plot]'", file=sys.stderr)
        return 2
    from datetime import datetime, timezone

    recs = load_records(path, settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, snaps in sorted(recs.snapshots.items()):
        snaps.sort(key=lambda s: s["start"])
        t = [datetime.fromtimestamp(s["start"], tz=timezone.utc) for s in snaps]
        fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
        colors = ("#2c5ea8", "#7d3c98", "#b9770e", "#117a65", "#922b21")
        for i, q in enumerate(settings.quantile_names):
            ax.plot(t, [s[q] * 1000 for s in snaps if q in s], label=q, color=colors[i % len(colors)], linewidth=1.3)
        for s in recs.shifts:
            if s["key"] != key or s.get("type") != "shift":
                continue
            when = datetime.fromtimestamp(s["at"], tz=timezone.utc)
            color = "#c0392b" if s["direction"] == "regression" else "#1e8449"
            ax.axvline(when, color=color, linestyle="--", linewidth=1.2)
            moved = ", ".join(f"{m['metric']} {m['relative_change']:+.0%}" for m in s["metrics"])
            ax.annotate(f"{s['direction']}: {moved}", (when, ax.get_ylim()[1]), xytext=(4, -14), textcoords="offset points", color=color, fontsize=8)
        ax.set_title(f"{key} — snapshot percentiles")
        ax.set_ylabel("ms")
        ax.set_xlabel("event time (UTC)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        fig.autofmt_xdate()
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:100] or "key"
        target = out / f"{safe}.png"
        fig.savefig(target)
        plt.close(fig)
        written.append(target)
    for p in written:
        print(p)
    if not written:
        print("no snapshots found: give replay output or a file of events", file=sys.stderr)
        return 1
    return 0
