"""The desired children of a Druid: Services, the configuration Secret, PetSets and cert-manager Certificates.
Pure: a function of the (defaulted) Druid, its DruidVersion and the inputs the provisioner read."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubedruid.api import Druid
from kubedruid.druid import jvm, properties, tls
from kubedruid.druid.nodes import BY_KEY, HEALTH_PATH, MIDDLE_MANAGERS, PROVISION_ORDER, ROUTERS, NodeType
from kubedruid.druid.properties import ADMIN_PASSWORD_ENV, METADATA_PASSWORD_ENV, ClusterConfig, MetadataStore

from . import monitoring, names, resources

CONFIG_MOUNT = "/tmp/config/operator-config"  # KubeDB's operator-config-volume mount
# KubeDB's default memory, but 100m CPU instead of its 500m so that a whole Druid with its ZooKeeper and MySQL fits
# one 2-core node (decision 0008); no CPU limit. The user's resources win, key by key.
DEFAULT_CPU = "100m"
DEFAULT_RESOURCES = {"requests": {"cpu": DEFAULT_CPU, "memory": "1024Mi"}, "limits": {"memory": "1024Mi"}}
MIDDLE_MANAGER_RESOURCES = {"requests": {"cpu": DEFAULT_CPU, "memory": "2560Mi"}, "limits": {"memory": "2560Mi"}}


@dataclass(frozen=True)
class Inputs:
    """What the provisioner looked up for the builders."""

    cluster: ClusterConfig
    image: str
    run_as_user: int
    metadata_secret: str  # Secret with the metadata store's password (key `password`)
    uid: str  # the Druid's UID (config Secret name, owner references)
    user_config: dict[str, str] = field(default_factory=dict)  # files of spec.configuration.secretName
    exporter_image: str = monitoring.DEFAULT_EXPORTER_IMAGE  # the metrics sidecar's (spec.monitor)


def cluster_config(db: Druid, *, zookeeper: str, metadata: MetadataStore, deep_storage: dict[str, str],
                   druid_version: str) -> ClusterConfig:
    """What the rendered properties depend on, from the (defaulted) Druid and what its references resolve to."""
    return ClusterConfig(
        zookeeper=zookeeper, zookeeper_base=(db.spec.zookeeperRef.pathsBase if db.spec.zookeeperRef else None)
        or "/druid", metadata=metadata, deep_storage_type=db.spec.deepStorage.type,
        deep_storage_properties=deep_storage, tls_mode=tls_mode(db), security=not db.spec.disableSecurity,
        has_overlords=db.spec.topology.overlords is not None, has_routers=db.spec.topology.routers is not None,
        druid_version=druid_version, metrics_port=monitoring.metrics_port(db))


def nodes(db: Druid) -> list[NodeType]:
    present = db.spec.topology.nodes()
    return [n for n in PROVISION_ORDER if n.key in present]


def tls_mode(db: Druid) -> tls.TLSMode:
    return tls_mode_of(bool(db.spec.enableSSL), db.metadata.annotations)


def tls_mode_of(enable_ssl: bool, annotations: dict[str, str] | None) -> tls.TLSMode:
    """The mode a Druid's children are rendered in: the one an op in progress (or a failed one) left in the
    annotation, else the one the spec declares. A mode with a TLS port needs the certificates the spec declares, so
    it is honoured only while the spec has TLS; client trust needs only the CA bundle, so a removed TLS keeps it
    until the pods are restarted (a removal's last roll ends in client trust)."""
    declared = tls.TLSMode.declared(enable_ssl)
    text = (annotations or {}).get(names.TLS_MODE_ANNOTATION)
    try:
        mode = tls.TLSMode(text) if text else declared
    except ValueError:
        return declared
    return mode if enable_ssl or not mode.tls_port else declared


def _meta(name: str, db: Druid, inputs: Inputs, labels: dict | None = None) -> dict:
    return _owned_meta(name, db, inputs.uid, labels)


def _owned_meta(name: str, db: Druid, uid: str, labels: dict | None = None) -> dict:
    druid_ref = {"apiVersion": names.DRUID_API, "kind": "Druid", "name": db.metadata.name, "uid": uid,
                 "controller": True, "blockOwnerDeletion": True}
    return {"name": name, "namespace": db.metadata.namespace,
            "labels": labels or names.offshoot_labels(db.metadata.name, db.metadata.labels),
            "ownerReferences": [druid_ref]}


def services(db: Druid, inputs: Inputs, schemes: Mapping[str, tuple[bool, ...]] | None = None) -> list[dict]:
    """The governing Service and each node type's primary Service, offering the ports of the Druid's TLS mode (or
    `schemes`, by node type key: TLS or not, first the one clients should use — what an op's roll offers)."""
    name, mode = db.metadata.name, tls_mode(db)
    present = nodes(db)
    offered = {n.key: (schemes or {}).get(n.key) or mode.service_schemes for n in present}
    governing = {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(names.governing_service(name), db, inputs),
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": names.selector_labels(name),
                 "ports": [{"name": n.petset_suffix, "port": n.port(offered[n.key][0]),
                            "targetPort": n.port(offered[n.key][0]), "protocol": "TCP"} for n in present]},
    }
    out = [governing]
    template = _service_template(db, "primary")
    entry = query_nodes(db)[0]
    for n in present:
        if not n.has_primary_service:
            continue
        out.append(_with_template(n is entry, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": _meta(names.primary_service(name, n), db, inputs,
                              {**names.offshoot_labels(name, db.metadata.labels), names.ROLE_LABEL: n.key}),
            "spec": {"type": "ClusterIP", "selector": names.node_labels(name, n),
                     "ports": [{"name": n.port_name(tls_), "port": n.port(tls_), "targetPort": n.port(tls_),
                                "protocol": "TCP"} for tls_ in offered[n.key]]},
        }, template))
    if db.spec.monitor:
        annotations, spec = monitoring.stats_service_parts(db)
        meta = _meta(names.stats_service(name), db, inputs,
                     {**names.offshoot_labels(name, db.metadata.labels), names.ROLE_LABEL: monitoring.STATS_ROLE})
        if annotations:
            meta["annotations"] = annotations
        out.append(_with_template(True, {"apiVersion": "v1", "kind": "Service", "metadata": meta,
                                         "spec": {**spec, "selector": names.selector_labels(name)}},
                                  _service_template(db, "stats")))
    return out


