"""Pure parts of the real node: addresses, the files each component reads, command lines, isolation rules."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

from kubedruid.devcluster import node_layout as nl
from kubedruid.devcluster.layout import POD_CIDR, REAL_NODE_PLANE_COMPONENTS, REAL_NODE_SERVICE_CIDR, SERVICE_CIDR
from kubedruid.devcluster.layout import PlaneLayout, Ports, command
from kubedruid.devcluster.layout import Binaries

NODE = nl.NodeLayout(Path("/state"), nl.NodePorts(10250, 10248, 10256, 10249, 8080, 8081))
BINS = nl.NodeBinaries(Path("/k8s"), Path("/ctrd"), Path("/dns"))
PLANE = PlaneLayout(Path("/state"), Ports(2379, 2380, 6443, 10257, 10259, 10247, 9403, 9404), real_node=True)
PLANE_BINS = Binaries(Path("/k8s"), Path("/etcd"), Path("/kwok"), Path("/cm"))


def test_pod_range_is_its_own_and_holds_the_bridge_address():
    pods = ipaddress.ip_network(nl.NODE_POD_CIDR)
    assert ipaddress.ip_address(nl.BRIDGE_IP) in pods
    assert not pods.overlaps(ipaddress.ip_network(POD_CIDR))  # kwok's fake pod addresses
    assert not pods.overlaps(ipaddress.ip_network(SERVICE_CIDR))
    assert not pods.overlaps(ipaddress.ip_network(REAL_NODE_SERVICE_CIDR))


def test_a_real_node_planes_services_have_a_range_apart_from_kwok_planes():
    """make test runs a kwok plane beside the real node's: the node routes its Service range to its bridge and
    kube-proxy rewrites it, so a kwok plane's ClusterIPs must fall outside it."""
    node_range, kwok_range = ipaddress.ip_network(PLANE.service_cidr), ipaddress.ip_network(SERVICE_CIDR)
    assert not node_range.overlaps(kwok_range)
    kwok_plane = PlaneLayout(Path("/state"), PLANE.ports)
    assert kwok_plane.service_cidr == SERVICE_CIDR and kwok_plane.first_service_ip == "10.96.0.1"
    assert PLANE.first_service_ip == "10.97.0.1"
    for component in ("kube-apiserver", "kube-controller-manager"):
        assert f"--service-cluster-ip-range={PLANE.service_cidr}" in command(component, PLANE, PLANE_BINS)
        assert f"--service-cluster-ip-range={SERVICE_CIDR}" in command(component, kwok_plane, PLANE_BINS)
    assert [PLANE.service_cidr, "dev", nl.BRIDGE] in nl.routes()
    assert ipaddress.ip_address(nl.LAST_SERVICE_IP) in node_range


