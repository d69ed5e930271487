"""An op survives an outage of a control-plane component in its middle: kube-apiserver and etcd restarted while a
roll runs, cert-manager stopped while an add waits for its certificates and started again. The op ends Successful,
each pod was restarted exactly once per roll (counted from pod UIDs by a watch that reconnects), and the Druid is
not left paused."""

from __future__ import annotations

import threading
import time

import pytest
from lightkube import codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod

from kubedruid.devcluster import plane as plane_mod
from tests.integration.conftest import wait_for
from tests.integration.helpers import ca_issuer, condition, deep_storage_secret, druid_manifest
from tests.integration.helpers import Druid as DruidRes
from tests.integration.test_provisioner import _wait_ready


pytestmark = pytest.mark.integration

Ops = create_namespaced_resource("ops.kubedb.com", "v1alpha1", "DruidOpsRequest", "druidopsrequests")
ROLES = ("coordinators", "brokers", "historicals", "middleManagers", "routers")


class ReadyPods:
    """Every pod UID seen Ready, by a watch that starts again after the apiserver goes away."""

    def __init__(self, plane, ns: str, db: str):
        self.plane, self.ns, self.db = plane, ns, db
        self.seen: dict[str, set[str]] = {}
        self._stop = threading.Event()

    def __enter__(self):
        threading.Thread(target=self._run, daemon=True).start()
        wait_for(lambda: len(self.seen) >= len(ROLES), what="the pod watch to start")
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                for _, pod in self.plane.client().watch(Pod, namespace=self.ns,
                                                        labels={"app.kubernetes.io/instance": self.db}):
                    ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
                    if ready and "kubedb.com/role" in pod.metadata.labels:
                        self.seen.setdefault(pod.metadata.name, set()).add(pod.metadata.uid)
                    if self._stop.is_set():
                        return
            except Exception:  # the apiserver or etcd is down: watch again (a re-list adds nothing new)
                time.sleep(0.5)

    def __exit__(self, *exc):
        self._stop.set()

    def restarts(self) -> dict[str, int]:
        return {pod: len(uids) - 1 for pod, uids in self.seen.items()}


def _slow_druid(kube, ns: str, db: str, **spec) -> None:
    manifest = druid_manifest(db, ns, **spec)
    for role in ROLES:  # a roll slow enough to be caught in its middle
        manifest["spec"]["topology"].setdefault(role, {})["podTemplate"] = {
            "metadata": {"annotations": {"kubedruid.dev/kwok-ready-delay": "2s"}}}
    kube.create(codecs.from_dict(manifest))


def _op(kube, ns: str, name: str, db: str, **spec) -> None:
    kube.create(codecs.from_dict({"apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
                                  "metadata": {"name": name, "namespace": ns},
                                  "spec": {"databaseRef": {"name": db}, "timeout": "3m", **spec}}))


def _outage(plane, component: str, down_s: float) -> float:
    """`component` down for `down_s`, then the plane up again. kube-scheduler is down with it and starts after it:
    on this kwok plane an apiserver or etcd restart while a pod is being bound can corrupt the running scheduler's
    cache ("Pod updated on a different node than previously added to"), after which it schedules nothing (one run in
    two on 2026-12-05). A scheduler started afterwards builds its cache from a fresh list, so what the test measures
    is the operator's outage, not a scheduler's bug."""
    t0 = time.monotonic()
    plane_mod.stop_component(plane.state_dir, component)
    plane_mod.stop_component(plane.state_dir, "kube-scheduler")
    time.sleep(down_s)
    plane_mod.up(plane.state_dir)
    return round(time.monotonic() - t0, 1)


def _reached(kube, ns: str, name: str, type_: str):
    try:
        return condition(kube.get(Ops, name, namespace=ns), type_)
    except Exception:
        return None


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_roll_survives_a_restart_of(component, plane, kube, namespace, operator, figures):
    ns, db = namespace, "outage"
    deep_storage_secret(kube, ns)
    _slow_druid(kube, ns, db)
    _wait_ready(kube, db, ns, operator)
    with ReadyPods(plane, ns, db) as pods:
        _op(kube, ns, "restart", db, type="Restart")
        wait_for(lambda: _reached(kube, ns, "restart", f"EvictPod--{db}-middlemanagers-0"), timeout=120,
                 interval=0.1, what="the roll's second pod")
        outage = _outage(plane, component, 2.0)
        wait_for(lambda: (_reached(kube, ns, "restart", "Successful") or {}).get("status") == "True",
                 timeout=240, what="the Restart to succeed after the outage")
        _wait_ready(kube, db, ns, operator)
    assert set(pods.restarts().values()) == {1}, pods.restarts()
    assert condition(kube.get(DruidRes, db, namespace=ns), "Paused") is None
    figures[f"{component} restarted mid-roll"] = {"outage s": outage, "op": "Successful",
                                                  "restarts per pod": 1}


def test_an_add_survives_cert_manager_stopped_while_it_waits_for_certificates(plane, kube, namespace, operator,
                                                                               figures):
    ns, db = namespace, "no-issuance"
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, ns)
    _slow_druid(kube, ns, db)
    _wait_ready(kube, db, ns, operator)
    with ReadyPods(plane, ns, db) as pods:
        plane_mod.stop_component(plane.state_dir, "cert-manager")
        stopped_at = time.monotonic()
        try:
            _op(kube, ns, "add", db, type="ReconfigureTLS",
                tls={"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "druid-ca-issuer"}})
            wait_for(lambda: _reached(kube, ns, "add", "Plan"), timeout=60, what="the add to start")
            time.sleep(10)  # the op waits for certificates nobody issues; nothing restarts meanwhile
            synced = _reached(kube, ns, "add", "CertificateSynced")
            assert synced is None or synced["status"] != "True", synced
            assert set(pods.restarts().values()) == {0}, pods.restarts()
        finally:
            plane_mod.up(plane.state_dir)
        stopped_s = round(time.monotonic() - stopped_at, 1)
        wait_for(lambda: (_reached(kube, ns, "add", "Successful") or {}).get("status") == "True",
                 timeout=300, what="the add to succeed once cert-manager is back")
    assert set(pods.restarts().values()) == {3}, pods.restarts()
    assert kube.get(DruidRes, db, namespace=ns)["spec"]["enableSSL"] is True
    assert condition(kube.get(DruidRes, db, namespace=ns), "Paused") is None
    figures["cert-manager stopped during an add"] = {"stopped s": stopped_s, "op": "Successful",
                                                     "restarts per pod": 3}
