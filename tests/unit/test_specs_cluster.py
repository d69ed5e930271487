"""The desired children of a Druid (specs/cluster.py), from the manifests of spec kubedb-api §1.7."""

from __future__ import annotations

import copy
import ipaddress
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubedruid.api import Druid, apply_defaults
from kubedruid.druid import jvm, properties
from kubedruid.druid.properties import ClusterConfig, MetadataStore
from kubedruid.specs import cluster, petset_pods
from kubedruid.specs.resources import quantity as resources_quantity

UID = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
NS = "demo"
SELECTOR = {"app.kubernetes.io/name": "druids.kubedb.com", "app.kubernetes.io/managed-by": "kubedb.com"}
PLAIN_PORTS = {"coordinators": 8081, "overlords": 8090, "brokers": 8082, "routers": 8888, "historicals": 8083,
               "middleManagers": 8091}
TLS_PORTS = {"coordinators": 8281, "overlords": 8290, "brokers": 8282, "routers": 9088, "historicals": 8283,
             "middleManagers": 8291}
PETSET_SUFFIX = {"coordinators": "coordinators", "overlords": "overlords", "brokers": "brokers",
                 "routers": "routers", "historicals": "historicals", "middleManagers": "middlemanagers"}
ISSUER = {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "druid-ca-issuer"}


def manifest(name: str = "druid-cluster", *, ssl: bool = False, namespace: str = NS, **spec) -> dict:
    raw = {
        "apiVersion": "kubedb.com/v1alpha2", "kind": "Druid",
        "metadata": {"name": name, "namespace": namespace, "uid": UID},
        "spec": {"version": "36.0.0", "deepStorage": {"type": "s3", "configSecret": {"name": "deep-storage-config"}},
                 "topology": {"routers": {"replicas": 1}}, "deletionPolicy": "Delete"},
    }
    if ssl:
        raw["spec"]["enableSSL"] = True
        raw["spec"]["tls"] = {"issuerRef": dict(ISSUER)}
    raw["spec"].update(spec)
    return raw


def druid(raw: dict) -> Druid:
    return apply_defaults(Druid.model_validate(raw))


def inputs(db: Druid) -> cluster.Inputs:
    ns, name = db.metadata.namespace, db.metadata.name
    cfg = ClusterConfig(
        zookeeper=f"{name}-zk.{ns}.svc.cluster.local:2181", zookeeper_base="/druid",
        metadata=MetadataStore(type="MySQL", host=f"{name}-mysql-metadata.{ns}.svc.cluster.local", port=3306,
                               database="druid", user="root"),
        deep_storage_type="s3", deep_storage_properties={"druid.storage.bucket": "druid"},
        tls_mode=cluster.tls_mode(db), has_overlords=db.spec.topology.overlords is not None,
        has_routers=db.spec.topology.routers is not None)
    return cluster.Inputs(cluster=cfg, image="apache/druid:36.0.0", run_as_user=1000,
                          metadata_secret="x-mysql-metadata-auth", uid=UID)


PLAIN_DB = druid(manifest())
TLS_DB = druid(manifest("druid-cluster-tls", ssl=True))


def petsets(db: Druid) -> dict[str, dict]:
    """PetSets by topology key."""
    return {n.key: cluster.petset(db, n, inputs(db)) for n in cluster.nodes(db)}


def main_container(ps: dict) -> dict:
    (c,) = [c for c in ps["spec"]["template"]["spec"]["containers"] if c["name"] == "druid"]
    return c


def env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def services(db: Druid) -> dict[str, dict]:
    return {s["metadata"]["name"]: s for s in cluster.services(db, inputs(db))}


def certificates(db: Druid) -> dict[str, dict]:
    return {c["metadata"]["name"]: c for c in cluster.certificates(db, inputs(db))}


# --- PetSets: names, labels, selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("db", [PLAIN_DB, TLS_DB], ids=["plain", "tls"])
def test_petset_names_and_role_labels(db):
    name = db.metadata.name
    sets = petsets(db)
    # the KubeDB-docs manifest: four mandatory node types + routers, no overlords
    assert set(sets) == {"coordinators", "brokers", "routers", "historicals", "middleManagers"}
    for key, ps in sets.items():
        assert ps["apiVersion"] == "apps.k8s.appscode.com/v1" and ps["kind"] == "PetSet"
        assert ps["metadata"]["name"] == f"{name}-{PETSET_SUFFIX[key]}"
        assert ps["metadata"]["namespace"] == NS
        labels = ps["metadata"]["labels"]
        assert labels["kubedb.com/role"] == key  # camelCase, e.g. middleManagers
        assert labels["app.kubernetes.io/instance"] == name
        assert labels["app.kubernetes.io/component"] == "database"
        assert SELECTOR.items() <= labels.items()
        match = ps["spec"]["selector"]["matchLabels"]
        assert match == {**SELECTOR, "app.kubernetes.io/instance": name, "kubedb.com/role": key}
        # the selector must select the pods the template creates
        assert match.items() <= ps["spec"]["template"]["metadata"]["labels"].items()
        assert ps["spec"]["serviceName"] == f"{name}-pods"
        assert ps["spec"]["replicas"] == 1
        assert ps["metadata"]["ownerReferences"] == [{
            "apiVersion": "kubedb.com/v1alpha2", "kind": "Druid", "name": name, "uid": UID, "controller": True,
            "blockOwnerDeletion": True}]
    assert sets["middleManagers"]["metadata"]["name"] == f"{name}-middlemanagers"


def test_petset_selectors_do_not_overlap():
    selectors = [ps["spec"]["selector"]["matchLabels"] for ps in petsets(PLAIN_DB).values()]
    for a in selectors:
        for b in selectors:
            if a is not b:
                assert not a.items() <= b.items()


def test_overlords_petset_only_when_defined():
    db = druid(manifest(topology={"overlords": {"replicas": 2}}))
    sets = petsets(db)
    assert sets["overlords"]["metadata"]["name"] == "druid-cluster-overlords"
    assert sets["overlords"]["spec"]["replicas"] == 2
    assert "routers" not in sets
    assert "overlords" not in petsets(PLAIN_DB)


def test_replicas_follow_the_topology():
    db = druid(manifest(topology={"historicals": {"replicas": 3}, "brokers": {"replicas": 2}}))
    sets = petsets(db)
    assert sets["historicals"]["spec"]["replicas"] == 3
    assert sets["brokers"]["spec"]["replicas"] == 2
    assert sets["coordinators"]["spec"]["replicas"] == 1


