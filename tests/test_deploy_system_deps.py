"""scripts/install-system-deps.sh: valid bash, reports what is missing, idempotent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-system-deps.sh"
TOOLS = ("promtool", "prometheus", "docker-compose", "chromium", "chromedriver")


def run(*args: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": path},
    )


def test_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=30)


def test_check_reports_missing_tools_and_their_packages(tmp_path):
    p = run("--check", path=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "missing promtool prometheus docker-compose chromium chromedriver" in p.stderr
    assert "apt-get install prometheus docker-compose chromium chromium-driver" in p.stderr


def test_nothing_to_do_when_all_tools_exist(tmp_path):
    for tool in TOOLS:
        stub = tmp_path / tool
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    p = run(path=str(tmp_path))  # no --check: would install if anything were missing
    assert p.returncode == 0, p.stderr
    assert "all present" in p.stdout
