"""Durable runs: one checkpoint per superstep and a record of every finished vertex call, in SQLite or PostgreSQL.

Tables (the same in both backends):

- ``pregel_graphs``: each graph spec once (by digest), with its topology at
  version 0, so a run does not copy a 1000-vertex graph;
- ``pregel_runs``: one row per run: its graph's digest, the input, the
  status (running, done, failed, cancelled), the result and error once it
  ended;
- ``pregel_topologies``: the topology at each later version (one row per
  barrier whose mutations changed it);
- ``pregel_supersteps``: one row per finished superstep: the checkpoint (the
  next superstep's inboxes, the vertices that stay active without messages,
  the aggregates, the vertices removed at the barrier, the topology version),
  the superstep's event summary, and the records of the calls that the
  barrier found not yet written (``calls``, a JSON array);
- ``pregel_calls``: the records of the calls written while others of their
  superstep were still running.

A call record is a finished call attempt, keyed by (run id, superstep,
vertex id, attempt), with ``seq`` (the order in which calls finished) and
``status``: ``ok`` (payload: the result and the edges it sent along),
``failed`` (an attempt that will be retried) or ``error`` (the last attempt
failed). ``CheckpointStore.calls`` reads them from both places. Keeping the
barrier's records in the superstep's row makes a superstep of one call one
row (and a 1000-wide superstep one row instead of 1000): the commit is what
the checkpoint costs.

A vertex's state and output are not copied into checkpoints: the ``ok``
records are the only thing that changes them, so resuming folds the records
of the finished supersteps (and the removals). A checkpoint is one
transaction, so the store always holds the state after a complete barrier.

Call records are written with group commit (``CallRecorder``): records of
calls that finish while others still run are written in one transaction per
batch; whatever is left when the barrier closes goes into the checkpoint's
transaction. So 1000 trivial vertices cost one transaction, a slow
superstep does not keep finished calls in memory only, and no barrier uses a
result whose record is not durable.

SQLite runs in WAL mode with ``synchronous=NORMAL`` by default: a commit
survives the process being killed, not a power cut (``synchronous="FULL"``
for that). ``open_store`` picks a backend from a path or URL.
"""

from __future__ import annotations

import abc
import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_STATUSES = ("running", "done", "failed", "cancelled")

# A call record as written: (run_id, superstep, vertex_id, attempt, seq, status, payload, latency_us).
CallRow = tuple[str, int, str, int, int, str, str, float]


@dataclass(slots=True)
class CallRecord:
    """A finished call attempt as read back; ``payload`` is JSON text."""

    run_id: str
    superstep: int
    vertex_id: str
    attempt: int
    seq: int
    status: str  # ok | failed | error
    payload: str
    latency_us: int  # from the call's first attempt to this outcome, in microseconds


@dataclass(slots=True)
class NewRun:
    run_id: str
    graph_digest: str  # identifies ``graph``
    graph: str  # JSON of the GraphSpec
    input: str  # JSON
    topology: str  # JSON snapshot, version 0


@dataclass(slots=True)
class Checkpoint:
    """What a barrier writes, in one transaction."""

    run_id: str
    superstep: int  # the superstep that just finished
    state: str  # JSON {"inbox", "awake", "aggregates", "removed", "topology_version"}
    event: str  # JSON summary of the superstep's event
    topology_version: int
    topology: str | None = None  # the new snapshot, when the barrier changed the topology
    records: Sequence[CallRow] = ()
    finished: tuple[str, str | None] | None = None  # (status, result JSON) when this barrier ends the run


@dataclass(slots=True)
class RunInfo:
    run_id: str
    status: str
    next_superstep: int  # supersteps checkpointed so far
    topology_version: int
    created_at: float
    updated_at: float
    error: str | None = None
    result: str | None = None  # JSON, once the run has ended


@dataclass(slots=True)
class SavedRun:
    """What ``Engine.resume`` needs: the run, its current topology, its superstep rows and its call records."""

    info: RunInfo
    graph: str
    input: str
    topology: str
    supersteps: list[tuple[int, str, str]] = field(default_factory=list)  # (superstep, state, event), in order
    calls: list[CallRecord] = field(default_factory=list)  # ordered by superstep, then seq


