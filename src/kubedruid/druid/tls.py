"""Where Druid finds its TLS material in a pod, and the names KubeDB uses for it."""

from __future__ import annotations

CERT_DIR = "/opt/druid/ssl"  # the server certificate Secret (keystore.jks, truststore.jks, tls.crt, ca.crt)
KEYSTORE_PATH = f"{CERT_DIR}/keystore.jks"
TRUSTSTORE_PATH = f"{CERT_DIR}/truststore.jks"
KEYSTORE_TYPE = "jks"
CERT_ALIAS = "druid"  # the JKS alias cert-manager writes, and druid.server.https.certAlias

KEYSTORE_PASSWORD_ENV = "DRUID_KEY_STORE_PASSWORD"
# Keys of the keystore-credential Secret (<db>-keystore-cred).
KEYSTORE_PASSWORD_KEY = "keystore_password"
TRUSTSTORE_PASSWORD_KEY = "truststore_password"

SERVER_ALIAS = "server"
CLIENT_ALIAS = "client"
CERT_RENEW_BEFORE = "5m"  # KubeDB's lib.DefaultCertRenewBefore
