"""Finds (building on first use) the control plane's binaries and the Go modules whose data files the plane reads."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .layout import Binaries


class BuildError(RuntimeError):
    pass


def tools_dir() -> Path:
    if env := os.environ.get("KUBEDRUID_TOOLS_DIR"):
        return Path(env)
    # src/kubedruid/devcluster/binaries.py -> repository root
    return Path(__file__).resolve().parents[3] / "tools"


def _go_env() -> dict:
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}


def build(*sets: str) -> list[Path]:
    """Runs tools/build.sh for the given sets; returns their cache directories (built only when missing)."""
    script = tools_dir() / "build.sh"
    proc = subprocess.run([str(script), *sets], stdout=subprocess.PIPE, stderr=None, text=True, env=_go_env())
    if proc.returncode != 0:
        raise BuildError(f"building {' '.join(sets) or 'the control plane'} failed (exit {proc.returncode}); "
                         f"see the output above, or run {script} by hand")
    return [Path(line) for line in proc.stdout.split()]


def plane_binaries(real_node: bool = False) -> Binaries:
    """A plane with a real node runs no kwok: it neither builds nor waits for kwok's build (make test builds kwok
    beside the real-node tier)."""
    sets = ("k8s", "etcd", "cert-manager") if real_node else ("k8s", "etcd", "kwok", "cert-manager")
    built = dict(zip(sets, build(*sets)))
    return Binaries(k8s=built["k8s"], etcd=built["etcd"], kwok=built.get("kwok"), cert_manager=built["cert-manager"])


def module_dir(tool_set: str, module: str) -> Path:
    """The module-cache directory of `module` at the version tools/<tool_set>/go.mod pins (downloaded if absent)."""
    cwd = tools_dir() / tool_set
    env = _go_env()
    version = subprocess.run(["go", "list", "-m", "-f", "{{.Version}}", module], cwd=cwd, env=env,
                             check=True, capture_output=True, text=True).stdout.strip()
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd=cwd, env=env,
                         check=True, capture_output=True, text=True).stdout
    return Path(json.loads(out)["Dir"])


def module_version(tool_set: str, module: str) -> str:
    return module_dir(tool_set, module).name.rsplit("@", 1)[1]