def service_monitor(db: Druid, inputs: Inputs) -> dict | None:
    """The ServiceMonitor of a Druid monitored by Prometheus Operator (agent prometheus.io/operator), else None."""
    if not db.spec.monitor or db.spec.monitor.agent != monitoring.OPERATOR_AGENT:
        return None
    name = db.metadata.name
    selector = {**names.selector_labels(name), names.ROLE_LABEL: monitoring.STATS_ROLE}
    labels, spec = monitoring.service_monitor_spec(db, selector)
    meta = _meta(names.stats_service(name), db, inputs,
                 {**labels, **names.offshoot_labels(name, db.metadata.labels)})
    return {"apiVersion": monitoring.SERVICE_MONITOR_API, "kind": "ServiceMonitor", "metadata": meta, "spec": spec}


def _service_template(db: Druid, alias: str):
    return next((t for t in db.spec.serviceTemplates or [] if t.alias == alias), None)


# What the Services' own fields decide (who is selected, which ports serve): a template cannot change them.
_SERVICE_FIELDS_OURS = ("selector", "ports", "clusterIP", "clusterIPs")


def _with_template(entry: bool, service: dict, template) -> dict:
    """A KubeDB serviceTemplate (`primary` on a node type's client Service, `stats` on the stats Service): its
    labels and annotations, its spec
    fields (type, externalTrafficPolicy, loadBalancerSourceRanges, ...) and, on the `entry` Service only (the query
    nodes': a node port belongs to one Service), its nodePorts by port name."""
    if template is None:
        return service
    meta, spec = template.metadata or {}, template.spec or {}
    out = copy.deepcopy(service)
    out["metadata"]["labels"] = {**(meta.get("labels") or {}), **out["metadata"]["labels"]}
    if meta.get("annotations"):
        out["metadata"]["annotations"] = {**(out["metadata"].get("annotations") or {}), **meta["annotations"]}
    out["spec"].update({k: copy.deepcopy(v) for k, v in spec.items() if k not in _SERVICE_FIELDS_OURS})
    node_ports = {p.get("name"): p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")}
    for port in out["spec"]["ports"]:
        if entry and port["name"] in node_ports and out["spec"].get("type") in ("NodePort", "LoadBalancer"):
            port["nodePort"] = node_ports[port["name"]]
    return out


def _user_properties(db: Druid, inputs: Inputs, file: str) -> dict[str, str]:
    """The user's properties for one file: spec.configuration.secretName's file, then spec.configuration.inline."""
    inline = (db.spec.configuration.inline if db.spec.configuration else None) or {}
    return {**properties.parse(inputs.user_config.get(file, "")), **properties.parse(inline.get(file, ""))}


def _common_properties(db: Druid, inputs: Inputs) -> dict[str, str]:
    return properties.with_user(properties.common_properties(inputs.cluster),
                                _user_properties(db, inputs, "common.runtime.properties"), inputs.cluster.security)


def _node_properties(db: Druid, n: NodeType, inputs: Inputs) -> dict[str, str]:
    return properties.with_user(properties.node_properties(n, inputs.cluster),
                                _user_properties(db, inputs, f"{n.key}.properties"), inputs.cluster.security)


def config_files(db: Druid, inputs: Inputs) -> dict[str, str]:
    """common.runtime.properties and <node>.properties. The user's configuration wins: first the files of
    spec.configuration.secretName, then spec.configuration.inline."""
    files = {"common.runtime.properties": properties.render(_common_properties(db, inputs))}
    for n in nodes(db):
        files[f"{n.key}.properties"] = properties.render(_node_properties(db, n, inputs))
    return files


def runtime_properties(db: Druid, n: NodeType, inputs: Inputs) -> dict[str, str]:
    """The properties node `n` runs with: the common file, overridden by its own file (as Druid loads them)."""
    return {**_common_properties(db, inputs), **_node_properties(db, n, inputs)}


def config_secret(db: Druid, inputs: Inputs) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(names.config_secret(db.metadata.name, inputs.uid), db, inputs),
            "stringData": config_files(db, inputs)}


