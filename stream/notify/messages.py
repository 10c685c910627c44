"""What each sink is sent, as pure functions of the event: Slack Block Kit messages,
Grafana annotations, link templates. No I/O, so payloads are tested on their own."""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

from ..records import iso

__all__ = ["slack_message", "grafana_annotation", "grafana_retraction", "render_link", "fmt_seconds", "summary"]


def fmt_seconds(x: float) -> str:
    """Latency in the unit a person reads: µs, ms or s, 3 significant digits."""
    if x < 1e-3:
        return f"{x * 1e6:.3g} µs"
    if x < 1.0:
        return f"{x * 1e3:.3g} ms"
    return f"{x:.3g} s"


def _move(m: Mapping[str, Any]) -> str:
    return f"{m['metric']} {fmt_seconds(float(m['before']))} → {fmt_seconds(float(m['after']))} ({float(m['relative_change']) * 100:+.1f}%)"


def _labels(ev: Mapping[str, Any]) -> dict[str, str]:
    lab = ev.get("labels")
    return {str(k): str(v) for k, v in lab.items()} if isinstance(lab, Mapping) else {}


def summary(ev: Mapping[str, Any]) -> str:
    """One line: what happened, to what, by how much."""
    kind = ev.get("type")
    if kind == "incident":
        keys = list(ev.get("keys") or [])
        more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
        return f"Incident: {len(keys)} keys {ev.get('direction')} together: {', '.join(keys[:5])}{more}"
    moves = "; ".join(_move(m) for m in ev.get("metrics") or [])
    what = f"Retracted: {ev.get('direction')}" if kind == "retraction" else str(ev.get("direction", "")).capitalize()
    return f"{what} in {ev.get('key')}: {moves}".rstrip(": ")


def render_link(template: str, ev: Mapping[str, Any]) -> str:
    """Fill a link template; values are URL-quoted. ``from_ms``/``to_ms`` frame the shift
    (one hour before ``at`` to one hour after)."""
    at = float(ev.get("at", ev.get("first_at", 0.0)))
    end = float(ev.get("last_at", at))
    keys = ev.get("keys") or []
    values: dict[str, Any] = {
        "key": ev.get("key", keys[0] if keys else ""),
        "id": ev.get("id", ""),
        "direction": ev.get("direction", ""),
        "type": ev.get("type", ""),
        "at": at,
        "at_ms": int(at * 1000),
        "from_ms": int((at - 3600) * 1000),
        "to_ms": int((end + 3600) * 1000),
    }
    values.update({f"label_{k}": v for k, v in _labels(ev).items()})
    quoted = {k: quote(str(v), safe="") for k, v in values.items()}
    return template.format_map(_Blank(quoted))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _field(title: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{title}*\n{value}"}


def _shift_fields(ev: Mapping[str, Any]) -> list[dict[str, str]]:
    fields = [_field("Key", f"`{ev.get('key')}`"), _field("Direction", str(ev.get("direction")))]
    lab = _labels(ev)
    if lab:
        fields.append(_field("Labels", ", ".join(f"{k}={v}" for k, v in sorted(lab.items()))))
    fields.append(_field("p-value", f"{float(ev.get('pvalue', float('nan'))):.3g}"))
    fields.append(_field("Samples", f"{ev.get('samples_before')} before / {ev.get('samples_after')} after"))
    fields.append(_field("At", str(ev.get("at_iso") or iso(float(ev["at"])))))
    return fields


def _incident_fields(ev: Mapping[str, Any]) -> list[dict[str, str]]:
    fields = [
        _field("Keys", ", ".join(f"`{k}`" for k in (ev.get("keys") or [])[:20])),
        _field("Direction", str(ev.get("direction"))),
        _field("From", iso(float(ev["first_at"]))),
        _field("To", iso(float(ev["last_at"]))),
    ]
    lab = _labels(ev)
    if lab:
        fields.append(_field("Shared labels", ", ".join(f"{k}={v}" for k, v in sorted(lab.items()))))
    return fields


def slack_message(ev: Mapping[str, Any], link: str | None = None) -> dict[str, Any]:
    """Block Kit message: header, facts, one line per moved percentile, link, ids."""
    kind = ev.get("type")
    title = {"shift": f"{str(ev.get('direction')).capitalize()}: {ev.get('key')}",
             "retraction": f"Retracted: {ev.get('key')} ({ev.get('direction')})",
             "incident": f"Incident: {len(ev.get('keys') or [])} keys, {ev.get('direction')}"}[str(kind)]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    fields = _incident_fields(ev) if kind == "incident" else _shift_fields(ev)
    blocks.append({"type": "section", "fields": fields[:10]})
    moves = [f"• {_move(m)}" for m in ev.get("metrics") or []]
    if moves:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(moves)}})
    if link:
        url = render_link(link, ev)
        blocks.append({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": url}]})
    ctx = f"{kind} `{ev.get('id')}`" + (f" · detector {ev['detector']}" if ev.get("detector") else "")
    if kind == "incident" and ev.get("update"):
        ctx += " · update"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": ctx}]})
    return {"text": summary(ev), "blocks": blocks}


def _tags(ev: Mapping[str, Any]) -> list[str]:
    tags = ["shiftwatch", str(ev.get("type")), str(ev.get("direction")), f"shiftwatch-id:{ev.get('id')}"]
    if "key" in ev:
        tags.append(f"key:{ev['key']}")
    tags += [f"{k}:{v}" for k, v in sorted(_labels(ev).items())]
    return tags


def grafana_annotation(ev: Mapping[str, Any], dashboard_uid: str | None = None) -> dict[str, Any]:
    """Body of POST /api/annotations: at the shift's ``at`` (a region for an incident)."""
    if ev.get("type") == "incident":
        body: dict[str, Any] = {"time": int(float(ev["first_at"]) * 1000), "timeEnd": int(float(ev["last_at"]) * 1000)}
    else:
        body = {"time": int(float(ev["at"]) * 1000)}
    body["tags"] = _tags(ev)
    body["text"] = summary(ev)
    if dashboard_uid:
        body["dashboardUID"] = dashboard_uid
    return body


def grafana_retraction(ev: Mapping[str, Any]) -> dict[str, Any]:
    """Body of PATCH /api/annotations/{id}: the marker stays, tagged and labelled retracted."""
    tags = _tags(dict(ev, type="shift")) + ["retracted"]
    return {"tags": tags, "text": summary(ev)}
