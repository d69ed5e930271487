"""Local images: the OCI writer (layers, config, manifest, index, archive), the cache keys, the names the operator's
pods ask for, and the entrypoints' environment handling (run with bash against a fake `java`)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from kubedruid.devcluster import images, oci

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "images"


def _layer_bytes(entries) -> tuple[bytes, oci.Blob]:
    out = io.BytesIO()
    blob = oci.write_layer(entries, out)
    return out.getvalue(), blob


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


# --- layers --------------------------------------------------------------------------------------------------------

def test_layer_is_sorted_with_parents_fixed_mtime_and_numeric_owners():
    data, blob = _layer_bytes([
        oci.file("opt/druid/conf/b.properties", "b=1\n", uid=1000, gid=1000),
        oci.file("druid.sh", "#!/bin/bash\n", 0o755),
        oci.directory("opt/druid/var", 0o775, 1000, 1000),
        oci.symlink("opt/druid/current", "conf"),
    ])
    members = _members(data)
    assert [m.name for m in members] == ["druid.sh", "opt", "opt/druid", "opt/druid/conf",
                                         "opt/druid/conf/b.properties", "opt/druid/current", "opt/druid/var"]
    by_name = {m.name: m for m in members}
    assert by_name["druid.sh"].mode == 0o755 and by_name["druid.sh"].isreg()
    assert (by_name["opt/druid/var"].uid, by_name["opt/druid/var"].mode) == (1000, 0o775)
    assert by_name["opt/druid"].isdir() and by_name["opt/druid"].uid == 0  # added parent
    assert by_name["opt/druid/current"].issym() and by_name["opt/druid/current"].linkname == "conf"
    assert {m.mtime for m in members} == {oci.EPOCH}
    assert {m.uname for m in members} == {""}
    assert blob == oci.Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def test_same_entries_give_the_same_digest_in_any_order_and_a_change_gives_another():
    a = [oci.file("a/x", "1"), oci.file("b", "2"), oci.directory("c")]
    assert _layer_bytes(a)[1] == _layer_bytes(list(reversed(a)))[1]
    assert _layer_bytes(a)[1] != _layer_bytes([oci.file("a/x", "1"), oci.file("b", "3"), oci.directory("c")])[1]
    assert _layer_bytes(a)[1] != _layer_bytes([oci.file("a/x", "1", uid=1000), *a[1:]])[1]


def test_later_entry_wins_and_paths_are_normalised():
    data, _ = _layer_bytes([oci.file("/etc/passwd", "old"), oci.file("./etc//passwd", "new")])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["etc", "etc/passwd"]
        assert tar.extractfile("etc/passwd").read() == b"new"
    with pytest.raises(ValueError):
        oci.file("../escape", "x")


def test_copy_streams_a_file(tmp_path):
    src = tmp_path / "big.jar"
    src.write_bytes(os.urandom(100_000))
    data, _ = _layer_bytes([oci.copy("opt/druid/lib/big.jar", src, 0o644, 1000, 1000)])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.extractfile("opt/druid/lib/big.jar").read() == src.read_bytes()


def _rootfs_tar(path: Path) -> None:
    """A tar as mmdebstrap writes it: ./ prefixes, device nodes, a hard link whose target sorts after it."""
    with tarfile.open(path, "w") as tar:
        def add(name, type_=tarfile.DIRTYPE, data=b"", **kw):
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.size = type_, 1234567890, len(data) if type_ == tarfile.REGTYPE else 0
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if type_ == tarfile.REGTYPE else None)
        add("./")
        add("./dev/")
        add("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add("./usr/")
        add("./usr/bin/")
        add("./usr/bin/zz-real", tarfile.REGTYPE, b"binary", mode=0o755)
        add("./usr/bin/aa-link", tarfile.LNKTYPE, linkname="./usr/bin/zz-real")
        add("./tmp/", mode=0o1777)


def test_rootfs_rewrite_drops_devices_fixes_mtimes_and_keeps_hard_links_valid(tmp_path):
    src = tmp_path / "rootfs.tar"
    _rootfs_tar(src)
    out = io.BytesIO()
    blob = oci.rewrite_rootfs(src, out)
    members = {m.name: m for m in _members(out.getvalue())}
    assert list(members) == ["dev", "tmp", "usr", "usr/bin", "usr/bin/aa-link", "usr/bin/zz-real"]
    assert members["usr/bin/aa-link"].isreg()  # first in the new order carries the data
    assert members["usr/bin/zz-real"].islnk() and members["usr/bin/zz-real"].linkname == "usr/bin/aa-link"
    assert members["tmp"].mode == 0o1777
    assert {m.mtime for m in members.values()} == {oci.EPOCH}
    again = io.BytesIO()
    assert oci.rewrite_rootfs(src, again) == blob
    dest = tmp_path / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        tar.extractall(dest, filter="fully_trusted")
    assert (dest / "usr/bin/zz-real").read_bytes() == b"binary"


# --- config, manifest, index, archive ------------------------------------------------------------------------------

RUN = oci.RunConfig(entrypoint=("/druid.sh",), cmd=("coordinator",), env=("PATH=/usr/bin",), workdir="/opt/druid",
                    user="1000:1000", labels={"a": "b"}, exposed_ports=("8081/tcp",))


def test_config_manifest_and_index_reference_each_other_by_digest():
    layers = [_layer_bytes([oci.file("a", "1")])[1], _layer_bytes([oci.file("b", "2")])[1]]
    image = oci.build_image("docker.io/apache/druid:33.0.0", RUN, layers)
    config, manifest, index = (json.loads(x) for x in (image.config, image.manifest, image.index))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [l.digest for l in layers]}
    assert config["config"] == {"Entrypoint": ["/druid.sh"], "Cmd": ["coordinator"], "Env": ["PATH=/usr/bin"],
                                "WorkingDir": "/opt/druid", "User": "1000:1000", "Labels": {"a": "b"},
                                "ExposedPorts": {"8081/tcp": {}}}
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert manifest["config"] == {"mediaType": oci.CONFIG_MEDIA_TYPE, "digest": oci.sha256_digest(image.config),
                                  "size": len(image.config)}
    assert [(l["mediaType"], l["digest"], l["size"]) for l in manifest["layers"]] == \
        [(oci.LAYER_MEDIA_TYPE, l.digest, l.size) for l in layers]
    (desc,) = index["manifests"]
    assert desc["digest"] == image.digest == oci.sha256_digest(image.manifest)
    assert desc["mediaType"] == oci.MANIFEST_MEDIA_TYPE
    assert desc["annotations"] == {oci.NAME_ANNOTATION: "docker.io/apache/druid:33.0.0",
                                   oci.REF_ANNOTATION: "33.0.0"}
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}


def test_archive_is_an_oci_layout_whose_blobs_match_their_digests(tmp_path):
    layer_files = []
    for i, entries in enumerate(([oci.file("etc/x", "base"), oci.file("etc/gone", "g")],
                                 [oci.file("etc/x", "top"), oci.file("etc/.wh.gone", "")])):
        path = tmp_path / f"layer{i}.tar"
        with open(path, "wb") as fh:
            layer_files.append((oci.write_layer(entries, fh), path))
    image = oci.build_image("registry.k8s.io/pause:3.10.2", RUN, [b for b, _ in layer_files])
    archive = tmp_path / "image.tar"
    with open(archive, "wb") as fh:
        oci.write_archive(image, layer_files, fh)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert names[:2] == ["oci-layout", "index.json"]
        assert json.loads(tar.extractfile("oci-layout").read()) == {"imageLayoutVersion": "1.0.0"}
        blobs = [n for n in names if n.startswith("blobs/sha256/")]
        assert len(blobs) == 4  # config, manifest, two layers
        for name in blobs:
            assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == name.rsplit("/", 1)[1]
    contents = oci.unpack(archive, tmp_path / "root")
    assert contents.index["manifests"][0]["annotations"][oci.NAME_ANNOTATION] == "registry.k8s.io/pause:3.10.2"
    assert (tmp_path / "root/etc/x").read_text() == "top"
    assert not (tmp_path / "root/etc/gone").exists()  # whiteout applied


@pytest.mark.parametrize("ref, qualified", [
    ("apache/druid:33.0.0", "docker.io/apache/druid:33.0.0"),
    ("zookeeper:3.7", "docker.io/library/zookeeper:3.7"),
    ("mysql:8.0.35", "docker.io/library/mysql:8.0.35"),
    ("busybox", "docker.io/library/busybox:latest"),
    ("registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.2"),
    ("localhost:5000/x/y:1", "localhost:5000/x/y:1"),
])
def test_qualify_as_the_cri_does(ref, qualified):
    assert oci.qualify(ref) == qualified


def test_images_carry_the_names_the_operator_asks_for():
    assert images.druid_image_name("33.0.0") == "docker.io/apache/druid:33.0.0"
    assert images.zookeeper_image_name() == "docker.io/library/zookeeper:3.7"
    assert images.mysql_image_name() == "docker.io/library/mysql:8.0.35"
    assert images.druid_data_dir() == "/druid/data"


def test_with_user_replaces_an_entry_of_the_same_name_or_id():
    passwd = "root:x:0:0:root:/root:/bin/bash\nold:x:1000:1000::/home/old:/bin/sh\n"
    group = "root:x:0:\nold:x:1000:\n"
    p, g = images.with_user(passwd, group, "druid", 1000, 1000, "/opt/druid")
    assert p == "root:x:0:0:root:/root:/bin/bash\ndruid:x:1000:1000::/opt/druid:/bin/sh\n"
    assert g == "root:x:0:\ndruid:x:1000:\n"


# --- cache ---------------------------------------------------------------------------------------------------------

def test_an_image_is_rebuilt_only_when_an_input_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEDRUID_IMAGES_CACHE", str(tmp_path / "cache"))
    builds = []

    def spec(content: str) -> images.ImageSpec:
        def entries():
            builds.append(content)
            return [oci.file("hello", content)]
        return images.ImageSpec("docker.io/library/test:1", (images._entries_layer("t", {"c": content}, entries),),
                                RUN)

    first = images.ensure_image(spec("a"))
    again = images.ensure_image(spec("a"))
    assert builds == ["a"] and again == first
    assert first.archive == images.archive_path("docker.io/library/test:1") and first.archive.exists()
    assert first.key == oci.read_archive(first.archive).index["manifests"][0]["digest"]
    changed = images.ensure_image(spec("b"))
    assert builds == ["a", "b"] and changed.key != first.key


def _fake_druid_cache(root: Path, version: str, *, ok: bool = True, extensions=("druid-datasketches",)) -> None:
    base = root / version
    (base / "lib").mkdir(parents=True)
    (base / "lib" / f"druid-services-{version}.jar").write_bytes(b"jar")
    for ext in extensions:
        (base / "extensions" / ext).mkdir(parents=True)
        (base / "extensions" / ext / f"{ext}-{version}.jar").write_bytes(b"jar")
    (base / "manifest.json").write_text(json.dumps({"ok": ok, "version": version, "resolve_seconds": 12.0,
                                                    "extensions": {e: {"version": version} for e in extensions}}))


def test_druid_versions_are_the_complete_ones_in_the_fetch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEDRUID_DRUID_CACHE", str(tmp_path))
    _fake_druid_cache(tmp_path, "28.0.0")
    _fake_druid_cache(tmp_path, "33.0.0")
    _fake_druid_cache(tmp_path, "36.0.0", ok=False)
    (tmp_path / "zookeeper" / "3.8.4" / "lib").mkdir(parents=True)
    assert images.druid_versions_available() == ["33.0.0", "28.0.0"]


def test_missing_extensions_are_those_of_the_rendered_load_list_without_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEDRUID_DRUID_CACHE", str(tmp_path))
    _fake_druid_cache(tmp_path, "33.0.0", extensions=("druid-datasketches", "druid-kafka-indexing-service",
                                                      "simple-client-sslcontext"))
    (tmp_path / "33.0.0" / "extensions" / "druid-s3-extensions.part").mkdir()  # an interrupted fetch
    assert images.missing_extensions("33.0.0") == ["druid-multi-stage-query", "druid-basic-security",
                                                   "mysql-metadata-storage", "druid-s3-extensions"]
    assert images.missing_extensions("33.0.0", ["druid-datasketches"]) == []


def test_druid_jar_layer_key_follows_the_files_not_the_fetch_timing(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEDRUID_DRUID_CACHE", str(tmp_path))
    _fake_druid_cache(tmp_path, "33.0.0")
    key = images.druid_jars_layer("33.0.0").key
    manifest = tmp_path / "33.0.0" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "resolve_seconds": 99.0}))
    assert images.druid_jars_layer("33.0.0").key == key
    ext = tmp_path / "33.0.0" / "extensions" / "mysql-metadata-storage"
    ext.mkdir()
    (ext / "mysql-connector-java-5.1.49.jar").write_bytes(b"driver")  # a later fallback jar
    assert images.druid_jars_layer("33.0.0").key != key


def test_debian_base_excludes_manuals_but_keeps_what_openjdk_postinst_needs(tmp_path):
    cmd = images.mmdebstrap_command(images.JRE_BASE, tmp_path / "out.tar")
    assert "--dpkgopt=path-exclude=/usr/share/man/*" in cmd
    assert '--setup-hook=mkdir -p "$1/usr/share/man/man1"' in cmd
    assert "--include=openjdk-17-jre-headless,iproute2,bash,netbase" in cmd
    assert cmd[-5:-2] == ["bookworm", str(tmp_path / "out.tar"), images.DEBIAN_SOURCES[0]]


# --- druid.sh ------------------------------------------------------------------------------------------------------

FAKE_JAVA = """#!/bin/bash
printf '%s\\n' "$@" > "$OUT/args"
cp -r "$CONF" "$OUT/conf"
"""
FAKE_IP = """#!/bin/bash
echo "1.0.0.0 via 10.245.0.1 dev eth0 src 10.245.0.7 uid 1000"
"""


def _druid_sh(tmp_path: Path, service: str, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess,
                                                                                         Path]:
    bin_dir, out, copy = tmp_path / "bin", tmp_path / "out", tmp_path / "tmp" / "conf" / "druid"
    for d in (bin_dir, out):
        d.mkdir(exist_ok=True)
    for name, text in (("java", FAKE_JAVA), ("ip", FAKE_IP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "opt-druid"
    work.mkdir(exist_ok=True)
    base_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "OUT": str(out), "CONF": str(copy),
                "DRUID_CONF_SOURCE": str(TOOLS / "druid" / "conf" / "druid"), "DRUID_CONF_COPY": str(copy)}
    proc = subprocess.run(["bash", str(TOOLS / "druid" / "druid.sh"), service, *args], cwd=work,
                          env={**base_env, **env}, capture_output=True, text=True)
    return proc, out


def _props(path: Path) -> dict[str, str]:
    lines = [l for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    return dict(l.split("=", 1) for l in lines)


def test_druid_sh_translates_the_pod_environment_into_druid_configuration(tmp_path):
    common = tmp_path / "common.properties"
    common.write_text("druid.zk.service.host=zk:2181\ndruid.host=stale\ndruid.extensions.loadList=[\"a\"]\n")
    node = tmp_path / "coordinators.properties"
    node.write_text("druid.service=druid/coordinator\ndruid.plaintextPort=8081\n")
    proc, out = _druid_sh(tmp_path, "coordinator", {
        "DRUID_CONFIG_COMMON": str(common), "DRUID_CONFIG_coordinator": str(node),
        "druid_host": "demo-coordinators-0.demo-pods.demo.svc.cluster.local",  # over DRUID_SET_HOST's IP
        "druid_metadata_storage_connector_password": "s3cret-value",
        "druid_emitter_logging_log__level": "debug",
        "DRUID_XMX": "300m", "DRUID_MAXDIRECTMEMORYSIZE": "100m", "JAVA_OPTS": "-Xmx512m -Dextra=1",
    }, "--extra-arg")
    assert proc.returncode == 0, proc.stderr
    conf = out / "conf" / "cluster"
    service = _props(conf / "master/coordinator-overlord/runtime.properties")
    common_props = _props(conf / "_common/common.runtime.properties")
    assert service["druid.service"] == "druid/coordinator"
    assert service["druid.host"] == "demo-coordinators-0.demo-pods.demo.svc.cluster.local"
    assert service["druid.metadata.storage.connector.password"] == "s3cret-value"
    assert service["druid.emitter.logging.log_level"] == "debug"
    assert "druid.host" not in common_props and common_props["druid.zk.service.host"] == "zk:2181"
    assert "s3cret-value" not in proc.stdout + proc.stderr  # keys are logged, values are not
    args = (out / "args").read_text().splitlines()
    assert args[0] == "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED"
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in args
    assert [a for a in args if a.startswith("-Xmx")] == ["-Xmx300m", "-Xmx512m"]  # jvm.config's, then JAVA_OPTS
    assert [a for a in args if a.startswith("-XX:MaxDirectMemorySize")] == ["-XX:MaxDirectMemorySize=100m"]
    assert "-Xms256m" in args and "-XX:+UseSerialGC" in args and "-XX:+ExitOnOutOfMemoryError" in args
    assert args.index("-Dextra=1") > args.index("-XX:+UseSerialGC")
    cp = args[args.index("-cp") + 1].split(":")
    assert cp[0].endswith("cluster/_common") and cp[1].endswith("master/coordinator-overlord") and cp[2] == "lib/*"
    assert args[args.index("-cp") + 2:] == ["org.apache.druid.cli.Main", "server", "coordinator", "--extra-arg"]
    assert (tmp_path / "opt-druid" / "var" / "tmp").is_dir()


def test_druid_sh_sets_the_pod_ip_and_zookeeper_when_asked(tmp_path):
    proc, out = _druid_sh(tmp_path, "broker", {"ZOOKEEPER": "zk-0:2181", "DRUID_LOG_LEVEL": "warn"})
    assert proc.returncode == 0, proc.stderr
    conf = out / "conf" / "cluster"
    assert _props(conf / "query/broker/runtime.properties")["druid.host"] == "10.245.0.7"
    assert _props(conf / "query/broker/runtime.properties")["druid.zk.service.host"] == "zk-0:2181"
    assert 'level="warn"' in (conf / "_common/log4j2.xml").read_text()


def test_druid_sh_puts_properties_of_a_service_without_a_file_into_common(tmp_path):
    proc, out = _druid_sh(tmp_path, "peon", {"DRUID_SET_HOST": "0", "druid_foo_bar": "1"})
    assert proc.returncode == 0, proc.stderr
    assert _props(out / "conf/cluster/_common/common.runtime.properties")["druid.foo.bar"] == "1"


def test_default_heaps_fit_a_1gib_pod():
    """heap + direct memory of every service's default jvm.config stays under 700 MiB (the JVM needs the rest)."""
    def mib(v: str) -> int:
        return int(v[:-1]) * (1024 if v[-1] in "gG" else 1)
    for jvm in (TOOLS / "druid" / "conf").rglob("jvm.config"):
        flags = jvm.read_text().split()
        heap = max(mib(f[4:]) for f in flags if f.startswith("-Xmx"))
        direct = sum(mib(f.split("=")[1]) for f in flags if f.startswith("-XX:MaxDirectMemorySize="))
        assert heap + direct <= 700, jvm


