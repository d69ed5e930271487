"""ClientsFollowed: before a roll's first Service closes a port, clients get the operator's client-switch grace,
counted from when the previous phase moved the Services as recorded in the op's status: a re-run (the next event,
or a restarted operator) waits only what is left."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from kubedruid.controllers.ops import plan as plans
from kubedruid.controllers.ops.optypes import OP_TYPES
from kubedruid.controllers.ops.steps import StepContext, Wait, clients_followed
from kubedruid.kube import conditions as cond


def _context(grace_s: float, conditions: list[dict]) -> tuple[StepContext, list]:
    events = []

    async def set_conditions(new: list[dict]) -> dict:
        ctx.ops = {**ctx.ops, "status": {"conditions": new}}
        return ctx.ops

    async def event(_ops, kind, reason, message):
        events.append((kind, reason, message))

    add = OP_TYPES["AddTLS"]
    ctx = StepContext(kube=None, informed=None, provisioner=None, ops={"metadata": {"generation": 1},
                                                        "status": {"conditions": conditions}},
                      druid={}, op=add, phase=CLOSING, timeout_s=300.0, event=event,
                      set_conditions=set_conditions, client_switch_grace_s=grace_s)
    return ctx, events


ADD = OP_TYPES["AddTLS"].plan
CLOSING = next(p for p in ADD.phases if ADD.closes_service_ports(p))  # PlaintextClosed
MOVED = ADD.previous(CLOSING).name  # ServicesSwitchedToTLS


def _moved(seconds_ago: float) -> list[dict]:
    return cond.set_condition([], MOVED, "True", MOVED, "the Druid's Services point at the TLS ports", 1,
                              now=_ago(seconds_ago))


def _ago(seconds: float) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return at.strftime(cond.RFC3339)


def test_the_default_grace_is_the_plans():
    ctx, _ = _context(plans.CLIENT_SWITCH_GRACE_S, [])
    assert StepContext.__dataclass_fields__["client_switch_grace_s"].default == plans.CLIENT_SWITCH_GRACE_S == 10.0
    assert ctx.client_switch_grace_s == 10.0


@pytest.mark.parametrize("grace_s", [1.0, 4.0, 30.0])
def test_the_gate_waits_the_configured_grace_from_the_services_move(grace_s):
    ctx, events = _context(grace_s, _moved(0))
    wait = asyncio.run(clients_followed(ctx))
    # The move's time has whole seconds: the gate counts from the end of that second, never less than the grace.
    assert isinstance(wait, Wait) and grace_s <= wait.after <= grace_s + 1.0
    started = ctx.condition(plans.CLIENTS_FOLLOW)
    assert started["status"] == "False" and not events


def test_a_re_run_after_the_grace_records_it_and_waits_no_more():
    ctx, events = _context(4.0, _moved(6))
    assert asyncio.run(clients_followed(ctx)) is None
    done = ctx.condition(plans.CLIENTS_FOLLOW)
    assert done["status"] == "True" and done["message"] == "clients had 4s to follow the Services"
    assert events == [("Normal", plans.CLIENTS_FOLLOW, done["message"])]
    assert asyncio.run(clients_followed(ctx)) is None and len(events) == 1, "recorded once"


def test_a_re_run_within_the_grace_waits_only_what_is_left():
    ctx, _ = _context(10.0, _moved(6))
    wait = asyncio.run(clients_followed(ctx))
    assert isinstance(wait, Wait) and 4.0 <= wait.after <= 5.0
