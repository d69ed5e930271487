"""What an ops plan is: phases, each a target TLS mode plus the steps that take the Druid there. Pure.

Every step records its progress as a condition on the DruidOpsRequest (KubeDB's condition types, spec §3.5), so a
re-run after a crash skips what is done. A step that recurs in a later phase (update the PetSets, restart the nodes)
has its conditions cleared when its phase completes, in the same status write that records the phase's own
condition: KubeDB's names stay, and the phase conditions beside them say how far the plan got.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import takewhile

from kubedruid.druid.nodes import RESTART_ORDER, NodeType
from kubedruid.druid.tls import TLSMode
from kubedruid.kube.conditions import parse_rfc3339

# Step names double as the condition types that record them.
CERTIFICATE_SYNCED = "CertificateSynced"
ISSUE_CERTIFICATES = "IssueCertificatesSucceeded"  # rotate: re-issue requested and done (KubeDB's guard)
TRUST_ISSUER_CA = "IssuerCATrusted"  # the new issuer's CA is in the CA bundle (reason: CAChanged or SameCA)
PRUNE_CA_BUNDLE = "CABundlePruned"  # the bundle holds only the CA of the certificates the pods serve
RELOAD_CERTIFICATES = "ServingNewCertificate"  # each pod reloaded (a handshake shows the new serial) or not
UPDATE_PETSETS = "UpdatePetSets"
RESTART_NODES = "RestartNodes"
FINISH = "Finish"  # the Druid's spec becomes the op's target and the mode annotation goes: idempotent, no condition
REMOVE_TLS_OBJECTS = "RemoveTLSObjects"  # remove: no condition in KubeDB; idempotent deletes
SETTLE_TLS_MODE = "SettleTLSMode"  # restart: client trust left by a removal goes with the roll; no condition
UPDATE_SERVICES = "UpdateServices"  # after a roll: the Services offer the new mode's ports; no condition
# Not a step of its own: RestartNodes records it before a roll's first Service closes a port (closes_service_ports).
CLIENTS_FOLLOW = "ClientsFollowed"  # after the Services moved: clients had CLIENT_SWITCH_GRACE_S to follow them
SUCCESSFUL = "Successful"
PLAN = "Plan"  # the plan an op runs (its reason): chosen once, when the op starts

# The conditions a step writes besides its own (certificate checks, one triple per pod).
CERTIFICATE_CHECKS = ("GetCertificate", "CheckReadyCondition", "IssuingCondition")
STEP_CONDITIONS = {
    CERTIFICATE_SYNCED: "Successfully synced all certificates",
    ISSUE_CERTIFICATES: "Successfully issued all certificates",
    UPDATE_PETSETS: "successfully reconciled the Druid with tls configuration",
    RESTART_NODES: "Successfully restarted all nodes",
}
# Steps that record nothing: each is idempotent and cheap, so a re-run simply repeats it.
UNRECORDED = (FINISH, REMOVE_TLS_OBJECTS, SETTLE_TLS_MODE, UPDATE_SERVICES)

DEFAULT_STEP_TIMEOUT_S = 600.0  # KubeDB: 120 retries x 5 s
# Between moving the Services to other ports and the roll that closes the old ones: a client that read the
# Service's ports just before the move (its connection pool, its next request) reaches the new port within this.
# Measured on the real node: the router Service lost its plaintext port 4 s after the move without it, and a
# client still on it got "No route to host".
CLIENT_SWITCH_GRACE_S = 10.0


@dataclass(frozen=True)
class Phase:
    """One stage of a plan. `name` is the condition that records it done (None for a plan's only stage, whose
    steps' own conditions say it all); `mode` is the TLS mode its UpdatePetSets step gives the Druid's pods and
    Services (None: unchanged)."""

    name: str | None
    steps: tuple[str, ...]
    mode: TLSMode | None = None
    message: str = ""
    # UpdatePetSets renders the op's target spec (its certificates are what the pods mount), or the Druid's
    # current one (a removal keeps the TLS material until its last roll; a CA change keeps the old issuer's
    # certificates until every node trusts the new CA).
    renders_target: bool = True
    # The phase runs only if this step's condition has this reason; otherwise it is recorded as not needed.
    only_if: tuple[str, str] | None = None
    # RestartNodes restarts only the pods that did not reload their keystore (ReloadPod--<pod> NotReloaded).
    restart_only_stale: bool = False

    @property
    def rolls(self) -> bool:
        return RESTART_NODES in self.steps


@dataclass(frozen=True)
class Plan:
    kind: str  # the op's kind (ops/optypes): the Plan condition's reason
    phases: tuple[Phase, ...]
    starts_from: TLSMode | None = None  # the mode a plan that changes modes starts from

    def mode_before(self, phase: Phase) -> TLSMode | None:
        """The mode the pods run in when `phase` starts (None: the plan changes no mode)."""
        mode = self.starts_from
        for p in self.phases:
            if p is phase:
                return mode
            mode = p.mode or mode
        raise ValueError(f"{phase.name} is not a phase of {self.kind}")

    def previous(self, phase: Phase) -> Phase | None:
        i = self.phases.index(phase)
        return self.phases[i - 1] if i else None

    def closes_service_ports(self, phase: Phase) -> bool:
        """Whether `phase`'s roll closes a port its Services offered. Each node type's Service then drops it just
        before the roll reaches that node type, and the first to drop it waits until clients have had the grace
        since the previous phase moved the Services (ClientsFollowed): the node types without a client Service,
        first in Druid's order, restart meanwhile."""
        modes = self.roll_modes(phase)
        return modes is not None and modes[0].service_schemes_during_roll_to(modes[1]) != modes[0].service_schemes

    def roll_modes(self, phase: Phase) -> tuple[TLSMode, TLSMode] | None:
        """(from, to) of a roll that changes the pods' mode; None for a phase that does not."""
        before = self.mode_before(phase)
        return (before, phase.mode) if phase.rolls and phase.mode is not None and before is not None else None

    def roll_service_schemes(self, phase: Phase, reached: NodeType | None) -> dict[str, tuple[bool, ...]] | None:
        """What each node type's Services offer during `phase`'s roll once it has reached node type `reached`
        (service_schemes_during_roll); None where the phase rolls in no other mode (the Druid's own)."""
        modes = self.roll_modes(phase)
        return service_schemes_during_roll(*modes, reached) if modes else None

    def recurring_after(self, index: int) -> set[str]:
        """Steps of phase `index` that a later phase runs again: their conditions are cleared when it completes."""
        later = {s for p in self.phases[index + 1:] for s in p.steps}
        return {s for s in self.phases[index].steps if s in later}

    @property
    def final_mode(self) -> TLSMode | None:
        modes = [p.mode for p in self.phases if p.mode is not None]
        return modes[-1] if modes else None

    @property
    def rolls(self) -> int:
        """Rolling restarts at most: when no pod can reload its keystore."""
        return sum(p.rolls for p in self.phases)

    @property
    def rolls_when_reloading(self) -> int:
        """Rolling restarts when every pod reloads its keystore."""
        return sum(p.rolls and not p.restart_only_stale for p in self.phases)

    def summary(self) -> str:
        """The Plan condition's message: the phases in order, and how many rolling restarts."""
        names_ = [p.name for p in self.phases if p.name]
        least, most = self.rolls_when_reloading, self.rolls
        count = f"{least}" if least == most else f"{least} to {most}"
        rolls = f"{count} rolling restart{'s' if most != 1 else ''}"
        return f"{' -> '.join(names_)} ({rolls})" if names_ else rolls


def outline(plan: Plan, pods: list[str], start_mode: TLSMode, reloads: bool = True) -> list[dict]:
    """What each phase of `plan` does to a Druid whose pods (in restart order) run in `start_mode`: for people
    (`kubedruid tls plan`), computed from the same plan the operator runs. `reloads`: whether the Druid's version
    reloads its keystore (else the phases that restart pods that did not reload restart them all)."""
    out, mode = [], start_mode
    for phase in plan.phases:
        mode = phase.mode or mode
        if not phase.rolls:
            restarts: list[str] | str = []
        elif phase.restart_only_stale and reloads:
            restarts = "only pods that did not reload"
        else:
            restarts = pods
        entry = {"phase": phase.name or "(steps)", "steps": list(phase.steps), "does": phase.message or None,
                 "tlsMode": mode.value, "restarts": restarts}
        if phase.only_if:
            entry["onlyIf"] = f"{phase.only_if[0]} is {phase.only_if[1]}"
        out.append(entry)
    return out


def service_schemes_during_roll(before: TLSMode, new: TLSMode,
                                 reached: NodeType | None) -> dict[str, tuple[bool, ...]]:
    """What each node type's Services offer (by key) while a roll moves pods from `before` to `new`: on the node
    types the roll has reached (Druid's restart order up to `reached`), the ports both modes serve; on the others,
    what they offered before, which all their pods still serve."""
    during = before.service_schemes_during_roll_to(new)
    passed = RESTART_ORDER[:RESTART_ORDER.index(reached) + 1] if reached else ()
    return {n.key: during if n in passed else before.service_schemes for n in RESTART_ORDER}


def node_type_of(pod: str) -> NodeType:
    """The node type of one of a Druid's pods (`<db>-<petset suffix>-<ordinal>`)."""
    suffix = pod.rsplit("-", 2)[1]
    return next(n for n in RESTART_ORDER if n.petset_suffix == suffix)


def clears(step: str, condition_type: str) -> bool:
    """Whether `condition_type` is one that `step` writes (its own, its certificate checks, its per-pod triples):
    what goes when the step is run again in a later phase."""
    if step in UNRECORDED:
        return False
    if condition_type == step:
        return True
    if step == CERTIFICATE_SYNCED:
        return condition_type in CERTIFICATE_CHECKS
    if step == RESTART_NODES:
        return condition_type.startswith(POD_CONDITION_PREFIXES)
    if step == RELOAD_CERTIFICATES:
        return condition_type.startswith(RELOAD_POD_PREFIX)
    return False


def restart_pods(db: str, replicas_by_role: dict[str, int]) -> list[str]:
    """Pods in Druid's restart order: historicals -> middleManagers -> brokers -> routers -> overlords ->
    coordinators, ordinal ascending within a node type."""
    out = []
    for node in RESTART_ORDER:
        for i in range(replicas_by_role.get(node.key, 0)):
            out.append(f"{db}-{node.petset_suffix}-{i}")
    return out


POD_CONDITION_PREFIXES = ("GetPod--", "EvictPod--", "CheckPodRunning--")
RELOAD_POD_PREFIX = "ReloadPod--"
RELOADED, NOT_RELOADED = "Reloaded", "NotReloaded"


def pod_condition_types(pod: str) -> tuple[str, str, str]:
    get, evict, check = POD_CONDITION_PREFIXES
    return f"{get}{pod}", f"{evict}{pod}", f"{check}{pod}"


def pod_message(step: str, pod: str, status: str = "True", uid: str | None = None) -> str:
    msg = f"{step}; ConditionStatus:{status}; PodName:{pod}"
    return f"{msg}; PodUID:{uid}" if uid else msg


def recorded_uid(message: str | None) -> str | None:
    m = re.search(r"PodUID:([0-9a-f-]+)", message or "")
    return m.group(1) if m else None


# What a phase costs besides its restarts, for the estimate (`kubedruid tls plan`): writing objects and waiting for
# endpoints and kube-proxy, measured at a few seconds a step on the real node.
FIXED_STEP_S = 3.0


def _seconds(t: str) -> float:
    return parse_rfc3339(t).timestamp()


def observed_restarts(requests: list[dict], druid: str) -> dict[str, list[float]]:
    """Seconds from each eviction to the replacement counted back (EvictPod -> CheckPodRunning, both True), per pod,
    over the Druid's past DruidOpsRequests (the conditions of each one's last roll)."""
    out: dict[str, list[float]] = {}
    for ops in requests:
        if ((ops.get("spec") or {}).get("databaseRef") or {}).get("name") != druid:
            continue
        conditions = {c["type"]: c for c in (ops.get("status") or {}).get("conditions") or []}
        for type_, evicted in conditions.items():
            _, evict, check = POD_CONDITION_PREFIXES
            if not type_.startswith(evict) or evicted.get("status") != "True":
                continue
            pod = type_[len(evict):]
            back = conditions.get(check + pod)
            if back and back.get("status") == "True" and evicted.get("lastTransitionTime") and \
                    back.get("lastTransitionTime"):
                took = _seconds(back["lastTransitionTime"]) - _seconds(evicted["lastTransitionTime"])
                if took >= 0:
                    out.setdefault(pod, []).append(took)
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def expected_restarts(pods: list[str], observed: dict[str, list[float]]) -> dict[str, float]:
    """Each pod's expected restart: the median of its own observed restarts, else of its PetSet's pods', else of
    every pod's; empty when nothing was ever observed."""
    every = [s for v in observed.values() for s in v]
    if not every:
        return {}
    out = {}
    for pod in pods:
        petset = pod.rsplit("-", 1)[0]
        peers = [s for p, v in observed.items() if p.rsplit("-", 1)[0] == petset for s in v]
        out[pod] = _median(observed.get(pod) or peers or every)
    return out


def estimate_s(plan: Plan, pods: list[str], expected: dict[str, float], reloads: bool = True) -> float | None:
    """The plan's wall time from the expected restarts: where the Druid reloads its keystore the restart-only-stale
    phases cost nothing, else they restart every pod. None when a phase restarts pods and no restart was ever
    observed."""
    total = 0.0
    for phase in plan.phases:
        total += FIXED_STEP_S * len(phase.steps)
        if phase.rolls and not (phase.restart_only_stale and reloads):
            if not expected:
                return None
            total += sum(expected.get(p, 0.0) for p in pods)
        if plan.closes_service_ports(phase):  # what is left of the grace when the roll reaches a client Service
            unseen = takewhile(lambda p: not node_type_of(p).has_primary_service, pods)
            total += max(0.0, CLIENT_SWITCH_GRACE_S - sum(expected.get(p, 0.0) for p in unseen))
    return round(total, 1)
