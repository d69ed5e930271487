"""The time of a Druid log line, as the real-node and real-Druid tiers read it (tests/druid_log.py)."""

from tests.druid_log import log_time


def test_a_log_event_has_its_time_to_the_millisecond_in_utc():
    line = "2026-12-07T12:34:56,789 INFO [main] org.apache.druid.cli.CliRouter - Starting up."
    assert log_time(line) == 1796646896.789


def test_a_time_without_milliseconds_is_read_to_the_second():
    assert log_time("2026-12-07T12:34:56 WARN [x] y - z") == 1796646896.0


def test_a_stack_trace_line_has_no_time():
    assert log_time("\tat org.eclipse.jetty.client.HttpClient.send(HttpClient.java:1)") is None
    assert log_time("java.net.ConnectException: Connection refused") is None
