"""kubedruid's API layer: KubeDB-compatible models, defaulting, validation, CRD generation.

Pure: nothing here talks to the apiserver. Import what you need from this package.
"""

from kubedruid.api.common import (
    CertificateSpec,
    Condition,
    KubeModel,
    ObjectMeta,
    PodTemplateSpec,
    ResourceInfo,
    SecretReference,
    TLSConfig,
    TypedLocalObjectReference,
    to_dict,
)
from kubedruid.api.defaults import (
    apply_defaults,
    auth_secret_name,
    certificate_name,
    keystore_cred_secret_name,
    with_default_certificates,
)
from kubedruid.api.druid import (
    DATA_NODE_TYPES,
    MANDATORY_NODE_TYPES,
    NODE_TYPES,
    Druid,
    DruidClusterTopology,
    DruidDataNode,
    DruidNode,
    DruidSpec,
    DruidStatus,
)
from kubedruid.api.ops import OPS_TYPES, DruidOpsRequest, DruidOpsRequestSpec, OpsRequestStatus, TLSSpec
from kubedruid.api.petset import PetSet, PetSetSpec, PetSetStatus
from kubedruid.api.rules import reserved_mount_paths, reserved_volumes, tls_operation_count
from kubedruid.api.validation import validate_druid, validate_ops_request
from kubedruid.api.version import DruidVersion, DruidVersionSpec, druid_version, shipped_druid_versions

__all__ = [
    "DATA_NODE_TYPES",
    "MANDATORY_NODE_TYPES",
    "NODE_TYPES",
    "OPS_TYPES",
    "CertificateSpec",
    "Condition",
    "Druid",
    "DruidClusterTopology",
    "DruidDataNode",
    "DruidNode",
    "DruidOpsRequest",
    "DruidOpsRequestSpec",
    "DruidSpec",
    "DruidStatus",
    "DruidVersion",
    "DruidVersionSpec",
    "KubeModel",
    "ObjectMeta",
    "OpsRequestStatus",
    "PetSet",
    "PetSetSpec",
    "PetSetStatus",
    "PodTemplateSpec",
    "ResourceInfo",
    "SecretReference",
    "TLSConfig",
    "TLSSpec",
    "TypedLocalObjectReference",
    "apply_defaults",
    "auth_secret_name",
    "certificate_name",
    "druid_version",
    "keystore_cred_secret_name",
    "reserved_mount_paths",
    "reserved_volumes",
    "shipped_druid_versions",
    "tls_operation_count",
    "to_dict",
    "validate_druid",
    "validate_ops_request",
    "with_default_certificates",
]
