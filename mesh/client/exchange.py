"""One exchange with an agent: send a message, fold the stream's events into the task (or message), settle it.

Every caller in the mesh (the CLI, the coordinator's remote vertices, the MCP
bridge, the guard client) sends the same way: events arrive (a task, status
updates, artifact chunks, or one message), ``Exchange`` keeps the latest
picture of the task with a2a-sdk's own artifact folding, and when the stream
ends before the task settled (a cancel from elsewhere, a proxy that cut the
stream) the task itself is read back, because the task has the final word.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from a2a.client import Client
from a2a.server.tasks.task_manager import append_artifact_to_task
from a2a.types import (
    GetTaskRequest,
    Message,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)

# States in which a task waits for nothing more from its agent.
TERMINAL_STATES = frozenset({
    TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_REJECTED,
})
# Terminal, or paused until the client answers: either way the exchange is over.
SETTLED_STATES = TERMINAL_STATES | {TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED}
# Settled without the work being done.
FAILED_STATES = frozenset({TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_REJECTED})


class Exchange:
    """The task (or the lone message) that one send produced, as its events reveal it."""

    def __init__(self) -> None:
        self.task: Task | None = None
        self.message: Message | None = None
        self.bytes_received = 0

    def add(self, event: StreamResponse) -> None:
        """Fold one stream event into the picture."""
        self.bytes_received += event.ByteSize()
        kind = event.WhichOneof("payload")
        if kind == "message":
            self.message = event.message
        elif kind == "task":
            task = Task()
            task.CopyFrom(event.task)
            self.task = task
        elif self.task is None:
            return  # an update for a task we never saw: nothing to fold it into
        elif kind == "status_update":
            self.task.status.CopyFrom(event.status_update.status)
            if event.status_update.HasField("metadata"):
                self.task.metadata.update(event.status_update.metadata)
        elif kind == "artifact_update":
            append_artifact_to_task(self.task, event.artifact_update)

    @property
    def final(self) -> Task | Message | None:
        """The task when there is one, else the message (an agent may answer with a message alone)."""
        return self.task if self.task is not None else self.message

    @property
    def task_id(self) -> str | None:
        if self.task is not None:
            return self.task.id
        return (self.message.task_id or None) if self.message is not None else None

    @property
    def state(self) -> int | None:
        """The task's state; a message alone counts as completed."""
        if self.task is not None:
            return self.task.status.state
        return TaskState.TASK_STATE_COMPLETED if self.message is not None else None

    @property
    def settled(self) -> bool:
        return self.state in SETTLED_STATES

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES


async def exchange(
    client: Client,
    request: SendMessageRequest,
    on_event: Callable[[StreamResponse, Exchange], Awaitable[None] | None] | None = None,
    *,
    settle: bool = True,
    cancel_remote: Callable[[], bool] | None = None,
    background: set[asyncio.Task] | None = None,
) -> Exchange:
    """Send ``request``, fold every event (calling ``on_event`` after each), and settle the task.

    With ``settle`` (the default) a stream that ends before its task settled
    is followed by ``GetTask``, so the result holds the task's real final
    state and its whole artifacts. If the caller is cancelled mid-stream, the
    remote task is cancelled too (in the background), so no agent works on
    for a caller that has gone. ``cancel_remote`` (asked at that moment) may
    say no, for a caller that stops waiting but leaves the task to run (a
    deadline after which it reads the task later). The cancel runs in the
    background; its task goes into ``background``, which a caller that closes
    the HTTP client afterwards awaits first, or the cancel would never leave.
    """
    result = Exchange()
    events: asyncio.Queue = asyncio.Queue()
    # The stream is read by a task of its own, so that a caller cancelled before the task's
    # id arrived can still have it cancelled: the reader goes on until it knows the id.
    reader = asyncio.get_running_loop().create_task(_read(client, request, events))
    try:
        while True:
            event = await events.get()
            if event is _END:
                break
            if isinstance(event, BaseException):
                raise event
            result.add(event)
            if on_event is not None:
                outcome = on_event(event, result)
                if asyncio.iscoroutine(outcome):
                    await outcome
    except asyncio.CancelledError:
        loop = asyncio.get_running_loop()
        cleanup = None
        if cancel_remote is not None and not cancel_remote():
            reader.cancel()
        elif result.task is not None:
            reader.cancel()
            if not result.settled:
                cleanup = loop.create_task(cancel_quietly(client, result.task.id))
        else:
            cleanup = loop.create_task(_cancel_when_known(client, reader, events))
        if cleanup is not None and background is not None:
            background.add(cleanup)
        raise
    except BaseException:
        reader.cancel()
        raise
    if settle and result.task is not None and not result.settled:
        result.task = await client.get_task(GetTaskRequest(id=result.task.id))
    return result


_END = object()


async def _read(client: Client, request: SendMessageRequest, events: asyncio.Queue) -> None:
    try:
        async for event in client.send_message(request):
            await events.put(event)
    except asyncio.CancelledError:
        raise
    except BaseException as error:  # handed to the caller, which raises it
        await events.put(error)
        return
    await events.put(_END)


async def _cancel_when_known(client: Client, reader: asyncio.Task, events: asyncio.Queue, wait_s: float = 30.0) -> None:
    """The caller went away before the task's id arrived: wait (bounded) for it, then cancel that task."""
    try:
        async with asyncio.timeout(wait_s):
            while True:
                event = await events.get()
                if event is _END or isinstance(event, BaseException):
                    return
                probe = Exchange()
                probe.add(event)
                if probe.task_id:
                    if not probe.settled:
                        await cancel_quietly(client, probe.task_id)
                    return
    except TimeoutError:
        pass
    finally:
        reader.cancel()


async def cancel_quietly(client: Client, task_id: str) -> None:
    """Ask the agent to cancel a task; a task that already ended (or an agent gone) is not an error here."""
    from a2a.types import CancelTaskRequest

    try:
        await client.cancel_task(CancelTaskRequest(id=task_id))
    except Exception:  # noqa: BLE001 - best effort: the caller has already moved on
        pass

