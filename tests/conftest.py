"""Shared fixtures. The Kafka broker is real: started once per run from Maven Central jars."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_broker import BrokerError, KafkaBroker  # noqa: E402

# ---- Kafka broker harness (owner: broker harness; other fixtures go below the END marker) ----

_BROKER: dict[str, object] = {}


@pytest.fixture(scope="session")
def kafka_broker():
    """One KRaft broker for the session. Under CI=true a broker failure fails the test,
    with the broker's exact error; locally too, unless SHIFTWATCH_SKIP_KAFKA=1."""
    if "error" in _BROKER:
        _fail_or_skip(str(_BROKER["error"]))
    if "broker" not in _BROKER:
        try:
            # One broker with every listener (PLAINTEXT, SASL_SSL, mutual-TLS SSL): one JVM per run.
            _BROKER["broker"] = KafkaBroker(secure=True).start()
        except BrokerError as e:
            _BROKER["error"] = e
            _fail_or_skip(str(e))
    broker = _BROKER["broker"]
    yield broker


@pytest.fixture(scope="session")
def kafka_secure_broker(kafka_broker):
    """The session broker's secured listeners: sasl_ssl_bootstrap (SCRAM-SHA-512/256 user
    scram_username/scram_password, PLAIN user plain_username/plain_password), mtls_bootstrap
    (client certificate required) and tls (ca_file, client_cert, client_key, untrusted_ca_file)."""
    assert kafka_broker.tls is not None
    return kafka_broker


def _fail_or_skip(msg: str) -> None:
    if os.environ.get("SHIFTWATCH_SKIP_KAFKA") == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"Kafka broker unavailable: {msg}")
    pytest.fail(f"Kafka broker could not be started:\n{msg}", pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    broker = _BROKER.get("broker")
    if isinstance(broker, KafkaBroker):
        broker.cleanup()


def pytest_terminal_summary(terminalreporter):
    broker = _BROKER.get("broker")
    if isinstance(broker, KafkaBroker) and broker.startup_seconds is not None:
        terminalreporter.write_line(f"kafka broker: Apache Kafka 3.9.1 (KRaft) on {broker.bootstrap}, started in {broker.startup_seconds:.1f} s"
                                     f" (SASL_SSL {broker.sasl_ssl_bootstrap}, mTLS {broker.mtls_bootstrap})")
    elif "error" in _BROKER:
        terminalreporter.write_line(f"kafka broker: FAILED to start: {_BROKER['error']}")


# ---- END Kafka broker harness ----
