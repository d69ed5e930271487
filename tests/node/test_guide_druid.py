"""KubeDB's reconfigure-TLS guide on real pods: the guide's Druid (examples/druid-cluster.yaml, only `version` set to
a version with a local image) becomes Ready, ingests a tiny datasource and answers SQL through the router Service;
then the guide's four ops (add TLS, rotate, change the issuer, remove TLS) run to Successful while a client sends a
SQL query through the router Service every 0.5 s. After each op, a handshake from the host with every pod shows what
the op promises. The client's figures per op (sent, failed, longest gap) and the restarts are reported."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kubedruid.certs import bundle
from kubedruid.certs.pki import make_ca
from kubedruid.druid.nodes import BY_KEY
from kubedruid.kube.conditions import get_condition, now_rfc3339, parse_rfc3339

from tests.druid_log import LEADER_CALL_FAILED, leader_call_of, log_time

from .conftest import NODE_DRUID_VERSION, REPORT
from .druid import DruidView, PodRolls, PublishedBundle, tiny_ingestion_spec, wait
from .load import QueryLoad
from .pod_logs import PodLogArchive

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NS, DB = "demo", "druid-cluster"
DATASOURCE = "tiny"
COUNT_SQL = f"SELECT COUNT(*) AS n, SUM(added) AS added FROM {DATASOURCE}"
READY_TIMEOUT_S = 900
OP_TIMEOUT_S = 1800  # three rolls of eight JVM pods


def guide_manifest() -> str:
    text = (EXAMPLES / "druid-cluster.yaml").read_text()
    docs = list(yaml.safe_load_all(text))
    (druid,) = [d for d in docs if d["kind"] == "Druid"]
    assert druid["spec"]["version"] == "36.0.0"  # the guide's, replaced by the only edit we make
    return text.replace("version: 36.0.0", f"version: {NODE_DRUID_VERSION}")


class Story:
    """The guide's Druid and what the tests learned about it on the way (CA files, figures)."""

    def __init__(self, plane, workdir: Path, operator_log: Path, pod_logs: PodLogArchive):
        self.plane, self.workdir, self.operator_log, self.pod_logs = plane, workdir, operator_log, pod_logs
        self.view = DruidView(plane.kubectl, NS, DB, workdir)
        self.bundle = PublishedBundle(self.view, workdir / "published-ca.crt")

    def apply(self, *files: Path, text: str | None = None) -> None:
        if text is not None:
            self.plane.kubectl("apply", "-f", "-", stdin=text)
        for f in files:
            self.plane.kubectl("apply", "-f", str(f))

    def ca_secret(self, name: str, cn: str) -> Path:
        """`openssl req -x509 ...` + `kubectl create secret tls`, as the guide says; returns the CA's file."""
        ca, _ = make_ca(cn, "kubedb")
        crt, key = self.workdir / f"{name}.crt", self.workdir / f"{name}.key"
        crt.write_bytes(ca.cert_pem)
        key.write_bytes(ca.key_pem)
        self.plane.kubectl("-n", NS, "create", "secret", "tls", name, f"--cert={crt}", f"--key={key}")
        return crt

    def under_load(self, label: str, action, done, sql_check) -> dict:
        """Runs `action`, then waits for `done()` (a phase name or None) while a client queries the router
        Service every 0.5 s, following the port it advertises and trusting the CA bundle the operator publishes;
        returns the figures: queries, failures, longest gap, rolls counted from pod UIDs, wall time."""
        since = now_rfc3339()
        started, epoch = time.monotonic(), time.time()
        forwarding_waits = self.forwarding_waits()
        closed_before = self._closed_ports(self.view.pods())
        with PodRolls(self.view) as rolls, QueryLoad(lambda: self.view.router_endpoint(self.bundle.file()),
                                                      COUNT_SQL, self.view.admin_auth(), interval=0.5,
                                                      check=sql_check) as load:
            action()
            phase = wait(done, OP_TIMEOUT_S, f"{label} to finish", interval=0.5)
            wall = time.monotonic() - started
            if phase == "Successful":  # the client keeps going until every pod is back, as a user sees it
                wait(lambda: all(p.ready for p in self.view.pods()), 300, "every pod Ready after the op")
        figures = {"phase": phase, "wall_s": round(wall, 1), "epoch": epoch, "queries_sent": load.report.sent,
                   "queries_failed": load.report.failed, "longest_gap_s": round(load.report.longest_gap_s, 1),
                   "errors": load.report.errors, "error_samples": load.report.samples,
                   "answered_over": load.report.schemes,
                   "slowest_answer_s": round(load.report.slowest_s, 1),
                   "answers_over_2s": load.report.slower_than_2s,
                   "rolls": rolls.rolls(), "pods": len(rolls.seen),
                   "away_s": {p: [[round(a - epoch, 1), round(b - epoch, 1)] for a, b in spans]
                              for p, spans in rolls.away.items() if spans},
                   **self.peer_calls(since, rolls, closed_before),
                   "pod_logs": str(self.pod_logs.archive),  # every pod's, the replaced ones' too
                   # times the operator found a new Service port not forwarded yet though its endpoints were ready
                   "forwarding_waits": self.forwarding_waits() - forwarding_waits}
        REPORT.setdefault("ops", {})[label] = figures
        return figures

    def run_op(self, manifest: Path, label: str, sql_check) -> dict:
        """Applies a guide DruidOpsRequest under the client load; it must end Successful."""
        ops = yaml.safe_load(manifest.read_text())
        name = ops["metadata"]["name"]
        figures = self.under_load(label, lambda: self.apply(text=yaml.safe_dump(ops)), lambda: self._finished(name),
                                  sql_check)
        self.last_ops = json.loads(self.plane.kubectl("-n", NS, "get", "druidopsrequest", name, "-o", "json").stdout)
        # the op's steps on the clock of the error samples and away_s, for a failure to be placed (to the second)
        figures["steps_s"] = [f"{parse_rfc3339(c['lastTransitionTime']).timestamp() - figures['epoch']:.0f} {c['type']}"
                              for c in self.last_ops["status"].get("conditions") or []]
        if figures["phase"] != "Successful":
            raise AssertionError(f"{label} ended {figures['phase']}:\n{yaml.safe_dump(self.last_ops['status'])}")
        return figures

    def forwarding_waits(self) -> int:
        return self.operator_log.read_text(errors="replace").count("kube-proxy does not forward")

    def peer_calls(self, since: str, rolls: PodRolls, closed_before: dict[str, int]) -> dict:
        """Failed calls between Druid nodes in every Druid pod's log since `since`, of every pod the op replaced
        too (the archive keeps them): any TLS or PKIX error, and any connection refused, except
        - by a pod that was being restarted at that moment (a stopping process refuses whatever its TLS settings);
        - on a port the op closed, after the pod that served it last restarted, or on a port already closed when
          the op began (`closed_before`: a node polls the coordinator once a minute, so its refusal can fall in the
          op after the one that closed the port), in a call of Druid's leader client, which then looks the leader
          up again: it keeps the leader's URL, scheme and port included, until a call to it fails, so a node that
          learnt the coordinator's TLS URL before the coordinator restarted without TLS is refused once, then finds
          the plaintext URL (docs/real-node.md); these are counted apart. Netty's own warning of such a refused
          connect (tests/druid_log.leader_call_of) is the same call.
        Returns `peer_errors` (line -> count) and `leader_client_refusals` (how many were excused so)."""
        found: dict[str, int] = {}
        excused = {"restarting": 0, "leader client": 0}
        pods = self.view.pods()
        closed = self._closed_ports(pods)
        current = {p.uid for p in pods}
        for log in self.pod_logs.logs(NS, "druid", since=parse_rfc3339(since).timestamp()):
            where = log.pod if log.uid in current else f"{log.pod} (replaced, uid {log.uid[:8]})"
            leader_failures = [(at, line) for _, line in log.lines
                               if LEADER_CALL_FAILED.search(line) and (at := log_time(line)) is not None]
            stamp, event = None, ""
            for _, line in log.lines:
                if (at := log_time(line)) is not None:  # a new log event; the lines until the next: its trace
                    stamp, event = at, line
                m = PEER_ERROR.search(line)
                if not m:
                    continue
                if m.group(0).startswith("Connection refused"):
                    target = REFUSED_BY.search(line)
                    pod, port = (target.group(1), int(target.group(2) or 0)) if target else ("", 0)
                    why = target and stamp is not None and _refusal_expected(
                        pod, port, stamp, leader_call_of(event, stamp, pod, port, leader_failures), rolls, closed,
                        closed_before)
                    if why:
                        excused[why] += 1
                        continue
                key = f"{where}: {line.strip()[:160]}"
                found[key] = found.get(key, 0) + 1
        return {"peer_errors": found, "leader_client_refusals": excused["leader client"]}

    def _closed_ports(self, pods: list) -> dict[str, int]:
        """Each pod's port the Druid no longer serves as it is now: plaintext with TLS, TLS without."""
        tls = bool(self.view.druid()["spec"].get("enableSSL"))
        return {p.name: BY_KEY[p.node_type].plain_port if tls else BY_KEY[p.node_type].tls_port for p in pods}

    def _finished(self, name: str) -> str | None:
        out = self.plane.kubectl("-n", NS, "get", "druidopsrequest", name, "-o", "jsonpath={.status.phase}").stdout
        return out if out in ("Successful", "Failed", "Skipped") else None

    def server_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.view.secret(f"{DB}-server-cert")["tls.crt"])


