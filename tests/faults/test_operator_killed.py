"""The operator SIGKILLed at the condition transitions of every plan (add, rotate, update issuer, remove, restart)
and started again: each op ends Successful with its phases in order, each pod was restarted exactly once per roll
(counted from pod UIDs, not from what the operator says), and the Druid is not left paused.

The light run kills at the first condition of each kind (a step type such as EvictPod, a phase, a KubeDB
condition); KUBEDRUID_FAULTS=full kills at every transition (every condition that appears or changes status)."""

from __future__ import annotations

import time

import pytest
from lightkube import codecs

from tests.integration.conftest import wait_for
from tests.integration.helpers import Druid as DruidRes
from tests.integration.helpers import ca_issuer, condition
from tests.integration.test_ops import PHASES, Ops, PodWatch, _expected_pods
from tests.integration.test_provisioner import _wait_ready

from .conftest import FULL
from .test_op_contention import _druid

pytestmark = pytest.mark.integration

ISSUER = {"kind": "Issuer", "apiGroup": "cert-manager.io"}
# The guide's four ops and a Restart, in the order they apply to one Druid: (name, spec, plan, rolls).
PLANS = [
    ("add", {"type": "ReconfigureTLS", "tls": {"issuerRef": {"name": "first-issuer", **ISSUER}}}, "AddTLS", 3),
    ("rotate", {"type": "ReconfigureTLS", "tls": {"rotateCertificates": True}}, "RotateCertificates", 1),
    ("update", {"type": "ReconfigureTLS", "tls": {"issuerRef": {"name": "second-issuer", **ISSUER}}}, "UpdateTLS", 3),
    ("remove", {"type": "ReconfigureTLS", "tls": {"remove": True}}, "RemoveTLS", 2),
    ("restart", {"type": "Restart"}, "Restart", 1),
]


def _transitions(ops: dict) -> set:
    """What has happened so far, as the kill points count it."""
    conditions = (ops.get("status") or {}).get("conditions") or []
    if FULL:
        return {(c["type"], c["status"]) for c in conditions}
    return {c["type"].split("--")[0] for c in conditions}


def _run_killing(kube, operator, ns: str, name: str) -> int:
    """Waits for op `name` to finish, killing and restarting the operator at each new transition; the kills."""
    killed_at: set = set()
    kills = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ops = kube.get(Ops, name, namespace=ns)
        if (ops.get("status") or {}).get("phase") in ("Successful", "Failed", "Skipped"):
            return kills
        new = _transitions(ops) - killed_at
        if new:
            operator.kill()
            killed_at |= new
            kills += 1
            operator.start()
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish in 600 s")


def test_every_plan_survives_sigkill_at_its_transitions(plane, kube, namespace, operator, figures):
    ns, db = namespace, "killed"
    ca_issuer(kube, ns, "first-issuer", "first-ca")
    ca_issuer(kube, ns, "second-issuer", "second-ca")
    _druid(kube, ns, db)
    _wait_ready(kube, db, ns, operator)

    kills = {}
    for name, spec, plan, rolls in PLANS:
        with PodWatch(plane, ns, db) as pods:
            kube.create(codecs.from_dict({"apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
                                          "metadata": {"name": name, "namespace": ns},
                                          "spec": {"databaseRef": {"name": db}, "timeout": "3m", **spec}}))
            kills[name] = _run_killing(kube, operator, ns, name)
            ops = kube.get(Ops, name, namespace=ns)
            assert ops["status"]["phase"] == "Successful", (ops["status"], operator.log_text()[-3000:])
        assert pods.restarts() == {p: rolls for p in _expected_pods(db)}, (name, pods.restarts())
        assert condition(ops, "Plan")["reason"] == plan
        types = [c["type"] for c in ops["status"]["conditions"]]
        assert [t for t in types if t in PHASES.get(plan, [])] == PHASES.get(plan, []), (name, types)
        wait_for(lambda: condition(kube.get(DruidRes, db, namespace=ns), "Paused") is None, timeout=30,
                 what=f"the Druid resumed after {name}")
        assert kills[name] >= 1, f"{name}: the operator was never killed"
    figures["operator SIGKILLed"] = {**{f"{k} kills": v for k, v in kills.items()},
                                    "mode": "every transition" if FULL else "each condition kind"}
