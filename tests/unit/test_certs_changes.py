"""What `kubedruid tls plan` says about each Certificate (certs/changes.py), from certificates the provisioner's
pure builder renders for a Druid before and after the op."""

from __future__ import annotations

from kubedruid.certs.changes import DELETE, ISSUE, REISSUE, UNCHANGED, certificate_changes, summary
from kubedruid.specs.cluster import certificates_owned_by

from .test_specs_cluster import UID, druid, manifest


def _certs(issuer: str, brokers: int = 1) -> list[dict]:
    raw = manifest(ssl=True, topology={"routers": {"replicas": 1}, "brokers": {"replicas": brokers}})
    raw["spec"]["tls"]["issuerRef"]["name"] = issuer
    return certificates_owned_by(druid(raw), UID)


def test_add_issues_and_remove_deletes_every_certificate():
    after = _certs("ca-a")
    added = certificate_changes([], after)
    assert {c["change"] for c in added} == {ISSUE} and len(added) == len(after) == 2
    assert added[0]["issuer"] == "Issuer/ca-a" and added[0]["sans"] > 10
    assert {c["change"] for c in certificate_changes(after, [])} == {DELETE}


def test_a_change_of_issuer_or_of_pods_reissues_and_names_what_changes():
    before = _certs("ca-a")
    moved = certificate_changes(before, _certs("ca-b"))
    assert moved[0]["change"] == REISSUE and moved[0]["issuer"] == {"from": "Issuer/ca-a", "to": "Issuer/ca-b"}
    assert "Issuer/ca-a -> Issuer/ca-b" in summary(moved[0])
    scaled = certificate_changes(before, _certs("ca-a", brokers=2))
    assert [s for s in scaled[0]["sansAdded"] if "brokers-1" in s], scaled[0]
    assert "+1 SANs" in summary(scaled[0])


def test_the_same_spec_is_unchanged_unless_the_op_reissues_it():
    before = _certs("ca-a")
    assert {c["change"] for c in certificate_changes(before, _certs("ca-a"))} == {UNCHANGED}
    assert {c["change"] for c in certificate_changes(before, _certs("ca-a"), reissue=True)} == {REISSUE}
