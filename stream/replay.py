"""``shiftwatch replay``: the worker's pipeline on a file of JSON lines, no broker.

Each line is one message, exactly as it would sit in a Kafka record value. Lines
are processed in fixed-size batches; lateness is decided per event, so the
records written do not depend on the batch size, and the same file always
produces the same bytes.
"""

from __future__ import annotations

import io
import os
import sys
from typing import BinaryIO, Iterator, TextIO

from .events import Decoded, Source
from .pipeline import Output, Pipeline
from .records import dumps
from .settings import Settings

__all__ = ["run_replay", "replay_stream", "write_output"]

BATCH_LINES = 1000


def _lines(fh: BinaryIO) -> Iterator[bytes]:
    for line in fh:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def write_output(out: Output, sink: TextIO, emit: set[str]) -> None:
    w = sink.write
    if "dead_letter" in emit:
        for d in out.dead:
            w(dumps(d.to_json()) + "\n")
    if "snapshot" in emit:
        for s in out.snapshots:
            w(dumps(s.to_json()) + "\n")
    for e in out.shifts:
        if e.kind in emit:
            w(dumps(e.to_json()) + "\n")


def replay_stream(
    pipeline: Pipeline, fh: BinaryIO, sink: TextIO, name: str, emit: set[str], flush: bool = True, progress: "Progress | None" = None
) -> None:
    batch = Decoded()
    n = 0
    for lineno, raw in enumerate(_lines(fh), start=1):
        pipeline.stats.messages += 1
        batch.extend(pipeline.decoder.decode(raw, Source(name, 0, lineno)))
        n += 1
        if n >= BATCH_LINES:
            write_output(pipeline.process(batch), sink, emit)
            batch, n = Decoded(), 0
            if progress:
                progress.update(fh)
    write_output(pipeline.process(batch), sink, emit)
    if flush:
        write_output(pipeline.flush(), sink, emit)
    if progress:
        progress.done()


#: Files at least this large get a progress bar (when stderr is a terminal).
PROGRESS_MIN_BYTES = 8 << 20


def want_progress(stream: TextIO, size: int) -> bool:
    """A bar only for people: a terminal on stderr and a file worth waiting for."""
    try:
        return stream.isatty() and size >= int(os.environ.get("SHIFTWATCH_PROGRESS_MIN_BYTES", PROGRESS_MIN_BYTES))
    except (ValueError, OSError):
        return False


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(1, total)
        self.stream = stream

    def update(self, fh: BinaryIO) -> None:
        try:
            pos = fh.tell()
        except (OSError, ValueError):
            return
        frac = min(1.0, pos / self.total)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\rreplay [{bar:<30}] {frac * 100:5.1f}%")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r" + " " * 50 + "\r")
        self.stream.flush()


def run_replay(path: str, settings: Settings, emit: set[str], flush: bool = True) -> int:
    pipeline = settings.make_pipeline()
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=False)
    try:
        if path == "-":
            replay_stream(pipeline, sys.stdin.buffer, out, "stdin", emit, flush)
        else:
            size = os.path.getsize(path)
            progress = Progress(size) if want_progress(sys.stderr, size) else None
            with open(path, "rb") as fh:
                replay_stream(pipeline, fh, out, path, emit, flush, progress)
        out.flush()
    except BrokenPipeError:  # e.g. piped into head
        return 0
    finally:
        out.detach()
    s = pipeline.stats
    print(
        f"replay: {s.messages} messages, {s.accepted} events accepted, {s.rejected} rejected, "
        f"{s.late} late, {s.snapshots} snapshots, {s.shifts} shifts, {len(pipeline.states)} keys",
        file=sys.stderr,
    )
    return 0
