"""The pure parts of the pre-flight checks (controllers/ops/preflight.py); each check is made to fail on purpose
against the real control plane in tests/integration/test_preflight.py."""

from __future__ import annotations

import asyncio

import pytest

from kubedruid.controllers.ops import preflight

POD = {"app.kubernetes.io/instance": "db", "kubedb.com/role": "historicals"}


def test_a_budget_selects_pods_as_kubernetes_label_selectors_do():
    assert preflight._selects({}, POD)  # an empty selector selects every pod
    assert preflight._selects({"matchLabels": {"kubedb.com/role": "historicals"}}, POD)
    assert not preflight._selects({"matchLabels": {"kubedb.com/role": "brokers"}}, POD)
    expr = {"key": "kubedb.com/role", "operator": "In", "values": ["brokers", "historicals"]}
    assert preflight._selects({"matchExpressions": [expr]}, POD)
    assert not preflight._selects({"matchExpressions": [{**expr, "operator": "NotIn"}]}, POD)
    assert preflight._selects({"matchExpressions": [{"key": "app.kubernetes.io/instance", "operator": "Exists"}]}, POD)
    assert not preflight._selects({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, POD)
    assert preflight._selects({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, POD)
    both = {"matchLabels": {"app.kubernetes.io/instance": "db"}, "matchExpressions": [{**expr, "values": ["x"]}]}
    assert not preflight._selects(both, POD)  # every requirement must hold


def test_checks_have_names_of_their_own_and_cluster_state_is_judged_only_at_start():
    names = [c.name for c in preflight.REQUEST_CHECKS + preflight.START_CHECKS]
    assert len(names) == len(set(names))
    assert [c.name for c in preflight.START_CHECKS] == ["EvictionsAllowed"]


def test_checks_run_at_once_but_are_judged_in_order():
    """The first failure in order is reported, and a check's error counts only if every check before it passed."""
    async def passes(_):
        return None

    async def fails(_):
        return "no"

    async def breaks(_):
        raise RuntimeError("a read that went wrong")

    def first(*runs):
        checks = tuple(preflight.Check(f"c{i}", run) for i, run in enumerate(runs))
        return asyncio.run(preflight.first_failure(checks, None, {"metadata": {"namespace": "ns"}}, {}, None))

    assert first(passes, passes) is None
    assert first(passes, fails, breaks) == ("c1", "no"), "an error after a failure is not reached"
    assert first(passes, fails, fails) == ("c1", "no")
    with pytest.raises(RuntimeError):
        first(passes, breaks, fails)
