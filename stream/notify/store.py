"""What has been delivered where, kept in a compacted Kafka topic.

Record key ``<sink>\\x00<idempotency key>`` (or ``<sink>\\x00ref:<event id>`` for what a
sink must remember, e.g. a Grafana annotation id), value JSON ``{"outcome": ...}``:
``pending`` is written before a request goes out, ``delivered`` or ``dead_letter``
after. A notifier that starts (or is assigned the shift partition) reads the topic to
its end, so a re-read event is not posted twice, and a ``pending`` left by a crash
marks the one delivery whose fate is unknown.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["DeliveredStore", "read_topic"]


async def read_topic(topic: str, consumer_kwargs: dict[str, Any], start: int = 0) -> tuple[list[tuple[bytes, bytes | None]], int]:
    """Records of partition 0 of ``topic`` from offset ``start`` to its current end, and that end.
    ``consumer_kwargs`` carry ``bootstrap_servers`` and any security settings."""
    tp = TopicPartition(topic, 0)
    c = AIOKafkaConsumer(**{**consumer_kwargs, "enable_auto_commit": False, "group_id": None})
    await c.start()
    try:
        c.assign([tp])
        end = (await c.end_offsets([tp]))[tp]
        begin = (await c.beginning_offsets([tp]))[tp]
        c.seek(tp, max(start, begin))
        out: list[tuple[bytes, bytes | None]] = []
        while await c.position(tp) < end:
            batch = await c.getmany(tp, timeout_ms=1000)
            out += [(r.key, r.value) for r in batch.get(tp, []) if r.key is not None]
        return out, end
    finally:
        await c.stop()


class DeliveredStore:
    """In-memory view of the delivered topic; ``put`` writes through and waits for the ack."""

    def __init__(self, topic: str, send: Callable[[bytes, bytes], Awaitable[Any]], consumer_kwargs: dict[str, Any] | None = None) -> None:
        self.topic, self._send = topic, send
        self.consumer_kwargs = consumer_kwargs or {}
        self._state: dict[str, dict[str, Any]] = {}
        self._read_to = 0

    async def catch_up(self) -> int:
        """Read what other notifiers (or this one before a restart) wrote; returns records read."""
        records, self._read_to = await read_topic(self.topic, self.consumer_kwargs, self._read_to)
        for k, v in records:
            self.apply(k, v)
        return len(records)

    def apply(self, key: bytes, value: bytes | None) -> None:
        k = key.decode("utf-8", "replace")
        if value is None:
            self._state.pop(k, None)
            return
        try:
            doc = json.loads(value)
        except ValueError:
            return
        if isinstance(doc, dict):
            self._state[k] = doc

    def get(self, sink: str, idem: str) -> dict[str, Any] | None:
        return self._state.get(f"{sink}\x00{idem}")

    def ref(self, sink: str, event_id: str) -> dict[str, Any] | None:
        return self._state.get(f"{sink}\x00ref:{event_id}")

    async def put(self, sink: str, idem: str, value: dict[str, Any]) -> None:
        await self._write(f"{sink}\x00{idem}", value)

    async def put_ref(self, sink: str, event_id: str, value: dict[str, Any]) -> None:
        await self._write(f"{sink}\x00ref:{event_id}", value)

    async def _write(self, key: str, value: dict[str, Any]) -> None:
        self._state[key] = value
        await self._send(key.encode(), json.dumps(value, separators=(",", ":")).encode())

    def __len__(self) -> int:
        return len(self._state)
