"""Go durations (time.ParseDuration without a sign), the one grammar for spec.timeout: the CRD's rule and the
parser below accept exactly the same texts ("0", "90s", "1h30m", "1.5h", ".5m", "1.m")."""

from __future__ import annotations

import re

# The CRD's CEL rule (RE2). A negative timeout means nothing, so no sign.
GO_DURATION = "^(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+)$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go duration. Raises ValueError for anything the CRD's rule would reject."""
    if text == "0":
        return 0.0
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)
