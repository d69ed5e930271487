"""Real Druid with kubedruid's default storage: MySQL metadata (the operator's MySQL) and S3 deep storage (MinIO).

KubeDB's guide Druid has no spec.metadataStorage (the operator deploys MySQL and renders `mysql-metadata-storage`)
and `deepStorage.type: s3` with a MinIO Secret (`druid-s3-extensions`). Maven Central lacks both extensions at the
tier's Druid versions; tools/druid/fetch.py declares fallbacks and adaptations (and puts the JDBC driver into
mysql-metadata-storage/). This test shows, per Druid version, that what it put into the cache works with the core:

* a real MariaDB 10.11 (Debian's `mariadbd`, run by hand on 127.0.0.1 with a temporary datadir, password auth for
  the TCP user `root` that the operator renders) and a real S3 server (moto's `moto_server`, bucket `druid`) stand
  behind the names the rendered properties use (mapped to 127.0.0.1 in the JVMs' hosts file);
* Druid's properties are kubedruid's own, with the metadata store and the deep-storage Secret's properties as
  rendered (nothing overridden there);
* coordinator(-overlord), historical, middleManager, broker, router;
* the coordinator and overlord create their tables in MariaDB; a native batch ingestion (inline rows,
  index_parallel with one subtask) run by the middleManager pushes segments to the bucket; the historical loads
  them from S3; SQL through the router returns the rows.

Needs (CI installs them, the test installs nothing): Debian `mariadb-server`; `moto[server]` (its `moto_server`
on PATH, next to the test's Python, or named by KUBEDRUID_MOTO_SERVER).
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import pytest


from kubedruid.druid.nodes import BROKERS, COORDINATORS, HISTORICALS, MIDDLE_MANAGERS, ROUTERS
from kubedruid.druid.properties import MetadataStore
from kubedruid.specs import cluster, names

from tests.waiting import eventually

from . import harness, model
from .conftest import versions

pytestmark = pytest.mark.druid

DB, NAMESPACE = "dr", "demo"
DATASOURCE = "kd_storage"
BUCKET, BASE_KEY = "druid", "druid/segments"
ROWS = [("2024-01-01T00:00:00.000Z", "alpha", 1), ("2024-01-01T06:00:00.000Z", "beta", 2),
        ("2024-01-02T00:00:00.000Z", "gamma", 3)]  # two days: two segments
STARTED = (COORDINATORS, HISTORICALS, MIDDLE_MANAGERS, BROKERS, ROUTERS)
# What the coordinator and the overlord create (druid.metadata.storage.connector.createTables=true, rendered).
TABLES = {"druid_segments", "druid_rules", "druid_config", "druid_audit", "druid_tasks", "druid_tasklogs",
          "druid_tasklocks", "druid_pendingsegments", "druid_datasource", "druid_supervisors"}
# Readiness paths for the probe work (spec real-node §9); measured on every node, and on the two data nodes.
COMMON_PROBES = ("/status/health", "/status/selfDiscovered", "/status/selfDiscovered/status")
# The ones a probe can use: unsecured (200 without credentials with basic security on); the JSON variants are
# only recorded (with basic security they answer 401 without credentials).
PROBE_PATHS = ("/status/health", "/status/selfDiscovered", "/druid/historical/v1/readiness",
               "/druid/broker/v1/readiness")
NODE_PROBES = {HISTORICALS.key: ("/druid/historical/v1/readiness", "/druid/historical/v1/loadstatus"),
               BROKERS.key: ("/druid/broker/v1/readiness", "/druid/broker/v1/loadstatus")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str, *extra_dirs: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *extra_dirs]))


# ---------------------------------------------------------------------------------------------------------------
# the operator's MySQL, as a local MariaDB


class MariaDB:
    """`mariadbd` from Debian's mariadb-server on 127.0.0.1:<port>, datadir under `work`; user root@127.0.0.1 with
    a password (what Druid uses over TCP); the test's own queries go through the unix socket as the OS user."""

    def __init__(self, work: Path):
        self.work = work
        self.port = _free_port()
        self.password = secrets.token_hex(16)  # hex: safe inside SQL quotes
        self.socket = work / "mysqld.sock"
        self.popen: subprocess.Popen | None = None
        self.log = work / "mariadbd.log"
        self.ready_after: float | None = None
        dirs = ("/usr/sbin", "/usr/bin")
        self.mariadbd, self.install_db, self.client = (_which(n, *dirs) for n in
                                                       ("mariadbd", "mariadb-install-db", "mariadb"))

    def start(self, timeout: float = 60) -> None:
        if not (self.mariadbd and self.install_db and self.client):
            pytest.fail("MariaDB is not installed (Debian: apt-get install mariadb-server); the test runs mariadbd "
                        "itself, no service needed")
        user = getpass.getuser()
        data = self.work / "data"
        t0 = time.monotonic()
        # Debian's server defaults (50-server.cnf) are utf8mb4, the character set Druid's MySQL docs ask for.
        charset = ["--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"]
        subprocess.run([self.install_db, "--no-defaults", f"--datadir={data}", f"--user={user}",
                        "--auth-root-authentication-method=socket", f"--auth-root-socket-user={user}",
                        "--skip-test-db", *charset], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.popen = subprocess.Popen(
            [self.mariadbd, "--no-defaults", f"--datadir={data}", f"--user={user}", "--bind-address=127.0.0.1",
             f"--port={self.port}", f"--socket={self.socket}", f"--pid-file={self.work / 'mariadbd.pid'}",
             f"--log-error={self.log}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M", *charset],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise harness.ProcessFailed(f"mariadbd exited with {self.popen.returncode}; log {self.log}:\n"
                                            f"{harness.log_excerpt(self.log)}")
            try:
                self.query("SELECT 1")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.3)
        else:
            raise harness.ProcessFailed(f"mariadbd not serving within {timeout} s; log {self.log}")
        # The TCP user Druid logs in as (the rendered connector.user), with a password; nothing else over TCP.
        self.query(f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
                   "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1'")
        self.ready_after = time.monotonic() - t0

    def query(self, sql: str) -> list[list[str]]:
        # The statement goes on stdin, so that no password shows up in a process list.
        out = subprocess.run([self.client, "--no-defaults", f"--socket={self.socket}", "-u", getpass.getuser(),
                              "--batch", "--skip-column-names", "--raw"], input=sql, capture_output=True,
                             text=True, check=True, timeout=30)
        return [line.split("\t") for line in out.stdout.splitlines()]

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, 15)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait(10)


