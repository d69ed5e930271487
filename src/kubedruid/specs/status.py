"""A Druid's status conditions and the phase KubeDB derives from them (spec §1.6). Pure."""

from __future__ import annotations

from kubedruid.kube.conditions import get_condition, set_condition

PROVISIONING_STARTED = "ProvisioningStarted"
DEPENDENCY_READY = "DatabaseDependencyReady"
REPLICA_READY = "ReplicaReady"
ACCEPTING_CONNECTION = "AcceptingConnection"
READY = "Ready"
PROVISIONED = "Provisioned"
PAUSED = "Paused"
HALTED = "Halted"
HEALTH_CHECK_PAUSED = "HealthCheckPaused"
DATA_RESTORE_STARTED = "DataRestoreStarted"
DATA_RESTORED = "DataRestored"
# Why provisioning cannot go on (missing Secret, unknown version, missing Issuer, ...); removed once it can.
INPUT_VALID = "InputValid"
# The Ready condition's reason while every replica is ready but some pods run an older PetSet template (an op that
# failed mid-roll, a spec change not yet rolled out): the Druid serves, on two configurations.
PODS_ON_OLD_REVISION = "PodsOnOldRevision"
# AcceptingConnection's reason while the operator's own health check (spec.healthChecker) finds Druid not answering
# through its query Services, whatever the pods' readiness says (controllers/health.py).
NOT_ANSWERING = "DruidNotAnswering"


def _status(conditions, type_) -> str | None:
    c = get_condition(conditions, type_)
    return c.get("status") if c else None


def phase(conditions: list[dict] | None) -> str:
    """KubeDB's pkg/phase: Paused does not influence the phase."""
    if _status(conditions, HEALTH_CHECK_PAUSED) == "True":
        return "Unknown"
    result = "Provisioning"
    if _status(conditions, HALTED) == "True":
        return "Halted"
    if _status(conditions, DATA_RESTORE_STARTED) == "True" and _status(conditions, DATA_RESTORED) is None:
        return "DataRestoring"
    if _status(conditions, DATA_RESTORED) == "False":
        return "NotReady"
    if _status(conditions, PROVISIONED) == "True":
        if _status(conditions, ACCEPTING_CONNECTION) == "False":
            return "NotReady"
        if _status(conditions, REPLICA_READY) == "False" or _status(conditions, READY) == "False":
            return "Critical"
        if _status(conditions, READY) == "True":
            return "Ready"
    return result


def serving_on_old_revision(conditions: list[dict] | None) -> bool:
    """Every replica ready and accepting, not Ready only because some pods run an older revision: what an
    `apply: IfReady` op may start on (a roll is what brings those pods to the current revision)."""
    ready = get_condition(conditions, READY) or {}
    return (_status(conditions, REPLICA_READY) == "True" and _status(conditions, ACCEPTING_CONNECTION) == "True"
            and ready.get("status") == "False" and ready.get("reason") == PODS_ON_OLD_REVISION)


def health_conditions(conditions: list[dict] | None, generation: int, *, replicas_ready: bool,
                      accepting: bool, namespace: str, name: str,
                      outdated: dict[str, tuple[int, int]] | None = None,
                      not_answering: str | None = None) -> list[dict]:
    """ReplicaReady, AcceptingConnection, Ready and (once) Provisioned from what the provisioner observed.
    `outdated`: node type -> (pods on an older revision, replicas), for the node types that have any.
    `not_answering`: what the operator's health check found failing, if it did."""
    c = set_condition(conditions, REPLICA_READY, "True" if replicas_ready else "False",
                      "AllReplicasReady" if replicas_ready else "ReplicasNotReady",
                      "All desired replicas are ready." if replicas_ready else "Not all replicas are ready.",
                      generation)
    if accepting and not_answering:
        accepting = False
        c = set_condition(c, ACCEPTING_CONNECTION, "False", NOT_ANSWERING,
                          f"The Druid: {namespace}/{name} is not accepting client requests: {not_answering}",
                          generation)
    else:
        c = set_condition(c, ACCEPTING_CONNECTION, "True" if accepting else "False",
                          "DatabaseAcceptingConnectionRequest" if accepting
                          else "DatabaseNotAcceptingConnectionRequest",
                          f"The Druid: {namespace}/{name} is {'' if accepting else 'not '}accepting client requests",
                          generation)
    serving = replicas_ready and accepting
    if serving and outdated:
        pods = ", ".join(f"{old} of {want} {node}" for node, (old, want) in sorted(outdated.items()))
        c = set_condition(c, READY, "False", PODS_ON_OLD_REVISION,
                          f"The Druid: {namespace}/{name} is not ready: pods run an older configuration ({pods}); "
                          "an op that restarts them (e.g. a Restart DruidOpsRequest) brings them to the current one.",
                          generation)
    else:
        c = set_condition(c, READY, "True" if serving else "False",
                          "ReadinessCheckSucceeded" if serving else "ReadinessCheckFailed",
                          f"The Druid: {namespace}/{name} is {'' if serving else 'not '}ready.", generation)
    if serving and _status(c, PROVISIONED) != "True":
        c = set_condition(c, PROVISIONED, "True", "DatabaseSuccessfullyProvisioned",
                          f"The Druid: {namespace}/{name} is successfully provisioned.", generation)
    return c