def _probes(n: NodeType, secure: bool) -> dict:
    """Start-up and liveness on /status/health (the JVM serves HTTP), readiness on the node type's own "usable" path
    (druid/nodes.py). Timing in decision 0009: up to 10 minutes to start, Ready within ~1 s of being usable,
    restarted after a minute without an answer."""
    def get(path: str) -> dict:
        action = {"path": path, "port": n.port(secure), "scheme": "HTTPS" if secure else "HTTP"}
        if secure:
            # Druid 35+ (Jetty 12) answers 400 when Host is not a name in its certificate; the kubelet would send the
            # pod IP. `localhost` is one of the certificate's SANs.
            action["httpHeaders"] = [{"name": "Host", "value": "localhost"}]
        return action

    return {
        "startupProbe": {"httpGet": get(HEALTH_PATH), "initialDelaySeconds": 5, "periodSeconds": 1,
                         "timeoutSeconds": 3, "failureThreshold": 600},
        "readinessProbe": {"httpGet": get(n.readiness_path), "periodSeconds": 1, "timeoutSeconds": 3,
                           "failureThreshold": 5},
        "livenessProbe": {"httpGet": get(HEALTH_PATH), "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6},
    }


PRE_STOP_SLEEP_S = 3
# How long kube-proxy takes to forward to an endpoint the EndpointSlice already lists as ready (its sync after the
# slice's change; about a second on the real node, more when the node is busy): an op waits this before it relies on
# a new endpoint where it cannot observe forwarding (a pod's replacement; any Service port, from a host that cannot
# reach Service addresses: kube/forwarding.py).
KUBE_PROXY_TURN_S = 2
KEYSTORE_SYNC = "keystore-sync"
# Copies the keystore from the Secret volume (symlinks, swapped by the kubelet) to a regular file that Druid's
# keystore scanner sees change: a copy then a rename, so Druid never reads half a file. POSIX sh and cksum only
# (every Druid image has them). As PID 1 the shell ignores SIGTERM unless it traps it, and the pod would wait out
# its grace period at every restart: it traps it, and sleeps in the background so the trap runs at once.
_SYNC_SCRIPT = (f"trap 'exit 0' TERM INT; src={tls.KEYSTORE_PATH}; dst={tls.LIVE_KEYSTORE_PATH}; "
                'while :; do '
                'if [ -s "$src" ] && [ "$(cksum < "$src")" != "$(cksum < "$dst" 2>/dev/null)" ]; then '
                'cp "$src" "$dst.tmp" && mv -f "$dst.tmp" "$dst"; fi; sleep 2 & wait $!; done')


def _keystore_sync(inputs: Inputs, security_context: dict) -> dict:
    """A native sidecar (an init container that keeps running): Druid starts once the first copy exists."""
    return {"name": KEYSTORE_SYNC, "image": inputs.image, "restartPolicy": "Always",
            "command": ["sh", "-c", _SYNC_SCRIPT],
            "volumeMounts": [{"name": "server-certs", "mountPath": tls.CERT_DIR, "readOnly": True},
                             {"name": "tls-live", "mountPath": tls.LIVE_DIR}],
            "startupProbe": {"exec": {"command": ["test", "-s", tls.LIVE_KEYSTORE_PATH]}, "periodSeconds": 1,
                             "failureThreshold": 120},
            "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
            "securityContext": copy.deepcopy(security_context)}


def _env(db: Druid, n: NodeType, inputs: Inputs) -> list[dict]:
    name, ns = db.metadata.name, db.metadata.namespace
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "DRUID_SET_HOST", "value": "0"},  # we announce the pod's FQDN, not its IP (hostname validation)
        {"name": "druid_host", "value": f"$(POD_NAME).{names.governing_service(name)}.{ns}.svc.{names.CLUSTER_DOMAIN}"},
        {"name": "DRUID_CONFIG_COMMON", "value": f"{CONFIG_MOUNT}/common.runtime.properties"},
        {"name": f"DRUID_CONFIG_{n.service}", "value": f"{CONFIG_MOUNT}/{n.key}.properties"},
        {"name": METADATA_PASSWORD_ENV,
         "valueFrom": {"secretKeyRef": {"name": inputs.metadata_secret, "key": "password"}}},
    ]
    if inputs.cluster.security and db.spec.authSecret and db.spec.authSecret.name:
        env.append({"name": ADMIN_PASSWORD_ENV,
                    "valueFrom": {"secretKeyRef": {"name": db.spec.authSecret.name, "key": "password"}}})
    if tls_mode(db).tls_port:  # the server keystore's password
        env.append({"name": tls.KEYSTORE_PASSWORD_ENV, "valueFrom": {"secretKeyRef": {
            "name": db.spec.keystoreCredSecret.name, "key": tls.KEYSTORE_PASSWORD_KEY}}})
    return env


