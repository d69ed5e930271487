"""The `DruidVersion` catalog resource (catalog.kubedb.com/v1alpha1) and the versions we ship.

KubeDB's DruidVersion also names an init image; kubedruid renders the whole Druid
configuration itself (DESIGN §1), so `initContainer` is optional here and our catalog
entries point at the upstream `apache/druid` image only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubedruid.api.common import AGE_COLUMN, KubeModel, ObjectMeta, PrinterColumn, Resource, ResourceInfo


class ImageRef(KubeModel):
    image: str


class VersionSecurityContext(KubeModel):
    runAsUser: int | None = None


class UpdateConstraints(KubeModel):
    allowlist: list[str] | None = None
    denylist: list[str] | None = None


class DruidVersionSpec(KubeModel):
    version: str
    db: ImageRef
    initContainer: ImageRef | None = None
    # kubedruid's: the metrics sidecar of a monitored Druid (spec.monitor); kubedruid's own image when absent.
    exporter: ImageRef | None = None
    securityContext: VersionSecurityContext | None = None
    deprecated: bool | None = None
    endOfLife: bool | None = None
    updateConstraints: UpdateConstraints | None = None
    ui: list[dict[str, Any]] | None = None


class DruidVersion(Resource):
    resource: ClassVar[ResourceInfo] = ResourceInfo(
        group="catalog.kubedb.com",
        version="v1alpha1",
        kind="DruidVersion",
        plural="druidversions",
        singular="druidversion",
        short_names=("drversion",),
        categories=("catalog", "kubedb", "appscode"),
        namespaced=False,
        columns=(
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("DB_IMAGE", ".spec.db.image"),
            PrinterColumn("Deprecated", ".spec.deprecated", "boolean"),
            AGE_COLUMN,
        ),
        status=False,
    )

    apiVersion: str = "catalog.kubedb.com/v1alpha1"
    kind: str = "DruidVersion"
    metadata: ObjectMeta = ObjectMeta()
    spec: DruidVersionSpec


# The catalog we ship: (version, deprecated). Newest first.
SHIPPED_VERSIONS: tuple[tuple[str, bool], ...] = (
    ("36.0.0", False),
    ("31.0.0", False),
    ("28.0.1", False),
)
DRUID_UID = 1000  # the uid of the druid user in apache/druid images


def druid_version(version: str, *, deprecated: bool = False) -> DruidVersion:
    """The catalog object for one upstream Apache Druid release."""
    return DruidVersion(
        metadata=ObjectMeta(name=version),
        spec=DruidVersionSpec(
            version=version,
            db=ImageRef(image=f"apache/druid:{version}"),
            securityContext=VersionSecurityContext(runAsUser=DRUID_UID),
            deprecated=deprecated,
            # Updates only move forward, as in KubeDB's catalog.
            updateConstraints=UpdateConstraints(allowlist=[f">= {version}"]),
        ),
    )


def shipped_druid_versions() -> list[dict[str, Any]]:
    """The DruidVersion objects kubedruid installs (also written to deploy/versions/)."""
    return [druid_version(v, deprecated=d).to_dict() for v, d in SHIPPED_VERSIONS]
