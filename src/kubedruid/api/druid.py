"""The `Druid` custom resource (kubedb.com/v1alpha2), as KubeDB defines it (spec §1)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from kubedruid.api.common import (
    AGE_COLUMN,
    Condition,
    KubeModel,
    LocalObjectReference,
    ObjectMeta,
    OpenModel,
    PodTemplateSpec,
    PrinterColumn,
    Resource,
    ResourceInfo,
    SecretReference,
    TLSConfig,
)

# Node types in the order KubeDB lists them; PetSet names use the lower-cased key.
NODE_TYPES = ("coordinators", "overlords", "brokers", "routers", "historicals", "middleManagers")
MANDATORY_NODE_TYPES = ("coordinators", "brokers", "historicals", "middleManagers")
DATA_NODE_TYPES = ("historicals", "middleManagers")

DeepStorageType = Literal["s3", "google", "azure", "hdfs"]
MetadataStorageType = Literal["MySQL", "PostgreSQL"]
StorageType = Literal["Durable", "Ephemeral"]
DeletionPolicy = Literal["Halt", "Delete", "WipeOut", "DoNotTerminate"]
DruidPhase = Literal["Provisioning", "DataRestoring", "Ready", "Critical", "NotReady", "Halted", "Unknown"]
# KubeDB's aliases are primary, standby, stats, dashboard, secondary; a Druid has primary Services (one per
# client-facing node type) and, with spec.monitor, the stats Service.
ServiceAlias = Literal["primary", "stats"]
# mona's agents: Prometheus Operator (a ServiceMonitor), builtin Prometheus (scrape annotations), or neither.
MonitorAgent = Literal["prometheus.io/operator", "prometheus.io/builtin", "prometheus.io"]


class DruidNode(KubeModel):
    """One Druid node type: a PetSet of `replicas` pods."""

    replicas: int = Field(1, ge=1, description="Number of pods of this node type.")
    suffix: str | None = None
    podTemplate: PodTemplateSpec | None = None


class DruidDataNode(DruidNode):
    """A node type that keeps data (historicals, middleManagers)."""

    storageType: StorageType = "Durable"
    storage: dict[str, Any] | None = Field(None, description="PersistentVolumeClaim spec (Durable only).")
    ephemeralStorage: dict[str, Any] | None = Field(None, description="EmptyDir volume source (Ephemeral only).")


class DruidClusterTopology(KubeModel):
    """Node types; coordinators, brokers, historicals and middleManagers are defaulted when absent."""

    coordinators: DruidNode | None = None
    overlords: DruidNode | None = None
    brokers: DruidNode | None = None
    routers: DruidNode | None = None
    historicals: DruidDataNode | None = None
    middleManagers: DruidDataNode | None = None

    def nodes(self) -> dict[str, DruidNode]:
        """The node types that are present, by key, in NODE_TYPES order."""
        return {key: node for key in NODE_TYPES if (node := getattr(self, key)) is not None}


class DeepStorageSpec(KubeModel):
    type: DeepStorageType
    configSecret: LocalObjectReference | None = None


class MetadataStorage(KubeModel):
    """Reference to the metadata store (an AppBinding name/namespace) and how to use it."""

    name: str | None = Field(None, min_length=1)
    namespace: str | None = Field(None, min_length=1)
    type: MetadataStorageType | None = None
    createTables: bool | None = None
    linkedDB: str | None = None
    externallyManaged: bool | None = None
    version: str | None = None


class ZookeeperRef(KubeModel):
    name: str | None = Field(None, min_length=1)
    namespace: str | None = Field(None, min_length=1)
    pathsBase: str | None = None
    externallyManaged: bool | None = None
    version: str | None = None


class ConfigurationSpec(KubeModel):
    secretName: str | None = None
    inline: dict[str, str] | None = None


class HealthCheckSpec(KubeModel):
    periodSeconds: int = 30
    timeoutSeconds: int = 10
    failureThreshold: int = 3
    disableWriteCheck: bool | None = None


class NamedServiceTemplateSpec(OpenModel):
    alias: ServiceAlias
    metadata: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None


class PrometheusExporterSpec(KubeModel):
    """The metrics sidecar of every pod (kubedruid/exporter.py): its port (KubeDB's 9104 when 0 or absent), and
    what a user may set on its container."""

    port: int | None = Field(default=None, ge=0, le=65535)
    env: list[dict[str, Any]] | None = None
    resources: dict[str, Any] | None = None
    securityContext: dict[str, Any] | None = None


class ServiceMonitorSpec(KubeModel):
    labels: dict[str, str] | None = None
    interval: str | None = None


class PrometheusSpec(KubeModel):
    exporter: PrometheusExporterSpec | None = None
    serviceMonitor: ServiceMonitorSpec | None = None


class MonitorSpec(KubeModel):
    """mona's AgentSpec, as KubeDB's Druid takes it: every pod serves Prometheus metrics, gathered by the stats
    Service `<db>-stats`."""

    agent: MonitorAgent
    prometheus: PrometheusSpec | None = None


class AutoOpsSpec(KubeModel):
    disabled: bool | None = None


class DruidSpec(KubeModel):
    version: str = Field(min_length=1, description="Name of a DruidVersion.")
    topology: DruidClusterTopology
    deepStorage: DeepStorageSpec
    metadataStorage: MetadataStorage | None = None
    zookeeperRef: ZookeeperRef | None = None
    enableSSL: bool | None = None
    tls: TLSConfig | None = None
    keystoreCredSecret: SecretReference | None = None
    authSecret: SecretReference | None = None
    disableSecurity: bool | None = None
    configuration: ConfigurationSpec | None = None
    init: dict[str, Any] | None = None
    serviceTemplates: list[NamedServiceTemplateSpec] | None = None
    halted: bool | None = None
    deletionPolicy: DeletionPolicy = "Delete"
    monitor: MonitorSpec | None = None
    healthChecker: HealthCheckSpec = HealthCheckSpec()
    autoOps: AutoOpsSpec | None = None


class ServedCertificate(KubeModel):
    """What one pod serves on its TLS port, from the operator's handshake (kubedruid's addition to KubeDB's status;
    certs/inventory.py): the certificate, or why there was no handshake."""

    pod: str
    serial: str | None = None  # upper-case hex, as openssl prints it
    issuer: str | None = None
    notBefore: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    notAfter: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    fingerprint: str | None = None  # SHA-256 of the DER certificate, hex
    error: str | None = None


class DruidStatus(KubeModel):
    phase: DruidPhase | None = None
    observedGeneration: int | None = None
    conditions: list[Condition] | None = None
    servedCertificates: list[ServedCertificate] | None = None


class Druid(Resource):
    resource: ClassVar[ResourceInfo] = ResourceInfo(
        group="kubedb.com",
        version="v1alpha2",
        kind="Druid",
        plural="druids",
        singular="druid",
        short_names=("dr",),
        categories=("datastore", "kubedb", "appscode", "all"),
        columns=(
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("Status", ".status.phase"),
            AGE_COLUMN,
        ),
    )

    apiVersion: str = "kubedb.com/v1alpha2"
    kind: str = "Druid"
    metadata: ObjectMeta = ObjectMeta()
    spec: DruidSpec
    status: DruidStatus | None = None
