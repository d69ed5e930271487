"""Druid's node types as KubeDB names them: topology keys, role labels, object names, ports, probe paths, restart
order."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeType:
    key: str  # spec.topology.<key> and the kubedb.com/role label value
    service: str  # the argument of `druid.sh` / `org.apache.druid.cli.Main server <service>`
    plain_port: int
    tls_port: int
    mandatory: bool  # defaulted when absent from spec.topology
    has_primary_service: bool  # <db>-<key lower-cased> Service for clients
    data_node: bool  # DruidDataNode: storage, storageType
    # 200 only once the node is usable (spec real-node §9): historicals have loaded their segment cache, brokers know
    # every segment, the others are confirmed in ZooKeeper (what peers discover them by). 503 before.
    readiness_path: str = "/status/selfDiscovered"

    @property
    def petset_suffix(self) -> str:
        return self.key.lower()  # KubeDB lower-cases: <db>-middlemanagers

    def port(self, tls: bool) -> int:
        return self.tls_port if tls else self.plain_port

    def port_name(self, tls: bool) -> str:
        return "https" if tls else "http"

    @property
    def data_volume(self) -> tuple[str, str] | None:
        """(volume name, mount path) of the node's persistent data, as KubeDB reserves them."""
        return {"historicals": ("data", "/druid/data/segments"),
                "middleManagers": ("base-task-dir", "/var/druid/task")}.get(self.key)


COORDINATORS = NodeType("coordinators", "coordinator", 8081, 8281, True, True, False)
OVERLORDS = NodeType("overlords", "overlord", 8090, 8290, False, True, False)
BROKERS = NodeType("brokers", "broker", 8082, 8282, True, True, False, "/druid/broker/v1/readiness")
ROUTERS = NodeType("routers", "router", 8888, 9088, False, True, False)
HISTORICALS = NodeType("historicals", "historical", 8083, 8283, True, False, True, "/druid/historical/v1/readiness")
MIDDLE_MANAGERS = NodeType("middleManagers", "middleManager", 8091, 8291, True, False, True)

# The order in which pods are restarted (spec §3.7; Druid's rolling-update guide places overlords before
# coordinators): data nodes first, the masters last.
RESTART_ORDER: tuple[NodeType, ...] = (HISTORICALS, MIDDLE_MANAGERS, BROKERS, ROUTERS, OVERLORDS, COORDINATORS)
# The order in which PetSets are created: masters first so that the others find them.
PROVISION_ORDER: tuple[NodeType, ...] = (COORDINATORS, OVERLORDS, HISTORICALS, MIDDLE_MANAGERS, BROKERS, ROUTERS)
BY_KEY: dict[str, NodeType] = {n.key: n for n in RESTART_ORDER}

# Nodes whose pods answer queries: AcceptingConnection follows their readiness.
QUERY_NODES = (ROUTERS, BROKERS)

EXPORTER_PORT = 9104

# The process is up (always `true`): liveness and start-up, never readiness.
HEALTH_PATH = "/status/health"
# Paths every Druid node serves without authentication (`UNSECURED_PATHS` of its Jetty initializers; the readiness
# paths since apache/druid#8841, 0.17). Any other probe path needs `druid.auth.unsecuredPaths` under basic security,
# or the kubelet, which sends no credentials, gets 401.
UNSECURED_BY_DRUID = frozenset({HEALTH_PATH, "/druid/historical/v1/readiness", "/druid/broker/v1/readiness"})
PROBE_PATHS_TO_UNSECURE: tuple[str, ...] = tuple(sorted(
    {n.readiness_path for n in RESTART_ORDER} - UNSECURED_BY_DRUID))
