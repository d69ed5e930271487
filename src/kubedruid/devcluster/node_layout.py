"""The real node's layout: addresses, paths, configuration files and command lines of containerd, the kubelet,
kube-proxy and CoreDNS. Pure: no I/O (spec/real-node.md records why each setting is what it is).

One real node per machine: it owns a bridge, host routes and iptables chains, which are machine-wide.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .layout import POD_CIDR as KWOK_POD_CIDR
from .layout import REAL_NODE_SERVICE_CIDR, python

NODE_NAME = "kubedruid-node"
BRIDGE = "kubedruid0"
NODE_POD_CIDR = "10.245.0.0/24"  # outside kwok's fake pod range, so the two never meet in one plane
BRIDGE_IP = "10.245.0.1"  # node IP, kubelet address, cluster DNS: it exists before the first pod
BRIDGE_PREFIX = 24
CLUSTER_DNS_IP = BRIDGE_IP
LAST_SERVICE_IP = str(ipaddress.ip_network(REAL_NODE_SERVICE_CIDR)[-2])  # `dev status` asks the host's route to it
CLUSTER_DOMAIN = "cluster.local"
# Our filter chain, jumped to first from FORWARD: nothing routed from the bridge leaves it, nothing from elsewhere
# is forwarded into it. Pod ↔ pod and pod ↔ ClusterIP stay on the bridge; host ↔ pod is INPUT/OUTPUT, not FORWARD.
FORWARD_CHAIN = "KUBEDRUID-FORWARD"
CGROUP_ROOT_NAME = "kubepods"  # the kubelet's QoS tree (cgroupsPerQOS) in every v1 hierarchy
RUNC = "/usr/sbin/runc"  # Debian's runc (real-node.md §3: 1.1.5 runs every pod with containerd 2.3)
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CONTAINERD_NAMESPACE = "k8s.io"  # the CRI plugin's namespace: images must be imported there

# Start order after the control plane; `dev down` stops them in reverse.
NODE_COMPONENTS = ("containerd", "volumes", "kubelet", "kube-proxy", "coredns")


@dataclass(frozen=True)
class NodePorts:
    kubelet: int
    kubelet_healthz: int
    kube_proxy_healthz: int
    kube_proxy_metrics: int
    coredns_health: int
    volumes_health: int


@dataclass(frozen=True)
class NodeBinaries:
    k8s: Path  # kubelet, kube-proxy
    containerd: Path  # containerd, containerd-shim-runc-v2, ctr
    coredns: Path


@dataclass(frozen=True)
class NodeLayout:
    state_dir: Path  # the plane's state directory; the node lives under <state>/node
    ports: NodePorts

    @property
    def root(self) -> Path:
        return self.state_dir / "node"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def volumes_dir(self) -> Path:
        """The directories of the node's PersistentVolumes (volumes.py)."""
        return self.root / "volumes"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    @property
    def pod_logs(self) -> Path:
        """The kubelet's podLogsDir: not /var/log/pods, everything of the node in its state dir."""
        return self.root / "pod-logs"

    @property
    def host_state(self) -> Path:
        """What `up` found on the host before changing it (restored by `down`)."""
        return self.root / "host.json"

    def kubeconfig(self, identity: str) -> Path:
        return self.root / f"{identity}.kubeconfig"

    def to_json(self) -> dict:
        return asdict(self.ports)

    @classmethod
    def from_json(cls, state_dir: Path, data: dict) -> "NodeLayout":
        return cls(state_dir, NodePorts(**data))


# Identities on the plane's CA: (file stem, CN, O). The node authorizer and bootstrap RBAC know the first two.
IDENTITIES = {
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
    "kube-proxy": ("system:kube-proxy", None),
    "coredns": ("kubedruid:coredns", None),
    "volumes": ("kubedruid:volumes", None),
    # The apiserver's client identity towards the kubelet (logs, exec, port-forward).
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}

