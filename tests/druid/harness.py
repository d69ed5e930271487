"""A small real Apache Druid cluster as local processes, configured by kubedruid's own builders.

ZooKeeper (ZooKeeperServerMain) and one process per node type (coordinator acting as overlord, broker, historical,
router) run from the jars that tools/druid/fetch.py resolved from Maven Central. Each Druid process gets:

* the classpath `conf/_common:conf/<service>:<druid>/lib/*`, where conf/_common/common.runtime.properties and
  conf/<service>/runtime.properties are, byte for byte, the files `kubedruid.specs.cluster.config_files()` renders
  (what the apache/druid image's entrypoint copies there from DRUID_CONFIG_COMMON / DRUID_CONFIG_<service>);
* `-D` system properties for what a pod gets from elsewhere (druid.host, from the `druid_host` env var) and for the
  few local substitutions listed in `local_overrides()` (Druid lets system properties win over the files);
* the environment variables the pod would get from Secrets (keystore, admin and metadata passwords), which the
  rendered password providers read;
* `-Djdk.net.hosts.file=<work>/hosts`, mapping every pod FQDN (and the ZooKeeper Service name) to 127.0.0.1, so that
  the names in the certificates resolve without touching /etc/hosts. Hostname validation is not relaxed anywhere. A
  test may move a name to another loopback address (`point`), as a replaced pod comes back at a new address; the
  processes listen on every address, and the JVM reads the file again when its cache of the name runs out;
* of the JVM options kubedruid gives a pod's Druid (JAVA_OPTS, druid/jvm.py), the DNS cache time.

Logs go to <work>/logs/<process>.log; a process that does not become healthy raises `ProcessFailed`, which names that
log and quotes the lines that explain the failure.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubedruid.certs import bundle
from kubedruid.druid import jvm
from kubedruid.druid import properties as druid_props
from kubedruid.druid import tls as druid_tls
from kubedruid.druid.nodes import BROKERS, COORDINATORS, HISTORICALS, MIDDLE_MANAGERS, ROUTERS, NodeType

REPO = Path(__file__).resolve().parents[2]
FETCH = REPO / "tools" / "druid" / "fetch.py"

JDKS = {17: Path("/usr/lib/jvm/java-17-openjdk-amd64"), 25: Path("/usr/lib/jvm/temurin-25-jdk-amd64")}

# docs/operations/java.md ("Strong encapsulation"): what bin/run-java adds on Java 11+.
STRONG_ENCAPSULATION = [
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
]


@dataclass(frozen=True)
class Memory:
    heap: str
    direct: str


# Small, but above what each process checks at start: brokers and historicals need
# druid.processing.buffer.sizeBytes * (numThreads + numMergeBuffers + 1) = 50 MB * 4 of direct memory (rendered).
MEMORY: dict[str, Memory] = {
    COORDINATORS.key: Memory("384m", "64m"),
    BROKERS.key: Memory("384m", "256m"),
    HISTORICALS.key: Memory("256m", "256m"),
    ROUTERS.key: Memory("192m", "64m"),
    MIDDLE_MANAGERS.key: Memory("192m", "32m"),  # it only forks peons (PEON_MEMORY), it processes nothing itself
}
ZOOKEEPER_MEMORY = Memory("128m", "32m")
# A peon (the JVM a middleManager forks per task) needs the rendered fork buffers:
# druid.indexer.fork.property.druid.processing.buffer.sizeBytes 25 MB * (1 thread + 2 merge + 1) = 100 MB direct.
PEON_MEMORY = Memory("256m", "160m")
# Start order: the coordinator(-overlord) first (it also serves the Derby metadata store), then the rest together.
NODE_ORDER = (COORDINATORS, HISTORICALS, MIDDLE_MANAGERS, BROKERS, ROUTERS)

LOG4J2 = """<?xml version="1.0" encoding="UTF-8" ?>
<Configuration status="WARN">
  <Appenders>
    <Console name="Console" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{ISO8601} %p [%t] %c - %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="Console"/></Root>
    <Logger name="org.apache.druid.server.coordination.ChangeRequestHttpSyncer" level="info"/>
    <!-- each call a process makes to a peer and the status it got (a test follows a router's calls); of its
         other debug lines none -->
    <Logger name="org.apache.druid.java.util.http.client.NettyHttpClient" level="debug">
      <Filters>
        <RegexFilter regex=".*\\] Got response: .*" onMatch="ACCEPT" onMismatch="NEUTRAL"/>
        <ThresholdFilter level="info" onMatch="NEUTRAL" onMismatch="DENY"/>
      </Filters>
    </Logger>
  </Loggers>
</Configuration>
"""
LOGBACK = """<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{ISO8601} %level [%thread] %logger - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="OUT"/></root>
</configuration>
"""


class ProcessFailed(AssertionError):
    """A process did not come up (or died); the message names its log and quotes the telling lines."""


class ConfigRejected(ProcessFailed):
    """Druid refused the configuration at startup (Guice / property validation errors)."""


# ----------------------------------------------------------------------------------------------------------------
# what is installed


@dataclass(frozen=True)
class DruidInstall:
    version: str
    lib: Path
    extensions_dir: Path
    extensions: dict[str, str]  # name -> the version resolved
    missing: tuple[str, ...]
    zookeeper_lib: Path

    @property
    def java_major(self) -> int:
        return java_major_for(self.version)

    @property
    def java_home(self) -> Path:
        return JDKS[self.java_major]


def java_major_for(version: str) -> int:
    """The JDK on this machine that the Druid line supports (spec druid-tls §5.1): up to 37 Java 17, 38+ Java 25."""
    return 25 if int(version.split(".")[0]) >= 38 else 17


def cache_root() -> Path:
    return Path(os.environ.get("KUBEDRUID_DRUID_CACHE", Path.home() / ".cache" / "kubedruid" / "druid"))


def _fetch_manifest_format() -> int:
    return int(re.search(r"^MANIFEST_FORMAT = (\d+)", FETCH.read_text(), re.M).group(1))


def install(version: str, *, fetch: bool = True) -> DruidInstall:
    """The cached Druid `version`, resolving it with Maven first when it is not cached (tools/druid/fetch.py)."""
    root = cache_root()
    manifest = root / version / "manifest.json"
    current = json.loads(manifest.read_text()) if manifest.exists() else {}
    # A cache of an older fetch.py (format) may lack what the present one resolves, e.g. its fallbacks.
    if fetch and not (current.get("ok") and current.get("format") == _fetch_manifest_format()):
        subprocess.run(["python3", str(FETCH), version], check=False, stdout=subprocess.DEVNULL)
    if not manifest.exists():
        raise FileNotFoundError(f"Druid {version} is not cached in {root}; run tools/druid/fetch.py {version}")
    m = json.loads(manifest.read_text())
    if not m.get("ok"):
        raise FileNotFoundError(f"Druid {version} did not resolve from Maven Central: {m.get('error')}")
    zk = sorted((root / "zookeeper").glob("*/lib"))
    if not zk:
        raise FileNotFoundError(f"ZooKeeper is not cached in {root}/zookeeper; run tools/druid/fetch.py")
    return DruidInstall(version=version, lib=Path(m["lib"]), extensions_dir=Path(m["extensions_dir"]),
                        extensions={k: v["version"] for k, v in m["extensions"].items()},
                        missing=tuple(m["missing"]), zookeeper_lib=zk[-1])


# ----------------------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class Node:
    """One Druid process of the local cluster: a node type and the pod it stands for."""

    type: NodeType
    fqdn: str  # the pod's FQDN: what druid.host is in the pod, and a name in the certificate

    @property
    def name(self) -> str:
        return self.type.service


def common_overrides(install: DruidInstall, work: Path, rendered: dict[str, str], *,
                     served: frozenset[str] = frozenset()) -> tuple[dict[str, str], list[str]]:
    """System properties layered over the rendered common.runtime.properties, and why each is there.

    Nothing TLS-related is overridden except the *paths* of the key and trust stores (the pod mounts them at
    /opt/druid/ssl, here they are copies in <work>/tls). Everything else the test changes is a local stand-in for
    an external service or a container path. `served`: what the caller runs behind the rendered names
    ("metadata": a MySQL, "deep-storage": an S3 server), whose rendered properties then stay as they are."""
    out: dict[str, str] = {}
    why: list[str] = []
    var = work / "var"
    # Extensions: the image keeps them in /opt/druid/extensions.
    out["druid.extensions.directory"] = str(install.extensions_dir)
    loadlist = json.loads(rendered["druid.extensions.loadList"])
    kept = [e for e in loadlist if e in install.extensions]
    dropped = [e for e in loadlist if e not in install.extensions]
    if dropped:
        out["druid.extensions.loadList"] = json.dumps(kept, separators=(",", ":"))
        why.append(f"druid.extensions.loadList: without {dropped} (not resolvable from Maven Central for "
                   f"Druid {install.version}; see docs/druid-test-tier.md)")
    if "metadata" not in served:
        # Metadata store: MySQL/PostgreSQL is a separate KubeDB database; Derby is built into the coordinator.
        out |= {"druid.metadata.storage.type": "derby",
                "druid.metadata.storage.connector.connectURI":
                    f"jdbc:derby://localhost:1527/{var}/metadata.db;create=true",
                "druid.metadata.storage.connector.host": "localhost",
                "druid.metadata.storage.connector.port": "1527"}
        why.append("druid.metadata.storage.*: Derby in the coordinator instead of the MySQL/PostgreSQL database")
    if "deep-storage" not in served:
        # Deep storage: S3 & co. are external; a local directory stands in.
        out |= {"druid.storage.type": "local", "druid.storage.storageDirectory": str(var / "deep-storage")}
        why.append("druid.storage.type/storageDirectory: local directory instead of S3")
    out["druid.indexer.logs.directory"] = str(var / "indexing-logs")
    why.append("druid.indexer.logs.directory: a path under the work directory instead of /druid/data")
    if rendered.get("druid.enableTlsPort") == "true":
        out["druid.server.https.keyStorePath"] = str(work / "tls" / Path(druid_tls.KEYSTORE_PATH).name)
    if "druid.client.https.trustStorePath" in rendered:  # also in client-trust mode, with no TLS port
        out["druid.client.https.trustStorePath"] = str(work / "tls" / Path(druid_tls.TRUSTSTORE_PATH).name)
    if "druid.client.https.trustStorePath" in out or "druid.server.https.keyStorePath" in out:
        why.append("druid.server.https.keyStorePath, druid.client.https.trustStorePath: the same files (the keystore "
                   "from the cert-manager Secret, the truststore as the operator's CA bundle renders it) in "
                   "<work>/tls instead of the pod's /opt/druid/tls-live and /opt/druid/trust")
    return out, why


def node_overrides(node: Node, work: Path, rendered: dict[str, str]) -> dict[str, str]:
    out = {"druid.host": node.fqdn}  # the pod's `druid_host` env var
    if "druid.segmentCache.locations" in rendered:
        locations = json.loads(rendered["druid.segmentCache.locations"])
        for loc in locations:
            loc["path"] = str(work / "var" / "segment-cache")
        out["druid.segmentCache.locations"] = json.dumps(locations, separators=(",", ":"))
    if node.type is MIDDLE_MANAGERS:
        out["druid.indexer.task.baseTaskDir"] = str(work / "var" / "task")  # container path (PVC mount)
        # The peon JVM: small memory, and the hosts file (a pod resolves the Services through DNS; a peon gets
        # the middleManager's druid.* properties but no other JVM flags). Druid adds the --add-opens itself.
        out["druid.indexer.runner.javaOptsArray"] = json.dumps(
            [f"-Xms{PEON_MEMORY.heap}", f"-Xmx{PEON_MEMORY.heap}", f"-XX:MaxDirectMemorySize={PEON_MEMORY.direct}",
             "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Duser.timezone=UTC", "-Dfile.encoding=UTF-8",
             f"-Djdk.net.hosts.file={work / 'hosts'}"], separators=(",", ":"))
    return out


# ----------------------------------------------------------------------------------------------------------------
# processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    started: float
    ready_after: float | None = None
    memory: Memory | None = None
    command: list[str] = field(default_factory=list)


ERROR_LINE = re.compile(r"(ERROR|Exception|Caused by|^\s*\d+\) |No implementation|Unable to|refused|rejected"
                        r"|PKIX|SSLHandshake|certificate|Address already in use)")


def log_excerpt(path: Path, lines: int = 40) -> str:
    """The last lines of a log, preceded by the first lines that look like the explanation."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    telling = [l for l in text if ERROR_LINE.search(l)][:25]
    tail = text[-lines:]
    out = []
    if telling:
        out += ["--- first error-looking lines ---", *telling]
    out += [f"--- last {len(tail)} lines ---", *tail]
    return "\n".join(out)


class LocalDruid:
    """The cluster. Use as a context manager (every process it started is stopped on exit, also on errors)."""

    def __init__(self, install: DruidInstall, work: Path, config_files: dict[str, str], nodes: list[Node], *,
                 zookeeper: str, hosts: list[str], env: dict[str, str], tls_files: dict[str, bytes] | None = None,
                 proposed: dict[str, str] | None = None, tls_layout: str = "secret-volume",
                 served: frozenset[str] = frozenset()):
        """`proposed`: properties appended to the rendered common.runtime.properties, for experiments with a
        builder change that is proposed but not made (they are written, commented as such, into the file).
        `served`: see common_overrides ("metadata", "deep-storage": the caller serves them)."""
        self.install = install
        self.proposed = proposed or {}
        self.tls_layout = tls_layout  # "secret-volume" (kubelet's symlinks) or "files" (plain files, for contrast)
        self.work = work
        self.config_files = config_files
        self.nodes = nodes
        self.zookeeper = zookeeper  # host:port from the rendered druid.zk.service.host
        self.hosts = hosts
        self.env = env
        self.tls_files = tls_files or {}
        self.procs: dict[str, Proc] = {}
        self.served = served
        self.common = druid_props.parse(config_files["common.runtime.properties"])
        self.overrides, self.override_reasons = common_overrides(install, work, self.common, served=served)
        self.tls = self.common.get("druid.enableTlsPort") == "true"
        self.addresses: dict[str, str] = {}  # name -> a loopback address other than 127.0.0.1 (point)
        self.node_props: dict[str, dict[str, str]] = {}  # process -> system properties a test adds, from its next start
        self.stock_dns_cache: set[str] = set()  # processes started without kubedruid's DNS cache time (the JVM's 30 s)

    # -- files --------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        w = self.work
        for d in ("conf/_common", "logs", "var/tmp", "tls", "zk/data"):
            (w / d).mkdir(parents=True, exist_ok=True)
        common = self.config_files["common.runtime.properties"]
        if self.proposed:
            common += "# proposed builder change, under test (not rendered by kubedruid today):\n"
            common += druid_props.render(self.proposed)
        (w / "conf/_common/common.runtime.properties").write_text(common)
        (w / "conf/_common/log4j2.xml").write_text(LOG4J2)
        for n in self.nodes:
            d = w / "conf" / n.name
            d.mkdir(parents=True, exist_ok=True)
            (d / "runtime.properties").write_text(self.config_files[f"{n.type.key}.properties"])
        self._write_hosts()
        if self.tls_files:
            self._write_tls()
        (w / "overrides.properties").write_text(
            "".join(f"# {r}\n" for r in self.override_reasons) + druid_props.render(self.overrides))

    def _write_hosts(self) -> None:
        # Every name the processes look up; nothing else resolves (the JVM reads only this file). Replaced by a
        # rename: a JVM never reads half a file.
        names = [n for n in dict.fromkeys(["localhost", socket.gethostname(), *self.hosts]) if n not in self.addresses]
        text = "127.0.0.1 " + " ".join(names) + "\n" + "".join(f"{a} {n}\n" for n, a in self.addresses.items())
        tmp = self.work / ".hosts.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.work / "hosts")

    def point(self, name: str, address: str | None) -> None:
        """Moves `name` to another loopback address (None: back to 127.0.0.1), as DNS does for a pod that comes back
        at a new address. A JVM sees it when its cached address for the name expires."""
        if address is None:
            self.addresses.pop(name, None)
        else:
            self.addresses[name] = address
        self._write_hosts()

    def replace_tls_files(self, files: dict[str, bytes]) -> None:
        """Swap the key/trust stores the way the kubelet updates a Secret volume (atomic `..data` symlink swap)."""
        self.tls_files = {**self.tls_files, **files}
        self._write_tls()

    def _write_tls(self) -> None:
        files = dict(self.tls_files)
        if "ca.crt" in files:  # the CA bundle the operator composes (certs/bundle.py) from the issuer's CA
            files[Path(druid_tls.TRUSTSTORE_PATH).name] = bundle.render(bundle.parse(files["ca.crt"]))[
                bundle.TRUSTSTORE_KEY]
        if self.tls_layout == "secret-volume":
            write_secret_volume(self.work / "tls", files)
            return
        for name, data in files.items():  # plain files, each replaced by an atomic rename
            tmp = self.work / "tls" / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.work / "tls" / name)

    def reconfigure(self, config_files: dict[str, str], tls_files: dict[str, bytes] | None = None) -> None:
        """New rendered files (e.g. after an ops request changed the Druid); takes effect on the next (re)start."""
        self.config_files = config_files
        self.common = druid_props.parse(config_files["common.runtime.properties"])
        self.overrides, self.override_reasons = common_overrides(self.install, self.work, self.common,
                                                                 served=self.served)
        self.tls = self.common.get("druid.enableTlsPort") == "true"
        if tls_files is not None:
            self.tls_files = tls_files
        self.prepare()

    # -- processes ----------------------------------------------------------------------------------------------
    def _java(self) -> str:
        return str(self.install.java_home / "bin" / "java")

    def _jvm_flags(self, memory: Memory, tmp: Path) -> list[str]:
        return [f"-Xms{memory.heap}", f"-Xmx{memory.heap}", f"-XX:MaxDirectMemorySize={memory.direct}",
                "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Duser.timezone=UTC", "-Dfile.encoding=UTF-8",
                f"-Djava.io.tmpdir={tmp}", f"-Djdk.net.hosts.file={self.work / 'hosts'}",
                "-Djava.util.logging.manager=org.apache.logging.log4j.jul.LogManager"]

    def _spawn(self, name: str, cmd: list[str], memory: Memory) -> Proc:
        log = self.work / "logs" / f"{name}.log"
        fh = open(log, "ab")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.work),
               "JAVA_HOME": str(self.install.java_home), "LANG": "C.UTF-8", **self.env}
        popen = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=self.work, env=env, start_new_session=True)
        fh.close()
        proc = Proc(name, popen, log, time.monotonic(), memory=memory, command=cmd)
        self.procs[name] = proc
        return proc

    def start_zookeeper(self, timeout: float = 60) -> Proc:
        host, port = self.zookeeper.split(",")[0].rsplit(":", 1)
        cfg = self.work / "zk" / "zoo.cfg"
        cfg.write_text(f"tickTime=2000\ndataDir={self.work / 'zk' / 'data'}\nclientPort={port}\n"
                       "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n"
                       "maxClientCnxns=200\n")
        (self.work / "zk" / "logback.xml").write_text(LOGBACK)
        cmd = [self._java(), *self._jvm_flags(ZOOKEEPER_MEMORY, self.work / "var" / "tmp"),
               f"-Dlogback.configurationFile={self.work / 'zk' / 'logback.xml'}",
               # ZooKeeper deletes an empty container node within a minute (the discovery parents a Curator cache
               # creates are such nodes). Once on 28.0.0, after a restart of every process, a router's broker
               # watcher initialized with 0 nodes 0.7 s after the broker announced, and never saw it: a parent
               # deleted and created again under a starting watch is the likely cause (inferred from the logs, cf.
               # apache/druid#6597). The tier restarts every process several times: its parents stay.
               "-Dznode.container.checkIntervalMs=86400000",
               "-cp", f"{self.install.zookeeper_lib}/*", "org.apache.zookeeper.server.ZooKeeperServerMain", str(cfg)]
        proc = self._spawn("zookeeper", cmd, ZOOKEEPER_MEMORY)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(proc)
            try:
                with socket.create_connection(("127.0.0.1", int(port)), timeout=1) as s:
                    s.sendall(b"srvr")  # `ruok` says imok before the server serves; srvr tells its Mode
                    if b"Mode: standalone" in s.recv(4096):
                        proc.ready_after = time.monotonic() - proc.started
                        return proc
            except OSError:
                pass
            time.sleep(0.2)
        raise ProcessFailed(f"ZooKeeper did not serve on 127.0.0.1:{port} within {timeout} s; "
                            f"log {proc.log}:\n{log_excerpt(proc.log)}")

    def command(self, node: Node) -> list[str]:
        memory = MEMORY[node.type.key]
        rendered = druid_props.parse(self.config_files[f"{node.type.key}.properties"])
        system = {**self.overrides, **node_overrides(node, self.work, rendered)}
        tmp = self.work / "var" / "tmp" / node.name
        tmp.mkdir(parents=True, exist_ok=True)
        cp = ":".join([str(self.work / "conf" / "_common"), str(self.work / "conf" / node.name),
                       f"{self.install.lib}/*"])
        flags = self._jvm_flags(memory, tmp)
        if node.name not in self.stock_dns_cache:
            flags.append(jvm.DNS_CACHE_FLAG)
        system |= self.node_props.get(node.name, {})
        if node.type is COORDINATORS and "metadata" not in self.served:
            flags.append(f"-Dderby.stream.error.file={self.work / 'var' / 'derby.log'}")
        return [self._java(), *STRONG_ENCAPSULATION, *flags, *(f"-D{k}={v}" for k, v in system.items()),
                "-cp", cp, "org.apache.druid.cli.Main", "server", node.name]

    def start(self, node: Node) -> Proc:
        return self._spawn(node.name, self.command(node), MEMORY[node.type.key])

    def node(self, key: str) -> Node:
        return next(n for n in self.nodes if n.type.key == key)

    def port(self, node: Node) -> int:
        return node.type.port(self.tls)

    def _check_alive(self, proc: Proc) -> None:
        rc = proc.popen.poll()
        if rc is not None:
            excerpt = log_excerpt(proc.log)
            cls = ConfigRejected if re.search(r"Guice|ProvisionException|CreationException|Unable to provision"
                                              r"|not a valid|Cannot construct|IllegalArgument", excerpt) else ProcessFailed
            raise cls(f"{proc.name} exited with code {rc}; log {proc.log}:\n{excerpt}")

    def wait_healthy(self, node: Node, timeout: float = 240) -> Proc:
        proc = self.procs[node.name]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self._check_alive(proc)
            try:
                status, body = self.request(node, "GET", "/status/health", timeout=5)
                if status == 200 and body.strip() == b"true":
                    proc.ready_after = time.monotonic() - proc.started
                    return proc
                last = f"HTTP {status} {body[:200]!r}"
            except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.5)
        raise ProcessFailed(f"{node.name} not healthy on port {self.port(node)} within {timeout} s "
                            f"(last: {last}); log {proc.log}:\n{log_excerpt(proc.log)}")

    def start_all(self) -> None:
        self.prepare()
        self.start_zookeeper()
        self.start_druid()

    def stop(self, name: str, timeout: float = 30) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.popen.poll() is not None:
            return
        os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(10)

    def restart(self, node: Node) -> Proc:
        self.stop(node.name)
        self.start(node)
        return self.wait_healthy(node)

    def druid_nodes_in_start_order(self) -> list[Node]:
        return [n for t in NODE_ORDER for n in self.nodes if n.type is t]

    def stop_druid(self) -> None:
        """Stops every Druid process (ZooKeeper keeps running)."""
        for n in reversed(self.druid_nodes_in_start_order()):
            self.stop(n.name)

    def start_druid(self) -> None:
        first, *rest = self.druid_nodes_in_start_order()
        self.start(first)
        self.wait_healthy(first)
        for n in rest:
            self.start(n)
        self.wait_all_healthy(rest)

    def wait_all_healthy(self, nodes: list[Node], timeout: float = 240) -> None:
        """Polls the nodes in turn (so that each one's ready time is measured, not the order of waiting)."""
        pending = list(nodes)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for n in list(pending):
                proc = self.procs[n.name]
                self._check_alive(proc)
                try:
                    status, body = self.request(n, "GET", "/status/health", timeout=5)
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    continue
                if status == 200 and body.strip() == b"true":
                    proc.ready_after = time.monotonic() - proc.started
                    pending.remove(n)
            time.sleep(0.25)
        if pending:
            n = pending[0]
            proc = self.procs[n.name]
            self._check_alive(proc)
            raise ProcessFailed(f"{n.name} not healthy on port {self.port(n)} within {timeout} s; "
                                f"log {proc.log}:\n{log_excerpt(proc.log)}")

    def stop_all(self) -> None:
        # The reverse of the start order; ZooKeeper last.
        for name in [n for n in reversed(list(self.procs)) if n != "zookeeper"] + ["zookeeper"]:
            try:
                self.stop(name)
            except ProcessLookupError:
                pass

    def __enter__(self) -> "LocalDruid":
        try:
            self.start_all()
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()

    # -- clients ------------------------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.tls_files["ca.crt"].decode())
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def request(self, node: Node, method: str, path: str, body: bytes | None = None, *, headers=None,
                timeout: float = 30, tls: bool | None = None) -> tuple[int, bytes]:
        """An HTTP(S) request to a node, addressed by its FQDN (SNI, Host, certificate check), sent to 127.0.0.1."""
        tls = self.tls if tls is None else tls
        port = node.type.port(tls)
        conn = _LoopbackHTTPSConnection(node.fqdn, port, self.ssl_context(), timeout) if tls \
            else _LoopbackHTTPConnection(node.fqdn, port, timeout)
        try:
            h = {"Host": f"{node.fqdn}:{port}", **(headers or {})}
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def sql(self, query: str, *, via: str = ROUTERS.key, auth: tuple[str, str] | None = None) -> list:
        headers = {"Content-Type": "application/json", **basic_auth(auth)}
        status, body = self.request(self.node(via), "POST", "/druid/v2/sql",
                                    json.dumps({"query": query, "resultFormat": "array"}).encode(), headers=headers)
        if status != 200:
            raise AssertionError(f"SQL through {via} answered HTTP {status}: {body[:500]!r}; logs in "
                                 f"{self.work / 'logs'}")
        return json.loads(body)

    def summary(self) -> list[dict]:
        return [{"process": p.name, "ready_after_s": round(p.ready_after, 1) if p.ready_after else None,
                 "heap": p.memory.heap if p.memory else None, "direct": p.memory.direct if p.memory else None,
                 "rss_mb": _rss_mb(p.popen.pid)}
                for p in self.procs.values()]


