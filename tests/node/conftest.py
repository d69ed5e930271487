"""Fixtures of the real-node tier (`make test-node`): the plane with one real node (`kubedruid dev up --real-node`),
the operator as a person starts it, and the Druid of KubeDB's reconfigure-TLS guide on real pods.

* KUBEDRUID_NODE_DEV_DIR reuses (and leaves running) a real-node plane in that directory; otherwise one is started in
  a temporary directory and torn down at the end (the last test checks that `dev down` leaves nothing behind).
* KUBEDRUID_NODE_DRUID_VERSION: the Druid version the tier runs (default NODE_DRUID_VERSION); its jars are resolved
  from Maven Central by tools/druid/fetch.py on first use, and its image is built locally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightkube import Client, KubeConfig

from kubedruid.devcluster import plane as plane_mod
from kubedruid.devcluster.binaries import plane_binaries
from kubedruid.devcluster.install import install_kubedruid
from kubedruid.devcluster import node
from tests.integration.conftest import OperatorProcess, Plane

from .pod_logs import PodLogArchive

ROOT = Path(__file__).resolve().parents[2]
# The newest line whose default configuration (basic security, MySQL metadata, S3 deep storage) resolves completely
# from this machine's Maven Central: docs/druid-test-tier.md and docs/decisions/0011.
NODE_DRUID_VERSION = os.environ.get("KUBEDRUID_NODE_DRUID_VERSION", "28.0.0")


IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
HOST_BEFORE: dict[str, str] = {}  # what the host had before the node came up (`dev down` must restore it)


def fetch_druid(version: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools/druid/fetch.py"), version], check=True)


@pytest.fixture(scope="session")
def node_plane(tmp_path_factory) -> Plane:
    reuse = os.environ.get("KUBEDRUID_NODE_DEV_DIR")
    state_dir = Path(reuse) if reuse else tmp_path_factory.mktemp("node-plane", numbered=True)
    fetch_druid(NODE_DRUID_VERSION)
    HOST_BEFORE["ip_forward"] = IP_FORWARD.read_text().strip()
    # A new plane that fails to come up is taken down by `up` itself: a half-started node holds host networking.
    layout = plane_mod.up(state_dir.resolve(), extra_setup=install_kubedruid, real_node=True,
                          druid_versions=[NODE_DRUID_VERSION])
    yield Plane(layout.state_dir, layout.kubeconfig, plane_binaries(real_node=True).kubectl())
    if not reuse:
        plane_mod.down(layout.state_dir)


@pytest.fixture(scope="session")
def pod_log_archive(node_plane) -> PodLogArchive:
    """The logs of every pod the tier's node runs, kept also after the pod is gone (tests/node/pod_logs.py), in
    <state>/pod-log-archive."""
    layout = node.load_or_create_layout(plane_mod.load_or_create_layout(node_plane.state_dir, real_node=True))
    with PodLogArchive(layout.pod_logs, node_plane.state_dir / "pod-log-archive") as archive:
        yield archive


@pytest.fixture(scope="session")
def kube(node_plane) -> Client:
    return Client(KubeConfig.from_file(str(node_plane.kubeconfig)), field_manager="kubedruid-tests")


@pytest.fixture(scope="session")
def operator(node_plane, tmp_path_factory):
    # On the host, where kube-proxy forwards Service addresses: the check of each Druid through them can be made.
    running = OperatorProcess(node_plane, tmp_path_factory.mktemp("operator") / "operator.log",
                              extra_args=("--druid-health-check",))
    running.start()
    yield running
    running.stop()


REPORT: dict = {}  # figures the tier measured, printed at the end (and written to KUBEDRUID_NODE_REPORT)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not REPORT:
        return
    tr = terminalreporter
    tr.section(f"real node: Druid {NODE_DRUID_VERSION} on real pods")
    for key, value in REPORT.items():
        if key == "ops":
            for op, f in value.items():
                tr.write_line(f"  {op:14s} {f['phase']:10s} wall {f['wall_s']:6.1f} s  queries {f['queries_sent']:4d} "
                              f"failed {f['queries_failed']:4d}  longest gap {f['longest_gap_s']:5.1f} s  slowest "
                              f"{f.get('slowest_answer_s', 0):4.1f} s ({f.get('answers_over_2s', 0)} over 2 s)  "
                              f"rolls {sorted(set(f['rolls'].values()))} of {f['pods']} pods  errors {f['errors']}  "
                              f"peer errors {len(f['peer_errors'])} (leader-client refusals on a closed port "
                              f"{f.get('leader_client_refusals', 0)})  forwarding waits {f.get('forwarding_waits', 0)}")
                for kind, samples in f["error_samples"].items():  # seconds into the op: see its away_s
                    tr.write_line(f"      {kind}: {samples}")
        elif isinstance(value, dict):
            for k, v in value.items():
                tr.write_line(f"  {key} {k}: {v}")
        else:
            tr.write_line(f"  {key}: {value}")
    out = os.environ.get("KUBEDRUID_NODE_REPORT")
    if out:
        Path(out).write_text(json.dumps(REPORT, indent=2))
