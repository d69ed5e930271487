"""`spec.monitor`: every pod runs the metrics sidecar (kubedruid/exporter.py), Druid's HTTP emitter posts its metric
events to it, and the stats Service `<db>-stats` gathers the pods' metrics ports (KubeDB's name, label
`kubedb.com/role: stats`, path /metrics, scheme http). Pure: the builders in cluster.py compose these parts; the
emitter's properties are druid/properties.py's."""

from __future__ import annotations

import copy

from kubedruid import __version__, exporter
from kubedruid.api import Druid

from . import names

EXPORTER = "exporter"  # the sidecar's container name
METRICS_PORT_NAME = "metrics"
STATS_ROLE = "stats"
DEFAULT_EXPORTER_IMAGE = f"kubedruid/druid-exporter:{__version__}"
BUILTIN_AGENT = "prometheus.io/builtin"
OPERATOR_AGENT = "prometheus.io/operator"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1"
# On the stats Service while a ServiceMonitor of the same name is ours: tells, from the cache, that one may be left
# to delete when the agent changes.
SERVICE_MONITOR_ANNOTATION = "kubedruid.dev/service-monitor"
EXPORTER_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}


def metrics_port(db: Druid) -> int | None:
    """The exporter's port (KubeDB's 9104 when the spec says 0 or nothing); None when the Druid is not monitored."""
    if db.spec.monitor is None:
        return None
    spec = db.spec.monitor.prometheus.exporter if db.spec.monitor.prometheus else None
    return (spec.port if spec else None) or exporter.DEFAULT_PORT


def exporter_sidecar(db: Druid, image: str, security_context: dict) -> dict:
    """A native sidecar (an init container that keeps running): it is up before Druid emits, and stops after Druid
    has sent its last batch. The user's env, resources and securityContext (spec.monitor.prometheus.exporter)
    apply to it."""
    port = metrics_port(db)
    user = db.spec.monitor.prometheus.exporter if db.spec.monitor and db.spec.monitor.prometheus else None
    container = {
        "name": EXPORTER, "image": image, "restartPolicy": "Always",
        "command": ["python3", "/usr/local/bin/druid-exporter"], "args": ["--port", str(port)],
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "startupProbe": {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 1, "failureThreshold": 60},
        "resources": copy.deepcopy((user.resources if user and user.resources else None) or EXPORTER_RESOURCES),
        "securityContext": {**copy.deepcopy(security_context), **((user.securityContext if user else None) or {})},
    }
    if user and user.env:
        container["env"] = copy.deepcopy(user.env)
    return container


def stats_service_parts(db: Druid) -> tuple[dict, dict]:
    """(annotations, spec) of the stats Service: every pod of the Druid, its metrics port; with the builtin agent,
    the annotations a Prometheus' Kubernetes service discovery scrapes by."""
    port = metrics_port(db)
    annotations = {}
    if db.spec.monitor.agent == BUILTIN_AGENT:
        annotations = {"prometheus.io/scrape": "true", "prometheus.io/path": exporter.METRICS_PATH,
                       "prometheus.io/port": str(port), "prometheus.io/scheme": "http"}
    elif db.spec.monitor.agent == OPERATOR_AGENT:
        annotations = {SERVICE_MONITOR_ANNOTATION: names.stats_service(db.metadata.name)}
    spec = {"type": "ClusterIP",
            "ports": [{"name": METRICS_PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}]}
    return annotations, spec


def service_monitor_spec(db: Druid, stats_selector: dict[str, str]) -> tuple[dict[str, str], dict]:
    """(extra labels, spec) of Prometheus Operator's ServiceMonitor for the stats Service (agent
    prometheus.io/operator): spec.monitor.prometheus.serviceMonitor's labels (what a Prometheus selects
    ServiceMonitors by) and interval."""
    wanted = db.spec.monitor.prometheus.serviceMonitor if db.spec.monitor.prometheus else None
    endpoint = {"port": METRICS_PORT_NAME, "path": exporter.METRICS_PATH, "scheme": "http"}
    if wanted and wanted.interval:
        endpoint["interval"] = wanted.interval
    return dict((wanted.labels if wanted else None) or {}), {
        "namespaceSelector": {"matchNames": [db.metadata.namespace]},
        "selector": {"matchLabels": dict(stats_selector)}, "endpoints": [endpoint]}
