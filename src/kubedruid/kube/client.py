"""The one Kubernetes client of the controllers: lightkube's async client, used with plain dicts.

Writes go through `ensure`, which reads first and writes (server-side apply, field manager `kubedruid`) only when
the desired fields differ from what the apiserver holds, so a resync over unchanged objects makes no write.

Reads are answered from the informers (kube/cache.py) where they hold the kind; `fresh` is the same client reading
only from the apiserver, for decisions that must not act on a view a few events old (the ops-manager's steps, but
for a roll's progress: decision 0031).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.config.client_adapter import verify_cluster
from lightkube.codecs import from_dict, resource_registry
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType
from prometheus_client import Counter

from .cache import Cache
from .diff import is_subset

FIELD_MANAGER = "kubedruid"
REPORTING_CONTROLLER = "kubedruid.dev/operator"
# The hash of what we last applied: a field we stop setting is absent from `desired`, so only this tells that an
# apply is due (server-side apply then removes the fields our field manager no longer sets).
APPLIED_HASH = "kubedruid.dev/applied-hash"
log = logging.getLogger("kubedruid.kube")

REQUESTS = Counter("kubedruid_apiserver_requests_total", "Requests the controllers made to the apiserver (watches "
                   "excluded)", ["verb", "kind"])
# Connections to the apiserver kept open between requests. Under load the controllers' workers (16 for ops, each pass
# reading several things at once) have 30 or more requests in flight; with httpx's default of 20 kept, every request
# beyond them opened a TLS connection and closed it after (a handshake on both sides: 2.5 % of the operator's time
# with 50 ops at once, and the apiserver's share of it).
CONNECTIONS = httpx2.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=60.0)

CACHE_READS = Counter("kubedruid_cache_reads_total", "Reads answered by the informers instead of the apiserver",
                      ["kind"])

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
    ("monitoring.coreos.com/v1", "ServiceMonitor"): create_namespaced_resource(
        "monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"),
}


def resource(api_version: str, kind: str):
    return GENERIC.get((api_version, kind)) or resource_registry.load(api_version, kind)


def as_dict(obj: Any) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def is_not_found(e: Exception) -> bool:
    return isinstance(e, ApiError) and e.status.code == 404


def is_not_served(e: Exception) -> bool:
    """A 404 without a Status body: the apiserver serves no such API at all (a CRD not installed), which lightkube
    leaves as its HTTP client's error."""
    return not isinstance(e, ApiError) and getattr(getattr(e, "response", None), "status_code", None) == 404


class Kube:
    def __init__(self, client: AsyncClient, cache: Cache | None = None, *, fresh_of: "Kube | None" = None):
        self.client = client
        self._cache = cache
        self._fresh_of = fresh_of
        self.writes = 0  # counted for the "no write on an unchanged resync" guarantee

    @property
    def cache(self) -> Cache | None:
        """The informers this client's writes go to (its reads too, unless it is `fresh`): a fresh client's are
        those of the client it came from, whenever they are set (the operator sets them after building its
        controllers)."""
        return self._fresh_of.cache if self._fresh_of is not None else self._cache

    @cache.setter
    def cache(self, cache: Cache | None) -> None:
        self._cache = cache

    @property
    def fresh(self) -> "Kube":
        """This client reading from the apiserver only. Its writes still go to the informers, so that a read through
        them right after sees at least what was written."""
        return Kube(self.client, fresh_of=self)

    def _reading_cache(self) -> Cache | None:
        return None if self._fresh_of is not None else self._cache

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> "Kube":
        config = KubeConfig.from_file(path) if path else KubeConfig.from_env()
        single = config.get()
        # Our own transport only to size its pool: the TLS settings are lightkube's, from the same configuration.
        transport = httpx2.AsyncHTTPTransport(
            verify=verify_cluster(single.cluster, single.user, single.abs_file), limits=CONNECTIONS)
        return cls(AsyncClient(config, field_manager=FIELD_MANAGER, transport=transport))

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                  ours: dict | None = None) -> dict | None:
        """`ours`: the labels of an object we made; only such an object is wanted, so a miss in an informer that
        holds every object with those labels means absent."""
        if (cache := self._reading_cache()) is not None:
            answered, obj = cache.get(api_version, kind, name, namespace, ours)
            if answered:
                CACHE_READS.labels(kind).inc()
                return obj
        REQUESTS.labels("get", kind).inc()
        try:
            return as_dict(await self.client.get(resource(api_version, kind), name, namespace=namespace))
        except ApiError as e:
            if e.status.code == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   labels: dict | None = None) -> list[dict]:
        """`labels`: equality, or cache.EXISTS for "has the label"."""
        if (cache := self._reading_cache()) is not None:
            cached = cache.list(api_version, kind, namespace, labels)
            if cached is not None:
                CACHE_READS.labels(kind).inc()
                return cached
        REQUESTS.labels("list", kind).inc()
        return [as_dict(o) async for o in self.client.list(resource(api_version, kind), namespace=namespace,
                                                           labels=labels or None)]

    async def ensure(self, desired: dict) -> bool:
        """Creates or updates `desired` (server-side apply) unless the apiserver already holds it. True if written."""
        meta = desired["metadata"]
        digest = hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()[:16]
        desired = {**desired, "metadata": {**meta, "annotations": {**(meta.get("annotations") or {}),
                                                                   APPLIED_HASH: digest}}}
        # Where the informer that would hold it holds no such object, applying is what converges it either way.
        current = await self.get(desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace"),
                                 ours=meta.get("labels") or None)
        if current is not None and is_subset(desired, current):
            return False
        REQUESTS.labels("apply", desired["kind"]).inc()
        applied = await self.client.apply(from_dict(desired), field_manager=FIELD_MANAGER, force=True)
        self.writes += 1
        if self.cache is not None:
            self.cache.wrote(as_dict(applied))
        return True

    async def create(self, obj: dict) -> dict:
        REQUESTS.labels("create", obj["kind"]).inc()
        created = as_dict(await self.client.create(from_dict(obj)))
        self.writes += 1
        if self.cache is not None:
            self.cache.wrote(created)
        return created

    async def dry_run_create(self, obj: dict) -> None:
        """Has the apiserver validate `obj` as a create (dryRun=All: nothing is stored), with strict field
        validation: an unknown or misspelt field is an error, as with `kubectl apply`. Raises ApiError (400/422:
        the object is invalid, the apiserver's message names the field)."""
        REQUESTS.labels("create", obj["kind"]).inc()
        # lightkube's class for the kind, typed or generic: whichever its registry holds by now (a typed one once
        # any code loaded it, e.g. to delete a claim); a typed class cannot be built from a plain dict.
        body = from_dict(obj)
        # lightkube's create() offers dry_run but not fieldValidation; its request() takes any query parameter.
        await self.client._client.request("post", res=type(body), obj=body, namespace=obj["metadata"]["namespace"],
                                          params={"dryRun": "All", "fieldValidation": "Strict"})

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        REQUESTS.labels("delete", kind).inc()
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
        REQUESTS.labels("patch", kind).inc()
        res = resource(api_version, kind)
        target = res.Status if status else res
        out = as_dict(await self.client.patch(target, name, patch, namespace=namespace, patch_type=PatchType.MERGE))
        self.writes += 1
        if self.cache is not None:
            self.cache.wrote(out)
        return out

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
        REQUESTS.labels("create", "Event").inc()
        try:
            await self.client.create(ev)
        except ApiError as e:  # an event is never worth failing a reconcile
            log.warning("could not record event %s on %s/%s: %s", reason, meta.get("namespace"), meta["name"], e)
