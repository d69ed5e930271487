"""The `DruidOpsRequest` custom resource (ops.kubedb.com/v1alpha1), spec §3."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

from pydantic import Field

from kubedruid.api.common import (
    AGE_COLUMN,
    CertificateSpec,
    Condition,
    KubeModel,
    LocalObjectReference,
    ObjectMeta,
    PrinterColumn,
    Resource,
    ResourceInfo,
    TypedLocalObjectReference,
)

OpsType = Literal[
    "UpdateVersion",
    "HorizontalScaling",
    "VerticalScaling",
    "VolumeExpansion",
    "Restart",
    "Reconfigure",
    "ReconfigureTLS",
    "RotateAuth",
    "StorageMigration",
]
OPS_TYPES: tuple[str, ...] = get_args(OpsType)
OpsPhase = Literal[
    "Pending", "Progressing", "Successful", "Failed", "Skipped", "WaitingForApproval", "Approved", "Denied"
]

Quantity = int | str  # a Kubernetes resource quantity ("10Gi")


class DatabaseRef(KubeModel):
    name: str = Field(min_length=1, description="A Druid in the request's namespace.")


class HorizontalScalingTopology(KubeModel):
    coordinators: int | None = None
    overlords: int | None = None
    middleManagers: int | None = None
    historicals: int | None = None
    brokers: int | None = None
    routers: int | None = None


class HorizontalScalingSpec(KubeModel):
    topology: HorizontalScalingTopology | None = None


class NodeSelection(KubeModel):
    key: str
    value: str


class PodResources(KubeModel):
    resources: dict[str, Any] | None = None
    nodeSelectionPolicy: str | None = None
    topology: NodeSelection | None = None


class VerticalScalingSpec(KubeModel):
    coordinators: PodResources | None = None
    overlords: PodResources | None = None
    middleManagers: PodResources | None = None
    historicals: PodResources | None = None
    brokers: PodResources | None = None
    routers: PodResources | None = None
    mode: Literal["Restart", "InPlace"] = "Restart"


class VolumeExpansionSpec(KubeModel):
    mode: Literal["Online", "Offline"]
    middleManagers: Quantity | None = None
    historicals: Quantity | None = None


class AuthSecretRef(KubeModel):
    apiGroup: str | None = None
    kind: str = "Secret"
    name: str


class AuthSpec(KubeModel):
    secretRef: AuthSecretRef | None = None


class RestartSpec(KubeModel):
    pass


class UpdateVersionSpec(KubeModel):
    targetVersion: str | None = None


class ReconfigurationSpec(KubeModel):
    configSecret: LocalObjectReference | None = None
    applyConfig: dict[str, str] | None = None
    removeCustomConfig: bool | None = None
    restart: Literal["auto", "true", "false"] = "auto"


class TLSSpec(KubeModel):
    """kmodules TLSConfig plus the two ReconfigureTLS switches."""

    issuerRef: TypedLocalObjectReference | None = None
    certificates: list[CertificateSpec] | None = None
    rotateCertificates: bool | None = None
    remove: bool | None = None

    def operation(self) -> Literal["remove", "rotate", "update"] | None:
        """The ReconfigureTLS operation asked for; a valid request asks for exactly one
        (issuerRef and/or certificates together are one "update")."""
        if self.remove:
            return "remove"
        if self.rotateCertificates:
            return "rotate"
        if self.issuerRef is not None or self.certificates is not None:
            return "update"
        return None


class StorageMigrationSpec(KubeModel):
    storageClassName: str
    oldPVReclaimPolicy: str | None = None


class DruidOpsRequestSpec(KubeModel):
    databaseRef: DatabaseRef
    type: OpsType
    horizontalScaling: HorizontalScalingSpec | None = None
    verticalScaling: VerticalScalingSpec | None = None
    volumeExpansion: VolumeExpansionSpec | None = None
    authentication: AuthSpec | None = None
    restart: RestartSpec | None = None
    updateVersion: UpdateVersionSpec | None = None
    configuration: ReconfigurationSpec | None = None
    tls: TLSSpec | None = None
    migration: StorageMigrationSpec | None = None
    # maxLength keeps the CEL cost estimate of the duration regex small.
    timeout: str | None = Field(None, max_length=64, description="Per-step timeout, a Go duration such as 5m.")
    apply: Literal["IfReady", "Always"] = "IfReady"
    maxRetries: int = 1


class PausedBackup(KubeModel):
    apiGroup: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None


class OpsRequestStatus(KubeModel):
    phase: OpsPhase | None = None
    observedGeneration: int | None = None
    conditions: list[Condition] | None = None
    pausedBackups: list[PausedBackup] | None = None


class DruidOpsRequest(Resource):
    resource: ClassVar[ResourceInfo] = ResourceInfo(
        group="ops.kubedb.com",
        version="v1alpha1",
        kind="DruidOpsRequest",
        plural="druidopsrequests",
        singular="druidopsrequest",
        short_names=("drops",),
        categories=("ops", "kubedb", "appscode"),
        columns=(
            PrinterColumn("Type", ".spec.type"),
            PrinterColumn("Status", ".status.phase"),
            AGE_COLUMN,
        ),
    )

    apiVersion: str = "ops.kubedb.com/v1alpha1"
    kind: str = "DruidOpsRequest"
    metadata: ObjectMeta = ObjectMeta()
    spec: DruidOpsRequestSpec
    status: OpsRequestStatus | None = None
