"""The Helm chart: lint-clean, its manifests apply to the real apiserver, and its RBAC is enough for the operator to
provision a Druid and add TLS to it while running under the chart's ServiceAccount identity."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightkube import codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace
from prometheus_client import generate_latest

from kubedruid.certs import inventory
from kubedruid.certs.served import Served
from kubedruid.controllers.serving import SERVED_CERTIFICATES
from kubedruid.devcluster.binaries import build

from .conftest import free_port, wait_for, webhook_refuses_a_probe
from .helpers import ca_issuer, deep_storage_secret, druid_manifest, secret_data
from .test_ops import _ops, _wait_phase
from .test_provisioner import _wait_ready

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "kubedruid"


@pytest.fixture(scope="module")
def helm() -> str:
    return str(build("helm")[0] / "helm")


def test_helm_lint_is_clean(helm):
    result = subprocess.run([helm, "lint", str(CHART), "--strict"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_the_prometheus_rule_lints_and_alerts_on_metrics_the_operator_serves(helm):
    """The served-certificate alerts (issue 11): lint-clean with the rule on, and each expression names a metric
    that the operator's /metrics really has (from its collectors, as a scrape sees them)."""
    lint = subprocess.run([helm, "lint", str(CHART), "--strict", "--set", "prometheusRule.enabled=true"],
                          capture_output=True, text=True)
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr
    rendered = subprocess.run([helm, "template", "kubedruid", str(CHART), "--set", "prometheusRule.enabled=true",
                               "--show-only", "templates/prometheusrule.yaml"], capture_output=True, text=True,
                              check=True).stdout
    (rule,) = [d for d in yaml.safe_load_all(rendered) if d]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts["DruidServedCertificateExpiresSoon"]["expr"] == \
        "kubedruid_served_certificate_expiry_seconds < 7 * 24 * 3600"
    assert alerts["DruidServedCertificateNotIssued"]["for"] == "10m"
    now = datetime.datetime.now(datetime.timezone.utc)
    SERVED_CERTIFICATES.observe("ns", "db", [inventory.entry("db-routers-0", Served(1, "CN=ca", now, now, "00"))],
                                mismatch=True)
    scraped = generate_latest().decode()
    SERVED_CERTIFICATES.forget("ns", "db")
    for alert in alerts.values():
        metric = alert["expr"].split()[0]
        assert f"\n{metric}{{" in scraped, (metric, "not served by the operator")
    default = subprocess.run([helm, "template", "kubedruid", str(CHART)], capture_output=True, text=True, check=True)
    assert "kind: PrometheusRule" not in default.stdout, "off by default: its CRD comes with the Prometheus Operator"


def test_the_chart_mounts_the_webhook_certificate_where_the_operator_reads_it(helm):
    """The Secret the chart's Certificate fills is mounted at the directory the operator's arguments name, readable
    by the operator's non-root user; with cert-manager off, the operator makes its own CA and registers a URL."""
    docs = [d for d in yaml.safe_load_all(subprocess.run(
        [helm, "template", "kubedruid", str(CHART), "--namespace", "ops"], capture_output=True, text=True,
        check=True).stdout) if d]
    (certificate,) = [d for d in docs if d["kind"] == "Certificate" and not d["spec"].get("isCA")]
    assert certificate["spec"]["dnsNames"][0] == "kubedruid.ops.svc"
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    args = dict(a.split("=", 1) for a in pod["containers"][0]["args"] if "=" in a)
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == args["--webhook-cert-dir"] and mount["readOnly"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    assert volume["secret"]["defaultMode"] & 0o040, "the operator reads the key through its group"
    assert args["--webhook-service"] == "ops/kubedruid:443"
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert {"name": "webhook", "port": 443, "targetPort": "webhook"} in service["spec"]["ports"]

    plain = [d for d in yaml.safe_load_all(subprocess.run(
        [helm, "template", "kubedruid", str(CHART), "--namespace", "ops", "--set", "webhook.certManager.enabled=false"],
        capture_output=True, text=True, check=True).stdout) if d]
    assert not [d for d in plain if d["kind"] in ("Certificate", "Issuer")]
    (deployment,) = [d for d in plain if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--webhook-host=kubedruid.ops.svc" in args and not [a for a in args if a.startswith("--webhook-cert")]


def test_the_charts_client_switch_grace_reaches_the_operator(helm):
    """`ops.clientSwitchGraceSeconds` becomes the operator's --client-switch-grace; unset, the operator's default
    applies, and the operator refuses a negative grace."""
    def operator_args(*sets: str) -> list[str]:
        docs = yaml.safe_load_all(subprocess.run([helm, "template", "kubedruid", str(CHART), *sets],
                                                 capture_output=True, text=True, check=True).stdout)
        (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
        return deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    assert not [a for a in operator_args() if a.startswith("--client-switch-grace")]
    assert "--client-switch-grace=30" in operator_args("--set", "ops.clientSwitchGraceSeconds=30")
    assert "--client-switch-grace=0" in operator_args("--set", "ops.clientSwitchGraceSeconds=0")
    refused = subprocess.run([str(Path(sys.executable).parent / "kubedruid"), "operator", "run",
                              "--client-switch-grace=-1"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "client-switch-grace" in refused.stderr, refused.stderr


@pytest.fixture
def installed(plane, kube, helm):
    """The chart, rendered by helm and applied to the plane in a namespace of its own."""
    ns = "kubedruid-system"
    kube.apply(Namespace(metadata=ObjectMeta(name=ns)))
    rendered = subprocess.run([helm, "template", "kubedruid", str(CHART), "--namespace", ns, "--include-crds"],
                              capture_output=True, text=True, check=True).stdout
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=rendered)
    return ns, [d for d in yaml.safe_load_all(rendered) if d]


def test_chart_manifests_apply_and_the_deployment_becomes_available(kube, installed):
    ns, docs = installed
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
            "Deployment", "Service", "DruidVersion", "ValidatingAdmissionPolicy", "Issuer", "Certificate"} <= kinds
    wait_for(lambda: (kube.get(Deployment, "kubedruid", namespace=ns).status.availableReplicas or 0) >= 1,
             timeout=60, what="the operator Deployment available (kwok runs its pods)")


def _service_account_kubeconfig(plane, ns: str, path: Path) -> Path:
    token = plane.kubectl("create", "token", "kubedruid", "-n", ns, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": "kubedruid-sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "kubedruid-sa"}}],
        "current-context": "sa"}))
    path.chmod(0o600)
    return path


