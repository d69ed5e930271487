"""The one Kubernetes client of the controllers: lightkube's async client, used with plain dicts.

Writes go through `ensure`, which reads first and writes (server-side apply, field manager `kubedruid`) only when
the desired fields differ from what the apiserver holds, so a resync over unchanged objects makes no write.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict, resource_registry
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from .diff import is_subset

FIELD_MANAGER = "kubedruid"
REPORTING_CONTROLLER = "kubedruid.dev/operator"
# The hash of what we last applied: a field we stop setting is absent from `desired`, so only this tells that an
# apply is due (server-side apply then removes the fields our field manager no longer sets).
APPLIED_HASH = "kubedruid.dev/applied-hash"
log = logging.getLogger("kubedruid.kube")

# Custom resources the controllers use; registering them lets `from_dict` and `resource_registry` find them.
GENERIC = {
    ("kubedb.com/v1alpha2", "Druid"): create_namespaced_resource("kubedb.com", "v1alpha2", "Druid", "druids"),
    ("ops.kubedb.com/v1alpha1", "DruidOpsRequest"): create_namespaced_resource(
        "ops.kubedb.com", "v1alpha1", "DruidOpsRequest", "druidopsrequests"),
    ("catalog.kubedb.com/v1alpha1", "DruidVersion"): create_global_resource(
        "catalog.kubedb.com", "v1alpha1", "DruidVersion", "druidversions"),
    ("apps.k8s.appscode.com/v1", "PetSet"): create_namespaced_resource("apps.k8s.appscode.com", "v1", "PetSet", "petsets"),
    ("cert-manager.io/v1", "Certificate"): create_namespaced_resource("cert-manager.io", "v1", "Certificate", "certificates"),
    ("cert-manager.io/v1", "Issuer"): create_namespaced_resource("cert-manager.io", "v1", "Issuer", "issuers"),
    ("cert-manager.io/v1", "ClusterIssuer"): create_global_resource("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers"),
}


def resource(api_version: str, kind: str):
    return GENERIC.get((api_version, kind)) or resource_registry.load(api_version, kind)


def as_dict(obj: Any) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def is_not_found(e: Exception) -> bool:
    return isinstance(e, ApiError) and e.status.code == 404


class Kube:
    def __init__(self, client: AsyncClient):
        self.client = client
        self.writes = 0  # counted for the "no write on an unchanged resync" guarantee

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> "Kube":
        config = KubeConfig.from_file(path) if path else KubeConfig.from_env()
        return cls(AsyncClient(config, field_manager=FIELD_MANAGER))

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return as_dict(await self.client.get(resource(api_version, kind), name, namespace=namespace))
        except ApiError as e:
            if e.status.code == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   labels: dict[str, str] | None = None) -> list[dict]:
        return [as_dict(o) async for o in self.client.list(resource(api_version, kind), namespace=namespace,
                                                           labels=labels)]

    async def ensure(self, desired: dict) -> bool:
        """Creates or updates `desired` (server-side apply) unless the apiserver already holds it. True if written."""
        meta = desired["metadata"]
        digest = hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()[:16]
        desired = {**desired, "metadata": {**meta, "annotations": {**(meta.get("annotations") or {}),
                                                                   APPLIED_HASH: digest}}}
        current = await self.get(desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace"))
        if current is not None and is_subset(desired, current):
            return False
        await self.client.apply(from_dict(desired), field_manager=FIELD_MANAGER, force=True)
        self.writes += 1
        return True

    async def create(self, obj: dict) -> dict:
        created = await self.client.create(from_dict(obj))
        self.writes += 1
        return as_dict(created)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        try:
            await self.client.delete(resource(api_version, kind), name, namespace=namespace)
            self.writes += 1
            return True
        except ApiError as e:
            if e.status.code == 404:
                return False
            raise

    async def patch(self, api_version: str, kind: str, name: str, patch: dict, namespace: str | None = None,
                    status: bool = False) -> dict:
        res = resource(api_version, kind)
        target = res.Status if status else res
        out = await self.client.patch(target, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
        self.writes += 1
        return as_dict(out)

    async def event(self, involved: dict, type_: str, reason: str, message: str,
                    component: str = "kubedruid") -> None:
        """Records a core/v1 Event on `involved`. Messages never carry secret values (callers build them from names)."""
        meta = involved["metadata"]
        now = datetime.datetime.now(datetime.timezone.utc)
        ev = Event(
            metadata=ObjectMeta(generateName=f"{meta['name']}.", namespace=meta.get("namespace") or "default"),
            involvedObject={"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                            "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                            "resourceVersion": meta.get("resourceVersion")},
            type=type_, reason=reason[:128], message=message[:1024], source={"component": component},
            # eventTime (microseconds) orders events that share a second; it requires the reporting fields.
            eventTime=now, action=reason[:128], reportingComponent=REPORTING_CONTROLLER,
            reportingInstance=REPORTING_CONTROLLER,
        )
        try:
            await self.client.create(ev)
        except ApiError as e:  # an event is never worth failing a reconcile
            log.warning("could not record event %s on %s/%s: %s", reason, meta.get("namespace"), meta["name"], e)
