"""Kubernetes structural schemas from the pydantic models (the openAPIV3Schema of each CRD).

model_json_schema() gives JSON Schema; Kubernetes wants a *structural* schema: no $ref, no
anyOf-null for optional fields, no titles, `properties` and `additionalProperties` never
together, free-form objects marked `x-kubernetes-preserve-unknown-fields`. The steps below
turn one into the other, then add the CEL rules from `rules.py`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

from kubedruid.api.common import Resource
from kubedruid.api.druid import Druid
from kubedruid.api.ops import DruidOpsRequest
from kubedruid.api.rules import DRUID_RULES, OPS_RULES, Rule

RULES: dict[type[Resource], tuple[Rule, ...]] = {Druid: DRUID_RULES, DruidOpsRequest: OPS_RULES}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline $ref and unwrap `anyOf: [X, null]`; keys next to them (description, default) win."""
    while True:
        rest = {k: v for k, v in node.items() if k not in ("$ref", "anyOf")}
        if "$ref" in node:
            node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **rest}
        elif "anyOf" in node:
            options = [o for o in node["anyOf"] if o != {"type": "null"}]
            if len(options) == 1:
                node = {**options[0], **rest}
            elif sorted(o.get("type", "") for o in options) == ["integer", "string"]:
                return {**rest, "x-kubernetes-int-or-string": True}
            else:
                raise ValueError(f"no structural form for anyOf {options}")
        else:
            return node


def _without_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key == "default":
            out[key] = _without_nones(value)
        elif key == "const":  # a one-value Literal
            out["enum"] = [value]
        elif key == "properties":
            if value:
                out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            # True comes from extra="allow" (a model: its declared fields are the schema) or
            # from dict[str, Any] (a free-form object: keep every field).
            if "properties" not in node:
                out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out[key] = value
    return out


def _node_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for name in path:
        schema = schema["properties"][name]
    return schema


@functools.cache
def _openapi_schema(model: type[Resource]) -> dict[str, Any]:
    raw = model.model_json_schema()
    schema = _structural(raw, raw.get("$defs", {}))
    schema.pop("$defs", None)
    schema.pop("description", None)
    # The apiserver owns these three; a schema for metadata may only restrict name.
    schema["properties"].update(apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
    for rule in RULES.get(model, ()):
        _node_at(schema, rule.path).setdefault("x-kubernetes-validations", []).append(rule.x_validation())
    return schema


def openapi_schema(model: type[Resource]) -> dict[str, Any]:
    """The openAPIV3Schema of `model`'s CRD (a fresh copy)."""
    return copy.deepcopy(_openapi_schema(model))


def schema_to_read(model: type[Resource]) -> Mapping[str, Any]:
    """The same schema, shared: for readers that never change it (validation runs on every pass of a Druid, and a
    copy of the schema cost more than the validation)."""
    return _openapi_schema(model)
