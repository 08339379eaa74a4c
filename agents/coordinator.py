"""Coordinator agent: runs the graphs of mesh.yaml on the Pregel engine; one run is one A2A task.

Send it the graph's input and name the graph in the message metadata
(``{"graph": NAME}``), or send a data part ``{"graph": NAME, "input": ...}``
(with one graph in the mesh, naming it is optional). ``message/stream``
gives a status update per superstep (a readable line and the superstep's
summary as data) and an artifact per output as it appears; the last artifact,
``result``, holds every output, the errors and the run's figures.
``tasks/cancel`` cancels the run and its in-flight calls; ``tasks/get`` shows
the superstep it is at. Runs are checkpointed each superstep: a coordinator
that stops (or is killed) resumes its unfinished runs when it starts again,
without repeating a finished vertex call, and its tasks carry on.

With ``state.database`` in PostgreSQL several coordinators (replicas, hosts)
share the runs: each run is leased by the coordinator running it, and every
coordinator looks for runs whose lease expired (every third of
``state.lease_seconds``) and takes them over, updating their A2A tasks in
the shared task store (``mesh.pregel.lease``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from a2a.helpers import get_data_parts, get_message_text, new_data_part, new_text_part
from a2a.server.agent_execution import RequestContext
from a2a.server.tasks import TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentSkill,
    Artifact,
    Message,
    Part,
    Role,
    TaskState,
)
from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Value
from pydantic import BaseModel, ConfigDict

from mesh.graphs.runtime import GraphRuntime, checkpoint_store
from mesh.pregel import Run, RunNotResumable, RunResult, SuperstepEvent
from mesh.serving.agents import AgentRuntime
from mesh.serving.executor import AgentFailure, Suspended, TaskAgent
from mesh.serving.store import update_task

log = logging.getLogger("agents.coordinator")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graphs: list[str] | None = None  # the graphs it runs (default: every graph of mesh.yaml)


def card(settings: Settings, runtime: AgentRuntime) -> AgentCard:
    names = settings.graphs or list(runtime.config.graphs)
    skills = []
    for name in names:
        graph = runtime.config.graphs[name]
        vertices = ", ".join(v.id for v in graph.vertices)
        skills.append(AgentSkill(
            id=name, name=f"Run graph {name}",
            description=(graph.description or f"Runs the graph {name}") + f" (vertices: {vertices}; entry: {', '.join(graph.entry)})",
            tags=["graph", "pregel"], examples=[f'{{"graph": "{name}", "input": "..."}}'],
        ))
    return AgentCard(
        name="Coordinator",
        description="Runs the mesh's graphs of agents in Pregel supersteps; name the graph in the message metadata "
                    "({\"graph\": NAME}) or send a data part {\"graph\": NAME, \"input\": ...}.",
        version="1.0.0",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=skills,
    )


class Coordinator(TaskAgent):
    resumes_tasks = True

    def __init__(self, settings: Settings, runtime: AgentRuntime) -> None:
        super().__init__()
        self.names = settings.graphs or list(runtime.config.graphs)
        unknown = [n for n in self.names if n not in runtime.config.graphs]
        if unknown:
            raise ValueError(f"settings.graphs names no graph of the mesh: {', '.join(unknown)}")
        self.task_store = runtime.task_store
        self.graphs = GraphRuntime(runtime.config, checkpoint_store(runtime.config))
        self.live: dict[str, Run] = {}
        self.stopping = False
        self._resumed: list[asyncio.Task] = []
        self._adopting: asyncio.Task | None = None

    async def start(self) -> None:
        await self.graphs.store.open()
        if self.graphs.lease_seconds is not None:
            self._adopting = asyncio.create_task(self._adopt_orphans(self.graphs.lease_seconds / 3))
            return
        for info in await self.graphs.store.list_runs(status="running", limit=1000):
            self._resumed.append(asyncio.create_task(self._resume(info.run_id)))

    async def _adopt_orphans(self, every: float) -> None:
        """Take over the runs whose coordinator died or stalled (their lease expired), now and every ``every`` s."""
        while not self.stopping:
            try:
                for run_id in await self.graphs.store.orphaned_runs():
                    if run_id not in self.live:
                        self._resumed.append(asyncio.create_task(self._resume(run_id)))
            except Exception as exc:  # the database is away for a while: try again later
                log.warning("looking for runs to take over failed: %s", exc)
            self._resumed = [task for task in self._resumed if not task.done()]
            await asyncio.sleep(every)

    async def stop(self) -> None:
        """At shutdown the runs stay resumable: the next start picks them up where they were."""
        self.stopping = True
        if self._adopting is not None:
            self._adopting.cancel()
        for run in list(self.live.values()):
            run.cancel(resumable=True)
        await asyncio.gather(*(run.result() for run in list(self.live.values())), return_exceptions=True)
        await asyncio.gather(*self._resumed, return_exceptions=True)
        await self.graphs.aclose()
        await self.graphs.store.close()

    async def work(self, request: RequestContext, task: TaskUpdater) -> None:
        name, graph_input = self.choose(request)
        report = Reporter(self.graphs.graph(name), name, task)
        run = await self.graphs.start(name, graph_input, run_id=task.task_id, on_event=report.superstep)
        report.run = run
        self.live[run.run_id] = run
        await task.update_status(TaskState.TASK_STATE_WORKING, message=task.new_agent_message(
            [new_text_part(f"running graph {name} (run {run.run_id})"), new_data_part({"graph": name, "run": run.run_id})]))
        try:
            result = await run.result()
        except asyncio.CancelledError:
            if not self.stopping:
                run.cancel()
            raise
        finally:
            self.live.pop(run.run_id, None)
        if result.stop_reason in ("interrupted", "lease_lost"):
            raise Suspended()  # shutting down, or another coordinator took the run over: the run goes on there
        await report.finish(result)

    def choose(self, request: RequestContext) -> tuple[str, Any]:
        """The graph to run and its input, from the message (see the module docstring)."""
        message = request.message
        name = None
        graph_input: Any = get_message_text(message) or None
        for data in get_data_parts(message.parts):
            if isinstance(data, dict) and "graph" in data:
                name = data["graph"]
                graph_input = data.get("input", graph_input)
        metadata = dict(message.metadata) if message.metadata else {}
        name = name or metadata.get("graph")
        if name is None and len(self.names) == 1:
            name = self.names[0]
        if not isinstance(name, str) or not name:
            raise AgentFailure(f"name the graph to run: metadata {{\"graph\": NAME}} or data {{\"graph\": NAME, \"input\": ...}} "
                               f"(graphs: {', '.join(self.names) or 'none'})")
        if name not in self.names:
            raise AgentFailure(f"no graph named {name!r} here (graphs: {', '.join(self.names) or 'none'})")
        return name, graph_input

    async def _resume(self, run_id: str) -> None:
        """Carry on a run left unfinished by a previous process, keeping its A2A task up to date in the store."""
        store_updater = StoredTask(self.task_store, run_id)
        try:
            name = await self.graphs.graph_of_run(run_id)
            if name is None:
                raise LookupError("its graph is no longer in mesh.yaml as it was when the run started")
            report = Reporter(self.graphs.graph(name), name, store_updater)
            run = await self.graphs.engine(name).resume(run_id, on_event=report.superstep)
            report.run = run
        except RunNotResumable as exc:
            if self.graphs.lease_seconds is not None:
                log.info("run %s: not taken over: %s", run_id, exc)  # another coordinator was quicker
                return
            log.warning("run %s cannot resume: %s", run_id, exc)
            await store_updater.end(TaskState.TASK_STATE_FAILED, f"The run could not resume after a restart: {exc}")
            return
        except Exception as exc:
            log.warning("run %s cannot resume: %s", run_id, exc)
            await store_updater.end(TaskState.TASK_STATE_FAILED, f"The run could not resume after a restart: {exc}")
            return
        log.info("resuming run %s of graph %s at superstep %d (owner %s)", run_id, name, run.superstep, self.graphs.owner)
        self.live[run_id] = run
        await store_updater.update_status(TaskState.TASK_STATE_WORKING, message=store_updater.new_agent_message(
            [new_text_part(f"resumed graph {name} after a restart, at superstep {run.superstep}")]))
        try:
            result = await run.result()
        finally:
            self.live.pop(run_id, None)
        if result.stop_reason not in ("interrupted", "lease_lost"):
            await report.finish(result)


class Reporter:
    """Turns a run's supersteps and result into A2A status updates and artifacts (of a live request or a stored task)."""

    def __init__(self, graph, name: str, task: Any) -> None:
        self.graph = graph
        self.name = name
        self.task = task
        self.wanted = set(graph.outputs) if graph.outputs is not None else None
        self.run: Run | None = None
        self._seen = 0  # calls of run.figures.calls already reported

    def edges(self) -> list[dict[str, Any]]:
        """The calls finished since the last superstep, per edge their messages took: latency, tokens, cost (for the console)."""
        if self.run is None:
            return []
        calls = self.run.figures.calls
        fresh, self._seen = calls[self._seen:], len(calls)
        edges = []
        for vertex, latency, targets, usage in fresh:
            tokens, cost, _size = usage or (None, None, None)
            for target in dict.fromkeys(targets):
                edges.append({"from": vertex, "to": target, "latency_ms": round(latency * 1000, 3), "tokens": tokens,
                              "cost": cost})
        return edges

    async def superstep(self, event: SuperstepEvent) -> None:
        line = (f"superstep {event.superstep}: {len(event.active)} active ({', '.join(event.active[:8])}"
                f"{', ...' if len(event.active) > 8 else ''}), {event.messages_sent} messages sent, "
                f"{event.compute_seconds + event.barrier_seconds:.3f}s")
        if event.errors:
            line += f", {len(event.errors)} errors"
        if event.mutations_applied:
            line += f", {len(event.mutations_applied)} topology changes"
        await self.task.update_status(TaskState.TASK_STATE_WORKING, message=self.task.new_agent_message(
            [new_text_part(line), new_data_part(_json({**event.summary(), "graph": self.name, "edges": self.edges()}))]))
        for vertex, value in event.outputs.items():
            if self.wanted is None or vertex in self.wanted:
                await self.task.add_artifact([_part(value)], artifact_id=f"{event.run_id}-{vertex}", name=vertex)

    async def finish(self, result: RunResult) -> None:
        outputs = {v: o for v, o in result.outputs.items() if self.wanted is None or v in self.wanted}
        summary = (f"graph {self.name}: {result.status} ({result.stop_reason}) after {result.supersteps} supersteps, "
                   f"{len(outputs)} outputs" + (f", {len(result.errors)} errors" if result.errors else ""))
        data = _json({"graph": self.name, "run": result.run_id, "status": result.status, "stop_reason": result.stop_reason,
                      "supersteps": result.supersteps, "outputs": outputs, "errors": result.errors,
                      "aggregates": result.aggregates, "figures": result.figures})
        await self.task.add_artifact([new_text_part(summary), new_data_part(data)], name="result")
        if result.status == "failed" or (result.errors and not outputs):
            # A run that ended with errors and nothing to show failed, whatever the engine's status says.
            reasons = "; ".join(f"{e.get('vertex')}: {e.get('error')}" for e in result.errors[:5])
            raise AgentFailure(f"{summary}: {reasons}")
        if isinstance(self.task, StoredTask):
            await self.task.end(TaskState.TASK_STATE_COMPLETED, summary)


