"""Druid runtime properties, rendered from a small description of the cluster. Pure: no I/O, no Kubernetes.

The upstream `apache/druid` image reads `DRUID_CONFIG_COMMON` (common.runtime.properties) and
`DRUID_CONFIG_<service>` (the node's runtime.properties); per-pod values (`druid.host`) come as `druid_*` environment
variables, which its entrypoint appends (see specs/cluster.py). Passwords never appear here: they are Druid password
providers that read environment variables filled from Secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kubedruid import exporter

from . import jvm, tls
from .nodes import (
    BROKERS,
    COORDINATORS,
    HISTORICALS,
    MIDDLE_MANAGERS,
    OVERLORDS,
    PROBE_PATHS_TO_UNSECURE,
    ROUTERS,
    NodeType,
)

ADMIN_PASSWORD_ENV = "DRUID_ADMIN_PASSWORD"
METADATA_PASSWORD_ENV = "DRUID_METADATA_STORAGE_PASSWORD"

DEEP_STORAGE_EXTENSIONS = {
    "s3": "druid-s3-extensions",
    "google": "druid-google-extensions",
    "azure": "druid-azure-extensions",
    "hdfs": "druid-hdfs-storage",
}
METADATA_EXTENSIONS = {"MySQL": "mysql-metadata-storage", "PostgreSQL": "postgresql-metadata-storage"}
UNSECURED_PATHS = "druid.auth.unsecuredPaths"

# Processing buffers: druid.processing.buffer.sizeBytes x (numThreads + numMergeBuffers + 1) must fit the direct
# memory (druid/jvm.py sizes it from these). Small, for small pods: one processing thread, 50 MB buffers.
_PROCESSING = {jvm.BUFFER_SIZE: "50000000", jvm.NUM_MERGE_BUFFERS: "2", jvm.NUM_THREADS: "1"}
_PEON_PROCESSING = {jvm.BUFFER_SIZE: "25000000", jvm.NUM_THREADS: "1", jvm.NUM_MERGE_BUFFERS: "2"}


@dataclass(frozen=True)
class MetadataStore:
    type: str  # MySQL | PostgreSQL
    host: str
    port: int
    database: str
    user: str
    create_tables: bool = True

    def connect_uri(self) -> str:
        if self.type == "PostgreSQL":
            return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"
        return f"jdbc:mysql://{self.host}:{self.port}/{self.database}?createDatabaseIfNotExist=true"


@dataclass(frozen=True)
class ClusterConfig:
    """What the properties depend on; built from a Druid object by specs/config.py."""

    zookeeper: str  # host:port[,host:port]
    zookeeper_base: str
    metadata: MetadataStore
    deep_storage_type: str
    deep_storage_properties: dict[str, str] = field(default_factory=dict)  # the user's deep-storage Secret
    tls_mode: tls.TLSMode = tls.TLSMode.OFF
    security: bool = True  # druid-basic-security with the admin password from the auth Secret
    has_overlords: bool = True
    has_routers: bool = False
    druid_version: str = "36.0.0"
    metrics_port: int | None = None  # spec.monitor: the pod's metrics sidecar listens here


UNANNOUNCE_S = 3  # a stopping node waits this long after leaving discovery, for its peers to notice
DRAIN_S = 10  # then it finishes the requests it has, for at most this long


def druid_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def _extensions(c: ClusterConfig) -> list[str]:
    ext = ["druid-datasketches", "druid-kafka-indexing-service"]
    if druid_major(c.druid_version) < 35:  # MSQ is part of core since 35 (apache/druid#18394); listing it is deprecated
        ext.append("druid-multi-stage-query")
    if c.security:
        ext.append("druid-basic-security")
    if c.tls_mode.client_trust:
        ext.append("simple-client-sslcontext")  # without it every internal HTTPS call fails
    ext.append(METADATA_EXTENSIONS[c.metadata.type])
    ext.append(DEEP_STORAGE_EXTENSIONS[c.deep_storage_type])
    return ext


def _env_password(variable: str) -> str:
    return json.dumps({"type": "environment", "variable": variable}, separators=(",", ":"))


def _security() -> dict[str, str]:
    password = _env_password(ADMIN_PASSWORD_ENV)
    return {
        "druid.auth.authenticatorChain": '["basic"]',
        "druid.auth.authenticator.basic.type": "basic",
        "druid.auth.authenticator.basic.initialAdminPassword": password,
        "druid.auth.authenticator.basic.initialInternalClientPassword": password,
        "druid.auth.authenticator.basic.credentialsValidator.type": "metadata",
        "druid.auth.authenticator.basic.skipOnFailure": "false",
        "druid.auth.authenticator.basic.authorizerName": "basic",
        "druid.auth.authorizers": '["basic"]',
        "druid.auth.authorizer.basic.type": "basic",
        "druid.escalator.type": "basic",
        "druid.escalator.internalClientUsername": "druid_system",
        "druid.escalator.internalClientPassword": password,
        "druid.escalator.authorizerName": "basic",
        # The kubelet's readiness probes carry no credentials (druid/nodes.py).
        UNSECURED_PATHS: json.dumps(list(PROBE_PATHS_TO_UNSECURE), separators=(",", ":")),
    }


def tls_properties(mode: tls.TLSMode, reload: bool = False) -> dict[str, str]:
    """The properties of a TLS mode (druid/tls.py): the client truststore (the CA bundle, no password) with
    hostname validation on (the announced druid.host is the pod's FQDN, which the certificate carries) from client
    trust on; the server keystore (reloaded when it changes, on Druid versions that can) and the TLS port, TLS 1.2
    and 1.3 only, from tls-port on; plaintext closed in tls-only."""
    password = _env_password(tls.KEYSTORE_PASSWORD_ENV)
    props: dict[str, str] = {}
    if mode.client_trust:
        props |= {
            "druid.client.https.protocol": "TLSv1.2",
            "druid.client.https.trustStorePath": tls.TRUSTSTORE_PATH,
            "druid.client.https.trustStoreType": tls.TRUSTSTORE_TYPE,
            "druid.client.https.validateHostnames": "true",
        }
    if mode.tls_port:
        props |= {
            "druid.enableTlsPort": "true",
            "druid.server.https.keyStorePath": tls.LIVE_KEYSTORE_PATH if reload else tls.KEYSTORE_PATH,
            "druid.server.https.keyStoreType": tls.KEYSTORE_TYPE,
            "druid.server.https.keyStorePassword": password,
            "druid.server.https.certAlias": tls.CERT_ALIAS,
            "druid.server.https.includeProtocols": '["TLSv1.2","TLSv1.3"]',
        }
        if reload:
            props |= {"druid.server.https.reloadSslContext": "true",
                      "druid.server.https.reloadSslContextSeconds": str(tls.RELOAD_SECONDS)}
    if not mode.plaintext_port:
        props["druid.enablePlaintextPort"] = "false"
    return props


def common_properties(c: ClusterConfig) -> dict[str, str]:
    props = {
        "druid.extensions.loadList": json.dumps(_extensions(c), separators=(",", ":")),
        "druid.startup.logging.logProperties": "false",  # it would print every property, passwords' providers too
        "druid.zk.service.host": c.zookeeper,
        "druid.zk.paths.base": c.zookeeper_base,
        "druid.metadata.storage.type": "postgresql" if c.metadata.type == "PostgreSQL" else "mysql",
        "druid.metadata.storage.connector.connectURI": c.metadata.connect_uri(),
        "druid.metadata.storage.connector.user": c.metadata.user,
        "druid.metadata.storage.connector.password": _env_password(METADATA_PASSWORD_ENV),
        "druid.metadata.storage.connector.createTables": str(c.metadata.create_tables).lower(),
        "druid.storage.type": c.deep_storage_type,
        "druid.indexer.logs.type": "file",
        "druid.indexer.logs.directory": "/druid/data/indexing-logs",
        "druid.selectors.indexing.serviceName": "druid/overlord",
        "druid.selectors.coordinator.serviceName": "druid/coordinator",
        "druid.emitter": "noop",  # unless monitored (metrics_properties)
        "druid.sql.enable": "true",
        # On SIGTERM a node first leaves discovery, lets its peers notice, then stops taking requests and finishes
        # the ones it has: a restart in an op then drops no query (with the pod's preStop sleep, specs/cluster.py).
        "druid.server.http.unannouncePropagationDelay": f"PT{UNANNOUNCE_S}S",
        "druid.server.http.gracefulShutdownTimeout": f"PT{DRAIN_S}S",
    }
    props.update(c.deep_storage_properties)
    if c.metrics_port:
        props.update(metrics_properties(c.metrics_port))
    if c.security:
        props.update(_security())
    props.update(tls_properties(c.tls_mode, tls.reloads(c.druid_version)))
    return props


# How often each node emits its JVM's figures (query metrics go out as queries run). The HTTP emitter sends what it
# has at least every FLUSH_MILLIS: a scrape sees a query's metrics within that.
EMISSION_PERIOD = "PT15S"
FLUSH_MILLIS = 5000


def metrics_properties(port: int) -> dict[str, str]:
    """A monitored Druid's nodes post their metric events to the pod's metrics sidecar on the loopback address
    (kubedruid/exporter.py), through the HTTP emitter that every Druid has in its core."""
    return {
        "druid.emitter": "http",
        "druid.emitter.http.recipientBaseUrl": f"http://127.0.0.1:{port}{exporter.EMITTER_PATH}",
        "druid.emitter.http.flushMillis": str(FLUSH_MILLIS),
        "druid.monitoring.emissionPeriod": EMISSION_PERIOD,
        "druid.monitoring.monitors": '["org.apache.druid.java.util.metrics.JvmMonitor"]',
    }


def node_properties(node: NodeType, c: ClusterConfig) -> dict[str, str]:
    props = {
        "druid.service": f"druid/{node.service}",
        "druid.plaintextPort": str(node.plain_port),
        "druid.tlsPort": str(node.tls_port),
    }
    if node is COORDINATORS:
        props |= {"druid.coordinator.startDelay": "PT10S", "druid.coordinator.period": "PT5S"}
        if not c.has_overlords:  # the coordinator acts as overlord
            props |= {"druid.coordinator.asOverlord.enabled": "true",
                      "druid.coordinator.asOverlord.overlordService": "druid/overlord",
                      "druid.indexer.storage.type": "metadata", "druid.indexer.runner.type": "remote"}
    elif node is OVERLORDS:
        props |= {"druid.indexer.queue.startDelay": "PT5S", "druid.indexer.storage.type": "metadata",
                  "druid.indexer.runner.type": "remote"}
    elif node is BROKERS:
        props |= {"druid.broker.http.numConnections": "5", "druid.server.http.numThreads": "40", **_PROCESSING}
    elif node is ROUTERS:
        props |= {"druid.router.defaultBrokerServiceName": "druid/broker",
                  "druid.router.coordinatorServiceName": "druid/coordinator",
                  "druid.router.managementProxy.enabled": "true",
                  # Druid's router cannot drain: its Jetty keeps no count of requests (the broker's and historical's
                  # do), so it closes every connection the moment it stops, a query it is proxying too. It keeps
                  # serving for the whole drain instead, and then stops with nothing left in flight.
                  "druid.server.http.unannouncePropagationDelay": f"PT{UNANNOUNCE_S + DRAIN_S}S"}
    elif node is HISTORICALS:
        props |= {"druid.segmentCache.locations": json.dumps([{"path": HISTORICALS.data_volume[1], "maxSize": "1g"}],
                                                              separators=(",", ":")),
                  "druid.server.maxSize": "1g", **_PROCESSING}
    elif node is MIDDLE_MANAGERS:
        # The middleManager's memory limit holds capacity x the peons' JVMs (druid/jvm.py).
        props |= {jvm.WORKER_CAPACITY: "2", "druid.indexer.task.baseTaskDir": MIDDLE_MANAGERS.data_volume[1],
                  **{jvm.FORK_PROPERTY + k: v for k, v in _PEON_PROCESSING.items()},
                  jvm.PEON_JAVA_OPTS: jvm.peon_java_opts(_PEON_PROCESSING)}
    return props


def with_user(ours: dict[str, str], user: dict[str, str], security: bool) -> dict[str, str]:
    """The user's properties win, except that with basic security the probe paths stay in druid.auth.unsecuredPaths
    when the user sets it (in any file): else the readiness probes get 401 and no pod becomes Ready."""
    merged = {**ours, **user}
    if security and UNSECURED_PATHS in user:
        try:
            theirs = json.loads(user[UNSECURED_PATHS])
        except ValueError:
            return merged  # Druid refuses the file and says why
        if isinstance(theirs, list):
            paths = theirs + [p for p in PROBE_PATHS_TO_UNSECURE if p not in theirs]
            merged[UNSECURED_PATHS] = json.dumps(paths, separators=(",", ":"))
    return merged


def render(props: dict[str, str]) -> str:
    """A .properties file: sorted, one `key=value` per line."""
    return "".join(f"{k}={props[k]}\n" for k in sorted(props))


def parse(text: str) -> dict[str, str]:
    """The inverse of render for simple files (no continuation lines); comments and blanks are skipped."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out
