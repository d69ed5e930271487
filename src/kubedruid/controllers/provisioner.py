"""The provisioner: a Druid (kubedb.com/v1alpha2) becomes its dependencies, Secrets, Certificates, configuration,
Services and PetSets, and its status says how far it got.

Level-triggered: every pass recomputes the desired children from the Druid and what it references, writes only what
differs, and derives the conditions and the phase from what it observes. A missing input (Secret, DruidVersion,
Issuer) stops the pass with a condition and an event that name it; the watch on that input starts the next pass —
or, for a Secret the Druid references but does not own (never watched: clusters hold thousands of other software's
Secrets), a look every FOREIGN_INPUT_RECHECK_S. Such a Secret is read at every pass, so a change to its content
reaches the configuration at the Druid's next pass.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets as random_secrets
from collections.abc import Mapping

from lightkube.core.exceptions import ApiError
from pydantic import ValidationError

from kubedruid.api import Druid, apply_defaults, validate_druid
from kubedruid.certs import bundle
from kubedruid.controllers.ops import queue as ops_queue
from kubedruid.druid import jvm, tls
from kubedruid.druid.properties import MetadataStore
from kubedruid.kube import conditions as cond
from kubedruid.kube.client import Kube, is_not_found, is_not_served
from kubedruid.specs import cluster, dependencies, monitoring, names
from kubedruid.specs import status as st

from . import pause
from .health import HealthChecks
from .renewal import Renewals

log = logging.getLogger("kubedruid.provisioner")

FINALIZER = "kubedb.com/druid"
DRUID_API = names.DRUID_API
FOREIGN_INPUT_RECHECK_S = 5.0
DELETION_RECHECK_S = 1.0  # a deleted Druid waits for its workloads, then its claims, to go
SERVICE_MONITOR_RECHECK_S = 30.0  # no watch says when Prometheus Operator's API appears


class Blocked(Exception):
    """Provisioning cannot go on until an input changes; `reason` and `message` go into the InputValid condition.
    `recheck_s`: when to look again, for an input no watch reports (a Secret we do not own)."""

    def __init__(self, reason: str, message: str, recheck_s: float | None = None):
        super().__init__(message)
        self.reason, self.message, self.recheck_s = reason, message, recheck_s


def _text_data(secret: dict, reason: str, field: str) -> dict[str, str]:
    """A Secret's values as text; a value that is not UTF-8 blocks provisioning with a condition that names the key
    (never the value), rather than failing every retry with no word of why."""
    out = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value).decode()
        except UnicodeDecodeError:
            meta = secret["metadata"]
            raise Blocked(reason, f"key {key!r} of Secret {meta.get('namespace')}/{meta['name']} ({field}) is not "
                                  "UTF-8 text", FOREIGN_INPUT_RECHECK_S) from None
    return out


def _secret_bytes(secret: dict | None, key: str) -> bytes | None:
    value = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(value) if value else None


def _password() -> str:
    return random_secrets.token_urlsafe(24)


class Provisioner:
    def __init__(self, kube: Kube, health: HealthChecks | None = None):
        self.kube = kube
        self.renewals = Renewals(kube)
        self.health = health  # the operator's own check of each Druid; None where it is off

    # -- entry point ------------------------------------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> float | None:
        raw = await self.kube.get(DRUID_API, "Druid", name, namespace)
        if raw is None:
            return None
        if raw["metadata"].get("deletionTimestamp"):
            return await self._finalize(raw)
        if FINALIZER not in (raw["metadata"].get("finalizers") or []):
            finalizers = [*(raw["metadata"].get("finalizers") or []), FINALIZER]
            raw = await self.kube.patch(DRUID_API, "Druid", name, {"metadata": {
                "finalizers": finalizers, "resourceVersion": raw["metadata"]["resourceVersion"]}}, namespace)

        conditions = (raw.get("status") or {}).get("conditions") or []
        # Renewals reach the pods even while an op holds the pause (renewal.py); the same check says what they serve.
        checked = await self.renewals.check(raw, conditions)
        conditions, renew_again, served = checked.conditions, checked.again, checked.served
        # Events go out once the status that says the same is written: a pass over a Druid read a moment before
        # another pass's write loses its conditional write (409) and must not have announced anything.
        announce: list[tuple[str, str, str]] = []
        paused = cond.get_condition(conditions, st.PAUSED)
        if paused is not None and await self._pause_is_stale(namespace, paused):
            # The op that paused the Druid is gone or finished: never leave a Druid paused.
            conditions = cond.remove_condition(conditions, st.PAUSED)
            announce.append(("Normal", "Resumed", f"Resumed Druid {namespace}/{name}: "
                             f"{paused.get('message')!r} no longer holds"))
            paused = None
        if paused is not None:
            if paused.get("status") != "True":  # the ops-manager asks; we acknowledge and then keep our hands off
                conditions = cond.set_condition(conditions, st.PAUSED, "True", "Paused",
                                                paused.get("message") or "Paused by an ops request",
                                                raw["metadata"].get("generation"))
                announce.append(("Normal", "Paused", f"Paused Druid {namespace}/{name}: "
                                 f"{paused.get('message') or 'an ops request is in progress'}"))
            await self._write_status(raw, conditions, served, announce)
            return renew_again

        generation = raw["metadata"].get("generation")
        if (raw.get("spec") or {}).get("halted"):
            conditions = await self._halt(raw, conditions, announce)
            await self._write_status(raw, conditions, served, announce)
            return renew_again
        if cond.get_condition(conditions, st.HALTED) is not None:
            conditions = cond.remove_condition(conditions, st.HALTED)
            announce.append(("Normal", "Unhalted", f"Druid {namespace}/{name} is no longer halted: "
                             "its PetSets, Services and dependencies are created again"))
        if not cond.is_true(conditions, st.PROVISIONING_STARTED):
            conditions = cond.set_condition(
                conditions, st.PROVISIONING_STARTED, "True", "DatabaseProvisioningStartedSuccessfully",
                f"The KubeDB operator has started the provisioning of Druid: {namespace}/{name}", generation)
        try:
            conditions, again = await self._provision(raw, conditions)
            conditions = cond.remove_condition(conditions, st.INPUT_VALID)
        except Blocked as b:
            before = cond.get_condition(conditions, st.INPUT_VALID)
            conditions = cond.set_condition(conditions, st.INPUT_VALID, "False", b.reason, b.message, generation)
            if not before or before.get("reason") != b.reason or before.get("message") != b.message:
                announce.append(("Warning", b.reason, b.message))
                log.info("druid %s/%s blocked: %s", namespace, name, b.message)
            again = b.recheck_s
        await self._write_status(raw, conditions, served, announce)
        return min((t for t in (again, renew_again) if t is not None), default=None)

    async def _pause_is_stale(self, namespace: str, paused: dict) -> bool:
        if ops_queue.paused_by(paused.get("message")) is None:
            return False  # paused by someone else (a person, another tool): theirs to lift
        return await pause.unfinished_op_holding(self.kube, namespace, paused) is None

    async def _write_status(self, raw: dict, conditions: list[dict], served: list[dict] | None = None,
                            announce: list[tuple[str, str, str]] = ()) -> None:
        """Writes only what changed; `served`: a new servedCertificates (None keeps the recorded one); then records
        the events in `announce` (type, reason, message)."""
        status = raw.get("status") or {}
        new = {"phase": st.phase(conditions), "observedGeneration": raw["metadata"].get("generation"),
               "conditions": conditions}
        if served is not None:
            new["servedCertificates"] = served or None  # merge patch: null removes the field
        if any(status.get(k) != v for k, v in new.items()):
            # Conditional on the version read: the Druid (read from the informer) may have changed meanwhile, and
            # the conditions list is replaced whole (an op's pause request must never be overwritten).
            await self.kube.patch(DRUID_API, "Druid", raw["metadata"]["name"],
                                  {"metadata": {"resourceVersion": raw["metadata"]["resourceVersion"]},
                                   "status": new}, raw["metadata"]["namespace"], status=True)
        for type_, reason, message in announce:
            await self.kube.event(raw, type_, reason, message)

    # -- the pass -----------------------------------------------------------------------------------------------
    async def _provision(self, raw: dict, conditions: list[dict]) -> tuple[list[dict], float | None]:
        namespace, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
        generation = raw["metadata"].get("generation")
        db, inputs, deps_ready = await self.prepare(raw)
        conditions = cond.set_condition(
            conditions, st.DEPENDENCY_READY, "True" if deps_ready else "False",
            "DatabaseDependencyReady" if deps_ready else "DatabaseDependencyNotReady",
            "Metadata storage and ZooKeeper are ready" if deps_ready
            else "Waiting for the metadata storage and ZooKeeper to be ready", generation)
        if db.spec.enableSSL:
            await self.ensure_certificates(db, inputs)
            await self._require_certificate_secrets(db)
            await self.ensure_ca_bundle(raw, db)
        else:
            await self.remove_tls_objects(raw)
            await self._drop_unused_ca_bundle(raw, db)
        petsets = await self.apply(db, inputs)
        replicas_ready, accepting, outdated = await self._observe(db, petsets)
        not_answering = self.health.verdict(db, conditions) if self.health else None
        conditions = st.health_conditions(conditions, generation, replicas_ready=replicas_ready and deps_ready,
                                          accepting=accepting, namespace=namespace, name=name, outdated=outdated,
                                          not_answering=not_answering)
        return conditions, None

    # -- the steps, also used by the ops-manager on a target spec while the Druid is paused ------------------------
    async def prepare(self, raw: dict) -> tuple[Druid, cluster.Inputs, bool]:
        """Validates the Druid, looks up what it references and ensures its dependencies and credentials.
        Returns the defaulted Druid, the builders' inputs and whether the dependencies are ready."""
        try:
            db = apply_defaults(Druid.model_validate(raw))
        except ValidationError as e:
            raise Blocked("InvalidSpec", f"spec is invalid: {e.errors()[0].get('msg')}") from None
        problems = validate_druid(db)
        if problems:
            raise Blocked("InvalidSpec", "; ".join(problems))

        # Independent look-ups and writes run concurrently: an ops request waits on this between two steps.
        version, deep_storage, user_config, (zookeeper, metadata, metadata_secret, deps_ready) = await asyncio.gather(
            self.kube.get("catalog.kubedb.com/v1alpha1", "DruidVersion", db.spec.version),
            self._deep_storage_properties(db), self._user_config(db), self._dependencies(raw, db))
        if version is None:
            raise Blocked("VersionNotFound", f"DruidVersion {db.spec.version!r} does not exist; "
                          "`kubectl get druidversions` lists the supported versions")
        if db.spec.authSecret and not db.spec.disableSecurity:
            await self._ensure_secret_once(raw, db.spec.authSecret.name, "kubernetes.io/basic-auth",
                                           lambda: {"username": "admin", "password": _password()})
        if db.spec.enableSSL:
            await self._ensure_tls_inputs(raw, db)
        inputs = cluster.Inputs(
            cluster=cluster.cluster_config(db, zookeeper=zookeeper, metadata=metadata, deep_storage=deep_storage,
                                           druid_version=version["spec"].get("version") or db.spec.version),
            image=version["spec"]["db"]["image"],
            run_as_user=((version["spec"].get("securityContext") or {}).get("runAsUser")) or 1000,
            metadata_secret=metadata_secret, uid=raw["metadata"]["uid"], user_config=user_config,
            exporter_image=((version["spec"].get("exporter") or {}).get("image")) or monitoring.DEFAULT_EXPORTER_IMAGE)
        return db, inputs, deps_ready

    async def ensure_certificates(self, db: Druid, inputs: cluster.Inputs) -> list[dict]:
        certificates = cluster.certificates(db, inputs)
        await asyncio.gather(*(self.kube.ensure(c) for c in certificates))
        return certificates

    async def sync_certificates(self, raw: dict) -> list[dict]:
        """The keystore-credential Secret and the Certificates of `raw` (a Druid, or an op's target spec for it),
        without touching anything else: what an ops request needs before the PetSets change."""
        db = apply_defaults(Druid.model_validate(raw))
        await self._ensure_tls_inputs(raw, db)
        certificates = cluster.certificates_owned_by(db, raw["metadata"]["uid"])
        await asyncio.gather(*(self.kube.ensure(c) for c in certificates))
        return certificates

    async def apply(self, db: Druid, inputs: cluster.Inputs,
                    service_schemes: Mapping[str, tuple[bool, ...]] | None = None) -> list[dict]:
        """The configuration Secret, the Services (offering `service_schemes` by node type when given: what an op's
        roll offers while pods move between modes) and the PetSets, written concurrently; returns the PetSets.
        Writes nothing when a node's memory cannot hold the JVM Druid needs (Blocked, with the minimum)."""
        try:
            petsets = [cluster.petset(db, n, inputs) for n in cluster.nodes(db)]
        except jvm.JvmSizingError as e:
            raise Blocked(e.reason, str(e)) from None
        await self._monitoring_leftovers(db)  # before the stats Service is rewritten: it tells what was made
        await asyncio.gather(self.kube.ensure(cluster.config_secret(db, inputs)),
                             *(self.kube.ensure(s) for s in cluster.services(db, inputs, service_schemes)),
                             *(self.kube.ensure(ps) for ps in petsets), self._service_monitor(db, inputs))
        return petsets

    async def _monitoring_leftovers(self, db: Druid) -> None:
        """What spec.monitor no longer asks for goes: the stats Service without spec.monitor, the ServiceMonitor
        without the operator agent (the stats Service, read from the cache, says whether we made one)."""
        name, ns = names.stats_service(db.metadata.name), db.metadata.namespace
        stats = await self.kube.get("v1", "Service", name, ns, ours=names.selector_labels(db.metadata.name))
        if stats is None:
            return
        made_monitor = monitoring.SERVICE_MONITOR_ANNOTATION in (stats["metadata"].get("annotations") or {})
        if made_monitor and (not db.spec.monitor or db.spec.monitor.agent != monitoring.OPERATOR_AGENT):
            try:
                await self.kube.delete(monitoring.SERVICE_MONITOR_API, "ServiceMonitor", name, ns)  # 404: gone already
            except Exception as e:
                if not is_not_served(e):  # the ServiceMonitor API went, and its objects with it
                    raise
        if not db.spec.monitor:
            await self.kube.delete("v1", "Service", name, ns)

    async def _service_monitor(self, db: Druid, inputs: cluster.Inputs) -> None:
        desired = cluster.service_monitor(db, inputs)
        if desired is None:
            return
        try:
            await self.kube.ensure(desired)
        except Exception as e:
            if not (is_not_served(e) or is_not_found(e)):
                raise
            raise Blocked("ServiceMonitorUnavailable", "spec.monitor.agent prometheus.io/operator needs Prometheus "
                          "Operator's ServiceMonitor (monitoring.coreos.com/v1), which this cluster does not serve: "
                          "install Prometheus Operator, or use the agent prometheus.io/builtin",
                          recheck_s=SERVICE_MONITOR_RECHECK_S) from None

    async def apply_services(self, db: Druid, inputs: cluster.Inputs,
                             schemes: Mapping[str, tuple[bool, ...]] | None = None) -> bool:
        """The Services of the Druid's mode (or offering `schemes` by node type); True if any was written."""
        return any(await asyncio.gather(*(self.kube.ensure(s) for s in cluster.services(db, inputs, schemes))))

    async def ca_bundle(self, db: Druid) -> tuple[dict | None, list]:
        """The CA bundle Secret and the CAs it holds."""
        secret = await self.kube.get("v1", "Secret", names.ca_bundle_secret(db.metadata.name), db.metadata.namespace,
                                     ours=names.selector_labels(db.metadata.name))
        return secret, bundle.parse(_secret_bytes(secret, bundle.CA_KEY))

    async def server_ca(self, db: Druid) -> list:
        """The CA that signs the Druid's server certificate now, as its Secret says (cert-manager's ca.crt)."""
        secret = await self.kube.get("v1", "Secret", cluster.server_cert_secret(db) or "", db.metadata.namespace,
                                     ours=names.selector_labels(db.metadata.name))  # cert-manager's, with our labels
        return bundle.parse(_secret_bytes(secret, "ca.crt"))

    async def ensure_ca_bundle(self, raw: dict, db: Druid, add: list = (), exactly: list | None = None) -> list:
        """The CA bundle holds the CA of the Druid's server certificate, plus `add`; CAs are never dropped here
        (a pod may still serve a certificate of an older CA) — only an op drops one, with `exactly`, once every pod
        serves a certificate of the CAs it keeps. Returns the CAs it holds."""
        secret, held = await self.ca_bundle(db)
        cas = exactly if exactly is not None else bundle.merged(held, await self.server_ca(db), list(add))
        if not cas:
            raise Blocked("WaitingForCertificates", f"waiting for cert-manager to publish the CA of Secret "
                          f"{cluster.server_cert_secret(db)} (ca.crt)")
        if secret is None or not bundle.same(held, cas) or bundle.TRUSTSTORE_KEY not in (secret.get("data") or {}):
            await self.kube.ensure(cluster.ca_bundle_secret(db, raw["metadata"]["uid"], bundle.render(cas)))
            if held and not bundle.same(held, cas):
                await self.kube.event(raw, "Normal", "CABundleChanged", "The Druid trusts " +
                                      ", ".join(bundle.describe(ca) for ca in cas))
        return cas

    async def _drop_unused_ca_bundle(self, raw: dict, db: Druid) -> None:
        """After TLS is removed the pods of the last roll still mount the bundle (they kept client trust while
        peers announced TLS ports): it goes once no pod mounts it."""
        name, ns = db.metadata.name, db.metadata.namespace
        secret = await self.kube.get("v1", "Secret", names.ca_bundle_secret(name), ns, ours=names.selector_labels(name))
        if secret is None:
            return
        pods = await self.kube.list("v1", "Pod", ns, labels=names.selector_labels(name))
        if not any((v.get("secret") or {}).get("secretName") == names.ca_bundle_secret(name)
                   for p in pods for v in p["spec"].get("volumes") or []):
            await self.kube.delete("v1", "Secret", names.ca_bundle_secret(name), ns)

    async def remove_tls_objects(self, raw: dict) -> None:
        """A Druid without TLS keeps no Certificates, certificate Secrets or keystore-credential Secret."""
        namespace, name, uid = raw["metadata"]["namespace"], raw["metadata"]["name"], raw["metadata"]["uid"]
        owned = lambda o: any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])  # noqa: E731
        for certificate in await self.kube.list("cert-manager.io/v1", "Certificate", namespace,
                                                labels=names.selector_labels(name)):
            if owned(certificate):
                await self.kube.delete("cert-manager.io/v1", "Certificate", certificate["metadata"]["name"], namespace)
                secret = certificate["spec"].get("secretName")
                if secret:
                    await self.kube.delete("v1", "Secret", secret, namespace)
        keystore = await self.kube.get("v1", "Secret", f"{name}-keystore-cred", namespace,
                                       ours=names.selector_labels(name))
        if keystore is not None and owned(keystore):
            await self.kube.delete("v1", "Secret", f"{name}-keystore-cred", namespace)

    # -- inputs ---------------------------------------------------------------------------------------------------
    async def _deep_storage_properties(self, db: Druid) -> dict[str, str]:
        ref = db.spec.deepStorage.configSecret
        if not ref or not ref.name:
            return {}
        secret = await self.kube.get("v1", "Secret", ref.name, db.metadata.namespace)
        if secret is None:
            raise Blocked("DeepStorageSecretNotFound",
                          f"deep storage config Secret {db.metadata.namespace}/{ref.name} "
                          f"(spec.deepStorage.configSecret) does not exist", FOREIGN_INPUT_RECHECK_S)
        return _text_data(secret, "DeepStorageSecretInvalid", "spec.deepStorage.configSecret")

    async def _user_config(self, db: Druid) -> dict[str, str]:
        name = db.spec.configuration.secretName if db.spec.configuration else None
        if not name:
            return {}
        secret = await self.kube.get("v1", "Secret", name, db.metadata.namespace)
        if secret is None:
            raise Blocked("ConfigSecretNotFound", f"configuration Secret {db.metadata.namespace}/{name} "
                          "(spec.configuration.secretName) does not exist", FOREIGN_INPUT_RECHECK_S)
        return _text_data(secret, "ConfigSecretInvalid", "spec.configuration.secretName")

    async def _dependencies(self, raw: dict, db: Druid) -> tuple[str, MetadataStore, str, bool]:
        ns = db.metadata.namespace
        zk, ms = db.spec.zookeeperRef, db.spec.metadataStorage
        zk_host = f"{zk.name}.{zk.namespace or ns}.svc.{names.CLUSTER_DOMAIN}:{dependencies.ZOOKEEPER_PORT}"
        ms_type = ms.type or "MySQL"
        ms_host = f"{ms.name}.{ms.namespace or ns}.svc.{names.CLUSTER_DOMAIN}"
        metadata = MetadataStore(type=ms_type, host=ms_host, port=dependencies.PORTS[ms_type],
                                 database=ms.linkedDB or "druid",
                                 user="postgres" if ms_type == "PostgreSQL" else "root",
                                 create_tables=ms.createTables is not False)
        metadata_secret = dependencies.metadata_secret_name(ms.name)

        async def zookeeper_ready() -> bool:
            if zk.externallyManaged:
                return True
            await asyncio.gather(*(self.kube.ensure(o) for o in dependencies.zookeeper(raw, zk.name, zk.version or "3.7.2")))
            return await self._statefulset_ready(zk.name, ns)

        async def metadata_ready() -> bool:
            if ms.externallyManaged:
                if await self.kube.get("v1", "Secret", metadata_secret, ms.namespace or ns) is None:
                    raise Blocked("MetadataStorageSecretNotFound",
                                  f"externally managed metadata storage {ms.namespace or ns}/{ms.name}: its "
                                  f"credentials Secret {metadata_secret} (keys username, password) does not exist",
                                  FOREIGN_INPUT_RECHECK_S)
                return True
            await self._ensure_secret_once(raw, metadata_secret, "kubernetes.io/basic-auth",
                                           lambda: {"username": metadata.user, "password": _password()})
            objects = dependencies.metadata_store(raw, ms.name, ms_type, ms.version or "8.0.35", metadata.database)
            await asyncio.gather(*(self.kube.ensure(o) for o in objects))
            return await self._statefulset_ready(ms.name, ns)

        ready = all(await asyncio.gather(zookeeper_ready(), metadata_ready()))
        return zk_host, metadata, metadata_secret, ready

    async def _statefulset_ready(self, name: str, namespace: str) -> bool:
        sts = await self.kube.get("apps/v1", "StatefulSet", name, namespace)
        return bool(sts) and ((sts.get("status") or {}).get("readyReplicas") or 0) >= 1

    async def _ensure_secret_once(self, owner: dict, name: str, type_: str, make_data) -> None:
        """Random credentials: created once, never rewritten (a running database keeps its password)."""
        if await self.kube.get("v1", "Secret", name, owner["metadata"]["namespace"]) is not None:
            return
        meta = {"name": name, "namespace": owner["metadata"]["namespace"],
                "labels": names.offshoot_labels(owner["metadata"]["name"]),
                "ownerReferences": [names.owner_reference(owner)]}
        await self.kube.create({"apiVersion": "v1", "kind": "Secret", "type": type_, "metadata": meta,
                                "stringData": make_data()})

    async def _ensure_tls_inputs(self, raw: dict, db: Druid) -> None:
        password = _password()
        await self._ensure_secret_once(raw, db.spec.keystoreCredSecret.name, "Opaque",
                                       lambda: {tls.KEYSTORE_PASSWORD_KEY: password,
                                                tls.TRUSTSTORE_PASSWORD_KEY: password})
        if not (db.spec.tls and db.spec.tls.issuerRef):
            raise Blocked("IssuerRefMissing", "spec.enableSSL is true but spec.tls.issuerRef is not set: name the "
                          "cert-manager Issuer or ClusterIssuer that signs the Druid's certificates")
        refs = [c.issuerRef or db.spec.tls.issuerRef for c in db.spec.tls.certificates or []]
        for kind, issuer_name in sorted({(r.kind, r.name) for r in [db.spec.tls.issuerRef, *refs]}):
            if kind not in ("Issuer", "ClusterIssuer"):
                raise Blocked("IssuerKindInvalid", f"issuerRef kind {kind!r} is not Issuer or ClusterIssuer")
            ns = db.metadata.namespace if kind == "Issuer" else None
            if await self.kube.get("cert-manager.io/v1", kind, issuer_name, ns) is None:
                where = f"{db.metadata.namespace}/{issuer_name}" if ns else issuer_name
                raise Blocked("IssuerNotFound", f"{kind} {where} (spec.tls.issuerRef) does not exist")

    async def _require_certificate_secrets(self, db: Druid) -> None:
        for c in db.spec.tls.certificates or []:
            secret = await self.kube.get("v1", "Secret", c.secretName, db.metadata.namespace,
                                         ours=names.selector_labels(db.metadata.name))
            if secret is None or "keystore.jks" not in (secret.get("data") or {}):
                raise Blocked("WaitingForCertificates", f"waiting for cert-manager to issue Secret {c.secretName} "
                              f"(Certificate {db.metadata.name}-{c.alias}-cert)")

    # -- observation ------------------------------------------------------------------------------------------
    async def _observe(self, db: Druid, petsets: list[dict]) -> tuple[bool, bool, dict[str, tuple[int, int]]]:
        """All replicas ready, the query nodes ready, and per node type the pods on an older revision than their
        PetSet's template (with its replicas): read from the PetSets' status, never by calling pod IPs."""
        ready_by_node, outdated = {}, {}
        for ps in petsets:
            live = await self.kube.get("apps.k8s.appscode.com/v1", "PetSet", ps["metadata"]["name"],
                                       db.metadata.namespace)
            status = (live or {}).get("status") or {}
            want, node = ps["spec"]["replicas"], ps["spec"]["selector"]["matchLabels"][names.ROLE_LABEL]
            observed = status.get("observedGeneration") == (live or {}).get("metadata", {}).get("generation")
            ready_by_node[node] = (status.get("readyReplicas") or 0) >= want and observed
            updated = status.get("updatedReplicas") or 0
            if observed and updated < want:
                outdated[node] = (want - updated, want)
        replicas_ready = all(ready_by_node.values())
        accepting = all(ready_by_node.get(n.key, False) for n in cluster.query_nodes(db))
        return replicas_ready, accepting, outdated

    # -- halting ----------------------------------------------------------------------------------------------
    # What spec.halted stops (KubeDB's meaning): the workloads and the Services; PVCs, Secrets, Certificates and the
    # configuration stay, so that unhalting brings the same Druid back on the same data.
    WORKLOAD_KINDS = (("apps.k8s.appscode.com/v1", "PetSet"), ("apps/v1", "StatefulSet"))  # what creates claims
    HALTED_KINDS = (*WORKLOAD_KINDS, ("v1", "Service"))

    async def _halt(self, raw: dict, conditions: list[dict], announce: list) -> list[dict]:
        namespace, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
        for labels in (names.selector_labels(name), {dependencies.DEPENDENCY_LABEL: name}):
            for api, kind in self.HALTED_KINDS:
                for obj in await self.kube.list(api, kind, namespace, labels=labels):
                    await self.kube.delete(api, kind, obj["metadata"]["name"], namespace)
        if not cond.is_true(conditions, st.HALTED):
            announce.append(("Normal", "Halted", f"Druid {namespace}/{name} is halted: its PetSets, "
                             "Services and dependencies are deleted; its PVCs and Secrets are kept"))
        return cond.set_condition(conditions, st.HALTED, "True", "Halted",
                                  "spec.halted is true: the Druid's pods and Services are deleted, its data kept",
                                  raw["metadata"].get("generation"))

    # -- deletion ---------------------------------------------------------------------------------------------
    async def _workloads(self, namespace: str, name: str) -> list[tuple[str, str, dict]]:
        """The Druid's PetSets and its dependencies' StatefulSets."""
        return [(api, kind, obj) for labels in (names.selector_labels(name), {dependencies.DEPENDENCY_LABEL: name})
                for api, kind in self.WORKLOAD_KINDS
                for obj in await self.kube.list(api, kind, namespace, labels=labels)]

    async def _finalize(self, raw: dict) -> float | None:
        """deletionPolicy: Delete removes the Druid's data (PVCs) and keeps its credentials Secrets; WipeOut removes
        those too; Halt keeps PVCs and Secrets. Everything else goes with the Druid through owner references.
        Returns when to look again while the finalizer must still hold the Druid."""
        namespace, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
        policy = (raw.get("spec") or {}).get("deletionPolicy") or "Delete"
        if policy == "DoNotTerminate":
            # Admission refuses the deletion; if it got through anyway (webhook down), keep the object and say so.
            return None
        selector = names.selector_labels(name)
        if policy in ("Delete", "WipeOut"):
            # A PetSet creates a pod's claims with the pod: while one lives, a claim listed now may be joined by
            # another, which nothing would then delete. So the workloads go first, and the claims once they are gone.
            workloads = await self._workloads(namespace, name)
            if workloads:
                for api, kind, obj in workloads:
                    if not obj["metadata"].get("deletionTimestamp"):
                        await self.kube.delete(api, kind, obj["metadata"]["name"], namespace)
                log.info("druid %s/%s: deleting; waiting for %d workloads to go before its claims", namespace, name,
                         len(workloads))
                return DELETION_RECHECK_S
            claims = [pvc for labels in (selector, {dependencies.DEPENDENCY_LABEL: name})
                      for pvc in await self.kube.list("v1", "PersistentVolumeClaim", namespace, labels=labels)
                      if not pvc["metadata"].get("deletionTimestamp")]
            if claims:
                for pvc in claims:
                    await self.kube.delete("v1", "PersistentVolumeClaim", pvc["metadata"]["name"], namespace)
                return DELETION_RECHECK_S  # the next pass finds none left, or one created meanwhile
        keep_secrets = policy != "WipeOut"
        if keep_secrets:
            for secret in await self.kube.list("v1", "Secret", namespace, labels=selector):
                refs = secret["metadata"].get("ownerReferences") or []
                kept = [r for r in refs if r.get("uid") != raw["metadata"]["uid"]]
                if len(kept) != len(refs) and secret.get("type") != "kubernetes.io/tls":
                    try:
                        await self.kube.patch("v1", "Secret", secret["metadata"]["name"],
                                              {"metadata": {"ownerReferences": kept or None}}, namespace)
                    except ApiError as e:
                        if not is_not_found(e):
                            raise  # gone meanwhile (its namespace is going, say): nothing left to keep
        finalizers = [f for f in raw["metadata"].get("finalizers") or [] if f != FINALIZER]
        try:
            await self.kube.patch(DRUID_API, "Druid", name, {"metadata": {"finalizers": finalizers or None}},
                                  namespace)
        except ApiError as e:
            if not is_not_found(e):
                raise  # gone already: an earlier pass finished it
        return None

