"""KafkaConnection without a broker: option parsing, validation, kwargs, and that the password never shows."""

from __future__ import annotations

import ssl

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from kafka_broker import make_test_tls
from stream.connection import (
    PASSWORD_ENV,
    KafkaConnection,
    KafkaTLSError,
    explain_kafka_error,
    load_password,
    parse_bootstrap,
)

PW = "s3cr3t-Pa55-word"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_test_tls(tmp_path_factory.mktemp("tls"))


def sasl(**kw) -> KafkaConnection:
    opts = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="alice", environ={PASSWORD_ENV: PW})
    opts.update(kw)
    return KafkaConnection.from_options("kafka://b1:9093,kafka://b2:9093", **opts)


@pytest.mark.parametrize("url, want", [
    ("kafka://127.0.0.1:9092", ("127.0.0.1:9092",)),
    ("kafka://a:1,kafka://b.example.com:65535", ("a:1", "b.example.com:65535")),
    (" kafka://a:9092 , b:9093", ("a:9092", "b:9093")),
    ("KAFKA://[::1]:9092", ("[::1]:9092",)),
])
def test_bootstrap_urls(url, want):
    assert parse_bootstrap(url) == want


@pytest.mark.parametrize("url, words", [
    ("", "empty"),
    ("kafka://a:9092,", "empty entry"),
    ("http://a:9092", "scheme must be kafka://"),
    ("kafka://a", "expected HOST:PORT"),
    ("kafka://:9092", "expected HOST:PORT"),
    ("kafka://a:port", "not a number"),
    ("kafka://a:70000", "not a number"),
    ("kafka://a:9092/topic", "no path"),
    ("kafka://[::1:9092", "unbalanced"),
])
def test_bad_bootstrap_is_one_line_value_error(url, words):
    with pytest.raises(ValueError) as e:
        KafkaConnection.from_options(url)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_plaintext_kwargs_are_plain():
    c = KafkaConnection.from_options("kafka://a:9092", compression="none")
    kw = c.producer_kwargs(acks="all")
    assert kw["bootstrap_servers"] == ["a:9092"] and kw["security_protocol"] == "PLAINTEXT"
    assert kw["compression_type"] is None and kw["acks"] == "all"
    assert not any(k.startswith(("sasl", "ssl")) for k in kw)