PEER_ERROR = re.compile(r"PKIX path building failed|SSLHandshakeException|No sslContext set|"
                        r"unable to find valid certification path|Connection refused")
REFUSED_BY = re.compile(r"Connection refused: ([a-z0-9-]+)\.[^\s:]*(?::(\d+))?")  # the pod's FQDN starts with its name


def _refusal_expected(target: str, port: int, at: float, event: str, rolls: PodRolls,
                      closed: dict[str, int], closed_before: dict[str, int]) -> str | None:
    """Why a refusal by `target` on `port` at `at` is no failed call (see Story.peer_calls), or None."""
    if rolls.was_away(target, at):
        return "restarting"
    if closed.get(target) != port or not LEADER_CALL_FAILED.search(event):
        return None
    closed_since = rolls.last_away_start(target)
    if closed_before.get(target) == port or (closed_since is not None and at >= closed_since):
        return "leader client"
    return None




def _rows_counted(rows: list) -> bool:
    return bool(rows) and rows[0].get("n") == 3 and rows[0].get("added") == 15


@pytest.fixture(scope="module")
def story(node_plane, operator, pod_log_archive, tmp_path_factory) -> Story:
    s = Story(node_plane, tmp_path_factory.mktemp("guide"), operator.log, pod_log_archive)
    s.apply(text=guide_manifest())
    s.apply(EXAMPLES / "s3-local.yaml")  # the guide's MinIO, played by a local S3 server (examples/s3-local.yaml)
    return s


