"""OCI image layout archives written by hand: deterministic layer tars, config, manifest, index. No registry, no tools.

What `ctr images import` reads (spec/real-node.md §6): a tar with `oci-layout`, `index.json` (whose manifest
descriptor carries `io.containerd.image.name`) and `blobs/sha256/<hex>`. Layers are uncompressed tars
(`application/vnd.oci.image.layer.v1.tar`), so a layer's digest is also its diff_id.

The JSON builders are pure. The writers take file objects and are deterministic: entries sorted by path, one fixed
mtime, no user or group names, so the same inputs give the same bytes and the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
NAME_ANNOTATION = "io.containerd.image.name"  # containerd's importer names the image after it
REF_ANNOTATION = "org.opencontainers.image.ref.name"
EPOCH = 1704067200  # 2024-01-01T00:00:00Z: the mtime of every entry written here
PLATFORM = {"architecture": "amd64", "os": "linux"}
WHITEOUT_PREFIX = ".wh."


# --- pure ----------------------------------------------------------------------------------------------------------

def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    @classmethod
    def of(cls, data: bytes) -> "Blob":
        return cls(sha256_digest(data), len(data))


def descriptor(media_type: str, blob: Blob, **extra) -> dict:
    return {"mediaType": media_type, "digest": blob.digest, "size": blob.size, **extra}


@dataclass(frozen=True)
class RunConfig:
    """The runtime part of an image config (the fields a pod inherits unless it overrides them)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "NAME=value"
    workdir: str = "/"
    user: str = "0:0"
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()  # "2181/tcp"
    stop_signal: str = ""


def image_config(run: RunConfig, diff_ids: Iterable[str]) -> dict:
    config: dict = {"Env": list(run.env), "WorkingDir": run.workdir, "User": run.user}
    if run.entrypoint:
        config["Entrypoint"] = list(run.entrypoint)
    if run.cmd:
        config["Cmd"] = list(run.cmd)
    if run.labels:
        config["Labels"] = dict(run.labels)
    if run.exposed_ports:
        config["ExposedPorts"] = {p: {} for p in run.exposed_ports}
    if run.stop_signal:
        config["StopSignal"] = run.stop_signal
    return {**PLATFORM, "created": "2024-01-01T00:00:00Z", "config": config,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)}}


def image_manifest(config: Blob, layers: Iterable[Blob], annotations: dict[str, str] | None = None) -> dict:
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
                "config": descriptor(CONFIG_MEDIA_TYPE, config),
                "layers": [descriptor(LAYER_MEDIA_TYPE, layer) for layer in layers]}
    if annotations:
        manifest["annotations"] = dict(annotations)
    return manifest


def image_index(manifest: Blob, name: str) -> dict:
    """The layout's index: one manifest, named for containerd (full name) and for OCI tools (the tag)."""
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [descriptor(MANIFEST_MEDIA_TYPE, manifest, platform=dict(PLATFORM),
                                     annotations={NAME_ANNOTATION: name, REF_ANNOTATION: tag})]}


@dataclass(frozen=True)
class Image:
    """Config, manifest and index of one image, as the bytes written into the archive."""

    name: str
    config: bytes
    manifest: bytes
    index: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


def build_image(name: str, run: RunConfig, layers: list[Blob]) -> Image:
    """Layers are uncompressed, so their digests are the diff_ids."""
    config = canonical_json(image_config(run, [layer.digest for layer in layers]))
    manifest = canonical_json(image_manifest(Blob.of(config), layers))
    index = canonical_json(image_index(Blob.of(manifest), name))
    return Image(name, config, manifest, index)


