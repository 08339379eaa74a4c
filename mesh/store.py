"""Durable A2A task stores: a2a-sdk's DatabaseTaskStore on SQLite under the state directory, or PostgreSQL."""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from a2a.server.tasks import DatabaseTaskStore
from sqlalchemy import event
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
