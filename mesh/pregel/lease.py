"""Run leases: one coordinator owns a running run, a heartbeat keeps it, another takes the run over when it expires.

With ``Engine(store, lease_seconds=S)`` (a store shared by several hosts:
PostgreSQL) every run has a row in ``pregel_leases``: its owner, the epoch
of its last takeover and when it expires (by the database's clock).

- ``Engine.start`` takes the lease before it creates the run;
  ``Engine.resume`` takes it over only if it expired (one conditional write:
  of two coordinators taking over at once, one wins), and ``Engine.adopt``
  resumes every run whose lease expired (its coordinator died or stalled).
- The owner renews the lease every ``S / 3`` seconds (the heartbeat) and in
  each write: call records, checkpoints and the run's end are written in a
  transaction that first renews the lease by owner *and epoch*, and that
  rolls back with ``LeaseLost`` if another coordinator took it. So two
  coordinators never commit the same superstep, and an owner that was only
  slow (a stalled process, a long pause) finds out at its next write and
  stops the run without committing anything (``stop_reason="lease_lost"``,
  the run stays ``running`` for its new owner).
- An owner also stops starting supersteps once ``S`` seconds passed since
  its last successful renewal (the database may have given the run away).

What the new owner repeats: the calls of the interrupted superstep whose
records were not committed (a call is at least once, a *recorded* call is
never repeated: resuming replays its record). So a vertex that talks to the
outside world should be idempotent for its ``(run, superstep, vertex,
attempt)``, which mesh's A2A vertices pass as the message id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from time import monotonic

from mesh.pregel.checkpoint import CheckpointStore, Lease, LeaseLost

__all__ = ["Heartbeat", "default_owner"]

logger = logging.getLogger("mesh.pregel")


def default_owner() -> str:
    """A name for this coordinator process: host, pid and a random part (a restarted process is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """Renews one run's lease every third of its length; calls ``on_lost`` once it is gone."""

    def __init__(self, store: CheckpointStore, lease: Lease, on_lost: Callable[[str], None]):
        self.store = store
        self.lease = lease
        self.on_lost = on_lost
        self.deadline = monotonic() + lease.seconds  # taken just before; conservative
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat(), name=f"pregel-lease-{self.lease.run_id}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def valid(self) -> bool:
        """The lease is certainly still ours (renewed less than its length ago)."""
        return monotonic() < self.deadline

    def renewed(self, sent_at: float) -> None:
        """A write that renewed the lease, sent at ``sent_at`` (monotonic), committed."""
        self.deadline = max(self.deadline, sent_at + self.lease.seconds)

    async def renew_now(self) -> None:
        """Renew, or raise ``LeaseLost``."""
        sent_at = monotonic()
        if not await self.store.renew_lease(self.lease):
            raise LeaseLost(f"run {self.lease.run_id!r}: another coordinator took the lease")
        self.renewed(sent_at)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease.seconds / 3)
            try:
                await self.renew_now()
            except LeaseLost as lost:
                self.on_lost(str(lost))
                return
            except Exception as error:  # the database is unreachable: keep trying while the lease may still hold
                if not self.valid():
                    self.on_lost(f"run {self.lease.run_id!r}: the lease could not be renewed in time ({error})")
                    return
                logger.warning("run %s: renewing the lease failed, retrying: %s", self.lease.run_id, error)
