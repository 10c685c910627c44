"""Sinks turn an event into the HTTP request their service expects.

``plan`` returns the request (or None: nothing to send), ``remember`` what to keep from
the answer (Grafana's annotation id, so a retraction or an incident update can edit the
marker), and ``lookup`` a request that finds an earlier delivery whose outcome was lost
in a crash (only Grafana can be asked; Slack and webhooks cannot).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Mapping

from .config import SinkConfig
from .delivery import Request
from .messages import grafana_annotation, grafana_retraction, slack_message

__all__ = ["Sink", "make_sink", "idempotency_key", "signature"]

JSON = ("Content-Type", "application/json")


def idempotency_key(ev: Mapping[str, Any]) -> str:
    """Shifts and retractions by their id; an incident by id and size (each update is new)."""
    if ev.get("type") == "incident":
        return f"incident:{ev['id']}:{len(ev.get('shift_ids') or [])}"
    return f"{ev['type']}:{ev['id']}"


def signature(secret: str, body: bytes) -> str:
    """The webhook signature header value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Sink:
    """Slack and generic webhook: one POST per event, nothing to remember."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name

    def plan(self, ev: Mapping[str, Any], raw: bytes, ref: Mapping[str, Any] | None) -> Request | None:
        idem = ("Idempotency-Key", idempotency_key(ev))
        if self.cfg.type == "slack":
            return Request("POST", self.cfg.url_value, (JSON, idem), _dumps(slack_message(ev, self.cfg.link)))
        headers = [JSON, idem, ("X-Shiftwatch-Event", str(ev.get("type")))]
        if self.cfg.secret is not None:
            headers.append((self.cfg.signature_header, signature(self.cfg.secret.value, raw)))
        return Request("POST", self.cfg.url_value, tuple(headers), raw)

    def remember(self, ev: Mapping[str, Any], body: bytes) -> dict[str, Any]:
        return {}

    def lookup(self, ev: Mapping[str, Any]) -> Request | None:
        return None

    def found(self, body: bytes) -> dict[str, Any] | None:
        return None


class GrafanaSink(Sink):
    """Annotations: POST a marker, PATCH it for incident updates and (``on_retraction =
    "update"``) retractions, or DELETE it on a retraction (``"delete"``)."""

    def _auth(self) -> tuple[tuple[str, str], ...]:
        c = self.cfg
        if c.token is not None:
            return (("Authorization", f"Bearer {c.token.value}"),)
        if c.user is not None and c.password is not None:
            basic = base64.b64encode(f"{c.user}:{c.password.value}".encode()).decode()
            return (("Authorization", f"Basic {basic}"),)
        return ()

    def _url(self, path: str) -> str:
        return self.cfg.url_value.rstrip("/") + path

    def plan(self, ev: Mapping[str, Any], raw: bytes, ref: Mapping[str, Any] | None) -> Request | None:
        h = (JSON, ("Accept", "application/json"), *self._auth())
        aid = ref.get("annotation_id") if ref else None
        if ev.get("type") == "retraction":
            if aid is None:
                return None
            if self.cfg.on_retraction == "delete":
                return Request("DELETE", self._url(f"/api/annotations/{aid}"), h, None)
            return Request("PATCH", self._url(f"/api/annotations/{aid}"), h, _dumps(grafana_retraction(ev)))
        body = grafana_annotation(ev, self.cfg.dashboard_uid)
        if aid is not None:  # an incident that grew: move the region's end, new text
            return Request("PATCH", self._url(f"/api/annotations/{aid}"), h, _dumps(body))
        return Request("POST", self._url("/api/annotations"), h, _dumps(body))

    def remember(self, ev: Mapping[str, Any], body: bytes) -> dict[str, Any]:
        try:
            aid = json.loads(body).get("id")
        except (ValueError, AttributeError):
            return {}
        return {"annotation_id": aid} if isinstance(aid, int) else {}

    def lookup(self, ev: Mapping[str, Any]) -> Request | None:
        if ev.get("type") == "retraction":
            return None
        return Request("GET", self._url(f"/api/annotations?tags=shiftwatch-id:{ev['id']}&limit=1"),
                       (("Accept", "application/json"), *self._auth()), None)

    def found(self, body: bytes) -> dict[str, Any] | None:
        try:
            items = json.loads(body)
        except ValueError:
            return None
        if isinstance(items, list) and items and isinstance(items[0], dict) and isinstance(items[0].get("id"), int):
            return {"annotation_id": items[0]["id"]}
        return None


def make_sink(cfg: SinkConfig) -> Sink:
    return GrafanaSink(cfg) if cfg.type == "grafana" else Sink(cfg)
