"""The ops-manager on the real control plane with the real cert-manager: KubeDB's reconfigure-TLS guide, queueing,
apply, timeouts and a crash in the middle of a restart."""

from __future__ import annotations

import datetime
import json
import threading
import time

import httpx2
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from lightkube import ApiError, codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Event, Pod, Secret, Service
from lightkube.types import PatchType

from kubedruid.certs import bundle
from kubedruid.druid import properties

from .conftest import wait_for
from .helpers import Certificate, ca_issuer, condition, deep_storage_secret, druid_manifest, secret_data
from .helpers import Druid as DruidRes
from .test_provisioner import PLAIN_PORTS, _wait_ready

pytestmark = pytest.mark.integration

Ops = create_namespaced_resource("ops.kubedb.com", "v1alpha1", "DruidOpsRequest", "druidopsrequests")
RESTART_ORDER = ["historicals", "middlemanagers", "brokers", "routers", "coordinators"]


def _ops(kube, name, ns, db, **spec):
    body = {"apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
            "metadata": {"name": name, "namespace": ns}, "spec": {"databaseRef": {"name": db}, **spec}}
    kube.create(codecs.from_dict(body))


def _phase(kube, name, ns):
    return (kube.get(Ops, name, namespace=ns).get("status") or {}).get("phase")


def _wait_phase(kube, name, ns, phase, operator, timeout=120):
    try:
        wait_for(lambda: _phase(kube, name, ns) in {phase, "Failed"}, timeout=timeout,
                 what=f"DruidOpsRequest {name} {phase}")
    finally:
        if _phase(kube, name, ns) != phase:
            print(json.dumps(kube.get(Ops, name, namespace=ns).get("status"), indent=1))
            print(operator.log_text()[-3000:])
    assert _phase(kube, name, ns) == phase
    return kube.get(Ops, name, namespace=ns)


def _events(kube, ns, name) -> list:
    events = [e for e in kube.list(Event, namespace=ns) if e.involvedObject.name == name]
    return sorted(events, key=lambda e: e.eventTime or e.firstTimestamp)


def _leaf(kube, secret, ns) -> x509.Certificate:
    return x509.load_pem_x509_certificate(secret_data(kube, secret, ns)["tls.crt"])


def _pod_uids(kube, ns, db) -> dict[str, str]:
    return {p.metadata.name: p.metadata.uid for p in kube.list(Pod, namespace=ns)
            if p.metadata.labels.get("app.kubernetes.io/instance") == db and "kubedb.com/role" in p.metadata.labels}


def _expected_pods(db):
    return [f"{db}-{role}-0" for role in RESTART_ORDER]


PHASES = {  # the phase conditions each guide op records, in order (controllers/ops/optypes)
    "AddTLS": ["ClientTrustRolledOut", "TLSPortOpened", "ServicesSwitchedToTLS", "PlaintextClosed"],
    "RemoveTLS": ["PlaintextOpened", "ServicesSwitchedToPlaintext", "TLSPortClosed"],
    # kwok pods serve nothing, so no handshake shows a reloaded certificate: every pod is restarted instead.
    "UpdateTLS": ["TrustBothCAsRolledOut", "CertificatesReissued", "CertificatesReloaded", "NotReloadedRestarted",
                  "OldCADropped"],
    "RotateCertificates": ["CertificatesReloaded", "NotReloadedRestarted"],
}
# Conditions of kubedruid's own steps, beside KubeDB's.
OWN_STEPS = ("Plan", "IssueCertificatesSucceeded", "IssuerCATrusted", "CABundlePruned", "ServingNewCertificate",
             "ClientsFollowed")


