"""The notifier's config file (TOML, or YAML when PyYAML is installed), validated.

Every problem is one line naming the file and the option, e.g.
``notify.toml: sinks[1] (oncall): url is a secret for slack sinks; give url_env or url_file``.
Secret values are read here (from env or files) and never appear in an error.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter
from typing import Any, Mapping

from .secrets import Secret, read_secret

__all__ = ["ConfigError", "Filter", "SinkConfig", "NotifyConfig", "load_config", "parse_config", "EVENT_TYPES"]

EVENT_TYPES = ("shift", "retraction", "incident")
DIRECTIONS = ("regression", "improvement")
SINK_TYPES = ("slack", "webhook", "grafana")
LINK_FIELDS = ("key", "id", "direction", "at", "at_ms", "from_ms", "to_ms", "type")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConfigError(ValueError):
    """A bad notifier config: the message is one line, safe to print."""


@dataclass(slots=True, frozen=True)
class Filter:
    labels: tuple[tuple[str, str], ...] = ()  # label name -> glob
    keys: tuple[str, ...] = ()  # globs on the key; empty: any
    directions: tuple[str, ...] = DIRECTIONS
    min_relative_change: float = 0.0


@dataclass(slots=True, frozen=True)
class SinkConfig:
    name: str
    type: str
    url: str | Secret
    events: tuple[str, ...] = EVENT_TYPES
    filter: Filter = field(default_factory=Filter)
    link: str | None = None
    secret: Secret | None = None
    signature_header: str = "X-Shiftwatch-Signature"
    token: Secret | None = None
    user: str | None = None
    password: Secret | None = None
    dashboard_uid: str | None = None
    on_retraction: str = "update"
    on_uncertain: str = "resend"

    @property
    def url_value(self) -> str:
        return self.url.value if isinstance(self.url, Secret) else self.url

    def secrets(self) -> list[Secret]:
        return [s for s in (self.url, self.secret, self.token, self.password) if isinstance(s, Secret)]


@dataclass(slots=True, frozen=True)
class NotifyConfig:
    sinks: tuple[SinkConfig, ...]
    group: str = "shiftwatch-notify"
    delivered_topic: str = ""
    dead_letter_topic: str = ""
    max_attempts: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0
    jitter_seed: int | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6068
    start: str = "latest"  # where a new consumer group starts on the shift topic
    replication_factor: int = 1  # of the delivered and dead-letter topics, when created
    session_timeout_s: float = 10.0  # a killed notifier's partitions move after this long

    def secrets(self) -> list[Secret]:
        return [s for k in self.sinks for s in k.secrets()]


class _Table:
    """Typed reads from one table; unknown keys are an error."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table")
        self.data, self.where, self.used = dict(data), where, set()

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        v = self.data[name]
        ok = isinstance(v, kind) and not (isinstance(v, bool) and kind in (int, float, (int, float)))
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(f"{self.where}: {name} must be {names}, got {type(v).__name__}")
        return v

    def strings(self, name: str, default: tuple[str, ...], allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        v = self.get(name, (list, str), None)
        if v is None:
            return default
        items = [v] if isinstance(v, str) else v
        if not all(isinstance(x, str) for x in items):
            raise ConfigError(f"{self.where}: {name} must be a list of strings")
        for x in items:
            if allowed and x not in allowed:
                raise ConfigError(f"{self.where}: {name}: {x!r} is not one of {', '.join(allowed)}")
        return tuple(items)

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        v = self.get(name, str, default)
        if v not in allowed:
            raise ConfigError(f"{self.where}: {name} must be one of {', '.join(allowed)}, got {v!r}")
        return v

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.where}: unknown option(s) {', '.join(unknown)}")


