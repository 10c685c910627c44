"""A fast reader for the Collector's ``otlp_json`` traces (protobuf's ``json_format``
manages ~6,000 spans/s: it is pure Python, field by field).

``msgspec`` decodes the OTLP/JSON trace schema in C: the fields shiftwatch reads are
typed (times as int or decimal string, kind and status code as integers, as the
Collector writes them); the others are declared but left unparsed (``msgspec.Raw``),
and an undeclared field (snake_case names, enum names, a newer schema) refuses the
fast path. A record is taken by this path only when it is entirely valid: any refusal,
bad span or resource without ``service.name`` sends it to the exact path
(``json_format`` into the official message classes), which decides and writes the
dead letters. The one difference: fields shiftwatch does not read (ids, attributes,
events, links) are not checked here.
"""

from __future__ import annotations

from typing import Union

import msgspec

from ..events import Decoded
from .spans import SpanConfig, SpanKeys, scope_rows

__all__ = ["fast_json_spans"]

_Raw = msgspec.Raw
_Time = Union[int, str]


class _AnyValue(msgspec.Struct, gc=False):
    stringValue: Union[str, None] = None
    boolValue: _Raw = msgspec.Raw(b"null")
    intValue: _Raw = msgspec.Raw(b"null")
    doubleValue: _Raw = msgspec.Raw(b"null")
    arrayValue: _Raw = msgspec.Raw(b"null")
    kvlistValue: _Raw = msgspec.Raw(b"null")
    bytesValue: _Raw = msgspec.Raw(b"null")


class _KV(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    key: str
    value: Union[_AnyValue, None] = None


class _Resource(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    attributes: list[_KV] = []
    droppedAttributesCount: _Raw = msgspec.Raw(b"0")
    entityRefs: _Raw = msgspec.Raw(b"null")


class _Status(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    code: int = 0
    message: _Raw = msgspec.Raw(b"null")


class _Span(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    startTimeUnixNano: _Time
    endTimeUnixNano: _Time
    name: str = ""
    kind: int = 0
    status: Union[_Status, None] = None
    traceId: _Raw = msgspec.Raw(b"null")
    spanId: _Raw = msgspec.Raw(b"null")
    parentSpanId: _Raw = msgspec.Raw(b"null")
    traceState: _Raw = msgspec.Raw(b"null")
    flags: _Raw = msgspec.Raw(b"null")
    attributes: _Raw = msgspec.Raw(b"null")
    droppedAttributesCount: _Raw = msgspec.Raw(b"null")
    events: _Raw = msgspec.Raw(b"null")
    droppedEventsCount: _Raw = msgspec.Raw(b"null")
    links: _Raw = msgspec.Raw(b"null")
    droppedLinksCount: _Raw = msgspec.Raw(b"null")


class _ScopeSpans(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    spans: list[_Span] = []
    scope: _Raw = msgspec.Raw(b"null")
    schemaUrl: _Raw = msgspec.Raw(b"null")


class _ResourceSpans(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    resource: Union[_Resource, None] = None
    scopeSpans: list[_ScopeSpans] = []
    schemaUrl: _Raw = msgspec.Raw(b"null")


class _Request(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    resourceSpans: list[_ResourceSpans]


_DECODER = msgspec.json.Decoder(_Request)


def _service(res: _Resource | None) -> str | None:
    for kv in res.attributes if res is not None else ():
        if kv.key == "service.name":
            return (kv.value.stringValue or None) if kv.value is not None else None
    return None


def _t(v: int | str) -> int:
    return v if type(v) is int else int(v)  # type: ignore[arg-type]


def fast_json_spans(raw: bytes, cfg: SpanConfig, keys: SpanKeys, out: Decoded) -> int | None:
    """Spans of an entirely valid record appended to ``out`` (returns the number filtered
    by kind), or None, having added nothing, when the exact path must decide."""
    try:
        req = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    tmp = Decoded()
    refused: list[str] = []

    def dead(reason: str, error: str, raw: bytes, index: int | None) -> None:
        refused.append(reason)

    filtered = 0
    try:
        for rs in req.resourceSpans:
            svc = _service(rs.resource)
            if svc is None:
                return None
            for ss in rs.scopeSpans:
                if ss.spans:
                    rows = [(s.name, _t(s.startTimeUnixNano), _t(s.endTimeUnixNano), s.kind, s.status.code if s.status else 0) for s in ss.spans]
                    filtered += scope_rows(rows, lambda i: b"", svc, 0, cfg, keys, tmp, dead)
                    if refused:
                        return None
    except (ValueError, OverflowError, TypeError):
        return None
    out.extend(tmp)
    return filtered
