"""The Pregel engine: runs a graph in bulk-synchronous supersteps of concurrent, async vertex calls.

Supersteps
    At superstep 0 the entry vertices are active, each with the run's input
    as its one message. In every superstep each active vertex is called once,
    all concurrently, with its inbox (the messages delivered to it at the
    previous barrier, combined by its combiner if it has one), its state, the
    superstep number and the aggregates folded at the previous barrier. A
    vertex is active if a message was delivered to it or if it asked to stay
    active (``halt=False``); otherwise it has voted to halt, and a message
    wakes it up again. Messages sent during a superstep are delivered at its
    barrier, never earlier. The run ends when no vertex is active and no
    message is in flight (``halted``), after ``limits.max_supersteps``
    supersteps (``max_supersteps``; the run is still ``done``), or on
    ``Run.cancel()``.

Joins (``VertexSpec.join``), for a destination ``d`` in a superstep
    The *senders* of ``d`` are the vertices active in this superstep that
    have an edge to ``d``. A sender *arrives* when its call ends with at least
    one message for ``d`` along that edge; a sender that ends any other way
    (no message for ``d``, failed) is simply done. ``d``'s join *closes*:

    - ``all`` (default): when every sender is done; nothing is ever dropped;
    - ``any``: at the first arrival, or when every sender is done;
    - ``quorum: k``: at the k-th arrival, or when every sender is done;
    - ``deadline: s``: ``s`` seconds after the superstep started, or when
      every sender is done.

    Messages along an edge into ``d`` that arrive after ``d``'s join closed
    are not delivered; they are reported as ``late`` (event
    ``dropped_messages``, edge figure ``late``). A still running call is
    *dropped* (cancelled, reported in ``dropped_calls`` and the ``drops``
    figures) as soon as every destination of its out-edges has closed its
    join, unless it is named in the graph's ``outputs`` or has no out-edge at
    all; so a call is only cut short when nobody could use what it sends.
    A dropped vertex is treated as halted with its state unchanged. Direct
    messages to a vertex that is not an edge's target are not counted by its
    join and are always delivered if their call finishes; a vertex whose
    out-edges all lead to closed joins is dropped even if it meant to send
    elsewhere, so name such a vertex in ``outputs``. The barrier closes
    when no call is running any more (every call finished, failed or was
    dropped); with ``all`` joins only, that is the classic Pregel barrier.

Failures
    A call that raises or exceeds its timeout (``timeout_seconds``, else
    ``limits.vertex_timeout_seconds``) is retried up to ``retries`` times
    after ``backoff_seconds * backoff_factor ** (n - 1)`` (capped at
    ``backoff_max_seconds``). A call that fails every attempt is reported in
    the event's and the result's ``errors``; the vertex sends nothing and is
    treated as halted, and the run goes on (``on_vertex_error: continue``,
    default) or ends as ``failed`` after the barrier (``fail``).

Barrier, in this order
    topology mutations (in the order documented in ``mesh.pregel.topology``),
    delivery of messages (to a vertex removed at this barrier or that does
    not exist: dropped and reported), combiners, aggregators (each declared
    aggregator folds this superstep's contributions; with none, ``sum`` and
    ``count`` are 0, ``list`` is [] and the others None), the checkpoint (if
    the engine has a store), then the superstep's event.

Values
    Inputs, outputs, messages, states and aggregate contributions are JSON
    values. With a store they are checked when a call returns (a result that
    is not JSON is that call's error); without one they are not.

Durability
    With a ``CheckpointStore``, every finished call attempt is recorded
    (group commit) and every barrier is checkpointed; ``Engine.resume``
    continues a run whose process died from its last checkpoint, using the
    recorded results of the calls of the interrupted superstep instead of
    calling those vertices again (in the order they finished, so joins see
    the same first arrivals). ``Run.cancel(resumable=True)``, or the loop
    cancelling the run's task at shutdown, stops the run and leaves it
    ``running`` in the store, to be resumed; ``Run.cancel()`` ends it as
    ``cancelled``. Resuming one run from two processes at once is only
    guarded against with leases (``lease_seconds``, see ``mesh.pregel.lease``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from time import perf_counter
from types import MappingProxyType
from typing import Any

from mesh.pregel._json import dumps as _dumps
from mesh.pregel.checkpoint import (
    CallRecord,
    CallRecorder,
    Checkpoint,
    CheckpointStore,
    Lease,
    LeaseLost,
    NewRun,
    SavedRun,
    StoreError,
)
from mesh.pregel.events import RunResult, SuperstepEvent, expand_summary
from mesh.pregel.figures import Figures
from mesh.pregel.lease import Heartbeat, default_owner
from mesh.pregel.functions import (
    VertexFactory,
    empty_aggregate,
    python_vertex_factory,
    resolve_aggregator,
)
from mesh.pregel.spec import GraphSpec
from mesh.pregel.topology import GraphBuildError, Topology, Vertex
from mesh.pregel.vertex import KEEP, Message, VertexCall, VertexResult, send_pairs

EventCallback = Callable[[SuperstepEvent], Awaitable[None] | None]

logger = logging.getLogger("mesh.pregel")
_END = object()
_NO_EDGES: list[str] = []


class RunNotFound(LookupError):
    pass


class RunNotResumable(RuntimeError):
    pass


class _Join:
    """The join of one destination in one superstep (only for ``any``, ``quorum`` and ``deadline``)."""

    __slots__ = ("need", "arrived", "waiting", "closed", "timer")

    def __init__(self, need: int | None, waiting: set[str]):
        self.need = need
        self.arrived = 0
        self.waiting = waiting  # senders still running (or not yet started)
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None


class CompiledGraph:
    """A validated graph with its vertices turned into callables, ready to run many times (see ``Engine.compile``)."""

    def __init__(self, graph: GraphSpec, topology: Topology):
        self.graph = graph
        self.topology = topology

    @functools.cached_property
    def graph_json(self) -> str:
        return self.graph.model_dump_json(by_alias=True)

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.graph_json.encode()).hexdigest()

    @functools.cached_property
    def topology_json(self) -> str:
        return _dumps(self.topology.snapshot())


class Engine:
    """Runs graphs. ``store`` makes runs durable and resumable; ``vertex_factory`` turns vertex specs into callables.

    ``lease_seconds`` gives each run a lease in the store (PostgreSQL), so that
    coordinators on several hosts share runs safely (``mesh.pregel.lease``);
    ``owner`` names this coordinator (default: host, pid and a random part).
    """

    def __init__(
        self,
        store: CheckpointStore | None = None,
        vertex_factory: VertexFactory = python_vertex_factory,
        *,
        lease_seconds: float | None = None,
        owner: str | None = None,
    ):
        if lease_seconds is not None and (store is None or lease_seconds <= 0):
            raise ValueError("leases need a checkpoint store and a positive lease_seconds")
        self.store = store
        self.vertex_factory = vertex_factory
        self.lease_seconds = lease_seconds
        self.owner = owner or default_owner()
        self._live: dict[str, Run] = {}

    def compile(self, graph: GraphSpec | Mapping[str, Any]) -> CompiledGraph:
        """Validate a graph and make its vertices' callables once; raises ``ValidationError`` or ``GraphBuildError``."""
        if not isinstance(graph, GraphSpec):
            graph = GraphSpec.model_validate(graph)
        topology = Topology.build(graph, self.vertex_factory)
        _aggregators_of(graph)  # fails now rather than at the first run
        return CompiledGraph(graph, topology)

    async def start(
        self,
        graph: CompiledGraph | GraphSpec | Mapping[str, Any],
        input: Any = None,
        *,
        run_id: str | None = None,
        on_event: EventCallback | None = None,
    ) -> Run:
        """Start a run in the background; a graph that is not compiled yet is compiled first."""
        compiled = graph if isinstance(graph, CompiledGraph) else self.compile(graph)
        run_id = run_id or uuid.uuid4().hex
        lease = None
        if self.lease_seconds is not None:
            # The lease first: a run with no lease row would look orphaned to other coordinators.
            lease = await self.store.acquire_lease(run_id, self.owner, self.lease_seconds)  # type: ignore[union-attr]
            if lease is None:
                raise StoreError(f"run {run_id!r} exists")
        # Runs share the compiled topology until their first mutation copies it.
        run = Run(self, run_id, compiled.graph, compiled.topology, on_event=on_event, owns_topology=False, lease=lease)
        run._start_with(input)
        if self.store is not None:
            await self.store.create_run(
                NewRun(
                    run_id=run_id,
                    graph_digest=compiled.digest,
                    graph=compiled.graph_json,
                    input=_dumps(input),
                    topology=compiled.topology_json,
                )
            )
        run._launch()
        return run

    async def run(self, graph: CompiledGraph | GraphSpec | Mapping[str, Any], input: Any = None, **options: Any) -> RunResult:
        """Start a run and wait for its result."""
        return await (await self.start(graph, input, **options)).result()

    async def resume(self, run_id: str, *, on_event: EventCallback | None = None) -> Run:
        """Continue a run that was interrupted (still ``running`` in the store) from its last checkpoint."""
        if self.store is None:
            raise RunNotResumable("this engine has no checkpoint store")
        if run_id in self._live:
            raise RunNotResumable(f"run {run_id!r} is running in this engine")
        lease = None
        if self.lease_seconds is not None:
            lease = await self.store.acquire_lease(run_id, self.owner, self.lease_seconds)
            if lease is None:
                raise RunNotResumable(f"run {run_id!r} belongs to another coordinator whose lease has not expired")
        saved = await self.store.load_run(run_id)
        if saved is None:
            raise RunNotFound(f"no run {run_id!r} in the store")
        if saved.info.status != "running":
            raise RunNotResumable(f"run {run_id!r} is {saved.info.status}; only an interrupted (running) run resumes")
        graph = GraphSpec.model_validate_json(saved.graph)
        topology = Topology.restore(graph, self.vertex_factory, json.loads(saved.topology))
        run = Run(self, run_id, graph, topology, on_event=on_event, lease=lease)
        run._restore(saved)
        run._launch()
        return run

    async def adopt(self, graph: CompiledGraph | None = None, *, on_event: EventCallback | None = None) -> list[Run]:
        """Take over the runs (of ``graph``) whose lease expired, from their last checkpoint (needs ``lease_seconds``)."""
        if self.lease_seconds is None or self.store is None:
            raise RunNotResumable("adopting runs needs an engine with leases (lease_seconds)")
        runs = []
        for run_id in await self.store.orphaned_runs(graph.digest if graph is not None else None):
            try:
                runs.append(await self.resume(run_id, on_event=on_event))
            except (RunNotResumable, RunNotFound):
                continue  # another coordinator was quicker, or the run ended meanwhile
        return runs

    async def figures(self, run_id: str) -> dict[str, Any]:
        """The figures of a stored run (rebuilt from its call records and events), e.g. for a finished run."""
        if self.store is None:
            raise RunNotFound("this engine has no checkpoint store")
        saved = await self.store.load_run(run_id)
        if saved is None:
            raise RunNotFound(f"no run {run_id!r} in the store")
        graph = GraphSpec.model_validate_json(saved.graph)
        run = Run(self, run_id, graph, Topology(graph, self.vertex_factory), on_event=None)
        run._restore(saved, every_call=True)
        return run.figures.to_dict()


