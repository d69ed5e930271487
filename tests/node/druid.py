"""What the real-node tests observe of a Druid from outside the operator, as a user or a monitoring system would:
its pods and their restarts, the router Service a client follows, the certificate each pod really serves, and a
tiny ingestion through the router."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from kubedruid.api.defaults import auth_secret_name
from kubedruid.druid.nodes import BY_KEY
from kubedruid.specs import names

from tests.waiting import eventually

from .load import Endpoint, sql_query


@dataclass(frozen=True)
class PodInfo:
    name: str
    uid: str
    ip: str
    node_type: str  # kubedb.com/role
    ready: bool
    terminating: bool = False


@dataclass(frozen=True)
class Served:
    """What a pod's port answered: the certificate it served over TLS, or that it serves plaintext, or nothing."""

    pod: str
    port: int
    tls: bool
    open: bool
    serial: int | None = None
    issuer: str | None = None
    fingerprint: str | None = None
    error: str | None = None


class DruidView:
    def __init__(self, kubectl, namespace: str, name: str, workdir: Path):
        self.kubectl, self.ns, self.name, self.workdir = kubectl, namespace, name, workdir

    def _json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", "-n", self.ns, *args, "-o", "json").stdout)

    def druid(self) -> dict:
        return self._json("druid", self.name)

    def pods(self) -> list[PodInfo]:
        items = self._json("pods", "-l", f"app.kubernetes.io/instance={self.name}")["items"]
        out = []
        for p in items:
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
            out.append(PodInfo(p["metadata"]["name"], p["metadata"]["uid"], p["status"].get("podIP", ""),
                               p["metadata"]["labels"].get(names.ROLE_LABEL, ""), ready,
                               bool(p["metadata"].get("deletionTimestamp"))))
        return sorted(out, key=lambda p: p.name)

    def secret(self, name: str) -> dict[str, bytes]:
        data = self._json("secret", name).get("data") or {}
        return {k: base64.b64decode(v) for k, v in data.items()}

    def admin_auth(self) -> tuple[str, str] | None:
        spec = self.druid()["spec"]
        if spec.get("disableSecurity"):
            return None
        s = self.secret((spec.get("authSecret") or {}).get("name") or auth_secret_name(self.name))
        return s["username"].decode(), s["password"].decode()

    def router_endpoint(self, cafile: Path | None) -> Endpoint:
        """The router Service as it is now: its address, the port it advertises, TLS when the port is `https`."""
        svc = self._json("service", names.primary_service(self.name, BY_KEY["routers"]))
        port = svc["spec"]["ports"][0]
        tls = port["name"] == "https"
        return Endpoint(svc["spec"]["clusterIP"], port["port"],
                        f"{svc['metadata']['name']}.{self.ns}.svc.{names.CLUSTER_DOMAIN}", tls,
                        str(cafile) if cafile else None)

    def served(self, pod: PodInfo, cafile: Path | None) -> list[Served]:
        """Both ports of the pod's node type, probed from the host: a verified handshake (pod FQDN as the name) on the
        TLS port, an HTTP health check on the plaintext port."""
        node = BY_KEY[pod.node_type]
        fqdn = names.pod_fqdn(self.name, self.ns, pod.name)
        return [_handshake(pod.name, pod.ip, node.tls_port, fqdn, cafile), _plain(pod.name, pod.ip, node.plain_port)]

    def sql(self, query: str, cafile: Path | None) -> list:
        return sql_query(self.router_endpoint(cafile), query, self.admin_auth(), timeout=30)

    def router_request(self, method: str, path: str, cafile: Path | None, body: dict | None = None) -> dict:
        ep = self.router_endpoint(cafile)
        from .load import _ServiceConnection

        conn = _ServiceConnection(ep, 30) if ep.tls else http.client.HTTPConnection(ep.address, ep.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        auth = self.admin_auth()
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status >= 300:
                raise AssertionError(f"{method} {path}: HTTP {resp.status} {data[:500]!r}")
            return json.loads(data) if data else {}
        finally:
            conn.close()


def _handshake(pod: str, ip: str, port: int, fqdn: str, cafile: Path | None) -> Served:
    ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cafile is None:  # no CA to check against: we only want to know whether TLS is served at all
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=fqdn) as s:
            der = s.getpeercert(binary_form=True)
    except ConnectionRefusedError:
        return Served(pod, port, True, False)
    except (OSError, ssl.SSLError) as e:
        return Served(pod, port, True, True, error=f"{type(e).__name__}: {e}")
    cert = x509.load_der_x509_certificate(der)
    return Served(pod, port, True, True, cert.serial_number, cert.issuer.rfc4514_string(),
                  cert.fingerprint(hashes.SHA256()).hex())


