"""A Druid's pod templates and storage as the Kubernetes objects the apiserver validates with its own schemas.

KubeDB's CRD embeds Kubernetes' schemas for `podTemplate` and `storage`; ours keeps them open (a CRD carrying every
Kubernetes type is most of a megabyte). Admission instead asks the apiserver to create, as a dry run with strict
field validation, a StatefulSet holding the node type's pod template and a PersistentVolumeClaim holding its
storage: the apiserver applies exactly the validation of its own version (`cpu: lots`, a misspelt `resourcez`),
and the message is mapped back onto the Druid's field. Pure: controllers/admission.py does the requests.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VALIDATION_LABEL = "kubedruid.dev/validation"
# Containers may leave the image to the DruidVersion (KubeDB fills it in); the dry run needs one.
PLACEHOLDER_IMAGE = "kubedruid.invalid/validation:none"
# kmodules' offshoot PodSpec fields that a core PodSpec lacks.
OFFSHOOT_ONLY_FIELDS = ("podPlacementPolicy",)
_UNDECODABLE = re.compile(r"^.* cannot be handled as an? \w+: ")


@dataclass(frozen=True)
class FieldCheck:
    """One object to dry-run create: `field` is the Druid field it holds, `inner` that field's path inside it."""

    field: str
    inner: str
    obj: dict

    def problem(self, message: str, causes: list[Mapping[str, Any]] | None) -> str:
        """The apiserver's rejection, told in the Druid's field names."""
        if causes:
            return "; ".join(self._on_druid(f"{c.get('field') or self.inner}: {c.get('message')}")
                             for c in causes)
        message = _UNDECODABLE.sub("", message)
        mapped = self._on_druid(message)
        return mapped if mapped != message else f"{self.field}: {message}"

    def _on_druid(self, text: str) -> str:
        return re.sub(rf"(?<![\w.]){re.escape(self.inner)}(?=[.\[:\"]|$)", self.field, text)


def field_checks(druid: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[FieldCheck]:
    """The checks for each node type's podTemplate and storage; on an update (`old`), only those that changed."""
    namespace = druid["metadata"].get("namespace") or "default"
    topology = (druid.get("spec") or {}).get("topology") or {}
    before = ((old or {}).get("spec") or {}).get("topology") or {}
    out = []
    for node, spec in sorted(topology.items()):
        if not isinstance(spec, dict):
            continue
        was = before.get(node) if isinstance(before.get(node), dict) else {}
        template, storage = spec.get("podTemplate"), spec.get("storage")
        if isinstance(template, dict) and (old is None or template != was.get("podTemplate")):
            out.append(FieldCheck(f"spec.topology.{node}.podTemplate", "spec.template",
                                  _statefulset(namespace, template)))
        if isinstance(storage, dict) and (old is None or storage != was.get("storage")):
            out.append(FieldCheck(f"spec.topology.{node}.storage", "spec",
                                  _claim(namespace, storage)))
    return out


def _meta(namespace: str) -> dict:
    return {"generateName": "kubedruid-validation-", "namespace": namespace}


def _statefulset(namespace: str, template: Mapping[str, Any]) -> dict:
    metadata = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    for name in OFFSHOOT_ONLY_FIELDS:
        spec.pop(name, None)
    spec["containers"] = spec.get("containers") or []
    if not any(isinstance(c, dict) and c.get("name") == "druid" for c in spec["containers"]):
        spec["containers"].append({"name": "druid"})  # after the user's: their indices stay the ones they wrote
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                c.setdefault("image", PLACEHOLDER_IMAGE)
    # Volumes the operator adds (configuration, certificates, data) may be mounted by name; they exist at run time.
    declared = {v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict)}
    mounted = {m.get("name") for key in ("containers", "initContainers") for c in spec.get(key) or []
               if isinstance(c, dict) for m in c.get("volumeMounts") or [] if isinstance(m, dict)}
    missing = sorted(n for n in mounted - declared if isinstance(n, str))
    if missing and not isinstance(spec.get("volumes"), list):
        spec["volumes"] = []
    for name in missing:
        spec["volumes"].append({"name": name, "emptyDir": {}})
    pod_meta = {"labels": {**(metadata.get("labels") or {}), VALIDATION_LABEL: "podtemplate"}}
    if "annotations" in metadata:
        pod_meta["annotations"] = metadata["annotations"]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(namespace),
            "spec": {"serviceName": "kubedruid-validation", "selector": {"matchLabels": {
                VALIDATION_LABEL: "podtemplate"}}, "template": {"metadata": pod_meta, "spec": spec}}}


def _claim(namespace: str, storage: Mapping[str, Any]) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(namespace),
            "spec": copy.deepcopy(dict(storage))}
