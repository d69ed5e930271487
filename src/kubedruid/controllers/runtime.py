"""A keyed work queue: the level-triggered heart of every controller.

Watch events only *enqueue keys*; workers call `reconcile(key)`, which reads the world and converges it. A key is
processed by one worker at a time; a key added while it is being processed is processed once more afterwards. A
failing key is retried with exponential backoff; `reconcile` may also ask to be called again after a delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from lightkube.core.exceptions import ApiError
from prometheus_client import Counter, Histogram

log = logging.getLogger("kubedruid.runtime")

RECONCILES = Counter("kubedruid_reconciles_total", "Reconciles run", ["controller"])
RECONCILE_ERRORS = Counter("kubedruid_reconcile_errors_total", "Reconciles that raised", ["controller"])
RECONCILE_SECONDS = Histogram("kubedruid_reconcile_duration_seconds", "Reconcile duration", ["controller"])

Reconcile = Callable[[Hashable], Awaitable[float | None]]  # returns "call me again after N seconds", or None


class WorkQueue:
    def __init__(self, name: str, reconcile: Reconcile, workers: int = 4, max_backoff_s: float = 60.0):
        self.name, self.reconcile, self.workers, self.max_backoff_s = name, reconcile, workers, max_backoff_s
        self._queue: asyncio.Queue = asyncio.Queue()
        self._queued: set = set()
        self._active: set = set()
        self._dirty: set = set()
        self._failures: dict = {}
        self._timers: dict = {}
        self._tasks: list[asyncio.Task] = []

    def add(self, key: Hashable, after: float = 0.0) -> None:
        if after > 0:
            loop = asyncio.get_running_loop()
            due = time.monotonic() + after
            old = self._timers.get(key)
            if old and old[0] <= due:  # an earlier retry is already scheduled
                return
            if old:
                old[1].cancel()
            self._timers[key] = (due, loop.call_later(after, self._fire, key))
            return
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def idle(self) -> bool:
        return not self._queued and not self._active

    def _failed(self, key: Hashable) -> float:
        RECONCILE_ERRORS.labels(self.name).inc()
        n = self._failures[key] = self._failures.get(key, 0) + 1
        again = min(0.5 * 2 ** (n - 1), self.max_backoff_s)
        log.exception("%s: reconcile of %s failed (attempt %d), retrying in %.1f s", self.name, key, n, again)
        return again

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            started = time.monotonic()
            again = None
            try:
                RECONCILES.labels(self.name).inc()
                again = await self.reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status.code == 403 and "being terminated" in (e.status.message or ""):
                    log.debug("%s: %s: its namespace is being deleted", self.name, key)  # nothing left to converge
                elif e.status.code == 409:  # a conditional write lost to a newer version: read again, at once
                    log.debug("%s: %s: conflict (%s), reconciling again", self.name, key, e.status.message)
                    again = 0.1
                else:
                    again = self._failed(key)
            except Exception:  # noqa: BLE001 - a controller must survive any reconcile error
                again = self._failed(key)
            finally:
                RECONCILE_SECONDS.labels(self.name).observe(time.monotonic() - started)
                self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif again is not None:
                self.add(key, after=again)
