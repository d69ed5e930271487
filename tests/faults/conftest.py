"""The fault suite: a control plane and an operator of its own (the integration fixtures, so its outages never
reach the integration tests' plane), faults injected into them, and bad input through the real apiserver.

KUBEDRUID_FAULTS=full kills the operator at every transition and runs more generated inputs; the default is the light
run `make test` includes."""

from __future__ import annotations

import os

import pytest

from tests.integration.conftest import OperatorProcess, kube, namespace, plane  # noqa: F401  (fixtures)

FULL = os.environ.get("KUBEDRUID_FAULTS") == "full"


@pytest.fixture(scope="session")
def operator(plane, tmp_path_factory):  # noqa: F811  (the fixture imported above)
    # The default client grace (the integration tier runs 1 s): a kill can land while ClientsFollowed waits, and the
    # restarted operator must wait only what is left of it. With 1 s the step is mostly over before it is back.
    running = OperatorProcess(plane, tmp_path_factory.mktemp("operator") / "operator.log")
    running.start()
    yield running
    running.stop()


FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, dict]:
    return FIGURES


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.section("faults injected and bad input tried")
    for name, entry in FIGURES.items():
        terminalreporter.write_line(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in entry.items()))
