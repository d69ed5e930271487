"""Ops against what stands in their way: five requests on one Druid at once, and a PodDisruptionBudget that forbids
evictions. (A pod that never becomes Ready: tests/integration/test_ops.py, the op fails at its timeout naming
the pod, nothing else is evicted, the Druid is resumed.)"""

from __future__ import annotations

import pytest
from lightkube import codecs
from lightkube.resources.policy_v1 import PodDisruptionBudget

from tests.integration.conftest import wait_for
from tests.integration.helpers import Druid as DruidRes
from tests.integration.helpers import ca_issuer, condition, deep_storage_secret, druid_manifest
from tests.integration.test_ops import Ops, PodWatch, _expected_pods, _pod_uids
from tests.integration.test_provisioner import _wait_ready

pytestmark = pytest.mark.integration

ROLLS = {"Restart": 1, "ReconfigureTLS": 3}  # an add of TLS rolls three times


def _druid(kube, ns: str, db: str, delays: dict[str, str] | None = None) -> None:
    deep_storage_secret(kube, ns)
    manifest = druid_manifest(db, ns)
    for role in ("coordinators", "brokers", "historicals", "middleManagers", "routers"):
        manifest["spec"]["topology"].setdefault(role, {})["podTemplate"] = {
            "metadata": {"annotations": {"kubedruid.dev/kwok-ready-delay": (delays or {}).get(role, "1s")}}}
    manifest["spec"]["topology"]["routers"]["replicas"] = 1
    kube.create(codecs.from_dict(manifest))


def _op(kube, ns: str, name: str, db: str, **spec) -> str:
    kube.create(codecs.from_dict({"apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
                                  "metadata": {"name": name, "namespace": ns},
                                  "spec": {"databaseRef": {"name": db}, **spec}}))
    return name


def _span(ops: dict) -> tuple[str, str]:
    times = [c["lastTransitionTime"] for c in ops["status"]["conditions"]]
    return min(times), max(times)


def test_five_ops_on_one_druid_at_once_run_one_at_a_time_and_the_newest_of_each_type_wins(
        plane, kube, namespace, operator, figures):
    ns, db = namespace, "crowded"
    ca_issuer(kube, ns, "crowd-issuer", "crowd-ca")
    _druid(kube, ns, db)
    _wait_ready(kube, db, ns, operator)
    add = {"type": "ReconfigureTLS", "tls": {"issuerRef": {"name": "crowd-issuer", "kind": "Issuer"}}}
    requests = [("restart-1", {"type": "Restart"}), ("add-tls-1", add), ("restart-2", {"type": "Restart"}),
                ("add-tls-2", add), ("restart-3", {"type": "Restart"})]
    with PodWatch(plane, ns, db) as pods:
        for name, spec in requests:
            _op(kube, ns, name, db, timeout="3m", **spec)
        wait_for(lambda: all((kube.get(Ops, n, namespace=ns).get("status") or {}).get("phase")
                             in ("Successful", "Failed", "Skipped") for n, _ in requests),
                 timeout=400, what="all five requests finished")
    final = {n: kube.get(Ops, n, namespace=ns) for n, _ in requests}
    phases = {n: o["status"]["phase"] for n, o in final.items()}
    assert "Failed" not in phases.values(), (phases, operator.log_text()[-3000:])
    assert phases["restart-3"] == phases["add-tls-2"] == "Successful", "the last of each type always runs"
    ran = [n for n, p in phases.items() if p == "Successful"]
    for name, phase in phases.items():
        if phase == "Skipped":  # only for a newer request of its type that exists
            newer = condition(final[name], "Skipped")["message"].split()[2].split("/")[1]
            assert newer in final and final[newer]["spec"]["type"] == final[name]["spec"]["type"], (name, newer)
            assert [n for n, _ in requests].index(newer) > [n for n, _ in requests].index(name)
    spans = sorted(_span(final[n]) for n in ran)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"two ops overlapped: {spans}"
    rolls = sum(ROLLS[final[n]["spec"]["type"]] for n in ran)
    assert pods.restarts() == {p: rolls for p in _expected_pods(db)}, "each pod once per roll of the ops that ran"
    druid = kube.get(DruidRes, db, namespace=ns)
    assert condition(druid, "Paused") is None and druid["spec"]["enableSSL"] is True
    wait_for(lambda: (kube.get(DruidRes, db, namespace=ns).get("status") or {}).get("phase") == "Ready",
             what="the Druid Ready")
    figures["five ops at once"] = {"ran": len(ran), "skipped": list(phases.values()).count("Skipped"),
                                   "restarts per pod": rolls}


def _budget(kube, ns: str, db: str) -> None:
    kube.create(codecs.from_dict({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "keep-them", "namespace": ns},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app.kubernetes.io/instance": db}}}}))


def _finished(kube, ns: str, name: str) -> dict:
    wait_for(lambda: (kube.get(Ops, name, namespace=ns).get("status") or {}).get("phase")
             in ("Successful", "Failed"), timeout=90, what=f"{name} finished")
    return kube.get(Ops, name, namespace=ns)


def test_a_pod_disruption_budget_that_blocks_fails_the_op_and_evicts_nothing_more(kube, namespace, operator, figures):
    """Blocking before the op starts: the pre-flight check refuses it, nothing paused. Blocking from the middle of a
    roll on: the op waits for the budget until its timeout, then fails naming the pod; no other pod is evicted."""
    ns, db = namespace, "guarded"
    _druid(kube, ns, db, {"historicals": "4s"})
    _wait_ready(kube, db, ns, operator)
    _budget(kube, ns, db)
    wait_for(lambda: kube.get(PodDisruptionBudget, "keep-them", namespace=ns).status.observedGeneration,
             what="the budget observed by the disruption controller")
    before = _pod_uids(kube, ns, db)
    ops = _finished(kube, ns, _op(kube, ns, "restart-refused", db, type="Restart", timeout="10s"))
    assert ops["status"]["phase"] == "Failed" and condition(ops, "Preflight--EvictionsAllowed"), ops["status"]
    assert _pod_uids(kube, ns, db) == before

    kube.delete(PodDisruptionBudget, "keep-them", namespace=ns)
    _op(kube, ns, "restart-blocked", db, type="Restart", timeout="10s")
    first = f"EvictPod--{db}-historicals-0"
    # True once the eviction went through (False is recorded just before it is asked for)
    wait_for(lambda: (condition(kube.get(Ops, "restart-blocked", namespace=ns), first) or {}).get("status") == "True",
             interval=0.05, what="the first eviction done")
    _budget(kube, ns, db)  # from now on, while historicals-0 comes back, no eviction is allowed
    ops = _finished(kube, ns, "restart-blocked")
    assert ops["status"]["phase"] == "Failed", ops["status"]
    failed = condition(ops, "Failed")["message"]
    assert "timed out after 10s" in failed and "PodDisruptionBudget" in failed, failed
    after = _pod_uids(kube, ns, db)
    assert {p for p in before if after.get(p) != before[p]} == {f"{db}-historicals-0"}, "only the first pod"
    wait_for(lambda: condition(kube.get(DruidRes, db, namespace=ns), "Paused") is None, timeout=30,
             what="the Druid resumed")
    figures["PodDisruptionBudget blocking"] = {"before the op": "Failed at pre-flight, nothing paused",
                                             "mid-roll": "Failed at the 10 s timeout", "pods evicted": 1}
