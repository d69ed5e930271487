"""A Druid's phase from its conditions (spec kubedb-api §1.6, KubeDB pkg/phase) and the health conditions."""

from __future__ import annotations

import pytest

from kubedruid.kube.conditions import get_condition
from kubedruid.specs import status as st

T0 = "2026-01-01T00:00:00Z"


def conds(**statuses: str) -> list[dict]:
    return [{"type": t, "status": s, "reason": "", "message": "", "lastTransitionTime": T0}
            for t, s in statuses.items()]


HEALTHY = dict(ProvisioningStarted="True", DatabaseDependencyReady="True", ReplicaReady="True",
               AcceptingConnection="True", Ready="True", Provisioned="True")


@pytest.mark.parametrize("conditions,phase", [
    # HealthCheckPaused=True wins over everything
    (conds(**HEALTHY, HealthCheckPaused="True"), "Unknown"),
    (conds(ProvisioningStarted="True", HealthCheckPaused="True", Halted="True"), "Unknown"),
    # base: provisioning started
    (conds(ProvisioningStarted="True"), "Provisioning"),
    (conds(ProvisioningStarted="True", ReplicaReady="False", AcceptingConnection="False", Ready="False"),
     "Provisioning"),  # not provisioned yet: unhealthy conditions do not count
    (conds(ProvisioningStarted="True", ReplicaReady="True", AcceptingConnection="True", Ready="True"),
     "Provisioning"),  # Ready without Provisioned is not Ready
    # Halted
    (conds(ProvisioningStarted="True", Halted="True"), "Halted"),
    (conds(**HEALTHY, Halted="True"), "Halted"),
    # provisioned
    (conds(**HEALTHY), "Ready"),
    (conds(**{**HEALTHY, "AcceptingConnection": "False"}), "NotReady"),
    (conds(**{**HEALTHY, "AcceptingConnection": "False", "ReplicaReady": "False", "Ready": "False"}), "NotReady"),
    (conds(**{**HEALTHY, "ReplicaReady": "False"}), "Critical"),
    (conds(**{**HEALTHY, "Ready": "False"}), "Critical"),
    (conds(**{**HEALTHY, "HealthCheckPaused": "False"}), "Ready"),
    (conds(**{**HEALTHY, "Halted": "False"}), "Ready"),
    # Paused does not influence the phase
    (conds(**HEALTHY, Paused="True"), "Ready"),
    (conds(**{**HEALTHY, "Ready": "False"}, Paused="True"), "Critical"),
    (conds(ProvisioningStarted="True", Paused="True"), "Provisioning"),
    # data restore (KubeDB pkg/phase)
    (conds(ProvisioningStarted="True", DataRestoreStarted="True"), "DataRestoring"),
    (conds(ProvisioningStarted="True", DataRestoreStarted="True", DataRestored="False"), "NotReady"),
    (conds(**HEALTHY, DataRestoreStarted="True", DataRestored="True"), "Ready"),
    (conds(**HEALTHY, DataRestored="False"), "NotReady"),
], ids=lambda v: "" if isinstance(v, list) else v)
def test_phase(conditions, phase):
    assert st.phase(conditions) == phase


def test_phase_ignores_condition_order():
    c = conds(**{**HEALTHY, "ReplicaReady": "False"})
    assert st.phase(list(reversed(c))) == st.phase(c) == "Critical"


def healthy_pass(conditions, *, replicas_ready=True, accepting=True, generation=3):
    return st.health_conditions(conditions, generation, replicas_ready=replicas_ready, accepting=accepting,
                                namespace="demo", name="druid-cluster")


def test_health_conditions_when_everything_is_ready():
    c = healthy_pass(conds(ProvisioningStarted="True"))
    expect = {"ReplicaReady": ("True", "AllReplicasReady"),
              "AcceptingConnection": ("True", "DatabaseAcceptingConnectionRequest"),
              "Ready": ("True", "ReadinessCheckSucceeded"),
              "Provisioned": ("True", "DatabaseSuccessfullyProvisioned")}
    for type_, (status, reason) in expect.items():
        got = get_condition(c, type_)
        assert (got["status"], got["reason"]) == (status, reason), type_
        assert got["observedGeneration"] == 3
        assert got["lastTransitionTime"]
    assert "demo/druid-cluster" in get_condition(c, "Provisioned")["message"]
    assert st.phase(c) == "Ready"


