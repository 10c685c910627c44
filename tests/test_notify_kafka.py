"""`python -m stream.notify` against the real broker and a local stand-in HTTP server:
every shift, retraction and incident reaches each sink, across a kill -9 of the
notifier; bad records are dead-lettered; no secret reaches the logs."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from stream.notify.sinks import signature
from stream.records import MetricMove, ShiftEvent, event_id
from test_notify_server import FakeServer
from worker_proc import consume_until, free_port, produce, run

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_763_800_000.0
SECRETS = {"SLACK_URL": "/slack/T0AAA/B0BBB/slackTOPSECRETslack", "HOOK_URL": "/hook/hookTOPSECREThook", "BROKEN_URL": "/gone/goneTOPSECRETgone", "HOOK2_URL": "/hook2/TOPSECRET2",
           "HMAC": "hmacTOPSECREThmac", "GTOKEN": "glsa_grafanaTOPSECRET"}


def events(n_shifts: int, n_retracted: int) -> list[dict]:
    out = []
    for i in range(n_shifts):
        key = f"svc-{i:02d}"
        at = T0 + 30 * i
        out.append(ShiftEvent("shift", event_id(key, at), key, at, at + 300, "regression", 1e-9,
                              (MetricMove("p99", 0.1, 0.15 + i / 100, 0.5 + i / 10, 1e-9),), 30, 10, 3000, 1000, 30.0, "edivisive").to_json())
        out[-1]["labels"] = {"env": "prod", "service": key}
    for ev in out[:n_retracted]:
        out.append(dict(ev, type="retraction"))
    ids = [e["id"] for e in out[:3]]
    out.append({"type": "incident", "version": 1, "id": "inc" + ids[0][:17], "direction": "regression", "first_at": T0, "last_at": T0 + 60,
                "keys": ["svc-00", "svc-01", "svc-02"], "shift_ids": sorted(ids), "labels": {"env": "prod"}, "detected_at": T0 + 400, "update": False})
    return out


class Notifier:
    def __init__(self, bootstrap: str, topic: str, config: Path, env: dict, log: Path, cli: bool = False) -> None:
        self.port = free_port()
        entry = ["stream.cli", "notify"] if cli else ["stream.notify"]  # `shiftwatch notify` or `python -m stream.notify`
        self.args = [sys.executable, "-m", *entry, "--broker", f"kafka://{bootstrap}", "--shift-topic", topic,
                     "--config", str(config), "--notify-web-port", str(self.port), "--log-level", "debug"]
        self.env, self.log_path = {**os.environ, **env}, log

    def start(self) -> "Notifier":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("notifier not ready:\n" + self.log_path.read_text()[-3000:])

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()

    def stop(self, sig: int) -> int:
        os.killpg(self.proc.pid, sig)
        rc = self.proc.wait(30)
        self.log.close()
        return rc


def write_config(tmp_path: Path, server: FakeServer, group: str) -> tuple[Path, dict]:
    cfg = tmp_path / "notify.toml"
    cfg.write_text(f"""
[notify]
group = "{group}"
start = "earliest"
max_attempts = 4
backoff_initial_s = 0.05
backoff_max_s = 0.2
timeout_s = 2
jitter_seed = 1
session_timeout_s = 6

[[sinks]]
name = "slack"
type = "slack"
url_env = "SLACK_URL"
link = "http://grafana:3000/explore?key={{key}}"

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

[[sinks]]
name = "hook-at-most-once"
type = "webhook"
url_env = "HOOK2_URL"
on_uncertain = "skip"