def qualify(ref: str) -> str:
    """A pod's image reference as containerd stores it: `apache/druid:33.0.0` -> `docker.io/apache/druid:33.0.0`,
    `zookeeper:3.7` -> `docker.io/library/zookeeper:3.7` (Docker's normalisation, which the CRI applies)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        qualified = ref
    elif rest:
        qualified = f"docker.io/{ref}"
    else:
        qualified = f"docker.io/library/{ref}"
    return qualified if ":" in qualified.rsplit("/", 1)[-1] or "@" in qualified else qualified + ":latest"


# --- layer entries -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One member of a layer. `path` is relative to the root ("opt/druid/lib/x.jar")."""

    path: str
    kind: str  # "file" | "dir" | "symlink"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes | None = None  # a file's content, or ...
    source: Path | None = None  # ... a file to copy
    target: str = ""  # symlink target

    @property
    def size(self) -> int:
        if self.kind != "file":
            return 0
        return len(self.data) if self.data is not None else self.source.stat().st_size


def norm_path(path: str) -> str:
    parts = [p for p in path.strip().split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"not a path inside a layer: {path!r}")
    return "/".join(parts)


def file(path: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(norm_path(path), "file", mode, uid, gid, data=data.encode() if isinstance(data, str) else data)


def copy(path: str, source: Path, mode: int | None = None, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(norm_path(path), "file", (source.stat().st_mode & 0o7777) if mode is None else mode, uid, gid,
                 source=source)


def directory(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(norm_path(path), "dir", mode, uid, gid)


def symlink(path: str, target: str, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(norm_path(path), "symlink", 0o777, uid, gid, target=target)


def tree(entries: Iterable[Entry]) -> list[Entry]:
    """Sorted by path, parents before children (missing parents added as root 0755), later entries win."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        by_path[e.path] = e
    for path in list(by_path):
        parts = path.split("/")
        for i in range(1, len(parts)):
            by_path.setdefault("/".join(parts[:i]), directory("/".join(parts[:i])))
    return [by_path[p] for p in sorted(by_path, key=lambda p: p.split("/"))]


class HashingWriter:
    """Counts and hashes what goes through it."""

    def __init__(self, out: BinaryIO):
        self.out, self.size, self._hash = out, 0, hashlib.sha256()

    def write(self, data) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()

    def blob(self) -> Blob:
        return Blob("sha256:" + self._hash.hexdigest(), self.size)


def _tarinfo(e: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(e.path + ("/" if e.kind == "dir" else ""))
    info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, EPOCH
    info.uname = info.gname = ""
    if e.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif e.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, e.target
    elif e.kind == "file":
        info.size = e.size
    else:
        raise ValueError(f"unknown entry kind {e.kind!r} for {e.path}")
    return info


def write_layer(entries: Iterable[Entry], out: BinaryIO) -> Blob:
    """An uncompressed layer tar; returns its digest (= diff_id) and size."""
    sink = HashingWriter(out)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in tree(entries):
            info = _tarinfo(e)
            if e.kind != "file":
                tar.addfile(info)
            elif e.data is not None:
                tar.addfile(info, io.BytesIO(e.data))
            else:
                with open(e.source, "rb") as fh:
                    tar.addfile(info, fh)
    return sink.blob()


def _member_path(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def rewrite_rootfs(src: Path, out: BinaryIO, *, drop_under: tuple[str, ...] = ("dev",)) -> Blob:
    """A root file system tar (mmdebstrap's) as a deterministic layer: sorted, one mtime, numeric owners only,
    no content under `drop_under` (device nodes: the runtime mounts its own /dev). Hard links keep pointing at the
    first member of their group in the new order."""
    sink = HashingWriter(out)
    with tarfile.open(src, "r:") as tar_in:
        members = {}
        for m in tar_in.getmembers():
            path = _member_path(m.name)
            if path and not any(path.startswith(d + "/") for d in drop_under):
                members[path] = m
        links: dict[str, list[str]] = {}  # hard link target -> its paths
        for path, m in members.items():
            if m.islnk():
                links.setdefault(_member_path(m.linkname), []).append(path)
        first_of: dict[str, str] = {}  # path -> the path that carries the data in the new order
        for target, paths in links.items():
            group = sorted([target, *paths], key=lambda p: p.split("/"))
            for p in group:
                first_of[p] = group[0]
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar_out:
            for path in sorted(members, key=lambda p: p.split("/")):
                m = members[path]
                data_member = members[_member_path(m.linkname)] if m.islnk() else m
                info = tarfile.TarInfo(path + ("/" if m.isdir() else ""))
                info.mode, info.uid, info.gid, info.mtime = m.mode, m.uid, m.gid, EPOCH
                info.uname = info.gname = ""
                info.devmajor, info.devminor = m.devmajor, m.devminor
                if path in first_of and first_of[path] != path:
                    info.type, info.linkname = tarfile.LNKTYPE, first_of[path]
                    tar_out.addfile(info)
                elif data_member.isreg():
                    info.type, info.size = tarfile.REGTYPE, data_member.size
                    tar_out.addfile(info, tar_in.extractfile(data_member))
                else:
                    info.type, info.linkname = m.type, m.linkname
                    tar_out.addfile(info)
    return sink.blob()


def read_member(layer: Path, path: str) -> bytes | None:
    """One regular file of a layer tar, or None."""
    with tarfile.open(layer, "r:") as tar:
        for m in tar:
            if _member_path(m.name) == path and m.isreg():
                return tar.extractfile(m).read()
    return None


# --- archives ------------------------------------------------------------------------------------------------------

def write_archive(image: Image, layers: list[tuple[Blob, Path]], out: BinaryIO) -> Blob:
    """The OCI layout tar that `ctr images import` takes. Layer blobs are streamed from their files."""
    sink = HashingWriter(out)

    def add(tar: tarfile.TarFile, name: str, size: int, fh) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, EPOCH
        tar.addfile(info, fh)

    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        layout = canonical_json({"imageLayoutVersion": "1.0.0"})
        blobs: dict[str, tuple[int, object]] = {}
        for data in (image.config, image.manifest):
            blobs[Blob.of(data).hex] = (len(data), data)
        for blob, path in layers:
            blobs[blob.hex] = (blob.size, path)
        for name, data in (("oci-layout", layout), ("index.json", image.index)):
            add(tar, name, len(data), io.BytesIO(data))
        for hex_, (size, src) in sorted(blobs.items()):
            if isinstance(src, bytes):
                add(tar, f"blobs/sha256/{hex_}", size, io.BytesIO(src))
            else:
                with open(src, "rb") as fh:
                    add(tar, f"blobs/sha256/{hex_}", size, fh)
    return sink.blob()


@dataclass(frozen=True)
class ArchiveContents:
    index: dict
    manifest: dict
    config: dict


def read_archive(archive: Path) -> ArchiveContents:
    with tarfile.open(archive, "r:") as tar:
        def blob(digest: str) -> bytes:
            return tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}").read()
        index = json.loads(tar.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
    return ArchiveContents(index, manifest, config)


def _layer_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    yield from tar


def unpack(archive: Path, dest: Path) -> ArchiveContents:
    """Applies the image's layers in order under `dest` (as root: owners kept), honouring OCI whiteouts.
    For checks without containerd; not a hardened extractor (the archives are our own)."""
    contents = read_archive(archive)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:") as outer:
        for layer in contents.manifest["layers"]:
            fh = outer.extractfile(f"blobs/sha256/{layer['digest'].split(':', 1)[1]}")
            with tarfile.open(fileobj=fh, mode="r|") as tar:
                for m in tar:
                    path = _member_path(m.name)
                    if not path:
                        continue
                    parent, _, base = path.rpartition("/")
                    if base.startswith(WHITEOUT_PREFIX):
                        victim = dest / parent / base[len(WHITEOUT_PREFIX):]
                        if base == WHITEOUT_PREFIX + WHITEOUT_PREFIX + ".opq":
                            for child in (dest / parent).iterdir():
                                _remove(child)
                        else:
                            _remove(victim)
                        continue
                    target = dest / path
                    if target.is_symlink() or (target.exists() and not (target.is_dir() and m.isdir())):
                        _remove(target)
                    m.name = path
                    tar.extract(m, dest, numeric_owner=True, filter="fully_trusted")
    return contents


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)
