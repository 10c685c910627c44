"""`shiftwatch worker` on the broker's secured listeners, as a user would run it.

SASL_SSL (SCRAM-SHA-512 with the password from the environment, PLAIN from
--sasl-password-file) and mutual TLS process events end to end; a wrong password or an
untrusted CA ends the process within 60 s with one line that says why and never the
password (stderr, the log and everything printed)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from datagen import T0, shift_stream
from stream.connection import PASSWORD_ENV, KafkaConnection
from worker_proc import Topics, WorkerProc

pytestmark = pytest.mark.kafka


def flags(b, kind: str, cafile=None) -> tuple[str, list[str], dict[str, str]]:
    """(bootstrap, worker flags, worker env) for one way of connecting."""
    ca = str(cafile or b.tls.ca_file)
    if kind == "scram-env":
        return b.sasl_ssl_bootstrap, ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512",
                                      "--sasl-username", b.scram_username, "--ssl-cafile", ca], {PASSWORD_ENV: b.scram_password}
    if kind == "plain-file":
        return b.sasl_ssl_bootstrap, ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN", "--sasl-username", b.plain_username,
                                      "--sasl-password-file", str(b.plain_password_file), "--ssl-cafile", ca], {}
    assert kind == "mtls"
    return b.mtls_bootstrap, ["--security-protocol", "SSL", "--ssl-cafile", ca, "--ssl-certfile", str(b.tls.client_cert),
                              "--ssl-keyfile", str(b.tls.client_key)], {}


def client_conn(b, kind: str) -> KafkaConnection:
    """The test's own producer/consumer, on the same secured listener as the worker."""
    if kind == "mtls":
        return KafkaConnection.from_options(f"kafka://{b.mtls_bootstrap}", security_protocol="SSL", ssl_cafile=str(b.tls.ca_file),
                                            ssl_certfile=str(b.tls.client_cert), ssl_keyfile=str(b.tls.client_key))
    return KafkaConnection.from_options(f"kafka://{b.sasl_ssl_bootstrap}", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                        sasl_username=b.scram_username, ssl_cafile=str(b.tls.ca_file),
                                        environ={PASSWORD_ENV: b.scram_password})


def messages() -> tuple[list[tuple[bytes, bytes]], int]:
    """Key A shifts ×1.5 at window 40 of 70; 100 events of one key per message."""
    events, _ = shift_stream(interval=10.0, snapshots=70, shift_snapshot=40, per_snapshot=300, factor=1.5, seed=7)
    msgs = []
    for key in ("A", "B"):
        mine = [e for e in events if e["key"] == key]
        msgs += [(mine[i]["ts"], key.encode(), json.dumps(mine[i:i + 100]).encode()) for i in range(0, len(mine), 100)]
    msgs.sort()
    return [(k, v) for _, k, v in msgs], len(events)


