"""Direct answers (mesh.serving.handler): a plain Message without the SDK's task machinery, only when it is safe.

A real a2a-sdk request handler with an in-memory task store and a real
executor: the executor's ``answer`` serves what it can; everything else (a
request continuing a task, not waiting, registering a push config, or one the
executor declines) goes through ``execute`` exactly as sent.
"""

import uuid

import pytest
from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, Message, Part, Role, SendMessageRequest, Task, TaskState
from a2a.utils.errors import InvalidParamsError

from mesh.serving.handler import MeshRequestHandler


class Answering(AgentExecutor):
    """Answers "direct ..." texts directly; everything reaches ``execute`` as a completed task naming the ids it saw."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, str, str]] = []

    async def answer(self, context: RequestContext) -> Message | None:
        text = context.get_user_input()
        if not text.startswith("direct"):
            return None
        return Message(role=Role.ROLE_AGENT, message_id=str(uuid.uuid4()), context_id=context.context_id,
                       parts=[new_text_part(f"answered directly: {text}")])

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.executed.append((context.get_user_input(), context.message.task_id, context.message.context_id))
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.complete(updater.new_agent_message([new_text_part("executed")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def handler(executor: Answering, direct: bool = True) -> MeshRequestHandler:
    card = AgentCard(name="t", description="t", version="1", capabilities=AgentCapabilities(push_notifications=False))
    return MeshRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card,
                              direct=executor.answer if direct else None)


def request(text: str, context_id: str = "", task_id: str = "") -> SendMessageRequest:
    params = SendMessageRequest()
    params.message.CopyFrom(Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), context_id=context_id,
                                    task_id=task_id, parts=[new_text_part(text)]))
    return params


async def test_an_answer_the_executor_gives_comes_back_without_a_task():
    executor = Answering()
    reply = await handler(executor).on_message_send(request("direct please", context_id="c-1"), ServerCallContext())
    assert isinstance(reply, Message) and reply.parts[0].text == "answered directly: direct please"
    assert reply.context_id == "c-1"
    assert executor.executed == []


async def test_a_declined_request_reaches_execute_as_it_was_sent():
    executor = Answering()
    reply = await handler(executor).on_message_send(request("through the task", context_id="c-2"), ServerCallContext())
    assert isinstance(reply, Task) and reply.status.state == TaskState.TASK_STATE_COMPLETED
    (text, task_id, context_id), = executor.executed
    # no ids made up for the direct attempt leak into the task the SDK creates
    assert text == "through the task" and task_id == reply.id and context_id == "c-2"


@pytest.mark.parametrize("shape", ["return_immediately", "push_config", "continues_task"])
async def test_requests_that_need_the_task_machinery_never_answer_directly(shape):
    executor = Answering()
    served = handler(executor)
    params = request("direct but not allowed")
    if shape == "return_immediately":
        params.configuration.return_immediately = True
    elif shape == "push_config":
        params.configuration.task_push_notification_config.url = "http://127.0.0.1:9/hook"
    else:
        first = await served.on_message_send(request("start a task"), ServerCallContext())
        executor.executed.clear()
        params = request("direct but not allowed", context_id=first.context_id, task_id=first.id)
    try:
        reply = await served.on_message_send(params, ServerCallContext())
    except Exception:  # noqa: BLE001 - the SDK may refuse (a terminal task, push unsupported): never a direct answer
        reply = None
    assert not (isinstance(reply, Message) and reply.parts[0].text.startswith("answered directly"))


async def test_a_message_with_an_empty_part_is_refused_before_any_answer():
    executor = Answering()
    params = request("direct please")
    params.message.parts.append(Part())
    with pytest.raises(InvalidParamsError, match=r"parts\[1\] has no content"):
        await handler(executor).on_message_send(params, ServerCallContext())
    assert executor.executed == []


async def test_without_direct_answers_everything_goes_through_execute():
    executor = Answering()
    reply = await handler(executor, direct=False).on_message_send(request("direct please"), ServerCallContext())
    assert isinstance(reply, Task) and [e[0] for e in executor.executed] == ["direct please"]
