"""The estimate `kubedruid tls plan` shows: restart times observed in a Druid's past DruidOpsRequests
(controllers/ops/plan.py), summed over the phases that restart every pod."""

from __future__ import annotations

from kubedruid.controllers.ops import plan as plans
from kubedruid.controllers.ops.optypes import OP_TYPES
from kubedruid.druid.tls import TLSMode


def _ops(druid: str, restarts: dict[str, tuple[str, str]], status: str = "True") -> dict:
    conditions = []
    for pod, (evicted, back) in restarts.items():
        _, evict, check = plans.pod_condition_types(pod)
        conditions += [{"type": evict, "status": "True", "lastTransitionTime": evicted},
                       {"type": check, "status": status, "lastTransitionTime": back}]
    return {"spec": {"databaseRef": {"name": druid}}, "status": {"conditions": conditions}}


def test_observed_restarts_are_evictions_to_ready_of_this_druid_only():
    requests = [_ops("dc", {"dc-brokers-0": ("2026-12-05T10:00:00Z", "2026-12-05T10:00:20Z")}),
                _ops("dc", {"dc-brokers-0": ("2026-12-05T11:00:00Z", "2026-12-05T11:00:30Z")}),
                _ops("other", {"other-brokers-0": ("2026-12-05T10:00:00Z", "2026-12-05T10:09:00Z")}),
                _ops("dc", {"dc-routers-0": ("2026-12-05T10:00:00Z", "2026-12-05T10:00:40Z")}, status="False")]
    assert plans.observed_restarts(requests, "dc") == {"dc-brokers-0": [20.0, 30.0]}


def test_a_pod_never_seen_restarting_is_expected_to_take_what_its_petset_peers_took_else_any_pod():
    observed = {"dc-brokers-0": [20.0, 30.0, 100.0], "dc-routers-0": [10.0]}
    expected = plans.expected_restarts(["dc-brokers-0", "dc-brokers-1", "dc-coordinators-0"], observed)
    assert expected == {"dc-brokers-0": 30.0, "dc-brokers-1": 30.0, "dc-coordinators-0": 25.0}
    assert plans.expected_restarts(["dc-brokers-0"], {}) == {}


def test_the_estimate_counts_every_pod_once_per_roll_and_the_clients_grace():
    pods = ["dc-historicals-0", "dc-brokers-0"]
    expected = {"dc-historicals-0": 20.0, "dc-brokers-0": 10.0}
    add = OP_TYPES["AddTLS"].plan
    fixed = plans.FIXED_STEP_S * sum(len(p.steps) for p in add.phases)
    # The historical's 20 s restart covers the clients' grace: the broker's Service drops plaintext after it.
    assert plans.estimate_s(add, pods, expected) == fixed + 3 * 30.0
    quick = {"dc-historicals-0": 4.0, "dc-brokers-0": 10.0}
    assert plans.estimate_s(add, pods, quick) == fixed + 3 * 14.0 + plans.CLIENT_SWITCH_GRACE_S - 4.0, \
        "what the historical's restart leaves of the grace"
    rotate = OP_TYPES["RotateCertificates"].plan
    assert rotate.rolls_when_reloading == 0
    assert plans.estimate_s(rotate, pods, {}) == plans.FIXED_STEP_S * sum(len(p.steps) for p in rotate.phases), \
        "no restart where pods reload: nothing to observe first"


def test_no_estimate_for_a_plan_that_restarts_before_any_restart_was_observed():
    assert plans.estimate_s(OP_TYPES["RemoveTLS"].plan, ["dc-brokers-0"], {}) is None


def test_a_druid_that_cannot_reload_restarts_every_pod_where_others_restart_only_those_that_did_not_reload():
    pods, expected = ["dc-brokers-0"], {"dc-brokers-0": 10.0}
    rotate = OP_TYPES["RotateCertificates"].plan
    stale = [p for p in rotate.phases if p.restart_only_stale]
    assert stale, "rotation has a restart-only-stale phase"
    reloading = {e["phase"]: e["restarts"] for e in plans.outline(rotate, pods, TLSMode.TLS_ONLY)}
    restarting = {e["phase"]: e["restarts"] for e in plans.outline(rotate, pods, TLSMode.TLS_ONLY, reloads=False)}
    assert reloading[stale[0].name] == "only pods that did not reload" and restarting[stale[0].name] == pods
    assert plans.estimate_s(rotate, pods, expected, reloads=False) == \
        plans.estimate_s(rotate, pods, expected) + 10.0 * len(stale)
