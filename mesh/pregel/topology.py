"""The live topology of a run: vertices with their callables, edges, and mutations applied at the barrier.

Mutations asked for in one superstep are applied together at its barrier, as
one batch, in this order:

1. edge removals,
2. vertex removals (a removed vertex loses its edges, state and pending messages),
3. vertex additions,
4. edge additions,

and within each kind by requesting vertex id, then by the order in which
that vertex listed them. So a vertex removed and added in the same batch is
replaced, and an edge may be added to a vertex added in the same batch.
Identical requests from several vertices are merged and applied once.
Conflicts are resolved, never fatal; a refused mutation is reported with its
reason and the run goes on:

- two additions of one vertex id with different specs: the one from the
  smallest requesting vertex id wins, the others are refused;
- adding a vertex id that exists, or an edge that exists: refused;
- removing a vertex or edge that does not exist: refused;
- removing a vertex named in the graph's ``entry`` or ``outputs``: refused;
- an added vertex whose spec is invalid or whose factory raises (unknown
  kind, bad import path, ...): refused;
- an edge whose end is missing once the batch's vertex changes are applied:
  refused.

The topology version is bumped once per batch in which anything was applied.
A ``quorum`` join is checked against the in-degree only in the static spec:
at run time a quorum larger than the senders of a superstep waits for all of
them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mesh.pregel.functions import Fold, VertexFactory, VertexFunction, resolve_combiner
from mesh.pregel.spec import (
    AddEdge,
    AddVertex,
    GraphSpec,
    JoinPolicy,
    RemoveEdge,
    RemoveVertex,
    VertexSpec,
    parse_mutation,
)


class GraphBuildError(ValueError):
    """The graph's vertices cannot be turned into callables; one problem per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:10]
        if len(problems) > len(shown):
            shown = [*shown, f"... and {len(problems) - len(shown)} more"]
        super().__init__("\n".join(shown))


class Vertex:
    """A vertex of the live topology, with everything the hot path needs resolved once."""

    __slots__ = ("id", "spec", "function", "out", "outs", "out_json", "inn", "join", "combiner", "timeout", "attempts", "pinned")

    def __init__(self, spec: VertexSpec, function: VertexFunction, combiner: Fold | None, graph: GraphSpec):
        self.id = spec.id
        self.spec = spec
        self.function = function
        self.out: list[str] = []
        self.outs: set[str] = set()  # the same targets, for membership tests on the hot path
        self.out_json: str | None = None  # the same as JSON text, made when first needed
        self.inn: list[str] = []
        # None stands for ``all``, the join that needs no bookkeeping.
        self.join: JoinPolicy | None = None if spec.join.mode == "all" else spec.join
        self.combiner = combiner
        self.timeout = spec.timeout_seconds or graph.limits.vertex_timeout_seconds
        retries = spec.retries if spec.retries is not None else graph.limits.retries
        self.attempts = 1 + retries
        self.pinned = spec.id in graph.entry or spec.id in (graph.outputs or ())

    def out_text(self) -> str:
        """``out`` as JSON text (call records repeat it for every call that sends along every out-edge)."""
        if self.out_json is None:
            # Vertex ids match VERTEX_ID_PATTERN (no quote, no backslash): they need no escaping.
            self.out_json = '["' + '","'.join(self.out) + '"]' if self.out else "[]"
        return self.out_json


@dataclass
class MutationReport:
    applied: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    removed_vertices: list[str] = field(default_factory=list)
    added_vertices: list[str] = field(default_factory=list)


def _canonical(mutation: dict[str, Any]) -> str:
    return json.dumps(mutation, sort_keys=True, default=str)


