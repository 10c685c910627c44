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
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

__all__ = [
    "COMPRESSIONS",
    "DECODE_ERRORS",
    "PASSWORD_ENV",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "KafkaAuthError",
    "KafkaConnection",
    "KafkaConnectionProblem",
    "KafkaTLSError",
    "KafkaUnreachable",
    "Secret",
    "UndecodableBatch",
    "check_connection",
    "explain_kafka_error",
    "find_undecodable_batch",
    "getmany_skipping",
    "load_password",
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


class Secret:
    """A password that shows as *** in repr/str, so it cannot leak through logs or errors.
    Not a dataclass on purpose: dataclasses.asdict() would copy the value out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    @property
    def value(self) -> str:
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self

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
    compression: str = "zstd"  # measured: smaller and ~5x faster to encode than aiokafka's level-9 lz4
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
        compression: str = "zstd",
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
        if isinstance(self.bootstrap, str):  # KafkaConnection("kafka://a:9092") is fine too
            object.__setattr__(self, "bootstrap", parse_bootstrap(self.bootstrap))
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
        if isinstance(e, (TopicAuthorizationFailedError, GroupAuthorizationFailedError, ClusterAuthorizationFailedError)):
            return f"authorization failed{who}: the broker's ACLs deny it: {_one_line(e)}"
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
                cls = KafkaAuthError if fatal.startswith(("authentication", "authorization")) else KafkaTLSError
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


# ---- record batches the client cannot decode ----------------------------------------------
#
# aiokafka 0.14 decodes batches lazily inside getmany(). A batch it cannot decode raises
# out of getmany(): UnsupportedCodecError (unknown codec id, or snappy/lz4/zstd without
# cramjam), cramjam.DecompressionError (corrupt lz4/snappy/zstd), gzip.BadGzipFile / zlib.error
# / EOFError (corrupt gzip), CorruptRecordException (bad CRC). The exception names no
# partition or offset, the position does not move, so every retry fails the same way; and
# records of *other* partitions drained in that same call are dropped although their
# positions advanced. getmany_skipping() below undoes both.

def _decode_errors() -> tuple[type[BaseException], ...]:
    import gzip
    import zlib

    from aiokafka.errors import CorruptRecordException, UnsupportedCodecError

    errs: list[type[BaseException]] = [UnsupportedCodecError, CorruptRecordException, gzip.BadGzipFile, zlib.error, EOFError]
    try:
        import cramjam

        errs.append(cramjam.DecompressionError)
    except (ImportError, AttributeError):
        pass
    return tuple(errs)


DECODE_ERRORS: tuple[type[BaseException], ...] = _decode_errors()


@dataclass(slots=True, frozen=True)
class UndecodableBatch:
    """One record batch skipped because it cannot be decoded: offsets [first_offset, next_offset)."""

    topic: str
    partition: int
    first_offset: int
    next_offset: int
    reason: str  # one line, e.g. "UnsupportedCodecError: Unknown compression codec 0x05"
    raw: bytes = field(default=b"", repr=False)  # the batch as stored, for a dead-letter record

    @property
    def skipped_offsets(self) -> int:
        return self.next_offset - self.first_offset


def _positions(consumer: Any) -> dict[Any, int]:
    """Current fetch positions of the assigned partitions, read without awaiting (aiokafka 0.14 internals)."""
    try:
        assignment = consumer._subscription.subscription.assignment
    except AttributeError:
        return {}
    out = {}
    for tp in assignment.tps:
        st = assignment.state_value(tp)
        if st is not None and st.has_valid_position:
            out[tp] = st.position
    return out


async def _positions_before(consumer: Any, timeout_s: float) -> dict[Any, int] | None:
    """Positions of all assigned partitions, waiting for offset lookups; None if not assigned yet."""
    from aiokafka.errors import IllegalStateError

    assigned = consumer.assignment()
    if not assigned:
        return None
    pos = _positions(consumer)
    for tp in assigned - pos.keys():
        try:
            pos[tp] = await asyncio.wait_for(consumer.position(tp), timeout_s)
        except (IllegalStateError, asyncio.TimeoutError):
            return None
    return pos


def _split_batches(data: bytes) -> list[tuple[int, bytes]]:
    """(base_offset, bytes) of each complete batch in a fetched message set (header: int64 offset, int32 length)."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        base, length = int.from_bytes(data[pos:pos + 8], "big", signed=True), int.from_bytes(data[pos + 8:pos + 12], "big")
        end = pos + 12 + length
        if end > len(data):
            break
        out.append((base, bytes(data[pos:end])))
        pos = end
    return out


async def _raw_message_set(consumer: Any, tp: Any, offset: int, max_bytes: int) -> bytes:
    """One Fetch request for tp at offset, answered as stored bytes (no decoding)."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.fetch import FetchRequest

    client = consumer._client
    node = client.cluster.leader_for_partition(tp)
    if node is None or node < 0:
        raise KafkaUnreachable(f"no leader known for {tp.topic}[{tp.partition}]")
    resp = await client.send(node, FetchRequest(0, 1, max_bytes, 0, [(tp.topic, [(tp.partition, offset, max_bytes)])]))
    for _topic, parts in resp.topics:
        for partition, error_code, _hw, *rest in parts:
            if partition == tp.partition:
                err = for_code(error_code)
                if err.errno != 0:
                    raise err()
                return bytes(rest[-1] or b"")
    return b""


async def find_undecodable_batch(consumer: Any, tp: Any, offset: int, max_bytes: int = 1 << 20) -> tuple[UndecodableBatch | None, int]:
    """Scan tp from offset as stored; returns (the first batch that fails to decode or None,
    how many records before it the consumer will deliver)."""
    from aiokafka.errors import CorruptRecordException
    from aiokafka.record.memory_records import MemoryRecords

    good = 0
    for base, raw in _split_batches(await _raw_message_set(consumer, tp, offset, max_bytes)):
        batch = MemoryRecords(raw).next_batch()
        if batch is None:
            break
        try:
            if not batch.validate_crc():
                raise CorruptRecordException(f"Invalid CRC - {tp}")
            records = [] if batch.is_control_batch else [r.offset for r in batch]
        except DECODE_ERRORS as e:
            text = _one_line(e)
            reason = text if text.startswith(type(e).__name__) else f"{type(e).__name__}: {text}"
            return UndecodableBatch(tp.topic, tp.partition, max(base, offset), batch.next_offset, reason, raw), good
        good += sum(1 for o in records if o >= offset)
    return None, good


async def getmany_skipping(consumer: Any, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None,
                           max_fetch_bytes: int | None = None) -> tuple[dict[Any, list[Any]], list[UndecodableBatch]]:
    """consumer.getmany(), except that a batch that cannot be decoded is returned as an
    UndecodableBatch and the partition moved past it; no record of any partition is lost.

    The caller counts, logs and dead-letters each UndecodableBatch, then carries on. Until
    every assigned partition has a position (group join, offset lookup) it returns nothing:
    a failed call is undone from the positions it started at, so they must be known."""
    before = await _positions_before(consumer, max(timeout_ms, 100) / 1000)
    if before is None:
        await asyncio.sleep(min(timeout_ms, 100) / 1000)
        return {}, []
    try:
        return await consumer.getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records), []
    except DECODE_ERRORS as exc:
        # Scan the same window the consumer fetched (its max_partition_fetch_bytes).
        limit = max_fetch_bytes or getattr(getattr(consumer, "_fetcher", None), "_max_partition_fetch_bytes", 1 << 20)
        return await _recover(consumer, before, exc, limit, max_records)


async def _recover(consumer: Any, before: dict[Any, int], exc: BaseException, max_bytes: int,
                   max_records: int | None) -> tuple[dict[Any, list[Any]], list[UndecodableBatch]]:
    now = _positions(consumer)
    moved = [tp for tp, pos in before.items() if now.get(tp, pos) != pos]
    for tp in moved:  # drained in the failed call, then dropped by aiokafka: read them again
        consumer.seek(tp, before[tp])
    for tp in sorted((tp for tp in before if tp not in moved), key=lambda t: (t.topic, t.partition)):
        bad, good = await find_undecodable_batch(consumer, tp, before[tp], max_bytes)
        if bad is None:
            continue
        records, all_out = (await _records_before(consumer, tp, good, max_records or good, bad.first_offset)) if good else ([], True)
        if not all_out:  # not all delivered yet (max_records, slow fetch): skip on a later call
            return ({tp: records} if records else {}), []
        consumer.seek(tp, bad.next_offset)
        return ({tp: records} if records else {}), [bad]
    raise exc  # no batch failed when read again: not a stored-data problem


async def _records_before(consumer: Any, tp: Any, good: int, limit: int, stop: int,
                          timeout_s: float = 10.0) -> tuple[list[Any], bool]:
    """The records of tp before the bad batch at offset stop, at most limit of them; and
    whether all of them are out (so the batch may be skipped). good is the scan's count; the
    consumer may deliver fewer (aborted transactions under read_committed)."""
    out: list[Any] = []
    step = min(good, limit)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(out) < min(good, limit) and loop.time() < deadline:
        try:
            got = await consumer.getmany(tp, timeout_ms=200, max_records=min(step, limit - len(out)))
        except DECODE_ERRORS:
            if step == 1:  # the bad batch came before any further record: none is left
                return out, True
            step = 1  # that call's records were dropped: go one record at a time
            continue
        out.extend(got.get(tp, []))
        if _positions(consumer).get(tp, stop) >= stop:
            return out, True
    return out, len(out) >= good
