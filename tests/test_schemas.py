"""JSON Schemas in stream/schemas/: the documented examples, real records, and wrong documents.

Every fenced ```json block in DEVELOPERS.md and README.md is checked. A block is
bound to a schema by an HTML comment on the line(s) before it:

    <!-- schema: shift_event -->      (or input_event, dead_letter)
    <!-- schema: none -->             (a JSON block that is not an event, e.g. config)

A block without a marker is classified by its content (its "type" field, or key +
value/values for input); if that is impossible the test fails and asks for a marker.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest

from stream.events import REASONS, Decoder, Source
from stream.records import MetricMove, ShiftEvent, event_id

from datagen import as_messages, shift_stream

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "stream" / "schemas"
NAMES = ("input_event", "shift_event", "dead_letter")
DOCS = ("DEVELOPERS.md", "README.md")

FENCE = re.compile(r"^```json[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*schema:\s*([a-z_]+)\s*-->\s*$")


def load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def errors(name: str, doc: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator(name).iter_errors(doc)]


def classify(doc: object) -> str | None:
    if isinstance(doc, dict):
        t = doc.get("type")
        if t in ("shift", "retraction"):
            return "shift_event"
        if t == "dead_letter":
            return "dead_letter"
        if "key" in doc and ("value" in doc or "values" in doc):
            return "input_event"
    if isinstance(doc, list) and doc and all(isinstance(d, dict) and "key" in d for d in doc):
        return "input_event"
    return None


def doc_examples() -> list[tuple[str, str, str]]:
    """(id, schema name or 'none', json text) for every ```json block of the docs."""
    out = []
    for fname in DOCS:
        path = ROOT / fname
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            before = text[: m.start()].rstrip("\n").splitlines()[-1:] or [""]
            mk = MARKER.search(before[0])
            name = mk.group(1) if mk else ""
            out.append((f"{fname}:{line}", name, m.group(1)))
    return out


EXAMPLES = doc_examples()


# -- the schemas themselves ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12(name):
    s = load(name)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(s)


def test_reason_codes_match_the_decoder():
    assert load("dead_letter")["properties"]["reason"]["enum"] == list(REASONS)


def test_shift_event_schema_lists_exactly_the_fields_the_worker_writes():
    ev = ShiftEvent("shift", "0" * 20, "k", 1.0, 2.0, "regression", 0.01, (MetricMove("p50", 1.0, 2.0, 1.0, 0.01),), 1, 1, 1, 1, 30.0, "edivisive")
    s = load("shift_event")
    full = ShiftEvent(*[getattr(ev, f) for f in ShiftEvent.__slots__[:14]], labels=(("a", "b"),), examples_before=(0.1,), examples_after=(0.2,), pooled_windows=2)
    assert sorted(s["required"]) == sorted(ev.to_json())  # what every event carries
    assert sorted(full.to_json()) == sorted(s["properties"])  # and what some carry besides


def test_schemas_ship_with_the_package():
    toml = (ROOT / "pyproject.toml").read_text()
    assert "schemas/*.json" in toml


# -- the documentation ---------------------------------------------------------------


def test_docs_have_marked_examples():
    named = {name for _, name, _ in EXAMPLES}
    assert "shift_event" in named, "no ```json block marked <!-- schema: shift_event --> in DEVELOPERS.md/README.md"


