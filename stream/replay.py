"""``shiftwatch replay``: the worker's pipeline on a file of JSON lines, no broker.

Each line is one message, exactly as it would sit in a Kafka record value. Lines
are decoded and processed in fixed batches of BATCH_LINES, through the same batched
typed decoding as the Kafka path. Lateness is decided per event, so which records are
written does not depend on the batch size, but their order within a batch does: the
batch size is fixed, and the same file always produces the same bytes.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from itertools import repeat
from typing import BinaryIO, Iterator, TextIO

from .events import Decoded
from .pipeline import Output, Pipeline
from sketches._varint import Reader

from .incidents import IncidentGrouper
from .records import dumps, iso
from .settings import Settings

__all__ = ["run_replay", "replay_stream", "write_output"]

BATCH_LINES = 1000


def _delimited(fh: BinaryIO, size: int) -> Iterator[list[bytes]]:
    """Length-delimited records (a varint length, then the bytes: protobuf's
    ``writeDelimitedTo`` framing), for binary OTLP files, in lists of ``size``. A
    truncated tail becomes one last record, which the decoder dead-letters."""
    r = Reader(fh.read())
    batch: list[bytes] = []
    while r.pos < len(r.buf):
        try:
            batch.append(r.take(r.uvarint()))
        except ValueError:  # a damaged frame: the rest is one bad record
            batch.append(r.buf[r.pos :])
            r.pos = len(r.buf)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _batches(fh: BinaryIO, size: int) -> Iterator[list[bytes]]:
    """Non-blank lines (without their line ending) in lists of ``size``, read in large blocks."""
    batch: list[bytes] = []
    while True:
        block = fh.readlines(1 << 20)
        if not block:
            break
        for line in block:
            line = line.rstrip(b"\r\n")
            if line.strip():
                batch.append(line)
                if len(batch) == size:
                    yield batch
                    batch = []
    if batch:
        yield batch


def write_output(out: Output, sink: TextIO, emit: set[str], incidents: IncidentGrouper | None = None) -> None:
    """Records of ``emit``'s types; with ``incidents``, incident records after the shifts that form them."""
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
        if incidents is not None and e.kind == "shift":
            for inc in incidents.update(e):
                w(dumps(inc.to_json()) + "\n")


def replay_stream(
    pipeline: Pipeline, fh: BinaryIO, sink: TextIO, name: str, emit: set[str], flush: bool = True, progress: "Progress | None" = None
) -> None:
    """Lines in batches of BATCH_LINES through the Kafka path's batched decoding
    (``decode_batch``: typed parsing, events appended straight to the batch); a line's
    offset in dead letters is its number among the non-blank lines, from 1."""
    decoder, stats = pipeline.decoder, pipeline.stats
    grouper = IncidentGrouper() if "incident" in emit else None
    offset, last_full = 0, True
    framing = _delimited if getattr(pipeline.decoder, "format", "json") == "otlp_proto" else _batches
    for lines in framing(fh, BATCH_LINES):
        stats.messages += len(lines)
        batch = decoder.decode_batch(zip(lines, range(offset + 1, offset + 1 + len(lines)), repeat(None)), name, 0)
        offset += len(lines)
        last_full = len(lines) == BATCH_LINES
        write_output(pipeline.process(batch), sink, emit, grouper)
        if progress:
            progress.update(fh, batch)
    if last_full:  # as the line-by-line reader did: one (empty) batch closes the input
        write_output(pipeline.process(Decoded()), sink, emit, grouper)
    if flush:
        write_output(pipeline.flush(), sink, emit, grouper)
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
    """A one-line progress bar on stderr: share of the file read, events/s, and the newest
    event time reached. Redrawn at most every ``every`` seconds; the wall clock only
    ever reaches this line, never the output."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, every: float = 0.25) -> None:
        self.total = max(1, total)
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self.shown = 0.0
        self.events = 0
        self.newest = -math.inf

    def update(self, fh: BinaryIO, batch: Decoded) -> None:
        self.events += len(batch)
        if batch.tbuf:
            self.newest = max(self.newest, max(batch.tbuf))
        now = time.monotonic()
        if now - self.shown < self.every:
            return
        self.shown = now
        try:
            pos = fh.tell()
        except (OSError, ValueError):
            return
        frac = min(1.0, pos / self.total)
        bar = "#" * int(frac * 30)
        rate = self.events / max(now - self.started, 1e-9)
        reached = iso(self.newest)[:19] + "Z" if math.isfinite(self.newest) else "-"
        self.stream.write(f"\rreplay [{bar:<30}] {frac * 100:5.1f}%  {rate:,.0f} events/s  event time {reached}")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r" + " " * 100 + "\r")
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
                # The name goes into dead letters' source: valid text even if the file
                # name's bytes are not UTF-8 (they arrive as lone surrogates).
                name = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                replay_stream(pipeline, fh, out, name, emit, flush, progress)
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
