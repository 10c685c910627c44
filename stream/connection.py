"""One Kafka connection config shared by every client (consumer, producer, admin).

Why one object: the worker, loadgen, replay and report all talk to the same cluster;
building aiokafka's security kwargs in one place means TLS/SASL works everywhere or
nowhere, and the password has one home that never prints it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

__all__ = [
    "COMPRESSIONS",
    "KafkaAuthError",
    "KafkaConnection",
    "KafkaConnectionProblem",
    "KafkaTLSError",
    "KafkaUnreachable",
    "PASSWORD_ENV",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "check_connection",
    "explain_kafka_error",
    "parse_bootstrap",
    "redact_kafka_logs",
]

PASSWORD_ENV = "SHIFTWATCH_SASL_PASSWORD"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


def parse_bootstrap(broker: str) -> tuple[str, ...]:
    """`kafka://HOST:PORT[,kafka://HOST:PORT]` (bare HOST:PORT also accepted) -> ("HOST:PORT", ...).

    Raises ValueError with a one-line message naming the bad part."""
    if not broker or not broker.strip():
        raise ValueError("broker URL is empty; expected kafka://HOST:PORT[,kafka://HOST:PORT]")
    return tuple(_parse_one(part.strip()) for part in broker.split(","))


def _parse_one(part: str) -> str:
    if not part:
        raise ValueError("broker URL has an empty entry between commas")
    scheme, sep, rest = part.partition("://")
    if sep and scheme.lower() != "kafka":
        raise ValueError(f"broker URL {part!r}: scheme must be kafka://, not {scheme}://")
    hostport = rest if sep else part
    if "/" in hostport or "?" in hostport or "@" in hostport:
        raise ValueError(f"broker URL {part!r}: only kafka://HOST:PORT is allowed (no path, query or user)")
    host, colon, port = hostport.rpartition(":")
    if not colon or not host:
        raise ValueError(f"broker URL {part!r}: expected HOST:PORT")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"broker URL {part!r}: unbalanced [ ] around an IPv6 address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"broker URL {part!r}: port {port!r} is not a number in 1..65535")
    return f"{host}:{int(port)}"


@dataclass(slots=True, frozen=True)
class Secret:
    """A password that shows as *** in repr/str, so it cannot leak through logs or errors."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def load_password(password_file: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Secret | None:
    """The SASL password from $SHIFTWATCH_SASL_PASSWORD or a file (one trailing newline dropped)."""
    env = os.environ if environ is None else environ
    from_env = env.get(PASSWORD_ENV)
    if password_file is not None and from_env is not None:
        raise ValueError(f"the SASL password is given twice: set either ${PASSWORD_ENV} or --sasl-password-file, not both")
    if password_file is not None:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--sasl-password-file {password_file}: cannot read it ({type(e).__name__})") from None
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        if not text:
            raise ValueError(f"--sasl-password-file {password_file} is empty")
        return Secret(text)
    return Secret(from_env) if from_env else None


