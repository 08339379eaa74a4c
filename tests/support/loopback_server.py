"""A Starlette app served by hypercorn on a free loopback port for the length of a test: the base of the fake servers.

Subclasses give ``routes()``. It runs in the test's event loop (``async with``)
or in a thread of its own (``with``), for tests whose client is another
process; handlers that wait on ``self._release`` (a scripted hang) are let go
when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.routing import Route

from tests.support.util import free_port


class LoopbackServer:
    def __init__(self) -> None:
        self.port = free_port()
        self._release = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def routes(self) -> list[Route]:
        raise NotImplementedError

    async def __aenter__(self):
        self._release, self._stop = asyncio.Event(), asyncio.Event()
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.graceful_timeout = 1

        async def run() -> None:
            await serve(Starlette(routes=self.routes()), config, shutdown_trigger=self._stop.wait)

        self._task = asyncio.create_task(run())
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                break
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc) -> None:
        self._release.set()
        self._stop.set()
        if self._task is not None:
            await self._task

    def __enter__(self):
        started = threading.Event()

        async def serve_here() -> None:
            self._loop = asyncio.get_running_loop()
            async with self:
                started.set()
                await self._stop.wait()

        self._thread = threading.Thread(target=asyncio.run, args=(serve_here(),), daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._release.set)
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