[[sinks]]
name = "broken"
type = "webhook"
url_env = "BROKEN_URL"
events = ["incident"]
""")
    return cfg, {k: (server.url + v if k.endswith("_URL") else v) for k, v in SECRETS.items()}


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def idem_counts(server: FakeServer, path: str) -> Counter:
    return Counter(r.headers["Idempotency-Key"] for r in server.requests(path))


def test_every_event_reaches_every_sink_across_a_kill_9(kafka_broker, tmp_path):
    prefix = "n" + uuid.uuid4().hex[:8]
    topic, group = f"{prefix}-shifts", f"{prefix}-notify"
    server = FakeServer(delay=0.03).start()
    server.plan[SECRETS["HOOK_URL"]] = [500, ("429", 0.2), "reset"]  # the first webhook delivery needs 4 attempts
    server.plan[SECRETS["BROKEN_URL"]] = [410] * 10  # the broken sink's endpoint refuses for good
    try:
        evs = events(40, 5)
        msgs = [(e.get("key", "").encode() or None, json.dumps(e, separators=(",", ":")).encode()) for e in evs]
        msgs.insert(10, (b"bad", b"{not json"))
        run(produce(kafka_broker.bootstrap, topic, msgs))
        cfg, env = write_config(tmp_path, server, group)
        log = tmp_path / "notify.log"

        n1 = Notifier(kafka_broker.bootstrap, topic, cfg, env, log).start()
        wait_for(lambda: len(server.requests(SECRETS["SLACK_URL"])) >= 15, 60, "15 Slack posts")
        assert n1.stop(signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.time()
        before = len(server.requests(SECRETS["SLACK_URL"]))
        assert before < len(evs), "the kill must land mid-stream"

        n2 = Notifier(kafka_broker.bootstrap, topic, cfg, env, log, cli=True).start()
        want = {f"{e['type']}:{e['id']}" if e["type"] != "incident" else f"incident:{e['id']}:3" for e in evs}
        wait_for(lambda: set(idem_counts(server, SECRETS["HOOK_URL"])) == want and set(idem_counts(server, SECRETS["SLACK_URL"])) == want
                 and len(want - set(idem_counts(server, SECRETS["HOOK2_URL"]))) <= 1
                 and idem_counts(server, SECRETS["HOOK2_URL"]).get(f"incident:{evs[-1]['id']}:3")
                 and len(server.annotations) == 41 and sum("retracted" in a["tags"] for a in server.annotations.values()) == 5, 90, "all deliveries")
        time.sleep(1.0)  # anything extra would arrive now

        # Grafana: asked after the crash, so exactly one annotation per shift and incident.
        posts = server.requests("/api/annotations", "POST")
        tags = Counter(next(t for t in r.json()["tags"] if t.startswith("shiftwatch-id:")) for r in posts)
        assert len(posts) == 41 and max(tags.values()) == 1
        retracted = {next(t for t in a["tags"] if t.startswith("shiftwatch-id:")) for a in server.annotations.values() if "retracted" in a["tags"]}
        assert retracted == {f"shiftwatch-id:{e['id']}" for e in evs[:5]}

        # Slack and webhook cannot be asked: at most the one delivery in flight at the kill is repeated,
        # with the same Idempotency-Key, and it was sent just before the kill.
        for path in (SECRETS["SLACK_URL"], SECRETS["HOOK_URL"]):
            counts = idem_counts(server, path)
            dups = [k for k, c in counts.items() if c > 1 and not (path == SECRETS["HOOK_URL"] and k == f"shift:{evs[0]['id']}")]
            assert len(dups) <= 1, dups
            for k in dups:
                first = min(r.t for r in server.requests(path) if r.headers["Idempotency-Key"] == k)
                assert killed_at - first < 2.0, "only an in-flight delivery may repeat"
        # on_uncertain = "skip": never twice; the one in flight at the kill may be missing.
        once = idem_counts(server, SECRETS["HOOK2_URL"])
        assert max(once.values()) == 1 and len(want - set(once)) <= 1 and set(once) <= want

        first = [r for r in server.requests(SECRETS["HOOK_URL"]) if r.headers["Idempotency-Key"] == f"shift:{evs[0]['id']}"]
        assert len(first) >= 4, "500, 429, reset, then 200"
        assert first[2].t - first[1].t >= 0.2, "Retry-After: 0.2 was honoured"
        assert first[1].t - first[0].t >= 0.025, "backoff after the 500 (0.05 s, half of it jitter)"
        for r in server.requests(SECRETS["HOOK_URL"]):
            assert r.headers["X-Shiftwatch-Signature"] == signature(env["HMAC"], r.body), "every webhook body is signed"
            assert json.loads(r.body)["id"] in {e["id"] for e in evs}

        # Order per sink follows the topic (one record at a time): retractions after their shifts.
        slack_keys = [r.headers["Idempotency-Key"] for r in server.requests(SECRETS["SLACK_URL"])]
        for e in evs[:5]:
            assert slack_keys.index(f"shift:{e['id']}") < slack_keys.index(f"retraction:{e['id']}")

        m = n2.metrics()
        assert 'shiftwatch_notifications_total{outcome="delivered",sink="grafana"}' in m
        assert "shiftwatch_notification_delivery_seconds_bucket" in m
        assert n2.stop(signal.SIGTERM) == 0

        dead = [json.loads(r.value) for r in run(consume_until(kafka_broker.bootstrap, f"{group}-dead-letter", lambda rs: len(rs) >= 2, 30, settle=0.5))]
        assert sorted(d["reason"] for d in dead) == ["invalid_json", "notify_rejected"]
        bad = next(d for d in dead if d["reason"] == "invalid_json")
        refused = next(d for d in dead if d["reason"] == "notify_rejected")
        assert bad["source"]["topic"] == topic and base64.b64decode(bad["raw_base64"]) == b"{not json"
        assert refused["sink"] == "broken" and refused["status"] == 410 and refused["attempts"] == 1 and refused["event"]["type"] == "incident"
        assert len(server.requests(SECRETS["BROKEN_URL"])) == 1, "a refused delivery is dead-lettered, not retried or re-sent after the restart"

        text = log.read_text(errors="replace")
        assert "notify: group" in text
        for secret in SECRETS.values():
            assert secret.strip("/") not in text and "TOPSECRET" not in text
    finally:
        server.stop()
