"""Certificates for the real-Druid tier, issued by the real cert-manager in the local control plane.

The Certificate objects are kubedruid's own (`kubedruid.specs.cluster.certificates`), for the same Druid object
whose properties the processes load; only their ownerReferences are dropped (no Druid object exists in the plane,
and the garbage collector would delete children of a missing owner). A CA Issuer and the keystore-credential
Secret (`<db>-keystore-cred`, key `keystore_password`) are created in a namespace of the test's own.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

from kubedruid.api import Druid
from kubedruid.druid import tls as druid_tls
from kubedruid.specs import cluster

Certificate = create_namespaced_resource("cert-manager.io", "v1", "Certificate", "certificates")
Issuer = create_namespaced_resource("cert-manager.io", "v1", "Issuer", "issuers")

FILES = ("keystore.jks", "truststore.jks", "ca.crt", "tls.crt")


def make_ca(common_name: str) -> tuple[bytes, bytes]:
    """A throw-away CA: (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kubedruid-druid-tests")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@dataclass(frozen=True)
class Issued:
    files: dict[str, bytes]  # keystore.jks, truststore.jks, ca.crt, tls.crt (as in the Secret)
    password: str  # the keystore-cred Secret's keystore_password

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.files["tls.crt"])[0]


def _condition(obj, type_):
    for c in (obj.get("status") or {}).get("conditions", []):
        if c["type"] == type_:
            return c
    return None


class CertManager:
    """Issues a Druid's certificates in a namespace of its own; `close()` deletes the namespace."""

    def __init__(self, kubeconfig: str, namespace: str):
        self.kube = Client(KubeConfig.from_file(kubeconfig), field_manager="kubedruid-druid-tests")
        self.namespace = namespace
        self.cas: dict[str, bytes] = {}  # issuer name -> CA certificate PEM
        self.kube.create(Namespace(metadata=ObjectMeta(name=namespace)))

    def close(self) -> None:
        try:
            self.kube.delete(Namespace, self.namespace)
        except ApiError:
            pass

    def create_ca_issuer(self, name: str) -> bytes:
        cert_pem, key_pem = make_ca(f"{name} ({self.namespace})")
        self.kube.create(Secret(metadata=ObjectMeta(name=f"{name}-ca"), type="kubernetes.io/tls",
                                stringData={"tls.crt": cert_pem.decode(), "tls.key": key_pem.decode()}),
                         namespace=self.namespace)
        self.kube.create(Issuer(metadata=ObjectMeta(name=name), spec={"ca": {"secretName": f"{name}-ca"}}),
                         namespace=self.namespace)
        self.cas[name] = cert_pem
        return cert_pem

    def create_keystore_cred(self, db: Druid) -> str:
        password = secrets.token_urlsafe(18)
        self.kube.create(Secret(metadata=ObjectMeta(name=db.spec.keystoreCredSecret.name),
                                stringData={druid_tls.KEYSTORE_PASSWORD_KEY: password,
                                            druid_tls.TRUSTSTORE_PASSWORD_KEY: password}),
                         namespace=self.namespace)
        return password

    def _certificates(self, db: Druid, inputs: cluster.Inputs) -> list[dict]:
        out = []
        for c in cluster.certificates(db, inputs):
            c["metadata"].pop("ownerReferences", None)
            out.append(c)
        return out

    def apply(self, db: Druid, inputs: cluster.Inputs) -> None:
        """Server-side apply of kubedruid's Certificates (create, or change e.g. the issuer)."""
        for c in self._certificates(db, inputs):
            self.kube.apply(Certificate.from_dict(c), namespace=self.namespace, force=True)

    def _secret_name(self, db: Druid) -> str:
        return cluster.server_cert_secret(db)

    def _cert_name(self, db: Druid) -> str:
        return f"{db.metadata.name}-{druid_tls.SERVER_ALIAS}-cert"

    def _ready(self, name: str):
        cert = self.kube.get(Certificate, name, namespace=self.namespace)
        ready = _condition(cert, "Ready")
        if ready and ready["status"] == "True" and ready.get("observedGeneration") == cert.metadata.generation \
                and not _condition(cert, "Issuing"):
            return cert
        return None

    def read(self, db: Druid, password: str) -> Issued:
        secret = self.kube.get(Secret, self._secret_name(db), namespace=self.namespace)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        missing = [f for f in FILES if f not in data]
        if missing:
            raise AssertionError(f"Secret {self._secret_name(db)} lacks {missing}")
        return Issued({f: data[f] for f in FILES}, password)

    def wait_issued(self, db: Druid, password: str, *, timeout: float = 90,
                    accept=lambda issued: True, what: str = "the server certificate") -> Issued:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                if self._ready(self._cert_name(db)):
                    issued = self.read(db, password)
                    if accept(issued):
                        return issued
            except (ApiError, AssertionError) as e:
                last = e
            time.sleep(0.3)
        cert = self.kube.get(Certificate, self._cert_name(db), namespace=self.namespace)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} "
                             f"(Certificate status: {cert.get('status')}; last error: {last})")

    def issue(self, db: Druid, inputs: cluster.Inputs) -> Issued:
        password = self.create_keystore_cred(db)
        self.apply(db, inputs)
        return self.wait_issued(db, password)

    def renew(self, db: Druid, issued: Issued) -> Issued:
        """What `cmctl renew` does: set Issuing=True; wait for a certificate with a new serial."""
        name = self._cert_name(db)
        cert = self.kube.get(Certificate, name, namespace=self.namespace)
        conditions = (cert.get("status") or {}).get("conditions", []) + [{
            "type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
            "message": "renewal requested by the real-Druid tier",
            "lastTransitionTime": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}]
        self.kube.patch(Certificate.Status, name, {"status": {"conditions": conditions}}, namespace=self.namespace,
                        patch_type=PatchType.MERGE)
        old = issued.leaf.serial_number
        return self.wait_issued(db, issued.password, accept=lambda i: i.leaf.serial_number != old,
                                what="a renewed certificate with a new serial")
