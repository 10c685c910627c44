"""Configuration: flags over environment (``SHIFTWATCH_*``) over a TOML file over defaults.

Each option is declared once, as a field of :class:`Settings` with its help, group and
check in the field's metadata. The CLI builds its flags from that table (``--x/--no-x``
for booleans), the environment names follow from it, and a test checks the README's
configuration reference against it. Secrets are never options: the SASL password comes
only from ``SHIFTWATCH_SASL_PASSWORD`` or ``--sasl-password-file``.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["Settings", "OPTIONS", "Option", "OptionError", "resolve", "quantile_name", "parse_broker"]

UNITS = ("s", "ms", "us", "ns")
LOG_LEVELS = ("crit", "error", "warn", "info", "debug")
_LOG_ALIASES = {"critical": "crit", "warning": "warn", "fatal": "crit"}


class OptionError(ValueError):
    """A bad option value; its message is one line that names the option."""


def _opt(default: Any, help: str, group: str, *, choices: Any = None, check: Callable[[Any], str | None] | None = None, kind: type | None = None) -> Any:
    meta = {"help": help, "group": group, "choices": choices, "check": check, "kind": kind}
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def _positive(v: float) -> str | None:
    return None if v > 0 and math.isfinite(v) else "must be a positive number"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 and math.isfinite(v) else "must be >= 0"


def _at_least(n: int) -> Callable[[int], str | None]:
    return lambda v: None if v >= n else f"must be >= {n}"


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number (0-65535)"


def _quantiles(qs: tuple[float, ...]) -> str | None:
    if not qs:
        return "must list at least one quantile"
    if any(not (0 < q < 1) for q in qs):
        return "must be quantiles strictly between 0 and 1, e.g. 0.5,0.9,0.99"
    if len(set(quantile_name(q) for q in qs)) != len(qs):
        return "must not repeat a quantile"
    return None


def _field_path(v: str) -> str | None:
    from .decode.fields import path_problem

    return path_problem(v)


def _key_fields(v: tuple[str, ...]) -> str | None:
    from .decode.fields import key_fields_problem

    return key_fields_problem(v)


def _increasing(bs: tuple[float, ...]) -> str | None:
    if bs and (any(b <= 0 or not math.isfinite(b) for b in bs) or any(a >= b for a, b in zip(bs, bs[1:]))):
        return "must be positive, increasing bucket bounds in seconds"
    return None


_BROKER = re.compile(r"^(?:kafka://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def parse_broker(broker: str) -> list[str]:
    """``kafka://HOST:PORT[,kafka://HOST:PORT]`` as ``HOST:PORT`` strings; ValueError if malformed."""
    out = []
    for part in broker.split(","):
        m = _BROKER.match(part.strip())
        if not m or not (0 < int(m.group(2)) <= 65535):
            raise ValueError(f"{part.strip()!r} is not kafka://HOST:PORT")
        out.append(f"{m.group(1)}:{m.group(2)}")
    return out


def _broker(v: str) -> str | None:
    try:
        parse_broker(v)
    except ValueError:
        return "must be kafka://HOST:PORT[,kafka://HOST:PORT]"
    return None


def quantile_name(q: float) -> str:  # noqa: D401 - same rule as stream.pipeline.quantile_names
    """The metric name of a quantile: 0.5 → p50, 0.99 → p99, 0.999 → p999, 0.95 → p95."""
    digits = repr(float(q))[2:]
    return "p" + digits.ljust(2, "0")


def _detector_choices() -> tuple[str, ...]:
    from detectors.base import streaming_names

    return streaming_names()


def _estimator_choices() -> tuple[str, ...]:
    from sketches import ESTIMATORS

    return tuple(ESTIMATORS)


