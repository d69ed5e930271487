"""Installs kubedruid's cluster-wide objects into the local plane: CRDs, the shipped DruidVersions, admission
policies. `kubedruid dev up` runs it after the plane is up; it is idempotent (server-side apply)."""

from __future__ import annotations

from pathlib import Path

from .layout import Binaries, PlaneLayout
from .plane import kubectl

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def install_kubedruid(layout: PlaneLayout, bins: Binaries) -> None:
    crds = sorted((DEPLOY / "crds").glob("*.yaml"))
    kubectl(layout, bins, "apply", "--server-side", "--force-conflicts", "--field-manager=kubedruid-dev",
            *(f"--filename={f}" for f in crds))
    names = [f.stem for f in crds]
    kubectl(layout, bins, "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
    # The same manifests the Helm chart installs (static templates, so they apply without Helm too).
    for path in (DEPLOY / "versions", DEPLOY / "helm/kubedruid/templates/admission-deletion-policy.yaml"):
        kubectl(layout, bins, "apply", "--server-side", "--force-conflicts", "--field-manager=kubedruid-dev",
                f"--filename={path}")
    if layout.real_node:  # a DruidVersion for each Druid version whose image the node holds
        from .node import local_druid_versions, local_druid_versions_manifest

        if versions := local_druid_versions(layout):
            kubectl(layout, bins, "apply", "--server-side", "--force-conflicts", "--field-manager=kubedruid-dev",
                    "-f", "-", stdin=local_druid_versions_manifest(versions))
