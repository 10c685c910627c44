"""Field mapping: where an event's key parts, value and timestamp sit in a JSON object.

A path is dotted (``service.name``) and is looked up as nested objects first; when the
nesting is absent, the whole path is tried as one literal key at the top level (loggers
that flatten, ``{"service.name": "cart"}``). The same rule drives the typed fast path
(msgspec structs built from the paths, nested form only) and the exact path, so both give
the same answer; anything the typed path cannot take goes to the exact path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Callable, Union

import msgspec

__all__ = ["FieldMap", "MISSING", "resolve", "TypedMapping", "typed_mapping", "path_problem", "key_fields_problem"]

#: What :func:`resolve` returns for a path that is not in the object.
MISSING: Any = object()

_NAN = math.nan


@dataclass(slots=True, frozen=True)
class FieldMap:
    """The configured paths; ``labelled`` when the key fields were given explicitly."""

    key_fields: tuple[str, ...] = ("key",)
    value_field: str = "value"
    ts_field: str = "ts"
    labelled: bool = False

    def __post_init__(self) -> None:
        problem = key_fields_problem(self.key_fields)
        if problem:
            raise ValueError(f"key_fields {','.join(map(str, self.key_fields))!r} {problem}")
        for p in (self.value_field, self.ts_field):
            if path_problem(p):
                raise ValueError(f"bad field path {p!r}: {path_problem(p)}")

    @property
    def is_default(self) -> bool:
        return self == FieldMap()


def path_problem(path: Any) -> str | None:
    """Why ``path`` is not a field path, or None (also the settings' option check)."""
    if not isinstance(path, str) or not path or any(not s for s in path.split(".")):
        return "must be dotted names, none empty (e.g. service.name)"
    try:
        path.encode("utf-8")  # a label name in every output record
    except UnicodeEncodeError:
        return "must be valid UTF-8 text"
    return None


def key_fields_problem(paths: Any) -> str | None:
    """Why ``paths`` are not usable key fields, or None."""
    if not paths:
        return "must name at least one field"
    for p in paths:
        if path_problem(p):
            return f"holds a bad field path {p!r}: {path_problem(p)}"
    if len(set(paths)) != len(paths):
        return "must not repeat a field"
    return None


def resolve(obj: dict[str, Any], path: str, segments: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``obj`` (nested first, then the literal dotted key), or MISSING."""
    cur: Any = obj
    for s in segments:
        if type(cur) is dict and s in cur:
            cur = cur[s]
        else:
            break
    else:
        return cur
    if len(segments) > 1 and path in obj:
        return obj[path]
    return MISSING


@dataclass(slots=True, frozen=True)
class TypedMapping:
    """msgspec decoders of a mapped event (and an array of them) plus attribute getters."""

    event: msgspec.json.Decoder
    array: msgspec.json.Decoder
    keys: tuple[Callable[[Any], str], ...]
    value: Callable[[Any], float]
    ts: Callable[[Any], Any]


def typed_mapping(fm: FieldMap, max_key_chars: int, int_ts: bool = False) -> TypedMapping | None:
    """Struct types whose shape is the paths' tree; None when paths overlap (``a`` and
    ``a.b``), which only the exact path can take. ``int_ts`` keeps integer timestamps
    exact (a nanosecond count exceeds 2**53)."""
    Key = Annotated[str, msgspec.Meta(min_length=1, max_length=max_key_chars)]
    tree: dict[str, Any] = {}
    leaves = [(p, Key) for p in fm.key_fields] + [(fm.value_field, float), (fm.ts_field, Union[int, float, str] if int_ts else Union[float, str])]
    for path, typ in leaves:
        node = tree
        segs = path.split(".")
        for s in segs[:-1]:
            node = node.setdefault(s, {})
            if not isinstance(node, dict):
                return None
        if segs[-1] in node:
            return None
        node[segs[-1]] = typ
    counter = [0]
    names: dict[str, str] = {}

    def build(node: dict[str, Any], prefix: str, root: bool) -> Any:
        fields: list[Any] = []
        rename: dict[str, str] = {}
        for name, sub in node.items():
            attr = f"f{counter[0]}"
            counter[0] += 1
            rename[attr] = name
            path = prefix + name
            names[path] = names.get(prefix.rstrip("."), "") + ("." if prefix else "") + attr
            typ = build(sub, path + ".", False) if isinstance(sub, dict) else sub
            if root and path == fm.ts_field:
                fields.append((attr, typ, _NAN))  # NaN (not expressible in JSON) = absent
            else:
                fields.append((attr, typ))
        return msgspec.defstruct(f"Mapped{counter[0]}", fields, rename=rename, gc=False)

    Root = build(tree, "", True)
    getter = lambda p: attrgetter(names[p])
    return TypedMapping(
        msgspec.json.Decoder(Root),
        msgspec.json.Decoder(list[Root]),
        tuple(getter(p) for p in fm.key_fields),
        getter(fm.value_field),
        getter(fm.ts_field),
    )
