"""Durable A2A task stores: a2a-sdk's DatabaseTaskStore on SQLite under the state directory, or PostgreSQL.

On SQLite, a2a-sdk's store costs milliseconds per operation (every statement
is a hop to aiosqlite's thread and back through SQLAlchemy's greenlets), and a
message/send does 3 gets and 4 saves. ``SQLiteTaskStore`` keeps the SDK's
table, conversions and list()/delete(), and puts a fast path in front:

- the tasks this process is working on are kept in memory, so gets are copies;
- a save that creates a task or settles it (completed, failed, canceled,
  rejected, input- or auth-required) is written at once, synchronously, with
  stdlib sqlite3 on the agent's own file: what a client has been told is on
  disk before it is told;
- saves in between (progress: working updates, artifacts) are coalesced and
  written within ``flush_interval`` seconds, so a crash loses at most that
  much progress of a task that could not have finished anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from a2a.server.cluster import ConcurrentTaskModificationError, VersionedDatabaseTaskStore
from a2a.server.context import ServerCallContext
from a2a.server.models import create_task_model
from a2a.server.tasks import DatabaseTaskStore
from a2a.types import Message, Part, Role, Task, TaskState, TaskStatus
from sqlalchemy import event, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect as sqlite_dialect
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mesh.config import MeshConfig
from mesh.errors import ServeError

log = logging.getLogger(__name__)


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


_task_models: dict[str, type] = {}


def task_model(table: str) -> type:
    """The SDK's task model class for ``table``, declared once per process (SQLAlchemy refuses a second)."""
    if table not in _task_models:
        with warnings.catch_warnings():
            # a2a-sdk names every such class TaskModel; SQLAlchemy warns that the name repeats.
            warnings.simplefilter("ignore", SAWarning)
            _task_models[table] = create_task_model(table)
    return _task_models[table]


def database_store(engine: AsyncEngine, table: str) -> DatabaseTaskStore:
    store = DatabaseTaskStore(engine, create_table=True)
    store.task_model = task_model(table)
    return store


TERMINAL_STATES = frozenset({TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED,
                             TaskState.TASK_STATE_REJECTED})


class FinalStatesStore(VersionedDatabaseTaskStore):
    """a2a-sdk's versioned store, plus: a task that ended stays ended.

    A replica that cancels a task another replica runs writes ``canceled``; the
    owner's next save fails its compare-and-swap, it reloads and sees the end,
    but the events its executor had already queued are then saved on the fresh
    version and a late ``completed`` would replace ``canceled``. Any write that
    changes the state of a task stored in a final state is refused here as a
    concurrent modification, so the first end wins, on every replica.
    """

    async def save(self, task: Task, **kwargs: Any):
        context = kwargs["context"]
        if not kwargs["prev_version"].is_missing:
            stored = await self.as_task_store.get(task.id, context)
            if stored is not None and stored.status.state in TERMINAL_STATES \
                    and task.status.state != stored.status.state:
                raise ConcurrentTaskModificationError(task.id)
        return await super().save(task, **kwargs)


def open_cluster_store(config: MeshConfig, name: str) -> tuple[Any, Any, Callable[[], Awaitable[None]]]:
    """Replicas of agent ``name`` (``replicas:`` above 1): a2a-sdk's cluster store and event stream on PostgreSQL.

    ``VersionedDatabaseTaskStore`` refuses a concurrent modification (a compare-and-swap
    on the task's version) instead of losing it, and ``DatabaseTaskEventStream`` lets any
    replica answer a resubscribe for a task another replica runs (it polls the shared
    event table). The task rows are the agent's own table, as with one process; the
    version and event tables are the SDK's, shared by the agents of the database.
    """
    from a2a.server.cluster import DatabaseTaskEventStream

    database = config.state.database or ""
    if not database.startswith(("postgresql", "postgres")):
        raise ValueError("replicas of an agent share their tasks in PostgreSQL: set state.database to a postgresql:// URL")
    engine = create_engine(async_url(database))
    versioned = FinalStatesStore(engine, create_table=True)
    versioned.as_task_store.task_model = task_model(table_name(name))
    stream = DatabaseTaskEventStream(engine, create_table=True, poll_interval_s=0.05)
    return versioned, stream, engine.dispose