def basic_auth(auth: tuple[str, str] | None) -> dict[str, str]:
    import base64

    if not auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()}


def _rss_mb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


class _LoopbackHTTPConnection(http.client.HTTPConnection):
    def __init__(self, fqdn: str, port: int, timeout: float):
        super().__init__(fqdn, port, timeout=timeout)

    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)


class _LoopbackHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, fqdn: str, port: int, context: ssl.SSLContext, timeout: float):
        super().__init__(fqdn, port, timeout=timeout, context=context)
        self._ctx = context

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def served_certificate(fqdn: str, port: int, ca_pem: bytes, timeout: float = 10) -> bytes:
    """The DER certificate served on 127.0.0.1:port for SNI `fqdn`, after a verified handshake (chain against the
    CA, hostname against `fqdn`); raises ssl.SSLCertVerificationError otherwise."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname=fqdn) as tls:
            return tls.getpeercert(binary_form=True)


def port_open(port: int, timeout: float = 1) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def write_secret_volume(directory: Path, files: dict[str, bytes]) -> None:
    """Lays `files` out as the kubelet's AtomicWriter does for a Secret volume: the data in a timestamped
    `..<ts>` directory, `..data` a symlink to it (swapped by an atomic rename), each file a symlink `name ->
    ..data/name`. So a keystore swap here looks to Druid/Jetty exactly as a Secret update in a pod does."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for name, data in files.items():
        (stamp / name).write_bytes(data)
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    tmp_link = directory / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(stamp.name, tmp_link)
    os.replace(tmp_link, directory / "..data")
    for name in files:
        link = directory / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)
    if old and old != stamp.name:
        shutil.rmtree(directory / old, ignore_errors=True)


def copy_logs(cluster: LocalDruid, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for log in (cluster.work / "logs").glob("*.log"):
        shutil.copy(log, dest / log.name)
