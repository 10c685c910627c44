"""`shiftwatch replay` as a user runs it: a file in, JSON lines out, byte-for-byte repeatable."""

from __future__ import annotations

import json
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
    piped = subprocess.run([*SHIFTWATCH, "replay", str(events_file), "--snapshot-interval", "10"], capture_output=True, timeout=300, env=env, check=True)
    assert b"replay [" not in piped.stderr
