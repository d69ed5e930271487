"""What `--wait` shows of an op's conditions (cli/progress.py): the operator writes a pass's conditions at once, and
every step that changed is shown, the newest last."""

from kubedruid.cli.progress import Tracker


def _condition(type_: str, status: str, at: str) -> dict:
    return {"type": type_, "status": status, "reason": type_, "message": "", "lastTransitionTime": at}


def _op(*conditions: dict) -> dict:
    return {"status": {"phase": "Progressing", "conditions": list(conditions)}}


def test_every_step_written_at_once_is_shown_in_order_the_newest_as_the_current_one():
    t = Tracker()
    first = [_condition("ReconfigureTLS", "True", "2026-12-07T10:00:00Z"),
             _condition("CertificateSynced", "True", "2026-12-07T10:00:05Z")]
    assert t.update(_op(*first))
    assert (t.passed, t.step) == (["ReconfigureTLS"], "CertificateSynced")
    pod = "d-historicals-0"
    one_write = [_condition("UpdatePetSets", "True", "2026-12-07T10:00:06Z"),
                 _condition("RestartNodes", "False", "2026-12-07T10:00:06Z"),
                 _condition(f"GetPod--{pod}", "True", "2026-12-07T10:00:06Z"),
                 _condition(f"EvictPod--{pod}", "True", "2026-12-07T10:00:07Z")]
    assert t.update(_op(*first, *one_write))
    assert t.passed == ["UpdatePetSets", "RestartNodes", f"GetPod--{pod}"]
    assert (t.step, t.pod, t.pod_ready) == (f"EvictPod--{pod}", pod, False)
    assert not t.update(_op(*first, *one_write)) and t.passed == [], "the same version again: nothing new"


def test_the_pod_named_with_an_eviction_to_come_is_not_shown_as_the_one_restarting():
    t = Tracker()
    first, second = "d-historicals-0", "d-middlemanagers-0"
    eviction = [_condition(f"GetPod--{first}", "True", "2026-12-07T10:00:06Z"),
                _condition(f"EvictPod--{first}", "True", "2026-12-07T10:00:06Z"),
                _condition(f"CheckPodRunning--{first}", "False", "2026-12-07T10:00:06Z"),
                _condition(f"GetPod--{second}", "True", "2026-12-07T10:00:06Z"),
                _condition(f"EvictPod--{second}", "False", "2026-12-07T10:00:06Z")]
    assert t.update(_op(*eviction))
    assert (t.step, t.pod, t.pod_ready) == (f"CheckPodRunning--{first}", first, False)
    back = [*eviction[:2], _condition(f"CheckPodRunning--{first}", "True", "2026-12-07T10:00:10Z"),
            eviction[3], _condition(f"EvictPod--{second}", "True", "2026-12-07T10:00:10Z"),
            _condition(f"CheckPodRunning--{second}", "False", "2026-12-07T10:00:10Z")]
    assert t.update(_op(*back))
    assert (t.step, t.pod, t.pod_ready) == (f"CheckPodRunning--{second}", second, False)
    assert t.passed == [f"GetPod--{second}", f"CheckPodRunning--{first}", f"EvictPod--{second}"]  # by time
