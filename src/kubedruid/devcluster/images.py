"""The images the operator's pods need, built locally as OCI archives for `ctr images import` (no registry).

    python -m kubedruid.devcluster.images [druid versions...]     # builds what is missing, prints name and archive

Images (names as containerd stores what the pods reference; decision 0010 says why each is built the way it is):
* registry.k8s.io/pause:3.10.2 — a static C program (tools/images/pause/pause.c), containerd 2.3's sandbox image;
* docker.io/apache/druid:<v> — Debian bookworm with OpenJDK 17, Druid's jars from tools/druid/fetch.py's cache, a
  default configuration and an entrypoint with the apache/druid contract (tools/images/druid/);
* docker.io/library/zookeeper:3.7 — ZooKeeper 3.7.2 from Maven Central on the same JRE base (tools/images/zookeeper/);
* docker.io/library/mysql:8.0.35 — MariaDB 10.11 from Debian under the mysql name (tools/images/mysql/);
* docker.io/kubedruid/s3-server:moto-<v> — moto's S3 server for deep storage (tools/images/s3/);
* docker.io/kubedruid/druid-exporter:<kubedruid version> — Debian's python3 and src/kubedruid/exporter.py, the metrics
  sidecar of a monitored Druid (spec.monitor).

Cache (KUBEDRUID_IMAGES_CACHE, default ~/.cache/kubedruid/images): `layers/<key>.tar` keyed by what each layer is
built from (a Debian base by its package list, Druid's jars by fetch.py's manifest and file list, scripts by their
content), `archives/<image>.tar` rebuilt when the image's manifest digest changes. Nothing is rebuilt otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator, Sequence

from kubedruid import __version__
from kubedruid import exporter as exporter_module
from kubedruid.api.defaults import DEFAULT_MYSQL_VERSION, DEFAULT_ZOOKEEPER_VERSION
from kubedruid.api.version import druid_version
from kubedruid.druid.nodes import HISTORICALS
from kubedruid.druid.properties import ClusterConfig, MetadataStore, _extensions
from kubedruid.druid.tls import TLSMode
from kubedruid.specs import dependencies, monitoring

from . import oci
from .binaries import tools_dir

PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"  # containerd 2.3's default sandbox image
MOTO_VERSION = "5.2.5"
S3_SERVER_IMAGE = f"docker.io/kubedruid/s3-server:moto-{MOTO_VERSION}"
S3_PORT = 9000
DEFAULT_S3_BUCKETS = "druid"  # KubeDB's guide: deep storage in bucket `druid`
# Bump when a builder here changes what it writes for the same inputs (the code is not part of the keys).
LAYER_FORMAT = 1

DEBIAN_SUITE = "bookworm"
DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DRUID_UID = 1000  # apache/druid's and the official zookeeper image's user
NOBODY = 65534
SOURCE_LABEL = "org.opencontainers.image.source"
MISSING_EXTENSIONS_LABEL = "kubedruid.dev/missing-extensions"
BUILT_BY = "kubedruid src/kubedruid/devcluster/images.py (local dev node, not a published image)"


@dataclass(frozen=True)
class LocalImage:
    name: str  # fully qualified, as containerd stores it: "docker.io/apache/druid:33.0.0"
    archive: Path  # OCI layout tar for `ctr images import`
    key: str  # content key: the manifest digest (covers the config and every layer)


class ImageBuildError(RuntimeError):
    pass


def _say(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


# --- where things are ----------------------------------------------------------------------------------------------

def cache_root() -> Path:
    if env := os.environ.get("KUBEDRUID_IMAGES_CACHE"):
        return Path(env)
    return Path.home() / ".cache" / "kubedruid" / "images"


def image_inputs_dir() -> Path:
    return tools_dir() / "images"


def druid_cache_root() -> Path:
    """tools/druid/fetch.py's cache: it owns this layout and variable (tests/druid/harness.py reads it the same way)."""
    return Path(os.environ.get("KUBEDRUID_DRUID_CACHE", Path.home() / ".cache" / "kubedruid" / "druid"))


