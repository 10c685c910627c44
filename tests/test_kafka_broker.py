"""The test broker itself: a real round trip, and a restart that keeps data."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.connection import PASSWORD_ENV, KafkaConnection, check_connection

pytestmark = pytest.mark.kafka


async def _produce(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for i in range(start, start + n):
            await p.send(topic, f"v{i}".encode(), key=f"k{i % 31}".encode())
        await p.flush()
    finally:
        await p.stop()


async def _consume(bootstrap: str, topic: str, n: int, group: str) -> list:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest")
    await c.start()
    out = []
    try:
        while len(out) < n:
            batch = await asyncio.wait_for(c.getmany(timeout_ms=1000), 30)
            for recs in batch.values():
                out.extend(recs)
    finally:
        await c.stop()
    return out


def test_round_trip_on_four_partitions(kafka_broker):
    kafka_broker.create_topic("rt", 4)
    asyncio.run(_produce(kafka_broker.bootstrap, "rt", 1000))
    recs = asyncio.run(_consume(kafka_broker.bootstrap, "rt", 1000, "g1"))
    assert len(recs) == 1000
    assert sorted(r.value for r in recs) == sorted(f"v{i}".encode() for i in range(1000))
    assert all(r.key == f"k{int(r.value[1:]) % 31}".encode() for r in recs)
    assert {r.partition for r in recs} == {0, 1, 2, 3}
    # A key always lands in one partition.
    by_key: dict[bytes, set[int]] = {}
    for r in recs:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in by_key.values())


def test_restart_keeps_topics_and_data(kafka_broker):
    kafka_broker.create_topic("restart", 1)
    asyncio.run(_produce(kafka_broker.bootstrap, "restart", 100))
    kafka_broker.restart()
    asyncio.run(_produce(kafka_broker.bootstrap, "restart", 100, start=100))
    recs = asyncio.run(_consume(kafka_broker.bootstrap, "restart", 200, "g2"))
    assert [r.value for r in recs] == [f"v{i}".encode() for i in range(200)]
    # The SCRAM users were written when the storage was formatted (once): they survive too.
    scram = KafkaConnection.from_options(
        f"kafka://{kafka_broker.sasl_ssl_bootstrap}", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username=kafka_broker.scram_username, ssl_cafile=str(kafka_broker.tls.ca_file),
        environ={PASSWORD_ENV: kafka_broker.scram_password})
    asyncio.run(check_connection(scram, 20))


def test_broker_certificate_names_loopback(kafka_secure_broker):
    """Clients verify the host name: the certificate must carry IP:127.0.0.1 and DNS:localhost."""
    import ssl

    t = kafka_secure_broker.tls
    ctx = ssl.create_default_context(cafile=str(t.ca_file))
    for host in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", kafka_secure_broker.mtls_port), timeout=10) as raw:
            ctx.load_cert_chain(str(t.client_cert), str(t.client_key))
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
