"""TaskAgent: an AgentExecutor base for agents that work on a task (working -> artifacts -> completed/failed/canceled).

A subclass writes only ``work()``; this class creates the task, marks it
working, completes it when ``work()`` returns, fails it with a readable reason
when ``work()`` raises, and on ``tasks/cancel`` stops ``work()`` before
publishing the canceled state, so no update can follow the terminal one.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from typing import Any

from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import TaskState

from mesh.serving.middleware import CLIENT_GONE
from mesh.telemetry.metrics import TASKS_RUNNING, record_task_end

log = logging.getLogger(__name__)


class AgentFailure(Exception):
    """Raised by ``work()`` to fail the task with this message (no traceback is logged)."""


class Suspended(Exception):
    """Raised by ``work()`` to leave the task as it is, unfinished: its work goes on elsewhere (e.g. after a restart)."""


class TaskAgent(AgentExecutor):
    def __init__(self) -> None:
        self._running: dict[str, _Run] = {}

    @abstractmethod
    async def work(self, request: RequestContext, task: TaskUpdater) -> None:
        """Do the work: publish progress with ``task.update_status``, results with ``task.add_artifact``."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = EndAwareUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        run = _Run(asyncio.ensure_future(self.work(context, updater)))
        self._running[task.id] = run
        gone = CLIENT_GONE.get()
        watcher = asyncio.ensure_future(self._stop_when_gone(gone, run, updater)) if gone is not None else None
        try:
            await run.work
        except asyncio.CancelledError:
            if run.work.cancelled() and not _current_task_cancelling():
                # Stopped by cancel(): keep the event queue open until it has
                # published the canceled state, so streaming clients see it.
                await run.canceled.wait()
                return
            run.work.cancel()
            raise
        except AgentFailure as exc:
            await updater.failed(updater.new_agent_message([new_text_part(str(exc))]))
            return
        except Suspended:
            return
        except Exception as exc:
            log.exception("task %s failed", task.id)
            await updater.failed(updater.new_agent_message([new_text_part(f"internal error: {type(exc).__name__}: {exc}")]))
            return
        finally:
            self._running.pop(task.id, None)
            if watcher is not None:
                watcher.cancel()
        if not updater.ended:
            await updater.complete()

    async def _stop_when_gone(self, gone: asyncio.Event, run: _Run, updater: TaskUpdater) -> None:
        """The client that waited for this task went away (closed, or reset its stream): stop the work."""
        await gone.wait()
        if run.work.done():
            return
        run.work.cancel()
        await asyncio.gather(run.work, return_exceptions=True)
        try:
            await updater.cancel(updater.new_agent_message([new_text_part(
                "The client that waited for this answer went away, so the work was stopped.")]))
        finally:
            run.canceled.set()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        run = self._running.get(context.task_id or "")
        if run is not None:
            run.work.cancel()  # stop the work first: nothing may follow the terminal state
            await asyncio.gather(run.work, return_exceptions=True)
        try:
            updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
            await updater.cancel(updater.new_agent_message([new_text_part("Canceled at the client's request.")]))
        finally:
            if run is not None:
                run.canceled.set()


class EndAwareUpdater(TaskUpdater):
    """A TaskUpdater that knows whether the work already ended the task (a2a-sdk keeps that to itself)."""

    ENDING = frozenset({TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_CANCELED,
                        TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED})
    ended = False

    async def update_status(self, state: TaskState, *args: Any, **kwargs: Any) -> None:
        await super().update_status(state, *args, **kwargs)
        if state in self.ENDING:
            self.ended = True


class _Run:
    def __init__(self, work: asyncio.Future) -> None:
        self.work = work
        self.canceled = asyncio.Event()


def _current_task_cancelling() -> bool:
    current = asyncio.current_task()
    return bool(current and current.cancelling())


class RunningTasks(AgentExecutor):
    """Wraps an executor to know which tasks this process is running, so shutdown can fail the unfinished ones.

    It also counts them for /metrics: running now, and ended by the last state they were left in.
    """

    def __init__(self, inner: AgentExecutor, agent: str = "agent") -> None:
        self.inner = inner
        self.agent = agent
        self.task_ids: set[str] = set()
        self.watch: Any = None  # a ReplicaWatch (mesh.serving.replicas) when the agent has replicas
        TASKS_RUNNING.labels(agent).set_function(lambda: len(self.task_ids))

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        self.task_ids.add(task_id)
        if self.watch is not None:
            try:
                await self.watch.register()  # listed before it runs: if this replica dies, a survivor fails it
            except Exception as exc:
                log.warning("agent %s: task %s not listed for the other replicas: %s", self.agent, task_id, exc)
        queue = _StateWatch(event_queue)
        try:
            await self.inner.execute(context, queue)
        finally:
            self.task_ids.discard(task_id)
            record_task_end(self.agent, queue.state)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await self.inner.cancel(context, event_queue)

    def direct_answers(self) -> Any:
        """The inner executor's ``answer`` (mesh.serving.handler's direct answers), counted as a task ending with a message is; else None."""
        answer = getattr(self.inner, "answer", None)
        if answer is None:
            return None

        async def counted(context: RequestContext) -> Any:
            message = await answer(context)
            if message is not None:
                record_task_end(self.agent, "unknown")  # what execute() records for a reply that is a message
            return message

        return counted


class _StateWatch:
    """An event queue proxy that remembers the last task state published through it."""

    __slots__ = ("_inner", "state")

    def __init__(self, inner: EventQueue) -> None:
        self._inner = inner
        self.state = "unknown"

    async def enqueue_event(self, event: Any) -> None:
        status = getattr(event, "status", None)
        if status is not None:
            self.state = TaskState.Name(status.state).removeprefix("TASK_STATE_").lower()
        await self._inner.enqueue_event(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
