"""The ops-manager: runs DruidOpsRequests (ReconfigureTLS and Restart) one at a time per Druid.

Work is keyed by Druid, so every decision about one database's ops (queueing, skipping, the running op's next step)
is made by one reconcile at a time. The running op is classified once (optypes.classify, recorded in its Plan
condition); it pauses the Druid, runs its plan's phases and their steps (plan.py, steps.py) — each recorded as a
condition and an event — and resumes the Druid. Everything it needs to go on after a crash is in the op's status
and in the cluster.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from lightkube.core.exceptions import ApiError
from prometheus_client import Counter, Histogram

from kubedruid.kube import conditions as cond
from kubedruid.kube.client import Kube
from kubedruid.api.durations import parse_duration
from kubedruid.specs import cluster, names
from kubedruid.specs import status as druid_status

from ..provisioner import Blocked, Provisioner
from . import plan as plans
from . import preflight
from . import queue as queueing
from .optypes import OP_TYPES, REQUEST_MESSAGES, SUPPORTED_REQUESTS, OpType, classify
from .steps import RESYNC_S, Fail, StepContext, Wait, run_step

log = logging.getLogger("kubedruid.ops")

OPS_API = "ops.kubedb.com/v1alpha1"
DRUID_API = names.DRUID_API
COMPONENT = "KubeDB Ops-manager Operator"

OPS_TOTAL = Counter("kubedruid_ops_total", "Ops requests that finished", ["type", "phase"])
OPS_SECONDS = Histogram("kubedruid_ops_duration_seconds", "Ops request duration (Progressing to finished)",
                        ["type"], buckets=(5, 10, 30, 60, 120, 300, 600, 1800, 3600))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _parse_time(text: str | None) -> datetime.datetime | None:
    return cond.parse_rfc3339(text) if text else None


# Refusals that a retry cannot change (a request the apiserver finds invalid, a right the operator lacks): the op
# fails with the apiserver's words at once instead of retrying until its deadline.
PERMANENT_API_ERRORS = (400, 403, 422)
PAUSE_STEP = "PauseDatabase"  # the condition a pause that never comes fails with


def _since_last_progress(ops: dict) -> float:
    """Seconds since the op's newest condition transition: how long it has made no recorded progress."""
    times = [_parse_time(c.get("lastTransitionTime")) for c in (ops.get("status") or {}).get("conditions") or []]
    newest = max((t for t in times if t), default=None)
    return (_now() - newest).total_seconds() if newest else 0.0


def _phase(o: dict) -> str:
    return (o.get("status") or {}).get("phase") or ""


def _unfinished(all_ops: list[dict], db: str) -> list[dict]:
    return [o for o in all_ops if (o["spec"].get("databaseRef") or {}).get("name") == db
            and _phase(o) not in queueing.FINISHED]


def _current_mode(druid: dict | None):
    if druid is None:
        return None
    return cluster.tls_mode_of(bool(druid["spec"].get("enableSSL")), druid["metadata"].get("annotations"))


def _recorded_op(ops: dict, druid: dict) -> OpType:
    """The op type chosen when the op started (its Plan condition); classified now for an op started without one."""
    plan = cond.get_condition((ops.get("status") or {}).get("conditions"), plans.PLAN)
    if plan and plan.get("reason") in OP_TYPES:
        return OP_TYPES[plan["reason"]]
    return classify(ops, _current_mode(druid))


