"""Pods and claims of a PetSet, and its status (specs/petset_pods.py): StatefulSet semantics, OnDelete updates."""

from __future__ import annotations

import copy

import pytest

from kubedruid.specs import petset_pods as pp

SELECTOR = {"app": "druid", "kubedb.com/role": "historicals"}


def make_petset(replicas: int = 3, image: str = "apache/druid:36.0.0", claims: bool = True, status: dict | None = None,
                **spec_extra) -> dict:
    ps = {
        "apiVersion": "apps.k8s.appscode.com/v1", "kind": "PetSet",
        "metadata": {"name": "dc-historicals", "namespace": "demo", "uid": "ps-uid-1", "generation": 4},
        "spec": {
            "replicas": replicas, "serviceName": "dc-pods", "selector": {"matchLabels": dict(SELECTOR)},
            "template": {
                "metadata": {"labels": {**SELECTOR, "extra": "x"}, "annotations": {"note": "n"}},
                "spec": {"containers": [{"name": "druid", "image": image,
                                         "volumeMounts": [{"name": "data", "mountPath": "/druid/data/segments"}]}],
                         "volumes": [{"name": "config", "secret": {"secretName": "dc-abcdef"}}]},
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "hot"}},
                                      "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "1Gi"}}}}] if claims else [],
            **spec_extra,
        },
    }
    if status is not None:
        ps["status"] = status
    return ps


