"""Nesting depth of decoded JSON, checked without recursion.

Parsers recurse per nesting level, so their own limit depends on how deep the caller's
stack already is; a fixed, small limit checked here makes the answer the same in the
worker, in replay and in tests. The check is nearly free for ordinary messages: a value
nested ``d`` levels needs at least ``d`` opening brackets in the raw bytes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["depth_exceeds", "cheap_depth_bound"]


def cheap_depth_bound(raw: bytes, containers: int = 1) -> int:
    """An upper bound on the nesting depth of ``raw``: its opening brackets, less one per
    sibling container beyond the first (``containers`` elements of a top-level array)."""
    return raw.count(b"{") + raw.count(b"[") - max(containers - 1, 0)


def depth_exceeds(doc: Any, limit: int) -> bool:
    """True when ``doc`` (json.loads output) nests deeper than ``limit`` levels; a bare
    scalar is depth 0, ``[]`` and ``{}`` depth 1."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        obj, d = stack.pop()
        if type(obj) is dict:
            children: Any = obj.values()
        elif type(obj) is list:
            children = obj
        else:
            continue
        if d > limit:
            return True
        for c in children:
            if type(c) is dict or type(c) is list:
                stack.append((c, d + 1))
    return False
