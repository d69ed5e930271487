"""Where Druid finds its TLS material in a pod, the names KubeDB uses for it, and the TLS modes a Druid passes
through when TLS is added or removed without interrupting it (spec druid-tls §3.3)."""

from __future__ import annotations

import enum

CERT_DIR = "/opt/druid/ssl"  # the server certificate Secret (keystore.jks, truststore.jks, tls.crt, ca.crt)
KEYSTORE_PATH = f"{CERT_DIR}/keystore.jks"
KEYSTORE_TYPE = "jks"
# The CA bundle Secret (certs/bundle.py): what the internal client trusts, composed by the operator so that it can
# hold two CAs during a change of CA (cert-manager's truststore.jks holds one). No password: see certs/bundle.py.
TRUST_DIR = "/opt/druid/trust"
TRUSTSTORE_PATH = f"{TRUST_DIR}/truststore.p12"
TRUSTSTORE_TYPE = "pkcs12"
CERT_ALIAS = "druid"  # the JKS alias cert-manager writes, and druid.server.https.certAlias

# Hot reload of the server keystore (druid-tls §2): Druid >= 25 rescans the keystore's directory every few seconds.
# Jetty 9.4 does not follow the symlinks of a Secret volume, so a small sidecar copies the keystore from the Secret
# into LIVE_DIR as a regular file, replaced by a rename whenever the Secret's changes.
FIRST_RELOADING_MAJOR = 25
RELOAD_SECONDS = 5
LIVE_DIR = "/opt/druid/tls-live"
LIVE_KEYSTORE_PATH = f"{LIVE_DIR}/keystore.jks"
# How long pods may take to serve a re-issued certificate before they are restarted instead: the kubelet's refresh
# of the Secret volume (hurried by touching the pod), the sidecar's 2 s copy and Druid's keystore scan, with margin.
RELOAD_BUDGET_S = 90.0


def reloads(druid_version: str) -> bool:
    """Whether this Druid version reloads its server keystore without a restart."""
    try:
        return int(druid_version.split(".")[0]) >= FIRST_RELOADING_MAJOR
    except ValueError:
        return False


# cert-manager's privateKey.rotationPolicy on every Certificate: a new key with every certificate.
KEY_ROTATION_POLICY = "Always"

KEYSTORE_PASSWORD_ENV = "DRUID_KEY_STORE_PASSWORD"
# Keys of the keystore-credential Secret (<db>-keystore-cred).
KEYSTORE_PASSWORD_KEY = "keystore_password"
TRUSTSTORE_PASSWORD_KEY = "truststore_password"

SERVER_ALIAS = "server"
CLIENT_ALIAS = "client"
CERT_RENEW_BEFORE = "5m"  # KubeDB's lib.DefaultCertRenewBefore


class TLSMode(enum.Enum):
    """How far a Druid is along the way from plaintext to TLS only. Each step is one rolling restart (or, for the
    Services, none), and adjacent modes can run side by side: every node that may be reached over HTTPS is reached
    by nodes that can call HTTPS, and every port a Service or probe uses is open on every pod.

    Druid calls a peer over HTTPS as soon as the peer announces a TLS port, even if its plaintext port is open
    (spec druid-tls §3.1), so client trust must be everywhere before any node opens its TLS port, and must stay
    until no node announces one."""

    OFF = "off"  # plaintext only, no TLS material
    CLIENT_TRUST = "client-trust"  # plaintext only; the internal client can call HTTPS peers (truststore)
    TLS_PORT = "tls-port"  # both ports open; Services and probes still plaintext
    TLS_SERVICES = "tls-services"  # both ports open; Services point at the TLS ports
    TLS_ONLY = "tls-only"  # plaintext closed

    @classmethod
    def declared(cls, enable_ssl: bool) -> TLSMode:
        """The mode a Druid's spec asks for once no change is under way."""
        return cls.TLS_ONLY if enable_ssl else cls.OFF

    @property
    def client_trust(self) -> bool:
        """The internal client has an SSL context and a truststore (simple-client-sslcontext)."""
        return self is not TLSMode.OFF

    @property
    def tls_port(self) -> bool:
        """The node serves its TLS port (server keystore) and announces it to its peers."""
        return self in (TLSMode.TLS_PORT, TLSMode.TLS_SERVICES, TLSMode.TLS_ONLY)

    @property
    def plaintext_port(self) -> bool:
        return self is not TLSMode.TLS_ONLY

    @property
    def services_tls(self) -> bool:
        """The Druid's Services (what clients use) point at the TLS ports first."""
        return self in (TLSMode.TLS_SERVICES, TLSMode.TLS_ONLY)

    @property
    def service_schemes(self) -> tuple[bool, ...]:
        """The ports a Service offers, TLS or not, the one clients should use first. While both ports are open the
        Service offers both, so that a client that has not yet followed a switch keeps a port that answers: a
        Service's port that disappears takes its forwarding rules with it at once."""
        if self in (TLSMode.TLS_PORT, TLSMode.TLS_SERVICES):
            return (self.services_tls, not self.services_tls)
        return (self.services_tls,)

    def serves(self, tls: bool) -> bool:
        return self.tls_port if tls else self.plaintext_port

    def service_schemes_during_roll_to(self, new: TLSMode) -> tuple[bool, ...]:
        """While pods move from this mode to `new` one by one, the Services offer the ports they offered that `new`
        serves too, in the same order (the port clients follow stays first); `new`'s own once every pod runs it."""
        return tuple(tls for tls in self.service_schemes if new.serves(tls))

    @property
    def probes_tls(self) -> bool:
        """Probes use the plaintext port while it is open: it answers whatever the certificate."""
        return not self.plaintext_port
