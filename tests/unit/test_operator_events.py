"""What each watched object's event wakes (controllers/operator.py): a running op is woken by what it waits for and
not by every status write of a roll; a finished or deleted op has its Druid looked at again (a pause it held)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kubedruid.controllers.operator import Controllers
from kubedruid.specs import names

NS, DB = "demo", "dc"


def _controllers() -> Controllers:
    return Controllers(kube=SimpleNamespace(fresh=None), petset_enabled=True)  # no request is made here


def _pod(ready: bool, going: bool = False) -> dict:
    return {"metadata": {"name": f"{DB}-brokers-0", "namespace": NS,
                         "labels": names.offshoot_labels(DB, None),
                         "ownerReferences": [{"kind": "PetSet", "name": f"{DB}-brokers"}],
                         **({"deletionTimestamp": "2026-12-06T10:00:00Z"} if going else {})},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_the_petset_controllers_writes_wake_the_provisioner_not_a_running_op():
    c = _controllers()
    c.on_petset("MODIFIED", {"metadata": {"name": f"{DB}-brokers", "namespace": NS,
                                          "labels": names.offshoot_labels(DB, None)}})
    assert not c.druids.idle() and not c.petsets.idle()
    assert c.ops.idle()


@pytest.mark.parametrize("type_, pod, wakes", [
    ("ADDED", _pod(ready=False), True),  # a replacement came
    ("MODIFIED", _pod(ready=False), False),  # scheduled, started: nothing an op waits for
    ("MODIFIED", _pod(ready=True, going=True), False),  # evicted, terminating
    ("MODIFIED", _pod(ready=True), True),  # back in service
    ("DELETED", _pod(ready=False), True),
])
def test_a_pods_event_wakes_an_op_when_the_pod_comes_goes_or_is_ready(type_, pod, wakes):
    c = _controllers()
    c.on_pod(type_, pod)
    assert not c.petsets.idle(), "the PetSet controller hears of every change of its pods"
    assert c.ops.idle() is not wakes


def _request(phase: str | None, generation: int = 1, observed: int | None = 1) -> dict:
    status = {"phase": phase, "observedGeneration": observed} if phase else {}
    return {"metadata": {"name": "add-tls", "namespace": NS, "generation": generation},
            "spec": {"databaseRef": {"name": DB}}, "status": status}


@pytest.mark.parametrize("phase, looks_again", [("Progressing", False), ("Successful", True), ("Failed", True)])
def test_a_finished_op_has_its_druid_looked_at_again(phase, looks_again):
    c = _controllers()
    c.on_ops_request("ADDED", _request(phase))
    assert c.druids.idle() is not looks_again


@pytest.mark.parametrize("type_, request_, wakes", [
    ("ADDED", _request(None), True),  # created
    ("MODIFIED", _request(None), True),  # its creation's version recorded, no status yet
    ("MODIFIED", _request("Progressing"), False),  # the ops-manager's own status write
    ("MODIFIED", _request("Progressing", generation=2), True),  # edited since
    ("DELETED", _request("Progressing"), True),  # cancelled
])
def test_a_requests_event_wakes_the_ops_manager_unless_it_is_its_own_status_write(type_, request_, wakes):
    c = _controllers()
    c.on_ops_request(type_, request_)
    assert c.ops.idle() is not wakes