def _assert_guide_conditions(ops, db, with_certificates: bool, kind: str):
    """KubeDB's conditions, in KubeDB's order, with the plan's own beside them: the Plan it chose and one
    condition per completed phase (the restart steps recur per phase and keep only the last roll's)."""
    types = [c["type"] for c in ops["status"]["conditions"]]
    by_type = {c["type"]: c for c in ops["status"]["conditions"]}
    assert by_type["Plan"]["reason"] == kind
    assert [t for t in types if t in PHASES[kind]] == PHASES[kind]
    expected = ["ReconfigureTLS"]
    if with_certificates:
        expected += ["CertificateSynced", "GetCertificate", "CheckReadyCondition", "IssuingCondition"]
    expected += ["UpdatePetSets", "RestartNodes"]
    for pod in _expected_pods(db):
        expected += [f"GetPod--{pod}", f"EvictPod--{pod}", f"CheckPodRunning--{pod}"]
    expected.append("Successful")
    kubedb = [t for t in types if t not in (*OWN_STEPS, *PHASES[kind]) and not t.startswith("ReloadPod--")]
    assert kubedb == expected
    assert len(types) == len(set(types))
    assert all(c["status"] == "True" for c in by_type.values())
    assert by_type["ReconfigureTLS"]["message"] == "Druid ops-request has started to reconfigure tls for druid nodes"
    assert by_type["UpdatePetSets"]["message"] == "successfully reconciled the Druid with tls configuration"
    assert by_type["RestartNodes"]["message"] == "Successfully restarted all nodes"
    assert by_type["Successful"]["message"] == "Successfully completed reconfigureTLS for druid."
    if with_certificates:
        assert by_type["CertificateSynced"]["message"] == "Successfully synced all certificates"
        assert by_type["GetCertificate"]["message"] == "get certificate; ConditionStatus:True"
    pod = _expected_pods(db)[0]
    assert by_type[f"GetPod--{pod}"]["message"] == f"get pod; ConditionStatus:True; PodName:{pod}"
    assert by_type[f"CheckPodRunning--{pod}"]["message"] == f"check pod running; ConditionStatus:True; PodName:{pod}"


def _assert_guide_events(kube, ns, name, db):
    # Events are posted in the background, in order, after the status they report: the op's last ones may follow
    # its Successful phase by a moment on a busy machine.
    resumed = f"Successfully resumed Druid database: {ns}/{db} for DruidOpsRequest: {name}"
    events = wait_for(lambda: (found := _events(kube, ns, name)) and resumed in [e.message for e in found] and found,
                      what=f"the events of {name} up to its resumption")
    assert events and all(e.type == "Normal" for e in events), [(e.type, e.reason) for e in events]
    messages = [e.message for e in events]
    in_order = [f"Start processing for DruidOpsRequest: {ns}/{name}",
                f"Pausing Druid databse: {ns}/{db}",
                f"Successfully paused Druid database: {ns}/{db} for DruidOpsRequest: {name}",
                "successfully reconciled the Druid with tls configuration",
                f"evict pod; ConditionStatus:True; PodName:{db}-historicals-0",
                "Successfully restarted all nodes",
                f"Resuming Druid database: {ns}/{db}",
                f"Successfully resumed Druid database: {ns}/{db} for DruidOpsRequest: {name}"]
    positions = [messages.index(m) for m in in_order]
    assert positions == sorted(positions), list(zip(in_order, positions))


def _assert_restarted_in_order(watch: "PodWatch", db: str, rolls: int = 1):
    """Each roll replaced every Druid pod once, in Druid's order: the order in which the watch saw the new pods
    Ready (creation timestamps have one-second resolution, so they cannot tell the order of a fast roll)."""
    assert watch.replaced == _expected_pods(db) * rolls, watch.replaced


