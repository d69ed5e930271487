"""Last in the tier: `kubedruid dev down` stops every part of the real node and undoes every change it made to the
host — no process, mount, cgroup, bridge, route or iptables chain of ours is left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubedruid.devcluster import node, plane as plane_mod
from kubedruid.devcluster.node_layout import NodeLayout

from .conftest import HOST_BEFORE, IP_FORWARD


@pytest.mark.skipif(bool(os.environ.get("KUBEDRUID_NODE_DEV_DIR")),
                    reason="KUBEDRUID_NODE_DEV_DIR: the plane is reused and left running")
def test_dev_down_leaves_nothing_behind(node_plane, operator):
    operator.stop()  # what `make demo-down` does too: dev down stops strays of the plane as well
    out = subprocess.run([str(Path(sys.executable).parent / "kubedruid"), "dev", "down", "--dir",
                          str(node_plane.state_dir)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for part in ("coredns", "kube-proxy", "kubelet", "containerd", "kube-apiserver", "etcd"):
        assert part in out.stderr
    layout = node.load_or_create_layout(plane_mod.load_or_create_layout(node_plane.state_dir, real_node=True))
    assert isinstance(layout, NodeLayout)
    assert node.leftovers(layout) == []
    # Every process that names the state directory: the plane's, the node's, and containerd's shims (their
    # -address is the socket in it). Pods' processes were in the kubepods cgroups, which are gone (leftovers).
    assert plane_mod.plane_processes(node_plane.state_dir) == []
    assert IP_FORWARD.read_text().strip() == HOST_BEFORE["ip_forward"]
