"""Starts, checks and stops the local control plane: plain processes on loopback, state and logs in one directory.

`up` is idempotent: a component that already runs with the expected command line and answers its health check is
left alone; one that is missing, dead or started with another command line is (re)started.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import binaries as binaries_mod
from kubedruid.certs import pki

from . import kwok_stages
from .layout import (
    CERT_MANAGER_NAMESPACE,
    COMPONENTS,
    KWOK_NODE_ANNOTATION,
    KWOK_NODE_COUNT,
    Binaries,
    PlaneLayout,
    Ports,
    command,
    health_url,
    kubeconfig_yaml,
)

START_TIMEOUT_S = {"kube-apiserver": 90.0, "etcd": 30.0}
DEFAULT_START_TIMEOUT_S = 60.0


class ComponentError(RuntimeError):
    """A component did not start; the message names it and points at its log."""

    def __init__(self, component: str, log: Path, why: str):
        tail = ""
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()[-15:]
            tail = "\n  | " + "\n  | ".join(lines) if lines else ""
        super().__init__(f"{component} did not start: {why}. Log: {log}{tail}")
        self.component, self.log = component, log


@dataclass
class ComponentStatus:
    name: str
    pid: int | None
    healthy: bool


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# Below the kernel's ephemeral range, so that no outgoing connection holds one of our ports when its component
# starts; from the first port unprivileged software seldom claims.
LOWEST_PORT = 10000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count: int, avoid: Iterable[int] = ()) -> list[int]:
    """`count` distinct loopback ports free now, none in `avoid`, all outside the ephemeral range. Ports asked of
    the kernel one by one (bind to 0, release) may repeat, and an ephemeral port may be taken by a connection
    before its component binds it: both gave a plane whose cert-manager health port was etcd's."""
    try:
        first, last = (int(n) for n in EPHEMERAL_RANGE.read_text().split()[:2])
    except (OSError, ValueError):
        first, last = 32768, 60999  # Linux's default
    candidates = [p for p in range(LOWEST_PORT, 65536) if not first <= p <= last]
    random.shuffle(candidates)  # two planes made at once rarely pick the same
    taken, chosen = set(avoid), []
    for port in candidates:
        if port not in taken and _bindable(port):
            chosen.append(port)
            taken.add(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"no {count} free loopback ports from {LOWEST_PORT} outside the ephemeral range {first}-{last}")


def load_or_create_layout(state_dir: Path, pod_ready_delay_ms: int | None = None,
                          real_node: bool = False) -> PlaneLayout:
    state_file = state_dir / "plane.json"
    if state_file.exists():
        data = json.loads(state_file.read_text())
        if missing := [f for f in Ports.__dataclass_fields__ if f not in data["ports"]]:  # a plane from before
            data["ports"] |= dict(zip(missing, free_ports(len(missing), avoid=data["ports"].values())))
            state_file.write_text(json.dumps(data, indent=2))
        layout = PlaneLayout.from_json(state_dir, data)
        if layout.real_node != real_node:
            have, want = ("a real node", "kwok nodes") if layout.real_node else ("kwok nodes", "a real node")
            raise RuntimeError(f"{state_dir} holds a plane with {have}; for {want} use another --dir "
                               f"(or `kubedruid dev down --dir {state_dir}` and remove it)")
        if pod_ready_delay_ms is None or pod_ready_delay_ms == layout.pod_ready_delay_ms:
            return layout
        layout = PlaneLayout(state_dir, layout.ports, pod_ready_delay_ms, real_node)
    else:
        ports = Ports(*free_ports(len(Ports.__dataclass_fields__)))
        layout = PlaneLayout(state_dir, ports, 1000 if pod_ready_delay_ms is None else pod_ready_delay_ms,
                             real_node)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(layout.to_json(), indent=2))
    return layout


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_pki(layout: PlaneLayout) -> None:
    d = layout.pki
    if not (d / "ca.crt").exists():
        made = pki.make_plane_pki(layout.first_service_ip)
        for name, pair in (("ca", made.ca), ("apiserver", made.apiserver), ("admin", made.admin)):
            (d / f"{name}.crt").parent.mkdir(parents=True, exist_ok=True)
            (d / f"{name}.crt").write_bytes(pair.cert_pem)
            _write_private(d / f"{name}.key", pair.key_pem)
        _write_private(d / "sa.key", made.service_account_key_pem)
        (d / "sa.pub").write_bytes(made.service_account_pub_pem)
    kubeconfig = kubeconfig_yaml(
        layout.apiserver_url, (d / "ca.crt").read_bytes(), (d / "admin.crt").read_bytes(),
        (d / "admin.key").read_bytes(),
    )
    _write_private(layout.kubeconfig, yaml.safe_dump(kubeconfig).encode())


