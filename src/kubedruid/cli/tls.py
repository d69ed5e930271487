"""`kubedruid tls add|update|rotate|remove DRUID`: one ReconfigureTLS DruidOpsRequest, checked before it is created,
optionally followed until it is finished (`--wait`)."""

from __future__ import annotations

import enum
import re
import secrets
from typing import Annotated, Optional

import typer
from lightkube import codecs
from lightkube.core.exceptions import ApiError

from kubedruid.api.durations import parse_duration
from kubedruid.druid.tls import TLSMode
from kubedruid.specs.names import TLS_MODE_ANNOTATION

from . import progress
from .common import (
    OPS_API_VERSION,
    ClusterIssuer,
    ContextOpt,
    Issuer,
    KubeconfigOpt,
    NamespaceOpt,
    OutputOpt,
    Certificate,
    DruidVersion,
    Ops,
    get_druid,
    get_or_none,
    open_target,
    tls_enabled,
)
from .kubeconn import Connection
from .output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CliError,
    OutputFormat,
    api_message,
    console,
    emit,
    handle_errors,
    human_duration,
    one_line,
)

app = typer.Typer(help="Add, change, rotate or remove a Druid's TLS (a ReconfigureTLS DruidOpsRequest).",
                  no_args_is_help=True)

# Kubernetes' random-suffix alphabet (no vowels, no look-alikes), as in generateName.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class IssuerKind(str, enum.Enum):
    Issuer = "Issuer"
    ClusterIssuer = "ClusterIssuer"


class Apply(str, enum.Enum):
    IfReady = "IfReady"
    Always = "Always"


DruidArg = Annotated[str, typer.Argument(help="The Druid (kubedb.com/v1alpha2) to change.", show_default=False)]
IssuerOpt = Annotated[Optional[str], typer.Option(
    "--issuer", help="The cert-manager issuer that signs the certificates (required).", show_default=False)]
IssuerKindOpt = Annotated[IssuerKind, typer.Option(
    "--issuer-kind", help="Issuer (in the Druid's namespace) or ClusterIssuer.")]
TimeoutOpt = Annotated[Optional[str], typer.Option(
    "--timeout", help="spec.timeout: how long each step may take, a Go duration such as 5m or 90s "
                      "(default: the operator's, 10m).", show_default=False)]
ApplyOpt = Annotated[Apply, typer.Option(
    "--apply", help="IfReady: start when the Druid is Ready; Always: start on any provisioned Druid.")]
NameOpt = Annotated[Optional[str], typer.Option(
    "--name", help="The request's name (default: <druid>-tls-<op>-<random>).", show_default=False)]
WaitOpt = Annotated[bool, typer.Option(
    "--wait", help="Follow the request until it is finished; exit 1 unless it is Successful.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Have the apiserver validate and admit the request without storing it, and show what it "
                      "would do (as `tls plan`); nothing changes.")]


def generated_name(druid: str, op: str) -> str:
    return f"{druid}-tls-{op}-{''.join(secrets.choice(_ALPHABET) for _ in range(5))}"


