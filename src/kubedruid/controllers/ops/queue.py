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


def _created(o: dict) -> tuple:
    # KubeDB sorts by creationTimestamp ascending, ties by name descending. (resourceVersion cannot break the tie:
    # it changes with every write, and the ops-manager writes a request's status as soon as it sees it.)
    name = o["metadata"]["name"]
    return (o["metadata"].get("creationTimestamp") or "", tuple(-ord(ch) for ch in name))


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
