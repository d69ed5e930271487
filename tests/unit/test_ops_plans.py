"""The ops plans (controllers/ops/optypes, plan.py): phases, modes, rolls, conditions, and the one Go duration
grammar. Pure."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedruid.api.durations import GO_DURATION, parse_duration
from kubedruid.controllers.ops import plan as plans
from kubedruid.controllers.ops.optypes import OP_TYPES, classify
from kubedruid.druid.nodes import RESTART_ORDER
from kubedruid.druid.tls import TLSMode

ISSUER = {"name": "ca", "kind": "Issuer", "apiGroup": "cert-manager.io"}


def ops(type_: str = "ReconfigureTLS", **tls) -> dict:
    return {"metadata": {"name": "op", "namespace": "demo"},
            "spec": {"type": type_, "databaseRef": {"name": "druid-cluster"}, **({"tls": tls} if tls else {})}}


def druid(enable_ssl: bool = False) -> dict:
    spec = {"version": "28.0.0", "topology": {}}
    if enable_ssl:
        spec |= {"enableSSL": True, "tls": {"issuerRef": dict(ISSUER)}, "keystoreCredSecret": {"name": "k"}}
    return {"metadata": {"name": "druid-cluster", "namespace": "demo"}, "spec": spec}


# --- which op a request is ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_, mode, kind", [
    (ops("Restart"), TLSMode.TLS_ONLY, "Restart"),
    (ops(issuerRef=ISSUER), TLSMode.OFF, "AddTLS"),
    (ops(issuerRef=ISSUER), TLSMode.TLS_PORT, "AddTLS"),  # an add that failed half-way is completed
    (ops(issuerRef=ISSUER), TLSMode.TLS_ONLY, "UpdateTLS"),
    (ops(certificates=[{"alias": "client"}]), TLSMode.TLS_ONLY, "UpdateTLS"),
    (ops(rotateCertificates=True), TLSMode.TLS_ONLY, "RotateCertificates"),
    (ops(remove=True), TLSMode.TLS_ONLY, "RemoveTLS"),
])
def test_classify(request_, mode, kind):
    assert classify(request_, mode).kind == kind


# --- plans ------------------------------------------------------------------------------------------------------

ORDER = [TLSMode.OFF, TLSMode.CLIENT_TRUST, TLSMode.TLS_PORT, TLSMode.TLS_SERVICES, TLSMode.TLS_ONLY]


def test_rolls_per_op():
    assert {k: op.plan.rolls for k, op in OP_TYPES.items()} == {
        "AddTLS": 3, "RemoveTLS": 2, "UpdateTLS": 3, "RotateCertificates": 1, "Restart": 1}
    # Where every pod reloads its keystore: a rotation restarts nothing, a change of CA rolls twice (trust both,
    # then the old CA dropped), and with the same CA not at all.
    assert {k: op.plan.rolls_when_reloading for k, op in OP_TYPES.items()} == {
        "AddTLS": 3, "RemoveTLS": 2, "UpdateTLS": 2, "RotateCertificates": 0, "Restart": 1}
    update = OP_TYPES["UpdateTLS"].plan
    assert sum(p.rolls for p in update.phases if p.only_if is None) == 0, "the same CA: reloads only"
    assert sum(p.rolls for p in update.phases if p.only_if is None or p.restart_only_stale) == 1


def test_add_walks_every_mode_up_and_remove_walks_down():
    add = [p.mode for p in OP_TYPES["AddTLS"].plan.phases if p.mode]
    assert [TLSMode.OFF, *add] == ORDER
    remove = [p.mode for p in OP_TYPES["RemoveTLS"].plan.phases if p.mode]
    assert [TLSMode.TLS_ONLY, *remove] == ORDER[::-1][:-1], "remove ends in client trust: the last roll keeps it"


@pytest.mark.parametrize("kind, start", [("AddTLS", TLSMode.OFF), ("RemoveTLS", TLSMode.TLS_ONLY)])
def test_every_moment_of_every_roll_keeps_all_calls_working(kind, start):
    """During a roll some pods run the previous mode and some the next. Any node may call any other: a caller
    needs client trust whenever the callee announces a TLS port. The Services keep their ports during a roll and
    take the new mode's after it (UpdateServices); a phase without a roll moves them at once. At every moment each
    port a Service offers is served by every pod, and the port a client follows (the first) is still offered after
    it moves, so a client that has not yet followed finds its port."""
    served = (lambda m, tls: m.tls_port if tls else m.plaintext_port)  # noqa: E731
    before, services = start, start.service_schemes
    for phase in OP_TYPES[kind].plan.phases:
        if phase.mode is None:
            continue
        after = phase.mode
        assert OP_TYPES[kind].plan.mode_before(phase) is before
        if phase.rolls:
            assert plans.UPDATE_SERVICES in phase.steps[phase.steps.index(plans.RESTART_NODES):], phase.name
            for caller in (before, after):
                for callee in (before, after):
                    assert caller.client_trust or not callee.tls_port, (phase.name, caller, callee)
            during = before.service_schemes_during_roll_to(after)
            assert during and during[0] == services[0], (phase.name, "the port clients use stays first")
            for reached in (None, *RESTART_ORDER):  # what each Service offers as the roll goes on
                offered = plans.service_schemes_during_roll(before, after, reached)
                passed = RESTART_ORDER[:RESTART_ORDER.index(reached) + 1] if reached else ()
                for node in RESTART_ORDER:
                    assert offered[node.key][0] == services[0], (phase.name, node.key, "the first port stays")
                    # pods of a node type the roll reached run either mode; the others still run the previous one
                    for pods in ((before, after) if node in passed else (before,)):
                        assert all(served(pods, tls) for tls in offered[node.key]), (phase.name, node.key, pods)
        moved = after.service_schemes
        assert services[0] in moved, (phase.name, "the port clients use left the Service")
        assert all(served(after, tls) for tls in moved), (phase.name, moved)
        before, services = after, moved
    assert services == TLSMode.declared(kind == "AddTLS").service_schemes or kind == "RemoveTLS"


@pytest.mark.parametrize("kind, start", [("AddTLS", TLSMode.OFF), ("RemoveTLS", TLSMode.TLS_ONLY)])
def test_a_port_leaves_a_service_only_after_clients_had_time_to_follow(kind, start):
    """Clients follow a Service's first port, but not in the instant it moves. A port leaves the Services only in a
    roll that RestartNodes gates on ClientsFollowed (closes_service_ports), right after the phase that moved the
    first port away from it; before the roll reaches a node type, that node type's Service still offers it."""
    plan = OP_TYPES[kind].plan
    services, previous, gated = start.service_schemes, None, []
    for phase in plan.phases:
        if phase.mode is None:
            continue
        before = plan.mode_before(phase)
        offered = before.service_schemes_during_roll_to(phase.mode) if phase.rolls else phase.mode.service_schemes
        dropped = set(services) - set(offered)
        assert plan.closes_service_ports(phase) == bool(dropped), (kind, phase.name)
        if dropped:
            gated.append(phase.name)
            assert phase.rolls and plan.previous(phase) is previous and previous.name, (kind, phase.name)
            assert not previous.rolls and previous.mode.service_schemes[0] not in dropped, (kind, phase.name)
            untouched = plans.service_schemes_during_roll(before, phase.mode, None)
            assert all(schemes == services for schemes in untouched.values()), "nothing closes before the roll"
        services, previous = phase.mode.service_schemes, phase
    assert gated == {"AddTLS": ["PlaintextClosed"], "RemoveTLS": ["TLSPortClosed"]}[kind]


