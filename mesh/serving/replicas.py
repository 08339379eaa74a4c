"""Replicas of an agent watch each other: each keeps a heartbeat row listing its running tasks; a survivor fails a dead one's.

Table ``mesh_replicas`` (PostgreSQL, shared by the agents of the database):
one row per live replica (agent, owner, expiry by the database's clock, the
ids of the tasks it runs). A replica writes its row every ``beat`` seconds
and as soon as it starts a task (before the task runs, so no task of a
replica that dies is unlisted); each beat it also deletes the rows of its
agent that expired (``DELETE ... RETURNING``: one survivor gets each) and
marks their tasks that are still unfinished ``failed``, with the reason. A
task of a killed replica so ends failed within ``ttl + beat`` seconds instead
of staying ``working`` forever (``ttl`` is mesh.yaml's ``state.lease_seconds``,
``beat`` a third of it). The coordinator's runs are not swept: another
coordinator takes them over (``mesh.pregel.lease``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from typing import Any

from a2a.types import Message, Part, Role, Task, TaskState
from sqlalchemy import text

from mesh.serving.store import TERMINAL_STATES, update_task

__all__ = ["ReplicaWatch", "replica_owner"]

log = logging.getLogger(__name__)

_NOW = "extract(epoch FROM clock_timestamp())"
_SCHEMA = """CREATE TABLE IF NOT EXISTS mesh_replicas (
    agent TEXT NOT NULL, owner TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL, tasks TEXT NOT NULL,
    PRIMARY KEY (agent, owner))"""
_BEAT = f"""INSERT INTO mesh_replicas VALUES (:agent, :owner, {_NOW} + :ttl, :tasks)
ON CONFLICT (agent, owner) DO UPDATE SET expires_at = excluded.expires_at, tasks = excluded.tasks"""
_REAP = f"DELETE FROM mesh_replicas WHERE agent = :agent AND expires_at < {_NOW} RETURNING owner, tasks"
_DDL_LOCK = 0x6D657369


def replica_owner() -> str:
    """This process among the replicas: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ReplicaWatch:
    """This replica's heartbeat row, and the sweep of the rows of replicas that stopped beating."""

    def __init__(self, engine: Any, agent: str, owner: str, store: Any, running: set[str],
                 beat: float = 1.0, ttl: float = 5.0) -> None:
        self.engine, self.agent, self.owner, self.store = engine, agent, owner, store
        self.running = running  # the ids of the tasks this process runs now (RunningTasks.task_ids)
        self.beat, self.ttl = beat, ttl
        self._loop: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_DDL_LOCK})"))
            await connection.execute(text(_SCHEMA))
        await self.register()
        self._loop = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
        try:
            async with self.engine.begin() as connection:
                await connection.execute(text("DELETE FROM mesh_replicas WHERE agent = :agent AND owner = :owner"),
                                         {"agent": self.agent, "owner": self.owner})
        except Exception as exc:  # the database is away: the row expires and a survivor sweeps it
            log.warning("agent %s: could not remove this replica's row: %s", self.agent, exc)

    async def register(self) -> None:
        """Write this replica's row now (with the tasks it runs)."""
        async with self._lock, self.engine.begin() as connection:
            await connection.execute(text(_BEAT), {"agent": self.agent, "owner": self.owner, "ttl": self.ttl,
                                                   "tasks": json.dumps(sorted(self.running))})

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.beat)
            try:
                await self.register()
                await self.sweep()
            except Exception as exc:  # the database restarts: beat again next time
                log.warning("agent %s: replica heartbeat failed: %s", self.agent, exc)

    async def sweep(self) -> int:
        """Fail the unfinished tasks of replicas whose row expired; how many tasks they had listed."""
        async with self.engine.begin() as connection:
            dead = (await connection.execute(text(_REAP), {"agent": self.agent})).all()
        failed = 0
        for owner, tasks in dead:
            reason = (f"The replica of agent {self.agent} running this task ({owner}) stopped answering; "
                      "send the message again.")
            for task_id in json.loads(tasks):
                if await update_task(self.store, task_id, _fail_unless_ended(reason)):
                    failed += 1
            log.warning("agent %s: replica %s stopped; its unfinished tasks are failed", self.agent, owner)
        return failed


def _fail_unless_ended(reason: str):
    def change(task: Task) -> None:
        if task.status.state in TERMINAL_STATES:
            return
        task.status.state = TaskState.TASK_STATE_FAILED
        task.status.message.CopyFrom(Message(role=Role.ROLE_AGENT, message_id=f"{task.id}-replica-lost",
                                             task_id=task.id, context_id=task.context_id, parts=[Part(text=reason)]))
        task.status.timestamp.GetCurrentTime()

    return change