class StoreError(RuntimeError):
    pass


class CheckpointStore(abc.ABC):
    """The small interface both backends implement; every write is one transaction."""

    async def __aenter__(self) -> CheckpointStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the tables if they are missing."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def create_run(self, run: NewRun) -> None: ...

    @abc.abstractmethod
    async def record_calls(self, records: Sequence[CallRow]) -> None: ...

    @abc.abstractmethod
    async def checkpoint(self, checkpoint: Checkpoint) -> None: ...

    @abc.abstractmethod
    async def finish_run(self, run_id: str, status: str, result: str | None, error: str | None = None) -> None: ...

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunInfo | None: ...

    @abc.abstractmethod
    async def list_runs(self, status: str | None = None, limit: int = 100, graph_digest: str | None = None) -> list[RunInfo]:
        """Runs, most recently updated first (optionally only those with ``status``)."""

    @abc.abstractmethod
    async def calls(self, run_id: str, superstep: int | None = None) -> list[CallRecord]:
        """The call records of a run (of one superstep), ordered by superstep, then by finishing order."""

    @abc.abstractmethod
    async def load_run(self, run_id: str) -> SavedRun | None: ...


def open_store(location: str | Path, **options: Any) -> CheckpointStore:
    """A store for ``postgresql://...`` (PostgreSQL), ``sqlite:///PATH`` or a plain file path (SQLite); not yet opened."""
    text = str(location)
    for prefix in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
        if text.startswith(prefix):
            return PostgresStore("postgresql://" + text[len(prefix):], **options)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    elif "://" in text:
        raise StoreError(f"unknown store {text!r}: use a file path, sqlite:///PATH or postgresql://...")
    return SQLiteStore(text, **options)


class CallRecorder:
    """Group commit of call records: batches the calls that finish together; the barrier takes the rest."""

    def __init__(self, store: CheckpointStore):
        self.store = store
        self._buffer: list[CallRow] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, row: CallRow, others_running: bool) -> None:
        """Queue a record; written now in a batch if other calls still run, else by the imminent barrier."""
        self._buffer.append(row)
        if others_running and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_batches())

    async def _write_batches(self) -> None:
        try:
            # One turn of the loop lets the calls that finish together join this batch,
            # and lets a barrier that closes now take them into its own transaction.
            await asyncio.sleep(0)
            while self._buffer:
                batch, self._buffer = self._buffer, []
                await self.store.record_calls(batch)
        finally:
            self._writer = None

    @property
    def idle(self) -> bool:
        """No batch is being written."""
        return self._writer is None

    def take(self) -> list[CallRow]:
        """The records nobody is writing (when ``idle``)."""
        rest, self._buffer = self._buffer, []
        return rest

    async def take_rest(self) -> list[CallRow]:
        """Wait for the batch being written; return the records nobody is writing yet (for the checkpoint)."""
        rest, self._buffer = self._buffer, []
        writer = self._writer
        if writer is not None:
            await writer
        return rest

    async def close(self) -> None:
        """Write what is left (on cancel or failure) so finished calls stay recorded."""
        rest = await self.take_rest()
        if rest:
            await self.store.record_calls(rest)


def embed_records(rows: Sequence[CallRow]) -> str:
    """Records as one JSON array of ``[vertex, attempt, seq, status, latency_us, payload]`` (payloads are JSON already)."""
    # Vertex ids and statuses need no escaping (VERTEX_ID_PATTERN); a list is faster to join than a generator.
    return "[" + ",".join([f'["{row[2]}",{row[3]},{row[4]},"{row[5]}",{row[7]},{row[6]}]' for row in rows]) + "]"


def embedded_records(run_id: str, superstep: int, text: str) -> list[CallRecord]:
    return [
        CallRecord(run_id, superstep, vertex_id, attempt, seq, status, json.dumps(payload), latency_us)
        for vertex_id, attempt, seq, status, latency_us, payload in json.loads(text)
    ]


