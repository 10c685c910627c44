"""Sinks at their own pace: one queue per sink, offsets committed when every sink is done.

Each sink delivers the records in topic order, one at a time, so a retraction never
overtakes its shift; a sink that is down (retrying, timing out) holds back only itself.
The commit position of a partition is its first record some sink has not finished, so a
crash re-reads exactly the unfinished records (the delivered topic drops the rest).
When a queue holds ``capacity`` records the caller pauses fetching.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .notifier import Notifier
from .sinks import Sink

__all__ = ["Dispatcher"]

log = logging.getLogger("shiftwatch.notify")

Partition = tuple[str, int]


class Dispatcher:
    def __init__(self, notifier: Notifier, capacity: int = 1000) -> None:
        self.notifier, self.capacity = notifier, capacity
        self.queues: dict[str, asyncio.Queue[tuple[int, Partition, int, dict[str, Any], bytes]]] = {s.name: asyncio.Queue() for s in notifier.sinks}
        self._gen: dict[Partition, int] = {}  # bumped when a partition is revoked: its queued records are dropped
        self._left: dict[Partition, dict[int, int]] = {}  # offset -> sinks still to finish it
        self._next: dict[Partition, int] = {}  # offset after the last submitted record
        self._tasks: list[asyncio.Task[None]] = []
        self.error: BaseException | None = None
        self.committed: dict[Partition, int] = {}  # last committed offset per partition (kept by the runner)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(s), name=f"notify-{s.name}") for s in self.notifier.sinks]

    @property
    def full(self) -> bool:
        return any(q.qsize() >= self.capacity for q in self.queues.values())

    async def submit(self, topic: str, partition: int, offset: int, raw: bytes | None) -> None:
        """Queue one record for every sink (unreadable ones are dead-lettered here, once)."""
        p = (topic, partition)
        ev = await self.notifier.prepare(raw, {"topic": topic, "partition": partition, "offset": offset})
        self._next[p] = offset + 1
        if ev is None:
            return
        self._left.setdefault(p, {})[offset] = len(self.queues)
        for q in self.queues.values():
            q.put_nowait((self._gen.get(p, 0), p, offset, ev, raw or b""))

    async def _run(self, sink: Sink) -> None:
        q = self.queues[sink.name]
        while True:
            gen, p, offset, ev, raw = await q.get()
            if gen != self._gen.get(p, 0):
                continue  # revoked meanwhile: the partition's next owner delivers it
            try:
                await self.notifier.deliver(sink, ev, raw, {"topic": p[0], "partition": p[1], "offset": offset})
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the store or dead-letter write failed: stop, do not commit past it
                log.exception("sink %s: delivery of offset %d failed: %s", sink.name, offset, self.notifier.redact(str(e)))
                self.error = e
                return
            left = self._left.get(p, {})
            if gen == self._gen.get(p, 0) and offset in left:
                left[offset] -= 1
                if left[offset] == 0:
                    del left[offset]

    def committable(self) -> dict[Partition, int]:
        """Per partition, the offset to commit: the first unfinished record, or past the last."""
        return {p: min(self._left[p]) if self._left.get(p) else nxt for p, nxt in self._next.items()}

    @property
    def idle(self) -> bool:
        return not any(self._left.values())

    async def drain(self, timeout_s: float) -> None:
        """Let queued deliveries finish (for a clean stop), up to ``timeout_s``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not self.idle and self.error is None and loop.time() < end:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self, partitions: set[Partition]) -> None:
        """After a revoke the new owner re-reads these from the committed offsets."""
        for p in partitions:
            self._gen[p] = self._gen.get(p, 0) + 1
            self._next.pop(p, None)
            self.committed.pop(p, None)
            self._left.pop(p, None)