class Run:
    """One run of a graph: await ``result()``, iterate ``events()``, or ``cancel()``."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        graph: GraphSpec,
        topology: Topology,
        *,
        on_event: EventCallback | None,
        owns_topology: bool = True,
        lease: Lease | None = None,
    ):
        self.engine = engine
        self.run_id = run_id
        self.graph = graph
        self.topology = topology
        self._owns_topology = owns_topology
        self.status = "running"
        self._store = engine.store
        self._recorder = CallRecorder(engine.store, lease) if engine.store is not None else None
        self._lease = lease
        self._heartbeat = Heartbeat(engine.store, lease, self._lease_lost) if lease is not None else None  # type: ignore[arg-type]
        self._on_event = on_event
        self._limits = graph.limits
        self._output_ids = frozenset(graph.outputs) if graph.outputs is not None else None
        self._aggregators = _aggregators_of(graph)

        self._superstep = 0
        self._inbox: dict[str, list[Message]] = {}
        self._awake: dict[str, None] = {}  # vertices that stay active without messages (a dict keeps their order)
        self._states: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self._aggregates: dict[str, Any] = {}
        self._errors: list[dict[str, Any]] = []
        self._summaries: list[dict[str, Any] | SuperstepEvent] = []  # restored summaries, then this process's events
        self._emitted: list[SuperstepEvent] = []
        self.figures = Figures()
        self._call_log = self.figures.calls
        self._replay: tuple[int, list[CallRecord], dict[str, int]] | None = None
        self._seq = 0  # finishing order of the calls, for call records

        self._task: asyncio.Task[RunResult] | None = None
        self._stop: str | None = None  # why cancel() was called: "cancel" or "interrupt"
        self._subscribers: list[asyncio.Queue[Any]] = []
        self._crash: BaseException | None = None
        self._ending: tuple[str, str] | None = None
        self._finished_in_store = False
        self._refresh_topology_caches()
        self._reset_superstep()

    # --- public -----------------------------------------------------------------------------

    @property
    def superstep(self) -> int:
        """The superstep running now (or the next one)."""
        return self._superstep

    async def result(self) -> RunResult:
        """The run's result; cancelling the caller does not cancel the run."""
        assert self._task is not None
        return await asyncio.shield(self._task)

    def __await__(self) -> Any:
        return self.result().__await__()

    def cancel(self, *, resumable: bool = False) -> None:
        """Stop the run and cancel its in-flight vertex calls.

        It ends as ``cancelled``; with ``resumable=True`` (e.g. at shutdown)
        it stays ``running`` in the store, for ``Engine.resume``, and its
        result says ``stop_reason="interrupted"``.
        """
        if self._task is not None and not self._task.done():
            self._stop = "interrupt" if resumable else "cancel"
            self._task.cancel()

    async def events(self) -> AsyncIterator[SuperstepEvent]:
        """Every superstep event of this run, from the first one this process emitted, until the run ends."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for event in self._emitted:
            queue.put_nowait(event)
        if self._task is not None and self._task.done():
            queue.put_nowait(_END)
        else:
            self._subscribers.append(queue)
        try:
            while (event := await queue.get()) is not _END:
                yield event
        finally:
            if queue in self._subscribers:
                self._subscribers.remove(queue)

    # --- life cycle ---------------------------------------------------------------------------

    def _launch(self) -> None:
        self.engine._live[self.run_id] = self
        self._task = asyncio.get_running_loop().create_task(self._main(), name=f"pregel-run-{self.run_id}")
        if self._heartbeat is not None:
            self._heartbeat.start()

    def _lease_lost(self, why: str) -> None:
        logger.warning("%s; stopping the run here", why)
        if self._task is not None and not self._task.done():
            self._stop = "lease_lost"
            self._task.cancel()

    async def _main(self) -> RunResult:
        try:
            return await self._supersteps()
        finally:
            if self._heartbeat is not None:
                self._heartbeat.stop()

    async def _supersteps(self) -> RunResult:
        try:
            self._ending = self._ending_now()
            while self._ending is None:
                await self._run_superstep()
        except LeaseLost as lost:
            return await self._give_up(str(lost))
        except asyncio.CancelledError:
            if self._stop == "lease_lost":
                return await self._give_up("lease lost")
            await self._abandon_calls()
            if self._stop == "cancel":
                return await self._finish("cancelled", "cancelled")
            self.engine._live.pop(self.run_id, None)
            self._end_subscriptions()
            if self._stop == "interrupt":
                return self._result("running", "interrupted")
            raise  # cancelled from outside (the loop shutting down): still "running" in the store, resumable
        except BaseException as error:
            await self._abandon_calls()
            try:
                await self._finish("failed", "error", error=error)
            except Exception:
                pass  # the store may be what failed; the original error matters more
            raise
        return await self._finish(*self._ending)

    async def _give_up(self, why: str) -> RunResult:
        """Another coordinator owns the run now: stop without writing anything more (it stays ``running``)."""
        logger.warning("run %s: %s", self.run_id, why)
        await self._abandon_calls()  # their records are refused (fenced); the new owner runs them
        self.engine._live.pop(self.run_id, None)
        self._end_subscriptions()
        return self._result("running", "lease_lost")

    async def _abandon_calls(self) -> None:
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for join in (self._joins or {}).values():
            if join.timer is not None:
                join.timer.cancel()
        if self._recorder is not None:
            try:
                await self._recorder.close()
            except Exception:
                pass

    def _result(self, status: str, reason: str) -> RunResult:
        self.status = status
        return RunResult(
            run_id=self.run_id,
            status=status,
            stop_reason=reason,
            supersteps=self._superstep,
            topology_version=self.topology.version,
            outputs=self._result_outputs(),
            errors=self._errors,
            aggregates=self._aggregates,
            event_source=self._summaries,
            figure_source=self.figures,
        )

    async def _finish(self, status: str, reason: str, error: BaseException | None = None) -> RunResult:
        result = self._result(status, reason)
        try:
            if self._store is not None and not self._finished_in_store:
                error_text = None if error is None else f"{type(error).__name__}: {error}"
                await self._store.finish_run(self.run_id, status, self._stored_result(result), error_text, self._lease)
        finally:
            self.engine._live.pop(self.run_id, None)
            self._end_subscriptions()
        return result

    @staticmethod
    def _stored_result(result: RunResult) -> str | None:
        # Events are stored superstep by superstep; figures are rebuilt on demand (Engine.figures).
        try:
            return _dumps(result.to_dict(events=False, figures=False))
        except (TypeError, ValueError, RecursionError):
            return None

    def _end_subscriptions(self) -> None:
        for queue in self._subscribers:
            queue.put_nowait(_END)
        self._subscribers.clear()

    def _result_outputs(self) -> dict[str, Any]:
        if self._output_ids is None:
            return dict(self._outputs)
        return {vertex: output for vertex, output in self._outputs.items() if vertex in self._output_ids}

    def _refresh_topology_caches(self) -> None:
        vertices = self.topology.vertices.values()
        self._joined = [vertex for vertex in vertices if vertex.join is not None]
        self._combining = any(vertex.combiner is not None for vertex in vertices)

    def _reset_superstep(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started: set[str] = set()
        self._pending = 0
        self._barrier: asyncio.Future[None] | None = None
        self._joins: dict[str, _Join] | None = None
        self._next_inbox: dict[str, list[Message]] = {}
        self._unresolved: list[tuple[str, str, Message]] = []
        self._step_outputs: dict[str, Any] = {}
        self._contributions: dict[str, list[Any]] = {}
        self._mutation_requests: list[tuple[str, Any]] = []
        self._dropped: dict[str, list[str]] = {}
        self._dropped_messages: list[dict[str, Any]] = []
        self._step_errors: list[dict[str, Any]] = []
        self._sent = 0
        self._retries = 0
        self._vertex_failed = False

    # --- one superstep --------------------------------------------------------------------------

    async def _run_superstep(self) -> None:
        superstep = self._superstep
        if self._heartbeat is not None and not self._heartbeat.valid():
            await self._heartbeat.renew_now()  # the store may have given the run away: ask before calling anything
        started_at = time.time()
        clock = perf_counter()
        self._reset_superstep()
        vertices = self.topology.vertices
        inbox = self._inbox
        active = list(inbox)
        if self._awake:
            active.extend(vertex_id for vertex_id in self._awake if vertex_id not in inbox)
        self._awake = {}
        if self._joined:
            self._joins = self._open_joins(active)

        replayed: list[str] = []
        attempts: dict[str, int] = {}
        records: list[CallRecord] = []
        if self._replay is not None and self._replay[0] == superstep:
            _, records, attempts = self._replay
            self._replay = None
            self._retries = sum(attempt - 1 for attempt in attempts.values())  # failed before the interruption

        run_id, states, aggregates = self.run_id, self._states, MappingProxyType(self._aggregates)
        calls: list[tuple[Vertex, VertexCall]] = []
        for vertex_id in active:
            vertex = vertices[vertex_id]
            messages = inbox.get(vertex_id)
            calls.append((vertex, VertexCall(
                run_id, vertex_id, superstep, messages if messages is not None else [], states.get(vertex_id),
                aggregates, vertex.spec, vertex.out, attempts.get(vertex_id, 1) if attempts else 1,
            )))

        if records:
            replayed = self._replay_records(records, dict((vertex.id, (vertex, call)) for vertex, call in calls))

        if replayed or self._dropped:
            done = set(replayed).union(self._dropped)
            calls = [(vertex, call) for vertex, call in calls if vertex.id not in done]
        if len(calls) == 1 and self._joins is None:
            # Nobody can drop a lone call, so it runs in this task: no task, no future. The loop
            # still gets one turn per superstep, so a long chain of quick vertices cannot starve it.
            await asyncio.sleep(0)
            self._pending = 1
            await self._call(*calls[0])
        elif calls:
            create_task = asyncio.get_running_loop().create_task
            call_vertex = self._call
            tasks = self._tasks
            for vertex, call in calls:
                tasks[vertex.id] = create_task(call_vertex(vertex, call))
            self._pending = len(tasks)
            self._barrier = asyncio.get_running_loop().create_future()
            await self._barrier
        if self._crash is not None:
            raise self._crash
        await self._close_barrier(superstep, active, replayed, started_at, clock, perf_counter())

    def _replay_records(self, records: list[CallRecord], calls: dict[str, tuple[Vertex, VertexCall]]) -> list[str]:
        """Use the recorded outcome of the calls that finished before the process died, in the order they finished."""
        replayed = []
        for record in records:
            entry = calls.get(record.vertex_id)
            if entry is None:
                continue
            vertex, call = entry
            call.attempt = record.attempt
            payload = json.loads(record.payload)
            if record.status == "ok":
                self._finished(vertex, call, _result_from_record(payload["result"]), record.latency_us / 1e6, replayed=True)
            else:
                self._failed(vertex, call, payload["error"], record.latency_us / 1e6, replayed=True)
            replayed.append(vertex.id)
        return replayed

    async def _call(self, vertex: Vertex, call: VertexCall) -> None:
        self._started.add(vertex.id)
        started = perf_counter()
        function = vertex.function
        timeout = vertex.timeout
        try:
            while True:
                try:
                    if timeout is None:
                        raw = await function(call)
                    else:
                        async with asyncio.timeout(timeout):
                            raw = await function(call)
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                        raise  # dropped by a join, or the run is cancelled
                    error: BaseException | str = "the call raised CancelledError"
                except TimeoutError as exception:
                    error = exception
                    if timeout is not None:
                        error = f"no answer within {timeout:g} s"
                        self.figures.vertex(vertex.id).timeouts += 1
                except (Exception, SystemExit) as exception:
                    # SystemExit too: a vertex that calls sys.exit() ends that call, not the process running the graph.
                    error = exception
                else:
                    self._finished(vertex, call, raw, perf_counter() - started)
                    return
                if call.attempt >= vertex.attempts:
                    self._failed(vertex, call, error, perf_counter() - started)
                    return
                self._attempt_failed(vertex, call, error)
                await asyncio.sleep(self._limits.backoff(call.attempt))
                call.attempt += 1
        except asyncio.CancelledError:
            raise
        except BaseException as crash:  # a bug of the engine: end the run with it rather than lose it in a task
            self._crash = crash
            barrier = self._barrier
            if barrier is not None and not barrier.done():
                barrier.set_result(None)
        finally:
            self._call_ended()

    def _call_ended(self) -> None:
        self._pending -= 1
        if not self._pending:
            barrier = self._barrier
            if barrier is not None and not barrier.done():
                barrier.set_result(None)

    def _finished(self, vertex: Vertex, call: VertexCall, raw: Any, latency: float, replayed: bool = False) -> None:
        vertex_id = vertex.id
        if vertex_id in self._dropped:
            return  # it ignored the cancellation; its result comes too late to be used
        if not isinstance(raw, VertexResult):
            self._finished_plain(vertex, call, raw, latency, replayed)
            return
        result = raw
        payload = None
        if self._recorder is not None and not replayed:
            try:
                payload = _dumps(result.to_dict())
            except (TypeError, ValueError, RecursionError) as error:
                self._failed(vertex, call, f"the result is not JSON-serialisable: {error}", latency)
                return

        output = result.output
        edges: list[str] = _NO_EDGES
        if result.send is not None:
            edges = self._route(vertex, send_pairs(result.send))
        elif output is not None and vertex.out:
            edges = self._broadcast(vertex, output)
        if result.state is not KEEP:
            self._states[vertex_id] = result.state
        if output is not None:
            self._outputs[vertex_id] = output
            self._step_outputs[vertex_id] = output
        if not result.halt:
            self._awake[vertex_id] = None
        if result.aggregate:
            self._contribute(vertex_id, result.aggregate)
        if result.mutations:
            self._mutation_requests.extend((vertex_id, mutation) for mutation in result.mutations)
        usage = None
        if result.tokens is not None or result.cost is not None or result.bytes is not None:
            usage = (result.tokens, result.cost, result.bytes)
        self._call_log.append((vertex_id, latency, edges, usage))
        if payload is not None:
            self._record_ok(call, payload, edges, latency)
        if self._joins is not None:
            self._sender_done(vertex, edges)

    def _finished_plain(self, vertex: Vertex, call: VertexCall, output: Any, latency: float, replayed: bool) -> None:
        """The common case, kept short: a plain value is the output, sent along every out-edge, and a vote to halt."""
        vertex_id = vertex.id
        recorder = self._recorder
        if recorder is not None and not replayed:
            try:
                encoded = _dumps(output)
            except (TypeError, ValueError, RecursionError) as error:
                self._failed(vertex, call, f"the result is not JSON-serialisable: {error}", latency)
                return
        edges = _NO_EDGES
        if output is not None:
            if vertex.out:
                edges = self._broadcast(vertex, output)
            self._outputs[vertex_id] = output
            self._step_outputs[vertex_id] = output
        self._call_log.append((vertex_id, latency, edges, None))
        if recorder is not None and not replayed:
            self._seq += 1
            targets = (vertex.out_json or vertex.out_text()) if edges is vertex.out else _ids_json(edges)
            recorder.add(
                (self.run_id, call.superstep, vertex_id, call.attempt, self._seq, "ok",
                 '{"result":{"output":' + encoded + '},"edges":' + targets + "}", round(latency * 1e6)),
                others_running=self._pending > 1,
            )
        if self._joins is not None:
            self._sender_done(vertex, edges)

    def _broadcast(self, vertex: Vertex, output: Any) -> list[str]:
        if self._joins is not None:
            return self._route(vertex, [(target, output) for target in vertex.out])
        message = Message(vertex.id, output)
        inbox = self._next_inbox
        for target in vertex.out:
            box = inbox.get(target)
            if box is None:
                inbox[target] = [message]
            else:
                box.append(message)
        self._sent += len(vertex.out)
        return vertex.out  # never changed in place (see Topology), so safe to keep

    def _record(self, call: VertexCall, status: str, payload: str, latency: float) -> None:
        self._seq += 1
        self._recorder.add(  # type: ignore[union-attr]
            (self.run_id, call.superstep, call.vertex_id, call.attempt, self._seq, status, payload, round(latency * 1e6)),
            others_running=self._pending > 1,
        )

    def _record_ok(self, call: VertexCall, payload: str, edges: list[str], latency: float) -> None:
        self._record(call, "ok", '{"result":' + payload + ',"edges":' + _ids_json(edges) + "}", latency)

    def _route(self, vertex: Vertex, pairs: list[tuple[str, Any]]) -> list[str]:
        """Stage messages for delivery; returns the targets reached along edges (late ones included)."""
        vertex_id, outs = vertex.id, vertex.outs
        known, joins, inbox = self.topology.vertices, self._joins, self._next_inbox
        along_edges = []
        for target, value in pairs:
            message = Message(vertex_id, value)
            self._sent += 1
            if target not in known:
                self._unresolved.append((vertex_id, target, message))  # may be added at the barrier
                continue
            if target in outs:
                along_edges.append(target)
                join = joins.get(target) if joins is not None else None
                if join is not None and join.closed:
                    self._dropped_messages.append({"from": vertex_id, "to": target, "reason": "late"})
                    self.figures.edge(vertex_id, target).late += 1
                    continue
            box = inbox.get(target)
            if box is None:
                inbox[target] = [message]
            else:
                box.append(message)
        return along_edges

    def _contribute(self, vertex_id: str, contributions: Mapping[str, Any]) -> None:
        for name, value in contributions.items():
            bucket = self._contributions.get(name)
            if bucket is not None:
                bucket.append(value)
            elif name in self._aggregators:
                self._contributions[name] = [value]
            else:
                self._step_errors.append({"vertex": vertex_id, "error": f"no aggregator {name!r} in the graph"})

    def _attempt_failed(self, vertex: Vertex, call: VertexCall, error: BaseException | str) -> None:
        self._retries += 1
        self.figures.vertex(vertex.id).retries += 1
        if self._recorder is not None:
            self._record(call, "failed", _dumps({"error": _describe(error)}), 0.0)

    def _failed(self, vertex: Vertex, call: VertexCall, error: BaseException | str, latency: float, replayed: bool = False) -> None:
        vertex_id = vertex.id
        if vertex_id in self._dropped:
            return
        message = _describe(error)
        self._vertex_failed = True
        self._step_errors.append({"vertex": vertex_id, "superstep": call.superstep, "attempts": call.attempt, "error": message})
        self._call_log.append((vertex_id, latency, _NO_EDGES, None))
        self.figures.vertex(vertex_id).errors += 1
        for target in vertex.out:
            self.figures.edge(vertex_id, target).errors += 1
        if self._recorder is not None and not replayed:
            self._record(call, "error", _dumps({"error": message}), latency)
        if self._joins is not None:
            self._sender_done(vertex, ())

    # --- joins ------------------------------------------------------------------------------

    def _open_joins(self, active: list[str]) -> dict[str, _Join] | None:
        active_ids = set(active)
        joins: dict[str, _Join] = {}
        loop = asyncio.get_running_loop()
        for vertex in self._joined:
            waiting = {sender for sender in vertex.inn if sender in active_ids}
            if not waiting:
                continue
            policy = vertex.join
            assert policy is not None
            need = 1 if policy.mode == "any" else policy.k if policy.mode == "quorum" else None
            join = joins[vertex.id] = _Join(need, waiting)
            if policy.mode == "deadline":
                join.timer = loop.call_later(policy.seconds, self._close_join, vertex.id)  # type: ignore[arg-type]
        return joins or None

    def _sender_done(self, vertex: Vertex, reached: list[str] | tuple[()] | set[str]) -> None:
        joins = self._joins
        assert joins is not None
        if len(reached) > 8:
            reached = set(reached)  # type: ignore[assignment]
        for target in vertex.out:
            join = joins.get(target)
            if join is None or vertex.id not in join.waiting:
                continue
            join.waiting.discard(vertex.id)
            if join.closed:
                continue
            if target in reached:
                join.arrived += 1
            if (join.need is not None and join.arrived >= join.need) or not join.waiting:
                self._close_join(target)

    def _close_join(self, target: str) -> None:
        joins = self._joins
        join = joins.get(target) if joins is not None else None
        if join is None or join.closed:
            return
        join.closed = True
        if join.timer is not None:
            join.timer.cancel()
        for sender in sorted(join.waiting):
            if self._droppable(sender):
                self._drop(sender)

    def _droppable(self, vertex_id: str) -> bool:
        if vertex_id in self._dropped or (self._output_ids is not None and vertex_id in self._output_ids):
            return False
        vertex = self.topology.vertices[vertex_id]
        if not vertex.out:
            return False
        joins = self._joins
        assert joins is not None
        for target in vertex.out:
            join = joins.get(target)
            if join is None or not join.closed:
                return False
        return True

    def _drop(self, vertex_id: str) -> None:
        vertex = self.topology.vertices[vertex_id]
        self._dropped[vertex_id] = list(vertex.out)
        task = self._tasks.get(vertex_id)
        if task is not None:
            task.cancel()
            if vertex_id not in self._started:
                # Cancelled before its first step, the coroutine never runs, so neither does its
                # bookkeeping: count it out here.
                self._call_ended()
        self.figures.vertex(vertex_id).drops += 1
        joins = self._joins
        assert joins is not None
        for target in vertex.out:
            self.figures.edge(vertex_id, target).drops += 1
            joins[target].waiting.discard(vertex_id)

    # --- barrier ------------------------------------------------------------------------------

    async def _close_barrier(self, superstep: int, active: list[str], replayed: list[str], started_at: float, clock: float, computed: float) -> None:
        if self._joins is not None:
            for join in self._joins.values():
                if join.timer is not None:
                    join.timer.cancel()
        records: list[Any] = []
        if self._recorder is not None:
            records = self._recorder.take() if self._recorder.idle else await self._recorder.take_rest()
        topology = self.topology
        vertices = topology.vertices
        inbox = self._next_inbox
        version_before = topology.version
        applied: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        removed: list[str] = []
        if self._mutation_requests:
            if not self._owns_topology:
                self.topology = topology = topology.copy()
                vertices = topology.vertices
                self._owns_topology = True
            report = topology.apply(self._mutation_requests)
            applied, refused, removed = report.applied, report.refused, report.removed_vertices
            for vertex_id in removed:
                self._states.pop(vertex_id, None)
                self._awake.pop(vertex_id, None)
                for message in inbox.pop(vertex_id, ()):
                    self._dropped_messages.append({"from": message.sender, "to": vertex_id, "reason": "vertex removed"})
            if applied:
                self._refresh_topology_caches()
        for sender, target, message in self._unresolved:
            if target in vertices:
                inbox.setdefault(target, []).append(message)
            else:
                self._dropped_messages.append({"from": sender, "to": target, "reason": "no such vertex"})
        delivered = sum(map(len, inbox.values()))
        self._combine(inbox, self._step_errors)
        self._aggregates = self._fold_aggregates()
        self._inbox = inbox

        event = SuperstepEvent(
            run_id=self.run_id,
            superstep=superstep,
            topology_version=topology.version,
            active=active,
            replayed=replayed,
            messages_sent=self._sent,
            messages_delivered=delivered,
            outputs=self._step_outputs,
            mutations_applied=applied,
            mutations_refused=refused,
            dropped_calls=self._dropped,
            dropped_messages=self._dropped_messages,
            errors=self._step_errors,
            retries=self._retries,
            aggregates=self._aggregates,
            started_at=started_at,
            compute_seconds=computed - clock,
            barrier_seconds=perf_counter() - computed,
        )
        self._errors.extend(self._step_errors)
        self._superstep = superstep + 1
        self._ending = self._ending_now()
        if self._store is not None:
            finished = None
            if self._ending is not None:
                # The last checkpoint also ends the run in the store: one commit less per run.
                finished = (self._ending[0], self._stored_result(self._result(*self._ending)))
            state = {
                "inbox": {target: [[message.sender, message.value] for message in box] for target, box in inbox.items()},
                "awake": list(self._awake),
                "aggregates": self._aggregates,
                "removed": removed,
                "topology_version": topology.version,
            }
            try:
                state_json = _dumps(state)
            except (TypeError, ValueError, RecursionError) as error:
                # Results were checked when they came back; only a combiner or an aggregator can get here.
                raise ValueError(f"superstep {superstep}: a combined message or an aggregate is not JSON: {error}") from error
            sent_at = time.monotonic()
            await self._store.checkpoint(Checkpoint(
                run_id=self.run_id,
                superstep=superstep,
                state=state_json,
                event=_dumps(event.compact_summary()),
                topology_version=topology.version,
                topology=_dumps(topology.snapshot()) if topology.version != version_before else None,
                records=records,
                finished=finished,
                lease=self._lease,
            ))
            if self._heartbeat is not None:
                self._heartbeat.renewed(sent_at)
            self._finished_in_store = finished is not None
        self._summaries.append(event)
        self._emitted.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)
        if self._on_event is not None:
            await self._call_on_event(event)

    def _ending_now(self) -> tuple[str, str] | None:
        """(status, stop reason) if the run ends before the next superstep, else None."""
        if self._vertex_failed and self._limits.on_vertex_error == "fail":
            return "failed", "vertex_failed"
        if not self._inbox and not self._awake:
            return "done", "halted"
        if self._superstep >= self._limits.max_supersteps:
            return "done", "max_supersteps"
        return None

    def _combine(self, inbox: dict[str, list[Message]], errors: list[dict[str, Any]]) -> None:
        if not self._combining:
            return
        vertices = self.topology.vertices
        for target, box in inbox.items():
            combiner = vertices[target].combiner
            if combiner is None:
                continue
            try:
                inbox[target] = [Message(None, combiner([message.value for message in box]))]
            except Exception as error:  # the messages stay as they are
                errors.append({"vertex": target, "error": f"combiner {vertices[target].spec.combiner!r} failed: {_describe(error)}"})

    def _fold_aggregates(self) -> dict[str, Any]:
        aggregates: dict[str, Any] = {}
        for name, (fold, fold_name) in self._aggregators.items():
            values = self._contributions.get(name)
            if not values:
                aggregates[name] = empty_aggregate(fold_name)
                continue
            try:
                aggregates[name] = fold(values)
            except Exception as error:
                aggregates[name] = None
                self._step_errors.append({"aggregator": name, "error": f"aggregator {fold_name!r} failed: {_describe(error)}"})
        return aggregates

    async def _call_on_event(self, event: SuperstepEvent) -> None:
        if self._on_event is not None:
            try:
                pending = self._on_event(event)
                if pending is not None:
                    await pending
            except Exception:  # a broken progress display must not break the run
                logger.exception("run %s: the on_event callback failed on superstep %d", self.run_id, event.superstep)

    # --- resume -------------------------------------------------------------------------------

    def _start_with(self, input: Any) -> None:
        self._inbox = {entry: [Message(None, input)] for entry in self.graph.entry}
        self._combine(self._inbox, [])

    def _restore(self, saved: SavedRun, every_call: bool = False) -> None:
        """Rebuild the run as it was at its last checkpoint, and plan the replay of the interrupted superstep."""
        self._superstep = saved.info.next_superstep
        if saved.supersteps:
            state = json.loads(saved.supersteps[-1][1])
            self._inbox = {target: [Message(sender, value) for sender, value in box] for target, box in state["inbox"].items()}
            self._awake = dict.fromkeys(state["awake"])
            self._aggregates = state["aggregates"]
        else:
            self._start_with(json.loads(saved.input))
        removals: list[tuple[int, list[str]]] = []
        for superstep, _, event in saved.supersteps:
            summary = expand_summary(json.loads(event))
            self._summaries.append(summary)
            self._errors.extend(summary["errors"])
            self._restore_drop_figures(summary)
            removed = [m["id"] for m in summary["mutations_applied"] if m["op"] == "remove_vertex"]
            if removed:
                removals.append((superstep, removed))

        def remove_until(superstep: int) -> None:
            while removals and removals[0][0] < superstep:
                for vertex_id in removals.pop(0)[1]:
                    self._states.pop(vertex_id, None)

        in_progress: list[CallRecord] = []
        attempts: dict[str, int] = {}
        for record in saved.calls:
            self._seq = max(self._seq, record.seq)
            if record.superstep < self._superstep:
                remove_until(record.superstep)
                if record.status == "ok":
                    # ok records are the only source of states and outputs (see mesh.pregel.checkpoint)
                    result = json.loads(record.payload)["result"]
                    if "state" in result:
                        self._states[record.vertex_id] = result["state"]
                    if result.get("output") is not None:
                        self._outputs[record.vertex_id] = result["output"]
            if record.superstep < self._superstep or every_call:
                self._restore_call_figures(record)
            elif record.status == "failed":
                attempts[record.vertex_id] = max(attempts.get(record.vertex_id, 1), record.attempt + 1)
                self.figures.vertex(record.vertex_id).retries += 1
            else:
                in_progress.append(record)
        remove_until(self._superstep)
        self._states = {vertex_id: state for vertex_id, state in self._states.items() if state is not None}
        self._replay = (self._superstep, in_progress, attempts)

    def _restore_call_figures(self, record: CallRecord) -> None:
        if record.status == "failed":
            self.figures.vertex(record.vertex_id).retries += 1
            return
        payload = json.loads(record.payload)
        if record.status == "error":
            self.figures.vertex(record.vertex_id).errors += 1
            self.figures.log_call(record.vertex_id, record.latency_us / 1e6, _NO_EDGES, None)
            return
        result = payload["result"]
        usage = (result.get("tokens"), result.get("cost"), result.get("bytes"))
        self.figures.log_call(
            record.vertex_id, record.latency_us / 1e6, payload["edges"], None if usage == (None, None, None) else usage
        )

    def _restore_drop_figures(self, summary: dict[str, Any]) -> None:
        for vertex_id, targets in summary["dropped_calls"].items():
            self.figures.vertex(vertex_id).drops += 1
            for target in targets:
                self.figures.edge(vertex_id, target).drops += 1
        for dropped in summary["dropped_messages"]:
            if dropped["reason"] == "late":
                self.figures.edge(dropped["from"], dropped["to"]).late += 1


def _aggregators_of(graph: GraphSpec) -> dict[str, tuple[Callable[[list[Any]], Any], str]]:
    """name -> (fold, the name or import path it came from); raises GraphBuildError naming every bad one."""
    aggregators, problems = {}, []
    for name, fold in graph.aggregators.items():
        try:
            aggregators[name] = (resolve_aggregator(fold), fold)
        except LookupError as error:
            problems.append(f"aggregator {name!r}: {error}")
    if problems:
        raise GraphBuildError(problems)
    return aggregators


def _ids_json(ids: list[str]) -> str:
    # Vertex ids match VERTEX_ID_PATTERN (no quote, no backslash): they need no escaping.
    return '["' + '","'.join(ids) + '"]' if ids else "[]"


def _result_from_record(data: dict[str, Any]) -> VertexResult:
    return VertexResult(
        output=data.get("output"),
        send=data.get("send"),
        halt=data.get("halt", True),
        state=data["state"] if "state" in data else KEEP,
        mutations=data.get("mutations", ()),
        aggregate=data.get("aggregate"),
        tokens=data.get("tokens"),
        cost=data.get("cost"),
        bytes=data.get("bytes"),
    )


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
