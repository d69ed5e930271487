"""spec.monitor (specs/monitoring.py, its parts in specs/cluster.py and druid/properties.py): the metrics sidecar
in every pod, Druid's HTTP emitter pointed at it, and the stats Service."""

from __future__ import annotations

import dataclasses

import pytest

from kubedruid import exporter
from kubedruid.api import validate_druid
from kubedruid.druid import properties
from kubedruid.specs import cluster, monitoring

from .test_specs_cluster import SELECTOR, druid, inputs, manifest

BUILTIN = {"agent": "prometheus.io/builtin"}


def _monitored(monitor: dict | None = None, **spec):
    db = druid(manifest(monitor=monitor or BUILTIN, **spec))
    i = inputs(db)
    return db, dataclasses.replace(i, cluster=dataclasses.replace(i.cluster,
                                                                  metrics_port=monitoring.metrics_port(db)))


def test_the_port_is_kubedbs_9104_unless_set():
    assert monitoring.metrics_port(druid(manifest())) is None
    assert monitoring.metrics_port(_monitored()[0]) == 9104 == exporter.DEFAULT_PORT
    assert monitoring.metrics_port(_monitored({**BUILTIN, "prometheus": {"exporter": {"port": 0}}})[0]) == 9104
    assert monitoring.metrics_port(_monitored({**BUILTIN, "prometheus": {"exporter": {"port": 56790}}})[0]) == 56790


def test_every_node_emits_to_the_sidecar_on_its_loopback_address():
    db, i = _monitored()
    for n in cluster.nodes(db):
        props = cluster.runtime_properties(db, n, i)
        assert props["druid.emitter"] == "http"
        assert props["druid.emitter.http.recipientBaseUrl"] == "http://127.0.0.1:9104/druid"
        assert "JvmMonitor" in props["druid.monitoring.monitors"]
    plain = druid(manifest())
    assert cluster.runtime_properties(plain, cluster.nodes(plain)[0], inputs(plain))["druid.emitter"] == "noop"


def test_a_users_emitter_properties_win():
    db, i = _monitored(configuration={"inline": {"common.runtime.properties": "druid.emitter.http.flushMillis=1000"}})
    props = cluster.runtime_properties(db, cluster.nodes(db)[0], i)
    assert props["druid.emitter.http.flushMillis"] == "1000" and props["druid.emitter"] == "http"


