"""/healthz is liveness, /readyz readiness, on the real `shiftwatch worker` process.

A worker started while no broker is reachable stays alive (retrying with backoff), says
so once rather than once per retry, and answers /healthz 200 but /readyz 503 with a
reason; a worker on the real broker becomes ready once assigned and restored."""

from __future__ import annotations

import time

import pytest

from worker_proc import Topics, WorkerProc, free_port

pytestmark = pytest.mark.kafka


def test_no_broker_alive_not_ready_and_logged_once(tmp_path):
    closed = free_port()  # bound and released: nothing listens there
    w = WorkerProc(f"127.0.0.1:{closed}", Topics(), tmp_path, name="nobroker").start()
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15:
            assert w.proc.poll() is None, f"worker exited with {w.proc.returncode}:\n{w.tail()}"
            live, live_body = w.probe("/healthz")
            ready, ready_body = w.probe("/readyz")
            assert live == 200 and live_body["status"] == "ok", live_body
            assert ready == 503 and ready_body["status"] == "not ready", ready_body
            time.sleep(1.0)
        assert str(closed) in ready_body["reason"] and "reachable" in ready_body["reason"], ready_body
        log = w.log_path.read_text(errors="replace").splitlines()
        about = [x for x in log if f"127.0.0.1:{closed}" in x or "Unable connect" in x or "unreachable" in x.lower()]
        # ~5 connection attempts in 15 s (backoff 0.5, 1, 2, 4, 8 s): one log line, not one per attempt.
        assert len(about) == 1, "\n".join(about)
        assert "Traceback" not in "\n".join(log)
    finally:
        w.stop()


def test_worker_on_the_broker_becomes_ready_once_assigned_and_restored(kafka_broker, tmp_path):
    topics = Topics()
    kafka_broker.create_topic(topics.events, 2)
    w = WorkerProc(kafka_broker.bootstrap, topics, tmp_path).start()
    try:
        t0 = time.monotonic()
        body = w.wait_ready(60)
        assert body == {"status": "ready", "reason": "ok"}
        assert w.probe("/healthz")[0] == 200
        assert "partitions [0, 1] assigned" in w.log_path.read_text(errors="replace"), w.tail()
        assert time.monotonic() - t0 < 60
    finally:
        w.stop()