class PodWatch:
    """Every pod UID that exists while it runs (a watch on the Druid's pods): how many times each pod was
    restarted, counted from UIDs rather than from what the operator says.

    Only pods that became Ready count: kwok's fake kubelet deletes a terminating pod by name, and when one pod-delete
    stage is played twice its second delete can hit the replacement the PetSet controller created a few ms before
    (seen in kwok's log: two "Delete pod" 7 ms apart, no "not found"), which is then replaced again. A real kubelet
    deletes with the pod's UID as precondition; a pod that never became Ready never served either way."""

    def __init__(self, plane, ns, db):
        self.seen: dict[str, set[str]] = {}
        self.replaced: list[str] = []  # pod names, in the order their replacements became Ready
        self._initial: set[str] = set()
        self._stop = threading.Event()
        self._args = plane, ns, db

    def __enter__(self):
        plane, ns, db = self._args
        self._initial = {p.metadata.uid for p in plane.client().list(
            Pod, namespace=ns, labels={"app.kubernetes.io/instance": db})}
        thread = threading.Thread(target=self._watch, args=(plane.client(), ns, db), daemon=True)
        thread.start()
        wait_for(lambda: len(self.seen) >= 5, what="the pod watch to start")
        return self

    def _caught_up(self) -> bool:
        """Every pod that is Ready now has been seen Ready by the watch."""
        plane, ns, db = self._args
        pods = plane.client().list(Pod, namespace=ns, labels={"app.kubernetes.io/instance": db})
        return all(p.metadata.uid in self.seen.get(p.metadata.name, ()) for p in pods
                   if "kubedb.com/role" in p.metadata.labels
                   and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or [])))

    def _watch(self, client, ns, db):
        """Watches again when the stream breaks (seen once: httpx2.RemoteProtocolError in a fault run, which ended
        the thread, so the test counted nothing after it). A new watch first lists every pod: what the old one
        had seen changes nothing, a pod that turned Ready in between is counted."""
        while not self._stop.is_set():
            try:
                for _, pod in client.watch(Pod, namespace=ns, labels={"app.kubernetes.io/instance": db}):
                    self._saw(pod)
                    if self._stop.is_set():
                        return
            except (httpx2.HTTPError, ApiError):
                time.sleep(0.2)

    def _saw(self, pod):
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status and pod.status.conditions) or [])
        if "kubedb.com/role" in pod.metadata.labels and ready:
            uids = self.seen.setdefault(pod.metadata.name, set())
            if pod.metadata.uid not in uids and pod.metadata.uid not in self._initial:
                self.replaced.append(pod.metadata.name)
            uids.add(pod.metadata.uid)

    def __exit__(self, *exc):
        if exc[0] is None:
            wait_for(self._caught_up, timeout=10, what="the pod watch to see every Ready pod")
        self._stop.set()

    def restarts(self) -> dict[str, int]:
        return {pod: len(uids) - 1 for pod, uids in self.seen.items()}


def _common_properties(kube, ns, db) -> dict[str, str]:
    uid = kube.get(DruidRes, db, namespace=ns).metadata.uid
    return properties.parse(secret_data(kube, f"{db}-{uid[-6:]}", ns)["common.runtime.properties"].decode())


