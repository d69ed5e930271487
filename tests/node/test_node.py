"""The real node itself, as a person checks a fresh cluster: the node is Ready with the runtime we built, pods run
from the local images, cluster DNS answers cluster names (and only those), Services and pods are reachable from
the host and from pods, `kubectl logs` and `exec` work, and `dev status` says all of it is healthy."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Node

from kubedruid.devcluster import images, node_layout as nl
from tests.integration.conftest import wait_for

from .conftest import NODE_DRUID_VERSION, REPORT


def _web_pod(name: str, ns: str) -> dict:
    """A plain HTTP server (python's, from the local S3 server image) that answers with its own name."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"hostname": name, "subdomain": "web",
                     "containers": [{"name": "web", "image": images.S3_SERVER_IMAGE, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", f"mkdir -p /tmp/w && echo {name} > /tmp/w/index.html && "
                                                 "cd /tmp/w && exec python3 -m http.server 8000"],
                                     "ports": [{"containerPort": 8000}],
                                     "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}]}}


def _toolbox_pod(ns: str) -> dict:
    """The Druid image, sleeping: Debian's getent and bash to look around from inside a pod."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "toolbox", "namespace": ns},
            "spec": {"containers": [{"name": "tools", "image": f"apache/druid:{NODE_DRUID_VERSION}",
                                     "imagePullPolicy": "Never", "command": ["sleep", "3600"],
                                     "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                                   "limits": {"cpu": "10m", "memory": "32Mi"}}}],
                     "terminationGracePeriodSeconds": 0}}


@pytest.fixture(scope="module")
def netns(node_plane, kube):
    """A namespace with a web pod behind a ClusterIP Service and a headless one, and a toolbox pod."""
    ns = "node-net"
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, _web_pod("web-0", ns), _toolbox_pod(ns),
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
             "spec": {"clusterIP": "None", "selector": {"app": "web-0"}, "ports": [{"port": 8000}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "front", "namespace": ns},
             "spec": {"selector": {"app": "web-0"}, "ports": [{"port": 80, "targetPort": 8000}]}}]
    node_plane.kubectl("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))
    node_plane.kubectl("wait", "--for=condition=Ready", "--timeout=120s", "-n", ns, "pod/web-0", "pod/toolbox")
    yield ns
    node_plane.kubectl("delete", "namespace", ns, "--wait=false")


def test_node_is_ready_with_the_runtime_we_built(kube):
    node = kube.get(Node, nl.NODE_NAME)
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True", ready.message
    assert node.status.nodeInfo.kubeletVersion == "v1.36.3"
    assert node.status.nodeInfo.containerRuntimeVersion == "containerd://2.3.7"
    assert [a.address for a in node.status.addresses if a.type == "InternalIP"] == [nl.BRIDGE_IP]
    names = {n for i in node.status.images for n in i.names or []}
    assert f"docker.io/apache/druid:{NODE_DRUID_VERSION}" in names
    assert images.PAUSE_IMAGE in names


def _rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def test_dev_status_shows_every_part_healthy(node_plane):
    out = subprocess.run([str(Path(sys.executable).parent / "kubedruid"), "dev", "status", "--dir",
                          str(node_plane.state_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    for part in ("kube-apiserver", "containerd", "kubelet", "kube-proxy", "coredns", "volumes", "network isolation"):
        assert part in out.stdout
    assert "kwok" not in out.stdout
    from kubedruid.devcluster import plane as plane_mod

    REPORT["node parts RSS"] = {s.name: f"{_rss_mib(s.pid)} MiB" for s in plane_mod.status(node_plane.state_dir)
                                if s.pid}


def test_pods_resolve_cluster_names_and_nothing_else(node_plane, netns):
    def getent(name: str) -> subprocess.CompletedProcess:
        return node_plane.kubectl("exec", "-n", netns, "toolbox", "--", "getent", "hosts", name, check=False)

    web_ip = node_plane.kubectl("get", "-n", netns, "pod", "web-0", "-o", "jsonpath={.status.podIP}").stdout
    front_ip = node_plane.kubectl("get", "-n", netns, "svc", "front", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert getent(f"web-0.web.{netns}.svc.cluster.local").stdout.split()[0] == web_ip  # a pod's FQDN
    assert getent(f"front.{netns}.svc.cluster.local").stdout.split()[0] == front_ip
    assert getent("front").stdout.split()[0] == front_ip  # the pod's search path
    # Names outside the cluster are answered locally as unknown: nothing is forwarded off the machine.
    assert getent("example.com").returncode != 0
    resolv = node_plane.kubectl("exec", "-n", netns, "toolbox", "--", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {nl.CLUSTER_DNS_IP}" in resolv


def _get(address: str, port: int) -> str:
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode().strip()
    finally:
        conn.close()


def test_pods_and_services_answer_from_the_host_and_from_pods(node_plane, netns):
    web_ip = node_plane.kubectl("get", "-n", netns, "pod", "web-0", "-o", "jsonpath={.status.podIP}").stdout
    front_ip = node_plane.kubectl("get", "-n", netns, "svc", "front", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert _get(web_ip, 8000) == "web-0"
    assert wait_for(lambda: _get(front_ip, 80) == "web-0", timeout=30, what="the Service from the host")
    # From a pod through the Service, by name; and from the web pod to its own Service (hairpin).
    curl = ("exec 3<>/dev/tcp/front/80 && printf 'GET / HTTP/1.0\\r\\nHost: front\\r\\n\\r\\n' >&3 && "
            "tail -n1 <&3")
    out = node_plane.kubectl("exec", "-n", netns, "toolbox", "--", "bash", "-c", curl).stdout
    assert out.strip() == "web-0"
    hairpin = node_plane.kubectl("exec", "-n", netns, "web-0", "--", "python3", "-c",
                                 "import urllib.request as u; print(u.urlopen('http://front', timeout=5).read()"
                                 ".decode().strip())").stdout
    assert hairpin.strip() == "web-0"


def test_logs_come_from_the_running_container(node_plane, netns):
    wait_for(lambda: _get(node_plane.kubectl("get", "-n", netns, "pod", "web-0", "-o",
                                             "jsonpath={.status.podIP}").stdout, 8000), what="a request")
    logs = node_plane.kubectl("logs", "-n", netns, "web-0").stdout
    assert '"GET / HTTP/1.1" 200' in logs


def test_a_pod_gets_the_memory_limit_it_asked_for_from_the_cgroup(node_plane, netns):
    limit = node_plane.kubectl("exec", "-n", netns, "toolbox", "--", "cat",
                               "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
    assert int(limit) == 32 * 1024 * 1024