def test_a_pods_node_type_comes_from_its_name_whatever_dashes_the_druid_has():
    assert plans.node_type_of("my-druid-2-middlemanagers-10").key == "middleManagers"
    assert plans.node_type_of("d-historicals-0").key == "historicals"
    assert [plans.node_type_of(p) for p in plans.restart_pods("a-b", {n.key: 1 for n in RESTART_ORDER})] == \
        list(RESTART_ORDER)


def test_a_closing_roll_drops_the_port_one_node_type_at_a_time_in_restart_order():
    """PlaintextClosed: the historicals and middleManagers (no client Service) restart while the client Services
    still offer plaintext; each client Service drops it as the roll reaches its node type."""
    offered = {reached.key if reached else None: plans.service_schemes_during_roll(
        TLSMode.TLS_SERVICES, TLSMode.TLS_ONLY, reached) for reached in (None, *RESTART_ORDER)}
    assert offered[None]["brokers"] == offered["middleManagers"]["brokers"] == (True, False)
    assert offered["brokers"]["brokers"] == (True,) and offered["brokers"]["routers"] == (True, False)
    assert all(schemes == (True,) for schemes in offered["coordinators"].values())
    assert [n.key for n in RESTART_ORDER if n.has_primary_service][0] == "brokers", \
        "the grace overlaps the restarts of the node types before the first client Service"


