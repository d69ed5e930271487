"""`kubedruid tls|status|ops` and `kubectl druid …` as a person runs them, against the real control plane and the
real operator: what they print, their exit codes, and what they leave in the cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from lightkube import codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from .conftest import wait_for
from .helpers import ca_issuer, condition, deep_storage_secret, druid_manifest, secret_data
from .helpers import Druid as DruidRes
from .helpers import PetSet
from .test_provisioner import _wait_ready

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
KUBEDRUID = str(BIN / "kubedruid")
Ops = create_namespaced_resource("ops.kubedb.com", "v1alpha1", "DruidOpsRequest", "druidopsrequests")
CREATED = re.compile(r"^druidopsrequest\.ops\.kubedb\.com/(\S+) created$", re.M)


def _env(plane, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "KUBECONFIG")}
    return {**env, "KUBECONFIG": str(plane.kubeconfig), **extra}


def cli(plane, *args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`kubedruid …` with the plane's kubeconfig, output captured (so not a terminal: plain progress lines)."""
    return _run([KUBEDRUID, *args], env if env is not None else _env(plane), timeout)


def _run(argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:  # what it printed until then is the diagnosis
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
        proc = subprocess.CompletedProcess(argv, -9, out, err + f"\n(killed after {timeout} s)")
    # Shown by pytest for a failed test: every command and what it printed.
    print(f"$ {' '.join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))}  # exit {proc.returncode}")
    print(proc.stdout + proc.stderr)
    return proc


def kubectl_druid(plane, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`kubectl druid …`: the built kubectl finds `kubectl-druid` on PATH (kubectl's plugin lookup)."""
    env = _env(plane, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    return _run([str(plane.kubectl_bin), "druid", *args], env, timeout)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def _one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def _ops_names(kube, ns) -> list[str]:
    return sorted(o.metadata.name for o in kube.list(Ops, namespace=ns))


def _serials(kube, ns, db) -> dict[str, str]:
    """What openssl prints as the serial of each certificate cert-manager wrote, upper-case hex."""
    return {alias: format(x509.load_pem_x509_certificate(
        secret_data(kube, f"{db}-{alias}-cert", ns)["tls.crt"]).serial_number, "X") for alias in ("server", "client")}


@pytest.fixture
def explain(kube, namespace, operator):
    """On a failure, what the DruidOpsRequests say and the operator's last log lines."""
    yield
    # pytest shows this output only for a failed test.
    for o in kube.list(Ops, namespace=namespace):
        print(o.metadata.name, json.dumps(o.get("status"), indent=1))
    print(operator.log_text()[-4000:])


def _created(stdout: str) -> str:
    match = CREATED.search(stdout)
    assert match, stdout
    return match.group(1)


def test_bad_input_is_one_line_exit_2_and_creates_nothing(plane, kube, namespace, operator, tmp_path):
    ns, db = namespace, "plain"
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns)))  # no TLS; it need not be Ready to be refused

    cases = [
        (("tls", "add", "ghost", "--issuer", "druid-ca-issuer"), [f"Druid {ns}/ghost not found"]),
        (("tls", "rotate", "ghost"), [f"Druid {ns}/ghost not found"]),
        (("tls", "add", db), ["tls add needs --issuer"]),
        (("tls", "update", db), ["tls update needs --issuer"]),
        (("tls", "add", db, "--issuer", "nope"), [f"Issuer {ns}/nope not found"]),
        (("tls", "add", db, "--issuer", "nope", "--issuer-kind", "ClusterIssuer"), ["ClusterIssuer nope not found"]),
        (("tls", "rotate", db), [f"Druid {ns}/{db} has no TLS (spec.enableSSL is not true)", "tls add"]),
        (("tls", "remove", db), [f"Druid {ns}/{db} has no TLS"]),
        (("tls", "update", db, "--issuer", "druid-ca-issuer"), [f"Druid {ns}/{db} has no TLS", "tls add"]),
        (("tls", "add", db, "--issuer", "druid-ca-issuer", "--timeout", "soon"), ["--timeout 'soon'"]),
        (("tls", "add", db, "--issuer", "druid-ca-issuer", "--name", "Not_A_Name"), ["--name 'Not_A_Name'"]),
        (("status", "ghost"), [f"Druid {ns}/ghost not found"]),
        (("ops", "describe", "ghost"), [f"DruidOpsRequest {ns}/ghost not found"]),
        (("status", db, "--context", "nope"), ["kubeconfig: Context 'nope' not found"]),
    ]
    for args, fragments in cases:
        proc = cli(plane, *args, "-n", ns)
        _one_line_error(proc, 2, *fragments)
        assert proc.stdout == "", (args, proc.stdout)
    assert _ops_names(kube, ns) == [], "a refused command creates no DruidOpsRequest"

    # -n defaults to the context's namespace, else "default"; --kubeconfig is used without $KUBECONFIG.
    _one_line_error(cli(plane, "status", "ghost"), 2, "Druid default/ghost not found")
    config = yaml.safe_load(plane.kubeconfig.read_text())
    config["contexts"][0]["context"]["namespace"] = ns
    other = tmp_path / "kubeconfig"
    other.write_text(yaml.safe_dump(config))
    no_env = {k: v for k, v in _env(plane).items() if k != "KUBECONFIG"} | {"HOME": str(tmp_path)}
    _one_line_error(cli(plane, "tls", "rotate", db, "--kubeconfig", str(other), env=no_env), 2,
                    f"Druid {ns}/{db} has no TLS")
    assert json.loads(_ok(cli(plane, "status", db, "--kubeconfig", str(other), "-o", "json", env=no_env)))[
        "namespace"] == ns
    assert _ops_names(kube, ns) == []


def test_add_status_rotate_update_describe_remove(plane, kube, namespace, operator, explain):
    ns, db = namespace, "druid-cluster"
    ca_issuer(kube, ns, "druid-ca-issuer", "ca", "kubedb")
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns)))
    _wait_ready(kube, db, ns, operator)
    before = _ok(cli(plane, "status", db, "-n", ns))
    assert re.search(r"^TLS\s+off\s*$", before, re.M) and "Ops requests  none" in before

    # The plan first, changing nothing: the same phases the operator will run, each with its pods.
    planned = json.loads(_ok(cli(plane, "tls", "plan", "add", db, "-n", ns, "--issuer", "druid-ca-issuer",
                                 "-o", "json")))
    assert planned["op"] == "AddTLS" and planned["rolls"] == {"thisDruid": 3, "whenPodsReload": 3, "atMost": 3}
    assert [p["phase"] for p in planned["phases"] if p["restarts"]] == [
        "ClientTrustRolledOut", "TLSPortOpened", "PlaintextClosed"]
    assert planned["phases"][1]["restarts"][0] == f"{db}-historicals-0" and planned["refused"] is None
    issue = ("issue", "Issuer/druid-ca-issuer")
    assert {c["certificate"]: (c["change"], c["issuer"]) for c in planned["certificates"]} == {
        f"{db}-server-cert": issue, f"{db}-client-cert": issue}
    assert all(c["sans"] > 10 for c in planned["certificates"])
    assert planned["estimate"] == {"seconds": None, "restartSeconds": {}}, "no restart of this Druid observed yet"
    shown = _ok(cli(plane, "tls", "plan", "rotate", db, "-n", ns))
    assert "would fail before anything is paused" in shown and "has no TLS" in shown
    # --dry-run: the apiserver admits the request without storing it, and the plan is shown.
    shown = _ok(cli(plane, "tls", "add", db, "-n", ns, "--issuer", "druid-ca-issuer", "--dry-run"))
    assert re.search(r"^druidopsrequest\.ops\.kubedb\.com/\S+ created \(server dry run\)$", shown, re.M), shown
    assert f"certificate {db}-server-cert: issue, Issuer/druid-ca-issuer" in shown and "rolling restarts: 3" in shown
    dry = json.loads(_ok(cli(plane, "tls", "add", db, "-n", ns, "--issuer", "druid-ca-issuer", "--dry-run",
                             "--name", "dry", "-o", "json")))
    assert dry["request"]["metadata"]["name"] == "dry" and dry["op"] == "AddTLS" and len(dry["phases"]) == 5
    _one_line_error(cli(plane, "tls", "add", db, "-n", ns, "--issuer", "druid-ca-issuer", "--dry-run",
                        "--timeout", "soon"), 2, "--timeout 'soon'")
    assert _ops_names(kube, ns) == [], "planning and dry runs create nothing"

    # Add TLS, following it: steps and pods as they happen, then Successful.
    out = _ok(cli(plane, "tls", "add", db, "-n", ns, "--issuer", "druid-ca-issuer", "--timeout", "5m", "--wait"))
    add = _created(out)
    assert re.fullmatch(rf"{db}-tls-add-[a-z0-9]{{5}}", add), add
    for shown in ("plan: AddTLS: ClientTrustRolledOut -> TLSPortOpened -> ServicesSwitchedToTLS -> PlaintextClosed "
                  "(3 rolling restarts)", "step: ReconfigureTLS", "step: UpdatePetSets", "step: TLSPortOpened",
                  f"pod: {db}-historicals-0 (restarting)", f"pod: {db}-coordinators-0 (ready)"):
        assert shown in out, (shown, out)
    assert re.fullmatch(rf"DruidOpsRequest {ns}/{add} Successful in \w+: Successfully completed reconfigureTLS for "
                        r"druid\.", out.strip().splitlines()[-1]), out
    spec = kube.get(Ops, add, namespace=ns)["spec"]
    assert spec["tls"] == {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "druid-ca-issuer"}}
    assert spec["timeout"] == "5m" and spec["apply"] == "IfReady" and spec["type"] == "ReconfigureTLS"

    # Adding again is refused before anything is created, with the command to use instead.
    _one_line_error(cli(plane, "tls", "add", db, "-n", ns, "--issuer", "druid-ca-issuer"), 2,
                    f"Druid {ns}/{db} already has TLS", f"tls update {db} --issuer")
    assert _ops_names(kube, ns) == [add]

    # Status: TLS on, the issuer, each certificate's serial as the Secret holds it, the history.
    serials = _serials(kube, ns, db)
    shown = _ok(cli(plane, "status", db, "-n", ns))
    assert re.search(r"^TLS\s+on\s*$", shown, re.M) and re.search(r"^issuer\s+Issuer/druid-ca-issuer", shown, re.M)
    for alias in ("server", "client"):
        row = (rf"│ {alias}\s+│ {db}-{alias}-cert\s+│ yes\s+│ {serials[alias]}\s+"
               r"│ O=kubedb,CN=ca\s+│ \d{4}-\d\d-\d\dT")  # ... and notAfter
        assert re.search(row, shown), shown
    history_row = rf"│ {add}\s+│ ReconfigureTLS\s+│ issuer Issuer/druid-ca-issuer\s+│ Successful"
    assert re.search(history_row, shown), shown
    assert "tls.key" not in shown and "BEGIN" not in shown
    data = json.loads(_ok(cli(plane, "status", db, "-n", ns, "-o", "json")))
    assert data["phase"] == "Ready" and data["tls"] == {
        "enabled": True, "issuer": {"kind": "Issuer", "name": "druid-ca-issuer", "apiGroup": "cert-manager.io"}}
    assert {c["alias"]: c["serial"] for c in data["certificates"]} == serials
    assert all(c["ready"] and c["issuer"] == "O=kubedb,CN=ca" and c["notAfter"] for c in data["certificates"])
    assert [(o["name"], o["phase"]) for o in data["ops"]] == [(add, "Successful")]
    assert "BEGIN" not in json.dumps(data)

    # After the add, the plan knows this Druid's restart times: the estimate comes from them.
    pods = [p.metadata.name for p in kube.list(Pod, namespace=ns, labels={
        "app.kubernetes.io/name": "druids.kubedb.com", "app.kubernetes.io/instance": db})]
    planned = json.loads(_ok(cli(plane, "tls", "plan", "rotate", db, "-n", ns, "-o", "json")))
    assert set(planned["estimate"]["restartSeconds"]) == set(pods) and planned["refused"] is None
    assert planned["reloadsKeystore"] is True and planned["rolls"]["thisDruid"] == 0
    assert planned["estimate"]["seconds"] is not None and planned["estimate"]["seconds"] < 60, "rotation reloads"
    assert {c["change"] for c in planned["certificates"]} == {"re-issue"}
    removal = json.loads(_ok(cli(plane, "tls", "plan", "remove", db, "-n", ns, "-o", "json")))
    assert removal["estimate"]["seconds"] >= 2 * sum(planned["estimate"]["restartSeconds"].values())
    assert {c["change"] for c in removal["certificates"]} == {"delete"}
    assert _ops_names(kube, ns) == [add]

    # Rotate through kubectl's plugin lookup: new serials.
    out = _ok(kubectl_druid(plane, "tls", "rotate", db, "-n", ns, "--wait"))
    rotate = _created(out)
    assert "Successful in" in out and rotate.startswith(f"{db}-tls-rotate-")
    rotated = _serials(kube, ns, db)
    assert rotated["server"] != serials["server"] and rotated["client"] != serials["client"]
    via_kubectl = json.loads(_ok(kubectl_druid(plane, "status", db, "-n", ns, "-o", "json")))
    assert {c["alias"]: c["serial"] for c in via_kubectl["certificates"]} == rotated
    assert "Usage: kubectl druid" in _ok(kubectl_druid(plane, "--help"))

    # Update the issuer: the certificates are re-issued by the new CA.
    ca_issuer(kube, ns, "dr-new-issuer", "ca-updated", "kubedb-updated")
    out = _ok(cli(plane, "tls", "update", db, "-n", ns, "--issuer", "dr-new-issuer", "--wait"))
    update = _created(out)
    data = json.loads(_ok(cli(plane, "status", db, "-n", ns, "-o", "json")))
    assert data["tls"]["issuer"]["name"] == "dr-new-issuer"
    assert [c["issuer"] for c in data["certificates"]] == ["O=kubedb-updated,CN=ca-updated"] * 2
    assert re.search(r"^issuer\s+Issuer/dr-new-issuer", _ok(cli(plane, "status", db, "-n", ns)), re.M)

    # The update's timeline, as a table and as data.
    described = _ok(cli(plane, "ops", "describe", update, "-n", ns))
    steps = ["ReconfigureTLS", "GetCertificate", "CertificateSynced", "UpdatePetSets",
             f"CheckPodRunning--{db}-historicals-0", f"CheckPodRunning--{db}-coordinators-0", "RestartNodes",
             "Successful"]
    positions = [described.index(f"│ {s} ") for s in steps]
    assert positions == sorted(positions), list(zip(steps, positions))
    for shown in ("Timeline", "Events", f"Pausing Druid databse: {ns}/{db}", "issuer Issuer/dr-new-issuer",
                  "Successfully completed reconfigureTLS for druid."):
        assert shown in described, (shown, described)
    data = yaml.safe_load(_ok(cli(plane, "ops", "describe", update, "-n", ns, "-o", "yaml")))
    assert data["phase"] == "Successful" and data["conditions"][-1]["type"] == "Successful"
    assert all(c["status"] == "True" and c["time"] for c in data["conditions"])
    times = [e["time"] for e in data["events"]]
    assert times == sorted(times)
    assert data["events"][0]["message"] == f"Start processing for DruidOpsRequest: {ns}/{update}"

    # Remove TLS, with a name of our own and the finished request as JSON (progress on stderr): TLS off.
    proc = cli(plane, "tls", "remove", db, "-n", ns, "--name", "drops-remove", "--wait", "-o", "json")
    finished = json.loads(_ok(proc))
    assert finished["metadata"]["name"] == "drops-remove" and finished["status"]["phase"] == "Successful"
    assert finished["spec"]["tls"] == {"remove": True} and "managedFields" not in finished["metadata"]
    assert _created(proc.stderr) == "drops-remove" and "Successful in" in proc.stderr
    shown = _ok(cli(plane, "status", db, "-n", ns))
    assert re.search(r"^TLS\s+off\s*$", shown, re.M) and re.search(r"^issuer\s+-\s*$", shown, re.M)
    assert "Certificates  none" in shown
    data = json.loads(_ok(cli(plane, "status", db, "-n", ns, "-o", "json")))
    assert data["tls"] == {"enabled": False, "issuer": None} and data["certificates"] == []
    assert [(o["name"], o["phase"]) for o in data["ops"]] == [
        (add, "Successful"), (rotate, "Successful"), (update, "Successful"), ("drops-remove", "Successful")]


