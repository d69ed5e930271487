"""Druid's rule for restarting historicals one by one: the next one leaves only once every segment is as replicated
as the cluster allows, as the Coordinator sees it (`/druid/coordinator/v1/loadstatus?full&computeUsingClusterView`:
segments left to load, per tier and datasource). A historical's own readiness says only that it loaded its segments;
its peers learn that it serves them a few seconds later. Measured on the real node: the second historical of a roll
evicted 3 s after the first was Ready left the brokers with no server for a datasource, and SQL through the router
answered 400 "Object 'tiny' not found" for about two seconds. (The gate holds the second historical ~4 s there, but
has not removed that burst in the add's first roll: the brokers learn later than the Coordinator. Open in issue 10.)

The Coordinator is asked at its pod's address, over the port its pod serves (plaintext while it is open, else TLS
verified against the CA bundle and its DNS name), with the Druid's admin credentials. Where it cannot be asked
(kwok pods, a network policy), the gate is open: None, and the pod's readiness alone decides, as before.
"""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp

from kubedruid.api import Druid
from kubedruid.certs.served import client_context
from kubedruid.druid.nodes import BY_KEY
from kubedruid.kube.client import Kube
from kubedruid.specs import names

LOADSTATUS = "/druid/coordinator/v1/loadstatus?full&computeUsingClusterView"
ASK_TIMEOUT_S = 3.0
COORDINATOR = BY_KEY["coordinators"]


def left_to_load(answer: dict) -> int:
    """Segments the Coordinator still has to load, over every tier and datasource (loadstatus?full)."""
    return sum(int(n) for per_datasource in answer.values() for n in per_datasource.values())


async def fully_replicated(kube: Kube, db: Druid, ca_pem: bytes) -> bool | None:
    """True when nothing is left to load, False while something is, None when the Coordinator cannot be asked."""
    ns, name = db.metadata.namespace, db.metadata.name
    pod_name = f"{names.petset_name(name, COORDINATOR)}-0"
    pod = await kube.get("v1", "Pod", pod_name, ns)
    ip = ((pod or {}).get("status") or {}).get("podIP")
    if not ip:
        return None
    served = {p.get("containerPort") for c in pod["spec"]["containers"] for p in c.get("ports") or []}
    tls = COORDINATOR.plain_port not in served
    if tls and not ca_pem:
        return None
    headers = {}
    if not db.spec.disableSecurity and db.spec.authSecret and db.spec.authSecret.name:
        secret = await kube.get("v1", "Secret", db.spec.authSecret.name, ns)
        data = (secret or {}).get("data") or {}
        if "username" in data and "password" in data:
            user, password = (base64.b64decode(data[k]).decode() for k in ("username", "password"))
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    url = f"{'https' if tls else 'http'}://{ip}:{COORDINATOR.port(tls)}{LOADSTATUS}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)) as session:
            async with session.get(url, headers=headers, ssl=client_context(ca_pem) if tls else False,
                                   server_hostname=names.pod_fqdn(name, ns, pod_name) if tls else None) as resp:
                if resp.status != 200:
                    return None
                return left_to_load(json.loads(await resp.text())) == 0
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError, TypeError):
        return None
