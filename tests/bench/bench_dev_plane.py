"""Benchmark of the local control plane: cold build time (as recorded by tools/build.sh), warm `dev up` time from
stopped processes, and the memory (RSS) of the running plane. Prints figures; asserts nothing.

    .venv/bin/python -m tests.bench.bench_dev_plane
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kubedruid.devcluster import binaries, plane

WARM_UP_GOAL_S = 30.0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    dirs = binaries.build("k8s", "etcd", "kwok", "cert-manager")
    print("build time recorded when each cached set was built (a cold build only on a fresh machine):")
    total = 0
    for d in dirs:
        seconds = int((d / ".build-seconds").read_text())
        total += seconds
        print(f"  {d.name.rsplit('-', 1)[0]:<14} {seconds:>5} s")
    print(f"  {'total':<14} {total:>5} s ({total / 60:.1f} min)")

    with tempfile.TemporaryDirectory(prefix="kubedruid-bench-") as tmp:
        state = Path(tmp) / "plane"
        t0 = time.monotonic()
        plane.up(state)
        first = time.monotonic() - t0
        plane.down(state)
        t0 = time.monotonic()
        plane.up(state)
        warm = time.monotonic() - t0
        time.sleep(5)  # let the controllers settle before measuring memory
        per = {s.name: _rss_mib(s.pid) for s in plane.status(state) if s.pid}
        plane.down(state)

    print(f"first dev up (new state dir, binaries cached): {first:.1f} s")
    print(f"warm dev up (after dev down, state kept):      {warm:.1f} s  = {warm / WARM_UP_GOAL_S:.2f} x the "
          f"{WARM_UP_GOAL_S:.0f} s goal")
    print("memory of the running plane (RSS):")
    for name, mib in per.items():
        print(f"  {name:<24} {mib:7.1f} MiB")
    print(f"  {'total':<24} {sum(per.values()):7.1f} MiB")


if __name__ == "__main__":
    main()
