"""A bounded atheris run: the decoder (raw bytes and JSON-grammar messages, fast = exact)
and the checkpoint reader survive coverage-guided input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_atheris_finds_no_crash(tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate([b'{"key":"a","value":1,"ts":1}', b'[{"key":"a","value":1,"ts":"2025-01-01T00:00:00Z"}]', b'{"key":"a","values":[1,2],"ts":[1,2]}']):
        (corpus / f"seed{i}").write_bytes(seed)
    r = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fuzz_decoder.py")), "-atheris_runs=60000", "-max_len=512", str(corpus)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Done 60000 in" in r.stderr