def _secret(t: _Table, stem: str, required: bool, env: Mapping[str, str] | None, base: Path | None) -> Secret | None:
    e, f = t.get(f"{stem}_env", str), t.get(f"{stem}_file", str)
    if e is not None and f is not None:
        raise ConfigError(f"{t.where}: give {stem}_env or {stem}_file, not both")
    if e is None and f is None:
        if required:
            raise ConfigError(f"{t.where}: {stem}_env or {stem}_file is required")
        return None
    try:
        return read_secret(e, f, t.where, env, base)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _filter(data: Any, where: str) -> Filter:
    t = _Table(data if data is not None else {}, where)
    labels = t.get("labels", Mapping, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ConfigError(f"{where}: labels must map label names to glob strings")
    mrc = float(t.get("min_relative_change", (int, float), 0.0))
    if mrc < 0:
        raise ConfigError(f"{where}: min_relative_change must be >= 0, got {mrc}")
    f = Filter(tuple(sorted(labels.items())), t.strings("keys", ()), t.strings("direction", DIRECTIONS, DIRECTIONS), mrc)
    t.done()
    return f


def _check_link(link: str, where: str) -> None:
    try:
        names = {fname for _, fname, _, _ in Formatter().parse(link) if fname is not None}
    except ValueError as e:
        raise ConfigError(f"{where}: link template: {e}") from None
    bad = sorted(n for n in names if n not in LINK_FIELDS and not n.startswith("label_"))
    if bad:
        raise ConfigError(f"{where}: link template: unknown placeholder(s) {', '.join(bad)} (known: {', '.join(LINK_FIELDS)}, label_NAME)")


def _url(t: _Table, kind: str, env: Mapping[str, str] | None, base: Path | None) -> str | Secret:
    plain = t.get("url", str)
    if kind in ("slack", "webhook"):
        if plain is not None:
            raise ConfigError(f"{t.where}: url is a secret for {kind} sinks; give url_env or url_file")
        s = _secret(t, "url", True, env, base)
        assert s is not None
        url = s.value
    else:
        s = None if plain is not None else _secret(t, "url", True, env, base)
        url = plain if plain is not None else s.value  # type: ignore[union-attr]
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{t.where}: url must be an http(s) URL")
    return s if s is not None else plain


def _sink(data: Any, i: int, env: Mapping[str, str] | None, base: Path | None) -> SinkConfig:
    where = f"sinks[{i}]"
    name = data.get("name") if isinstance(data, Mapping) else None
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: name is required (letters, digits, . _ -)")
    t = _Table(data, f"{where} ({name})")
    t.get("name", str)
    kind = t.choice("type", SINK_TYPES, "")
    url = _url(t, kind, env, base)
    link = t.get("link", str)
    if link is not None:
        _check_link(link, t.where)
    cfg = SinkConfig(
        name=name, type=kind, url=url,
        events=t.strings("events", EVENT_TYPES, EVENT_TYPES),
        filter=_filter(t.get("filter", Mapping), f"{t.where}.filter"),
        link=link,
        secret=_secret(t, "secret", False, env, base) if kind == "webhook" else None,
        signature_header=t.get("signature_header", str, "X-Shiftwatch-Signature") if kind == "webhook" else "X-Shiftwatch-Signature",
        token=_secret(t, "token", False, env, base) if kind == "grafana" else None,
        user=t.get("user", str) if kind == "grafana" else None,
        password=_secret(t, "password", False, env, base) if kind == "grafana" else None,
        dashboard_uid=t.get("dashboard_uid", str) if kind == "grafana" else None,
        on_retraction=t.choice("on_retraction", ("update", "delete"), "update") if kind == "grafana" else "update",
        on_uncertain=t.choice("on_uncertain", ("resend", "skip"), "resend"),
    )
    if kind == "grafana" and (cfg.user is None) != (cfg.password is None):
        raise ConfigError(f"{t.where}: user and password_env/password_file go together")
    t.done()
    return cfg


def parse_config(doc: Any, where: str, env: Mapping[str, str] | None = None, base: Path | None = None) -> NotifyConfig:
    try:
        top = _Table(doc, "top level")
        n = _Table(top.get("notify", Mapping, {}), "notify")
        sinks_raw = top.get("sinks", list, [])
        top.get("shiftwatch", Mapping)  # the shared Kafka options (read by the settings table)
        top.done()
        if not sinks_raw:
            raise ConfigError("sinks: at least one [[sinks]] table is required")
        sinks = tuple(_sink(s, i, env, base) for i, s in enumerate(sinks_raw))
        names = [s.name for s in sinks]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ConfigError(f"sinks: duplicate name(s) {', '.join(dup)}")
        group = n.get("group", str, "shiftwatch-notify")
        cfg = NotifyConfig(
            sinks=sinks, group=group,
            delivered_topic=n.get("delivered_topic", str, f"{group}-delivered"),
            dead_letter_topic=n.get("dead_letter_topic", str, f"{group}-dead-letter"),
            max_attempts=n.get("max_attempts", int, 5),
            backoff_initial_s=float(n.get("backoff_initial_s", (int, float), 0.5)),
            backoff_max_s=float(n.get("backoff_max_s", (int, float), 60.0)),
            timeout_s=float(n.get("timeout_s", (int, float), 10.0)),
            jitter_seed=n.get("jitter_seed", int),
            web_host=n.get("web_host", str, "127.0.0.1"),
            web_port=n.get("web_port", int, 6068),
            start=n.choice("start", ("earliest", "latest"), "latest"),
            replication_factor=n.get("replication_factor", int, 1),
            session_timeout_s=float(n.get("session_timeout_s", (int, float), 10.0)),
        )
        n.done()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    _check_numbers(cfg, where)
    return cfg


def _check_numbers(c: NotifyConfig, where: str) -> None:
    if c.max_attempts < 1:
        raise ConfigError(f"{where}: notify: max_attempts must be >= 1, got {c.max_attempts}")
    if c.replication_factor < 1:
        raise ConfigError(f"{where}: notify: replication_factor must be >= 1, got {c.replication_factor}")
    for name in ("backoff_initial_s", "backoff_max_s", "timeout_s", "session_timeout_s"):
        if not getattr(c, name) > 0:
            raise ConfigError(f"{where}: notify: {name} must be > 0, got {getattr(c, name)}")
    if not 0 <= c.web_port < 65536:
        raise ConfigError(f"{where}: notify: web_port must be 0..65535, got {c.web_port}")


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> NotifyConfig:
    """Read and validate ``path`` (``.toml``, or ``.yaml``/``.yml``)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    if p.suffix in (".yaml", ".yml"):
        doc = _yaml(raw, p)
    else:
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse_config(doc, str(p), env, p.parent)


def _yaml(raw: bytes, p: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{p}: YAML configs need PyYAML (pip install pyyaml); or use TOML") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
