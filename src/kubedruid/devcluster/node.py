"""Starts, checks and tears down the real node: host network (bridge, routes, an isolating FORWARD chain),
containerd with locally built images, the kubelet, kube-proxy and CoreDNS, as processes beside the control plane.

Everything `up` changes on the host is undone by `down`: pods' processes (through their cgroups), mounts, network
namespaces, the bridge, routes, iptables chains, cgroups, and the forwarding sysctl as it was found.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubedruid.api.version import druid_version
from kubedruid.certs import pki

from . import binaries as binaries_mod
from . import node_layout as nl
from .layout import PlaneLayout, kubeconfig_yaml

LOCAL_IMAGE_LABEL = "kubedruid.dev/image"
IMAGE_KEY_LABEL = "kubedruid.dev/image-key"
START_TIMEOUT_S = {"containerd": 30.0, "volumes": 30.0, "kubelet": 60.0, "kube-proxy": 30.0, "coredns": 30.0}


class NodeError(RuntimeError):
    """The real node cannot start here; the message says what is missing or what failed."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _run(argv: list[str], *, check: bool = True, timeout: float = 120, env: dict | None = None,
         input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and proc.returncode != 0:
        raise NodeError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def node_binaries() -> nl.NodeBinaries:
    k8s, containerd, coredns = binaries_mod.build("k8s", "containerd", "coredns")
    return nl.NodeBinaries(k8s=k8s, containerd=containerd, coredns=coredns)


def load_or_create_layout(plane: PlaneLayout) -> nl.NodeLayout:
    from .plane import free_ports  # one allocator for every loopback port

    state_file = plane.state_dir / "node.json"
    if state_file.exists():
        return nl.NodeLayout.from_json(plane.state_dir, json.loads(state_file.read_text()))
    ports = free_ports(len(nl.NodePorts.__dataclass_fields__), avoid=dataclasses.astuple(plane.ports))
    layout = nl.NodeLayout(plane.state_dir, nl.NodePorts(*ports))
    state_file.write_text(json.dumps(layout.to_json(), indent=2))
    return layout


# --- prerequisites -----------------------------------------------------------------------------------------------

def missing_prerequisites() -> list[str]:
    """What this machine lacks for a real node, each with the Debian package that brings it."""
    missing = []
    for path, package in ((nl.RUNC, "runc"), (f"{nl.CNI_BIN_DIR}/bridge", "containernetworking-plugins")):
        if not os.access(path, os.X_OK):
            missing.append(f"{path} (apt package {package})")
    if shutil.which("iptables") is None:
        missing.append("iptables (apt package iptables)")
    if shutil.which("nft") is None:
        missing.append("nft (apt package nftables; kube-proxy's nftables mode)")
    if os.geteuid() != 0:
        missing.append("root (the node changes host networking and cgroups)")
    for controller in ("cpu", "cpuacct", "cpuset", "memory"):
        if not _cgroup_hierarchy(controller):
            missing.append(f"a mounted cgroup v1 {controller} hierarchy")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        missing.append("br_netfilter (bridge-nf-call-iptables; Services on the bridge need it)")
    return missing


def _cgroup_hierarchy(controller: str) -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup" and controller in fields[sep + 3].split(","):
            return Path(fields[4])
    return None


# --- host network ------------------------------------------------------------------------------------------------

def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["iptables", "-w", "5", *args], check=check)


def prepare_host(layout: nl.NodeLayout) -> None:
    """Idempotent: bridge with the node IP, forwarding, the isolating chain, host routes."""
    if not layout.host_state.exists():  # remember what we change, once
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.host_state.write_text(json.dumps(
            {"net.ipv4.ip_forward": _sysctl_path("net.ipv4.ip_forward").read_text().strip()}))
    if _run(["ip", "link", "show", nl.BRIDGE], check=False).returncode != 0:
        _run(["ip", "link", "add", nl.BRIDGE, "type", "bridge"])
    # The CNI bridge plugin accepts an identical address and refuses any other.
    _run(["ip", "addr", "replace", f"{nl.BRIDGE_IP}/{nl.BRIDGE_PREFIX}", "dev", nl.BRIDGE])
    _run(["ip", "link", "set", nl.BRIDGE, "up"])
    _sysctl_path("net.bridge.bridge-nf-call-iptables").write_text("1")
    # Before forwarding is on, the chain that keeps pod traffic on the machine must be in place.
    if _iptables("-n", "-L", nl.FORWARD_CHAIN, check=False).returncode != 0:
        _iptables("-N", nl.FORWARD_CHAIN)
    _iptables("-F", nl.FORWARD_CHAIN)
    for rule in nl.isolation_rules():
        _iptables("-A", nl.FORWARD_CHAIN, *rule)
    keep_isolation_first()
    for route in nl.routes():
        _run(["ip", "route", "replace", *route])
    _sysctl_path("net.ipv4.ip_forward").write_text("1")


