"""The operator as a service: metrics after an op, no secret in logs/events/status, leader election, probes."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from lightkube import codecs
from lightkube.resources.core_v1 import Event, Secret

from .conftest import free_port, wait_for
from .helpers import Druid as DruidRes
from .helpers import ca_issuer, deep_storage_secret, druid_manifest
from .test_ops import Ops, _ops, _wait_phase
from .test_provisioner import _wait_ready

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _tls_druid_after_add(kube, ns, operator, db="metered"):
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns)))
    _wait_ready(kube, db, ns, operator)
    _ops(kube, "add-tls", ns, db, type="ReconfigureTLS",
         tls={"issuerRef": {"name": "druid-ca-issuer", "kind": "Issuer"}})
    return _wait_phase(kube, "add-tls", ns, "Successful", operator)


def test_metrics_show_ops_reconciles_and_certificate_expiry(kube, namespace, operator):
    _tls_druid_after_add(kube, namespace, operator)
    url = f"http://127.0.0.1:{operator.probe_port}/metrics"

    def scraped():
        status, body = _get(url)
        return status == 200 and f'namespace="{namespace}"' in body and body

    body = wait_for(scraped, what="certificate expiry of the new Druid in /metrics")
    lines = body.splitlines()
    expiry = [line for line in lines if line.startswith("kubedruid_certificate_expiry_seconds{")
              and f'namespace="{namespace}"' in line]
    assert {f'certificate="metered-{a}-cert"' in " ".join(expiry) for a in ("server", "client")} == {True}
    assert all(80 * 86400 < float(line.rsplit(" ", 1)[1]) <= 90 * 86400 for line in expiry)  # cert-manager: 90 days
    assert any(line.startswith('kubedruid_ops_total{phase="Successful",type="ReconfigureTLS"}') for line in lines)
    assert any(line.startswith('kubedruid_ops_duration_seconds_count{type="ReconfigureTLS"}') for line in lines)
    for controller in ("provisioner", "ops-manager", "petset"):
        assert any(line.startswith(f'kubedruid_reconciles_total{{controller="{controller}"}}') for line in lines)
        assert any(line.startswith(f'kubedruid_reconcile_duration_seconds_bucket{{controller="{controller}"')
                   for line in lines)
    assert _get(f"http://127.0.0.1:{operator.probe_port}/healthz")[0] == 200
    assert _get(f"http://127.0.0.1:{operator.probe_port}/readyz")[0] == 200


def _secret_values(kube, ns) -> set[str]:
    """Every Secret value in the namespace, as bytes would appear in text: raw, base64, and each PEM body line."""
    values = set()
    for secret in kube.list(Secret, namespace=ns):
        for b64 in (secret.data or {}).values():
            raw = base64.b64decode(b64)
            values.add(b64)
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                continue  # keystores: binary, caught by their base64 form
            if "-----BEGIN" in text:
                values.update(line for line in text.splitlines() if len(line) >= 40 and "-----" not in line)
            elif len(text) >= 8:
                values.add(text)
    return values


def test_no_secret_value_in_logs_events_or_status(kube, namespace, operator):
    ops = _tls_druid_after_add(kube, namespace, operator, db="quiet")
    values = _secret_values(kube, namespace)
    assert len(values) > 10  # passwords, keystore passwords, keys, keystores
    druid = kube.get(DruidRes, "quiet", namespace=namespace)
    texts = {
        "operator log (json)": operator.log_text(),
        "events": "\n".join(f"{e.reason} {e.message}" for e in kube.list(Event, namespace=namespace)),
        "Druid status": str(druid.get("status")),
        "DruidOpsRequest status": str(kube.get(Ops, "add-tls", namespace=namespace).get("status")),
    }
    assert "keystore_password" not in str(ops)
    for where, text in texts.items():
        leaked = [v[:6] + "…" for v in values if v in text]
        assert not leaked, f"secret values in the {where}: {leaked}"


def _operator(plane, tmp_path: Path, name: str) -> tuple[subprocess.Popen, int, Path]:
    port, log = free_port(), tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "kubedruid"), "operator", "run", "--leader-elect",
             "--lease-namespace", "default", "--webhook-port", "0", "--probe-port", str(port)],
            env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)}, stdout=out, stderr=subprocess.STDOUT)
    return proc, port, log


def test_two_replicas_never_act_at_once_and_the_follower_takes_over(plane, tmp_path):
    first, first_port, _ = _operator(plane, tmp_path, "first")
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{first_port}/readyz")[0] == 200, what="the first replica leads")
        second, second_port, second_log = _operator(plane, tmp_path, "second")
        try:
            wait_for(lambda: _get(f"http://127.0.0.1:{second_port}/healthz")[0] == 200, what="the second is alive")
            assert _get(f"http://127.0.0.1:{second_port}/readyz")[0] == 503
            assert "waiting to lead" in second_log.read_text()
            first.terminate()  # a clean shutdown hands the Lease over at once
            first.wait(timeout=20)
            wait_for(lambda: _get(f"http://127.0.0.1:{second_port}/readyz")[0] == 200, timeout=30,
                     what="the second replica to take over")
            assert "leading" in second_log.read_text()
        finally:
            second.terminate()
            second.wait(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()


def _cached_pods(operator) -> int:
    status, body = _get(f"http://127.0.0.1:{operator.probe_port}/metrics")
    assert status == 200
    return int(float(next(line.rsplit(" ", 1)[1] for line in body.splitlines()
                          if line.startswith('kubedruid_cached_objects{kind="Pod"}'))))


def test_the_operator_holds_kubedbs_pods_and_not_another_softwares(kube, namespace, operator):
    """Every StatefulSet's pods carry the pod-name label our PetSet pods carry: the operator must not hold those of
    other software (at 1,000 Druids, 5,000 of another operator's pods took it from 185 to 226 MiB)."""
    from lightkube import ALL_NS
    from lightkube.resources.core_v1 import Pod

    from kubedruid.kube.cache import EXISTS
    from kubedruid.specs.petset_pods import POD_NAME_LABEL

    other = {"app": "other-software"}
    kube.create(codecs.from_dict({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "other", "namespace": namespace},
        "spec": {"replicas": 3, "serviceName": "other", "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": other},
                 "template": {"metadata": {"labels": other},
                              "spec": {"containers": [{"name": "c", "image": "registry.invalid/other:1"}]}}}}))
    kubedb = {"app.kubernetes.io/managed-by": "kubedb.com", "app.kubernetes.io/instance": "held"}
    kube.create(codecs.from_dict({  # a pod as our PetSet controller makes them
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "held-0", "namespace": namespace, "labels": {**kubedb, POD_NAME_LABEL: "held-0"}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/druid:1"}]}}))
    wait_for(lambda: len([p for p in kube.list(Pod, namespace=namespace, labels=other)
                          if (p.status.phase or "") == "Running"]) == 3, what="the other software's 3 pods Running")

    def held_is_kubedbs() -> bool:
        kubedbs = len(list(kube.list(Pod, namespace=ALL_NS, labels={"app.kubernetes.io/managed-by": "kubedb.com",
                                                                    POD_NAME_LABEL: EXISTS})))
        return kubedbs >= 1 and _cached_pods(operator) == kubedbs

    wait_for(held_is_kubedbs, what="the operator holding KubeDB's pods only")
