"""Informers: each keeps the objects of one kind (those its label selector matches) current in memory with a list and
then a watch, and tells the controllers what changed. Reconciles read from them instead of the apiserver.

An expired watch (410 Gone) lists again and *replaces* what it holds, reporting what disappeared meanwhile as
deleted, so no deletion is missed. Objects are held without their managedFields (large, never read). A kind is
watched by label where the cluster holds many objects of other software (Secrets, pods): a miss there is answered by
the apiserver, never taken as "absent".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from lightkube import ALL_NS, AsyncClient, operators
from lightkube.core.exceptions import ApiError
from lightkube.codecs import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import OnErrorAction, OnErrorResult
from prometheus_client import Counter, Gauge

log = logging.getLogger("kubedruid.cache")

# A label selector value meaning "the label is present, whatever its value".
EXISTS = operators.exists()

CACHED_OBJECTS = Gauge("kubedruid_cached_objects", "Objects held by the operator's informers", ["kind"])
WATCH_RESTARTS = Counter("kubedruid_watch_relists_total", "Lists an informer made (its first, and after 410 Gone "
                         "or a broken watch)", ["kind"])

Key = tuple[str, str]  # (namespace or "", name)
Handler = Callable[[str, dict], None]  # (ADDED | MODIFIED | DELETED, object)

_RETRY_S = (0.5, 1, 2, 5, 10)
_RESOURCES: dict[tuple[str, str], type] = {}


def generic_resource(api_version: str, kind: str, plural: str, namespaced: bool = True):
    """lightkube's class for the kind: a generic one (plain dicts, no model parsing, unknown fields kept) unless a
    typed one is already registered for it."""
    key = (api_version, kind)
    if key not in _RESOURCES:
        group, _, version = api_version.rpartition("/")
        make = create_namespaced_resource if namespaced else create_global_resource
        try:
            _RESOURCES[key] = make(group, version, kind, plural)
        except ValueError:  # registered before (by us, or lightkube's typed class)
            _RESOURCES[key] = resource_registry.load(api_version, kind)
    return _RESOURCES[key]


@dataclass(frozen=True)
class Watched:
    """One kind the controllers watch; `labels` narrows the watch (values: a string, or EXISTS)."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True
    labels: dict = field(default_factory=dict)

    def resource(self):
        return generic_resource(self.api_version, self.kind, self.plural, self.namespaced)

    def answers(self, labels: dict | None) -> bool:
        """Whether every object a list with `labels` (equality, or EXISTS) returns is one this watch holds."""
        return labels_match(labels or {}, self.labels)  # the request's labels select within the watch's


def labels_match(have: dict, selector: dict | None) -> bool:
    return all(k in have and (v is EXISTS or have[k] == v) for k, v in (selector or {}).items())


def matches(obj: dict, labels: dict | None) -> bool:
    return labels_match(obj["metadata"].get("labels") or {}, labels)


def key_of(obj: dict) -> Key:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def slim(obj: dict) -> dict:
    """What is held: the object without managedFields."""
    meta = obj.get("metadata") or {}
    if "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


@dataclass(frozen=True, slots=True)
class Held:
    """One object as held: its labels and version for matching, the rest as JSON text — several times smaller than
    the dict, and each read parses a copy of its own (faster than copying the dict)."""

    labels: dict
    resource_version: str
    text: str

    @classmethod
    def of(cls, obj: dict) -> "Held":
        obj = slim(obj)
        meta = obj["metadata"]
        return cls(meta.get("labels") or {}, meta.get("resourceVersion") or "", json.dumps(obj, separators=(",", ":")))

    def object(self) -> dict:
        return json.loads(self.text)