async def produce(conn: KafkaConnection, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    p = AIOKafkaProducer(**conn.producer_kwargs(acks="all", linger_ms=5))
    await p.start()
    try:
        for key, value in msgs:
            await p.send(topic, value, key=key)
        await p.flush()
    finally:
        await p.stop()


async def read_shifts(conn: KafkaConnection, topic: str, timeout: float) -> list[dict]:
    """Shift events (incidents left out) until one arrives and 3 s more pass, or timeout."""
    c = AIOKafkaConsumer(topic, **conn.consumer_kwargs(group_id=None, auto_offset_reset="earliest", enable_auto_commit=False))
    await c.start()
    docs: list[dict] = []
    try:
        deadline, settle = time.time() + timeout, None
        while time.time() < deadline and (settle is None or time.time() < settle):
            for recs in (await c.getmany(timeout_ms=500)).values():
                docs += [d for d in (json.loads(r.value) for r in recs) if d.get("type") == "shift"]
            if docs and settle is None:
                settle = time.time() + 3
    finally:
        await c.stop()
    return docs


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_metric(w: WorkerProc, name: str, n: float, timeout: float = 90.0) -> str:
    deadline, text = time.time() + timeout, ""
    while time.time() < deadline:
        text = w.metrics()
        if sample(text, name) >= n:
            return text
        time.sleep(0.5)
    return text


@pytest.mark.parametrize("kind", ["scram-env", "plain-file", "mtls"])
def test_secured_worker_processes_events_end_to_end(kafka_secure_broker, tmp_path, kind):
    b = kafka_secure_broker
    bootstrap, extra, env = flags(b, kind)
    topics, conn = Topics(), client_conn(b, kind)
    msgs, n_events = messages()
    w = WorkerProc(bootstrap, topics, tmp_path, "--snapshot-interval", "10", *extra, env=env).start()
    try:
        w.wait_ready(60)
        asyncio.run(produce(conn, topics.events, msgs))
        text = wait_metric(w, "shiftwatch_events_accepted_total", n_events)
        assert sample(text, "shiftwatch_events_accepted_total") == n_events, w.tail()
        assert sample(text, "shiftwatch_messages_total") == len(msgs)
        shifts = asyncio.run(read_shifts(conn, topics.shifts, timeout=60))
        assert [d["key"] for d in shifts] == ["A"], (shifts, w.tail())
        assert abs(shifts[0]["at"] - (T0 + 400)) <= 30
        # Windows close in the merge stage, after stage 1 counted the events: wait for them.
        text = wait_metric(w, "shiftwatch_snapshots_total", 2 * 60)
        assert sample(text, "shiftwatch_snapshots_total") >= 2 * 60, "both keys' windows closed (idle close included)"
        for secret in (b.scram_password, b.plain_password):
            assert secret not in text and secret not in w.log_path.read_text(errors="replace")
            assert secret not in w.get("/").decode(errors="replace")
    finally:
        w.stop()


def fails_fast(w: WorkerProc, secrets: tuple[str, ...]) -> str:
    """Run w until it exits (<= 60 s); returns its one error line after checking no secret leaked."""
    t0 = time.monotonic()
    w.launch()
    code = w.wait_exit(60)
    took = time.monotonic() - t0
    if code is None:
        w.kill()
    err = w.err_path.read_text(errors="replace")
    log = w.log_path.read_text(errors="replace")
    assert code is not None, f"still running after 60 s:\n{log}\n{err}"
    assert code != 0 and took < 60
    errors = [line for line in err.splitlines() if line.startswith("shiftwatch: error:")]
    # One line, said once: not also echoed as a log record (Faust redirects sys.stderr into logging).
    assert len(errors) == 1 and sum("shiftwatch: error:" in x for x in (err + log).splitlines()) == 1, f"stderr:\n{err}\nlog:\n{log}"
    assert "Traceback" not in err + log
    for s in secrets:
        assert s not in err and s not in log
    return errors[0]


def test_wrong_password_exits_with_one_line_that_says_authentication_failed(kafka_secure_broker, tmp_path):
    b = kafka_secure_broker
    wrong = "wrong-" + uuid.uuid4().hex
    bootstrap, extra, _ = flags(b, "scram-env")
    w = WorkerProc(bootstrap, Topics(), tmp_path, *extra, env={PASSWORD_ENV: wrong}, split_stderr=True)
    line = fails_fast(w, (wrong, b.scram_password))
    assert "authentication failed" in line.lower(), line


def test_untrusted_ca_exits_with_one_line_that_says_tls_verification_failed(kafka_secure_broker, tmp_path):
    b = kafka_secure_broker
    bootstrap, extra, env = flags(b, "scram-env", cafile=b.tls.untrusted_ca_file)
    w = WorkerProc(bootstrap, Topics(), tmp_path, *extra, env=env, split_stderr=True)
    line = fails_fast(w, (b.scram_password,))
    assert "tls verification failed" in line.lower(), line