def keep_isolation_first() -> None:
    """Our jump must be FORWARD's first rule: kube-proxy inserts its own chains at the top when it starts. The new
    jump goes in before the old one is deleted, so no packet passes between the two."""
    rules = _iptables("-S", "FORWARD").stdout.splitlines()[1:]  # [0] is the policy
    jump = f"-A FORWARD -j {nl.FORWARD_CHAIN}"
    if rules and rules[0] == jump:
        return
    _iptables("-I", "FORWARD", "1", "-j", nl.FORWARD_CHAIN)
    for number, rule in reversed(list(enumerate(rules, start=2))):  # rule numbers after the insert
        if rule == jump:
            _iptables("-D", "FORWARD", str(number))


def isolation_checks(layout: nl.NodeLayout) -> list[Check]:
    """Traffic to pod and Service addresses stays on this machine: checked before any pod starts, and by status."""
    checks = []
    for what, address in (("pod range", nl.BRIDGE_IP.rsplit(".", 1)[0] + ".200"), ("Service range", nl.LAST_SERVICE_IP)):
        out = _run(["ip", "route", "get", address], check=False).stdout
        checks.append(Check(f"{what} routed to {nl.BRIDGE}", f"dev {nl.BRIDGE}" in out, out.strip()))
    first = _iptables("-S", "FORWARD", check=False).stdout.splitlines()
    jump = f"-A FORWARD -j {nl.FORWARD_CHAIN}"
    checks.append(Check("forwarding off the bridge rejected", len(first) > 1 and first[1] == jump,
                        first[1] if len(first) > 1 else "FORWARD has no rules"))
    rules = _iptables("-S", nl.FORWARD_CHAIN, check=False).stdout
    checks.append(Check(f"{nl.FORWARD_CHAIN} complete", all(
        " ".join(["-A", nl.FORWARD_CHAIN, *r]) in rules for r in nl.isolation_rules()), rules.strip()))
    corefile = layout.corefile.read_text() if layout.corefile.exists() else ""
    checks.append(Check("cluster DNS never forwards", bool(corefile) and "forward" not in corefile,
                        str(layout.corefile)))
    return checks


def _ours(chain: str) -> bool:
    """Chains of the kubelet, kube-proxy and ours: the only Kubernetes on this machine is the one we started."""
    return chain.startswith(("KUBE-", nl.FORWARD_CHAIN))


def remove_iptables_chains() -> None:
    for table in ("filter", "nat", "mangle"):
        lines = _iptables("-t", table, "-S", check=False).stdout.splitlines()
        for line in lines:  # jumps into our chains first, then the chains themselves
            parts = shlex.split(line)  # comments are quoted: "kubernetes service portals"
            if parts[0] == "-A" and "-j" in parts and _ours(parts[parts.index("-j") + 1]) and not _ours(parts[1]):
                _iptables("-t", table, "-D", *parts[1:], check=False)
        chains = [line.split()[1] for line in lines if line.startswith("-N ") and _ours(line.split()[1])]
        for chain in chains:
            _iptables("-t", table, "-F", chain, check=False)
        for chain in chains:
            _iptables("-t", table, "-X", chain, check=False)


def _restore_host(layout: nl.NodeLayout) -> None:
    remove_iptables_chains()
    for family, table in nl.KUBE_PROXY_NFT_TABLES:
        _run(["nft", "delete", "table", family, table], check=False)
    for route in nl.routes():
        _run(["ip", "route", "del", *route], check=False)
    _run(["ip", "link", "del", nl.BRIDGE], check=False)
    if layout.host_state.exists():
        saved = json.loads(layout.host_state.read_text())
        _sysctl_path("net.ipv4.ip_forward").write_text(saved["net.ipv4.ip_forward"])
        layout.host_state.unlink()


# --- identities and configuration --------------------------------------------------------------------------------

