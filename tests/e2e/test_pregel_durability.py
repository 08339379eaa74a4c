"""Checkpoints and resume on SQLite and PostgreSQL, including a coordinator process killed with SIGKILL mid-run.

The graph: ``start -> a -> (f1 .. f4, slow) -> sink``. In superstep 2, f1..f4
finish at once and ``slow`` blocks; the run is interrupted (or its process
killed) once f1..f4's call records are durable. Resuming must not call any
vertex whose call had finished, and must lose no output.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mesh.pregel import (
    Engine,
    GraphSpec,
    RunNotFound,
    RunNotResumable,
    StoreError,
    open_store,
)

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests.e2e.test_pregel_durability"
FAST = ("f1", "f2", "f3", "f4")
BLOCK_ENV = "PREGEL_TEST_BLOCK"


def log_line(path: str, text: str) -> None:
    with open(path, "a") as log:  # one small append per line: whole lines even across processes
        log.write(text + "\n")


async def logged(call: Any) -> str:
    """Logs each call's start and end (the test counts them), blocks if named in $PREGEL_TEST_BLOCK."""
    log = call.spec.params["log"]
    log_line(log, f"start {call.superstep} {call.vertex_id}")
    if call.vertex_id in os.environ.get(BLOCK_ENV, "").split(","):
        await asyncio.Event().wait()
    log_line(log, f"done {call.superstep} {call.vertex_id}")
    return f"{call.vertex_id}<" + "+".join(sorted(str(value).partition("<")[0] for value in call.inbox)) + ">"


def spec(log: Path) -> GraphSpec:
    names = ["start", "a", *FAST, "slow", "sink"]
    return GraphSpec.model_validate({
        "entry": ["start"],
        "vertices": [{"id": name, "kind": "python", "function": f"{HERE}:logged", "params": {"log": str(log)}} for name in names],
        "edges": ["start -> a", *[f"a -> {name}" for name in (*FAST, "slow")], *[f"{name} -> sink" for name in (*FAST, "slow")]],
    })


EXPECTED_OUTPUTS = {
    "start": "start<None>",
    "a": "a<start>",
    **{name: f"{name}<a>" for name in FAST},
    "slow": "slow<a>",
    "sink": "sink<f1+f2+f3+f4+slow>",
}


def finished_calls(log: Path) -> Counter[tuple[int, str]]:
    lines = [line.split() for line in log.read_text().splitlines()]
    return Counter((int(superstep), vertex) for kind, superstep, vertex in lines if kind == "done")


def started_calls(log: Path) -> Counter[tuple[int, str]]:
    lines = [line.split() for line in log.read_text().splitlines()]
    return Counter((int(superstep), vertex) for kind, superstep, vertex in lines if kind == "start")


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return request.getfixturevalue("postgres_url")


def run_id_for(request) -> str:
    return "run-" + request.node.name.replace("[", "-").replace("]", "")


async def test_an_uninterrupted_run_is_recorded_and_queryable(store_location, tmp_path, request):
    log = tmp_path / "calls.log"
    run_id = run_id_for(request) + f"-{os.getpid()}"
    async with open_store(store_location) as store:
        engine = Engine(store)
        result = await engine.run(spec(log), run_id=run_id)
        info = await store.get_run(run_id)
        records = await store.calls(run_id)
        done_runs = await store.list_runs(status="done")
        figures = await engine.figures(run_id)
        with pytest.raises(StoreError, match="exists"):
            await engine.start(spec(log), run_id=run_id)
        with pytest.raises(RunNotResumable, match="is done"):
            await engine.resume(run_id)
        with pytest.raises(RunNotFound):
            await engine.resume("no-such-run")

    assert result.outputs == EXPECTED_OUTPUTS
    assert (info.status, info.next_superstep, info.topology_version) == ("done", 4, 0)
    assert json.loads(info.result)["outputs"] == EXPECTED_OUTPUTS
    assert run_id in [run.run_id for run in done_runs]
    assert sorted((record.superstep, record.vertex_id, record.attempt, record.status) for record in records) == sorted(
        [(0, "start", 1, "ok"), (1, "a", 1, "ok"), *[(2, name, 1, "ok") for name in (*FAST, "slow")], (3, "sink", 1, "ok")]
    )
    assert [record.seq for record in records] == sorted(record.seq for record in records)
    assert json.loads(records[0].payload) == {"result": {"output": "start<None>"}, "edges": ["a"]}
    assert {vertex: stats["calls"] for vertex, stats in figures["vertices"].items()} == {name: 1 for name in EXPECTED_OUTPUTS}
    assert figures["edges"]["a -> slow"]["messages"] == 1


