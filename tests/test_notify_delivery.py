"""Delivery against a real local HTTP server: retries with seeded backoff on 5xx,
timeouts and resets, Retry-After on 429, dead letters after N failures, de-duplication,
Grafana retractions and incident updates, signatures, and no secret in any error."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from urllib.parse import quote

import aiohttp
import pytest

from stream.notify.config import parse_config
from stream.notify.delivery import Request, RetryPolicy, retry_after_seconds, send
from stream.notify.notifier import Notifier, NotifyMetrics
from stream.notify.secrets import Redactor
from stream.notify.sinks import make_sink, signature
from stream.notify.store import DeliveredStore
from stream.records import MetricMove, ShiftEvent, event_id
from test_notify_server import FakeServer

AT = 1_763_800_300.0
SECRET_PATH = "/hook/T0SECRET/B0SECRET/zzzzTOPSECRETzzzz"


@pytest.fixture
def server():
    s = FakeServer().start()
    yield s
    s.stop()


def shift(key="checkout", labels=None, kind="shift") -> dict:
    ev = ShiftEvent(kind, event_id(key, AT), key, AT, AT + 300, "regression", 1e-9, (MetricMove("p99", 0.1, 0.2, 1.0, 1e-9),),
                    30, 10, 3000, 1000, 30.0, "edivisive").to_json()
    if labels is not None:
        ev["labels"] = labels
    return ev


class Recorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def sleep(self, d: float) -> None:
        self.delays.append(d)


def run_send(server, plan, policy=None, timeout=2.0, path="/x"):
    server.plan[path] = list(plan)
    rec = Recorder()

    async def go():
        async with aiohttp.ClientSession() as s:
            return await send(s, Request("POST", server.url + path, (), b"{}"), policy or RetryPolicy(5, 0.5, 60, random.Random(1)), timeout, sleep=rec.sleep)

    return asyncio.run(go()), rec.delays


def test_5xx_is_retried_with_exponential_backoff_and_seeded_jitter(server):
    res, delays = run_send(server, [500, 503, 502])
    assert res.ok and res.attempts == 4 and len(server.requests("/x")) == 4
    rng = random.Random(1)
    assert delays == [0.5 * 2 ** k * (0.5 + 0.5 * rng.random()) for k in range(3)]
    assert all(0.25 * 2 ** k <= d <= 0.5 * 2 ** k for k, d in enumerate(delays))
    _, again = run_send(server, [500, 503, 502])
    assert again == delays, "same seed, same delays"


def test_backoff_is_capped():
    p = RetryPolicy(20, 1.0, 8.0, random.Random(3))
    assert max(p.backoff(k) for k in range(1, 20)) <= 8.0 and p.backoff(15) >= 4.0


def test_429_waits_for_retry_after(server):
    res, delays = run_send(server, [("429", 7), ("429", 0)])
    assert res.ok and res.attempts == 3 and delays == [7.0, 0.0]
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds("99999999") == 3600.0


def test_timeouts_and_connection_resets_are_retried(server):
    res, delays = run_send(server, [("slow", 3.0), "reset"], timeout=0.5)
    assert res.ok and res.attempts == 3 and len(delays) == 2


def test_after_max_attempts_the_result_is_final_and_4xx_is_not_retried(server):
    res, delays = run_send(server, [500] * 9, RetryPolicy(3, 0.1, 1.0, random.Random(0)))
    assert not res.ok and res.reason == "retries_exhausted" and res.attempts == 3 and len(delays) == 2 and "HTTP 500" in res.error
    res, delays = run_send(server, [404])
    assert not res.ok and res.reason == "rejected" and res.attempts == 1 and delays == [] and res.status == 404


def test_errors_do_not_carry_the_secret_url(server):
    from stream.notify.secrets import Secret

    secret_url = server.url + SECRET_PATH
    red = Redactor([Secret("env HOOK_URL", secret_url)])
    server.plan[SECRET_PATH] = [("echo", 400)]

    async def go():
        async with aiohttp.ClientSession() as s:
            return await send(s, Request("POST", secret_url, (), b"{}"), RetryPolicy(2, 0.01, 0.01, random.Random(0)), 1.0, red, Recorder().sleep)

    res = asyncio.run(go())
    assert not res.ok and res.status == 400 and "no such hook" in res.error
    assert "TOPSECRET" not in res.error and "<secret env HOOK_URL>" in res.error
    assert red("x " + quote(secret_url, safe="")) == "x <secret env HOOK_URL>", "URL-quoted forms are masked too"


# ---- the Notifier: one event to several sinks ----

def config(server, extra_grafana="", slack_filter=""):
    doc = f"""