def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_identities(layout: nl.NodeLayout, plane: PlaneLayout) -> None:
    """Client certificates on the plane's CA and a kubeconfig for each node component."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = pki.KeyPair((plane.pki / "ca.crt").read_bytes(), (plane.pki / "ca.key").read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    for stem, (cn, org) in nl.IDENTITIES.items():
        crt, key = layout.pki / f"{stem}.crt", layout.pki / f"{stem}.key"
        if crt.exists() and x509.load_pem_x509_certificate(crt.read_bytes()).issuer == \
                x509.load_pem_x509_certificate(ca.cert_pem).subject:
            continue
        pair = pki.make_leaf(ca, ca_key, pki._name(cn, org), server=False, dns=[], ips=[])
        crt.parent.mkdir(parents=True, exist_ok=True)
        crt.write_bytes(pair.cert_pem)
        _write_private(key, pair.key_pem)
    for stem in ("kubelet", "kube-proxy", "coredns", "volumes"):
        doc = kubeconfig_yaml(plane.apiserver_url, ca.cert_pem, (layout.pki / f"{stem}.crt").read_bytes(),
                              (layout.pki / f"{stem}.key").read_bytes())
        _write_private(layout.kubeconfig(stem), yaml.safe_dump(doc).encode())


def _write_if_changed(path: Path, text: str) -> None:
    """kube-proxy exits when its configuration file is written, even with the same content: an idempotent `up`
    leaves unchanged files alone."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_configs(layout: nl.NodeLayout, plane: PlaneLayout, pause_image: str) -> dict[str, str]:
    """Writes each component's files; returns a digest of each component's files, so that a component started
    with other files is restarted (its digest is kept beside its pid)."""
    digests: dict[str, "hashlib._Hash"] = {}
    for component, path, text in (
        ("containerd", layout.containerd_config, nl.containerd_toml(layout, pause_image)),
        ("containerd", layout.cni_conf_dir / "10-kubedruid.conflist", json.dumps(nl.cni_conflist(layout), indent=2)),
        ("kubelet", layout.kubelet_config, nl.yaml_dump(nl.kubelet_config(layout, plane.pki / "ca.crt"))),
        ("kubelet", layout.resolv_conf, nl.resolv_conf()),
        ("kube-proxy", layout.kube_proxy_config, nl.yaml_dump(nl.kube_proxy_config(layout))),
        ("coredns", layout.corefile, nl.corefile(layout)),
    ):
        _write_if_changed(path, text)
        digests.setdefault(component, hashlib.sha256()).update(text.encode())
    return {c: d.hexdigest()[:16] for c, d in digests.items()}


def _digest_file(plane: PlaneLayout, component: str) -> Path:
    return plane.run / f"{component}.config-digest"


# --- health ------------------------------------------------------------------------------------------------------

def healthy(component: str, layout: nl.NodeLayout) -> bool:
    url = nl.health_url(component, layout)
    if url is None:  # containerd: its socket accepts connections
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(layout.containerd_socket))
                return True
            except OSError:
                return False
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


# --- images ------------------------------------------------------------------------------------------------------

def ctr(layout: nl.NodeLayout, bins: nl.NodeBinaries, *args: str, timeout: float = 600) -> str:
    return _run([str(bins.containerd / "ctr"), "--address", str(layout.containerd_socket), "--namespace",
                 nl.CONTAINERD_NAMESPACE, *args], timeout=timeout).stdout


def imported_keys(layout: nl.NodeLayout, bins: nl.NodeBinaries) -> dict[str, str]:
    """name → content key of the images containerd holds that we imported."""
    out = {}
    for line in ctr(layout, bins, "images", "ls").splitlines()[1:]:
        fields = line.split()
        for label in (fields[-1].split(",") if fields else []):
            if label.startswith(IMAGE_KEY_LABEL + "="):
                out[fields[0]] = label.split("=", 1)[1]
    return out


def import_images(layout: nl.NodeLayout, bins: nl.NodeBinaries, images) -> list[str]:
    """Imports each image whose content changed since the last import; returns the names imported."""
    have = imported_keys(layout, bins)
    done = []
    for image in images:
        if have.get(image.name) == image.key:
            continue
        # Pinned: the kubelet's image GC never removes them (there is no registry to pull them back from).
        ctr(layout, bins, "images", "import", "--label", "io.cri-containerd.pinned=pinned",
            "--label", f"{IMAGE_KEY_LABEL}={image.key}", str(image.archive))
        done.append(image.name)
    return done