def test_reconfigure_tls_guide_add_rotate_update_issuer_remove(plane, kube, namespace, operator):
    ns, db = namespace, "druid-cluster"
    ca = ca_issuer(kube, ns, "druid-ca-issuer", "ca", "kubedb")
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns)))
    _wait_ready(kube, db, ns, operator)

    # A. Add TLS: three rolls (client trust, TLS port beside plaintext, TLS only)
    with PodWatch(plane, ns, db) as pods:
        _ops(kube, "drops-add-tls", ns, db, type="ReconfigureTLS", timeout="5m", apply="IfReady",
             tls={"issuerRef": {"name": "druid-ca-issuer", "kind": "Issuer", "apiGroup": "cert-manager.io"},
                  "certificates": [{"alias": "client", "subject": {"organizations": ["druid"],
                                                                    "organizationalUnits": ["client"]}}]})
        ops = _wait_phase(kube, "drops-add-tls", ns, "Successful", operator)
    assert pods.restarts() == {p: 3 for p in _expected_pods(db)}
    _assert_guide_conditions(ops, db, with_certificates=True, kind="AddTLS")
    _assert_guide_events(kube, ns, "drops-add-tls", db)
    _assert_restarted_in_order(pods, db, rolls=3)
    server = _leaf(kube, f"{db}-server-cert", ns)
    fqdn = f"{db}-routers-0.{db}-pods.{ns}.svc.cluster.local"
    PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName(fqdn)).verify(server, [])
    client = _leaf(kube, f"{db}-client-cert", ns)
    assert client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "druid"
    assert client.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "client"
    common = _common_properties(kube, ns, db)
    assert common["druid.enableTlsPort"] == "true" and common["druid.enablePlaintextPort"] == "false"
    assert "simple-client-sslcontext" in common["druid.extensions.loadList"]
    assert [p.port for p in kube.get(Service, f"{db}-routers", namespace=ns).spec.ports] == [9088]
    druid = kube.get(DruidRes, db, namespace=ns)
    assert druid["spec"]["enableSSL"] is True and condition(druid, "Paused") is None
    assert "tls.kubedruid.dev/mode" not in (druid.metadata.annotations or {}), "the spec says it all"
    assert druid["status"]["phase"] == "Ready"

    # B. Rotate certificates
    with PodWatch(plane, ns, db) as pods:
        _ops(kube, "druid-recon-tls-rotate", ns, db, type="ReconfigureTLS", tls={"rotateCertificates": True})
        ops = _wait_phase(kube, "druid-recon-tls-rotate", ns, "Successful", operator)
    _assert_guide_conditions(ops, db, with_certificates=True, kind="RotateCertificates")
    assert condition(ops, "ServingNewCertificate")["reason"] == "RestartNeeded"
    for pod in _expected_pods(db):  # each pod was checked, and found unable to show the new certificate
        reload = condition(ops, f"ReloadPod--{pod}")
        assert reload["reason"] == "NotReloaded" and "handshake with" in reload["message"], reload
    rotated = _leaf(kube, f"{db}-server-cert", ns)
    assert rotated.serial_number != server.serial_number
    assert rotated.not_valid_after_utc > server.not_valid_after_utc
    assert _leaf(kube, f"{db}-client-cert", ns).serial_number != client.serial_number
    _assert_restarted_in_order(pods, db)

    # C. Change the issuer: another CA, so three rolls (trust both CAs, new certificates, old CA dropped)
    assert bundle.parse(secret_data(kube, f"{db}-ca-bundle", ns)["ca.crt"]) == [ca]
    new_ca = ca_issuer(kube, ns, "dr-new-issuer", "ca-updated", "kubedb-updated")
    with PodWatch(plane, ns, db) as pods:
        _ops(kube, "drops-update-issuer", ns, db, type="ReconfigureTLS",
             tls={"issuerRef": {"name": "dr-new-issuer", "kind": "Issuer", "apiGroup": "cert-manager.io"}})
        ops = _wait_phase(kube, "drops-update-issuer", ns, "Successful", operator)
    assert pods.restarts() == {p: 3 for p in _expected_pods(db)}
    _assert_guide_conditions(ops, db, with_certificates=True, kind="UpdateTLS")
    assert condition(ops, "IssuerCATrusted")["reason"] == "CAChanged"
    assert bundle.parse(secret_data(kube, f"{db}-ca-bundle", ns)["ca.crt"]) == [new_ca]
    assert f"{db}-ca-probe" not in {c.metadata.name for c in kube.list(Certificate, namespace=ns)}
    trusted_during = [e.message for e in _events(kube, ns, db) if e.reason == "CABundleChanged"]
    assert any("ca-updated" in m and "CN=ca " in m for m in trusted_during), trusted_during
    for alias in ("server", "client"):
        leaf = _leaf(kube, f"{db}-{alias}-cert", ns)
        assert leaf.issuer == new_ca.subject
        assert leaf.issuer.rfc4514_string() == "O=kubedb-updated,CN=ca-updated"
    PolicyBuilder().store(Store([new_ca])).build_server_verifier(x509.DNSName(fqdn)).verify(
        _leaf(kube, f"{db}-server-cert", ns), [])

    # D. Remove TLS: two rolls (plaintext beside TLS, TLS port off)
    with PodWatch(plane, ns, db) as pods:
        _ops(kube, "drops-remove", ns, db, type="ReconfigureTLS", tls={"remove": True})
        ops = _wait_phase(kube, "drops-remove", ns, "Successful", operator)
    assert pods.restarts() == {p: 2 for p in _expected_pods(db)}
    _assert_guide_conditions(ops, db, with_certificates=False, kind="RemoveTLS")
    druid = kube.get(DruidRes, db, namespace=ns)
    assert not druid["spec"].get("enableSSL") and "tls" not in druid["spec"]
    common = _common_properties(kube, ns, db)
    # The last roll kept client trust (peers still announced TLS ports until it ended): no TLS port, no keystore.
    assert not [k for k in common if k.startswith("druid.server.https")] and "druid.enableTlsPort" not in common
    assert common["druid.client.https.trustStorePath"] == "/opt/druid/trust/truststore.p12"
    assert druid.metadata.annotations["tls.kubedruid.dev/mode"] == "client-trust"
    for role, suffix in (("routers", "routers"), ("brokers", "brokers")):
        pod = kube.get(Pod, f"{db}-{suffix}-0", namespace=ns)
        assert [p.containerPort for p in pod.spec.containers[0].ports] == [PLAIN_PORTS[role]]
    assert not list(kube.list(Certificate, namespace=ns))
    remaining = {s.metadata.name for s in kube.list(Secret, namespace=ns)}
    assert not remaining & {f"{db}-server-cert", f"{db}-client-cert", f"{db}-keystore-cred"}
    wait_for(lambda: _phase_of(kube, db, ns) == "Ready", what="Druid Ready after remove")

    # E. The next Restart drops the client trust, and then the CA bundle goes.
    with PodWatch(plane, ns, db) as pods:
        _ops(kube, "restart-after-remove", ns, db, type="Restart")
        _wait_phase(kube, "restart-after-remove", ns, "Successful", operator)
    assert pods.restarts() == {p: 1 for p in _expected_pods(db)}
    common = _common_properties(kube, ns, db)
    assert not [k for k in common if k.startswith(("druid.server.https", "druid.client.https"))]
    assert "tls.kubedruid.dev/mode" not in (kube.get(DruidRes, db, namespace=ns).metadata.annotations or {})
    wait_for(lambda: f"{db}-ca-bundle" not in {s.metadata.name for s in kube.list(Secret, namespace=ns)},
             what="the CA bundle deleted once no pod mounts it")


