"""Validation as the apiserver does it, for the admission webhook and the tests.

`validate_druid` and `validate_ops_request` take a model or a raw object (e.g. from an
AdmissionReview), prepare it as the apiserver would (drop nulls, apply schema defaults),
then check the generated CRD schema and the CEL rules' Python twins. So they reject what
the CRD rejects, with the same messages, plus the checks CEL cannot do (DruidVersion exists).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel

from kubedruid.api.common import Resource, to_dict
from kubedruid.api.druid import Druid
from kubedruid.api.ops import DruidOpsRequest
from kubedruid.api.rules import DRUID_RULES, OPS_RULES, Rule
from kubedruid.api.schema import schema_to_read

_MISSING = object()
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def validate_druid(druid: Druid | Mapping[str, Any], known_versions: Collection[str] | None = None) -> list[str]:
    """Why the apiserver (CRD schema + CEL) or KubeDB's webhook would reject this Druid; [] if valid.

    `known_versions` are the names of the DruidVersions that exist (None skips that check).
    Requirements that defaulting satisfies (coordinators, brokers, historicals,
    middleManagers present; storage on a Durable data node) are not checked: kubedruid
    accepts manifests without them and `apply_defaults` fills them in, as KubeDB's
    mutating webhook does before its validating one.
    """
    obj = prepare(Druid, druid)
    errors = schema_errors(schema_to_read(Druid), obj) + rule_errors(DRUID_RULES, obj)
    version = _at(obj, ("spec", "version"))
    if known_versions is not None and isinstance(version, str) and version and version not in known_versions:
        available = ", ".join(sorted(known_versions)) or "none"
        errors.append(
            f'spec.version: version not supported: no DruidVersion "{version}" exists (available: {available})'
        )
    return errors


def validate_ops_request(
    ops: DruidOpsRequest | Mapping[str, Any], old: DruidOpsRequest | Mapping[str, Any] | None = None
) -> list[str]:
    """Why the apiserver would reject this DruidOpsRequest; [] if valid. With `old` (an
    update), the transition rules (spec immutable) are checked too. Whether the Druid in
    spec.databaseRef exists is for the caller to check."""
    obj = prepare(DruidOpsRequest, ops)
    before = prepare(DruidOpsRequest, old) if old is not None else None
    return schema_errors(schema_to_read(DruidOpsRequest), obj) + rule_errors(OPS_RULES, obj, before)


# --- the pieces -----------------------------------------------------------------------------


def prepare(model: type[Resource], obj: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """The object as the apiserver validates it: declared fields set to null are dropped,
    then the schema's defaults are applied."""
    return _prepare(schema_to_read(model), copy.deepcopy(to_dict(obj)))


def _prepare(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, list) and "items" in schema:
        return [_prepare(schema["items"], item) for item in value]
    if not (isinstance(value, dict) and schema.get("type") == "object"):
        return value
    props = schema.get("properties", {})
    out = {k: v for k, v in value.items() if not (v is None and k in props)}
    for name, sub in props.items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
    extra = schema.get("additionalProperties")
    for name, v in out.items():
        sub = props.get(name, extra if isinstance(extra, dict) else None)
        if sub is not None:
            out[name] = _prepare(sub, v)
    return out


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, bool)) or value is None else str(value)


def schema_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """OpenAPI checks the generated schemas use, with the apiserver's wording."""
    where = path or "<root>"
    if schema.get("x-kubernetes-int-or-string"):
        ok = _TYPES["integer"](value) or _TYPES["string"](value)
        return [] if ok else [f"{where}: Invalid value: {_show(value)}: must be an integer or a string"]
    kind = schema.get("type")
    if kind and not _TYPES[kind](value):
        return [f"{where}: Invalid value: {_show(value)}: must be of type {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(e) for e in schema["enum"])
        errors.append(f"{where}: Unsupported value: {_show(value)}: supported values: {supported}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: Invalid value: {value}: should be greater than or equal to {schema['minimum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{where}: Invalid value: {_show(value)}: should be at least {schema['minLength']} chars long")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{where}: Too long: may not be longer than {schema['maxLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{where}: Invalid value: {_show(value)}: should match '{schema['pattern']}'")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{where}: Too many: {len(value)}: must have at most {schema['maxItems']} items")
    if kind == "object":
        errors += [f"{_join(path, name)}: Required value" for name in schema.get("required", []) if name not in value]
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for name, sub_value in value.items():
            sub = props.get(name, extra if isinstance(extra, dict) else None)
            if sub is not None:
                errors += schema_errors(sub, sub_value, _join(path, name))
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{where}[{i}]")
    return errors


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            return _MISSING
        obj = obj[name]
    return obj


def rule_errors(rules: tuple[Rule, ...], obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Messages of the rules that fail. A rule whose value is absent is not run, as in CEL;
    one that meets a value of the wrong type is skipped (the schema check reports it)."""
    errors = []
    for rule in rules:
        value = _at(obj, rule.path)
        if value is _MISSING:
            continue
        try:
            if rule.transition:
                before = _MISSING if old is None else _at(old, rule.path)
                ok = before is _MISSING or rule.check(value, before)
            else:
                ok = rule.check(value)
        except (KeyError, TypeError, AttributeError):
            continue
        if not ok:
            errors.append(rule.message)
    return errors
