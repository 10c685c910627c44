"""A real Apache Kafka broker (KRaft, single node, 127.0.0.1 only) for the tests.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` and are cached
under ``$SHIFTWATCH_CACHE`` (default ``~/.cache/shiftwatch``), keyed by a hash of
the pom, so a pom change refetches. Also a script:

    python tests/kafka_broker.py fetch      # download the jars (what `make test` does first)
    python tests/kafka_broker.py start      # run a broker in the foreground until Ctrl-C
    python tests/kafka_broker.py start --secure   # also SASL_SSL and mutual-TLS listeners
    python tests/kafka_broker.py stop       # SIGTERM the broker that `start` left running
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POM = ROOT / "deploy" / "kafka" / "pom.xml"


class BrokerError(RuntimeError):
    """The broker could not be fetched or started; the message has the exact cause."""


def cache_dir() -> Path:
    base = Path(os.environ.get("SHIFTWATCH_CACHE", Path.home() / ".cache" / "shiftwatch"))
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return base / f"kafka-jars-{digest}"


def fetch_jars() -> Path:
    """The directory of broker jars, downloading them with Maven on first use."""
    target = cache_dir()
    if (target / ".complete").exists() and any(target.glob("kafka_2.13-*.jar")):
        return target
    shutil.rmtree(target, ignore_errors=True)  # a partial or damaged cache entry
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not installed: it is needed to fetch the Kafka broker jars")
    tmp = Path(tempfile.mkdtemp(prefix="kafka-jars-", dir=target.parent if target.parent.exists() else None))
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BrokerError(f"mvn failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    (tmp / ".complete").write_text("ok\n")
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all sockets held open together, so no duplicates)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(slots=True, frozen=True)
class TestTLS:
    """A throwaway CA and the certificates made from it for one broker run (PEM for clients)."""

    dir: Path
    ca_file: Path  # the CA clients must trust
    client_cert: Path  # client certificate for the mutual-TLS listener (signed by the CA)
    client_key: Path
    untrusted_ca_file: Path  # another CA: a client trusting only this one must fail verification
    untrusted_client_cert: Path  # client certificate signed by the untrusted CA
    untrusted_client_key: Path
    keystore: Path  # broker key pair + chain, PKCS12
    truststore: Path  # the CA, PKCS12 (keytool), for the broker to verify client certificates
    store_password: str


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise BrokerError(f"{what} failed ({r.returncode}): {' '.join(cmd[:3])} ...\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, pem = d / f"{name}.key", d / f"{name}.pem"
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", str(key), "-out", str(pem), "-days", "2", "-subj", f"/CN={name}",
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], f"openssl CA {name}")
    return key, pem


def _leaf(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    key, csr, pem, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    extfile.write_text(ext + "\n")
    _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"], f"openssl key {name}")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]), "-CAcreateserial",
          "-out", str(pem), "-days", "2", "-extfile", str(extfile)], f"openssl sign {name}")
    return key, pem


def make_test_tls(d: Path) -> TestTLS:
    """A CA, a broker certificate (SAN IP:127.0.0.1, DNS:localhost), a client certificate, and a
    second CA nobody trusts; broker stores in PKCS12. Needs openssl and keytool (the JDK)."""
    d.mkdir(parents=True, exist_ok=True)
    if shutil.which("openssl") is None or shutil.which("keytool") is None:
        raise BrokerError("openssl and keytool are needed to make the test broker's certificates")
    password = secrets.token_hex(12)
    ca = _ca(d, "shiftwatch-test-ca")
    rogue = _ca(d, "untrusted-ca")
    bkey, bpem = _leaf(d, "broker", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth")
    ckey, cpem = _leaf(d, "client", ca, "extendedKeyUsage=clientAuth")
    ukey, upem = _leaf(d, "untrusted-client", rogue, "extendedKeyUsage=clientAuth")
    keystore, truststore = d / "broker.p12", d / "truststore.p12"
    _run(["openssl", "pkcs12", "-export", "-in", str(bpem), "-inkey", str(bkey), "-certfile", str(ca[1]),
          "-name", "broker", "-out", str(keystore), "-passout", f"pass:{password}"], "openssl pkcs12")
    _run(["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca[1]), "-keystore", str(truststore),
          "-storetype", "PKCS12", "-storepass", password], "keytool -importcert")
    return TestTLS(d, ca[1], cpem, ckey, rogue[1], upem, ukey, keystore, truststore, password)


_LIVE: "weakref.WeakSet[KafkaBroker]" = weakref.WeakSet()


def _kill_pg(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@atexit.register
def _kill_all() -> None:
    """No JVM outlives the Python process that started it."""
    for b in list(_LIVE):
        if b.proc is not None:
            _kill_pg(b.proc)


class KafkaBroker:
    """Start, stop, kill and restart one KRaft broker bound to loopback."""

    def __init__(self, workdir: Path | None = None, fast_jit: bool = True, heap: str = "512m", secure: bool = False) -> None:
        """secure=True adds a SASL_SSL listener (SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN users) and an
        SSL listener that requires a client certificate, beside the PLAINTEXT one."""
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="shiftwatch-kafka-"))
        self.secure = secure
        self.port, self.controller_port, self.sasl_ssl_port, self.mtls_port = _free_ports(4)
        self.fast_jit = fast_jit
        self.heap = heap
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self.jars: Path | None = None
        self._formatted = False
        self.tls: TestTLS | None = None
        # SCRAM users are written into the metadata log when the storage is formatted;
        # PLAIN users live in the SASL_SSL listener's JAAS config. Random per run.
        self.scram_username, self.scram_password = "alice", secrets.token_hex(16)
        self.plain_username, self.plain_password = "bob", secrets.token_hex(16)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """SASL_SSL listener: SCRAM-SHA-512/256 as scram_username, PLAIN as plain_username."""
        return f"127.0.0.1:{self.sasl_ssl_port}"

    @property
    def scram_password_file(self) -> Path:
        """scram_password in a file (mode 0600), as a --sasl-password-file would hold it."""
        return self.workdir / "scram.password"

    @property
    def plain_password_file(self) -> Path:
        return self.workdir / "plain.password"

    @property
    def mtls_bootstrap(self) -> str:
        """SSL listener with ssl.client.auth=required (tls.client_cert/client_key)."""
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def _listener_lines(self) -> list[str]:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        extra: list[str] = []
        if self.secure:
            self.tls = self.tls or make_test_tls(self.workdir / "tls")
            t = self.tls
            for path, pw in ((self.scram_password_file, self.scram_password), (self.plain_password_file, self.plain_password)):
                path.write_text(pw + "\n")
                path.chmod(0o600)
            listeners += [f"SASL_SSL://127.0.0.1:{self.sasl_ssl_port}", f"MTLS://127.0.0.1:{self.mtls_port}"]
            protocols += ["SASL_SSL:SASL_SSL", "MTLS:SSL"]
            scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
                     f'user_{self.plain_username}="{self.plain_password}";')
            extra = [
                "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
                f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
                f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}",
                f"listener.name.sasl_ssl.plain.sasl.jaas.config={plain}",
                "listener.name.mtls.ssl.client.auth=required",
                f"ssl.keystore.location={t.keystore}",
                "ssl.keystore.type=PKCS12",
                f"ssl.keystore.password={t.store_password}",
                f"ssl.key.password={t.store_password}",
                f"ssl.truststore.location={t.truststore}",
                "ssl.truststore.type=PKCS12",
                f"ssl.truststore.password={t.store_password}",
            ]
        listeners.append(f"CONTROLLER://127.0.0.1:{self.controller_port}")
        advertised = ",".join(x for x in listeners if not x.startswith("CONTROLLER"))
        return [f"listeners={','.join(listeners)}", f"advertised.listeners={advertised}",
                f"listener.security.protocol.map={','.join(protocols)}", *extra]

    def _properties(self) -> Path:
        p = self.workdir / "server.properties"
        p.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    *self._listener_lines(),
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.workdir / 'data'}",
                    "num.partitions=1",
                    "auto.create.topics.enable=true",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.flush.interval.messages=1",
                    "log.cleaner.enable=true",
                    "log.segment.bytes=16777216",
                    "message.max.bytes=4194304",
                    "replica.fetch.max.bytes=4194304",
                    "num.network.threads=2",
                    "num.io.threads=2",
                    "",
                ]
            )
        )
        return p

    def _java(self, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not installed: the Kafka broker needs Java 17")
        opts = [f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true",
                f"-Dlog4j.configuration=file:{ROOT / 'deploy' / 'kafka' / 'log4j.properties'}"]
        if self.fast_jit:
            opts.append("-XX:TieredStopAtLevel=1")
        return [java, *opts, "-cp", f"{self.jars}/*", *args]

    def start(self, timeout: float = 90.0) -> "KafkaBroker":
        self.jars = self.jars or fetch_jars()
        props = self._properties()
        t0 = time.monotonic()
        if not self._formatted:
            # Kafka's own Uuid.randomUuid never starts with '-' (argparse would read it as an
            # option: "argument --cluster-id/-t: expected one argument", 1 start in 64).
            cluster = "-"
            while cluster.startswith("-"):
                cluster = __import__("base64").urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            scram = []
            if self.secure:
                for mech in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                    scram += ["--add-scram", f"{mech}=[name={self.scram_username},password={self.scram_password}]"]
            r = subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c", str(props), *scram), capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise BrokerError(f"kafka.tools.StorageTool format failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
            self._formatted = True
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _LIVE.add(self)
        weakref.finalize(self, _kill_pg, self.proc)
        (self.workdir / "broker.pid").write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"kafka.Kafka exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                asyncio.run(self._ping())
                self.startup_seconds = time.monotonic() - t0
                return self
            except Exception as e:  # not up yet
                last = repr(e)
                time.sleep(0.3)
        self.kill()
        raise BrokerError(f"broker did not answer within {timeout:.0f}s (last error {last}):\n{self.tail()}")

    async def _ping(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        # A plain TCP probe first, so aiokafka does not log a connection error per try.
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    def create_topic(self, name: str, partitions: int = 1, **configs: str) -> None:
        async def go() -> None:
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or None)])
            finally:
                await admin.close()

        asyncio.run(go())

    # Record batch v2 header up to the record count: base offset, length, leader epoch, magic,
    # crc, attributes, last offset delta, timestamps, producer id/epoch, base sequence, count.
    BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")

    def segment(self, topic: str, partition: int) -> Path:
        """The partition's first log segment (tests write little, so it holds everything)."""
        return self.workdir / "data" / f"{topic}-{partition}" / "00000000000000000000.log"

    def stored_batches(self, topic: str, partition: int) -> list[tuple[int, int, tuple]]:
        """(file position, total length, header fields) of each batch as the broker stored it."""
        data, out, pos = self.segment(topic, partition).read_bytes(), [], 0
        while pos + self.BATCH_HEADER.size <= len(data):
            f = self.BATCH_HEADER.unpack_from(data, pos)
            out.append((pos, 12 + f[1], f))
            pos += 12 + f[1]
        return out

    def corrupt_batch(self, topic: str, partition: int, base_offset: int, how: str) -> None:
        """Alter the stored batch starting at base_offset in place, as bit rot or a foreign writer
        would: how='codec' sets codec id 5 (unknown to every client), how='payload' scrambles 8
        bytes mid-batch, both with the CRC32C recomputed so a client gets as far as decoding;
        how='bitrot' scrambles them and leaves the CRC (the client's CRC check fails). The
        broker validates batches on produce: an undecodable one cannot be produced."""
        from aiokafka.record._crc32c import crc as crc32c

        path = self.segment(topic, partition)
        buf = bytearray(path.read_bytes())
        pos, size, f = next(b for b in self.stored_batches(topic, partition) if b[2][0] == base_offset)
        if how == "codec":
            struct.pack_into(">h", buf, pos + 21, (f[5] & ~7) | 5)
        elif how in ("payload", "bitrot"):
            mid = pos + self.BATCH_HEADER.size + (size - self.BATCH_HEADER.size) // 2
            for i in range(mid, mid + 8):
                buf[i] ^= 0x5A
        else:
            raise ValueError(f"how must be 'codec', 'payload' or 'bitrot', not {how!r}")
        if how != "bitrot":
            struct.pack_into(">I", buf, pos + 17, crc32c(buf[pos + 21:pos + size]))
        with open(path, "r+b") as fh:
            fh.seek(pos)
            fh.write(buf[pos:pos + size])

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no broker log)"

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same ports and data (topics and offsets survive)."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "start"
    if cmd == "fetch":
        t = time.monotonic()
        path = fetch_jars()
        print(f"kafka broker jars: {path} ({len(list(path.glob('*.jar')))} jars, {time.monotonic() - t:.1f} s)")
        return 0
    state = Path(os.environ.get("SHIFTWATCH_CACHE", Path.home() / ".cache" / "shiftwatch")) / "manual-broker.pid"
    if cmd == "stop":
        try:
            pid = int(state.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            print("no broker started by `kafka_broker.py start` is recorded")
            return 1
        try:
            os.killpg(pid, signal.SIGTERM)
            print(f"sent SIGTERM to broker process group {pid}")
        except ProcessLookupError:
            print(f"broker {pid} is not running")
        state.unlink(missing_ok=True)
        return 0
    if cmd == "start":
        b = KafkaBroker(secure="--secure" in argv).start()
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(f"{b.proc.pid} {b.bootstrap}\n" if b.proc else "")
        print(f"kafka broker on {b.bootstrap} (started in {b.startup_seconds:.1f} s); Ctrl-C or `stop` ends it", flush=True)
        if b.tls is not None:
            print(f"  SASL_SSL {b.sasl_ssl_bootstrap}: SCRAM-SHA-512/256 user {b.scram_username}, PLAIN user {b.plain_username}"
                  f" (password files {b.scram_password_file}, {b.plain_password_file})\n"
                  f"  SSL (client certificate required) {b.mtls_bootstrap}\n"
                  f"  CA {b.tls.ca_file}; client certificate {b.tls.client_cert}, key {b.tls.client_key}", flush=True)
        try:
            while b.proc and b.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            b.cleanup()
            state.unlink(missing_ok=True)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
