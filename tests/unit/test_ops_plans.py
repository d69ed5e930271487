"""Pure parts of the ops plans: which pods an op restarts, in which order."""

from __future__ import annotations

from kubedruid.controllers.ops import plans


def _ops(type_: str) -> dict:
    return {"spec": {"type": type_, "databaseRef": {"name": "d"}}}


def test_a_restart_follows_kubedbs_order_data_nodes_first_masters_last():
    pods = plans.restart_pods("d", {"coordinators": 1, "overlords": 1, "brokers": 2, "historicals": 1,
                                    "middleManagers": 1, "routers": 1}, plans.restart_order(_ops("Restart")))
    assert pods == ["d-historicals-0", "d-middlemanagers-0", "d-brokers-0", "d-brokers-1", "d-routers-0",
                    "d-overlords-0", "d-coordinators-0"]


def test_a_tls_change_restarts_the_masters_first():
    pods = plans.restart_pods("d", {"coordinators": 1, "overlords": 1, "brokers": 1, "historicals": 2,
                                    "middleManagers": 1, "routers": 1}, plans.restart_order(_ops("ReconfigureTLS")))
    assert pods[:2] == ["d-overlords-0", "d-coordinators-0"]
    assert pods[2:] == ["d-historicals-0", "d-historicals-1", "d-middlemanagers-0", "d-brokers-0", "d-routers-0"]


def test_absent_node_types_are_skipped():
    assert plans.restart_pods("d", {"coordinators": 1, "routers": 0}, plans.restart_order(_ops("ReconfigureTLS"))) \
        == ["d-coordinators-0"]
