"""Container resources: Kubernetes quantities, and KubeDB's defaulting of a container's requests and limits. Pure."""

from __future__ import annotations

import copy
import re
from fractions import Fraction

_SUFFIXES = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40), "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?))")


def quantity(value: str | int | float) -> Fraction:
    """A Kubernetes resource quantity ("100m", "1.5Gi", "1e3", 2) as an exact number."""
    if isinstance(value, (int, float)):
        return Fraction(value)
    m = _QUANTITY.fullmatch(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number, exponent, suffix = m.groups()
    if exponent:
        return Fraction(number) * Fraction(10) ** int(exponent[1:])
    return Fraction(number) * _SUFFIXES[suffix or ""]


def with_defaults(user: dict | None, defaults: dict) -> dict:
    """KubeDB's `SetDefaultResourceLimits` (kubedb/apimachinery `apis/kubedb/lib.go`): per resource, the user's value
    wins; a missing limit becomes the user's request (or the larger of request and limit), else the default; a
    missing request becomes the (computed) limit, else the default. Resources the user adds are kept."""
    out = copy.deepcopy(user or {})
    requests, limits = out.setdefault("requests", {}), out.setdefault("limits", {})
    for name, default in defaults.get("limits", {}).items():
        if name in requests:
            if name not in limits or quantity(limits[name]) < quantity(requests[name]):
                limits[name] = requests[name]
        elif name not in limits:
            limits[name] = default
    for name, default in defaults.get("requests", {}).items():
        if name not in requests:
            requests[name] = limits.get(name, default)
    return {k: v for k, v in out.items() if v}


def memory_limit(resources: dict) -> int | None:
    """The container's memory limit in bytes (what the cgroup enforces), if any."""
    limit = (resources.get("limits") or {}).get("memory")
    return None if limit is None else int(quantity(limit))


def cpus(resources: dict) -> int | None:
    """Whole CPUs a JVM in this container should plan for: its CPU limit (what the JVM would see itself) or else its
    request, rounded up; None when neither is set."""
    for kind in ("limits", "requests"):
        cpu = (resources.get(kind) or {}).get("cpu")
        if cpu is not None:
            return max(1, -(-quantity(cpu).numerator // quantity(cpu).denominator))
    return None
