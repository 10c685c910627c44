"""``shiftwatch`` command line: worker, replay, demo, loadgen, shifts, plot."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn, Sequence

from . import __version__
from .settings import OPTIONS, Settings, resolve

__all__ = ["main", "build_parser"]

#: Which option groups of the settings table each command takes.
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "worker": ("kafka", "worker", "decode", "pipeline", "web", "common"),
    "replay": ("decode", "pipeline", "common"),
    "demo": ("pipeline", "web", "common"),
    "loadgen": ("kafka", "common"),
    "shifts": ("kafka", "common"),
    "plot": ("decode", "pipeline", "common"),
    "notify": ("kafka", "common"),
}

SUBCOMMAND_OPTIONS: dict[str, tuple[str, ...]] = {
    cmd: tuple(o.name for o in OPTIONS if o.group in groups) for cmd, groups in COMMAND_GROUPS.items()
}


#: The demo runs on a compressed clock: one-second snapshots so a shift shows within seconds.
BASES: dict[str, Settings] = {"demo": Settings(snapshot_interval=1.0)}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``shiftwatch: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_options(p: argparse.ArgumentParser, names: Sequence[str], base: Settings | None = None) -> None:
    base = base or Settings()
    g = p.add_argument_group("configuration (flag > environment > --config TOML file > default)")
    g.add_argument("--config", metavar="FILE", help="TOML file with options (top level or a [shiftwatch] table); env SHIFTWATCH_CONFIG")
    for opt in OPTIONS:
        if opt.name not in names:
            continue
        default = getattr(base, opt.name)
        shown = ",".join(map(str, default)) if opt.many else default
        kwargs: dict[str, object] = {"dest": opt.name, "default": None, "help": f"{opt.help} (env {opt.env}; default {shown})".replace("%", "%%")}
        if opt.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = opt.name.split("_")[-1].upper()
        g.add_argument(opt.flag, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shiftwatch",
        description="Per-key streaming percentiles in constant memory, and an alert when a percentile shifts.",
    )
    parser.add_argument("--version", action="version", version=f"shiftwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    w = sub.add_parser("worker", help="run the Kafka worker (/metrics, /healthz, /readyz, live page)")
    _add_options(w, SUBCOMMAND_OPTIONS["worker"])

    r = sub.add_parser(
        "replay",
        help="run the pipeline on a file of JSON lines, no broker",
        description="Runs the same pipeline as the worker on a file of JSON lines (one message per line) "
        "and writes snapshots, shift events and dead letters as JSON lines to stdout.",
    )
    r.add_argument("path", help="file of JSON lines, or - for standard input")
    r.add_argument(
        "--emit",
        default="snapshot,shift,retraction,dead_letter",
        help="comma-separated record types to write (default: snapshot,shift,retraction,dead_letter; add incident for fleet-wide incidents)",
    )
    r.add_argument("--no-flush", action="store_true", help="do not close the last, still-open windows at end of input")
    _add_options(r, SUBCOMMAND_OPTIONS["replay"])

    d = sub.add_parser(
        "demo",
        help="embedded synthetic multi-key stream with a shift; live percentiles, /metrics and the live page",
    )
    d.add_argument("--duration", type=float, default=60.0, help="seconds to run; 0 runs until Ctrl-C (default 60)")
    d.add_argument("--shift-at", type=float, default=12.0, help="seconds after start when 'checkout' slows down (default 12)")
    d.add_argument("--shift-factor", type=float, default=1.6, help="latency multiplier of the injected shift (default 1.6)")
    d.add_argument("--seed", type=int, default=7, help="random seed of the synthetic traffic (default 7)")
    d.add_argument("--quiet", action="store_true", help="print only shift events, not the live table")
    _add_options(d, SUBCOMMAND_OPTIONS["demo"], BASES["demo"])

    lg = sub.add_parser("loadgen", help="produce synthetic multi-key latency traffic with occasional shifts to Kafka")
    lg.add_argument("--rate", type=float, default=200.0, help="events per second per key (default 200)")
    lg.add_argument("--keys", type=int, default=6, help="number of keys (default 6)")
    lg.add_argument("--shift-every", type=float, default=600.0, help="seconds between injected shifts (default 600)")
    lg.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 runs forever")
    lg.add_argument("--seed", type=int, default=7)
    _add_options(lg, SUBCOMMAND_OPTIONS["loadgen"])

    sh = sub.add_parser("shifts", help="print shift events as a table, from the change topic or a file")
    sh.add_argument("--file", help="read replay output (JSON lines) instead of the change topic")
    sh.add_argument("--follow", action="store_true", help="keep reading the topic and print new events as they come")
    _add_options(sh, SUBCOMMAND_OPTIONS["shifts"])

    pl = sub.add_parser("plot", help="PNG per key of snapshot percentiles with shift events marked (needs matplotlib)")
    pl.add_argument("path", help="replay output (JSON lines), or a file of events (it is replayed first)")
    pl.add_argument("--out", required=True, help="directory for the PNG files")
    _add_options(pl, SUBCOMMAND_OPTIONS["plot"])

    from .notify.runner import build_notify_parser

    _add_options(build_notify_parser(sub), SUBCOMMAND_OPTIONS["notify"])
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    flags = {o.name: getattr(args, o.name, None) for o in OPTIONS}
    config = getattr(args, "config", None)
    if args.command == "notify":  # the notifier's own file; shared options only from its [shiftwatch] table
        from .notify.runner import settings_file

        config = settings_file(config)
    return resolve(flags, config_file=config, base=BASES.get(args.command))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except (ValueError, OSError) as e:
        parser.error(str(e).splitlines()[0] if str(e) else type(e).__name__)
    logging.basicConfig(
        level={"crit": logging.CRITICAL, "warn": logging.WARNING}.get(settings.log_level, settings.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "replay":
        from .replay import run_replay

        return run_replay(args.path, settings, emit=set(args.emit.split(",")), flush=not args.no_flush)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(settings, duration=args.duration, shift_at=args.shift_at, shift_factor=args.shift_factor, seed=args.seed, quiet=args.quiet)
    if args.command == "worker":
        from .app import run_worker

        return run_worker(settings)
    if args.command == "loadgen":
        from .loadgen import run_loadgen

        return run_loadgen(settings, rate=args.rate, keys=args.keys, shift_every=args.shift_every, duration=args.duration, seed=args.seed)
    if args.command == "shifts":
        from .report import run_shifts

        return run_shifts(settings, args.file, args.follow)
    if args.command == "plot":
        from .report import run_plot

        return run_plot(args.path, args.out, settings)
    if args.command == "notify":
        from .notify.runner import run_notify_settings

        if not args.config:
            parser.error("notify needs --config FILE (the sinks)")
        return run_notify_settings(settings, args.config, args.notify_web_port)
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