def test_the_last_add_roll_closes_plaintext_on_each_client_service_only_as_it_reaches_its_node_type(
        kube, namespace, operator):
    """PlaintextClosed restarts the historicals and middleManagers (no client Service) while every client Service
    still offers plaintext, so the clients' grace runs beside their restarts; the brokers' Service drops plaintext
    once clients had it (ClientsFollowed) and just before a broker restarts, while the routers' still offers it."""
    ns, db = namespace, "overlap"
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, ns)
    manifest = druid_manifest(db, ns, topology={"routers": {"replicas": 1}})
    for role in ("historicals", "brokers"):  # long enough a restart to look at the Services meanwhile
        manifest["spec"]["topology"].setdefault(role, {})["podTemplate"] = {
            "metadata": {"annotations": {"kubedruid.dev/kwok-ready-delay": "3s"}}}
    kube.create(codecs.from_dict(manifest))
    _wait_ready(kube, db, ns, operator)

    def ports(service):
        return [p.port for p in kube.get(Service, f"{db}-{service}", namespace=ns).spec.ports]

    def restarting(pod):  # in the last roll: its eviction recorded, its replacement not yet back
        o = kube.get(Ops, "add-tls", namespace=ns)
        evicted, back = condition(o, f"EvictPod--{db}-{pod}"), condition(o, f"CheckPodRunning--{db}-{pod}")
        return condition(o, "ServicesSwitchedToTLS") and evicted and evicted["status"] == "True" and \
            back and back["status"] == "False"

    _ops(kube, "add-tls", ns, db, type="ReconfigureTLS",
         tls={"issuerRef": {"name": "druid-ca-issuer", "kind": "Issuer"}})
    wait_for(lambda: restarting("historicals-0"), timeout=180, interval=0.05, what="the last roll's historical")
    during_historical = {svc: ports(svc) for svc in ("brokers", "routers")}
    wait_for(lambda: restarting("brokers-0"), timeout=60, interval=0.05, what="the last roll's broker")
    during_broker = {svc: ports(svc) for svc in ("brokers", "routers")}
    followed = condition(kube.get(Ops, "add-tls", namespace=ns), "ClientsFollowed")
    ops = _wait_phase(kube, "add-tls", ns, "Successful", operator)

    assert during_historical == {"brokers": [8282, 8082], "routers": [9088, 8888]}, "TLS first, plaintext still"
    assert during_broker == {"brokers": [8282], "routers": [9088, 8888]}
    assert followed and followed["status"] == "True", "the grace was over before the first client Service closed"
    assert {svc: ports(svc) for svc in ("brokers", "routers")} == {"brokers": [8282], "routers": [9088]}
    assert condition(ops, "ClientsFollowed")["message"] == "clients had 1s to follow the Services"


