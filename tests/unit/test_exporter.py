"""The metrics sidecar (kubedruid/exporter.py): Druid's HTTP emitter batches in, Prometheus' text format out, over
a real local HTTP server."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from kubedruid import exporter
from kubedruid.exporter import Registry

QUERY = {"feed": "metrics", "timestamp": "2026-12-05T00:00:00.000Z", "service": "druid/broker",
         "host": "druid-cluster-brokers-0:8082", "metric": "query/time", "value": 12, "dataSource": "tiny",
         "type": "timeseries", "id": "3f1c-query-id", "remoteAddress": "10.88.0.7", "hasFilters": "false"}


def test_metric_and_label_names_are_prometheus_names():
    assert exporter.metric_name("query/time") == "druid_query_time"
    assert exporter.metric_name("jvm/mem/used") == "druid_jvm_mem_used"
    assert exporter.metric_name("segment/scan/pending") == "druid_segment_scan_pending"
    assert exporter.label_name("dataSource") == "dataSource"
    assert exporter.label_name("9x-y") == "_9x_y"


def test_a_series_per_metric_and_dimensions_without_per_query_ones():
    r = Registry()
    r.record([QUERY, {**QUERY, "value": 30, "id": "another-query"}, {**QUERY, "dataSource": "other", "value": 5}])
    text = r.exposition()
    labels = ('dataSource="tiny",hasFilters="false",host="druid-cluster-brokers-0:8082",service="druid/broker",'
              'type="timeseries"')
    assert f"druid_query_time_sum{{{labels}}} 42" in text
    assert f"druid_query_time_count{{{labels}}} 2" in text
    assert f"druid_query_time_last{{{labels}}} 30" in text
    assert "# TYPE druid_query_time summary" in text and "# TYPE druid_query_time_last gauge" in text
    assert 'dataSource="other"' in text
    assert "3f1c-query-id" not in text and "remoteAddress" not in text
    assert "druid_exporter_events_received_total 3" in text


def test_alerts_and_malformed_events_make_no_series():
    r = Registry()
    r.record([{"feed": "alerts", "severity": "anomaly", "description": "x"},
              {"feed": "metrics", "metric": "query/time", "value": "12"}, "not an event",
              {"feed": "metrics", "metric": "query/time", "value": True}])
    text = r.exposition()
    assert "druid_query_time" not in text
    assert "druid_exporter_events_malformed_total 2" in text


def test_series_beyond_the_cap_are_dropped_and_counted():
    r = Registry(max_series=2)
    r.record([{**QUERY, "dataSource": f"ds{i}"} for i in range(5)])
    text = r.exposition()
    assert text.count("druid_query_time_count{") == 2
    assert "druid_exporter_events_dropped_total 3" in text


def test_label_values_are_escaped():
    r = Registry()
    r.record([{**QUERY, "dataSource": 'a"b\\c\nd'}])
    assert 'dataSource="a\\"b\\\\c\\nd"' in r.exposition()


def test_batches_as_json_array_or_one_event_per_line():
    assert exporter.parse_batch(json.dumps([QUERY, QUERY]).encode()) == [QUERY, QUERY]
    assert exporter.parse_batch((json.dumps(QUERY) + "\n" + json.dumps(QUERY) + "\n").encode()) == [QUERY, QUERY]
    assert exporter.parse_batch(b"") == []
    with pytest.raises(ValueError):
        exporter.parse_batch(b"[{")


@pytest.fixture
def server():
    registry = Registry()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), exporter.handler(registry))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_posted_events_are_scraped(server):
    assert _call(server, "POST", "/druid", json.dumps([QUERY]).encode()) == (200, "")
    status, text = _call(server, "GET", "/metrics")
    assert status == 200 and "druid_query_time_count{" in text


def test_a_malformed_batch_is_refused_and_counted(server):
    assert _call(server, "POST", "/druid", b"[{not json")[0] == 400
    assert "druid_exporter_events_malformed_total 1" in _call(server, "GET", "/metrics")[1]


def test_other_paths_are_not_found(server):
    assert _call(server, "GET", "/")[0] == 404
    assert _call(server, "POST", "/metrics", b"[]")[0] == 404
    assert _call(server, "GET", "/health")[0] == 200


def test_posts_from_other_hosts_are_forbidden():
    """A pod's exporter port is reachable from the network (for scraping): only its own Druid may post."""
    registry = Registry()
    handler = exporter.handler(registry)
    h = handler.__new__(handler)
    h.path, h.client_address = "/druid", ("10.88.0.9", 40000)
    replies = []
    h._reply = lambda code, *a: replies.append(code)
    h.do_POST()
    assert replies == [403] and registry.received == 0
