"""Leader election with a coordination.k8s.io Lease, so that two operator replicas never act at once.

The holder tries to renew the Lease every `renew_s`; another replica takes it over only once it has not been renewed
for `lease_s`. A leader that has not renewed within `renew_deadline_s` (well below `lease_s`) stops acting — the
operator exits and its Deployment restarts it as a follower. Each attempt is cut off at that deadline, so no slow
apiserver call can stretch a renewal past the lease (kube-controller-manager's 2 s / 10 s / 15 s).
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from kubedruid.kube.client import Kube

log = logging.getLogger("kubedruid.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LeaderElection:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, lease_s: int = 15, renew_s: float = 2,
                 renew_deadline_s: float = 10):
        assert renew_s < renew_deadline_s < lease_s
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_s, self.renew_s, self.renew_deadline_s = lease_s, renew_s, renew_deadline_s

    async def _try(self) -> bool:
        """One attempt to take or renew the Lease (optimistic concurrency on its resourceVersion)."""
        client = self.kube.client
        now = _now()
        try:
            lease = await client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as e:
            if e.status.code != 404:
                raise
            try:
                await client.create(Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                                          spec=LeaseSpec(holderIdentity=self.identity, leaseDurationSeconds=self.lease_s,
                                                         acquireTime=now, renewTime=now, leaseTransitions=0)))
                return True
            except ApiError as e2:
                if e2.status.code == 409:
                    return False
                raise
        spec = lease.spec
        expired = spec.renewTime is None or (now - spec.renewTime).total_seconds() > (spec.leaseDurationSeconds or
                                                                                          self.lease_s)
        if spec.holderIdentity != self.identity and not expired:
            return False
        if spec.holderIdentity != self.identity:
            spec.acquireTime = now
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
            log.info("taking over leadership from %s", spec.holderIdentity)
        spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds = self.identity, now, self.lease_s
        try:
            await client.replace(lease)  # fails with 409 if another replica wrote it since our read
            return True
        except ApiError as e:
            if e.status.code == 409:
                return False
            raise

    async def acquire(self) -> None:
        log.info("waiting to lead (Lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
        while not await self._try():
            await asyncio.sleep(self.renew_s)
        log.info("leading (Lease %s/%s)", self.namespace, self.name)

    async def keep(self, lost: asyncio.Event) -> None:
        """Renews the Lease until cancelled; sets `lost` once it has not renewed for `renew_deadline_s`. The time
        that counts is when a successful attempt started: the renewTime it wrote is no later than that."""
        last_renewed = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.renew_s)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                left = self.renew_deadline_s - (started - last_renewed)
                if left > 0 and await asyncio.wait_for(self._try(), timeout=left):
                    last_renewed = started
                    continue
            except asyncio.TimeoutError:
                log.warning("renewing the Lease took longer than the renew deadline")
            except Exception as e:  # noqa: BLE001 - an apiserver hiccup is retried until the deadline
                log.warning("could not renew the Lease: %s", e)
            if loop.time() - last_renewed >= self.renew_deadline_s - self.renew_s:
                log.error("lost leadership (Lease %s/%s): stopping", self.namespace, self.name)
                lost.set()
                return

    async def release(self) -> None:
        """On a clean shutdown, hand the Lease over at once."""
        try:
            lease = await self.kube.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec.holderIdentity == self.identity:
                lease.spec.renewTime = _now() - datetime.timedelta(seconds=self.lease_s + 1)
                await self.kube.client.replace(lease)
        except ApiError:
            pass
