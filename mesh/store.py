"""Durable A2A task stores: a2a-sdk's DatabaseTaskStore on SQLite under the state directory, or PostgreSQL."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from a2a.server.tasks import DatabaseTaskStore
from a2a.types import Message, Part, Role, TaskState, TaskStatus
from sqlalchemy import event, select
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mesh.config import MeshConfig


def database_url(config: MeshConfig, name: str) -> str:
    """The SQLAlchemy async URL holding agent ``name``'s tasks."""
    url = config.state.database
    if not url:
        path = config.state_dir / "tasks" / f"{name}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{path}"
    return async_url(url)


def async_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+asyncpg://``; ``sqlite:///`` -> ``sqlite+aiosqlite:///``."""
    parts = urlsplit(url)
    scheme = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}.get(
        parts.scheme, parts.scheme
    )
    return urlunsplit(parts._replace(scheme=scheme))


def table_name(name: str) -> str:
    """Each agent has its own table, so agents sharing one database never see each other's tasks."""
    return "a2a_tasks_" + name.replace("-", "_")


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(connection, _record) -> None:
            # WAL lets readers (tasks/get) run beside the writer; NORMAL sync
            # is durable across process crashes, which is what a restart needs.
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def open_task_store(config: MeshConfig, name: str) -> tuple[DatabaseTaskStore, Callable[[], Awaitable[None]]]:
    """The task store of agent ``name`` and a coroutine function that closes it."""
    engine = create_engine(database_url(config, name))
    with warnings.catch_warnings():
        # a2a-sdk declares one model class per table name; SQLAlchemy warns that
        # the class name repeats, which is harmless here.
        warnings.simplefilter("ignore", SAWarning)
        store = DatabaseTaskStore(engine, create_table=True, table_name=table_name(name))
    return store, engine.dispose


UNFINISHED_STATES = ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "submitted", "working")


async def fail_unfinished_tasks(store: DatabaseTaskStore, reason: str, only: set[str] | None = None) -> list[str]:
    """Mark tasks left submitted/working as failed with ``reason``; return their ids.

    A task whose agent process stopped will never finish; leaving it
    'working' would keep clients polling forever. ``only`` limits the sweep to
    the given task ids (the ones this process ran).
    """
    await store.initialize()
    model = store.task_model
    failed = []
    async with store.async_session_maker.begin() as session:
        query = select(model).where(model.status["state"].as_string().in_(UNFINISHED_STATES))
        if only is not None:
            if not only:
                return []
            query = query.where(model.id.in_(sorted(only)))
        for row in (await session.execute(query)).scalars().all():
            task = store._from_orm(row)
            task.status.CopyFrom(TaskStatus(
                state=TaskState.TASK_STATE_FAILED,
                message=Message(message_id=str(uuid.uuid4()), role=Role.ROLE_AGENT, task_id=task.id,
                                context_id=task.context_id, parts=[Part(text=reason)]),
            ))
            task.status.timestamp.GetCurrentTime()
            await session.merge(store._to_orm(task, row.owner))
            failed.append(task.id)
    return failed