def _phase_of(kube, db, ns):
    return (kube.get(DruidRes, db, namespace=ns).get("status") or {}).get("phase")


def _delayed_druid(name, ns, role, delay):
    """A Druid whose `role` pods take `delay` to become Ready (kwok), so that an op can be watched mid-flight."""
    return druid_manifest(name, ns, topology={
        "routers": {"replicas": 1},
        role: {"podTemplate": {"metadata": {"annotations": {"kubedruid.dev/kwok-ready-delay": delay}}}}})


def test_queueing_skip_rule_and_if_ready(kube, namespace, operator):
    ns, db = namespace, "queued"
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(_delayed_druid(db, ns, "routers", "6s")))
    # While the Druid provisions (not Ready), three requests arrive; apply: IfReady holds them all. The two Restarts
    # are created within one second, the later one with the name KubeDB's tie rule (name descending) would skip.
    for attempt in range(5):
        old_name, new_name = f"restart-{2 * attempt + 1}", f"restart-{2 * attempt + 2}"
        _ops(kube, old_name, ns, db, type="Restart", apply="IfReady")
        _ops(kube, new_name, ns, db, type="Restart", apply="IfReady")
        created = {kube.get(Ops, n, namespace=ns).metadata.creationTimestamp for n in (old_name, new_name)}
        if len(created) == 1:
            break
        for n in (old_name, new_name):  # not a tie: try again
            kube.delete(Ops, n, namespace=ns)
    assert len(created) == 1, "two requests created within one second"
    _ops(kube, "add-tls", ns, db, type="ReconfigureTLS",
         tls={"issuerRef": {"name": "druid-ca-issuer", "kind": "Issuer"}})
    old = _wait_phase(kube, old_name, ns, "Skipped", operator, timeout=30)
    assert condition(old, "Skipped")["message"].startswith(
        f"skipped as {ns}/{new_name} is the most updated DruidOpsRequest of type Restart")
    wait_for(lambda: _phase(kube, new_name, ns) == "Pending" and _phase(kube, "add-tls", ns) == "Pending"
             and _phase_of(kube, db, ns) != "Ready", what="both remaining requests Pending while the Druid provisions")

    first = _wait_phase(kube, new_name, ns, "Successful", operator)
    second = _wait_phase(kube, "add-tls", ns, "Successful", operator)
    druid = kube.get(DruidRes, db, namespace=ns)
    ready_at = condition(druid, "Provisioned")["lastTransitionTime"]
    started = lambda o: o["status"]["conditions"][0]["lastTransitionTime"]  # noqa: E731
    assert started(first) >= ready_at, "IfReady waited for the Druid to be Ready"
    assert started(second) >= condition(first, "Successful")["lastTransitionTime"], "one op at a time"
    assert any(e.reason == "Pending" for e in _events(kube, ns, "add-tls"))


