"""Coverage-guided fuzzing of the decoder and the checkpoint reader with atheris.

Each input is used twice: as raw message bytes, and as the choices of a small JSON
grammar (escapes including lone surrogates, number edges, NaN literals, duplicate keys,
deep nesting), so the fuzzer reaches the decoder's checks and not only the parser's
refusals. Every message must end as events or dead letters, the fast and exact paths
must agree, and no accepted key may hold a lone surrogate.

Run by tests/test_fuzz_atheris.py for a bounded number of inputs; run by hand for
longer: ``python tests/fuzz_decoder.py -atheris_runs=1000000``.
"""

import json
import math
import sys

import atheris

with atheris.instrument_imports():
    from stream.checkpoint import CheckpointError, decode_key_state
    from stream.events import REASONS, DecodeLimits, Decoder, Source
    from stream.pipeline import PipelineConfig

LIMITS = DecodeLimits(max_message_bytes=4096)
DECODERS = (
    Decoder(limits=LIMITS),
    Decoder(limits=LIMITS, ts_unit="ms"),
    Decoder(limits=LIMITS, key_fields=("key", "x.y"), value_field="value", ts_field="ts"),
)
CONFIG = PipelineConfig()

ESCAPES = ['\\"', "\\\\", "\\n", "\\u00e9", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\u0000", "\\x41", "\\u12"]
NUMBERS = ["0", "-0", "12.5", "1e308", "1e309", "1e-400", "4.9e-324", "1" + "0" * 30, "9" * 400, "1763800000",
           "1763800000250", "1763800000250000000", "NaN", "Infinity", "-Infinity", "-1", "01", "1."]
FIELDS = ['"key"', '"value"', '"ts"', '"values"', '"x"', '"y"']


def _string(fdp: atheris.FuzzedDataProvider) -> str:
    parts = []
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        if fdp.ConsumeBool():
            parts.append(ESCAPES[fdp.ConsumeIntInRange(0, len(ESCAPES) - 1)])
        else:
            parts.append(fdp.ConsumeUnicodeNoSurrogates(3).replace("\\", "").replace('"', ""))
    return '"' + "".join(parts) + '"'


def _value(fdp: atheris.FuzzedDataProvider, depth: int) -> str:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind == 0 and depth < 4:
        return "[" + ",".join(_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))) + "]"
    if kind == 1 and depth < 4:
        return _object(fdp, depth + 1)
    if kind == 2:
        d = fdp.ConsumeIntInRange(1, 2000)
        return "[" * d + "]" * d
    if kind in (3, 4):
        return NUMBERS[fdp.ConsumeIntInRange(0, len(NUMBERS) - 1)]
    if kind == 5:
        return ("true", "false", "null", '"2025-11-22T08:26:40Z"')[fdp.ConsumeIntInRange(0, 3)]
    return _string(fdp)


def _object(fdp: atheris.FuzzedDataProvider, depth: int) -> str:
    members = []
    for _ in range(fdp.ConsumeIntInRange(0, 5)):
        name = FIELDS[fdp.ConsumeIntInRange(0, len(FIELDS) - 1)] if fdp.ConsumeBool() else _string(fdp)
        members.append(f"{name}:{_value(fdp, depth)}")
    return "{" + ",".join(members) + "}"


def grammar_message(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        doc = "[" + ",".join(_object(fdp, 1) for _ in range(fdp.ConsumeIntInRange(1, 4))) + "]"
    else:
        doc = _object(fdp, 1)
    return ("\ufeff" if fdp.ConsumeIntInRange(0, 15) == 0 else "").encode() + doc.encode("utf-8")


def check(decoder: Decoder, raw: bytes) -> None:
    out = decoder.decode(raw)
    exact = decoder._decode(raw, None, None, fast=False)
    assert (out.keys, out.values, out.ts, out.labels) == (exact.keys, exact.values, exact.ts, exact.labels)
    assert [(d.reason, d.error, d.index) for d in out.dead] == [(d.reason, d.error, d.index) for d in exact.dead]
    assert len(out.keys) == len(out.values) == len(out.ts)
    for k in out.keys:
        k.encode("utf-8")
    for v, t in zip(out.values, out.ts):
        assert math.isfinite(v) and v >= 0 and math.isfinite(t)
    for d in out.dead:
        assert d.reason in REASONS and d.error
        json.dumps(d.to_json(), ensure_ascii=False).encode("utf-8")


GOOD = b'{"key":"a","value":1,"ts":1763800000,"x":{"y":"b"}}'


def check_batch(decoder: Decoder, raws: list[bytes]) -> None:
    """decode_batch (which parses runs of records jointly) equals the records one by one."""
    items = [(r, i, None) for i, r in enumerate(raws)]
    batch = decoder.decode_batch(items, "t", 0)
    keys, values, ts, dead = [], [], [], []
    for raw, off, _ in items:
        one = decoder.decode(raw, Source("t", 0, off))
        keys += one.keys
        values += one.values
        ts += one.ts
        dead += one.dead
    assert (batch.keys, batch.values, batch.ts, batch.dead) == (keys, values, ts, dead)


def test_one(data: bytes) -> None:
    for decoder in DECODERS:
        check(decoder, data)
    message = grammar_message(data)
    for decoder in DECODERS:
        check(decoder, message)
        check_batch(decoder, [GOOD, data, GOOD, message, GOOD])
        check_batch(decoder, [GOOD, message[: len(message) // 2], message[len(message) // 2 :], GOOD])
    try:
        decode_key_state("k", data, CONFIG)
    except CheckpointError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