def test_operator_under_the_chart_service_account_adds_tls(plane, kube, namespace, operator, installed, tmp_path):
    ns_operator, _ = installed
    sa_kubeconfig = _service_account_kubeconfig(plane, ns_operator, tmp_path / "sa.kubeconfig")
    who = json.loads(plane.kubectl(f"--kubeconfig={sa_kubeconfig}", "auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns_operator}:kubedruid"
    can = lambda verb, what: plane.kubectl(f"--kubeconfig={sa_kubeconfig}", "auth", "can-i", verb, what,  # noqa: E731
                                           check=False).stdout.strip()
    # Webhook configurations: ours by name only (creating cannot be narrowed by RBAC).
    assert can("patch", "validatingwebhookconfigurations/kubedruid.dev") == "yes"
    assert can("patch", "validatingwebhookconfigurations/another-product") == "no"
    assert can("list", "mutatingwebhookconfigurations") == "no"

    operator.stop()  # only the ServiceAccount's operator acts during this test
    sa_log = tmp_path / "sa-operator.log"
    port = free_port()
    with open(sa_log, "wb") as out:
        sa_operator = subprocess.Popen(
            [str(Path(sys.executable).parent / "kubedruid"), "operator", "run", "--kubeconfig", str(sa_kubeconfig),
             "--leader-elect", "--lease-namespace", ns_operator, "--webhook-port", str(free_port()),
             "--probe-port", str(port), "--log-format", "json", "--client-switch-grace", "1"],  # as the tier's
            stdout=out, stderr=subprocess.STDOUT)
    try:
        ca_issuer(kube, namespace, "druid-ca-issuer", "ca")
        deep_storage_secret(kube, namespace)
        kube.create(codecs.from_dict(druid_manifest("rbac", namespace)))
        _wait_ready(kube, "rbac", namespace, OperatorLog(sa_log))
        _ops(kube, "add-tls", namespace, "rbac", type="ReconfigureTLS",
             tls={"issuerRef": {"name": "druid-ca-issuer", "kind": "Issuer"}})
        _wait_phase(kube, "add-tls", namespace, "Successful", OperatorLog(sa_log))
        log = sa_log.read_text()
        assert "Forbidden" not in log and "forbidden" not in log, log[-3000:]
    finally:
        sa_operator.terminate()
        sa_operator.wait(timeout=20)
        operator.start()


class OperatorLog:
    def __init__(self, path: Path):
        self.path = path

    def log_text(self) -> str:
        return self.path.read_text(errors="replace")



def _host_address() -> str:
    """An address of this machine that an EndpointSlice may name (not loopback): the one the chart's Service stands
    for here, since the plane's pods run nothing."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=True).stdout
    addresses = [line.split()[3].split("/")[0] for line in out.splitlines()]
    assert addresses, f"this machine has no global IPv4 address for the webhook's endpoint: {out!r}"
    return addresses[0]


def _chart_operator_args(docs: list[dict], **replace: str) -> list[str]:
    """The operator's arguments as the chart's Deployment gives them, with some --flag=value replaced."""
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = {f"--{k.replace('_', '-')}": v for k, v in replace.items()}
    return [f"{flag}={flags[flag]}" if flag in flags else a for a in args for flag in [a.partition("=")[0]]]


def test_the_webhook_is_reached_through_the_charts_service_with_one_ca_across_replicas(plane, kube, installed,
                                                                                        operator, tmp_path):
    """Issue 12: the webhook registered by a reference to the chart's Service and served with the chart's
    cert-manager certificate, so the caBundle stays right when another replica takes the lead. The apiserver calls
    a Service's ready endpoint (--enable-aggregator-routing); here the endpoint is this machine, where two replicas
    run as the chart runs them, under its ServiceAccount, with the certificate's Secret as the kubelet mounts it."""
    ns, docs = installed
    issued = wait_for(lambda: {"tls.crt", "tls.key", "ca.crt"} <= set(secret_data(kube, "kubedruid-webhook-tls", ns))
                      and secret_data(kube, "kubedruid-webhook-tls", ns), timeout=60,
                      what="cert-manager to issue the chart's webhook certificate")
    mounted = tmp_path / "webhook"
    mounted.mkdir()
    for key in ("tls.crt", "tls.key", "ca.crt"):
        (mounted / key).write_bytes(issued[key])
    (mounted / "tls.key").chmod(0o400)
    ca_bundle = base64.b64encode(issued["ca.crt"]).decode()

    # The Deployment's kwok pods run nothing: the Service's endpoint is this machine instead.
    plane.kubectl("scale", "deployment", "kubedruid", "-n", ns, "--replicas=0")
    port = free_port()
    plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubedruid-this-machine", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": "kubedruid",
                                "endpointslice.kubernetes.io/managed-by": "kubedruid-tests"}},
        "addressType": "IPv4", "ports": [{"name": "webhook", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [_host_address()], "conditions": {"ready": True}}]}))

    sa_kubeconfig = _service_account_kubeconfig(plane, ns, tmp_path / "sa.kubeconfig")
    args = lambda: _chart_operator_args(docs, webhook_port=str(port), webhook_cert_dir=str(mounted),  # noqa: E731
                                        probe_addr="127.0.0.1", probe_port=str(free_port()))
    assert f"--webhook-service={ns}/kubedruid:443" in args()
    operator.stop()  # it registers the same webhook configuration, by URL
    replicas = {}
    try:
        for name in ("a", "b"):
            log = tmp_path / f"replica-{name}.log"
            with open(log, "wb") as out:  # both on one port: only the leader listens (SO_REUSEPORT meanwhile)
                replicas[name] = (subprocess.Popen(
                    [str(Path(sys.executable).parent / "kubedruid"), *args(), "--kubeconfig", str(sa_kubeconfig),
                     "--lease-namespace", ns],
                    stdout=out, stderr=subprocess.STDOUT), log)
        _wait_refusing(plane, replicas, "the leader's webhook through the Service")
        configuration = json.loads(plane.kubectl("get", "validatingwebhookconfiguration", "kubedruid.dev",
                                                 "-o", "json").stdout)
        for webhook in configuration["webhooks"]:
            config = webhook["clientConfig"]
            assert "url" not in config, config
            assert {k: v for k, v in config["service"].items() if k != "path"} == \
                {"namespace": ns, "name": "kubedruid", "port": 443}
            assert config["caBundle"] == ca_bundle, "the webhook configuration trusts the chart's CA"

        leader = _lease_holder(plane, ns)
        first = next(n for n, (proc, _) in replicas.items() if leader.endswith(f"_{proc.pid}"))
        replicas[first][0].kill()  # SIGKILL: the Lease is not released
        replicas[first][0].wait(timeout=15)
        other = {n: r for n, r in replicas.items() if n != first}
        (survivor, _), = other.values()
        wait_for(lambda: _lease_holder(plane, ns).endswith(f"_{survivor.pid}"), timeout=60,
                 what="the other replica to take the lead")
        _wait_refusing(plane, other, "the new leader's webhook through the Service")
        after = json.loads(plane.kubectl("get", "validatingwebhookconfiguration", "kubedruid.dev",
                                         "-o", "json").stdout)
        assert [w["clientConfig"]["caBundle"] for w in after["webhooks"]] == [ca_bundle] * len(after["webhooks"])
    finally:
        for proc, _ in replicas.values():
            proc.kill()
            proc.wait(timeout=15)
        plane.kubectl("delete", "endpointslice", "kubedruid-this-machine", "-n", ns, "--ignore-not-found")
        operator.start()


def _lease_holder(plane, ns: str) -> str:
    lease = plane.kubectl("get", "lease", "kubedruid-operator", "-n", ns, "-o", "json", check=False)
    return json.loads(lease.stdout)["spec"].get("holderIdentity") or "" if lease.returncode == 0 else ""


def _wait_refusing(plane, replicas: dict, what: str) -> None:
    def refused():
        for proc, log in replicas.values():
            assert proc.poll() is None, f"a replica exited; its log:\n{log.read_text(errors='replace')[-3000:]}"
        return webhook_refuses_a_probe(plane)

    wait_for(refused, timeout=90, interval=0.5, what=what)
