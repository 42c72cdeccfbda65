"""A real Apache Kafka 4.4 broker (single-node KRaft) run from its jars: for integration tests and benchmarks.

The broker runs from the jars that ``make kafka-jars`` fetches from Maven Central::

    mvn -q -f tests/kafka/pom.xml dependency:copy-dependencies \
        -DoutputDirectory=$HOME/.cache/lepton-edge/kafka-4.4.0/libs

``LEPTON_KAFKA_LIBS`` points elsewhere. ``KafkaBroker.format()`` writes a KRaft storage in a folder,
``start()`` runs ``java -cp 'libs/*' kafka.Kafka server.properties`` on 127.0.0.1 (free broker and controller
ports) and waits until an admin client gets cluster metadata; ``stop()`` / ``start()`` restart it on the same ports
and data, for outage tests. Topics are never auto-created. The pytest fixtures (``tests/fixtures/kafka.py``) and
``benchmarks/latency.py`` both use this module.

With ``secure=True`` the broker also listens with SASL_SSL (SCRAM-SHA-512 over TLS) on ``secure_port``: a CA and
a broker certificate for 127.0.0.1 are made with the JDK's ``keytool`` (``ca_file`` is the CA's PEM for clients),
and the SCRAM user ``scram_user`` / ``scram_password`` is written into the storage when it is formatted. The
PLAINTEXT listener stays for the other tests and for creating topics.

The JVM is kept small for a 2-core machine: 512 MB heap, serial GC, C1 only, one or two threads per pool.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.4.0"
DEFAULT_LIBS = Path.home() / ".cache" / "lepton-edge" / f"kafka-{KAFKA_VERSION}" / "libs"
JVM_OPTS = [
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:CICompilerCount=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
]
# Consumers in tests join their group in seconds with these (FACTS.md, Kafka).
TEST_CONSUMER_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=1
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.segment.bytes=16777216
"""