def server_cert_secret(db: Druid) -> str | None:
    for c in (db.spec.tls.certificates if db.spec.tls else None) or []:
        if c.alias == tls.SERVER_ALIAS:
            return c.secretName
    return None


def _merge_env(ours: list[dict], theirs: list[dict]) -> list[dict]:
    """The user's variables replace ours of the same name in place (DRUID_XMX, JAVA_OPTS, ...); new ones follow."""
    out = list(ours)
    for e in theirs:
        at = next((i for i, o in enumerate(out) if o.get("name") == e.get("name")), None)
        if at is None:
            out.append(copy.deepcopy(e))
        else:
            out[at] = copy.deepcopy(e)
    return out


def _merge_user_template(spec: dict, user: dict | None) -> None:
    """The user's podTemplate.spec: container fields by name (theirs win; env by variable name), extra volumes,
    scheduling fields. A container's `resources` are left to the caller, which completes the user's with ours."""
    if not user:
        return
    ours = {c["name"]: c for c in spec["containers"]}
    for c in user.get("containers") or []:
        if c.get("name") in ours:
            target = ours[c["name"]]
            for k, v in c.items():
                if k == "env":
                    target[k] = _merge_env(target.get(k, []), v)
                elif k == "volumeMounts":
                    target[k] = target.get(k, []) + copy.deepcopy(v)
                elif k not in ("name", "resources"):
                    target[k] = copy.deepcopy(v)
        else:
            spec["containers"].append(copy.deepcopy(c))
    spec["volumes"] = spec.get("volumes", []) + copy.deepcopy(user.get("volumes") or [])
    for k, v in user.items():
        if k not in ("containers", "volumes", "initContainers"):
            spec[k] = copy.deepcopy(v)
    if user.get("initContainers"):  # the user's run first; our keystore sidecar (if any) after them
        spec["initContainers"] = copy.deepcopy(user["initContainers"]) + spec.get("initContainers", [])


