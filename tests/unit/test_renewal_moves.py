"""What a renewal does while some pod does not serve the issued serial (controllers/renewal.next_move), with and
without KubeDB's spec.autoOps.disabled."""

import pytest

from kubedruid.controllers import renewal
from kubedruid.druid import tls

LATE = tls.RELOAD_BUDGET_S + 1


@pytest.mark.parametrize("cannot_reload, stale, unreachable, waited, move", [
    (True, False, False, 0, renewal.RESTART),  # no keystore sidecar: reloading is not an option
    (False, True, False, LATE, renewal.RESTART),  # still the old serial after the reload budget
    (False, True, False, 1, renewal.WAIT),  # still within the budget: the reload may come
    (False, True, True, LATE, renewal.RESTART),
    (False, False, True, LATE, renewal.UNVERIFIED),  # no handshake: reported, never restarted blind
    (False, True, True, 1, renewal.WAIT),
    (False, False, False, LATE, renewal.WAIT),
])
def test_what_a_renewal_does(cannot_reload, stale, unreachable, waited, move):
    assert renewal.next_move(cannot_reload, stale, unreachable, waited, auto_ops=True) == move


@pytest.mark.parametrize("cannot_reload, stale", [(True, False), (False, True)])
def test_without_auto_ops_the_user_is_asked_instead_of_an_op_being_made(cannot_reload, stale):
    assert renewal.next_move(cannot_reload, stale, False, LATE, auto_ops=False) == renewal.ASK_FOR_RESTART
    assert renewal.next_move(False, False, True, LATE, auto_ops=False) == renewal.UNVERIFIED
