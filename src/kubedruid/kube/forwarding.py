"""Whether kube-proxy forwards a Service's ports yet, seen from where the operator runs: an answer through the
Service's ClusterIP and port that only a pod gives. An EndpointSlice listing a ready endpoint says only that
kube-proxy may forward it; on a busy node kube-proxy programmed a port added seconds earlier later than the 2 s we
used to allow (measured on the real node: a client that followed the Service to it got "No route to host").

A TCP connection alone proves nothing: where kube-proxy has no rule, the connection goes wherever the host routes
it, and a proxy on the way may accept it (these machines' egress proxy accepts any address). So the check is an
answer only a pod gives: on a TLS port a handshake verified against the CA bundle for the Service's name, on a
plaintext port 200 to `GET <path>`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from kubedruid.certs.served import client_context
from kubedruid.specs import names

# A forwarded port on a live pod answers a health check within a fraction of a second, even on a busy node.
CHECK_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class ServicePort:
    address: str  # the Service's ClusterIP
    port: int
    label: str  # <service>:<port name>, for messages
    server_name: str | None = None  # a TLS port: the name the pod's certificate must be valid for


def service_ports(service: str, namespace: str, cluster_ip: str | None, ports: list[dict],
                  tls_port_name: str) -> list[ServicePort]:
    """A Service's `ports` at its ClusterIP, as a client reaches them: the port named `tls_port_name` over TLS for
    the Service's DNS name. None without a ClusterIP (not there yet, or a governing Service: DNS only)."""
    if not cluster_ip or cluster_ip == "None":
        return []
    server_name = names.service_fqdn(service, namespace)
    return [ServicePort(cluster_ip, port["port"], f"{service}:{port['name']}",
                        server_name if port["name"] == tls_port_name else None) for port in ports]


async def answers(target: ServicePort, path: str, ca_pem: bytes | None, timeout: float = CHECK_TIMEOUT_S,
                  handshake_suffices: bool = True) -> bool:
    """Whether a pod answers through the address within `timeout`: on a TLS port a handshake verified against the
    bundle for the Service's name (only a pod holds that key; whatever it then requires of clients, client
    certificates included, is its own business), on a plaintext port `GET path` answered 200. Without
    `handshake_suffices`, a TLS port too must answer 200 to `GET path` (whether Druid is healthy, not only there)."""
    tls = target.server_name is not None
    if tls and not ca_pem:
        return False
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                target.address, target.port, ssl=client_context(ca_pem) if tls else None,
                server_hostname=target.server_name if tls else None)
            try:
                if tls and handshake_suffices:
                    return True
                host = target.server_name or target.address  # Jetty refuses a Host that is not the SNI name
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                status = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError, ssl.SSLError, ValueError):
        return False
    parts = status.split()
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1] == b"200"


def turn_left(since: float, now: float, turn: float) -> float:
    """Seconds of kube-proxy's `turn` still to wait at `now`, counted from `since` (the moment the endpoints it
    forwards to were seen ready): 0 once it is over."""
    return max(0.0, turn - (now - since))


async def unforwarded(targets: Iterable[ServicePort], path: str, ca_pem: bytes | None) -> list[str] | None:
    """The labels of the ports whose health check is not answered; None when none is: from here Service addresses
    cannot be observed at all (no kube-proxy on this host, as on kwok, or a network policy), which says nothing
    about the ports."""
    targets = list(targets)
    answered = await asyncio.gather(*(answers(t, path, ca_pem) for t in targets))
    if not any(answered):
        return None
    return [t.label for t, ok in zip(targets, answered) if not ok]
