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

from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater

log = logging.getLogger("mesh.executor")


class AgentFailure(Exception):
    """Raised by ``work()`` to fail the task with this message (no traceback is logged)."""


class TaskAgent(AgentExecutor):
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task] = {}

    @abstractmethod
    async def work(self, request: RequestContext, task: TaskUpdater) -> None:
        """Do the work: publish progress with ``task.update_status``, results with ``task.add_artifact``."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        running = asyncio.ensure_future(self.work(context, updater))
        self._running[task.id] = running
        try:
            await running
        except asyncio.CancelledError:
            if running.cancelled() and not _current_task_cancelling():
                return  # stopped by cancel(), which publishes the canceled state
            running.cancel()
            raise
        except AgentFailure as exc:
            await updater.failed(updater.new_agent_message([new_text_part(str(exc))]))
            return
        except Exception as exc:
            log.exception("task %s failed", task.id)
            await updater.failed(updater.new_agent_message([new_text_part(f"internal error: {type(exc).__name__}: {exc}")]))
            return
        finally:
            self._running.pop(task.id, None)
        if not updater._terminal_state_reached:
            await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        running = self._running.pop(context.task_id or "", None)
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel(new_text_message("Canceled at the client's request."))


def _current_task_cancelling() -> bool:
    current = asyncio.current_task()
    return bool(current and current.cancelling())
