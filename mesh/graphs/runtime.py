"""Graphs of mesh.yaml on the Pregel engine: A2A vertices (h2c to the mesh's agents, else HTTP/1.1 or ALPN), group routing, the guard on edges, checkpoints.

A remote vertex (kinds ``agent``, ``a2a``, ``group``; see mesh/vertices.py)
is called with one A2A message: its inbox as parts (text as text parts,
anything else as data parts, each with the sender in the part's metadata)
after the vertex's ``instruction``, and the message metadata
``{"pregel": {"run", "graph", "vertex", "superstep", "attempt", "senders",
"aggregates", "state"}}``. The answer becomes the vertex's result:

- a plain answer is the vertex's output, sent along every out-edge: the text
  of the task's last artifact that has text (or of the reply message), else
  the value of its last data part;
- a mesh-aware agent may add a data part ``{"pregel": {...}}`` with the
  fields of ``mesh.pregel.VertexResult`` (``send`` to named vertices, ``halt``,
  ``state``, ``mutations``, ``aggregate``, ``tokens``, ``cost``, ``output``);
- usage may also come as ``{"usage": {"tokens": N, "cost": X}}`` in the
  answer's metadata;
- a task that ends failed, rejected or canceled is a failed call (the engine
  retries it as the vertex's ``retries`` say).

Calls stream when the agent can (so a cancelled or timed-out call cancels
the remote task) and share one HTTP/2 connection pool per agent. A group
vertex sends each call to the member measured fastest (or cheapest), trying
every member once first, and falls over to the next member when one cannot be
reached; an agent with ``replica_urls`` does the same over its replicas, and a
URL answering with another agent's card is refused (``mesh.graphs.routing``). With a ``guard:`` in the graph (merged over mesh.yaml's ``guard:``),
every vertex's outgoing messages are checked before they travel an edge: a
blocked one fails that call, and nothing of it is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
from a2a.client.client import Client
from a2a.helpers import get_text_parts
from a2a.types import (
    AgentCard,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
)
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Value
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from mesh.client import Target, fetch_card, http_client, open_client
from mesh.client.connect import known_h2c
from mesh.client.exchange import FAILED_STATES, exchange
from mesh.client.parts import plain_numbers, state_name
from mesh.config import MeshConfig
from mesh.graphs.routing import RouteStats, WrongAgent, candidates_of, expected_card_name, unreachable
from mesh.graphs.vertices import (
    A2AVertex,
    AgentVertex,
    GroupVertex,
    RemoteVertex,
    agents_named,
)
from mesh.pregel import (
    CheckpointStore,
    Engine,
    GraphSpec,
    PostgresStore,
    PythonVertex,
    Run,
    VertexCall,
    VertexResult,
    open_store,
)
from mesh.pregel.functions import (
    python_vertex_factory,
    resolve_aggregator,
    resolve_combiner,
)
from mesh.pregel.lease import default_owner
from mesh.pregel.vertex import send_pairs
from mesh.telemetry import metrics, tracing

log = logging.getLogger(__name__)

CONTROL_KEY = "pregel"


class VertexCallFailed(Exception):
    """The agent answered, but with a failure (the message says what it said)."""


def checkpoint_store(config: MeshConfig) -> CheckpointStore:
    """Where runs are checkpointed: ``state.database`` (PostgreSQL) or ``STATE_DIR/graphs.sqlite``."""
    return open_store(config.state.database or (config.state_dir / "graphs.sqlite"))


# -- calling agents --------------------------------------------------------------------------------


class AgentPool:
    """One HTTP client (a connection pool) and one a2a client per agent, shared by every call of every run."""

    def __init__(self) -> None:
        # keyed by (url, h2c): one agent may be called both ways (a vertex may force h2c)
        self._http: dict[tuple[str, bool], httpx.AsyncClient] = {}
        self._clients: dict[tuple[str, bool], tuple[Client, AgentCard]] = {}
        self._locks: dict[tuple[str, bool], asyncio.Lock] = {}
        # The card name each agent of the mesh answers with (mesh.yaml's card.name, its module's card,
        # else the first card seen): a URL answering with another agent's card is refused, not called.
        self.identities: dict[str, str] = {}

    async def client(self, target: Target) -> tuple[Client, AgentCard]:
        key = (target.url, target.h2c)
        cached = self._clients.get(key)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._clients:
                http = self._http.get(key) or http_client(target.token, timeout=None, h2c=target.h2c)
                self._http[key] = http
                card = await fetch_card(http, target.url)
                expected = self.identities.setdefault(target.name, card.name)
                if card.name != expected:
                    raise WrongAgent(f"{target.url} answers with the card of {card.name!r}, not of agent "
                                     f"{target.name!r} ({expected!r}): refusing to call it")
                self._clients[key] = (await open_client(http, card, streaming=card.capabilities.streaming), card)
            return self._clients[key]

    def forget(self, target: Target) -> None:
        """Drop the cached client (the agent restarted, or its card changed)."""
        self._clients.pop((target.url, target.h2c), None)

    async def aclose(self) -> None:
        for http in self._http.values():
            await http.aclose()
        self._http.clear()
        self._clients.clear()


def inbox_message(call: VertexCall, graph: str, instruction: str | None) -> Message:
    """The A2A message a remote vertex is called with (see the module docstring)."""
    parts: list[Part] = []
    if instruction:
        parts.append(Part(text=instruction))
    for message in call.messages:
        part = Part(text=message.value) if isinstance(message.value, str) else Part(data=ParseDict(message.value, Value()))
        if message.sender is not None:
            part.metadata.update({"from": message.sender})
        parts.append(part)
    if not parts:
        parts.append(Part(text=""))
    request = Message(role=Role.ROLE_USER, message_id=f"{call.run_id}:{call.superstep}:{call.vertex_id}:{call.attempt}",
                      context_id=call.run_id, parts=parts)
    request.metadata.update({CONTROL_KEY: {
        "run": call.run_id, "graph": graph, "vertex": call.vertex_id, "superstep": call.superstep,
        "attempt": call.attempt, "senders": sorted({m.sender for m in call.messages if m.sender}),
        "aggregates": _jsonable(dict(call.aggregates)), "state": _jsonable(call.state),
    }})
    return request


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def reply_result(reply: Task | Message, size: int, trusted: bool = False) -> VertexResult:
    """A vertex result from an agent's final answer (see the module docstring).

    A ``{"pregel": {...}}`` data part steers the run only when ``trusted`` (the vertex's
    ``control: true`` in mesh.yaml); otherwise it is data like any other.
    """
    if isinstance(reply, Task):
        if reply.status.state in FAILED_STATES:
            why = _text(reply.status.message.parts) if reply.status.HasField("message") else ""
            raise VertexCallFailed(f"the agent's task ended {state_name(reply.status.state)}"
                                   + (f": {why}" if why else ""))
        groups = [list(artifact.parts) for artifact in reply.artifacts]
        if not groups and reply.status.HasField("message"):
            groups = [list(reply.status.message.parts)]
    else:
        groups = [list(reply.parts)]
    control: dict[str, Any] | None = None
    text: str | None = None
    data: Any = None
    for parts in groups:
        texts = [p.text for p in parts if p.WhichOneof("content") == "text" and p.text]
        if texts:
            text = "\n".join(texts)  # the last artifact with text wins: earlier ones are steps towards it
        for part in parts:
            if part.WhichOneof("content") == "data":
                value = plain_numbers(MessageToDict(part.data))
                if trusted and isinstance(value, dict) and isinstance(value.get(CONTROL_KEY), dict):
                    control = value[CONTROL_KEY]
                else:
                    data = value
    output = text if text is not None else data
    usage = MessageToDict(reply.metadata).get("usage")
    usage = usage if isinstance(usage, dict) else {}
    if control is not None:
        result = VertexResult.from_dict(control)
        if "output" not in control:
            result.output = output
    else:
        result = VertexResult(output=output)
    if result.tokens is None and isinstance(usage.get("tokens"), int | float):
        result.tokens = int(usage["tokens"])
    if result.cost is None and isinstance(usage.get("cost"), int | float):
        result.cost = float(usage["cost"])
    if result.bytes is None:
        result.bytes = size
    return result


def _text(parts) -> str:
    return "\n".join(get_text_parts(parts))


class RemoteCall:
    """The callable of a remote vertex: one A2A call per vertex call."""

    def __init__(self, runtime: GraphRuntime, spec: RemoteVertex, graph: str) -> None:
        self.runtime = runtime
        self.spec = spec
        self.graph = graph

    def targets(self) -> list[tuple[str, Target]]:
        """The candidates of this call, best first (see mesh.graphs.routing)."""
        config = self.runtime.config
        spec = self.spec
        if isinstance(spec, A2AVertex):
            token = os.environ.get(spec.token_env) if spec.token_env else None
            return [(spec.url, Target(spec.url, spec.url, token, spec.h2c or known_h2c(config, spec.url)))]
        agents = [spec.agent] if isinstance(spec, AgentVertex) else list(spec.agents)  # type: ignore[attr-defined]
        candidates = {key: target for agent in agents for key, target in candidates_of(config, agent).items()}
        if len(candidates) == 1:
            return list(candidates.items())
        route = spec.route if isinstance(spec, GroupVertex) else "fastest"
        return [(key, candidates[key]) for key in self.runtime.routes.order(list(candidates), route)]

    async def __call__(self, call: VertexCall) -> VertexResult:
        with tracing.tracer().start_as_current_span(
            f"vertex {call.vertex_id}", kind=SpanKind.CLIENT,
            attributes={"mesh.graph": self.graph, "mesh.vertex": call.vertex_id, "mesh.superstep": call.superstep},
        ) as span:
            result = await self._call(call)
            if result.tokens is not None:
                span.set_attribute("mesh.tokens", result.tokens)
            if result.cost is not None:
                span.set_attribute("mesh.cost", result.cost)
            return result

    async def _call(self, call: VertexCall) -> VertexResult:
        request = SendMessageRequest(message=inbox_message(call, self.graph, self.spec.instruction))
        candidates = self.targets()
        for index, (name, target) in enumerate(candidates):
            started = time.perf_counter()
            try:
                result = await self._send(target, request)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self.runtime.pool.forget(target)
                self.runtime.routes.failed(name)  # calls stop going there for a while
                why = str(exc) if isinstance(exc, WrongAgent) else f"{name} cannot be reached: {type(exc).__name__}: {exc}"
                if index + 1 < len(candidates):  # a replica or group member falls over to the next one
                    log.warning("vertex %s: %s; trying %s", call.vertex_id, why, candidates[index + 1][0])
                    continue
                raise VertexCallFailed(why) from None
            self.runtime.routes.record(name, time.perf_counter() - started, result.cost)
            return result
        raise VertexCallFailed("no agent to call")

    async def _send(self, target: Target, request: SendMessageRequest) -> VertexResult:
        pool = self.runtime.pool
        if not isinstance(self.spec, A2AVertex) and target.name not in pool.identities:
            name = await asyncio.to_thread(expected_card_name, self.runtime.config, target.name)
            if name is not None:
                pool.identities.setdefault(target.name, name)
        client, _ = await pool.client(target)
        # A cancelled or timed-out call cancels the remote task too (exchange does that).
        answer = await exchange(client, request)
        if answer.final is None:
            raise VertexCallFailed("the agent sent no answer")
        return reply_result(answer.final, request.ByteSize() + answer.bytes_received, trusted=self.spec.control)


def edge_guard(config: MeshConfig, graph: GraphSpec, client: Any) -> Any:
    """The Guard checking a graph's messages, or None when the graph has no ``guard:``."""
    if graph.guard is None:
        return None
    from mesh.guard.enforcement import Guard
    from mesh.guard.policy import GuardPolicy

    merged = {**(config.guard.model_dump(exclude_unset=True) if config.guard else {}), **graph.guard}
    policy = GuardPolicy.model_validate(merged)
    return Guard("graph", policy, client) if policy.enabled else None