def local_druid_versions(plane: PlaneLayout) -> list[str]:
    """The Druid versions whose images this node holds (written by `up`)."""
    path = load_or_create_layout(plane).root / "druid-versions.json"
    return json.loads(path.read_text()) if path.exists() else []


# What KubeDB's default Druid (and its reconfigure-TLS guide) needs in the image: MySQL metadata, basic security,
# S3 deep storage, the TLS client.
DEFAULT_CONFIG_EXTENSIONS = ("mysql-metadata-storage", "druid-basic-security", "druid-s3-extensions",
                             "simple-client-sslcontext")
RUNS_DEFAULTS_LABEL = "kubedruid.dev/runs-defaults"


def local_druid_versions_manifest(versions: list[str], present=None) -> str:
    """DruidVersion objects for the Druid versions that have a local image (labelled, so users can tell), each
    saying whether its image runs the default configuration (`kubedruid.dev/runs-defaults`): Maven Central here
    lacks some extensions at some versions (33.0.0 has no MySQL metadata extension that links)."""
    from .images import druid_extensions_present

    present = present or druid_extensions_present
    docs = []
    for v in versions:
        obj = druid_version(v).to_dict()
        labels = obj["metadata"].setdefault("labels", {})
        labels[LOCAL_IMAGE_LABEL] = "local"
        labels[RUNS_DEFAULTS_LABEL] = str(set(DEFAULT_CONFIG_EXTENSIONS) <= present(v)).lower()
        docs.append(obj)
    return yaml.safe_dump_all(docs)


# --- teardown ----------------------------------------------------------------------------------------------------

def _cgroup_dirs() -> list[Path]:
    """Every kubepods directory, deepest first, in every v1 hierarchy."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] != "cgroup":
            continue
        top = Path(fields[4]) / nl.CGROUP_ROOT_NAME
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def kill_pods(timeout: float = 20.0) -> int:
    """SIGKILLs every process in the kubelet's cgroup tree (what a pod runs); returns how many were signalled."""
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = set()
        for d in _cgroup_dirs():
            try:
                pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        if not pids or time.monotonic() > deadline:
            return len(signalled)
        for pid in pids:
            try:
                os.kill(pid, 9)
                signalled.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def _mounts_under(*prefixes: str) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def unmount_all(layout: nl.NodeLayout) -> list[str]:
    """Mounts of the node: kubelet volumes, containerd's overlay and shm mounts, CNI network namespaces."""
    netns = [str(p) for p in Path("/run/netns").glob("cni-*")] if Path("/run/netns").is_dir() else []
    targets = _mounts_under(str(layout.root), *netns)
    for point in targets:
        _run(["umount", "-l", point], check=False)
    for p in netns:
        Path(p).unlink(missing_ok=True)
    return targets


def remove_cgroups() -> list[Path]:
    left = []
    for d in _cgroup_dirs():
        try:
            d.rmdir()
        except OSError:
            left.append(d)
    return left


def leftovers(layout: nl.NodeLayout) -> list[str]:
    """What `down` must leave none of (tests assert this is empty)."""
    out = [f"mount {m}" for m in _mounts_under(str(layout.root))]
    out += [f"cgroup {d}" for d in _cgroup_dirs()]
    if _run(["ip", "link", "show", nl.BRIDGE], check=False).returncode == 0:
        out.append(f"bridge {nl.BRIDGE}")
    for table in ("filter", "nat", "mangle"):
        out += [f"iptables -t {table} {line}" for line in _iptables("-t", table, "-S", check=False).stdout.splitlines()
                if "KUBE" in line]
    out += [f"nft table {family} {table}" for family, table in nl.KUBE_PROXY_NFT_TABLES
            if _run(["nft", "list", "table", family, table], check=False).returncode == 0]
    routes = _run(["ip", "route", "show"], check=False).stdout
    out += [f"route {' '.join(r)}" for r in nl.routes() if " ".join(r[:2]) in routes]
    return out


def teardown(layout: nl.NodeLayout) -> None:
    """After the node's processes are stopped: pods, mounts, cgroups, iptables chains, our host changes."""
    kill_pods()
    unmount_all(layout)
    remove_cgroups()
    _restore_host(layout)
    shutil.rmtree(layout.cni_ipam_dir, ignore_errors=True)  # no address stays allocated to a pod that is gone


# --- up / down ---------------------------------------------------------------------------------------------------

def prepare(plane: PlaneLayout) -> nl.NodeLayout:
    """Before the apiserver starts: it reads the kubelet-client certificate made here."""
    missing = missing_prerequisites()
    if missing:
        raise NodeError("a real node cannot run on this machine; missing: " + "; ".join(missing))
    layout = load_or_create_layout(plane)
    ensure_identities(layout, plane)
    return layout


