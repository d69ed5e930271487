"""Ops as plans: which steps an ops request runs, what each records, and the queueing rules. Pure.

A plan is a list of step names. Each step records its progress as a condition on the DruidOpsRequest (KubeDB's
condition types, spec §3.5), so that a re-run after a crash skips what is done. The executor (manager.py) runs
the first step that is not done; a step either finishes, waits for an event, or fails.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from kubedruid.druid.nodes import RESTART_ORDER

# Step names double as the condition types that record them.
CERTIFICATE_SYNCED = "CertificateSynced"
ISSUE_CERTIFICATES = "IssueCertificatesSucceeded"  # rotate: re-issue requested and done (KubeDB's guard)
UPDATE_PETSETS = "UpdatePetSets"
RESTART_NODES = "RestartNodes"
REMOVE_TLS_OBJECTS = "RemoveTLSObjects"  # remove: no condition in KubeDB; idempotent deletes
SUCCESSFUL = "Successful"

PLANS: dict[str, tuple[str, ...]] = {
    # add (a Druid without TLS) and update (new issuer or certificate specs) run the same steps.
    "update": (CERTIFICATE_SYNCED, UPDATE_PETSETS, RESTART_NODES),
    "rotate": (ISSUE_CERTIFICATES, CERTIFICATE_SYNCED, UPDATE_PETSETS, RESTART_NODES),
    # Pods keep using the server-certificate Secret until restarted, so TLS objects go only after the restart.
    "remove": (UPDATE_PETSETS, RESTART_NODES, REMOVE_TLS_OBJECTS),
    "restart": (RESTART_NODES,),
}

STEP_CONDITIONS = {
    CERTIFICATE_SYNCED: ("CertificateSynced", "Successfully synced all certificates"),
    ISSUE_CERTIFICATES: ("IssueCertificatesSucceeded", "Successfully issued all certificates"),
    UPDATE_PETSETS: ("UpdatePetSets", "successfully reconciled the Druid with tls configuration"),
    RESTART_NODES: ("RestartNodes", "Successfully restarted all nodes"),
}

# (first condition type/reason, its message, the closing message) per op type.
OP_MESSAGES = {
    "ReconfigureTLS": ("ReconfigureTLS", "Druid ops-request has started to reconfigure tls for druid nodes",
                       "Successfully completed reconfigureTLS for druid."),
    "Restart": ("Restart", "Druid ops-request has started to restart druid nodes",
                "Successfully Restarted Druid nodes"),
}
SUPPORTED_TYPES = tuple(OP_MESSAGES)

DEFAULT_STEP_TIMEOUT_S = 600.0  # KubeDB: 120 retries x 5 s
RUNNING = ("Pending", "Progressing")
FINISHED = ("Successful", "Failed", "Skipped", "Denied")


def op_kind(ops: dict) -> str:
    """update (adds TLS to a Druid without) | rotate | remove | restart."""
    spec = ops["spec"]
    if spec["type"] == "Restart":
        return "restart"
    tls = spec.get("tls") or {}
    if tls.get("remove"):
        return "remove"
    if tls.get("rotateCertificates"):
        return "rotate"
    return "update"  # also "add TLS": the same steps


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float:
    """Seconds of a Go duration ("5m", "1h30m", "90s"); the default step timeout when empty."""
    if not text:
        return DEFAULT_STEP_TIMEOUT_S
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def target_spec(druid_spec: dict, ops: dict) -> dict:
    """The Druid spec an op leads to (KubeDB's dbCopy): deterministic, so a re-run computes the same target."""
    spec = copy.deepcopy(druid_spec)
    tls_req = ops["spec"].get("tls") or {}
    kind = op_kind(ops)
    if ops["spec"]["type"] != "ReconfigureTLS" or kind == "rotate":
        return spec
    if kind == "remove":
        spec["enableSSL"] = False
        spec.pop("tls", None)
        spec.pop("keystoreCredSecret", None)
        return spec
    tls = dict(spec.get("tls") or {})
    if tls_req.get("issuerRef") is not None:
        tls["issuerRef"] = copy.deepcopy(tls_req["issuerRef"])
    if tls_req.get("certificates") is not None:
        tls["certificates"] = copy.deepcopy(tls_req["certificates"])
    spec["tls"] = tls
    spec["enableSSL"] = True
    return spec


def restart_pods(db: str, replicas_by_role: dict[str, int]) -> list[str]:
    """Pods in Druid's restart order: historicals -> middleManagers -> brokers -> routers -> overlords ->
    coordinators, ordinal ascending within a node type."""
    out = []
    for node in RESTART_ORDER:
        for i in range(replicas_by_role.get(node.key, 0)):
            out.append(f"{db}-{node.petset_suffix}-{i}")
    return out


def pod_condition_types(pod: str) -> tuple[str, str, str]:
    return f"GetPod--{pod}", f"EvictPod--{pod}", f"CheckPodRunning--{pod}"


def pod_message(step: str, pod: str, status: str = "True", uid: str | None = None) -> str:
    msg = f"{step}; ConditionStatus:{status}; PodName:{pod}"
    return f"{msg}; PodUID:{uid}" if uid else msg


def recorded_uid(message: str | None) -> str | None:
    m = re.search(r"PodUID:([0-9a-f-]+)", message or "")
    return m.group(1) if m else None


@dataclass(frozen=True)
class QueueDecision:
    run: str | None  # the op to run now (its name), if any
    skip: dict[str, str]  # op name -> the newer op that replaces it
    waiting: list[str]  # pending ops that wait


def _created(o: dict) -> tuple:
    # KubeDB sorts by creationTimestamp ascending, ties by name descending.
    name = o["metadata"]["name"]
    return (o["metadata"].get("creationTimestamp") or "", tuple(-ord(ch) for ch in name))


def queue(ops_for_db: list[dict]) -> QueueDecision:
    """KubeDB's serialization for one database: a Progressing op keeps running; among pending ones, all but the
    newest of each type are skipped, then the oldest remaining runs."""
    phase = lambda o: (o.get("status") or {}).get("phase") or ""  # noqa: E731
    progressing = [o for o in ops_for_db if phase(o) == "Progressing"]
    pending = sorted((o for o in ops_for_db if phase(o) in ("", "Pending")), key=_created)
    newest_by_type: dict[str, dict] = {}
    for o in pending:
        newest_by_type[o["spec"]["type"]] = o  # sorted ascending: the last one wins
    skip = {o["metadata"]["name"]: newest_by_type[o["spec"]["type"]]["metadata"]["name"]
            for o in pending if newest_by_type[o["spec"]["type"]] is not o}
    remaining = [o for o in pending if o["metadata"]["name"] not in skip]
    if progressing:
        return QueueDecision(progressing[0]["metadata"]["name"], skip, [o["metadata"]["name"] for o in remaining])
    run = remaining[0]["metadata"]["name"] if remaining else None
    return QueueDecision(run, skip, [o["metadata"]["name"] for o in remaining[1:]])


def pause_message(ops_name: str) -> str:
    """The Paused condition's message on the Druid (KubeDB's wording); it names the op that holds the pause."""
    return f"DruidOpsRequest {ops_name} is in process"


def paused_by(message: str | None) -> str | None:
    prefix, suffix = "DruidOpsRequest ", " is in process"
    msg = message or ""
    return msg[len(prefix):-len(suffix)] if msg.startswith(prefix) and msg.endswith(suffix) else None
