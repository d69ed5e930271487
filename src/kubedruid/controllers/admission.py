"""Admission checks the apiserver cannot make with CEL: that a Druid's DruidVersion exists, and that a
DruidOpsRequest's databaseRef names an existing Druid. Everything else is in the CRDs (deploy/crds).

The webhook configuration is managed by kopf (installed when the operator starts) with failurePolicy Ignore: when
the operator is down, objects are still accepted and the provisioner / ops-manager report the same problems as
conditions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import kopf

from kubedruid.api import validate_druid, validate_ops_request
from kubedruid.certs.pki import make_serving_pair
from kubedruid.kube.client import Kube

WEBHOOK_CONFIGURATION = "kubedruid.dev"


def webhook_server(addr: str, port: int, host: str | None = None) -> kopf.WebhookServer:
    """A TLS webhook server with a throw-away CA; kopf puts the CA into the webhook configuration's caBundle."""
    host = host or addr
    ca, leaf = make_serving_pair(host, dns=[host, "localhost"] if not host[0].isdigit() else ["localhost"],
                                 ips=[host] if host[0].isdigit() else [])
    folder = Path(tempfile.mkdtemp(prefix="kubedruid-webhook-"))
    (folder / "tls.crt").write_bytes(leaf.cert_pem)
    key = folder / "tls.key"
    key.touch(mode=0o600)
    key.write_bytes(leaf.key_pem)
    return kopf.WebhookServer(addr=addr, port=port, host=host, certfile=str(folder / "tls.crt"),
                              pkeyfile=str(key), cadata=ca.cert_pem)


def register(registry: kopf.OperatorRegistry, kube_of) -> None:
    """`kube_of(memo)` returns the operator's Kube client."""

    @kopf.on.validate("kubedb.com", "v1alpha2", "druids", id="druid-version", ignore_failures=True,
                      operations=["CREATE", "UPDATE"], registry=registry)
    async def validate_druid_version(body, old, memo: kopf.Memo, **_):
        if body["metadata"].get("deletionTimestamp"):
            return  # never block the finalizer's removal
        if old and (old.get("spec") or {}).get("version") == (body.get("spec") or {}).get("version"):
            return  # the version was checked when it was set; metadata and finalizer updates must go through
        kube: Kube = kube_of(memo).fresh  # a DruidVersion created a moment ago counts
        versions = {v["metadata"]["name"] for v in await kube.list("catalog.kubedb.com/v1alpha1", "DruidVersion")}
        problems = validate_druid(dict(body), known_versions=versions)
        if problems:
            raise kopf.AdmissionError("; ".join(problems), code=422)

    @kopf.on.validate("ops.kubedb.com", "v1alpha1", "druidopsrequests", id="ops-database-ref",
                      ignore_failures=True, operations=["CREATE", "UPDATE"], registry=registry)
    async def validate_ops(body, old, memo: kopf.Memo, **_):
        kube: Kube = kube_of(memo).fresh
        problems = validate_ops_request(dict(body), old=dict(old) if old else None)
        ref = ((body.get("spec") or {}).get("databaseRef") or {}).get("name")
        ns = body["metadata"].get("namespace")
        if ref and await kube.get("kubedb.com/v1alpha2", "Druid", ref, ns) is None:
            problems.append(f"spec.databaseRef {ns}/{ref}, is invalid or not found")
        if problems:
            raise kopf.AdmissionError("; ".join(problems), code=422)
