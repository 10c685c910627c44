"""The byte envelope shared by detector states: a version byte, then UTF-8 JSON."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["seal", "open_envelope"]


def seal(version: int, state: dict[str, Any], allow_nan: bool) -> bytes:
    return bytes([version]) + json.dumps(state, separators=(",", ":"), allow_nan=allow_nan).encode()


def open_envelope(b: object, version: int, max_bytes: int) -> bytes:
    """The JSON body after checking type, size and version; ``ValueError`` otherwise."""
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise ValueError("expected bytes")
    b = bytes(b)
    if len(b) < 2 or len(b) > max_bytes:
        raise ValueError("bad length")
    if b[0] != version:
        raise ValueError(f"unsupported version {b[0]}")
    return b[1:]