def test_every_pod_runs_the_exporter_as_a_native_sidecar():
    db, i = _monitored({**BUILTIN, "prometheus": {"exporter": {
        "port": 9200, "resources": {"limits": {"memory": "128Mi"}}, "env": [{"name": "X", "value": "1"}],
        "securityContext": {"readOnlyRootFilesystem": True}}}})
    for n in cluster.nodes(db):
        pod = cluster.petset(db, n, i)["spec"]["template"]["spec"]
        (sidecar,) = [c for c in pod["initContainers"] if c["name"] == monitoring.EXPORTER]
        assert sidecar["restartPolicy"] == "Always" and sidecar["image"] == monitoring.DEFAULT_EXPORTER_IMAGE
        assert sidecar["args"] == ["--port", "9200"]
        assert sidecar["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
        assert sidecar["resources"] == {"limits": {"memory": "128Mi"}}
        assert sidecar["env"] == [{"name": "X", "value": "1"}]
        assert sidecar["securityContext"]["runAsNonRoot"] and sidecar["securityContext"]["readOnlyRootFilesystem"]
        assert {c["name"] for c in pod["containers"]} == {"druid"}


def test_the_exporter_image_comes_from_the_inputs():
    db, i = _monitored()
    i = dataclasses.replace(i, exporter_image="registry.example/exporter:1")
    pod = cluster.petset(db, cluster.nodes(db)[0], i)["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == "registry.example/exporter:1"


def test_an_unmonitored_pod_has_no_sidecar():
    db = druid(manifest())
    pod = cluster.petset(db, cluster.nodes(db)[0], inputs(db))["spec"]["template"]["spec"]
    assert "initContainers" not in pod


def _stats(services: list[dict]) -> dict | None:
    return next((s for s in services if s["metadata"]["name"] == "druid-cluster-stats"), None)


def test_the_stats_service_gathers_every_pods_metrics_port():
    db, i = _monitored()
    stats = _stats(cluster.services(db, i))
    assert stats["metadata"]["labels"]["kubedb.com/role"] == "stats"
    assert SELECTOR.items() <= stats["spec"]["selector"].items() and "kubedb.com/role" not in stats["spec"]["selector"]
    assert stats["spec"]["ports"] == [{"name": "metrics", "port": 9104, "targetPort": 9104, "protocol": "TCP"}]
    assert stats["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                                                "prometheus.io/port": "9104", "prometheus.io/scheme": "http"}
    assert _stats(cluster.services(druid(manifest()), inputs(druid(manifest())))) is None


def test_the_generic_agent_gets_no_scrape_annotations():
    db, i = _monitored({"agent": "prometheus.io"})
    assert "annotations" not in _stats(cluster.services(db, i))["metadata"]


def test_the_stats_service_template_applies_to_the_stats_service_only():
    template = {"alias": "stats", "metadata": {"labels": {"team": "obs"}, "annotations": {"a": "b"}},
                "spec": {"type": "NodePort", "ports": [{"name": "metrics", "nodePort": 30104}]}}
    db, i = _monitored(serviceTemplates=[template])
    services = cluster.services(db, i)
    stats = _stats(services)
    assert stats["spec"]["type"] == "NodePort" and stats["spec"]["ports"][0]["nodePort"] == 30104
    assert stats["metadata"]["labels"]["team"] == "obs"
    assert stats["metadata"]["annotations"]["a"] == "b" and stats["metadata"]["annotations"]["prometheus.io/scrape"]
    assert all(s["spec"].get("type") != "NodePort" for s in services if s is not stats)


@pytest.mark.parametrize("agent", ["prometheus.io/builtin", "prometheus.io", "prometheus.io/operator"])
def test_admission_accepts_monas_agents(agent):
    assert validate_druid(manifest(monitor={"agent": agent})) == []


def test_prometheus_operator_gets_a_service_monitor_of_the_stats_service():
    db, i = _monitored({"agent": "prometheus.io/operator", "prometheus": {
        "serviceMonitor": {"labels": {"release": "prometheus"}, "interval": "10s"}}})
    sm = cluster.service_monitor(db, i)
    stats = _stats(cluster.services(db, i))
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["metadata"]["name"] == "druid-cluster-stats"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["metadata"]["ownerReferences"][0]["kind"] == "Druid"
    assert sm["spec"]["selector"]["matchLabels"].items() <= stats["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["demo"]}
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "10s"}]
    # the stats Service remembers that a ServiceMonitor is ours, and carries no scrape annotations
    assert stats["metadata"]["annotations"] == {monitoring.SERVICE_MONITOR_ANNOTATION: "druid-cluster-stats"}
    assert cluster.service_monitor(*_monitored()) is None
    assert cluster.service_monitor(druid(manifest()), inputs(druid(manifest()))) is None


def test_the_properties_builder_is_where_the_emitter_is_set():
    assert properties.metrics_properties(9200)["druid.emitter.http.recipientBaseUrl"] == \
        f"http://127.0.0.1:9200{exporter.EMITTER_PATH}"


def test_an_api_the_apiserver_does_not_serve_is_told_from_an_absent_object():
    """lightkube raises its HTTP client's error for a 404 without a Status body (no such API), ApiError for an absent
    object of a served API."""
    import httpx2 as httpx
    from lightkube.core.exceptions import ApiError

    from kubedruid.kube.client import is_not_found, is_not_served

    request = httpx.Request("GET", "https://apiserver/apis/monitoring.coreos.com/v1/namespaces/x/servicemonitors/y")
    page = httpx.Response(404, request=request, headers={"Content-Type": "text/plain"}, text="404 page not found")
    unserved = httpx.HTTPStatusError("404", request=request, response=page)
    status = httpx.Response(404, request=request, headers={"Content-Type": "application/json"},
                            json={"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                  "code": 404, "message": "not found"})
    absent = ApiError(request=request, response=status)
    assert is_not_served(unserved) and not is_not_found(unserved)
    assert is_not_found(absent) and not is_not_served(absent)