def guarded_vertex(function: Callable, guard: Any, graph: str) -> Callable:
    """``function`` whose outgoing messages pass the guard before they travel an edge."""
    from mesh.guard.verdicts import GuardBlocked, as_turns

    async def vertex(call: VertexCall) -> Any:
        raw = await function(call)
        result = raw if isinstance(raw, VertexResult) else VertexResult(output=raw)
        outgoing = [value for _, value in send_pairs(result.send)] if result.send is not None else [result.output]
        inbox = "\n".join(_as_text(v) for v in call.inbox)
        for value in outgoing:
            text = _as_text(value)
            if not text.strip():
                continue
            blocked = await guard.decide(as_turns(inbox or "(graph input)", text), what=f"message from {call.vertex_id}")
            if blocked is not None:
                raise GuardBlocked(f"{blocked.reason} (graph {graph}, vertex {call.vertex_id})", blocked.codes)
        return result

    return vertex


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


# -- the runtime -----------------------------------------------------------------------------------


class GraphRuntime:
    """Runs the graphs of one mesh.yaml: an engine per graph over one checkpoint store, agent pool and route stats."""

    def __init__(self, config: MeshConfig, store: CheckpointStore | None = None) -> None:
        self.config = config
        self.store = store
        self.pool = AgentPool()
        self.routes = RouteStats()
        self._engines: dict[str, Engine] = {}
        self._compiled: dict[str, Any] = {}
        self._guard_client: Any = None
        # Runs in a database that several coordinators share are leased (mesh.pregel.lease).
        self.lease_seconds = config.state.lease_seconds if isinstance(store, PostgresStore) else None
        self.owner = default_owner()

    def graph(self, name: str) -> GraphSpec:
        try:
            return self.config.graphs[name]
        except KeyError:
            known = ", ".join(sorted(self.config.graphs)) or "none"
            raise KeyError(f"no graph named {name!r} (graphs: {known})") from None

    def engine(self, name: str) -> Engine:
        if name not in self._engines:
            self._engines[name] = Engine(self.store, self._factory(name), lease_seconds=self.lease_seconds, owner=self.owner)
        return self._engines[name]

    def compiled(self, name: str):
        if name not in self._compiled:
            self._compiled[name] = self.engine(name).compile(self.graph(name))
        return self._compiled[name]

    def _factory(self, name: str) -> Callable:
        graph = self.graph(name)
        guard = edge_guard(self.config, graph, self._guard()) if graph.guard is not None else None

        def make(spec):
            unknown = [agent for agent in agents_named(spec) if agent not in self.config.agents]
            if unknown:  # e.g. a mutation adding a vertex for an agent the mesh does not have: refused
                raise LookupError(f"no agent named {', '.join(map(repr, unknown))} in this mesh")
            function = RemoteCall(self, spec, name) if isinstance(spec, RemoteVertex) else python_vertex_factory(spec)
            return guarded_vertex(function, guard, name) if guard is not None else function

        return make

    def _guard(self) -> Any:
        if self._guard_client is None:
            from mesh.guard.client import GuardClient
            from mesh.guard.policy import guard_agent_of

            if not guard_agent_of(self.config):
                raise ValueError("a graph's guard: needs the mesh's guard agent (top-level guard: {agent: NAME})")
            self._guard_client = GuardClient.for_mesh(self.config, self.config.guard)
        return self._guard_client

    async def start(self, name: str, input: Any, *, run_id: str | None = None, on_event=None) -> Run:
        async def counted(event: Any) -> None:
            metrics.record_superstep(name, event.active)
            if on_event is not None:
                pending = on_event(event)
                if inspect.isawaitable(pending):
                    await pending

        span = tracing.tracer().start_span(f"graph {name}", attributes={"mesh.graph": name})
        with trace.use_span(span, end_on_exit=False):  # the run's task (and its vertex calls) starts inside this span
            try:
                run = await self.engine(name).start(self.compiled(name), input, run_id=run_id, on_event=counted)
            except BaseException:
                span.end()
                raise
        span.set_attribute("mesh.run_id", run.run_id)
        task = asyncio.get_running_loop().create_task(_count_run(name, run, span))
        _counting.add(task)
        task.add_done_callback(_counting.discard)
        return run

    async def graph_of_run(self, run_id: str) -> str | None:
        """Which graph of mesh.yaml a stored run ran (None if none matches: mesh.yaml changed since)."""
        saved = await self.store.load_run(run_id)
        if saved is None:
            return None
        digest = hashlib.sha256(saved.graph.encode()).hexdigest()
        for name in self.config.graphs:
            if self.compiled(name).digest == digest:
                return name
        return None

    async def latest_run(self, name: str) -> str | None:
        runs = await self.store.list_runs(limit=1, graph_digest=self.compiled(name).digest)
        return runs[0].run_id if runs else None

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._guard_client is not None:
            await self._guard_client.aclose()