def request_body(op: str, druid: str, name: str, namespace: str, issuer: str | None, issuer_kind: IssuerKind,
                 timeout: str | None, apply: Apply) -> dict:
    if op in ("add", "update"):
        tls: dict = {"issuerRef": {"apiGroup": "cert-manager.io", "kind": issuer_kind.value, "name": issuer}}
    elif op == "rotate":
        tls = {"rotateCertificates": True}
    else:
        tls = {"remove": True}
    spec: dict = {"type": "ReconfigureTLS", "databaseRef": {"name": druid}, "tls": tls, "apply": apply.value}
    if timeout:
        spec["timeout"] = timeout
    return {"apiVersion": OPS_API_VERSION, "kind": "DruidOpsRequest",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _check_input(op: str, issuer: str | None, timeout: str | None, name: str | None) -> None:
    """What can be judged without the cluster."""
    if op in ("add", "update") and not issuer:
        raise CliError(f"tls {op} needs --issuer NAME (a cert-manager Issuer or, with --issuer-kind ClusterIssuer, "
                       "a ClusterIssuer)", EXIT_BAD_INPUT)
    if timeout is not None:
        try:
            if parse_duration(timeout) <= 0:
                raise ValueError
        except ValueError:
            raise CliError(f"--timeout {timeout!r} is not a positive Go duration (such as 5m, 90s, 1h30m)",
                           EXIT_BAD_INPUT) from None
    if name is not None and (len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
        raise CliError(f"--name {name!r} is not a valid object name (lower-case letters, digits, '-' and '.')",
                       EXIT_BAD_INPUT)


def _check_cluster(conn: Connection, op: str, druid_name: str, issuer: str | None, issuer_kind: IssuerKind) -> None:
    """What must hold in the cluster before a request is worth creating."""
    ns = conn.namespace
    druid = get_druid(conn, druid_name)
    if druid["metadata"].get("deletionTimestamp"):
        raise CliError(f"Druid {ns}/{druid_name} is being deleted", EXIT_BAD_INPUT)
    partial = (druid["metadata"].get("annotations") or {}).get(TLS_MODE_ANNOTATION)
    has_tls = tls_enabled(druid) and partial in (None, TLSMode.TLS_ONLY.value)
    if op == "add" and has_tls:
        raise CliError(f"Druid {ns}/{druid_name} already has TLS; to change its issuer use "
                       f"`tls update {druid_name} --issuer NAME`, to renew its certificates `tls rotate {druid_name}`",
                       EXIT_BAD_INPUT)
    if op != "add" and not tls_enabled(druid):
        hint = f"; to add it use `tls add {druid_name} --issuer NAME`"
        raise CliError(f"Druid {ns}/{druid_name} has no TLS (spec.enableSSL is not true){hint}", EXIT_BAD_INPUT)
    if op in ("add", "update"):
        if issuer_kind == IssuerKind.Issuer:
            if get_or_none(conn, Issuer, issuer, ns) is None:
                raise CliError(f"Issuer {ns}/{issuer} not found (for a ClusterIssuer add --issuer-kind ClusterIssuer)",
                               EXIT_BAD_INPUT)
        elif get_or_none(conn, ClusterIssuer, issuer) is None:
            raise CliError(f"ClusterIssuer {issuer} not found", EXIT_BAD_INPUT)


def _create(conn: Connection, body: dict, dry_run: bool = False) -> dict:
    name = body["metadata"]["name"]
    try:
        created = conn.client.create(codecs.from_dict(body), namespace=conn.namespace, dry_run=dry_run)
    except ApiError as e:
        if e.status.code == 409:
            raise CliError(f"DruidOpsRequest {conn.namespace}/{name} already exists", EXIT_BAD_INPUT) from None
        if e.status.code in (400, 403, 422):  # refused by validation or admission: nothing was created
            raise CliError(f"the apiserver refused DruidOpsRequest {conn.namespace}/{name}: {api_message(e)}",
                           EXIT_BAD_INPUT) from None
        raise
    return created.to_dict() if hasattr(created, "to_dict") else dict(created)


def _shown(obj: dict) -> dict:
    """The request as `kubectl get -o` shows it: without managedFields."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def run(op: str, druid: str, *, issuer: str | None = None, issuer_kind: IssuerKind = IssuerKind.Issuer,
        timeout: str | None, apply: Apply, name: str | None, wait: bool, output: OutputFormat | None,
        namespace: str | None, context: str | None, kubeconfig, dry_run: bool = False) -> None:
    _check_input(op, issuer, timeout, name)
    conn = open_target(namespace, context, kubeconfig)
    _check_cluster(conn, op, druid, issuer, issuer_kind)
    body = request_body(op, druid, name or generated_name(druid, op), conn.namespace, issuer, issuer_kind,
                        timeout, apply)
    if dry_run:  # the apiserver validates and admits the request without storing it; then what it would do
        checked = _create(conn, body, dry_run=True)
        data = _planned(conn, body, get_druid(conn, druid))
        if output:
            emit({"request": _shown(checked), **data}, output)
            return
        console().print(f"druidopsrequest.ops.kubedb.com/{checked['metadata']['name']} created (server dry run)",
                        soft_wrap=True)
        _print_plan(data)
        return
    created = _create(conn, body)
    ops_name = created["metadata"]["name"]
    # With -o the data goes to stdout, so what a person reads goes to stderr.
    out = console(stderr=output is not None)
    out.print(f"druidopsrequest.ops.kubedb.com/{ops_name} created", soft_wrap=True)
    if not wait:
        if output:
            emit(_shown(created), output)
        return
    try:
        last, tracker, took = progress.follow(conn, ops_name, out, live=out.is_terminal)
    except KeyboardInterrupt:
        raise CliError(f"stopped waiting; DruidOpsRequest {conn.namespace}/{ops_name} goes on (follow it with "
                       f"`kubedruid ops describe {ops_name} -n {conn.namespace}`)", EXIT_INTERRUPTED) from None
    if output:
        emit(_shown(last), output)
    where = f"DruidOpsRequest {conn.namespace}/{ops_name}"
    if tracker.phase == "Successful":
        out.print(f"{where} Successful in {human_duration(took)}: {one_line(tracker.message)}", soft_wrap=True)
        return
    raise CliError(f"{where} {tracker.phase} after {human_duration(took)}: {tracker.message or 'no reason given'}",
                   EXIT_FAILED)


class PlanOp(str, enum.Enum):
    add = "add"
    update = "update"
    rotate = "rotate"
    remove = "remove"


@app.command("plan")
@handle_errors
def plan(op: Annotated[PlanOp, typer.Argument(help="The change to plan.")], druid: DruidArg,
         issuer: IssuerOpt = None, issuer_kind: IssuerKindOpt = IssuerKind.Issuer, output: OutputOpt = None,
         namespace: NamespaceOpt = None, context: ContextOpt = None, kubeconfig: KubeconfigOpt = None) -> None:
    """What an op would do to DRUID, phase by phase, changing nothing: the same plan the operator runs (its TLS mode
    in each phase, which pods restart in which order, how many rolls)."""
    conn = open_target(namespace, context, kubeconfig)
    body = request_body(op.value, druid, "plan", conn.namespace, issuer or "(issuer)", issuer_kind, None,
                        Apply.IfReady)
    data = _planned(conn, body, get_druid(conn, druid))
    if output:
        emit(data, output)
        return
    _print_plan(data)


def _planned(conn: Connection, body: dict, found: dict) -> dict:
    """What the request `body` would do to the Druid `found`: the plan the operator would choose (optypes.classify)
    phase by phase, the Certificates it changes, and an estimate from the Druid's observed restarts."""
    from kubedruid.api import Druid as DruidModel
    from kubedruid.api import apply_defaults
    from kubedruid.certs.changes import certificate_changes
    from kubedruid.controllers.ops.optypes import classify, rotate_certificates
    from kubedruid.controllers.ops.plan import estimate_s, expected_restarts, observed_restarts, outline, restart_pods
    from kubedruid.druid.tls import reloads
    from kubedruid.specs.cluster import certificates_owned_by, tls_mode_of

    druid = found["metadata"]["name"]
    mode = tls_mode_of(bool(found["spec"].get("enableSSL")), found["metadata"].get("annotations"))
    chosen = classify(body, mode)
    problem = chosen.preflight(body, found)
    catalog = get_or_none(conn, DruidVersion, found["spec"]["version"]) or {}
    version = (catalog.get("spec") or {}).get("version") or found["spec"]["version"]
    can_reload = reloads(version)
    db = apply_defaults(DruidModel.model_validate(found))
    pods = restart_pods(druid, {k: n.replicas for k, n in db.spec.topology.nodes().items()})
    certificates = []
    if not problem:
        uid = found["metadata"].get("uid") or ""
        target = apply_defaults(DruidModel.model_validate({**found, "spec": chosen.target(found["spec"], body)}))
        after = certificates_owned_by(target, uid) if target.spec.enableSSL else []
        names_ = {c["metadata"]["name"] for c in [*certificates_owned_by(db, uid), *after]}
        before = [c for c in (get_or_none(conn, Certificate, n, conn.namespace) for n in sorted(names_)) if c]
        certificates = certificate_changes(before, after, reissue=chosen is rotate_certificates.OP)
    past = [o.to_dict() if hasattr(o, "to_dict") else dict(o) for o in conn.client.list(Ops, namespace=conn.namespace)]
    expected = expected_restarts(pods, observed_restarts(past, druid))
    rolls = chosen.plan.rolls_when_reloading if can_reload else chosen.plan.rolls
    return {"druid": f"{conn.namespace}/{druid}", "op": chosen.kind, "what": chosen.what, "currentMode": mode.value,
            "druidVersion": version, "reloadsKeystore": can_reload,
            "rolls": {"thisDruid": rolls, "whenPodsReload": chosen.plan.rolls_when_reloading,
                      "atMost": chosen.plan.rolls},
            "refused": problem, "phases": outline(chosen.plan, pods, mode, can_reload), "certificates": certificates,
            "estimate": {"seconds": estimate_s(chosen.plan, pods, expected, can_reload),
                         "restartSeconds": {p: round(s, 1) for p, s in expected.items()}}}


def _print_plan(data: dict) -> None:
    from kubedruid.certs.changes import summary

    out = console()
    out.print(f"{data['op']} on Druid {data['druid']} (now {data['currentMode']}): {data['what']}", soft_wrap=True)
    if data["refused"]:
        out.print(f"[red]would fail before anything is paused:[/red] {data['refused']}", soft_wrap=True)
    for i, ph in enumerate(data["phases"], 1):
        restarts = ph["restarts"] if isinstance(ph["restarts"], str) else \
            (f"restarts {len(ph['restarts'])} pods: {', '.join(ph['restarts'])}" if ph["restarts"] else "no restart")
        when = f" (only if {ph['onlyIf']})" if ph.get("onlyIf") else ""
        out.print(f"{i}. {ph['phase']}{when} — mode {ph['tlsMode']}; {ph['does'] or ', '.join(ph['steps'])}; "
                  f"{restarts}", soft_wrap=True)
    for change in data["certificates"]:
        out.print(f"certificate {summary(change)}", soft_wrap=True)
    rolls = data["rolls"]
    how = "reloads its keystore" if data["reloadsKeystore"] else "cannot reload its keystore: pods restart instead"
    out.print(f"rolling restarts: {rolls['thisDruid']} (Druid {data['druidVersion']} {how}; "
              f"{rolls['whenPodsReload']} where pods reload, at most {rolls['atMost']})", soft_wrap=True)
    seconds = data["estimate"]["seconds"]
    out.print(f"estimate: {human_duration(seconds)}, from this Druid's observed restarts"
              if seconds is not None else "estimate: none yet (no restart of this Druid observed)", soft_wrap=True)


@app.command("add")
@handle_errors
def add(druid: DruidArg, issuer: IssuerOpt = None, issuer_kind: IssuerKindOpt = IssuerKind.Issuer,
        timeout: TimeoutOpt = None, apply: ApplyOpt = Apply.IfReady, name: NameOpt = None, wait: WaitOpt = False,
        dry_run: DryRunOpt = False, output: OutputOpt = None, namespace: NamespaceOpt = None,
        context: ContextOpt = None, kubeconfig: KubeconfigOpt = None) -> None:
    """Add TLS to a Druid that has none (or complete an add that stopped half-way): cert-manager certificates from
    --issuer, then three rolls (client trust, TLS beside plaintext, TLS only) with the Services moved between."""
    run("add", druid, issuer=issuer, issuer_kind=issuer_kind, timeout=timeout, apply=apply, name=name, wait=wait,
        output=output, namespace=namespace, context=context, kubeconfig=kubeconfig, dry_run=dry_run)


@app.command("update")
@handle_errors
def update(druid: DruidArg, issuer: IssuerOpt = None, issuer_kind: IssuerKindOpt = IssuerKind.Issuer,
           timeout: TimeoutOpt = None, apply: ApplyOpt = Apply.IfReady, name: NameOpt = None, wait: WaitOpt = False,
           dry_run: DryRunOpt = False, output: OutputOpt = None, namespace: NamespaceOpt = None,
           context: ContextOpt = None, kubeconfig: KubeconfigOpt = None) -> None:
    """Move a Druid's TLS to another issuer: every node trusts both CAs, certificates re-issued by --issuer and
    reloaded (restarted where Druid cannot reload), then the old CA dropped."""
    run("update", druid, issuer=issuer, issuer_kind=issuer_kind, timeout=timeout, apply=apply, name=name,
        wait=wait, output=output, namespace=namespace, context=context, kubeconfig=kubeconfig, dry_run=dry_run)


@app.command("rotate")
@handle_errors
def rotate(druid: DruidArg, timeout: TimeoutOpt = None, apply: ApplyOpt = Apply.IfReady, name: NameOpt = None,
           wait: WaitOpt = False, dry_run: DryRunOpt = False, output: OutputOpt = None,
           namespace: NamespaceOpt = None, context: ContextOpt = None, kubeconfig: KubeconfigOpt = None) -> None:
    """Re-issue a Druid's certificates (new serials, same issuer): reloaded by every node that can, the others
    restarted onto them."""
    run("rotate", druid, timeout=timeout, apply=apply, name=name, wait=wait, output=output, namespace=namespace,
        context=context, kubeconfig=kubeconfig, dry_run=dry_run)


@app.command("remove")
@handle_errors
def remove(druid: DruidArg, timeout: TimeoutOpt = None, apply: ApplyOpt = Apply.IfReady, name: NameOpt = None,
           wait: WaitOpt = False, dry_run: DryRunOpt = False, output: OutputOpt = None,
           namespace: NamespaceOpt = None, context: ContextOpt = None, kubeconfig: KubeconfigOpt = None) -> None:
    """Turn a Druid's TLS off in two rolls (plaintext beside TLS, then TLS off), then its certificates and Secrets
    deleted."""
    run("remove", druid, timeout=timeout, apply=apply, name=name, wait=wait, output=output, namespace=namespace,
        context=context, kubeconfig=kubeconfig, dry_run=dry_run)
