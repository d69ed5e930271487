"""The real-node tier's archive of pod logs (tests/node/pod_logs.py): pure file handling, checked on a temporary
directory laid out as the kubelet's podLogsDir."""

from __future__ import annotations

import datetime
import os

from tests.node.pod_logs import PodLogArchive, cri_lines


def _at(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()


def test_cri_lines_join_partial_entries_and_read_both_time_forms():
    text = ("2026-12-07T12:00:00.1Z stdout P a long \n"
            "2026-12-07T12:00:00.2Z stdout F line\n"
            "2026-12-07T13:00:01.000000005+01:00 stderr F x y z\n")
    assert cri_lines(text) == [(_at("2026-12-07T12:00:00.200+00:00"), "a long line"),
                               (_at("2026-12-07T12:00:01+00:00") + 5e-9, "x y z")]


def test_the_archive_keeps_what_was_written_after_the_kubelet_removed_the_file(tmp_path):
    pod = tmp_path / "pods" / "demo_druid-cluster-routers-0_0c5a4ca9" / "druid"
    pod.mkdir(parents=True)
    (pod / "0.log").write_text("2026-12-07T12:00:00Z stdout F before\n")
    with PodLogArchive(tmp_path / "pods", tmp_path / "archive", interval=60) as archive:
        with open(pod / "0.log", "a") as fh:  # containerd keeps writing to the file it opened
            os.unlink(pod / "0.log")  # the kubelet removes the pod's logs with the pod
            fh.write("2026-12-07T12:00:02Z stdout F after\n")
        (pod / "0.log").write_text("2026-12-07T12:00:03Z stdout F successor\n")  # a new file under the same name
        (kept,) = archive.logs("demo", "druid", since=_at("2026-12-07T12:00:01+00:00"))
    assert (kept.pod, kept.uid) == ("druid-cluster-routers-0", "0c5a4ca9")
    assert [line for _, line in kept.lines] == ["after", "successor"]
