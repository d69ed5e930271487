"""Integration fixtures: one real local control plane per test session, a fresh namespace per test."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from kubedruid.devcluster import plane as plane_mod
from kubedruid.devcluster.binaries import plane_binaries
from kubedruid.devcluster.install import install_kubedruid


@dataclass
class Plane:
    state_dir: Path
    kubeconfig: Path
    kubectl_bin: Path

    def client(self) -> Client:
        return Client(KubeConfig.from_file(str(self.kubeconfig)), field_manager="kubedruid-tests")

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args], input=stdin,
                              capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc


@pytest.fixture(scope="session")
def plane(tmp_path_factory) -> Plane:
    """The session's control plane. KUBEDRUID_TEST_DEV_DIR reuses (and leaves running) a plane in that directory."""
    reuse = os.environ.get("KUBEDRUID_TEST_DEV_DIR")
    state_dir = Path(reuse) if reuse else tmp_path_factory.mktemp("plane", numbered=True)
    layout = plane_mod.up(state_dir.resolve(), extra_setup=install_kubedruid)
    yield Plane(layout.state_dir, layout.kubeconfig, plane_binaries().kubectl())
    if not reuse:
        plane_mod.down(layout.state_dir)


@pytest.fixture(scope="session")
def kube(plane) -> Client:
    return plane.client()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Polls `predicate` until it returns a truthy value; returns that value or fails the test naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except ApiError as e:  # not there yet
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


@pytest.fixture
def namespace(kube) -> str:
    name = f"t-{secrets.token_hex(4)}"
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    # Pods need the namespace's default ServiceAccount, which kube-controller-manager creates.
    wait_for(lambda: kube.get(ServiceAccount, "default", namespace=name), what=f"ServiceAccount {name}/default")
    yield name
    kube.delete(Namespace, name)


@dataclass
class OperatorProcess:
    """`kubedruid operator run` as a person starts it; its log is kept for failures."""

    plane: Plane
    log: Path
    proc: subprocess.Popen | None = None
    webhook_port: int = 0
    probe_port: int = 0
    extra_args: tuple[str, ...] = ()

    def start(self) -> None:
        # Ports of its own: other operators (a demo, another test session) may run on this machine.
        self.webhook_port = self.webhook_port or free_port()
        self.probe_port = self.probe_port or free_port()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "kubedruid"), "operator", "run",
                                          "--webhook-port", str(self.webhook_port),
                                          "--probe-port", str(self.probe_port), "--log-format", "json",
                                          *self.extra_args],
                                         env={**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)},
                                         stdout=log, stderr=subprocess.STDOUT)
        self.wait_serving()

    def wait_serving(self) -> None:
        def admission_serving():
            assert self.proc.poll() is None, f"the operator exited; its log:\n{self.log_text()[-3000:]}"
            return webhook_refuses_a_probe(self.plane)

        wait_for(admission_serving, timeout=60, interval=0.5, what="the operator's admission webhook")

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies."""
        self.proc.kill()
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        stop_process(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


WEBHOOK_PROBE = json.dumps({"apiVersion": "kubedb.com/v1alpha2", "kind": "Druid",
                            "metadata": {"name": "webhook-probe", "namespace": "default"},
                            "spec": {"version": "0.0.0-probe", "deepStorage": {"type": "s3"}, "topology": {}}})


def webhook_refuses_a_probe(plane) -> bool:
    """Whether a server-side dry run of a Druid with an unknown version is refused: only the webhook refuses it
    (the CRD cannot know the versions), so the apiserver reached an operator's webhook."""
    refused = plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=WEBHOOK_PROBE, check=False)
    return refused.returncode != 0 and "0.0.0-probe" in refused.stderr


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, as a node drains; SIGKILL after 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def operator(plane, tmp_path_factory):
    # Nothing on a kwok plane follows a Service: one second keeps the ClientsFollowed step in every add and remove
    # without ten seconds of idle wait each. The fault suite (kills inside the step) and the real-node tier (real
    # clients) run the default.
    running = OperatorProcess(plane, tmp_path_factory.mktemp("operator") / "operator.log",
                              extra_args=("--client-switch-grace", "1"))
    running.start()
    yield running
    running.stop()