# CoreDNS's read access for the `kubernetes` plugin (no bootstrap role exists for it), and the volume provisioner's.
COMPONENT_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kubedruid:volumes"},
     "rules": [{"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["list", "watch"]},
               {"apiGroups": [""], "resources": ["persistentvolumes"],
                "verbs": ["list", "watch", "create", "delete"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "kubedruid:volumes"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubedruid:volumes"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubedruid:volumes"}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kubedruid:coredns"},
     "rules": [{"apiGroups": [""], "resources": ["services", "namespaces"], "verbs": ["list", "watch"]},
               {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "kubedruid:coredns"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubedruid:coredns"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubedruid:coredns"}]},
]

# PVCs on the real node: `local` volumes in the node's state directory, made by volumes.py (the kubelet applies a
# pod's fsGroup to those, never to hostPath volumes).
VOLUME_PROVISIONER = "kubedruid.dev/local-volume"
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": VOLUME_PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
}


def containerd_toml(layout: NodeLayout, pause_image: str) -> str:
    q = json.dumps  # TOML basic strings and JSON strings escape alike for paths
    return "\n".join([
        "version = 3",
        f"root = {q(str(layout.containerd_root / 'root'))}",
        f"state = {q(str(layout.containerd_root / 'state'))}",
        "",
        "[grpc]",
        f"  address = {q(str(layout.containerd_socket))}",
        "[ttrpc]",
        f"  address = {q(str(layout.containerd_socket) + '.ttrpc')}",
        "",
        "[plugins.'io.containerd.cri.v1.images']",
        "  snapshotter = \"overlayfs\"",
        "  [plugins.'io.containerd.cri.v1.images'.pinned_images]",
        f"    sandbox = {q(pause_image)}",
        "",
        "[plugins.'io.containerd.cri.v1.runtime']",
        # The VM's bounding set lacks CAP_SYS_RESOURCE: without this every sandbox fails to lower oom_score_adj.
        "  restrict_oom_score_adj = true",
        "  [plugins.'io.containerd.cri.v1.runtime'.containerd]",
        "    default_runtime_name = \"runc\"",
        "    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
        "      runtime_type = \"io.containerd.runc.v2\"",
        "      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
        "        SystemdCgroup = false",  # the kubelet asks the runtime for its cgroup driver: cgroupfs
        f"        BinaryName = {q(RUNC)}",
        "  [plugins.'io.containerd.cri.v1.runtime'.cni]",
        f"    bin_dirs = [{q(CNI_BIN_DIR)}]",
        f"    conf_dir = {q(str(layout.cni_conf_dir))}",
        "    max_conf_num = 1",
        "",
        "[plugins.'io.containerd.grpc.v1.cri']",
        "  stream_server_address = \"127.0.0.1\"",
        "",
    ])


def cni_conflist(layout: NodeLayout) -> dict:
    return {
        "cniVersion": "1.0.0", "name": "kubedruid",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": NODE_POD_CIDR, "gateway": BRIDGE_IP}]],
                      # Druid's entrypoint finds its address with `ip r get 1`: pods need a default route.
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(layout.cni_ipam_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: NodeLayout, plane_ca: Path) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # 1.35+ refuses cgroup v1 by default; these VMs have only v1 controllers
        "cgroupDriver": "cgroupfs", "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": BRIDGE_IP, "port": layout.ports.kubelet, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": layout.ports.kubelet_healthz,
        "authentication": {"x509": {"clientCAFile": str(plane_ca)}, "webhook": {"enabled": True},
                           "anonymous": {"enabled": False}},
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [CLUSTER_DNS_IP], "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(layout.resolv_conf),
        # Never reclaim the host's disk (CI disks are shared); memory eviction stays on.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
                         "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "maxPods": 110,
        "podLogsDir": str(layout.pod_logs),
        "serializeImagePulls": False,
        "staticPodPath": "",
    }