# --- Services ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("db,ports", [(PLAIN_DB, PLAIN_PORTS), (TLS_DB, TLS_PORTS)], ids=["plain", "tls"])
def test_governing_service_is_headless_with_every_node_port(db, ports):
    name = db.metadata.name
    gov = services(db)[f"{name}-pods"]
    assert gov["spec"]["clusterIP"] == "None"
    assert gov["spec"]["selector"] == {**SELECTOR, "app.kubernetes.io/instance": name}
    present = ("coordinators", "brokers", "routers", "historicals", "middleManagers")
    assert sorted(p["port"] for p in gov["spec"]["ports"]) == sorted(ports[k] for k in present)
    port_names = [p["name"] for p in gov["spec"]["ports"]]
    assert len(set(port_names)) == len(port_names)
    assert all(len(n) <= 15 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) for n in port_names)


@pytest.mark.parametrize("db,ports,scheme", [(PLAIN_DB, PLAIN_PORTS, "http"), (TLS_DB, TLS_PORTS, "https")],
                         ids=["plain", "tls"])
def test_primary_services_for_client_facing_nodes_only(db, ports, scheme):
    name = db.metadata.name
    svcs = services(db)
    assert set(svcs) == {f"{name}-pods", f"{name}-coordinators", f"{name}-brokers", f"{name}-routers"}
    for key in ("coordinators", "brokers", "routers"):
        svc = svcs[f"{name}-{key}"]
        assert svc["spec"].get("clusterIP") != "None"
        assert svc["spec"]["selector"] == {**SELECTOR, "app.kubernetes.io/instance": name, "kubedb.com/role": key}
        assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
            (scheme, ports[key], ports[key])]
        assert svc["metadata"]["labels"]["kubedb.com/role"] == key


def test_overlords_primary_service_when_overlords_exist():
    db = druid(manifest(ssl=True, topology={"overlords": {"replicas": 1}}))
    svc = services(db)["druid-cluster-overlords"]
    assert [p["port"] for p in svc["spec"]["ports"]] == [8290]


def test_the_primary_service_template_reaches_every_client_service_but_not_what_makes_it_work():
    template = {"alias": "primary",
                "metadata": {"labels": {"team": "bi", "app.kubernetes.io/instance": "other"},
                             "annotations": {"lb.example.com/internal": "true"}},
                "spec": {"type": "NodePort", "externalTrafficPolicy": "Local",
                         "selector": {"app": "elsewhere"}, "clusterIP": "10.0.0.9",
                         "ports": [{"name": "http", "port": 1234, "nodePort": 30888}]}}
    db = druid(manifest(serviceTemplates=[template]))
    svcs = services(db)
    for key in ("coordinators", "brokers", "routers"):
        svc = svcs[f"druid-cluster-{key}"]
        assert svc["spec"]["type"] == "NodePort" and svc["spec"]["externalTrafficPolicy"] == "Local"
        assert svc["metadata"]["annotations"] == {"lb.example.com/internal": "true"}
        assert svc["metadata"]["labels"]["team"] == "bi"
        assert svc["metadata"]["labels"]["app.kubernetes.io/instance"] == "druid-cluster", "our labels win"
        assert svc["spec"]["selector"]["kubedb.com/role"] == key and "clusterIP" not in svc["spec"]
        node_port = 30888 if key == "routers" else None  # a node port belongs to one Service: the entry's
        assert [(p["name"], p["port"], p.get("nodePort")) for p in svc["spec"]["ports"]] == [
            ("http", PLAIN_PORTS[key], node_port)]
    assert "type" not in svcs["druid-cluster-pods"]["spec"], "the governing Service stays headless"
    assert services(PLAIN_DB)["druid-cluster-routers"]["spec"]["type"] == "ClusterIP"


def test_service_selectors_select_the_petset_pods():
    sets = petsets(TLS_DB)
    for svc in cluster.services(TLS_DB, inputs(TLS_DB)):
        selected = [k for k, ps in sets.items()
                    if svc["spec"]["selector"].items() <= ps["spec"]["template"]["metadata"]["labels"].items()]
        if svc["metadata"]["name"].endswith("-pods"):
            assert sorted(selected) == sorted(sets)
        else:
            assert len(selected) == 1
            # the Service's port is the port the selected pods listen on
            (port,) = main_container(sets[selected[0]])["ports"]
            assert svc["spec"]["ports"][0]["targetPort"] == port["containerPort"]


# --- containers: ports, probes, env, mounts ----------------------------------------------------------------------


# spec real-node §9: what each node type answers 200 on only once it is usable.
READINESS_PATHS = {"coordinators": "/status/selfDiscovered", "overlords": "/status/selfDiscovered",
                   "brokers": "/druid/broker/v1/readiness", "routers": "/status/selfDiscovered",
                   "historicals": "/druid/historical/v1/readiness", "middleManagers": "/status/selfDiscovered"}
ALL_NODES = {"overlords": {"replicas": 1}, "routers": {"replicas": 1}}


