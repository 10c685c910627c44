"""Composite keys: several label values in one key string, reversibly.

A key built from one field is that field's value, unchanged (today's ``key``). A key
built from several is their values joined by ``|``, with ``\\`` and ``|`` escaped in
each value, so two different label tuples never give the same key.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["compose_key", "split_key"]


def compose_key(values: Iterable[str]) -> str:
    parts = list(values)
    if len(parts) == 1:
        return parts[0]
    return "|".join(p.replace("\\", "\\\\").replace("|", "\\|") for p in parts)


def split_key(key: str, n: int) -> list[str]:
    """The ``n`` values ``compose_key`` joined (``n == 1``: the key itself)."""
    if n == 1:
        return [key]
    out, cur, i = [], [], 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):
            cur.append(key[i + 1])
            i += 2
            continue
        if c == "|":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    if len(out) != n:
        raise ValueError(f"key {key!r} does not hold {n} values")
    return out