class Store:
    """The objects of one informer and what a new listing or a watch event changes in them. Pure.

    `gone` remembers the UIDs of the last deleted objects, so that a write's response that arrives after the watch
    reported the deletion (removing the last finalizer deletes at once) never brings the object back."""

    GONE_KEPT = 10_000

    def __init__(self):
        self.objects: dict[Key, Held] = {}
        self.names: dict[str, set[str]] = {}  # by namespace: a namespace's list reads its own objects, not all
        self.gone: OrderedDict[Key, str] = OrderedDict()

    def _put(self, key: Key, held: Held) -> None:
        self.objects[key] = held
        self.names.setdefault(key[0], set()).add(key[1])

    def _drop(self, key: Key) -> None:
        if self.objects.pop(key, None) is not None:
            names = self.names[key[0]]
            names.discard(key[1])
            if not names:
                del self.names[key[0]]

    def in_namespace(self, namespace: str | None) -> list[tuple[Key, Held]]:
        """The held objects of one namespace (None: all)."""
        if namespace is None:
            return list(self.objects.items())
        return [((namespace, n), self.objects[(namespace, n)]) for n in self.names.get(namespace, ())]

    def replace(self, listed: list[dict]) -> list[tuple[str, dict]]:
        """Takes a full listing; returns the events it amounts to (DELETED for what is no longer there)."""
        fresh = {key_of(o): o for o in listed}
        events = [("DELETED", old.object()) for k, old in self.objects.items() if k not in fresh]
        for k, o in fresh.items():
            old = self.objects.get(k)
            if old is None or old.resource_version != o["metadata"].get("resourceVersion"):
                events.append(("ADDED" if old is None else "MODIFIED", o))
        self.objects, self.names = {}, {}
        for k, o in fresh.items():
            self._put(k, Held.of(o))
        return events

    def apply(self, type_: str, obj: dict) -> bool:
        """One watch event; False for a bookmark (nothing to tell)."""
        if type_ == "BOOKMARK":
            return False
        key = key_of(obj)
        if type_ == "DELETED":
            self._drop(key)
            self.gone[key] = obj["metadata"].get("uid") or ""
            if len(self.gone) > self.GONE_KEPT:
                self.gone.popitem(last=False)
        else:
            self.gone.pop(key, None)
            self._put(key, Held.of(obj))
        return True

    def wrote(self, obj: dict) -> None:
        """What one of our writes returned: held unless the object is gone (or goes with this write), or the watch
        already brought a newer version. The response of a write can be read after the watch's events of the writes
        that followed it (kwok marks a pod Ready a few milliseconds after we create it): held, the older version
        would stay until the object's next change, and a pod that never changes again would never be Ready."""
        meta = obj["metadata"]
        if self.gone.get(key_of(obj)) == (meta.get("uid") or "") or (meta.get("deletionTimestamp") and
                                                                      not meta.get("finalizers")):
            return
        held = self.objects.get(key_of(obj))
        if held is not None and _is_older(meta.get("resourceVersion") or "", held.resource_version):
            return
        self._put(key_of(obj), Held.of(obj))

    def get(self, key: Key) -> dict | None:
        held = self.objects.get(key)
        return held.object() if held is not None else None


def _is_older(version: str, than: str) -> bool:
    """Whether resourceVersion `version` is older than `than`. Kubernetes calls them opaque; the apiserver's are etcd
    revisions, integers that grow with every write of the cluster, which client-go's mutation cache compares the same
    way. One that is not an integer is never called older."""
    try:
        return int(version) < int(than)
    except ValueError:
        return False


