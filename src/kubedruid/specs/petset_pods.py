"""What a PetSet's pods and claims look like (StatefulSet semantics). Pure."""

from __future__ import annotations

import copy
import hashlib
import json
import re

PETSET_API = "apps.k8s.appscode.com/v1"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"


def revision(petset: dict) -> str:
    """A stable hash of the pod template: pods whose label differs run an older template."""
    template = petset["spec"].get("template") or {}
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return digest[:10]  # without the PetSet's name, so that long names still fit the 63-character label limit


def ordinal(petset_name: str, pod_name: str) -> int | None:
    m = re.fullmatch(re.escape(petset_name) + r"-(\d+)", pod_name)
    return int(m.group(1)) if m else None


def claim_name(template_name: str, petset_name: str, i: int) -> str:
    return f"{template_name}-{petset_name}-{i}"


def owner_reference(petset: dict) -> dict:
    return {"apiVersion": PETSET_API, "kind": "PetSet", "name": petset["metadata"]["name"],
            "uid": petset["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def claims(petset: dict, i: int) -> list[dict]:
    """The PVCs of pod i. Like StatefulSet they are not owned by the PetSet: data survives a PetSet deletion."""
    name, ns = petset["metadata"]["name"], petset["metadata"]["namespace"]
    selector_labels = (petset["spec"].get("selector") or {}).get("matchLabels") or {}
    out = []
    for tpl in petset["spec"].get("volumeClaimTemplates") or []:
        meta = tpl.get("metadata") or {}
        out.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim_name(meta["name"], name, i), "namespace": ns,
                         "labels": {**selector_labels, **(meta.get("labels") or {})},
                         **({"annotations": meta["annotations"]} if meta.get("annotations") else {})},
            "spec": copy.deepcopy(tpl.get("spec") or {}),
        })
    return out


def pod(petset: dict, i: int) -> dict:
    name, ns = petset["metadata"]["name"], petset["metadata"]["namespace"]
    template = copy.deepcopy(petset["spec"].get("template") or {})
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    pod_name = f"{name}-{i}"
    labels = {**(meta.get("labels") or {}), POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: str(i),
              REVISION_LABEL: revision(petset)}
    spec["hostname"] = pod_name
    if petset["spec"].get("serviceName"):
        spec["subdomain"] = petset["spec"]["serviceName"]
    volumes = [v for v in spec.get("volumes") or []]
    names = {v.get("name") for v in volumes}
    for tpl in petset["spec"].get("volumeClaimTemplates") or []:
        vname = tpl["metadata"]["name"]
        if vname not in names:
            volumes.append({"name": vname, "persistentVolumeClaim": {"claimName": claim_name(vname, name, i)}})
    if volumes:
        spec["volumes"] = volumes
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                     **({"annotations": meta["annotations"]} if meta.get("annotations") else {}),
                     "ownerReferences": [owner_reference(petset)]},
        "spec": spec,
    }


def is_ready(p: dict) -> bool:
    if p["metadata"].get("deletionTimestamp"):
        return False
    status = p.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def in_service(p: dict) -> bool:
    """Ready, and not about to go: an eviction marks the pod (condition DisruptionTarget) before it deletes it."""
    return is_ready(p) and not any(c.get("type") == "DisruptionTarget" and c.get("status") == "True"
                                   for c in (p.get("status") or {}).get("conditions") or [])


def status(petset: dict, pods: list[dict]) -> dict:
    """PetSet status from its live pods. OnDelete semantics: currentRevision moves to the update revision only once
    every pod runs it."""
    update = revision(petset)
    old_status = petset.get("status") or {}
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    updated = sum(1 for p in live if p["metadata"]["labels"].get(REVISION_LABEL) == update)
    replicas = petset["spec"].get("replicas", 1)
    current = old_status.get("currentRevision") or update
    if updated == len(live) == replicas:
        current = update
    return {
        "observedGeneration": petset["metadata"].get("generation"),
        "replicas": len(live),
        "readyReplicas": sum(1 for p in live if is_ready(p)),
        "availableReplicas": sum(1 for p in live if is_ready(p)),
        "currentReplicas": sum(1 for p in live if p["metadata"]["labels"].get(REVISION_LABEL) == current),
        "updatedReplicas": updated,
        "currentRevision": current,
        "updateRevision": update,
        "collisionCount": old_status.get("collisionCount", 0),
    }
