"""The steps of the ops plans. Each step is re-entrant: it reads what is already done from the op's conditions and
from the cluster, does the next thing, and returns Done, or Wait (for an event, or for the step's deadline)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from cryptography import x509
from lightkube.core.exceptions import ApiError

from kubedruid.api import Druid, apply_defaults
from kubedruid.certs import bundle
from kubedruid.certs.served import HandshakeFailed, served_certificate
from kubedruid.druid import tls
from kubedruid.druid.nodes import BY_KEY, HEALTH_PATH, HISTORICALS, NodeType
from kubedruid.druid.tls import TLSMode
from kubedruid.kube import conditions as cond
from kubedruid.kube import diff, forwarding
from kubedruid.kube.client import Kube
from kubedruid.specs import cluster, names, petset_pods

from ..provisioner import Provisioner
from . import plan as plans
from . import segments
from .optypes import OpType


log = logging.getLogger("kubedruid.ops")

RESYNC_S = 30.0


@dataclass
class Wait:
    after: float | None  # seconds until the step's deadline (the reconcile is re-run then), or None: an event will
    # The kinds of object whose events can end the wait before `after` (the Druid's and the op's own always do);
    # None: any. The others need not wake the op: a roll's own Secret and Service writes, cert-manager's status
    # updates while the op waits for a pod.
    on: frozenset[str] | None = None


POD_EVENTS = frozenset({"Pod"})  # a pod came back in service
ENDPOINT_EVENTS = frozenset({"EndpointSlice"})  # a Service's endpoints changed (a Ready pod became one)
CERTIFICATE_EVENTS = frozenset({"Certificate", "Secret"})  # cert-manager issued (a Certificate, its Secret)
NO_EVENTS = frozenset()  # only time tells (a grace, a poll of what no watch of ours sees)


class Fail(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step, self.message = step, message


@dataclass
class StepContext:
    kube: Kube  # reads the apiserver: what a step decides on
    informed: Kube  # reads the informers (the apiserver where they cannot answer): a roll's progress, decision 0031
    provisioner: Provisioner
    ops: dict
    druid: dict
    op: OpType
    phase: plans.Phase
    timeout_s: float
    event: Callable[..., Awaitable[None]]
    set_conditions: Callable[[list[dict]], Awaitable[dict]]
    client_switch_grace_s: float = plans.CLIENT_SWITCH_GRACE_S
    _unannounced: list[tuple[str, str]] = field(default_factory=list)  # events of noted conditions, until written

    @property
    def conditions(self) -> list[dict]:
        return (self.ops.get("status") or {}).get("conditions") or []

    def condition(self, type_: str) -> dict | None:
        return cond.get_condition(self.conditions, type_)

    def done(self, type_: str) -> bool:
        return cond.is_true(self.conditions, type_)

    def start(self, type_: str, message: str) -> None:
        """Notes that a step began (status False): its timeout counts from here."""
        if self.condition(type_) is None:
            self.note(type_, "False", message)

    async def record(self, type_: str, status: str, message: str, reason: str | None = None,
                     event: bool = False) -> None:
        """Sets a condition on the op now (and, when it turns True, an event with KubeDB's reason)."""
        await self.record_many([(type_, status, message, reason, event)])

    async def record_many(self, entries: list[tuple]) -> None:
        """Several conditions in one status write, with whatever was noted before: (type, status, message, reason or
        None, event?). For what must be in the op's status before the step acts (a pod's UID before its eviction)."""
        self.note_many(entries)
        await self.flush()

    def note(self, type_: str, status: str, message: str, reason: str | None = None, event: bool = False) -> None:
        self.note_many([(type_, status, message, reason, event)])

    def note_many(self, entries: list[tuple]) -> None:
        """Sets conditions that go out with the pass's next status write, or when the pass ends (flush): progress a
        re-run after a crash may repeat (each such step is idempotent), so it costs no request of its own. The
        condition's time is now's, whenever it is written."""
        new = self.conditions
        for type_, status, message, reason, event in entries:
            before = cond.get_condition(new, type_)
            reason = type_ if reason is None else reason
            new = cond.set_condition(new, type_, status, reason, message, self.ops["metadata"].get("generation"))
            if event and status == "True" and (before is None or before.get("status") != "True"):
                self.announce(reason or message, message)
        self.set_local_conditions(new)

    def announce(self, reason: str, message: str) -> None:
        """An event, posted once the conditions noted so far are written."""
        self._unannounced.append((reason, message))

    def set_local_conditions(self, conditions: list[dict]) -> None:
        if conditions != self.conditions:  # a copy: the manager's op stays what was last written
            self.ops = {**self.ops, "status": {**(self.ops.get("status") or {}), "conditions": conditions}}

    async def flush(self) -> None:
        """Writes the conditions noted since the last write (one status write, none if nothing changed), then
        their events."""
        self.ops = await self.set_conditions(self.conditions)
        events, self._unannounced = self._unannounced, []
        for reason, message in events:
            await self.event(self.ops, "Normal", reason, message)

    def deadline(self, type_: str) -> float:
        """Seconds left before the step recorded as `type_` (False since it started) times out."""
        c = self.condition(type_)
        started = c.get("lastTransitionTime") if c else None
        if not started:
            return self.timeout_s
        t0 = cond.parse_rfc3339(started)
        elapsed = (datetime.datetime.now(datetime.timezone.utc) - t0).total_seconds()
        return self.timeout_s - elapsed

    def wait_or_fail(self, type_: str, what: str, on: frozenset[str] | None = None) -> Wait:
        left = self.deadline(type_)
        if left <= 0:
            raise Fail(type_, f"{type_}: timed out after {self.timeout_s:g}s waiting for {what}")
        # Events wake the step; the deadline, or a resync at most every 30 s (a lost watch event), re-runs it anyway.
        return Wait(after=min(left + 0.5, RESYNC_S), on=on)

    def target(self) -> dict:
        return {**self.druid, "spec": self.op.target(self.druid["spec"], self.ops)}

    def rendered_spec(self) -> dict:
        """The spec the PetSets are rendered from in this phase (Phase.renders_target)."""
        return self.op.target(self.druid["spec"], self.ops) if self.phase.renders_target else self.druid["spec"]

    def needed(self, phase: plans.Phase) -> bool:
        if phase.only_if is None:
            return True
        step, reason = phase.only_if
        c = self.condition(step)
        return bool(c) and c.get("reason") == reason

    def complete_phase(self, phase: plans.Phase, recurring: set[str], needed: bool = True) -> None:
        """Notes a phase done (or not needed) and clears the conditions of its steps that a later phase runs again:
        one change of the conditions."""
        kept = [c for c in self.conditions if not any(plans.clears(step, c["type"]) for step in recurring)]
        message = phase.message if needed else f"not needed: {self.condition(phase.only_if[0])['message']}"
        new = cond.set_condition(kept, phase.name, "True", phase.name if needed else "NotNeeded", message,
                                 self.ops["metadata"].get("generation"))
        if new != self.conditions:
            self.set_local_conditions(new)
            self.announce(phase.name, message)


async def run_step(step: str, ctx: StepContext) -> Wait | None:
    """Runs a plan step unless its condition already records it as done (a re-run after a crash skips it)."""
    if ctx.done(step):
        return None
    return await STEPS[step](ctx)


def _certificate_names(druid: dict) -> list[str]:
    """Every Certificate of the Druid: the defaulted list (server and client) plus any other alias the user named."""
    db = apply_defaults(Druid.model_validate(druid))
    return [f"{db.metadata.name}-{c.alias}-cert" for c in (db.spec.tls.certificates if db.spec.tls else None) or []]


def _ready_for_generation(cert: dict) -> bool:
    ready = cond.get_condition((cert.get("status") or {}).get("conditions"), "Ready")
    return bool(ready) and ready.get("status") == "True" and \
        ready.get("observedGeneration") == cert["metadata"].get("generation")


def _issuing(cert: dict) -> bool:
    return cond.get_condition((cert.get("status") or {}).get("conditions"), "Issuing") is not None


async def certificate_synced(ctx: StepContext) -> Wait | None:
    step = plans.CERTIFICATE_SYNCED
    ctx.start(step, "Syncing certificates")
    certificates = await ctx.provisioner.sync_certificates(ctx.target())
    ns = ctx.druid["metadata"]["namespace"]
    live = await asyncio.gather(*(ctx.kube.get("cert-manager.io/v1", "Certificate", c["metadata"]["name"], ns)
                                  for c in certificates))
    # KubeDB's third check, that cert-manager is done issuing, holds once a certificate is Ready for its current
    # generation: its Secret then holds a certificate that matches the spec (cert-manager's readiness checks the
    # current CertificateRequest against the spec). cert-manager drops its Issuing condition in a status update of
    # its own, which on a busy plane came up to 15 s after Ready (issue 13's bench: one certificate in ten).
    checks = (("GetCertificate", "get certificate", lambda c: c is not None),
              ("CheckReadyCondition", "check ready condition", lambda c: c is not None and _ready_for_generation(c)),
              ("IssuingCondition", "issuing condition",
               lambda c: c is not None and (_ready_for_generation(c) or not _issuing(c))))
    for type_, text, ok in checks:
        if not all(ok(c) for c in live):
            names_ = ", ".join(c["metadata"]["name"] for c in certificates)
            return ctx.wait_or_fail(step, f"cert-manager to issue {names_} ({text})", on=CERTIFICATE_EVENTS)
        if not ctx.done(type_):
            msg = f"{text}; ConditionStatus:True"
            ctx.note(type_, "True", msg, reason="")
            for _ in certificates:  # KubeDB records one event per certificate
                ctx.announce(msg, msg)
    secrets = await asyncio.gather(*(ctx.kube.get("v1", "Secret", c["spec"]["secretName"], ns) for c in certificates))
    for c, secret in zip(certificates, secrets):
        if secret is None or "keystore.jks" not in (secret.get("data") or {}):
            return ctx.wait_or_fail(step, f"Secret {c['spec']['secretName']} with the keystores", on=CERTIFICATE_EVENTS)
    ctx.note(step, "True", plans.STEP_CONDITIONS[step], event=True)
    return None


def _requested_revisions(message: str) -> dict[str, int]:
    out = {}
    for part in message.split(":", 1)[-1].split(","):
        if "@" in part:
            name, rev = part.strip().rsplit("@", 1)
            out[name] = int(rev)
    return out


async def trust_issuer_ca(ctx: StepContext) -> Wait | None:
    """Before the certificates change issuer: learn the new issuer's CA from a probe certificate and add it to the
    CA bundle. The reason says whether it is another CA than the one that signs the Druid's certificates now
    (CAChanged: the trust phases run) or the same (SameCA)."""
    step = plans.TRUST_ISSUER_CA
    ctx.start(step, "Learning the CA of the new issuer")
    ns, uid = ctx.druid["metadata"]["namespace"], ctx.druid["metadata"]["uid"]
    target = apply_defaults(Druid.model_validate(ctx.target()))
    probe = cluster.ca_probe_certificate(target, uid)
    name, issuer = probe["metadata"]["name"], probe["spec"]["issuerRef"]
    await ctx.kube.ensure(probe)
    live = await ctx.kube.get("cert-manager.io/v1", "Certificate", name, ns)
    secret = await ctx.kube.get("v1", "Secret", name, ns)
    if live is None or not _ready_for_generation(live) or secret is None:
        return ctx.wait_or_fail(step, f"cert-manager to issue the probe certificate {name} from {issuer['kind']} "
                                      f"{issuer['name']}", on=CERTIFICATE_EVENTS)
    new = bundle.parse(bundle.pem_of(secret))
    if not new:
        raise Fail(step, f"{issuer['kind']} {issuer['name']} does not publish its CA (no ca.crt in Secret {name}): "
                         "the Druid's nodes cannot be made to trust it before their certificates change")
    current = apply_defaults(Druid.model_validate(ctx.druid))
    old = await ctx.provisioner.server_ca(current)
    changed = not {bundle.fingerprint(c) for c in new} <= {bundle.fingerprint(c) for c in old}
    if changed:
        await ctx.provisioner.ensure_ca_bundle(ctx.druid, current, add=new)
    await ctx.kube.delete("cert-manager.io/v1", "Certificate", name, ns)
    await ctx.kube.delete("v1", "Secret", name, ns)
    what = ", ".join(bundle.describe(c) for c in new)
    message = (f"{issuer['kind']} {issuer['name']} signs with {what}, another CA: the Druid trusts both until every "
               "node serves a certificate of the new one") if changed else \
        f"{issuer['kind']} {issuer['name']} signs with {what}, the CA the Druid trusts already"
    await ctx.record(step, "True", message, reason="CAChanged" if changed else "SameCA", event=True)
    return None


async def prune_ca_bundle(ctx: StepContext) -> Wait | None:
    """After every pod serves a certificate of the new CA: the bundle keeps only that CA."""
    step = plans.PRUNE_CA_BUNDLE
    db = apply_defaults(Druid.model_validate(ctx.druid))
    keep = await ctx.provisioner.server_ca(db)
    if not keep:
        raise Fail(step, f"Secret {cluster.server_cert_secret(db)} has no ca.crt: nothing to keep trusting")
    await ctx.provisioner.ensure_ca_bundle(ctx.druid, db, exactly=keep)
    await ctx.record(step, "True", "The Druid trusts only " + ", ".join(bundle.describe(c) for c in keep), event=True)
    return None


async def issue_certificates(ctx: StepContext) -> Wait | None:
    """Rotate: make cert-manager re-issue every certificate (what `cmctl renew` does: the Issuing condition)."""
    step = plans.ISSUE_CERTIFICATES
    ns = ctx.druid["metadata"]["namespace"]
    names_ = _certificate_names(ctx.druid)
    if ctx.condition(step) is None:  # remember each certificate's revision before the re-issue
        revisions = []
        for n in names_:
            cert = await ctx.kube.get("cert-manager.io/v1", "Certificate", n, ns)
            if cert is None:
                raise Fail(step, f"Certificate {ns}/{n} does not exist; add TLS first")
            revisions.append(f"{n}@{(cert.get('status') or {}).get('revision') or 0}")
        await ctx.record(step, "False", "requested re-issue: " + ",".join(revisions))
    requested = _requested_revisions(ctx.condition(step)["message"])
    pending = []
    for n, revision in requested.items():
        cert = await ctx.kube.get("cert-manager.io/v1", "Certificate", n, ns)
        if cert is None:
            raise Fail(step, f"Certificate {ns}/{n} was deleted during the rotation")
        status = cert.get("status") or {}
        if (status.get("revision") or 0) > revision and _ready_for_generation(cert) and not _issuing(cert):
            continue
        pending.append(n)
        if (status.get("revision") or 0) <= revision and not _issuing(cert):
            conditions = cond.set_condition(status.get("conditions"), "Issuing", "True", "RotateCertificate",
                                            "Rotating Certificate for KubeDB", cert["metadata"].get("generation"))
            await ctx.kube.patch("cert-manager.io/v1", "Certificate", n, {"status": {"conditions": conditions}}, ns,
                                 status=True)
    if pending:
        return ctx.wait_or_fail(step, f"cert-manager to re-issue {', '.join(pending)}", on=CERTIFICATE_EVENTS)
    await ctx.record(step, "True", plans.STEP_CONDITIONS[step], event=True)
    return None


def _mode_patch(druid: dict, mode) -> dict:
    """The annotation change that puts the Druid in `mode` (None: no change)."""
    if mode is None:
        return {}
    current = (druid["metadata"].get("annotations") or {}).get(names.TLS_MODE_ANNOTATION)
    return {} if current == mode.value else {"metadata": {"annotations": {names.TLS_MODE_ANNOTATION: mode.value}}}


async def update_petsets(ctx: StepContext) -> Wait | None:
    """Moves the Druid to the phase's TLS mode and writes its children: Services at once, PetSet templates for the
    pods restarted next."""
    step = plans.UPDATE_PETSETS
    ctx.start(step, "Updating the Druid and its PetSets")
    # A pod recreated after an eviction is built from the PetSet as it is then, so no need to wait for the PetSet
    # controller to observe the new template. During a roll that changes the mode the Services offer only ports
    # both modes serve (a port the roll closes stays until the roll reaches the Service's node type: RestartNodes);
    # the new mode's once every pod runs it (UpdateServices, after the roll). The pods about to restart mount the CA
    # bundle: it holds the CA of their certificates.
    await _write_druid_and_children(ctx, ctx.rendered_spec(), _mode_patch(ctx.druid, ctx.phase.mode),
                                    ctx.op.plan.roll_service_schemes(ctx.phase, reached=None), ca_bundle=True)
    ctx.note(step, "True", plans.STEP_CONDITIONS[step], event=True)
    return None


async def _write_druid_and_children(ctx: StepContext, spec: dict, extra: dict,
                                    service_schemes: Mapping[str, tuple[bool, ...]] | None = None,
                                    ca_bundle: bool = False) -> None:
    """The Druid's spec becomes `spec` (keys it lacks are removed), plus the metadata patch `extra`, and its
    children (and, with `ca_bundle`, its CA bundle) are written from the Druid as patched. A changed spec is
    patched first, so that the apiserver's validation of it comes before any child is written; a change of
    annotations only goes with the children's writes (one round trip, not two): no pod restarts before the next
    eviction, and a re-run writes the same."""
    patch = dict(extra)
    if spec != ctx.druid["spec"]:
        patch["spec"] = {**spec, **{k: None for k in ctx.druid["spec"] if k not in spec}}
    ns, name = ctx.druid["metadata"]["namespace"], ctx.druid["metadata"]["name"]
    if "spec" in patch:
        ctx.druid = await ctx.kube.patch(names.DRUID_API, "Druid", name, patch, ns)
        patch = {}
    druid = diff.merge_patched(ctx.druid, patch)
    db, inputs, _ = await ctx.provisioner.prepare(druid)
    writes = [ctx.provisioner.apply(db, inputs, service_schemes=service_schemes)]
    if ca_bundle and db.spec.enableSSL:
        writes.append(ctx.provisioner.ensure_ca_bundle(druid, db))
    if patch:
        writes.append(ctx.kube.patch(names.DRUID_API, "Druid", name, patch, ns))
    written = await asyncio.gather(*writes)
    if patch:
        ctx.druid = written[-1]


async def finish(ctx: StepContext) -> Wait | None:
    """The Druid's spec becomes the target, and it keeps a mode annotation only if its pods run in a mode other
    than the one the spec declares: after a removal, client trust (its last roll kept it), until the next Restart."""
    target = ctx.op.target(ctx.druid["spec"], ctx.ops)
    final = ctx.op.plan.final_mode or cluster.tls_mode_of(bool(ctx.druid["spec"].get("enableSSL")),
                                                           ctx.druid["metadata"].get("annotations"))
    annotations = ctx.druid["metadata"].get("annotations") or {}
    if final is TLSMode.declared(bool(target.get("enableSSL"))):
        extra = {"metadata": {"annotations": {names.TLS_MODE_ANNOTATION: None}}} \
            if names.TLS_MODE_ANNOTATION in annotations else {}
    else:
        extra = _mode_patch(ctx.druid, final)
    # The children match the declared spec by the time the op says Successful (the provisioner is still paused).
    await _write_druid_and_children(ctx, target, extra)
    return None


async def restart_nodes(ctx: StepContext) -> Wait | None:
    """One pod at a time in Druid's order: evict (PodDisruptionBudgets apply), wait until its replacement is Ready."""
    step = plans.RESTART_NODES
    ctx.start(step, "Restarting nodes")
    ns = ctx.druid["metadata"]["namespace"]
    pods = _pods(ctx)
    todo = [p for p in pods if not ctx.done(plans.pod_condition_types(p)[2])
            and not (ctx.phase.restart_only_stale and not _stale(ctx, p))]
    read = await _read_ahead(ctx, todo)
    for i, pod_name in enumerate(todo):
        get_t, evict_t, check_t = plans.pod_condition_types(pod_name)
        pod = read.pods[pod_name] if pod_name in read.pods else await ctx.kube.get("v1", "Pod", pod_name, ns)
        evicted = ctx.condition(evict_t)
        if evicted is None and pod is None:
            return ctx.wait_or_fail(step, f"pod {pod_name} to exist", on=POD_EVENTS)
        old_uid = plans.recorded_uid(evicted["message"]) if evicted else pod["metadata"]["uid"]
        if evicted is None or evicted["status"] != "True":
            present = pod is not None and pod["metadata"]["uid"] == old_uid and \
                not pod["metadata"].get("deletionTimestamp")
            if present and (wait := await _ready_to_evict(ctx, read, pod_name)) is not None:
                return wait
            if evicted is None:
                # The pod's UID is written before the eviction: a re-run after a crash evicts only that pod, once.
                await ctx.record_many(_to_evict(pod_name, old_uid))
            # The next pod's UID goes with this eviction's write, so its eviction, once this pod is back, needs none
            # before it. It is read from the apiserver (it is recorded) while the eviction goes.
            following = todo[i + 1] if i + 1 < len(todo) else None
            calls = {}
            if present:
                calls["evicted"] = evict(ctx.kube, pod_name, ns, old_uid)
            if following and _unrecorded(ctx, following):
                calls["following"] = ctx.kube.get("v1", "Pod", following, ns)
            answers = dict(zip(calls, await asyncio.gather(*calls.values())))
            if answers.get("evicted") is False:  # a PodDisruptionBudget forbids it now; try again shortly
                return Wait(after=2.0, on=NO_EVENTS) if ctx.deadline(step) > 0 else ctx.wait_or_fail(
                    evict_t, f"a PodDisruptionBudget to allow evicting {pod_name}")
            await ctx.record_many([
                (evict_t, "True", plans.pod_message("evict pod", pod_name, uid=old_uid), "", False),
                (check_t, "False", plans.pod_message("check pod running", pod_name, "False"), "", False),
                *(_to_evict(following, answers["following"]["metadata"]["uid"])
                  if answers.get("following") else [])])
            await ctx.event(ctx.ops, "Normal", plans.pod_message("evict pod", pod_name),
                            plans.pod_message("evict pod", pod_name))
            return ctx.wait_or_fail(check_t, f"pod {pod_name} to be Ready again after its eviction", on=POD_EVENTS)
        if pod is not None and pod["metadata"]["uid"] != old_uid and petset_pods.is_ready(pod):
            slices = read.slices.get(pod_name)
            if slices is None:
                slices = await _endpoint_slices(ctx, plans.node_type_of(pod_name))
            if not _serving_endpoint(pod, slices):  # the EndpointSlice controller's turn: its write wakes us
                return Wait(after=1.0, on=ENDPOINT_EVENTS) if ctx.deadline(check_t) > 0 else ctx.wait_or_fail(
                    check_t, f"pod {pod_name} to be a ready endpoint of its Service", on=ENDPOINT_EVENTS)
            # Written with the next pod's eviction, or when the pass ends.
            ctx.note(check_t, "True", plans.pod_message("check pod running", pod_name), "", True)
            if _same_petset(pods, pod_name):  # the next eviction would leave the Service only this pod
                await ctx.flush()
                await asyncio.sleep(cluster.KUBE_PROXY_TURN_S)
                read = _ReadAhead({}, {}, {})  # read again after the wait
            continue
        return ctx.wait_or_fail(check_t, f"pod {pod_name} to be Ready again after its eviction", on=POD_EVENTS)
    ctx.note(step, "True", plans.STEP_CONDITIONS[step], event=True)
    return None


def _to_evict(pod_name: str, uid: str) -> list[tuple]:
    """The conditions that name the pod to evict next, by its UID (KubeDB's GetPod, and EvictPod not yet True)."""
    get_t, evict_t, _ = plans.pod_condition_types(pod_name)
    return [(get_t, "True", plans.pod_message("get pod", pod_name), "", True),
            (evict_t, "False", plans.pod_message("evict pod", pod_name, "False", uid), "", False)]


def _unrecorded(ctx: StepContext, pod_name: str) -> bool:
    return ctx.condition(plans.pod_condition_types(pod_name)[1]) is None


async def _ready_to_evict(ctx: StepContext, read: "_ReadAhead", pod_name: str) -> Wait | None:
    """What must hold before the pod leaves: in a roll that closes a port of a client Service, clients had their
    grace and the Service no longer offers that port; a historical's segments are served elsewhere, as the
    Coordinator and every broker see it. A Wait while not."""
    step = plans.RESTART_NODES
    node = plans.node_type_of(pod_name)
    if node.has_primary_service and ctx.op.plan.closes_service_ports(ctx.phase):
        if (wait := await clients_followed(ctx)) is not None:
            return wait
        db, inputs, _ = await ctx.provisioner.prepare(ctx.druid)  # its Service drops the closing port
        await ctx.provisioner.apply_services(db, inputs, ctx.op.plan.roll_service_schemes(ctx.phase, reached=node))
    if node is HISTORICALS and not (read.handed_over[pod_name] if pod_name in read.handed_over
                                     else await _segments_handed_over(ctx)):
        if ctx.deadline(step) <= 0:
            raise Fail(step, f"{step}: timed out after {ctx.timeout_s:g}s waiting for the Coordinator and "
                             f"every broker to see every segment fully replicated before evicting {pod_name}")
        return Wait(after=2.0, on=NO_EVENTS)
    return None


@dataclass
class _ReadAhead:
    pods: dict[str, dict | None]
    slices: dict[str, list[dict]]  # by pod: the EndpointSlices of its client Service
    handed_over: dict[str, bool]  # by historical about to be evicted: whether its segments are served elsewhere


async def _read_ahead(ctx: StepContext, todo: list[str]) -> _ReadAhead:
    """What a hand-over from one pod to the next needs, read at once: the pod the roll is at; if it was evicted,
    its client Service's EndpointSlices; the pod evicted next; for a historical about to be evicted whether Druid
    sees its segments served elsewhere.

    Decision 0031: the roll's progress is read from the informers, whose events woke the pass: the replacement's
    readiness and endpoint (facts that only a later event undoes, which a read from the apiserver could miss as
    well), and the pod evicted next while the informers show it with the UID recorded (the eviction carries that
    UID as a precondition, so a view a few events old evicts no other pod). A UID about to be recorded, and a pod
    the informers show otherwise, are read from the apiserver."""
    if not todo:
        return _ReadAhead({}, {}, {})
    ns = ctx.druid["metadata"]["namespace"]
    first = todo[0]
    evicted = ctx.condition(plans.pod_condition_types(first)[1])
    returning = evicted is not None and evicted["status"] == "True"
    evicted_next = (todo[1] if len(todo) > 1 else None) if returning else first
    reads = {}
    if returning:
        reads[first] = _informed_pod(ctx, first)
    if evicted_next is not None:
        recorded = ctx.condition(plans.pod_condition_types(evicted_next)[1])
        reads[evicted_next] = _recorded_pod(ctx, evicted_next, plans.recorded_uid(recorded["message"])) \
            if recorded else ctx.kube.get("v1", "Pod", evicted_next, ns)
    names_ = list(reads)
    node = plans.node_type_of(first)
    if returning and node.has_primary_service:
        reads["slices"] = _endpoint_slices(ctx, node)
    if evicted_next is not None and plans.node_type_of(evicted_next) is HISTORICALS and \
            not ctx.done(plans.pod_condition_types(evicted_next)[1]):
        reads["handed over"] = _segments_handed_over(ctx)
    out = dict(zip(reads, await asyncio.gather(*reads.values())))
    return _ReadAhead({name: out[name] for name in names_}, {first: out["slices"]} if "slices" in out else {},
                      {evicted_next: out["handed over"]} if "handed over" in out else {})


async def _informed_pod(ctx: StepContext, pod_name: str) -> dict | None:
    """The pod as the informers hold it (the apiserver's copy where they cannot answer)."""
    return await ctx.informed.get("v1", "Pod", pod_name, ctx.druid["metadata"]["namespace"], ours={
        **names.selector_labels(ctx.druid["metadata"]["name"]), petset_pods.POD_NAME_LABEL: pod_name})


async def _recorded_pod(ctx: StepContext, pod_name: str, uid: str) -> dict | None:
    """A pod whose UID the op recorded: the informers' copy while it is that pod (its eviction names the UID), else
    the apiserver's (a pod the informers have not shown yet, or gone and replaced: what the step must know for sure
    before it leaves the pod out)."""
    pod = await _informed_pod(ctx, pod_name)
    if pod is not None and pod["metadata"]["uid"] == uid:
        return pod
    return await ctx.kube.get("v1", "Pod", pod_name, ctx.druid["metadata"]["namespace"])


async def _segments_handed_over(ctx: StepContext) -> bool:
    """Whether the Coordinator and every broker see every segment as replicated as it can be (segments.py); True
    when the Coordinator cannot be asked."""
    db = apply_defaults(Druid.model_validate(ctx.druid))
    bundle_secret, _ = await ctx.provisioner.ca_bundle(db)
    ca_pem = bundle.pem_of(bundle_secret)
    return await segments.handed_over(ctx.kube, db, ca_pem) is not False


async def _endpoint_slices(ctx: StepContext, node: NodeType) -> list[dict]:
    """The EndpointSlices of the node type's client Service ([] for node types without one), as the informers hold
    them (decision 0031)."""
    if not node.has_primary_service:
        return []
    return await _service_slices(ctx, names.primary_service(ctx.druid["metadata"]["name"], node))


async def _service_slices(ctx: StepContext, service: str) -> list[dict]:
    """A Service's EndpointSlices from the informers: selected with the KubeDB labels they copy from the Service as
    well, which the informer's watch selects (the apiserver's where the informers cannot answer)."""
    return await ctx.informed.list("discovery.k8s.io/v1", "EndpointSlice", ctx.druid["metadata"]["namespace"], labels={
        "kubernetes.io/service-name": service, **names.selector_labels(ctx.druid["metadata"]["name"])})


def _serving_endpoint(pod: dict, slices: list[dict]) -> bool:
    """Whether the pod's IP is a ready endpoint of its node type's client Service, given that Service's
    EndpointSlices (True for node types without one): a Ready pod the Service does not forward to yet would leave it
    empty if its peer left now."""
    if not BY_KEY[pod["metadata"]["labels"][names.ROLE_LABEL]].has_primary_service:
        return True
    ip = (pod.get("status") or {}).get("podIP")
    return any(ip in (e.get("addresses") or []) and (e.get("conditions") or {}).get("ready")
               for sl in slices for e in sl.get("endpoints") or [])


def _same_petset(pods: list[str], pod_name: str) -> bool:
    """Whether the pod restarted after `pod_name` in this roll belongs to the same PetSet."""
    i = pods.index(pod_name)
    return i + 1 < len(pods) and pods[i + 1].rsplit("-", 1)[0] == pod_name.rsplit("-", 1)[0]


def _pods(ctx: StepContext) -> list[str]:
    """The Druid's pods, in Druid's restart order."""
    db = apply_defaults(Druid.model_validate(ctx.druid))
    replicas = {key: node.replicas for key, node in db.spec.topology.nodes().items()}
    return plans.restart_pods(ctx.druid["metadata"]["name"], replicas)


def _stale(ctx: StepContext, pod: str) -> bool:
    c = ctx.condition(plans.RELOAD_POD_PREFIX + pod)
    return c is None or c.get("reason") != plans.RELOADED



async def reload_certificates(ctx: StepContext) -> Wait | None:
    """Each pod that reloads its keystore must serve the server certificate's current serial (a handshake with its
    TLS port, verified against the CA bundle and its DNS name); a pod that cannot reload, cannot be reached, or
    still serves the old one after tls.RELOAD_BUDGET_S is marked NotReloaded for the restart phase."""
    step = plans.RELOAD_CERTIFICATES
    ctx.start(step, "Waiting for every pod to serve the new certificate")
    ns, name = ctx.druid["metadata"]["namespace"], ctx.druid["metadata"]["name"]
    db = apply_defaults(Druid.model_validate(ctx.druid))
    server = await ctx.kube.get("v1", "Secret", cluster.server_cert_secret(db) or "", ns)
    leaf = (server or {}).get("data", {}).get("tls.crt")
    if not leaf:
        raise Fail(step, f"Secret {cluster.server_cert_secret(db)} has no tls.crt")
    issued = x509.load_pem_x509_certificate(base64.b64decode(leaf)).serial_number
    bundle_secret, _ = await ctx.provisioner.ca_bundle(db)
    ca_pem = bundle.pem_of(bundle_secret)
    elapsed = ctx.timeout_s - ctx.deadline(step)
    budget = min(tls.RELOAD_BUDGET_S, ctx.timeout_s / 2)  # a short spec.timeout leaves time for the restarts

    async def check(pod_name: str) -> tuple[str, str] | None:
        """(reason, message) once decided, None while it may still reload."""
        pod = await ctx.kube.get("v1", "Pod", pod_name, ns)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return plans.NOT_RELOADED, "the pod is gone"
        if not any(c["name"] == cluster.KEYSTORE_SYNC for c in pod["spec"].get("initContainers") or []):
            return plans.NOT_RELOADED, "the pod cannot reload its keystore (no keystore sidecar, or Druid < 25)"
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or not ca_pem:
            return plans.NOT_RELOADED, "no pod IP or no CA bundle to check what it serves"
        if (pod["metadata"].get("annotations") or {}).get(names.SERIAL_ANNOTATION) != f"{issued:x}":
            # A pod update makes the kubelet refresh its Secret volumes now rather than at its next periodic sync.
            await ctx.kube.patch("v1", "Pod", pod_name, {"metadata": {"annotations": {
                names.SERIAL_ANNOTATION: f"{issued:x}"}}}, ns)
        node = BY_KEY[pod["metadata"]["labels"][names.ROLE_LABEL]]
        try:
            served = await served_certificate(ip, node.tls_port, names.pod_fqdn(name, ns, pod_name), ca_pem)
        except HandshakeFailed as e:
            return plans.NOT_RELOADED, f"handshake with {ip}:{node.tls_port} failed: {e}"
        if served.serial == issued:
            return plans.RELOADED, f"serves serial {issued:x}"
        if elapsed > budget:
            return plans.NOT_RELOADED, f"still serves serial {served.serial:x} after {budget:g}s"
        return None

    pods = [p for p in _pods(ctx) if ctx.condition(plans.RELOAD_POD_PREFIX + p) is None]
    results = await asyncio.gather(*(check(p) for p in pods))
    decided = [(plans.RELOAD_POD_PREFIX + p, "True", f"{msg}; PodName:{p}", reason, False)
               for p, r in zip(pods, results) if r is not None for reason, msg in [r]]
    if decided:
        await ctx.record_many(decided)
    if any(r is None for r in results):
        return ctx.wait_or_fail(step, "pods to serve the new certificate") if ctx.deadline(step) <= 0 \
            else Wait(after=2.0, on=NO_EVENTS)
    stale = [p for p in _pods(ctx) if _stale(ctx, p)]
    if stale:
        await ctx.record(step, "True", f"{len(stale)} pod(s) did not reload and restart: {', '.join(stale)}",
                         reason="RestartNeeded", event=True)
    else:
        await ctx.record(step, "True", f"every pod serves serial {issued:x} without a restart", reason="Reloaded",
                         event=True)
    return None


async def clients_followed(ctx: StepContext) -> Wait | None:
    """Before a roll's first Service closes a port: clients get the operator's client-switch grace (default
    plan.CLIENT_SWITCH_GRACE_S) to follow the Services, counted from when the previous phase moved them (its
    condition's time, so a re-run after a crash waits only what is left). The pods restarted before, in Druid's
    order those without a client Service, use the grace meanwhile."""
    step = plans.CLIENTS_FOLLOW
    if ctx.done(step):
        return None
    moved = ctx.condition(ctx.op.plan.previous(ctx.phase).name)
    # Condition times have whole seconds: count from the end of the one recorded, so the grace is never short.
    elapsed = (datetime.datetime.now(datetime.timezone.utc)
               - cond.parse_rfc3339(moved["lastTransitionTime"])).total_seconds() - 1.0
    left = ctx.client_switch_grace_s - elapsed
    if left > 0:
        ctx.start(step, "Giving clients time to follow the Services to their new ports")
        return Wait(after=left, on=NO_EVENTS)
    await ctx.record(step, "True", f"clients had {ctx.client_switch_grace_s:g}s to follow the Services",
                     event=True)
    return None


def _eviction(pod: str, namespace: str, uid: str):
    from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta, Preconditions
    from lightkube.resources.core_v1 import Pod

    return Pod.Eviction(metadata=ObjectMeta(name=pod, namespace=namespace),
                        deleteOptions=DeleteOptions(preconditions=Preconditions(uid=uid)))


async def evict(kube: Kube, pod: str, namespace: str, uid: str) -> bool:
    """Evicts the pod if it is still the one with `uid` (PodDisruptionBudgets apply). True once that pod is evicted
    or gone (another pod may hold its name: the apiserver refuses the precondition with 409); False while a budget
    forbids it."""
    try:
        await kube.client.create(_eviction(pod, namespace, uid), name=pod, namespace=namespace)
    except ApiError as e:
        if e.status.code == 429:
            return False
        if e.status.code == 409:  # a refused precondition, or another conflict: the apiserver tells which
            live = await kube.get("v1", "Pod", pod, namespace)
            if live is not None and live["metadata"]["uid"] == uid:
                raise
            return True
        if e.status.code != 404:
            raise
    return True


async def update_services(ctx: StepContext) -> Wait | None:
    """After a roll: the Services offer the ports of the mode every pod now runs (idempotent), and the step ends
    only once each port they offer has ready endpoints and kube-proxy forwards it (a connection through the
    ClusterIP, kube/forwarding.py): the next phase may put a new port first, and a client that follows it before
    kube-proxy forwards it reaches no pod (measured on the real node: "No route to host")."""
    db, inputs, _ = await ctx.provisioner.prepare(ctx.druid)
    services = cluster.services(db, inputs)
    written = await ctx.provisioner.apply_services(db, inputs)
    missing = await _ports_without_endpoints(ctx, services)
    waiting_for, on = "ready endpoints of", ENDPOINT_EVENTS
    if not missing:
        # kube-proxy's turn counts from when every port was seen with ready endpoints, not after the check below
        # (which, where nothing answers, spends forwarding.CHECK_TIMEOUT_S finding out).
        missing = await _ports_not_forwarded(ctx, services, time.monotonic() if written else None)
        waiting_for, on = "kube-proxy to forward (ready endpoints, but no connection through the ClusterIP)", NO_EVENTS
        if missing:
            log.info("%s/%s: kube-proxy does not forward %s yet", ctx.druid["metadata"]["namespace"],
                     ctx.druid["metadata"]["name"], ", ".join(missing))
    if missing:
        if ctx.deadline(plans.RESTART_NODES) <= 0:  # the roll's step ended when the pods were back
            raise Fail(plans.RESTART_NODES, f"timed out after {ctx.timeout_s:g}s waiting for {waiting_for} "
                                            f"{', '.join(missing)}")
        return Wait(after=0.5, on=on)
    return None


async def _ports_not_forwarded(ctx: StepContext, services: list[dict], endpoints_seen: float | None) -> list[str]:
    """`<service>:<port name>` of each port of the Druid's ClusterIP Services whose health check no pod answers
    through the ClusterIP. Where none is answered, forwarding cannot be observed from here: after a write kube-proxy
    gets cluster.KUBE_PROXY_TURN_S instead, from `endpoints_seen` (time.monotonic(); None: nothing was written)."""
    ns = ctx.druid["metadata"]["namespace"]
    # Not the governing Service (DNS only) nor the stats Service (no Druid port).
    checked = [(svc, node) for svc in services
               if (node := BY_KEY.get(svc["metadata"]["labels"].get(names.ROLE_LABEL, ""))) is not None
               and svc["spec"].get("clusterIP") != "None"]
    # A Service keeps the ClusterIP it was given: the informers' copy says it without a round trip.
    lives = await asyncio.gather(*(ctx.provisioner.kube.get("v1", "Service", svc["metadata"]["name"], ns,
                                                            ours=svc["metadata"]["labels"]) for svc, _ in checked))
    targets = []
    for (svc, node), live in zip(checked, lives):
        cluster_ip = ((live or {}).get("spec") or {}).get("clusterIP")
        targets += forwarding.service_ports(svc["metadata"]["name"], ns, cluster_ip, svc["spec"]["ports"],
                                            node.port_name(True))
    bundle_secret, _ = await ctx.provisioner.ca_bundle(apply_defaults(Druid.model_validate(ctx.druid)))
    missing = await forwarding.unforwarded(targets, HEALTH_PATH, bundle.pem_of(bundle_secret) or None)
    if missing is None:
        if endpoints_seen is not None:
            await asyncio.sleep(forwarding.turn_left(endpoints_seen, time.monotonic(), cluster.KUBE_PROXY_TURN_S))
        return []
    return missing


async def _ports_without_endpoints(ctx: StepContext, services: list[dict]) -> list[str]:
    """`<service>:<port name>` of each port of the Druid's ClusterIP Services that no ready endpoint serves yet (the
    informers' EndpointSlices: decision 0031)."""
    checked = [svc for svc in services if svc["spec"].get("clusterIP") != "None"]  # governing: DNS only
    slices_by_service = await asyncio.gather(*(_service_slices(ctx, svc["metadata"]["name"]) for svc in checked))
    missing = []
    for svc, slices in zip(checked, slices_by_service):
        served = {port.get("name") for sl in slices for port in sl.get("ports") or []
                  if any((e.get("conditions") or {}).get("ready") for e in sl.get("endpoints") or [])}
        missing += [f"{svc['metadata']['name']}:{port['name']}" for port in svc["spec"]["ports"]
                    if port["name"] not in served]
    return missing


async def settle_tls_mode(ctx: StepContext) -> Wait | None:
    """Before a Restart's roll: a Druid left in client trust by a removal (no pod announces a TLS port any more)
    goes back to plain off, so the roll drops the last TLS setting and, after it, the CA bundle goes."""
    if cluster.tls_mode_of(bool(ctx.druid["spec"].get("enableSSL")),
                           ctx.druid["metadata"].get("annotations")) is not TLSMode.CLIENT_TRUST \
            or ctx.druid["spec"].get("enableSSL"):
        return None
    await _write_druid_and_children(ctx, ctx.druid["spec"],
                                    {"metadata": {"annotations": {names.TLS_MODE_ANNOTATION: None}}})
    return None


async def remove_tls_objects(ctx: StepContext) -> Wait | None:
    await ctx.provisioner.remove_tls_objects(ctx.druid)
    return None


STEPS: dict[str, Callable[[StepContext], Awaitable[Wait | None]]] = {
    plans.CERTIFICATE_SYNCED: certificate_synced,
    plans.ISSUE_CERTIFICATES: issue_certificates,
    plans.UPDATE_PETSETS: update_petsets,
    plans.RESTART_NODES: restart_nodes,
    plans.TRUST_ISSUER_CA: trust_issuer_ca,
    plans.RELOAD_CERTIFICATES: reload_certificates,
    plans.PRUNE_CA_BUNDLE: prune_ca_bundle,
    plans.FINISH: finish,
    plans.SETTLE_TLS_MODE: settle_tls_mode,
    plans.UPDATE_SERVICES: update_services,
    plans.REMOVE_TLS_OBJECTS: remove_tls_objects,
}