def test_apply_always_runs_on_a_druid_that_is_not_ready(kube, namespace, operator):
    ns, db = namespace, "always"
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(_delayed_druid(db, ns, "routers", "20s")))
    _wait_ready(kube, db, ns, operator, timeout=60)
    kube.delete(Pod, f"{db}-routers-0", namespace=ns)  # its replacement is Ready only after 20 s
    wait_for(lambda: _phase_of(kube, db, ns) in ("NotReady", "Critical"), what="Druid not Ready")
    _ops(kube, "restart-now", ns, db, type="Restart", apply="Always")
    wait_for(lambda: _phase(kube, "restart-now", ns) == "Progressing", timeout=10, what="Always starts at once")
    assert _phase_of(kube, db, ns) != "Ready"


def test_pods_on_an_older_template_keep_the_druid_from_ready_until_a_restart_rolls_them(kube, namespace, operator):
    """A spec change that reaches the PetSet restarts nothing (OnDelete): the pods run the old template, so the Druid
    is Critical with the reason, not Ready. An IfReady Restart still starts (its roll is the fix) and ends Ready."""
    ns, db = namespace, "drifted"
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns, topology={"routers": {"replicas": 1}})))
    _wait_ready(kube, db, ns, operator)
    kube.patch(DruidRes, db, {"spec": {"topology": {"brokers": {"podTemplate": {"metadata": {"annotations": {
        "example.com/drift": "1"}}}}}}}, namespace=ns, patch_type=PatchType.MERGE)
    # Until the PetSet controller has observed the new template, the replicas count as not ready
    # (ReadinessCheckFailed): the reason to wait for is the one it settles on.
    wait_for(lambda: _phase_of(kube, db, ns) == "Critical" and condition(
        kube.get(DruidRes, db, namespace=ns), "Ready")["reason"] == "PodsOnOldRevision", timeout=30,
        what="Druid Critical because of pods on the old revision")
    ready = condition(kube.get(DruidRes, db, namespace=ns), "Ready")
    assert "1 of 1 brokers" in ready["message"], ready
    _ops(kube, "restart-drift", ns, db, type="Restart")  # apply: IfReady
    _wait_phase(kube, "restart-drift", ns, "Successful", operator)
    wait_for(lambda: _phase_of(kube, db, ns) == "Ready", timeout=30, what="Ready once every pod runs the template")


def test_timeout_fails_the_op_names_the_pod_and_resumes_the_druid(kube, namespace, operator):
    ns, db = namespace, "stuck"
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns)))
    _wait_ready(kube, db, ns, operator)
    # From now on a new historicals pod never becomes Ready (kwok holds it); the running one stays Ready.
    kube.patch(DruidRes, db, {"spec": {"topology": {"historicals": {"podTemplate": {"metadata": {
        "annotations": {"kubedruid.dev/kwok-hold-not-ready": "true"}}}}}}}, namespace=ns, patch_type=PatchType.MERGE)
    wait_for(lambda: "kubedruid.dev/kwok-hold-not-ready" in json.dumps(
        kube.get(create_namespaced_resource("apps.k8s.appscode.com", "v1", "PetSet", "petsets"),
                 f"{db}-historicals", namespace=ns)["spec"]["template"]), what="PetSet template updated")
    before = _pod_uids(kube, ns, db)
    _ops(kube, "restart-stuck", ns, db, type="Restart", timeout="5s")
    ops = _wait_phase(kube, "restart-stuck", ns, "Failed", operator, timeout=60)
    failed = condition(ops, "Failed")
    pod = f"{db}-historicals-0"
    assert f"CheckPodRunning--{pod}" in failed["message"] and "timed out after 5s" in failed["message"]
    assert condition(ops, f"CheckPodRunning--{pod}")["reason"] == "Failed"
    after = _pod_uids(kube, ns, db)
    assert after[f"{db}-middlemanagers-0"] == before[f"{db}-middlemanagers-0"], "nothing more is evicted"
    wait_for(lambda: condition(kube.get(DruidRes, db, namespace=ns), "Paused") is None, what="Druid resumed")
    # Events are posted in the background, after the status that says Failed.
    wait_for(lambda: any(e.type == "Warning" and e.reason == "Failed" for e in _events(kube, ns, "restart-stuck")),
             timeout=10, what="the Warning event of the failed op")