# --- what the operator asks for (its own code is the one home of these names) --------------------------------------

def druid_image_name(version: str) -> str:
    return oci.qualify(druid_version(version).spec.db.image)


def _dependency_image(objects: list[dict]) -> str:
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    return sts["spec"]["template"]["spec"]["containers"][0]["image"]


_SAMPLE_DRUID = {"apiVersion": "kubedb.com/v1alpha2", "kind": "Druid",
                 "metadata": {"name": "sample", "namespace": "default", "uid": "0"}}


def zookeeper_image_name() -> str:
    return oci.qualify(_dependency_image(dependencies.zookeeper(_SAMPLE_DRUID, "zk", DEFAULT_ZOOKEEPER_VERSION)))


def mysql_image_name() -> str:
    return oci.qualify(_dependency_image(
        dependencies.metadata_store(_SAMPLE_DRUID, "mysql", "MySQL", DEFAULT_MYSQL_VERSION, "druid")))


def druid_data_dir() -> str:
    """Parent of the data volumes' mount paths (/druid/data): made writable for uid 1000, so the coordinator's
    rendered indexer-log directory and the mount points below it work without a volume."""
    return str(PurePosixPath(HISTORICALS.data_volume[1]).parent)


# --- pure helpers --------------------------------------------------------------------------------------------------

def with_user(passwd: str, group: str, name: str, uid: int, gid: int, home: str, shell: str = "/bin/sh"
              ) -> tuple[str, str]:
    """/etc/passwd and /etc/group with `name` as uid/gid (replacing any entry of that name or id)."""
    def keep(text: str, ident: str) -> list[str]:
        return [line for line in text.splitlines()
                if line and line.split(":")[0] != name and line.split(":")[2:3] != [ident]]

    users = keep(passwd, str(uid)) + [f"{name}:x:{uid}:{gid}::{home}:{shell}"]
    groups = keep(group, str(gid)) + [f"{name}:x:{gid}:"]
    return "\n".join(users) + "\n", "\n".join(groups) + "\n"


def content_key(obj) -> str:
    return hashlib.sha256(oci.canonical_json(obj)).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 (and the executable bit) of every file under `root`."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        mark = "x" if os.access(path, os.X_OK) else ""
        out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest() + mark
    return out


def tree_entries(src: Path, dest: str, *, uid: int = 0, gid: int = 0, dir_mode: int = 0o755,
                 skip: Callable[[Path], bool] = lambda p: False) -> list[oci.Entry]:
    """Every file, directory and symlink under `src`, placed under `dest`, owned by uid/gid."""
    entries = [oci.directory(dest, dir_mode, uid, gid)]
    for path in sorted(src.rglob("*")):
        if skip(path):
            continue
        target = f"{dest}/{path.relative_to(src).as_posix()}"
        if path.is_symlink():
            entries.append(oci.symlink(target, os.readlink(path), uid, gid))
        elif path.is_dir():
            entries.append(oci.directory(target, dir_mode, uid, gid))
        else:
            entries.append(oci.copy(target, path, mode=0o755 if os.access(path, os.X_OK) else 0o644, uid=uid, gid=gid))
    return entries


# --- layers --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """One layer: `inputs` (JSON) say what it is built from and give its cache key; `build` writes the tar."""

    what: str
    inputs: dict
    build: Callable[[BinaryIO], oci.Blob] = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        return content_key({"format": LAYER_FORMAT, "what": self.what, "inputs": self.inputs})


@dataclass(frozen=True)
class ImageSpec:
    name: str
    layers: tuple[Layer, ...]
    run: oci.RunConfig


def _layer_paths(layer: Layer) -> tuple[Path, Path]:
    base = cache_root() / "layers" / layer.key[:32]
    return base.with_suffix(".tar"), base.with_suffix(".json")