def test_not_provisioned_until_ready():
    c = healthy_pass(conds(ProvisioningStarted="True"), replicas_ready=False, accepting=False)
    assert get_condition(c, "Provisioned") is None
    assert get_condition(c, "Ready")["status"] == "False"
    assert get_condition(c, "ReplicaReady")["status"] == "False"
    assert get_condition(c, "AcceptingConnection")["status"] == "False"
    assert st.phase(c) == "Provisioning"
    # replicas ready but the query nodes not accepting: still not provisioned
    c = healthy_pass(c, replicas_ready=True, accepting=False)
    assert get_condition(c, "Provisioned") is None
    assert get_condition(c, "Ready")["status"] == "False"


def test_provisioned_is_set_once_and_survives_trouble():
    c = healthy_pass(conds(ProvisioningStarted="True"))
    provisioned = get_condition(c, "Provisioned")
    provisioned["lastTransitionTime"] = T0  # as read back later
    # a replica goes down: Provisioned stays, the phase says Critical
    c = healthy_pass(c, replicas_ready=False, accepting=True)
    assert get_condition(c, "Provisioned") == provisioned
    assert get_condition(c, "Ready")["status"] == "False"
    assert st.phase(c) == "Critical"
    # the query nodes go down: NotReady
    c = healthy_pass(c, replicas_ready=True, accepting=False)
    assert st.phase(c) == "NotReady"
    # recovered
    c = healthy_pass(c)
    assert st.phase(c) == "Ready"
    assert [x["type"] for x in c].count("Provisioned") == 1
    assert get_condition(c, "Provisioned")["lastTransitionTime"] == T0


def test_health_conditions_are_stable_when_nothing_changes():
    first = healthy_pass(conds(ProvisioningStarted="True"))
    assert healthy_pass(first) == first
    unhealthy = healthy_pass(first, replicas_ready=False)
    assert healthy_pass(unhealthy, replicas_ready=False) == unhealthy


def test_health_conditions_keep_other_conditions():
    start = conds(ProvisioningStarted="True", DatabaseDependencyReady="True", Paused="True")
    c = healthy_pass(start)
    assert c[:3] == start


def test_pods_on_an_older_revision_keep_a_serving_druid_from_ready():
    c = healthy_pass(conds(ProvisioningStarted="True"))
    assert st.phase(c) == "Ready" and not st.serving_on_old_revision(c)
    # an op failed mid-roll: one historical still runs the old template
    c = st.health_conditions(c, 4, replicas_ready=True, accepting=True, namespace="demo", name="druid-cluster",
                             outdated={"historicals": (1, 2)})
    ready = get_condition(c, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", st.PODS_ON_OLD_REVISION)
    assert "1 of 2 historicals" in ready["message"]
    assert st.phase(c) == "Critical"
    assert st.serving_on_old_revision(c), "an IfReady op may start: its roll is what brings them up to date"
    # a replica down as well: not merely outdated
    down = st.health_conditions(c, 4, replicas_ready=False, accepting=True, namespace="demo", name="druid-cluster",
                                outdated={"historicals": (1, 2)})
    assert not st.serving_on_old_revision(down)
    # rolled: Ready again
    assert st.phase(healthy_pass(c, generation=4)) == "Ready"


def test_the_operators_health_check_failing_makes_a_druid_with_ready_pods_not_ready():
    c = healthy_pass(conds(ProvisioningStarted="True"))
    c = st.health_conditions(c, 3, replicas_ready=True, accepting=True, namespace="demo", name="druid-cluster",
                             not_answering="3 health checks in a row ... through druid-cluster-routers:http")
    accepting = get_condition(c, "AcceptingConnection")
    assert (accepting["status"], accepting["reason"]) == ("False", st.NOT_ANSWERING)
    assert "druid-cluster-routers:http" in accepting["message"]
    assert get_condition(c, "Ready")["status"] == "False"
    assert st.phase(c) == "NotReady"
    # the first passing check: back to KubeDB's reason and Ready
    c = healthy_pass(c)
    assert get_condition(c, "AcceptingConnection")["reason"] == "DatabaseAcceptingConnectionRequest"
    assert st.phase(c) == "Ready"
    # query pods not ready says more than the check: KubeDB's reason stays
    c = st.health_conditions(c, 3, replicas_ready=True, accepting=False, namespace="demo", name="druid-cluster",
                             not_answering="3 health checks in a row ...")
    assert get_condition(c, "AcceptingConnection")["reason"] == "DatabaseNotAcceptingConnectionRequest"
