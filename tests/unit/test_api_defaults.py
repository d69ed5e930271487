"""apply_defaults reproduces KubeDB's Druid defaulter (spec §1.2, §1.7)."""

from __future__ import annotations

import yaml

from kubedruid.api import CertificateSpec, Druid, apply_defaults, with_default_certificates

from .kubedb_manifests import PLAIN, TLS

DEFAULT_PVC = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}


def defaulted(manifest: str, **spec_overrides) -> dict:
    raw = yaml.safe_load(manifest)
    raw["spec"].update(spec_overrides)
    return apply_defaults(Druid.model_validate(raw)).to_dict()["spec"]


def test_plain_cluster_gets_kubedb_defaults():
    spec = defaulted(PLAIN)
    assert spec["topology"] == {
        "coordinators": {"replicas": 1},
        "brokers": {"replicas": 1},
        "routers": {"replicas": 1},
        "historicals": {"replicas": 1, "storageType": "Durable", "storage": DEFAULT_PVC},
        "middleManagers": {"replicas": 1, "storageType": "Durable", "storage": DEFAULT_PVC},
    }
    assert spec["metadataStorage"] == {
        "name": "druid-cluster-mysql-metadata",
        "namespace": "demo",
        "type": "MySQL",
        "createTables": True,
        "linkedDB": "druid",
        "externallyManaged": False,
        "version": "8.0.35",
    }
    assert spec["zookeeperRef"] == {
        "name": "druid-cluster-zk",
        "namespace": "demo",
        "externallyManaged": False,
        "version": "3.7.2",
    }
    assert spec["authSecret"] == {"kind": "Secret", "name": "druid-cluster-auth"}
    assert spec["deletionPolicy"] == "Delete"
    assert spec["healthChecker"] == {"periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3}
    # No TLS: nothing TLS-related appears.
    assert "keystoreCredSecret" not in spec and "tls" not in spec


def test_tls_cluster_gets_keystore_secret_and_both_certificates():
    spec = defaulted(TLS)
    assert spec["keystoreCredSecret"] == {"kind": "Secret", "name": "druid-cluster-tls-keystore-cred"}
    assert spec["tls"]["certificates"] == [
        {"alias": "server", "secretName": "druid-cluster-tls-server-cert"},
        {"alias": "client", "secretName": "druid-cluster-tls-client-cert"},
    ]
    assert spec["tls"]["issuerRef"] == {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "druid-ca-issuer"}


def test_tls_defaults_keep_user_entries_and_order():
    spec = defaulted(
        TLS,
        tls={
            "issuerRef": {"kind": "Issuer", "name": "druid-ca-issuer"},
            "certificates": [
                {"alias": "client", "subject": {"organizations": ["druid"]}},
                {"alias": "server", "secretName": "my-server-secret", "dnsNames": ["druid.example.com"]},
            ],
        },
    )
    assert spec["tls"]["certificates"] == [
        {"alias": "client", "secretName": "druid-cluster-tls-client-cert", "subject": {"organizations": ["druid"]}},
        {"alias": "server", "secretName": "my-server-secret", "dnsNames": ["druid.example.com"]},
    ]


def test_no_certificate_defaults_without_issuer_or_without_ssl():
    assert "certificates" not in defaulted(TLS, tls={})["tls"]
    no_ssl = defaulted(TLS, enableSSL=False)
    assert "certificates" not in no_ssl["tls"] and "keystoreCredSecret" not in no_ssl


def test_with_default_certificates_is_pure():
    user = [CertificateSpec(alias="client")]
    out = with_default_certificates(user, "db")
    assert [c.alias for c in out] == ["client", "server"]
    assert user[0].secretName is None


def test_user_values_are_kept():
    spec = defaulted(
        PLAIN,
        topology={
            "coordinators": {"replicas": 3},
            "historicals": {"storageType": "Ephemeral", "ephemeralStorage": {"medium": "Memory"}},
            "middleManagers": {"storage": {"resources": {"requests": {"storage": "10Gi"}}}},
        },
        metadataStorage={"type": "PostgreSQL"},
        zookeeperRef={"name": "shared-zk", "namespace": "zk", "externallyManaged": True},
        authSecret={"name": "my-auth"},
        deletionPolicy="WipeOut",
        healthChecker={"periodSeconds": 60},
    )
    topo = spec["topology"]
    assert topo["coordinators"] == {"replicas": 3}
    assert "overlords" not in topo and "routers" not in topo
    assert topo["historicals"] == {"replicas": 1, "storageType": "Ephemeral", "ephemeralStorage": {"medium": "Memory"}}
    assert topo["middleManagers"]["storage"] == {"resources": {"requests": {"storage": "10Gi"}}}
    assert spec["metadataStorage"]["name"] == "druid-cluster-pg-metadata"
    assert spec["metadataStorage"]["version"] == "13.13"
    assert spec["zookeeperRef"] == {
        "name": "shared-zk",
        "namespace": "zk",
        "externallyManaged": True,
        "version": "3.7.2",
    }
    assert spec["authSecret"] == {"kind": "Secret", "name": "my-auth"}
    assert spec["deletionPolicy"] == "WipeOut"
    assert spec["healthChecker"] == {"periodSeconds": 60, "timeoutSeconds": 10, "failureThreshold": 3}


def test_externally_managed_metadata_store_keeps_its_type_open():
    spec = defaulted(PLAIN, metadataStorage={"name": "external-pg", "externallyManaged": True})
    assert spec["metadataStorage"] == {
        "name": "external-pg",
        "namespace": "demo",
        "createTables": True,
        "linkedDB": "druid",
        "externallyManaged": True,
    }


def test_disable_security_skips_auth_secret():
    assert "authSecret" not in defaulted(PLAIN, disableSecurity=True)


def test_apply_defaults_does_not_change_its_input_and_is_idempotent():
    druid = Druid.model_validate(yaml.safe_load(TLS))
    before = druid.to_dict()
    once = apply_defaults(druid)
    assert druid.to_dict() == before
    assert apply_defaults(once).to_dict() == once.to_dict()
