"""kmapi-style status conditions (type, status, reason, message, observedGeneration, lastTransitionTime). Pure."""

from __future__ import annotations

import datetime


RFC3339 = "%Y-%m-%dT%H:%M:%SZ"  # Kubernetes' timestamps (metav1.Time): seconds, UTC


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(RFC3339)


def parse_rfc3339(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, RFC3339).replace(tzinfo=datetime.timezone.utc)


def get_condition(conditions: list[dict] | None, type_: str) -> dict | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def is_true(conditions: list[dict] | None, type_: str) -> bool:
    c = get_condition(conditions, type_)
    return bool(c) and c.get("status") == "True"


def set_condition(conditions: list[dict] | None, type_: str, status: str, reason: str = "", message: str = "",
                  observed_generation: int | None = None, now: str | None = None) -> list[dict]:
    """Returns a new list with the condition set. Like kmapi's SetCondition it keeps the condition's position, and
    it keeps lastTransitionTime unless the status changes."""
    out = [dict(c) for c in conditions or []]
    new = {"type": type_, "status": status, "reason": reason, "message": message}
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    for i, c in enumerate(out):
        if c.get("type") == type_:
            same_status = c.get("status") == status
            new["lastTransitionTime"] = c.get("lastTransitionTime") if same_status else (now or now_rfc3339())
            if same_status and all(c.get(k) == v for k, v in new.items()):
                return out
            out[i] = new
            return out
    new["lastTransitionTime"] = now or now_rfc3339()
    out.append(new)
    return out


def remove_condition(conditions: list[dict] | None, type_: str) -> list[dict]:
    return [dict(c) for c in conditions or [] if c.get("type") != type_]