def test_a_change_of_ca_keeps_every_caller_trusting_every_callee():
    """A node's state is (the CA of the certificate it serves, the CAs it trusts). Each phase of UpdateTLS changes
    one of them for every pod, one pod at a time: at every moment every node must trust what every other serves."""
    effects = {"TrustBothCAsRolledOut": lambda s: (s[0], {"old", "new"}),
               "CertificatesReissued": lambda s: s,  # issued into the Secret; no pod serves it yet
               "CertificatesReloaded": lambda s: ("new", s[1]),  # pods reload one by one ...
               "NotReloadedRestarted": lambda s: ("new", s[1]),  # ... or restart onto it
               "OldCADropped": lambda s: (s[0], {"new"})}
    state = ("old", {"old"})
    named = [p for p in OP_TYPES["UpdateTLS"].plan.phases if p.name]
    assert [p.name for p in named] == list(effects)
    for phase in named:
        after = effects[phase.name](state)
        for caller in (state, after):
            for callee in (state, after):
                assert callee[0] in caller[1], (phase.name, caller, callee)
        state = after
    assert state == ("new", {"new"})


def test_phase_names_are_unique_and_only_unnamed_phases_have_no_recurring_steps():
    for op in OP_TYPES.values():
        names = [p.name for p in op.plan.phases if p.name]
        assert len(names) == len(set(names)), op.kind
        for i, phase in enumerate(op.plan.phases):
            if phase.name is None:
                assert not op.plan.recurring_after(i), (op.kind, i)
                later_or_earlier = {s for j, p in enumerate(op.plan.phases) if j != i for s in p.steps}
                assert not set(phase.steps) & later_or_earlier - set(plans.UNRECORDED), (op.kind, i)
            assert phase.name is None or phase.message, (op.kind, phase.name)


def test_recurring_steps_are_cleared_when_a_phase_completes():
    add = OP_TYPES["AddTLS"].plan
    assert add.recurring_after(0) == set()  # certificates are synced once
    assert add.recurring_after(1) == {plans.UPDATE_PETSETS, plans.RESTART_NODES, plans.UPDATE_SERVICES}
    assert add.recurring_after(3) == {plans.UPDATE_PETSETS}
    assert add.recurring_after(len(add.phases) - 1) == set()
    assert plans.clears(plans.RESTART_NODES, "EvictPod--druid-cluster-historicals-0")
    assert plans.clears(plans.RESTART_NODES, plans.RESTART_NODES)
    assert not plans.clears(plans.RESTART_NODES, "CertificateSynced")
    assert plans.clears(plans.CERTIFICATE_SYNCED, "IssuingCondition")
    assert not plans.clears(plans.UPDATE_PETSETS, "UpdatePetSetsX")


def test_plan_summaries():
    assert OP_TYPES["AddTLS"].plan.summary() == ("ClientTrustRolledOut -> TLSPortOpened -> ServicesSwitchedToTLS -> "
                                                 "PlaintextClosed (3 rolling restarts)")
    assert OP_TYPES["Restart"].plan.summary() == "1 rolling restart"
    assert OP_TYPES["RotateCertificates"].plan.summary() == \
        "CertificatesReloaded -> NotReloadedRestarted (0 to 1 rolling restart)"


def test_every_tls_plan_ends_by_declaring_its_target():
    for op in OP_TYPES.values():
        steps = [s for p in op.plan.phases for s in p.steps]
        assert (plans.FINISH in steps) is (op.request_type == "ReconfigureTLS"), op.kind
        if plans.REMOVE_TLS_OBJECTS in steps:
            assert steps.index(plans.REMOVE_TLS_OBJECTS) > steps.index(plans.FINISH)


def test_targets():
    add = OP_TYPES["AddTLS"].target(druid()["spec"], ops(issuerRef=ISSUER))
    assert add["enableSSL"] is True and add["tls"]["issuerRef"] == ISSUER
    remove = OP_TYPES["RemoveTLS"].target(druid(True)["spec"], ops(remove=True))
    assert remove["enableSSL"] is False and not {"tls", "keystoreCredSecret"} & set(remove)
    same = druid(True)["spec"]
    assert OP_TYPES["RotateCertificates"].target(same, ops(rotateCertificates=True)) == same


def test_preflight():
    assert OP_TYPES["RemoveTLS"].preflight(ops(remove=True), druid()) == \
        "spec.tls.remove: Druid demo/druid-cluster has no TLS (spec.enableSSL is not true)"
    assert OP_TYPES["RotateCertificates"].preflight(ops(rotateCertificates=True), druid(True)) is None
    assert OP_TYPES["AddTLS"].preflight(ops(certificates=[]), druid()) == "spec.tls.issuerRef is required to add TLS"
    assert OP_TYPES["AddTLS"].preflight(ops(issuerRef=ISSUER), druid()) is None


