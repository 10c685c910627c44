"""``shiftwatch loadgen``: realistic multi-key latency traffic into Kafka, with shifts.

Used by docker-compose and for manual trials. Events are produced in real time,
batched as JSON arrays per key (one message per key per second).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict

import numpy as np
from aiokafka import AIOKafkaProducer

from .settings import Settings
from .synth import KeyProfile, Shift, SyntheticTraffic

__all__ = ["run_loadgen", "profiles"]

log = logging.getLogger("shiftwatch.loadgen")
NAMES = ("checkout", "search", "login", "payments", "catalog", "cart", "profile", "recommendations", "inventory", "shipping")


def profiles(n: int, rate: float, seed: int) -> tuple[KeyProfile, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        name = NAMES[i] if i < len(NAMES) else f"endpoint-{i}"
        out.append(KeyProfile(name, float(np.round(rng.lognormal(np.log(60), 0.8), 1)), float(np.round(rng.uniform(0.3, 0.7), 2)), rate))
    return tuple(out)


async def _run(settings: Settings, rate: float, keys: int, shift_every: float, duration: float, seed: int) -> int:
    profs = profiles(keys, rate, seed)
    rng = np.random.default_rng(seed + 1)
    shifts = []
    horizon = duration if duration > 0 else 7 * 86400
    t = shift_every
    while t < horizon:
        p = profs[int(rng.integers(len(profs)))]
        shifts.append(Shift(p.key, t, float(rng.choice([1.5, 2.0, 0.6]))))
        t += shift_every
    traffic = SyntheticTraffic(profiles=profs, shifts=tuple(shifts), seed=seed)
    producer = AIOKafkaProducer(**settings.connection("shiftwatch-loadgen").producer_kwargs(linger_ms=20))
    await producer.start()
    start = time.time()
    sent = 0
    try:
        i = 0
        while duration <= 0 or i < duration:
            by_key: dict[str, list[dict[str, object]]] = defaultdict(list)
            for e in traffic.second(start, float(i)):
                by_key[str(e["key"])].append(e)
            for key, evs in by_key.items():
                await producer.send(settings.input_topic, json.dumps(evs).encode(), key=key.encode())
                sent += len(evs)
            i += 1
            await asyncio.sleep(max(0.0, start + i - time.time()))
            if i % 60 == 0:
                log.info("loadgen: %d events sent", sent)
    finally:
        await producer.stop()
    return 0


def run_loadgen(settings: Settings, rate: float, keys: int, shift_every: float, duration: float, seed: int) -> int:
    return asyncio.run(_run(settings, rate, keys, shift_every, duration, seed))
