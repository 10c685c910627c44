"""What sinks are sent: Slack Block Kit structure, Grafana annotation fields, link
templates, filters and the webhook signature, as pure functions of the event."""

from __future__ import annotations

import hashlib
import hmac
import json

from stream.notify.config import Filter
from stream.notify.filters import matches
from stream.notify.messages import fmt_seconds, grafana_annotation, grafana_retraction, render_link, slack_message
from stream.notify.sinks import idempotency_key, signature
from stream.records import MetricMove, ShiftEvent, event_id

AT = 1_763_800_300.0


def shift(key="checkout", direction="regression", labels=None, rc=0.512) -> dict:
    ev = ShiftEvent("shift", event_id(key, AT), key, AT, AT + 300, direction, 1.2e-9,
                    (MetricMove("p50", 0.0121, 0.0121 * (1 + rc), rc, 1.2e-9), MetricMove("p99", 0.080, 0.150, 0.875, 3e-7)),
                    30, 10, 30000, 10000, 30.0, "edivisive").to_json()
    if labels is not None:
        ev["labels"] = labels
    return ev


INCIDENT = {"type": "incident", "version": 1, "id": "0123456789abcdef0123", "direction": "regression", "first_at": AT, "last_at": AT + 60,
            "keys": ["a", "b", "c"], "shift_ids": ["x", "y", "z"], "labels": {"env": "prod"}, "detected_at": AT + 400, "update": False}


def test_slack_block_kit_message_of_a_shift():
    msg = slack_message(shift(labels={"service": "checkout", "env": "prod"}), "http://grafana:3000/explore?k={key}&from={from_ms}&to={to_ms}")
    assert msg["text"].startswith("Regression in checkout: p50 12.1 ms → 18.3 ms (+51.2%)")
    blocks = msg["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "actions", "context"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "Regression: checkout"}
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in blocks[1]["fields"]}
    assert all(f["type"] == "mrkdwn" for f in blocks[1]["fields"]) and len(blocks[1]["fields"]) <= 10
    assert fields == {"*Key*": "`checkout`", "*Direction*": "regression", "*Labels*": "env=prod, service=checkout",
                      "*p-value*": "1.2e-09", "*Samples*": "30000 before / 10000 after", "*At*": "2025-11-22T08:31:40.000Z"}
    assert blocks[2]["text"]["text"].splitlines() == ["• p50 12.1 ms → 18.3 ms (+51.2%)", "• p99 80 ms → 150 ms (+87.5%)"]
    button = blocks[3]["elements"][0]
    assert button["type"] == "button" and button["url"] == f"http://grafana:3000/explore?k=checkout&from={int((AT - 3600) * 1000)}&to={int((AT + 3600) * 1000)}"
    assert event_id("checkout", AT) in blocks[4]["elements"][0]["text"]


def test_slack_messages_of_a_retraction_and_an_incident():
    r = slack_message(dict(shift(), type="retraction"))
    assert r["blocks"][0]["text"]["text"] == "Retracted: checkout (regression)" and r["text"].startswith("Retracted: regression in checkout")
    assert "actions" not in [b["type"] for b in r["blocks"]]
    i = slack_message(INCIDENT, "http://g/d?k={key}")
    assert i["blocks"][0]["text"]["text"] == "Incident: 3 keys, regression"
    fields = [f["text"] for f in i["blocks"][1]["fields"]]
    assert "*Keys*\n`a`, `b`, `c`" in fields and "*Shared labels*\nenv=prod" in fields
    assert i["blocks"][2]["elements"][0]["url"] == "http://g/d?k=a"


def test_link_values_are_url_quoted_and_labels_fill_placeholders():
    ev = shift(key="GET /pay?x=1", labels={"svc": "a b"})
    assert render_link("http://g/?k={key}&s={label_svc}&m={label_missing}", ev) == "http://g/?k=GET%20%2Fpay%3Fx%3D1&s=a%20b&m="


def test_grafana_annotation_fields():
    a = grafana_annotation(shift(labels={"env": "prod"}), "dash-uid")
    assert a["time"] == int(AT * 1000) and "timeEnd" not in a and a["dashboardUID"] == "dash-uid"
    assert a["tags"] == ["shiftwatch", "shift", "regression", f"shiftwatch-id:{event_id('checkout', AT)}", "key:checkout", "env:prod"]
    assert a["text"].startswith("Regression in checkout: p50")
    i = grafana_annotation(INCIDENT)
    assert (i["time"], i["timeEnd"]) == (int(AT * 1000), int((AT + 60) * 1000)) and "incident" in i["tags"] and "env:prod" in i["tags"]
    r = grafana_retraction(dict(shift(), type="retraction"))
    assert "retracted" in r["tags"] and f"shiftwatch-id:{event_id('checkout', AT)}" in r["tags"] and r["text"].startswith("Retracted:")


def test_filters_by_label_glob_key_glob_direction_and_relative_change():
    f = Filter(labels=(("service", "check*"),), directions=("regression",), min_relative_change=0.3)
    assert matches(f, shift(labels={"service": "checkout"}))
    assert not matches(f, shift(labels={"service": "search"}))
    assert not matches(f, shift())  # no labels at all
    assert not matches(f, shift(labels={"service": "checkout"}, direction="improvement"))
    assert matches(Filter(min_relative_change=0.8), shift(rc=0.1)), "p99 moved 87.5%"
    assert not matches(Filter(min_relative_change=0.9), shift(rc=0.1))
    assert matches(Filter(keys=("check*",)), shift()) and not matches(Filter(keys=("pay*",)), shift())
    assert matches(Filter(keys=("b",), min_relative_change=5.0), INCIDENT), "incidents: any member key; no change threshold"


def test_webhook_signature_is_hmac_sha256_of_the_body():
    body = json.dumps(shift()).encode()
    sig = signature("s3cret", body)
    assert sig == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sig != signature("s3cret", body + b" ")


def test_idempotency_keys_and_units():
    ev = shift()
    assert idempotency_key(ev) == f"shift:{ev['id']}" and idempotency_key(dict(ev, type="retraction")) == f"retraction:{ev['id']}"
    assert idempotency_key(INCIDENT) != idempotency_key(dict(INCIDENT, shift_ids=["x", "y", "z", "w"]))
    assert (fmt_seconds(0.0000423), fmt_seconds(0.25), fmt_seconds(2.5)) == ("42.3 µs", "250 ms", "2.5 s")
