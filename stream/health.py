"""Liveness, readiness and the worker's first connection to Kafka.

``/healthz`` answers "the process is alive": the consume loop ran within the last
``LIVE_WITHIN_S`` seconds (or it is still connecting, which is alive too).
``/readyz`` answers "this worker is doing its job": assigned partitions, restored,
and the broker answered the last probe; otherwise 503 with a JSON reason.

A wrong password or an untrusted certificate is not going to fix itself: the worker
exits non-zero with one line that says so. An unreachable broker might: the worker
keeps retrying with backoff, says so once a minute, and stays alive but not ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from .connection import KafkaAuthError, KafkaTLSError, KafkaUnreachable, check_connection

__all__ = ["Health", "FatalKafkaError", "connect", "probe", "fatal_exit", "LIVE_WITHIN_S"]

log = logging.getLogger("shiftwatch.health")

#: The consume loop must have run this recently for /healthz to say ok.
LIVE_WITHIN_S = 60.0


class FatalKafkaError(Exception):
    """Authentication or TLS verification failed: retrying cannot help."""


@dataclass(slots=True)
class Health:
    """What /healthz and /readyz answer from (monotonic seconds)."""

    started: float
    last_loop: float | None = None
    assigned: bool = False
    broker_ok: bool = False
    reason: str = "connecting to Kafka"

    def live(self, now: float | None = None) -> tuple[bool, str]:
        now = time.monotonic() if now is None else now
        if self.last_loop is None:
            return True, self.reason
        idle = now - self.last_loop
        return (idle <= LIVE_WITHIN_S, f"consume loop last ran {idle:.0f} s ago")


async def connect(conn: Any, health: Health, first_backoff_s: float = 0.5, max_backoff_s: float = 30.0, timeout_s: float = 10.0) -> None:
    """Wait until the cluster answers; FatalKafkaError on bad credentials or certificates."""
    backoff, last_log = first_backoff_s, -1e9
    while True:
        try:
            await check_connection(conn, timeout_s)
            health.broker_ok, health.reason = True, "connected"
            return
        except (KafkaAuthError, KafkaTLSError) as e:
            raise FatalKafkaError(str(e)) from None
        except KafkaUnreachable as e:
            health.broker_ok, health.reason = False, str(e)
            if time.monotonic() - last_log >= 60.0:
                log.warning("%s; retrying with backoff (this is logged once a minute)", e)
                last_log = time.monotonic()
        await asyncio.sleep(backoff)
        backoff = min(max_backoff_s, backoff * 2)


async def probe(conn: Any, health: Health, timeout_s: float = 5.0) -> None:
    """One readiness probe of the broker (the timer runs it every few seconds)."""
    try:
        await check_connection(conn, timeout_s)
        if not health.broker_ok:
            log.info("Kafka reachable again")
        health.broker_ok, health.reason = True, "connected"
    except Exception as e:  # any failure means: not ready now
        if health.broker_ok:
            log.warning("Kafka unreachable: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        health.broker_ok, health.reason = False, str(e).splitlines()[0] if str(e) else type(e).__name__


def fatal_exit(message: str, code: int = 3) -> None:
    """Log one line and leave at once: nothing was applied yet, so nothing to checkpoint."""
    log.error("%s", message)
    # The real stderr: Faust redirects sys.stderr into logging, which made this line a
    # second "[WARNING] shiftwatch: error: ..." log record instead of the one-line error.
    print(f"shiftwatch: error: {message}", file=sys.__stderr__ or sys.stderr, flush=True)
    logging.shutdown()
    os._exit(code)
