"""kube/forwarding.py against local servers: a port is forwarded when a pod answers through it (a plaintext health
check answered 200, a TLS handshake verified for the Service's name); a proxy's answer, a refusal or a wrong
certificate is not, and when nothing answers at all the ports cannot be judged from here."""

from __future__ import annotations

import asyncio
import socket
import ssl

from cryptography import x509

from kubedruid.certs import pki
from kubedruid.kube import forwarding
from kubedruid.kube.forwarding import ServicePort

SERVICE = "druid-cluster-routers.demo.svc.cluster.local"
HEALTH = "/status/health"
hosts: list[bytes] = []


def _closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tls_context(tmp_path, dns: str) -> tuple[ssl.SSLContext, bytes]:
    ca, key = pki.make_ca("ca", "kubedb")
    leaf = pki.make_leaf(ca, key, x509.Name([]), server=True, dns=[dns], ips=[])
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return ctx, ca.cert_pem


async def _serving(check, status: bytes = b"200 OK", tls: ssl.SSLContext | None = None):
    """Runs `check(port)` while a server answers every request with `status` (and records the request lines, and
    the Host headers in `hosts`)."""
    requests: list[bytes] = []

    async def handle(reader, writer):
        requests.append(await reader.readline())
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"host:"):
                hosts.append(line.split(b":", 1)[1].strip())
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 4\r\n\r\ntrue")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    async with server:
        result = await check(server.sockets[0].getsockname()[1])
    return result, requests


def test_the_health_check_answered_through_the_address_is_forwarding():
    ok, requests = asyncio.run(_serving(lambda port: forwarding.answers(ServicePort("127.0.0.1", port, "s:http"),
                                                                        HEALTH, None)))
    assert ok and requests == [b"GET /status/health HTTP/1.0\r\n"]


def test_a_proxy_that_accepts_any_address_is_not_forwarding():
    # what these machines' egress proxy answers for an address kube-proxy does not forward
    ok, _ = asyncio.run(_serving(lambda port: forwarding.answers(ServicePort("127.0.0.1", port, "s:http"),
                                                                 HEALTH, None), status=b"426 Upgrade Required"))
    assert not ok


def test_a_tls_port_is_checked_against_the_bundle_for_the_service_name(tmp_path):
    ctx, ca_pem = _tls_context(tmp_path, SERVICE)
    other_ca = pki.make_ca("other")[0].cert_pem

    def check(server_name, trusted):
        return asyncio.run(_serving(lambda port: forwarding.answers(
            ServicePort("127.0.0.1", port, "s:https", server_name), HEALTH, trusted), tls=ctx))[0]

    assert check(SERVICE, ca_pem)
    # the verified handshake is the proof: what the pod then answers (401, a client certificate required) is not
    assert asyncio.run(_serving(lambda port: forwarding.answers(
        ServicePort("127.0.0.1", port, "s:https", SERVICE), HEALTH, ca_pem), status=b"401 Unauthorized", tls=ctx))[0]
    assert not check(SERVICE, other_ca)
    assert not check("other.demo.svc.cluster.local", ca_pem)
    assert not check(SERVICE, None)  # no bundle: nothing to verify it with


def test_unforwarded_names_the_ports_not_answered_while_others_are():
    closed = _closed_port()
    missing, _ = asyncio.run(_serving(lambda port: forwarding.unforwarded(
        [ServicePort("127.0.0.1", port, "svc:http"), ServicePort("127.0.0.1", closed, "svc:https")], HEALTH, None)))
    assert missing == ["svc:https"]


def test_nothing_answered_means_forwarding_cannot_be_observed():
    closed = _closed_port()
    assert asyncio.run(forwarding.unforwarded([ServicePort("127.0.0.1", closed, "svc:http")], HEALTH, None)) is None
    assert asyncio.run(forwarding.unforwarded([], HEALTH, None)) is None
    refused, _ = asyncio.run(_serving(lambda port: forwarding.unforwarded(
        [ServicePort("127.0.0.1", port, "svc:http")], HEALTH, None), status=b"426 Upgrade Required"))
    assert refused is None


def test_the_druid_health_check_needs_200_over_tls_too_and_names_the_service_as_host(tmp_path):
    """controllers/health.py asks whether Druid is healthy, not only there: over TLS too, 200 to GET, with the
    Service's name as Host (Jetty refuses a request whose Host is not the SNI name)."""
    ctx, ca_pem = _tls_context(tmp_path, SERVICE)
    target = ServicePort("127.0.0.1", 0, "s:https", SERVICE)

    def check(status):
        hosts.clear()
        return asyncio.run(_serving(lambda port: forwarding.answers(
            ServicePort(target.address, port, target.label, SERVICE), HEALTH, ca_pem, timeout=2,
            handshake_suffices=False), status=status, tls=ctx))

    ok, requests = check(b"200 OK")
    assert ok and requests == [b"GET /status/health HTTP/1.0\r\n"] and hosts == [SERVICE.encode()]
    assert not check(b"503 Service Unavailable")[0]


def test_a_services_ports_are_reached_at_its_cluster_ip_the_tls_one_for_its_dns_name():
    ports = [{"name": "http", "port": 8888}, {"name": "https", "port": 9088}]
    assert forwarding.service_ports("druid-cluster-routers", "demo", "10.96.0.7", ports, "https") == [
        ServicePort("10.96.0.7", 8888, "druid-cluster-routers:http"),
        ServicePort("10.96.0.7", 9088, "druid-cluster-routers:https", SERVICE)]
    assert forwarding.service_ports("druid-cluster-pods", "demo", "None", ports, "https") == []
    assert forwarding.service_ports("druid-cluster-routers", "demo", None, ports, "https") == []


def test_kube_proxys_turn_counts_from_when_the_endpoints_were_seen_ready():
    """Where forwarding cannot be observed, the op waits what is left of kube-proxy's turn after its failed check,
    not the whole turn again."""
    assert forwarding.turn_left(since=100.0, now=100.0, turn=2.0) == 2.0
    assert abs(forwarding.turn_left(since=100.0, now=101.25, turn=2.0) - 0.75) < 1e-9
    assert forwarding.turn_left(since=100.0, now=103.0, turn=2.0) == 0.0
