"""Seeded event streams with known answers, shared by the stream tests."""

from __future__ import annotations

import json

import numpy as np

T0 = 1_763_800_000.0  # 2025-11-22T08:26:40Z, a multiple of 10 s and of 40 s


def shift_stream(
    interval: float = 10.0,
    snapshots: int = 60,
    shift_snapshot: int = 40,
    per_snapshot: int = 300,
    factor: float = 1.5,
    seed: int = 1,
    keys: tuple[str, ...] = ("A", "B"),
    shifted: str = "A",
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Events for ``keys`` over ``snapshots`` windows; ``shifted`` is × ``factor``
    from window ``shift_snapshot`` on. Returns (time-ordered events in ms, values per key in ms)."""
    rng = np.random.default_rng(seed)
    events: list[tuple[float, str, float]] = []
    per_key: dict[str, list[float]] = {k: [] for k in keys}
    for w in range(snapshots):
        for k in keys:
            ts = T0 + w * interval + np.sort(rng.random(per_snapshot)) * interval
            v = 40.0 * np.exp(0.4 * rng.standard_normal(per_snapshot))
            if k == shifted and w >= shift_snapshot:
                v = v * factor
            v = np.round(v, 3)
            per_key[k].extend(v.tolist())
            events.extend(zip(ts.tolist(), [k] * per_snapshot, v.tolist()))
    events.sort(key=lambda e: e[0])
    return [{"key": k, "value": v, "ts": t} for t, k, v in events], {k: np.asarray(v) for k, v in per_key.items()}


def as_messages(events: list[dict], per_message: int = 1) -> list[bytes]:
    if per_message == 1:
        return [json.dumps(e).encode() for e in events]
    return [json.dumps(events[i : i + per_message]).encode() for i in range(0, len(events), per_message)]