async def test_sqlite_statements_can_run_in_a_thread_of_their_own(tmp_path):
    from mesh.pregel import SQLiteStore

    async with SQLiteStore(tmp_path / "runs.db", in_thread=True, synchronous="full") as store:
        result = await Engine(store).run(spec(tmp_path / "calls.log"), run_id="threaded")
        assert (await store.get_run("threaded")).status == "done"
        assert len(await store.calls("threaded")) == len(EXPECTED_OUTPUTS)
    assert result.outputs == EXPECTED_OUTPUTS


async def test_an_interrupted_run_resumes_without_repeating_finished_calls(store_location, tmp_path, request, monkeypatch):
    log = tmp_path / "calls.log"
    run_id = run_id_for(request) + f"-{os.getpid()}"
    monkeypatch.setenv(BLOCK_ENV, "slow")
    slow_started = asyncio.Event()

    async def tell_when_slow_starts(call: Any) -> str:
        if call.vertex_id == "slow":
            slow_started.set()  # f1..f4 started before slow and never wait: they have finished
        return await logged(call)

    async with open_store(store_location) as store:
        run = await Engine(store, vertex_factory=lambda _: tell_when_slow_starts).start(spec(log), run_id=run_id)
        await slow_started.wait()
        run.cancel(resumable=True)
        interrupted = await run.result()
        assert (await store.get_run(run_id)).status == "running"
    assert interrupted.stop_reason == "interrupted"

    monkeypatch.delenv(BLOCK_ENV)
    async with open_store(store_location) as store:  # a new connection, as after a restart
        resumed = await (await Engine(store).resume(run_id)).result()
        records = await store.calls(run_id, superstep=2)

    assert resumed.status == "done" and resumed.outputs == EXPECTED_OUTPUTS
    assert finished_calls(log) == Counter({(superstep, vertex): 1 for superstep, vertex in [
        (0, "start"), (1, "a"), *[(2, name) for name in (*FAST, "slow")], (3, "sink")]})
    assert [event["superstep"] for event in resumed.events] == [0, 1, 2, 3]
    assert sorted(resumed.events[2]["replayed"]) == list(FAST)
    assert sorted(record.vertex_id for record in records) == [*FAST, "slow"]


async def test_a_killed_coordinator_resumes_from_its_last_checkpoint(store_location, tmp_path, request, caplog):
    """A real process runs the graph and is SIGKILLed once f1..f4 are recorded; this process resumes the run."""
    log = tmp_path / "calls.log"
    run_id = run_id_for(request) + f"-{os.getpid()}"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", HERE, store_location, run_id, str(log),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, BLOCK_ENV: "slow"},
    )
    try:
        recorded: set[str] = set()
        while not recorded >= set(FAST):
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            assert line, "the child process ended before recording superstep 2"
            word, superstep, vertex = line.decode().split()
            if word == "recorded" and superstep == "2":
                recorded.add(vertex)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    # Once in many runs asyncio's child watcher found the child already reaped by someone else in this worker
    # process and reported 255 ("Unknown child process pid"); its status is then lost, not wrong: that the
    # child died mid-run is what the log and the store say below.
    lost = child.returncode == 255 and "Unknown child process pid" in caplog.text
    assert child.returncode == -signal.SIGKILL or lost, child.returncode
    assert started_calls(log)[(2, "slow")] == 1 and finished_calls(log)[(2, "slow")] == 0

    async with open_store(store_location) as store:
        assert (await store.get_run(run_id)).status == "running"
        resumed = await (await Engine(store).resume(run_id)).result()
        assert (await store.get_run(run_id)).status == "done"

    assert resumed.outputs == EXPECTED_OUTPUTS  # nothing lost, including outputs of supersteps before the kill
    repeated = {call: count for call, count in finished_calls(log).items() if count > 1}
    assert repeated == {}
    assert set(finished_calls(log)) == {(0, "start"), (1, "a"), *[(2, name) for name in (*FAST, "slow")], (3, "sink")}
    assert sorted(resumed.events[2]["replayed"]) == list(FAST)


