"""The time of a Druid log line, as the real-node and real-Druid tiers read it (tests/druid_log.py)."""

from tests.druid_log import leader_call_of, log_time


def test_a_log_event_has_its_time_to_the_millisecond_in_utc():
    line = "2026-12-07T12:34:56,789 INFO [main] org.apache.druid.cli.CliRouter - Starting up."
    assert log_time(line) == 1796646896.789


def test_a_time_without_milliseconds_is_read_to_the_second():
    assert log_time("2026-12-07T12:34:56 WARN [x] y - z") == 1796646896.0


def test_a_stack_trace_line_has_no_time():
    assert log_time("\tat org.eclipse.jetty.client.HttpClient.send(HttpClient.java:1)") is None
    assert log_time("java.net.ConnectException: Connection refused") is None


LEADER = ("2026-12-07T20:23:44,369 WARN [CoordinatorRuleManager-Exec--0] org.apache.druid.discovery.DruidLeaderClient"
          " - Request[https://druid-cluster-coordinators-0.druid-cluster-pods.demo.svc.cluster.local:8281/druid/"
          "coordinator/v1/rules] failed.")
NETTY = ("2026-12-07T20:23:44,362 WARN [HttpClient-Netty-Boss-0] org.jboss.netty.channel.SimpleChannelUpstreamHandler"
         " - EXCEPTION, please implement org.jboss.netty.handler.codec.http.HttpContentDecompressor.exceptionCaught()")


def test_nettys_echo_of_a_refused_leader_call_is_that_call():
    """Seen in CI: one refused leader-client call logged twice, once by Druid's client, once by Netty."""
    failures = [(log_time(LEADER), LEADER)]
    at = log_time(NETTY)
    assert leader_call_of(NETTY, at, "druid-cluster-coordinators-0", 8281, failures) == LEADER
    assert leader_call_of(NETTY, at, "druid-cluster-coordinators-0", 8081, failures) == NETTY, "another port"
    assert leader_call_of(NETTY, at, "druid-cluster-brokers-0", 8281, failures) == NETTY, "another pod"
    assert leader_call_of(NETTY, at + 5, "druid-cluster-coordinators-0", 8281, failures) == NETTY, "another moment"
    other = "2026-12-07T20:23:44,362 WARN [qtp-1] org.apache.druid.server.QueryResource - failed"
    assert leader_call_of(other, at, "druid-cluster-coordinators-0", 8281, failures) == other
