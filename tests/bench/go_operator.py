"""The Go operator issue 13 compares kubedruid with: datainfrahq/druid-operator (controller-runtime), run beside
kubedruid on the bench's plane with as many Druids of its own.

It is not built here: the Go module proxy does not serve it (`go mod download` answers 403 at every version), and none
of its code may enter this repository or a build of it. Whoever has a checkout of its repository builds it there
with `go build -o druid-operator .` (its dependencies come from the Go module proxy) and passes the checkout to
`bench_scale --go-operator DIR`; the bench applies its CRDs from that checkout and starts the
binary as a user would, with its defaults (every Druid reconciled again each RECONCILE_WAIT, 10 s; one reconcile at
a time, MAX_CONCURRENT_RECONCILES 1) unless the bench's environment sets those variables.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.integration.conftest import free_port, stop_process

REPOSITORY = "github.com/datainfrahq/druid-operator"
API_VERSION = "druid.apache.org/v1alpha1"
BINARY = "druid-operator"  # what `go build -o druid-operator .` leaves in the checkout
CRDS = ("config/crd/bases/druid.apache.org_druids.yaml", "config/crd/bases/druid.apache.org_druidingestions.yaml")

# The bench's kubedruid Druid has these node types, one replica each, data nodes without claims: the Go operator's
# Druids get the same (its key -> Druid's nodeType and the config directory its image layout expects).
NODES = {
    "coordinators": ("coordinator", "master/coordinator-overlord"),
    "brokers": ("broker", "query/broker"),
    "historicals": ("historical", "data/historical"),
    "middlemanagers": ("middleManager", "data/middleManager"),
    "routers": ("router", "query/router"),
}


def druid_manifest(name: str, namespace: str) -> dict:
    """A Druid of the Go operator's API as its own example (`examples/tiny-cluster.yaml`) has it, with the bench's
    five node types; its ZooKeeper and metadata storage are named, not run (on kwok nothing runs)."""
    nodes = {
        key: {"nodeType": node_type, "druid.port": 8088, "replicas": 1,
              "nodeConfigMountPath": f"/opt/druid/conf/druid/cluster/{path}",
              "runtime.properties": f"druid.service=druid/{node_type.lower()}\n"}
        for key, (node_type, path) in NODES.items()}
    return {
        "apiVersion": API_VERSION, "kind": "Druid",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "apache/druid:28.0.1",
            "startScript": "/druid.sh",
            "commonConfigMountPath": "/opt/druid/conf/druid/cluster/_common",
            "common.runtime.properties": (f"druid.zk.service.host={name}-zk.{namespace}.svc\n"
                                          "druid.metadata.storage.type=derby\n"
                                          "druid.storage.type=local\n"),
            "jvm.options": "-server\n-Duser.timezone=UTC\n",
            "nodes": nodes,
        },
    }


def statefulset_name(druid: str, node: str) -> str:
    """How the Go operator names a node type's StatefulSet (and its Service, ConfigMap)."""
    return f"druid-{druid}-{node}"


def is_ready(druid: dict) -> bool:
    """The Go operator's own word that every node of a Druid is deployed and its pods Ready."""
    status = (druid.get("status") or {}).get("druidNodeStatus") or {}
    return status.get("druidNodeConditionType") == "DruidClusterReady"


SETTINGS = {"RECONCILE_WAIT": "10s", "MAX_CONCURRENT_RECONCILES": "1"}  # its environment variables, its defaults


def settings() -> str:
    """The settings it runs with: the bench's environment, which it inherits, or its defaults."""
    return ", ".join(f"{k}={os.environ.get(k, default)}" for k, default in SETTINGS.items())


@dataclass
class GoOperator:
    checkout: Path
    kubeconfig: Path
    log: Path
    proc: subprocess.Popen | None = None
    metrics_port: int = 0

    def __post_init__(self) -> None:
        missing = [p for p in (BINARY, *CRDS) if not (self.checkout / p).is_file()]
        if missing:
            raise SystemExit(f"--go-operator {self.checkout}: no {', '.join(missing)} (a checkout of {REPOSITORY} "
                             f"with `go build -o {BINARY} .` run in it)")

    def crds(self) -> list[dict]:
        return [yaml.safe_load((self.checkout / path).read_text()) for path in CRDS]

    def start(self) -> None:
        self.metrics_port = free_port()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.checkout / BINARY), f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
                 f"--health-probe-bind-address=127.0.0.1:{free_port()}"],
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig)}, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def requests(self) -> float:
        """Requests its clients sent to the apiserver so far (client-go's own counter on its metrics endpoint)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("rest_client_requests_total{"))
