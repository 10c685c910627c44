"""One HTTP delivery with retries: exponential backoff with jitter on 5xx, 408 and
timeouts/connection errors, ``Retry-After`` honoured on 429, other 4xx final at once.

The jitter comes from a ``random.Random`` the caller seeds, and ``sleep`` is injected,
so tests see the exact delays. Error texts go through the redactor: an aiohttp error
quoting a webhook URL never carries the secret out.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Awaitable, Callable

import aiohttp

__all__ = ["Request", "Result", "RetryPolicy", "send", "retry_after_seconds"]

MAX_RETRY_AFTER_S = 3600.0


@dataclass(slots=True, frozen=True)
class Request:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None


@dataclass(slots=True, frozen=True)
class Result:
    ok: bool
    status: int | None
    body: bytes
    attempts: int
    error: str  # "" when ok; redacted
    reason: str  # "delivered" | "rejected" | "retries_exhausted"


@dataclass(slots=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_s: float = 0.5
    max_s: float = 60.0
    rng: random.Random | None = None

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based): half fixed, half jitter."""
        base = min(self.max_s, self.initial_s * 2 ** (attempt - 1))
        r = (self.rng or random).random()
        return base * (0.5 + 0.5 * r)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    v = value.strip()
    try:
        secs = float(v)
    except ValueError:
        try:
            secs = parsedate_to_datetime(v).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(secs, 0.0), MAX_RETRY_AFTER_S)


async def _once(session: aiohttp.ClientSession, req: Request, timeout_s: float) -> tuple[int, bytes, str | None]:
    async with session.request(req.method, req.url, headers=dict(req.headers), data=req.body,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        body = await resp.read()
        return resp.status, body, resp.headers.get("Retry-After")


async def send(
    session: aiohttp.ClientSession,
    req: Request,
    policy: RetryPolicy,
    timeout_s: float,
    redact: Callable[[str], str] = lambda s: s,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[str], None] = lambda why: None,
) -> Result:
    """Deliver ``req``; returns after success, a final refusal, or ``max_attempts``."""
    error, status = "", None
    for attempt in range(1, policy.max_attempts + 1):
        wait: float | None = None
        try:
            status, body, retry_after = await _once(session, req, timeout_s)
        except asyncio.TimeoutError:
            status, error = None, f"timeout after {timeout_s:g} s"
        except aiohttp.ClientError as e:
            status, error = None, redact(f"{type(e).__name__}: {e}")
        else:
            if 200 <= status < 300:
                return Result(True, status, body, attempt, "", "delivered")
            error = redact(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
            if status == 429:
                wait = retry_after_seconds(retry_after)
            elif status < 500 and status != 408:
                return Result(False, status, body, attempt, error, "rejected")
        if attempt == policy.max_attempts:
            break
        on_retry("retry_after" if wait is not None else "backoff")
        await sleep(wait if wait is not None else policy.backoff(attempt))
    return Result(False, status, b"", policy.max_attempts, error, "retries_exhausted")
