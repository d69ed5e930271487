"""The PetSet controller: StatefulSet semantics for apps.k8s.appscode.com/v1 PetSets.

Pods `<petset>-<ordinal>` are created in order (OrderedReady: the next only once the previous are Ready; Parallel:
all at once), with their claims from `volumeClaimTemplates`. A deleted or evicted pod is recreated from the current
template; a template change restarts nothing by itself (OnDelete: the ops-manager restarts pods by eviction).

The operator watches KubeDB's pods only (`WATCHED_POD_LABELS`): a PetSet whose template lacks KubeDB's label is still
run, its pods read from the apiserver, and looked at again every `UNWATCHED_PODS_RECHECK_S`, as no pod event of it
reaches us.
"""

from __future__ import annotations

import logging

from kubedruid.kube.cache import EXISTS, labels_match
from kubedruid.kube.client import Kube
from kubedruid.specs import petset_pods

log = logging.getLogger("kubedruid.petset")

CRD_NAME = "petsets.apps.k8s.appscode.com"
OWNER_LABEL = "app.kubernetes.io/part-of"  # set on the CRDs kubedruid generates (deploy/crds)
OWNER_VALUE = "kubedruid"
# The pods the operator's informer holds. Other software's StatefulSet pods carry the pod-name label too: held, 5,000
# of another operator's beside 1,000 Druids took the operator from 185 to 226 MiB.
WATCHED_POD_LABELS = {"app.kubernetes.io/managed-by": "kubedb.com", petset_pods.POD_NAME_LABEL: EXISTS}
UNWATCHED_PODS_RECHECK_S = 10.0


def crd_is_ours(crd: dict | None) -> bool:
    """Our PetSet controller runs only when the CRD was installed by kubedruid (another PetSet controller owns a
    CRD it installed itself)."""
    return bool(crd) and (crd["metadata"].get("labels") or {}).get(OWNER_LABEL) == OWNER_VALUE


async def owned_pods(kube: Kube, petset: dict) -> list[dict]:
    selector = (petset["spec"].get("selector") or {}).get("matchLabels") or {}
    # Every pod a PetSet owns carries its pod-name label: the operator's pod informer answers this list.
    pods = await kube.list("v1", "Pod", petset["metadata"]["namespace"],
                           labels={**selector, petset_pods.POD_NAME_LABEL: EXISTS})
    uid = petset["metadata"]["uid"]
    return [p for p in pods if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])]


def pods_watched(petset: dict) -> bool:
    """Whether the operator's pod informer holds this PetSet's pods (their events wake it). Pure."""
    labels = ((petset["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    return labels_match({**labels, petset_pods.POD_NAME_LABEL: "-"}, WATCHED_POD_LABELS)


async def reconcile(kube: Kube, namespace: str, name: str) -> float | None:
    """Returns when to look again (None: on the next event)."""
    petset = await kube.get(petset_pods.PETSET_API, "PetSet", name, namespace)
    if petset is None or petset["metadata"].get("deletionTimestamp"):
        return None  # pods go with it through their owner references (garbage collector)
    pods = {p["metadata"]["name"]: p for p in await owned_pods(kube, petset)}
    replicas = petset["spec"].get("replicas", 1)
    ordered = (petset["spec"].get("podManagementPolicy") or "OrderedReady") == "OrderedReady"

    for i in range(replicas):
        pod_name = f"{name}-{i}"
        current = pods.get(pod_name)
        if current is not None and (current.get("status") or {}).get("phase") in ("Failed", "Succeeded") \
                and not current["metadata"].get("deletionTimestamp"):
            await kube.delete("v1", "Pod", pod_name, namespace)  # replaced on the next pass
            current = {"metadata": {"deletionTimestamp": "now"}}
        if current is None:
            for claim in petset_pods.claims(petset, i):
                if await kube.get("v1", "PersistentVolumeClaim", claim["metadata"]["name"], namespace) is None:
                    await kube.create(claim)
            created = await kube.create(petset_pods.pod(petset, i))
            pods[pod_name] = created
            current = created
        if ordered and not petset_pods.is_ready(current):
            break  # the next ordinal waits for this one

    for pod_name, p in sorted(pods.items(), key=lambda kv: -(petset_pods.ordinal(name, kv[0]) or 0)):
        i = petset_pods.ordinal(name, pod_name)
        if i is not None and i >= replicas and not p["metadata"].get("deletionTimestamp"):
            await kube.delete("v1", "Pod", pod_name, namespace)  # scale down, highest ordinal first
            if ordered:
                break

    live = await owned_pods(kube, petset)
    status = petset_pods.status(petset, live)
    old = petset.get("status") or {}
    if any(old.get(k) != v for k, v in status.items()):
        await kube.patch(petset_pods.PETSET_API, "PetSet", name, {"status": status}, namespace, status=True)
    return None if pods_watched(petset) else UNWATCHED_PODS_RECHECK_S