CLUSTER_DDL_LOCK = 0x6D657368  # "mesh": replicas starting together create the shared tables one at a time


async def initialize_cluster(versioned: Any, stream: Any) -> None:
    """Create the cluster tables under a PostgreSQL advisory lock (the SDK's create_all races between replicas)."""
    from sqlalchemy import text

    engine = versioned.as_task_store.engine
    async with engine.connect() as connection:
        await connection.execute(text(f"SELECT pg_advisory_lock({CLUSTER_DDL_LOCK})"))
        await connection.commit()
        try:
            await versioned.initialize()
            await stream.initialize()
        finally:
            await connection.execute(text(f"SELECT pg_advisory_unlock({CLUSTER_DDL_LOCK})"))
            await connection.commit()


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
    """The task store of agent ``name`` and a coroutine function that closes it.

    The default is the agent's own SQLite file under the state directory;
    with ``state.database`` set, every agent has its own table there.
    """
    if not config.state.database:
        path = config.state_dir / "tasks" / f"{name}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        check_sqlite_file(path, f"agent {name}")
        store = SQLiteTaskStore(path, table_name(name))
        return store, store.close
    engine = create_engine(async_url(config.state.database))
    return database_store(engine, table_name(name)), engine.dispose


def check_sqlite_file(path: Path, what: str) -> None:
    """Refuse, in one line naming the file, a task store that is not a readable SQLite database.

    An empty (zero-length) file is what SQLite makes of a new database: it is
    used as one, with a warning, since a store that had tasks was emptied.
    """
    if not path.exists():
        return
    if path.stat().st_size == 0:
        log.warning("%s: task store %s is empty (0 bytes): starting with no stored tasks", what, path)
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ServeError(
            f"{what}: task store {path} is not a readable SQLite database ({exc}); "
            "move it aside (or restore it from a backup) and start again with no stored tasks"
        ) from None


async def update_task(store: DatabaseTaskStore, task_id: str, change: Callable[[Task], None]) -> bool:
    """Apply ``change`` to a stored task whoever owns it (for work that outlives its request, e.g. a resumed run)."""
    if isinstance(store, SQLiteTaskStore):
        return await store.update(task_id, change)
    await store.initialize()
    async with store.async_session_maker.begin() as session:
        row = (await session.execute(select(store.task_model).where(store.task_model.id == task_id))).scalar_one_or_none()
        if row is None:
            return False
        task = store._from_orm(row)
        change(task)
        await session.merge(store._to_orm(task, row.owner))
    return True


UNFINISHED_STATES = ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "submitted", "working")


async def fail_unfinished_tasks(store: DatabaseTaskStore, reason: str, only: set[str] | None = None) -> list[str]:
    """Mark tasks left submitted/working as failed with ``reason``; return their ids.

    A task whose agent process stopped will never finish; leaving it
    'working' would keep clients polling forever. ``only`` limits the sweep to
    the given task ids (the ones this process ran).
    """
    await store.initialize()
    if isinstance(store, SQLiteTaskStore):
        store.flush()  # the sweep reads the table: it must hold the latest states
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
    if isinstance(store, SQLiteTaskStore):
        store.forget(failed)
    return failed


SETTLED_STATES = frozenset({
    TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED, TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED,
})


