"""Benchmark: N Druids (each with its own ZooKeeper and metadata storage) and concurrent TLS ops on one operator
process, on kwok. Prints figures against issue 13's targets; asserts nothing (tests/integration/test_scale.py asserts
the functional facts at N = 30).

    .venv/bin/python -m tests.bench.bench_scale [--druids 300] [--dir STATE_DIR] [--changes 50]
        [--foreign-secrets 10000] [--tls-ops 50] [--idle 60] [--go-operator CHECKOUT]

Figures: time until all are Ready, the operator's CPU seconds per Druid and the plane's CPU meanwhile (which part
was the bottleneck); operator RSS; CPU and writes in an idle minute; apiserver requests per reconcile; spec change ->
PetSet updated (p50, p99); the same with foreign Secrets in other namespaces; concurrent ReconfigureTLS add ops and
their overhead (wall / the slowest Druid's certificate issue + its pods' restart-to-Ready). With --go-operator, the
Go operator (tests/bench/go_operator.py) with as many Druids of its own on the same plane, measured alike.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lightkube import ALL_NS, Client, KubeConfig, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount
from lightkube.types import PatchType

from kubedruid.devcluster import plane
from kubedruid.devcluster.binaries import plane_binaries
from kubedruid.devcluster.install import install_kubedruid
from kubedruid.devcluster.layout import KWOK_NODE_COUNT
from kubedruid.devcluster.kwok_stages import DELETE_DELAY_ANNOTATION
from kubedruid.druid.nodes import RESTART_ORDER
from kubedruid.certs.pki import make_ca
from kubedruid.kube.conditions import parse_rfc3339
from tests.integration.conftest import OperatorProcess, Plane
from tests.integration.helpers import OWNED_KINDS, Certificate, Druid, PetSet, resource_versions, scale_druid_manifest
from tests.integration.test_ops import Ops
from tests.bench import go_operator

TARGETS = {"rss_mib": 250, "rss_foreign_mib": 300, "idle_cpu_pct": 1.0, "idle_writes": 0, "p99_s": 1.0,
           "tls_overhead": 1.2}
DRUID_MEMORY_GIB = 6.5  # KubeDB's default requests, one Druid with its dependencies (issue 13)
KWOK_NODE_MEMORY_GIB = 1024  # what kwok's node stage gives a node without its own allocatable
NAMESPACES = 10  # Druids spread over this many namespaces, as a platform team's would be
CHANGE_ANNOTATION = "kubedruid.dev/bench-change"
ClusterIssuer = create_global_resource("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers")
WRITE_VERBS = ('verb="apply"', 'verb="create"', 'verb="patch"', 'verb="delete"')
GoDruid = create_namespaced_resource("druid.apache.org", "v1alpha1", "Druid", "druids")
GO_OWNED_KINDS = (GoDruid, StatefulSet, Service, ConfigMap)  # what the Go operator writes for a Druid


# -- measuring processes -------------------------------------------------------------------------------------------
# A kubelet takes a while to stop a pod; kwok, with no delay, plays stale pod-delete jobs that remove a
# replacement pod of the same name (devcluster/kwok_stages.py), which under the load of 50 concurrent ops turned
# each op's 15 restarts into over 100.
POD_DELETE_DELAY = "2s"


def bench_druid_manifest(name: str, namespace: str) -> dict:
    manifest = scale_druid_manifest(name, namespace)
    for node in ("coordinators", "brokers", "historicals", "middleManagers", "routers"):
        template = manifest["spec"]["topology"].setdefault(node, {}).setdefault("podTemplate", {})
        template.setdefault("metadata", {}).setdefault("annotations", {})[DELETE_DELAY_ANNOTATION] = POD_DELETE_DELAY
    return manifest


def apiserver_evictions(kubeconfig: str) -> int:
    """Pod evictions the apiserver granted so far (its own counter): the ops' restarts, counted where they happen."""
    raw = subprocess.run([str(plane_binaries().kubectl()), f"--kubeconfig={kubeconfig}", "get", "--raw", "/metrics"],
                         capture_output=True, text=True, check=True).stdout
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
                   if line.startswith("apiserver_request_total{") and 'subresource="eviction"' in line
                   and 'code="201"' in line))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class CpuMeter:
    """CPU seconds of the operator and each plane process between `start` and `stop`."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def start(self) -> None:
        self.t0, self.c0 = time.monotonic(), {n: cpu_seconds(p) for n, p in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """name -> share of one core over the interval."""
        wall = time.monotonic() - self.t0
        return {n: (cpu_seconds(p) - self.c0[n]) / wall for n, p in self.pids.items()}


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(("kubedruid_apiserver_requests_total{", "kubedruid_reconciles_total{",
                                "kubedruid_cache_reads_total{"))}


def requests_per_reconcile(before: dict[str, float], after: dict[str, float]) -> tuple[float, float, float]:
    """(apiserver requests, of which writes, cache reads) per reconcile between two scrapes."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    reconciles = sum(v for k, v in delta.items() if k.startswith("kubedruid_reconciles_total")) or 1
    requests = sum(v for k, v in delta.items() if k.startswith("kubedruid_apiserver_requests_total"))
    writes = sum(v for k, v in delta.items() if k.startswith("kubedruid_apiserver_requests_total")
                 and any(w in k for w in WRITE_VERBS))
    cached = sum(v for k, v in delta.items() if k.startswith("kubedruid_cache_reads_total"))
    return requests / reconciles, writes / reconciles, cached / reconciles


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def _wait(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except ApiError:  # not there yet
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


# -- the phases --------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, layout, args):
        self.args, self.layout = args, layout
        self.kubeconfig = str(layout.kubeconfig)
        self.kube = Client(KubeConfig.from_file(self.kubeconfig), field_manager="kubedruid-bench")
        self.namespaces = [f"scale-{i}" for i in range(NAMESPACES)]
        self.druids = [(self.namespaces[i % NAMESPACES], f"d{i:04d}") for i in range(args.druids)]
        self.operator = OperatorProcess(Plane(layout.state_dir, layout.kubeconfig, plane_binaries().kubectl()),
                                        layout.state_dir / "bench-operator.log")
        self.go = go_operator.GoOperator(Path(args.go_operator).resolve(), layout.kubeconfig,
                                         layout.state_dir / "go-operator.log") if args.go_operator else None
        self.go_namespaces = [f"go-{i}" for i in range(NAMESPACES)]
        self.go_druids = [(self.go_namespaces[i % NAMESPACES], f"g{i:04d}") for i in range(args.druids)]

    def say(self, text: str) -> None:
        print(text, flush=True)

    def size_nodes(self) -> None:
        nodes = max(KWOK_NODE_COUNT, math.ceil(self.args.druids * DRUID_MEMORY_GIB / KWOK_NODE_MEMORY_GIB) + 1)
        for i in range(KWOK_NODE_COUNT, nodes):
            self.kube.apply(codecs.from_dict(plane.kwok_node(i)), force=True)
        _wait(lambda: sum(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                          for n in self.kube.list(Node)) >= nodes, 120, f"{nodes} kwok nodes Ready")
        self.say(f"kwok nodes: {nodes} (1k CPUs, 1 TiB each), for {self.args.druids} Druids at "
                 f"{DRUID_MEMORY_GIB} GiB requested each")

    def provision(self) -> None:
        for ns in self.namespaces:
            self.kube.apply(Namespace(metadata=ObjectMeta(name=ns)), force=True)
            _wait(lambda: self.kube.get(ServiceAccount, "default", namespace=ns), 60, f"{ns}/default")
        pids = {"operator": self.operator.proc.pid,
                **{s.name: s.pid for s in plane.status(self.layout.state_dir) if s.pid}}
        meter = CpuMeter(pids)
        scraped = metrics(self.operator.probe_port)
        op_cpu0 = cpu_seconds(self.operator.proc.pid)
        meter.start()
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda d: self.kube.create(codecs.from_dict(bench_druid_manifest(d[1], d[0]))),
                          self.druids))
        self.say(f"created {len(self.druids)} Druids in {time.monotonic() - started:.0f} s")
        last = 0.0

        def all_ready() -> bool:
            nonlocal last
            ready = sum((d.get("status") or {}).get("phase") == "Ready" for d in self.kube.list(Druid, namespace=ALL_NS)
                        if d.metadata.namespace in self.namespaces)
            if time.monotonic() - last > 60:
                last = time.monotonic()
                self.say(f"  {time.monotonic() - started:5.0f} s: {ready} Ready, operator "
                         f"{cpu_seconds(self.operator.proc.pid) - op_cpu0:.0f} CPU s, RSS "
                         f"{rss_mib(self.operator.proc.pid):.0f} MiB")
            return ready == len(self.druids)

        _wait(all_ready, self.args.ready_timeout, f"{len(self.druids)} Druids Ready", interval=5)
        took = time.monotonic() - started
        shares = meter.stop()
        op_cpu = cpu_seconds(self.operator.proc.pid) - op_cpu0
        per, writes, cached = requests_per_reconcile(scraped, metrics(self.operator.probe_port))
        pods = len(list(self.kube.list(Pod, namespace=ALL_NS)))
        self.say(f"all {len(self.druids)} Ready after {took:.0f} s ({pods} pods); operator {op_cpu:.0f} CPU s = "
                 f"{op_cpu / len(self.druids):.2f} CPU s per Druid")
        busiest = sorted(shares.items(), key=lambda kv: -kv[1])
        self.say("  CPU while provisioning (share of one core): " +
                 ", ".join(f"{n} {s * 100:.0f}%" for n, s in busiest) +
                 f" -> busiest: {busiest[0][0]}")
        self.say(f"  apiserver requests per reconcile: {per:.2f} ({writes:.2f} writes); reads answered by the "
                 f"informers per reconcile: {cached:.1f}")

    def go_provision(self) -> None:
        """The Go operator's Druids, as many as kubedruid's, until it reports each one's nodes Ready."""
        for crd in self.go.crds():
            self.kube.apply(codecs.from_dict(crd), force=True)
            _wait(lambda: any(c.type == "Established" and c.status == "True" for c in self.kube.get(
                CustomResourceDefinition, crd["metadata"]["name"]).status.conditions or []), 60,
                f"{crd['metadata']['name']} established")
        for ns in self.go_namespaces:
            self.kube.apply(Namespace(metadata=ObjectMeta(name=ns)), force=True)
        self.go.start()
        pid = self.go.proc.pid
        meter = CpuMeter({"go operator": pid, **{s.name: s.pid for s in plane.status(self.layout.state_dir) if s.pid}})
        cpu0 = cpu_seconds(pid)
        meter.start()
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda d: self.kube.create(codecs.from_dict(go_operator.druid_manifest(d[1], d[0]))),
                          self.go_druids))

        def all_ready() -> bool:
            assert self.go.proc.poll() is None, f"the Go operator exited; its log is {self.go.log}"
            return sum(go_operator.is_ready(d) for d in self.kube.list(GoDruid, namespace=ALL_NS)
                       if d.metadata.namespace in self.go_namespaces) == len(self.go_druids)

        _wait(all_ready, self.args.ready_timeout, f"the Go operator's {len(self.go_druids)} Druids Ready", interval=5)
        took = time.monotonic() - started
        shares = meter.stop()
        cpu = cpu_seconds(pid) - cpu0
        busiest = sorted(shares.items(), key=lambda kv: -kv[1])
        self.say(f"the Go operator ({go_operator.REPOSITORY}, {go_operator.settings()}): its {len(self.go_druids)} "
                 f"Druids Ready after {took:.0f} s; {cpu:.0f} CPU s = {cpu / len(self.go_druids):.2f} CPU s per Druid; "
                 f"CPU meanwhile: "
                 + ", ".join(f"{n} {s * 100:.0f}%" for n, s in busiest))

    def idle(self, label: str) -> None:
        """kubedruid's idle minute and, over the same minute, the Go operator's."""
        time.sleep(15)
        subjects = [("operator", self.operator.proc.pid, self.namespaces, OWNED_KINDS,
                     lambda: sum(v for k, v in metrics(self.operator.probe_port).items()
                                 if k.startswith("kubedruid_apiserver_requests_total")))]
        if self.go:
            subjects.append(("the Go operator", self.go.proc.pid, self.go_namespaces, GO_OWNED_KINDS,
                             self.go.requests))
        before = {name: (resource_versions(self.kube, spaces, kinds), requests())
                  for name, _, spaces, kinds, requests in subjects}
        events = {(e.metadata.namespace, e.metadata.name) for e in self.kube.list(Event, namespace=ALL_NS)}
        cpu0, t0 = {name: cpu_seconds(pid) for name, pid, *_ in subjects}, time.monotonic()
        time.sleep(self.args.idle)
        cpu1, wall = {name: cpu_seconds(pid) for name, pid, *_ in subjects}, time.monotonic() - t0
        new_events = [e.metadata.namespace for e in self.kube.list(Event, namespace=ALL_NS)
                      if (e.metadata.namespace, e.metadata.name) not in events]
        rss_target = TARGETS["rss_foreign_mib" if "foreign" in label else "rss_mib"]
        for name, pid, spaces, kinds, requests in subjects:
            versions_before, requests_before = before[name]
            cpu = (cpu1[name] - cpu0[name]) / wall * 100
            after = resource_versions(self.kube, spaces, kinds)
            changed = sum(1 for k, v in versions_before.items() if after.get(k) != v)
            rss = rss_mib(pid)
            self.say(f"{label}: {name} RSS {rss:.0f} MiB ({rss / rss_target:.2f} x the {rss_target} MiB target); "
                     f"idle {self.args.idle:.0f} s: CPU {cpu:.2f}% of a core ({cpu / TARGETS['idle_cpu_pct']:.2f} x "
                     f"the 1% target), objects written {changed} of {len(versions_before)}, events "
                     f"{sum(ns in spaces for ns in new_events)}, apiserver requests {requests() - requests_before:.0f}")

    def changes(self, label: str) -> None:
        """Each change: a new annotation on one Druid's routers podTemplate; done when the routers PetSet has it."""
        scraped = metrics(self.operator.probe_port)
        latencies = self._latencies(label, self.druids, PetSet, lambda name: f"{name}-routers", lambda ns, name, value:
                                    self.kube.patch(Druid, name, {"spec": {"topology": {"routers": {"podTemplate": {
                                        "metadata": {"annotations": {CHANGE_ANNOTATION: value}}}}}}},
                                        namespace=ns, patch_type=PatchType.MERGE))
        per, writes, cached = requests_per_reconcile(scraped, metrics(self.operator.probe_port))
        p99 = percentile(latencies, 99)
        self.say(f"{label}: spec change -> PetSet updated over {len(latencies)} changes: p50 "
                 f"{statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({p99 / TARGETS['p99_s']:.2f}"
                 f" x the 1 s target); apiserver requests per reconcile {per:.2f} ({writes:.2f} writes)")

    def go_changes(self, label: str) -> None:
        """The same changes on the Go operator's Druids: its routers' podAnnotations; done when their StatefulSet
        has it."""
        latencies = self._latencies(label, self.go_druids, StatefulSet,
                                    lambda name: go_operator.statefulset_name(name, "routers"),
                                    lambda ns, name, value: self.kube.patch(
                                        GoDruid, name, {"spec": {"nodes": {"routers": {"podAnnotations": {
                                            CHANGE_ANNOTATION: value}}}}}, namespace=ns, patch_type=PatchType.MERGE))
        self.say(f"{label}: the Go operator, spec change -> StatefulSet updated over {len(latencies)} changes: p50 "
                 f"{statistics.median(latencies) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms")

    def _latencies(self, label: str, druids: list[tuple[str, str]], workload, workload_of, patch) -> list[float]:
        """Seconds from each change's patch until a watch of `workload` sees its annotation in the pod template of
        `workload_of(druid)`; one change at a time, over different Druids."""
        seen: dict[tuple[str, str], tuple[str, float]] = {}
        ready = threading.Event()

        @_until_the_plane_stops
        def watch() -> None:
            client = Client(KubeConfig.from_file(self.kubeconfig))
            ready.set()
            for _, obj in client.watch(workload, namespace=ALL_NS):
                if (value := _template_annotations(obj).get(CHANGE_ANNOTATION)) is not None:
                    seen[(obj.metadata.namespace, obj.metadata.name)] = (value, time.monotonic())

        threading.Thread(target=watch, daemon=True).start()
        ready.wait()
        time.sleep(2)
        latencies = []
        for i in range(self.args.changes):
            ns, name = druids[(i * 7919) % len(druids)]
            key, value = (ns, workload_of(name)), f"{label}-{i}"
            t0 = time.monotonic()
            patch(ns, name, value)
            _wait(lambda: seen.get(key, ("", 0))[0] == value, 60, f"change {i}", interval=0.005)
            latencies.append(seen[key][1] - t0)
        return latencies

    def foreign_secrets(self) -> None:
        n = self.args.foreign_secrets
        spaces = [f"foreign-{i}" for i in range(10)]
        for ns in spaces:
            self.kube.apply(Namespace(metadata=ObjectMeta(name=ns)), force=True)
        payload = secrets.token_hex(512)  # 1 KiB
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self.kube.create(Secret(metadata=ObjectMeta(name=f"other-{i}"),
                                                            stringData={"blob": payload}),
                                                     namespace=spaces[i % len(spaces)]), range(n)))
        self.say(f"created {n} Secrets of 1 KiB in {len(spaces)} other namespaces in "
                 f"{time.monotonic() - started:.0f} s")

    def tls_ops(self) -> None:
        count = min(self.args.tls_ops, len(self.druids))
        ca, _ = make_ca("bench-ca", "kubedruid-bench")
        self.kube.apply(Secret(metadata=ObjectMeta(name="bench-ca", namespace="cert-manager"), type="kubernetes.io/tls",
                               stringData={"tls.crt": ca.cert_pem.decode(), "tls.key": ca.key_pem.decode()}),
                        force=True)
        self.kube.apply(ClusterIssuer(metadata=ObjectMeta(name="bench-ca"), spec={"ca": {"secretName": "bench-ca"}}),
                        force=True)
        targets = self.druids[:count]
        evictions_before = apiserver_evictions(self.kubeconfig)
        recorder = Recorder(self.kubeconfig, {ns for ns, _ in targets})
        recorder.start()
        time.sleep(5)
        recorder.armed = True
        meter = CpuMeter({"operator": self.operator.proc.pid,
                          **{s.name: s.pid for s in plane.status(self.layout.state_dir) if s.pid}})
        meter.start()
        scraped = metrics(self.operator.probe_port)
        started = time.monotonic()

        def request(target: tuple[str, str]) -> None:
            ns, name = target
            self.kube.create(codecs.from_dict({
                "apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
                "metadata": {"name": f"{name}-add-tls", "namespace": ns},
                "spec": {"type": "ReconfigureTLS", "databaseRef": {"name": name},
                         "tls": {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "ClusterIssuer",
                                               "name": "bench-ca"}}}}))

        with ThreadPoolExecutor(min(count, 16)) as pool:  # at once, as 50 teams would: not one after another
            list(pool.map(request, targets))
        created = time.monotonic() - started

        def phases() -> list[str]:
            return [(self.kube.get(Ops, f"{name}-add-tls", namespace=ns).get("status") or {}).get("phase", "")
                    for ns, name in targets]

        # The recorder's watch says when each op finished: polling them would time the ends to the poll's interval
        # and load the apiserver under measurement with 25 requests a second.
        _wait(lambda: all(recorder.finished(ns, f"{name}-add-tls") for ns, name in targets),
              self.args.ready_timeout, f"{count} add-TLS ops to finish", interval=0.2)
        wall = max(recorder.finished(ns, f"{name}-add-tls") for ns, name in targets) - started
        shares = meter.stop()
        requests = {k: v - scraped.get(k, 0) for k, v in metrics(self.operator.probe_port).items()
                    if k.startswith("kubedruid_apiserver_requests_total")}
        done = phases()
        floors = {d: recorder.floor(*d) for d in targets}
        slowest = max(floors, key=lambda d: floors[d])
        floor = floors[slowest]
        self.say(f"{count} concurrent ReconfigureTLS add ops: {done.count('Successful')} Successful, "
                 f"{done.count('Failed')} Failed, wall {wall:.0f} s; slowest Druid {slowest[0]}/{slowest[1]}: "
                 f"certificate issue + restart-to-Ready {floor:.0f} s; overhead {wall / floor:.2f} "
                 f"({wall / floor / TARGETS['tls_overhead']:.2f} x the {TARGETS['tls_overhead']} target)")
        busiest = sorted(shares.items(), key=lambda kv: -kv[1])
        self.say(f"  requests created in {created:.1f} s; CPU while the ops ran (share of one core): " +
                 ", ".join(f"{n} {s * 100:.0f}%" for n, s in busiest) + f" -> busiest: {busiest[0][0]}")
        evicted = apiserver_evictions(self.kubeconfig) - evictions_before
        restarted = sum(len(recorder.spans(ns, name)) for ns, name in targets)
        if restarted > evicted:
            # kwok deletes a pod by name, with no UID precondition: a pod-delete job it queued from a late event of
            # the evicted pod deletes the replacement of the same name (a PetSet's), again and again while its
            # queue lags. The ops wait for those replacements too, so wall and floor both hold the plane's churn.
            self.say(f"  the plane restarted pods the ops did not: {restarted} restarts seen, {evicted} evictions "
                     f"by the ops ({restarted - evicted} replacement pods deleted by something else; on kwok, its "
                     f"stale pod-delete jobs, which delete by name). Overhead figures from this run are not the "
                     f"operator's.")
        total = sum(requests.values())
        top = sorted(((v, k[k.index("{"):]) for k, v in requests.items() if v), reverse=True)[:8]
        self.say(f"  operator requests to the apiserver while the ops ran: {total:.0f}, {total / count:.0f} an op, "
                 f"{total / max(restarted, 1):.1f} a pod restart; most: " +
                 ", ".join(f"{labels} {v:.0f}" for v, labels in top))
        # Before the floor begins: from the requests' creation until each op asked cert-manager for its certificates.
        start_ups = sorted(at - started for d in targets if (at := recorder.first_certificate(*d)) is not None)
        if start_ups:
            self.say(f"  from the requests' creation to each Druid's first Certificate: median "
                     f"{statistics.median(start_ups):.1f} s, max {start_ups[-1]:.1f} s (the slowest Druid's "
                     f"{(recorder.first_certificate(*slowest) or started) - started:.1f} s)")
        self.say("  " + recorder.breakdown(*slowest) + f"; its op {self._op_seconds(*slowest):.0f} s: "
                 + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in self._op_steps(*slowest)))
        self.say("  " + _gaps_summary([g for d in targets for g in recorder.gaps(*d)]))
        # Each op against its own Druid's floor: what the plan adds, apart from waiting for the others.
        own = sorted(self._op_seconds(ns, name) / floors[(ns, name)] for ns, name in targets if floors[(ns, name)])
        if own:
            self.say(f"  each op against its own Druid's floor: median {statistics.median(own):.2f}, "
                     f"max {own[-1]:.2f} (op wall from its first to its last condition, 1 s resolution)")

    def _op_steps(self, namespace: str, name: str) -> list[tuple[str, float]]:
        """Where the op's time went: each condition type (per-pod ones summed over pods) with the time from the
        condition before it, longest first (1 s resolution)."""
        conditions = (self.kube.get(Ops, f"{name}-add-tls", namespace=namespace).get("status") or {}).get(
            "conditions") or []
        stamped = sorted((parse_rfc3339(c["lastTransitionTime"]), c["type"].split("--")[0]) for c in conditions
                         if c.get("lastTransitionTime"))
        spent: dict[str, float] = {}
        for (before, _), (at, step) in zip(stamped, stamped[1:]):
            spent[step] = spent.get(step, 0.0) + (at - before).total_seconds()
        return sorted(spent.items(), key=lambda item: -item[1])

    def _op_seconds(self, namespace: str, name: str) -> float:
        conditions = (self.kube.get(Ops, f"{name}-add-tls", namespace=namespace).get("status") or {}).get(
            "conditions") or []
        times = sorted(parse_rfc3339(c["lastTransitionTime"]) for c in conditions if c.get("lastTransitionTime"))
        return (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0.0


def _gaps_summary(gaps: list[tuple[str, str, float]]) -> str:
    """The gaps between restarts (Recorder.gaps) by the node type evicted next: within a roll (the pod Ready before
    comes earlier in Druid's order) and from one roll to the next."""
    order = [n.petset_suffix for n in RESTART_ORDER]

    def node(pod: str) -> str:
        return pod.rsplit("-", 1)[0]

    within: dict[str, list[float]] = {}
    between = []
    for before, after, seconds in gaps:
        if order.index(node(after)) > order.index(node(before)):
            within.setdefault(node(after), []).append(seconds)
        else:
            between.append(seconds)
    parts = [f"{n} median {statistics.median(v):.1f} s (sum {sum(v):.0f})" for n in order if (v := within.get(n))]
    rolls = f"; from a roll to the next: median {statistics.median(between):.1f} s (sum {sum(between):.0f})" \
        if between else ""
    return ("from a replacement Ready to the next eviction, within a roll, by the pod evicted next: "
            + ", ".join(parts) + rolls)


def _template_annotations(workload) -> dict:
    """The pod template's annotations of a PetSet (a generic resource: a dict) or a StatefulSet (a typed model)."""
    if isinstance(workload, dict):
        return ((((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations")
                or {})
    meta = workload.spec.template.metadata if workload.spec and workload.spec.template else None
    return (meta.annotations if meta else None) or {}


def _until_the_plane_stops(watch):
    """A watch thread of the bench ends quietly when the plane goes down at the end."""
    def run(*args):
        try:
            watch(*args)
        except Exception:  # noqa: BLE001
            pass
    return run


class Recorder:
    """Stamps, per Druid, its Certificates' creation and Ready and each pod's restarts (gone -> replacement Ready)."""

    def __init__(self, kubeconfig: str, namespaces: set[str]):
        self.kubeconfig, self.namespaces = kubeconfig, namespaces
        self.uids: dict[tuple[str, str], str] = {}
        self.restarts: dict[tuple[str, str], list[list[float | None]]] = {}
        self.certs: dict[tuple[str, str], list[float | None]] = {}
        self.ends: dict[tuple[str, str], float] = {}  # ops, when they finished
        self.armed = False

    def start(self) -> None:
        threading.Thread(target=self._pods, daemon=True).start()
        threading.Thread(target=self._certificates, daemon=True).start()
        threading.Thread(target=self._ops, daemon=True).start()

    def finished(self, namespace: str, name: str) -> float | None:
        """When the watch first saw the op Successful or Failed (time.monotonic())."""
        return self.ends.get((namespace, name))

    @_until_the_plane_stops
    def _ops(self) -> None:
        client = Client(KubeConfig.from_file(self.kubeconfig))
        for _, op in client.watch(Ops, namespace=ALL_NS):
            key, now = (op.metadata.namespace, op.metadata.name), time.monotonic()
            if (op.get("status") or {}).get("phase") in ("Successful", "Failed"):
                self.ends.setdefault(key, now)

    @_until_the_plane_stops
    def _pods(self) -> None:
        client = Client(KubeConfig.from_file(self.kubeconfig))
        for kind, pod in client.watch(Pod, namespace=ALL_NS, labels={"app.kubernetes.io/managed-by": "kubedb.com"}):
            key, now = (pod.metadata.namespace, pod.metadata.name), time.monotonic()
            if key[0] not in self.namespaces:
                continue
            if not self.armed:
                self.uids[key] = pod.metadata.uid
                continue
            runs = self.restarts.setdefault(key, [])
            if pod.metadata.uid == self.uids.get(key):
                if (pod.metadata.deletionTimestamp or kind == "DELETED") and (not runs or runs[-1][1] is not None):
                    runs.append([now, None])
            elif any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])) \
                    and runs and runs[-1][1] is None:
                runs[-1][1] = now
                self.uids[key] = pod.metadata.uid

    @_until_the_plane_stops
    def _certificates(self) -> None:
        client = Client(KubeConfig.from_file(self.kubeconfig))
        for _, cert in client.watch(Certificate, namespace=ALL_NS):
            key, now = (cert.metadata.namespace, cert.metadata.name), time.monotonic()
            if key[0] not in self.namespaces:
                continue
            stamps = self.certs.setdefault(key, [now, None])
            ready = [c for c in (cert.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
            if ready and ready[0]["status"] == "True" and stamps[1] is None:
                stamps[1] = now

    def first_certificate(self, namespace: str, druid: str) -> float | None:
        """When the watch first saw one of the Druid's Certificates (time.monotonic()): its op's start-up is over."""
        return min((created for (ns, name), (created, _) in self.certs.items()
                    if ns == namespace and name.startswith(f"{druid}-")), default=None)

    def _issue(self, namespace: str, druid: str) -> float:
        return max((r - c for (ns, name), (c, r) in self.certs.items()
                    if ns == namespace and name.startswith(f"{druid}-") and r is not None), default=0.0)

    def spans(self, namespace: str, druid: str) -> list[tuple[float, float]]:
        """Each restart of the Druid's pods: (gone, replacement Ready)."""
        return sorted((gone, ready) for (ns, name), runs in self.restarts.items()
                      if ns == namespace and name.startswith(f"{druid}-") for gone, ready in runs
                      if ready is not None)

    def gaps(self, namespace: str, druid: str) -> list[tuple[str, str, float]]:
        """Between one restart's replacement Ready and the next eviction of the Druid's pods: (the pod Ready before,
        the pod evicted next, seconds); the operator's share of a roll, which the floor leaves out."""
        spans = sorted((gone, ready, name.removeprefix(f"{druid}-")) for (ns, name), runs in self.restarts.items()
                       if ns == namespace and name.startswith(f"{druid}-") for gone, ready in runs
                       if ready is not None)
        return [(before, after, gone - ready) for (_, ready, before), (gone, _, after) in zip(spans, spans[1:])]

    def floor(self, namespace: str, druid: str) -> float:
        """What the Druid's op cannot avoid: its slowest certificate's issue, then every restart of its pods."""
        return self._issue(namespace, druid) + sum(ready - gone for gone, ready in self.spans(namespace, druid))

    def breakdown(self, namespace: str, druid: str) -> str:
        """The floor's parts; restarts that overlap (the union shorter than the sum) mean the floor counts time
        twice, and the overhead is then understated."""
        spans = self.spans(namespace, druid)
        lengths = sorted(ready - gone for gone, ready in spans)
        union, end = 0.0, float("-inf")
        for gone, ready in spans:
            union += max(0.0, ready - max(gone, end))
            end = max(end, ready)
        if not lengths:
            return f"floor: certificate issue {self._issue(namespace, druid):.0f} s, no restart seen"
        per_pod = sorted(((name.removeprefix(f"{druid}-"), sum(ready is not None for _, ready in runs))
                          for (ns, name), runs in self.restarts.items()
                          if ns == namespace and name.startswith(f"{druid}-")), key=lambda item: -item[1])
        return (f"floor: certificate issue {self._issue(namespace, druid):.0f} s + {len(lengths)} restarts "
                f"(median {statistics.median(lengths):.1f} s, max {lengths[-1]:.1f} s, sum {sum(lengths):.0f} s, "
                f"their union {union:.0f} s; by pod: {', '.join(f'{pod} {n}' for pod, n in per_pod)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--druids", type=int, default=300)
    parser.add_argument("--dir", help="state directory of a plane to use (default: a fresh one, removed after)")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--foreign-secrets", type=int, default=10_000)
    parser.add_argument("--tls-ops", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--ready-timeout", type=float, default=7200.0)
    parser.add_argument("--go-operator", metavar="CHECKOUT",
                        help=f"a checkout of {go_operator.REPOSITORY} built there (`go build -o "
                             f"{go_operator.BINARY} .`): run it beside kubedruid (tests/bench/go_operator.py)")
    args = parser.parse_args()

    state = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kubedruid-scale-")) / "plane"
    layout = plane.up(state.resolve(), extra_setup=install_kubedruid)
    bench = Bench(layout, args)
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} "
          f"GiB; kwok plane; {args.druids} Druids over {NAMESPACES} namespaces", flush=True)
    bench.size_nodes()
    bench.operator.start()
    finished = False
    try:
        bench.provision()
        if bench.go:
            bench.go_provision()
        bench.idle("after provisioning")
        bench.changes("changes")
        if bench.go:
            bench.go_changes("changes")
        if args.foreign_secrets:
            bench.foreign_secrets()
            bench.idle(f"with {args.foreign_secrets} foreign Secrets")
            bench.changes("changes with foreign Secrets")
            if bench.go:
                bench.go_changes("changes with foreign Secrets")
        if bench.go:  # measured; its resyncs (every Druid every 10 s) would load the plane under the ops
            bench.go.stop()
        if args.tls_ops:
            bench.tls_ops()
        if not bench.go:
            print(f"the Go operator ({go_operator.REPOSITORY}) side by side: not run (--go-operator; "
                  f"tests/bench/go_operator.py says how to build it)")
        finished = True
    finally:
        bench.operator.stop()
        if bench.go:
            bench.go.stop()
        if not args.dir:
            plane.down(state.resolve())
            if finished:  # its etcd holds every object of the run (750 MB at 1,000 Druids)
                shutil.rmtree(state.parent)
            else:
                print(f"the plane's state and logs are kept in {state.parent}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