@dataclass(slots=True, frozen=True)
class Settings:
    # -- Kafka ------------------------------------------------------------
    broker: str = _opt("kafka://127.0.0.1:9092", "Kafka bootstrap servers, kafka://HOST:PORT[,kafka://HOST:PORT]", "kafka", check=_broker)
    input_topic: str = _opt("shiftwatch-events", "topic with response-time events", "kafka")
    shift_topic: str = _opt("shiftwatch-shifts", "topic shift events are written to (keyed by key)", "kafka")
    dead_letter_topic: str = _opt("shiftwatch-dead-letter", "topic rejected input is written to, with the reason", "kafka")
    app_id: str = _opt("shiftwatch", "application id = Kafka consumer group of the input reader", "worker")
    partitions: int = _opt(4, "partitions of the input topic when shiftwatch creates it", "worker", check=_at_least(1))
    replication_factor: int = _opt(-1, "replication factor of topics shiftwatch creates (-1: the broker's default)", "worker", check=lambda v: None if v == -1 or v >= 1 else "must be -1 or >= 1")
    output_partitions: int = _opt(0, "partitions of the shift and dead-letter topics it creates (0: as many as the input)", "worker", check=_at_least(0))
    create_topics: bool = _opt(True, "create missing topics at start", "worker")
    security_protocol: str = _opt("PLAINTEXT", "Kafka security protocol", "kafka", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    sasl_mechanism: str = _opt("PLAIN", "SASL mechanism (password from SHIFTWATCH_SASL_PASSWORD or --sasl-password-file)", "kafka", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    sasl_username: str = _opt("", "SASL user name", "kafka")
    sasl_password_file: str = _opt("", "file holding the SASL password (instead of SHIFTWATCH_SASL_PASSWORD)", "kafka")
    ssl_cafile: str = _opt("", "CA bundle that signed the brokers' certificates", "kafka")
    ssl_certfile: str = _opt("", "client certificate for mutual TLS", "kafka")
    ssl_keyfile: str = _opt("", "client private key for mutual TLS", "kafka")
    compression: str = _opt("zstd", "compression of the topics shiftwatch writes (zstd: smallest and fastest here, see README)", "kafka", choices=("none", "gzip", "snappy", "lz4", "zstd"))
    topology: str = _opt("two_stage", "two_stage: merge each key over every input partition (any producer keying); keyed: one stage, for input keyed by the event key", "worker", choices=("two_stage", "keyed"))
    merge_grace: float = _opt(120.0, "two-stage: seconds a merged window waits for a silent source partition", "worker", check=_positive)
    empty_partition_after: float = _opt(
        10.0,
        "two-stage: seconds an input partition must be read to its end, never holding an event, before the merge stops waiting for it (0: never; it waits --merge-grace)",
        "worker",
        check=_non_negative,
    )
    instance_id: str = _opt("", "static group membership id (group.instance.id), e.g. the pod name of a StatefulSet", "worker")
    session_timeout: float = _opt(30.0, "Kafka consumer session timeout, seconds", "worker", check=_positive)
    # -- decoding ---------------------------------------------------------
    input_format: str = _opt("json", "input record format", "decode", choices=("json", "otlp_proto", "otlp_json"))
    input_unit: str = _opt("ms", "unit of input values", "decode", choices=UNITS)
    ts_unit: str = _opt("s", "unit of numeric timestamps (epoch)", "decode", choices=UNITS)
    key_fields: tuple[str, ...] = _opt(("key",), "dotted paths of the fields that make the key (several: a composite key with labels)", "decode", kind=str, check=_key_fields)
    value_field: str = _opt("value", "dotted path of the response time", "decode", check=_field_path)
    ts_field: str = _opt("ts", "dotted path of the event time", "decode", check=_field_path)
    span_kinds: tuple[str, ...] = _opt((), "OTLP span kinds to keep, e.g. server,consumer (empty: all)", "decode", kind=str)
    max_message_bytes: int = _opt(1 << 20, "larger messages are dead-lettered as too_large", "decode", check=_at_least(1))
    # -- pipeline ---------------------------------------------------------
    snapshot_interval: float = _opt(30.0, "seconds of event time per snapshot window", "pipeline", check=_positive)
    allowed_lateness: float | None = _opt(None, "seconds a window stays open after its end (default: 10% of the interval)", "pipeline", check=_non_negative, kind=float)
    quantiles: tuple[float, ...] = _opt((0.5, 0.9, 0.99), "quantiles of each snapshot, detected and exported", "pipeline", check=_quantiles, kind=float)
    estimator: str = _opt("logbuckets", "percentile estimator of each snapshot window", "pipeline", choices=_estimator_choices)
    detector: str = _opt("edivisive", "shift detector run on each key's snapshots", "pipeline", choices=_detector_choices)
    sketch_bytes: int = _opt(1024, "serialized-size budget of each percentile sketch", "pipeline", check=_at_least(64))
    max_keys: int = _opt(100_000, "live keys per worker; the least recently updated key is evicted beyond it", "pipeline", check=_at_least(1))
    # -- web --------------------------------------------------------------
    max_label_keys: int = _opt(1000, "keys exported with per-key Prometheus series", "web", check=_at_least(0))
    histogram_buckets: tuple[float, ...] = _opt((), "upper bounds (seconds) of the classic Prometheus histogram buckets (empty: the default layout)", "web", check=_increasing, kind=float)
    web_host: str = _opt("127.0.0.1", "address of /metrics and the live page (0.0.0.0 in containers)", "web")
    web_port: int = _opt(6066, "port of /metrics and the live page", "web", check=_port)
    # -- worker -----------------------------------------------------------
    batch_size: int = _opt(1000, "records per consumer poll (one batch)", "worker", check=_at_least(1))
    batch_within: float = _opt(0.2, "seconds to wait for a batch to fill", "worker", check=_positive)
    idle_close_after: float = _opt(10.0, "wall-clock seconds without events before quiet windows are closed", "worker", check=_positive)
    checkpoint_interval: float = _opt(30.0, "longest wall-clock seconds between state checkpoints (they also happen at snapshot boundaries)", "worker", check=_positive)
    data_dir: str = _opt("/tmp/shiftwatch-data", "Faust data directory", "worker")
    log_level: str = _opt("info", "log level (case-insensitive)", "common", choices=LOG_LEVELS)

    def replace(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    @property
    def quantile_names(self) -> tuple[str, ...]:
        return tuple(quantile_name(q) for q in self.quantiles)

    def make_decoder(self):  # type: ignore[no-untyped-def]
        """The decoder of ``input_format``: JSON (with its field mapping) or OTLP."""
        from .events import DecodeLimits, Decoder

        limits = DecodeLimits(max_message_bytes=self.max_message_bytes)
        if self.input_format != "json":
            from .otlp import OtlpDecoder

            kinds = frozenset(k.lower() for k in self.span_kinds) or None
            return OtlpDecoder(self.input_format, kinds, limits=limits, sketch_bytes=self.sketch_bytes)
        keys = self.key_fields if self.key_fields != ("key",) else None
        return Decoder(self.input_unit, limits, ts_unit=self.ts_unit, key_fields=keys, value_field=self.value_field, ts_field=self.ts_field)

    def connection(self, client_id: str = "shiftwatch"):  # type: ignore[no-untyped-def]
        """The one Kafka connection config (security included) every client of a process shares."""
        from .connection import KafkaConnection

        sasl = self.security_protocol.startswith("SASL_")
        return KafkaConnection.from_options(
            self.broker,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism if sasl else None,
            sasl_username=self.sasl_username or None,
            sasl_password_file=self.sasl_password_file or None,
            ssl_cafile=self.ssl_cafile or None,
            ssl_certfile=self.ssl_certfile or None,
            ssl_keyfile=self.ssl_keyfile or None,
            compression=self.compression,
            client_id=client_id,
        )

    def pipeline_config(self):  # type: ignore[no-untyped-def]
        from .pipeline import PipelineConfig

        return PipelineConfig(
            snapshot_interval_s=self.snapshot_interval,
            allowed_lateness_s=self.allowed_lateness,
            sketch_bytes=self.sketch_bytes,
            max_keys=self.max_keys,
            quantiles=self.quantiles,
            estimator=self.estimator,
            detector_name=self.detector,
        )

    def make_pipeline(self):  # type: ignore[no-untyped-def]
        from .pipeline import Pipeline

        return Pipeline(self.pipeline_config(), self.make_decoder())


@dataclass(slots=True, frozen=True)
class Option:
    """One row of the settings table, read from a :class:`Settings` field."""

    name: str
    type: type
    help: str
    group: str
    default: Any
    many: bool = False
    optional: bool = False
    _choices: Any = None
    check: Callable[[Any], str | None] | None = None

    @property
    def choices(self) -> tuple[str, ...] | None:
        c = self._choices
        return c() if callable(c) else c

    @property
    def env(self) -> str:
        return "SHIFTWATCH_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: Any, where: str) -> Any:
        """``raw`` (a string, or a TOML value) as this option's type; OptionError if it is not."""
        if self.many:
            items = raw if isinstance(raw, (list, tuple)) else [s for s in str(raw).split(",") if s.strip()]
            value: Any = tuple(self._scalar(x.strip() if isinstance(x, str) else x, where) for x in items)
        else:
            value = self._scalar(raw, where)
        err = self.check(value) if self.check else None
        if err:
            raise OptionError(f"{where}: {err}, got {_show(raw)}")
        return value

    def _scalar(self, raw: Any, where: str) -> Any:
        try:
            if self.type is bool:
                value = _parse_bool(raw)
            elif self.type is int and isinstance(raw, float) or isinstance(raw, bool):
                raise ValueError(raw)
            else:
                value = self.type(raw)
        except (TypeError, ValueError):
            raise OptionError(f"{where}: must be {_TYPE_WORDS[self.type]}, got {_show(raw)}") from None
        if self.type is float and not math.isfinite(value):
            raise OptionError(f"{where}: must be a finite number, got {_show(raw)}")
        if self.name == "log_level":
            value = _LOG_ALIASES.get(value.lower(), value.lower())
        choices = self.choices
        if choices and value not in choices:
            raise OptionError(f"{where}: must be one of {', '.join(choices)}, got {_show(raw)}")
        return value


_TYPE_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    low = str(raw).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _options() -> tuple[Option, ...]:
    out = []
    for f in fields(Settings):
        m = f.metadata
        kind = m["kind"] or type(f.default)
        out.append(
            Option(
                name=f.name,
                type=kind,
                help=m["help"],
                group=m["group"],
                default=f.default,
                many=isinstance(f.default, tuple),
                optional=f.default is None,
                _choices=m["choices"],
                check=m["check"],
            )
        )
    return tuple(out)


OPTIONS: tuple[Option, ...] = _options()
_BY_NAME = {o.name: o for o in OPTIONS}


def _file_values(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise OptionError(f"{path}: not valid TOML: {e}") from None
    table = doc.get("shiftwatch", doc)
    unknown = sorted(set(table) - set(_BY_NAME))
    if unknown:
        raise OptionError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return dict(table)


def resolve(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    base: Settings | None = None,
) -> Settings:
    """Merge the layers; the first that sets an option wins: flag, env, file, base.

    Raises :class:`OptionError` (one line naming the option) for a bad value, and
    OSError for an unreadable config file.
    """
    env = os.environ if env is None else env
    path = config_file or env.get("SHIFTWATCH_CONFIG")
    file_values = _file_values(path) if path else {}
    base = base or Settings()
    chosen: dict[str, Any] = {}
    for opt in OPTIONS:
        if flags.get(opt.name) is not None:
            chosen[opt.name] = opt.parse(flags[opt.name], opt.flag)
        elif opt.env in env:
            chosen[opt.name] = opt.parse(env[opt.env], opt.env)
        elif opt.name in file_values:
            chosen[opt.name] = opt.parse(file_values[opt.name], f"{path}: {opt.name}")
    return replace(base, **chosen)


def _shown_default(opt: Option) -> str:
    d = opt.default
    if opt.many:
        return ",".join(map(str, d)) if d else "(empty)"
    if d is None:
        return "(see meaning)"
    if d == "":
        return "(empty)"
    return str(d).lower() if isinstance(d, bool) else str(d)


def markdown_table() -> str:
    """The README's configuration reference, generated from the table (tests compare them)."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS:
        flag = f"--[no-]{o.flag[2:]}" if o.type is bool else o.flag
        meaning = o.help + (f" ({' / '.join(o.choices)})" if o.choices and len(o.choices) <= 6 else "")
        rows.append(f"| `{flag}` | `{o.env}` | `{_shown_default(o)}` | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m stream.settings: print the README's option table
    print(markdown_table(), end="")