def _read_pid(layout: PlaneLayout, component: str) -> int | None:
    try:
        return int(layout.pid_file(component).read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:  # a zombie has an empty command line
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _running_pid(layout: PlaneLayout, component: str) -> int | None:
    """The component's PID if that process is alive and is one of ours (guards against PID reuse)."""
    pid = _read_pid(layout, component)
    if pid is None:
        return None
    argv = _cmdline(pid)
    if argv and str(layout.state_dir) in " ".join(argv):
        return pid
    return None


def _healthy(layout: PlaneLayout, component: str) -> bool:
    url = health_url(component, layout)
    ctx = None
    if url.startswith("https://"):
        if component == "kube-apiserver":
            ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
            ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
        else:  # controller-manager and scheduler serve a self-signed loopback certificate
            ctx = ssl._create_unverified_context()  # noqa: S323
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            body = resp.read().decode(errors="replace")
            return resp.status == 200 and (component != "etcd" or '"health":"true"' in body)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _start(layout: PlaneLayout, component: str, argv: list[str], env: dict | None = None) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.run.mkdir(parents=True, exist_ok=True)
    log = open(layout.log_file(component), "ab")
    log.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
    log.flush()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=layout.state_dir, env=env)
    log.close()
    layout.pid_file(component).write_text(str(proc.pid))
    return proc.pid


def _wait_healthy(layout: PlaneLayout, component: str, pid: int, check=None, timeout: float | None = None) -> None:
    """`check` is the component's health check (default: its health URL in the plane's layout)."""
    check = check or (lambda: _healthy(layout, component))
    deadline = time.monotonic() + (timeout or START_TIMEOUT_S.get(component, DEFAULT_START_TIMEOUT_S))
    while time.monotonic() < deadline:
        if check():
            return
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = (0, 0) if _cmdline(pid) else (pid, -1)
        if done:
            raise ComponentError(component, layout.log_file(component), f"it exited (status {status})")
        time.sleep(0.2)
    raise ComponentError(component, layout.log_file(component), "no healthy answer in time")


def kubectl(layout: PlaneLayout, bins: Binaries, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run([str(bins.kubectl()), f"--kubeconfig={layout.kubeconfig}", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def kwok_node(i: int) -> dict:
    """A kwok node (kwok gives it 1k CPUs, 1 TiB of memory and 1M pods)."""
    name = f"kwok-node-{i}"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok",
                                "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
        "spec": {},
    }


def _bootstrap_cluster_objects(layout: PlaneLayout, bins: Binaries, kwok_dir: Path, cm_dir: Path) -> None:
    """Nodes, the default StorageClass, cert-manager's namespace and CRDs: everything that must exist before the
    controllers that use them start."""
    docs = [] if layout.real_node else [kwok_node(i) for i in range(KWOK_NODE_COUNT)]
    if not layout.real_node:  # the real node applies its own StorageClass (node_layout.STORAGE_CLASS)
        docs.append(yaml.safe_load((kwok_dir / kwok_stages.STORAGE_CLASS_FILE).read_text()))
    docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CERT_MANAGER_NAMESPACE}})
    crd_files = sorted((cm_dir / "deploy" / "crds").glob("*.yaml"))
    manifests = yaml.safe_dump_all(docs) + "".join("---\n" + f.read_text() for f in crd_files)
    kubectl(layout, bins, "apply", "--server-side", "--force-conflicts", "--field-manager=kubedruid-dev", "-f", "-",
            stdin=manifests)
    crd_names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in crd_files]
    kubectl(layout, bins, "wait", "--for=condition=Established", "--timeout=60s",
            *(f"crd/{n}" for n in crd_names))


def up(state_dir: Path, pod_ready_delay_ms: int | None = None, extra_setup=None, real_node: bool = False,
       druid_versions: list[str] | None = None) -> PlaneLayout:
    """`real_node`: one real kubelet (node.py) instead of kwok; `druid_versions`: the Druid images it gets (default:
    every version whose jars are cached). A new plane that fails to come up is taken down again (a half-started
    real node holds host networking); an existing one is left as it is, for `up` again or `down`."""
    fresh = not (state_dir / "plane.json").exists()
    try:
        return _up(state_dir, pod_ready_delay_ms, extra_setup, real_node, druid_versions)
    except BaseException:
        if fresh and (state_dir / "plane.json").exists():
            _say(f"the new plane in {state_dir} did not come up: taking it down")
            down(state_dir)
        raise


