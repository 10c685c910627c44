"""Configuration: flags over environment (``SHIFTWATCH_*``) over a TOML file over defaults.

Each option is declared once here, with its type, default and help; the CLI builds
its flags from this table and the README's configuration reference follows it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .events import DecodeLimits, Decoder, UNIT_SCALE
from .pipeline import Pipeline, PipelineConfig

__all__ = ["Settings", "OPTIONS", "Option", "resolve"]


@dataclass(slots=True, frozen=True)
class Option:
    name: str
    type: type
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def default(self) -> Any:
        return getattr(Settings(), self.name)

    @property
    def env(self) -> str:
        return "SHIFTWATCH_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("broker", str, "Kafka bootstrap servers, kafka://HOST:PORT[,kafka://HOST:PORT]"),
    Option("input_topic", str, "topic with response-time events"),
    Option("shift_topic", str, "topic shift events are written to (keyed by key)"),
    Option("dead_letter_topic", str, "topic rejected input is written to, with the reason"),
    Option("app_id", str, "Faust application id = Kafka consumer group of the input reader"),
    Option("partitions", int, "partitions of the input topic when shiftwatch creates it"),
    Option("replication_factor", int, "replication factor of topics shiftwatch creates"),
    Option("create_topics", bool, "create missing topics at start"),
    Option("snapshot_interval", float, "seconds of event time per snapshot window"),
    Option("allowed_lateness", float, "seconds a window stays open after its end (default: 10%% of the interval)"),
    Option("input_unit", str, "unit of input values", tuple(UNIT_SCALE)),
    Option("sketch_bytes", int, "serialized-size budget of each percentile sketch"),
    Option("max_keys", int, "live keys per worker; the least recently updated key is evicted beyond it"),
    Option("max_label_keys", int, "keys exported with per-key Prometheus series"),
    Option("max_message_bytes", int, "larger messages are dead-lettered as too_large"),
    Option("web_host", str, "address of /metrics and the live page (0.0.0.0 in containers)"),
    Option("web_port", int, "port of /metrics and the live page"),
    Option("batch_size", int, "records per consumer poll (one batch)"),
    Option("batch_within", float, "seconds to wait for a batch to fill"),
    Option("idle_close_after", float, "wall-clock seconds without events before quiet windows are closed"),
    Option("checkpoint_interval", float, "longest wall-clock seconds between state checkpoints (they also happen at snapshot boundaries)"),
    Option("session_timeout", float, "Kafka consumer session timeout, seconds"),
    Option("data_dir", str, "Faust data directory"),
    Option("log_level", str, "log level", ("crit", "error", "warn", "info", "debug")),
)


@dataclass(slots=True, frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    input_topic: str = "shiftwatch-events"
    shift_topic: str = "shiftwatch-shifts"
    dead_letter_topic: str = "shiftwatch-dead-letter"
    app_id: str = "shiftwatch"
    partitions: int = 4
    replication_factor: int = 1
    create_topics: bool = True
    snapshot_interval: float = 30.0
    allowed_lateness: float | None = None
    input_unit: str = "ms"
    sketch_bytes: int = 1024
    max_keys: int = 100_000
    max_label_keys: int = 1000
    max_message_bytes: int = 1 << 20
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 1000
    batch_within: float = 0.2
    idle_close_after: float = 10.0
    checkpoint_interval: float = 30.0
    session_timeout: float = 30.0
    data_dir: str = "/tmp/shiftwatch-data"
    log_level: str = "info"

    def make_pipeline(self) -> Pipeline:
        config = PipelineConfig(
            snapshot_interval_s=self.snapshot_interval,
            allowed_lateness_s=self.allowed_lateness,
            sketch_bytes=self.sketch_bytes,
            max_keys=self.max_keys,
        )
        decoder = Decoder(self.input_unit, DecodeLimits(max_message_bytes=self.max_message_bytes))
        return Pipeline(config, decoder)

    def replace(self, **changes: Any) -> "Settings":
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(changes)
        return Settings(**d)


def _coerce(opt: Option, raw: Any, where: str) -> Any:
    if raw is None:
        return None
    try:
        if opt.type is bool:
            if isinstance(raw, bool):
                value: Any = raw
            elif str(raw).lower() in ("1", "true", "yes", "on"):
                value = True
            elif str(raw).lower() in ("0", "false", "no", "off"):
                value = False
            else:
                raise ValueError(raw)
        else:
            value = opt.type(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {opt.name} must be {opt.type.__name__}, got {raw!r}") from None
    if opt.choices and value not in opt.choices:
        raise ValueError(f"{where}: {opt.name} must be one of {', '.join(opt.choices)}, got {value!r}")
    return value


def resolve(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    base: Settings | None = None,
) -> Settings:
    """Merge the layers; the first that sets an option wins: flag, env, file, base."""
    env = os.environ if env is None else env
    path = config_file or env.get("SHIFTWATCH_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
        table = doc.get("shiftwatch", doc)
        known = {o.name for o in OPTIONS}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {', '.join(unknown)}")
        file_values = dict(table)
    base = base or Settings()
    chosen: dict[str, Any] = {}
    for opt in OPTIONS:
        value = _coerce(opt, flags.get(opt.name), f"--{opt.name}")
        if value is None and opt.env in env:
            value = _coerce(opt, env[opt.env], opt.env)
        if value is None and opt.name in file_values:
            value = _coerce(opt, file_values[opt.name], str(path))
        chosen[opt.name] = getattr(base, opt.name) if value is None else value
    return Settings(**chosen)
