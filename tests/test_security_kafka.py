"""KafkaConnection against the real broker's SASL_SSL and mutual-TLS listeners.

Each failure a user can make (wrong password, untrusted CA, no or wrong client
certificate) must end within 60 s as a fatal, one-line, password-free error."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.connection import (
    PASSWORD_ENV,
    KafkaAuthError,
    KafkaConnection,
    KafkaTLSError,
    KafkaUnreachable,
    check_connection,
    explain_kafka_error,
)

pytestmark = pytest.mark.kafka

WRONG = "wrong-" + uuid.uuid4().hex


def sasl_conn(b, mechanism: str, password: str, cafile=None) -> KafkaConnection:
    user = b.plain_username if mechanism == "PLAIN" else b.scram_username
    return KafkaConnection.from_options(
        f"kafka://{b.sasl_ssl_bootstrap}", security_protocol="SASL_SSL", sasl_mechanism=mechanism, sasl_username=user,
        ssl_cafile=str(cafile or b.tls.ca_file), environ={PASSWORD_ENV: password})


def mtls_conn(b, cert=None, key=None) -> KafkaConnection:
    return KafkaConnection.from_options(
        f"kafka://{b.mtls_bootstrap}", security_protocol="SSL", ssl_cafile=str(b.tls.ca_file),
        ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None)


async def round_trip(conn: KafkaConnection, n: int = 200) -> list[bytes]:
    """Create a topic, produce n records and read them back, every client built from conn."""
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**conn.admin_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    p = AIOKafkaProducer(**conn.producer_kwargs(acks="all"))
    await p.start()
    try:
        for i in range(n):
            await p.send(topic, f"v{i}".encode(), key=f"k{i % 7}".encode())
        await p.flush()
    finally:
        await p.stop()
    c = AIOKafkaConsumer(topic, **conn.consumer_kwargs(group_id=f"g-{topic}", auto_offset_reset="earliest"))
    await c.start()
    got: list[bytes] = []
    try:
        while len(got) < n:
            for recs in (await asyncio.wait_for(c.getmany(timeout_ms=500), 30)).values():
                got.extend(r.value for r in recs)
    finally:
        await c.stop()
    return got


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_sasl_ssl_round_trip(kafka_secure_broker, mechanism, caplog):
    b = kafka_secure_broker
    password = b.plain_password if mechanism == "PLAIN" else b.scram_password
    conn = sasl_conn(b, mechanism, password)
    caplog.set_level(logging.DEBUG)  # aiokafka logs each request at DEBUG, SASL ones included
    asyncio.run(check_connection(conn, 20))
    got = asyncio.run(round_trip(conn))
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(200))
    assert "SaslAuthenticateRequest" in caplog.text and password not in caplog.text


def test_password_file_option_on_the_real_broker(kafka_secure_broker):
    b = kafka_secure_broker
    conn = KafkaConnection.from_options(
        f"kafka://{b.sasl_ssl_bootstrap}", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username=b.scram_username, sasl_password_file=str(b.scram_password_file), ssl_cafile=str(b.tls.ca_file), environ={})
    asyncio.run(check_connection(conn, 20))


def test_mutual_tls_round_trip(kafka_secure_broker):
    b = kafka_secure_broker
    conn = mtls_conn(b, b.tls.client_cert, b.tls.client_key)
    asyncio.run(check_connection(conn, 20))
    assert len(asyncio.run(round_trip(conn, 50))) == 50


def fails_fast(conn: KafkaConnection, exc_type: type[Exception], caplog) -> str:
    """check_connection raises exc_type within 60 s; returns the one-line message."""
    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    with pytest.raises(exc_type) as e:
        asyncio.run(check_connection(conn, 30))
    assert time.monotonic() - t0 < 60
    msg = explain_kafka_error(e.value, conn)
    assert msg == str(e.value) and "\n" not in msg
    return msg


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_wrong_password_is_a_fatal_auth_error_without_the_password(kafka_secure_broker, mechanism, caplog):
    b = kafka_secure_broker
    conn = sasl_conn(b, mechanism, WRONG)
    msg = fails_fast(conn, KafkaAuthError, caplog)
    user = b.plain_username if mechanism == "PLAIN" else b.scram_username
    assert msg.startswith(f"authentication failed (SASL {mechanism} as user {user})")
    # aiokafka's own clients fail too (and log at every level); none of it may carry the password.
    async def client_start() -> None:
        p = AIOKafkaProducer(**conn.producer_kwargs(request_timeout_ms=5000))
        try:
            await asyncio.wait_for(p.start(), 30)
        finally:
            await p.stop()
    with pytest.raises(Exception):
        asyncio.run(client_start())
    assert caplog.records, "expected aiokafka to log the failed connection"
    for rec in caplog.records:
        assert WRONG not in rec.getMessage()
    assert WRONG not in caplog.text


def test_untrusted_ca_is_a_fatal_tls_verification_error(kafka_secure_broker, caplog):
    b = kafka_secure_broker
    conn = sasl_conn(b, "SCRAM-SHA-512", b.scram_password, cafile=b.tls.untrusted_ca_file)
    msg = fails_fast(conn, KafkaTLSError, caplog)
    assert msg.startswith("TLS verification failed: ") and "certificate" in msg
    assert b.scram_password not in caplog.text


def test_mtls_listener_without_client_certificate_says_so(kafka_secure_broker, caplog):
    msg = fails_fast(mtls_conn(kafka_secure_broker), KafkaTLSError, caplog)
    assert msg.startswith("TLS handshake failed: the broker requires a client certificate")


def test_mtls_listener_rejects_a_certificate_from_another_ca(kafka_secure_broker, caplog):
    t = kafka_secure_broker.tls
    msg = fails_fast(mtls_conn(kafka_secure_broker, t.untrusted_client_cert, t.untrusted_client_key), KafkaTLSError, caplog)
    assert msg.startswith("TLS handshake failed: the broker rejected the client certificate")


def test_wrong_protocol_for_the_port_is_retryable_with_a_hint(kafka_secure_broker):
    """Plain text to a TLS port looks like a broker that hangs up: retry, but say what to check."""
    conn = KafkaConnection.from_options(f"kafka://{kafka_secure_broker.mtls_bootstrap}")
    with pytest.raises(KafkaUnreachable, match="does this port speak PLAINTEXT"):
        asyncio.run(check_connection(conn, 10))
    assert explain_kafka_error(KafkaUnreachable("x"), conn) is None
