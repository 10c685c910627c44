"""IncidentGrouper: a fleet-wide change pages once, deterministically, and survives a checkpoint."""

from __future__ import annotations

import json

import pytest

from stream.incidents import IncidentConfig, IncidentGrouper, incident_id
from stream.records import MetricMove, ShiftEvent, event_id

I = 30.0
T0 = 1_763_800_000.0


def shift(key: str, at: float, direction: str = "regression", labels: dict | None = None, kind: str = "shift") -> dict:
    ev = ShiftEvent(kind, event_id(key, at), key, at, at + 10 * I, direction, 1e-9,
                    (MetricMove("p99", 0.1, 0.2, 1.0, 1e-9),), 30, 10, 3000, 1000, I, "edivisive").to_json()
    if labels is not None:
        ev["labels"] = labels
    return ev


def feed(g: IncidentGrouper, events) -> list[dict]:
    return [inc.to_json() for e in events for inc in g.update(e)]


def test_three_keys_within_the_window_make_one_incident_then_updates_with_the_same_id():
    g = IncidentGrouper()
    evs = [shift("a", T0), shift("b", T0 + I), shift("c", T0 + 2 * I), shift("d", T0 + 3 * I)]
    out = feed(g, evs)
    assert len(out) == 2
    first, upd = out
    assert first["type"] == "incident" and first["version"] == 1 and first["update"] is False
    assert first["keys"] == ["a", "b", "c"]
    assert first["shift_ids"] == sorted(e["id"] for e in evs[:3])
    assert first["id"] == incident_id([e["id"] for e in evs[:3]])
    assert (first["first_at"], first["last_at"]) == (T0, T0 + 2 * I)
    assert first["detected_at"] == evs[2]["detected_at"]
    assert upd["id"] == first["id"] and upd["update"] is True
    assert upd["keys"] == ["a", "b", "c", "d"] and upd["last_at"] == T0 + 3 * I


def test_too_far_apart_or_opposite_directions_or_same_key_make_no_incident():
    g = IncidentGrouper()
    assert feed(g, [shift("a", T0), shift("b", T0 + 2 * I), shift("c", T0 + 3.5 * I)]) == []
    g = IncidentGrouper()
    assert feed(g, [shift("a", T0), shift("b", T0 + I, "improvement"), shift("c", T0 + 2 * I)]) == []
    g = IncidentGrouper()
    assert feed(g, [shift("a", T0), shift("a", T0 + I), shift("b", T0 + 2 * I)]) == []


def test_min_keys_and_window_are_configurable():
    g = IncidentGrouper(IncidentConfig(min_keys=2, window_intervals=1.0))
    out = feed(g, [shift("a", T0), shift("b", T0 + 2 * I), shift("c", T0 + 2.5 * I)])
    assert [o["keys"] for o in out] == [["b", "c"]]
    with pytest.raises(ValueError):
        IncidentConfig(min_keys=1)


def test_shared_labels_are_those_every_member_has():
    g = IncidentGrouper()
    out = feed(g, [
        shift("a", T0, labels={"env": "prod", "service": "a"}),
        shift("b", T0 + I, labels={"env": "prod", "service": "b"}),
        shift("c", T0 + I, labels={"env": "prod", "region": "eu"}),
    ])
    assert out[0]["labels"] == {"env": "prod"}
    g = IncidentGrouper()
    out = feed(g, [shift("a", T0, labels={"env": "prod"}), shift("b", T0), shift("c", T0, labels={"env": "prod"})])
    assert out[0]["labels"] == {}


def test_out_of_order_at_within_the_window_still_groups():
    g = IncidentGrouper()
    out = feed(g, [shift("b", T0 + 2 * I), shift("a", T0), shift("c", T0 + I)])
    assert len(out) == 1 and out[0]["first_at"] == T0 and out[0]["last_at"] == T0 + 2 * I


def test_a_retracted_pending_shift_does_not_count():
    g = IncidentGrouper()
    a = shift("a", T0)
    r = dict(a, type="retraction")
    assert feed(g, [a, r, shift("b", T0 + I), shift("c", T0 + I)]) == []


def test_old_shifts_are_forgotten_so_memory_is_bounded():
    g = IncidentGrouper(IncidentConfig(max_pending=50))
    feed(g, [shift(f"k{i}", T0 + i * 10 * I) for i in range(1000)])
    assert sum(len(v) for v in g._pending.values()) <= 3
    g = IncidentGrouper(IncidentConfig(max_pending=50, window_intervals=1e9, retain_intervals=1e9, min_keys=10_000))
    feed(g, [shift(f"k{i}", T0 + i) for i in range(200)])
    assert sum(len(v) for v in g._pending.values()) == 50


def test_same_input_gives_the_same_bytes_and_state_round_trips_mid_stream():
    evs = [shift(f"k{i % 7}", T0 + (i // 3) * I, "regression" if i % 5 else "improvement", {"env": "prod"}) for i in range(60)]
    whole = feed(IncidentGrouper(), evs)
    assert whole, "the fixture must produce incidents"
    assert json.dumps(whole) == json.dumps(feed(IncidentGrouper(), evs))
    g = IncidentGrouper()
    head = feed(g, evs[:25])
    g2 = IncidentGrouper.from_bytes(g.to_bytes())
    assert g2.to_bytes() == g.to_bytes()
    assert head + feed(g2, evs[25:]) == whole


def test_shift_event_objects_are_accepted_and_bad_state_raises_valueerror():
    g = IncidentGrouper()
    evs = [ShiftEvent("shift", event_id(k, T0), k, T0, T0, "regression", 1e-9, (), 1, 1, 1, 1, I, "x") for k in "abc"]
    assert len([i for e in evs for i in g.update(e)]) == 1
    for ev in ({}, {"type": "shift", "id": "x"}, {"type": "shift", "id": "x", "key": "k", "at": "soon"}, None):
        with pytest.raises(ValueError):
            g.update(ev)
    for bad in (b"", b"\x09{}", b"\x01not json", b"\x01{}"):
        with pytest.raises(ValueError):
            IncidentGrouper.from_bytes(bad)