def test_operator_killed_in_the_middle_of_each_phase_each_pod_restarted_once_per_roll(plane, kube, namespace,
                                                                                       operator):
    ns, db = namespace, "crashy"
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, ns)
    manifest = druid_manifest(db, ns)
    for role in ("coordinators", "brokers", "historicals", "middleManagers", "routers"):
        manifest["spec"]["topology"].setdefault(role, {})["podTemplate"] = {
            "metadata": {"annotations": {"kubedruid.dev/kwok-ready-delay": "2s"}}}
    manifest["spec"]["topology"]["routers"]["replicas"] = 1
    kube.create(codecs.from_dict(manifest))
    _wait_ready(kube, db, ns, operator)

    with PodWatch(plane, ns, db) as pods:
        _ops(kube, "add-tls", ns, db, type="ReconfigureTLS",
             tls={"issuerRef": {"name": "druid-ca-issuer", "kind": "Issuer"}})
        # Kill the operator in each phase: in each roll once the second pod is being restarted, and as the Services
        # switch. The phase before it is done and this phase's own conditions are under way.
        second_pod = f"EvictPod--{db}-middlemanagers-0"
        kills = [(None, second_pod), ("ClientTrustRolledOut", second_pod), ("TLSPortOpened", "UpdatePetSets"),
                 ("ServicesSwitchedToTLS", second_pod)]
        for done, under_way in kills:
            def reached(done=done, under_way=under_way):
                o = kube.get(Ops, "add-tls", namespace=ns)
                return (done is None or condition(o, done)) and condition(o, under_way)
            wait_for(reached, timeout=120, interval=0.05, what=f"{under_way} after {done}")
            operator.kill()
            operator.start()
        killed_at = datetime.datetime.now(datetime.timezone.utc)
        ops = _wait_phase(kube, "add-tls", ns, "Successful", operator, timeout=240)
    assert pods.restarts() == {p: 3 for p in _expected_pods(db)}, "each pod restarted exactly once per roll"
    assert condition(ops, "Successful")["lastTransitionTime"] >= killed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [c["type"] for c in ops["status"]["conditions"] if c["type"] in PHASES["AddTLS"]] == PHASES["AddTLS"]
    assert condition(kube.get(DruidRes, db, namespace=ns), "Paused") is None


def test_deleting_a_running_op_cancels_it_between_pods_and_resumes_the_druid(plane, kube, namespace, operator):
    """Cancel: `kubectl delete druidopsrequest` while a roll runs. The op stops at the next step (no pod is evicted
    after it is gone), the pod being restarted comes back by itself, and the Druid is resumed and Ready."""
    ns, db = namespace, "cancelled"
    deep_storage_secret(kube, ns)
    manifest = druid_manifest(db, ns)
    manifest["spec"]["topology"]["historicals"] = {"podTemplate": {"metadata": {"annotations": {
        "kubedruid.dev/kwok-ready-delay": "3s"}}}}
    kube.create(codecs.from_dict(manifest))
    _wait_ready(kube, db, ns, operator)
    with PodWatch(plane, ns, db) as pods:
        _ops(kube, "restart-cancel", ns, db, type="Restart")
        first = f"EvictPod--{db}-historicals-0"
        wait_for(lambda: condition(kube.get(Ops, "restart-cancel", namespace=ns), first), interval=0.05,
                 what="the first eviction")
        kube.delete(Ops, "restart-cancel", namespace=ns)
        wait_for(lambda: condition(kube.get(DruidRes, db, namespace=ns), "Paused") is None, timeout=30,
                 what="the Druid resumed once its op is gone")
        _wait_ready(kube, db, ns, operator, timeout=60)
        time.sleep(3)  # an op that kept running would evict the next pod within this
    assert pods.replaced == [f"{db}-historicals-0"], pods.replaced
    assert [e for e in _events(kube, ns, db) if e.reason == "Resumed"], "the resume is reported on the Druid"
