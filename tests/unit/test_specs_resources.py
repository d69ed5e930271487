"""Kubernetes quantities and KubeDB's defaulting of container resources (specs/resources.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kubedruid.specs import resources

DEFAULTS = {"requests": {"cpu": "100m", "memory": "1024Mi"}, "limits": {"memory": "1024Mi"}}


@pytest.mark.parametrize("text,expected", [
    ("100m", Fraction(1, 10)), ("2", 2), ("1.5", Fraction(3, 2)), ("1024Mi", 2**30), ("1Gi", 2**30),
    ("2.5Gi", 5 * 2**29), ("1G", 10**9), ("500M", 5 * 10**8), ("1e3", 1000), ("128974848", 128974848),
    ("129e6", 129 * 10**6), (".5", Fraction(1, 2)), (3, 3)])
def test_quantities(text, expected):
    assert resources.quantity(text) == expected


@pytest.mark.parametrize("text", ["", "1GB", "Mi", "1 Gi", "abc", "1.2.3"])
def test_bad_quantities(text):
    with pytest.raises(ValueError):
        resources.quantity(text)


@pytest.mark.parametrize("user,expected", [
    # nothing given: the defaults
    (None, DEFAULTS),
    # a limit alone: the request follows it (memory), CPU keeps the default request
    ({"limits": {"memory": "2Gi"}},
     {"requests": {"cpu": "100m", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}),
    # a request alone: the limit follows it
    ({"requests": {"memory": "3Gi"}},
     {"requests": {"cpu": "100m", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}),
    # a limit below the request is raised to it
    ({"requests": {"memory": "3Gi"}, "limits": {"memory": "2Gi"}},
     {"requests": {"cpu": "100m", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}),
    # a CPU limit becomes the CPU request; the user's extra resources stay
    ({"limits": {"cpu": "2", "ephemeral-storage": "1Gi"}},
     {"requests": {"cpu": "2", "memory": "1024Mi"},
      "limits": {"cpu": "2", "ephemeral-storage": "1Gi", "memory": "1024Mi"}}),
    # everything given: untouched
    ({"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
     {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}),
])
def test_kubedb_defaulting(user, expected):
    before = repr(user)
    assert resources.with_defaults(user, DEFAULTS) == expected
    assert repr(user) == before  # the input is not changed


def test_memory_limit_and_cpus():
    assert resources.memory_limit({"limits": {"memory": "1024Mi"}}) == 2**30
    assert resources.memory_limit({"requests": {"memory": "1Gi"}}) is None
    assert resources.cpus({"requests": {"cpu": "100m"}}) == 1
    assert resources.cpus({"requests": {"cpu": "2"}}) == 2
    assert resources.cpus({"requests": {"cpu": "1500m"}}) == 2
    # the limit is what the JVM would see by itself
    assert resources.cpus({"requests": {"cpu": "100m"}, "limits": {"cpu": "3"}}) == 3
    assert resources.cpus({"requests": {"memory": "1Gi"}}) is None
