"""Real Apache Druid loads what kubedruid renders, with certificates from the real cert-manager.

Per Druid version, one story on one local cluster (ZooKeeper, coordinator-overlord, historical, broker, router):

1. TLS (the Druid with enableSSL and a CA Issuer): each process serves HTTPS on its TLS port with the cert-manager
   certificate (chain verified against the Issuer's CA, hostname = the pod FQDN), the plaintext port is closed, and
   SQL through the router reaches the broker; node-to-node calls (router -> broker, broker/coordinator -> historical
   inventory sync, router -> coordinator) run over TLS with hostname validation on.
2. Rotate: cert-manager re-issues; the new keystore is swapped into the Secret volume; whether Druid serves the new
   serial without a restart is recorded, then each process is restarted in kubedruid's restart order.
3. Update issuer: a second CA Issuer; kubedruid's Certificates re-rendered with it; all processes restarted with the
   new keystore and truststore; the served certificate's issuer is the new CA.
4. A coordinator that closes its TLS port: every process in the TLS-port mode (both ports open), then the
   coordinator alone restarted plaintext-only, as the closing roll of a removal does. A router that learnt the
   coordinator's HTTPS URL before it is refused there once, then follows it to plaintext (docs/real-node.md).
5. Remove: the Druid re-rendered with TLS off; restarted; plaintext serves (SQL through the router), TLS ports closed.
6. Leaving: a router told to stop (SIGTERM, as the kubelet does after the pod's preStop) still answers the query it
   is proxying to a broker that is slow to answer.
7. Coming back elsewhere: a broker whose name moves to a new address (as a replaced pod's does) is reached there by
   a router with kubedruid's JVM options; with the JVM's own DNS cache the router goes to the old address.

A failure names the Druid log that explains it (harness.ProcessFailed quotes it).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from cryptography import x509

from kubedruid.druid import jvm
from kubedruid.druid import tls as druid_tls
from kubedruid.druid import properties as druid_props
from kubedruid.druid.nodes import BROKERS, COORDINATORS, ROUTERS
from kubedruid.specs import names

from tests.druid_log import LEADER_CALL_FAILED, LOG_TIME, log_time
from tests.waiting import eventually

from . import harness, model
from .certs import CertManager, Issued
from .conftest import versions

pytestmark = pytest.mark.druid

DB = "dr"
# Druid's HTTP client (logged at debug, harness.LOG4J2): a request it made and the status of the answer.
CALL_ANSWERED = re.compile(r"NettyHttpClient - \[(\w+) (\w+)://([^/:\]]+):(\d+)[^\]]*\] Got response: (\d{3})")
# A poll of the coordinator that failed in the end: the router's rules, basic security's user map or permissions.
POLL_FAILED = re.compile(r"Exception while polling for rules|Encountered exception while fetching|"
                         r"Error occurred while polling")
TLS_TROUBLE = re.compile(r"SSLHandshakeException|No sslContext set|PKIX path|CertificateException"
                         r"|No subject alternative|SSLPeerUnverifiedException|unable to find valid certification")


@dataclass
class Story:
    version: str
    install: harness.DruidInstall
    pki: CertManager
    db: object
    rendered: model.Rendered
    issued: Issued
    cluster: harness.LocalDruid
    auth: tuple[str, str] | None
    report: dict


@pytest.fixture(scope="module", params=versions())
def version(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def story(version, kubeconfig, tmp_path_factory, report):
    try:
        install = harness.install(version)
    except FileNotFoundError as e:
        pytest.fail(str(e))
    security = "druid-basic-security" in install.extensions
    ns = f"kd-druid-{version.replace('.', '-')}-{secrets.token_hex(3)}"
    pki = CertManager(kubeconfig, ns)
    try:
        pki.create_ca_issuer("druid-ca")
        db = model.druid(model.manifest(DB, ns, version, tls=True, security=security))
        rendered = model.render(db)
        t0 = time.monotonic()
        issued = pki.issue(db, rendered.inputs)
        admin_password = secrets.token_urlsafe(12)
        env = {"DRUID_KEY_STORE_PASSWORD": issued.password, "DRUID_ADMIN_PASSWORD": admin_password,
               "DRUID_METADATA_STORAGE_PASSWORD": "unused-by-derby"}
        work = tmp_path_factory.mktemp(f"druid-{version}", numbered=True)
        # "files": the keystore a pod's Druid reads is a regular file the keystore sidecar replaces by rename.
        cluster = harness.LocalDruid(install, work, rendered.files, rendered.nodes, zookeeper=rendered.zookeeper,
                                     hosts=rendered.hosts, env=env, tls_files=issued.files, tls_layout="files")
        entry = report.setdefault(version, {"java": install.java_major, "java_home": str(install.java_home),
                                            "work": str(work), "startups": {}})
        entry["certificate_issue_s"] = round(time.monotonic() - t0, 1)
        entry["extensions"] = {k: v for k, v in install.extensions.items()}
        entry["not_resolvable"] = list(install.missing)
        entry["security"] = "basic (druid-basic-security)" if security else "disabled (no druid-basic-security)"
        entry["overrides"] = cluster.override_reasons
        with cluster:
            entry["startups"]["tls"] = cluster.summary()
            yield Story(version, install, pki, db, rendered, issued, cluster,
                        ("admin", admin_password) if security else None, entry)
    finally:
        pki.close()


def _served(cluster: harness.LocalDruid, node: harness.Node, ca_pem: bytes) -> x509.Certificate:
    der = harness.served_certificate(node.fqdn, node.type.tls_port, ca_pem)
    return x509.load_der_x509_certificate(der)


def _no_tls_trouble(cluster: harness.LocalDruid) -> None:
    for log in sorted((cluster.work / "logs").glob("*.log")):
        bad = [l for l in log.read_text(errors="replace").splitlines() if TLS_TROUBLE.search(l)]
        assert not bad, f"TLS errors in {log}:\n" + "\n".join(bad[:10])


def _eventually(fn, timeout: float = 60, what: str = "condition", logs=None):
    """Polls fn until it returns a truthy value (discovery and inventory sync lag a process's health by seconds)."""
    return eventually(fn, timeout, what, interval=0.5, hint=f"logs in {logs}")


def _sql_rows(story: Story) -> list:
    rows = story.cluster.sql("SELECT server, server_type, plaintext_port, tls_port FROM sys.servers",
                             auth=story.auth)
    assert rows, "sys.servers returned no rows"
    return rows


# ---------------------------------------------------------------------------------------------------------------


def test_tls_each_process_serves_the_issued_certificate_and_plaintext_is_closed(story):
    ca, leaf = story.issued.files["ca.crt"], story.issued.leaf
    for node in story.cluster.nodes:
        served = _served(story.cluster, node, ca)  # verified handshake: chain -> CA, hostname -> pod FQDN
        assert served.serial_number == leaf.serial_number, f"{node.name} serves another certificate"
        assert node.fqdn in served.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert not harness.port_open(node.type.plain_port), f"{node.name}: plaintext port {node.type.plain_port} open"
        # Hostname validation is real: another name is refused by the same verification.
        with pytest.raises(ssl.SSLCertVerificationError):
            harness.served_certificate("druid.example.com", node.type.tls_port, ca)
    router = story.cluster.node(ROUTERS.key)
    status, body = story.cluster.request(router, "GET", "/status/health")
    assert (status, body) == (200, b"true")


def test_tls_sql_through_router_and_node_to_node_over_tls(story):
    want = {"coordinator", "broker", "historical", "router"}

    def all_listed():
        rows = _sql_rows(story)
        return rows if want <= {r[1] for r in rows} else None

    rows = _eventually(all_listed, what=f"sys.servers to list {sorted(want)}", logs=story.cluster.work / "logs")
    for server, _type, plain, tls_port in rows:
        assert plain == -1 and tls_port > 0, f"{server} announces plaintext {plain}, TLS {tls_port}"
        assert ".svc.cluster.local:" in server  # announced by FQDN (druid.host), which the certificate carries
    (count,), = story.cluster.sql("SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES", auth=story.auth)
    assert count > 0
    if story.auth:  # druid-basic-security: the admin password from DRUID_ADMIN_PASSWORD, nothing else
        for auth in (None, ("admin", "not-the-password")):
            with pytest.raises(AssertionError, match="HTTP 401"):
                story.cluster.sql("SELECT 1", auth=auth)
    # Router -> coordinator (management proxy) and coordinator -> historical (HTTP inventory sync), both HTTPS.
    import json

    def historical_listed():
        status, body = story.cluster.request(story.cluster.node(ROUTERS.key), "GET",
                                             "/druid/coordinator/v1/servers?simple",
                                             headers=harness.basic_auth(story.auth))
        assert status == 200, f"HTTP {status}: {body[:300]!r}"
        return any(s["type"] == "historical" for s in json.loads(body))

    _eventually(historical_listed, what="the coordinator to list the historical (HTTPS inventory sync)",
                logs=story.cluster.work / "logs")
    _no_tls_trouble(story.cluster)


def test_rotate_serves_the_new_serial(story):
    old = story.issued
    t0 = time.monotonic()
    new = story.pki.renew(story.db, old)
    story.report["rotate_issue_s"] = round(time.monotonic() - t0, 1)
    assert new.leaf.serial_number != old.leaf.serial_number
    story.cluster.replace_tls_files(new.files)
    ca = new.files["ca.crt"]
    # No restart: the rendered config reloads the keystore (druid.server.https.reloadSslContext, every
    # RELOAD_SECONDS) on the lines that have it, and the keystore is a regular file replaced by rename, as the
    # keystore sidecar leaves it in a pod.
    t0 = time.monotonic()

    def everyone_serves_the_new_serial():
        return all(_served(story.cluster, n, ca).serial_number == new.leaf.serial_number
                   for n in story.cluster.nodes)

    if druid_tls.reloads(story.version):
        _eventually(everyone_serves_the_new_serial, timeout=druid_tls.RELOAD_SECONDS * 4,
                    what="every process to reload the renewed keystore", logs=story.cluster.work / "logs")
        story.report["rotate_reload_s"] = round(time.monotonic() - t0, 1)
        story.report["rotate"] = "reloaded without a restart"
    else:
        for node in story.cluster.nodes:
            story.cluster.restart(node)
        assert everyone_serves_the_new_serial()
        story.report["rotate"] = "restarted (no keystore reload before Druid 25)"
    story.issued = new
    _sql_rows(story)
    _no_tls_trouble(story.cluster)


def test_update_issuer_serves_a_certificate_of_the_new_ca(story):
    new_ca_pem = story.pki.create_ca_issuer("druid-ca-2")
    new_ca = x509.load_pem_x509_certificate(new_ca_pem)
    db2 = model.druid(model.manifest(DB, story.pki.namespace, story.version, tls=True,
                                     security=story.auth is not None, issuer="druid-ca-2"))
    rendered2 = model.render(db2)
    assert rendered2.files == story.rendered.files  # the issuer is not part of Druid's configuration
    t0 = time.monotonic()
    story.pki.apply(db2, rendered2.inputs)
    new = story.pki.wait_issued(db2, story.issued.password, accept=lambda i: i.leaf.issuer == new_ca.subject,
                                what="a certificate from the new issuer")
    story.report["update_issuer_issue_s"] = round(time.monotonic() - t0, 1)
    assert new.files["ca.crt"] == new_ca_pem
    story.cluster.replace_tls_files(new.files)
    # Keystore and truststore change together: a node with the new truststore rejects peers still serving the old
    # CA's certificate, so this restarts every process (a rolling change needs a truststore with both CAs).
    story.cluster.stop_druid()
    story.cluster.start_druid()
    story.report["startups"]["after update issuer"] = [p for p in story.cluster.summary()
                                                       if p["process"] != "zookeeper"]
    for node in story.cluster.nodes:
        served = _served(story.cluster, node, new_ca_pem)
        assert served.issuer == new_ca.subject, f"{node.name} serves a certificate of {served.issuer}"
        assert served.serial_number == new.leaf.serial_number
    story.db, story.issued = db2, new
    _sql_rows(story)
    _no_tls_trouble(story.cluster)


def _rendered_in_mode(story: Story, mode: druid_tls.TLSMode) -> dict[str, str]:
    """The Druid's files in `mode` (the annotation an op in progress leaves)."""
    raw = model.manifest(DB, story.pki.namespace, story.version, tls=True, security=story.auth is not None)
    raw["metadata"]["annotations"] = {names.TLS_MODE_ANNOTATION: mode.value}
    return model.render(model.druid(raw)).files


def _answered(lines: list[str], url: tuple[str, str, str]) -> list[int]:
    """The indexes of the log lines where a call to `url` (scheme, host, port) was answered 200."""
    return [i for i, line in enumerate(lines) if (m := CALL_ANSWERED.search(line)) and m.group(2, 3, 4) == url
            and m.group(5) == "200"]


def test_a_router_follows_the_coordinator_from_its_closed_tls_port_to_plaintext(story):
    """Druid's leader client keeps the URL (scheme and port) of the coordinator it last reached until a call to it
    fails. A removal's closing roll restarts the coordinator plaintext-only while the others still serve both
    ports: a router whose last poll of the coordinator (its rules, with basic security also its user map; each
    every minute, Druid's default) came before the restart calls the closed TLS port once, then the same poll
    finds the coordinator on plaintext and is answered. Nothing fails but that one call."""
    cluster = story.cluster
    coordinator, router = cluster.node(COORDINATORS.key), cluster.node(ROUTERS.key)
    cluster.stop_druid()
    cluster.reconfigure(_rendered_in_mode(story, druid_tls.TLSMode.TLS_PORT), tls_files=story.issued.files)
    cluster.start_druid()
    log = cluster.procs[router.name].log
    tls_url = ("https", coordinator.fqdn, str(coordinator.type.tls_port))
    plain_url = ("http", coordinator.fqdn, str(coordinator.type.plain_port))
    _eventually(lambda: _answered(log.read_text(errors="replace").splitlines(), tls_url), logs=log,
                what="the router to poll the coordinator over HTTPS")
    start = log.stat().st_size
    cluster.reconfigure(_rendered_in_mode(story, druid_tls.TLSMode.CLIENT_TRUST), tls_files=story.issued.files)
    began = time.time()
    cluster.restart(coordinator)  # well inside the minute before the router's next poll
    back = time.time()
    assert not harness.port_open(coordinator.type.tls_port), "the coordinator's TLS port is still open"

    def since_restart() -> list[str]:
        with open(log, "rb") as fh:
            fh.seek(start)
            return fh.read().decode(errors="replace").splitlines()

    lines = _eventually(lambda: (got := since_restart()) and _answered(got, plain_url) and got, timeout=90, logs=log,
                        what="the router's next poll to be answered by the coordinator on plaintext")
    failed = [(i, m) for i, line in enumerate(lines) if (m := LEADER_CALL_FAILED.search(line))]
    assert failed, "no call to the coordinator's closed TLS port: the router did not keep its HTTPS URL"
    first_answer = _answered(lines, plain_url)[0]
    for i, call in failed:
        assert call.group(2, 3, 4) == tls_url, f"a call failed on another URL than the closed TLS port: {lines[i]}"
        at = log_time(lines[i])
        assert at > back, f"the call failed {at - began:.1f} s after the coordinator began restarting (it was back " \
                          f"after {back - began:.1f} s): a poll fell inside the restart, not after it"
        assert i < first_answer, f"a call failed after the coordinator answered on plaintext: {lines[i]}"
        trace = list(itertools.takewhile(lambda line: not LOG_TIME.match(line), lines[i + 1:]))
        assert any("Connection refused" in line for line in trace), \
            f"{lines[i]}: not a refused connection:\n" + "\n".join(trace[:12])
    polls_failed = [line for line in lines if POLL_FAILED.search(line)]
    assert not polls_failed, f"a poll of the coordinator failed (log {log}): {polls_failed[:3]}"
    (rows,) = cluster.sql("SELECT 1", auth=story.auth)  # through the router, to the broker
    assert rows == [1]
    story.report["leader_client_after_the_coordinator_closed_tls"] = (
        f"{len(failed)} call(s) failed at https://...:{coordinator.type.tls_port} "
        f"{log_time(lines[failed[0][0]]) - back:.0f} s after the restart, the same poll answered at "
        f"http://...:{coordinator.type.plain_port} {log_time(lines[first_answer]) - log_time(lines[failed[-1][0]]):.3f}"
        f" s later; no poll failed")


def test_remove_serves_plaintext_and_closes_tls(story):
    db3 = model.druid(model.manifest(DB, story.pki.namespace, story.version, tls=False,
                                     security=story.auth is not None))
    rendered3 = model.render(db3)
    props = rendered3.files["common.runtime.properties"]
    assert "druid.enableTlsPort" not in props and "simple-client-sslcontext" not in props
    story.cluster.stop_druid()
    story.cluster.reconfigure(rendered3.files, tls_files={})
    story.cluster.start_druid()
    story.report["startups"]["after remove"] = [p for p in story.cluster.summary() if p["process"] != "zookeeper"]
    for node in story.cluster.nodes:
        assert harness.port_open(node.type.plain_port), f"{node.name}: plaintext port closed"
        assert not harness.port_open(node.type.tls_port), f"{node.name}: TLS port {node.type.tls_port} still open"
        status, body = story.cluster.request(node, "GET", "/status/health", tls=False)
        assert (status, body) == (200, b"true")
    rows = _sql_rows(story)
    for server, _type, plain, tls_port in rows:
        assert plain > 0 and tls_port == -1, f"{server} announces plaintext {plain}, TLS {tls_port}"


def test_a_stopping_router_answers_the_query_it_is_proxying(story):
    """Druid's router drains nothing itself when it stops (its Jetty has no request count to wait on; the broker's
    and historical's have): it must keep serving for the whole drain before it stops, so that a query a client sent
    just before the pod left the Service is answered. Here the broker is frozen (SIGSTOP) so that the query waits in
    the router; the router gets SIGTERM; the broker thaws after longer than Druid's unannounce delay."""
    cluster = story.cluster
    router, broker = cluster.node(ROUTERS.key), cluster.node(BROKERS.key)
    frozen = cluster.procs[broker.name].popen.pid
    answer: dict = {}

    def query() -> None:
        try:
            answer["rows"] = cluster.sql("SELECT 1 AS answered", auth=story.auth)
        except Exception as e:  # what the client saw: the assertion below names it
            answer["error"] = repr(e)

    os.killpg(frozen, signal.SIGSTOP)
    try:
        client = threading.Thread(target=query)
        client.start()
        time.sleep(1.0)  # the query is in the router, waiting on the broker
        stopping = threading.Thread(target=cluster.stop, args=(router.name,))
        stopping.start()
        time.sleep(druid_props.UNANNOUNCE_S + 2.0)  # past the point where the router used to stop its Jetty
    finally:
        os.killpg(frozen, signal.SIGCONT)
    client.join(30)
    stopping.join(60)
    assert answer.get("rows") == [[1]], f"the router dropped the query it was proxying: {answer}"
    cluster.start(router)
    cluster.wait_healthy(router)


@contextlib.contextmanager
def _refused(address: str, port: int):
    """Connections to address:port get a reset, as they do at a deleted pod's address once it is handed out again.
    (A loopback address of this machine; the rule is removed on the way out.)"""
    rule = ["OUTPUT", "-o", "lo", "-p", "tcp", "-d", address, "--dport", str(port),
            "-j", "REJECT", "--reject-with", "tcp-reset"]
    subprocess.run(["iptables", "-w", "-I", *rule], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-w", "-D", *rule], check=True, capture_output=True)


def _sql_through(cluster: harness.LocalDruid, router: harness.Node, auth) -> tuple[int, bytes]:
    """What a client of the router gets for a query (status and body), whatever it is."""
    body = json.dumps({"query": "SELECT 1 AS answered", "resultFormat": "array"}).encode()
    return cluster.request(router, "POST", "/druid/v2/sql", body,
                           headers={"Content-Type": "application/json", **harness.basic_auth(auth)})


def test_a_router_reaches_a_broker_that_came_back_at_a_new_address(story):
    """A replaced pod comes back under its name at a new address. The JVM keeps an address it looked up for 30 s: a
    router that looked the broker up shortly before connects to the old address, and its client gets 502 (shown
    here with the JVM's own cache). With kubedruid's JAVA_OPTS the router looks the name up again after a second
    and reaches the broker at its new address (decision 0026). The broker listens on every loopback address; the
    hosts file moves its name from one to another, where the old one now refuses connections; the broker closes
    an idle connection after a second, so that each query makes the router open a new one."""
    cluster = story.cluster
    router, broker = cluster.node(ROUTERS.key), cluster.node(BROKERS.key)
    old, new = "127.0.0.2", "127.0.0.3"
    cluster.node_props[broker.name] = {"druid.server.http.maxIdleTime": "PT1S"}
    cluster.restart(broker)
    answers: dict[str, tuple[int, bytes]] = {}
    log = cluster.procs[router.name].log
    said: dict[str, str] = {}  # what the router logged while it answered the query
    try:
        for label, stock in (("the JVM's own cache", True), ("kubedruid's JAVA_OPTS", False)):
            cluster.point(broker.fqdn, old)
            if stock:
                cluster.stock_dns_cache.add(router.name)
            else:
                cluster.stock_dns_cache.discard(router.name)
            cluster.restart(router)
            # The router looks the broker up (its cache is new) and reaches it at the old address.
            _eventually(lambda: _sql_through(cluster, router, story.auth)[0] == 200, logs=cluster.work / "logs",
                        what=f"the router ({label}) to answer through the broker at {old}")
            time.sleep(jvm.DNS_CACHE_SECONDS + 1.5)  # past kubedruid's cache time and the broker's idle time
            cluster.point(broker.fqdn, new)
            with _refused(old, cluster.port(broker)):
                start = log.stat().st_size
                answers[label] = _sql_through(cluster, router, story.auth)  # it logs a failure before it answers
                with open(log, "rb") as fh:
                    fh.seek(start)
                    said[label] = fh.read().decode(errors="replace")
    finally:
        cluster.point(broker.fqdn, None)
        cluster.stock_dns_cache.discard(router.name)
        cluster.node_props.pop(broker.name, None)
    stock_status, stock_body = answers["the JVM's own cache"]
    assert stock_status == 502, f"with the JVM's own cache the router did not go to the old address: " \
                                f"{stock_status} {stock_body[:200]!r}"
    stock_said = said["the JVM's own cache"]
    assert "Exception handling request" in stock_said and "java.net.ConnectException" in stock_said, \
        f"the router's 502 was not a refused connection to the broker (log {log})"
    status, body = answers["kubedruid's JAVA_OPTS"]
    assert (status, json.loads(body) if status == 200 else body[:300]) == (200, [[1]]), \
        f"the router did not reach the broker at its new address; logs in {cluster.work / 'logs'}"
    story.report["broker_back_at_a_new_address"] = (
        f"the JVM's own cache: HTTP {stock_status} (the old address); with {jvm.DNS_CACHE_FLAG}: HTTP {status}")