# --- Go durations: one grammar for the CRD and the parser ----------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("0", 0), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400),
                                           (".5m", 30), ("1.m", 60), ("250ms", 0.25), ("2h0m1us", 7200.000001)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert re.match(GO_DURATION, text)


@pytest.mark.parametrize("text", ["", "5", "-1s", "1d", "m", "1s ", " 1s", "1.5.5s", "0s0", "00"])
def test_parse_duration_rejects_what_the_crd_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)
    assert not re.fullmatch(GO_DURATION.strip("^$"), text)


@given(st.from_regex(GO_DURATION, fullmatch=True))
def test_whatever_the_crd_accepts_parses(text):
    assert parse_duration(text) >= 0


@given(st.text(alphabet="0123456789.nsuhm", max_size=12))
def test_the_parser_accepts_only_what_the_crd_accepts(text):
    try:
        parse_duration(text)
    except ValueError:
        assert not re.fullmatch(GO_DURATION.strip("^$"), text)
    else:
        assert re.fullmatch(GO_DURATION.strip("^$"), text)


# --- queueing ----------------------------------------------------------------------------------------------------


def _queued(name: str, created: str, rv: str, type_: str = "Restart", phase: str = "",
            created_rv: str | None = None) -> dict:
    annotations = {"kubedruid.dev/created-at-resource-version": created_rv} if created_rv else {}
    return {"metadata": {"name": name, "creationTimestamp": created, "resourceVersion": rv,
                         "annotations": annotations},
            "spec": {"type": type_}, "status": {"phase": phase} if phase else {}}


def test_within_one_second_the_request_created_last_is_the_newest():
    """The creation's resourceVersion breaks the tie, as recorded before any status write changed it (KubeDB's
    name rule would skip restart-2 here)."""
    from kubedruid.controllers.ops.queue import creation_version, queue

    first = _queued("restart-1", "2026-12-03T10:00:00Z", "1500", phase="Pending", created_rv="1100")
    second = _queued("restart-2", "2026-12-03T10:00:00Z", "1400", phase="Pending", created_rv="1200")
    decision = queue([second, first])
    assert decision.skip == {"restart-1": "restart-2"} and decision.run == "restart-2"
    assert creation_version(first) is None, "recorded once"
    assert creation_version(_queued("restart-3", "2026-12-03T10:00:00Z", "1600")) == "1600"
    # not yet recorded (never written by us): the current version is the creation's; numbers, not text
    decision = queue([_queued("r-a", "2026-12-03T10:00:00Z", "999"), _queued("r-b", "2026-12-03T10:00:00Z", "1000")])
    assert decision.run == "r-b"
    # written by an older operator (a status, no annotation): its version is not its creation's; the name decides
    old_a = _queued("old-a", "2026-12-03T10:00:00Z", "2000", phase="Pending")
    old_b = _queued("old-b", "2026-12-03T10:00:00Z", "1900", phase="Pending")
    assert creation_version(old_a) is None
    assert queue([old_a, old_b]).run == "old-a", "KubeDB's rule: ties by name descending"


def test_a_progressing_request_keeps_running_and_others_wait():
    from kubedruid.controllers.ops.queue import queue

    decision = queue([_queued("tls", "2026-12-03T10:00:00Z", "5", "ReconfigureTLS", "Progressing"),
                      _queued("restart", "2026-12-03T09:00:00Z", "4")])
    assert decision.run == "tls" and decision.waiting == ["restart"] and not decision.skip


def test_outline_says_what_each_phase_does_to_which_pods():
    from kubedruid.controllers.ops.plan import outline

    pods = ["d-historicals-0", "d-brokers-0", "d-coordinators-0"]
    add = outline(OP_TYPES["AddTLS"].plan, pods, TLSMode.OFF)
    assert [p["tlsMode"] for p in add] == ["off", "client-trust", "tls-port", "tls-services", "tls-only"]
    assert [p["restarts"] for p in add] == [[], pods, pods, [], pods]
    rotate = outline(OP_TYPES["RotateCertificates"].plan, pods, TLSMode.TLS_ONLY)
    assert rotate[2]["restarts"] == "only pods that did not reload"
    assert rotate[2]["onlyIf"] == "ServingNewCertificate is RestartNeeded"
