"""Per-event delivery logic: dedupe, filter, intent, send, remember, dead-letter.

Kept apart from the Kafka loop (``runner``) so the order of the steps is plain:
an event is finished for a sink once the store says ``delivered`` or ``dead_letter``;
only then does the runner commit its offset.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any, Awaitable, Callable, Mapping

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram

from .config import EVENT_TYPES, NotifyConfig
from .delivery import Request, Result, RetryPolicy, send
from .filters import matches
from .secrets import Redactor
from .sinks import Sink, idempotency_key
from .store import DeliveredStore

__all__ = ["Notifier", "NotifyMetrics", "OUTCOMES"]

log = logging.getLogger("shiftwatch.notify")

OUTCOMES = ("delivered", "duplicate", "filtered", "retried", "dead_letter", "recovered", "skipped_uncertain")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class NotifyMetrics:
    """The notifier's Prometheus series, on a registry of its own."""

    def __init__(self, sinks: list[str]) -> None:
        self.registry = CollectorRegistry()
        self.total = Counter("shiftwatch_notifications", "Notification outcomes per sink.", ["sink", "outcome"], registry=self.registry)
        self.latency = Histogram("shiftwatch_notification_delivery_seconds", "Time from the first request to the final answer, retries included.",
                                 ["sink"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.invalid = Counter("shiftwatch_notify_invalid_records", "Shift-topic records that could not be read (dead-lettered).", registry=self.registry)
        for s in sinks:
            for o in OUTCOMES:
                self.total.labels(s, o)
            self.latency.labels(s)


def parse_event(raw: bytes | None) -> tuple[dict[str, Any] | None, str]:
    """The event, or None and a dead-letter reason."""
    if raw is None:
        return None, "empty"
    try:
        ev = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, "invalid_json"
    if not isinstance(ev, dict):
        return None, "not_an_object"
    if ev.get("type") not in EVENT_TYPES:
        return ev, "ignored"
    if not isinstance(ev.get("id"), str) or (ev["type"] != "incident" and not isinstance(ev.get("key"), str)):
        return None, "missing_field"
    return ev, ""


class Notifier:
    def __init__(self, cfg: NotifyConfig, sinks: list[Sink], store: DeliveredStore, session: aiohttp.ClientSession,
                 dead_letter: Callable[[bytes], Awaitable[Any]], metrics: NotifyMetrics, redact: Redactor,
                 policy: Callable[[], RetryPolicy], sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.cfg, self.sinks, self.store, self.session = cfg, sinks, store, session
        self.dead_letter, self.metrics, self.redact, self.policy, self.sleep = dead_letter, metrics, redact, policy, sleep

    async def handle(self, raw: bytes | None, source: Mapping[str, Any]) -> None:
        """Deliver one shift-topic record to every sink (concurrently); returns when all are final."""
        ev = await self.prepare(raw, source)
        if ev is not None:
            await asyncio.gather(*(self.deliver(s, ev, raw or b"", source) for s in self.sinks))

    async def prepare(self, raw: bytes | None, source: Mapping[str, Any]) -> dict[str, Any] | None:
        """The event to deliver, or None: another record type, or unreadable (dead-lettered once)."""
        ev, reason = parse_event(raw)
        if reason == "ignored":
            return None
        if ev is None:
            where = f"record:{source.get('topic')}:{source.get('partition')}:{source.get('offset')}"
            if self.store.get("-", where):
                return None  # re-read after a restart: dead-lettered already
            self.metrics.invalid.inc()
            log.warning("unreadable shift-topic record at %s: %s", dict(source), reason)
            await self._dead(reason, f"shift-topic record: {reason}", None, None, raw, source)
            await self.store.put("-", where, {"outcome": "dead_letter"})
            return None
        return ev

    async def deliver(self, sink: Sink, ev: dict[str, Any], raw: bytes, source: Mapping[str, Any]) -> None:
        idem = idempotency_key(ev)
        state = self.store.get(sink.name, idem)
        if state and state.get("outcome") in ("delivered", "dead_letter", "filtered"):
            self.metrics.total.labels(sink.name, "duplicate").inc()
            return
        ref = self.store.ref(sink.name, ev["id"])
        try:
            wanted = self._wanted(sink, ev)
            req = sink.plan(ev, raw, ref) if wanted else None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # a malformed event
            log.error("sink %s: cannot build a message from %s %s: %s: %s", sink.name, ev.get("type"), ev.get("id"), type(e).__name__, e)
            await self._dead("notify_bad_event", f"{type(e).__name__}: {e}", sink.name, None, raw, source, ev)
            await self.store.put(sink.name, idem, {"outcome": "dead_letter"})
            self.metrics.total.labels(sink.name, "dead_letter").inc()
            return
        if not wanted:
            self.metrics.total.labels(sink.name, "filtered").inc()
            return
        if state and state.get("outcome") == "pending" and await self._uncertain(sink, ev, idem, ref):
            return
        if req is None:
            self.metrics.total.labels(sink.name, "filtered").inc()
            return
        if sink.lookup(ev) is not None or sink.cfg.on_uncertain == "skip":
            # Only where a crash's unknown outcome changes what happens next (ask Grafana, or skip).
            await self.store.put(sink.name, idem, {"outcome": "pending"})
        t0 = time.perf_counter()
        res = await send(self.session, req, self.policy(), self.cfg.timeout_s, self.redact, self.sleep,
                         on_retry=lambda why: self.metrics.total.labels(sink.name, "retried").inc())
        self.metrics.latency.labels(sink.name).observe(time.perf_counter() - t0)
        await self._finish(sink, ev, idem, req, res, raw, source)

    def _wanted(self, sink: Sink, ev: Mapping[str, Any]) -> bool:
        if ev["type"] not in sink.cfg.events:
            return False
        if ev["type"] == "retraction":  # follows its shift: sent where the shift went
            shift = self.store.get(sink.name, f"shift:{ev['id']}")
            return bool(shift and shift.get("outcome") == "delivered")
        return matches(sink.cfg.filter, ev)

    async def _uncertain(self, sink: Sink, ev: dict[str, Any], idem: str, ref: Mapping[str, Any] | None) -> bool:
        """A crash left this delivery pending: ask the sink if it arrived (Grafana), or
        skip it when the sink says ``on_uncertain = "skip"``. True: nothing more to do."""
        look = sink.lookup(ev) if ref is None else None
        if look is not None:
            res = await send(self.session, look, self.policy(), self.cfg.timeout_s, self.redact, self.sleep)
            memo = sink.found(res.body) if res.ok else None
            if memo is not None:
                await self.store.put_ref(sink.name, ev["id"], memo)
                await self.store.put(sink.name, idem, {"outcome": "delivered", **memo})
                self.metrics.total.labels(sink.name, "recovered").inc()
                return True
            return False
        if sink.cfg.on_uncertain == "skip":
            await self.store.put(sink.name, idem, {"outcome": "delivered", "uncertain": True})
            self.metrics.total.labels(sink.name, "skipped_uncertain").inc()
            return True
        return False

    async def _finish(self, sink: Sink, ev: dict[str, Any], idem: str, req: Request, res: Result, raw: bytes, source: Mapping[str, Any]) -> None:
        gone = req.method == "DELETE" and res.status == 404  # deleted before a crash: the goal is met
        if res.ok or gone:
            memo = sink.remember(ev, res.body) if res.ok else {}
            if memo:
                await self.store.put_ref(sink.name, ev["id"], memo)
            await self.store.put(sink.name, idem, {"outcome": "delivered", **memo})
            self.metrics.total.labels(sink.name, "delivered").inc()
            return
        log.error("sink %s: %s %s not delivered after %d attempt(s): %s", sink.name, ev["type"], ev["id"], res.attempts, res.error)
        await self._dead(f"notify_{res.reason}", res.error, sink.name, res, raw, source, ev)
        await self.store.put(sink.name, idem, {"outcome": "dead_letter"})
        self.metrics.total.labels(sink.name, "dead_letter").inc()

    async def _dead(self, reason: str, error: str, sink: str | None, res: Result | None, raw: bytes | None,
                    source: Mapping[str, Any], ev: Mapping[str, Any] | None = None) -> None:
        rec = {
            "type": "dead_letter", "version": 1, "reason": reason, "error": self.redact(error),
            "sink": sink, "attempts": res.attempts if res else None, "status": res.status if res else None,
            "source": dict(source), "event": ev,
            "raw_base64": base64.b64encode(raw or b"").decode(),
        }
        await self.dead_letter(json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode())
