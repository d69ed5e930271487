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
Druid version first, then at the fallback versions listed in EXTENSION_FALLBACKS (each checked with
tools/druid/linkcheck.py and proven by tests/druid, see docs/druid-test-tier.md); a fallback jar that needs fitting
to the core is adapted as ADAPTATIONS declares (DruidModules that do not link left out of its services file; no
source is compiled). What cannot be resolved is recorded in the manifest, and the test harness leaves it out of
the loadList (and says so). Jars an extension needs but Druid does not ship (EXTENSION_EXTRAS: the MySQL JDBC
driver) are resolved into the extension's directory too, as an image does.
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
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
SETTINGS = HERE / "settings.xml"
MODULES = "META-INF/services/org.apache.druid.initialization.DruidModule"
ZOOKEEPER_VERSION = "3.8.4"
# ZooKeeper's pom marks these `provided` (its binary distribution ships them); ZooKeeperServerMain needs both
# (metrics-core for ServerMetrics, snappy-java for loading snapshots), at the versions of ZooKeeper's parent pom.
ZOOKEEPER_PROVIDED = (("io.dropwizard.metrics", "metrics-core", "4.1.12.1"),
                      ("org.xerial.snappy", "snappy-java", "1.1.10.5"))
# 2: EXTENSION_EXTRAS (the JDBC driver in mysql-metadata-storage/) and ADAPTATIONS, recorded per extension as
#    "extras" and "adaptation".
MANIFEST_FORMAT = 2

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
# * mysql-metadata-storage 29.0.0 links against the 28.0.0 core (tests/druid/test_storage_extensions.py). Not on
#   33.0.0 (nor 25.0.0): its MySQLConnector calls SQLMetadataConnector(Supplier, Supplier), which Druid 30 replaced
#   by a constructor that also takes CentralizedDatasourceSchemaConfig (Guice: NoSuchMethodError at start), and its
#   module registers a subclass of SQLFirehoseDatabaseConnector, which Druid 31 renamed (NoClassDefFoundError).
# * druid-s3-extensions 29.0.0, adapted (ADAPTATIONS), on 28.0.0 and 33.0.0. 25.0.0 is no fallback: its firehose
#   module needs classes removed in Druid 26-27 (NoClassDefFoundError at start).
EXTENSION_FALLBACKS: dict[str, dict[str, str]] = {
    "simple-client-sslcontext": {"*": "0.23.0"},
    "druid-basic-security": {"28.0.0": "27.0.0"},
    "mysql-metadata-storage": {"28.0.0": "29.0.0"},
    "druid-s3-extensions": {"33.0.0": "29.0.0", "28.0.0": "29.0.0"},
}
# Jars that go into an extension's directory although its pom does not bring them (Druid does not ship them):
# * mysql-metadata-storage: the JDBC driver. Connector/J 5.1.49 is what KubeDB's init image puts there, and its
#   com.mysql.jdbc.Driver is Druid's default driverClassName, so the rendered properties need nothing more.
EXTENSION_EXTRAS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "mysql-metadata-storage": (("mysql", "mysql-connector-java", "5.1.49"),),
}


@dataclass(frozen=True)
class Adaptation:
    """How a fallback jar is fitted to a Druid core it was not built for: the DruidModule classes in `drop_modules`
    are taken out of the jar's META-INF/services, so Druid does not load them (the jar is rewritten as
    `<jar>-kubedruid.jar`, which Druid's "Loading extension" log line then shows). Declared per (extension,
    extension version, Druid version) after a linkage check of the jar against that core, proven by tests/druid."""

    drop_modules: tuple[str, ...]
    why: str


