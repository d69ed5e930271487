"""What each watched object's event wakes (controllers/operator.py): a running op is woken by what it waits for and
not by every status write of a roll; a finished or deleted op has its Druid looked at again (a pause it held)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from kubedruid.controllers.operator import Controllers
from kubedruid.controllers.ops.steps import CERTIFICATE_EVENTS, ENDPOINT_EVENTS, NO_EVENTS, POD_EVENTS
from kubedruid.specs import names

NS, DB = "demo", "dc"


def _controllers() -> Controllers:
    return Controllers(kube=SimpleNamespace(fresh=None), petset_enabled=True)  # no request is made here


def _pod(ready: bool, going: bool = False, evicting: bool = False) -> dict:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if evicting:  # what the eviction API sets before it deletes the pod
        conditions.append({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"})
    return {"metadata": {"name": f"{DB}-brokers-0", "namespace": NS,
                         "labels": names.offshoot_labels(DB, None),
                         "ownerReferences": [{"kind": "PetSet", "name": f"{DB}-brokers"}],
                         **({"deletionTimestamp": "2026-12-06T10:00:00Z"} if going else {})},
            "status": {"phase": "Running", "conditions": conditions}}


def test_the_petset_controllers_writes_wake_the_provisioner_not_a_running_op():
    c = _controllers()
    c.on_petset("MODIFIED", {"metadata": {"name": f"{DB}-brokers", "namespace": NS,
                                          "labels": names.offshoot_labels(DB, None)}})
    assert not c.druids.idle() and not c.petsets.idle()
    assert c.ops.idle()


@pytest.mark.parametrize("type_, pod, wakes", [
    ("ADDED", _pod(ready=False), False),  # a replacement came: it is not in service yet
    ("MODIFIED", _pod(ready=False), False),  # scheduled, started: nothing an op waits for
    ("MODIFIED", _pod(ready=True, evicting=True), False),  # the eviction marked it
    ("MODIFIED", _pod(ready=True, going=True), False),  # evicted, terminating
    ("DELETED", _pod(ready=True, going=True), False),  # gone
    ("MODIFIED", _pod(ready=True), True),  # back in service
    ("ADDED", _pod(ready=True), True),  # seen first once in service (a watch that started again)
])
def test_a_pods_event_wakes_an_op_only_when_the_pod_is_in_service(type_, pod, wakes):
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


def _owned(kind: str) -> dict:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": f"{DB}-x", "namespace": NS,
                                                           "labels": names.offshoot_labels(DB, None)}}


def _certificate() -> dict:
    return {**_owned("Certificate"), "apiVersion": "cert-manager.io/v1"}


def _endpoint_slice() -> dict:
    """As the EndpointSlice controller writes it: the Service's labels copied."""
    slice_ = {**_owned("EndpointSlice"), "apiVersion": "discovery.k8s.io/v1"}
    slice_["metadata"]["labels"] = {**slice_["metadata"]["labels"], "kubernetes.io/service-name": f"{DB}-brokers"}
    return slice_


def _druid() -> dict:
    return {"apiVersion": names.DRUID_API, "kind": "Druid", "metadata": {"name": DB, "namespace": NS},
            "spec": {"version": "28.0.1"}}


EVENTS = {  # what happens around a Druid during an op: (handler, event type, object)
    "a pod back in service": ("on_pod", "MODIFIED", _pod(ready=True)),
    "a Secret of ours written": ("on_owned", "MODIFIED", _owned("Secret")),
    "a Service of ours written": ("on_owned", "MODIFIED", _owned("Service")),
    "cert-manager's Certificate status": ("on_certificate", "MODIFIED", _certificate()),
    "a Service's endpoints": ("on_endpoint_slice", "MODIFIED", _endpoint_slice()),
    "the Druid": ("on_druid", "MODIFIED", _druid()),
    "a request": ("on_ops_request", "ADDED", _request(None)),
}


@pytest.mark.parametrize("waiting_on, wakes_on", [
    (None, set(EVENTS)),  # no pass has said what it waits for, or it may be anything
    (POD_EVENTS, {"a pod back in service", "the Druid", "a request"}),
    (CERTIFICATE_EVENTS, {"a Secret of ours written", "cert-manager's Certificate status", "the Druid", "a request"}),
    (ENDPOINT_EVENTS, {"a Service's endpoints", "the Druid", "a request"}),
    (NO_EVENTS, {"the Druid", "a request"}),
])
def test_a_waiting_op_is_woken_by_what_it_waits_for_and_by_its_druid_and_requests(waiting_on, wakes_on):
    woken = set()
    for what, (handler, type_, obj) in EVENTS.items():
        c = _controllers()
        c.ops_manager.waiting(NS, DB, waiting_on)
        getattr(c, handler)(type_, obj)
        if not c.ops.idle():
            woken.add(what)
    assert woken == wakes_on


def test_with_no_wait_recorded_every_event_wakes_the_op():
    woken = set()
    for what, (handler, type_, obj) in EVENTS.items():
        c = _controllers()
        getattr(c, handler)(type_, obj)
        if not c.ops.idle():
            woken.add(what)
    assert woken == set(EVENTS)


@pytest.mark.parametrize("during, waits_on, again", [
    ("Secret", POD_EVENTS, 5.0),  # the roll's own write: the pass's wait for a pod stands
    ("Service", NO_EVENTS, 5.0),
    ("Pod", POD_EVENTS, 0.0),  # what it waits for may have come before the pass named it: at once
    ("Secret", None, 0.0),  # a wait for anything
    ("Secret", CERTIFICATE_EVENTS, 0.0),
])
def test_an_event_during_a_pass_runs_it_again_only_if_the_wait_it_ended_with_may_end_by_it(during, waits_on, again):
    c = _controllers()
    manager = c.ops_manager
    woken_at_once = []

    async def a_pass(namespace: str, db: str) -> float:
        woken_at_once.append(manager.wakes(namespace, db, during))  # the event, while the pass runs
        manager.waiting(namespace, db, waits_on)
        return 5.0

    manager._reconcile = a_pass
    assert asyncio.run(manager.reconcile(NS, DB)) == again
    assert woken_at_once == [False], "the pass's end decides, not the event"
    assert manager.wakes(NS, DB, "Pod") is (waits_on is None or "Pod" in waits_on), "between passes: the wait"


def test_a_services_endpoints_concern_only_a_running_op_not_the_provisioner():
    c = _controllers()
    c.on_endpoint_slice("MODIFIED", _endpoint_slice())
    assert c.druids.idle() and c.petsets.idle()
    assert not c.ops.idle()
