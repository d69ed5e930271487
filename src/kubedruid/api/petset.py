"""KubeDB's `PetSet` (apps.k8s.appscode.com/v1): a StatefulSet-shaped workload.

The schema mirrors kubeops/petset's CRD closely enough that either controller can own
the CRD (DESIGN §1); pod templates and PVC templates are kept free-form.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from kubedruid.api.common import (
    KubeModel,
    LocalObjectReference,
    ObjectMeta,
    OpenModel,
    Resource,
    ResourceInfo,
)


class LabelSelectorRequirement(KubeModel):
    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(KubeModel):
    matchLabels: dict[str, str] | None = None
    matchExpressions: list[LabelSelectorRequirement] | None = None


class PodTemplate(OpenModel):
    """core/v1 PodTemplateSpec, free-form."""

    metadata: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None


class RollingUpdate(KubeModel):
    partition: int | None = None
    maxUnavailable: int | str | None = None


class UpdateStrategy(KubeModel):
    type: str | None = None
    rollingUpdate: RollingUpdate | None = None


class PVCRetentionPolicy(KubeModel):
    whenDeleted: str | None = None
    whenScaled: str | None = None


class Ordinals(KubeModel):
    start: int | None = None


class PetSetSpec(KubeModel):
    replicas: int | None = None
    selector: LabelSelector
    serviceName: str
    template: PodTemplate
    volumeClaimTemplates: list[dict[str, Any]] | None = Field(None, description="PersistentVolumeClaims, free-form.")
    podManagementPolicy: str | None = None
    updateStrategy: UpdateStrategy | None = None
    minReadySeconds: int | None = None
    revisionHistoryLimit: int | None = None
    persistentVolumeClaimRetentionPolicy: PVCRetentionPolicy | None = None
    ordinals: Ordinals | None = None
    podPlacementPolicy: LocalObjectReference | None = None
    distributed: bool | None = None


class PetSetCondition(KubeModel):
    type: str
    status: str
    lastTransitionTime: str | None = Field(None, json_schema_extra={"format": "date-time"})
    reason: str | None = None
    message: str | None = None


class PetSetStatus(KubeModel):
    replicas: int = 0
    readyReplicas: int | None = None
    currentReplicas: int | None = None
    updatedReplicas: int | None = None
    availableReplicas: int | None = None
    observedGeneration: int | None = None
    currentRevision: str | None = None
    updateRevision: str | None = None
    collisionCount: int | None = None
    conditions: list[PetSetCondition] | None = None


class PetSet(Resource):
    resource: ClassVar[ResourceInfo] = ResourceInfo(
        group="apps.k8s.appscode.com",
        version="v1",
        kind="PetSet",
        plural="petsets",
        singular="petset",
        scale=True,
    )

    apiVersion: str = "apps.k8s.appscode.com/v1"
    kind: str = "PetSet"
    metadata: ObjectMeta = ObjectMeta()
    spec: PetSetSpec
    status: PetSetStatus | None = None
