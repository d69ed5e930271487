"""Minimal ZooKeeper and MySQL/PostgreSQL for a Druid whose dependencies are not externally managed: one replica
each, upstream images, a random password in a Secret, Services named as KubeDB's defaults. Pure."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from . import names

ZOOKEEPER_PORT = 2181
PORTS = {"MySQL": 3306, "PostgreSQL": 5432}
IMAGES = {"MySQL": "mysql:{version}", "PostgreSQL": "postgres:{version}"}
DEPENDENCY_LABEL = "kubedruid.dev/dependency-of"
# Small and explicit, so that a Druid with both fits one 2-core node (decision 0008); no CPU limits. Quantities in
# the apiserver's canonical form: StatefulSets are compared with what the apiserver returns.
RESOURCES = {
    "zookeeper": {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"memory": "384Mi"}},
    "mysql": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},  # InnoDB's pool and more
    "postgres": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
}
# The zookeeper image's zkServer.sh puts JVMFLAGS after its default -Xmx1000m, so ours win. 128 MiB suffice for
# Druid's few znodes (measured: 75 MB RSS, docs/druid-test-tier.md); the rest of the limit is JVM overhead.
ZOOKEEPER_JVMFLAGS = "-Xms128m -Xmx128m -XX:+UseSerialGC -XX:ActiveProcessorCount=1"


@dataclass(frozen=True)
class Dependency:
    name: str  # StatefulSet and Service name
    secret: str | None  # password Secret, if any


def metadata_secret_name(service: str) -> str:
    return f"{service}-auth"


def _meta(name: str, druid: dict, role: str) -> dict:
    db = druid["metadata"]["name"]
    return {"name": name, "namespace": druid["metadata"]["namespace"],
            "labels": {"app.kubernetes.io/name": role, "app.kubernetes.io/instance": name, DEPENDENCY_LABEL: db},
            "ownerReferences": [names.owner_reference(druid)]}


def _statefulset(name: str, druid: dict, role: str, image: str, port: int, env: list[dict], data_path: str) -> dict:
    selector = {"app.kubernetes.io/name": role, "app.kubernetes.io/instance": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(name, druid, role),
        "spec": {
            "replicas": 1, "serviceName": name, "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**selector, DEPENDENCY_LABEL: druid["metadata"]["name"]}},
                         "spec": {"containers": [{
                             "name": role, "image": image, "env": env,
                             "ports": [{"name": role, "containerPort": port}],
                             "resources": copy.deepcopy(RESOURCES[role]),
                             "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10},
                             "volumeMounts": [{"name": "data", "mountPath": data_path}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {DEPENDENCY_LABEL: druid["metadata"]["name"]}}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }


def _service(name: str, druid: dict, role: str, port: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, druid, role),
            "spec": {"selector": {"app.kubernetes.io/name": role, "app.kubernetes.io/instance": name},
                     "ports": [{"name": role, "port": port, "targetPort": port, "protocol": "TCP"}]}}


def zookeeper(druid: dict, name: str, version: str) -> list[dict]:
    image = f"zookeeper:{version.rsplit('.', 1)[0] if version.count('.') == 2 else version}"
    env = [{"name": "ZOO_4LW_COMMANDS_WHITELIST", "value": "ruok,srvr"},
           {"name": "JVMFLAGS", "value": ZOOKEEPER_JVMFLAGS}]
    return [_service(name, druid, "zookeeper", ZOOKEEPER_PORT),
            _statefulset(name, druid, "zookeeper", image, ZOOKEEPER_PORT, env, "/data")]


def metadata_store(druid: dict, name: str, type_: str, version: str, database: str) -> list[dict]:
    port, secret = PORTS[type_], metadata_secret_name(name)
    password = {"valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}
    if type_ == "PostgreSQL":
        env = [{"name": "POSTGRES_PASSWORD", **password}, {"name": "POSTGRES_DB", "value": database}]
        path, role = "/var/lib/postgresql/data", "postgres"
    else:
        env = [{"name": "MYSQL_ROOT_PASSWORD", **password}, {"name": "MYSQL_DATABASE", "value": database}]
        path, role = "/var/lib/mysql", "mysql"
    return [_service(name, druid, role, port),
            _statefulset(name, druid, role, IMAGES[type_].format(version=version), port, env, path)]


def password_secret(druid: dict, name: str, username: str, password: str) -> dict:
    """Created once, never updated (the password must not change under a running database)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": _meta(name, druid, "credentials"),
            "stringData": {"username": username, "password": password}}
