"""Which op holds a Druid's pause (controllers/pause.py): the informer answers while it shows the op unfinished; the
apiserver is asked only otherwise (an op too new for the informer, or one the informer saw finish)."""

from __future__ import annotations

import asyncio

import pytest

from kubedruid.controllers import pause
from kubedruid.controllers.ops import queue

PAUSED = {"type": "Paused", "status": "True", "message": "DruidOpsRequest add-tls is in process"}


class Reader:
    def __init__(self, phase: str | None, fresh: "Reader | None" = None):
        self.phase, self._fresh, self.gets = phase, fresh, 0

    @property
    def fresh(self) -> "Reader":
        return self._fresh

    async def get(self, api_version, kind, name, namespace=None):
        self.gets += 1
        assert (kind, name, namespace) == ("DruidOpsRequest", "add-tls", "demo")
        return None if self.phase is None else {"metadata": {"name": name}, "status": {"phase": self.phase}}


@pytest.mark.parametrize("informed, apiserver, holds, asked", [
    ("Progressing", "Progressing", True, 0),  # the common pass: no request
    (None, "Pending", True, 1),  # created a moment ago
    ("Progressing", "Successful", True, 0),  # the informer is behind: its news of the end enqueues the Druid
    ("Successful", "Successful", False, 1),
    (None, None, False, 1),  # deleted
])
def test_the_informer_answers_while_it_shows_the_op_unfinished(informed, apiserver, holds, asked):
    fresh = Reader(apiserver)
    op = asyncio.run(pause.unfinished_op_holding(Reader(informed, fresh), "demo", PAUSED))
    assert (op is not None) is holds and fresh.gets == asked


def test_a_pause_that_names_no_op_is_held_by_none():
    fresh = Reader("Progressing")
    paused = {**PAUSED, "message": "paused by hand"}
    assert queue.paused_by(paused["message"]) is None
    assert asyncio.run(pause.unfinished_op_holding(Reader("Progressing", fresh), "demo", paused)) is None
    assert asyncio.run(pause.unfinished_op_holding(Reader("Progressing", fresh), "demo", None)) is None
    assert fresh.gets == 0
