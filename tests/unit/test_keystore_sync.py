"""The keystore sidecar's script (specs/cluster.py): it turns the kubelet's symlinked Secret volume into a regular
file that changes by rename, which is what Druid's keystore scanner (Jetty 9.4) sees. Run with the machine's sh."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from kubedruid.druid import tls
from kubedruid.specs import cluster


def _kubelet_secret_volume(root: Path, content: bytes, generation: int) -> None:
    """What the kubelet writes: files are symlinks into ..data, which points at a timestamped directory that is
    replaced atomically on an update."""
    data = root / f"..2026_12_03_{generation}"
    data.mkdir()
    (data / "keystore.jks").write_bytes(content)
    tmp = root / "..data_tmp"
    tmp.symlink_to(data.name)
    tmp.replace(root / "..data")
    link = root / "keystore.jks"
    if not link.is_symlink():
        link.symlink_to("..data/keystore.jks")


def _until(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_the_sidecar_copies_each_new_keystore_as_a_regular_file(tmp_path):
    secret, live = tmp_path / "ssl", tmp_path / "live"
    secret.mkdir(), live.mkdir()
    script = cluster._SYNC_SCRIPT.replace(tls.KEYSTORE_PATH, str(secret / "keystore.jks")).replace(
        tls.LIVE_KEYSTORE_PATH, str(live / "keystore.jks")).replace("sleep 2 ", "sleep 0.2 ")
    dst = live / "keystore.jks"
    proc = subprocess.Popen(["sh", "-c", script])
    try:
        assert not _until(dst.exists, timeout=0.5), "nothing to copy before the Secret has a keystore"
        _kubelet_secret_volume(secret, b"first keystore", 1)
        assert _until(lambda: dst.exists() and dst.read_bytes() == b"first keystore")
        first = os.stat(dst).st_ino
        assert not dst.is_symlink()
        _kubelet_secret_volume(secret, b"renewed keystore", 2)
        assert _until(lambda: dst.read_bytes() == b"renewed keystore")
        assert not dst.is_symlink() and os.stat(dst).st_ino != first, "replaced by a rename, never written in place"
        assert sorted(p.name for p in live.iterdir()) == ["keystore.jks"], "no temporary file left behind"
        # The kubelet stops a container with SIGTERM: the sidecar leaves at once, not at the grace period's end.
        started = time.monotonic()
        proc.terminate()
        assert proc.wait(timeout=5) == 0 and time.monotonic() - started < 1.0
    finally:
        proc.kill()
        proc.wait()
