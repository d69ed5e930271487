"""Thirty Druids on one operator (issue 13's functional facts; tests/bench/bench_scale.py measures the figures): all
become Ready, and once they are, an idle minute changes none of the objects the operator owns and records no event —
and the operator asks the apiserver for nothing while nothing changes (its reads come from its informers)."""

from __future__ import annotations

import time
import urllib.request

from lightkube import codecs
from lightkube.resources.core_v1 import Event, Namespace

from .conftest import wait_for
from .helpers import Druid, resource_versions, scale_druid_manifest

N = 30
IDLE_S = 60


def _requests_made(probe_port: int) -> dict[str, float]:
    """The operator's apiserver requests so far, by verb and kind (its /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{probe_port}/metrics", timeout=10).read().decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith("kubedruid_apiserver_requests_total{")}


def test_thirty_druids_become_ready_and_an_idle_minute_writes_nothing(kube, namespace, operator):
    for i in range(N):
        kube.create(codecs.from_dict(scale_druid_manifest(f"s{i:02d}", namespace)))

    def ready() -> bool:
        phases = [(d.get("status") or {}).get("phase") for d in kube.list(Druid, namespace=namespace)]
        return len(phases) == N and all(p == "Ready" for p in phases)

    wait_for(ready, timeout=600, interval=2, what=f"{N} Druids Ready")
    # Nothing else changes meanwhile: earlier tests' Druids and namespaces are gone.
    def others() -> list[str]:
        return [f"Druid {d.metadata.namespace}/{d.metadata.name}" for d in kube.list(Druid, namespace="*")
                if d.metadata.namespace != namespace] + \
               [f"namespace {n.metadata.name}" for n in kube.list(Namespace) if n.status.phase == "Terminating"]

    try:
        wait_for(lambda: not others(), timeout=240, interval=2, what="earlier tests' Druids and namespaces to go")
    except AssertionError as e:
        raise AssertionError(f"{e}: still there: {', '.join(others())}") from None
    time.sleep(10)  # the last Ready pods' status writes settle

    before = resource_versions(kube, [namespace])
    events_before = {e.metadata.name for e in kube.list(Event, namespace=namespace)}
    requests_before = _requests_made(operator.probe_port)
    time.sleep(IDLE_S)
    after = resource_versions(kube, [namespace])
    new_events = [f"{e.reason}: {e.message}" for e in kube.list(Event, namespace=namespace)
                  if e.metadata.name not in events_before]
    requests = {k: v - requests_before.get(k, 0) for k, v in _requests_made(operator.probe_port).items()
                if v != requests_before.get(k, 0)}

    assert len(before) >= N * 10, f"expected every Druid's PetSets, Services and Secrets, got {len(before)}"
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert changed == [], f"written during an idle minute: {changed[:10]}"
    assert new_events == []
    assert requests == {}, f"the operator asked the apiserver while nothing changed: {requests}"
