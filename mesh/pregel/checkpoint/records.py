"""Checkpoint records (calls, runs, checkpoints), the store interface both backends implement, and group commit of call records."""

from __future__ import annotations

import abc
import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    lease: Lease | None = None  # the checkpoint commits only while this lease holds (and renews it)


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


class LeaseLost(StoreError):
    """Another coordinator holds the run's lease now: this one must not write (or run) anything more of it."""


@dataclass(slots=True, frozen=True)
class Lease:
    """A coordinator's hold on a run: who, which takeover (``epoch``, fencing stale owners) and for how long."""

    run_id: str
    owner: str
    epoch: int
    seconds: float


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
    async def record_calls(self, records: Sequence[CallRow], lease: Lease | None = None) -> None: ...

    @abc.abstractmethod
    async def checkpoint(self, checkpoint: Checkpoint) -> None: ...

    @abc.abstractmethod
    async def finish_run(
        self, run_id: str, status: str, result: str | None, error: str | None = None, lease: Lease | None = None
    ) -> None: ...

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

    # Leases (see mesh.pregel.lease); only a store shared by several hosts needs them.

    async def acquire_lease(self, run_id: str, owner: str, seconds: float) -> Lease | None:
        """Take the run's lease if nobody holds it or it expired (one atomic conditional write); None if held."""
        raise StoreError(f"{type(self).__name__} has no leases: use PostgreSQL for coordinators on several hosts")

    async def renew_lease(self, lease: Lease) -> bool:
        """Extend a lease still held (same owner and epoch); False if another coordinator took it."""
        raise StoreError(f"{type(self).__name__} has no leases")

    async def orphaned_runs(self, graph_digest: str | None = None) -> list[str]:
        """Runs still ``running`` whose lease expired (their coordinator died or stalled)."""
        raise StoreError(f"{type(self).__name__} has no leases")

class CallRecorder:
    """Group commit of call records: batches the calls that finish together; the barrier takes the rest."""

    def __init__(self, store: CheckpointStore, lease: Lease | None = None):
        self.store = store
        self.lease = lease
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
                await self.store.record_calls(batch, self.lease)
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
            await self.store.record_calls(rest, self.lease)


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
