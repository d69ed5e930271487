"""Validation rules that the apiserver runs as CEL (`x-kubernetes-validations`).

Each rule carries its CEL expression and a Python twin that gives the same verdict, so the
generated CRDs and `validate_druid` / `validate_ops_request` share one list of rules and
one set of messages. A rule sits at a schema location (`path`, object properties only)
and sees the value there as `self`, as CEL does; it is skipped when that value is absent.
Messages name the field and say what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubedruid.api.durations import GO_DURATION
from kubedruid.api.druid import DATA_NODE_TYPES, NODE_TYPES

# --- reserved pod-template names (KubeDB's webhook, spec §1.5) ------------------------------

RESERVED_VOLUMES = ("operator-config-volume", "main-config-volume", "custom-config", "mysql-metadata-storage")
RESERVED_MOUNT_PATHS = (
    "/opt/druid/extensions/mysql-metadata-storage",
    "/tmp/config/operator-config",
    "/opt/druid/conf",
    "/tmp/config/custom-config",
)
_EXTRA_VOLUMES = {"historicals": ("data",), "middleManagers": ("base-task-dir",)}
_EXTRA_MOUNT_PATHS = {"historicals": ("/druid/data/segments",), "middleManagers": ("/var/druid/task",)}


def reserved_volumes(node_type: str) -> tuple[str, ...]:
    """Volume names a user's podTemplate may not use on this node type."""
    return RESERVED_VOLUMES + _EXTRA_VOLUMES.get(node_type, ())


def reserved_mount_paths(node_type: str) -> tuple[str, ...]:
    """Mount paths a user's containers and init containers may not use on this node type."""
    return RESERVED_MOUNT_PATHS + _EXTRA_MOUNT_PATHS.get(node_type, ())


DNS_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
# Pods are named <db>-middlemanagers-<ordinal> and used as host names (at most 63 characters).
MAX_DRUID_NAME = 45


