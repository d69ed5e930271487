"""The handshake that shows what a pod serves (certs/served.py), against a local TLS server."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
from cryptography import x509

from kubedruid.certs import pki
from kubedruid.certs.served import HandshakeFailed, served_certificate

NAME = "druid-cluster-routers-0.druid-cluster-pods.demo.svc.cluster.local"


def _pki(tmp_path, cn="ca"):
    ca, key = pki.make_ca(cn, "kubedb")
    leaf = pki.make_leaf(ca, key, x509.Name([]), server=True, dns=[NAME], ips=[])
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem)
    return ca.cert_pem, x509.load_pem_x509_certificate(leaf.cert_pem)


async def _with_server(tmp_path, probe):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")

    async def handle(reader, writer):
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await probe(port)


def test_the_served_leaf_its_serial_and_issuer(tmp_path):
    ca_pem, leaf = _pki(tmp_path)
    served = asyncio.run(_with_server(tmp_path, lambda port: served_certificate("127.0.0.1", port, NAME, ca_pem)))
    assert served.serial == leaf.serial_number and served.issuer == "O=kubedb,CN=ca"
    assert served.not_after == leaf.not_valid_after_utc and len(served.fingerprint) == 64


@pytest.mark.parametrize("case", ["wrong name", "other CA"])
def test_a_leaf_that_a_peer_would_refuse_fails_the_handshake(tmp_path, case):
    ca_pem, _ = _pki(tmp_path)
    other_pem = pki.make_ca("other")[0].cert_pem
    name, trusted = ("other.demo.svc", ca_pem) if case == "wrong name" else (NAME, other_pem)
    with pytest.raises(HandshakeFailed, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(_with_server(tmp_path, lambda port: served_certificate("127.0.0.1", port, name, trusted)))


def test_nothing_listening_fails_at_once(tmp_path):
    ca_pem, _ = _pki(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HandshakeFailed, match="ConnectionRefused"):
        asyncio.run(served_certificate("127.0.0.1", port, NAME, ca_pem))