# ---------------------------------------------------------------------------------------------------------------
# MinIO, as moto's S3 server


class S3Server:
    def __init__(self, work: Path):
        self.work = work
        self.port = _free_port()
        self.log = work / "s3.log"
        self.popen: subprocess.Popen | None = None
        self.exe = (os.environ.get("KUBEDRUID_MOTO_SERVER") or _which("moto_server", str(Path(sys.executable).parent)))
        self.ready_after: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        if not self.exe:
            pytest.fail('no S3 server: pip install "moto[server]" (moto_server on PATH or KUBEDRUID_MOTO_SERVER)')
        t0 = time.monotonic()
        with open(self.log, "ab") as fh:
            self.popen = subprocess.Popen([self.exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=fh,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise harness.ProcessFailed(f"moto_server exited; log {self.log}:\n{harness.log_excerpt(self.log)}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.3)
        else:
            raise harness.ProcessFailed(f"moto_server not serving within {timeout} s; log {self.log}")
        # The bucket exists before Druid starts (in the guide, the MinIO tenant creates it).
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/{BUCKET}", method="PUT"), timeout=10).read()
        self.ready_after = time.monotonic() - t0

    def keys(self, prefix: str) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/{BUCKET}?list-type=2&prefix={prefix}", timeout=10) as resp:
            root = ET.fromstring(resp.read())
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        return [k.text for k in root.findall("s3:Contents/s3:Key", ns)]

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, 15)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait(10)


# ---------------------------------------------------------------------------------------------------------------


def s3_host() -> str:
    return f"myminio-hl.{NAMESPACE}.svc.{names.CLUSTER_DOMAIN}"


def deep_storage_secret(s3_port: int) -> dict[str, str]:
    """KubeDB's guide `deep-storage-config` Secret (tests/integration/helpers.DEEP_STORAGE), with the local port."""
    return {"druid.storage.type": "s3", "druid.storage.bucket": BUCKET, "druid.storage.baseKey": BASE_KEY,
            "druid.s3.accessKey": "minio", "druid.s3.secretKey": "minio123", "druid.s3.protocol": "http",
            "druid.s3.enablePathStyleAccess": "true", "druid.s3.endpoint.signingRegion": "us-east-1",
            "druid.s3.endpoint.url": f"http://{s3_host()}:{s3_port}/"}


def render(version: str, security: bool, mysql_port: int, s3_port: int) -> model.Rendered:
    """model.render, with what the provisioner would have read: the MySQL at its port, the deep-storage Secret."""
    db = model.druid(model.manifest(DB, NAMESPACE, version, tls=False, security=security))
    base = model.inputs(db)
    metadata = MetadataStore(type="MySQL", host=f"{DB}-mysql-metadata.{NAMESPACE}.svc.{names.CLUSTER_DOMAIN}",
                             port=mysql_port, database="druid", user="root")
    cfg = cluster.cluster_config(db, zookeeper=base.cluster.zookeeper, metadata=metadata,
                                 deep_storage=deep_storage_secret(s3_port), druid_version=version)
    ins = replace(base, cluster=cfg)
    nodes = [harness.Node(t, names.pod_fqdn(DB, NAMESPACE, f"{names.petset_name(DB, t)}-0")) for t in STARTED]
    zk = cfg.zookeeper
    hosts = [n.fqdn for n in nodes] + [zk.split(":")[0], metadata.host, s3_host()]
    return model.Rendered(db, ins, cluster.config_files(db, ins), nodes, hosts, zk)


@dataclass
class Setup:
    version: str
    install: harness.DruidInstall
    mysql: MariaDB | None  # None: no mysql-metadata-storage for this Druid (Derby stands in)
    s3: S3Server
    cluster: harness.LocalDruid
    auth: tuple[str, str] | None
    report: dict
    task_id: str | None = None


def _watch_probes(c: harness.LocalDruid, nodes: list[harness.Node], until, timeout: float = 240) -> dict:
    """Polls every probe path of `nodes` without credentials (as the kubelet does) until `until()` is true;
    returns, per node and path, the answers as they changed: [[seconds since the process started, answer], ...]."""
    seen: dict[str, dict[str, list]] = {n.name: {} for n in nodes}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in nodes:
            proc = c.procs[n.name]
            c._check_alive(proc)
            for path in (*COMMON_PROBES, *NODE_PROBES.get(n.type.key, ())):
                try:
                    status, body = c.request(n, "GET", path, timeout=3)
                    answer = f"{status} {body[:60].decode(errors='replace')}".strip()
                except OSError as e:
                    answer = type(e).__name__
                history = seen[n.name].setdefault(path, [])
                if not history or history[-1][1] != answer:
                    history.append([round(time.monotonic() - proc.started, 1), answer])
        if until():
            return seen
        time.sleep(0.25)
    raise AssertionError(f"probes: condition not reached within {timeout} s; seen {seen}; logs {c.work / 'logs'}")


def _status(c: harness.LocalDruid, node: harness.Node, path: str) -> int | None:
    try:
        return c.request(node, "GET", path, timeout=3)[0]
    except OSError:
        return None


def _healthy_then(c: harness.LocalDruid, nodes: list[harness.Node], settle: float):
    """A `_watch_probes` condition: every node healthy, then `settle` seconds more (does readiness lag health?)."""
    since: list[float] = []

    def until() -> bool:
        if not since and _all_healthy(c, nodes):
            since.append(time.monotonic())
        return bool(since) and time.monotonic() - since[0] >= settle

    return until


def _all_healthy(c: harness.LocalDruid, nodes: list[harness.Node]) -> bool:
    for n in nodes:
        proc = c.procs[n.name]
        if proc.ready_after is None:
            try:
                status, body = c.request(n, "GET", "/status/health", timeout=3)
            except OSError:
                return False
            if status != 200 or body.strip() != b"true":
                return False
            proc.ready_after = time.monotonic() - proc.started
    return True


@pytest.fixture(scope="module", params=versions())
def setup(request, tmp_path_factory, report):
    version = request.param
    try:
        install = harness.install(version)
    except FileNotFoundError as e:
        pytest.fail(str(e))
    if "druid-s3-extensions" not in install.extensions:
        pytest.fail(f"druid-s3-extensions is not in the Druid {version} cache; tools/druid/fetch.py {version} did not "
                    f"resolve it (see its manifest.json and docs/druid-test-tier.md)")
    # Without a mysql-metadata-storage for this core in the cache (fetch.py has none for it), S3 is still shown,
    # with Derby in the coordinator standing in for the metadata store.
    with_mysql = "mysql-metadata-storage" in install.extensions
    security = "druid-basic-security" in install.extensions
    work = tmp_path_factory.mktemp(f"storage-{version}", numbered=True)
    for d in ("mysql", "s3"):
        (work / d).mkdir()
    mysql, s3 = MariaDB(work / "mysql"), S3Server(work / "s3")
    entry = report.setdefault(f"{version} storage", {"java": install.java_major, "java_home": str(install.java_home),
                                                      "work": str(work), "startups": {}})
    try:
        if with_mysql:
            mysql.start()
            entry["mariadb_ready_s"] = round(mysql.ready_after, 1)
        s3.start()
        entry["s3_ready_s"] = round(s3.ready_after, 1)
        rendered = render(version, security, mysql.port, s3.port)
        admin = secrets.token_urlsafe(12)
        env = {"DRUID_ADMIN_PASSWORD": admin, "DRUID_METADATA_STORAGE_PASSWORD": mysql.password}
        served = frozenset({"deep-storage", "metadata"} if with_mysql else {"deep-storage"})
        c = harness.LocalDruid(install, work, rendered.files, rendered.nodes, zookeeper=rendered.zookeeper,
                               hosts=rendered.hosts, env=env, served=served)
        entry |= {"extensions": dict(install.extensions), "security": security, "overrides": c.override_reasons}
        try:
            c.prepare()
            c.start_zookeeper()
            first, *rest = c.druid_nodes_in_start_order()
            c.start(first)
            c.wait_healthy(first)
            for n in rest:
                c.start(n)
            # Started together, as in test_real_druid; the probes are watched from spawn until all are healthy.
            entry["probes_at_start"] = _watch_probes(c, rest, _healthy_then(c, rest, settle=15))
            entry["startups"]["mysql + s3" if with_mysql else "derby + s3"] = c.summary()
            yield Setup(version, install, mysql if with_mysql else None, s3, c, ("admin", admin) if security else None,
                        entry)
        finally:
            c.stop_all()
    finally:
        s3.stop()
        mysql.stop()


def _request(s: Setup, node_key: str, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **harness.basic_auth(s.auth)}
    data = json.dumps(body).encode() if body is not None else None
    return s.cluster.request(s.cluster.node(node_key), method, path, data, headers=headers)


def _eventually(fn, what: str, s: Setup, timeout: float = 120):
    return eventually(fn, timeout, what, hint=f"logs in {s.cluster.work / 'logs'}")


def _used_segments(s: Setup) -> list[dict]:
    """The used segments' records: from MySQL's druid_segments, else (Derby) through the coordinator's API."""
    if s.mysql:
        return [json.loads(r[0]) for r in s.mysql.query(
            f"SELECT CAST(payload AS CHAR) FROM druid.druid_segments WHERE dataSource = '{DATASOURCE}' AND used = 1")]

    def polled():  # 404 until the coordinator's next poll of the metadata store (druid.manager.segments.pollDuration)
        status, body = _request(s, COORDINATORS.key, "GET",
                                f"/druid/coordinator/v1/metadata/datasources/{DATASOURCE}/segments?full")
        assert status in (200, 404), f"HTTP {status} {body[:300]!r}"
        return json.loads(body) if status == 200 else None

    return _eventually(polled, f"the coordinator to list the segments of {DATASOURCE}", s)


def _ingestion_spec() -> dict:
    data = "\n".join(json.dumps({"ts": ts, "name": name, "n": n}) for ts, name, n in ROWS)
    return {"type": "index_parallel", "spec": {
        "dataSchema": {"dataSource": DATASOURCE, "timestampSpec": {"column": "ts", "format": "iso"},
                       "dimensionsSpec": {"dimensions": ["name", {"type": "long", "name": "n"}]},
                       "granularitySpec": {"segmentGranularity": "day", "queryGranularity": "none",
                                           "rollup": False}},
        "ioConfig": {"type": "index_parallel", "inputSource": {"type": "inline", "data": data},
                     "inputFormat": {"type": "json"}},
        "tuningConfig": {"type": "index_parallel", "maxNumConcurrentSubTasks": 1}}}


# ---------------------------------------------------------------------------------------------------------------


def test_metadata_tables_are_created_in_mysql(setup):
    s = setup
    if s.mysql is None:
        pytest.xfail(f"the cache has no mysql-metadata-storage for Druid {s.version} (tools/druid/fetch.py: "
                     "EXTENSION_FALLBACKS, ADAPTATIONS); the other tests use Derby")

    def tables():
        got = {r[0].lower() for r in s.mysql.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'druid'")}
        return got if got >= TABLES else None

    # The rendered connectURI's createDatabaseIfNotExist made the database; coordinator and overlord the tables.
    s.report["mysql_tables"] = sorted(_eventually(tables, f"the tables {sorted(TABLES)} in MariaDB", s, 60))
    if s.auth:  # druid-basic-security keeps its users (admin, druid_system) in the metadata store
        keys = {r[0] for r in s.mysql.query("SELECT name FROM druid.druid_config")}
        assert {"basic_authentication_basic_users", "basic_authorization_basic_users"} <= keys, \
            f"druid_config has {keys}"


def test_ingestion_pushes_segments_to_s3(setup):
    s = setup
    status, body = _request(s, ROUTERS.key, "POST", "/druid/indexer/v1/task", _ingestion_spec())
    assert status == 200, f"task submission through the router: HTTP {status} {body[:500]!r}"
    s.task_id = json.loads(body)["task"]
    t0 = time.monotonic()

    def finished():
        st, b = _request(s, ROUTERS.key, "GET", f"/druid/indexer/v1/task/{s.task_id}/status")
        assert st == 200, f"HTTP {st} {b[:300]!r}"
        code = json.loads(b)["status"]["statusCode"]
        return code if code != "RUNNING" else None

    code = _eventually(finished, f"task {s.task_id}", s, timeout=300)
    s.report["ingestion_s"] = round(time.monotonic() - t0, 1)
    if code != "SUCCESS":
        logs = sorted((s.cluster.work / "var" / "indexing-logs").glob("*"))
        tail = logs[-1].read_text(errors="replace")[-4000:] if logs else "(no task log)"
        raise AssertionError(f"task {s.task_id}: {code}; task log:\n{tail}")
    # What Druid recorded (in MySQL) and what is in the bucket agree: one index.zip per segment, under baseKey.
    payloads = _used_segments(s)
    assert len(payloads) == 2, f"expected two day segments, the metadata store has {len(payloads)}"
    keys = s.s3.keys(f"{BASE_KEY}/{DATASOURCE}/")
    s.report["s3_keys"] = keys
    for p in payloads:
        spec = p["loadSpec"]
        assert spec["type"] == "s3_zip" and spec["bucket"] == BUCKET, spec
        assert spec["key"] in keys, f"{spec['key']} not in the bucket: {keys}"
        assert spec["key"].endswith("index.zip")


def test_historical_loads_from_s3_and_sql_returns_the_rows(setup):
    s = setup
    if s.task_id is None:
        pytest.fail("needs the ingestion of test_ingestion_pushes_segments_to_s3")

    def loaded():
        st, b = _request(s, COORDINATORS.key, "GET", "/druid/coordinator/v1/loadstatus")
        assert st == 200, f"HTTP {st} {b[:300]!r}"
        return json.loads(b).get(DATASOURCE) == 100.0

    _eventually(loaded, f"the coordinator to report {DATASOURCE} fully loaded", s)
    hist = s.cluster.node(HISTORICALS.key)
    st, b = _request(s, COORDINATORS.key, "GET", "/druid/coordinator/v1/servers?full")
    served = {seg for server in json.loads(b) if server["host"].startswith(hist.fqdn)
              for seg in server["segments"]}
    assert len([x for x in served if x.startswith(DATASOURCE)]) == 2, f"the historical serves {served}"
    # The historical pulled index.zip from S3 into its segment cache (the only copy is in the bucket).
    cached = list((s.cluster.work / "var" / "segment-cache" / DATASOURCE).rglob("meta.smoosh"))
    assert len(cached) == 2, f"segment cache has {cached}"

    def rows():
        return s.cluster.sql(f'SELECT __time, name, n FROM "{DATASOURCE}" ORDER BY __time', auth=s.auth) or None

    got = _eventually(rows, "SQL rows through the router", s)
    assert [tuple(r) for r in got] == ROWS


def test_readiness_endpoints(setup):
    """Figures for the probe work; asserted: what a usable node answers, without credentials."""
    s = setup
    c = s.cluster
    after = {}
    for n in c.nodes:
        for path in (*COMMON_PROBES, *NODE_PROBES.get(n.type.key, ())):
            status, body = c.request(n, "GET", path)
            after[f"{n.name} {path}"] = f"{status} {body[:80].decode(errors='replace')}"
            if path in PROBE_PATHS:
                assert status == 200, f"{n.name} {path} without credentials: HTTP {status} {body[:200]!r}"
    s.report["probes_when_usable"] = after
    if s.auth:  # the same node refuses an unauthenticated API call: the probe paths are the unsecured ones
        status, _ = c.request(c.node(BROKERS.key), "GET", "/druid/v2/datasources")
        assert status == 401
    # Before usable: a historical restarted with two segments in its cache.
    hist = c.node(HISTORICALS.key)
    c.stop(hist.name)
    c.start(hist)
    s.report["probes_historical_restart"] = _watch_probes(
        c, [hist], lambda: _status(c, hist, "/druid/historical/v1/readiness") == 200
        and _status(c, hist, "/status/selfDiscovered") == 200)
    got = _eventually(lambda: s.cluster.sql(f'SELECT COUNT(*) FROM "{DATASOURCE}"', auth=s.auth) == [[3]],
                      "SQL after the historical's restart", s)
    assert got
