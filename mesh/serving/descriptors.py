"""File descriptors under load: released when the client closes, a soft limit raised at start, accept errors logged once.

- hypercorn 0.18 keeps a connection's socket until its keep-alive timer
  (75 s) ends even after the client closed it: the timer task is in the
  connection's task group, which the close waits for. Here the timer is
  stopped as soon as the read side ends, so the descriptor goes at once;
- the soft RLIMIT_NOFILE is raised to the hard limit where that is allowed;
- when descriptors run out anyway, asyncio logs every failed accept with a
  traceback (megabytes a second); here one line per ``interval`` says so,
  with how many were left unsaid.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer

log = logging.getLogger(__name__)
_installed = False


def install() -> None:
    """Make hypercorn's TCP connections drop their keep-alive timer when the client's side ends (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    read_data = TCPServer._read_data

    async def _read_data(self: TCPServer) -> None:
        try:
            await read_data(self)
        finally:
            await self.idle_task.stop()

    TCPServer._read_data = _read_data


def raise_fd_limit(ceiling: int = 65536) -> tuple[int, int]:
    """Raise the soft descriptor limit towards the hard one (at most ``ceiling``); return (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


class AcceptErrors:
    """A loop exception handler: accept failures (EMFILE, ENFILE, ...) as one line per ``interval`` seconds."""

    def __init__(self, what: str, interval: float = 30.0) -> None:
        self.what = what
        self.interval = interval
        self.last = -interval
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        exception = context.get("exception")
        if not (message.startswith("socket.accept()") or "_accept_connection" in message
                or "_start_serving" in message):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        more = f" ({self.suppressed} more since the last report)" if self.suppressed else ""
        log.warning("%s: cannot accept connections: %s (descriptor limit %s); retrying%s",
                    self.what, exception or message, soft, more)
        self.last, self.suppressed = now, 0
