"""Graceful stop: finish the requests in flight, including uploads whose bodies still arrive.

aiohttp's own shutdown marks connections closing, after which it drops incoming body bytes, so
a push in progress at SIGTERM would stall and be cut off. We stop listening first, let every
request in flight finish (answering with ``Connection: close`` meanwhile), and only then hand
over to the runner's cleanup.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from dockyard.api.errors import Handler


class InFlight:
    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.count += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.draining:
            response.force_close()

    async def drain(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if ``timeout`` passed first."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while self.count:
            try:
                await asyncio.wait_for(self._idle.wait(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                return False
        return True
