"""Two-stage topology on the real broker: the answer must not depend on how the producer
partitions. One seeded data set goes to a 4-partition input topic keyed by the event key
and, separately, with no key, round-robin over the partitions; two workers share each
run. Shift events, exact counts and per-key percentiles must agree between the runs, a
``kill -9`` of one worker must change none of them, and ``--topology keyed`` still works."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from datagen import T0, shift_stream
from worker_proc import Topics, WorkerProc, consume_until, json_values, produce_to, run

pytestmark = pytest.mark.kafka

KEYS = tuple("ABCDEF")
SHIFTED = ("A", "D")
PARTITIONS = 4
PER_MESSAGE = 30
SHIFT_AT = T0 + 300  # window 30 of 45, 10 s windows
ARGS = ("--snapshot-interval", "10", "--merge-grace", "20")


def dataset(seed: int = 11) -> tuple[list[tuple[str, bytes]], dict[str, np.ndarray]]:
    """(key, JSON array of that key's events) in time order, and each key's values (ms)."""
    msgs: list[tuple[float, str, bytes]] = []
    values: dict[str, np.ndarray] = {}
    for i, key in enumerate(KEYS):
        ev, vals = shift_stream(snapshots=45, shift_snapshot=30, per_snapshot=60, factor=1.6 if key in SHIFTED else 1.0, seed=seed + i, keys=(key,), shifted=key)
        values[key] = vals[key]
        for j in range(0, len(ev), PER_MESSAGE):
            chunk = ev[j : j + PER_MESSAGE]
            msgs.append((chunk[0]["ts"], key, json.dumps(chunk).encode()))
    msgs.sort()
    return [(k, m) for _, k, m in msgs], values


def keyed(msgs: list[tuple[str, bytes]]) -> list[tuple[int | None, bytes | None, bytes]]:
    return [(None, k.encode(), m) for k, m in msgs]


def unkeyed(msgs: list[tuple[str, bytes]]) -> list[tuple[int | None, bytes | None, bytes]]:
    """Key None; message i to partition i mod 4, so every partition holds every key."""
    return [(i % PARTITIONS, None, m) for i, (_, m) in enumerate(msgs)]


# -- reading the workers' metrics ----------------------------------------------------------

def samples(*workers: WorkerProc) -> list:
    return [s for w in workers for f in text_string_to_metric_families(w.metrics()) for s in f.samples]


def key_counts(*workers: WorkerProc) -> dict[str, float]:
    """Per-key all-time ``_count`` of the latency histogram, summed over the workers."""
    out: dict[str, float] = {}
    for s in samples(*workers):
        if s.name == "shiftwatch_latency_seconds_count":
            out[s.labels["key"]] = out.get(s.labels["key"], 0) + s.value
    return out


def accepted(*workers: WorkerProc) -> float:
    return sum(s.value for s in samples(*workers) if s.name == "shiftwatch_events_accepted_total")


def bucket_quantiles(*workers: WorkerProc, qs: tuple[float, ...] = (0.5, 0.99)) -> dict[str, list[float]]:
    """histogram_quantile over ``sum by (key, le)`` of the workers' ``_bucket`` series (seconds)."""
    cum: dict[str, dict[float, float]] = {}
    for s in samples(*workers):
        if s.name == "shiftwatch_latency_seconds_bucket":
            le = float(s.labels["le"])
            d = cum.setdefault(s.labels["key"], {})
            d[le] = d.get(le, 0.0) + s.value
    out = {}
    for key, d in cum.items():
        les = sorted(d)
        counts = np.array([d[le] for le in les])
        out[key] = [_interpolate(les, counts, q) for q in qs]
    return out


def _interpolate(les: list[float], cum: np.ndarray, q: float) -> float:
    """Prometheus's rule: linear inside the bucket holding rank q * total."""
    rank = q * cum[-1]
    i = int(np.searchsorted(cum, rank))
    lo, hi = (les[i - 1] if i else 0.0), les[i]
    below = cum[i - 1] if i else 0.0
    return lo + (hi - lo) * (rank - below) / (cum[i] - below)


def snapshot_gauges(*workers: WorkerProc) -> dict[str, dict[str, float]]:
    """Last closed snapshot's percentiles per key, from the worker holding most of the key."""
    best: dict[str, tuple[float, dict[str, float]]] = {}
    for w in workers:
        ss = samples(w)
        counts = {s.labels["key"]: s.value for s in ss if s.name == "shiftwatch_latency_seconds_count"}
        for key, n in counts.items():
            snap = {s.labels["percentile"]: s.value for s in ss if s.name == "shiftwatch_snapshot_latency_seconds" and s.labels["key"] == key}
            if snap and n > best.get(key, (-1, {}))[0]:
                best[key] = (n, snap)
    return {k: v for k, (_, v) in best.items()}


def wait_counts(expected: dict[str, int], *workers: WorkerProc, timeout: float = 150.0) -> dict[str, float]:
    deadline, got = time.time() + timeout, {}
    while time.time() < deadline:
        try:
            got = key_counts(*workers)
        except OSError:
            pass
        if all(got.get(k, 0) >= n for k, n in expected.items()):
            return got
        time.sleep(0.5)
    return got


def shift_docs(bootstrap: str, topics: Topics) -> list[tuple]:
    """(type, id, key, at, direction) of every shift and retraction on the change topic."""
    recs = run(consume_until(bootstrap, topics.shifts, lambda r: sum(json.loads(x.value)["type"] == "shift" for x in r) >= len(SHIFTED), timeout=90, settle=5))
    docs = [d for d in json_values(recs) if d["type"] in ("shift", "retraction")]
    return sorted((d["type"], d["id"], d["key"], d["at"], d.get("direction")) for d in docs)


def assert_true_shifts(docs: list[tuple]) -> None:
    shifts = [d for d in docs if d[0] == "shift"]
    assert len({d[1] for d in shifts}) == len(shifts), docs  # no shift twice
    retracted = {d[1] for d in docs if d[0] == "retraction"}
    standing = [d for d in shifts if d[1] not in retracted]
    assert sorted(d[2] for d in standing) == sorted(SHIFTED), docs
    assert all(abs(d[3] - SHIFT_AT) <= 30 for d in standing), docs


# -- runs ------------------------------------------------------------------------------------

def two_worker_run(broker, tmp_path, messages, *extra: str, kill_after: float | None = None, seconds: float = 0.0, pause: float = 0.0, wait: float = 150.0) -> dict:
    """Two workers in one group read ``messages`` (or a list of phases, ``pause`` s apart);
    optionally one is killed -9 mid-stream."""
    b = broker.bootstrap
    topics = Topics()
    broker.create_topic(topics.events, PARTITIONS)
    w1 = WorkerProc(b, topics, tmp_path, *ARGS, *extra, name=f"{topics.prefix}-1").launch()
    w2 = WorkerProc(b, topics, tmp_path, *ARGS, *extra, name=f"{topics.prefix}-2").launch()
    try:
        w1.wait_ready(), w2.wait_ready()
        phases = messages if messages and isinstance(messages[0], list) else [messages]

        def feed() -> None:  # phase after phase, a pause between (a source behind the others)
            for i, phase in enumerate(phases):
                time.sleep(pause if i else 0.0)
                run(produce_to(b, topics.events, phase, seconds=seconds))

        prod = threading.Thread(target=feed, daemon=True)
        prod.start()
        before = None
        if kill_after is not None:
            time.sleep(kill_after)
            before = accepted(w2)
            w2.kill()  # SIGKILL: no revoke, no shutdown checkpoint
        prod.join(120)
        alive = (w1,) if kill_after is not None else (w1, w2)
        _, values = dataset()
        counts = wait_counts({k: len(v) for k, v in values.items()}, *alive, timeout=wait)
        time.sleep(2)  # anything extra (a double-counted partial) would show by now
        return {
            "counts": key_counts(*alive), "accepted": accepted(*alive), "quantiles": bucket_quantiles(*alive),
            "snapshots": snapshot_gauges(*alive), "shifts": shift_docs(b, topics), "before_kill": before,
            "waited": counts, "per_worker": [accepted(w) for w in alive],
            "counters": {n: sum(s.value for s in samples(*alive) if s.name == n) for n in ("shiftwatch_events_late_total", "shiftwatch_events_replayed_total")},
            "logs": "\n".join(w.tail(20) for w in alive),
        }
    finally:
        w1.stop()
        w2.stop()


@pytest.fixture(scope="module")
def runs(kafka_broker, tmp_path_factory) -> dict[str, dict]:
    msgs, _ = dataset()
    out = {}
    for name, spread in (("keyed", keyed), ("unkeyed", unkeyed)):
        t = time.time()
        out[name] = two_worker_run(kafka_broker, tmp_path_factory.mktemp(name), spread(msgs))
        out[name]["seconds"] = time.time() - t
    return out


def test_same_answer_keyed_and_unkeyed_over_two_workers(runs):
    _, values = dataset()
    expected = {k: len(v) for k, v in values.items()}
    for name, r in runs.items():
        assert r["counts"] == expected, (name, r["counts"], r["logs"])
        assert r["accepted"] == sum(expected.values()), (name, r["accepted"])
        assert all(n > 0 for n in r["per_worker"]), (name, r["per_worker"])  # both workers took part
        assert_true_shifts(r["shifts"])
    assert runs["keyed"]["shifts"] == runs["unkeyed"]["shifts"]  # same keys, at, ids
    kq, uq = runs["keyed"]["quantiles"], runs["unkeyed"]["quantiles"]
    assert sorted(kq) == sorted(uq) == sorted(KEYS)
    for key in KEYS:
        exact = np.percentile(values[key], [50, 99]) / 1000.0
        for a, b, e in zip(kq[key], uq[key], exact):
            assert abs(a - b) <= 0.02 * b, (key, kq[key], uq[key])
            assert abs(a - e) <= 0.05 * e, (key, kq[key], exact)  # bucket width 2^(1/16)
    ks, us = runs["keyed"]["snapshots"], runs["unkeyed"]["snapshots"]
    assert sorted(ks) == sorted(us) == sorted(KEYS)
    for key in KEYS:
        assert ks[key].keys() == us[key].keys() and ks[key]
        for p in ks[key]:
            assert abs(ks[key][p] - us[key][p]) <= 0.02 * us[key][p], (key, ks[key], us[key])


def test_kill_9_of_one_of_two_workers_on_unkeyed_input(kafka_broker, tmp_path, runs):
    msgs, values = dataset()
    expected = {k: len(v) for k, v in values.items()}
    r = two_worker_run(kafka_broker, tmp_path, unkeyed(msgs), kill_after=6.0, seconds=12.0)
    assert r["before_kill"] and r["before_kill"] > 0, "the killed worker must have taken part"
    assert r["before_kill"] < sum(expected.values()) / 2, "the kill must land mid-stream"
    assert r["counts"] == expected, (r["counts"], expected, r["logs"])  # no lost window, no partial twice
    assert r["shifts"] == runs["unkeyed"]["shifts"]  # no duplicate or missing shift, same ids
    for key in KEYS:
        for a, b in zip(r["quantiles"][key], runs["unkeyed"]["quantiles"][key]):
            assert abs(a - b) <= 0.02 * b, (key, r["quantiles"][key])


def test_source_partitions_far_apart_in_event_time(kafka_broker, tmp_path, runs):
    """Partitions 0 and 1 are read to the end (450 s of event time) before 2 and 3 get
    their first message: lateness is judged per source, and the merge waits for the slow
    sources, so the answer equals the run where all four arrived together."""
    msgs, values = dataset()
    spread = unkeyed(msgs)
    ahead, behind = [m for m in spread if m[0] in (0, 1)], [m for m in spread if m[0] in (2, 3)]
    # Partitions 2 and 3 are empty for a while, not behind a backlog: tell the workers so
    # (--empty-partition-after 0), else they would announce themselves empty after 10 s.
    r = two_worker_run(kafka_broker, tmp_path, [ahead, behind], "--empty-partition-after", "0", pause=5.0, wait=45.0)
    assert r["counts"] == {k: len(v) for k, v in values.items()}, (r["counts"], r["counters"], r["accepted"])
    assert r["accepted"] == sum(len(v) for v in values.values())
    assert r["shifts"] == runs["unkeyed"]["shifts"]
    for key, qs in runs["unkeyed"]["snapshots"].items():
        assert r["snapshots"][key] == pytest.approx(qs, rel=0.02), key


def test_keyed_topology_end_to_end(kafka_broker, tmp_path):
    b = kafka_broker.bootstrap
    topics = Topics()
    kafka_broker.create_topic(topics.events, PARTITIONS)
    msgs, values = dataset()
    expected = {k: len(v) for k, v in values.items()}
    w = WorkerProc(b, topics, tmp_path, *ARGS, "--topology", "keyed", name="keyed").start()
    try:
        run(produce_to(b, topics.events, keyed(msgs)))
        assert wait_counts(expected, w) == expected, w.tail()
        assert accepted(w) == sum(expected.values())
        assert_true_shifts(shift_docs(b, topics))
    finally:
        w.stop()


# -- stage 2 in-process: an idle merge waits out the grace of a source still behind ----------

class _Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.timestamp, self.value = offset, 0, value


def test_idle_merge_stage_waits_for_a_source_within_the_grace():
    """Source 0 of 2 reported windows 0-9, source 1 has not yet (it is behind). The merge
    stage going idle must not close those windows before ``merge_grace`` has passed."""
    from stream.merge import MergeState
    from stream.partials import SourceWatermark, encode_partial, encode_watermark, partial_of
    from stream.pipeline import PipelineConfig
    from stream.window import Window

    now = [0.0]
    m = MergeState(PipelineConfig(snapshot_interval_s=10.0, stage="merge"), merge_grace_s=30.0, clock=lambda: now[0])
    recs = []
    for w in range(10):
        win = Window(1024)
        win.update_many(np.full(50, 40.0 + w))
        recs.append(encode_partial(partial_of("A", int(T0 // 10) + w, 0, win, (), 1024)))
    recs.append(encode_watermark(SourceWatermark(0, 2, T0 + 100)))
    out = m.process_records("app-partials", 0, [_Rec(i, v) for i, v in enumerate(recs)])
    assert not out.snapshots  # source 1 not heard from, within the grace
    now[0] = 12.0  # the worker's idle close (idle_close_after 10 s), still within the grace
    assert not m.advance_to(T0 + 112).snapshots
    now[0] = 31.0  # source 1 silent past the grace: the windows close
    assert len(m.advance_to(T0 + 131).snapshots) == 10


def test_merge_stage_skips_an_empty_source_and_takes_it_back_when_it_speaks():
    """Source 1 of 2 announced itself empty (+inf): source 0's watermark alone closes
    windows. Source 1's partial of a window already closed counts all-time as late;
    after its finite watermark stage 2 waits for it again."""
    from stream.merge import MergeState
    from stream.partials import SourceWatermark, encode_partial, encode_watermark, partial_of
    from stream.pipeline import PipelineConfig
    from stream.window import Window

    w0 = int(T0 // 10)

    def part(w: int, source: int, n: int = 50) -> bytes:
        win = Window(1024)
        win.update_many(np.full(n, 40.0 + w))
        return encode_partial(partial_of("A", w0 + w, source, win, (), 1024))

    m = MergeState(PipelineConfig(snapshot_interval_s=10.0, stage="merge"), merge_grace_s=300.0, clock=lambda: 0.0)
    feed = lambda *vs: m.process_records("app-partials", 0, [_Rec(i, v) for i, v in enumerate(vs)])  # noqa: E731
    recs = [encode_watermark(SourceWatermark(1, 2, math.inf))] + [part(w, 0) for w in range(10)]
    out = feed(*recs, encode_watermark(SourceWatermark(0, 2, T0 + 100)))
    assert len(out.snapshots) == 10  # no grace waited for the empty source
    out = feed(part(3, 1, n=7))
    assert not out.snapshots and m.stats.late == 7
    st = m.parts[0].pipeline.states["A"]
    assert st.moments.count == 10 * 50 + 7  # late, yet counted all-time
    out = feed(encode_watermark(SourceWatermark(1, 2, T0 + 100)), part(10, 0), encode_watermark(SourceWatermark(0, 2, T0 + 120)))
    assert not out.snapshots  # source 1 is back: window 10 waits for its watermark
    out = feed(encode_watermark(SourceWatermark(1, 2, T0 + 120)))
    assert len(out.snapshots) == 1
