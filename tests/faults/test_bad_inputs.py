"""Generated bad input through the real apiserver, as people and tools send it: each Druid or DruidOpsRequest is
refused at admission with a message that names the field, or, where the apiserver cannot judge it, accepted and
then ends with a reason (InputValid False on a Druid; Failed on an op). Afterwards: the operator runs, writes
nothing while nothing changes, uses little CPU, and no Druid is left paused."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightkube import codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource

from kubedruid.api.durations import GO_DURATION
from tests.integration.conftest import wait_for
from tests.integration.helpers import condition, deep_storage_secret, druid_manifest
from tests.integration.helpers import Druid as DruidRes
from tests.integration.test_provisioner import _wait_ready

from .conftest import FULL

pytestmark = pytest.mark.integration

Ops = create_namespaced_resource("ops.kubedb.com", "v1alpha1", "DruidOpsRequest", "druidopsrequests")
EXAMPLES = 400 if FULL else 110
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
COUNTS: dict[str, int] = {"tried": 0, "rejected at admission": 0, "accepted, then a reason": 0}

words = st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "P", "Zs")), min_size=1, max_size=12)
unique = st.integers(min_value=0, max_value=10**9).map(lambda i: f"x{i}")


def _not(*allowed):
    return words.filter(lambda w: w not in allowed)


def invalid(field: str, values, named: str | None = None):
    """({field: value}, what the refusal must name: the field, else `named`)."""
    return values.map(lambda v: ({field: v}, named or field))


# Changes to the guide's Druid that make it invalid.
DRUID_CHANGES = st.one_of(
    invalid("metadata.name", st.from_regex(r"[A-Z_][A-Za-z_]{0,8}", fullmatch=True)),
    invalid("metadata.name", st.text(alphabet="abc", min_size=46, max_size=70)),
    invalid("spec.topology.brokers.replicas", st.one_of(st.integers(max_value=0), words)),
    invalid("spec.deletionPolicy", _not("Halt", "Delete", "WipeOut", "DoNotTerminate")),
    invalid("spec.deepStorage.type", _not("s3", "google", "azure", "hdfs")),
    invalid("spec.topology.historicals.storageType", _not("Durable", "Ephemeral")),
    invalid("spec.version", st.from_regex(r"[1-9][0-9]\.[0-9]\.[0-9]-[a-z]{1,4}", fullmatch=True)),
    invalid("spec.halted", words),
    invalid("spec.enableSSL", words),
    invalid("spec.metadataStorage.name", st.just("")),
)

# Changes to a valid Restart request that make it invalid, or that ask for what kubedruid does not do.
OPS_CHANGES = st.one_of(
    invalid("spec.type", _not("UpdateVersion", "HorizontalScaling", "VerticalScaling", "VolumeExpansion", "Restart",
                             "Reconfigure", "ReconfigureTLS", "RotateAuth", "StorageMigration")),
    invalid("spec.timeout", words.filter(lambda w: not re.match(GO_DURATION, w))),
    invalid("spec.apply", _not("IfReady", "Always")),
    invalid("spec.databaseRef.name", unique, named="spec.databaseRef"),
    invalid("spec.type", st.sampled_from(["UpdateVersion", "HorizontalScaling", "VerticalScaling",
                                         "VolumeExpansion", "Reconfigure", "RotateAuth"]), named="spec."),
    st.sampled_from([{}, {"remove": True, "rotateCertificates": True}]).map(
        lambda tls: ({"spec.type": "ReconfigureTLS", "spec.tls": tls}, "TLS")),
)


def _set(obj: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    target = obj
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    return obj


def _refused_naming(create, named: str) -> bool:
    """True when the apiserver refused the object with a message naming `named`; False when it accepted it."""
    COUNTS["tried"] += 1
    try:
        create()
    except ApiError as e:
        message = e.status.message or ""
        assert named in message, (named, message)
        COUNTS["rejected at admission"] += 1
        return True
    return False


@SETTINGS
@given(change=DRUID_CHANGES, serial=unique)
def test_generated_bad_druids_are_refused_or_blocked_with_a_reason(kube, namespace, operator, change, serial):
    changes, named = change
    manifest = druid_manifest(f"bad-{serial}", namespace)
    for field, value in changes.items():
        manifest = _set(manifest, field, value)
    if _refused_naming(lambda: kube.create(codecs.from_dict(manifest)), named):
        return
    name = manifest["metadata"]["name"]
    blocked = wait_for(lambda: (c := condition(kube.get(DruidRes, name, namespace=namespace), "InputValid"))
                       and c["status"] == "False" and c, timeout=30, what=f"InputValid False for {changes}")
    assert blocked["reason"] and blocked["message"]
    COUNTS["accepted, then a reason"] += 1
    kube.delete(DruidRes, name, namespace=namespace)


@pytest.fixture
def target(kube, namespace, operator) -> str:
    deep_storage_secret(kube, namespace)
    kube.create(codecs.from_dict(druid_manifest("target", namespace)))
    _wait_ready(kube, "target", namespace, operator)
    return "target"


@SETTINGS
@given(change=OPS_CHANGES, serial=unique)
def test_generated_bad_ops_requests_are_refused_or_fail_with_a_reason(kube, namespace, operator, target, change,
                                                                       serial):
    changes, named = change
    body = {"apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
            "metadata": {"name": f"bad-{serial}", "namespace": namespace},
            "spec": {"type": "Restart", "databaseRef": {"name": target}, "timeout": "30s"}}
    for field, value in changes.items():
        body = _set(body, field, value)
    if _refused_naming(lambda: kube.create(codecs.from_dict(body)), named):
        return
    name = body["metadata"]["name"]
    ended = wait_for(lambda: (o := kube.get(Ops, name, namespace=namespace)).get("status", {}).get("phase")
                     in ("Failed", "Skipped") and o, timeout=60, what=f"the op with {changes} to end")
    reason = condition(ended, ended["status"]["phase"])
    assert reason and reason["message"], ended["status"]
    wait_for(lambda: condition(kube.get(DruidRes, target, namespace=namespace), "Paused") is None, timeout=10,
             what="the Druid not left paused")
    COUNTS["accepted, then a reason"] += 1


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def test_after_the_bad_input_the_operator_runs_and_is_quiet(kube, namespace, operator, figures):
    """Runs after the generated inputs (file order): no crash, and no hot loop once the bad input is gone: a settled
    Druid is not written and the operator's CPU stays low (each op above also left its Druid resumed)."""
    assert operator.proc.poll() is None, "the operator is running"
    assert COUNTS["tried"] >= 200, COUNTS
    def live() -> dict:  # the Druids that stay (those of the tests' namespaces go with them)
        return {(d.metadata.namespace, d.metadata.name): d for d in kube.list(DruidRes, namespace="*")
                if not d.metadata.deletionTimestamp}

    wait_for(lambda: not live(), timeout=120, what="the bad-input namespaces' Druids to go")
    # One Druid that stays, settled: while nothing changes, nothing may be written to it.
    deep_storage_secret(kube, namespace)
    kube.create(codecs.from_dict(druid_manifest("quiet", namespace)))
    _wait_ready(kube, "quiet", namespace, operator)
    time.sleep(5)
    versions = {k: d.metadata.resourceVersion for k, d in live().items()}
    cpu0, t0 = _cpu_seconds(operator.proc.pid), time.monotonic()
    time.sleep(10)
    share = (_cpu_seconds(operator.proc.pid) - cpu0) / (time.monotonic() - t0)
    after = {k: d.metadata.resourceVersion for k, d in live().items()}
    assert after == versions and len(versions) == 1, "no Druid written while nothing changed"
    assert share < 0.10, f"the operator used {share:.0%} of a core while nothing changed"
    figures["bad input"] = {**COUNTS, "operator CPU idle": f"{share:.1%}"}