class SQLiteTaskStore(DatabaseTaskStore):
    """a2a-sdk's DatabaseTaskStore on one agent's SQLite file, with an in-memory, write-through fast path."""

    def __init__(self, path: Path, table: str, flush_interval: float = 0.05, cache_size: int = 10_000) -> None:
        super().__init__(create_engine(f"sqlite+aiosqlite:///{path}"), create_table=True)
        self.task_model = task_model(table)
        self.path = path
        self.flush_interval = flush_interval
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, Task]] = OrderedDict()  # id -> (owner, task)
        self._dirty: set[str] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._db: sqlite3.Connection | None = None
        # Statements and value converters come from the SDK's own table, so
        # rows written here are the rows its list() reads and vice versa.
        mapper = sa_inspect(self.task_model)
        self._columns = [(attr.key, attr.columns[0]) for attr in mapper.column_attrs]
        dialect = sqlite_dialect()
        self._to_db = {c.name: c.type.dialect_impl(dialect).bind_processor(dialect) for _, c in self._columns}
        self._from_db = {c.name: c.type.dialect_impl(dialect).result_processor(dialect, None) for _, c in self._columns}
        names = [c.name for _, c in self._columns]
        quoted = ", ".join(f'"{n}"' for n in names)
        self._upsert = (
            f'INSERT INTO "{table}" ({quoted}) VALUES ({", ".join("?" * len(names))}) '
            f'ON CONFLICT(id) DO UPDATE SET {", ".join(f"{chr(34)}{n}{chr(34)} = excluded.{chr(34)}{n}{chr(34)}" for n in names if n != "id")}'
        )
        self._select = f'SELECT {quoted} FROM "{table}" WHERE id = ? AND owner IS ?'
        self._select_context = (f'SELECT {quoted} FROM "{table}" WHERE context_id = ? AND owner IS ? '
                                "ORDER BY last_updated DESC, id DESC LIMIT ?")

    async def initialize(self) -> None:
        await super().initialize()
        if self._db is None:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            # A conversation's earlier tasks are looked up by context on every turn (mesh.llm.agent).
            table = self.task_model.__tablename__
            self._db.execute(f'CREATE INDEX IF NOT EXISTS "ix_{table}_context" ON "{table}" (context_id)')

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await self.initialize()
        owner = self.owner_resolver(context)
        previous = self._cache.get(task.id)
        copy = Task()
        copy.CopyFrom(task)
        self._remember(task.id, owner, copy)
        creates = previous is None
        settles = task.status.state in SETTLED_STATES
        if creates or settles or (previous and previous[0] != owner):
            self._write([task.id])
        else:
            self._dirty.add(task.id)
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(self.flush_interval, self.flush)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        await self.initialize()
        owner = self.owner_resolver(context)
        cached = self._cache.get(task_id)
        if cached is not None:
            if cached[0] != owner:
                return None
            self._cache.move_to_end(task_id)
            copy = Task()
            copy.CopyFrom(cached[1])
            return copy
        row = self._db.execute(self._select, (task_id, owner)).fetchone()
        if row is None:
            return None
        values = {key: self._value_from_db(column.name, value) for (key, column), value in zip(self._columns, row, strict=True)}
        return self._from_orm(self.task_model(**values))

    async def in_context(self, context_id: str, context: ServerCallContext, limit: int) -> list[Task]:
        """The latest ``limit`` tasks of a context, newest first: list() for one context, without its ORM and count."""
        await self.initialize()
        owner = self.owner_resolver(context)
        tasks = []
        id_at = [key for key, _ in self._columns].index("id")
        for row in self._db.execute(self._select_context, (context_id, owner, limit)).fetchall():
            cached = self._cache.get(row[id_at])  # every task is written when created; later saves may wait in the cache
            if cached is not None:
                copy = Task()
                copy.CopyFrom(cached[1])
                tasks.append(copy)
                continue
            values = {key: self._value_from_db(column.name, value) for (key, column), value in zip(self._columns, row, strict=True)}
            tasks.append(self._from_orm(self.task_model(**values)))
        return tasks

    async def list(self, params, context: ServerCallContext):
        self.flush()
        return await super().list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        self.flush()
        self._cache.pop(task_id, None)
        await super().delete(task_id, context)

    async def update(self, task_id: str, change: Callable[[Task], None]) -> bool:
        """Apply ``change`` to a task whoever owns it, and write it at once; False if there is no such task."""
        await self.initialize()
        cached = self._cache.get(task_id)
        if cached is None:
            row = self._db.execute(self._select.replace(" AND owner IS ?", ""), (task_id,)).fetchone()
            if row is None:
                return False
            values = {key: self._value_from_db(column.name, value) for (key, column), value in zip(self._columns, row, strict=True)}
            cached = (values["owner"], self._from_orm(self.task_model(**values)))
            self._remember(task_id, *cached)
        change(cached[1])
        self._write([task_id])
        return True

    async def sweep_unfinished(self, reason: str, batch: int = 1000) -> int:
        """Mark tasks a previous process left submitted/working as failed with ``reason``; return how many.

        Cheap whatever the store's size, and never in the way of serving: the
        state is indexed, only rows that existed when the sweep began are
        touched (tasks of this process come later), and they are rewritten in SQL
        ``batch`` at a time, one transaction each, yielding to the event loop
        in between.
        """
        await self.initialize()
        self.flush()
        table = self.task_model.__tablename__
        state = "json_extract(status, '$.state')"
        self._db.execute(f'CREATE INDEX IF NOT EXISTS "ix_{table}_state" ON "{table}" ({state})')
        (cutoff,) = self._db.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()
        if cutoff is None:
            return 0
        # One failed status, rendered by the SDK's own conversions; each row gets its ids in SQL.
        template = Task(id="", context_id="")
        template.status.CopyFrom(TaskStatus(
            state=TaskState.TASK_STATE_FAILED,
            message=Message(message_id="", role=Role.ROLE_AGENT, parts=[Part(text=reason)]),
        ))
        template.status.timestamp.GetCurrentTime()
        model = self._to_orm(template, None)
        status = self._value_to_db("status", model.status)
        updated = self._value_to_db("last_updated", model.last_updated)
        marks = ", ".join("?" * len(UNFINISHED_STATES))
        update = (
            f'UPDATE "{table}" SET status = json_set(?, \'$.message.taskId\', id, \'$.message.contextId\', context_id, '
            f"'$.message.messageId', lower(hex(randomblob(16)))), last_updated = ? "
            f'WHERE rowid IN (SELECT rowid FROM "{table}" INDEXED BY "ix_{table}_state" '
            f"WHERE {state} IN ({marks}) AND rowid <= ? LIMIT ?)"
        )
        swept = 0
        while True:
            with self._db:
                changed = self._db.execute(update, (status, updated, *UNFINISHED_STATES, cutoff, batch)).rowcount
            swept += changed
            if changed < batch:
                return swept
            await asyncio.sleep(0)

    def forget(self, task_ids: list[str]) -> None:
        """Drop cached copies of tasks changed behind this store's back (their rows are the truth)."""
        for task_id in task_ids:
            self._cache.pop(task_id, None)
            self._dirty.discard(task_id)

    def flush(self) -> None:
        """Write every coalesced save now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._dirty:
            ids, self._dirty = sorted(self._dirty), set()
            self._write(ids)

    async def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
        await self.engine.dispose()

    def _write(self, task_ids: list[str]) -> None:
        rows = []
        for task_id in task_ids:
            self._dirty.discard(task_id)
            cached = self._cache.get(task_id)
            if cached is None:
                continue
            model = self._to_orm(cached[1], cached[0])
            rows.append([self._value_to_db(column.name, getattr(model, key)) for key, column in self._columns])
        if rows:
            with self._db:  # one transaction
                self._db.executemany(self._upsert, rows)

    def _remember(self, task_id: str, owner: str, task: Task) -> None:
        self._cache[task_id] = (owner, task)
        self._cache.move_to_end(task_id)
        while len(self._cache) > self.cache_size:
            oldest = next(iter(self._cache))
            if oldest in self._dirty:
                self._write([oldest])
            self._cache.popitem(last=False)

    def _value_to_db(self, column: str, value):
        convert = self._to_db[column]
        return convert(value) if convert and value is not None else value

    def _value_from_db(self, column: str, value):
        convert = self._from_db[column]
        return convert(value) if convert and value is not None else value
