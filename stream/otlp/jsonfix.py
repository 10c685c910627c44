"""The Collector's ``otlp_json`` variant, made readable by protobuf's JSON parser.

The Collector writes ``traceId``/``spanId``/``parentSpanId`` as lowercase hex (the
OTLP/JSON spec), while protobuf's JSON mapping expects base64 for ``bytes``; a
32-character hex string is also valid base64, so ``json_format`` would silently read
24 wrong bytes. Hex ids are re-encoded as base64 here. The same walk rejects negative
counts, which protobuf would only report as an opaque range error.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["fix_ids", "JsonReject"]

_ID_FIELDS = frozenset(("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"))
_ID_HEX_LENGTHS = frozenset((16, 32))
_COUNT_FIELDS = frozenset(("count", "zeroCount", "zero_count"))
_COUNT_LISTS = frozenset(("bucketCounts", "bucket_counts"))
_HEX = frozenset("0123456789abcdefABCDEF")


class JsonReject(Exception):
    """A JSON document that is structurally fine but semantically refused."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


def _is_hex_id(v: Any) -> bool:
    return type(v) is str and len(v) in _ID_HEX_LENGTHS and all(c in _HEX for c in v)


def _negative(v: Any) -> bool:
    if type(v) is str:
        return v.lstrip().startswith("-")
    return type(v) in (int, float) and v < 0


def fix_ids(doc: Any, path: str = "$") -> None:
    """In place: hex ids -> base64; a negative count raises :class:`JsonReject`.

    Iterative, so nesting depth cannot exhaust the stack.
    """
    stack: list[tuple[Any, str]] = [(doc, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k in _ID_FIELDS and _is_hex_id(v):
                    node[k] = base64.b64encode(bytes.fromhex(v)).decode("ascii")
                elif k in _COUNT_FIELDS and _negative(v):
                    raise JsonReject("negative_count", f"{where}.{k} is negative ({v!r})")
                elif k in _COUNT_LISTS and isinstance(v, list) and any(_negative(c) for c in v):
                    raise JsonReject("negative_count", f"{where}.{k} holds a negative count")
                elif isinstance(v, (dict, list)):
                    stack.append((v, f"{where}.{k}"))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    stack.append((v, f"{where}[{i}]"))
