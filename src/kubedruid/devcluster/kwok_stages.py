"""kwok's stage configuration for the local plane, assembled at run time from the stage files shipped in the kwok
module (read from the Go module cache, never copied into the repository). Pure apart from reading those files.

Changes to upstream's "fast" pod stages, made in memory:
- a delay before a pod becomes Ready: `pod_ready_delay_ms` by default, or per pod the annotation
  `kubedruid.dev/kwok-ready-delay` (a Go duration such as "3s");
- a hold: a pod annotated `kubedruid.dev/kwok-hold-not-ready` never becomes Ready (for timeout tests);
- a delay before a terminating pod is removed, per pod the annotation `kubedruid.dev/kwok-delete-delay` (none by
  default), as a kubelet takes a while to stop a pod. kwok removes a pod by name, with no UID precondition, and when
  its event queue lags it can play the pod-delete stage from a late event of a pod already gone: it then deletes the
  replacement a PetSet made under the same name, whose own late events do the same, again and again (measured in
  the scale bench: 20-29 restarts of each pod in one op's 3 rolls). With a delay, the replacement's arrival replaces
  the stale job in kwok's queue before it plays.
"""

from __future__ import annotations

from pathlib import Path

import yaml

READY_DELAY_ANNOTATION = "kubedruid.dev/kwok-ready-delay"
HOLD_NOT_READY_ANNOTATION = "kubedruid.dev/kwok-hold-not-ready"
DELETE_DELAY_ANNOTATION = "kubedruid.dev/kwok-delete-delay"

# Relative to the kwok module root: upstream's kustomize/stage/fast set plus the release and removal of volumes.
# Claims are provisioned and bound by volumes.KwokBinder, many at once (kwok plays volume stages one at a time).
STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
    "kustomize/stage/volume/fast/pv-delete.yaml",
    "kustomize/stage/volume/fast/pvc-delete.yaml",
)
STORAGE_CLASS_FILE = "kustomize/stage/volume/fast/storage-class.yaml"


def with_ready_delay_and_hold(stage: dict, default_delay_ms: int) -> dict:
    """Returns the pod-ready stage with the delay and the hold added, the pod-delete stage with its per-pod delay;
    other stages unchanged."""
    if stage.get("metadata", {}).get("name") == "pod-delete":
        return {**stage, "spec": {**stage["spec"], "delay": {
            "durationMilliseconds": 0,
            "durationFrom": {"jq": {"expression": f'.metadata.annotations["{DELETE_DELAY_ANNOTATION}"]'}}}}}
    if stage.get("metadata", {}).get("name") != "pod-ready":
        return stage
    spec = dict(stage["spec"])
    selector = dict(spec.get("selector") or {})
    selector["matchExpressions"] = [
        *selector.get("matchExpressions", []),
        {"key": f'.metadata.annotations["{HOLD_NOT_READY_ANNOTATION}"]', "operator": "DoesNotExist"},
    ]
    spec["selector"] = selector
    spec["delay"] = {
        "durationMilliseconds": default_delay_ms,
        "durationFrom": {"jq": {"expression": f'.metadata.annotations["{READY_DELAY_ANNOTATION}"]'}},
    }
    return {**stage, "spec": spec}


def assemble(stage_texts: list[str], default_delay_ms: int) -> str:
    stages = [with_ready_delay_and_hold(yaml.safe_load(t), default_delay_ms) for t in stage_texts]
    return yaml.safe_dump_all(stages, sort_keys=False)


def read_stage_config(kwok_module_dir: Path, default_delay_ms: int) -> str:
    return assemble([(kwok_module_dir / f).read_text() for f in STAGE_FILES], default_delay_ms)
