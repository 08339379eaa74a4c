"""The coordinator's Pregel engine: graphs of async vertices run in supersteps, with joins, mutations and checkpoints.

Knows nothing of A2A: a vertex is an async callable made from its spec by a
vertex factory (``python_vertex_factory`` for kind ``python``); the runtime
registers its own kinds with ``register_vertex_kind`` and passes its factory
to ``Engine``::

    async def shout(call: VertexCall) -> str:           # plain value: sent along every out-edge, then halt
        return call.inbox[0].upper()

    graph = GraphSpec.model_validate({"entry": "a", "vertices": [...], "edges": ["a -> b"]})
    async with open_store(".mesh/pregel.db") as store:  # or postgresql://...; leave out for no durability
        engine = Engine(store)
        run = await engine.start(graph, "hello")
        async for event in run.events():               # one SuperstepEvent per superstep
            ...
        result = await run.result()                     # RunResult: outputs, errors, events, figures
        # after a crash: result = await (await engine.resume(run_id)).result()

Semantics: ``mesh.pregel.engine`` (supersteps, joins, failures, barrier,
durability), ``mesh.pregel.topology`` (mutations), ``mesh.pregel.checkpoint``
(what is stored), ``mesh.pregel.figures`` (what is measured).
"""

from mesh.pregel.checkpoint import (
    CallRecord,
    CheckpointStore,
    PostgresStore,
    RunInfo,
    SQLiteStore,
    StoreError,
    open_store,
)
from mesh.pregel.engine import CompiledGraph, Engine, Run, RunNotFound, RunNotResumable
from mesh.pregel.events import RunResult, SuperstepEvent
from mesh.pregel.export import to_dot, to_mermaid
from mesh.pregel.functions import ImportPathError, UnknownVertexKind, VertexFactory, python_vertex_factory
from mesh.pregel.spec import (
    AddEdge,
    AddVertex,
    EdgeSpec,
    GraphSpec,
    JoinPolicy,
    Limits,
    PythonVertex,
    RemoveEdge,
    RemoveVertex,
    VertexSpec,
    register_vertex_kind,
)
from mesh.pregel.topology import GraphBuildError
from mesh.pregel.vertex import KEEP, Message, VertexCall, VertexResult

__all__ = [
    "KEEP",
    "AddEdge",
    "AddVertex",
    "CallRecord",
    "CheckpointStore",
    "CompiledGraph",
    "EdgeSpec",
    "Engine",
    "GraphBuildError",
    "GraphSpec",
    "ImportPathError",
    "JoinPolicy",
    "Limits",
    "Message",
    "PostgresStore",
    "PythonVertex",
    "RemoveEdge",
    "RemoveVertex",
    "Run",
    "RunInfo",
    "RunNotFound",
    "RunNotResumable",
    "RunResult",
    "SQLiteStore",
    "StoreError",
    "SuperstepEvent",
    "UnknownVertexKind",
    "VertexCall",
    "VertexFactory",
    "VertexResult",
    "VertexSpec",
    "open_store",
    "python_vertex_factory",
    "register_vertex_kind",
    "to_dot",
    "to_mermaid",
]
