"""Pre-flight checks (controllers/ops/preflight.py), each made to fail on purpose on the real control plane: the op
ends Failed with the check's name, the Druid is never paused, no Certificate is made and no pod is touched."""

from __future__ import annotations

import pytest
from lightkube import codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret
from lightkube.resources.policy_v1 import PodDisruptionBudget

from .conftest import wait_for
from .helpers import Certificate, Issuer, ca_issuer, condition, deep_storage_secret, druid_manifest
from .helpers import Druid as DruidRes
from .test_ops import _events, _ops, _pod_uids, _wait_phase
from .test_provisioner import _wait_ready

pytestmark = pytest.mark.integration

ISSUER = {"apiGroup": "cert-manager.io", "kind": "Issuer"}


def _refused(kube, ns, db, name, check, fragment, operator, uids_before):
    ops = _wait_phase(kube, name, ns, "Failed", operator)
    named = condition(ops, f"Preflight--{check}")
    assert named and named["status"] == "False" and fragment in named["message"], ops["status"]
    assert named["message"].startswith(f"pre-flight check {check}: ")
    assert condition(ops, "Failed")["message"] == named["message"]
    assert {c["type"] for c in ops["status"]["conditions"]} == {f"Preflight--{check}", "Failed"}, "no step ran"
    wait_for(lambda: any(e.type == "Warning" and check in e.message for e in _events(kube, ns, name)), timeout=10,
             what="the op's Warning event, posted in the background")
    druid = kube.get(DruidRes, db, namespace=ns)
    assert condition(druid, "Paused") is None and druid["status"]["phase"] == "Ready"
    assert _pod_uids(kube, ns, db) == uids_before, "no pod was touched"
    assert not list(kube.list(Certificate, namespace=ns)), "nothing was issued"


def test_each_preflight_check_fails_the_op_before_anything_is_touched(kube, namespace, operator):
    ns, db = namespace, "preflight"
    deep_storage_secret(kube, ns)
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    kube.create(Issuer(metadata=ObjectMeta(name="not-ready"), spec={"ca": {"secretName": "no-such-ca"}}),
                namespace=ns)
    kube.create(Secret(metadata=ObjectMeta(name="weak-cred"), stringData={"keystore_password": "short"}),
                namespace=ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns, keystoreCredSecret={"name": "weak-cred"})))
    _wait_ready(kube, db, ns, operator)
    uids = _pod_uids(kube, ns, db)

    _ops(kube, "rotate-without-tls", ns, db, type="ReconfigureTLS", tls={"rotateCertificates": True})
    _refused(kube, ns, db, "rotate-without-tls", "RequestValid", "has no TLS", operator, uids)

    _ops(kube, "add-ghost-issuer", ns, db, type="ReconfigureTLS", tls={"issuerRef": {**ISSUER, "name": "ghost"}})
    _refused(kube, ns, db, "add-ghost-issuer", "IssuerReady", "Issuer ghost (spec.tls.issuerRef) does not exist",
             operator, uids)

    _ops(kube, "add-issuer-not-ready", ns, db, type="ReconfigureTLS",
         tls={"issuerRef": {**ISSUER, "name": "not-ready"}})
    _refused(kube, ns, db, "add-issuer-not-ready", "IssuerReady", "Issuer not-ready (spec.tls.issuerRef) is not Ready",
             operator, uids)

    _ops(kube, "add-weak-password", ns, db, type="ReconfigureTLS",
         tls={"issuerRef": {**ISSUER, "name": "druid-ca-issuer"}})
    _refused(kube, ns, db, "add-weak-password", "KeystorePasswordUsable",
             "keystore_password is shorter than 6 characters", operator, uids)

    # A budget over the historicals that allows no eviction: the restart would wait on it with the Druid paused.
    kube.create(codecs.from_dict({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "historicals-stay"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app.kubernetes.io/instance": db,
                                                                   "kubedb.com/role": "historicals"}}}}), namespace=ns)
    wait_for(lambda: (kube.get(PodDisruptionBudget, "historicals-stay", namespace=ns).status.expectedPods or 0) == 1,
             what="the disruption controller to count the budget's pods")
    _ops(kube, "restart-blocked", ns, db, type="Restart")
    _refused(kube, ns, db, "restart-blocked", "EvictionsAllowed",
             f"PodDisruptionBudget {ns}/historicals-stay allows no eviction now (disruptionsAllowed 0) of "
             f"{db}-historicals-0", operator, uids)

    # The same Restart once the budget allows it runs: the checks judged the cluster, not the request.
    kube.delete(PodDisruptionBudget, "historicals-stay", namespace=ns)
    _ops(kube, "restart-allowed", ns, db, type="Restart", timeout="5m")
    _wait_phase(kube, "restart-allowed", ns, "Successful", operator)
