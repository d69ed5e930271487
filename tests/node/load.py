"""A Druid client as a user's application runs one: a SQL query every `interval` seconds through the router
Service, following the port (and scheme) the Service advertises and trusting the CA bundle it is given."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Endpoint:
    """Where the client sends its next query: re-read before every query, as a client following the Service would."""

    address: str  # the Service's ClusterIP
    port: int  # the port the Service advertises now
    server_name: str  # the Service's DNS name: what the certificate is checked against
    tls: bool  # the Service advertises an `https` port
    cafile: str | None  # the CA bundle the client trusts


@dataclass
class LoadReport:
    sent: int = 0
    failed: int = 0
    longest_gap_s: float = 0.0  # longest time between two successful answers
    errors: dict[str, int] = field(default_factory=dict)  # error kind → count
    schemes: dict[str, int] = field(default_factory=dict)  # http / https → queries answered
    slowest_s: float = 0.0  # the longest a query that was answered took
    slower_than_2s: int = 0
    # error kind → the first few: seconds since the load started, where the query went, what came back
    samples: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"sent {self.sent}, failed {self.failed}, longest gap {self.longest_gap_s:.1f} s, slowest answer "
                f"{self.slowest_s:.1f} s ({self.slower_than_2s} over 2 s), answered over {self.schemes}, "
                f"errors {self.errors}")


class _ServiceConnection(http.client.HTTPSConnection):
    """Dials the Service's address, verifies the certificate against the Service's name (SNI and Host too): what a
    client inside the cluster does after DNS answered, done from the host, whose resolver knows no cluster names."""

    def __init__(self, endpoint: Endpoint, timeout: float):
        ctx = ssl.create_default_context(cafile=endpoint.cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        super().__init__(endpoint.server_name, endpoint.port, context=ctx, timeout=timeout)
        self._address = endpoint.address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def sql_query(endpoint: Endpoint, sql: str, auth: tuple[str, str] | None, timeout: float = 5.0) -> list:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if endpoint.tls:
        conn: http.client.HTTPConnection = _ServiceConnection(endpoint, timeout)
    else:
        conn = http.client.HTTPConnection(endpoint.address, endpoint.port, timeout=timeout)
    try:
        conn.request("POST", "/druid/v2/sql", body=json.dumps({"query": sql}), headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise QueryFailed(f"HTTP {resp.status}", body[:300].decode(errors="replace"))
        return json.loads(body)
    finally:
        conn.close()


class QueryFailed(Exception):
    pass


def _kind(error: BaseException) -> str:
    if isinstance(error, QueryFailed):
        return error.args[0]
    return f"{type(error).__name__}: {str(error)[:80]}"


QUERY_TIMEOUT_S = 10.0  # what an application waits for an answer before it counts the query failed


class QueryLoad:
    """Runs in a thread until stopped; sends a query every `interval` (the next one at once when an answer took
    longer). Where to send it is looked up again every `refresh` seconds by a second thread, as a client's resolver
    and connection pool would follow a Service: the lookup (kubectl) never delays a query."""

    def __init__(self, endpoint: Callable[[], Endpoint], sql: str, auth: tuple[str, str] | None,
                 interval: float = 0.5, check: Callable[[list], bool] = bool, refresh: float = 1.0):
        self._lookup, self._sql, self._auth, self._interval, self._check = endpoint, sql, auth, interval, check
        self._refresh = refresh
        self._endpoint: Endpoint | None = None
        self.report = LoadReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="druid-query-load", daemon=True)
        self._follower = threading.Thread(target=self._follow, name="druid-endpoint", daemon=True)

    def __enter__(self) -> "QueryLoad":
        self._endpoint = self._lookup()
        self._follower.start()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(timeout=30)
        self._follower.join(timeout=30)
        return self.report

    def _follow(self) -> None:
        while not self._stop.wait(self._refresh):
            try:
                self._endpoint = self._lookup()
            except Exception:  # a kubectl hiccup: keep the last known endpoint
                pass

    def _run(self) -> None:
        """A query goes out every `interval` whatever the previous ones do (each in a thread of a small pool), as
        an application's requests keep arriving; each may take up to QUERY_TIMEOUT_S, a client's usual patience."""
        from concurrent.futures import ThreadPoolExecutor

        lock = threading.Lock()
        last_ok = [time.monotonic()]
        load_started = time.monotonic()

        def one(endpoint: Endpoint) -> None:
            started = time.monotonic()
            try:
                rows = sql_query(endpoint, self._sql, self._auth, timeout=QUERY_TIMEOUT_S)
                if not self._check(rows):
                    raise ValueError(f"unexpected answer {rows!r:.80}")
            except Exception as e:  # every failure is a data point: counted by kind, the load goes on
                with lock:
                    self.report.failed += 1
                    kind = _kind(e)
                    self.report.errors[kind] = self.report.errors.get(kind, 0) + 1
                    detail = e.args[1] if isinstance(e, QueryFailed) and len(e.args) > 1 else str(e)
                    samples = self.report.samples.setdefault(kind, [])
                    if len(samples) < 3:
                        samples.append(f"{started - load_started:.1f} s, {'https' if endpoint.tls else 'http'}://"
                                       f"{endpoint.address}:{endpoint.port}: {detail[:300]}")
                return
            now = time.monotonic()
            with lock:
                self.report.longest_gap_s = max(self.report.longest_gap_s, now - last_ok[0])
                last_ok[0] = max(last_ok[0], now)
                self.report.slowest_s = max(self.report.slowest_s, now - started)
                self.report.slower_than_2s += (now - started) > 2.0
                scheme = "https" if endpoint.tls else "http"
                self.report.schemes[scheme] = self.report.schemes.get(scheme, 0) + 1

        next_at = time.monotonic()
        with ThreadPoolExecutor(max_workers=int(QUERY_TIMEOUT_S / self._interval) + 2) as pool:
            while not self._stop.is_set():
                with lock:
                    self.report.sent += 1
                pool.submit(one, self._endpoint)
                next_at += self._interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        self.report.longest_gap_s = max(self.report.longest_gap_s, time.monotonic() - last_ok[0])
