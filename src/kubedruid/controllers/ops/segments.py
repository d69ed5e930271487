"""Druid's rule for restarting historicals one by one, made strict enough for queries that never fail: the next
historical leaves only once every segment has been handed over, as the Coordinator AND every broker see it.

- The Coordinator has nothing left to load (`loadstatus?full&computeUsingClusterView`: segments left to load, per
  tier and datasource): every segment is as replicated as the cluster allows.
- Every Ready broker serves queries from its own view of who holds what (`sys.server_segments`), which lags the
  Coordinator's: measured on the real node, one broker saw a restarted historical 11 s after the Coordinator did.
  Evicting the next historical inside that window left the broker with no server for a datasource, and SQL through
  the router answered 400 "Object 'tiny' not found". So each broker must count, for every historical, at least the
  segments the Coordinator counts for it (`/druid/coordinator/v1/servers?full`).

Druid is asked at its pods' addresses, over the port each pod serves (plaintext while it is open, else TLS verified
against the CA bundle and the pod's DNS name), with the Druid's admin credentials. Where the Coordinator cannot be
asked (kwok pods, a network policy), the gate is open: None, and the pod's readiness alone decides, as before.
"""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp

from kubedruid.api import Druid
from kubedruid.certs.served import client_context
from kubedruid.druid.nodes import BY_KEY, NodeType
from kubedruid.kube.client import Kube
from kubedruid.specs import names, petset_pods

LOADSTATUS = "/druid/coordinator/v1/loadstatus?full&computeUsingClusterView"
SERVERS = "/druid/coordinator/v1/servers?full"
SQL = "/druid/v2/sql"
SEGMENTS_PER_SERVER = "SELECT server, COUNT(*) AS n FROM sys.server_segments GROUP BY server"
ASK_TIMEOUT_S = 3.0
COORDINATOR, BROKER = BY_KEY["coordinators"], BY_KEY["brokers"]


def left_to_load(answer: dict) -> int:
    """Segments the Coordinator still has to load, over every tier and datasource (loadstatus?full)."""
    return sum(int(n) for per_datasource in answer.values() for n in per_datasource.values())


def historical_segment_counts(servers: list[dict]) -> dict[str, int]:
    """Segments per historical (`host:port`), as the Coordinator sees them (servers?full)."""
    return {s["host"]: len(s.get("segments") or {}) for s in servers if str(s.get("type")).lower() == "historical"}


def behind(coordinator: dict[str, int], broker: dict[str, int]) -> list[str]:
    """The historicals a broker knows fewer segments of than the Coordinator does."""
    return sorted(host for host, n in coordinator.items() if broker.get(host, 0) < n)


class _Druid:
    """Asks a Druid's pods, each at its IP and on the port it serves."""

    def __init__(self, db: Druid, ca_pem: bytes, session: aiohttp.ClientSession):
        self.db, self.ca_pem, self.session = db, ca_pem, session

    async def ask(self, pod: dict, node: NodeType, path: str, sql: str | None = None):
        """The JSON answer of `pod`, or None when it cannot be asked or does not answer 200."""
        ip = (pod.get("status") or {}).get("podIP")
        served = {p.get("containerPort") for c in pod["spec"]["containers"] for p in c.get("ports") or []}
        tls = node.plain_port not in served
        if not ip or (tls and not self.ca_pem):
            return None
        url = f"{'https' if tls else 'http'}://{ip}:{node.port(tls)}{path}"
        options = self._tls(pod) if tls else {}
        request = self.session.post(url, json={"query": sql}, **options) if sql else self.session.get(url, **options)
        try:
            async with request as resp:
                return json.loads(await resp.text()) if resp.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None

    def _tls(self, pod: dict) -> dict:
        ns, name = self.db.metadata.namespace, self.db.metadata.name
        return {"ssl": client_context(self.ca_pem),
                "server_hostname": names.pod_fqdn(name, ns, pod["metadata"]["name"])}


async def handed_over(kube: Kube, db: Druid, ca_pem: bytes) -> bool | None:
    """True when the Coordinator has nothing left to load and every Ready broker knows every historical's segments
    as the Coordinator does; False while not; None when the Coordinator cannot be asked."""
    ns, name = db.metadata.namespace, db.metadata.name
    coordinator, pods, headers = await asyncio.gather(
        kube.get("v1", "Pod", f"{names.petset_name(name, COORDINATOR)}-0", ns),
        kube.list("v1", "Pod", ns, labels=names.node_labels(name, BROKER)), _admin_headers(kube, db))
    if coordinator is None:
        return None
    brokers = [p for p in pods if petset_pods.is_ready(p)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT_S),
                                     headers=headers) as session:
        druid = _Druid(db, ca_pem, session)
        try:
            load = await druid.ask(coordinator, COORDINATOR, LOADSTATUS)
            if not isinstance(load, dict):
                return None
            if left_to_load(load) > 0:
                return False
            servers = await druid.ask(coordinator, COORDINATOR, SERVERS)
            if not isinstance(servers, list):
                return None
            expected = historical_segment_counts(servers)
            answers = await asyncio.gather(*(druid.ask(b, BROKER, SQL, SEGMENTS_PER_SERVER) for b in brokers))
            for answer in answers:
                if not isinstance(answer, list):
                    return False  # a Ready broker that does not answer yet: ask again shortly
                if behind(expected, {row["server"]: int(row["n"]) for row in answer}):
                    return False
        except (AttributeError, KeyError, TypeError, ValueError):  # an answer of another shape: not ours to judge
            return None
    return True


async def _admin_headers(kube: Kube, db: Druid) -> dict:
    if db.spec.disableSecurity or not (db.spec.authSecret and db.spec.authSecret.name):
        return {}
    secret = await kube.get("v1", "Secret", db.spec.authSecret.name, db.metadata.namespace)
    data = (secret or {}).get("data") or {}
    if "username" not in data or "password" not in data:
        return {}
    user, password = (base64.b64decode(data[k]).decode() for k in ("username", "password"))
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
