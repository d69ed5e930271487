"""The `kubedruid` command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from kubedruid.controllers.ops.plan import CLIENT_SWITCH_GRACE_S

app = typer.Typer(help="Run Apache Druid on Kubernetes with safe TLS changes.", no_args_is_help=True)
dev = typer.Typer(help="The local control plane (built from Go modules, run as loopback processes).",
                  no_args_is_help=True)
app.add_typer(dev, name="dev")
operator = typer.Typer(help="The kubedruid operator.", no_args_is_help=True)
app.add_typer(operator, name="operator")
err = Console(stderr=True)

DirOption = typer.Option(None, "--dir", help="State and log directory (default: $KUBEDRUID_DEV_DIR or "
                                             "~/.local/state/kubedruid/dev).")


def _state_dir(path: Optional[Path]) -> Path:
    from kubedruid.devcluster.layout import default_state_dir

    return (path or default_state_dir()).resolve()


@dev.command("up")
def dev_up(
    dir: Optional[Path] = DirOption,
    pod_ready_delay_ms: Optional[int] = typer.Option(
        None, help="How long kwok waits before a new pod is Ready (default 1000, kept across runs)."),
    real_node: bool = typer.Option(
        False, "--real-node", help="One real node (kubelet, containerd, CNI, kube-proxy, CoreDNS; pods really "
                                   "run, from locally built images) instead of kwok's fake nodes. Needs root."),
) -> None:
    """Build (first time only) and start the plane; print `export` lines for `eval "$(kubedruid dev up)"`."""
    from kubedruid.devcluster import plane

    try:
        from kubedruid.devcluster.install import install_kubedruid

        layout = plane.up(_state_dir(dir), pod_ready_delay_ms, extra_setup=install_kubedruid, real_node=real_node)
    except (plane.ComponentError, RuntimeError) as e:
        typer.echo(f"error: {e}", err=True)  # plain text: paths in the message must not be wrapped
        raise typer.Exit(1)
    from kubedruid.devcluster.binaries import build

    k8s, helm = build("k8s", "helm")
    for line in plane.exports(layout, k8s, [helm]):
        print(line)


@dev.command("check-node")
def dev_check_node() -> None:
    """Say whether this machine can run `dev up --real-node` (exit 1 and what is missing if not)."""
    from kubedruid.devcluster.node import missing_prerequisites

    missing = missing_prerequisites()
    if missing:
        typer.echo("a real node cannot run here; missing: " + "; ".join(missing), err=True)
        raise typer.Exit(1)
    err.print("this machine can run a real node")


@dev.command("down")
def dev_down(dir: Optional[Path] = DirOption) -> None:
    """Stop every process of the plane (its state stays for the next `up`)."""
    from kubedruid.devcluster import plane

    stopped = plane.down(_state_dir(dir))
    err.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@dev.command("status")
def dev_status(dir: Optional[Path] = DirOption) -> None:
    """Say what runs. Exit code 0 only when every component is running and healthy."""
    from kubedruid.devcluster import plane

    rows = plane.status(_state_dir(dir))
    table = Table("component", "pid", "state")
    for r in rows:
        state = "[green]healthy[/green]" if r.healthy else ("[yellow]unhealthy[/yellow]" if r.pid else "[red]stopped[/red]")
        table.add_row(r.name, str(r.pid or "-"), state)
    Console().print(table)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@operator.command("run")
def operator_run(
    kubeconfig: Optional[Path] = typer.Option(None, envvar="KUBECONFIG", help="Kubeconfig (default: in-cluster)."),
    webhook_addr: str = typer.Option("127.0.0.1", help="Address the admission webhook server listens on."),
    webhook_port: int = typer.Option(9443, help="Port of the admission webhook server (0: no webhook)."),
    webhook_host: Optional[str] = typer.Option(None, help="Name the apiserver calls the webhook by (in a cluster: "
                                                          "the operator's Service); default: --webhook-addr."),
    webhook_cert_dir: Optional[Path] = typer.Option(
        None, help="Serve the webhook with tls.crt/tls.key from this directory (a mounted cert-manager Secret, "
                   "re-read when renewed) and register its ca.crt; default: a CA of this process's own."),
    webhook_service: Optional[str] = typer.Option(
        None, help="Register the webhook by this Service reference, NAMESPACE/NAME[:PORT] (port 443 by default), "
                   "instead of by URL."),
    probe_addr: str = typer.Option("127.0.0.1", help="Address of /healthz, /readyz and /metrics."),
    probe_port: int = typer.Option(9808, help="Port of /healthz, /readyz and /metrics (0: none)."),
    leader_elect: bool = typer.Option(False, help="Act only while holding the kubedruid-operator Lease."),
    lease_namespace: str = typer.Option("default", envvar="POD_NAMESPACE", help="Namespace of the Lease."),
    druid_health_check: Optional[bool] = typer.Option(
        None, help="Check each Druid's /status/health through its query Services every "
                   "spec.healthChecker.periodSeconds (AcceptingConnection False after failureThreshold failures). "
                   "Default: on in a cluster, off with a kubeconfig (Service addresses are seldom reachable from "
                   "outside a cluster)."),
    client_switch_grace: float = typer.Option(
        CLIENT_SWITCH_GRACE_S, min=0,
        help="Seconds clients get to follow a Druid's Services to their new ports before an op's next roll closes the "
             "old ones (ReconfigureTLS add and remove: the ClientsFollowed step). Raise it for clients that re-read a "
             "Service's ports slowly."),
    log_format: str = typer.Option("text", help="text, or json (one object per line)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the controllers (provisioner, PetSet, ops-manager, health checks) against the cluster until stopped."""
    import asyncio
    import logging
    import os

    from kubedruid.controllers import operator as op
    from kubedruid.logs import configure_logging

    configure_logging(log_format, logging.DEBUG if verbose else logging.INFO)
    try:
        service = op.admission.WebhookService.parse(webhook_service) if webhook_service else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--webhook-service")
    if webhook_cert_dir is not None:
        try:
            op.admission.mounted_certificate(webhook_cert_dir)
        except FileNotFoundError as error:
            raise typer.BadParameter(str(error), param_hint="--webhook-cert-dir")
    if kubeconfig:
        os.environ["KUBECONFIG"] = str(kubeconfig)  # kopf's own login reads the same file
    asyncio.run(op.run(str(kubeconfig) if kubeconfig else None, webhook_addr, webhook_port or None, probe_addr,
                       probe_port or None, leader_elect, lease_namespace, webhook_host=webhook_host,
                       druid_health_check=druid_health_check, webhook_cert_dir=webhook_cert_dir,
                       webhook_service=service, client_switch_grace_s=client_switch_grace))


from kubedruid.cli.commands import register as _register_commands  # noqa: E402  (tls, status, ops)
_register_commands(app)


def main() -> None:
    app()
