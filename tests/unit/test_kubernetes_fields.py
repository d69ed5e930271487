"""The objects admission asks the apiserver to validate, and its answers told on the Druid's fields."""

from __future__ import annotations

import copy

from kubedruid.api.kubernetes_fields import PLACEHOLDER_IMAGE, VALIDATION_LABEL, field_checks


def _druid(**topology):
    return {"metadata": {"name": "d", "namespace": "demo"}, "spec": {"topology": topology}}


def test_each_template_and_storage_becomes_one_object_and_an_update_checks_only_what_changed():
    template = {"metadata": {"labels": {"team": "a"}},
                "spec": {"podPlacementPolicy": {"name": "default"},
                         "containers": [{"name": "sidecar", "image": "busybox",
                                         "volumeMounts": [{"name": "data", "mountPath": "/x"}]}]}}
    druid = _druid(brokers={"podTemplate": template}, historicals={"storage": {"accessModes": ["ReadWriteOnce"]}},
                   routers={"replicas": 1})
    checks = field_checks(druid)
    assert [(c.field, c.obj["kind"]) for c in checks] == [
        ("spec.topology.brokers.podTemplate", "StatefulSet"),
        ("spec.topology.historicals.storage", "PersistentVolumeClaim")]
    sts = checks[0].obj
    assert sts["metadata"] == {"generateName": "kubedruid-validation-", "namespace": "demo"}
    pod = sts["spec"]["template"]
    assert pod["metadata"]["labels"] == {"team": "a", VALIDATION_LABEL: "podtemplate"}
    assert "podPlacementPolicy" not in pod["spec"], "an offshoot-only field is not the apiserver's to judge"
    # the user's container stays at index 0 (messages name the index they wrote); druid is added after it
    assert [(c["name"], c["image"]) for c in pod["spec"]["containers"]] == [
        ("sidecar", "busybox"), ("druid", PLACEHOLDER_IMAGE)]
    assert pod["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}], "operator-made volumes may be mounted"
    assert template["spec"]["containers"][0].get("volumeMounts") and "volumes" not in template["spec"], \
        "the Druid itself is not changed"

    old = copy.deepcopy(druid)
    druid["spec"]["topology"]["historicals"]["storage"]["accessModes"] = ["ReadWriteMany"]
    assert [c.field for c in field_checks(druid, old)] == ["spec.topology.historicals.storage"]
    assert field_checks(old, old) == []


def test_the_apiservers_answers_name_the_druid_fields():
    template, storage = field_checks(_druid(brokers={"podTemplate": {}, "storage": {}}))
    # a 422 with causes
    assert template.problem("StatefulSet.apps is invalid", [
        {"field": "spec.template.spec.containers[0].imagePullPolicy", "message": 'Unsupported value: "Sometimes"'},
        {"field": "spec.template.metadata.labels", "message": "Invalid value"}]) == (
        'spec.topology.brokers.podTemplate.spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes"; '
        "spec.topology.brokers.podTemplate.metadata.labels: Invalid value")
    # a 400 from strict decoding names the field in its text
    assert storage.problem('PersistentVolumeClaim in version "v1" cannot be handled as a PersistentVolumeClaim: '
                           'strict decoding error: unknown field "spec.resourcez"', None) == (
        'strict decoding error: unknown field "spec.topology.brokers.storage.resourcez"')
    # a 400 that names no field is put on the Druid field checked
    assert template.problem('StatefulSet in version "v1" cannot be handled as a StatefulSet: quantities must '
                            "match the regular expression", None) == (
        "spec.topology.brokers.podTemplate: quantities must match the regular expression")
    # "spec" inside words or other paths is left alone
    assert storage.problem("x", [{"field": "spec.accessModes", "message": "must specify spec.resources"}]) == (
        "spec.topology.brokers.storage.accessModes: must specify spec.topology.brokers.storage.resources")
