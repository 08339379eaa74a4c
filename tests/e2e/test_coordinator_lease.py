"""Coordinators on PostgreSQL with run leases: a dead owner's run is taken over, a stalled owner commits nothing more.

Real processes (``tests.support.lease_coordinator``) on a real PostgreSQL: the
owner is killed with SIGKILL, or stopped with SIGSTOP past its lease and then
let go on. Each vertex call logs its start and end with its process id, so the
test sees which coordinator ran what.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from mesh.pregel import Engine, GraphSpec, LeaseLost, RunNotResumable, open_store
from tests.support.util import ROOT

LEASE = 1.0
EXPECTED = {"start": "start<go>", **{n: f"{n}<start>" for n in ("f1", "f2", "f3", "f4", "slow")},
            "sink": "sink<f1+f2+f3+f4+slow>"}


def coordinator(mode: str, url: str, run_id: str, log: Path, sleep: str = "") -> subprocess.Popen:
    env = {**os.environ, "LEASE_TEST_SLEEP": sleep, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.lease_coordinator", mode, url, run_id, str(log), str(LEASE)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def calls(log: Path, kind: str) -> Counter[tuple[int, str]]:
    lines = [line.split() for line in log.read_text().splitlines()]
    return Counter((int(step), vertex) for what, step, vertex, _ in lines if what == kind)


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


async def recorded(url: str, run_id: str) -> Counter[tuple[int, str, str]]:
    async with open_store(url) as store:
        return Counter((r.superstep, r.vertex_id, r.status) for r in await store.calls(run_id))


def fast_ones_recorded(url: str, run_id: str) -> bool:
    done = asyncio.run(recorded(url, run_id))
    return all(done[(1, name, "ok")] for name in ("f1", "f2", "f3", "f4"))


def result_of(process: subprocess.Popen, timeout: float = 20.0) -> dict:
    out, err = process.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no result; stderr:\n{err[-3000:]}"
    return json.loads(lines[-1]) | {"stderr": err}


def test_a_killed_owner_is_taken_over_without_repeating_a_finished_call(postgres_url, tmp_path):
    run_id, log = uuid.uuid4().hex, tmp_path / "calls.log"
    first = coordinator("start", postgres_url, run_id, log, sleep="slow=60")
    try:
        wait_until(lambda: fast_ones_recorded(postgres_url, run_id))
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        second = coordinator("adopt", postgres_url, run_id, log)
        result = result_of(second)
    finally:
        first.kill()
    assert result["status"] == "done" and result["outputs"] == EXPECTED
    done = calls(log, "done")
    # f1..f4 finished under the first owner and are replayed from their records, not called again;
    # slow never finished there, so the second owner calls it (once).
    assert all(count == 1 for count in done.values()), done
    assert calls(log, "start")[(1, "slow")] == 2
    assert set(done) == {(0, "start"), *((1, n) for n in ("f1", "f2", "f3", "f4", "slow")), (2, "sink")}


def test_a_stalled_owner_loses_its_lease_and_commits_nothing(postgres_url, tmp_path):
    run_id, log = uuid.uuid4().hex, tmp_path / "calls.log"
    first = coordinator("start", postgres_url, run_id, log, sleep="slow=1.5")
    try:
        wait_until(lambda: fast_ones_recorded(postgres_url, run_id))
        first.send_signal(signal.SIGSTOP)  # a long pause: no heartbeat, no progress
        second = coordinator("adopt", postgres_url, run_id, log)
        taken = result_of(second)
        first.send_signal(signal.SIGCONT)
        stale = result_of(first)
    finally:
        first.kill()
    assert taken["status"] == "done" and taken["outputs"] == EXPECTED
    # The stalled owner woke up, found the lease gone at its next write, and stopped: the run is
    # not its own any more, it stays as the second owner ended it, and it never reached superstep 2.
    assert stale["stop_reason"] == "lease_lost", stale
    assert "lost its lease" in stale["stderr"] or "took the lease" in stale["stderr"]
    assert calls(log, "done")[(2, "sink")] == 1
    records = asyncio.run(recorded(postgres_url, run_id))
    assert all(count == 1 for (_, _, status), count in records.items() if status == "ok"), records
    assert records[(1, "slow", "ok")] == 1

    async def stored() -> tuple[str, int]:
        async with open_store(postgres_url) as store:
            info = await store.get_run(run_id)
            return info.status, info.next_superstep

    assert asyncio.run(stored()) == ("done", 3)


async def test_two_coordinators_taking_over_at_once_one_wins(postgres_url):
    """The conditional write: of many takeovers of one expired lease, exactly one gets it."""
    async with open_store(postgres_url, max_size=8) as store:
        run_id = uuid.uuid4().hex
        held = await store.acquire_lease(run_id, "dead", 0.05)
        assert held is not None and await store.acquire_lease(run_id, "other", 5) is None  # still held
        await asyncio.sleep(0.1)
        won = await asyncio.gather(*(store.acquire_lease(run_id, f"c{i}", 5) for i in range(8)))
        winners = [lease for lease in won if lease is not None]
        assert len(winners) == 1 and winners[0].epoch == held.epoch + 1
        assert not await store.renew_lease(held)  # the old owner is fenced off
        with pytest.raises(LeaseLost):
            await store.record_calls([(run_id, 0, "v", 1, 1, "ok", "{}", 0)], held)
        assert await store.calls(run_id) == []


async def test_resume_refuses_a_run_whose_owner_is_alive(postgres_url):
    async with open_store(postgres_url) as store:
        owner = Engine(store, lease_seconds=30)
        graph = GraphSpec.model_validate({"entry": ["a"], "vertices": [
            {"id": "a", "kind": "python", "function": "tests.support.lease_coordinator:step", "params": {"log": os.devnull}},
        ]})
        run = await owner.start(graph, "x", run_id=uuid.uuid4().hex)
        other = Engine(store, lease_seconds=30)
        with pytest.raises(RunNotResumable, match="lease has not expired"):
            await other.resume(run.run_id)
        assert (await run.result()).status == "done"
        assert await other.adopt() == [] or all(r.run_id != run.run_id for r in await other.adopt())