[notify]
max_attempts = 3
backoff_initial_s = 0.01
jitter_seed = 5
[[sinks]]
name = "slack"
type = "slack"
url_env = "SLACK_URL"
link = "http://grafana/explore?k={{key}}"
{slack_filter}
[[sinks]]
name = "hook"
type = "webhook"
url_env = "HOOK_URL"
secret_env = "HMAC"
[[sinks]]
name = "grafana"
type = "grafana"
url = "{server.url}"
token_env = "GTOKEN"
{extra_grafana}
"""
    import tomllib

    env = {"SLACK_URL": server.url + "/slack", "HOOK_URL": server.url + SECRET_PATH, "HMAC": "hmac-key", "GTOKEN": "glsa_tok"}
    return parse_config(tomllib.loads(doc), "test.toml", env)


class Harness:
    """A Notifier whose store and dead letters are kept in lists (the Kafka side is
    covered by test_notify_kafka.py)."""

    def __init__(self, cfg) -> None:
        self.cfg, self.writes, self.dead = cfg, [], []
        self.store = DeliveredStore("unused", self._write)
        self.metrics = NotifyMetrics([c.name for c in cfg.sinks])

    def count(self, sink: str, outcome: str) -> float:
        return self.metrics.registry.get_sample_value("shiftwatch_notifications_total", {"sink": sink, "outcome": outcome}) or 0.0

    async def _write(self, k: bytes, v: bytes) -> None:
        self.writes.append((k, v))

    async def _dead(self, v: bytes) -> None:
        self.dead.append(json.loads(v))

    def notifier(self, session: aiohttp.ClientSession) -> Notifier:
        rng = random.Random(0)
        return Notifier(self.cfg, [make_sink(c) for c in self.cfg.sinks], self.store, session, self._dead,
                        self.metrics, Redactor(self.cfg.secrets()),
                        lambda: RetryPolicy(self.cfg.max_attempts, 0.01, 0.02, rng), Recorder().sleep)

    def handle(self, *events, raw: list[bytes] | None = None) -> None:
        async def go():
            async with aiohttp.ClientSession() as s:
                n = self.notifier(s)
                for i, ev in enumerate(events):
                    body = raw[i] if raw else json.dumps(ev).encode()
                    await n.handle(body, {"topic": "t", "partition": 0, "offset": i})

        asyncio.run(go())


def test_each_sink_gets_the_shift_once_and_a_re_read_is_not_posted_again(server):
    h = Harness(config(server))
    ev = shift()
    raw = json.dumps(ev, separators=(",", ":")).encode()
    h.handle(ev, ev, raw=[raw, raw])
    assert len(server.requests("/slack")) == 1 and len(server.requests(SECRET_PATH)) == 1
    assert len(server.requests("/api/annotations", "POST")) == 1
    hook = server.requests(SECRET_PATH)[0]
    assert hook.body == raw, "the webhook gets the event JSON as is"
    assert hook.headers["X-Shiftwatch-Signature"] == signature("hmac-key", raw)
    assert hook.headers["Idempotency-Key"] == f"shift:{ev['id']}" and hook.headers["X-Shiftwatch-Event"] == "shift"
    g = server.requests("/api/annotations", "POST")[0]
    assert g.headers["Authorization"] == "Bearer glsa_tok" and g.json()["time"] == int(AT * 1000)
    assert server.requests("/slack")[0].json()["blocks"][0]["type"] == "header"
    outcomes = {(k.split(b"\x00")[0].decode(), json.loads(v)["outcome"]) for k, v in h.writes if b"\x00ref:" not in k}
    assert outcomes == {("slack", "delivered"), ("hook", "delivered"), ("grafana", "pending"), ("grafana", "delivered")}, \
        "an intent only where a crash can be resolved (Grafana is asked)"
    assert h.store.ref("grafana", ev["id"]) == {"annotation_id": 1}


def test_grafana_retraction_patches_the_annotation_it_created(server):
    h = Harness(config(server))
    ev = shift()
    h.handle(ev, dict(ev, type="retraction"))
    (aid,) = server.annotations
    patch = server.requests(f"/api/annotations/{aid}", "PATCH")
    assert len(patch) == 1 and "retracted" in server.annotations[aid]["tags"]
    assert server.annotations[aid]["text"].startswith("Retracted:")
    assert len(server.requests("/slack")) == 2, "Slack hears of the retraction too"


def test_grafana_retraction_can_delete_instead(server):
    h = Harness(config(server, 'on_retraction = "delete"'))
    ev = shift()
    h.handle(ev, dict(ev, type="retraction"))
    (aid,) = server.annotations
    assert server.annotations[aid].get("deleted") and len(server.requests(f"/api/annotations/{aid}", "DELETE")) == 1
    # A crash after the DELETE but before its outcome was recorded: the repeat gets 404, which is success.
    h.store.apply(f"grafana\x00retraction:{ev['id']}".encode(), None)
    h.handle(dict(ev, type="retraction"))
    assert len(server.requests(f"/api/annotations/{aid}", "DELETE")) == 2 and h.dead == []
    assert h.store.get("grafana", f"retraction:{ev['id']}")["outcome"] == "delivered"


def test_a_retraction_goes_only_where_its_shift_went(server):
    h = Harness(config(server, slack_filter='[sinks.filter]\nlabels = { env = "prod" }'))
    ev = shift(labels={"env": "dev"})
    h.handle(ev, dict(ev, type="retraction"))
    assert server.requests("/slack") == [] and len(server.requests(SECRET_PATH)) == 2


def test_an_incident_update_moves_the_same_grafana_region(server):
    h = Harness(config(server))
    inc = {"type": "incident", "version": 1, "id": "i" * 20, "direction": "regression", "first_at": AT, "last_at": AT + 60,
           "keys": ["a", "b", "c"], "shift_ids": ["1", "2", "3"], "labels": {}, "detected_at": AT, "update": False}
    grown = dict(inc, last_at=AT + 90, keys=["a", "b", "c", "d"], shift_ids=["1", "2", "3", "4"], update=True)
    h.handle(inc, grown, grown)
    (aid,) = server.annotations
    assert len(server.requests("/api/annotations", "POST")) == 1 and len(server.requests(f"/api/annotations/{aid}", "PATCH")) == 1
    assert server.annotations[aid]["timeEnd"] == int((AT + 90) * 1000)
    assert len(server.requests("/slack")) == 2, "the first record and one update"


def test_dead_letter_after_max_attempts_without_the_secret(server):
    server.plan[SECRET_PATH] = [500] * 10
    h = Harness(config(server))
    ev = shift()
    h.handle(ev, ev)
    assert len(server.requests(SECRET_PATH)) == 3, "3 attempts, and the re-read is not retried again"
    (dl,) = h.dead
    assert dl["type"] == "dead_letter" and dl["reason"] == "notify_retries_exhausted" and dl["sink"] == "hook"
    assert dl["attempts"] == 3 and dl["status"] == 500 and dl["event"]["id"] == ev["id"] and dl["source"]["offset"] == 0
    assert json.loads(base64.b64decode(dl["raw_base64"])) == ev
    assert "TOPSECRET" not in json.dumps(dl) and "hmac-key" not in json.dumps(dl)
    assert len(server.requests("/slack")) == 1, "other sinks are unaffected"


def test_unreadable_records_are_dead_lettered_and_other_types_ignored(server):
    h = Harness(config(server))
    h.handle({}, {}, {}, raw=[b"{nope", b"[1]", json.dumps({"type": "snapshot", "key": "a"}).encode()])
    assert [d["reason"] for d in h.dead] == ["invalid_json", "not_an_object"] and server.requests() == []


def test_after_a_crash_grafana_is_asked_before_posting_again(server):
    cfg = config(server)
    ev = shift()
    first = Harness(cfg)
    first.handle(ev)
    # A notifier that crashed after POSTing but before recording the outcome: only "pending" survived.
    h = Harness(cfg)
    for sink in ("slack", "hook", "grafana"):
        h.store.apply(f"{sink}\x00shift:{ev['id']}".encode(), b'{"outcome":"pending"}')
    h.handle(ev)
    assert len(server.requests("/api/annotations", "POST")) == 1 and len(server.requests("/api/annotations", "GET")) == 1
    assert h.store.ref("grafana", ev["id"]) == {"annotation_id": 1}
    assert len(server.requests("/slack")) == 2, "Slack cannot be asked: at-least-once resends (on_uncertain = resend)"


def test_outcomes_are_counted_per_sink_and_latency_observed(server):
    server.plan[SECRET_PATH] = [500, 500, 500]
    h = Harness(config(server, slack_filter='[sinks.filter]\ndirection = ["improvement"]'))
    ev = shift()
    h.handle(ev, ev)
    assert (h.count("slack", "filtered"), h.count("slack", "delivered")) == (2, 0)
    assert (h.count("hook", "retried"), h.count("hook", "dead_letter"), h.count("hook", "duplicate")) == (2, 1, 1)
    assert (h.count("grafana", "delivered"), h.count("grafana", "duplicate")) == (1, 1)
    n = h.metrics.registry.get_sample_value("shiftwatch_notification_delivery_seconds_count", {"sink": "grafana"})
    assert n == 1


def test_the_log_filter_masks_secrets_in_messages_args_and_tracebacks():
    import logging

    from stream.notify.secrets import Secret

    red = Redactor([Secret("env SLACK_URL", "https://hooks.example/T/B/zzSECRETzz")])
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "posting to %s failed", ("https://hooks.example/T/B/zzSECRETzz",), None)
    try:
        raise RuntimeError("url https://hooks.example/T/B/zzSECRETzz refused")
    except RuntimeError:
        import sys

        rec.exc_info = sys.exc_info()
    assert red.filter(rec)
    assert "SECRET" not in rec.getMessage() and "<secret env SLACK_URL>" in rec.getMessage()
    assert "SECRET" not in rec.exc_text and "refused" in rec.exc_text


def test_a_slow_sink_holds_back_only_itself_and_the_commit(server):
    from stream.notify.dispatch import Dispatcher

    server.plan["/slack"] = [("slow", 1.5)]
    h = Harness(config(server))
    evs = [shift(f"k{i}") for i in range(5)]

    async def go():
        async with aiohttp.ClientSession() as s:
            d = Dispatcher(h.notifier(s))
            d.start()
            await d.submit("t", 0, 0, b"{broken")  # dead-lettered at once, nothing to wait for
            for i, ev in enumerate(evs, start=1):
                await d.submit("t", 0, i, json.dumps(ev).encode())
            while len(server.requests(SECRET_PATH)) < 5 or len(server.annotations) < 5:
                await asyncio.sleep(0.01)
            assert len(server.requests("/slack")) == 1, "Slack is still on its first, slow request"
            assert d.committable() == {("t", 0): 1}, "nothing past the first record Slack has not finished"
            await d.drain(10)
            assert d.idle and d.committable() == {("t", 0): 6}
            await d.close()

    asyncio.run(go())
    keys = [r.headers["Idempotency-Key"] for r in server.requests("/slack")]
    assert keys == [f"shift:{e['id']}" for e in evs], "each sink keeps the topic's order"
    assert [d["reason"] for d in h.dead] == ["invalid_json"]


def test_revoked_partitions_are_dropped_from_the_queues(server):
    from stream.notify.dispatch import Dispatcher

    server.plan["/slack"] = [("slow", 0.5)]
    h = Harness(config(server))

    async def go():
        async with aiohttp.ClientSession() as s:
            d = Dispatcher(h.notifier(s))
            d.start()
            for i in range(4):
                await d.submit("t", 0, i, json.dumps(shift(f"k{i}")).encode())
            await asyncio.sleep(0.2)
            d.forget({("t", 0)})
            await asyncio.sleep(1.0)
            assert d.committable() == {} and d.idle
            await d.close()

    asyncio.run(go())
    assert len(server.requests("/slack")) == 1, "only the request in flight at the revoke went out"


def test_a_malformed_event_is_dead_lettered_per_sink_without_stopping(server):
    h = Harness(config(server))
    bad = {"type": "shift", "version": 1, "id": "b" * 20, "key": "k", "direction": "regression", "metrics": "oops"}
    good = shift()
    h.handle(bad, good)
    assert sorted((d["sink"], d["reason"]) for d in h.dead) == [("grafana", "notify_bad_event"), ("slack", "notify_bad_event")]
    assert len(server.requests(SECRET_PATH)) == 2, "the webhook passes the bytes on as they are"
    assert len(server.requests("/slack")) == 1 and len(server.annotations) == 1, "the next event is delivered"
