"""hypercorn 0.18's HTTP/2 made safe: data for ended streams dropped, and a budget of client stream resets.

When an app answers before it has read the whole request body (a 413 for a
body over the limit, a 401 before the body is read), hypercorn forgets the
stream while the client is still sending; the next DATA frame for it raises
KeyError in ``H2Protocol._handle_events`` and ends the connection with every
other request on it (pgjones/hypercorn#329, unfixed in the release). With
this, such data goes to a stream that discards it, and hypercorn still
acknowledges it for flow control, so the client finishes sending and reads
the answer.

HTTP/2 rapid reset (CVE-2023-44487): a client opens a stream, sends the
request and resets it at once, thousands of times a second; each reset frees
the stream slot, so MAX_CONCURRENT_STREAMS never bites, while the server
starts the work of every request. hypercorn has no defence, so a connection
that resets more than ``mesh_max_resets`` streams within
``mesh_reset_window`` seconds is ended with GOAWAY ENHANCE_YOUR_CALM, as
nginx, Go and Envoy do (the budget is read from hypercorn's Config object,
where ``serve_asgi`` puts it). The work already started is stopped by the
request's disconnect (``mesh.serving.middleware.Admission``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import h2.errors
import h2.events
import hypercorn.protocol
from hypercorn.events import Closed
from hypercorn.protocol.events import Event
from hypercorn.protocol.h2 import H2Protocol


class _Ended:
    """A stream whose response has ended: what still arrives for it is dropped."""

    async def handle(self, event: Event) -> None:
        pass


class _Streams(dict):
    _ended = _Ended()

    def __missing__(self, stream_id: int) -> _Ended:
        return self._ended


log = logging.getLogger(__name__)
_last_warning = [0.0]


class _H2Protocol(H2Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams = _Streams()
        self._resets: deque[float] = deque()
        self._calmed = False

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        if self._calmed:
            return
        limit = getattr(self.config, "mesh_max_resets", 0)
        if limit:
            window = getattr(self.config, "mesh_reset_window", 10.0)
            now = time.monotonic()
            for event in events:
                if isinstance(event, h2.events.StreamReset) and event.remote_reset:
                    self._resets.append(now)
            while self._resets and now - self._resets[0] > window:
                self._resets.popleft()
            if len(self._resets) > limit:
                await self._calm_down(len(self._resets), window)
                return
        await super()._handle_events(events)

    async def _calm_down(self, resets: int, window: float) -> None:
        """GOAWAY ENHANCE_YOUR_CALM, then stop every stream of this connection (their apps see a disconnect)."""
        self._calmed = True
        if time.monotonic() - _last_warning[0] > 10:  # one line per 10 s, however many connections do it
            _last_warning[0] = time.monotonic()
            log.warning("HTTP/2 client %s reset %d streams in %.0fs: connection ended (ENHANCE_YOUR_CALM)",
                        self.client[0] if self.client else "?", resets, window)
        self.connection.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        await self._flush()
        for stream_id in list(self.streams):
            await self._close_stream(stream_id)
        await self.send(Closed())


def install() -> None:
    """Make hypercorn's protocol switch build the HTTP/2 protocol above (idempotent)."""
    hypercorn.protocol.H2Protocol = _H2Protocol