class OpsManager:
    def __init__(self, kube: Kube, provisioner: Provisioner,
                 client_switch_grace_s: float = plans.CLIENT_SWITCH_GRACE_S):
        # Steps decide from what the apiserver says now (a step never acts on a view a few events old), apart from a
        # roll's progress, which the events that woke the pass report (decision 0031); the informers also tell
        # which Druids have an unfinished op, so that the rest cost no request.
        self.kube, self.informed, self.provisioner = kube.fresh, kube, provisioner
        self._events: set[asyncio.Task] = set()
        self.client_switch_grace_s = client_switch_grace_s
        # By Druid: the kinds whose events can end what its running op waits for (steps.Wait.on), between passes;
        # and during a pass, the kinds of the events that came meanwhile (whether they matter is known at its end).
        self._waiting_on: dict[tuple[str, str], frozenset[str] | None] = {}
        self._during_pass: dict[tuple[str, str], set[str]] = {}

    def waiting(self, namespace: str, db: str, on: frozenset[str] | None) -> None:
        """The Druid's op ended its pass waiting for events of the kinds `on` (None: any), or for time."""
        self._waiting_on[(namespace, db)] = on

    def wakes(self, namespace: str, db: str, kind: str) -> bool:
        """Whether an event of `kind` about the Druid's objects is to wake its op now: not if the op's last pass
        ended waiting for other kinds only, nor while a pass runs (its end tells whether the event matters: the
        roll's own Secret and Service writes do not). Events of the Druid and its requests always wake it."""
        key = (namespace, db)
        if key in self._during_pass:
            self._during_pass[key].add(kind)
            return False
        if key not in self._waiting_on:
            return True
        on = self._waiting_on[key]
        return on is None or kind in on

    async def reconcile(self, namespace: str, db: str) -> float | None:
        key = (namespace, db)
        self._waiting_on.pop(key, None)
        self._during_pass[key] = set()
        try:
            after = await self._reconcile(namespace, db)
        finally:
            came = self._during_pass.pop(key)
        if came and (key not in self._waiting_on or self._waiting_on[key] is None or came & self._waiting_on[key]):
            return 0.0  # something the op may wait for changed while the pass ran: look again at once
        return after

    async def _reconcile(self, namespace: str, db: str) -> float | None:
        informed = _unfinished(await self.informed.list(OPS_API, "DruidOpsRequest", namespace), db)
        if not informed:
            return None
        if len(informed) == 1 and _phase(informed[0]) == "Progressing":
            # Most passes: a running op, alone, with its Druid, both as the informers hold them: at least what this
            # operator last wrote (its writes go to them at once), or newer; a change they have not brought yet
            # wakes the op again when it comes. The namespace's requests are listed only when there is something
            # to queue (a request created meanwhile enqueues this Druid again when it is seen).
            return await self._advance(informed[0], await self.informed.get(DRUID_API, "Druid", db, namespace))
        ops = _unfinished(await self.kube.list(OPS_API, "DruidOpsRequest", namespace), db)
        if not ops:
            return None
        ops = [await self._record_creation_version(o) for o in ops]
        decision = queueing.queue(ops)
        by_name = {o["metadata"]["name"]: o for o in ops}
        for name, newer in decision.skip.items():
            await self._skip(by_name[name], newer)
        for name in decision.waiting:
            await self._mark_pending(by_name[name], reason_running=decision.run)
        if decision.run is None:
            return None
        return await self._advance(by_name[decision.run], await self.kube.get(DRUID_API, "Druid", db, namespace))

    # -- queueing ---------------------------------------------------------------------------------------------
    async def _record_creation_version(self, ops: dict) -> dict:
        """Before our first write to a request, its resourceVersion is its creation's: recorded, it orders requests
        created within one second. Conditional on that version (a 409 re-runs the reconcile)."""
        version = queueing.creation_version(ops)
        if version is None:
            return ops
        return await self.kube.patch(OPS_API, "DruidOpsRequest", ops["metadata"]["name"], {"metadata": {
            "resourceVersion": version, "annotations": {queueing.CREATED_AT_VERSION: version}}},
            ops["metadata"]["namespace"])

    async def _set_status(self, ops: dict, phase: str, conditions: list[dict]) -> dict:
        status = ops.get("status") or {}
        if status.get("phase") == phase and status.get("conditions") == conditions:
            return ops
        patch = {"status": {"phase": phase, "conditions": conditions,
                            "observedGeneration": ops["metadata"].get("generation")}}
        out = await self.kube.patch(OPS_API, "DruidOpsRequest", ops["metadata"]["name"], patch,
                                    ops["metadata"]["namespace"], status=True)
        ops["status"] = out.get("status") or patch["status"]
        return out

    async def _event(self, ops: dict, type_: str, reason: str, message: str) -> None:
        """Events are posted in the background (in order): an op never waits for its own record-keeping."""
        task = asyncio.get_running_loop().create_task(self.kube.event(ops, type_, reason, message, component=COMPONENT))
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _skip(self, ops: dict, newer: str) -> None:
        ns = ops["metadata"]["namespace"]
        msg = (f"skipped as {ns}/{newer} is the most updated DruidOpsRequest of type {ops['spec']['type']} "
               f"at {_now().strftime('%Y-%m-%dT%H:%M:%SZ')}")
        conditions = cond.set_condition((ops.get("status") or {}).get("conditions"), "Skipped", "True", "Skipped",
                                        msg, ops["metadata"].get("generation"))
        await self._set_status(ops, "Skipped", conditions)
        await self._event(ops, "Normal", "Skipped", msg)
        OPS_TOTAL.labels(ops["spec"]["type"], "Skipped").inc()

    async def _mark_pending(self, ops: dict, reason_running: str | None) -> None:
        if _phase(ops) == "Pending":
            return
        await self._set_status(ops, "Pending", (ops.get("status") or {}).get("conditions") or [])
        if reason_running:
            ns = ops["metadata"]["namespace"]
            await self._event(ops, "Normal", "Pending",
                              f"Skipping DruidOpsRequest {ns}/{ops['metadata']['name']}, concurrent DruidOpsRequest "
                              f"{ns}/{reason_running} is not allowed for same database, will run after it")

    # -- the running op ---------------------------------------------------------------------------------------
    async def _advance(self, ops: dict, druid: dict | None) -> float | None:
        """`druid`: the op's Druid, read from the apiserver with or after the op (None: not found)."""
        ns, name = ops["metadata"]["namespace"], ops["metadata"]["name"]
        db_name = ops["spec"]["databaseRef"]["name"]

        if _phase(ops) != "Progressing":
            starting = druid is not None and self._may_start(ops, druid)
            failed = await self._preflight(ops, druid, preflight.START_CHECKS if starting else ())
            if failed:
                check, problem = failed
                return await self._fail(ops, druid, preflight.CONDITION_PREFIX + check,
                                        f"pre-flight check {check}: {problem}", resume=False)
            if not starting:
                if _phase(ops) == "":  # only a request that waits is marked Pending; one that can start goes
                    await self._set_status(ops, "Pending", [])  # to Progressing directly
                return None  # the Druid's next status change enqueues us again
            op = classify(ops, _current_mode(druid))
            first_msg, _ = REQUEST_MESSAGES[op.request_type]
            generation = ops["metadata"].get("generation")
            conditions = cond.set_condition([], op.request_type, "True", op.request_type, first_msg, generation)
            conditions = cond.set_condition(conditions, plans.PLAN, "True", op.kind, op.plan.summary(), generation)
            ops = await self._set_status(ops, "Progressing", conditions)
            await self._event(ops, "Normal", "Starting", f"Start processing for DruidOpsRequest: {ns}/{name}")

        if druid is None or druid["metadata"].get("deletionTimestamp"):
            return await self._fail(ops, druid, "DatabaseNotFound",
                                    f"Druid {ns}/{db_name} was deleted while the ops request was running", resume=False)

        op = _recorded_op(ops, druid)
        timeout = parse_duration(ops["spec"].get("timeout") or "0") or plans.DEFAULT_STEP_TIMEOUT_S
        if not await self._paused(ops, druid):
            waited = _since_last_progress(ops)
            if waited > timeout:  # the provisioner never acknowledged, or someone else holds the pause
                holder = (cond.get_condition((druid.get("status") or {}).get("conditions"), druid_status.PAUSED)
                          or {}).get("message") or "no acknowledgement from the provisioner"
                return await self._fail(ops, druid, PAUSE_STEP, f"timed out after {timeout:g}s waiting to pause "
                                        f"Druid {ns}/{db_name} ({holder})", resume=True)
            if plans.CERTIFICATE_SYNCED in op.plan.phases[0].steps:
                # Certificates are new objects nothing uses yet: let cert-manager issue them during the handshake.
                await self.provisioner.sync_certificates({**druid, "spec": op.target(druid["spec"], ops)})
            return min(RESYNC_S, timeout - waited + 0.5)  # the acknowledgement (a Druid status change) wakes us first

        if not any(cond.get_condition(ops["status"]["conditions"], s) for p in op.plan.phases for s in p.steps):
            await self._event(ops, "Normal", "Successful", f"Successfully paused Druid database: {ns}/{db_name} "
                              f"for DruidOpsRequest: {name}")
        ctx = StepContext(kube=self.kube, informed=self.informed, provisioner=self.provisioner, ops=ops, druid=druid,
                          op=op, phase=op.plan.phases[0], timeout_s=timeout, event=self._event,
                          set_conditions=lambda c: self._set_status(ops, "Progressing", c),
                          client_switch_grace_s=self.client_switch_grace_s)
        for index, phase in enumerate(op.plan.phases):
            if phase.name and ctx.done(phase.name):
                continue
            ctx.phase = phase
            if not ctx.needed(phase):
                ctx.complete_phase(phase, op.plan.recurring_after(index), needed=False)
                continue
            for step in phase.steps:
                try:
                    result = await run_step(step, ctx)
                except Fail as f:
                    await ctx.flush()  # what the pass did before it failed, with its events
                    return await self._fail(ctx.ops, druid, f.step, f.message, resume=True)
                except Blocked as b:
                    await ctx.flush()
                    return await self._fail(ctx.ops, druid, step, b.message, resume=True)
                except ApiError as e:  # not the step's own verdict: it counts against the step's deadline
                    code = e.status.code if e.status else None
                    # Progress as written: what the pass only noted is lost with it, and would look like progress.
                    if code in PERMANENT_API_ERRORS or _since_last_progress(ops) > timeout:
                        return await self._fail(ctx.ops, druid, step, f"{step}: the apiserver answered {code}: "
                                                f"{e.status.message if e.status else e}", resume=True)
                    raise  # retried with backoff until the deadline
                if isinstance(result, Wait):
                    await ctx.flush()
                    self.waiting(ns, db_name, result.on)
                    return result.after
            if phase.name:
                ctx.complete_phase(phase, op.plan.recurring_after(index))
        await ctx.flush()  # the last steps' conditions and events come before Successful's
        return await self._succeed(ctx.ops, druid)

    async def _preflight(self, ops: dict, druid: dict | None,
                         starting: tuple[preflight.Check, ...] = ()) -> tuple[str, str] | None:
        """(check, message) of the first pre-flight check that fails (preflight.py), before anything is paused;
        `starting`: the checks of an op about to start, after the request's own."""
        ns, db = ops["metadata"]["namespace"], ops["spec"]["databaseRef"]["name"]
        if ops["spec"]["type"] not in SUPPORTED_REQUESTS:
            return "RequestSupported", (f"ops request type {ops['spec']['type']} is not supported by kubedruid "
                                        f"(supported: {', '.join(SUPPORTED_REQUESTS)})")
        if druid is None:
            return "DatabaseFound", f"spec.databaseRef {ns}/{db}, is invalid or not found"
        if druid["metadata"].get("deletionTimestamp"):
            return "DatabaseFound", f"Druid {ns}/{db} is being deleted"
        return await preflight.first_failure(preflight.REQUEST_CHECKS + starting, self.kube, ops, druid,
                                             classify(ops, _current_mode(druid)))

    def _may_start(self, ops: dict, druid: dict) -> bool:
        """apply: IfReady waits for phase Ready, or for a Druid that serves with every replica ready but has pods on
        an older revision (the roll is what fixes that); Always waits only for the Druid to have been provisioned."""
        status = druid.get("status") or {}
        if ops["spec"].get("apply", "IfReady") == "Always":
            return cond.is_true(status.get("conditions"), druid_status.PROVISIONED)
        return status.get("phase") == "Ready" or druid_status.serving_on_old_revision(status.get("conditions"))

    async def _paused(self, ops: dict, druid: dict) -> bool:
        """Asks for the pause (Paused=Unknown) and reports whether the provisioner acknowledged it (Paused=True)."""
        ns, name, db = ops["metadata"]["namespace"], ops["metadata"]["name"], druid["metadata"]["name"]
        conditions = (druid.get("status") or {}).get("conditions") or []
        paused = cond.get_condition(conditions, druid_status.PAUSED)
        message = queueing.pause_message(name)
        if paused is None:
            await self._event(ops, "Normal", "Starting", f"Pausing Druid databse: {ns}/{db}")
            new = cond.set_condition(conditions, druid_status.PAUSED, "Unknown", "Paused", message,
                                     druid["metadata"].get("generation"))
            await self.kube.patch(DRUID_API, "Druid", db, {"status": {"conditions": new}}, ns, status=True)
            return False
        if paused.get("message") != message:
            return False  # paused for another op; it must finish first
        if paused.get("status") != "True":
            return False
        return True

    async def _resume(self, ops: dict, druid: dict | None) -> None:
        if druid is None:
            return
        ns, db = druid["metadata"]["namespace"], druid["metadata"]["name"]
        fresh = await self.kube.get(DRUID_API, "Druid", db, ns)
        if fresh is None:
            return
        conditions = (fresh.get("status") or {}).get("conditions") or []
        paused = cond.get_condition(conditions, druid_status.PAUSED)
        if paused is None or paused.get("message") != queueing.pause_message(ops["metadata"]["name"]):
            return
        await self._event(ops, "Normal", "Starting", f"Resuming Druid database: {ns}/{db}")
        await self.kube.patch(DRUID_API, "Druid", db,
                              {"status": {"conditions": cond.remove_condition(conditions, druid_status.PAUSED)}},
                              ns, status=True)
        await self._event(ops, "Normal", "Successful", f"Successfully resumed Druid database: {ns}/{db} for "
                          f"DruidOpsRequest: {ops['metadata']['name']}")

    async def _succeed(self, ops: dict, druid: dict) -> None:
        await self._resume(ops, druid)
        _, closing = REQUEST_MESSAGES[ops["spec"]["type"]]
        conditions = cond.set_condition(ops["status"]["conditions"], plans.SUCCESSFUL, "True", plans.SUCCESSFUL,
                                        closing, ops["metadata"].get("generation"))
        await self._set_status(ops, "Successful", conditions)
        await self._event(ops, "Normal", "Successful", closing)
        self._record(ops, "Successful")
        return None

    async def _fail(self, ops: dict, druid: dict | None, step: str, message: str, resume: bool) -> None:
        conditions = (ops.get("status") or {}).get("conditions") or []
        conditions = cond.set_condition(conditions, step, "False", "Failed", message,
                                        ops["metadata"].get("generation"))
        conditions = cond.set_condition(conditions, "Failed", "True", "Failed", message,
                                        ops["metadata"].get("generation"))
        if resume:
            await self._resume(ops, druid)
        await self._set_status(ops, "Failed", conditions)
        await self._event(ops, "Warning", "Failed", f"Fail to be ready DruidOpsRequest: \"{ops['metadata']['name']}\". "
                          f"Reason: {message}")
        log.info("ops request %s/%s failed: %s", ops["metadata"]["namespace"], ops["metadata"]["name"], message)
        self._record(ops, "Failed")
        return None

    def _record(self, ops: dict, phase: str) -> None:
        OPS_TOTAL.labels(ops["spec"]["type"], phase).inc()
        first = ((ops.get("status") or {}).get("conditions") or [{}])[0]
        started = _parse_time(first.get("lastTransitionTime"))
        if started:
            OPS_SECONDS.labels(ops["spec"]["type"]).observe((_now() - started).total_seconds())