def graph_problems(config: MeshConfig) -> list:
    """Each graph's Python functions, combiners and aggregators resolve (for `mesh check`)."""
    problems = []
    for name, graph in config.graphs.items():
        for index, vertex in enumerate(graph.vertices):
            if isinstance(vertex, PythonVertex):
                try:
                    python_vertex_factory(vertex)
                except Exception as exc:
                    problems.append(config.problem(("graphs", name, "vertices", index, "function"), str(exc)))
            if vertex.combiner:
                try:
                    resolve_combiner(vertex.combiner)
                except Exception as exc:
                    problems.append(config.problem(("graphs", name, "vertices", index, "combiner"), str(exc)))
        for aggregator, fold in graph.aggregators.items():
            try:
                resolve_aggregator(fold)
            except Exception as exc:
                problems.append(config.problem(("graphs", name, "aggregators", aggregator), str(exc)))
        if graph.guard is not None:
            from mesh.guard.policy import GuardPolicy

            try:
                GuardPolicy.model_validate({**(config.guard.model_dump(exclude_unset=True) if config.guard else {}), **graph.guard})
            except Exception as exc:
                problems.append(config.problem(("graphs", name, "guard"), str(exc).splitlines()[-1]))
            if not config.guard:
                problems.append(config.problem(("graphs", name, "guard"), "a graph's guard needs the mesh's guard: section (agent: NAME)"))
    return problems


_counting: set[asyncio.Task] = set()


async def _count_run(graph: str, run: Run, span: Any) -> None:
    """Put a run's end and its per-edge figures into /metrics, and end its span."""
    status = "failed"
    try:
        result = await run.result()
        status = result.status
        span.set_attribute("mesh.supersteps", result.supersteps)
    except BaseException:  # noqa: BLE001 - a run that raised counts as failed
        pass
    finally:
        span.set_attribute("mesh.status", status)
        span.end()
        metrics.record_run(graph, status, list(run.figures.calls))