class StoredTask:
    """A TaskUpdater look-alike writing straight to the task store, for runs resumed without a live request."""

    def __init__(self, store: Any, task_id: str) -> None:
        self.store = store
        self.task_id = task_id

    def new_agent_message(self, parts: list[Part]) -> Message:
        return Message(role=Role.ROLE_AGENT, message_id=str(uuid.uuid4()), task_id=self.task_id, parts=parts)

    async def update_status(self, state: int, message: Message | None = None) -> None:
        def change(task) -> None:
            task.status.state = state
            if message is not None:
                task.status.message.CopyFrom(message)
            task.status.timestamp.GetCurrentTime()

        await update_task(self.store, self.task_id, change)

    async def add_artifact(self, parts: list[Part], artifact_id: str | None = None, name: str | None = None) -> None:
        artifact = Artifact(artifact_id=artifact_id or f"{self.task_id}-{name}", name=name or "", parts=parts)

        def change(task) -> None:
            for existing in task.artifacts:
                if existing.artifact_id == artifact.artifact_id:
                    existing.CopyFrom(artifact)
                    return
            task.artifacts.append(artifact)

        await update_task(self.store, self.task_id, change)

    async def end(self, state: int, text: str) -> None:
        await self.update_status(state, self.new_agent_message([Part(text=text)]))


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _part(value: Any) -> Part:
    if isinstance(value, str):
        return new_text_part(value)
    return Part(data=ParseDict(_json(value), Value()))


def create_executor(settings: Settings, runtime: AgentRuntime) -> Coordinator:
    return Coordinator(settings, runtime)
