"""`shiftwatch replay` as a user runs it: a file in, JSON lines out, byte-for-byte repeatable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datagen import T0, as_messages, shift_stream

SHIFTWATCH = [sys.executable, "-m", "stream.cli"]


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    events, _ = shift_stream(snapshots=70, shift_snapshot=40, per_snapshot=200, seed=11)
    path = tmp_path_factory.mktemp("replay") / "events.jsonl"
    lines = as_messages(events, 1)
    lines.insert(500, b'{"key": "A", "value": "slow", "ts": 1763800001}')
    lines.insert(900, b"\xff garbage")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def replay(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SHIFTWATCH, "replay", *args], input=stdin, capture_output=True, check=True, timeout=300)


def test_replay_finds_the_shift_and_is_deterministic(events_file):
    a = replay(str(events_file), "--snapshot-interval", "10")
    b = replay(str(events_file), "--snapshot-interval", "10")
    assert a.stdout == b.stdout and a.stdout
    records = [json.loads(line) for line in a.stdout.splitlines()]
    shifts = [r for r in records if r["type"] == "shift"]
    assert [s["key"] for s in shifts] == ["A"]
    assert abs(shifts[0]["at"] - (T0 + 400)) <= 30
    dead = [r for r in records if r["type"] == "dead_letter"]
    assert sorted(d["reason"] for d in dead) == ["bad_value", "invalid_utf8"]
    assert {d["source"]["offset"] for d in dead} == {501, 901}
    snaps = [r for r in records if r["type"] == "snapshot"]
    assert len(snaps) == 140 and sum(s["count"] for s in snaps) == 70 * 200 * 2
    assert b"replay: 28002 messages, 28000 events accepted, 2 rejected" in a.stderr


def test_replay_from_stdin_and_emit_filter(events_file):
    a = replay("-", "--snapshot-interval", "10", "--emit", "shift", stdin=events_file.read_bytes())
    records = [json.loads(line) for line in a.stdout.splitlines()]
    assert [r["type"] for r in records] == ["shift"]


def test_snapshot_interval_from_environment_and_toml(events_file, tmp_path):
    cfg = tmp_path / "sw.toml"
    cfg.write_text("[shiftwatch]\nsnapshot_interval = 20.0\n")
    out = subprocess.run(
        [*SHIFTWATCH, "replay", str(events_file), "--config", str(cfg), "--emit", "snapshot"],
        capture_output=True, check=True, timeout=300,
    ).stdout
    first = json.loads(out.splitlines()[0])
    assert first["end"] - first["start"] == 20.0
    import os

    env = dict(os.environ, SHIFTWATCH_SNAPSHOT_INTERVAL="5")
    out = subprocess.run(
        [*SHIFTWATCH, "replay", str(events_file), "--config", str(cfg), "--emit", "snapshot"],
        capture_output=True, check=True, timeout=300, env=env,
    ).stdout
    first = json.loads(out.splitlines()[0])
    assert first["end"] - first["start"] == 5.0  # env beats the file


def test_bad_configuration_is_a_clear_error(tmp_path):
    r = subprocess.run([*SHIFTWATCH, "replay", "-", "--snapshot-interval", "soon"], capture_output=True, timeout=60, input=b"")
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"--snapshot-interval: must be a number" in r.stderr


def _run_with_stderr(args, stderr_fd, env):
    return subprocess.run([*SHIFTWATCH, "replay", *args], stdout=subprocess.DEVNULL, stderr=stderr_fd, timeout=300, env=env, check=True)


def test_progress_bar_on_a_terminal_but_not_when_piped(events_file):
    import os
    import pty

    env = dict(os.environ, SHIFTWATCH_PROGRESS_MIN_BYTES="1000")
    master, slave = pty.openpty()
    try:
        _run_with_stderr([str(events_file), "--snapshot-interval", "10"], slave, env)
        os.set_blocking(master, False)
        seen = b""
        try:
            while True:
                chunk = os.read(master, 65536)
                if not chunk:
                    break
                seen += chunk
        except (BlockingIOError, OSError):
            pass
    finally:
        os.close(master)
        os.close(slave)
    assert b"replay [" in seen and b"%" in seen
    assert re.search(rb"[0-9,]+ events/s  event time 2025-11-22T08:[0-9:]+Z", seen), seen[-300:]
    piped = subprocess.run([*SHIFTWATCH, "replay", str(events_file), "--snapshot-interval", "10"], capture_output=True, timeout=300, env=env, check=True)
    assert b"replay [" not in piped.stderr


def _reference_replay(path: Path, *args: str) -> bytes:
    """Replay as it was done before batched decoding: each line decoded alone, 1000 lines
    per pipeline batch. The batched replay must write exactly these bytes."""
    import io

    from stream.events import Decoded, Source
    from stream.replay import write_output
    from stream.settings import resolve

    flags = {}
    for i in range(0, len(args), 2):
        flags[args[i].lstrip("-").replace("-", "_")] = args[i + 1]
    pipeline = resolve(flags, env={}).make_pipeline()
    sink = io.StringIO()
    batch, n = Decoded(), 0
    lines = [line.rstrip(b"\r\n") for line in path.read_bytes().splitlines(keepends=True)]
    for lineno, raw in enumerate((x for x in lines if x.strip()), start=1):
        batch.extend(pipeline.decoder.decode(raw, Source(str(path), 0, lineno)))
        n += 1
        if n >= 1000:
            write_output(pipeline.process(batch), sink, {"snapshot", "shift", "retraction", "dead_letter"})
            batch, n = Decoded(), 0
    write_output(pipeline.process(batch), sink, {"snapshot", "shift", "retraction", "dead_letter"})
    write_output(pipeline.flush(), sink, {"snapshot", "shift", "retraction", "dead_letter"})
    return sink.getvalue().encode("utf-8")


POISON = [
    rb'{"key": "\ud800", "value": 1, "ts": 1763800000}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    rb'[{"key": "ok", "value": 2, "ts": 1763800001}, {"key": "\udc00x", "value": 1, "ts": 1763800000}]',
    rb'{"key": "\ud83d\ude00", "value": 1, "ts": 1763800002}',
    b'{"key": "ok", "value": 3, "ts": 1763800003250}',
]


def test_batched_replay_writes_the_bytes_of_line_by_line_decoding(events_file, tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    lines = events_file.read_bytes().splitlines()
    # poison among good lines, blank lines, CRLF endings, a batch boundary crossed
    lines[998:998] = POISON + [b"", b"   "]
    mixed.write_bytes(b"\r\n".join(lines[:4000]) + b"\n")
    for path in (events_file, mixed):
        out = replay(str(path), "--snapshot-interval", "10").stdout
        assert out == _reference_replay(path, "--snapshot-interval", "10")
    records = [json.loads(line) for line in out.decode("utf-8").splitlines()]
    dead = {d["source"]["offset"]: (d["reason"], d["error"]) for d in records if d["type"] == "dead_letter"}
    assert [dead[o][0] for o in range(999, 1005) if o in dead] == ["bad_key", "too_deep", "too_deep", "bad_key", "bad_timestamp"]
    assert "not valid Unicode" in dead[999][1] and "looks like epoch milliseconds" in dead[1004][1]
    assert any(r.get("key") == "\U0001F600" for r in records if r["type"] == "snapshot")


def test_replay_of_access_logs_by_field_mapping(tmp_path):
    path = tmp_path / "access.jsonl"
    rows = []
    for i in range(600):
        route = "/api/cart" if i % 2 else "/api/pay"
        rows.append(json.dumps({"service": {"name": "cart"}, "http": {"route": route}, "duration_ms": 10 + i % 7, "@timestamp": 1767607200000 + i * 100}))
    rows.append(json.dumps({"service": {"name": "cart"}, "http": {}, "duration_ms": 1, "@timestamp": 1767607200000}))
    path.write_text("\n".join(rows) + "\n")
    out = replay(
        str(path), "--key-fields", "service.name,http.route", "--value-field", "duration_ms", "--ts-field", "@timestamp",
        "--ts-unit", "ms", "--snapshot-interval", "10",
    ).stdout
    records = [json.loads(line) for line in out.splitlines()]
    snaps = [r for r in records if r["type"] == "snapshot"]
    assert {s["key"] for s in snaps} == {"cart|/api/cart", "cart|/api/pay"}
    assert all(s["labels"] == {"service.name": "cart", "http.route": s["key"].split("|")[1]} for s in snaps)
    assert sum(s["count"] for s in snaps) == 600 and snaps[0]["start"] == 1767607200.0
    dead = [r for r in records if r["type"] == "dead_letter"]
    assert [(d["reason"], d["source"]["offset"]) for d in dead] == [("missing_field", 601)] and "http.route" in dead[0]["error"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--value-field", "a..b"], b"--value-field: must be dotted names"),
        (["--key-fields", "a,a"], b"--key-fields: must not repeat a field"),
        (["--ts-unit", "minutes"], b"--ts-unit"),
    ],
)
def test_bad_field_mapping_options_are_one_line_errors(args, message):
    r = subprocess.run([*SHIFTWATCH, "replay", "-", *args], capture_output=True, timeout=60, input=b"")
    assert r.returncode == 2 and message in r.stderr and b"Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_file_name_that_is_not_utf8_still_gives_valid_dead_letters(tmp_path):
    import os

    path = os.path.join(os.fsencode(tmp_path), b"events-\xff.jsonl")
    with open(path, "wb") as fh:
        fh.write(b'{"key": "a", "value": 1, "ts": 1763800000}\nnot json\n')
    out = subprocess.run([*SHIFTWATCH, "replay", os.fsdecode(path), "--emit", "dead_letter"], capture_output=True, timeout=60, check=True).stdout
    (dead,) = [json.loads(line) for line in out.decode("utf-8").splitlines()]
    assert dead["reason"] == "invalid_json" and dead["source"]["topic"].endswith("events-\ufffd.jsonl")
