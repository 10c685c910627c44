"""Topics shiftwatch creates, and committed offsets that never stall (real broker)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from datagen import shift_stream
from stream.app import ensure_topics
from stream.settings import Settings
from worker_proc import Topics, WorkerProc, consume_until, json_values, produce, run

pytestmark = pytest.mark.kafka


async def _describe(bootstrap: str, topics: list[str]) -> dict[str, tuple[int, int, dict]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(40):  # just-created topics take a moment to show in the metadata
            out = {}
            for t in await admin.describe_topics(topics):
                parts = t["partitions"] or []
                out[t["topic"]] = (len(parts), len(parts[0]["replicas"]) if parts else 0, t)
            if all(n for n, _, _ in out.values()):
                break
            await asyncio.sleep(0.5)
        return out
    finally:
        await admin.close()


async def _committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp.partition: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


def test_topics_get_the_brokers_replication_factor_and_output_partitions(kafka_broker):
    t = Topics()
    settings = Settings(
        broker=f"kafka://{kafka_broker.bootstrap}", input_topic=t.events, shift_topic=t.shifts, dead_letter_topic=t.dead,
        app_id=t.app_id, partitions=3, output_partitions=2,
    )
    assert run(ensure_topics(settings)) == 3
    got = run(_describe(kafka_broker.bootstrap, [t.events, t.shifts, t.dead, f"{t.app_id}-state", f"{t.app_id}-partials", f"{t.app_id}-merge-state"]))
    assert {name: n for name, (n, _, _) in got.items()} == {
        t.events: 3, t.shifts: 2, t.dead: 2, f"{t.app_id}-state": 3, f"{t.app_id}-partials": 3, f"{t.app_id}-merge-state": 3,
    }
    assert {rf for _, rf, _ in got.values()} == {1}  # the single test broker's default.replication.factor


@pytest.mark.parametrize("topology", ["keyed", "two_stage"])
def test_a_partition_whose_last_batch_shifted_is_committed_to_its_end(kafka_broker, tmp_path, topology):
    """Issue 13, item 7: with no new input, every partition's committed offset reaches
    the end of what was processed within --checkpoint-interval."""
    b, t = kafka_broker.bootstrap, Topics()
    events, _ = shift_stream(snapshots=60, shift_snapshot=40, per_snapshot=200, keys=("A",), shifted="A")
    messages = [(b"A", json.dumps(events[i : i + 100]).encode()) for i in range(0, len(events), 100)]
    w = WorkerProc(b, t, tmp_path, "--snapshot-interval", "10", "--checkpoint-interval", "3", "--partitions", "1", "--topology", topology).start()
    try:
        run(produce(b, t.events, messages))
        shifts = json_values(run(consume_until(b, t.shifts, lambda r: len(r) >= 1, timeout=90, settle=2)))
        assert [d["key"] for d in shifts if d["type"] == "shift"] == ["A"], w.tail()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if run(_committed(b, t.app_id)).get(0) == len(messages):
                break
            time.sleep(1)
        assert run(_committed(b, t.app_id)).get(0) == len(messages), w.tail()
    finally:
        w.stop()