def up(plane: PlaneLayout, kubectl, druid_versions: list[str] | None = None) -> nl.NodeLayout:
    """Starts (or keeps) the node's components; `kubectl(*args, stdin=...)` talks to the running plane."""
    from . import images as images_mod
    from .plane import _cmdline, _running_pid, _say, _start, _stop, _wait_healthy

    layout = load_or_create_layout(plane)
    bins = node_binaries()
    prepare_host(layout)
    failed = [c for c in isolation_checks(layout)[:-1] if not c.ok]  # the Corefile is written just below
    if failed:
        raise NodeError("pod traffic could leave this machine: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    digests = write_configs(layout, plane, images_mod.PAUSE_IMAGE)
    sc = nl.STORAGE_CLASS["metadata"]["name"]
    current = kubectl("get", "storageclass", sc, "--ignore-not-found", "-o", "jsonpath={.provisioner}")
    if current and current != nl.STORAGE_CLASS["provisioner"]:  # immutable: a plane made before volumes.py
        kubectl("delete", "storageclass", sc)
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=kubedruid-dev", "-f", "-",
            stdin=yaml.safe_dump_all([nl.STORAGE_CLASS, *nl.COMPONENT_RBAC]))
    env = {**os.environ, "PATH": f"{bins.containerd}:{os.environ.get('PATH', '')}"}  # containerd finds its shim
    for component in nl.NODE_COMPONENTS:
        argv = nl.command(component, layout, bins)
        pid = _running_pid(plane, component)
        digest = digests.get(component, "")
        started_with = _digest_file(plane, component).read_text() if _digest_file(plane, component).exists() else ""
        if pid is not None and (_cmdline(pid) != argv or started_with != digest):
            _say(f"{component}: {'command line' if _cmdline(pid) != argv else 'configuration'} changed, restarting")
            _stop(plane, component)
            pid = None
        if pid is None:
            t0 = time.monotonic()
            pid = _start(plane, component, argv, env=env)
            _digest_file(plane, component).write_text(digest)
            _wait_healthy(plane, component, pid, check=lambda c=component: healthy(c, layout),
                          timeout=START_TIMEOUT_S[component])
            _say(f"{component}: started in {time.monotonic() - t0:.1f} s (log {plane.log_file(component)})")
        else:
            _wait_healthy(plane, component, pid, check=lambda c=component: healthy(c, layout),
                          timeout=START_TIMEOUT_S[component])
        if component == "kube-proxy":
            keep_isolation_first()
        if component == "containerd":
            t0 = time.monotonic()
            versions = druid_versions if druid_versions is not None else images_mod.druid_versions_available()
            imported = import_images(layout, bins, images_mod.ensure_images(versions))
            if imported:
                _say(f"images: imported {', '.join(imported)} in {time.monotonic() - t0:.1f} s")
            # DruidVersions need kubedruid's CRDs: install.py applies them from this list.
            _write_if_changed(layout.root / "druid-versions.json", json.dumps(sorted(versions)))
    kubectl("wait", "--for=condition=Ready", "--timeout=120s", f"node/{nl.NODE_NAME}")
    keep_isolation_first()  # in case kube-proxy's first sync came after its health check answered
    return layout


def down(plane: PlaneLayout) -> list[str]:
    """Stops the node's components (reverse order) and undoes every host change. Returns what it stopped."""
    from .plane import _running_pid, _stop

    layout = load_or_create_layout(plane)
    stopped = []
    for component in reversed(nl.NODE_COMPONENTS):
        if _running_pid(plane, component) is not None:
            stopped.append(component)
        _stop(plane, component)
    teardown(layout)
    return stopped


def status(plane: PlaneLayout) -> list:
    """One row per node component, and one for the network isolation (its failed checks as the reason)."""
    from .plane import ComponentStatus, _running_pid

    layout = load_or_create_layout(plane)
    rows = []
    for c in nl.NODE_COMPONENTS:
        pid = _running_pid(plane, c)
        rows.append(ComponentStatus(c, pid, pid is not None and healthy(c, layout)))
    failed = [c.name for c in isolation_checks(layout) if not c.ok]
    rows.append(ComponentStatus("network isolation" + (f" ({'; '.join(failed)} failed)" if failed else ""),
                                None, not failed))
    return rows