async def test_a_resumed_run_continues_a_retried_call_at_its_next_attempt(tmp_path):
    attempts: list[int] = []
    failed_once = asyncio.Event()

    async def flaky(call: Any) -> str:
        attempts.append(call.attempt)
        if call.attempt == 1:
            failed_once.set()
            raise ConnectionError("the agent is down")
        return "up again"

    graph = GraphSpec.model_validate({
        "entry": "flaky",
        "vertices": [{"id": "flaky", "kind": "python", "function": f"{HERE}:logged"}],
        "limits": {"retries": 3, "backoff_seconds": 3600},  # the interruption comes during the backoff
    })
    async with open_store(tmp_path / "runs.db") as store:
        run = await Engine(store, vertex_factory=lambda _: flaky).start(graph, run_id="retried")
        await failed_once.wait()
        run.cancel(resumable=True)
        await run.result()
        engine = Engine(store, vertex_factory=lambda _: flaky)
        resumed = await (await engine.resume("retried")).result()
        records = await store.calls("retried")

    assert attempts == [1, 2] and resumed.outputs == {"flaky": "up again"}
    assert [(record.attempt, record.status) for record in records] == [(1, "failed"), (2, "ok")]
    assert json.loads(records[0].payload) == {"error": "ConnectionError: the agent is down"}
    assert resumed.figures["vertices"]["flaky"]["retries"] == 1


async def test_a_run_stopped_by_a_failing_vertex_is_failed_in_the_store(tmp_path):
    async def broken(call: Any) -> str:
        raise RuntimeError("no")

    graph = GraphSpec.model_validate({
        "entry": "v",
        "vertices": [{"id": "v", "kind": "python", "function": f"{HERE}:logged"}],
        "limits": {"on_vertex_error": "fail"},
    })
    async with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = await Engine(store, vertex_factory=lambda _: broken).run(graph, run_id="failing")
        info = await store.get_run("failing")
        failed = await store.list_runs(status="failed")
    assert result.status == info.status == "failed"
    assert json.loads(info.result)["errors"][0]["error"] == "RuntimeError: no"
    assert [run.run_id for run in failed] == ["failing"]


async def test_a_resumed_run_keeps_the_topology_and_states_of_its_last_checkpoint(tmp_path):
    from mesh.pregel import AddEdge, AddVertex, PythonVertex, RemoveVertex, VertexResult

    release = asyncio.Event()
    blocked = asyncio.Event()
    calls: list[tuple[int, str]] = []

    async def vertex(call: Any) -> VertexResult:
        calls.append((call.superstep, call.vertex_id))
        if call.vertex_id == "root" and call.superstep == 0:
            # A message to a vertex added at this very barrier is delivered to it.
            return VertexResult(output="grew", send={"leaf": "grew"}, state={"count": 1}, mutations=[
                AddVertex(vertex=PythonVertex(id="leaf", function=f"{HERE}:logged")),
                AddEdge(source="root", target="leaf"),
                RemoveVertex(id="old"),
            ], halt=False)
        if call.vertex_id == "root":
            return VertexResult(output=call.state["count"] + 1, send={}, state={"count": call.state["count"] + 1})
        blocked.set()
        await release.wait()
        return f"{call.vertex_id} got {call.inbox}"

    graph = GraphSpec.model_validate({
        "entry": "root",
        "vertices": [{"id": name, "kind": "python", "function": f"{HERE}:logged"} for name in ("root", "old")],
        "edges": ["root -> old"],
    })
    async with open_store(tmp_path / "runs.db") as store:
        run = await Engine(store, vertex_factory=lambda _: vertex).start(graph, run_id="grown")
        await blocked.wait()  # superstep 1: leaf started first and is blocked, then root finished
        run.cancel(resumable=True)
        await run.result()
        release.set()
        resumed_run = await Engine(store, vertex_factory=lambda _: vertex).resume("grown")
        result = await resumed_run.result()
        info = await store.get_run("grown")

    assert result.outputs == {"root": 2, "leaf": "leaf got ['grew']"}
    assert calls == [(0, "root"), (1, "leaf"), (1, "root"), (1, "leaf")]  # root's call at superstep 1 is not repeated
    assert set(resumed_run.topology.edges()) == {("root", "leaf")} and result.topology_version == 1
    assert info.topology_version == 1 and info.status == "done"


async def run_as_child(location: str, run_id: str, log: str) -> None:
    """The killed coordinator: runs the graph and says on stdout which call records are durable."""
    async with open_store(location) as store:
        write = store.record_calls

        async def record_and_tell(rows: Any, *lease: Any) -> None:
            await write(rows, *lease)
            for row in rows:
                print("recorded", row[1], row[2], flush=True)

        store.record_calls = record_and_tell  # type: ignore[method-assign]
        run = await Engine(store).start(spec(Path(log)), run_id=run_id)
        await run.result()


if __name__ == "__main__":
    asyncio.run(run_as_child(*sys.argv[1:4]))
