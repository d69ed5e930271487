"""Building blocks shared by the kubedruid API models (kmodules / core Kubernetes shapes).

Field names are the JSON names KubeDB uses (camelCase), so a model dumps to exactly the
manifest a KubeDB user writes. Unknown fields are kept (`extra="allow"`) so objects read
from the apiserver survive a round trip through these models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# Pod-template list bounds. They exist for the apiserver's CEL cost estimator: without
# maxItems, the reserved-volume rules over containers x volumeMounts are estimated far
# above the per-rule budget and the CRD would be refused. Real pods stay well below.
MAX_CONTAINERS = 64
MAX_VOLUMES = 256
MAX_VOLUME_MOUNTS = 256


class KubeModel(BaseModel):
    """Base of every API model: camelCase JSON names, unknown fields preserved."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    def to_dict(self) -> dict[str, Any]:
        """The object as Kubernetes JSON (unset fields omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class OpenModel(KubeModel):
    """A partially modelled object: the CRD keeps every field, not only the declared ones."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})


def to_dict(obj: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """Kubernetes JSON for a model, or the mapping itself."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(obj)


# --- resource identity (used by the CRD generator and by clients) ---------------------------


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"


AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    namespaced: bool = True
    columns: tuple[PrinterColumn, ...] = ()
    status: bool = True
    scale: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


class Resource(KubeModel):
    """A top-level object; subclasses set `resource`."""

    resource: ClassVar[ResourceInfo]


# --- core references ------------------------------------------------------------------------


class ObjectMeta(KubeModel):
    """metadata of a top-level object (the CRD schema leaves it to the apiserver)."""

    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    generation: int | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    ownerReferences: list[dict[str, Any]] | None = None


class LocalObjectReference(KubeModel):
    name: str | None = None


class ObjectReference(KubeModel):
    """kmodules ObjectReference: name + namespace."""

    name: str | None = None
    namespace: str | None = None


class TypedLocalObjectReference(KubeModel):
    """An issuer reference (cert-manager Issuer or ClusterIssuer)."""

    apiGroup: str | None = None
    kind: str
    name: str


class SecretReference(KubeModel):
    """KubeDB SecretReference (auth and keystore-credential secrets)."""

    apiGroup: str | None = None
    kind: str = "Secret"
    name: str | None = None
    externallyManaged: bool | None = None
    rotateAfter: str | None = None
    activeFrom: str | None = Field(None, json_schema_extra={"format": "date-time"})
    secretStoreName: str | None = None


class Condition(KubeModel):
    """kmapi Condition."""

    type: str
    status: str
    observedGeneration: int | None = None
    severity: str | None = None
    lastTransitionTime: str = Field(json_schema_extra={"format": "date-time"})
    reason: str | None = None
    message: str | None = None


# --- TLS (kmodules TLSConfig) ---------------------------------------------------------------


class X509Subject(KubeModel):
    organizations: list[str] | None = None
    countries: list[str] | None = None
    organizationalUnits: list[str] | None = None
    localities: list[str] | None = None
    provinces: list[str] | None = None
    streetAddresses: list[str] | None = None
    postalCodes: list[str] | None = None
    serialNumber: str | None = None


class CertificatePrivateKey(KubeModel):
    encoding: Literal["PKCS1", "PKCS8"] | None = None


class CertificateSpec(KubeModel):
    """One certificate of a TLS config; `alias` is server or client for Druid (not enforced, as in KubeDB)."""

    alias: str
    issuerRef: TypedLocalObjectReference | None = None
    secretName: str | None = None
    subject: X509Subject | None = None
    duration: str | None = None
    renewBefore: str | None = None
    dnsNames: list[str] | None = None
    ipAddresses: list[str] | None = None
    uris: list[str] | None = None
    emailAddresses: list[str] | None = None
    privateKey: CertificatePrivateKey | None = None


class TLSConfig(KubeModel):
    issuerRef: TypedLocalObjectReference | None = None
    certificates: list[CertificateSpec] | None = None


# --- offshoot pod template (only what validation and defaulting look at is typed) -------------


class VolumeMount(OpenModel):
    name: str
    mountPath: str


class Container(OpenModel):
    name: str
    volumeMounts: list[VolumeMount] | None = Field(None, max_length=MAX_VOLUME_MOUNTS)


class Volume(OpenModel):
    name: str


class PodSpec(OpenModel):
    """Pod spec; every Kubernetes field is accepted, the typed ones are checked."""

    containers: list[Container] | None = Field(None, max_length=MAX_CONTAINERS)
    initContainers: list[Container] | None = Field(None, max_length=MAX_CONTAINERS)
    volumes: list[Volume] | None = Field(None, max_length=MAX_VOLUMES)


class LabelsAnnotations(KubeModel):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class PodTemplateSpec(OpenModel):
    """kmodules offshoot PodTemplateSpec: pod metadata, PetSet (controller) metadata, pod spec."""

    metadata: LabelsAnnotations | None = None
    controller: LabelsAnnotations | None = None
    spec: PodSpec | None = None