def ensure_layer(layer: Layer) -> tuple[oci.Blob, Path]:
    tar, meta = _layer_paths(layer)
    if meta.exists() and tar.exists():
        info = json.loads(meta.read_text())
        if info["key"] == layer.key and tar.stat().st_size == info["size"]:
            return oci.Blob(info["digest"], info["size"]), tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = tar.with_suffix(".tar.part")
    with open(tmp, "wb") as out:
        blob = layer.build(out)
    tmp.rename(tar)
    meta.write_text(json.dumps({"key": layer.key, "digest": blob.digest, "size": blob.size, "what": layer.what,
                                "inputs": layer.inputs}, indent=1))
    _say(f"built layer {layer.what}: {blob.size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s")
    return blob, tar


def _entries_layer(what: str, inputs: dict, entries: Callable[[], list[oci.Entry]]) -> Layer:
    return Layer(what, inputs, lambda out: oci.write_layer(entries(), out))


# Debian root file systems -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DebianBase:
    name: str
    packages: tuple[str, ...]
    customize: tuple[str, ...] = ()  # shell commands run by mmdebstrap after the install, "$1" = the root


# No manuals, docs (but the copyrights) or translations. openjdk's postinst needs usr/share/man/man1 even so.
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    "--aptopt=APT::Install-Recommends \"false\"",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--setup-hook=mkdir -p \"$1/usr/share/man/man1\"",
)

JRE_BASE = DebianBase("jre17", ("openjdk-17-jre-headless", "iproute2", "bash", "netbase"))
MARIADB_BASE = DebianBase("mariadb", ("mariadb-server", "netbase"), customize=(
    'rm -rf "$1"/var/lib/mysql/*',  # the package initialised a data directory; the entrypoint makes its own
))
PYTHON_BASE = DebianBase("python3", ("python3", "netbase"))


def mmdebstrap_command(base: DebianBase, out: Path) -> list[str]:
    return ["mmdebstrap", *MMDEBSTRAP_OPTIONS, f"--include={','.join(base.packages)}",
            *(f"--customize-hook={c}" for c in base.customize), DEBIAN_SUITE, str(out), *DEBIAN_SOURCES]


def debian_layer(base: DebianBase) -> Layer:
    def build(out: BinaryIO) -> oci.Blob:
        work = cache_root() / "work"
        work.mkdir(parents=True, exist_ok=True)
        raw = work / f"{base.name}.rootfs.tar"
        log = work / f"{base.name}.mmdebstrap.log"
        cmd = mmdebstrap_command(base, raw)
        # SOURCE_DATE_EPOCH: mmdebstrap then leaves out logs, caches and machine ids, so the same packages give
        # the same root file system.
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(oci.EPOCH)}
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise ImageBuildError(f"mmdebstrap for the {base.name} base failed (exit {proc.returncode}); "
                                  f"log {log}:\n{tail}")
        try:
            return oci.rewrite_rootfs(raw, out)
        finally:
            raw.unlink(missing_ok=True)

    inputs = {"suite": DEBIAN_SUITE, "sources": list(DEBIAN_SOURCES), "options": list(MMDEBSTRAP_OPTIONS),
              "source_date_epoch": oci.EPOCH,
              "packages": sorted(base.packages), "customize": list(base.customize)}
    return Layer(f"debian-{base.name}", inputs, build)


def _base_accounts(base: Layer) -> tuple[str, str]:
    _, path = ensure_layer(base)
    passwd, group = oci.read_member(path, "etc/passwd"), oci.read_member(path, "etc/group")
    if passwd is None or group is None:
        raise ImageBuildError(f"{base.what} has no /etc/passwd or /etc/group")
    return passwd.decode(), group.decode()


def account_entries(base: Layer, name: str, uid: int, home: str) -> list[oci.Entry]:
    passwd, group = with_user(*_base_accounts(base), name, uid, uid, home)
    return [oci.file("etc/passwd", passwd), oci.file("etc/group", group)]


# pause ------------------------------------------------------------------------------------------------------------

PAUSE_CFLAGS = ("-static", "-Os", "-s", "-Wall")