class Informer:
    def __init__(self, client: AsyncClient, watched: Watched, handler: Handler):
        self.client, self.watched, self.handler = client, watched, handler
        self.store = Store()
        self.synced = asyncio.Event()
        self._resource = watched.resource()

    def get(self, namespace: str | None, name: str) -> dict | None:
        return self.store.get((namespace or "", name))

    def list(self, namespace: str | None, labels: dict | None) -> list[dict]:
        return [held.object() for _, held in self.store.in_namespace(namespace) if labels_match(held.labels, labels)]

    def _tell(self, events: list[tuple[str, dict]]) -> None:
        for type_, obj in events:
            try:
                self.handler(type_, obj)
            except Exception:  # noqa: BLE001 - one bad handler call must not stop the watch
                log.exception("handler of %s %s/%s failed", self.watched.kind, *key_of(obj))
        CACHED_OBJECTS.labels(self.watched.kind).set(len(self.store.objects))

    async def run(self) -> None:
        failures = 0
        scope = {"namespace": ALL_NS} if self.watched.namespaced else {}
        selector = self.watched.labels or None
        while True:
            try:
                WATCH_RESTARTS.labels(self.watched.kind).inc()
                listing = self.client.list(self._resource, labels=selector, **scope)
                # A list's items carry no apiVersion and kind; a watch's do. Held objects always do.
                kind = {"apiVersion": self.watched.api_version, "kind": self.watched.kind}
                objects = [{**o.to_dict(), **kind} async for o in listing]
                self._tell(self.store.replace(objects))
                self.synced.set()
                failures = 0
                async for type_, obj in self.client.watch(self._resource, labels=selector,
                                                          resource_version=listing.resourceVersion,
                                                          on_error=_retry_unless_gone, **scope):
                    raw = obj.to_dict()
                    if self.store.apply(type_, raw):
                        self._tell([(type_, raw)])
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status.code != 410:
                    failures += 1
                    log.warning("watch of %s failed (%s); listing again", self.watched.kind, e.status.message)
            except Exception as e:  # noqa: BLE001 - a broken connection: list again after a pause
                failures += 1
                log.warning("watch of %s broke (%s); listing again", self.watched.kind, e)
            if failures:
                await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S)) - 1])


def _retry_unless_gone(e: Exception, count: int):
    """lightkube's watch loop: reconnect after an ordinary disconnect; on 410 Gone stop, so that we list again."""
    if isinstance(e, ApiError) and e.status.code == 410:
        return OnErrorResult(OnErrorAction.RAISE)
    return OnErrorResult(OnErrorAction.RETRY, sleep=_RETRY_S[min(count, len(_RETRY_S)) - 1])


class Cache:
    """The informers by kind (a kind may have several, each narrowed to other labels), and whether a read can be
    answered from memory."""

    def __init__(self):
        self.informers: dict[tuple[str, str], list[Informer]] = {}
        self._tasks: list[asyncio.Task] = []

    def add(self, informer: Informer) -> None:
        self.informers.setdefault((informer.watched.api_version, informer.watched.kind), []).append(informer)

    def all(self) -> list[Informer]:
        return [i for informers in self.informers.values() for i in informers]

    def start(self) -> None:
        self._tasks = [asyncio.create_task(i.run(), name=f"informer-{i.watched.kind}") for i in self.all()]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_synced(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in self.all()))

    def unsynced(self) -> list[str]:
        return sorted({i.watched.kind for i in self.all() if not i.synced.is_set()})

    def _synced(self, api_version: str, kind: str) -> list[Informer]:
        informers = self.informers.get((api_version, kind)) or []
        return informers if informers and all(i.synced.is_set() for i in informers) else []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None,
            ours: dict | None = None) -> tuple[bool, dict | None]:
        """(answered, object): a hit; or a miss where the object cannot exist unseen: an informer holds every
        object the caller wants — all of the kind, or all with the labels `ours` (the caller wants the object only
        if it carries them: one we made); else not answered."""
        informers = self._synced(api_version, kind)
        for informer in informers:
            if (obj := informer.get(namespace, name)) is not None:
                return True, obj
        mine = {"metadata": {"labels": ours}} if ours else None
        return any(not i.watched.labels or (mine and matches(mine, i.watched.labels)) for i in informers), None

    def wrote(self, obj: dict) -> None:
        """What a write of ours returned, held at once: the next reconcile must not write it again because its
        watch event has not arrived yet (the event, when it comes, holds the same or a newer version)."""
        for informer in self.informers.get((obj.get("apiVersion"), obj.get("kind"))) or []:
            if matches(obj, informer.watched.labels):
                informer.store.wrote(obj)

    def list(self, api_version: str, kind: str, namespace: str | None,
             labels: dict | None) -> list[dict] | None:
        for informer in self._synced(api_version, kind):
            if informer.watched.answers(labels):
                return informer.list(namespace, labels)
        return None
