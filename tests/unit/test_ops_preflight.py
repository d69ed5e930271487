"""The pure parts of the pre-flight checks (controllers/ops/preflight.py); each check is made to fail on purpose
against the real control plane in tests/integration/test_preflight.py."""

from __future__ import annotations

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
