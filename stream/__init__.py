"""shiftwatch: per-key streaming percentiles and shift detection next to Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shiftwatch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"