def test_sasl_kwargs_carry_the_password_only_in_kwargs():
    c = sasl(compression="zstd")
    for kw in (c.consumer_kwargs(), c.producer_kwargs(), c.admin_kwargs()):
        assert kw["sasl_mechanism"] == "SCRAM-SHA-512" and kw["sasl_plain_username"] == "alice"
        assert kw["sasl_plain_password"] == PW
        assert kw["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert c.producer_kwargs()["compression_type"] == "zstd"
    assert "compression_type" not in c.consumer_kwargs()
    for text in (repr(c), str(c), c.describe(), repr(c.sasl_password), f"{c.sasl_password}"):
        assert PW not in text
    assert "SCRAM-SHA-512 as user alice" in c.describe()


def test_password_from_file_strips_one_newline(tmp_path):
    f = tmp_path / "pw"
    f.write_text(PW + "\n")
    c = sasl(environ={}, sasl_password_file=str(f))
    assert c.consumer_kwargs()["sasl_plain_password"] == PW
    f.write_text(" spaced \n\n")
    assert load_password(f, {}).value == " spaced \n"


@pytest.mark.parametrize("kw, words", [
    (dict(environ={}), PASSWORD_ENV),
    (dict(sasl_username=None), "needs --sasl-username"),
    (dict(sasl_mechanism="GSSAPI"), "--sasl-mechanism"),
    (dict(security_protocol="TLS"), "--security-protocol"),
    (dict(compression="brotli"), "--compression"),
    (dict(sasl_password_file="/nonexistent/pw"), "given twice"),
    (dict(environ={}, sasl_password_file="/nonexistent/pw"), "cannot read"),
    (dict(ssl_cafile="/nonexistent/ca.pem"), "--ssl-* files are set but --security-protocol is SASL_PLAINTEXT"),
    (dict(security_protocol="SASL_SSL", ssl_cafile="/nonexistent/ca.pem"), "--ssl-cafile /nonexistent/ca.pem: no such file"),
])
def test_bad_options_are_one_line_value_errors_without_the_password(kw, words):
    with pytest.raises(ValueError) as e:
        sasl(**kw)
    msg = str(e.value)
    assert words in msg and "\n" not in msg and PW not in msg


def test_sasl_options_without_sasl_protocol_are_refused():
    with pytest.raises(ValueError, match="SASL options are set but --security-protocol is SSL"):
        KafkaConnection.from_options("kafka://a:1", security_protocol="SSL", sasl_username="alice")


def test_tls_files_build_one_verifying_context(tls):
    c = KafkaConnection.from_options("kafka://127.0.0.1:9093", security_protocol="ssl", ssl_cafile=str(tls.ca_file),
                                     ssl_certfile=str(tls.client_cert), ssl_keyfile=str(tls.client_key))
    ctx = c.consumer_kwargs()["ssl_context"]
    assert ctx is c.producer_kwargs()["ssl_context"] is c.admin_kwargs()["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_key_not_matching_certificate_is_a_value_error(tls):
    with pytest.raises(ValueError, match="cannot load the TLS files") as e:
        KafkaConnection.from_options("kafka://a:1", security_protocol="SSL", ssl_cafile=str(tls.ca_file),
                                     ssl_certfile=str(tls.client_cert), ssl_keyfile=str(tls.untrusted_client_key))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="--ssl-keyfile needs --ssl-certfile"):
        KafkaConnection.from_options("kafka://a:1", security_protocol="SSL", ssl_keyfile=str(tls.client_key))


def test_explain_kafka_error_names_mechanism_and_user_but_scrubs_an_echoed_password():
    c = sasl()
    wrapped = KafkaConnectionError("Unable to bootstrap")
    wrapped.__cause__ = SaslAuthenticationFailed(f"invalid credentials (got {PW})")
    msg = explain_kafka_error(wrapped, c)
    assert msg.startswith("authentication failed (SASL SCRAM-SHA-512 as user alice)")
    assert PW not in msg and "***" in msg
    assert explain_kafka_error(KafkaConnectionError("Connection refused"), c) is None
    assert explain_kafka_error(KafkaTLSError("TLS verification failed: x")) == "TLS verification failed: x"


def test_explain_tls_verification_error():
    e = ssl.SSLCertVerificationError(1, "certificate verify failed")
    e.verify_message = "unable to get local issuer certificate"
    assert explain_kafka_error(e) == "TLS verification failed: unable to get local issuer certificate"


def test_password_does_not_escape_through_asdict_or_replace():
    import dataclasses

    c = sasl()
    assert PW not in repr(dataclasses.asdict(c))
    c2 = dataclasses.replace(c, compression="gzip")
    assert c2.consumer_kwargs()["sasl_plain_password"] == PW and PW not in repr(c2)


def test_a_broker_that_never_answers_is_unreachable_within_the_timeout():
    """A TCP peer that accepts and stays silent must not hang the worker's start."""
    import asyncio
    import socket
    import time

    from stream.connection import KafkaUnreachable, check_connection

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        conn = KafkaConnection.from_options(f"kafka://127.0.0.1:{srv.getsockname()[1]}")
        t0 = time.monotonic()
        with pytest.raises(KafkaUnreachable, match="timed out"):
            asyncio.run(check_connection(conn, 1.5))
        assert time.monotonic() - t0 < 10


def test_direct_construction_parses_a_url_string():
    c = KafkaConnection("kafka://a:1,kafka://b:2")
    assert c.bootstrap == ("a:1", "b:2") and c.compression == "zstd"
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        KafkaConnection("kafka://nohost")


def test_acl_denials_are_explained_as_authorization_failures():
    from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    c = sasl()
    assert explain_kafka_error(TopicAuthorizationFailedError("events"), c).startswith(
        "authorization failed (SASL SCRAM-SHA-512 as user alice): the broker's ACLs deny it")
    assert explain_kafka_error(GroupAuthorizationFailedError("shiftwatch"), c).startswith("authorization failed")
