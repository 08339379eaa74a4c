"""hypercorn 0.18's HTTP/2 made to drop request data for a stream whose response has already ended.

When an app answers before it has read the whole request body (a 413 for a
body over the limit, a 401 before the body is read), hypercorn forgets the
stream while the client is still sending; the next DATA frame for it raises
KeyError in ``H2Protocol._handle_events`` and ends the connection with every
other request on it (pgjones/hypercorn#329, unfixed in the release). With
this, such data goes to a stream that discards it, and hypercorn still
acknowledges it for flow control, so the client finishes sending and reads
the answer.
"""

from __future__ import annotations

from typing import Any

import hypercorn.protocol
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


class _H2Protocol(H2Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams = _Streams()


def install() -> None:
    """Make hypercorn's protocol switch build the HTTP/2 protocol above (idempotent)."""
    hypercorn.protocol.H2Protocol = _H2Protocol
