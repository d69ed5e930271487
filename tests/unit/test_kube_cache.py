"""The informers' pure parts: what a listing or a watch event changes in a store, and which reads a narrowed watch
can answer."""

from kubedruid.kube.cache import EXISTS, Cache, Store, Watched, matches, slim


def _obj(name: str, rv: str, ns: str = "a", labels: dict | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "labels": labels or {}}}


def test_a_new_listing_reports_what_disappeared_while_the_watch_was_gone():
    store = Store()
    assert [t for t, _ in store.replace([_obj("x", "1"), _obj("y", "1")])] == ["ADDED", "ADDED"]
    events = store.replace([_obj("y", "2"), _obj("z", "3")])  # x deleted, y changed, z created during a 410
    assert sorted((t, o["metadata"]["name"]) for t, o in events) == [
        ("ADDED", "z"), ("DELETED", "x"), ("MODIFIED", "y")]
    assert sorted(n for _, n in store.objects) == ["y", "z"]
    assert store.replace([_obj("y", "2"), _obj("z", "3")]) == []  # nothing changed: nothing to tell


def test_watch_events_update_the_store_and_bookmarks_tell_nothing():
    store = Store()
    assert store.apply("ADDED", _obj("x", "1"))
    assert store.apply("MODIFIED", _obj("x", "2"))
    assert store.get(("a", "x"))["metadata"]["resourceVersion"] == "2"
    assert not store.apply("BOOKMARK", {"metadata": {"resourceVersion": "3"}})
    assert store.apply("DELETED", _obj("x", "3"))
    assert store.objects == {}


def test_a_narrowed_watch_answers_only_lists_inside_its_selector():
    secrets = Watched("v1", "Secret", "secrets", labels={"app.kubernetes.io/managed-by": "kubedb.com",
                                                         "app.kubernetes.io/instance": EXISTS})
    ours = {"app.kubernetes.io/managed-by": "kubedb.com", "app.kubernetes.io/instance": "d"}
    assert secrets.answers(ours)
    assert not secrets.answers({"app.kubernetes.io/instance": "d"})  # could be another manager's
    assert not secrets.answers({**ours, "app.kubernetes.io/managed-by": "helm"})
    assert not secrets.answers(None)
    assert Watched("kubedb.com/v1alpha2", "Druid", "druids").answers(None)


def test_label_matching_knows_presence():
    assert matches(_obj("p", "1", labels={"k": "v"}), {"k": EXISTS})
    assert not matches(_obj("p", "1"), {"k": EXISTS})
    assert not matches(_obj("p", "1", labels={"k": "v"}), {"k": "w"})


