"""The server's schedule for lifecycle jobs: retention, then garbage collection.

The jobs are synchronous database and storage work, so they run in a thread beside the event
loop. Each takes its lease (see ``jobs``); when another process holds it, this interval is
skipped rather than queued.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from dockyard.registry.gc import CollectionBusy, Collector, Report
from dockyard.registry.service import Registry

log = logging.getLogger("dockyard.schedule")


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

    async def _loop(self) -> None:
        while True:
            # Jitter keeps replicas started together from all reaching for the lease at once.
            await asyncio.sleep(self.interval * random.uniform(0.9, 1.1))
            try:
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
