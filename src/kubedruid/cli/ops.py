"""`kubedruid ops describe NAME`: a DruidOpsRequest's step timeline (its conditions, oldest transition first) and
its events (by eventTime)."""

from __future__ import annotations

from typing import Annotated

import typer
from lightkube.resources.core_v1 import Event
from rich.table import Table
from rich.text import Text

from .common import (
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    OutputOpt,
    conditions,
    get_ops,
    open_target,
    operation,
    phase,
)
from .kubeconn import Connection
from .output import age, console, emit, handle_errors, human_duration, iso, parse_time

app = typer.Typer(help="DruidOpsRequests.", no_args_is_help=True)

STYLES = {"Successful": "green", "Failed": "red", "Progressing": "cyan", "Skipped": "yellow", "Pending": ""}


# Steps whose condition is recorded before their sub-steps' and set True after the last of them (KubeDB's order).
SUB_STEPS = {"CertificateSynced": ("GetCertificate", "CheckReadyCondition", "IssuingCondition"),
             "RestartNodes": ("GetPod--", "EvictPod--", "CheckPodRunning--")}


def timeline(ops: dict) -> list[dict]:
    """The conditions in the order they last changed. Times have a one-second resolution: within a second the
    recorded order decides, except that a finished parent step (CertificateSynced, RestartNodes) comes after its
    sub-steps."""
    conds = conditions(ops)
    rank: dict[int, float] = {}
    for i, c in enumerate(conds):
        rank[i] = float(i)
        subs = SUB_STEPS.get(c.get("type"))
        if subs and c.get("status") == "True":
            children = [j for j, d in enumerate(conds) if str(d.get("type", "")).startswith(subs)]
            if children:
                rank[i] = max(children) + 0.5
    order = sorted(range(len(conds)), key=lambda i: (conds[i].get("lastTransitionTime") or "", rank[i]))
    conds = [(i, conds[i]) for i in order]
    return [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason") or "",
             "message": c.get("message") or "", "time": c.get("lastTransitionTime")} for _, c in conds]


def _event_time(e: Event):
    return e.eventTime or e.firstTimestamp or e.lastTimestamp or e.metadata.creationTimestamp


def events_of(conn: Connection, ops: dict) -> list[dict]:
    name = ops["metadata"]["name"]
    uid = ops["metadata"].get("uid")
    found = [e for e in conn.client.list(Event, namespace=conn.namespace,
                                         fields={"involvedObject.name": name,
                                                 "involvedObject.kind": "DruidOpsRequest"})
             if not uid or not e.involvedObject.uid or e.involvedObject.uid == uid]
    found.sort(key=lambda e: (parse_time(_event_time(e)) or parse_time("1970-01-01T00:00:00Z")))
    return [{"time": (parse_time(_event_time(e)).isoformat().replace("+00:00", "Z") if _event_time(e) else None),
             "type": e.type, "reason": e.reason, "message": e.message, "count": e.count or 1,
             "source": (e.source.component if e.source else None) or e.reportingController}
            for e in found]


def collect(conn: Connection, name: str) -> dict:
    ops = get_ops(conn, name)
    spec = ops.get("spec") or {}
    return {"name": name, "namespace": conn.namespace,
            "druid": (spec.get("databaseRef") or {}).get("name"), "type": spec.get("type"),
            "operation": operation(ops) or None, "apply": spec.get("apply") or "IfReady",
            "timeout": spec.get("timeout"), "phase": phase(ops) or "Pending",
            "created": ops["metadata"].get("creationTimestamp"),
            "conditions": timeline(ops), "events": events_of(conn, ops)}


def _when(value, start) -> str:
    t = parse_time(value)
    if not t:
        return "-"
    clock = t.strftime("%H:%M:%S")
    return f"{clock} (+{human_duration((t - start).total_seconds())})" if start else clock


def render(data: dict) -> None:
    out = console()
    start = parse_time(data["created"])
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("DruidOpsRequest", f"{data['namespace']}/{data['name']}")
    head.add_row("Druid", data["druid"] or "-")
    head.add_row("type", data["type"] + (f" ({data['operation']})" if data["operation"] else ""))
    head.add_row("phase", Text(data["phase"], style=STYLES.get(data["phase"], "")))
    head.add_row("apply / timeout", f"{data['apply']} / {data['timeout'] or 'default (10m)'}")
    head.add_row("created", f"{iso(data['created']) or '-'} ({age(data['created'])} ago; times below are UTC)")
    out.print(head)

    out.print()
    if data["conditions"]:
        table = Table(title="Timeline", title_justify="left", title_style="bold")
        for col, kw in (("step", {}), ("status", {}), ("reason", {}), ("message", {"overflow": "fold"}),
                        ("time", {"no_wrap": True})):
            table.add_column(col, **kw)
        for c in data["conditions"]:
            style = "red" if c["reason"] == "Failed" or c["type"] == "Failed" else ""
            table.add_row(Text(c["type"] or "", style=style), c["status"] or "", c["reason"], c["message"],
                          _when(c["time"], start))
        out.print(table)
    else:
        out.print("[bold]Timeline[/bold]  no step yet (the request is waiting for the operator)")

    out.print()
    if data["events"]:
        table = Table(title="Events", title_justify="left", title_style="bold")
        for col, kw in (("time", {"no_wrap": True}), ("type", {}), ("reason", {"overflow": "fold"}),
                        ("message", {"overflow": "fold"})):
            table.add_column(col, **kw)
        for e in data["events"]:
            # The per-step events of KubeDB carry the message as their reason too; once is enough to read.
            reason = Text("(= message)", style="dim") if e["reason"] == e["message"] else Text(e["reason"] or "")
            kind = Text(e["type"] or "", style="yellow" if e["type"] == "Warning" else "")
            table.add_row(_when(e["time"], start), kind, reason,
                          (e["message"] or "") + (f" (x{e['count']})" if e["count"] > 1 else ""))
        out.print(table)
    else:
        out.print("[bold]Events[/bold]  none")


@app.command("describe")
@handle_errors
def describe(
    name: Annotated[str, typer.Argument(help="The DruidOpsRequest.", show_default=False)],
    output: OutputOpt = None, namespace: NamespaceOpt = None, context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """A request's step timeline (condition, status, reason, message, time) and its events, oldest first."""
    conn = open_target(namespace, context, kubeconfig)
    data = collect(conn, name)
    if output:
        emit(data, output)
    else:
        render(data)
