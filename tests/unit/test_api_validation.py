"""validate_druid / validate_ops_request: one test per rule and message (spec §1.5, §3.3)."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kubedruid.api import Druid, apply_defaults, validate_druid, validate_ops_request
from kubedruid.api.rules import reserved_mount_paths, reserved_volumes, tls_operation_count

from . import kubedb_manifests

VERSIONS = {"28.0.1", "31.0.0", "36.0.0"}

PLAIN = yaml.safe_load(kubedb_manifests.PLAIN)
TLS = yaml.safe_load(kubedb_manifests.TLS)


def druid(**spec) -> dict:
    obj = copy.deepcopy(PLAIN)
    obj["spec"].update(spec)
    return obj


def only_error(obj: dict) -> str:
    errors = validate_druid(obj, VERSIONS)
    assert len(errors) == 1, errors
    return errors[0]


# --- Druid: accepted --------------------------------------------------------------------------


@pytest.mark.parametrize("manifest", [PLAIN, TLS], ids=["plain", "tls"])
def test_spec_example_manifests_are_accepted_unchanged_and_after_defaulting(manifest):
    assert validate_druid(manifest, VERSIONS) == []
    assert validate_druid(Druid.model_validate(manifest), VERSIONS) == []
    assert validate_druid(apply_defaults(Druid.model_validate(manifest)), VERSIONS) == []


def test_missing_mandatory_nodes_are_not_rejected_they_are_defaulted():
    assert validate_druid(druid(topology={}), VERSIONS) == []


def test_user_volumes_and_mounts_elsewhere_are_fine():
    pod = {
        "volumes": [{"name": "extra", "emptyDir": {}}],
        "containers": [{"name": "druid", "volumeMounts": [{"name": "extra", "mountPath": "/extra"}]}],
    }
    assert validate_druid(druid(topology={"brokers": {"podTemplate": {"spec": pod}}}), VERSIONS) == []


def test_version_check_is_skipped_without_a_catalog():
    assert validate_druid(druid(version="99.0.0")) == []


# --- Druid: rejected, one message each ---------------------------------------------------------


def test_unknown_version():
    assert only_error(druid(version="99.0.0")) == (
        'spec.version: version not supported: no DruidVersion "99.0.0" exists (available: 28.0.1, 31.0.0, 36.0.0)'
    )


def test_empty_version():
    assert only_error(druid(version="")) == 'spec.version: Invalid value: "": should be at least 1 chars long'


@pytest.mark.parametrize("field", ["version", "deepStorage", "topology"])
def test_required_spec_fields(field):
    obj = druid()
    del obj["spec"][field]
    assert only_error(obj) == f"spec.{field}: Required value"


def test_null_topology_is_missing():
    assert only_error(druid(topology=None)) == "spec.topology: Required value"


def test_deep_storage_type_required_and_enumerated():
    assert only_error(druid(deepStorage={"configSecret": {"name": "x"}})) == "spec.deepStorage.type: Required value"
    assert only_error(druid(deepStorage={"type": "minio"})) == (
        'spec.deepStorage.type: Unsupported value: "minio": supported values: "s3", "google", "azure", "hdfs"'
    )


@pytest.mark.parametrize("node", ["coordinators", "overlords", "brokers", "routers", "historicals", "middleManagers"])
def test_replicas_must_be_positive(node):
    assert only_error(druid(topology={node: {"replicas": 0}})) == (
        f"spec.topology.{node}.replicas: Invalid value: 0: should be greater than or equal to 1"
    )


@pytest.mark.parametrize("ref", ["metadataStorage", "zookeeperRef"])
@pytest.mark.parametrize("field", ["name", "namespace"])
def test_dependency_references_must_not_be_empty(ref, field):
    assert only_error(druid(**{ref: {field: ""}})) == (
        f'spec.{ref}.{field}: Invalid value: "": should be at least 1 chars long'
    )


def test_enums():
    assert "spec.deletionPolicy: Unsupported value" in only_error(druid(deletionPolicy="Keep"))
    assert "spec.metadataStorage.type: Unsupported value" in only_error(druid(metadataStorage={"type": "Oracle"}))
    assert "spec.topology.historicals.storageType: Unsupported value" in only_error(
        druid(topology={"historicals": {"storageType": "Fast"}})
    )


def test_issuer_ref_needs_kind_and_name():
    assert only_error(druid(tls={"issuerRef": {"name": "ca"}})) == "spec.tls.issuerRef.kind: Required value"


@pytest.mark.parametrize("name", ["Druid", "druid_1", "1druid", "druid-", "a" * 46, "a" * 64])
def test_name_must_be_a_dns_label(name):
    obj = druid()
    obj["metadata"]["name"] = name
    assert only_error(obj).startswith("metadata.name must be a DNS label")


def test_name_of_45_characters_is_fine():
    obj = druid()
    obj["metadata"]["name"] = "a" * 45
    assert validate_druid(obj, VERSIONS) == []


@pytest.mark.parametrize("node", ["coordinators", "overlords", "brokers", "routers", "historicals", "middleManagers"])
def test_reserved_volume_names(node):
    for volume in reserved_volumes(node):
        error = only_error(druid(topology={node: {"podTemplate": {"spec": {"volumes": [{"name": volume}]}}}}))
        assert error.startswith(f"spec.topology.{node}.podTemplate.spec.volumes: the volume names ")
        assert volume in error and "reserved by the operator" in error


@pytest.mark.parametrize("containers", ["containers", "initContainers"])
@pytest.mark.parametrize("node", ["coordinators", "overlords", "brokers", "routers", "historicals", "middleManagers"])
def test_reserved_mount_paths(node, containers):
    for path in reserved_mount_paths(node):
        pod = {containers: [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": path}]}]}
        error = only_error(druid(topology={node: {"podTemplate": {"spec": pod}}}))
        assert error.startswith(f"spec.topology.{node}.podTemplate.spec: containers and initContainers must not mount")


def test_data_node_reserved_names_do_not_leak_to_other_nodes():
    # KubeDB's webhook appends to a package-level slice; we do not copy that bug.
    assert "data" in reserved_volumes("historicals")
    assert "data" not in reserved_volumes("brokers")
    mounts = [{"name": "data", "mountPath": "/druid/data/segments"}]
    pod = {"volumes": [{"name": "data"}], "containers": [{"name": "c", "volumeMounts": mounts}]}
    assert validate_druid(druid(topology={"brokers": {"podTemplate": {"spec": pod}}}), VERSIONS) == []


@pytest.mark.parametrize("node", ["historicals", "middleManagers"])
def test_storage_not_allowed_with_ephemeral(node):
    obj = druid(topology={node: {"storageType": "Ephemeral", "storage": {}}})
    assert only_error(obj) == (
        f"spec.topology.{node}.storage is not allowed when storageType is Ephemeral; "
        "use ephemeralStorage, or storageType Durable"
    )


@pytest.mark.parametrize("node", ["historicals", "middleManagers"])
@pytest.mark.parametrize("storage_type", [None, "Durable"])
def test_ephemeral_storage_not_allowed_with_durable(node, storage_type):
    data_node = {"ephemeralStorage": {}} | ({"storageType": storage_type} if storage_type else {})
    assert only_error(druid(topology={node: data_node})) == (
        f"spec.topology.{node}.ephemeralStorage is allowed only when storageType is Ephemeral; "
        "a Durable node uses storage"
    )


def test_ephemeral_node_with_ephemeral_storage_is_fine():
    obj = druid(topology={"historicals": {"storageType": "Ephemeral", "ephemeralStorage": {"medium": "Memory"}}})
    assert validate_druid(obj, VERSIONS) == []


def test_type_errors_are_reported_not_raised():
    assert only_error(druid(topology={"routers": {"replicas": "two"}})) == (
        'spec.topology.routers.replicas: Invalid value: "two": must be of type integer'
    )
    assert only_error(druid(topology={"routers": {"podTemplate": {"spec": {"volumes": "data"}}}})) == (
        'spec.topology.routers.podTemplate.spec.volumes: Invalid value: "data": must be of type array'
    )


def test_all_errors_are_reported_together():
    obj = druid(version="", deepStorage={}, topology={"routers": {"replicas": 0}})
    obj["metadata"]["name"] = "Bad"
    assert len(validate_druid(obj, VERSIONS)) == 4


# --- DruidOpsRequest -------------------------------------------------------------------------


def ops(type_: str = "ReconfigureTLS", **spec) -> dict:
    return {
        "apiVersion": "ops.kubedb.com/v1alpha1",
        "kind": "DruidOpsRequest",
        "metadata": {"name": "drops", "namespace": "demo"},
        "spec": {"type": type_, "databaseRef": {"name": "druid-cluster"}, **spec},
    }


ISSUER = {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "druid-ca-issuer"}
CHOICES = "set exactly one of remove, rotateCertificates, or issuerRef and/or certificates"
NONE_MSG = f"spec.tls: no reconfiguration is provided in TLS spec; {CHOICES}"
MANY_MSG = (
    "spec.tls: more than 1 field have assigned to spec.reconfigureTLS but at a time one is allowed "
    f"to run one operation; {CHOICES}"
)


@pytest.mark.parametrize(
    "tls",
    [
        {"issuerRef": ISSUER, "certificates": [{"alias": "client", "subject": {"organizations": ["druid"]}}]},
        {"issuerRef": ISSUER},
        {"certificates": []},
        {"rotateCertificates": True},
        {"remove": True},
        {"remove": False, "rotateCertificates": True},
    ],
    ids=["add", "issuer", "certificates", "rotate", "remove", "rotate-with-false-remove"],
)
def test_reconfigure_tls_guide_requests_are_accepted(tls):
    assert validate_ops_request(ops(tls=tls, timeout="5m", apply="IfReady")) == []


def test_reconfigure_tls_needs_tls():
    assert validate_ops_request(ops()) == ["spec.tls is required for type ReconfigureTLS"]


@pytest.mark.parametrize("tls", [{}, {"remove": False, "rotateCertificates": False}, {"issuerRef": None}])
def test_reconfigure_tls_needs_one_operation(tls):
    assert validate_ops_request(ops(tls=tls)) == [NONE_MSG]


@pytest.mark.parametrize(
    "tls",
    [
        {"remove": True, "rotateCertificates": True},
        {"remove": True, "issuerRef": ISSUER},
        {"rotateCertificates": True, "certificates": [{"alias": "server"}]},
    ],
)
def test_reconfigure_tls_allows_only_one_operation(tls):
    assert validate_ops_request(ops(tls=tls)) == [MANY_MSG]


def test_tls_section_is_ignored_for_other_types():
    assert validate_ops_request(ops("Restart", tls={"remove": True, "rotateCertificates": True})) == []


@pytest.mark.parametrize(
    ("type_", "section"),
    [
        ("UpdateVersion", "updateVersion"),
        ("HorizontalScaling", "horizontalScaling"),
        ("VerticalScaling", "verticalScaling"),
        ("VolumeExpansion", "volumeExpansion"),
        ("Reconfigure", "configuration"),
    ],
)
def test_each_type_needs_its_section(type_, section):
    assert validate_ops_request(ops(type_)) == [f"spec.{section} is required for type {type_}"]


def test_storage_migration_needs_migration_and_timeout():
    assert validate_ops_request(ops("StorageMigration")) == [
        "spec.migration is required for type StorageMigration",
        "spec.timeout is required for type StorageMigration; size it to the database",
    ]
    assert validate_ops_request(ops("StorageMigration", migration={"storageClassName": "fast"}, timeout="1h")) == []


def test_type_and_database_ref_are_required_and_checked():
    assert validate_ops_request(ops("Resize")) == [
        'spec.type: Unsupported value: "Resize": supported values: "UpdateVersion", "HorizontalScaling", '
        '"VerticalScaling", "VolumeExpansion", "Restart", "Reconfigure", "ReconfigureTLS", "RotateAuth", '
        '"StorageMigration"'
    ]
    obj = ops("Restart")
    del obj["spec"]["databaseRef"]["name"]
    assert validate_ops_request(obj) == ["spec.databaseRef.name: Required value"]
    del obj["spec"]["type"]
    assert "spec.type: Required value" in validate_ops_request(obj)


def test_apply_is_enumerated_and_defaults_are_valid():
    assert validate_ops_request(ops("Restart", apply="Always", maxRetries=1)) == []
    assert validate_ops_request(ops("Restart", apply="Never")) == [
        'spec.apply: Unsupported value: "Never": supported values: "IfReady", "Always"'
    ]


@pytest.mark.parametrize("max_retries", [0, 2, 3])
def test_max_retries_other_than_the_default_is_refused_naming_the_field(max_retries):
    assert validate_ops_request(ops("Restart", maxRetries=max_retries)) == [
        "spec.maxRetries must be 1, the default: a failed op is not run again; a step retries what a retry can "
        "help until spec.timeout"
    ]


@pytest.mark.parametrize("timeout", ["5m", "90s", "1h30m", "1.5h", "300ms", "0", "2h45m10.5s"])
def test_go_durations_are_accepted(timeout):
    assert validate_ops_request(ops("Restart", timeout=timeout)) == []


@pytest.mark.parametrize("timeout", ["5", "5 m", "five minutes", "-5m", "5d", "m", "", "5m\n"])
def test_other_timeouts_are_rejected(timeout):
    assert validate_ops_request(ops("Restart", timeout=timeout)) == [
        "spec.timeout must be a Go duration such as 90s, 5m or 1h30m"
    ]


def test_spec_is_immutable_on_update():
    old = ops(tls={"rotateCertificates": True})
    same = copy.deepcopy(old)
    same["status"] = {"phase": "Progressing"}
    same["metadata"]["labels"] = {"a": "b"}
    assert validate_ops_request(same, old=old) == []
    changed = ops(tls={"remove": True})
    assert validate_ops_request(changed, old=old) == ["spec is immutable after creation"]
    assert validate_ops_request(changed) == []  # a create has no old object


def test_schema_defaults_do_not_count_as_a_spec_change():
    old = ops("Restart")
    new = ops("Restart", apply="IfReady", maxRetries=1)
    assert validate_ops_request(new, old=old) == []


# --- property: exactly one TLS operation -------------------------------------------------------

tls_specs = st.fixed_dictionaries(
    {},
    optional={
        "remove": st.booleans(),
        "rotateCertificates": st.booleans(),
        "issuerRef": st.none() | st.just(ISSUER),
        "certificates": st.none() | st.lists(st.sampled_from([{"alias": "server"}, {"alias": "client"}]), max_size=2),
    },
)


def operations(tls: dict) -> int:
    """Counted independently of the code under test, from KubeDB's webhook."""
    return (
        (tls.get("remove") is True)
        + (tls.get("rotateCertificates") is True)
        + (tls.get("issuerRef") is not None or tls.get("certificates") is not None)
    )


@given(tls=st.none() | tls_specs)
def test_validate_ops_request_accepts_exactly_one_tls_operation(tls):
    request = ops() if tls is None else ops(tls=tls)
    errors = validate_ops_request(request)
    assert (errors == []) == (tls is not None and operations(tls) == 1)
    if tls is not None:
        assert tls_operation_count({k: v for k, v in tls.items() if v is not None}) == operations(tls)


@given(tls=tls_specs, type_=st.sampled_from(["Restart", "RotateAuth"]))
def test_tls_operations_do_not_matter_for_other_types(tls, type_):
    assert validate_ops_request(ops(type_, tls=tls)) == []
