"""An agent that acts out the A2A TCK's scenarios (a2a-tck, scenarios/*.feature), keyed by messageId prefix.

The TCK tests the serving stack through an agent whose behaviour it knows;
this module is that agent for the mesh, so the TCK runs against `mesh serve`
(hypercorn, the mesh's middleware, the SQLite store) with nothing else changed.
The 1.0 TCK names its scenario in the messageId; the 0.3 TCK sends plain
messages and then continues, reads the history of and cancels the task they
made, so an unscripted message opens a conversation that stays
``input-required`` (a 1.0 agent must refuse messages to a finished task).
"""

import asyncio

from a2a.helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, Part
from a2a.utils.errors import A2AError
from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Value

card = AgentCard(
    name="TCK agent",
    description="Plays the A2A TCK's scenarios",
    version="1.0.0",
    capabilities=AgentCapabilities(streaming=True),
    skills=[AgentSkill(id="tck", name="TCK", description="TCK conformance scenarios", tags=["tck"])],
)

STREAMING_TIMEOUT_S = 2


def _data(value: dict) -> Part:
    return Part(data=ParseDict(value, Value()))


FILE = Part(raw=b"tck", media_type="text/plain", filename="output.txt")
FILE_URL = Part(url="https://example.com/output.txt", media_type="text/plain", filename="output.txt")

# prefix -> steps; longer prefixes first so "tck-artifact-file-url" wins over "tck-artifact-file"
SCENARIOS: list[tuple[str, list[tuple]]] = sorted([
    ("tck-complete-task", [("complete", "Hello from TCK")]),
    ("tck-artifact-text", [("artifact", Part(text="Generated text content")), ("complete",)]),
    ("tck-artifact-file", [("artifact", FILE), ("complete",)]),
    ("tck-artifact-file-url", [("artifact", FILE_URL), ("complete",)]),
    ("tck-artifact-data", [("artifact", _data({"key": "value", "count": 42})), ("complete",)]),
    ("tck-message-response", [("message", "Direct message response")]),
    ("tck-input-required", [("input_required",)]),
    ("tck-reject-task", [("reject", "rejected")]),
    ("tck-stream-001", [("working",), ("artifact", Part(text="Stream hello from TCK")), ("complete",)]),
    ("tck-stream-002", [("complete",)]),
    ("tck-stream-003", [("working",), ("artifact", Part(text="Stream task lifecycle")), ("complete",)]),
    ("tck-stream-ordering-001", [("working",), ("artifact", Part(text="Ordered output")), ("complete",)]),
    ("tck-stream-artifact-text", [("working",), ("artifact", Part(text="Streamed text content")), ("complete",)]),
    ("tck-stream-artifact-file", [("working",), ("artifact", FILE), ("complete",)]),
    ("tck-stream-artifact-chunked", [("working",), ("chunk", "chunk-1 ", False), ("chunk", "chunk-2", True), ("complete",)]),
    ("test-resubscribe-message-id", [("working",), ("wait", 2 * STREAMING_TIMEOUT_S), ("complete",)]),
], key=lambda item: -len(item[0]))


class TckExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        # A follow-up may name only the task; its context is the task's, not a new one.
        context_id = context.current_task.context_id if context.current_task else context.context_id
        updater = TaskUpdater(event_queue, context.task_id, context_id)
        message_id = context.message.message_id if context.message else ""
        steps = next((s for prefix, s in SCENARIOS if message_id.startswith(prefix)),
                     [("converse", context.get_user_input())])
        if steps[0][0] != "message" and context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        artifact_id = None
        for step in steps:
            match step:
                case ("complete",):
                    await updater.complete()
                case ("complete", text):
                    await updater.complete(updater.new_agent_message([Part(text=text)]))
                case ("working",):
                    await updater.start_work()
                case ("artifact", part):
                    await updater.add_artifact([part])
                case ("chunk", text, last):
                    artifact_id = artifact_id or f"{context.task_id}-chunked"
                    await updater.add_artifact([Part(text=text)], artifact_id=artifact_id, append=True, last_chunk=last)
                case ("message", text):
                    await event_queue.enqueue_event(updater.new_agent_message([Part(text=text)]))
                case ("input_required",):
                    await updater.requires_input()
                case ("converse", text):
                    reply = f"You said: {text!r}. Say more, or cancel the task to end it."
                    await updater.requires_input(updater.new_agent_message([Part(text=reply)]))
                case ("reject", reason):
                    raise A2AError(reason)
                case ("wait", seconds):
                    await asyncio.sleep(seconds)  # the scenario is "a long-running task"

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def create_executor(settings) -> TckExecutor:
    return TckExecutor()
