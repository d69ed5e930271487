"""Benchmark: add TLS to a 6-node Druid (one pod per node type) on the local control plane, with a fixed kwok pod
start delay, and compare the op's wall time with the work it cannot avoid: issuing the certificates and restarting
each pod until it is Ready again, in each of the plan's three rolls. Prints figures; asserts nothing.

    .venv/bin/python -m tests.bench.bench_add_tls [--pod-delay 2s] [--dir STATE_DIR]

Targets (DESIGN §4, issue 10): per roll, roll wall ÷ Σ pod restart-to-Ready ≤ 1.10; for the op,
total ÷ (certificate issue time + Σ restart-to-Ready over every roll) ≤ 1.10.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lightkube import Client, KubeConfig, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Namespace, Pod, ServiceAccount

from kubedruid.devcluster import plane
from kubedruid.devcluster.install import install_kubedruid
from tests.integration.helpers import Certificate, Druid, ca_issuer, deep_storage_secret, druid_manifest
from tests.integration.test_ops import Ops

TARGET = 1.10
ROLES = ("coordinators", "overlords", "brokers", "routers", "historicals", "middleManagers")


def _ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


class Recorder:
    """Watches pods and Certificates of one namespace and stamps what happens with the local monotonic clock."""

    def __init__(self, kubeconfig: str, namespace: str):
        self.kubeconfig, self.namespace = kubeconfig, namespace
        # pod name -> one (evicted, replacement Ready) pair per restart, in order: the n-th is the pod's n-th roll
        self.restarts: dict[str, list[list[float | None]]] = {}
        self.cert_created: dict[str, float] = {}
        self.cert_ready: dict[str, float] = {}
        self.uids: dict[str, str] = {}
        self.armed = False

    def start(self) -> None:
        threading.Thread(target=self._pods, daemon=True).start()
        threading.Thread(target=self._certs, daemon=True).start()

    def _client(self) -> Client:
        return Client(KubeConfig.from_file(self.kubeconfig))

    def _pods(self) -> None:
        for kind, pod in self._client().watch(Pod, namespace=self.namespace):
            now, name = time.monotonic(), pod.metadata.name
            if not self.armed:
                self.uids[name] = pod.metadata.uid
                continue
            runs = self.restarts.setdefault(name, [])
            if pod.metadata.uid == self.uids.get(name):
                if (pod.metadata.deletionTimestamp or kind == "DELETED") and (not runs or runs[-1][1] is not None):
                    runs.append([now, None])
            elif _ready(pod) and runs and runs[-1][1] is None:
                runs[-1][1] = now
                self.uids[name] = pod.metadata.uid

    def _certs(self) -> None:
        for _, cert in self._client().watch(Certificate, namespace=self.namespace):
            now, name = time.monotonic(), cert.metadata.name
            self.cert_created.setdefault(name, now)
            ready = [c for c in (cert.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
            if ready and ready[0]["status"] == "True" and name not in self.cert_ready:
                self.cert_ready[name] = now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pod-delay", default="2s", help="kwok delay before a new pod is Ready")
    parser.add_argument("--dir", help="state directory of a plane to reuse (default: a fresh one)")
    args = parser.parse_args()

    state = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kubedruid-bench-")) / "plane"
    layout = plane.up(state.resolve(), extra_setup=install_kubedruid)
    kubeconfig = str(layout.kubeconfig)
    log = open(state / "bench-operator.log", "wb")
    operator = subprocess.Popen([str(Path(sys.executable).parent / "kubedruid"), "operator", "run",
                                 "--webhook-port", "0", "--probe-port", "0"], env={**os.environ, "KUBECONFIG": kubeconfig},
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        run(kubeconfig, args.pod_delay)
    finally:
        operator.terminate()
        operator.wait(timeout=15)
        if not args.dir:
            plane.down(state.resolve())


def run(kubeconfig: str, pod_delay: str) -> None:
    kube = Client(KubeConfig.from_file(kubeconfig), field_manager="kubedruid-bench")
    ns = f"bench-{secrets.token_hex(3)}"
    kube.create(Namespace(metadata=ObjectMeta(name=ns)))
    _wait(lambda: kube.get(ServiceAccount, "default", namespace=ns), 30, "the default ServiceAccount")
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, ns)
    manifest = druid_manifest("bench", ns)
    annotations = {"metadata": {"annotations": {"kubedruid.dev/kwok-ready-delay": pod_delay}}}
    manifest["spec"]["topology"] = {role: {"replicas": 1, "podTemplate": annotations} for role in ROLES}
    kube.create(codecs.from_dict(manifest))
    _wait(lambda: (kube.get(Druid, "bench", namespace=ns).get("status") or {}).get("phase") == "Ready", 120,
          "the Druid to be Ready")

    recorder = Recorder(kubeconfig, ns)
    recorder.start()
    _wait(lambda: len(recorder.uids) >= 6 + 2, 30, "the pod watch")  # 6 Druid pods + ZooKeeper + MySQL
    recorder.armed = True

    started = time.monotonic()
    kube.create(codecs.from_dict({
        "apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
        "metadata": {"name": "add-tls", "namespace": ns},
        "spec": {"type": "ReconfigureTLS", "databaseRef": {"name": "bench"}, "apply": "IfReady",
                 "tls": {"issuerRef": {"name": "druid-ca-issuer", "kind": "Issuer", "apiGroup": "cert-manager.io"}}}}))
    phase = lambda: (kube.get(Ops, "add-tls", namespace=ns).get("status") or {}).get("phase")  # noqa: E731
    _wait(lambda: phase() in ("Successful", "Failed"), 900, "the op to finish")
    total = time.monotonic() - started
    if phase() != "Successful":
        raise SystemExit(f"the op failed: {kube.get(Ops, 'add-tls', namespace=ns)['status']}")

    cert_time = max(recorder.cert_ready.values()) - min(recorder.cert_created.values())
    done = {p: [r for r in runs if r[1] is not None] for p, runs in recorder.restarts.items() if runs}
    rolls = max(len(runs) for runs in done.values())
    print(f"add-TLS on a 6-node Druid, kwok pod start delay {pod_delay}")
    print(f"  total op time (create -> Successful):  {total:6.2f} s")
    print(f"  certificate issue time (2 certs):       {cert_time:6.2f} s")
    work = cert_time
    for k in range(rolls):
        roll = {p: runs[k] for p, runs in done.items() if len(runs) > k}
        wall = max(r[1] for r in roll.values()) - min(r[0] for r in roll.values())
        busy = sum(r[1] - r[0] for r in roll.values())
        work += busy
        print(f"  roll {k + 1}: {len(roll)} pods, wall {wall:6.2f} s, Σ restart-to-Ready {busy:6.2f} s, ratio "
              f"{wall / busy:5.3f} ({wall / busy / TARGET:.2f} x the limit {TARGET})")
    print(f"  ratio total / (certs + Σ restarts of {rolls} rolls): {total / work:6.3f}  (target ≤ {TARGET}: "
          f"{total / work / TARGET:.2f} x the limit)")
    print("  timeline of the op's events (s after the first):")
    events = sorted((e for e in kube.list(Event, namespace=ns) if e.involvedObject.name == "add-tls"),
                    key=lambda e: e.eventTime)
    for e in events:
        print(f"    {(e.eventTime - events[0].eventTime).total_seconds():6.2f}  {e.message}")
    kube.delete(Namespace, ns)


if __name__ == "__main__":
    main()
