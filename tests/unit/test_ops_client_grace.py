"""The ClientsFollowed step waits the operator's client-switch grace, counted from the step's start as recorded in
the op's status: a re-run (the next event, or a restarted operator) waits only what is left."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from kubedruid.controllers.ops import plan as plans
from kubedruid.controllers.ops.optypes import OP_TYPES
from kubedruid.controllers.ops.steps import StepContext, Wait, clients_follow
from kubedruid.kube import conditions as cond


def _context(grace_s: float, conditions: list[dict] | None = None) -> tuple[StepContext, list]:
    events = []

    async def set_conditions(new: list[dict]) -> dict:
        ctx.ops = {**ctx.ops, "status": {"conditions": new}}
        return ctx.ops

    async def event(_ops, kind, reason, message):
        events.append((kind, reason, message))

    add = OP_TYPES["AddTLS"]
    ctx = StepContext(kube=None, provisioner=None, ops={"metadata": {"generation": 1},
                                                        "status": {"conditions": conditions or []}},
                      druid={}, op=add, phase=add.plan.phases[0], timeout_s=300.0, event=event,
                      set_conditions=set_conditions, client_switch_grace_s=grace_s)
    return ctx, events


def _ago(seconds: float) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return at.strftime(cond.RFC3339)


def test_the_default_grace_is_the_plans():
    ctx, _ = _context(plans.CLIENT_SWITCH_GRACE_S)
    assert StepContext.__dataclass_fields__["client_switch_grace_s"].default == plans.CLIENT_SWITCH_GRACE_S == 10.0
    assert ctx.client_switch_grace_s == 10.0


@pytest.mark.parametrize("grace_s", [1.0, 4.0, 30.0])
def test_the_step_waits_the_configured_grace_from_its_start(grace_s):
    ctx, events = _context(grace_s)
    wait = asyncio.run(clients_follow(ctx))
    assert isinstance(wait, Wait) and grace_s - 1.5 < wait.after <= grace_s  # timestamps have whole seconds
    started = ctx.condition(plans.CLIENTS_FOLLOW)
    assert started["status"] == "False" and not events


def test_a_re_run_after_the_grace_records_it_and_waits_no_more():
    started = cond.set_condition([], plans.CLIENTS_FOLLOW, "False", plans.CLIENTS_FOLLOW, "Giving clients time",
                                 1, now=_ago(5))
    ctx, events = _context(4.0, started)
    assert asyncio.run(clients_follow(ctx)) is None
    done = ctx.condition(plans.CLIENTS_FOLLOW)
    assert done["status"] == "True" and done["message"] == "clients had 4s to follow the Services"
    assert events == [("Normal", plans.CLIENTS_FOLLOW, done["message"])]


def test_a_re_run_within_the_grace_waits_only_what_is_left():
    started = cond.set_condition([], plans.CLIENTS_FOLLOW, "False", plans.CLIENTS_FOLLOW, "Giving clients time",
                                 1, now=_ago(6))
    ctx, _ = _context(10.0, started)
    wait = asyncio.run(clients_follow(ctx))
    assert isinstance(wait, Wait) and 3.0 < wait.after <= 4.0