def cel_matches(value: str, pattern: str) -> bool:
    """CEL's (RE2) `matches`: `$` is the end of the text, not a final newline as in Python."""
    if pattern.endswith("$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, value) is not None


@dataclass(frozen=True)
class Rule:
    """One CEL rule at `path`; `check(self_value)` (or `check(new, old)` for a transition rule)
    returns True when the value is valid, exactly when the CEL expression is true."""

    path: tuple[str, ...]
    cel: str
    message: str
    check: Callable[..., bool]
    field_path: str = ""  # reported location, relative to path (CEL fieldPath)
    transition: bool = False  # compares self with oldSelf (update only)

    def x_validation(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


def _cel_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"


# --- Druid ----------------------------------------------------------------------------------


def _name_ok(obj: dict[str, Any]) -> bool:
    name = obj.get("metadata", {}).get("name")
    return name is None or (len(name) <= MAX_DRUID_NAME and cel_matches(name, DNS_LABEL))


def _volumes_rule(node: str) -> Rule:
    names = reserved_volumes(node)
    return Rule(
        path=("spec", "topology", node, "podTemplate", "spec"),
        cel=f"!has(self.volumes) || self.volumes.all(v, !(v.name in {_cel_list(names)}))",
        message=(
            f"spec.topology.{node}.podTemplate.spec.volumes: the volume names {', '.join(names)} "
            "are reserved by the operator; use other names"
        ),
        check=lambda spec: all(v["name"] not in names for v in spec.get("volumes", [])),
        field_path=".volumes",
    )


def _mounts_rule(node: str) -> Rule:
    paths = reserved_mount_paths(node)
    lst = _cel_list(paths)
    per_list = (
        "(!has(self.{0}) || self.{0}.all(c, !has(c.volumeMounts)"
        " || c.volumeMounts.all(m, !(m.mountPath in {1}))))"
    )
    return Rule(
        path=("spec", "topology", node, "podTemplate", "spec"),
        cel=per_list.format("containers", lst) + " && " + per_list.format("initContainers", lst),
        message=(
            f"spec.topology.{node}.podTemplate.spec: containers and initContainers must not mount "
            f"volumes at {', '.join(paths)}; these paths are reserved by the operator"
        ),
        check=lambda spec: all(
            m["mountPath"] not in paths
            for key in ("containers", "initContainers")
            for c in spec.get(key, [])
            for m in c.get("volumeMounts", [])
        ),
    )


def _storage_rules(node: str) -> list[Rule]:
    at = ("spec", "topology", node)
    return [
        Rule(
            path=at,
            cel="!(has(self.storage) && has(self.storageType) && self.storageType == 'Ephemeral')",
            message=(
                f"spec.topology.{node}.storage is not allowed when storageType is Ephemeral; "
                "use ephemeralStorage, or storageType Durable"
            ),
            check=lambda n: not ("storage" in n and n.get("storageType") == "Ephemeral"),
            field_path=".storage",
        ),
        Rule(
            path=at,
            cel="!has(self.ephemeralStorage) || (has(self.storageType) && self.storageType == 'Ephemeral')",
            message=(
                f"spec.topology.{node}.ephemeralStorage is allowed only when storageType is Ephemeral; "
                "a Durable node uses storage"
            ),
            check=lambda n: "ephemeralStorage" not in n or n.get("storageType") == "Ephemeral",
            field_path=".ephemeralStorage",
        ),
    ]


DRUID_RULES: tuple[Rule, ...] = (
    Rule(
        path=(),
        cel=(
            "!has(self.metadata.name)"
            f" || (size(self.metadata.name) <= {MAX_DRUID_NAME} && self.metadata.name.matches('{DNS_LABEL}'))"
        ),
        message=(
            f"metadata.name must be a DNS label of at most {MAX_DRUID_NAME} characters (its pods are named "
            "<name>-middlemanagers-<n>, which must stay a valid host name) of a-z, 0-9 and '-', "
            "starting with a letter and ending with a letter or digit"
        ),
        check=_name_ok,
    ),
    *(rule for node in NODE_TYPES for rule in (_volumes_rule(node), _mounts_rule(node))),
    *(rule for node in DATA_NODE_TYPES for rule in _storage_rules(node)),
)


# --- DruidOpsRequest ------------------------------------------------------------------------

# The section each type needs (KubeDB's webhook: "spec.<x> nil not supported in <type> type").
OPS_SECTIONS = {
    "UpdateVersion": "updateVersion",
    "HorizontalScaling": "horizontalScaling",
    "VerticalScaling": "verticalScaling",
    "VolumeExpansion": "volumeExpansion",
    "Reconfigure": "configuration",
    "ReconfigureTLS": "tls",
    "StorageMigration": "migration",
}
TLS_CHOICES = "set exactly one of remove, rotateCertificates, or issuerRef and/or certificates"
_CEL_TLS_COUNT = (
    "((has(self.tls.remove) && self.tls.remove) ? 1 : 0)"
    " + ((has(self.tls.rotateCertificates) && self.tls.rotateCertificates) ? 1 : 0)"
    " + ((has(self.tls.issuerRef) || has(self.tls.certificates)) ? 1 : 0)"
)


def tls_operation_count(tls: dict[str, Any]) -> int:
    """How many ReconfigureTLS operations a `spec.tls` asks for (KubeDB counts issuerRef and
    certificates as one "update" operation)."""
    return (
        int(tls.get("remove") is True)
        + int(tls.get("rotateCertificates") is True)
        + int(tls.get("issuerRef") is not None or tls.get("certificates") is not None)
    )


def _is_tls_op(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "ReconfigureTLS" and "tls" in spec


def _section_rule(ops_type: str, section: str) -> Rule:
    return Rule(
        path=("spec",),
        cel=f"self.type != '{ops_type}' || has(self.{section})",
        message=f"spec.{section} is required for type {ops_type}",
        check=lambda spec: spec.get("type") != ops_type or section in spec,
    )


OPS_RULES: tuple[Rule, ...] = (
    *(_section_rule(t, s) for t, s in OPS_SECTIONS.items()),
    Rule(
        path=("spec",),
        cel="self.type != 'StorageMigration' || has(self.timeout)",
        message="spec.timeout is required for type StorageMigration; size it to the database",
        check=lambda spec: spec.get("type") != "StorageMigration" or "timeout" in spec,
    ),
    Rule(
        path=("spec",),
        cel=f"self.type != 'ReconfigureTLS' || !has(self.tls) || {_CEL_TLS_COUNT} >= 1",
        message=f"spec.tls: no reconfiguration is provided in TLS spec; {TLS_CHOICES}",
        check=lambda spec: not _is_tls_op(spec) or tls_operation_count(spec["tls"]) >= 1,
        field_path=".tls",
    ),
    Rule(
        path=("spec",),
        cel=f"self.type != 'ReconfigureTLS' || !has(self.tls) || {_CEL_TLS_COUNT} <= 1",
        message=(
            "spec.tls: more than 1 field have assigned to spec.reconfigureTLS but at a time one is "
            f"allowed to run one operation; {TLS_CHOICES}"
        ),
        check=lambda spec: not _is_tls_op(spec) or tls_operation_count(spec["tls"]) <= 1,
        field_path=".tls",
    ),
    Rule(
        path=("spec", "timeout"),
        cel=f"self.matches('{GO_DURATION}')",
        message="spec.timeout must be a Go duration such as 90s, 5m or 1h30m",
        check=lambda timeout: cel_matches(timeout, GO_DURATION),
    ),
    # KubeDB's API carries maxRetries (default 1) without saying what it counts. An op here has no second attempt
    # to count: it retries what a retry can help until spec.timeout and fails at once what it cannot (decision
    # 0020), so any other value would be accepted and ignored.
    Rule(
        path=("spec", "maxRetries"),
        cel="self == 1",
        message=(
            "spec.maxRetries must be 1, the default: a failed op is not run again; a step retries "
            "what a retry can help until spec.timeout"
        ),
        check=lambda max_retries: max_retries == 1,
    ),
    Rule(
        path=("spec",),
        cel="self == oldSelf",
        message="spec is immutable after creation",
        check=lambda new, old: new == old,
        transition=True,
    ),
)
