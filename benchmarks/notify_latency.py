"""Delivery latency of ``shiftwatch notify`` against a local HTTP server.

Starts a KRaft broker (``tests/kafka_broker.py``; or ``--bootstrap``), a local aiohttp
server in a thread standing in for Slack, a webhook and Grafana, and the notifier in
this process. Shift events are produced one at a time, ``--gap`` seconds apart (so this
measures latency, not queueing); the latency of one delivery is the time from handing
the event to the producer to the server receiving the request for it.

Printed: median and p99 per sink, and the anchor measured in the same run: a bare
aiohttp POST to the same server (the HTTP round trip no notifier can avoid), with the
ratio. The rest is Kafka: the consumer's fetch wait and two acks=all writes to the
delivered topic (``pending`` before the request, ``delivered`` after).

    .venv/bin/python benchmarks/notify_latency.py [--events 300] [--gap 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.notify.config import load_config  # noqa: E402
from stream.notify.runner import Clients, notify_async  # noqa: E402
from stream.records import MetricMove, ShiftEvent, event_id  # noqa: E402


class Server:
    """Records the arrival time of each request by its Idempotency-Key (Grafana: by tag)."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.ready = threading.Event()
        self.next_id = 0

    def start(self) -> "Server":
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(10)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        t = time.perf_counter()
        body = await request.read()
        sink = request.path.split("/")[1]
        if request.path == "/api/annotations":
            sink = "grafana"
            tag = next(x for x in json.loads(body)["tags"] if x.startswith("shiftwatch-id:"))
            self.arrivals[(sink, "shift:" + tag.split(":", 1)[1])] = t
            self.next_id += 1
            return web.json_response({"id": self.next_id})
        key = request.headers.get("Idempotency-Key")
        if key:
            self.arrivals[(sink, key)] = t
        return web.Response(text="ok")


def load_broker():
    sys.path.insert(0, str(ROOT / "tests"))
    from kafka_broker import KafkaBroker

    class BenchBroker(KafkaBroker):
        """Without the test broker's fsync per message (a durability knob of the fault tests)."""

        def _properties(self) -> Path:
            p = super()._properties()
            p.write_text("".join(x for x in p.read_text().splitlines(True) if not x.startswith("log.flush.interval.messages")))
            return p

    return BenchBroker(fast_jit=False, heap="1g")


def shift(i: int) -> dict:
    key, at = f"svc-{i:04d}", 1_763_800_000.0 + 30 * i
    return ShiftEvent("shift", event_id(key, at), key, at, at + 300, "regression", 1e-9, (MetricMove("p99", 0.1, 0.2, 1.0, 1e-9),),
                      30, 10, 3000, 1000, 30.0, "edivisive").to_json()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def anchor(url: str, n: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            t = time.perf_counter()
            async with s.post(url, data=b"{}", headers={"Idempotency-Key": f"anchor-{i}"}) as r:
                await r.read()
            out.append(time.perf_counter() - t)
    return out


async def measure(bootstrap: str, server: Server, events: int, gap: float, sinks: tuple[str, ...]) -> dict[str, list[float]]:
    prefix = "bench" + uuid.uuid4().hex[:6]
    topic = f"{prefix}-shifts"
    tmp = Path(tempfile.mkdtemp())
    cfg_path = tmp / "notify.toml"
    blocks = {"slack": 'name="slack"\ntype="slack"\nurl_env="B_SLACK"\nlink="http://g/explore?k={key}"',
              "hook": 'name="hook"\ntype="webhook"\nurl_env="B_HOOK"\nsecret_env="B_HMAC"',
              "grafana": f'name="grafana"\ntype="grafana"\nurl="http://127.0.0.1:{server.port}"\ntoken_env="B_TOKEN"'}
    cfg_path.write_text(f'[notify]\ngroup="{prefix}"\nstart="earliest"\nweb_port=0\n' + "".join(f"[[sinks]]\n{blocks[s]}\n" for s in sinks))
    env = {"B_SLACK": f"http://127.0.0.1:{server.port}/slack/x", "B_HOOK": f"http://127.0.0.1:{server.port}/hook/x", "B_HMAC": "k", "B_TOKEN": "t"}
    cfg = load_config(cfg_path, env)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    await producer.send_and_wait(topic, json.dumps(shift(-1)).encode())  # creates the topic; warms every path
    stop = asyncio.Event()
    task = asyncio.create_task(notify_async(Clients.plain(f"kafka://{bootstrap}"), topic, cfg, stop))
    while len(server.arrivals) < len(sinks):
        await asyncio.sleep(0.05)
    sent: dict[str, float] = {}
    for i in range(events):
        ev = shift(i)
        sent[f"shift:{ev['id']}"] = time.perf_counter()
        await producer.send_and_wait(topic, json.dumps(ev, separators=(",", ":")).encode(), key=ev["key"].encode())
        await asyncio.sleep(gap)
    deadline = time.time() + 60
    while time.time() < deadline and sum(1 for (s, k) in server.arrivals if k in sent) < events * len(sinks):
        await asyncio.sleep(0.05)
    stop.set()
    await task
    await producer.stop()
    return {s: [server.arrivals[(s, k)] - t for k, t in sent.items() if (s, k) in server.arrivals] for s in sinks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--gap", type=float, default=0.02, help="seconds between produced events")
    ap.add_argument("--bootstrap", help="a running broker HOST:PORT instead of starting one")
    args = ap.parse_args()
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = load_broker().start()
        bootstrap = broker.bootstrap
        print(f"broker on {bootstrap} (started in {broker.startup_seconds:.1f} s)")
    try:
        server = Server().start()
        a = asyncio.run(anchor(f"http://127.0.0.1:{server.port}/anchor/x", args.events))
        a_med = statistics.median(a)
        print(f"anchor: bare aiohttp POST to the local server: median {a_med * 1e3:.2f} ms, p99 {pct(a, 0.99) * 1e3:.2f} ms (n={len(a)})")
        for sinks in (("slack",), ("slack", "hook", "grafana")):
            lat = asyncio.run(measure(bootstrap, server, args.events, args.gap, sinks))
            for s, xs in lat.items():
                med = statistics.median(xs)
                print(f"sinks={'+'.join(sinks):22s} {s:8s} n={len(xs):4d}/{args.events}  median {med * 1e3:6.2f} ms  p99 {pct(xs, 0.99) * 1e3:6.2f} ms"
                      f"  ({med / a_med:5.1f}x the bare POST)")
    finally:
        if broker is not None:
            broker.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
