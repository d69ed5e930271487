"""The CLI's connection to a cluster, chosen the way kubectl chooses it: --kubeconfig, else $KUBECONFIG (its first
file), else ~/.kube/config, else the in-cluster service account; --context, else the kubeconfig's current context;
-n/--namespace, else the context's namespace, else "default". lightkube's sync client."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ConfigError

from .output import CliError

FIELD_MANAGER = "kubedruid-cli"
DEFAULT_KUBECONFIG = Path("~/.kube/config")


@dataclass(frozen=True)
class Target:
    """The connection options every cluster command takes."""

    namespace: str | None = None
    context: str | None = None
    kubeconfig: Path | None = None


@dataclass
class Connection:
    client: Client
    namespace: str
    server: str


def _load(kubeconfig: Path | None) -> KubeConfig:
    if kubeconfig is not None:
        return KubeConfig.from_file(kubeconfig)
    env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if env:
        # kubectl merges every file of the list; the first one that exists is what a one-cluster setup needs.
        existing = [p for p in env if Path(p).expanduser().is_file()]
        return KubeConfig.from_file(existing[0] if existing else env[0])
    if DEFAULT_KUBECONFIG.expanduser().is_file():
        return KubeConfig.from_file(DEFAULT_KUBECONFIG)
    return KubeConfig.from_env()  # in-cluster, or a ConfigError naming what is missing


def connect(target: Target) -> Connection:
    """A client for `target`; a kubeconfig or context that does not exist is a bad input (exit code 2)."""
    try:
        config = _load(target.kubeconfig).get(target.context)
    except ConfigError as e:
        raise CliError(f"kubeconfig: {e}", code=2) from None
    client = Client(config, namespace=target.namespace or config.namespace, field_manager=FIELD_MANAGER)
    return Connection(client=client, namespace=target.namespace or config.namespace, server=config.cluster.server)