def kube_proxy_config(layout: NodeLayout) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        # nftables, not iptables: in iptables mode (over Debian's iptables-nft 1.8.9) 4 Service updates in 50
        # let a new connection to the Service's other ports miss its rules ("No route to host"; measured
        # 2026-12-06, and it failed a CI run); nftables mode lost none in 65. GA since Kubernetes 1.33.
        "hostnameOverride": NODE_NAME, "mode": "nftables", "clusterCIDR": NODE_POD_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{layout.ports.kube_proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{layout.ports.kube_proxy_metrics}",
        "nodePortAddresses": [f"{BRIDGE_IP}/32"],
        "conntrack": {"maxPerCore": 0},  # leave the host's nf_conntrack_max alone
        "nftables": {"minSyncPeriod": "1s"},
    }


def corefile(layout: NodeLayout) -> str:
    """Cluster names only: everything else is NXDOMAIN, answered locally (no forwarding off the machine). No
    cache: a restarted pod's new address must be visible at once."""
    kc = layout.kubeconfig("coredns")
    return f"""\
{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{
    bind {BRIDGE_IP}
    errors
    health 127.0.0.1:{layout.ports.coredns_health}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kc} kubedruid-dev
        pods insecure
        ttl 0
    }}
}}
.:53 {{
    bind {BRIDGE_IP}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""


def resolv_conf() -> str:
    return f"nameserver {CLUSTER_DNS_IP}\n"


def command(component: str, layout: NodeLayout, bins: NodeBinaries) -> list[str]:
    if component == "containerd":
        return [str(bins.containerd / "containerd"), f"--config={layout.containerd_config}"]
    if component == "kubelet":
        return [str(bins.k8s / "kubelet"), f"--config={layout.kubelet_config}",
                f"--kubeconfig={layout.kubeconfig('kubelet')}", f"--hostname-override={NODE_NAME}",
                f"--node-ip={BRIDGE_IP}", f"--root-dir={layout.kubelet_root}", "--v=1"]
    if component == "kube-proxy":
        return [str(bins.k8s / "kube-proxy"), f"--config={layout.kube_proxy_config}"]
    if component == "coredns":
        return [str(bins.coredns / "coredns"), "-conf", str(layout.corefile)]
    if component == "volumes":
        return [python(), "-m", "kubedruid.devcluster.volumes", str(layout.kubeconfig("volumes")),
                str(layout.volumes_dir), str(layout.ports.volumes_health)]
    raise ValueError(f"unknown node component {component!r}")


def health_url(component: str, layout: NodeLayout) -> str | None:
    """None: containerd has no HTTP health endpoint (its socket is checked instead)."""
    p = layout.ports
    return {
        "containerd": None,
        "kubelet": f"http://127.0.0.1:{p.kubelet_healthz}/healthz",
        "kube-proxy": f"http://127.0.0.1:{p.kube_proxy_healthz}/healthz",
        "coredns": f"http://127.0.0.1:{p.coredns_health}/health",
        "volumes": f"http://127.0.0.1:{p.volumes_health}/healthz",
    }[component]


def isolation_rules() -> list[list[str]]:
    """The rules of FORWARD_CHAIN (iptables arguments after `-A <chain>`)."""
    return [
        ["-i", BRIDGE, "!", "-o", BRIDGE, "-j", "REJECT"],  # from a pod to anything off the bridge
        ["!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"],  # from elsewhere into the pods
    ]


# The nftables tables kube-proxy makes in nftables mode (`down` deletes them).
KUBE_PROXY_NFT_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))


def routes() -> list[list[str]]:
    """Host routes (arguments after `ip route replace`): Service addresses go to the bridge, never to the default
    route; kwok's fake pod addresses fail at once instead of leaving the machine."""
    return [[REAL_NODE_SERVICE_CIDR, "dev", BRIDGE], ["unreachable", KWOK_POD_CIDR]]


def yaml_dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False)
