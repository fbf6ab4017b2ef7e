"""``dockyard serve --workers N``: N registry processes on one port, under one supervisor.

A Python process serves from one core; a machine with several gets more out of several
processes. The workers share nothing in memory: the database, the storage and the token key
are what they share, exactly as replicas on several machines behind a load balancer do, so
this is the same mechanism on one machine, and what works here works there.

* Each worker opens the port with SO_REUSEPORT; the kernel spreads new connections over them.
* The supervisor does what must happen once before the workers start (``app.prepare``: the
  schema migrated, the first admin and its printed password, the token key, the TLS
  certificate), then starts them. Everything else per process is safe with several: the
  lifecycle schedule and webhook deliveries take leases in the database, caches expire.
* A worker that dies is started again, after a pause that grows while it keeps dying early. A
  worker that exits with an error before it ever served (port taken, bad settings) stops the
  whole server: that is a configuration to fix, not a crash to retry.
* SIGTERM or SIGINT to the supervisor stops every worker gracefully (each drains its requests
  within ``shutdown_timeout``); a worker whose supervisor disappears stops on its own.
* With ``metrics_port`` P, worker i serves ``/metrics`` on P + i: traffic counters are per
  process, so a scraper collects each worker, as it would each replica.

Workers are started with multiprocessing's "spawn" method (a fresh interpreter each), never
forked from the supervisor, which has opened database connections and started threads.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event

from dockyard.config import ConfigError, Settings

log = logging.getLogger("dockyard.workers")
HEALTHY_AFTER = 10.0  # a worker up this long counts as having started well: its next restart is immediate
MAX_BACKOFF = 30.0
KILL_MARGIN = 10.0  # after shutdown_timeout, how long a worker gets to clean up before SIGKILL


def _worker(settings: Settings, index: int, ready: Event) -> None:
    """A worker's whole life, in the spawned process."""
    from dockyard.api.app import serve
    from dockyard.cli import setup_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    setup_logging()
    try:
        asyncio.run(serve(settings, worker=index, ready=ready.set))
    except ConfigError as exc:
        log.error("worker %d: %s", index, exc)
        sys.exit(1)


@dataclass
class _Slot:
    index: int
    process: SpawnProcess | None = None
    ready: Event | None = None
    started_at: float = 0.0
    served: bool = False  # it has been ready at least once
    failures: int = 0  # early deaths in a row
    restart_at: float | None = None


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = multiprocessing.get_context("spawn")
        self.slots = [_Slot(i) for i in range(settings.workers)]
        self.stopping = False

    def _start(self, slot: _Slot) -> None:
        slot.ready = self.ctx.Event()
        slot.process = self.ctx.Process(
            target=_worker, args=(self.settings, slot.index, slot.ready), name=f"dockyard-worker-{slot.index}"
        )
        slot.process.start()
        slot.started_at, slot.restart_at = time.monotonic(), None

    def _reap(self, slot: _Slot) -> bool:
        """After a worker exits: plan its restart. False when the server must stop instead."""
        assert slot.process is not None and slot.ready is not None
        code = slot.process.exitcode
        slot.served = slot.served or slot.ready.is_set()
        slot.process.close()
        slot.process = None
        if not slot.served and code is not None and code > 0:  # its own error, not a signal from outside
            log.error("worker %d exited with %s before it served; stopping", slot.index, code)
            return False
        early = time.monotonic() - slot.started_at < HEALTHY_AFTER
        slot.failures = slot.failures + 1 if early else 0
        delay = min(MAX_BACKOFF, 2.0 ** (slot.failures - 1)) if slot.failures else 0.0
        log.warning("worker %d exited with %s; starting it again in %g s", slot.index, code, delay)
        slot.restart_at = time.monotonic() + delay
        return True

    def run(self) -> int:
        """Supervise until a signal (exit 0) or a worker that could not start (exit 1)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous = signal.set_wakeup_fd(wake_w)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            for slot in self.slots:
                self._start(slot)
            while not self.stopping:
                now = time.monotonic()
                for slot in self.slots:
                    if slot.process is None and slot.restart_at is not None and slot.restart_at <= now:
                        self._start(slot)
                pending = [s.restart_at - now for s in self.slots if s.process is None and s.restart_at is not None]
                sentinels = {s.process.sentinel: s for s in self.slots if s.process is not None}
                ready = wait([wake_r, *sentinels], timeout=max(0.0, min(pending)) if pending else None)
                for handle in ready:
                    if handle == wake_r:
                        os.read(wake_r, 512)
                    elif (slot := sentinels.get(handle)) is not None:
                        slot.process.join()
                        if not self._reap(slot):
                            status, self.stopping = 1, True
        finally:
            self._stop_all()
            signal.set_wakeup_fd(previous)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)
        return status

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        live = [s.process for s in self.slots if s.process is not None and s.process.is_alive()]
        for process in live:
            process.terminate()  # SIGTERM: drain, then exit
        deadline = time.monotonic() + self.settings.shutdown_timeout + KILL_MARGIN
        for process in live:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker %s did not stop in time; killing it", process.name)
                process.kill()
                process.join()


def supervise(settings: Settings) -> int:
    from dockyard.api.app import prepare

    prepare(settings)
    print(f"dockyard: starting {settings.workers} workers", flush=True)
    return Supervisor(settings).run()
