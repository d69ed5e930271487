"""`make demo`'s script runs unattended to the end on a plane of its own, as on a fresh machine (binaries cached)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubedruid.devcluster.plane import plane_processes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_unattended_to_the_end(tmp_path):
    state = tmp_path / "demo-plane"
    env = {**os.environ, "KUBEDRUID_DEV_DIR": str(state), "KUBEDRUID_DEMO_NODE": "kwok"}  # tests/node: the real one
    env.pop("KUBECONFIG", None)
    try:
        run = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        out = run.stdout
        assert "druid-cluster   36.0.0    Ready" in out.replace("druid.kubedb.com/", "")
        assert "Successful   Successful" in out  # the live progress reached the end
        assert "issuer=CN = ca, O = kubedb" in out
        assert "druid.enableTlsPort=true" in out
        assert "Try next:" in out
    finally:
        subprocess.run([str(Path(sys.executable).parent / "kubedruid"), "dev", "down", "--dir", str(state)],
                       capture_output=True, timeout=120)
    assert plane_processes(state) == [], "demo-down leaves the operator and the plane stopped"
