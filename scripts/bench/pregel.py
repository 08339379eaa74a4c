"""Benchmark: the mesh's Pregel engine against LangGraph and a plain asyncio BSP loop (the floor), side by side.

The same graphs with trivial async vertices (each returns the sum of its
inbox, or 1) run on three implementations in one process:

- floor: the least a bulk-synchronous loop can do, written below: gather the
  active vertices, route their outputs along out-edges; with checkpoints, one
  SQLite row per superstep (JSON of the next inboxes and the outputs), keyed
  by run and superstep so that a restarted loop could find it;
- ours: ``mesh.pregel.Engine`` on a compiled graph; with checkpoints, a
  ``SQLiteStore`` (a durable record per call and a checkpoint per superstep);
- LangGraph: a ``StateGraph`` through its normal async API (``ainvoke``): the
  fan-out with ``Send`` (its idiom for map-reduce), the chain with static
  edges; with checkpoints, ``AsyncSqliteSaver`` (langgraph-checkpoint-sqlite)
  and LangGraph's default durability.

Graphs: fan-out/fan-in (a source, N workers, a sink; N + 2 vertex executions)
and chains of L vertices (L executions), N and L in 10, 100, 1000, each
without and with SQLite checkpoints (a fresh file per implementation, WAL,
synchronous=NORMAL for the floor and ours). Every implementation runs once to
warm up; then the three take turns (at least 3 rounds and 4 s; in a round
LangGraph runs once and the others as often as fit in its time), so drift
and other load on the machine hit all alike; the best repetition of each is
kept (the machine's noise only ever adds time). The garbage collector is off during a
timed run, as timeit does. Each result is checked.

It also runs 100 A2A vertices in one superstep: a graph of 100 agent vertices
calling an agent process on loopback (tests/support/agents/worker.py) through
the coordinator's runtime (mesh/graphs.py, HTTP/2), and compares the
superstep's wall time with its slowest call and with the sum of the calls:
with the agent answering after a fixed delay (the shape of a model or tool
call), then with no delay (every call CPU-bound on the one agent process).

    .venv/bin/python scripts/bench/pregel.py            # three to four minutes
    .venv/bin/python scripts/bench/pregel.py --quick    # one round each: about a minute and a half
    .venv/bin/python scripts/bench/pregel.py --a2a-only # just the 100 A2A vertices
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers (tests/support/util.py)

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Send  # noqa: E402

from mesh.pregel import Engine, GraphSpec, SQLiteStore  # noqa: E402

# --- the graphs ---------------------------------------------------------------------------------


async def trivial_vertex(call: Any) -> int:
    """Our vertex: the sum of the inbox (1 at the source)."""
    inbox = call.inbox
    return sum(inbox) if inbox else 1


def fan_out_spec(width: int) -> GraphSpec:
    vertex = "__main__:trivial_vertex"
    vertices = [{"id": "source", "kind": "python", "function": vertex}, {"id": "sink", "kind": "python", "function": vertex}]
    vertices += [{"id": f"w{i}", "kind": "python", "function": vertex} for i in range(width)]
    edges = [{"from": "source", "to": f"w{i}"} for i in range(width)] + [{"from": f"w{i}", "to": "sink"} for i in range(width)]
    return GraphSpec.model_validate({"entry": "source", "vertices": vertices, "edges": edges})


def chain_spec(length: int) -> GraphSpec:
    vertices = [{"id": f"v{i}", "kind": "python", "function": "__main__:trivial_vertex"} for i in range(length)]
    edges = [{"from": f"v{i}", "to": f"v{i + 1}"} for i in range(length - 1)]
    return GraphSpec.model_validate(
        {"entry": "v0", "vertices": vertices, "edges": edges, "limits": {"max_supersteps": length + 1}}
    )


def expected_result(shape: str, size: int) -> int:
    return size if shape == "fan-out" else 1


# --- the floor: a plain asyncio BSP loop --------------------------------------------------------


async def floor_vertex(inbox: list[int]) -> int:
    return sum(inbox) if inbox else 1


class Floor:
    """The least a superstep loop does; with ``connection``, one checkpoint row per superstep."""

    def __init__(self, spec: GraphSpec, connection: sqlite3.Connection | None):
        self.out_edges: dict[str, list[str]] = {vertex.id: [] for vertex in spec.vertices}
        for edge in spec.edges:
            self.out_edges[edge.source].append(edge.target)
        self.entry = spec.entry
        self.connection = connection

    async def run(self) -> dict[str, int]:
        run_id = uuid.uuid4().hex
        inbox: dict[str, list[int]] = {vertex: [1] for vertex in self.entry}
        outputs: dict[str, int] = {}
        superstep = 0
        while inbox:
            active = list(inbox)
            results = await asyncio.gather(*(floor_vertex(inbox[vertex]) for vertex in active))
            next_inbox: dict[str, list[int]] = {}
            for vertex, result in zip(active, results):
                outputs[vertex] = result
                for target in self.out_edges[vertex]:
                    box = next_inbox.get(target)
                    if box is None:
                        next_inbox[target] = [result]
                    else:
                        box.append(result)
            if self.connection is not None:
                state = json.dumps({"inbox": next_inbox, "outputs": dict(zip(active, results))})
                self.connection.execute("INSERT INTO floor_checkpoints VALUES (?, ?, ?)", (run_id, superstep, state))
                self.connection.commit()
            inbox = next_inbox
            superstep += 1
        return outputs


def open_floor_db(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    # Keyed like any checkpoint that a restarted loop must find again.
    connection.execute(
        "CREATE TABLE IF NOT EXISTS floor_checkpoints (run_id TEXT, superstep INTEGER, state TEXT, PRIMARY KEY (run_id, superstep))"
    )
    return connection


# --- LangGraph ----------------------------------------------------------------------------------


class FanState(TypedDict):
    values: Annotated[list[int], operator.add]
    total: int


class WorkerInput(TypedDict):
    x: int


class ChainState(TypedDict):
    x: int


def langgraph_fan_out(width: int) -> StateGraph:
    async def source(state: FanState) -> dict[str, Any]:
        return {}

    def route(state: FanState) -> list[Send]:
        return [Send("worker", {"x": 1}) for _ in range(width)]

    async def worker(state: WorkerInput) -> dict[str, Any]:
        return {"values": [state["x"]]}

    async def sink(state: FanState) -> dict[str, Any]:
        return {"total": sum(state["values"])}

    builder = StateGraph(FanState)
    builder.add_node("source", source)
    builder.add_node("worker", worker)
    builder.add_node("sink", sink)
    builder.add_edge(START, "source")
    builder.add_conditional_edges("source", route, ["worker"])
    builder.add_edge("worker", "sink")
    builder.add_edge("sink", END)
    return builder


def langgraph_chain(length: int) -> StateGraph:
    async def step(state: ChainState) -> dict[str, Any]:
        return {"x": state["x"]}

    builder = StateGraph(ChainState)
    for index in range(length):
        builder.add_node(f"v{index}", step)
    builder.add_edge(START, "v0")
    for index in range(length - 1):
        builder.add_edge(f"v{index}", f"v{index + 1}")
    builder.add_edge(f"v{length - 1}", END)
    return builder


# --- measuring ----------------------------------------------------------------------------------

Runner = Callable[[], Awaitable[int]]


async def timed(runner: Runner) -> float:
    gc.collect()
    gc.disable()  # as timeit does: a collection's cost depends on whatever else is in the heap
    try:
        started = time.perf_counter()
        await runner()
        return time.perf_counter() - started
    finally:
        gc.enable()


async def best_times(runners: dict[str, Runner], rounds: int, budget: float, expected: int) -> dict[str, float]:
    """The best time of each runner, all of them taking turns for at least ``rounds`` rounds and ``budget`` seconds.

    In a round the slowest runner runs once and each other one about as many
    times as fit in the slowest one's time (at most 25), so all of them are
    sampled across the same stretch of time and machine load.
    """
    first: dict[str, float] = {}
    for name, runner in runners.items():
        if (result := await runner()) != expected:  # also the warm-up
            raise AssertionError(f"{name} computed {result}, expected {expected}")
        first[name] = await timed(runner)
    slowest = max(first.values())
    turns = {name: max(1, min(25, round(slowest / seconds))) for name, seconds in first.items()}
    times: dict[str, list[float]] = {name: [seconds] for name, seconds in first.items()}
    started = time.perf_counter()
    done = 0
    while done < rounds or time.perf_counter() - started < budget:
        for turn in range(max(turns.values())):
            for name, runner in runners.items():
                if turn < turns[name]:
                    times[name].append(await timed(runner))
        done += 1
    return {name: min(values) for name, values in times.items()}


async def measure(shape: str, size: int, checkpoints: bool, workdir: Path, quick: bool) -> dict[str, float]:
    spec = fan_out_spec(size) if shape == "fan-out" else chain_spec(size)
    executions = size + 2 if shape == "fan-out" else size
    expected = expected_result(shape, size)
    tag = f"{shape}-{size}-{'ckpt' if checkpoints else 'mem'}"

    floor_db = open_floor_db(workdir / f"floor-{tag}.db") if checkpoints else None
    floor = Floor(spec, floor_db)
    store = SQLiteStore(workdir / f"ours-{tag}.db") if checkpoints else None
    if store is not None:
        await store.open()
    engine = Engine(store)
    compiled = engine.compile(spec)
    builder = langgraph_fan_out(size) if shape == "fan-out" else langgraph_chain(size)
    saver_context = AsyncSqliteSaver.from_conn_string(str(workdir / f"langgraph-{tag}.db")) if checkpoints else None
    saver = await saver_context.__aenter__() if saver_context is not None else None
    langgraph = builder.compile(checkpointer=saver)
    recursion_limit = size + 10

    async def run_floor() -> int:
        outputs = await floor.run()
        return outputs["sink" if shape == "fan-out" else f"v{size - 1}"]

    async def run_ours() -> int:
        result = await engine.run(compiled, 1)
        return result.outputs["sink" if shape == "fan-out" else f"v{size - 1}"]

    async def run_langgraph() -> int:
        config: dict[str, Any] = {"recursion_limit": recursion_limit}
        if saver is not None:
            config["configurable"] = {"thread_id": uuid.uuid4().hex}
        if shape == "fan-out":
            return (await langgraph.ainvoke({"values": [], "total": 0}, config))["total"]
        return (await langgraph.ainvoke({"x": 1}, config))["x"]

    try:
        best = await best_times(
            {"floor": run_floor, "ours": run_ours, "langgraph": run_langgraph}, 1 if quick else 3, 0.0 if quick else 4.0, expected
        )
    finally:
        if saver_context is not None:
            await saver_context.__aexit__(None, None, None)
        if store is not None:
            await store.close()
        if floor_db is not None:
            floor_db.close()
    return {name: seconds / executions for name, seconds in best.items()}


def micro(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--a2a-only", action="store_true", help="only the 100 A2A vertices in one superstep")
    options = parser.parse_args()
    if options.a2a_only:
        await a2a_superstep()
        return 0

    import langgraph.version as langgraph_version  # noqa: PLC0415

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, LangGraph {langgraph_version.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("microseconds per vertex execution (best of the repetitions); ratios of those\n")
    header = f"{'graph':<10}{'size':>6}  {'ckpt':<5}{'floor':>10}{'ours':>10}{'LangGraph':>12}{'ours/floor':>12}{'LG/ours':>10}"
    print(header)
    print("-" * len(header))
    rows = []
    with tempfile.TemporaryDirectory(prefix="pregel-bench-") as directory:
        for checkpoints in (False, True):
            for shape in ("fan-out", "chain"):
                for size in (10, 100, 1000):
                    figures = await measure(shape, size, checkpoints, Path(directory), options.quick)
                    ratio_floor = figures["ours"] / figures["floor"]
                    ratio_langgraph = figures["langgraph"] / figures["ours"]
                    rows.append((shape, size, checkpoints, figures, ratio_floor, ratio_langgraph))
                    print(f"{shape:<10}{size:>6}  {'yes' if checkpoints else 'no':<5}{micro(figures['floor']):>10}"
                          f"{micro(figures['ours']):>10}{micro(figures['langgraph']):>12}{ratio_floor:>11.2f}x"
                          f"{ratio_langgraph:>9.1f}x", flush=True)

    print("\ngoals:")
    worst_floor = max(row[4] for row in rows)
    goals = [
        (f"per vertex execution <= 2x the floor (worst: {worst_floor:.2f}x)", worst_floor <= 2.0),
    ]
    for checkpoints, target in ((False, 20), (True, 50)):
        row = next(r for r in rows if r[0] == "fan-out" and r[1] == 1000 and r[2] == checkpoints)
        goals.append((f">= {target}x faster than LangGraph on the 1000-wide fan-out "
                      f"{'with' if checkpoints else 'without'} checkpoints ({row[5]:.1f}x)", row[5] >= target))
    for text, met in goals:
        print(f"  {'met' if met else 'MISSED'}: {text}")
    print(f"\nmedian ours/floor {statistics.median(row[4] for row in rows):.2f}x")
    await a2a_superstep()
    return 0 if all(met for _, met in goals) else 1


async def a2a_superstep(width: int = 100) -> None:
    """100 agent vertices in one superstep on loopback: the superstep's wall time against its slowest call."""
    import subprocess

    from mesh.config import load_config
    from mesh.graphs.runtime import GraphRuntime
    from tests.support.util import free_port, wait_for_port

    print(f"\n{width} A2A vertices in one superstep (one agent process on loopback, HTTP/2, one connection pool)")
    print(f"{'agent delay':<12}{'superstep wall':>16}{'slowest call':>14}{'sum of calls':>14}{'wall/slowest':>14}")
    for delay in (0.2, 0.0):
        with tempfile.TemporaryDirectory(prefix="pregel-a2a-") as directory:
            port = free_port()
            vertices = [{"id": "start", "kind": "python", "function": "tests.support.agents.steps:start"}]
            vertices += [{"id": f"v{i}", "kind": "agent", "agent": "worker"} for i in range(width)]
            mesh = {"name": "bench", "state": {"dir": f"{directory}/state"},
                    "agents": {"worker": {"module": "tests.support.agents.worker", "port": port,
                                          "settings": {"delay_s": delay}}},
                    "graphs": {"wide": {"entry": "start", "vertices": vertices,
                                        "edges": [f"start -> v{i}" for i in range(width)]}}}
            path = Path(directory) / "mesh.yaml"
            path.write_text(json.dumps(mesh))
            agent = subprocess.Popen([str(ROOT / ".venv/bin/mesh"), "serve", "worker", "-c", str(path)], cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), "MESH_LOG_LEVEL": "warning"},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(port)
                runtime = GraphRuntime(load_config(path))
                await runtime.engine("wide").run(runtime.compiled("wide"), "warm-up")  # cards, connections
                best = None
                for _ in range(3):
                    result = await runtime.engine("wide").run(runtime.compiled("wide"), "go")
                    assert not result.errors, result.errors
                    event = result.events[1]
                    calls = [result.figures["vertices"][f"v{i}"]["latency_p50_ms"] / 1000 for i in range(width)]
                    figures = (event["compute_seconds"], max(calls), sum(calls))
                    best = figures if best is None or figures[0] < best[0] else best
                await runtime.aclose()
            finally:
                agent.terminate()
                agent.wait(15)
        wall, slowest, total = best
        print(f"{f'{delay * 1000:.0f} ms':<12}{wall * 1000:>13.1f} ms{slowest * 1000:>11.1f} ms"
              f"{total * 1000:>11.1f} ms{wall / slowest:>13.2f}x")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
