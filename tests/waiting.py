"""One way for every tier to wait for something it observes from outside: poll, keep the last error, and on
timeout say what was awaited (and where to look)."""

from __future__ import annotations

import time


def eventually(predicate, timeout: float, what: str, *, interval: float = 1.0,
               catch: tuple[type[BaseException], ...] = (AssertionError,), hint: str = ""):
    """Returns predicate()'s first truthy value; an exception in `catch` counts as "not yet"."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except catch as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f"; last: {last!r:.500}" if last else "") + (f"; {hint}" if hint else ""))
