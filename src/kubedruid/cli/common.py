"""What the people's commands share: kubectl's options, the resources they read, look-ups that fail with a one-line
error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from lightkube.core.exceptions import ApiError

from kubedruid.kube.client import resource

from .kubeconn import Connection, Target, connect
from .output import EXIT_BAD_INPUT, CliError, OutputFormat

Druid = resource("kubedb.com/v1alpha2", "Druid")
Ops = resource("ops.kubedb.com/v1alpha1", "DruidOpsRequest")
Certificate = resource("cert-manager.io/v1", "Certificate")
Issuer = resource("cert-manager.io/v1", "Issuer")
ClusterIssuer = resource("cert-manager.io/v1", "ClusterIssuer")
DruidVersion = resource("catalog.kubedb.com/v1alpha1", "DruidVersion")

OPS_API_VERSION = "ops.kubedb.com/v1alpha1"

NamespaceOpt = Annotated[Optional[str], typer.Option(
    "--namespace", "-n", help="Namespace (default: the kubeconfig context's namespace, else \"default\").",
    show_default=False)]
ContextOpt = Annotated[Optional[str], typer.Option(
    "--context", help="The kubeconfig context to use (default: its current context).", show_default=False)]
KubeconfigOpt = Annotated[Optional[Path], typer.Option(
    "--kubeconfig", help="Path to the kubeconfig (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).",
    show_default=False)]
OutputOpt = Annotated[Optional[OutputFormat], typer.Option(
    "--output", "-o", help="Print data as json or yaml instead of tables.", show_default=False,
    case_sensitive=False)]


def open_target(namespace: str | None, context: str | None, kubeconfig: Path | None) -> Connection:
    return connect(Target(namespace=namespace, context=context, kubeconfig=kubeconfig))


def get_or_none(conn: Connection, res, name: str, namespace: str | None = None) -> dict | None:
    try:
        obj = conn.client.get(res, name, namespace=namespace)
    except ApiError as e:
        if e.status.code == 404:
            return None
        raise
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def get_druid(conn: Connection, name: str) -> dict:
    druid = get_or_none(conn, Druid, name, conn.namespace)
    if druid is None:
        raise CliError(f"Druid {conn.namespace}/{name} not found", EXIT_BAD_INPUT)
    return druid


def get_ops(conn: Connection, name: str) -> dict:
    ops = get_or_none(conn, Ops, name, conn.namespace)
    if ops is None:
        raise CliError(f"DruidOpsRequest {conn.namespace}/{name} not found", EXIT_BAD_INPUT)
    return ops


def ops_of(conn: Connection, druid: str) -> list[dict]:
    """The Druid's ops requests, oldest first (creation time, then name)."""
    out = []
    for o in conn.client.list(Ops, namespace=conn.namespace):
        d = o.to_dict() if hasattr(o, "to_dict") else dict(o)
        if ((d.get("spec") or {}).get("databaseRef") or {}).get("name") == druid:
            out.append(d)
    return sorted(out, key=lambda d: (d["metadata"].get("creationTimestamp") or "", d["metadata"]["name"]))


def tls_enabled(druid: dict) -> bool:
    return (druid.get("spec") or {}).get("enableSSL") is True


def phase(obj: dict) -> str:
    return (obj.get("status") or {}).get("phase") or ""


def conditions(obj: dict) -> list[dict]:
    return list((obj.get("status") or {}).get("conditions") or [])


def operation(ops: dict) -> str:
    """What an ops request does, in a few words."""
    spec = ops.get("spec") or {}
    if spec.get("type") != "ReconfigureTLS":
        return ""
    tls = spec.get("tls") or {}
    if tls.get("remove"):
        return "remove TLS"
    if tls.get("rotateCertificates"):
        return "rotate certificates"
    parts = []
    ref = tls.get("issuerRef")
    if ref:
        parts.append(f"issuer {ref.get('kind', 'Issuer')}/{ref.get('name')}")
    if tls.get("certificates") is not None:
        parts.append("certificates " + ", ".join(c.get("alias", "?") for c in tls["certificates"]))
    return "; ".join(parts) or "-"