# --- zookeeper entrypoint ------------------------------------------------------------------------------------------

def test_zookeeper_entrypoint_writes_zoo_cfg_from_the_environment(tmp_path):
    conf, data = tmp_path / "conf", tmp_path / "data"
    conf.mkdir()
    data.mkdir()
    env = {"PATH": "/usr/bin:/bin", "ZOO_CONF_DIR": str(conf), "ZOO_DATA_DIR": str(data),
           "ZOO_DATA_LOG_DIR": "/datalog", "ZOO_LOG_DIR": "/logs", "ZOO_TICK_TIME": "2000", "ZOO_INIT_LIMIT": "5",
           "ZOO_SYNC_LIMIT": "2", "ZOO_AUTOPURGE_PURGEINTERVAL": "0", "ZOO_AUTOPURGE_SNAPRETAINCOUNT": "3",
           "ZOO_MAX_CLIENT_CNXNS": "60", "ZOO_STANDALONE_ENABLED": "true", "ZOO_ADMINSERVER_ENABLED": "false",
           "ZOO_4LW_COMMANDS_WHITELIST": "ruok,srvr"}
    proc = subprocess.run(["bash", str(TOOLS / "zookeeper" / "docker-entrypoint.sh"), "true"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cfg = _props(conf / "zoo.cfg")
    assert cfg["4lw.commands.whitelist"] == "ruok,srvr"
    assert cfg["dataDir"] == str(data) and cfg["admin.enableServer"] == "false"
    assert cfg["server.1"] == "localhost:2888:3888;2181"
    assert (data / "myid").read_text() == "1\n"


def test_druid_sh_drops_loadlist_entries_this_image_lacks_and_names_them(tmp_path):
    extensions = tmp_path / "extensions"
    (extensions / "druid-datasketches").mkdir(parents=True)
    common = tmp_path / "common.properties"
    common.write_text('druid.extensions.loadList=["druid-datasketches","druid-kafka-indexing-service"]\n')
    proc, out = _druid_sh(tmp_path, "broker", {"DRUID_CONFIG_COMMON": str(common), "DRUID_SET_HOST": "0",
                                               "DRUID_EXTENSIONS_DIR": str(extensions)})
    assert proc.returncode == 0, proc.stderr
    common_props = _props(out / "conf" / "cluster" / "_common" / "common.runtime.properties")
    assert common_props["druid.extensions.loadList"] == '["druid-datasketches"]'
    assert "lacks the extension(s) druid-kafka-indexing-service" in proc.stdout + proc.stderr


def test_local_druid_versions_say_whether_their_image_runs_the_default_configuration():
    import yaml

    from kubedruid.devcluster.node import DEFAULT_CONFIG_EXTENSIONS, local_druid_versions_manifest

    full = set(DEFAULT_CONFIG_EXTENSIONS) | {"druid-datasketches"}
    present = {"28.0.0": full, "33.0.0": full - {"mysql-metadata-storage"}}.get
    docs = list(yaml.safe_load_all(local_druid_versions_manifest(["28.0.0", "33.0.0"], present)))
    labels = {d["metadata"]["name"]: d["metadata"]["labels"] for d in docs}
    assert labels["28.0.0"]["kubedruid.dev/runs-defaults"] == "true"
    assert labels["33.0.0"]["kubedruid.dev/runs-defaults"] == "false"
    assert all(v["kubedruid.dev/image"] == "local" for v in labels.values())