def test_failing_op_exits_1_with_the_reason(plane, kube, namespace, operator, explain):
    ns, db = namespace, "stuck"
    ca_issuer(kube, ns, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns, issuer="druid-ca-issuer")))  # TLS from creation
    _wait_ready(kube, db, ns, operator)
    # From now on a new historicals pod never becomes Ready (kwok holds it); the running one stays Ready.
    kube.patch(DruidRes, db, {"spec": {"topology": {"historicals": {"podTemplate": {"metadata": {
        "annotations": {"kubedruid.dev/kwok-hold-not-ready": "true"}}}}}}}, namespace=ns, patch_type=PatchType.MERGE)
    wait_for(lambda: "kubedruid.dev/kwok-hold-not-ready" in json.dumps(
        kube.get(PetSet, f"{db}-historicals", namespace=ns)["spec"]["template"]), what="PetSet template updated")

    proc = cli(plane, "tls", "rotate", db, "-n", ns, "--timeout", "5s", "--wait")
    name = _created(proc.stdout)
    ops = kube.get(Ops, name, namespace=ns)
    assert ops["status"]["phase"] == "Failed"
    reason = condition(ops, "Failed")["message"]
    line = _one_line_error(proc, 1, f"DruidOpsRequest {ns}/{name} Failed after ", reason)
    assert f"CheckPodRunning--{db}-historicals-0" in line and "timed out after 5s" in line, line
    assert f"pod: {db}-historicals-0 (restarting)" in proc.stdout and " Failed " in proc.stdout, proc.stdout

    described = _ok(cli(plane, "ops", "describe", name, "-n", ns))
    assert re.search(rf"│ CheckPodRunning--{db}-historicals-0\s+│ False\s+│ Failed", described), described
    assert "Fail to be ready DruidOpsRequest" in described
    history = json.loads(_ok(cli(plane, "status", db, "-n", ns, "-o", "json")))["ops"]
    assert [(o["name"], o["phase"]) for o in history] == [(name, "Failed")]
