"""The request handler of every agent: a2a-sdk's DefaultRequestHandler, refusing messages with an empty part, with direct answers.

a2a-sdk checks a message's fields but not that each part holds content (the
spec's Part is one of text, raw, url or data): a part ``{}`` reached the agent
and came back in its answer, and an empty text part ended in an internal error. One check here covers JSON-RPC, REST and gRPC,
which all pass through the handler; it answers -32602 / 400 INVALID_ARGUMENT /
INVALID_ARGUMENT naming the part.

Direct answers: an executor that answers some requests with one plain
Message, never a task (the guard agent's batches of verdicts), may offer
``answer(context) -> Message | None``. A ``message/send`` that names no task,
asks for no push notifications and waits for its answer then gets that
Message without the SDK's per-request task machinery (an active task, its
event queue, producer and consumer), which cost the guard agent more CPU than
its verdicts. ``None`` sends the request the usual way (``execute``), so a
request that ends in a task (a failure) is served as before. The request is
checked as the SDK checks it first (required fields, history length, parts).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from a2a.server.agent_execution import RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.types import Message, SendMessageRequest, Task
from a2a.utils.errors import InvalidParamsError
from a2a.utils.proto_utils import validate_proto_required_fields
from a2a.utils.task import validate_history_length

__all__ = ["MeshRequestHandler"]

DirectAnswer = Callable[[RequestContext], Awaitable[Message | None]]


def check_parts(request: SendMessageRequest) -> None:
    for index, part in enumerate(request.message.parts):
        kind = part.WhichOneof("content")
        if kind is None:
            raise InvalidParamsError(message=f"message.parts[{index}] has no content: a part needs one of "
                                             "text, raw, url or data")
        if kind == "text" and not part.text:
            # a2a-sdk's task helper refuses it later with a ValueError, which reached the client as -32603.
            raise InvalidParamsError(message=f"message.parts[{index}] is an empty text: there is nothing to answer")


def may_answer_directly(request: SendMessageRequest) -> bool:
    """A request that continues no task, wants its answer now and registers no push config."""
    configuration = request.configuration
    return (not request.message.task_id and not configuration.return_immediately
            and not configuration.HasField("task_push_notification_config"))


class MeshRequestHandler(DefaultRequestHandler):
    """DefaultRequestHandler + :func:`check_parts` on every message sent + direct answers (see the module docstring)."""

    def __init__(self, *args: Any, direct: DirectAnswer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct = direct

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Message | Task:
        check_parts(params)
        if self._direct is not None and may_answer_directly(params):
            # The checks the SDK's on_message_send makes before its agent runs (input modes are not
            # validated: this handler is built with the SDK's default, validate_input_modes=False).
            validate_proto_required_fields(params)
            validate_history_length(params.configuration)
            context_id = params.message.context_id
            answer = await self._direct(RequestContext(call_context=context, request=params, context_id=context_id or None))
            if answer is not None:
                return answer
            # RequestContext wrote the ids it made up into the message: the SDK's way must see it as sent.
            params.message.task_id = ""
            params.message.context_id = context_id
        return await super().on_message_send(params, context)

    async def on_message_send_stream(self, params: SendMessageRequest, context: ServerCallContext) -> AsyncGenerator:
        check_parts(params)
        async for event in super().on_message_send_stream(params, context):
            yield event
