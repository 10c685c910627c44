"""A real local HTTP server standing in for Slack, a webhook receiver and Grafana's
annotation API. It records every request on arrival and answers from a per-path plan:
a status, 429 with Retry-After, a slow answer, or a connection reset."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from aiohttp import web

from worker_proc import free_port  # noqa: F401  (re-exported for the other tests)


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    t: float

    def json(self):
        return json.loads(self.body)


@dataclass
class FakeServer:
    """``plan[path]`` is a list of answers used one per request, then 200:
    an int status, ``("429", seconds)``, ``("echo", status)`` (an error page quoting the URL), ``("slow", seconds)`` or ``"reset"``."""

    delay: float = 0.0
    plan: dict[str, list] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    annotations: dict[int, dict] = field(default_factory=dict)

    def start(self) -> "FakeServer":
        self.port = free_port()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self._runner.setup())
        self.loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        async def down() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def requests(self, path: str | None = None, method: str | None = None) -> list[Seen]:
        return [s for s in list(self.seen) if (path is None or s.path == path) and (method is None or s.method == method)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, request.query_string, dict(request.headers), body, time.time()))
        answers = self.plan.get(request.path) or []
        answer = answers.pop(0) if answers else 200
        if self.delay:
            await asyncio.sleep(self.delay)
        if answer == "reset":
            request.transport.abort()
            return web.Response(status=200)
        if isinstance(answer, tuple) and answer[0] == "slow":
            await asyncio.sleep(answer[1])
            answer = 200
        if isinstance(answer, tuple) and answer[0] == "echo":  # an error page quoting the URL
            return web.Response(status=answer[1], text=f"no such hook: {request.url}")
        if isinstance(answer, tuple) and answer[0] == "429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": str(answer[1])})
        if answer != 200:
            return web.Response(status=answer, text="boom")
        if request.path.startswith("/api/annotations"):
            return self._grafana(request, body)
        return web.Response(text="ok")

    def _grafana(self, request: web.Request, body: bytes) -> web.Response:
        parts = request.path.rstrip("/").split("/")
        if request.method == "POST" and len(parts) == 3:
            aid = max(self.annotations, default=0) + 1
            self.annotations[aid] = {"id": aid, **json.loads(body)}
            return web.json_response({"id": aid, "message": "Annotation added"})
        if request.method == "GET" and len(parts) == 3:
            tags = request.query.getall("tags", [])
            hits = [a for a in self.annotations.values() if not a.get("deleted") and all(t in a.get("tags", []) for t in tags)]
            return web.json_response(hits[: int(request.query.get("limit", "100"))])
        aid = int(parts[3])
        if aid not in self.annotations or self.annotations[aid].get("deleted"):
            return web.json_response({"message": "not found"}, status=404)
        if request.method == "PATCH":
            self.annotations[aid].update(json.loads(body))
            return web.json_response({"message": "Annotation patched"})
        if request.method == "DELETE":
            self.annotations[aid]["deleted"] = True
            return web.json_response({"message": "Annotation deleted"})
        return web.json_response({"message": "method"}, status=405)


def _get(url: str, data: bytes | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_the_stand_in_answers_from_its_plan_and_records_requests():
    s = FakeServer(plan={"/x": [500, ("429", 7)]}).start()
    try:
        assert _get(s.url + "/x", b"{}", "POST")[0] == 500
        code, _, headers = _get(s.url + "/x", b"{}", "POST")
        assert code == 429 and headers["Retry-After"] == "7"
        assert _get(s.url + "/x", b"{}", "POST")[0] == 200
        assert [r.path for r in s.requests()] == ["/x"] * 3
        code, body, _ = _get(s.url + "/api/annotations", json.dumps({"time": 1, "tags": ["a", "b"]}).encode(), "POST")
        assert code == 200 and json.loads(body)["id"] == 1
        assert json.loads(_get(s.url + "/api/annotations?tags=a&tags=b")[1])[0]["id"] == 1
        assert json.loads(_get(s.url + "/api/annotations?tags=c")[1]) == []
    finally:
        s.stop()
