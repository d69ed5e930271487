"""kmapi-style condition helpers (kube/conditions.py)."""

from __future__ import annotations

import copy
import re

from kubedruid.kube import conditions as c

T0, T1 = "2026-01-01T00:00:00Z", "2026-02-02T00:00:00Z"


def base() -> list[dict]:
    return [
        {"type": "ProvisioningStarted", "status": "True", "reason": "Started", "message": "m0",
         "observedGeneration": 1, "lastTransitionTime": T0},
        {"type": "ReplicaReady", "status": "False", "reason": "ReplicasNotReady", "message": "m1",
         "observedGeneration": 1, "lastTransitionTime": T0, "severity": "Warning"},
        {"type": "Ready", "status": "False", "reason": "ReadinessCheckFailed", "message": "m2",
         "observedGeneration": 1, "lastTransitionTime": T0},
    ]


def test_new_condition_is_appended_with_a_transition_time():
    out = c.set_condition(base(), "Provisioned", "True", "DatabaseSuccessfullyProvisioned", "done", 2, now=T1)
    assert [x["type"] for x in out] == ["ProvisioningStarted", "ReplicaReady", "Ready", "Provisioned"]
    assert out[-1] == {"type": "Provisioned", "status": "True", "reason": "DatabaseSuccessfullyProvisioned",
                       "message": "done", "observedGeneration": 2, "lastTransitionTime": T1}


def test_set_on_empty_or_none():
    for start in (None, []):
        out = c.set_condition(start, "Ready", "True", "R", "m", now=T1)
        assert out == [{"type": "Ready", "status": "True", "reason": "R", "message": "m", "lastTransitionTime": T1}]


def test_default_transition_time_is_rfc3339_utc():
    out = c.set_condition(None, "Ready", "True")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out[0]["lastTransitionTime"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", c.now_rfc3339())


def test_status_change_keeps_position_and_moves_transition_time():
    out = c.set_condition(base(), "ReplicaReady", "True", "AllReplicasReady", "ok", 2, now=T1)
    assert [x["type"] for x in out] == ["ProvisioningStarted", "ReplicaReady", "Ready"]
    assert out[1]["status"] == "True"
    assert out[1]["reason"] == "AllReplicasReady"
    assert out[1]["observedGeneration"] == 2
    assert out[1]["lastTransitionTime"] == T1
    assert out[0] == base()[0] and out[2] == base()[2]


def test_same_status_keeps_transition_time_but_updates_reason_and_message():
    out = c.set_condition(base(), "Ready", "False", "OtherReason", "other message", 2, now=T1)
    assert out[2]["lastTransitionTime"] == T0
    assert (out[2]["reason"], out[2]["message"], out[2]["observedGeneration"]) == ("OtherReason", "other message", 2)
    assert [x["type"] for x in out] == ["ProvisioningStarted", "ReplicaReady", "Ready"]


def test_nothing_changes_returns_an_equal_list():
    before = base()
    out = c.set_condition(before, "ReplicaReady", "False", "ReplicasNotReady", "m1", 1, now=T1)
    assert out == base()  # severity and the transition time included: no status write is needed
    out = c.set_condition(before, "ReplicaReady", "False", "ReplicasNotReady", "m1", now=T1)
    assert out == base()  # no generation given: the recorded one stays


def test_input_is_not_mutated():
    before = base()
    snapshot = copy.deepcopy(before)
    c.set_condition(before, "Ready", "True", "ReadinessCheckSucceeded", "ok", 2, now=T1)
    c.set_condition(before, "New", "True", now=T1)
    c.remove_condition(before, "Ready")
    assert before == snapshot


def test_get_is_true_remove():
    conds = base()
    assert c.get_condition(conds, "Ready")["reason"] == "ReadinessCheckFailed"
    assert c.get_condition(conds, "Missing") is None
    assert c.get_condition(None, "Ready") is None
    assert c.is_true(conds, "ProvisioningStarted")
    assert not c.is_true(conds, "Ready")
    assert not c.is_true(conds, "Missing")
    assert not c.is_true(None, "Ready")
    assert [x["type"] for x in c.remove_condition(conds, "ReplicaReady")] == ["ProvisioningStarted", "Ready"]
    assert c.remove_condition(None, "Ready") == []
