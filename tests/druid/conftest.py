"""Fixtures of the real-Druid tier (`make test-druid`, i.e. `pytest -m druid tests/druid`).

* the control plane with the real cert-manager: KUBEDRUID_TEST_DEV_DIR reuses (and leaves running) a plane in
  that directory; otherwise one is started in a temporary directory and stopped at the end;
* the Druid versions: KUBEDRUID_DRUID_VERSIONS (space separated), default DEFAULT_VERSIONS; each is resolved from
  Maven Central by tools/druid/fetch.py on first use (cached in ~/.cache/kubedruid/druid and ~/.m2).

The tier only runs when asked for (`-m druid`): a bare `pytest` skips it, since it takes minutes and starts JVMs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# The newest and an older Druid line that this machine's Maven Central can assemble completely (druid-services and
# its runtime closure). 36.0.0 and 31.0.0 (in kubedruid's catalog) are not resolvable there: see
# docs/druid-test-tier.md, "What Maven Central serves".
DEFAULT_VERSIONS = ("33.0.0", "28.0.0")

REPORT: dict[str, dict] = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "druid: starts real Apache Druid processes (make test-druid)")


def pytest_collection_modifyitems(config, items):
    if "druid" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="real-Druid tier: run it with `make test-druid` (pytest -m druid tests/druid)")
    for item in items:
        if "druid" in item.keywords:
            item.add_marker(skip)


def versions() -> list[str]:
    env = os.environ.get("KUBEDRUID_DRUID_VERSIONS")
    return env.split() if env else list(DEFAULT_VERSIONS)


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory) -> str:
    from kubedruid.devcluster import plane as plane_mod

    reuse = os.environ.get("KUBEDRUID_TEST_DEV_DIR")
    state_dir = Path(reuse) if reuse else tmp_path_factory.mktemp("plane", numbered=True)
    layout = plane_mod.up(state_dir.resolve())
    yield str(layout.kubeconfig)
    if not reuse:
        plane_mod.down(layout.state_dir)


@pytest.fixture(scope="session")
def report():
    return REPORT


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not REPORT:
        return
    tr = terminalreporter
    tr.section("real Druid: startup times and JVM memory")
    for version, data in REPORT.items():
        tr.write_line(f"Druid {version} on Java {data.get('java')} ({data.get('java_home')})")
        for phase, procs in data.get("startups", {}).items():
            cells = ", ".join(f"{p['process']} {p['ready_after_s']} s (heap {p['heap']}, direct {p['direct']}, "
                              f"RSS {p.get('rss_mb')} MB)" for p in procs)
            tr.write_line(f"  {phase}: {cells}")
        for k, v in data.items():
            if k not in ("startups", "java", "java_home"):
                tr.write_line(f"  {k}: {v}")
    out = os.environ.get("KUBEDRUID_DRUID_REPORT")
    if out:
        Path(out).write_text(json.dumps(REPORT, indent=2))
