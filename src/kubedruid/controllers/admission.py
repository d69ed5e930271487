"""Admission checks the apiserver cannot make with CEL: that a Druid's DruidVersion exists, that its pod templates
and storage are valid Kubernetes objects (the apiserver's own validation, by dry run: api/kubernetes_fields.py),
and that a DruidOpsRequest's databaseRef names an existing Druid. Everything else is in the CRDs (deploy/crds).

The webhook configuration is managed by kopf (installed when the operator starts) with failurePolicy Ignore: when
the operator is down, objects are still accepted and the provisioner / ops-manager report the same problems as
conditions. In a cluster (the Helm chart) the webhook is registered by a reference to the operator's Service and
served with a cert-manager certificate mounted from a Secret: every replica serves the same certificate, so the
configuration's caBundle stays right across a leader change (decision 0021). Run outside a cluster, the operator
makes a throw-away CA and registers itself by URL.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kopf
from lightkube.core.exceptions import ApiError

from kubedruid.api import validate_druid, validate_ops_request
from kubedruid.api.kubernetes_fields import FieldCheck, field_checks
from kubedruid.certs.pki import make_serving_pair
from kubedruid.kube.client import Kube

WEBHOOK_CONFIGURATION = "kubedruid.dev"
log = logging.getLogger("kubedruid.admission")


# How often a mounted certificate is re-read; a renewal restarts the server and re-registers the CA.
CERT_CHECK_INTERVAL_S = 30.0


@dataclass(frozen=True)
class WebhookService:
    """The Service the apiserver calls the webhook through: `namespace/name[:port]` (port 443 by default)."""

    namespace: str
    name: str
    port: int = 443

    @classmethod
    def parse(cls, text: str) -> "WebhookService":
        ref, _, port = text.partition(":")
        namespace, _, name = ref.partition("/")
        if not namespace or not name or "/" in name or (port and not port.isdigit()):
            raise ValueError(f"{text!r} is not NAMESPACE/NAME or NAMESPACE/NAME:PORT")
        return cls(namespace, name, int(port) if port else 443)

    def client_config(self, ca_bundle: str | None) -> dict:
        config: dict = {"service": {"namespace": self.namespace, "name": self.name, "port": self.port}}
        if ca_bundle:
            config["caBundle"] = ca_bundle
        return config


class WebhookServer(kopf.WebhookServer):
    """kopf's server, serving an SSL `context` it is given as it is: kopf loads a certificate of its own into a given
    context unless certificate files are named, and a throw-away key must not stay on disk for that."""

    def _build_ssl(self):
        if self.context is not None and self.certfile is None:
            return self.cadata, self.context
        return super()._build_ssl()


class ServiceWebhookServer(WebhookServer):
    """kopf's server, registered by a Service reference instead of its URL (kopf appends each handler's id to the
    service's path as it does to a URL)."""

    def __init__(self, service: WebhookService, **kwargs):
        super().__init__(**kwargs)
        self.service = service

    async def __call__(self, fn):
        async for config in super().__call__(fn):
            yield self.service.client_config(config.get("caBundle"))


def mounted_certificate(cert_dir: Path) -> dict[str, Path]:
    """The files of a cert-manager Secret mounted at `cert_dir`, by key; FileNotFoundError naming any missing."""
    files = {name: cert_dir / name for name in ("tls.crt", "tls.key", "ca.crt")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"the webhook's certificate directory lacks {', '.join(missing)}")
    return files


def webhook_server(addr: str, port: int, host: str | None = None, cert_dir: Path | None = None,
                   service: WebhookService | None = None) -> kopf.WebhookServer:
    """The admission webhook's TLS server. With `cert_dir` (tls.crt, tls.key, ca.crt, as cert-manager writes a
    Secret) it serves that certificate, re-read when it is renewed, and registers ca.crt as the caBundle; else it
    makes a throw-away CA for `host`. With `service` it is registered by that Service reference, else by URL."""
    kind, extra = (ServiceWebhookServer, {"service": service}) if service else (WebhookServer, {})
    if cert_dir is not None:
        files = mounted_certificate(cert_dir)
        return kind(addr=addr, port=port, host=host, certfile=str(files["tls.crt"]), pkeyfile=str(files["tls.key"]),
                    cafile=str(files["ca.crt"]), file_check_interval=CERT_CHECK_INTERVAL_S, **extra)
    host = host or (f"{service.name}.{service.namespace}.svc" if service else addr)
    ca, leaf = make_serving_pair(host, dns=[host, "localhost"] if not host[0].isdigit() else ["localhost"],
                                 ips=[host] if host[0].isdigit() else [])
    return kind(addr=addr, port=port, host=host, context=_serving_context(leaf.cert_pem, leaf.key_pem),
                cadata=ca.cert_pem, **extra)


def _serving_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context holding a certificate and its key. Python's ssl loads a key only from a file: it is written
    to a folder only its owner can read and removed as soon as it is loaded."""
    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="kubedruid-webhook-") as folder:  # made 0700
        cert, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        context.load_cert_chain(cert, key)
    return context


def register(registry: kopf.OperatorRegistry, kube_of) -> None:
    """`kube_of(memo)` returns the operator's Kube client."""

    @kopf.on.validate("kubedb.com", "v1alpha2", "druids", id="druid", ignore_failures=True,
                      operations=["CREATE", "UPDATE"], registry=registry)
    async def validate_druid_spec(body, old, memo: kopf.Memo, **_):
        if body["metadata"].get("deletionTimestamp"):
            return  # never block the finalizer's removal
        kube: Kube = kube_of(memo).fresh  # a DruidVersion created a moment ago counts
        druid, before = dict(body), dict(old) if old else None
        problems = []
        # What was checked when it was set is not checked again: metadata and finalizer updates must go through.
        if before is None or (before.get("spec") or {}).get("version") != (druid.get("spec") or {}).get("version"):
            versions = {v["metadata"]["name"]
                        for v in await kube.list("catalog.kubedb.com/v1alpha1", "DruidVersion")}
            problems += validate_druid(druid, known_versions=versions)
        if not problems:
            found = await asyncio.gather(*(_kubernetes_problem(kube, c) for c in field_checks(druid, before)))
            problems += [p for p in found if p]
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


async def _kubernetes_problem(kube: Kube, check: FieldCheck) -> str | None:
    """The apiserver's objection to `check`'s object, on the Druid's field; None if it has none, or if it could not
    say (the Druid is then admitted, as with the webhook down: the provisioner reports what fails)."""
    try:
        await kube.dry_run_create(check.obj)
    except ApiError as e:
        if e.status.code in (400, 422):
            causes = [c.to_dict() if hasattr(c, "to_dict") else dict(c)
                      for c in ((e.status.details.causes if e.status.details else None) or [])]
            return check.problem(e.status.message or "", causes)
        log.warning("could not validate %s with the apiserver: %s", check.field, e.status.message)
    return None