def _merge_calls(run_id: str, table_rows: Sequence[Any], superstep_rows: Sequence[Any]) -> list[CallRecord]:
    records = [CallRecord(*row) for row in table_rows]
    for superstep, calls in superstep_rows:
        if calls != "[]":
            records.extend(embedded_records(run_id, superstep, calls))
    records.sort(key=lambda record: (record.superstep, record.seq))
    return records


_RUN_INFO_QUERY = """
SELECT r.run_id, r.status,
       COALESCE((SELECT MAX(s.superstep) + 1 FROM pregel_supersteps s WHERE s.run_id = r.run_id), 0),
       COALESCE((SELECT MAX(t.version) FROM pregel_topologies t WHERE t.run_id = r.run_id), 0),
       r.created_at, r.updated_at, r.error, r.result
FROM pregel_runs r
"""
_LOAD_GRAPH_QUERY = """
SELECT g.graph, r.input, COALESCE(
    (SELECT t.snapshot FROM pregel_topologies t WHERE t.run_id = r.run_id ORDER BY t.version DESC LIMIT 1), g.topology)
FROM pregel_runs r JOIN pregel_graphs g ON g.digest = r.graph_digest
WHERE r.run_id = ?
"""

# --- SQLite -----------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS pregel_graphs (
    digest TEXT PRIMARY KEY,
    graph TEXT NOT NULL,
    topology TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pregel_runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    graph_digest TEXT NOT NULL REFERENCES pregel_graphs (digest),
    input TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pregel_runs_status ON pregel_runs (status, updated_at);