@dataclass(slots=True, frozen=True)
class KafkaConnection:
    """Where and how to reach Kafka; build once (``from_options``), pass to every client."""

    bootstrap: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    compression: str = "lz4"
    client_id: str = "shiftwatch"
    _ssl_context: ssl.SSLContext | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_options(
        cls,
        broker: str,
        *,
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password_file: str | os.PathLike[str] | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        compression: str = "lz4",
        client_id: str = "shiftwatch",
        environ: Mapping[str, str] | None = None,
    ) -> KafkaConnection:
        """From CLI/env option values; the password only from $SHIFTWATCH_SASL_PASSWORD or the file.
        Raises ValueError (one line) on any bad or inconsistent value."""
        protocol = (security_protocol or "PLAINTEXT").upper()
        password = load_password(sasl_password_file, environ) if protocol.startswith("SASL_") else None
        if not protocol.startswith("SASL_") and sasl_password_file is not None:
            raise ValueError(f"--sasl-password-file is set but --security-protocol is {protocol} (no SASL)")
        return cls(
            bootstrap=parse_bootstrap(broker),
            security_protocol=protocol,
            sasl_mechanism=sasl_mechanism.upper() if sasl_mechanism else None,
            sasl_username=sasl_username or None,
            sasl_password=password,
            ssl_cafile=ssl_cafile or None,
            ssl_certfile=ssl_certfile or None,
            ssl_keyfile=ssl_keyfile or None,
            compression=(compression or "none").lower(),
            client_id=client_id,
        )

    def __post_init__(self) -> None:
        self._validate()
        if self.uses_tls:
            object.__setattr__(self, "_ssl_context", self._make_ssl_context())

    def _validate(self) -> None:
        p = self.security_protocol
        if not self.bootstrap:
            raise ValueError("no bootstrap servers given")
        if p not in SECURITY_PROTOCOLS:
            raise ValueError(f"--security-protocol {p!r}: expected one of {'|'.join(SECURITY_PROTOCOLS)}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"--compression {self.compression!r}: expected one of {'|'.join(COMPRESSIONS)}")
        if p.startswith("SASL_"):
            if self.mechanism not in SASL_MECHANISMS:
                raise ValueError(f"--sasl-mechanism {self.mechanism!r}: expected one of {'|'.join(SASL_MECHANISMS)}")
            if not self.sasl_username:
                raise ValueError(f"--security-protocol {p} needs --sasl-username")
            if self.sasl_password is None or not self.sasl_password.value:
                raise ValueError(f"--security-protocol {p} needs a password: set ${PASSWORD_ENV} or --sasl-password-file")
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password:
            raise ValueError(f"SASL options are set but --security-protocol is {p}; use SASL_SSL or SASL_PLAINTEXT")
        if not self.uses_tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError(f"--ssl-* files are set but --security-protocol is {p}; use SSL or SASL_SSL")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("--ssl-keyfile needs --ssl-certfile (the client certificate for mutual TLS)")
        for flag, path in (("--ssl-cafile", self.ssl_cafile), ("--ssl-certfile", self.ssl_certfile), ("--ssl-keyfile", self.ssl_keyfile)):
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{flag} {path}: {'not readable' if os.path.exists(path) else 'no such file'}")

    def _make_ssl_context(self) -> ssl.SSLContext:
        try:
            return create_ssl_context(cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile)
        except (ssl.SSLError, OSError, ValueError) as e:
            files = ", ".join(f for f in (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile) if f)
            raise ValueError(f"cannot load the TLS files ({files}): {_one_line(e)}") from None

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def mechanism(self) -> str | None:
        """The SASL mechanism in use (PLAIN when SASL is on and none was named, as in aiokafka)."""
        if not self.security_protocol.startswith("SASL_"):
            return None
        return self.sasl_mechanism or "PLAIN"

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(self.bootstrap)

    def __repr__(self) -> str:
        parts = [f"bootstrap={self.bootstrap_servers!r}", f"security_protocol={self.security_protocol!r}"]
        if self.mechanism:
            parts += [f"sasl_mechanism={self.mechanism!r}", f"sasl_username={self.sasl_username!r}", "sasl_password='***'"]
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)!r}")
        parts.append(f"compression={self.compression!r}")
        return f"KafkaConnection({', '.join(parts)})"

    __str__ = __repr__

    def describe(self) -> str:
        """One line for logs and the status page: protocol, mechanism and user, never the password."""
        who = f" {self.mechanism} as user {self.sasl_username}" if self.mechanism else ""
        return f"{self.bootstrap_servers} ({self.security_protocol}{who})"

    def _common(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"bootstrap_servers": list(self.bootstrap), "security_protocol": self.security_protocol}
        if self._ssl_context is not None:
            kw["ssl_context"] = self._ssl_context
        if self.mechanism:
            assert self.sasl_password is not None
            redact_kafka_logs()  # before any client can log a SASL request carrying the password
            kw.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.sasl_username,
                      sasl_plain_password=self.sasl_password.value)
        return kw

    def consumer_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Kwargs for AIOKafkaConsumer (extra ones win)."""
        return {"client_id": self.client_id, **self._common(), **extra}

    def producer_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Kwargs for AIOKafkaProducer, with the output compression (extra ones win)."""
        codec = None if self.compression == "none" else self.compression
        return {"client_id": self.client_id, **self._common(), "compression_type": codec, **extra}

    def admin_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Kwargs for AIOKafkaAdminClient (extra ones win)."""
        return {"client_id": f"{self.client_id}-admin", **self._common(), **extra}


class _SaslRedactor(logging.Filter):
    """aiokafka.conn logs every request at DEBUG, and a SASL PLAIN SaslAuthenticateRequest
    holds the password in clear (b'user\\x00user\\x00password'): blank such arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(type(a).__name__.startswith("SaslAuthenticate") for a in args):
            record.args = tuple(f"{type(a).__name__}(<redacted>)" if type(a).__name__.startswith("SaslAuthenticate") else a
                                for a in args)
        return True


def redact_kafka_logs() -> None:
    """Install the SASL redaction filter on aiokafka's connection logger (idempotent)."""
    logger = logging.getLogger("aiokafka.conn")
    if not any(isinstance(f, _SaslRedactor) for f in logger.filters):
        logger.addFilter(_SaslRedactor())