def pause_image() -> ImageSpec:
    source = image_inputs_dir() / "pause" / "pause.c"
    compiler = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]

    def entries() -> list[oci.Entry]:
        with tempfile.TemporaryDirectory() as tmp:
            binary = Path(tmp) / "pause"
            subprocess.run(["gcc", *PAUSE_CFLAGS, "-o", str(binary), str(source)], check=True)
            return [oci.file("pause", binary.read_bytes(), 0o755)]

    layer = _entries_layer("pause", {"source": hashlib.sha256(source.read_bytes()).hexdigest(),
                                     "compiler": compiler, "cflags": list(PAUSE_CFLAGS)}, entries)
    run = oci.RunConfig(entrypoint=("/pause",), user="65535:65535", env=(f"PATH={PATH}",),
                        labels={"org.opencontainers.image.description":
                                "Pod sandbox: sleeps, reaps children, exits on SIGTERM (tools/images/pause/pause.c)",
                                SOURCE_LABEL: BUILT_BY})
    return ImageSpec(PAUSE_IMAGE, (layer,), run)


# Druid ------------------------------------------------------------------------------------------------------------

def druid_versions_available() -> list[str]:
    """Druid versions whose jars fetch.py resolved completely (manifest ok, core lib present), newest first."""
    root = druid_cache_root()
    versions = []
    for manifest in root.glob("*/manifest.json"):
        try:
            ok = json.loads(manifest.read_text()).get("ok")
        except (OSError, ValueError):
            continue
        if ok and any((manifest.parent / "lib").glob("druid-services-*.jar")):
            versions.append(manifest.parent.name)
    return sorted(versions, key=_version_tuple, reverse=True)


