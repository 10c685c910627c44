"""Secrets (webhook URLs, tokens, HMAC keys): read from env or files, never shown.

A ``Secret`` prints as ``<secret NAME>``; a ``Redactor`` replaces every known secret
value (and its URL-quoted form) in strings and log records, so an aiohttp error that
quotes a webhook URL cannot leak it into a log line, a metric or a dead letter.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import quote

__all__ = ["Secret", "Redactor", "read_secret"]


@dataclass(slots=True, frozen=True)
class Secret:
    source: str  # "env FOO" or "file /run/secrets/x": safe to show
    value: str = field(repr=False)

    def __str__(self) -> str:
        return f"<secret {self.source}>"

    __repr__ = __str__


def read_secret(env_name: str | None, file_name: str | None, where: str, env: Mapping[str, str] | None = None, base: Path | None = None) -> Secret:
    """The secret named by ``*_env`` or ``*_file``; ValueError (one line, no value) when missing."""
    env = os.environ if env is None else env
    if env_name is not None:
        value = env.get(env_name)
        if not value:
            raise ValueError(f"{where}: environment variable {env_name} is not set")
        return Secret(f"env {env_name}", value.strip())
    assert file_name is not None
    path = Path(file_name)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        value = path.read_text().strip()
    except OSError as e:
        raise ValueError(f"{where}: cannot read secret file {path}: {e.strerror}") from None
    if not value:
        raise ValueError(f"{where}: secret file {path} is empty")
    return Secret(f"file {path}", value)


class Redactor(logging.Filter):
    """Masks secret values in strings and, as a logging filter, in every record."""

    def __init__(self, secrets: list[Secret] | None = None) -> None:
        super().__init__()
        self._values: list[tuple[str, str]] = []
        for s in secrets or []:
            self.add(s)

    def add(self, s: Secret) -> None:
        for v in {s.value, quote(s.value, safe=""), quote(s.value)}:
            if len(v) >= 4:
                self._values.append((v, str(s)))
        self._values.sort(key=lambda x: -len(x[0]))

    def __call__(self, text: str) -> str:
        for v, mask in self._values:
            if v in text:
                text = text.replace(v, mask)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        red = self(msg)
        if red != msg:
            record.msg, record.args = red, None
        if record.exc_text:
            record.exc_text = self(record.exc_text)
        return True