_SECURE_PROPERTIES = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},SASL_SSL://127.0.0.1:{secure_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure_port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={store_password}
ssl.key.password={store_password}
"""


def kafka_libs() -> Path:
    return Path(os.environ.get("LEPTON_KAFKA_LIBS", str(DEFAULT_LIBS))).expanduser()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_id() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 of 16 random bytes, unpadded.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


@dataclass
class KafkaBroker:
    """One single-node KRaft broker+controller process; ``stop()``/``start()`` keep ports and data."""

    libs: Path
    workdir: Path
    port: int = field(default_factory=_free_port)
    controller_port: int = field(default_factory=_free_port)
    java: str = "java"
    secure: bool = False
    secure_port: int = field(default_factory=_free_port)
    scram_user: str = "lepton-consumer"
    scram_password: str = field(default_factory=lambda: f"scram-{uuid.uuid4().hex}")
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def secure_bootstrap(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def _java(self, *args: str) -> list[str]:
        return [
            self.java,
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            self._classpath(),
            *args,
        ]

    def format(self) -> None:
        """Write the config and format a fresh KRaft storage (standalone controller quorum)."""
        data = self.workdir / "data"
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_path))
        props = _SERVER_PROPERTIES.format(port=self.port, controller_port=self.controller_port, data=data)
        scram: list[str] = []
        if self.secure:
            keystore, store_password = self._make_certificates()
            overrides = _SECURE_PROPERTIES.format(
                port=self.port,
                controller_port=self.controller_port,
                secure_port=self.secure_port,
                keystore=keystore,
                store_password=store_password,
            )
            keys = {line.split("=", 1)[0] for line in overrides.splitlines()}
            props = "".join(line + "\n" for line in props.splitlines() if line.split("=", 1)[0] not in keys)
            props += overrides
            scram = [f"--add-scram=SCRAM-SHA-512=[name={self.scram_user},password={self.scram_password}]"]
        (self.workdir / "server.properties").write_text(props)
        cmd = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            f"--cluster-id={_cluster_id()}",  # "=": a random id may start with "-"
            f"--config={self.workdir / 'server.properties'}",
            *scram,
        )
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")

    def _make_certificates(self) -> tuple[Path, str]:
        """A CA, and a broker key + certificate for 127.0.0.1 signed by it, with the JDK's keytool (2 days)."""
        tls = self.workdir / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        password = uuid.uuid4().hex
        keytool = str(Path(self.java).with_name("keytool")) if os.sep in self.java else "keytool"
        san = "SAN=ip:127.0.0.1,dns:localhost"
        ca, broker = tls / "ca.p12", tls / "broker.p12"

        def run(*args: str) -> None:
            out = subprocess.run([keytool, *args], capture_output=True, text=True, timeout=60, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"keytool {args[0]} failed:\n{out.stdout}\n{out.stderr}")

        store = ["-storetype", "PKCS12", "-storepass", password]
        run(
            "-genkeypair",
            "-alias",
            "ca",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-dname",
            "CN=lepton-test-ca",
            "-ext",
            "bc:c",
            "-validity",
            "2",
            "-keystore",
            str(ca),
            *store,
        )
        run("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca), "-file", str(self.ca_file), *store)
        run(
            "-genkeypair",
            "-alias",
            "broker",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-dname",
            "CN=127.0.0.1",
            "-ext",
            san,
            "-validity",
            "2",
            "-keystore",
            str(broker),
            *store,
        )
        run("-certreq", "-alias", "broker", "-keystore", str(broker), "-file", str(tls / "broker.csr"), *store)
        run(
            "-gencert",
            "-alias",
            "ca",
            "-keystore",
            str(ca),
            "-infile",
            str(tls / "broker.csr"),
            "-outfile",
            str(tls / "broker.pem"),
            "-rfc",
            "-ext",
            san,
            "-validity",
            "2",
            *store,
        )
        run("-importcert", "-noprompt", "-alias", "ca", "-file", str(self.ca_file), "-keystore", str(broker), *store)
        run(
            "-importcert",
            "-noprompt",
            "-alias",
            "broker",
            "-file",
            str(tls / "broker.pem"),
            "-keystore",
            str(broker),
            *store,
        )
        return broker, password

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the broker and wait until a client gets cluster metadata from it."""
        if self.running:
            return
        with open(self.workdir / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv
                self._java("kafka.Kafka", str(self.workdir / "server.properties")),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"Kafka broker exited at start (code {self._proc_code()}):\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    pass
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=3000, request_timeout_ms=5000
                )
                try:
                    admin.describe_cluster()
                    return
                finally:
                    admin.close()
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Kafka broker not ready within {timeout_s:g} s ({last}):\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL if it takes longer than ``timeout_s``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill(self) -> None:
        """Crash it (SIGKILL): no controlled shutdown."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def _proc_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        chunks = []
        for path in (self.workdir / "stdout.log", self.log_path):
            if path.exists():
                chunks.append(f"--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(chunks)

    def create_topic(self, name: str, partitions: int = 3) -> None:
        create_topic(self.bootstrap, name, partitions)

    def delete_topic(self, name: str) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=5000, request_timeout_ms=5000)
        try:
            admin.delete_topics([name], timeout_ms=5000)
        finally:
            admin.close()


def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    """Create ``name`` (replication 1) on the broker at ``bootstrap``."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=10000, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=10000)
    finally:
        admin.close()


def broker_or_reason(workdir: Path, *, secure: bool = False) -> tuple[KafkaBroker | None, str]:
    """A formatted (not started) broker in ``workdir``, or None and why it cannot run here."""
    libs = kafka_libs()
    if not any(libs.glob("kafka_2.13-*.jar")):
        return None, (
            f"Kafka broker jars not found in {libs}: run `make kafka-jars` (Maven fetches Apache Kafka"
            f" {KAFKA_VERSION}) or point LEPTON_KAFKA_LIBS at them"
        )
    java = shutil.which("java")
    if java is None:
        return None, "`java` not found on PATH: the Kafka broker needs a Java 17+ runtime"
    if (
        secure
        and shutil.which("keytool", path=str(Path(java).resolve().parent)) is None
        and not shutil.which("keytool")
    ):
        return None, "`keytool` not found: the TLS listener's certificates need the JDK's keytool"
    broker = KafkaBroker(libs=libs, workdir=workdir, java=java, secure=secure)
    broker.format()
    return broker, ""
