"""Coverage-guided fuzzing of the decoder and the checkpoint reader with atheris.

Run by tests/test_fuzz_atheris.py for a bounded number of inputs; run by hand for
longer: ``python tests/fuzz_decoder.py -atheris_runs=1000000``.
"""

import math
import sys

import atheris

with atheris.instrument_imports():
    from stream.checkpoint import CheckpointError, decode_key_state
    from stream.events import REASONS, DecodeLimits, Decoder
    from stream.pipeline import PipelineConfig

DECODER = Decoder(limits=DecodeLimits(max_message_bytes=4096))
CONFIG = PipelineConfig()


def test_one(data: bytes) -> None:
    out = DECODER.decode(data)
    assert len(out.keys) == len(out.values) == len(out.ts)
    for v, t in zip(out.values, out.ts):
        assert math.isfinite(v) and v >= 0 and math.isfinite(t)
    for d in out.dead:
        assert d.reason in REASONS and d.error
    try:
        decode_key_state("k", data, CONFIG)
    except CheckpointError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
