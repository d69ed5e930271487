"""What the tiers read in Druid's own logs (log4j2 with an ISO 8601 time first, UTC: the pods' layout and
tests/druid/harness.LOG4J2), in one place for the real-node and the real-Druid tiers."""

from __future__ import annotations

import datetime
import re

# The first line of a log event (a stack trace's lines follow it without a time); group 1: its second, group 2: its
# milliseconds.
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:,(\d{3}))?")


def log_time(line: str) -> float | None:
    """The epoch time of a log event's first line, to the millisecond; None for the lines that follow it."""
    m = LOG_TIME.match(line)
    if not m:
        return None
    second = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return second.timestamp() + int(m.group(2) or 0) / 1000


# Druid's leader client (DruidLeaderClient, 28.0.0 and 33.0.0): a call to the leader it knew failed, after which it
# looks the leader up again. Groups: the URL, its scheme, host and port.
LEADER_CALL_FAILED = re.compile(r"DruidLeaderClient - Request\[((\w+)://([^/:\]]+):(\d+)[^\]]*)\] failed\.")

# Netty's warning about an exception no handler of the channel took: Druid's HTTP client logs a failed connect so too,
# as an event of its own, beside the failure of the call that made it (a DruidLeaderClient one, say).
NETTY_UNHANDLED = re.compile(r"SimpleChannelUpstreamHandler - EXCEPTION, please implement")
# The failure and Netty's warning of one call are logged within this much of each other.
SAME_CALL_S = 1.0


def leader_call_of(event: str, at: float, pod: str, port: int, leader_failures: list[tuple[float, str]]) -> str:
    """The event that a refusal by `pod` on `port`, logged under `event` at `at`, belongs to. Netty's warning is the
    call's own echo: the leader-client failure of a call to that pod and port logged within SAME_CALL_S of it, if
    any, stands for it. Any other event stands for itself. `leader_failures`: (time, event) of the log's
    LEADER_CALL_FAILED events."""
    if not NETTY_UNHANDLED.search(event):
        return event
    for when, line in leader_failures:
        m = LEADER_CALL_FAILED.search(line)
        if abs(when - at) <= SAME_CALL_S and m.group(3).split(".")[0] == pod and int(m.group(4)) == port:
            return line
    return event
