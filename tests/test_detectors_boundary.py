"""detectors stays a leaf: numpy/scipy only, no stream, Faust, Kafka or Prometheus."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_detectors_pulls_in_no_stream_or_io_packages():
    code = (
        "import sys, detectors, detectors.mdl, detectors.talos, detectors.perfherder\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('stream', 'faust', 'aiokafka', 'prometheus_client', 'mode', 'sketches')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_names():
    import detectors

    for name in ("EDivisive", "StreamingEDivisive", "SnapshotShiftDetector", "ChangePoint", "ShiftDecision", "MetricChange"):
        assert hasattr(detectors, name)