CREATE TABLE IF NOT EXISTS pregel_topologies (
    run_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (run_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pregel_supersteps (
    run_id TEXT NOT NULL,
    superstep INTEGER NOT NULL,
    state TEXT NOT NULL,
    event TEXT NOT NULL,
    calls TEXT NOT NULL,
    PRIMARY KEY (run_id, superstep)
);
CREATE TABLE IF NOT EXISTS pregel_calls (
    run_id TEXT NOT NULL,
    superstep INTEGER NOT NULL,
    vertex_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    latency_us INTEGER NOT NULL,
    PRIMARY KEY (run_id, superstep, vertex_id, attempt)
) WITHOUT ROWID;
"""

_CALL_COLUMNS = "run_id, superstep, vertex_id, attempt, seq, status, payload, latency_us"
_INSERT_CALL = f"INSERT INTO pregel_calls ({_CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"


def _run_filter(status: str | None, graph_digest: str | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (``?`` placeholders) and parameters selecting runs by status and graph."""
    clauses, params = [], []
    if status is not None:
        clauses.append("r.status = ?")
        params.append(status)
    if graph_digest is not None:
        clauses.append("r.graph_digest = ?")
        params.append(graph_digest)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


class SQLiteStore(CheckpointStore):
    """Checkpoints in one SQLite file (WAL mode).

    By default the statements run on the event loop's thread: a WAL commit
    with ``synchronous=NORMAL`` does not wait for the disk and takes tens of
    microseconds, much less than handing it to a thread (measured here:
    about 1 ms per hand-over on a busy 2-core machine, the GIL going back
    and forth). Every 1000 pages or so, SQLite's automatic WAL checkpoint
    does wait for the disk, in whichever commit crosses the mark (a
    background checkpointer thread was tried: no faster here, more parts).
    ``in_thread=True`` moves all statements to one dedicated thread, for a
    slow disk or ``synchronous=FULL``.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", in_thread: bool = False):
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.in_thread = in_thread
        self._connection: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._open = False
        self._stored_graphs: set[str] = set()

    async def _run(self, function: Any, *args: Any) -> Any:
        if not self._open:
            raise StoreError("the store is not open (use `async with store:` or `await store.open()`)")
        if self._thread is None:
            return function(*args)
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def open(self) -> None:
        if self._open:
            return
        self._open = True
        if self.in_thread:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pregel-sqlite")
        try:
            await self._run(self._connect)
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        connection.execute("PRAGMA busy_timeout=10000")
        connection.executescript(SQLITE_SCHEMA)
        self._connection = connection

    async def close(self) -> None:
        if not self._open:
            return
        if self._connection is not None:
            await self._run(self._connection.close)
            self._connection = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        self._open = False

    def _transaction(self, work: Any, *args: Any) -> Any:
        connection = self._connection
        assert connection is not None
        # Deferred is enough: every transaction here writes first, and only this connection writes.
        connection.execute("BEGIN")
        try:
            value = work(connection, *args)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return value

    async def create_run(self, run: NewRun) -> None:
        await self._run(self._transaction, self._create_run, run)
        self._stored_graphs.add(run.graph_digest)

    def _create_run(self, connection: sqlite3.Connection, run: NewRun) -> None:
        now = time.time()
        if run.graph_digest not in self._stored_graphs:
            connection.execute(
                "INSERT INTO pregel_graphs VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (run.graph_digest, run.graph, run.topology)
            )
        try:
            connection.execute(
                "INSERT INTO pregel_runs (run_id, status, graph_digest, input, created_at, updated_at)"
                " VALUES (?, 'running', ?, ?, ?, ?)",
                (run.run_id, run.graph_digest, run.input, now, now),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"run {run.run_id!r} exists") from None

    async def record_calls(self, records: Sequence[CallRow]) -> None:
        await self._run(self._transaction, lambda connection: connection.executemany(_INSERT_CALL, records))

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        if checkpoint.topology is None and checkpoint.finished is None:
            # One statement is a transaction of its own: no BEGIN and COMMIT round trips.
            await self._run(self._single_statement, self._insert_superstep, checkpoint)
        else:
            await self._run(self._transaction, self._checkpoint, checkpoint)

    def _single_statement(self, work: Any, *args: Any) -> Any:
        assert self._connection is not None
        return work(self._connection, *args)

    @staticmethod
    def _insert_superstep(connection: sqlite3.Connection, cp: Checkpoint) -> None:
        connection.execute(
            "INSERT OR REPLACE INTO pregel_supersteps VALUES (?, ?, ?, ?, ?)",
            (cp.run_id, cp.superstep, cp.state, cp.event, embed_records(cp.records)),
        )

    @staticmethod
    def _checkpoint(connection: sqlite3.Connection, cp: Checkpoint) -> None:
        if cp.topology is not None:
            connection.execute(
                "INSERT OR REPLACE INTO pregel_topologies VALUES (?, ?, ?)", (cp.run_id, cp.topology_version, cp.topology)
            )
        SQLiteStore._insert_superstep(connection, cp)
        if cp.finished is not None:
            connection.execute(
                "UPDATE pregel_runs SET status = ?, result = ?, updated_at = ? WHERE run_id = ?",
                (*cp.finished, time.time(), cp.run_id),
            )

    async def finish_run(self, run_id: str, status: str, result: str | None, error: str | None = None) -> None:
        if status not in RUN_STATUSES[1:]:
            raise StoreError(f"a run finishes as done, failed or cancelled, not {status!r}")
        await self._run(
            self._transaction,
            lambda connection: connection.execute(
                "UPDATE pregel_runs SET status = ?, result = ?, error = ?, updated_at = ? WHERE run_id = ?",
                (status, result, error, time.time(), run_id),
            ),
        )

    async def get_run(self, run_id: str) -> RunInfo | None:
        rows = await self._run(self._query, _RUN_INFO_QUERY + " WHERE r.run_id = ?", (run_id,))
        return RunInfo(*rows[0]) if rows else None

    async def list_runs(self, status: str | None = None, limit: int = 100, graph_digest: str | None = None) -> list[RunInfo]:
        where, params = _run_filter(status, graph_digest)
        rows = await self._run(self._query, _RUN_INFO_QUERY + where + " ORDER BY r.updated_at DESC LIMIT ?", (*params, limit))
        return [RunInfo(*row) for row in rows]

    async def calls(self, run_id: str, superstep: int | None = None) -> list[CallRecord]:
        where = " WHERE run_id = ?" + ("" if superstep is None else " AND superstep = ?")
        params: tuple[Any, ...] = (run_id,) if superstep is None else (run_id, superstep)
        table = await self._run(self._query, f"SELECT {_CALL_COLUMNS} FROM pregel_calls" + where, params)
        embedded = await self._run(self._query, "SELECT superstep, calls FROM pregel_supersteps" + where, params)
        return _merge_calls(run_id, table, embedded)

    async def load_run(self, run_id: str) -> SavedRun | None:
        return await self._run(self._load_run, run_id)

    def _load_run(self, run_id: str) -> SavedRun | None:
        connection = self._connection
        assert connection is not None
        connection.execute("BEGIN")  # one consistent snapshot
        try:
            info = connection.execute(_RUN_INFO_QUERY + " WHERE r.run_id = ?", (run_id,)).fetchone()
            if info is None:
                return None
            graph, input_json, topology = connection.execute(_LOAD_GRAPH_QUERY, (run_id,)).fetchone()
            supersteps = connection.execute(
                "SELECT superstep, state, event, calls FROM pregel_supersteps WHERE run_id = ? ORDER BY superstep", (run_id,)
            ).fetchall()
            calls = connection.execute(f"SELECT {_CALL_COLUMNS} FROM pregel_calls WHERE run_id = ?", (run_id,)).fetchall()
        finally:
            connection.execute("COMMIT")
        return SavedRun(
            RunInfo(*info),
            graph,
            input_json,
            topology,
            [(superstep, state, event) for superstep, state, event, _ in supersteps],
            _merge_calls(run_id, calls, [(superstep, embedded) for superstep, _, _, embedded in supersteps]),
        )

    def _query(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        assert self._connection is not None
        return self._connection.execute(query, params).fetchall()


# --- PostgreSQL -------------------------------------------------------------------------------

POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS pregel_graphs (
    digest TEXT PRIMARY KEY,
    graph TEXT NOT NULL,
    topology TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pregel_runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    graph_digest TEXT NOT NULL REFERENCES pregel_graphs (digest),
    input TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS pregel_runs_status ON pregel_runs (status, updated_at);
CREATE TABLE IF NOT EXISTS pregel_topologies (
    run_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (run_id, version)
);
CREATE TABLE IF NOT EXISTS pregel_supersteps (
    run_id TEXT NOT NULL,
    superstep INTEGER NOT NULL,
    state TEXT NOT NULL,
    event TEXT NOT NULL,
    calls TEXT NOT NULL,
    PRIMARY KEY (run_id, superstep)
);
CREATE TABLE IF NOT EXISTS pregel_calls (
    run_id TEXT NOT NULL,
    superstep INTEGER NOT NULL,
    vertex_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    latency_us BIGINT NOT NULL,
    PRIMARY KEY (run_id, superstep, vertex_id, attempt)
);
"""

_PG_INSERT_CALL = (
    f"INSERT INTO pregel_calls ({_CALL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
)


def _pg(query: str) -> str:
    """The shared SQL with PostgreSQL's numbered parameters."""
    parts = query.split("?")
    return "".join(part + (f"${index}" if index < len(parts) else "") for index, part in enumerate(parts, 1))


class PostgresStore(CheckpointStore):
    """Checkpoints in PostgreSQL through an asyncpg pool (for a coordinator on more than one machine)."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4):
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self._pool: Any = None
        self._stored_graphs: set[str] = set()

    async def open(self) -> None:
        if self._pool is not None:
            return
        import asyncpg  # only this backend needs it

        self._pool = await asyncpg.create_pool(self.url, min_size=self.min_size, max_size=self.max_size)
        async with self._pool.acquire() as connection, connection.transaction():
            # Two coordinators opening one fresh database at once must not race on CREATE TABLE.
            await connection.execute("SELECT pg_advisory_xact_lock(7418923001)")
            await connection.execute(POSTGRES_SCHEMA)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StoreError("the store is not open (use `async with store:` or `await store.open()`)")
        return self._pool

    async def create_run(self, run: NewRun) -> None:
        import asyncpg

        now = time.time()
        async with self._require_pool().acquire() as connection, connection.transaction():
            if run.graph_digest not in self._stored_graphs:
                await connection.execute(
                    "INSERT INTO pregel_graphs VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    run.graph_digest, run.graph, run.topology,
                )
            try:
                await connection.execute(
                    "INSERT INTO pregel_runs (run_id, status, graph_digest, input, created_at, updated_at)"
                    " VALUES ($1, 'running', $2, $3, $4, $4)",
                    run.run_id, run.graph_digest, run.input, now,
                )
            except asyncpg.UniqueViolationError:
                raise StoreError(f"run {run.run_id!r} exists") from None
        self._stored_graphs.add(run.graph_digest)

    async def record_calls(self, records: Sequence[CallRow]) -> None:
        async with self._require_pool().acquire() as connection, connection.transaction():
            await connection.executemany(_PG_INSERT_CALL, records)

    async def checkpoint(self, cp: Checkpoint) -> None:
        async with self._require_pool().acquire() as connection, connection.transaction():
            if cp.topology is not None:
                await connection.execute(
                    "INSERT INTO pregel_topologies VALUES ($1, $2, $3)"
                    " ON CONFLICT (run_id, version) DO UPDATE SET snapshot = excluded.snapshot",
                    cp.run_id, cp.topology_version, cp.topology,
                )
            await connection.execute(
                "INSERT INTO pregel_supersteps VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, superstep)"
                " DO UPDATE SET state = excluded.state, event = excluded.event, calls = excluded.calls",
                cp.run_id, cp.superstep, cp.state, cp.event, embed_records(cp.records),
            )
            if cp.finished is not None:
                await connection.execute(
                    "UPDATE pregel_runs SET status = $1, result = $2, updated_at = $3 WHERE run_id = $4",
                    *cp.finished, time.time(), cp.run_id,
                )

    async def finish_run(self, run_id: str, status: str, result: str | None, error: str | None = None) -> None:
        if status not in RUN_STATUSES[1:]:
            raise StoreError(f"a run finishes as done, failed or cancelled, not {status!r}")
        await self._require_pool().execute(
            "UPDATE pregel_runs SET status = $1, result = $2, error = $3, updated_at = $4 WHERE run_id = $5",
            status, result, error, time.time(), run_id,
        )

    async def get_run(self, run_id: str) -> RunInfo | None:
        row = await self._require_pool().fetchrow(_pg(_RUN_INFO_QUERY + " WHERE r.run_id = ?"), run_id)
        return RunInfo(*row) if row else None

    async def list_runs(self, status: str | None = None, limit: int = 100, graph_digest: str | None = None) -> list[RunInfo]:
        where, params = _run_filter(status, graph_digest)
        query = _pg(_RUN_INFO_QUERY + where + " ORDER BY r.updated_at DESC LIMIT ?")
        return [RunInfo(*row) for row in await self._require_pool().fetch(query, *params, limit)]

    async def calls(self, run_id: str, superstep: int | None = None) -> list[CallRecord]:
        where = " WHERE run_id = $1" + ("" if superstep is None else " AND superstep = $2")
        params = (run_id,) if superstep is None else (run_id, superstep)
        pool = self._require_pool()
        table = await pool.fetch(f"SELECT {_CALL_COLUMNS} FROM pregel_calls" + where, *params)
        embedded = await pool.fetch("SELECT superstep, calls FROM pregel_supersteps" + where, *params)
        return _merge_calls(run_id, [tuple(row) for row in table], [tuple(row) for row in embedded])

    async def load_run(self, run_id: str) -> SavedRun | None:
        async with self._require_pool().acquire() as connection, connection.transaction(isolation="repeatable_read"):
            info = await connection.fetchrow(_pg(_RUN_INFO_QUERY + " WHERE r.run_id = ?"), run_id)
            if info is None:
                return None
            graph, input_json, topology = await connection.fetchrow(_pg(_LOAD_GRAPH_QUERY), run_id)
            supersteps = await connection.fetch(
                "SELECT superstep, state, event, calls FROM pregel_supersteps WHERE run_id = $1 ORDER BY superstep", run_id
            )
            calls = await connection.fetch(f"SELECT {_CALL_COLUMNS} FROM pregel_calls WHERE run_id = $1", run_id)
        return SavedRun(
            RunInfo(*info),
            graph,
            input_json,
            topology,
            [(step["superstep"], step["state"], step["event"]) for step in supersteps],
            _merge_calls(run_id, [tuple(call) for call in calls], [(step["superstep"], step["calls"]) for step in supersteps]),
        )
