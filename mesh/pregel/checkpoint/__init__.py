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
  superstep were still running;
- ``pregel_leases`` (PostgreSQL only): which coordinator owns a running run,
  until when, and the epoch of its takeover (see ``mesh.pregel.lease``).

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

from pathlib import Path
from typing import Any

from mesh.pregel.checkpoint.postgres import PostgresStore
from mesh.pregel.checkpoint.records import (
    CallRecord,
    CallRecorder,
    CallRow,
    Checkpoint,
    CheckpointStore,
    Lease,
    LeaseLost,
    NewRun,
    RunInfo,
    SavedRun,
    StoreError,
)
from mesh.pregel.checkpoint.sqlite import SQLiteStore

__all__ = [
    "CallRecord", "CallRecorder", "CallRow", "Checkpoint", "CheckpointStore", "Lease", "LeaseLost", "NewRun", "PostgresStore",
    "RunInfo", "SQLiteStore", "SavedRun", "StoreError", "open_store",
]


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


