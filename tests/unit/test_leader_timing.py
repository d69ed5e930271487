"""Leader election's timing (controllers/leader.py): a renewal that hangs never lets the leader act past its lease.
The Lease calls are replaced by a stand-in (the integration tier runs the real ones)."""

from __future__ import annotations

import asyncio

from kubedruid.controllers.leader import LeaderElection


class Scripted(LeaderElection):
    def __init__(self, behaviour):
        super().__init__(kube=None, namespace="ns", name="lease", identity="me", lease_s=1.5, renew_s=0.05,
                         renew_deadline_s=1.0)
        self.behaviour = behaviour

    async def _try(self) -> bool:
        return await self.behaviour()


def _run_keep(election: LeaderElection, within: float) -> float | None:
    """Seconds until `keep` gave the lead up, or None if it still held it after `within`."""
    async def main():
        lost = asyncio.Event()
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.create_task(election.keep(lost))
        try:
            await asyncio.wait_for(lost.wait(), within)
            return loop.time() - started
        except asyncio.TimeoutError:
            return None
        finally:
            task.cancel()
    return asyncio.run(main())


def test_renewals_that_succeed_keep_the_lead():
    async def ok():
        return True
    assert _run_keep(Scripted(ok), within=2.0) is None


def test_a_hanging_renewal_gives_the_lead_up_before_the_lease_runs_out():
    async def hang():
        await asyncio.sleep(3600)
    gave_up = _run_keep(Scripted(hang), within=3.0)
    assert gave_up is not None and gave_up < 1.5, gave_up  # before another replica could take the Lease


def test_failing_renewals_give_the_lead_up_before_the_lease_runs_out():
    async def fail():
        raise RuntimeError("apiserver unavailable")
    gave_up = _run_keep(Scripted(fail), within=3.0)
    assert gave_up is not None and gave_up < 1.5, gave_up
