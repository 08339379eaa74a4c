"""The bridge's SSE events kept in memory (the last ``max_events``), so a client cut off mid-call resumes with Last-Event-ID.

mcp's streamable HTTP transport stores every event it sends on a stream
(a call's progress and its result) in an ``EventStore`` and gives it an id; a
client whose connection dropped sends ``GET /mcp`` with ``Last-Event-ID`` and
gets the events it missed, then the rest of the call live. The SDK ships the
interface only. Ids are random, because the store is shared by every session
of the server: an id cannot be guessed to read another session's stream.
"""

from __future__ import annotations

import secrets
from collections import deque

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

__all__ = ["MemoryEventStore"]


class MemoryEventStore(EventStore):
    """Events per stream, oldest dropped first once ``max_events`` are held in all."""

    def __init__(self, max_events: int = 10_000) -> None:
        self.max_events = max_events
        self._streams: dict[StreamId, deque[tuple[EventId, JSONRPCMessage | None]]] = {}
        self._stream_of: dict[EventId, StreamId] = {}
        self._order: deque[EventId] = deque()

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = secrets.token_urlsafe(12)
        self._streams.setdefault(stream_id, deque()).append((event_id, message))
        self._stream_of[event_id] = stream_id
        self._order.append(event_id)
        while len(self._order) > self.max_events:
            self._forget(self._order.popleft())
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        stream_id = self._stream_of.get(last_event_id)
        if stream_id is None:
            return None  # unknown, or dropped: the transport answers with an empty stream
        after = False
        for event_id, message in list(self._streams.get(stream_id, ())):
            if after and message is not None:  # None: a priming event, which carries no message
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream_id

    def _forget(self, event_id: EventId) -> None:
        stream_id = self._stream_of.pop(event_id, None)
        events = self._streams.get(stream_id)
        if events:
            events.popleft()  # the oldest event overall is also the oldest of its stream
            if not events:
                del self._streams[stream_id]

    @property
    def size(self) -> int:
        """Events held (no ``__len__``: the SDK tests the store for truth, and an empty one must count)."""
        return len(self._order)