class Topology:
    def __init__(self, graph: GraphSpec, factory: VertexFactory, version: int = 0):
        self.graph = graph
        self.factory = factory
        self.version = version
        self.vertices: dict[str, Vertex] = {}

    @classmethod
    def build(
        cls,
        graph: GraphSpec,
        factory: VertexFactory,
        *,
        vertices: Iterable[VertexSpec] | None = None,
        edges: Iterable[tuple[str, str]] | None = None,
        version: int = 0,
    ) -> Topology:
        """The topology of ``graph`` (or of a snapshot's vertices and edges); raises GraphBuildError."""
        topology = cls(graph, factory, version)
        problems: list[str] = []
        for spec in graph.vertices if vertices is None else vertices:
            try:
                topology._add_vertex(spec)
            except Exception as error:
                problems.append(f"vertex {spec.id!r}: {error}")
        if problems:
            raise GraphBuildError(problems)
        vertices_by_id = topology.vertices
        for source, target in ((e.source, e.target) for e in graph.edges) if edges is None else edges:
            vertices_by_id[source].out.append(target)  # in place: nothing refers to these lists yet
            vertices_by_id[source].outs.add(target)
            vertices_by_id[target].inn.append(source)
        return topology

    def _make_vertex(self, spec: VertexSpec) -> Vertex:
        combiner = resolve_combiner(spec.combiner) if spec.combiner else None
        function = self.factory(spec)
        if not callable(function):
            raise TypeError(f"the vertex factory returned {function!r}, which is not callable")
        return Vertex(spec, function, combiner, self.graph)

    def _add_vertex(self, spec: VertexSpec) -> None:
        self.vertices[spec.id] = self._make_vertex(spec)

    # Edge lists are replaced, never changed in place: calls and figures keep
    # references to a vertex's out-edges as they were when the call ran.
    def _add_edge(self, source: str, target: str) -> None:
        self.vertices[source].out = [*self.vertices[source].out, target]
        self.vertices[source].out_json = None
        self.vertices[source].outs.add(target)
        self.vertices[target].inn = [*self.vertices[target].inn, source]

    def _remove_edge(self, source: str, target: str) -> None:
        self.vertices[source].out = [name for name in self.vertices[source].out if name != target]
        self.vertices[source].out_json = None
        self.vertices[source].outs.discard(target)
        self.vertices[target].inn = [name for name in self.vertices[target].inn if name != source]

    def copy(self) -> Topology:
        """An independent copy (runs share a compiled topology until their first mutation)."""
        twin = Topology(self.graph, self.factory, self.version)
        for vertex_id, vertex in self.vertices.items():
            clone = Vertex.__new__(Vertex)
            for name in Vertex.__slots__:
                setattr(clone, name, getattr(vertex, name))
            clone.out, clone.outs, clone.inn = list(vertex.out), set(vertex.outs), list(vertex.inn)
            twin.vertices[vertex_id] = clone
        return twin

    def has_edge(self, source: str, target: str) -> bool:
        vertex = self.vertices.get(source)
        return vertex is not None and target in vertex.outs

    def edges(self) -> Iterator[tuple[str, str]]:
        for vertex in self.vertices.values():
            for target in vertex.out:
                yield vertex.id, target

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready picture of the topology, from which ``restore`` rebuilds it."""
        return {
            "version": self.version,
            "vertices": [vertex.spec.model_dump(mode="json", by_alias=True) for vertex in self.vertices.values()],
            "edges": [list(edge) for edge in self.edges()],
        }

    @classmethod
    def restore(cls, graph: GraphSpec, factory: VertexFactory, snapshot: dict[str, Any]) -> Topology:
        specs = [VertexSpec.model_validate(data) for data in snapshot["vertices"]]
        edges = [(source, target) for source, target in snapshot["edges"]]
        return cls.build(graph, factory, vertices=specs, edges=edges, version=snapshot["version"])

    def apply(self, requests: list[tuple[str, Any]]) -> MutationReport:
        """Apply one barrier's mutations, ``[(requesting vertex, mutation), ...]``, in the documented order."""
        report = MutationReport()
        # Python's sort is stable, so a vertex's own requests keep their order.
        ordered = sorted(enumerate(requests), key=lambda item: (item[1][0], item[0]))
        by_kind: dict[type, list[tuple[str, Any, dict[str, Any]]]] = {RemoveEdge: [], RemoveVertex: [], AddVertex: [], AddEdge: []}
        for _, (requester, raw) in ordered:
            try:
                mutation = parse_mutation(raw)
            except ValidationError as error:
                report.refused.append({"mutation": _jsonable(raw), "requested_by": requester, "reason": _first_lines(error)})
                continue
            by_kind[type(mutation)].append((requester, mutation, mutation.model_dump(mode="json", by_alias=True)))

        merged: dict[str, dict[str, Any]] = {}

        def merge(requester: str, as_dict: dict[str, Any]) -> bool:
            """True if an identical mutation was already applied in this batch (then just note the requester)."""
            entry = merged.get(_canonical(as_dict))
            if entry is None:
                return False
            if requester not in entry["requested_by"]:
                entry["requested_by"].append(requester)
            return True

        def applied(requester: str, as_dict: dict[str, Any], **details: Any) -> None:
            entry = {**as_dict, "requested_by": [requester], **details}
            merged[_canonical(as_dict)] = entry
            report.applied.append(entry)

        def refused(requester: str, as_dict: dict[str, Any], reason: str) -> None:
            report.refused.append({"mutation": as_dict, "requested_by": requester, "reason": reason})

        for requester, mutation, as_dict in by_kind[RemoveEdge]:
            if merge(requester, as_dict):
                continue
            if self.has_edge(mutation.source, mutation.target):
                self._remove_edge(mutation.source, mutation.target)
                applied(requester, as_dict)
            else:
                refused(requester, as_dict, f"there is no edge {mutation.source} -> {mutation.target}")

        for requester, mutation, as_dict in by_kind[RemoveVertex]:
            if merge(requester, as_dict):
                continue
            vertex = self.vertices.get(mutation.id)
            if vertex is None:
                refused(requester, as_dict, f"there is no vertex {mutation.id!r}")
            elif vertex.pinned:
                refused(requester, as_dict, f"vertex {mutation.id!r} is an entry or output of the graph")
            else:
                lost_edges = [[source, vertex.id] for source in vertex.inn]
                lost_edges += [[vertex.id, target] for target in vertex.out if target != vertex.id]  # a self-loop is in both
                for source, target in lost_edges:
                    self._remove_edge(source, target)
                del self.vertices[vertex.id]
                report.removed_vertices.append(vertex.id)
                applied(requester, as_dict, edges_removed=lost_edges)

        first_adder: dict[str, tuple[str, str]] = {}
        for requester, mutation, as_dict in by_kind[AddVertex]:
            if merge(requester, as_dict):
                continue
            vertex_id = mutation.vertex.id
            if vertex_id in first_adder:
                winner, _ = first_adder[vertex_id]
                refused(requester, as_dict, f"vertex {vertex_id!r} is added with another spec by {winner!r}, which comes first")
                continue
            first_adder[vertex_id] = (requester, _canonical(as_dict))
            if vertex_id in self.vertices:
                refused(requester, as_dict, f"vertex {vertex_id!r} exists")
                continue
            foreign = _foreign_function(mutation.vertex, self.graph.runtime_modules())
            if foreign is not None:
                refused(requester, as_dict, f"vertex {vertex_id!r} names {foreign!r}, outside the modules this graph allows "
                                            "(graphs.NAME.allow_modules in mesh.yaml)")
                continue
            try:
                self._add_vertex(mutation.vertex)
            except Exception as error:
                refused(requester, as_dict, f"vertex {vertex_id!r} cannot be made: {error}")
                continue
            report.added_vertices.append(vertex_id)
            applied(requester, as_dict)

        for requester, mutation, as_dict in by_kind[AddEdge]:
            if merge(requester, as_dict):
                continue
            missing = [name for name in (mutation.source, mutation.target) if name not in self.vertices]
            if missing:
                refused(requester, as_dict, f"there is no vertex {missing[0]!r}")
            elif self.has_edge(mutation.source, mutation.target):
                refused(requester, as_dict, f"edge {mutation.source} -> {mutation.target} exists")
            else:
                self._add_edge(mutation.source, mutation.target)
                applied(requester, as_dict)

        if report.applied:
            self.version += 1
        return report


def _first_lines(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'mutation'}: {e['msg']}" for e in error.errors())


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _foreign_function(spec: VertexSpec, allowed: set[str]) -> str | None:
    """The function or combiner path of ``spec`` whose module is not in ``allowed``, if any.

    Topology changes come from what vertices answer, and a remote vertex's
    answer is content: a vertex added at run time may only name code the
    graph's author already chose to run.
    """
    builtin_combiners = {"sum", "min", "max", "concat", "list", "last"}
    for path in (getattr(spec, "function", None), spec.combiner):
        if not isinstance(path, str) or (path in builtin_combiners and ":" not in path):
            continue
        if path.partition(":")[0] not in allowed:
            return path
    return None
