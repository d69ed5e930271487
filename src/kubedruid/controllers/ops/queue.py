"""Which of a Druid's ops requests runs, which wait and which are skipped, and the pause that marks the running one
on the Druid. Pure: KubeDB's serialization rules (spec §3.4)."""

from __future__ import annotations

from dataclasses import dataclass

RUNNING = ("Pending", "Progressing")
FINISHED = ("Successful", "Failed", "Skipped", "Denied")


@dataclass(frozen=True)
class QueueDecision:
    run: str | None  # the op to run now (its name), if any
    skip: dict[str, str]  # op name -> the newer op that replaces it
    waiting: list[str]  # pending ops that wait


# The resourceVersion a request had when the ops-manager first saw it (before any write of ours): its creation's.
# creationTimestamp has whole seconds; within one, this tells which request was created last.
CREATED_AT_VERSION = "kubedruid.dev/created-at-resource-version"


def creation_version(o: dict) -> str | None:
    """What to record in CREATED_AT_VERSION, or None: recorded already, or the request has a status (written by an
    older operator), so its resourceVersion is no longer its creation's."""
    annotations = o["metadata"].get("annotations") or {}
    if CREATED_AT_VERSION in annotations or o.get("status"):
        return None
    return o["metadata"].get("resourceVersion")


def _created(o: dict) -> tuple:
    # KubeDB sorts by creationTimestamp and, within a second, by name descending, so `restart-2` created after
    # `restart-1` could be the one skipped. Here the creation's resourceVersion (etcd's revision, increasing)
    # breaks the tie; the name only for requests of an older operator that recorded none.
    meta = o["metadata"]
    version = (meta.get("annotations") or {}).get(CREATED_AT_VERSION) or creation_version(o) or ""
    return (meta.get("creationTimestamp") or "", int(version) if version.isdigit() else 0,
            tuple(-ord(ch) for ch in meta["name"]))


def queue(ops_for_db: list[dict]) -> QueueDecision:
    """KubeDB's serialization for one database: a Progressing op keeps running; among pending ones, all but the
    newest of each type are skipped, then the oldest remaining runs."""
    phase = lambda o: (o.get("status") or {}).get("phase") or ""  # noqa: E731
    progressing = [o for o in ops_for_db if phase(o) == "Progressing"]
    pending = sorted((o for o in ops_for_db if phase(o) in ("", "Pending")), key=_created)
    newest_by_type: dict[str, dict] = {}
    for o in pending:
        newest_by_type[o["spec"]["type"]] = o  # sorted ascending: the last one wins
    skip = {o["metadata"]["name"]: newest_by_type[o["spec"]["type"]]["metadata"]["name"]
            for o in pending if newest_by_type[o["spec"]["type"]] is not o}
    remaining = [o for o in pending if o["metadata"]["name"] not in skip]
    if progressing:
        return QueueDecision(progressing[0]["metadata"]["name"], skip, [o["metadata"]["name"] for o in remaining])
    run = remaining[0]["metadata"]["name"] if remaining else None
    return QueueDecision(run, skip, [o["metadata"]["name"] for o in remaining[1:]])


def pause_message(ops_name: str) -> str:
    """The Paused condition's message on the Druid (KubeDB's wording); it names the op that holds the pause."""
    return f"DruidOpsRequest {ops_name} is in process"


def paused_by(message: str | None) -> str | None:
    prefix, suffix = "DruidOpsRequest ", " is in process"
    msg = message or ""
    return msg[len(prefix):-len(suffix)] if msg.startswith(prefix) and msg.endswith(suffix) else None