@pytest.mark.parametrize("ssl,ports", [(False, PLAIN_PORTS), (True, TLS_PORTS)], ids=["plain", "tls"])
def test_container_port_and_probes(ssl, ports):
    db = druid(manifest(ssl=ssl, topology=ALL_NODES))
    sets = petsets(db)
    assert set(sets) == set(READINESS_PATHS)
    for key, ps in sets.items():
        c = main_container(ps)
        assert [p["containerPort"] for p in c["ports"]] == [ports[key]]
        paths = {probe: c[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
        assert paths == {"startupProbe": "/status/health", "readinessProbe": READINESS_PATHS[key],
                         "livenessProbe": "/status/health"}, key
        for probe in paths:
            get = c[probe]["httpGet"]
            assert get["port"] == ports[key]
            if ssl:
                assert get["scheme"] == "HTTPS"
                # Jetty 12 (Druid 35+) answers 400 to a Host that is not in the certificate; the kubelet sends the IP
                assert {"name": "Host", "value": "localhost"} in get["httpHeaders"]
            else:
                assert get.get("scheme", "HTTP") == "HTTP"
                assert not get.get("httpHeaders")


def _budget(probe: dict) -> int:
    """Seconds of failures a probe tolerates before it acts."""
    return probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe["failureThreshold"]


def test_probe_timing_fits_slow_starts_and_fast_rolls():
    for ps in petsets(druid(manifest(topology=ALL_NODES))).values():
        c = main_container(ps)
        # a JVM on a busy 2-core node takes 10-60 s to serve HTTP: never restarted while starting
        assert _budget(c["startupProbe"]) >= 300
        assert c["startupProbe"]["periodSeconds"] <= 3  # and seen up soon after
        # Ready within a few seconds of being usable, so rolls move on
        assert c["readinessProbe"]["periodSeconds"] <= 5
        # restarted only after a long silence (GC pauses, CPU starvation), not on one slow answer
        assert _budget(c["livenessProbe"]) >= 60 and c["livenessProbe"]["failureThreshold"] >= 3
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["timeoutSeconds"] >= 2


def test_tls_mounts_server_certificate_and_ca_bundle_secrets():
    props = properties.common_properties(inputs(TLS_DB).cluster)
    for ps in petsets(TLS_DB).values():
        c = main_container(ps)
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in ps["spec"]["template"]["spec"]["volumes"]}
        (sync,) = ps["spec"]["template"]["spec"]["initContainers"]
        sync_mounts = {m["mountPath"]: m for m in sync["volumeMounts"]}
        for where, path, secret in ((sync_mounts, "/opt/druid/ssl", "druid-cluster-tls-server-cert"),
                                    (mounts, "/opt/druid/trust", "druid-cluster-tls-ca-bundle")):
            mount = where[path]
            assert volumes[mount["name"]]["secret"]["secretName"] == secret
            # Secret volumes must not use subPath: renewed certificates would never reach the pod.
            assert "subPath" not in mount
        assert props["druid.client.https.trustStorePath"].startswith("/opt/druid/trust/")
        # Druid reads the keystore from the directory the sidecar and Druid share, a regular file
        live = props["druid.server.https.keyStorePath"]
        assert live.startswith("/opt/druid/tls-live/")
        assert volumes[mounts["/opt/druid/tls-live"]["name"]]["emptyDir"]
        assert volumes[sync_mounts["/opt/druid/tls-live"]["name"]] is volumes[mounts["/opt/druid/tls-live"]["name"]]
        assert sync["restartPolicy"] == "Always" and sync["image"] == c["image"]
        assert sync["startupProbe"]["exec"]["command"] == ["test", "-s", live]
        assert sync["securityContext"] == c["securityContext"]


def test_plain_has_no_certificate_mount_or_keystore_password():
    for ps in petsets(PLAIN_DB).values():
        c = main_container(ps)
        assert not [m for m in c["volumeMounts"] if m["mountPath"].startswith("/opt/druid/ssl")]
        assert not [v for v in ps["spec"]["template"]["spec"]["volumes"]
                    if "cert" in (v.get("secret") or {}).get("secretName", "")]
        assert "DRUID_KEY_STORE_PASSWORD" not in env(c)


def test_tls_keystore_password_env_from_keystore_cred_secret():
    for ps in petsets(TLS_DB).values():
        e = env(main_container(ps))["DRUID_KEY_STORE_PASSWORD"]
        assert e["valueFrom"]["secretKeyRef"] == {"name": "druid-cluster-tls-keystore-cred",
                                                  "key": "keystore_password"}
        assert "value" not in e


@pytest.mark.parametrize("db", [PLAIN_DB, TLS_DB], ids=["plain", "tls"])
def test_druid_host_is_the_pod_fqdn(db):
    name = db.metadata.name
    for ps in petsets(db).values():
        c = main_container(ps)
        names_in_order = [e["name"] for e in c["env"]]
        e = env(c)
        assert e["druid_host"]["value"] == f"$(POD_NAME).{name}-pods.{NS}.svc.cluster.local"
        # Kubernetes expands $(POD_NAME) only when POD_NAME is defined earlier in the list
        assert names_in_order.index("POD_NAME") < names_in_order.index("druid_host")
        assert e["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_druid_host_resolves_through_the_pods_hostname_and_subdomain():
    """The announced druid.host is the name Kubernetes DNS gives the pod: <hostname>.<subdomain>.<ns>.svc.<domain>."""
    for ps in petsets(TLS_DB).values():
        ps = {**ps, "metadata": {**ps["metadata"], "uid": "petset-uid"}}
        pod = petset_pods.pod(ps, 0)
        host = env(main_container({"spec": {"template": pod}}))["druid_host"]["value"].replace(
            "$(POD_NAME)", pod["metadata"]["name"])
        assert host == f"{pod['spec']['hostname']}.{pod['spec']['subdomain']}.{NS}.svc.cluster.local"
        assert any(s["metadata"]["name"] == pod["spec"]["subdomain"] and s["spec"]["clusterIP"] == "None"
                   for s in cluster.services(TLS_DB, inputs(TLS_DB)))


@pytest.mark.parametrize("db", [PLAIN_DB, TLS_DB], ids=["plain", "tls"])
def test_every_password_provider_variable_is_set_from_a_secret(db):
    """Druid fails at startup (NPE) when a password provider's variable is missing from the environment."""
    inp = inputs(db)
    files = cluster.config_files(db, inp)
    for key, ps in petsets(db).items():
        e = env(main_container(ps))
        for file in ("common.runtime.properties", f"{key}.properties"):
            for prop, value in properties.parse(files[file]).items():
                if "password" in prop.lower():
                    variable = json.loads(value)["variable"]
                    assert variable in e, (key, prop)
                    assert "secretKeyRef" in e[variable]["valueFrom"], (key, prop)


def test_metadata_and_admin_passwords_from_secrets():
    e = env(main_container(petsets(PLAIN_DB)["brokers"]))
    assert e["DRUID_METADATA_STORAGE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "x-mysql-metadata-auth", "key": "password"}
    assert e["DRUID_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "druid-cluster-auth",
                                                                     "key": "password"}


def test_config_files_reach_the_container():
    inp = inputs(PLAIN_DB)
    secret = cluster.config_secret(PLAIN_DB, inp)
    assert secret["metadata"]["name"] == f"druid-cluster-{UID[-6:]}"
    files = secret["stringData"]
    for key, ps in petsets(PLAIN_DB).items():
        c = main_container(ps)
        volumes = {v["name"]: v for v in ps["spec"]["template"]["spec"]["volumes"]}
        (mount,) = [m for m in c["volumeMounts"] if volumes.get(m["name"], {}).get("secret", {}).get("secretName")
                    == secret["metadata"]["name"]]
        e = env(c)
        service = c["args"][0]
        assert e["DRUID_CONFIG_COMMON"]["value"] == f"{mount['mountPath']}/common.runtime.properties"
        node_file = e[f"DRUID_CONFIG_{service}"]["value"]
        assert node_file.startswith(mount["mountPath"] + "/")
        rendered = properties.parse(files[node_file.rsplit("/", 1)[1]])
        # the file the container is given is its own node's configuration
        assert rendered["druid.service"] == f"druid/{service}"


def test_image_and_security_context():
    for ps in petsets(PLAIN_DB).values():
        c = main_container(ps)
        assert c["image"] == "apache/druid:36.0.0"
        sc = c["securityContext"]
        assert sc["runAsUser"] == 1000 and sc["runAsNonRoot"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert ps["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 1000


def test_default_resources():
    """KubeDB's memory defaults, 100m CPU instead of its 500m (decision 0008), no CPU limit."""
    sets = petsets(druid(manifest(topology=ALL_NODES)))
    for key, ps in sets.items():
        memory = "2560Mi" if key == "middleManagers" else "1024Mi"
        assert main_container(ps)["resources"] == {"requests": {"cpu": "100m", "memory": memory},
                                                   "limits": {"memory": memory}}, key


# --- JVM sizes and requests (decision 0008) -----------------------------------------------------------------------

MiB = 1024 * 1024
# What a JVM needs beyond heap and direct memory (metaspace, code cache, threads): spec real-node §8 says 150-250 MB.
JVM_OVERHEAD = 200 * 10**6


def quantity_bytes(q: str) -> int:
    m = re.fullmatch(r"(\d+)(Mi|Gi|m|g)", q)
    return int(m[1]) * {"Mi": MiB, "m": MiB, "Gi": 1024 * MiB, "g": 1024 * MiB}[m[2]]


def jvm_env(c: dict) -> dict[str, str]:
    return {k: v["value"] for k, v in env(c).items() if k in ("DRUID_XMX", "DRUID_XMS", "DRUID_MAXDIRECTMEMORYSIZE")}


def processing_need(props: dict[str, str], prefix: str = "") -> int:
    """Druid's start check: buffer.sizeBytes x (numThreads + numMergeBuffers + 1)."""
    p = f"{prefix}druid.processing."
    return int(props[p + "buffer.sizeBytes"]) * (int(props[p + "numThreads"]) + int(props[p + "numMergeBuffers"]) + 1)


def budget_used(db: Druid, key: str) -> tuple[int, int]:
    """(bytes the JVMs of this pod may use besides their overhead, the container's memory limit), read from the pod
    spec and the configuration Secret as the pod gets them."""
    ps = petsets(db)[key]
    c = main_container(ps)
    e = jvm_env(c)
    assert e["DRUID_XMX"] == e["DRUID_XMS"], key
    heap, direct = quantity_bytes(e["DRUID_XMX"]), quantity_bytes(e["DRUID_MAXDIRECTMEMORYSIZE"])
    files = cluster.config_files(db, inputs(db))
    props = {**properties.parse(files["common.runtime.properties"]), **properties.parse(files[f"{key}.properties"])}
    if "druid.processing.buffer.sizeBytes" in props:
        assert direct >= processing_need(props), key
    used = heap + direct + JVM_OVERHEAD
    if key == "middleManagers":
        opts = props["druid.indexer.runner.javaOpts"].split()
        peon_heap = quantity_bytes(next(o[4:] for o in opts if o.startswith("-Xmx")))
        peon_direct = quantity_bytes(next(o.split("=")[1] for o in opts if o.startswith("-XX:MaxDirectMemorySize=")))
        assert peon_direct >= processing_need(props, "druid.indexer.fork.property."), key
        used += int(props["druid.worker.capacity"]) * (peon_heap + peon_direct + JVM_OVERHEAD)
    return used, quantity_bytes(c["resources"]["limits"]["memory"])


@pytest.mark.parametrize("ssl", [False, True], ids=["plain", "tls"])
def test_heaps_fit_the_default_limits(ssl):
    db = druid(manifest(ssl=ssl, topology=ALL_NODES))
    for key in READINESS_PATHS:
        used, limit = budget_used(db, key)
        assert used <= limit, key
        heap = quantity_bytes(jvm_env(main_container(petsets(db)[key]))["DRUID_XMX"])
        assert heap >= (128 if key in ("routers", "middleManagers") else 256) * MiB, key


@pytest.mark.parametrize("key,limit", [("brokers", "768Mi"), ("brokers", "2Gi"), ("historicals", "4Gi"),
                                       ("coordinators", "640Mi"), ("routers", "16Gi"), ("middleManagers", "2304Mi"),
                                       ("middleManagers", "6Gi")])
def test_heaps_follow_the_users_memory_limit(key, limit):
    template = {"spec": {"containers": [{"name": "druid", "resources": {"limits": {"memory": limit}}}]}}
    db = druid(manifest(topology={**ALL_NODES, key: {"podTemplate": template}}))
    used, got_limit = budget_used(db, key)
    assert got_limit == quantity_bytes(limit) and used <= got_limit
    c = main_container(petsets(db)[key])
    # KubeDB's defaulting: the request follows the user's limit, our CPU request stays
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": limit}, "limits": {"memory": limit}}
    default_heap = quantity_bytes(jvm_env(main_container(petsets(PLAIN_DB)[key]))["DRUID_XMX"])
    heap = quantity_bytes(jvm_env(c)["DRUID_XMX"])
    default_limit = quantity_bytes(main_container(petsets(PLAIN_DB)[key])["resources"]["limits"]["memory"])
    assert heap >= default_heap if quantity_bytes(limit) >= default_limit else heap <= default_heap


@pytest.mark.parametrize("key,limit,minimum", [("brokers", "512Mi", "767Mi"), ("historicals", "700Mi", "767Mi"),
                                               ("middleManagers", "1024Mi", "2304Mi")])
def test_a_limit_too_small_for_druid_is_refused_with_the_minimum(key, limit, minimum):
    template = {"spec": {"containers": [{"name": "druid", "resources": {"limits": {"memory": limit}}}]}}
    db = druid(manifest(topology={key: {"podTemplate": template}}))
    n = next(n for n in cluster.nodes(db) if n.key == key)
    with pytest.raises(jvm.InsufficientMemory) as e:
        cluster.petset(db, n, inputs(db))
    assert e.value.reason == "InsufficientMemory"
    assert str(e.value).startswith(f"{key}: a memory limit of {limit} is too small")
    assert f"at least {minimum}" in str(e.value)
    # the same answer without building the PetSet (for the provisioner's preflight)
    with pytest.raises(jvm.InsufficientMemory):
        cluster.jvm_memory(db, n, inputs(db))
    # and the minimum named is enough
    template["spec"]["containers"][0]["resources"]["limits"]["memory"] = minimum
    cluster.petset(druid(manifest(topology={key: {"podTemplate": template}})), n, inputs(db))


def test_user_jvm_variables_replace_ours():
    template = {"spec": {"containers": [{"name": "druid", "env": [
        {"name": "DRUID_XMX", "value": "300m"}, {"name": "DRUID_XMS", "value": "300m"},
        {"name": "EXTRA", "value": "1"}]}]}}
    db = druid(manifest(topology={"historicals": {"podTemplate": template}}))
    c = main_container(petsets(db)["historicals"])
    names_in_order = [x["name"] for x in c["env"]]
    assert names_in_order.count("DRUID_XMX") == 1 and names_in_order.count("DRUID_XMS") == 1
    assert env(c)["DRUID_XMX"]["value"] == "300m" and env(c)["DRUID_XMS"]["value"] == "300m"
    # ours that the user did not name stay; theirs that we do not have follow ours
    assert env(c)["DRUID_MAXDIRECTMEMORYSIZE"]["value"] == jvm_env(main_container(
        petsets(PLAIN_DB)["historicals"]))["DRUID_MAXDIRECTMEMORYSIZE"]
    assert names_in_order[-1] == "EXTRA"
    assert names_in_order.index("DRUID_XMX") < names_in_order.index("DRUID_MAXDIRECTMEMORYSIZE")


def test_user_processing_buffers_get_their_direct_memory():
    inline = {"brokers.properties": "druid.processing.buffer.sizeBytes=100MiB\ndruid.processing.numThreads=2\n"}
    template = {"spec": {"containers": [{"name": "druid", "resources": {"limits": {"memory": "2Gi"}}}]}}
    db = druid(manifest(configuration={"inline": inline}, topology={"brokers": {"podTemplate": template}}))
    direct = quantity_bytes(jvm_env(main_container(petsets(db)["brokers"]))["DRUID_MAXDIRECTMEMORYSIZE"])
    assert direct >= 100 * MiB * (2 + 2 + 1)


def test_java_opts_follow_the_cpus():
    opts = env(main_container(petsets(PLAIN_DB)["brokers"]))["JAVA_OPTS"]["value"].split()
    assert "-XX:ActiveProcessorCount=1" in opts and "-XX:+UseSerialGC" in opts
    template = {"spec": {"containers": [{"name": "druid", "resources": {"requests": {"cpu": "1500m"}}}]}}
    db = druid(manifest(topology={"brokers": {"podTemplate": template}}))
    opts = env(main_container(petsets(db)["brokers"]))["JAVA_OPTS"]["value"].split()
    assert "-XX:ActiveProcessorCount=2" in opts and "-XX:+UseSerialGC" not in opts


def test_the_guides_druid_fits_one_two_core_node():
    """examples/druid-cluster.yaml, unchanged, with the ZooKeeper and MySQL the operator creates for it: requests fit a
    node with 2000m CPU and ~23 GiB allocatable memory; every container has a memory limit, none a CPU limit."""
    from pathlib import Path

    import yaml

    from kubedruid.api.defaults import DEFAULT_MYSQL_VERSION, DEFAULT_ZOOKEEPER_VERSION
    from kubedruid.specs import dependencies

    docs = list(yaml.safe_load_all((Path(__file__).parents[2] / "examples" / "druid-cluster.yaml").read_text()))
    raw = next(d for d in docs if d["kind"] == "Druid")
    raw["metadata"]["uid"] = UID
    db = druid(raw)
    pods = [(ps["spec"]["replicas"], ps["spec"]["template"]["spec"]) for ps in petsets(db).values()]
    deps = (dependencies.zookeeper(raw, db.spec.zookeeperRef.name, DEFAULT_ZOOKEEPER_VERSION)
            + dependencies.metadata_store(raw, db.spec.metadataStorage.name, "MySQL", DEFAULT_MYSQL_VERSION, "druid"))
    pods += [(o["spec"]["replicas"], o["spec"]["template"]["spec"]) for o in deps if o["kind"] == "StatefulSet"]
    assert len(pods) == 7  # five Druid node types, ZooKeeper, MySQL
    cpu = memory = 0
    for replicas, spec in pods:
        for c in spec["containers"] + spec.get("initContainers", []):
            assert "cpu" not in c["resources"].get("limits", {}), c["name"]
            assert c["resources"]["limits"]["memory"], c["name"]
            cpu += replicas * float(resources_quantity(c["resources"]["requests"]["cpu"]))
            memory += replicas * float(resources_quantity(c["resources"]["requests"]["memory"]))
    assert cpu <= 2.0
    assert cpu <= 1.0  # and half the node stays free: a second replica of each, or the tests' own pods
    assert memory <= 23 * 1024**3


def test_zookeeper_heap_fits_its_limit():
    from kubedruid.specs import dependencies

    raw = manifest()
    (sts,) = [o for o in dependencies.zookeeper(raw, "druid-cluster-zk", "3.7.2") if o["kind"] == "StatefulSet"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    flags = env(c)["JVMFLAGS"]["value"].split()  # the zookeeper image's zkServer.sh appends these after -Xmx1000m
    heap = quantity_bytes(next(f[4:] for f in flags if f.startswith("-Xmx")))
    assert heap + JVM_OVERHEAD <= quantity_bytes(c["resources"]["limits"]["memory"])
    assert c["resources"]["requests"]["cpu"] and "cpu" not in c["resources"]["limits"]


# --- data volumes ------------------------------------------------------------------------------------------------


def test_data_claim_templates_for_data_nodes():
    sets = petsets(PLAIN_DB)
    default_pvc = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    for key, (volume, path) in {"historicals": ("data", "/druid/data/segments"),
                                "middleManagers": ("base-task-dir", "/var/druid/task")}.items():
        ps = sets[key]
        assert [(t["metadata"]["name"], t["spec"]) for t in ps["spec"]["volumeClaimTemplates"]] == [
            (volume, default_pvc)]
        assert {"name": volume, "mountPath": path} in [
            {k: m[k] for k in ("name", "mountPath")} for m in main_container(ps)["volumeMounts"]]
        # a claim template volume must not also be declared as a pod volume
        assert volume not in [v["name"] for v in ps["spec"]["template"]["spec"]["volumes"]]
    for key in ("coordinators", "brokers", "routers"):
        assert not sets[key]["spec"].get("volumeClaimTemplates")


def test_user_storage_is_used_for_claims():
    storage = {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
               "resources": {"requests": {"storage": "20Gi"}}}
    db = druid(manifest(topology={"historicals": {"replicas": 2, "storage": storage}}))
    (tpl,) = petsets(db)["historicals"]["spec"]["volumeClaimTemplates"]
    assert tpl["spec"] == storage


def test_ephemeral_data_node_uses_empty_dir():
    db = druid(manifest(topology={"middleManagers": {"storageType": "Ephemeral",
                                                     "ephemeralStorage": {"sizeLimit": "2Gi"}}}))
    ps = petsets(db)["middleManagers"]
    assert not ps["spec"]["volumeClaimTemplates"]
    volumes = {v["name"]: v for v in ps["spec"]["template"]["spec"]["volumes"]}
    assert volumes["base-task-dir"]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert "/var/druid/task" in [m["mountPath"] for m in main_container(ps)["volumeMounts"]]


# --- user podTemplate --------------------------------------------------------------------------------------------


def test_user_pod_template_is_merged():
    template = {
        "metadata": {"labels": {"team": "analytics"}, "annotations": {"a": "b"}},
        "controller": {"labels": {"tier": "query"}},
        "spec": {
            "containers": [{"name": "druid", "env": [{"name": "JAVA_OPTS", "value": "-Xmx2g"}],
                            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}},
                           {"name": "sidecar", "image": "busybox"}],
            "nodeSelector": {"disktype": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        },
    }
    db = druid(manifest(ssl=True, topology={"routers": {"replicas": 1, "podTemplate": template}}))
    ps = petsets(db)["routers"]
    c = main_container(ps)
    e = env(c)
    assert e["JAVA_OPTS"]["value"] == "-Xmx2g"
    assert [x["name"] for x in c["env"]].count("JAVA_OPTS") == 1  # theirs replaces ours, is not appended
    # ours are kept next to the user's
    assert "druid_host" in e and "DRUID_KEY_STORE_PASSWORD" in e
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    pod_spec = ps["spec"]["template"]["spec"]
    assert [x["name"] for x in pod_spec["containers"]] == ["druid", "sidecar"]
    assert pod_spec["nodeSelector"] == {"disktype": "ssd"}
    assert pod_spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert ps["spec"]["template"]["metadata"]["labels"]["team"] == "analytics"
    assert ps["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    assert ps["metadata"]["labels"]["tier"] == "query"
    # the selector still selects the pods
    assert ps["spec"]["selector"]["matchLabels"].items() <= ps["spec"]["template"]["metadata"]["labels"].items()
    # other node types are untouched
    other = main_container(petsets(db)["brokers"])
    assert env(other)["JAVA_OPTS"]["value"] != "-Xmx2g"
    assert other["resources"]["requests"]["cpu"] == "100m"


def test_user_volume_is_added():
    template = {"spec": {"volumes": [{"name": "extra", "emptyDir": {}}],
                         "containers": [{"name": "druid", "volumeMounts": [{"name": "extra", "mountPath": "/extra"}]}]}}
    db = druid(manifest(topology={"brokers": {"podTemplate": template}}))
    ps = petsets(db)["brokers"]
    assert "extra" in [v["name"] for v in ps["spec"]["template"]["spec"]["volumes"]]
    mounts = [m["mountPath"] for m in main_container(ps)["volumeMounts"]]
    assert "/extra" in mounts and "/tmp/config/operator-config" in mounts


def test_building_does_not_change_the_druid():
    db = druid(manifest(ssl=True, topology={"routers": {"podTemplate": {"spec": {"containers": [
        {"name": "druid", "env": [{"name": "X", "value": "1"}]}]}}}}))
    before = db.model_dump()
    first = petsets(db)
    assert db.model_dump() == before
    assert petsets(db) == first  # deterministic, and the user's env is not appended twice


# --- configuration -----------------------------------------------------------------------------------------------


def test_config_files_per_node_and_tls_in_common():
    files = cluster.config_files(TLS_DB, inputs(TLS_DB))
    assert set(files) == {"common.runtime.properties", "coordinators.properties", "brokers.properties",
                          "routers.properties", "historicals.properties", "middleManagers.properties"}
    common = properties.parse(files["common.runtime.properties"])
    assert common["druid.enableTlsPort"] == "true" and common["druid.enablePlaintextPort"] == "false"
    assert "simple-client-sslcontext" in json.loads(common["druid.extensions.loadList"])
    for key, port in TLS_PORTS.items():
        if key != "overlords":
            assert properties.parse(files[f"{key}.properties"])["druid.tlsPort"] == str(port)
    # no overlords in the manifest: the coordinator is the overlord
    assert properties.parse(files["coordinators.properties"])["druid.coordinator.asOverlord.enabled"] == "true"
    plain = properties.parse(cluster.config_files(PLAIN_DB, inputs(PLAIN_DB))["common.runtime.properties"])
    assert not [k for k in plain if k.startswith(("druid.server.https.", "druid.client.https."))]


def test_user_inline_configuration_wins():
    inline = {"common.runtime.properties": "druid.emitter=logging\ndruid.emitter.logging.logLevel=info\n",
              "brokers.properties": "druid.server.http.numThreads=60\n"}
    db = druid(manifest(configuration={"inline": inline}))
    files = cluster.config_files(db, inputs(db))
    common = properties.parse(files["common.runtime.properties"])
    assert common["druid.emitter"] == "logging"
    assert common["druid.emitter.logging.logLevel"] == "info"
    assert common["druid.zk.service.host"] == "druid-cluster-zk.demo.svc.cluster.local:2181"  # ours stay
    assert properties.parse(files["brokers.properties"])["druid.server.http.numThreads"] == "60"
    assert properties.parse(files["routers.properties"]).get("druid.server.http.numThreads") != "60"


def test_user_config_secret_wins_over_ours_and_inline_wins_over_the_secret():
    import dataclasses

    db = druid(manifest(configuration={"secretName": "my-config",
                                       "inline": {"common.runtime.properties": "druid.emitter=logging\n"}}))
    user = {"common.runtime.properties": "druid.emitter=http\ndruid.sql.enable=false\n",
            "historicals.properties": "druid.server.maxSize=10g\n"}
    files = cluster.config_files(db, dataclasses.replace(inputs(db), user_config=user))
    common = properties.parse(files["common.runtime.properties"])
    assert common["druid.emitter"] == "logging"  # inline beats the Secret
    assert common["druid.sql.enable"] == "false"  # the Secret beats ours
    assert properties.parse(files["historicals.properties"])["druid.server.maxSize"] == "10g"


# --- cert-manager Certificates -----------------------------------------------------------------------------------


def test_no_certificates_without_tls():
    assert cluster.certificates(PLAIN_DB, inputs(PLAIN_DB)) == []


def test_server_and_client_certificates():
    certs = certificates(TLS_DB)
    name = "druid-cluster-tls"
    assert set(certs) == {f"{name}-server-cert", f"{name}-client-cert"}
    for cert_name, cert in certs.items():
        assert cert["apiVersion"] == "cert-manager.io/v1" and cert["kind"] == "Certificate"
        assert cert["metadata"]["namespace"] == NS
        spec = cert["spec"]
        assert spec["secretName"] == cert_name
        assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": "druid-ca-issuer"}
        password = {"name": f"{name}-keystore-cred", "key": "keystore_password"}
        assert spec["keystores"]["jks"] == {"create": True, "alias": "druid", "passwordSecretRef": password}
        assert spec["keystores"]["pkcs12"]["profile"] == "Modern2023"
        assert spec["keystores"]["pkcs12"]["passwordSecretRef"] == password
        assert "127.0.0.1" in spec["ipAddresses"]
        assert spec["renewBefore"] == "5m"
        assert spec["privateKey"] == {"rotationPolicy": "Always"}  # pinned: a new key with every certificate
        assert cert["metadata"]["ownerReferences"][0]["uid"] == UID
    assert certs[f"{name}-server-cert"]["spec"]["usages"] == [
        "digital signature", "key encipherment", "server auth", "client auth"]
    assert certs[f"{name}-client-cert"]["spec"]["usages"] == ["digital signature", "key encipherment", "client auth"]


def test_keystore_password_and_mounted_secret_match_the_pods():
    certs = certificates(TLS_DB)
    server = certs["druid-cluster-tls-server-cert"]["spec"]
    for ps in petsets(TLS_DB).values():
        c = main_container(ps)
        assert env(c)["DRUID_KEY_STORE_PASSWORD"]["valueFrom"]["secretKeyRef"] == \
            server["keystores"]["jks"]["passwordSecretRef"]
        volumes = [v["secret"]["secretName"] for v in ps["spec"]["template"]["spec"]["volumes"] if "secret" in v]
        assert server["secretName"] in volumes


def test_certificate_sans():
    name, gov = "druid-cluster-tls", "druid-cluster-tls-pods"
    for cert in certificates(TLS_DB).values():
        dns = cert["spec"]["dnsNames"]
        assert len(dns) == len(set(dns))
        assert f"*.{gov}.{NS}.svc.cluster.local" in dns
        for suffix in ("coordinators", "brokers", "routers", "historicals", "middlemanagers"):
            assert f"{name}-{suffix}-0.{gov}.{NS}.svc.cluster.local" in dns
        for svc in ("coordinators", "brokers", "routers"):
            assert f"{name}-{svc}" in dns
            assert f"{name}-{svc}.{NS}.svc.cluster.local" in dns
        assert f"{name}-historicals" not in dns  # no such Service
        assert "localhost" in dns
        assert not [d for d in dns if ":" in d]  # KubeDB's host:port entries are deliberately not copied
        assert cert["spec"]["ipAddresses"] == ["127.0.0.1"]


def test_every_announced_druid_host_is_in_the_server_certificate():
    """Hostname validation stays on: each pod's druid.host must be one of the certificate's names."""
    db = druid(manifest("druid-cluster-tls", ssl=True, topology={"historicals": {"replicas": 3},
                                                                  "overlords": {"replicas": 2}}))
    dns = set(certificates(db)["druid-cluster-tls-server-cert"]["spec"]["dnsNames"])
    for ps in petsets(db).values():
        ps = {**ps, "metadata": {**ps["metadata"], "uid": "x"}}
        for i in range(ps["spec"]["replicas"]):
            pod = petset_pods.pod(ps, i)
            host = env(pod["spec"]["containers"][0])["druid_host"]["value"].replace("$(POD_NAME)",
                                                                                   pod["metadata"]["name"])
            assert host in dns


def test_user_certificate_settings_are_added():
    db = druid(manifest("druid-cluster-tls", ssl=True, tls={
        "issuerRef": dict(ISSUER),
        "certificates": [{"alias": "server", "dnsNames": ["druid.example.com"], "ipAddresses": ["10.0.0.7"],
                          "duration": "2160h", "subject": {"organizations": ["kubedb"]}},
                         {"alias": "client", "issuerRef": {"apiGroup": "cert-manager.io", "kind": "ClusterIssuer",
                                                           "name": "other-ca"}}]}))
    certs = certificates(db)
    server = certs["druid-cluster-tls-server-cert"]["spec"]
    assert "druid.example.com" in server["dnsNames"]
    assert "localhost" in server["dnsNames"]  # ours stay
    assert set(server["ipAddresses"]) == {"127.0.0.1", "10.0.0.7"}
    assert server["duration"] == "2160h"
    assert server["subject"] == {"organizations": ["kubedb"]}
    assert server["issuerRef"]["name"] == "druid-ca-issuer"
    client = certs["druid-cluster-tls-client-cert"]["spec"]
    assert client["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "other-ca"}
    assert "druid.example.com" not in client["dnsNames"]


def test_user_certificate_secret_name_is_used_everywhere():
    db = druid(manifest("druid-cluster-tls", ssl=True, tls={
        "issuerRef": dict(ISSUER), "certificates": [{"alias": "server", "secretName": "my-server-tls"}]}))
    cert = certificates(db)["druid-cluster-tls-server-cert"]
    assert cert["spec"]["secretName"] == "my-server-tls"
    for ps in petsets(db).values():
        assert "my-server-tls" in [v["secret"]["secretName"] for v in ps["spec"]["template"]["spec"]["volumes"]
                                   if "secret" in v]


# --- property: SANs are real DNS names ---------------------------------------------------------------------------

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"


def valid_dns_name(name: str) -> bool:
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    return len(name) <= 253 and bool(labels) and all(len(x) <= 63 and re.fullmatch(_LABEL, x) for x in labels)


# A Druid name longer than 37 characters cannot work whatever the certificate looks like: the pod label
# `controller-revision-hash: <db>-middlemanagers-<10 hex>` would exceed 63 characters.
db_names = st.from_regex(r"[a-z]([-a-z0-9]{0,35}[a-z0-9])?", fullmatch=True)
namespaces = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
replicas = st.integers(min_value=1, max_value=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=db_names, namespace=namespaces, coordinators=replicas, historicals=replicas, middle=replicas,
       routers=st.one_of(st.none(), replicas), overlords=st.one_of(st.none(), replicas))
def test_sans_are_valid_dns_names(name, namespace, coordinators, historicals, middle, routers, overlords):
    topology = {"coordinators": {"replicas": coordinators}, "historicals": {"replicas": historicals},
                "middleManagers": {"replicas": middle}}
    if routers:
        topology["routers"] = {"replicas": routers}
    if overlords:
        topology["overlords"] = {"replicas": overlords}
    raw = manifest(name, ssl=True, namespace=namespace)
    raw["spec"]["topology"] = topology
    db = druid(raw)
    certs = cluster.certificates(db, inputs(db))
    assert len(certs) == 2
    expected_pods = {f"{name}-{PETSET_SUFFIX[k]}-{i}.{name}-pods.{namespace}.svc.cluster.local"
                     for k, node in db.spec.topology.nodes().items() for i in range(node.replicas)}
    for cert in certs:
        spec = cert["spec"]
        for dns in spec["dnsNames"]:
            assert ":" not in dns
            assert valid_dns_name(dns), dns
        assert expected_pods <= set(spec["dnsNames"])
        assert f"*.{name}-pods.{namespace}.svc.cluster.local" in spec["dnsNames"]
        assert "localhost" in spec["dnsNames"]
        for ip in spec["ipAddresses"]:
            ipaddress.ip_address(ip)
        # cert-manager refuses a commonName longer than 64 characters
        assert len(spec.get("commonName", "")) <= 64
        if spec.get("commonName"):
            assert spec["commonName"] in spec["dnsNames"]


@settings(max_examples=30, deadline=None)
@given(name=db_names, historicals=replicas)
def test_pod_labels_and_hostnames_fit_kubernetes_limits(name, historicals):
    raw = manifest(name, ssl=True)
    raw["spec"]["topology"] = {"historicals": {"replicas": historicals}, "routers": {"replicas": 1}}
    db = druid(raw)
    for ps in petsets(db).values():
        ps = copy.deepcopy(ps)
        ps["metadata"]["uid"] = "u"
        for i in range(ps["spec"]["replicas"]):
            pod = petset_pods.pod(ps, i)
            assert re.fullmatch(_LABEL, pod["spec"]["hostname"]) and len(pod["spec"]["hostname"]) <= 63
            assert all(len(v) <= 63 for v in pod["metadata"]["labels"].values())


def test_common_name_is_omitted_when_cert_manager_would_refuse_it():
    """cert-manager's webhook rejects a commonName over 64 characters; the SANs carry the names anyway."""
    long_ns = "analytics-platform-production-europe-west1"
    db = druid(manifest("druid-cluster-tls", ssl=True, namespace=long_ns))
    for cert in cluster.certificates(db, inputs(db)):
        assert "commonName" not in cert["spec"]
        assert f"druid-cluster-tls-pods.{long_ns}.svc" in cert["spec"]["dnsNames"]
    # short enough: KubeDB's commonName (the governing Service) is kept
    for cert in certificates(TLS_DB).values():
        assert cert["spec"]["commonName"] == f"druid-cluster-tls-pods.{NS}.svc"


# --- TLS modes: what an op in progress renders (druid/tls.py) ----------------------------------------------------


def _in_mode(mode: str, *, ssl: bool = True) -> Druid:
    raw = manifest("druid-cluster-tls", ssl=ssl)
    raw["metadata"]["annotations"] = {"tls.kubedruid.dev/mode": mode}
    return druid(raw)


@pytest.mark.parametrize("mode", ["client-trust", "tls-port", "tls-services", "tls-only"])
def test_a_mode_in_progress_sets_ports_probes_mounts_and_services(mode):
    m = cluster.tls_mode(_in_mode(mode))
    assert m.value == mode
    db = _in_mode(mode)
    for key, ps in petsets(db).items():
        c = main_container(ps)
        ports = [p["containerPort"] for p in c["ports"]]
        expected = ([PLAIN_PORTS[key]] if m.plaintext_port else []) + ([TLS_PORTS[key]] if m.tls_port else [])
        assert ports == expected
        probe = c["readinessProbe"]["httpGet"]
        assert (probe["port"], probe["scheme"]) == ((TLS_PORTS[key], "HTTPS") if m.probes_tls
                                                    else (PLAIN_PORTS[key], "HTTP"))
        mounts = {v["mountPath"] for v in c["volumeMounts"]}
        assert "/opt/druid/trust" in mounts  # the CA bundle, from client trust on
        # the server keystore and its password only with the TLS port: client trust alone needs no Secret but the
        # bundle, so a pod of the last roll of a removal starts again after the TLS objects are gone
        assert ("/opt/druid/ssl" in mounts) is m.tls_port
        assert ("DRUID_KEY_STORE_PASSWORD" in env(c)) is m.tls_port
    for svc in services(db).values():
        if svc["spec"].get("clusterIP") == "None":
            continue
        ports = svc["spec"]["ports"]
        assert ports[0]["name"] == ("https" if m.services_tls else "http"), "the port clients should use comes first"
        # While pods serve both ports the Service offers both: a port that leaves a Service takes its forwarding
        # rules with it at once, so a client that has not yet followed the switch must still find the other.
        assert [p["name"] for p in ports][1:] == ({"tls-port": ["https"], "tls-services": ["http"]}.get(mode) or [])


def test_without_the_annotation_the_spec_declares_the_mode():
    assert cluster.tls_mode(PLAIN_DB).value == "off" and cluster.tls_mode(TLS_DB).value == "tls-only"


def test_a_mode_needing_tls_material_is_ignored_when_the_spec_has_no_tls():
    assert cluster.tls_mode(_in_mode("tls-port", ssl=False)).value == "off"
    # client trust needs only the CA bundle: a removal leaves it until the next Restart
    db = _in_mode("client-trust", ssl=False)
    assert cluster.tls_mode(db).value == "client-trust"
    c = main_container(petsets(db)["brokers"])
    assert "/opt/druid/trust" in {m["mountPath"] for m in c["volumeMounts"]}
    assert "DRUID_KEY_STORE_PASSWORD" not in env(c)
    assert cluster.tls_mode(_in_mode("no-such-mode")).value == "tls-only"


def test_client_trust_keeps_pods_plaintext_but_loads_the_client_ssl_context():
    db = _in_mode("client-trust")
    props = properties.parse(cluster.config_files(db, inputs(db))["common.runtime.properties"])
    assert "simple-client-sslcontext" in props["druid.extensions.loadList"]
    assert "druid.enableTlsPort" not in props and props["druid.client.https.validateHostnames"] == "true"
