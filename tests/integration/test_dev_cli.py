"""`kubedruid dev up|status|down` as a person uses them, on a second plane of their own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kubedruid.devcluster.layout import COMPONENTS
from kubedruid.devcluster.plane import plane_processes

pytestmark = pytest.mark.integration

KUBEDRUID = str(Path(sys.executable).parent / "kubedruid")


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([KUBEDRUID, *args], capture_output=True, text=True, timeout=900, **kw)


def _pids(state_dir: Path) -> dict[str, int]:
    return {c: int((state_dir / "run" / f"{c}.pid").read_text()) for c in COMPONENTS}


def test_up_is_evalable_idempotent_and_down_leaves_nothing(tmp_path):
    state_dir = tmp_path / "plane"
    try:
        up = _run("dev", "up", "--dir", str(state_dir))
        assert up.returncode == 0, up.stderr
        last_lines = up.stdout.strip().splitlines()[-2:]
        assert last_lines[0].startswith("export KUBECONFIG=") and last_lines[1].startswith("export PATH=")

        # eval "$(kubedruid dev up)" gives a shell whose kubectl is the built one and talks to this plane.
        shell = subprocess.run(["bash", "-c", f'eval "{up.stdout}"; command -v kubectl; kubectl get nodes -o name'],
                               capture_output=True, text=True, env={**os.environ, "PATH": "/usr/bin:/bin"})
        assert shell.returncode == 0, shell.stderr
        assert str(Path.home() / ".cache" / "kubedruid" / "bin") in shell.stdout.splitlines()[0] or \
            "kubedruid" in shell.stdout.splitlines()[0]
        assert shell.stdout.count("node/kwok-node-") >= 3

        status = _run("dev", "status", "--dir", str(state_dir))
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("healthy") == len(COMPONENTS)

        before = _pids(state_dir)
        again = _run("dev", "up", "--dir", str(state_dir))
        assert again.returncode == 0, again.stderr
        assert _pids(state_dir) == before, "a second `dev up` must not restart a healthy plane"

        down = _run("dev", "down", "--dir", str(state_dir))
        assert down.returncode == 0, down.stderr
        assert plane_processes(state_dir) == []
        stopped = _run("dev", "status", "--dir", str(state_dir))
        assert stopped.returncode == 1
        assert "stopped" in stopped.stdout

        # The plane comes back with its state (same CA, same ports) after a down.
        up2 = _run("dev", "up", "--dir", str(state_dir))
        assert up2.returncode == 0, up2.stderr
        assert _run("dev", "status", "--dir", str(state_dir)).returncode == 0
    finally:
        _run("dev", "down", "--dir", str(state_dir))
    assert plane_processes(state_dir) == []


def test_a_component_that_cannot_start_is_named_with_its_log(tmp_path):
    state_dir = tmp_path / "broken"
    state_dir.mkdir()
    # Occupy the apiserver's port before the plane starts.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    ports = {name: _free() for name in ("etcd_client", "etcd_peer", "controller_manager", "scheduler", "kwok",
                                         "cert_manager_healthz")}
    ports["apiserver"] = blocker.getsockname()[1]
    (state_dir / "plane.json").write_text(json.dumps({"ports": ports}))
    try:
        up = _run("dev", "up", "--dir", str(state_dir))
        assert up.returncode == 1
        message = " ".join(up.stderr.split())
        assert "kube-apiserver did not start" in message
        assert str(state_dir / "logs" / "kube-apiserver.log") in message
    finally:
        blocker.close()
        _run("dev", "down", "--dir", str(state_dir))
    assert plane_processes(state_dir) == []


def test_a_new_plane_that_fails_to_come_up_is_taken_down(tmp_path):
    """A failure late in `up` (here the set-up after the components started) must not leave a new plane's
    processes running: nothing would take them down, and they hold their ports."""
    from kubedruid.devcluster import plane as plane_mod

    state_dir = tmp_path / "new"

    def failing_setup(layout, bins):
        assert plane_processes(state_dir)  # the components had started
        raise RuntimeError("set-up failed")

    with pytest.raises(RuntimeError, match="set-up failed"):
        plane_mod.up(state_dir, extra_setup=failing_setup)
    assert plane_processes(state_dir) == []


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