def _version_tuple(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


def druid_extensions_present(version: str) -> set[str]:
    ext = druid_cache_root() / version / "extensions"
    return {d.name for d in ext.iterdir() if d.is_dir() and not d.name.startswith(".")
            and not d.name.endswith(".part") and any(d.glob("*.jar"))} if ext.is_dir() else set()


def widest_load_list(version: str) -> list[str]:
    """The loadList kubedruid renders for `version` with everything on (security, TLS, MySQL, S3 deep storage)."""
    config = ClusterConfig(zookeeper="zk:2181", zookeeper_base="/druid", deep_storage_type="s3", tls_mode=TLSMode.TLS_ONLY,
                           security=True, druid_version=version,
                           metadata=MetadataStore("MySQL", "mysql", 3306, "druid", "root"))
    return _extensions(config)


def missing_extensions(version: str, load_list: Sequence[str] | None = None) -> list[str]:
    """The extensions of the loadList (default: the widest kubedruid renders) that the image of `version` lacks."""
    present = druid_extensions_present(version)
    return [e for e in (widest_load_list(version) if load_list is None else load_list) if e not in present]


def _druid_jar_files(version: str) -> list[tuple[str, Path]]:
    """(path under /opt/druid, file) for lib/ and each resolved extension."""
    base = druid_cache_root() / version
    files = [(f"lib/{j.name}", j) for j in sorted((base / "lib").glob("*.jar"))]
    for ext in sorted(druid_extensions_present(version)):
        files += [(f"extensions/{ext}/{j.name}", j) for j in sorted((base / "extensions" / ext).glob("*.jar"))]
    return files


def druid_jars_layer(version: str) -> Layer:
    manifest = json.loads((druid_cache_root() / version / "manifest.json").read_text())
    manifest.pop("resolve_seconds", None)  # changes on every fetch run; what resolved is the rest
    files = _druid_jar_files(version)
    inputs = {"version": version, "manifest": manifest,
              "files": [[rel, path.stat().st_size] for rel, path in files]}

    def entries() -> list[oci.Entry]:
        out = [oci.directory("opt/druid/lib", uid=DRUID_UID, gid=DRUID_UID),
               oci.directory("opt/druid/extensions", uid=DRUID_UID, gid=DRUID_UID)]
        out += [oci.directory(f"opt/druid/extensions/{e}", uid=DRUID_UID, gid=DRUID_UID)
                for e in druid_extensions_present(version)]
        return out + [oci.copy(f"opt/druid/{rel}", path, 0o644, DRUID_UID, DRUID_UID) for rel, path in files]

    return _entries_layer(f"druid-{version}-jars", inputs, entries)


def druid_runtime_layer(base: Layer) -> Layer:
    """Shared by every Druid version: the druid user, /druid.sh, the default configuration, writable dirs."""
    src = image_inputs_dir() / "druid"
    data_dir = druid_data_dir()
    # The accounts come from the base's /etc/passwd: its digest, not only its key, is an input.
    inputs = {"base": ensure_layer(base)[0].digest, "files": tree_digest(src), "data_dir": data_dir}

    def entries() -> list[oci.Entry]:
        u = dict(uid=DRUID_UID, gid=DRUID_UID)
        return [*account_entries(base, "druid", DRUID_UID, "/opt/druid"),
                oci.copy("druid.sh", src / "druid.sh", 0o755),
                oci.directory("opt/druid", **u),
                *tree_entries(src / "conf", "opt/druid/conf", **u),
                oci.directory("opt/druid/var", 0o775, **u),
                oci.directory("opt/shared", 0o775, **u),
                oci.directory(data_dir, 0o775, **u)]

    return _entries_layer("druid-runtime", inputs, entries)


def druid_image(version: str) -> ImageSpec:
    base = debian_layer(JRE_BASE)
    run = oci.RunConfig(
        entrypoint=("/druid.sh",), user=f"{DRUID_UID}:{DRUID_UID}", workdir="/opt/druid",
        env=(f"PATH={PATH}", f"JAVA_HOME={JAVA_HOME}", "LANG=C.UTF-8", "DRUID_HOME=/opt/druid"),
        exposed_ports=("8081/tcp", "8082/tcp", "8083/tcp", "8090/tcp", "8091/tcp", "8888/tcp"),
        labels={"org.opencontainers.image.title": "Apache Druid", "org.opencontainers.image.version": version,
                "org.opencontainers.image.description":
                    f"Apache Druid {version} jars from Maven Central on Debian {DEBIAN_SUITE} OpenJDK 17, "
                    "with an entrypoint that honours apache/druid's /druid.sh contract (tools/images/druid)",
                # What druid.sh drops from the loadList, with a warning, because Maven Central lacks it here.
                MISSING_EXTENSIONS_LABEL: ",".join(missing_extensions(version)) or "none",
                SOURCE_LABEL: BUILT_BY})
    return ImageSpec(druid_image_name(version), (base, druid_runtime_layer(base), druid_jars_layer(version)), run)


# ZooKeeper --------------------------------------------------------------------------------------------------------

def zookeeper_jars(version: str) -> Path:
    """ZooKeeper's server jars from Maven Central (tools/images/zookeeper/pom.xml), resolved once."""
    lib = cache_root() / "zookeeper" / version / "lib"
    done = lib.parent / "resolved.json"
    if done.exists():
        return lib
    if not shutil.which("mvn"):
        raise ImageBuildError("mvn not found (Debian: apt-get install maven); it resolves ZooKeeper's jars")
    tmp = lib.with_name("lib.part")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "-q", "-s", str(tools_dir() / "druid" / "settings.xml"),
           "-f", str(image_inputs_dir() / "zookeeper" / "pom.xml"), f"-Dzookeeper.version={version}",
           f"-Dout.dir={tmp}", "dependency:copy-dependencies"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line for line in proc.stdout.splitlines() if line.startswith("[ERROR]")][:3]
        raise ImageBuildError(f"ZooKeeper {version} did not resolve from Maven Central: {' '.join(errors)}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    done.write_text(json.dumps({"version": version, "jars": sorted(j.name for j in lib.glob("*.jar"))}))
    _say(f"resolved ZooKeeper {version} from Maven Central in {time.monotonic() - started:.1f} s")
    return lib


def zookeeper_image() -> ImageSpec:
    version = DEFAULT_ZOOKEEPER_VERSION
    base = debian_layer(JRE_BASE)
    src = image_inputs_dir() / "zookeeper"
    lib = zookeeper_jars(version)
    home = f"apache-zookeeper-{version}-bin"
    jars = sorted(lib.glob("*.jar"))
    inputs = {"base": ensure_layer(base)[0].digest, "version": version, "jars": [[j.name, j.stat().st_size] for j in jars],
              "files": tree_digest(src)}

    def entries() -> list[oci.Entry]:
        u = dict(uid=DRUID_UID, gid=DRUID_UID)
        return [*account_entries(base, "zookeeper", DRUID_UID, f"/{home}"),
                oci.copy("docker-entrypoint.sh", src / "docker-entrypoint.sh", 0o755),
                oci.copy(f"{home}/bin/zkServer.sh", src / "zkServer.sh", 0o755),
                *[oci.copy(f"{home}/lib/{j.name}", j, 0o644) for j in jars],
                oci.directory("conf", **u), oci.copy("conf/log4j.properties", src / "log4j.properties", 0o644, **u),
                *[oci.directory(d, **u) for d in ("data", "datalog", "logs")]]

    env = {"ZOO_CONF_DIR": "/conf", "ZOO_DATA_DIR": "/data", "ZOO_DATA_LOG_DIR": "/datalog", "ZOO_LOG_DIR": "/logs",
           "ZOO_TICK_TIME": "2000", "ZOO_INIT_LIMIT": "5", "ZOO_SYNC_LIMIT": "2",
           "ZOO_AUTOPURGE_PURGEINTERVAL": "0", "ZOO_AUTOPURGE_SNAPRETAINCOUNT": "3", "ZOO_MAX_CLIENT_CNXNS": "60",
           "ZOO_STANDALONE_ENABLED": "true", "ZOO_ADMINSERVER_ENABLED": "true",
           "PATH": f"{PATH}:/{home}/bin", "ZOOCFGDIR": "/conf", "JAVA_HOME": JAVA_HOME, "LANG": "C.UTF-8"}
    run = oci.RunConfig(
        # Root, like the official image: the entrypoint gives the data directories to uid 1000 and drops to it.
        entrypoint=("/docker-entrypoint.sh",), cmd=("zkServer.sh", "start-foreground"), user="0:0",
        workdir=f"/{home}", env=tuple(f"{k}={v}" for k, v in env.items()),
        exposed_ports=("2181/tcp", "2888/tcp", "3888/tcp", "8080/tcp"),
        labels={"org.opencontainers.image.title": "Apache ZooKeeper", "org.opencontainers.image.version": version,
                "org.opencontainers.image.description":
                    f"Apache ZooKeeper {version} jars from Maven Central on Debian {DEBIAN_SUITE} OpenJDK 17, "
                    "with the official zookeeper image's entrypoint contract (tools/images/zookeeper)",
                SOURCE_LABEL: BUILT_BY})
    layer = _entries_layer(f"zookeeper-{version}", inputs, entries)
    return ImageSpec(zookeeper_image_name(), (base, layer), run)


# MySQL (MariaDB) --------------------------------------------------------------------------------------------------

def mysql_image() -> ImageSpec:
    base = debian_layer(MARIADB_BASE)
    src = image_inputs_dir() / "mysql"
    layer = _entries_layer("mysql-entrypoint", {"files": tree_digest(src)}, lambda: [
        oci.copy("usr/local/bin/docker-entrypoint.sh", src / "docker-entrypoint.sh", 0o755),
        oci.copy("etc/mysql/mariadb.conf.d/99-kubedruid.cnf", src / "kubedruid.cnf", 0o644),
        oci.directory("docker-entrypoint-initdb.d"),
    ])
    run = oci.RunConfig(
        entrypoint=("docker-entrypoint.sh",), cmd=("mysqld",), user="0:0",
        env=(f"PATH={PATH}", "LANG=C.UTF-8"), exposed_ports=("3306/tcp",),
        labels={"org.opencontainers.image.title": "MariaDB 10.11 (named mysql)",
                "org.opencontainers.image.version": "mariadb-10.11",
                "org.opencontainers.image.description":
                    "This is MariaDB 10.11 from Debian bookworm, NOT MySQL: it carries the mysql name because the "
                    "operator's pods ask for mysql:<version> and there is no registry here; Druid's "
                    "mysql-metadata-storage supports MariaDB. Entrypoint with the mysql image's contract "
                    "(MYSQL_ROOT_PASSWORD, MYSQL_DATABASE, ...; tools/images/mysql)",
                SOURCE_LABEL: BUILT_BY})
    return ImageSpec(mysql_image_name(), (base, layer), run)


# S3 (moto) ---------------------------------------------------------------------------------------------------------

MOTO_REQUIREMENTS = (f"moto[s3]=={MOTO_VERSION}", "flask", "flask-cors")  # moto's server needs flask + flask-cors
MOTO_PIP_TARGET = ("--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp",
                   "--only-binary=:all:")  # Debian bookworm's python3 is 3.11: wheels only, for that interpreter


def moto_site(inputs: dict) -> Path:
    """moto and its dependencies installed (pip --target) for the image's Python, once per requirement set."""
    site = cache_root() / "moto" / content_key(inputs)[:16] / "site"
    if (site.parent / "installed.txt").exists():
        return site
    tmp = site.with_name("site.part")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir",
                           "--disable-pip-version-check", "--target", str(tmp), *MOTO_PIP_TARGET,
                           *MOTO_REQUIREMENTS], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(f"pip could not install {' '.join(MOTO_REQUIREMENTS)}: {proc.stderr[-2000:]}")
    shutil.rmtree(tmp / "bin", ignore_errors=True)  # console scripts with the build host's interpreter path
    shutil.rmtree(site, ignore_errors=True)
    tmp.rename(site)
    installed = sorted(d.name.removesuffix(".dist-info") for d in site.glob("*.dist-info"))
    (site.parent / "installed.txt").write_text("\n".join(installed) + "\n")
    _say(f"installed moto {MOTO_VERSION} ({len(installed)} distributions) in {time.monotonic() - started:.1f} s")
    return site