def _plain(pod: str, ip: str, port: int) -> Served:
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        conn.request("GET", "/status/health")
        ok = conn.getresponse().status == 200
        return Served(pod, port, False, True, error=None if ok else "health not 200")
    except ConnectionRefusedError:
        return Served(pod, port, False, False)
    except OSError as e:
        return Served(pod, port, False, True, error=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def tiny_ingestion_spec(datasource: str) -> dict:
    """Native batch ingestion of three inline rows: pushed to deep storage by a peon, loaded by the historical."""
    rows = "\n".join(json.dumps(r) for r in (
        {"time": "2026-01-01T00:00:00Z", "channel": "#en", "added": 3},
        {"time": "2026-01-01T01:00:00Z", "channel": "#fr", "added": 5},
        {"time": "2026-01-01T02:00:00Z", "channel": "#en", "added": 7},
    ))
    return {"type": "index_parallel", "spec": {
        "dataSchema": {"dataSource": datasource,
                       "timestampSpec": {"column": "time", "format": "iso"},
                       "dimensionsSpec": {"dimensions": ["channel"]},
                       "metricsSpec": [{"type": "longSum", "name": "added", "fieldName": "added"}],
                       "granularitySpec": {"segmentGranularity": "day", "queryGranularity": "none",
                                           "rollup": False}},
        "ioConfig": {"type": "index_parallel", "inputSource": {"type": "inline", "data": rows},
                     "inputFormat": {"type": "json"}},
        "tuningConfig": {"type": "index_parallel", "maxNumConcurrentSubTasks": 1}}}


def wait(predicate, timeout: float, what: str, interval: float = 1.0):
    """Anything a request to Druid or kubectl raises counts as "not yet" (the answer is what is awaited)."""
    return eventually(predicate, timeout, what, interval=interval, catch=(Exception,))


class PublishedBundle:
    """The CA bundle the operator publishes for clients (<db>-ca-bundle, ca.crt), as a file a client trusts, read
    again at most every `ttl` seconds: a client that follows the Druid's trust through a change of CA."""

    def __init__(self, view: DruidView, path: Path, ttl: float = 2.0):
        self.view, self.path, self.ttl = view, path, ttl
        self._read_at = 0.0

    def file(self) -> Path | None:
        import time

        if time.monotonic() - self._read_at > self.ttl:
            try:
                pem = self.view.secret(names.ca_bundle_secret(self.view.name)).get("ca.crt")
            except Exception:  # no bundle (plaintext Druid) or a transient kubectl failure: keep what we had
                pem = None
            if pem:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_bytes(pem)
                tmp.replace(self.path)
            self._read_at = time.monotonic()
        return self.path if self.path.exists() else None


class PodRolls:
    """Every UID each Druid pod had while it ran, and when it was away (terminating, or not Ready), polled each
    second (a pod's replacement takes far longer to start): the rolls an op made, counted from what the cluster
    shows, not from what the operator says."""

    def __init__(self, view: DruidView):
        import threading

        self.view, self.seen = view, {}
        self.away: dict[str, list[list[float]]] = {}  # pod -> [start, end] epoch seconds it was restarting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "PodRolls":
        self._record()
        self._thread.start()
        return self

    def _record(self) -> None:
        import time

        now = time.time()
        for p in self.view.pods():
            self.seen.setdefault(p.name, set()).add(p.uid)
            spans = self.away.setdefault(p.name, [])
            if p.terminating or not p.ready:
                if spans and spans[-1][1] >= now - 2.5:  # still the same absence
                    spans[-1][1] = now
                else:
                    spans.append([now, now])

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._record()
            except Exception:  # kubectl hiccup: the next poll sees the same pods
                pass

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._record()

    def rolls(self) -> dict[str, int]:
        return {pod: len(uids) - 1 for pod, uids in sorted(self.seen.items())}

    def was_away(self, pod: str, at: float, slack: float = 3.0) -> bool:
        """Whether `pod` was restarting around `at` (epoch seconds), give or take the poll interval."""
        return any(start - slack <= at <= end + slack for start, end in self.away.get(pod, []))

    def last_away_start(self, pod: str) -> float | None:
        """When `pod` last began restarting (epoch seconds), if it did while watched."""
        spans = self.away.get(pod)
        return spans[-1][0] if spans else None
