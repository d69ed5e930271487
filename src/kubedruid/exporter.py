"""The metrics sidecar of a monitored Druid pod (`spec.monitor`): Druid's HTTP emitter posts its metric events to
`POST /druid` on the loopback address; Prometheus scrapes `GET /metrics` through the Druid's stats Service.

    python3 exporter.py --port 9104

Druid's own Prometheus emitter is a contrib extension that the registries here do not serve (decision 0018), so
the pod runs this instead: the core HTTP emitter is in every Druid image. Standard library only, so the image is
Debian's python3 and this file.

Each metric event (`{"feed": "metrics", "service": "druid/broker", "metric": "query/time", "value": 12, ...}`)
updates one series, named `druid_<metric>` (non-alphanumerics → `_`) and labelled with the event's service, host
and string dimensions. A series is exposed as a summary (`_sum` and `_count` of every value received) and a gauge
of its last value (`_last`): Druid does not say which metrics are counters, timers or gauges, and each of those
reads naturally from one of the three. At most MAX_SERIES series are kept; events of others are counted as
dropped.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_PORT = 9104  # KubeDB's exporter port for Druid
EMITTER_PATH = "/druid"
METRICS_PATH = "/metrics"
MAX_SERIES = 20_000
MAX_BODY = 16 * 1024 * 1024  # the HTTP emitter's batches are at most 5 MiB by default
# Dimensions that name one query or task: as labels they would make a series per query.
UNBOUNDED_DIMENSIONS = frozenset({"id", "queryId", "subQueryId", "sqlQueryId", "taskId", "interval", "remoteAddress",
                                  "context", "segment", "implicitTimeQuery"})
_NAME = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(metric: str) -> str:
    return "druid_" + _NAME.sub("_", metric).strip("_")


def label_name(dimension: str) -> str:
    name = _NAME.sub("_", dimension)
    return name if not name[:1].isdigit() else "_" + name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels_of(event: dict) -> tuple[tuple[str, str], ...]:
    """The event's service, host and string dimensions as sorted (label, value) pairs."""
    skip = {"feed", "timestamp", "metric", "value"} | UNBOUNDED_DIMENSIONS
    out = {}
    for key, value in event.items():
        if key in skip:
            continue
        if isinstance(value, list):  # Druid sends some dimensions as one-element arrays
            value = ",".join(str(v) for v in value)
        if isinstance(value, (str, int, bool)) and not isinstance(value, float):
            out[label_name(key)] = str(value)
    return tuple(sorted(out.items()))


@dataclass
class Series:
    total: float = 0.0
    count: int = 0
    last: float = 0.0


class Registry:
    """The series the events made, safe to update and read from the server's threads."""

    def __init__(self, max_series: int = MAX_SERIES):
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
        self._lock = threading.Lock()
        self._max = max_series
        self.received = 0
        self.dropped = 0
        self.malformed = 0

    def record(self, events: list) -> None:
        with self._lock:
            for event in events:
                if not isinstance(event, dict) or event.get("feed", "metrics") != "metrics":
                    continue  # alerts and request logs carry no metric
                value, metric = event.get("value"), event.get("metric")
                if not isinstance(metric, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
                    self.malformed += 1
                    continue
                key = (metric_name(metric), labels_of(event))
                series = self._series.get(key)
                if series is None:
                    if len(self._series) >= self._max:
                        self.dropped += 1
                        continue
                    series = self._series[key] = Series()
                series.total += value
                series.count += 1
                series.last = value
                self.received += 1

    def exposition(self) -> str:
        """Prometheus' text format (version 0.0.4)."""
        with self._lock:
            by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], Series]]] = {}
            for (name, labels), series in self._series.items():
                by_name.setdefault(name, []).append((labels, Series(series.total, series.count, series.last)))
            counters = {"received": self.received, "dropped": self.dropped, "malformed": self.malformed}
        lines = []
        for name in sorted(by_name):
            lines += [f"# TYPE {name} summary"]
            for labels, s in sorted(by_name[name], key=lambda item: item[0]):
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                braces = f"{{{text}}}" if text else ""
                lines += [f"{name}_sum{braces} {s.total!r}", f"{name}_count{braces} {s.count}"]
            lines += [f"# TYPE {name}_last gauge"]
            for labels, s in sorted(by_name[name], key=lambda item: item[0]):
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines += [f"{name}_last{{{text}}} {s.last!r}" if text else f"{name}_last {s.last!r}"]
        for what, value in counters.items():
            lines += [f"# TYPE druid_exporter_events_{what}_total counter",
                      f"druid_exporter_events_{what}_total {value}"]
        return "\n".join(lines) + "\n"


def parse_batch(body: bytes) -> list:
    """The HTTP emitter's batch: a JSON array (its default), or one JSON object per line (NEWLINES)."""
    text = body.decode()
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("["):
        batch = json.loads(stripped)
        return batch if isinstance(batch, list) else []
    return [json.loads(line) for line in stripped.splitlines() if line.strip()]


def handler(registry: Registry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "kubedruid-druid-exporter"

        def _reply(self, code: int, body: bytes = b"", content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == METRICS_PATH:
                self._reply(200, registry.exposition().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif self.path == "/health":
                self._reply(200, b"ok\n")
            else:
                self._reply(404)

        def do_POST(self) -> None:  # noqa: N802
            # Only the Druid process of this pod may post: the port is reachable from the network for scraping.
            if self.path != EMITTER_PATH or not self.client_address[0].startswith("127."):
                self._reply(403 if self.path == EMITTER_PATH else 404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(413)
                return
            try:
                registry.record(parse_batch(self.rfile.read(length)))
            except (ValueError, UnicodeDecodeError):
                registry.malformed += 1
                self._reply(400)
                return
            self._reply(200)

        def log_message(self, format: str, *args) -> None:  # one line per scrape would drown the pod's log
            pass

    return Handler


def _exit(signum, frame) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Druid HTTP emitter events as Prometheus metrics")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    # As a container's first process it would ignore SIGTERM, and the pod would wait out its grace period.
    signal.signal(signal.SIGTERM, _exit)
    server = ThreadingHTTPServer(("", args.port), handler(Registry()))
    server.daemon_threads = True
    print(f"druid-exporter: {EMITTER_PATH} (loopback) and {METRICS_PATH} on port {args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
