"""The admission webhook's server (controllers/admission.py): registered by a Service reference with the mounted
certificate's CA, or by URL with a CA of its own; what it serves is checked with a real TLS client."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import pytest

from kubedruid.certs.pki import make_serving_pair
from kubedruid.controllers.admission import WebhookService, mounted_certificate, webhook_server


def test_a_service_reference_is_namespace_name_and_port_443_by_default():
    assert WebhookService.parse("kubedruid-system/kubedruid") == WebhookService("kubedruid-system", "kubedruid", 443)
    assert WebhookService.parse("ops/webhook:8443") == WebhookService("ops", "webhook", 8443)


@pytest.mark.parametrize("text", ["kubedruid", "/name", "ns/", "ns/a/b", "ns/name:https"])
def test_a_malformed_service_reference_is_refused_naming_the_form(text):
    with pytest.raises(ValueError, match="is not NAMESPACE/NAME or NAMESPACE/NAME:PORT"):
        WebhookService.parse(text)


def _mount(folder: Path, service: str) -> bytes:
    """What the kubelet mounts from a cert-manager Secret: tls.crt, tls.key, ca.crt."""
    ca, leaf = make_serving_pair(service, dns=[service], ips=[])
    folder.mkdir()
    (folder / "tls.crt").write_bytes(leaf.cert_pem)
    (folder / "tls.key").write_bytes(leaf.key_pem)
    (folder / "ca.crt").write_bytes(ca.cert_pem)
    return ca.cert_pem


def test_a_mounted_certificate_must_hold_all_three_files(tmp_path):
    _mount(tmp_path / "mounted", "kubedruid.ops.svc")
    (tmp_path / "mounted" / "ca.crt").unlink()
    with pytest.raises(FileNotFoundError, match="lacks .*ca.crt"):
        mounted_certificate(tmp_path / "mounted")


def _first_config_and_handshake(server, service_name: str, ca_pem: bytes) -> tuple[dict, str]:
    """The client config the server registers first, and the subject its port presents to a client that trusts
    `ca_pem` and verifies `service_name`."""

    async def run():
        configs = server(lambda *a, **k: None)
        config = await configs.__anext__()
        context = ssl.create_default_context(cadata=ca_pem.decode())
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context,
                                                  server_hostname=service_name)
        subject = dict(pair[0] for pair in writer.get_extra_info("peercert")["subject"])["commonName"]
        writer.close()
        await configs.aclose()
        return config, subject

    return asyncio.run(run())


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_with_a_mounted_certificate_and_a_service_it_registers_the_service_and_the_mounted_ca(tmp_path):
    ca_pem = _mount(tmp_path / "mounted", "kubedruid.ops.svc")
    server = webhook_server("127.0.0.1", _free_port(), cert_dir=tmp_path / "mounted",
                            service=WebhookService("ops", "kubedruid"))
    config, subject = _first_config_and_handshake(server, "kubedruid.ops.svc", ca_pem)
    assert config == {"service": {"namespace": "ops", "name": "kubedruid", "port": 443},
                      "caBundle": base64.b64encode(ca_pem).decode()}
    assert subject == "kubedruid.ops.svc"


def test_without_a_mounted_certificate_it_makes_a_ca_for_the_services_name(tmp_path):
    server = webhook_server("127.0.0.1", _free_port(), service=WebhookService("ops", "kubedruid"))
    ca_pem = server.cadata
    config, subject = _first_config_and_handshake(server, "kubedruid.ops.svc", ca_pem)
    assert config["service"] == {"namespace": "ops", "name": "kubedruid", "port": 443}
    assert base64.b64decode(config["caBundle"]) == ca_pem


def test_its_throw_away_key_is_left_nowhere_on_disk(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server = webhook_server("127.0.0.1", _free_port(), host="localhost")
    _first_config_and_handshake(server, "localhost", server.cadata)
    assert list(tmp_path.iterdir()) == []  # CI's machine had 712 folders, each with a private key, left by operators


def test_without_a_service_it_registers_its_url(tmp_path):
    ca_pem = _mount(tmp_path / "mounted", "localhost")
    port = _free_port()
    server = webhook_server("127.0.0.1", port, host="localhost", cert_dir=tmp_path / "mounted")
    config, _ = _first_config_and_handshake(server, "localhost", ca_pem)
    assert config == {"url": f"https://localhost:{port}", "caBundle": base64.b64encode(ca_pem).decode()}


def test_a_renewed_mounted_certificate_is_served_and_registered_without_a_restart(tmp_path, monkeypatch):
    from kubedruid.controllers import admission
    monkeypatch.setattr(admission, "CERT_CHECK_INTERVAL_S", 0.05)
    first_ca = _mount(tmp_path / "mounted", "kubedruid.ops.svc")
    server = webhook_server("127.0.0.1", _free_port(), cert_dir=tmp_path / "mounted",
                            service=WebhookService("ops", "kubedruid"))

    async def run():
        configs = server(lambda *a, **k: None)
        first = await configs.__anext__()
        following = asyncio.ensure_future(configs.__anext__())  # kopf asks for the next at once, as here
        await asyncio.sleep(0.2)
        renewed_ca, leaf = make_serving_pair("kubedruid.ops.svc", dns=["kubedruid.ops.svc"], ips=[])
        for name, pem in (("tls.key", leaf.key_pem), ("tls.crt", leaf.cert_pem), ("ca.crt", renewed_ca.cert_pem)):
            (tmp_path / "mounted" / name).write_bytes(pem)
        second = await asyncio.wait_for(following, 10)
        context = ssl.create_default_context(cadata=renewed_ca.cert_pem.decode())
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context,
                                                  server_hostname="kubedruid.ops.svc")
        writer.close()
        await configs.aclose()
        return first, second, renewed_ca.cert_pem

    first, second, renewed = asyncio.run(run())
    assert base64.b64decode(first["caBundle"]) == first_ca
    assert base64.b64decode(second["caBundle"]) == renewed  # the handshake above verified against it too