def s3_image() -> ImageSpec:
    base = debian_layer(PYTHON_BASE)
    src = image_inputs_dir() / "s3"
    pip_inputs = {"requirements": list(MOTO_REQUIREMENTS), "target": list(MOTO_PIP_TARGET)}
    inputs = {**pip_inputs, "files": tree_digest(src)}

    def entries() -> list[oci.Entry]:
        site = moto_site(pip_inputs)
        return [*tree_entries(site, "opt/s3-server/site"),
                oci.copy("opt/s3-server/installed.txt", site.parent / "installed.txt", 0o644),
                oci.copy("usr/local/bin/s3-server", src / "s3-server.py", 0o755)]

    run = oci.RunConfig(
        entrypoint=("/usr/local/bin/s3-server",), user=f"{NOBODY}:{NOBODY}", workdir="/tmp",
        env=(f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/tmp", "PYTHONPATH=/opt/s3-server/site",
             "PYTHONDONTWRITEBYTECODE=1", f"S3_BUCKETS={DEFAULT_S3_BUCKETS}", f"S3_PORT={S3_PORT}"),
        exposed_ports=(f"{S3_PORT}/tcp",),
        labels={"org.opencontainers.image.title": f"moto {MOTO_VERSION} S3 server",
                "org.opencontainers.image.version": MOTO_VERSION,
                "org.opencontainers.image.description":
                    "An S3-compatible server for Druid's deep storage on the dev node: moto's S3 in server mode, "
                    "in memory, any credentials, buckets from S3_BUCKETS created at start (tools/images/s3)",
                SOURCE_LABEL: BUILT_BY})
    return ImageSpec(S3_SERVER_IMAGE, (base, _entries_layer("s3-server", inputs, entries)), run)


