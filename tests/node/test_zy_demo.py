"""`make demo`'s script on a machine that can run a real node: it chooses the real node by itself, runs KubeDB's
guide Druid on real pods, adds TLS and ends with an SQL answer over HTTPS through the router Service. It runs on the
tier's plane (`dev up --real-node` is idempotent), after the guide's story, which it replaces in namespace demo."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_ends_with_sql_over_https_on_the_real_node(node_plane, operator):
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBEDRUID_DEMO_NODE")}
    env["KUBEDRUID_DEV_DIR"] = str(node_plane.state_dir)
    try:
        run = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1500)
    finally:  # the demo's own operator (a follower while the tier's holds the lease) must not outlive the test
        subprocess.run(["pkill", "-f", f"kubedruid operator run --kubeconfig {node_plane.kubeconfig}"],
                       capture_output=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    out = run.stdout
    assert "with one real node" in out and "simulated" not in run.stderr
    assert "Successful   Successful" in out  # the live progress reached the op's end
    # sys.servers through the router over HTTPS: every node type announced with its TLS port.
    answer = out.split("SQL over HTTPS through the router Service", 1)[1]
    for server_type in ("coordinator", "broker", "historical", "router"):
        assert f'"server_type":"{server_type}"' in answer, answer[:2000]
    assert '"tls_port":-1' not in answer
