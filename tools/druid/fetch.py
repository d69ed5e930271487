#!/usr/bin/env python3
"""Resolve a runnable Apache Druid (and ZooKeeper) from Maven Central with Maven, into a cache outside the work tree.

    tools/druid/fetch.py 37.0.0 31.0.1        # or: --list to print what is cached

Layout (KUBEDRUID_DRUID_CACHE, default ~/.cache/kubedruid/druid):

    <cache>/<druid version>/lib/*.jar                      org.apache.druid:druid-services and its runtime closure
    <cache>/<druid version>/extensions/<name>/*.jar        one directory per extension, as in Druid's distribution
    <cache>/<druid version>/manifest.json                  what was resolved (and what was not, and why)
    <cache>/zookeeper/<zk version>/lib/*.jar               org.apache.zookeeper:zookeeper (ZooKeeperServerMain)

Maven itself caches every download in ~/.m2/repository, so a second run is offline-fast. Resolution goes through
tools/druid/pom.xml (one parameterised pom: the artifact is the only thing that changes) and tools/druid/settings.xml
(every repository a Druid pom declares is answered by Maven Central, the only registry this project reaches).

Extensions: the rendered configuration's `druid.extensions.loadList` names extension directories (Druid looks for
`<druid.extensions.directory>/<name>/`), so each extension is resolved into its own directory with its runtime
dependencies, minus the jars that core lib/ already has (what Druid's `pull-deps` does). An extension is tried at the
Druid version first, then at the fallback versions listed in EXTENSION_FALLBACKS (only for extensions whose code
is known not to have changed, see docs/druid-test-tier.md); what cannot be resolved is recorded in the manifest,
and the test harness leaves it out of the loadList (and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
SETTINGS = HERE / "settings.xml"
ZOOKEEPER_VERSION = "3.8.4"
# ZooKeeper's pom marks these `provided` (its binary distribution ships them); ZooKeeperServerMain needs both
# (metrics-core for ServerMetrics, snappy-java for loading snapshots), at the versions of ZooKeeper's parent pom.
ZOOKEEPER_PROVIDED = (("io.dropwizard.metrics", "metrics-core", "4.1.12.1"),
                      ("org.xerial.snappy", "snappy-java", "1.1.10.5"))
MANIFEST_FORMAT = 1

# Every extension kubedruid's properties builder can put in the loadList (src/kubedruid/druid/properties.py).
EXTENSIONS = (
    "druid-basic-security",
    "simple-client-sslcontext",
    "druid-datasketches",
    "druid-kafka-indexing-service",
    "druid-multi-stage-query",
    "mysql-metadata-storage",
    "postgresql-metadata-storage",
    "druid-s3-extensions",
)
# Fallback versions of an extension, by Druid version ("*" = any), used only when the extension does not resolve at
# the Druid version itself. Each one is proven by tests/druid (the processes load it and the feature works):
# * simple-client-sslcontext: its three classes (SSLClientConfig, SSLContextModule, SSLContextProvider) and the core
#   APIs they call (TLSUtils.ClientSSLContextBuilder, TLSCertificateChecker, JsonConfigProvider, the client binding
#   annotations) have not changed since 0.23.0, the newest release this machine's Maven Central serves.
# * druid-basic-security 27.0.0 links against the 28.0.0 core (basic auth + escalator work); against 33.0.0 it fails
#   with NoSuchMethodError, so it is not a fallback there.
EXTENSION_FALLBACKS: dict[str, dict[str, str]] = {
    "simple-client-sslcontext": {"*": "0.23.0"},
    "druid-basic-security": {"28.0.0": "27.0.0"},
}


def _fallbacks(ext: str, version: str) -> tuple[str, ...]:
    table = EXTENSION_FALLBACKS.get(ext, {})
    return tuple(v for v in (table.get(version), table.get("*")) if v)


def cache_root() -> Path:
    return Path(os.environ.get("KUBEDRUID_DRUID_CACHE", Path.home() / ".cache" / "kubedruid" / "druid"))


def _mvn(group: str, artifact: str, version: str, out: Path, log) -> tuple[bool, str]:
    """copy-dependencies of one artifact into `out`; (ok, the first error line)."""
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "-s", str(SETTINGS), "-f", str(POM),
           f"-Dartifact.groupId={group}", f"-Dartifact.artifactId={artifact}", f"-Dartifact.version={version}",
           f"-Dout.dir={tmp}", "dependency:copy-dependencies"]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        errors = [l for l in proc.stdout.splitlines() if l.startswith("[ERROR]") and len(l) > 10]
        return False, (errors[0] if errors else f"mvn exited {proc.returncode}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return True, ""


_JAR_VERSION = re.compile(r"-\d[\w.\-]*\.jar$")


def _artifact_name(jar: str) -> str:
    """`jackson-core-2.12.7.jar` -> `jackson-core` (what pull-deps compares, ignoring versions)."""
    return _JAR_VERSION.sub("", jar)


def fetch_zookeeper(root: Path, log) -> dict:
    out = root / "zookeeper" / ZOOKEEPER_VERSION / "lib"
    if out.is_dir() and any(out.glob("zookeeper-*.jar")) and all(any(out.glob(f"{a}-*.jar")) for _, a, _ in ZOOKEEPER_PROVIDED):
        return {"version": ZOOKEEPER_VERSION, "lib": str(out)}
    ok, err = _mvn("org.apache.zookeeper", "zookeeper", ZOOKEEPER_VERSION, out, log)
    if not ok:
        raise SystemExit(f"ZooKeeper {ZOOKEEPER_VERSION} did not resolve: {err}")
    for group, artifact, version in ZOOKEEPER_PROVIDED:
        extra = out.with_name("provided")
        ok, err = _mvn(group, artifact, version, extra, log)
        if not ok:
            raise SystemExit(f"{group}:{artifact}:{version} (for ZooKeeper) did not resolve: {err}")
        for jar in extra.glob("*.jar"):
            if not (out / jar.name).exists():
                shutil.move(str(jar), out / jar.name)
        shutil.rmtree(extra, ignore_errors=True)
    return {"version": ZOOKEEPER_VERSION, "lib": str(out)}


def fetch_druid(version: str, root: Path, log) -> dict:
    base = root / version
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    lib = base / "lib"
    if not (lib.is_dir() and any(lib.glob("druid-services-*.jar"))):
        ok, err = _mvn("org.apache.druid", "druid-services", version, lib, log)
        if not ok:
            manifest = {"format": MANIFEST_FORMAT, "version": version, "ok": False,
                        "error": f"org.apache.druid:druid-services:{version}: {err}"}
            (base / "manifest.json").write_text(json.dumps(manifest, indent=2))
            return manifest
    core = {_artifact_name(j.name) for j in lib.glob("*.jar")}
    extensions, missing = {}, {}
    for ext in EXTENSIONS:
        out = base / "extensions" / ext
        done = base / "extensions" / f".{ext}.json"
        if done.exists():
            extensions[ext] = json.loads(done.read_text())
            continue
        errors = []
        for candidate in (version, *_fallbacks(ext, version)):
            ok, err = _mvn("org.apache.druid.extensions", ext, candidate, out, log)
            if ok:
                for jar in out.glob("*.jar"):  # pull-deps: core's jars are not repeated in an extension
                    if _artifact_name(jar.name) in core and not jar.name.startswith(ext):
                        jar.unlink()
                info = {"version": candidate, "jars": sorted(j.name for j in out.glob("*.jar"))}
                done.write_text(json.dumps(info))
                extensions[ext] = info
                break
            errors.append(f"{candidate}: {err}")
        else:
            missing[ext] = errors
    manifest = {"format": MANIFEST_FORMAT, "version": version, "ok": True, "lib": str(lib),
                "extensions_dir": str(base / "extensions"), "extensions": extensions, "missing": missing,
                "core_jars": len(core), "resolve_seconds": round(time.monotonic() - started, 1)}
    (base / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("versions", nargs="*", help="Druid versions, e.g. 37.0.0 31.0.1")
    ap.add_argument("--list", action="store_true", help="print the manifests of what is cached")
    ap.add_argument("--log", default=None, help="Maven's output goes here (default: <cache>/fetch.log)")
    args = ap.parse_args(argv)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    if args.list:
        for m in sorted(root.glob("*/manifest.json")):
            print(m.read_text())
        return 0
    if not shutil.which("mvn"):
        print("error: mvn not found (Debian: apt-get install maven)", file=sys.stderr)
        return 2
    status = 0
    with open(args.log or root / "fetch.log", "a") as log:
        zk = fetch_zookeeper(root, log)
        print(f"zookeeper {zk['version']}: {zk['lib']}")
        for v in args.versions:
            m = fetch_druid(v, root, log)
            if not m["ok"]:
                print(f"druid {v}: NOT RESOLVED: {m['error']}")
                status = 1
                continue
            exts = ", ".join(f"{k}@{i['version']}" for k, i in m["extensions"].items())
            print(f"druid {v}: {m['core_jars']} core jars; extensions: {exts or 'none'}; "
                  f"not on Maven Central: {', '.join(m['missing']) or 'none'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
