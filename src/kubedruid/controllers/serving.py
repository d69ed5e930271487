"""The operator's HTTP endpoints: /healthz (the process is alive), /readyz (its controllers run and, with leader
election, it leads), /metrics (Prometheus)."""

from __future__ import annotations

import datetime
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily

from kubedruid.certs import inventory
from kubedruid.kube.conditions import parse_rfc3339


class CertificateExpiry:
    """Seconds until each Druid certificate's notAfter, computed at scrape time from what cert-manager reports in
    the Certificates' status (fed by the operator's Certificate watch)."""

    def __init__(self):
        self.not_after: dict[tuple[str, str, str], float] = {}  # (namespace, druid, certificate) -> epoch seconds

    def observe(self, namespace: str, druid: str, certificate: str, not_after: str | None, deleted: bool) -> None:
        key = (namespace, druid, certificate)
        if deleted or not not_after:
            self.not_after.pop(key, None)
            return
        parsed = parse_rfc3339(not_after)
        self.not_after[key] = parsed.timestamp()

    def collect(self):
        family = GaugeMetricFamily("kubedruid_certificate_expiry_seconds",
                                   "Seconds until the certificate's notAfter (negative: expired)",
                                   labels=["namespace", "druid", "certificate"])
        now = time.time()
        for (ns, druid, cert), not_after in sorted(self.not_after.items()):
            family.add_metric([ns, druid, cert], not_after - now)
        yield family


CERTIFICATE_EXPIRY = CertificateExpiry()
REGISTRY.register(CERTIFICATE_EXPIRY)


class ServedCertificates:
    """What each pod really serves (the renewal check's handshakes, certs/inventory.py): seconds until the served
    certificate's notAfter, per pod, and whether any pod serves a certificate other than the one issued."""

    def __init__(self):
        self.entries: dict[tuple[str, str], list[dict]] = {}  # (namespace, druid) -> status.servedCertificates
        self.mismatch: dict[tuple[str, str], bool] = {}

    def observe(self, namespace: str, druid: str, entries: list[dict] | None, mismatch: bool) -> None:
        if entries is not None:
            self.entries[(namespace, druid)] = entries
        self.mismatch[(namespace, druid)] = mismatch

    def forget(self, namespace: str, druid: str) -> None:
        self.entries.pop((namespace, druid), None)
        self.mismatch.pop((namespace, druid), None)

    def collect(self):
        expiry = GaugeMetricFamily("kubedruid_served_certificate_expiry_seconds",
                                   "Seconds until the notAfter of the certificate the pod serves (a handshake with "
                                   "its TLS port; negative: expired)", labels=["namespace", "druid", "pod"])
        now = datetime.datetime.now(datetime.timezone.utc)
        for (ns, druid), entries in sorted(self.entries.items()):
            for e in entries:
                if (left := inventory.expiry_seconds(e, now)) is not None:
                    expiry.add_metric([ns, druid, e["pod"]], left)
        yield expiry
        mismatch = GaugeMetricFamily("kubedruid_served_certificate_mismatch",
                                     "1 while a pod serves a certificate other than the one cert-manager issued",
                                     labels=["namespace", "druid"])
        for (ns, druid), value in sorted(self.mismatch.items()):
            mismatch.add_metric([ns, druid], 1.0 if value else 0.0)
        yield mismatch


SERVED_CERTIFICATES = ServedCertificates()
REGISTRY.register(SERVED_CERTIFICATES)


class Probes:
    def __init__(self):
        self.ready = False

    async def serve(self, host: str, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/healthz", lambda _: web.Response(text="ok"))
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner

    async def _readyz(self, _request) -> web.Response:
        return web.Response(text="ready") if self.ready else web.Response(status=503, text="not ready")

    async def _metrics(self, _request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
