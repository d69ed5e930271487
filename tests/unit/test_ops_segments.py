"""Reading the Coordinator's and the brokers' answers (controllers/ops/segments.py); the gate itself runs against
real Druid in tests/node, where the second historical of a roll waits until every broker sees the first one's
segments."""

from __future__ import annotations

from kubedruid.controllers.ops.segments import behind, historical_segment_counts, left_to_load


def test_segments_left_to_load_over_every_tier_and_datasource():
    assert left_to_load({}) == 0  # no datasource: nothing to wait for
    assert left_to_load({"_default_tier": {"tiny": 0, "wiki": 0}}) == 0
    assert left_to_load({"_default_tier": {"tiny": 1}, "hot": {"wiki": 2}}) == 3



def test_the_coordinator_counts_segments_per_historical_only():
    servers = [{"host": "h-0.pods:8083", "type": "historical", "segments": {"a": {}, "b": {}}},
               {"host": "h-1.pods:8083", "type": "historical", "segments": {}},
               {"host": "peon:8100", "type": "indexer-executor", "segments": {"c": {}}}]
    assert historical_segment_counts(servers) == {"h-0.pods:8083": 2, "h-1.pods:8083": 0}


def test_a_broker_is_behind_while_it_knows_fewer_segments_of_a_historical_than_the_coordinator():
    coordinator = {"h-0:8083": 2, "h-1:8083": 2}
    assert behind(coordinator, {"h-0:8083": 2, "h-1:8083": 2}) == []
    assert behind(coordinator, {"h-0:8083": 2, "h-1:8083": 3}) == [], "a segment being dropped still counts"
    assert behind(coordinator, {"h-1:8083": 2}) == ["h-0:8083"], "the restarted historical not seen yet"
    assert behind(coordinator, {"h-0:8083": 1, "h-1:8083": 2}) == ["h-0:8083"]
