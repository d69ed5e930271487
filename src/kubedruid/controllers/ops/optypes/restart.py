"""Restart every pod once, in Druid's order."""

from __future__ import annotations

from ..plan import RESTART_NODES, Phase, Plan
from .base import OpType

OP = OpType(kind="Restart", request_type="Restart", what="restarts every pod once, in Druid's order",
            plan=Plan("Restart", (Phase(None, (RESTART_NODES,)),)))