def test_guide_druid_becomes_ready_on_real_pods(story, node_plane):
    started = time.monotonic()
    wait(lambda: story.view.druid().get("status", {}).get("phase") == "Ready", READY_TIMEOUT_S,
         "the guide's Druid to be Ready", interval=2)
    REPORT["ready_after_s"] = round(time.monotonic() - started, 1)
    pods = story.view.pods()
    assert {p.node_type for p in pods} == {"coordinators", "brokers", "historicals", "middleManagers", "routers"}
    assert all(p.ready for p in pods)
    for p in pods:  # real processes: a JVM runs in every pod, on the real node
        info = json.loads(node_plane.kubectl("-n", NS, "get", "pod", p.name, "-o", "json").stdout)
        assert info["spec"]["nodeName"] == "kubedruid-node"
        ps = node_plane.kubectl("-n", NS, "exec", p.name, "--", "cat", "/proc/1/cmdline").stdout
        assert "org.apache.druid.cli.Main" in ps.replace("\0", " ") or "java" in ps
    REPORT["pods"] = {p.name: _pod_memory(node_plane, p.name) for p in pods}


def _pod_memory(plane, pod: str) -> str:
    """RSS of the pod's processes, read from its memory cgroup (what the kubelet enforces the limit on)."""
    stat = plane.kubectl("-n", NS, "exec", pod, "--", "cat", "/sys/fs/cgroup/memory/memory.stat").stdout
    values = dict(line.split() for line in stat.splitlines() if line)
    limit = int(plane.kubectl("-n", NS, "exec", pod, "--", "cat",
                              "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout)
    return f"RSS {int(values['total_rss']) // 2**20} MiB of {limit // 2**20} MiB"


def test_ingested_rows_come_back_through_the_router_service(story):
    task = story.view.router_request("POST", "/druid/indexer/v1/task", None, tiny_ingestion_spec(DATASOURCE))
    task_id = task["task"]

    def task_done():
        status = story.view.router_request("GET", f"/druid/indexer/v1/task/{task_id}/status", None)["status"]
        assert status["status"] != "FAILED", status
        return status["status"] == "SUCCESS"

    started = time.monotonic()
    wait(task_done, 600, f"ingestion task {task_id}", interval=2)
    rows = wait(lambda: _rows_counted(story.view.sql(COUNT_SQL, None)) and story.view.sql(COUNT_SQL, None), 300,
                "the ingested rows through the router")
    REPORT["ingestion_s"] = round(time.monotonic() - started, 1)
    assert rows == [{"n": 3, "added": 15}]


def _assert_serves(story, *, tls: bool, issuer_cn: str | None = None) -> None:
    """A handshake from the host with every pod: TLS with the Secret's certificate (verified against the published
    CA bundle and the pod's FQDN) and plaintext closed, or plaintext open and TLS closed. The Druid's served-
    certificate inventory (the operator's own handshakes, status.servedCertificates) says the same."""
    expected = story.server_cert() if tls else None
    handshakes = {}
    for pod in story.view.pods():
        tls_port, plain_port = story.view.served(pod, story.bundle.file() if tls else None)
        handshakes[pod.name] = tls_port
        if tls:
            assert tls_port.open and tls_port.error is None, tls_port
            assert tls_port.serial == expected.serial_number, (pod.name, "serves a certificate other than the Secret's")
            assert f"CN={issuer_cn}" in tls_port.issuer, tls_port
            assert not plain_port.open, plain_port
        else:
            assert plain_port.open and plain_port.error is None, plain_port
            assert not tls_port.open, tls_port

    def inventory():
        return (story.view.druid().get("status") or {}).get("servedCertificates") or []

    if not tls:
        wait(lambda: inventory() == [], 60, "no served-certificate inventory without TLS", interval=1)
        return

    def matches() -> bool:
        recorded = {e["pod"]: e for e in inventory()}
        return set(recorded) == set(handshakes) and all(
            recorded[p].get("serial") == format(h.serial, "X") and recorded[p].get("fingerprint") == h.fingerprint
            and recorded[p].get("issuer") == h.issuer for p, h in handshakes.items())

    wait(matches, 120, "the Druid's served-certificate inventory to match a handshake with every pod", interval=1)


def _assert_uninterrupted(figures: dict, rolls: int, label: str) -> None:
    """What the zero-downtime plans promise (issue 10): no failed query, no failed call between Druid nodes, and
    exactly the plan's number of rolls, counted from pod UIDs."""
    # A string, which pytest prints whole (a tuple it shortens): where each failure fell among the restarts.
    assert figures["queries_failed"] == 0, json.dumps(
        {"op": label, "errors": figures["errors"], "error_samples": figures["error_samples"],
         "pods away (s)": figures["away_s"], "steps (s)": figures.get("steps_s"),
         "pod logs": figures.get("pod_logs")}, indent=1)
    assert figures["queries_sent"] >= figures["wall_s"] / 0.5 * 0.8, (label, "the client kept its pace")
    assert not figures["peer_errors"], (label, figures["peer_errors"])
    assert set(figures["rolls"].values()) == {rolls}, (label, figures["rolls"])


QUERY_NODES_REPLICAS = 2  # brokers, routers and historicals: one of each keeps serving while the other restarts


def test_query_nodes_scaled_to_two(story):
    """Brokers and routers at two replicas so that one answers while the other restarts; historicals too, so that
    each segment stays served (Druid's default load rule keeps two replicas of each segment)."""
    patch = {"spec": {"topology": {k: {"replicas": QUERY_NODES_REPLICAS}
                                   for k in ("brokers", "routers", "historicals")}}}
    story.plane.kubectl("-n", NS, "patch", "druid", DB, "--type=merge", "-p", json.dumps(patch))
    wait(lambda: len(story.view.pods()) == 8 and all(p.ready for p in story.view.pods())
         and story.view.druid()["status"]["phase"] == "Ready", READY_TIMEOUT_S, "two brokers, routers, historicals")
    replicas_sql = "SELECT COUNT(*) AS n FROM sys.server_segments WHERE segment_id LIKE 'tiny%'"
    wait(lambda: story.view.sql(replicas_sql, None) == [{"n": 2}], 300, "the segment on both historicals")


def test_add_tls_under_load(story):
    story.ca_secret("druid-ca", "ca")
    story.apply(EXAMPLES / "druid-ca-issuer.yaml")
    figures = story.run_op(EXAMPLES / "drops-add-tls.yaml", "add", _rows_counted)
    _assert_serves(story, tls=True, issuer_cn="ca")
    assert story.view.sql(COUNT_SQL, story.bundle.file()) == [{"n": 3, "added": 15}]
    assert figures["answered_over"].get("http") and figures["answered_over"].get("https"), "followed the Service"
    _assert_uninterrupted(figures, 3, "add")


def test_rotate_reloads_without_restarts(story):
    before = story.server_cert().serial_number
    figures = story.run_op(EXAMPLES / "drops-rotate.yaml", "rotate", _rows_counted)
    assert story.server_cert().serial_number != before
    _assert_serves(story, tls=True, issuer_cn="ca")
    assert _condition(story.last_ops, "ServingNewCertificate")["reason"] == "Reloaded"
    _assert_uninterrupted(figures, 0, "rotate")


def test_a_cert_manager_renewal_reaches_every_pod_without_restarts(story, operator):
    """What `cmctl renew` does (the Certificate's Issuing condition): cert-manager re-issues on its own, no op
    involved; the operator makes every pod serve the new certificate. Its mismatch gauge (served != issued) goes
    1 -> 0 on the way."""
    before = story.server_cert().serial_number
    mismatch_seen = []

    def mismatch() -> float | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.probe_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(r'^kubedruid_served_certificate_mismatch\{druid="%s",namespace="%s"\} (\S+)$' % (DB, NS),
                      text, re.M)
        return float(m.group(1)) if m else None

    def renew():
        story.plane.kubectl("-n", NS, "patch", "certificate", f"{DB}-server-cert", "--subresource=status",
                            "--type=merge", "-p", json.dumps({"status": {"conditions": [{
                                "type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
                                "message": "Certificate re-issuance manually triggered",
                                "lastTransitionTime": now_rfc3339()}]}}))

    def served_everywhere():
        value = mismatch()
        if not mismatch_seen or mismatch_seen[-1] != value:
            mismatch_seen.append(value)
        serial = story.server_cert().serial_number
        if serial == before:
            return None
        served = [story.view.served(p, story.bundle.file())[0].serial for p in story.view.pods()]
        return "Successful" if set(served) == {serial} else None

    mismatch_seen.append(mismatch())  # after the rotation, before the renewal
    figures = story.under_load("renewal", renew, served_everywhere, _rows_counted)
    _assert_serves(story, tls=True, issuer_cn="ca")
    wait(lambda: mismatch() == 0.0, 60, "the mismatch gauge back to 0", interval=0.5)
    assert mismatch_seen[0] == 0.0 and 1.0 in mismatch_seen, mismatch_seen  # 0 -> 1 (renewed, not yet served) -> 0
    REPORT["renewal_mismatch_gauge"] = mismatch_seen + [mismatch()]
    serving = _condition(story.view.druid(), "ServingIssuedCertificate")
    wait(lambda: _condition(story.view.druid(), "ServingIssuedCertificate")["status"] == "True", 60,
         "the Druid to report the renewed serial served", interval=1)
    assert serving is not None
    ops = json.loads(story.plane.kubectl("-n", NS, "get", "druidopsrequest", "-o", "json").stdout)["items"]
    assert not [o for o in ops if "renewal" in o["metadata"]["name"]], "no restart was needed"
    _assert_uninterrupted(figures, 0, "renewal")


def test_update_issuer_trusts_both_cas_during_the_change(story):
    story.ca_secret("druid-new-ca", "new-ca")
    story.apply(EXAMPLES / "druid-new-issuer.yaml")
    figures = story.run_op(EXAMPLES / "druid-update-tls-issuer.yaml", "update-issuer", _rows_counted)
    _assert_serves(story, tls=True, issuer_cn="new-ca")
    assert _condition(story.last_ops, "IssuerCATrusted")["reason"] == "CAChanged"
    published = bundle.parse(story.view.secret(f"{DB}-ca-bundle")["ca.crt"])
    assert [c.subject.rfc4514_string() for c in published] == ["O=kubedb,CN=new-ca"], "the old CA is dropped"
    _assert_uninterrupted(figures, 2, "update-issuer")


def test_remove_tls_under_load(story):
    figures = story.run_op(EXAMPLES / "drops-remove.yaml", "remove", _rows_counted)
    _assert_serves(story, tls=False)
    assert figures["answered_over"].get("http") and figures["answered_over"].get("https"), "followed the Service"
    _assert_uninterrupted(figures, 2, "remove")


def test_monitoring_through_a_restart_under_load(story):
    """KubeDB's `spec.monitor` (builtin Prometheus) on the running Druid: the spec change makes it Critical (its
    pods run an older template), a Restart DruidOpsRequest rolls the exporter sidecar in without a failed query
    (and ends the client trust the removal left), and then every pod's exporter serves its own node's metrics,
    which grow with the queries, and the stats Service answers with them."""
    patch = {"spec": {"monitor": {"agent": "prometheus.io/builtin"}}}
    story.plane.kubectl("-n", NS, "patch", "druid", DB, "--type=merge", "-p", json.dumps(patch))
    wait(lambda: (story.view.druid().get("status") or {}).get("phase") == "Critical", 60,
         "the Druid Critical: its pods run the template without the exporter", interval=1)
    restart = {"apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
               "metadata": {"name": "restart-monitored", "namespace": NS},
               "spec": {"type": "Restart", "databaseRef": {"name": DB}}}
    figures = story.under_load("restart", lambda: story.apply(text=yaml.safe_dump(restart)),
                               lambda: story._finished("restart-monitored"), _rows_counted)
    assert figures["phase"] == "Successful", figures
    _assert_uninterrupted(figures, 1, "restart")
    wait(lambda: (story.view.druid().get("status") or {}).get("phase") == "Ready", 120, "the Druid Ready", interval=1)

    services = {"brokers": "druid/broker", "routers": "druid/router", "historicals": "druid/historical",
                "middleManagers": "druid/middleManager", "coordinators": "druid/coordinator"}
    pods = story.view.pods()
    assert {p.node_type for p in pods} == set(services)

    def scrape(address: str) -> str:
        conn = http.client.HTTPConnection(address, 9104, timeout=5)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200
            return resp.read().decode()
        finally:
            conn.close()

    def jvm_of_every_pod() -> bool:  # JvmMonitor emits every 15 s
        return all(f'service="{services[p.node_type]}"' in (text := scrape(p.ip)) and "druid_jvm_mem_used_last{" in text
                   for p in pods)

    wait(jvm_of_every_pod, 90, "every pod's exporter to serve its own node's JVM metrics", interval=3)
    brokers = [p for p in pods if p.node_type == "brokers"]

    def sql_queries(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("druid_sqlQuery_time_count{"))

    before = sum(sql_queries(scrape(p.ip)) for p in brokers)
    for _ in range(5):
        assert _rows_counted(story.view.sql(COUNT_SQL, None))
    wait(lambda: sum(sql_queries(scrape(p.ip)) for p in brokers) >= before + 5, 60,
         "the brokers' exporters to count the five SQL queries", interval=2)
    stats = json.loads(story.plane.kubectl("-n", NS, "get", "service", f"{DB}-stats", "-o", "json").stdout)
    assert stats["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert "druid_exporter_events_received_total" in scrape(stats["spec"]["clusterIP"])
    REPORT["monitoring"] = {"sql_queries_counted_by_brokers": sum(sql_queries(scrape(p.ip)) for p in brokers),
                            "series_in_a_broker": scrape(brokers[0].ip).count("_count{")}


def test_the_health_checker_reports_routers_that_stop_answering(story):
    """KubeDB's `spec.healthChecker` on the running Druid: with a 2 s period, a 1 s timeout and 2 failures, the
    operator's check through the router Service notices both routers' JVMs frozen (SIGSTOP from the host: the pods
    stay Running, the kubelet's probes time out in their own time) and says so: AcceptingConnection False, reason
    DruidNotAnswering, naming the Service port, phase NotReady. Once the JVMs run again, the Druid is Ready."""
    checker = {"periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 2}
    story.plane.kubectl("-n", NS, "patch", "druid", DB, "--type=merge",
                        "-p", json.dumps({"spec": {"healthChecker": checker}}))
    routers = _druid_jvms(story, "routers", "router")
    assert len(routers) == QUERY_NODES_REPLICAS, routers

    def not_answering():
        druid = story.view.druid()
        c = _condition(druid, "AcceptingConnection") or {}
        return c.get("reason") == "DruidNotAnswering" and (c, druid["status"]["phase"], time.monotonic())

    frozen_at = time.monotonic()
    try:
        for pid in routers:
            os.kill(pid, signal.SIGSTOP)
        c, phase, noticed_at = wait(not_answering, 60, "the operator's check to find the routers not answering",
                                    interval=0.3)
    finally:
        for pid in routers:
            os.kill(pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    assert phase == "NotReady", phase
    assert f"through {DB}-routers:http" in c["message"] and "2 health checks in a row" in c["message"], c
    wait(lambda: story.view.druid()["status"]["phase"] == "Ready", 120, "the Druid Ready again", interval=0.5)
    REPORT["health check"] = {"noticed_after_s": round(noticed_at - frozen_at, 1),
                              "ready_again_after_s": round(time.monotonic() - resumed_at, 1)}
    story.plane.kubectl("-n", NS, "patch", "druid", DB, "--type=json",
                        "-p", json.dumps([{"op": "remove", "path": "/spec/healthChecker"}]))
    assert _rows_counted(story.view.sql(COUNT_SQL, None))


def _druid_jvms(story, node_type: str, service: str) -> list[int]:
    """Host PIDs of the Druid JVMs (`org.apache.druid.cli.Main server <service>`, druid.sh) in this Druid's pods of
    one node type. A process counts only inside one of those pods' cgroups: make test runs the real-Druid tier beside
    this one, whose JVMs on the host have the same command line."""
    tail = f"org.apache.druid.cli.Main\0server\0{service}".encode()
    pods = {f"pod{p.uid}" for p in story.view.pods() if p.node_type == node_type}
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().rstrip(b"\0").endswith(tail) and \
                    pods & set((proc / "cgroup").read_text().replace("/", " ").split()):
                pids.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return pids


def _condition(obj: dict, type_: str) -> dict | None:
    return get_condition((obj.get("status") or {}).get("conditions"), type_)