# The metrics sidecar (spec.monitor) ---------------------------------------------------------------------------------

def exporter_image_name() -> str:
    return oci.qualify(monitoring.DEFAULT_EXPORTER_IMAGE)


def exporter_image() -> ImageSpec:
    """Debian's python3 and kubedruid/exporter.py (standard library only), under the name the operator's pods ask
    for by default (specs/monitoring.py)."""
    base = debian_layer(PYTHON_BASE)
    src = Path(exporter_module.__file__)
    layer = _entries_layer("druid-exporter", {"exporter": hashlib.sha256(src.read_bytes()).hexdigest()}, lambda: [
        oci.copy("usr/local/bin/druid-exporter", src, 0o755)])
    run = oci.RunConfig(
        entrypoint=("python3", "/usr/local/bin/druid-exporter"), user=f"{DRUID_UID}:{DRUID_UID}", workdir="/tmp",
        env=(f"PATH={PATH}", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"),
        exposed_ports=(f"{exporter_module.DEFAULT_PORT}/tcp",),
        labels={"org.opencontainers.image.title": "kubedruid druid-exporter",
                "org.opencontainers.image.version": __version__,
                "org.opencontainers.image.description":
                    "The metrics sidecar of a monitored Druid pod: Druid's HTTP emitter events in (POST /druid, "
                    "loopback), Prometheus metrics out (GET /metrics); src/kubedruid/exporter.py",
                SOURCE_LABEL: BUILT_BY})
    return ImageSpec(exporter_image_name(), (base, layer), run)


# --- images --------------------------------------------------------------------------------------------------------

def archive_path(name: str) -> Path:
    return cache_root() / "archives" / (name.replace("/", "_").replace(":", "_") + ".tar")


def ensure_image(spec: ImageSpec) -> LocalImage:
    layers = [ensure_layer(layer) for layer in spec.layers]
    image = oci.build_image(spec.name, spec.run, [blob for blob, _ in layers])
    archive = archive_path(spec.name)
    meta = archive.with_suffix(".json")
    if archive.exists() and meta.exists() and json.loads(meta.read_text()).get("digest") == image.digest:
        return LocalImage(spec.name, archive, image.digest)
    archive.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = archive.with_suffix(".tar.part")
    with open(tmp, "wb") as out:
        blob = oci.write_archive(image, layers, out)
    tmp.rename(archive)
    meta.write_text(json.dumps({"name": spec.name, "digest": image.digest, "size": blob.size,
                                "layers": [layer.what for layer in spec.layers]}, indent=1))
    _say(f"wrote {spec.name}: {blob.size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s")
    return LocalImage(spec.name, archive, image.digest)


@contextmanager
def _locked() -> Iterator[None]:
    """One builder at a time per cache (a test run and `dev up` may both ask)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def image_specs(druid_versions: Sequence[str]) -> list[ImageSpec]:
    return [pause_image(), *(druid_image(v) for v in druid_versions), zookeeper_image(), mysql_image(), s3_image(),
            exporter_image()]


def prune_superseded(specs: Sequence[ImageSpec]) -> list[Path]:
    """Removes cached layers that an input change replaced (same role, other key); other roles are left alone."""
    current = {layer.what: layer.key for spec in specs for layer in spec.layers}
    removed = []
    for meta in (cache_root() / "layers").glob("*.json"):
        info = json.loads(meta.read_text())
        if info.get("what") in current and info.get("key") != current[info["what"]]:
            for path in (meta, meta.with_suffix(".tar")):
                path.unlink(missing_ok=True)
            removed.append(meta.with_suffix(".tar"))
    return removed


def ensure_images(druid_versions: Sequence[str]) -> list[LocalImage]:
    """Builds what is missing or changed; returns every image (pause, Druid per version, ZooKeeper, MySQL, S3)."""
    with _locked():
        specs = image_specs(druid_versions)
        built = [ensure_image(spec) for spec in specs]
        prune_superseded(specs)
        return built


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    versions = args or druid_versions_available()
    if not versions:
        _say("no Druid version in the fetch cache (run tools/druid/fetch.py 33.0.0 first); building the others")
    for image in ensure_images(versions):
        print(f"{image.name}\t{image.archive}")
    for v in versions:
        if missing := missing_extensions(v):
            _say(f"apache/druid:{v} lacks extensions kubedruid can put in its loadList: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