def _sized_resources(db: Druid, n: NodeType) -> tuple[dict, int, int | None]:
    """The druid container's resources (the user's podTemplate ones completed with our defaults, as KubeDB does),
    its memory limit in bytes and its CPUs."""
    node = db.spec.topology.nodes()[n.key]
    user_spec = node.podTemplate.model_dump(exclude_none=True).get("spec") if node.podTemplate else None
    user = next((c for c in (user_spec or {}).get("containers") or [] if c.get("name") == "druid"), {})
    try:
        res = resources.with_defaults(user.get("resources"),
                                      MIDDLE_MANAGER_RESOURCES if n is MIDDLE_MANAGERS else DEFAULT_RESOURCES)
        return res, resources.memory_limit(res), resources.cpus(res)
    except ValueError as e:
        raise jvm.JvmSizingError(f"{n.key}: resources of the druid container: {e}") from None


def jvm_memory(db: Druid, n: NodeType, inputs: Inputs) -> jvm.JvmMemory:
    """Heap, direct memory and overhead of node `n`'s JVM. Raises jvm.JvmSizingError (jvm.InsufficientMemory when the
    memory limit is too small), whose `reason` and message suit a condition."""
    _, limit, cpus = _sized_resources(db, n)
    return jvm.plan(n, limit, runtime_properties(db, n, inputs), cpus)


