"""Checkpoints in PostgreSQL (asyncpg)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mesh.pregel.checkpoint.records import (
    _LOAD_GRAPH_QUERY,
    _RUN_INFO_QUERY,
    RUN_STATUSES,
    CallRecord,
    CallRow,
    Checkpoint,
    CheckpointStore,
    Lease,
    LeaseLost,
    NewRun,
    RunInfo,
    SavedRun,
    StoreError,
    _merge_calls,
    embed_records,
)
from mesh.pregel.checkpoint.sqlite import _CALL_COLUMNS, _run_filter

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
CREATE TABLE IF NOT EXISTS pregel_leases (
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
"""

# The database's clock decides expiry, so coordinators on hosts whose clocks differ agree on it.
_NOW = "extract(epoch FROM clock_timestamp())"
# Take a lease nobody holds, or one that expired: a single conditional write, so two coordinators
# taking over one run at once cannot both win (the loser's WHERE sees the winner's row).
_ACQUIRE = f"""
INSERT INTO pregel_leases VALUES ($1, $2, 1, {_NOW} + $3)
ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, epoch = pregel_leases.epoch + 1, expires_at = excluded.expires_at
WHERE pregel_leases.expires_at < {_NOW}
RETURNING epoch
"""
# Renewing checks owner and epoch (the fencing token), not expiry: a lease that expired but that
# nobody took over is still this owner's, and a takeover bumped the epoch.
_RENEW = f"UPDATE pregel_leases SET expires_at = {_NOW} + $4 WHERE run_id = $1 AND owner = $2 AND epoch = $3 RETURNING epoch"
_ORPHANS = f"""
SELECT r.run_id FROM pregel_runs r LEFT JOIN pregel_leases l ON l.run_id = r.run_id
WHERE r.status = 'running' AND (l.run_id IS NULL OR l.expires_at < {_NOW})
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

    async def record_calls(self, records: Sequence[CallRow], lease: Lease | None = None) -> None:
        async with self._require_pool().acquire() as connection, connection.transaction():
            await _fence(connection, lease)
            await connection.executemany(_PG_INSERT_CALL, records)

    async def checkpoint(self, cp: Checkpoint) -> None:
        async with self._require_pool().acquire() as connection, connection.transaction():
            # The lease row stays locked until the commit, so a takeover waits for this checkpoint
            # and then sees the renewed expiry: a superstep is committed by one owner only.
            await _fence(connection, cp.lease)
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
                await connection.execute("DELETE FROM pregel_leases WHERE run_id = $1", cp.run_id)

    async def finish_run(
        self, run_id: str, status: str, result: str | None, error: str | None = None, lease: Lease | None = None
    ) -> None:
        if status not in RUN_STATUSES[1:]:
            raise StoreError(f"a run finishes as done, failed or cancelled, not {status!r}")
        async with self._require_pool().acquire() as connection, connection.transaction():
            await _fence(connection, lease)
            await connection.execute(
                "UPDATE pregel_runs SET status = $1, result = $2, error = $3, updated_at = $4 WHERE run_id = $5",
                status, result, error, time.time(), run_id,
            )
            await connection.execute("DELETE FROM pregel_leases WHERE run_id = $1", run_id)

    async def acquire_lease(self, run_id: str, owner: str, seconds: float) -> Lease | None:
        epoch = await self._require_pool().fetchval(_ACQUIRE, run_id, owner, seconds)
        return None if epoch is None else Lease(run_id, owner, epoch, seconds)

    async def renew_lease(self, lease: Lease) -> bool:
        return await self._require_pool().fetchval(_RENEW, lease.run_id, lease.owner, lease.epoch, lease.seconds) is not None

    async def orphaned_runs(self, graph_digest: str | None = None) -> list[str]:
        query, params = _ORPHANS, ()
        if graph_digest is not None:
            query, params = query + " AND r.graph_digest = $1", (graph_digest,)
        return [row[0] for row in await self._require_pool().fetch(query + " ORDER BY r.created_at", *params)]

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


async def _fence(connection: Any, lease: Lease | None) -> None:
    """Renew ``lease`` inside the caller's transaction, or raise ``LeaseLost`` (and so roll the write back)."""
    if lease is not None and await connection.fetchval(_RENEW, lease.run_id, lease.owner, lease.epoch, lease.seconds) is None:
        raise LeaseLost(f"run {lease.run_id!r}: {lease.owner} lost its lease (epoch {lease.epoch}) to another coordinator")
