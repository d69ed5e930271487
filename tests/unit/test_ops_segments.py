"""Reading the Coordinator's loadstatus?full answer (controllers/ops/segments.py); the gate itself runs against real
Druid in tests/node, where the second historical of a roll waits for the first one's segments."""

from __future__ import annotations

from kubedruid.controllers.ops.segments import left_to_load


def test_segments_left_to_load_over_every_tier_and_datasource():
    assert left_to_load({}) == 0  # no datasource: nothing to wait for
    assert left_to_load({"_default_tier": {"tiny": 0, "wiki": 0}}) == 0
    assert left_to_load({"_default_tier": {"tiny": 1}, "hot": {"wiki": 2}}) == 3