def petset(db: Druid, n: NodeType, inputs: Inputs) -> dict:
    name, mode = db.metadata.name, tls_mode(db)
    node = db.spec.topology.nodes()[n.key]
    labels = names.node_labels(name, n)
    mounts = [{"name": "operator-config-volume", "mountPath": CONFIG_MOUNT, "readOnly": True}]
    volumes = [{"name": "operator-config-volume",
                "secret": {"secretName": names.config_secret(name, inputs.uid)}}]
    claim_templates = []
    if n.data_volume:
        vol_name, path = n.data_volume
        mounts.append({"name": vol_name, "mountPath": path})
        if getattr(node, "storageType", "Durable") == "Durable":
            claim_templates.append({"metadata": {"name": vol_name}, "spec": copy.deepcopy(node.storage)})
        else:
            volumes.append({"name": vol_name, "emptyDir": copy.deepcopy(getattr(node, "ephemeralStorage", None) or {})})
    if mode.client_trust:
        mounts.append({"name": "ca-bundle", "mountPath": tls.TRUST_DIR, "readOnly": True})
        volumes.append({"name": "ca-bundle", "secret": {"secretName": names.ca_bundle_secret(name)}})
    reload = mode.tls_port and tls.reloads(inputs.cluster.druid_version)
    if mode.tls_port:
        mounts.append({"name": "server-certs", "mountPath": tls.CERT_DIR, "readOnly": True})
        volumes.append({"name": "server-certs", "secret": {"secretName": server_cert_secret(db)}})
    if reload:
        mounts.append({"name": "tls-live", "mountPath": tls.LIVE_DIR})
        volumes.append({"name": "tls-live", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    user = node.podTemplate.model_dump(exclude_none=True) if node.podTemplate else {}
    res, limit, cpus = _sized_resources(db, n)
    memory = jvm.plan(n, limit, runtime_properties(db, n, inputs), cpus)
    # Our JVM sizes; a variable of the same name in the user's podTemplate replaces ours (_merge_env).
    jvm_env = memory.env() + [{"name": jvm.JAVA_OPTS_ENV, "value": jvm.java_opts(cpus)}]
    security_context = {"runAsUser": inputs.run_as_user, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    container = {
        "name": "druid", "image": inputs.image, "args": [n.service],
        "ports": [{"name": n.port_name(tls_), "containerPort": n.port(tls_), "protocol": "TCP"}
                  for tls_ in (False, True) if (mode.tls_port if tls_ else mode.plaintext_port)],
        "env": _env(db, n, inputs) + jvm_env, "volumeMounts": mounts,
        **_probes(n, mode.probes_tls),
        # Leaving without dropping a query: the endpoints and kube-proxy forget the pod while it sleeps; then Druid
        # unannounces itself from its peers and drains (druid/properties.py), well within the grace period.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_S}}},
        "resources": res,
        "securityContext": security_context,
    }
    pod_spec = {"containers": [container], "volumes": volumes,
                "securityContext": {"fsGroup": inputs.run_as_user}}
    sidecars = [monitoring.exporter_sidecar(db, inputs.exporter_image, security_context)] if db.spec.monitor else []
    if reload:
        sidecars.append(_keystore_sync(inputs, security_context))
    if sidecars:
        pod_spec["initContainers"] = sidecars
    _merge_user_template(pod_spec, user.get("spec"))
    pod_meta = user.get("metadata") or {}
    controller_meta = user.get("controller") or {}
    meta = _meta(names.petset_name(name, n), db, inputs,
                 {**names.offshoot_labels(name, db.metadata.labels), names.ROLE_LABEL: n.key,
                  **(controller_meta.get("labels") or {})})
    if controller_meta.get("annotations"):
        meta["annotations"] = controller_meta["annotations"]
    return {
        "apiVersion": "apps.k8s.appscode.com/v1", "kind": "PetSet", "metadata": meta,
        "spec": {
            "replicas": node.replicas, "serviceName": names.governing_service(name),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "OnDelete"},
            "template": {"metadata": {"labels": {**names.offshoot_labels(name, db.metadata.labels),
                                                 names.ROLE_LABEL: n.key, **(pod_meta.get("labels") or {})},
                                      **({"annotations": pod_meta["annotations"]} if pod_meta.get("annotations") else {})},
                         "spec": pod_spec},
            "volumeClaimTemplates": claim_templates,
        },
    }


def ca_bundle_secret(db: Druid, uid: str, data: dict[str, bytes]) -> dict:
    """The CA bundle Secret (certs/bundle.py renders its data): mounted by the pods, read by clients."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _owned_meta(names.ca_bundle_secret(db.metadata.name), db, uid),
            "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}}


def ca_probe_certificate(db: Druid, uid: str) -> dict:
    """A short-lived Certificate from the Druid's issuer whose only use is its ca.crt: before a change of issuer
    the operator learns the new CA this way, so every node can trust it before any serves a certificate it signs."""
    name, ns = db.metadata.name, db.metadata.namespace
    issuer = db.spec.tls.issuerRef
    probe = names.ca_probe(name)
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": _owned_meta(probe, db, uid),
            "spec": {"secretName": probe, "commonName": probe, "dnsNames": [f"{probe}.{ns}.svc"], "duration": "1h",
                     "usages": ["digital signature", "key encipherment", "server auth"],
                     "issuerRef": {"group": issuer.apiGroup or "cert-manager.io", "kind": issuer.kind,
                                   "name": issuer.name},
                     "secretTemplate": {"labels": names.offshoot_labels(name, db.metadata.labels)}}}


def certificate_dns_names(db: Druid) -> list[str]:
    """Real DNS names only (KubeDB puts host:port strings here; we do not): the governing Service's wildcard and
    names, every per-pod FQDN, each primary Service, localhost."""
    name, ns, domain = db.metadata.name, db.metadata.namespace, names.CLUSTER_DOMAIN
    gov = names.governing_service(name)
    dns = [f"*.{gov}.{ns}.svc.{domain}", f"*.{gov}.{ns}.svc", f"*.{gov}.{ns}",
           f"{gov}.{ns}.svc.{domain}", f"{gov}.{ns}.svc", gov]
    for n in nodes(db):
        replicas = db.spec.topology.nodes()[n.key].replicas
        dns += [names.pod_fqdn(name, ns, f"{names.petset_name(name, n)}-{i}") for i in range(replicas)]
    for n in nodes(db):
        if n.has_primary_service:
            svc = names.primary_service(name, n)
            dns += [f"{svc}.{ns}.svc.{domain}", f"{svc}.{ns}.svc", f"{svc}.{ns}", svc]
    dns.append("localhost")
    return list(dict.fromkeys(dns))


def certificates(db: Druid, inputs: Inputs) -> list[dict]:
    return certificates_owned_by(db, inputs.uid)


def certificates_owned_by(db: Druid, uid: str) -> list[dict]:
    """cert-manager Certificates for the server and client aliases, with JKS and PKCS#12 keystores protected by the
    keystore-credential Secret's password. They depend on nothing but the Druid (and its UID, their owner)."""
    name, ns = db.metadata.name, db.metadata.namespace
    if not (db.spec.tls and db.spec.tls.issuerRef):
        return []
    out = []
    password_ref = {"name": db.spec.keystoreCredSecret.name, "key": tls.KEYSTORE_PASSWORD_KEY}
    for c in db.spec.tls.certificates or []:
        issuer = c.issuerRef or db.spec.tls.issuerRef
        server = c.alias == tls.SERVER_ALIAS
        spec = {
            "secretName": c.secretName,
            "commonName": f"{names.governing_service(name)}.{ns}.svc",
            "dnsNames": list(dict.fromkeys(certificate_dns_names(db) + (c.dnsNames or []))),
            "ipAddresses": list(dict.fromkeys(["127.0.0.1"] + (c.ipAddresses or []))),
            "issuerRef": {"group": issuer.apiGroup or "cert-manager.io", "kind": issuer.kind, "name": issuer.name},
            "usages": ["digital signature", "key encipherment", "server auth", "client auth"] if server
            else ["digital signature", "key encipherment", "client auth"],
            "renewBefore": c.renewBefore or tls.CERT_RENEW_BEFORE,
            "keystores": {"jks": {"create": True, "passwordSecretRef": password_ref, "alias": tls.CERT_ALIAS},
                          "pkcs12": {"create": True, "passwordSecretRef": password_ref, "profile": "Modern2023"}},
            "secretTemplate": {"labels": names.offshoot_labels(name, db.metadata.labels)},
        }
        if len(spec["commonName"]) > 64:  # cert-manager refuses longer ones (X.509 ub-common-name); SANs suffice
            del spec["commonName"]
        if c.subject:
            spec["subject"] = c.subject.model_dump(exclude_none=True)
        if c.duration:
            spec["duration"] = c.duration
        if c.uris:
            spec["uris"] = c.uris
        if c.emailAddresses:
            spec["emailAddresses"] = c.emailAddresses
        # Pinned, whatever cert-manager's version defaults to (Never before 1.18): every issue, a rotation
        # especially, comes with a new private key.
        spec["privateKey"] = {"rotationPolicy": tls.KEY_ROTATION_POLICY}
        if c.privateKey and c.privateKey.encoding:
            spec["privateKey"]["encoding"] = c.privateKey.encoding
        out.append({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                    "metadata": _owned_meta(f"{name}-{c.alias}-cert", db, uid), "spec": spec})
    return out


def query_nodes(db: Druid) -> list[NodeType]:
    """Nodes that accept client queries: routers when there are any, else brokers."""
    present = {n.key for n in nodes(db)}
    return [ROUTERS] if ROUTERS.key in present else [BY_KEY["brokers"]]