class KafkaConnectionProblem(Exception):
    """Base: a one-line, password-free message in str(exc)."""


class KafkaAuthError(KafkaConnectionProblem):
    """SASL authentication failed: fatal, retrying cannot help."""


class KafkaTLSError(KafkaConnectionProblem):
    """TLS verification or handshake failed: fatal, retrying cannot help."""


class KafkaUnreachable(KafkaConnectionProblem):
    """No broker answered (refused, timed out, closed): retry with backoff."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


_AUTH_ERRORS = (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError)


def explain_kafka_error(exc: BaseException, conn: KafkaConnection | None = None) -> str | None:
    """A one-line user message for an authentication or TLS failure, else None.

    Never includes the password (the message is built from our own words, the
    server's reason and the username only; the password is scrubbed if echoed)."""
    msg = _explain(exc, conn)
    if msg is not None and conn is not None and conn.sasl_password is not None and conn.sasl_password.value:
        msg = msg.replace(conn.sasl_password.value, "***")
    return msg


def _explain(exc: BaseException, conn: KafkaConnection | None) -> str | None:
    who = f" (SASL {conn.mechanism} as user {conn.sasl_username})" if conn is not None and conn.mechanism else ""
    for e in _chain(exc):
        if isinstance(e, KafkaConnectionProblem) and not isinstance(e, KafkaUnreachable):
            return str(e)
        if isinstance(e, _AUTH_ERRORS):
            return f"authentication failed{who}: {_one_line(e)}"
        if isinstance(e, UnsupportedSaslMechanismError):
            return f"authentication failed{who}: the broker does not offer this SASL mechanism: {_one_line(e)}"
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS verification failed: {e.verify_message or _one_line(e)}"
        if isinstance(e, ssl.SSLError):
            return f"TLS handshake failed: {_tls_reason(e, conn)}"
    return None


def _tls_reason(e: ssl.SSLError, conn: KafkaConnection | None) -> str:
    reason = (e.reason or "").lower()
    rejected = ("certificate_required", "bad_certificate", "unknown_ca", "certificate_unknown")
    if any(r in reason for r in rejected):
        if conn is not None and not conn.ssl_certfile:
            return "the broker requires a client certificate (--ssl-certfile/--ssl-keyfile)"
        return "the broker rejected the client certificate (not signed by a CA it trusts, or expired)"
    if "wrong_version_number" in reason or "record_layer_failure" in reason:
        return "the port does not speak TLS (is --security-protocol right?)"
    return _one_line(e)


def _split_hostport(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


async def _probe(conn: KafkaConnection, hostport: str, timeout_s: float) -> None:
    """Connect, authenticate and ask for metadata on one bootstrap server."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    kw = conn._common()
    del kw["bootstrap_servers"]
    host, port = _split_hostport(hostport)
    c = await asyncio.wait_for(create_conn(host, port, client_id=f"{conn.client_id}-check",
                                           request_timeout_ms=int(timeout_s * 1000), **kw), timeout_s)
    try:
        await asyncio.wait_for(c.send(MetadataRequest([])), timeout_s)
    finally:
        c.close()


async def check_connection(conn: KafkaConnection, timeout_s: float = 10.0) -> None:
    """Prove the cluster is reachable and accepts our credentials and certificates.

    aiokafka's own start() logs the cause and raises a bare "Unable to bootstrap", so the
    worker calls this first. Raises KafkaAuthError / KafkaTLSError (fatal: exit, do not
    retry) or KafkaUnreachable (retry with backoff); returns when one server answered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    unreachable: list[str] = []
    for hostport in conn.bootstrap:
        left = max(0.1, deadline - loop.time())
        try:
            await _probe(conn, hostport, left)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # classified below; anything unknown counts as unreachable
            fatal = explain_kafka_error(e, conn)
            if fatal is not None:
                cls = KafkaAuthError if fatal.startswith("authentication") else KafkaTLSError
                raise cls(f"{fatal} [broker {hostport}]") from None
            unreachable.append(f"{hostport}: {_unreachable_reason(e, conn)}")
    raise KafkaUnreachable(f"no Kafka broker reachable ({conn.security_protocol}): " + "; ".join(unreachable))


def _unreachable_reason(e: BaseException, conn: KafkaConnection) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    text = _one_line(e)
    if isinstance(e, (ConnectionResetError, KafkaConnectionError)):
        text += f" (closed during the handshake: does this port speak {conn.security_protocol}?)"
    if conn.sasl_password is not None and conn.sasl_password.value:
        text = text.replace(conn.sasl_password.value, "***")
    return text