@pytest.mark.parametrize("where,name,text", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_documented_example_validates(where, name, text):
    if name == "none":
        pytest.skip("marked <!-- schema: none -->")
    try:
        doc = json.loads(text)
    except ValueError as e:
        pytest.fail(f"{where}: the ```json block is not valid JSON ({e}); fix it or mark it differently")
    if not name:
        name = classify(doc) or ""
        assert name, f"{where}: cannot tell which schema this block follows; add <!-- schema: NAME --> before it"
    assert name in NAMES, f"{where}: unknown schema {name!r}; use one of {NAMES} or none"
    assert not errors(name, doc), f"{where} does not validate against {name}: {errors(name, doc)}"
    if name == "shift_event":
        # The example is internally consistent: at_iso is at.
        at = datetime.fromisoformat(doc["at_iso"].replace("Z", "+00:00"))
        assert at == datetime.fromtimestamp(doc["at"], tz=timezone.utc), f"{where}: at_iso does not match at"
    if name == "dead_letter":
        base64.b64decode(doc["raw_base64"], validate=True)


# Inline (single-backtick) examples of DEVELOPERS.md, kept here verbatim.
INLINE_INPUT = [
    {"key": "checkout", "value": 12.5, "ts": 1763800000.25},
    {"key": "checkout", "value": 12.5, "ts": "2025-11-22T08:26:40.25Z"},
    {"key": "checkout", "value": 12.5},
    [{"key": "checkout", "value": 12.5, "ts": 1763800000.25}, {"key": "search", "value": 3, "ts": "2025-11-22T08:26:40+01:00"}],
    {"key": "checkout", "values": [12.5, 13.0, 0], "ts": [1763800000.25, 1763800000.5, 1763800001]},
    {"key": "checkout", "values": [12.5, 13.0], "ts": 1763800000},
    [{"key": "checkout", "values": [1, 2], "ts": 1763800000}, {"key": "login", "value": 1}],
    [],
    {"key": "checkout", "value": 12.5, "ts": 1763800000.25, "host": "web-1"},
    {"key": "caf\u00e9 \U0001F600", "value": 1, "ts": 1763800000},
]


@pytest.mark.parametrize("doc", INLINE_INPUT, ids=range(len(INLINE_INPUT)))
def test_input_forms_validate(doc):
    assert not errors("input_event", doc)
    # ... and the decoder agrees: nothing is dead-lettered.
    assert not Decoder("ms").decode(json.dumps(doc).encode(), default_ts=1763800000.0).dead


# -- real records ------------------------------------------------------------------


def test_real_shift_events_validate():
    from stream.pipeline import Pipeline, PipelineConfig

    events, _ = shift_stream(snapshots=70, shift_snapshot=40, factor=1.5)
    p = Pipeline(PipelineConfig(snapshot_interval_s=10.0))
    shifts = []
    for m in as_messages(events, 100):
        shifts += p.feed(m).shifts
    shifts += p.flush().shifts
    assert shifts
    for ev in shifts:
        doc = json.loads(json.dumps(ev.to_json()))
        assert not errors("shift_event", doc), errors("shift_event", doc)
        assert doc["id"] == event_id(doc["key"], doc["at"])
    retraction = ShiftEvent("retraction", *[getattr(shifts[0], f) for f in ShiftEvent.__slots__[1:]])
    assert not errors("shift_event", retraction.to_json())


BAD_MESSAGES = [
    b"{not json",
    b"\xff\xfe",
    b"42",
    b'{"key": "a"}',
    b'{"key": "", "value": 1, "ts": 1763800000}',
    b'{"key": "a", "value": "1", "ts": 1763800000}',
    b'{"key": "a", "value": 1e999, "ts": 1763800000}',
    b'{"key": "a", "value": -5, "ts": 1763800001}',
    b'{"key": "a", "value": 1, "ts": 1763800000000}',
    b'[{"key": "a", "value": 1, "ts": 1763800000}, {"key": "a", "value": -1, "ts": 1763800000}]',
    b'{"key": "a", "values": [1, -1, "x"], "ts": 1763800000}',
    b"[" * 100000 + b"]" * 100000,
    rb'{"key": "\ud800", "value": 1, "ts": 1763800000}',
    rb'[{"key": "a\udfff", "value": 1, "ts": 1763800000}]',
]


def _finite(text: str) -> float:
    x = float(text)
    if x in (float("inf"), float("-inf")):
        raise OverflowError(text)
    return x


def test_real_dead_letters_validate_and_their_inputs_are_rejected_by_the_input_schema():
    dec = Decoder("ms")
    seen = set()
    for i, raw in enumerate(BAD_MESSAGES):
        dead = dec.decode(raw, source=Source("shiftwatch-events", 0, i)).dead + dec.decode(raw).dead
        assert dead, raw[:60]
        for d in dead:
            doc = json.loads(json.dumps(d.to_json()))
            assert not errors("dead_letter", doc), errors("dead_letter", doc)
            seen.add(d.reason)
        try:
            msg = json.loads(raw, parse_float=_finite)
        except (ValueError, RecursionError, OverflowError):
            continue  # not JSON at all (or 1e999, which Python reads as inf): nothing for a schema to say
        assert errors("input_event", msg), f"input schema accepts {raw[:60]!r}, which the decoder rejects"
    assert len(seen) >= 8, seen


# -- wrong documents are rejected -----------------------------------------------------

GOOD_SHIFT = {
    "type": "shift", "version": 1, "id": "4f1d2c0a9b8e7d6c5b4a", "key": "checkout",
    "at": 1763800400.0, "at_iso": "2025-11-22T08:33:20.000Z", "detected_at": 1763800500.0,
    "direction": "regression", "pvalue": 1.2e-09,
    "metrics": [{"metric": "p50", "before": 0.0401, "after": 0.0602, "relative_change": 0.501, "pvalue": 1.2e-09}],
    "snapshots_before": 40, "snapshots_after": 10, "samples_before": 12000, "samples_after": 3000,
    "unit": "seconds", "snapshot_interval_s": 10.0, "detector": "edivisive",
}
GOOD_DEAD = {
    "type": "dead_letter", "version": 1, "reason": "negative_value", "error": "value must be >= 0",
    "source": {"topic": "shiftwatch-events", "partition": 0, "offset": 41}, "index": None, "raw_base64": "eyJ9",
}


def changed(doc: dict, **kw) -> dict:
    out = json.loads(json.dumps(doc))
    for k, v in kw.items():
        if v is ...:
            del out[k]
        else:
            out[k] = v
    return out


WRONG = [
    ("shift_event", changed(GOOD_SHIFT, version=2)),
    ("shift_event", changed(GOOD_SHIFT, type="snapshot")),
    ("shift_event", changed(GOOD_SHIFT, direction="worse")),
    ("shift_event", changed(GOOD_SHIFT, key=...)),
    ("shift_event", changed(GOOD_SHIFT, metrics=[])),
    ("shift_event", changed(GOOD_SHIFT, metrics=[{"metric": "p50", "before": 1, "after": 2}])),
    ("shift_event", changed(GOOD_SHIFT, pvalue=1.5)),
    ("shift_event", changed(GOOD_SHIFT, unit="ms")),
    ("shift_event", changed(GOOD_SHIFT, at="1763800400")),
    ("shift_event", changed(GOOD_SHIFT, at_iso="2025-11-22 08:33:20")),
    ("shift_event", changed(GOOD_SHIFT, samples_before=1.5)),
    ("shift_event", changed(GOOD_SHIFT, extra=1)),
    ("dead_letter", changed(GOOD_DEAD, reason="oops")),
    ("dead_letter", changed(GOOD_DEAD, version="1")),
    ("dead_letter", changed(GOOD_DEAD, source={"topic": "t", "partition": -1, "offset": 0})),
    ("dead_letter", changed(GOOD_DEAD, source={"topic": "t"})),
    ("dead_letter", changed(GOOD_DEAD, index=-1)),
    ("dead_letter", changed(GOOD_DEAD, raw_base64="not base64!")),
    ("dead_letter", changed(GOOD_DEAD, raw_base64=...)),
    ("dead_letter", changed(GOOD_DEAD, index=...)),
    ("input_event", {"key": "a", "value": True, "ts": 1763800000}),
    ("input_event", {"key": "a", "value": 1, "ts": True}),
    ("input_event", {"key": "a", "value": 1, "ts": "yesterday"}),
    ("input_event", {"key": "a", "value": 1, "ts": "2025-11-22T08:33:20"}),
    ("input_event", {"key": "a" * 257, "value": 1}),
    ("input_event", {"value": 1}),
    ("input_event", {"key": "a", "values": 1}),
    ("input_event", {"key": "a", "values": [1, None]}),
    ("input_event", [{"key": "a", "value": 1}, 5]),
    ("input_event", "checkout 12.5"),
]


@pytest.mark.parametrize("name,doc", WRONG, ids=[f"{n}-{i}" for i, (n, _) in enumerate(WRONG)])
def test_wrong_documents_are_rejected(name, doc):
    assert errors(name, doc)


def test_good_fixtures_are_accepted():
    assert not errors("shift_event", GOOD_SHIFT)
    assert not errors("dead_letter", GOOD_DEAD)
    assert not errors("dead_letter", changed(GOOD_DEAD, source=None, index=3))


def test_real_incidents_and_pooled_labelled_shifts_validate():
    from stream.events import Decoder as D
    from stream.incidents import IncidentGrouper
    from stream.pipeline import Pipeline, PipelineConfig

    keys = ("a", "b", "c", "d")
    events, _ = shift_stream(snapshots=70, shift_snapshot=40, factor=1.6, keys=keys, shifted="a")
    for e in events:  # every key slows down together: a fleet-wide change
        e["value"] = e["value"] * (1.6 if e["ts"] >= events[0]["ts"] + 400 and e["key"] != "a" else 1.0)
    lines = [json.dumps({"svc": e["key"], "route": "/x", "ms": e["value"], "t": e["ts"]}).encode() for e in events]
    p = Pipeline(PipelineConfig(snapshot_interval_s=10.0, pool_min_samples=600), D(key_fields=("svc", "route"), value_field="ms", ts_field="t"))
    out = p.feed_many(lines)
    out.extend(p.flush())
    shifts = [s for s in out.shifts if s.kind == "shift"]
    assert len(shifts) >= 3 and all(s.pooled_windows == 2 for s in shifts)  # 300 a window, pooled to 600
    for s in shifts:
        assert not errors("shift_event", json.loads(json.dumps(s.to_json())))
    incidents = [i for s in shifts for i in IncidentGrouper().update(s)] or []
    g = IncidentGrouper()
    incidents = [i.to_json() for s in shifts for i in g.update(s)]
    assert incidents and incidents[0]["labels"] == {"route": "/x"}
    for doc in incidents:
        assert not errors("incident", json.loads(json.dumps(doc)))
