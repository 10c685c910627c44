"""HTTP surface of a worker or the demo: /metrics, /api/state, the live page at /.

It runs on the pipeline's own asyncio loop (aiohttp), so scrapes read state
between batches and need no locks.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from .metrics import encode

if TYPE_CHECKING:  # pragma: no cover
    from .partitions import StateView as Pipeline

__all__ = ["make_web_app", "serve", "state_json"]


def state_json(pipeline: "Pipeline", max_keys: int = 200) -> dict[str, Any]:
    """What the live page shows: per-key current percentiles, sparklines, shifts."""
    keys = []
    names, qs = pipeline.config.names, list(pipeline.config.quantiles)
    low, high = names[0], names[-1]
    for st in pipeline.keys_recent_first(max_keys):
        if st.moments.count == 0:
            continue
        alltime = dict(zip(names, (float(x) for x in st.alltime_view().quantiles(qs))))
        keys.append(
            {
                "key": st.key,
                "labels": dict(st.labels),
                "count": int(st.moments.count),
                "alltime": {**alltime, "mean": float(st.moments.mean)},
                "last": st.recent[-1].to_json() if st.recent else None,
                "spark": {"t": st.recent.column("start"), low: st.recent.column(low), high: st.recent.column(high)},
                "shifts": [e.to_json() for e in st.shifts],
            }
        )
    keys.sort(key=lambda k: k["key"])
    s = pipeline.stats
    return {
        "keys": keys,
        "shifts": [e.to_json() for e in reversed(pipeline.recent_shifts)],
        "stats": {
            "messages": s.messages,
            "accepted": s.accepted,
            "rejected": s.rejected,
            "late": s.late,
            "snapshots": s.snapshots,
            "shifts": s.shifts,
            "keys": pipeline.key_count(),
        },
        "snapshot_interval_s": pipeline.config.snapshot_interval_s,
        "quantiles": list(names),
        "watermark": pipeline.max_ts if pipeline.max_ts > 0 else None,
    }


def make_web_app(
    pipeline: "Pipeline",
    registry: CollectorRegistry,
    health: Any = None,
    ready: Callable[[], tuple[bool, str]] | None = None,
) -> web.Application:
    """``/`` the live page, ``/metrics``, ``/api/state``, ``/healthz`` (liveness: the
    consume loop ran recently) and ``/readyz`` (readiness: assigned, restored, broker
    reachable; 503 with a JSON reason otherwise). Without ``health``/``ready`` (the demo)
    both answer ok."""
    page = resources.files("stream").joinpath("static/index.html").read_bytes()

    async def metrics(request: web.Request) -> web.Response:
        # The scraper's Accept header picks the format (OpenMetrics for Prometheus).
        body, content_type = encode(registry, request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def state(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(state_json(pipeline), allow_nan=False, default=_nan_safe), content_type="application/json")

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        ok, reason = health.live() if health is not None else (True, "ok")
        return web.json_response({"status": "ok" if ok else "dead", "reason": reason}, status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        ok, reason = ready() if ready is not None else (True, "ok")
        return web.json_response({"status": "ready" if ok else "not ready", "reason": reason}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/state", state)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _nan_safe(o: object) -> object:  # pragma: no cover - json default hook
    return None


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; returns the runner (call ``await runner.cleanup()`` to stop)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
