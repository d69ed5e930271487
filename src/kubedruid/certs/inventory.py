"""What every pod of a Druid really serves, as its status records it (`status.servedCertificates`): one entry per
pod, from a handshake with its TLS port (served.py), or the reason there was none. Pure.

An entry changes only when what the pod serves changes, so a Druid whose pods keep serving the same certificates is
never written to, however often it is checked."""

from __future__ import annotations

import datetime

from kubedruid.kube.conditions import RFC3339, parse_rfc3339

from .served import Served

# How often the operator handshakes with every pod of a TLS Druid when nothing else asks it to (it also does after
# every op, at each renewal, and once after it starts).
INVENTORY_EVERY_S = 300.0
# A pod that could not be reached is asked again sooner.
UNREACHABLE_AGAIN_S = 60.0
# A served certificate "nears expiry" with less than this left, or less than a sixth of its lifetime (cert-manager
# renews at two thirds by default, so by then a renewal should have reached the pod), whichever comes first.
EXPIRY_WARNING_S = 7 * 86400.0
EXPIRY_WARNING_FRACTION = 1 / 6


def serial_hex(serial: int) -> str:
    """openssl's spelling of a serial number: upper-case hex."""
    return format(serial, "X")


def _rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime(RFC3339)


def _parse(t: str) -> datetime.datetime:
    return parse_rfc3339(t)


def entry(pod: str, served: Served | None, error: str | None = None) -> dict:
    if served is None:
        return {"pod": pod, "error": error or "no handshake"}
    return {"pod": pod, "serial": serial_hex(served.serial), "issuer": served.issuer,
            "notBefore": _rfc3339(served.not_before), "notAfter": _rfc3339(served.not_after),
            "fingerprint": served.fingerprint}


def serving_other(entries: list[dict], issued_serial: int) -> list[str]:
    """Pods that answered with a certificate other than the one the Secret holds (unreachable pods are unknown)."""
    return [e["pod"] for e in entries if "serial" in e and e["serial"] != serial_hex(issued_serial)]


def unreachable(entries: list[dict]) -> list[str]:
    return [e["pod"] for e in entries if "error" in e]


def expiry_seconds(e: dict, now: datetime.datetime) -> float | None:
    return (_parse(e["notAfter"]) - now).total_seconds() if "notAfter" in e else None


def nearing_expiry(entries: list[dict], now: datetime.datetime) -> list[str]:
    """Pods whose served certificate has less than EXPIRY_WARNING_S or a sixth of its lifetime left."""
    found = []
    for e in entries:
        if "notAfter" not in e:
            continue
        left = expiry_seconds(e, now)
        lifetime = (_parse(e["notAfter"]) - _parse(e["notBefore"])).total_seconds()
        if left < min(EXPIRY_WARNING_S, lifetime * EXPIRY_WARNING_FRACTION):
            found.append(e["pod"])
    return found
