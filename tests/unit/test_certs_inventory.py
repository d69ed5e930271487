"""The served-certificate inventory (certs/inventory.py) and the metrics fed from it (controllers/serving.py)."""

from __future__ import annotations

import datetime

from prometheus_client import CollectorRegistry, generate_latest

from kubedruid.api.druid import DruidStatus
from kubedruid.certs import inventory
from kubedruid.certs.served import Served
from kubedruid.controllers.serving import ServedCertificates

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def served(serial: int, *, lifetime_days: float = 90, left_days: float = 60) -> Served:
    not_after = NOW + left_days * DAY
    return Served(serial, "O=kubedb,CN=ca", not_after - lifetime_days * DAY, not_after, "ab" * 32)


def test_an_entry_records_what_the_pod_serves_as_openssl_spells_it():
    e = inventory.entry("db-routers-0", served(0xBEEF01))
    assert e == {"pod": "db-routers-0", "serial": "BEEF01", "issuer": "O=kubedb,CN=ca",
                 "notBefore": "2026-11-03T12:00:00Z", "notAfter": "2027-02-01T12:00:00Z", "fingerprint": "ab" * 32}
    DruidStatus.model_validate({"servedCertificates": [e]})  # the status schema takes it as it is


def test_an_unreachable_pod_is_recorded_with_the_reason():
    e = inventory.entry("db-brokers-1", None, "no handshake with port 9282: ConnectionRefusedError")
    assert e == {"pod": "db-brokers-1", "error": "no handshake with port 9282: ConnectionRefusedError"}
    assert inventory.unreachable([e]) == ["db-brokers-1"]
    assert inventory.expiry_seconds(e, NOW) is None


def test_pods_serving_another_certificate_than_the_issued_one():
    entries = [inventory.entry("a", served(1)), inventory.entry("b", served(2)), inventory.entry("c", None, "down")]
    assert inventory.serving_other(entries, 2) == ["a"]  # an unreachable pod is unknown, not a mismatch
    assert inventory.serving_other(entries[1:], 2) == []


def test_nearing_expiry_is_seven_days_or_a_sixth_of_the_lifetime_whichever_is_sooner():
    long_lived = inventory.entry("a", served(1, lifetime_days=90, left_days=6.9))
    long_fine = inventory.entry("b", served(1, lifetime_days=90, left_days=7.1))
    short_lived = inventory.entry("c", served(1, lifetime_days=1, left_days=0.15))  # a sixth of a day is 0.167
    short_fine = inventory.entry("d", served(1, lifetime_days=1, left_days=0.5))  # cert-manager renews at 1/3 left
    assert inventory.nearing_expiry([long_lived, long_fine, short_lived, short_fine], NOW) == ["a", "c"]


def test_metrics_show_expiry_per_pod_and_the_mismatch_going_from_one_to_zero():
    metrics = ServedCertificates()
    registry = CollectorRegistry()
    registry.register(metrics)
    renewed = [inventory.entry("db-routers-0", served(1)), inventory.entry("db-routers-1", served(2))]
    metrics.observe("demo", "db", renewed, mismatch=bool(inventory.serving_other(renewed, 2)))
    text = generate_latest(registry).decode()
    assert 'kubedruid_served_certificate_mismatch{druid="db",namespace="demo"} 1.0' in text
    line = next(x for x in text.splitlines() if x.startswith("kubedruid_served_certificate_expiry_seconds{")
                and 'pod="db-routers-1"' in x)
    left = float(line.rsplit(" ", 1)[1])
    expected = (NOW + 60 * DAY - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert abs(left - expected) < 60
    everywhere = [inventory.entry("db-routers-0", served(2)), inventory.entry("db-routers-1", served(2))]
    metrics.observe("demo", "db", everywhere, mismatch=bool(inventory.serving_other(everywhere, 2)))
    assert 'kubedruid_served_certificate_mismatch{druid="db",namespace="demo"} 0.0' in \
        generate_latest(registry).decode()
    metrics.forget("demo", "db")
    assert 'druid="db"' not in generate_latest(registry).decode()
