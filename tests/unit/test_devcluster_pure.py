"""Pure parts of the local plane: component command lines, kwok stages, the plane's PKI, its port allocator."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubedruid.devcluster import kwok_stages, plane
from kubedruid.devcluster.layout import COMPONENTS, Binaries, PlaneLayout, Ports, command
from kubedruid.certs.pki import make_plane_pki

LAYOUT = PlaneLayout(Path("/state"), Ports(2379, 2380, 6443, 10257, 10259, 10247, 9403, 9404))
BINS = Binaries(Path("/k8s"), Path("/etcd"), Path("/kwok"), Path("/cm"))


def test_every_component_listens_on_loopback_only():
    for component in COMPONENTS:
        argv = command(component, LAYOUT, BINS)
        addresses = [a for a in argv if "-address=" in a or "-urls=" in a]
        assert addresses, component
        for arg in addresses:
            assert "127.0.0.1" in arg and "0.0.0.0" not in arg, (component, arg)


def test_apiserver_runs_rbac_with_service_account_keys_and_tls12():
    argv = command("kube-apiserver", LAYOUT, BINS)
    assert "--authorization-mode=RBAC" in argv
    assert "--service-account-key-file=/state/pki/sa.pub" in argv
    assert "--service-account-signing-key-file=/state/pki/sa.key" in argv
    assert "--tls-min-version=VersionTLS12" in argv


POD_READY = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-ready}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
  next: {statusTemplate: 'phase: Running'}
"""
POD_DELETE = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-delete}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  next: {delete: true}
"""


def test_claims_are_bound_by_our_binder_not_kwoks_one_at_a_time_stages():
    names = [Path(f).stem for f in kwok_stages.STAGE_FILES]
    assert "pvc-provision" not in names and "pv-bind" not in names  # volumes.KwokBinder, many at once
    assert {"pvc-delete", "pv-delete"} <= set(names)  # a deleted claim's volume is still released and removed
    argv = command("kwok-volumes", LAYOUT, BINS)
    assert argv[1:5] == ["-m", "kubedruid.devcluster.volumes", "--kwok", "/state/admin.kubeconfig"]


def test_pod_ready_stage_gets_delay_and_hold_pod_delete_a_delay_a_pod_may_ask_for():
    stages = list(yaml.safe_load_all(kwok_stages.assemble([POD_READY, POD_DELETE], default_delay_ms=1500)))
    ready, delete = stages
    assert ready["spec"]["delay"]["durationMilliseconds"] == 1500
    assert kwok_stages.READY_DELAY_ANNOTATION in ready["spec"]["delay"]["durationFrom"]["jq"]["expression"]
    exprs = ready["spec"]["selector"]["matchExpressions"]
    assert exprs[0]["key"] == ".metadata.deletionTimestamp"  # upstream's selector is kept
    assert {"key": f'.metadata.annotations["{kwok_stages.HOLD_NOT_READY_ANNOTATION}"]',
            "operator": "DoesNotExist"} in exprs
    upstream = yaml.safe_load(POD_DELETE)
    assert {k: v for k, v in delete["spec"].items() if k != "delay"} == upstream["spec"]
    assert delete["spec"]["delay"]["durationMilliseconds"] == 0  # none unless a pod asks for it
    assert kwok_stages.DELETE_DELAY_ANNOTATION in delete["spec"]["delay"]["durationFrom"]["jq"]["expression"]


def test_plane_pki_admin_is_system_masters_and_apiserver_serves_loopback():
    made = make_plane_pki("10.96.0.1")
    ca = x509.load_pem_x509_certificate(made.ca.cert_pem)
    admin = x509.load_pem_x509_certificate(made.admin.cert_pem)
    server = x509.load_pem_x509_certificate(made.apiserver.cert_pem)
    assert admin.issuer == ca.subject and server.issuer == ca.subject
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert ExtendedKeyUsageOID.CLIENT_AUTH in admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.96.0.1"}
    assert b"PRIVATE KEY" in made.service_account_key_pem and b"PUBLIC KEY" in made.service_account_pub_pem


def test_a_plane_from_before_a_new_component_gets_a_port_for_it(tmp_path):
    import json

    ports = {k: v for k, v in LAYOUT.to_json()["ports"].items() if k != "kwok_volumes_health"}
    (tmp_path / "plane.json").write_text(json.dumps({"ports": ports, "pod_ready_delay_ms": 1000}))
    layout = plane.load_or_create_layout(tmp_path)
    assert {k: getattr(layout.ports, k) for k in ports} == ports  # the running components keep theirs
    assert layout.ports.kwok_volumes_health not in ports.values()
    assert json.loads((tmp_path / "plane.json").read_text())["ports"]["kwok_volumes_health"] == \
        layout.ports.kwok_volumes_health  # the next `dev up` finds the same


def test_plane_ports_are_distinct_free_and_below_the_ephemeral_range(tmp_path, monkeypatch):
    """One allocator for the plane's and the node's loopback ports (a plane once got etcd's port twice)."""

    ports = plane.free_ports(20)
    first, last = (int(n) for n in plane.EPHEMERAL_RANGE.read_text().split())
    assert len(set(ports)) == 20 and all(p >= plane.LOWEST_PORT and not first <= p <= last for p in ports)

    # a window of 8 ports: 5 held by listeners, 1 to avoid, so exactly 2 can be given
    low = next(p for p in range(21000, 29000, 8) if all(plane._bindable(q) for q in range(p, p + 8)))
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text(f"{low + 8}\t65535\n")
    monkeypatch.setattr(plane, "EPHEMERAL_RANGE", ranges)
    monkeypatch.setattr(plane, "LOWEST_PORT", low)
    held = []
    try:
        for p in range(low, low + 5):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            s.listen()
            held.append(s)
        assert sorted(plane.free_ports(2, avoid=[low + 5])) == [low + 6, low + 7]
        with pytest.raises(RuntimeError, match="no 3 free loopback ports"):
            plane.free_ports(3, avoid=[low + 5])
    finally:
        for s in held:
            s.close()
