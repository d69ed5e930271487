"""The CA bundle (certs/bundle.py): what Druid's internal client loads, and what clients read."""

from __future__ import annotations

import subprocess

import pytest
from cryptography import x509

from kubedruid.certs import bundle, pki


def _ca(cn: str) -> x509.Certificate:
    pair, _ = pki.make_ca(cn, "kubedb")
    return x509.load_pem_x509_certificate(pair.cert_pem)


OLD, NEW = _ca("ca"), _ca("ca-updated")


def test_merged_keeps_each_ca_once_in_order():
    assert bundle.merged([OLD], [NEW, OLD], [NEW]) == [OLD, NEW]
    assert bundle.same([OLD, NEW], [NEW, OLD]) and not bundle.same([OLD], [OLD, NEW])


def test_ca_crt_round_trips():
    data = bundle.render([OLD, NEW])
    assert bundle.parse(data["ca.crt"]) == [OLD, NEW]
    assert bundle.parse(b"") == [] and bundle.parse(None) == []


def test_java_reads_the_truststore_without_a_password(tmp_path):
    """Druid loads it with KeyStore.load(stream, null) when no trustStorePassword is set: keytool without a
    password does the same, and lists both CAs as trusted certificates."""
    path = tmp_path / "truststore.p12"
    path.write_bytes(bundle.render([OLD, NEW])["truststore.p12"])
    out = subprocess.run(["keytool", "-list", "-keystore", str(path), "-storetype", "pkcs12"], input="",
                         capture_output=True, text=True, check=True).stdout
    assert out.count("trustedCertEntry") == 2
    for ca in (OLD, NEW):
        fp = ":".join(f"{b:02X}" for b in bytes.fromhex(bundle.fingerprint(ca)))
        assert fp in out


def test_describe_names_the_subject_and_a_fingerprint():
    assert bundle.describe(NEW) == f"O=kubedb,CN=ca-updated (sha256 {bundle.fingerprint(NEW)[:12]})"


def test_an_empty_bundle_is_refused():
    with pytest.raises(ValueError):
        bundle.render([])
