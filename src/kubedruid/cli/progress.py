"""`--wait`: follow one DruidOpsRequest through a lightkube watch until it is finished, showing the current step (the
newest condition), the pod being restarted and the elapsed time — a rich Live panel on a terminal, one plain line
per change otherwise."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lightkube.core.exceptions import ApiError
from lightkube.types import OnErrorAction, OnErrorResult
from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .common import Ops, conditions, phase
from .kubeconn import Connection
from .output import CliError, human_duration

FINISHED = ("Successful", "Failed", "Skipped", "Denied")
POD_STEPS = ("CheckPodRunning--", "EvictPod--")
PLAN = "Plan"  # written with the request's first condition; shown on a line of its own, never as the step


def _key(c: dict, index: int) -> tuple[str, int]:
    # lastTransitionTime has a one-second resolution; within a second the later position is the newer condition.
    return (c.get("lastTransitionTime") or "", index)


def _evicted_next(conds: list[dict]) -> set[str]:
    """The GetPod and EvictPod conditions of a pod whose EvictPod is False: the pod evicted next (the operator names
    it with the previous pod's eviction), not the one being restarted yet."""
    coming = {str(c["type"]).split("--", 1)[1] for c in conds
              if str(c.get("type", "")).startswith("EvictPod--") and c.get("status") != "True"}
    return {f"{prefix}{pod}" for pod in coming for prefix in ("GetPod--", "EvictPod--")}


def _fingerprint(c: dict) -> tuple:
    return (c.get("status"), c.get("reason"), c.get("message"), c.get("lastTransitionTime"))


@dataclass
class Tracker:
    """The state a person follows, derived from successive versions of the request."""

    phase: str = ""
    step: str | None = None
    pod: str | None = None
    pod_ready: bool = False
    message: str = ""
    plan: str | None = None  # "<op type>: <phases> (<rolls>)"
    # Steps that changed before `step` in the same version: the operator writes a pass's conditions at once.
    passed: list[str] = field(default_factory=list)
    _seen: dict[str, tuple] = field(default_factory=dict)

    def update(self, ops: dict) -> bool:
        """Takes a new version of the request; says whether anything shown changed."""
        before = self.view()
        conds = conditions(ops)
        next_up = _evicted_next(conds)
        changed = [(c, i) for i, c in enumerate(conds)
                   if self._seen.get(c.get("type")) != _fingerprint(c) and c.get("type") not in (PLAN, *next_up)]
        plan = next((c for c in conds if c.get("type") == PLAN), None)
        if plan:
            self.plan = f"{plan.get('reason')}: {plan.get('message')}"
        self.passed = []
        if changed:
            in_order = [c.get("type") for c, _ in sorted(changed, key=lambda ci: _key(*ci))]
            self.step, self.passed = in_order[-1], in_order[:-1]
        self._seen = {c.get("type"): _fingerprint(c) for c in conds if c.get("type") not in next_up}
        pod_conds = [(c, i) for i, c in enumerate(conds)
                     if str(c.get("type", "")).startswith(POD_STEPS) and c.get("type") not in next_up]
        if pod_conds:
            newest = max(pod_conds, key=lambda ci: _key(*ci))[0]
            self.pod = newest["type"].split("--", 1)[1]
            running = next((c for c in conds if c.get("type") == f"CheckPodRunning--{self.pod}"), None)
            self.pod_ready = bool(running) and running.get("status") == "True"
        self.phase = phase(ops) or "Pending"
        final = next((c for c in conds if c.get("type") == self.phase), None)
        self.message = (final or {}).get("message") or ""
        return self.view() != before

    def view(self) -> tuple:
        return (self.phase, self.step, self.pod, self.pod_ready, self.plan)

    @property
    def pod_text(self) -> str:
        if not self.pod:
            return "-"
        return f"{self.pod} (ready)" if self.pod_ready else f"{self.pod} (restarting)"


class _Panel:
    """The Live view; rendered again on every refresh, so the elapsed time moves even when nothing else does."""

    def __init__(self, title: str, tracker: Tracker, started: float):
        self.title, self.tracker, self.started = title, tracker, started
        self.spinner = Spinner("dots")

    def __rich__(self):
        t = self.tracker
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        colour = {"Successful": "green", "Failed": "red", "Skipped": "yellow"}.get(t.phase, "cyan")
        grid.add_row("request", self.title)
        grid.add_row("phase", Text(t.phase, style=colour))
        if t.plan:
            grid.add_row("plan", t.plan)
        grid.add_row("step", t.step or "-")
        grid.add_row("pod", t.pod_text)
        grid.add_row("elapsed", human_duration(time.monotonic() - self.started))
        if t.phase in FINISHED:
            return grid
        line = Table.grid(padding=(0, 1))
        line.add_row(self.spinner, Text("waiting (Ctrl-C stops waiting, not the request)", style="dim"))
        return Group(grid, line)


def _retry_transient(e: Exception, count: int) -> OnErrorResult:
    """The watch survives a few dropped connections (it resumes from the last resourceVersion)."""
    code = e.status.code if isinstance(e, ApiError) else getattr(getattr(e, "response", None), "status_code", None)
    if code and code not in (410, 429, 500, 502, 503, 504):
        return OnErrorResult(OnErrorAction.RAISE)
    return OnErrorResult(OnErrorAction.RETRY, sleep=min(count, 5)) if count <= 10 else \
        OnErrorResult(OnErrorAction.RAISE)


def follow(conn: Connection, name: str, out: Console, live: bool) -> tuple[dict, Tracker, float]:
    """Watches the request until it is finished; returns its last version, the tracker and the seconds it took."""
    tracker = Tracker()
    started = time.monotonic()
    title = f"{conn.namespace}/{name}"
    stream = conn.client.watch(Ops, namespace=conn.namespace, fields={"metadata.name": name},
                               on_error=_retry_transient)

    def events():
        for kind, obj in stream:
            if kind == "DELETED":
                raise CliError(f"DruidOpsRequest {title} was deleted while waiting for it")
            yield obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)

    last: dict = {}
    if live:
        with Live(_Panel(title, tracker, started), console=out, refresh_per_second=8, transient=False):
            for last in events():
                tracker.update(last)
                if tracker.phase in FINISHED:
                    break
    else:
        shown_plan = None
        for last in events():
            if tracker.update(last):
                if tracker.plan and tracker.plan != shown_plan:
                    out.print(f"plan: {tracker.plan}", soft_wrap=True)
                    shown_plan = tracker.plan
                elapsed = time.monotonic() - started
                for step in tracker.passed:  # every step on a line of its own, the current one last
                    out.print(f"{_plain_start(tracker, elapsed)} step: {step}", soft_wrap=True)
                out.print(_plain_line(tracker, elapsed), soft_wrap=True)
            if tracker.phase in FINISHED:
                break
    return last, tracker, time.monotonic() - started


def _plain_start(t: Tracker, elapsed: float) -> str:
    return f"[{human_duration(elapsed):>5}] {t.phase:<11}"


def _plain_line(t: Tracker, elapsed: float) -> str:
    line = _plain_start(t, elapsed)
    if t.step:
        line += f" step: {t.step}"
    if t.pod:
        line += f"  pod: {t.pod_text}"
    return line.rstrip()
