"""The request handler of every agent: a2a-sdk's DefaultRequestHandler, refusing messages with an empty part.

a2a-sdk checks a message's fields but not that each part holds content (the
spec's Part is one of text, raw, url or data): a part ``{}`` reached the agent
and came back in its answer, and an empty text part ended in an internal error. One check here covers JSON-RPC, REST and gRPC,
which all pass through the handler; it answers -32602 / 400 INVALID_ARGUMENT /
INVALID_ARGUMENT naming the part.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.types import Message, SendMessageRequest, Task
from a2a.utils.errors import InvalidParamsError

__all__ = ["MeshRequestHandler"]


def check_parts(request: SendMessageRequest) -> None:
    for index, part in enumerate(request.message.parts):
        kind = part.WhichOneof("content")
        if kind is None:
            raise InvalidParamsError(message=f"message.parts[{index}] has no content: a part needs one of "
                                             "text, raw, url or data")
        if kind == "text" and not part.text:
            # a2a-sdk's task helper refuses it later with a ValueError, which reached the client as -32603.
            raise InvalidParamsError(message=f"message.parts[{index}] is an empty text: there is nothing to answer")


class MeshRequestHandler(DefaultRequestHandler):
    """DefaultRequestHandler + :func:`check_parts` on every message sent."""

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Message | Task:
        check_parts(params)
        return await super().on_message_send(params, context)

    async def on_message_send_stream(self, params: SendMessageRequest, context: ServerCallContext) -> AsyncGenerator:
        check_parts(params)
        async for event in super().on_message_send_stream(params, context):
            yield event