# druid-s3-extensions 29.0.0: its deep storage (S3StorageDruidModule: pusher, puller, killer, mover, task logs)
# links against the 28.0.0 and 33.0.0 cores. Its MSQ storage connector/export module does not (28: no
# ExportStorageProvider, NoClassDefFoundError at start; 33: createStorageConnector/getFilePathForManifest not
# implemented, AbstractMethodError when used), nor on 28 its S3 input source module (SystemField/SystemFields are
# Druid 29 classes). Without them: no `s3` input source on 28, no MSQ durable storage/export on S3.
ADAPTATIONS: dict[tuple[str, str, str], Adaptation] = {
    ("druid-s3-extensions", "29.0.0", "33.0.0"): Adaptation(
        drop_modules=("org.apache.druid.storage.s3.output.S3StorageConnectorModule",),
        why="MSQ storage connector/export classes miss methods of the 33.0.0 interfaces"),
    ("druid-s3-extensions", "29.0.0", "28.0.0"): Adaptation(
        drop_modules=("org.apache.druid.storage.s3.output.S3StorageConnectorModule",
                      "org.apache.druid.data.input.s3.S3InputSourceDruidModule"),
        why="ExportStorageProvider and SystemField(s) are Druid 29 core classes"),
}


def _adaptation_record(a: Adaptation | None) -> dict:
    return {"drop_modules": list(a.drop_modules), "why": a.why} if a else {}


def _fallbacks(ext: str, version: str) -> tuple[str, ...]:
    table = EXTENSION_FALLBACKS.get(ext, {})
    return tuple(v for v in (table.get(version), table.get("*")) if v)


def _coordinates(extra: tuple[str, str, str]) -> str:
    return ":".join(extra)


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


def _add_extras(ext: str, out: Path, log) -> tuple[bool, str]:
    """EXTENSION_EXTRAS of `ext` (with their runtime dependencies) into its directory `out`."""
    for group, artifact, version in EXTENSION_EXTRAS.get(ext, ()):
        extra = out.with_name(f"{ext}.extra")
        ok, err = _mvn(group, artifact, version, extra, log)
        if not ok:
            return False, f"{group}:{artifact}:{version}: {err}"
        for jar in extra.glob("*.jar"):
            if not (out / jar.name).exists():
                shutil.move(str(jar), out / jar.name)
        shutil.rmtree(extra, ignore_errors=True)
    return True, ""


def _adapt(ext: str, out: Path, a: Adaptation, log) -> tuple[bool, str]:
    """Rewrites the extension's own jar in `out` without the DruidModules `a` drops."""
    jar = next(out.glob(f"{ext}-*.jar"))
    adapted = jar.with_name(jar.stem + "-kubedruid.jar")
    with zipfile.ZipFile(jar) as src, zipfile.ZipFile(adapted, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == MODULES:
                lines = data.decode().splitlines()
                missing = [m for m in a.drop_modules if m not in lines]
                if missing:
                    adapted.unlink()
                    return False, f"{jar.name} does not declare the modules {missing}"
                data = "".join(f"{line}\n" for line in lines if line.strip() not in a.drop_modules).encode()
            dst.writestr(item, data)
    jar.unlink()
    log.write(f"{ext}: dropped {list(a.drop_modules)} from {MODULES} -> {adapted.name}\n")
    return True, ""


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
        extras = [_coordinates(e) for e in EXTENSION_EXTRAS.get(ext, ())]
        if done.exists():
            info = json.loads(done.read_text())
            declared = _adaptation_record(ADAPTATIONS.get((ext, info["version"], version)))
            if (info["version"] in (version, *_fallbacks(ext, version)) and info.get("extras", []) == extras
                    and info.get("adaptation", {}) == declared):
                extensions[ext] = info  # else resolved by an older fetch.py: do it again
                continue
        errors = []
        for candidate in (version, *_fallbacks(ext, version)):
            ok, err = _mvn("org.apache.druid.extensions", ext, candidate, out, log)
            if ok:
                for jar in out.glob("*.jar"):  # pull-deps: core's jars are not repeated in an extension
                    if _artifact_name(jar.name) in core and not jar.name.startswith(ext):
                        jar.unlink()
                ok, err = _add_extras(ext, out, log)
            adaptation = ADAPTATIONS.get((ext, candidate, version))
            if ok and adaptation:
                ok, err = _adapt(ext, out, adaptation, log)
            if ok:
                info = {"version": candidate, "jars": sorted(j.name for j in out.glob("*.jar")), "extras": extras,
                        "adaptation": _adaptation_record(adaptation)}
                done.write_text(json.dumps(info))
                extensions[ext] = info
                break
            errors.append(f"{candidate}: {err}")
        else:
            shutil.rmtree(out, ignore_errors=True)  # never an extension without its driver
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