def test_held_objects_drop_managed_fields_only():
    held = slim({"metadata": {"name": "x", "managedFields": [{"manager": "m"}], "labels": {"a": "b"}}, "spec": {}})
    assert held == {"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {}}


def test_an_unsynced_cache_answers_nothing():
    cache = Cache()
    assert cache.get("v1", "Secret", "x", "a") == (False, None)
    assert cache.list("v1", "Secret", "a", None) is None


def test_a_synced_cache_answers_hits_and_misses_of_a_kind_it_watches_whole():
    from kubedruid.kube.cache import Informer

    cache = Cache()
    druids = Informer(None, Watched("kubedb.com/v1alpha2", "Druid", "druids"), lambda *_: None)
    secrets = Informer(None, Watched("v1", "Secret", "secrets", labels={"owner": "us"}), lambda *_: None)
    for informer in (druids, secrets):
        cache.add(informer)
        informer.synced.set()
    druids.store.apply("ADDED", _obj("d", "1"))
    secrets.store.apply("ADDED", _obj("s", "1", labels={"owner": "us"}))

    answered, druid = cache.get("kubedb.com/v1alpha2", "Druid", "d", "a")
    assert answered and druid["metadata"]["name"] == "d"
    druid["metadata"]["labels"]["changed"] = "by a caller"  # a caller's change never reaches the store
    assert druids.store.get(("a", "d"))["metadata"]["labels"] == {}
    assert cache.get("kubedb.com/v1alpha2", "Druid", "gone", "a") == (True, None)  # watched whole: absent
    assert cache.get("v1", "Secret", "s", "a")[0]
    assert cache.get("v1", "Secret", "users-own", "a") == (False, None)  # maybe another's: ask the apiserver
    assert cache.get("v1", "Secret", "ours", "a", ours={"owner": "us"}) == (True, None)  # we would have seen it
    assert cache.get("v1", "Secret", "theirs", "a", ours={"owner": "them"}) == (False, None)
    assert [o["metadata"]["name"] for o in cache.list("v1", "Secret", "a", {"owner": "us"})] == ["s"]
    assert cache.list("v1", "Secret", "a", None) is None


def test_what_we_wrote_is_held_at_once_by_the_informer_that_would_see_it():
    from kubedruid.kube.cache import Informer

    cache = Cache()
    ours = Informer(None, Watched("v1", "Service", "services", labels={"owner": "us"}), lambda *_: None)
    cache.add(ours)
    ours.synced.set()
    written = {"apiVersion": "v1", "kind": "Service", **_obj("svc", "7", labels={"owner": "us"})}
    written["metadata"]["managedFields"] = [{"manager": "kubedruid"}]
    cache.wrote(written)
    assert cache.get("v1", "Service", "svc", "a")[1]["metadata"]["resourceVersion"] == "7"
    assert "managedFields" not in ours.store.get(("a", "svc"))["metadata"]
    cache.wrote({"apiVersion": "v1", "kind": "Service", **_obj("other", "8", labels={"owner": "them"})})
    assert ("a", "other") not in ours.store.objects


def test_a_write_answered_after_the_deletion_was_seen_never_brings_the_object_back():
    store = Store()
    druid = _obj("d", "5")
    druid["metadata"]["uid"] = "u1"
    store.apply("ADDED", druid)
    store.apply("DELETED", {**druid, "metadata": {**druid["metadata"], "resourceVersion": "7"}})
    store.wrote({**druid, "metadata": {**druid["metadata"], "resourceVersion": "6"}})  # our patch's late response
    assert store.get(("a", "d")) is None
    store.wrote({"metadata": {"name": "e", "namespace": "a", "uid": "u2", "deletionTimestamp": "now",
                              "finalizers": []}})  # removing the last finalizer deletes it
    assert store.get(("a", "e")) is None
    store.apply("ADDED", {**druid, "metadata": {**druid["metadata"], "uid": "u3", "resourceVersion": "9"}})
    store.wrote({**druid, "metadata": {**druid["metadata"], "uid": "u3", "resourceVersion": "10"}})
    assert store.get(("a", "d"))["metadata"]["resourceVersion"] == "10"  # made again under the same name


def test_a_write_answered_after_the_watch_brought_a_newer_version_keeps_the_newer():
    """CI: the PetSet controller created a pod, kwok marked it Ready, and the create's response, read after the
    watch's events, put the pod back as not Ready; nothing changed the pod again, so its Druid never became Ready."""
    store = Store()
    store.apply("ADDED", _obj("pod", "11"))
    store.apply("MODIFIED", {**_obj("pod", "13"), "status": {"phase": "Running"}})  # kwok's writes, seen first
    store.wrote(_obj("pod", "11"))  # then our create's response
    assert store.get(("a", "pod"))["metadata"]["resourceVersion"] == "13"
    store.wrote(_obj("pod", "14"))  # a later write of ours is held at once
    assert store.get(("a", "pod"))["metadata"]["resourceVersion"] == "14"
    store.wrote(_obj("pod", "not-a-number"))  # an opaque version is taken as it comes
    assert store.get(("a", "pod"))["metadata"]["resourceVersion"] == "not-a-number"


def test_a_namespace_holds_what_was_listed_written_and_watched_there_and_nothing_else():
    store = Store()
    store.replace([_obj("x", "1", ns="a"), _obj("y", "1", ns="b")])
    store.apply("ADDED", _obj("z", "2", ns="a"))
    store.wrote(_obj("w", "3", ns="c"))
    names = lambda ns: sorted(k[1] for k, _ in store.in_namespace(ns))  # noqa: E731
    assert (names("a"), names("b"), names("c"), names("d")) == (["x", "z"], ["y"], ["w"], [])
    assert names(None) == ["w", "x", "y", "z"]
    store.apply("DELETED", _obj("x", "4", ns="a"))
    store.replace([_obj("y", "1", ns="b")])  # z and w gone while the watch was away
    assert (names("a"), names("b"), names("c")) == ([], ["y"], [])
    assert store.names == {"b": {"y"}}, "no namespace kept empty"


def test_a_fresh_client_reads_the_apiserver_and_its_writes_reach_the_informers():
    """The ops manager reads pods and Secrets fresh but its own request and Druid through the informers: those must
    hold what it wrote through its fresh client as soon as the write returns."""
    import asyncio

    from kubedruid.kube.cache import Informer
    from kubedruid.kube.client import Kube

    druid_api = "kubedb.com/v1alpha2"

    class Apiserver:  # lightkube's AsyncClient, for the two calls made here
        gets = 0

        async def get(self, res, name, namespace=None):
            self.gets += 1
            return {"apiVersion": druid_api, "kind": "Druid", **_obj(name, "9")}

        async def patch(self, res, name, patch, namespace=None, patch_type=None):
            return {"apiVersion": druid_api, "kind": "Druid", **_obj(name, "10")}

    cache = Cache()
    druids = Informer(None, Watched(druid_api, "Druid", "druids"), lambda *_: None)
    cache.add(druids)
    druids.synced.set()
    druids.store.apply("ADDED", _obj("d", "8"))
    apiserver = Apiserver()
    kube = Kube(apiserver)
    fresh = kube.fresh  # as the operator does: its controllers take their clients before the informers exist
    kube.cache = cache

    assert asyncio.run(kube.get(druid_api, "Druid", "d", "a"))["metadata"]["resourceVersion"] == "8"
    read = asyncio.run(fresh.get(druid_api, "Druid", "d", "a"))
    assert (read["metadata"]["resourceVersion"], apiserver.gets) == ("9", 1)
    assert cache.get(druid_api, "Druid", "d", "a")[1]["metadata"]["resourceVersion"] == "8"  # a read holds nothing
    asyncio.run(fresh.patch(druid_api, "Druid", "d", {"status": {}}, "a", status=True))
    assert cache.get(druid_api, "Druid", "d", "a")[1]["metadata"]["resourceVersion"] == "10"
