"""Every container log the real node writes, also of pods that are gone.

The kubelet deletes a pod's log directory with the pod, and an op replaces every Druid pod: a PetSet pod comes back
under its name with a new UID, and `kubectl logs --previous` shows only an earlier container of the same pod. What a
router said while it answered a client 502, before its own restart, would be lost. A thread hard-links each log file
into an archive as soon as it appears; the link keeps what containerd wrote, also after the kubelet removed the
original name.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ContainerLog:
    pod: str
    uid: str
    lines: list[tuple[float, str]]  # (when containerd wrote it, epoch seconds; the line), in order


class PodLogArchive:
    """Hard links of every file under the kubelet's `podLogsDir` (<namespace>_<pod>_<uid>/<container>/<n>.log), made
    every `interval` seconds into `archive` with the same relative path (a rotated file's successor under the same
    name gets its inode as a suffix)."""

    def __init__(self, pod_logs: Path, archive: Path, interval: float = 0.5):
        self.pod_logs, self.archive, self.interval = pod_logs, archive, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-log-archive", daemon=True)

    def __enter__(self) -> "PodLogArchive":
        self.archive.mkdir(parents=True, exist_ok=True)
        self.sweep()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sweep()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except OSError:  # a directory the kubelet removed while it was walked: the next sweep goes on
                pass

    def sweep(self) -> None:
        for source in self.pod_logs.glob("*/*/*.log*"):
            dest = self.archive / source.relative_to(self.pod_logs)
            try:
                inode = source.stat().st_ino
                if dest.exists():
                    if dest.stat().st_ino == inode:
                        continue
                    dest = dest.with_name(f"{dest.name}.{inode}")
                    if dest.exists():
                        continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(source, dest)
            except FileNotFoundError:  # removed between the glob and the link: it was linked before, or empty
                continue

    def logs(self, namespace: str, container: str, since: float) -> list[ContainerLog]:
        """The `container` logs of every pod of `namespace` the archive holds, each incarnation apart, from `since`
        (epoch seconds, containerd's time of the line)."""
        self.sweep()
        out = []
        for pod_dir in sorted(self.archive.glob(f"{namespace}_*_*")):
            _, pod, uid = pod_dir.name.split("_", 2)
            files = sorted((pod_dir / container).glob("*.log*"), key=lambda f: f.stat().st_mtime)
            lines = [entry for f in files for entry in cri_lines(f.read_text(errors="replace")) if entry[0] >= since]
            if lines:
                out.append(ContainerLog(pod, uid, lines))
        return out


def cri_lines(text: str) -> list[tuple[float, str]]:
    """The lines of a file in the CRI log format (`<RFC 3339 time> <stream> <P|F> <text>`; P: a part of a line
    that the next entries continue), joined, each with its time."""
    out, partial = [], ""
    for raw in text.splitlines():
        parts = raw.split(" ", 3)
        if len(parts) < 3:
            continue
        stamp, _stream, tag = parts[:3]
        partial += parts[3] if len(parts) == 4 else ""
        if tag == "P":
            continue
        out.append((_epoch(stamp), partial))
        partial = ""
    return out


def _epoch(stamp: str) -> float:
    """RFC 3339 with nanoseconds (containerd's: `Z` or an offset), as epoch seconds."""
    m = _RFC3339.match(stamp)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {stamp!r}")
    whole, fraction, zone = m.groups()
    when = datetime.datetime.fromisoformat(whole + ("+00:00" if zone in ("Z", "") else zone))
    return when.timestamp() + (float(f"0{fraction}") if fraction else 0.0)


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