def _up(state_dir: Path, pod_ready_delay_ms: int | None, extra_setup, real_node: bool,
        druid_versions: list[str] | None) -> PlaneLayout:
    started = time.monotonic()
    layout = load_or_create_layout(state_dir, pod_ready_delay_ms, real_node)
    bins = binaries_mod.plane_binaries(layout.real_node)
    kwok_dir = binaries_mod.module_dir("kwok", "sigs.k8s.io/kwok")
    cm_dir = binaries_mod.module_dir("cert-manager", "github.com/cert-manager/cert-manager")
    ensure_pki(layout)
    layout.kwok_config.write_text(kwok_stages.read_stage_config(kwok_dir, layout.pod_ready_delay_ms))
    if layout.real_node:
        from . import node

        node.prepare(layout)  # identities the apiserver's flags name

    for component in layout.components:
        argv = command(component, layout, bins)
        pid = _running_pid(layout, component)
        if pid is not None and _cmdline(pid) != argv:
            _say(f"{component}: command line changed, restarting")
            _stop(layout, component)
            pid = None
        if pid is not None and _healthy(layout, component):
            continue
        if pid is None:
            t0 = time.monotonic()
            pid = _start(layout, component, argv)
            _wait_healthy(layout, component, pid)
            _say(f"{component}: started in {time.monotonic() - t0:.1f} s (log {layout.log_file(component)})")
        else:
            _wait_healthy(layout, component, pid)
        if component == "kube-apiserver":
            _bootstrap_cluster_objects(layout, bins, kwok_dir, cm_dir)

    if layout.real_node:
        node.up(layout, lambda *args, stdin=None: kubectl(layout, bins, *args, stdin=stdin), druid_versions)
    kubectl(layout, bins, "wait", "--for=condition=Ready", "--timeout=60s", "node", "--all")
    if extra_setup is not None:
        extra_setup(layout, bins)
    _say(f"control plane up in {time.monotonic() - started:.1f} s (state and logs in {layout.state_dir})")
    return layout


def _stop(layout: PlaneLayout, component: str, grace_s: float = 15.0) -> None:
    pid = _running_pid(layout, component)
    if pid is not None:
        _terminate([pid], grace_s)
    layout.pid_file(component).unlink(missing_ok=True)


def _signal(pid: int, sig: int) -> None:
    """The process group when the process leads one (components we started), else the process alone."""
    try:
        os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(pids: list[int], grace_s: float) -> None:
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_cmdline(p) for p in pids):
        for p in pids:  # reap our own children so that they do not linger as zombies
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.1)
    for pid in pids:
        if _cmdline(pid):
            _signal(pid, signal.SIGKILL)


def plane_processes(state_dir: Path) -> list[int]:
    """Every live process whose command line names this plane's state directory (what `down` must leave none of)."""
    marker, found = str(state_dir), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = _cmdline(int(entry.name))
            if argv and any(marker in a for a in argv[1:]):
                found.append(int(entry.name))
    return found


def down(state_dir: Path) -> list[str]:
    """Stops every component (reverse start order), then any stray process of this plane. Returns what it stopped."""
    state_file = state_dir / "plane.json"
    stopped = []
    if state_file.exists():
        data = json.loads(state_file.read_text())
        if missing := [f for f in Ports.__dataclass_fields__ if f not in data["ports"]]:  # a plane from before
            data["ports"] |= dict(zip(missing, free_ports(len(missing), avoid=data["ports"].values())))
            state_file.write_text(json.dumps(data, indent=2))
        layout = PlaneLayout.from_json(state_dir, data)
        if layout.real_node:
            from . import node

            stopped += node.down(layout)
        for component in reversed(layout.components):
            if _running_pid(layout, component) is not None:
                stopped.append(component)
            _stop(layout, component)
    strays = plane_processes(state_dir)  # e.g. an operator started with this plane's kubeconfig
    if strays:
        _terminate(strays, 15.0)
    return stopped


def stop_component(state_dir: Path, component: str) -> None:
    """Stops one component of a running plane (the fault suite's injected outage); `up` starts it again."""
    layout = PlaneLayout.from_json(state_dir, json.loads((state_dir / "plane.json").read_text()))
    if component not in layout.components:
        raise ValueError(f"{component} is not a component of this plane ({', '.join(layout.components)})")
    _stop(layout, component)


def status(state_dir: Path) -> list[ComponentStatus]:
    state_file = state_dir / "plane.json"
    if not state_file.exists():
        return [ComponentStatus(c, None, False) for c in COMPONENTS]
    layout = PlaneLayout.from_json(state_dir, json.loads(state_file.read_text()))
    result = []
    for c in layout.components:
        pid = _running_pid(layout, c)
        result.append(ComponentStatus(c, pid, pid is not None and _healthy(layout, c)))
    if layout.real_node:
        from . import node

        result += node.status(layout)
    return result


def exports(layout: PlaneLayout, bins_k8s: Path, extra_path: list[Path] = ()) -> list[str]:
    path = ":".join(str(p) for p in (bins_k8s, *extra_path))
    return [f"export KUBECONFIG={layout.kubeconfig}", f'export PATH="{path}:$PATH"']
