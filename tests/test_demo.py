"""`shiftwatch demo` (the README's first command) shows the shift within 30 seconds,
serves /metrics, and the live page renders it in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from worker_proc import free_port

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def start_demo(port: int, duration: float, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "demo", "--duration", str(duration), "--web-port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def get(port: int, path: str) -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()


def test_demo_prints_a_shift_within_30_seconds():
    port = free_port()
    start = time.time()
    proc = start_demo(port, 30)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    shift_lines = [l for l in out.splitlines() if l.startswith("SHIFT ")]
    assert len(shift_lines) == 1, out
    ev = json.loads(shift_lines[0][len("SHIFT "):])
    assert ev["key"] == "checkout" and ev["direction"] == "regression"
    assert ev["metrics"][0]["relative_change"] > 0.3
    assert "=> checkout: regression" in out
    assert time.time() - start < 60


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_live_page_in_headless_chromium():
    browser = chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (scripts/install-system-deps.sh installs it)")
        pytest.skip("chromium is not installed")
    port = free_port()
    proc = start_demo(port, 60, "--quiet")
    try:
        deadline = time.time() + 40
        state = {}
        while time.time() < deadline:
            try:
                state = json.loads(get(port, "/api/state"))
                if state["shifts"]:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert state.get("shifts"), "the demo should have fired its shift"
        metrics = get(port, "/metrics").decode()
        assert 'shiftwatch_shifts_total{direction="regression",key="checkout"} 1.0' in metrics
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "live-page.png"
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={ARTIFACTS / 'chromium-profile'}", "--window-size=1400,800", "--virtual-time-budget=4000",
        ]
        url = f"http://127.0.0.1:{port}/"
        dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        for key in ("checkout", "search", "login", "payments"):
            assert f'data-key="{key}"' in dom, dom[:2000]
        assert "checkout: regression at" in dom
        assert f'data-id="{state["shifts"][0]["id"]}"' in dom
        subprocess.run([browser, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        print(f"screenshot kept at {shot}")
    finally:
        proc.kill()
        proc.wait(10)
