"""OTLP attribute values as label strings."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["any_value", "attr_dict", "service_name"]


def any_value(v: Any) -> str:
    """An ``AnyValue`` as the string a label carries (bools lowercase, like the Collector)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return repr(v.double_value)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "array_value":
        return json.dumps([any_value(x) for x in v.array_value.values], separators=(",", ":"))
    if kind == "kvlist_value":
        return json.dumps({kv.key: any_value(kv.value) for kv in v.kvlist_value.values}, separators=(",", ":"), sort_keys=True)
    return ""


def attr_dict(kvs: Any) -> dict[str, str]:
    """Repeated ``KeyValue`` -> {key: value string}; a repeated key keeps its last value."""
    return {kv.key: any_value(kv.value) for kv in kvs}


def service_name(resource: Any) -> str | None:
    """The resource's non-empty string ``service.name``, else None."""
    for kv in resource.attributes:
        if kv.key == "service.name":
            v = kv.value
            return v.string_value or None if v.WhichOneof("value") == "string_value" else None
    return None