def running(pod: dict, ready: bool = True, phase: str = "Running") -> dict:
    pod = copy.deepcopy(pod)
    pod["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return pod


# --- identity ------------------------------------------------------------------------------------------------------


def test_pod_names_hostname_and_subdomain():
    ps = make_petset()
    pods = [pp.pod(ps, i) for i in range(3)]
    assert [p["metadata"]["name"] for p in pods] == ["dc-historicals-0", "dc-historicals-1", "dc-historicals-2"]
    for i, p in enumerate(pods):
        assert p["apiVersion"] == "v1" and p["kind"] == "Pod"
        assert p["metadata"]["namespace"] == "demo"
        assert p["spec"]["hostname"] == p["metadata"]["name"]
        assert p["spec"]["subdomain"] == "dc-pods"
        labels = p["metadata"]["labels"]
        assert SELECTOR.items() <= labels.items()  # the PetSet selects its pods
        assert labels["extra"] == "x"
        assert labels["statefulset.kubernetes.io/pod-name"] == p["metadata"]["name"]
        assert labels["apps.kubernetes.io/pod-index"] == str(i)
        assert labels["controller-revision-hash"] == pp.revision(ps)
        assert p["metadata"]["annotations"] == {"note": "n"}
        assert pp.ordinal("dc-historicals", p["metadata"]["name"]) == i


def test_pod_without_service_name_has_no_subdomain():
    ps = make_petset()
    del ps["spec"]["serviceName"]
    assert "subdomain" not in pp.pod(ps, 0)["spec"]


@pytest.mark.parametrize("pod_name,expected", [
    ("dc-historicals-0", 0), ("dc-historicals-12", 12),
    ("dc-historicals-x", None), ("dc-historicals", None), ("other-dc-historicals-1", None),
    ("dc-historicals-0-1", None), ("dc-historicals-", None),
])
def test_ordinal(pod_name, expected):
    assert pp.ordinal("dc-historicals", pod_name) == expected


def test_ordinal_does_not_treat_petset_name_as_a_pattern():
    assert pp.ordinal("a.b", "axb-0") is None
    assert pp.ordinal("a.b", "a.b-0") == 0


def test_owner_reference_points_at_the_petset():
    ps = make_petset()
    (ref,) = pp.pod(ps, 1)["metadata"]["ownerReferences"]
    assert ref == {"apiVersion": "apps.k8s.appscode.com/v1", "kind": "PetSet", "name": "dc-historicals",
                   "uid": "ps-uid-1", "controller": True, "blockOwnerDeletion": True}


# --- claims ----------------------------------------------------------------------------------------------------


def test_claims_named_template_petset_ordinal():
    ps = make_petset()
    for i in range(3):
        (claim,) = pp.claims(ps, i)
        assert claim["kind"] == "PersistentVolumeClaim"
        assert claim["metadata"]["name"] == f"data-dc-historicals-{i}" == pp.claim_name("data", "dc-historicals", i)
        assert claim["metadata"]["namespace"] == "demo"
        assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        # selector labels (deletionPolicy finds PVCs by them) + the template's own labels
        assert claim["metadata"]["labels"] == {**SELECTOR, "tier": "hot"}
        # not owned: data survives the PetSet
        assert "ownerReferences" not in claim["metadata"]


def test_pod_mounts_its_own_claims():
    ps = make_petset()
    for i in range(3):
        volumes = {v["name"]: v for v in pp.pod(ps, i)["spec"]["volumes"]}
        assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": f"data-dc-historicals-{i}"}}
        assert volumes["config"] == {"name": "config", "secret": {"secretName": "dc-abcdef"}}
        # every mount refers to a volume of the pod
        for c in pp.pod(ps, i)["spec"]["containers"]:
            for m in c.get("volumeMounts") or []:
                assert m["name"] in volumes


def test_template_volume_named_like_a_claim_is_not_duplicated():
    ps = make_petset()
    ps["spec"]["template"]["spec"]["volumes"].append({"name": "data", "emptyDir": {}})
    volumes = [v for v in pp.pod(ps, 0)["spec"]["volumes"] if v["name"] == "data"]
    assert len(volumes) == 1


def test_no_claims_without_templates():
    ps = make_petset(claims=False)
    assert pp.claims(ps, 0) == []
    assert [v["name"] for v in pp.pod(ps, 0)["spec"]["volumes"]] == ["config"]


def test_building_a_pod_does_not_change_the_petset():
    ps = make_petset()
    before = copy.deepcopy(ps)
    pp.pod(ps, 0)
    pp.claims(ps, 0)
    assert ps == before


# --- revisions -------------------------------------------------------------------------------------------------


def test_revision_changes_iff_template_changes():
    base = make_petset()
    assert pp.revision(base) == pp.revision(make_petset())
    assert len(pp.revision(base)) == 10  # a bare hash: long PetSet names still fit the 63-character label limit
    # not the template: same revision
    assert pp.revision(make_petset(replicas=5)) == pp.revision(base)
    assert pp.revision(make_petset(claims=False)) == pp.revision(base)
    assert pp.revision(make_petset(status={"currentRevision": "x"})) == pp.revision(base)
    # the template: new revision
    assert pp.revision(make_petset(image="apache/druid:37.0.0")) != pp.revision(base)
    changed = make_petset()
    changed["spec"]["template"]["metadata"]["annotations"]["note"] = "m"
    assert pp.revision(changed) != pp.revision(base)


def test_revision_ignores_key_order():
    a = make_petset()
    b = make_petset()
    b["spec"]["template"] = dict(reversed(list(b["spec"]["template"].items())))
    b["spec"]["template"]["spec"] = dict(reversed(list(b["spec"]["template"]["spec"].items())))
    assert pp.revision(a) == pp.revision(b)


def test_revision_fits_a_label_value():
    rev = pp.revision(make_petset())
    assert len(rev) <= 63


# --- status ----------------------------------------------------------------------------------------------------


def test_status_counts_ready_pods():
    ps = make_petset(replicas=3)
    pods = [running(pp.pod(ps, 0)), running(pp.pod(ps, 1), ready=False), pp.pod(ps, 2)]  # last: no status yet
    s = pp.status(ps, pods)
    assert s["replicas"] == 3
    assert s["readyReplicas"] == 1
    assert s["availableReplicas"] == 1
    assert s["updatedReplicas"] == 3
    assert s["observedGeneration"] == 4
    assert s["updateRevision"] == pp.revision(ps)


def test_pending_pod_with_ready_condition_is_not_ready():
    ps = make_petset(replicas=1)
    assert pp.status(ps, [running(pp.pod(ps, 0), phase="Pending")])["readyReplicas"] == 0


def test_terminating_pods_are_not_counted():
    ps = make_petset(replicas=2)
    gone = running(pp.pod(ps, 1))
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    s = pp.status(ps, [running(pp.pod(ps, 0)), gone])
    assert s["replicas"] == 1
    assert s["readyReplicas"] == 1
    assert s["updatedReplicas"] == 1


def test_current_revision_moves_only_when_every_pod_runs_the_update():
    old_ps = make_petset(replicas=2)
    old_rev = pp.revision(old_ps)
    old_pods = [running(pp.pod(old_ps, i)) for i in range(2)]
    settled = pp.status(old_ps, old_pods)
    assert settled["currentRevision"] == settled["updateRevision"] == old_rev
    assert settled["currentReplicas"] == 2

    new_ps = make_petset(replicas=2, image="apache/druid:37.0.0", status=settled)
    new_rev = pp.revision(new_ps)
    # OnDelete: nothing restarted yet
    s = pp.status(new_ps, old_pods)
    assert (s["currentRevision"], s["updateRevision"]) == (old_rev, new_rev)
    assert (s["currentReplicas"], s["updatedReplicas"]) == (2, 0)

    # one pod evicted and recreated from the new template
    half = [running(pp.pod(new_ps, 0)), old_pods[1]]
    s = pp.status({**new_ps, "status": s}, half)
    assert s["currentRevision"] == old_rev
    assert (s["currentReplicas"], s["updatedReplicas"]) == (1, 1)
    assert s["readyReplicas"] == 2

    # both on the new template: currentRevision moves
    done = [running(pp.pod(new_ps, i)) for i in range(2)]
    s = pp.status({**new_ps, "status": s}, done)
    assert s["currentRevision"] == s["updateRevision"] == new_rev
    assert (s["currentReplicas"], s["updatedReplicas"]) == (2, 2)


def test_current_revision_waits_for_missing_pods():
    old_ps = make_petset(replicas=2)
    settled = pp.status(old_ps, [running(pp.pod(old_ps, i)) for i in range(2)])
    new_ps = make_petset(replicas=2, image="apache/druid:37.0.0", status=settled)
    # pod 1 deleted and not yet recreated: the only live pod is updated, but not every replica runs the update
    s = pp.status(new_ps, [running(pp.pod(new_ps, 0))])
    assert s["currentRevision"] == pp.revision(old_ps)
    assert s["updatedReplicas"] == 1


def test_collision_count_is_kept():
    ps = make_petset(replicas=1, status={"collisionCount": 2, "currentRevision": "x"})
    assert pp.status(ps, [])["collisionCount"] == 2


def test_only_kubedbs_petset_pods_are_watched_and_others_are_looked_at_again():
    """The operator's pod informer holds KubeDB's pods only: another software's StatefulSet pods carry the pod-name
    label too. A PetSet whose pods it does not hold is run all the same, looked at again on a timer."""
    from kubedruid.controllers import petset
    from kubedruid.kube.cache import matches
    from kubedruid.specs import names

    foreign = make_petset()
    assert not petset.pods_watched(foreign)
    assert not matches(pp.pod(foreign, 0), petset.WATCHED_POD_LABELS)
    druids = make_petset()
    druids["spec"]["template"]["metadata"]["labels"] |= names.selector_labels("dc")
    assert petset.pods_watched(druids)
    assert matches(pp.pod(druids, 0), petset.WATCHED_POD_LABELS)  # the pod it builds is one the informer holds
    statefulset_pod = {"metadata": {"labels": {"app": "other", pp.POD_NAME_LABEL: "other-0"}}}
    assert not matches(statefulset_pod, petset.WATCHED_POD_LABELS)
    assert petset.UNWATCHED_PODS_RECHECK_S > 0