def test_containerd_config_restricts_oom_score_and_uses_cgroupfs_runc_and_our_cni():
    doc = tomllib.loads(nl.containerd_toml(NODE, "registry.k8s.io/pause:3.10.2"))
    assert doc["version"] == 3
    assert doc["grpc"]["address"] == "/state/node/containerd.sock"
    runtime = doc["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"SystemdCgroup": False, "BinaryName": nl.RUNC}
    assert runtime["cni"]["conf_dir"] == "/state/node/cni/net.d"
    images = doc["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10.2"
    assert doc["plugins"]["io.containerd.grpc.v1.cri"]["stream_server_address"] == "127.0.0.1"


def test_cni_bridge_matches_the_pre_created_bridge_and_gives_pods_a_default_route():
    conf = nl.cni_conflist(NODE)
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == nl.BRIDGE and bridge["ipMasq"] is False and bridge["hairpinMode"] is True
    (rng,) = bridge["ipam"]["ranges"][0]
    assert rng == {"subnet": nl.NODE_POD_CIDR, "gateway": nl.BRIDGE_IP}
    assert {"dst": "0.0.0.0/0"} in bridge["ipam"]["routes"]
    assert json.loads(json.dumps(conf)) == conf


def test_kubelet_runs_on_cgroup_v1_with_webhook_auth_and_cluster_dns_only():
    cfg = nl.kubelet_config(NODE, Path("/state/pki/ca.crt"))
    assert cfg["failCgroupV1"] is False and cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authorization"]["mode"] == "Webhook"
    assert cfg["readOnlyPort"] == 0 and cfg["healthzBindAddress"] == "127.0.0.1"
    assert cfg["clusterDNS"] == [nl.BRIDGE_IP] and cfg["resolvConf"] == "/state/node/resolv.conf"
    assert nl.resolv_conf() == f"nameserver {nl.BRIDGE_IP}\n"  # never the VM's own resolver
    assert cfg["imageGCHighThresholdPercent"] == 100  # imported images cannot be pulled back


def test_kube_proxy_and_kubelet_command_lines():
    argv = nl.command("kubelet", NODE, BINS)
    assert argv[0] == "/k8s/kubelet" and f"--node-ip={nl.BRIDGE_IP}" in argv
    assert f"--hostname-override={nl.NODE_NAME}" in argv
    proxy = nl.kube_proxy_config(NODE)
    assert proxy["mode"] == "nftables" and proxy["clusterCIDR"] == nl.NODE_POD_CIDR
    assert proxy["healthzBindAddress"].startswith("127.0.0.1:")
    assert nl.command("containerd", NODE, BINS) == ["/ctrd/containerd", "--config=/state/node/containerd.toml"]


def test_corefile_answers_cluster_names_on_the_bridge_and_never_forwards():
    text = nl.corefile(NODE)
    assert "forward" not in text
    assert text.count(f"bind {nl.BRIDGE_IP}") == 2
    assert "pods insecure" in text and "rcode NXDOMAIN" in text


def test_isolation_rules_reject_everything_routed_off_the_bridge_and_routes_keep_services_local():
    rules = [" ".join(r) for r in nl.isolation_rules()]
    assert f"-i {nl.BRIDGE} ! -o {nl.BRIDGE} -j REJECT" in rules
    assert f"! -i {nl.BRIDGE} -o {nl.BRIDGE} -j DROP" in rules
    assert [REAL_NODE_SERVICE_CIDR, "dev", nl.BRIDGE] in nl.routes()
    assert ["unreachable", POD_CIDR] in nl.routes()


def test_real_node_plane_runs_no_kwok_and_authorizes_nodes():
    assert "kwok" not in PLANE.components and "kwok" not in REAL_NODE_PLANE_COMPONENTS
    assert "kwok-volumes" not in PLANE.components  # the node's own provisioner makes its volumes
    api = command("kube-apiserver", PLANE, PLANE_BINS)
    assert "--authorization-mode=Node,RBAC" in api
    assert "--kubelet-preferred-address-types=InternalIP" in api
    assert "--kubelet-client-certificate=/state/node/pki/apiserver-kubelet-client.crt" in api
    kwok_plane = PlaneLayout(Path("/state"), PLANE.ports)
    assert "--authorization-mode=RBAC" in command("kube-apiserver", kwok_plane, PLANE_BINS)


def test_layout_round_trips_through_json():
    assert nl.NodeLayout.from_json(Path("/state"), NODE.to_json()) == NODE
    assert PlaneLayout.from_json(Path("/state"), PLANE.to_json()) == PLANE
    old = {k: v for k, v in PLANE.to_json().items() if k != "real_node"}  # plane.json written before real nodes
    assert PlaneLayout.from_json(Path("/state"), old).real_node is False


def test_a_claim_gets_a_local_volume_bound_to_it_on_the_node():
    from lightkube.models.core_v1 import PersistentVolumeClaimSpec, VolumeResourceRequirements
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import PersistentVolumeClaim

    from kubedruid.devcluster import volumes

    claim = PersistentVolumeClaim(
        metadata=ObjectMeta(name="data-druid-historicals-0", namespace="demo", uid="1234"),
        spec=PersistentVolumeClaimSpec(accessModes=["ReadWriteOnce"], storageClassName="standard",
                                       resources=VolumeResourceRequirements(requests={"storage": "1Gi"})))
    assert volumes.ours(claim)
    pv = volumes.desired_volume(claim, Path("/state/node/volumes/1234"), nl.NODE_NAME)
    assert pv.metadata.name == "pvc-1234"
    assert pv.spec.local.path == "/state/node/volumes/1234" and pv.spec.hostPath is None  # fsGroup applies
    assert (pv.spec.claimRef.name, pv.spec.claimRef.uid) == ("data-druid-historicals-0", "1234")
    assert pv.spec.capacity == {"storage": "1Gi"} and pv.spec.persistentVolumeReclaimPolicy == "Delete"
    term = pv.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0]
    assert term.values == [nl.NODE_NAME]
    claim.spec.storageClassName = "other"
    assert not volumes.ours(claim)  # another class's claims are someone else's
    assert nl.STORAGE_CLASS["provisioner"] == nl.VOLUME_PROVISIONER


def test_a_kwok_claim_gets_a_volume_pre_bound_to_it_and_the_patches_that_bind_it():
    from lightkube.models.core_v1 import PersistentVolumeClaimSpec, VolumeResourceRequirements
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import PersistentVolumeClaim

    from kubedruid.devcluster import volumes

    claim = PersistentVolumeClaim(
        metadata=ObjectMeta(name="data-zk-0", namespace="demo", uid="5678"),
        spec=PersistentVolumeClaimSpec(accessModes=["ReadWriteOnce"], storageClassName="kwok-volume",
                                       resources=VolumeResourceRequirements(requests={"storage": "2Gi"})))
    assert volumes.kwok_unbound(claim) and not volumes.ours(claim)  # kwok's class: the real node's leaves it
    pv = volumes.kwok_volume(claim)
    assert pv.metadata.name == "pvc-5678" and pv.spec.storageClassName == "kwok-volume"
    assert (pv.spec.claimRef.namespace, pv.spec.claimRef.name, pv.spec.claimRef.uid) == ("demo", "data-zk-0", "5678")
    assert pv.spec.capacity == {"storage": "2Gi"} and pv.spec.persistentVolumeReclaimPolicy == "Delete"
    assert pv.spec.nodeAffinity is None  # any kwok node may run its pod
    spec, status = volumes.bound_claim(claim)
    assert spec["spec"] == {"volumeName": "pvc-5678"}
    assert spec["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert status["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}}
    claim.spec.volumeName = "pvc-5678"
    assert not volumes.kwok_unbound(claim)  # bound already: no second volume
    claim.spec.volumeName, claim.spec.storageClassName = None, "standard"
    assert not volumes.kwok_unbound(claim)


def test_the_volume_provisioners_command_line_names_the_interpreter_one_way():
    """pytest runs .venv/bin/python, the kubedruid script .venv/bin/python3.11: one plane, one command line, so a
    second `dev up` does not restart the provisioner."""
    import sys

    argv = nl.command("volumes", NODE, BINS)
    assert argv[0] == str(Path(sys.prefix) / "bin" / "python3") and Path(argv[0]).exists()
