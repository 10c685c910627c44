"""A real Apache Kafka broker (KRaft, single node, 127.0.0.1 only) for the tests.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` and are cached
under ``$SHIFTWATCH_CACHE`` (default ``~/.cache/shiftwatch``), keyed by a hash of
the pom, so a pom change refetches. Also a script:

    python tests/kafka_broker.py fetch      # download the jars (what `make test` does first)
    python tests/kafka_broker.py start      # run a broker in the foreground until Ctrl-C
    python tests/kafka_broker.py stop       # SIGTERM the broker that `start` left running
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
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

    def __init__(self, workdir: Path | None = None, fast_jit: bool = True, heap: str = "512m") -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="shiftwatch-kafka-"))
        self.port, self.controller_port = _free_ports(2)
        self.fast_jit = fast_jit
        self.heap = heap
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self.jars: Path | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def _properties(self) -> Path:
        p = self.workdir / "server.properties"
        p.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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
            r = subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c", str(props)), capture_output=True, text=True, timeout=120)
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
        b = KafkaBroker().start()
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(f"{b.proc.pid} {b.bootstrap}\n" if b.proc else "")
        print(f"kafka broker on {b.bootstrap} (started in {b.startup_seconds:.1f} s); Ctrl-C or `stop` ends it", flush=True)
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
