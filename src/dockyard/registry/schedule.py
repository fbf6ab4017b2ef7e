"""The server's schedule for lifecycle jobs: retention, then garbage collection.

The jobs are synchronous database and storage work, so they run in a thread beside the event
loop. Every replica or worker runs this schedule; each interval's run goes to whichever claims
its slot in the database first (``jobs.claim_slot``), so the jobs run once per interval across
all of them. Each job also takes its own lease (see ``jobs``): when a collection started from
the command line or the API holds it, this interval's run is skipped rather than queued.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from dockyard.registry import jobs
from dockyard.registry.gc import CollectionBusy, Collector, Report
from dockyard.registry.service import Registry

log = logging.getLogger("dockyard.schedule")
SLOT = "schedule:lifecycle"  # the lease whose expiry says when the next scheduled run is due


class Schedule:
    def __init__(
        self,
        registry: Registry,
        collector: Collector,
        interval: float,
        before_gc: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.registry = registry
        self.collector = collector
        self.interval = interval
        self.before_gc = before_gc  # retention, which frees what the collection then removes
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def poll_every(self) -> float:
        """How often to ask whether the interval's run is due: often enough that it starts within
        a tenth of the interval of being due, but not more often than once a second (or once per
        interval, when that is shorter)."""
        return max(self.interval / 10, min(self.interval, 1.0))

    async def _loop(self) -> None:
        owner = jobs.owner_id()
        while True:
            # Jitter keeps replicas started together from all asking at the same moment.
            await asyncio.sleep(self.poll_every() * random.uniform(0.5, 1.0))
            try:
                # Every process polls; the database hands each interval's run to one of them.
                if not await self.registry.db.run(jobs.claim_slot, SLOT, owner, self.interval):
                    continue
                await self.run_once("schedule")
            except CollectionBusy as busy:
                log.info("garbage collection skipped: %s", busy)
            except Exception:
                log.exception("scheduled lifecycle run failed")

    async def run_once(self, trigger: str, dry_run: bool = False) -> Report:
        if self.before_gc is not None and trigger == "schedule":
            await self.before_gc()
        report = await asyncio.to_thread(self.collector.run, dry_run, trigger)
        if not dry_run:
            self.registry.forget()
        if report.bytes_freed or report.uploads_removed:
            log.info(
                "garbage collection freed %d bytes (%d blobs, %d manifests, %d uploads) in %.2f s",
                report.bytes_freed,
                report.blobs_removed,
                report.manifests_removed,
                report.uploads_removed,
                report.seconds,
            )
        return report
