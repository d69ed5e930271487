"""Restart every pod once, in Druid's order. A Druid whose TLS was removed drops the client trust its pods kept
(the removal's last roll could not) with this roll."""

from __future__ import annotations

from ..plan import RESTART_NODES, SETTLE_TLS_MODE, Phase, Plan
from .base import OpType

OP = OpType(kind="Restart", request_type="Restart", what="restarts every pod once, in Druid's order",
            plan=Plan("Restart", (Phase(None, (SETTLE_TLS_MODE, RESTART_NODES)),)))
