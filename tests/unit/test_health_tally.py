"""controllers/health.py's pure part: consecutive failures counted toward spec.healthChecker.failureThreshold, reset by
one passing check, and recovered from status after an operator restart."""

from __future__ import annotations

from kubedruid.controllers.health import Tally, failing, not_answering_message, recovered_tally, tally_after
from kubedruid.specs import status as st


def test_failures_count_in_a_row_and_one_pass_resets_them():
    t = Tally()
    for n in (1, 2):
        t = tally_after(t, ["r:http"], now=n)
        assert not failing(t, 3), n
    t = tally_after(t, ["r:http", "r:https"], now=3)
    assert failing(t, 3) and t.failures == 3 and t.detail == "r:http, r:https"
    t = tally_after(t, [], now=4)
    assert t == Tally(0, "", 4) and not failing(t, 3)
    assert not failing(None, 1)


def test_a_restarted_operator_keeps_a_failing_druid_failing_until_a_check_passes():
    failing_now = [{"type": st.ACCEPTING_CONNECTION, "status": "False", "reason": st.NOT_ANSWERING,
                    "message": "3 health checks in a row ..."}]
    t = recovered_tally(failing_now, threshold=3)
    assert failing(t, 3)
    assert not failing(tally_after(t, [], now=1), 3)
    # not failing by the operator's check (pods not ready, or accepting): nothing to carry over
    for reason, status in (("DatabaseNotAcceptingConnectionRequest", "False"),
                           ("DatabaseAcceptingConnectionRequest", "True")):
        assert recovered_tally([{"type": st.ACCEPTING_CONNECTION, "status": status, "reason": reason}], 3) is None
    assert recovered_tally(None, 3) is None


def test_the_message_says_how_often_what_was_asked_and_through_what():
    message = not_answering_message(Tally(3, "druid-cluster-routers:https", 9.0), period_s=30, timeout_s=10)
    assert message == ("3 health checks in a row (every 30s) found no answer 200 to /status/health within 10s "
                       "through druid-cluster-routers:https")
