"""`kubedruid status DRUID`: phase, TLS, issuer, the certificates cert-manager issued (read from their Secrets'
tls.crt; nothing else of a Secret is read or printed) and the Druid's ops history."""

from __future__ import annotations

import base64
from typing import Annotated

import typer
from cryptography import x509
from lightkube.resources.core_v1 import Secret
from rich.table import Table
from rich.text import Text

from kubedruid.certs.inventory import serial_hex
from kubedruid.druid.tls import CLIENT_ALIAS, SERVER_ALIAS

from .common import (
    Certificate,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    OutputOpt,
    conditions,
    get_druid,
    get_or_none,
    open_target,
    operation,
    ops_of,
    phase,
    tls_enabled,
)
from .kubeconn import Connection
from .output import age, console, emit, handle_errors, iso

ALIASES = (SERVER_ALIAS, CLIENT_ALIAS)


def _leaf(conn: Connection, secret_name: str) -> x509.Certificate | None:
    secret = get_or_none(conn, Secret, secret_name, conn.namespace)
    pem = ((secret or {}).get("data") or {}).get("tls.crt")
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(base64.b64decode(pem))
    except ValueError:
        return None


def certificate_info(conn: Connection, druid: dict, alias: str) -> dict | None:
    """What cert-manager's Certificate `<druid>-<alias>-cert` and its Secret say; None when neither exists."""
    db = druid["metadata"]["name"]
    name = f"{db}-{alias}-cert"
    cert = get_or_none(conn, Certificate, name, conn.namespace)
    entries = ((druid.get("spec") or {}).get("tls") or {}).get("certificates") or []
    declared = next((c.get("secretName") for c in entries if c.get("alias") == alias), None)
    secret_name = ((cert or {}).get("spec") or {}).get("secretName") or declared or name
    leaf = _leaf(conn, secret_name)
    if cert is None and leaf is None:
        return None
    ready = next((c for c in conditions(cert or {}) if c.get("type") == "Ready"), None)
    info = {"alias": alias, "certificate": name if cert else None, "secret": secret_name,
            "ready": bool(ready) and ready.get("status") == "True"}
    if leaf is not None:
        info |= {"serial": serial_hex(leaf.serial_number), "subject": leaf.subject.rfc4514_string(),
                 "issuer": leaf.issuer.rfc4514_string(), "notBefore": iso(leaf.not_valid_before_utc),
                 "notAfter": iso(leaf.not_valid_after_utc)}
    else:
        info |= {"serial": None, "subject": None, "issuer": None, "notBefore": None, "notAfter": None}
    return info


def collect(conn: Connection, name: str) -> dict:
    druid = get_druid(conn, name)
    ref = ((druid.get("spec") or {}).get("tls") or {}).get("issuerRef")
    issuer = {"kind": ref.get("kind") or "Issuer", "name": ref.get("name"),
              "apiGroup": ref.get("apiGroup") or "cert-manager.io"} if ref else None
    certs = [c for c in (certificate_info(conn, druid, a) for a in ALIASES) if c]
    history = [{"name": o["metadata"]["name"], "type": (o.get("spec") or {}).get("type"),
                "operation": operation(o) or None, "phase": phase(o) or "Pending",
                "created": o["metadata"].get("creationTimestamp"), "age": age(o["metadata"].get("creationTimestamp"))}
               for o in ops_of(conn, name)]
    paused = next((c for c in conditions(druid) if c.get("type") == "Paused"), None)
    return {"name": name, "namespace": conn.namespace, "phase": phase(druid) or "Unknown",
            "version": (druid.get("spec") or {}).get("version"),
            "paused": bool(paused),
            "tls": {"enabled": tls_enabled(druid), "issuer": issuer},
            "certificates": certs, "served": served_info(druid, certs), "ops": history}


def served_info(druid: dict, certs: list[dict]) -> list[dict]:
    """What each pod really serves, as the operator last saw it by a handshake (status.servedCertificates), and
    whether that is the certificate cert-manager issued."""
    issued = next((c["serial"] for c in certs if c["alias"] == SERVER_ALIAS), None)
    return [{**e, "issued": e.get("serial") == issued if e.get("serial") else None}
            for e in (druid.get("status") or {}).get("servedCertificates") or []]


def render(data: dict) -> None:
    out = console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("Druid", f"{data['namespace']}/{data['name']}" + (f" ({data['version']})" if data["version"] else ""))
    colour = {"Ready": "green", "Provisioning": "cyan", "Critical": "yellow", "NotReady": "red"}.get(data["phase"])
    head.add_row("phase", Text(data["phase"] + ("  (paused by an ops request)" if data["paused"] else ""),
                               style=colour or ""))
    tls = data["tls"]
    head.add_row("TLS", Text("on", style="green") if tls["enabled"] else Text("off"))
    issuer = tls["issuer"]
    head.add_row("issuer", f"{issuer['kind']}/{issuer['name']}" if issuer else "-")
    out.print(head)

    out.print()
    if data["certificates"]:
        table = Table(title="Certificates", title_justify="left", title_style="bold")
        for col in ("alias", "certificate", "ready", "serial", "issuer", "not after"):
            table.add_column(col, overflow="fold")
        for c in data["certificates"]:
            table.add_row(c["alias"], c["certificate"] or "(none)", "yes" if c["ready"] else "no",
                          c["serial"] or "-", c["issuer"] or "-", c["notAfter"] or "-")
        out.print(table)
    else:
        out.print("[bold]Certificates[/bold]  none")

    if data["served"]:
        out.print()
        table = Table(title="Served (a handshake with each pod's TLS port)", title_justify="left", title_style="bold")
        for col in ("pod", "serial", "issued", "issuer", "not after", "sha-256"):
            table.add_column(col, overflow="fold")
        for e in data["served"]:
            if e.get("error"):
                table.add_row(e["pod"], Text(e["error"], style="yellow"), "-", "-", "-", "-")
                continue
            table.add_row(e["pod"], e["serial"], Text("yes", style="green") if e["issued"] else
                          Text("no", style="red"), e["issuer"], e["notAfter"], e["fingerprint"][:16] + "...")
        out.print(table)

    out.print()
    if data["ops"]:
        table = Table(title="Ops requests (oldest first)", title_justify="left", title_style="bold")
        for col in ("name", "type", "operation", "phase", "age"):
            table.add_column(col, overflow="fold")
        styles = {"Successful": "green", "Failed": "red", "Progressing": "cyan", "Skipped": "yellow"}
        for o in data["ops"]:
            table.add_row(o["name"], o["type"] or "-", o["operation"] or "-",
                          Text(o["phase"], style=styles.get(o["phase"], "")), o["age"])
        out.print(table)
    else:
        out.print("[bold]Ops requests[/bold]  none")


@handle_errors
def status(
    druid: Annotated[str, typer.Argument(help="The Druid (kubedb.com/v1alpha2).", show_default=False)],
    output: OutputOpt = None, namespace: NamespaceOpt = None, context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """A Druid's phase, TLS, issuer, certificates (serial, issuer DN, notAfter), what each pod serves, and its ops
    history."""
    conn = open_target(namespace, context, kubeconfig)
    data = collect(conn, druid)
    if output:
        emit(data, output)
    else:
        render(data)

