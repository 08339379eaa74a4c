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

import importlib
from typing import Any

# Names are imported on first use, so that ``mesh.pregel.spec`` (which
# mesh.yaml's validation needs) does not load the engine or a database driver.
_WHERE = {
    "AddEdge": "mesh.pregel.spec",
    "AddVertex": "mesh.pregel.spec",
    "CallRecord": "mesh.pregel.checkpoint",
    "CheckpointStore": "mesh.pregel.checkpoint",
    "CompiledGraph": "mesh.pregel.engine",
    "EdgeSpec": "mesh.pregel.spec",
    "Engine": "mesh.pregel.engine",
    "GraphBuildError": "mesh.pregel.topology",
    "GraphSpec": "mesh.pregel.spec",
    "ImportPathError": "mesh.pregel.functions",
    "JoinPolicy": "mesh.pregel.spec",
    "KEEP": "mesh.pregel.vertex",
    "Lease": "mesh.pregel.checkpoint",
    "LeaseLost": "mesh.pregel.checkpoint",
    "Limits": "mesh.pregel.spec",
    "Message": "mesh.pregel.vertex",
    "PostgresStore": "mesh.pregel.checkpoint",
    "PythonVertex": "mesh.pregel.spec",
    "RemoveEdge": "mesh.pregel.spec",
    "RemoveVertex": "mesh.pregel.spec",
    "Run": "mesh.pregel.engine",
    "RunInfo": "mesh.pregel.checkpoint",
    "RunNotFound": "mesh.pregel.engine",
    "RunNotResumable": "mesh.pregel.engine",
    "RunResult": "mesh.pregel.events",
    "SQLiteStore": "mesh.pregel.checkpoint",
    "StoreError": "mesh.pregel.checkpoint",
    "SuperstepEvent": "mesh.pregel.events",
    "UnknownVertexKind": "mesh.pregel.functions",
    "VertexCall": "mesh.pregel.vertex",
    "VertexFactory": "mesh.pregel.functions",
    "VertexResult": "mesh.pregel.vertex",
    "VertexSpec": "mesh.pregel.spec",
    "open_store": "mesh.pregel.checkpoint",
    "python_vertex_factory": "mesh.pregel.functions",
    "register_vertex_kind": "mesh.pregel.spec",
    "to_dot": "mesh.pregel.export",
    "to_mermaid": "mesh.pregel.export",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mesh.pregel' has no attribute {name!r}")


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
    "Lease",
    "LeaseLost",
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
