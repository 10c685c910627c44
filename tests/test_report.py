"""`shiftwatch shifts --file` and `shiftwatch plot` on replay output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from datagen import as_messages, shift_stream

SHIFTWATCH = [sys.executable, "-m", "stream.cli"]


@pytest.fixture(scope="module")
def replay_output(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    events, _ = shift_stream(snapshots=70, shift_snapshot=40, per_snapshot=150, seed=21)
    src = d / "events.jsonl"
    src.write_bytes(b"\n".join(as_messages(events, 50)) + b"\n")
    out = d / "replay.jsonl"
    with open(out, "wb") as fh:
        subprocess.run([*SHIFTWATCH, "replay", str(src), "--snapshot-interval", "10"], stdout=fh, check=True, timeout=300)
    return src, out


def test_shifts_table_from_a_file(replay_output):
    _, out = replay_output
    text = subprocess.run([*SHIFTWATCH, "shifts", "--file", str(out)], capture_output=True, text=True, check=True).stdout
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["at", "(UTC)", "key", "event"]
    body = [l for l in lines[2:] if l.strip()]
    assert len(body) == 1
    assert " A " in f" {body[0]} " and "regression" in body[0] and "p50" in body[0] and "ms (+" in body[0]


@pytest.mark.parametrize("which", ["replay", "events"])
def test_plot_writes_a_png_per_key(replay_output, tmp_path, which):
    pytest.importorskip("matplotlib")
    src, out = replay_output
    path = out if which == "replay" else src
    r = subprocess.run([*SHIFTWATCH, "plot", str(path), "--out", str(tmp_path), "--snapshot-interval", "10"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["A.png", "B.png"]
    for p in tmp_path.glob("*.png"):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
