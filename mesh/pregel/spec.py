"""Graph specs: the pydantic models of a Pregel graph (vertices, edges, joins, combiners, limits, mutations).

A graph is a plain pydantic model validated from a dict, so it can sit under
``graphs:`` in mesh.yaml. Every model forbids unknown keys, and every error
names the key it is about (``edges.2.to: unknown vertex 'x'``).

YAML shape::

    description: triage a ticket          # optional
    entry: [intake]                       # vertices active at superstep 0 (a string is a list of one)
    outputs: [report]                     # optional; default: every vertex that produced output
    vertices:
      - id: intake
        kind: python                      # or a kind registered by the runtime (see register_vertex_kind)
        function: my.module:intake        # kind-specific fields, not interpreted by the engine
        params: {threshold: 3}
      - id: report
        kind: python
        function: my.module:report
        join: {quorum: 2}                 # all (default) | any | {quorum: K} | {deadline: SECONDS}
        combiner: concat                  # sum | min | max | concat | list | last | module:function
        timeout_seconds: 30               # overrides limits.vertex_timeout_seconds
        retries: 2                        # overrides limits.retries
    edges:
      - {from: intake, to: report}
      - intake -> report                  # the same edge, short form
    aggregators: {votes: sum}             # sum | min | max | count | list | module:function
    limits:
      max_supersteps: 100
      vertex_timeout_seconds: 60          # none by default
      retries: 0                          # extra attempts after a failure or a timeout
      backoff_seconds: 0.1                # first delay; multiplied by backoff_factor each retry
      backoff_factor: 2.0
      backoff_max_seconds: 30
      on_vertex_error: continue           # continue (the vertex halts, the run goes on) | fail
    guard: {...}                          # free; interpreted by the runtime, not by the engine
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

VERTEX_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
IMPORT_PATH_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
BUILTIN_COMBINERS = ("sum", "min", "max", "concat", "list", "last")
BUILTIN_AGGREGATORS = ("sum", "min", "max", "count", "list")

VertexId = Annotated[str, Field(pattern=VERTEX_ID_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _problem(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("graph_spec", message), loc=loc, input=value)


def _raise_problems(title: str, problems: list[InitErrorDetails]) -> None:
    if problems:
        # A ValidationError raised inside a validator keeps each problem's own
        # location, prefixed by where the model sits (graphs.NAME.edges.2.to).
        raise ValidationError.from_exception_data(title, problems)


def _check_function_name(value: str, builtins: tuple[str, ...], what: str) -> str:
    if value in builtins or IMPORT_PATH_PATTERN.match(value):
        return value
    raise ValueError(f"unknown {what} {value!r}: use one of {', '.join(builtins)} or a module:function import path")


def _combiner_name(value: str) -> str:
    return _check_function_name(value, BUILTIN_COMBINERS, "combiner")


def _aggregator_name(value: str) -> str:
    return _check_function_name(value, BUILTIN_AGGREGATORS, "aggregator")


CombinerName = Annotated[str, AfterValidator(_combiner_name)]
AggregatorName = Annotated[str, AfterValidator(_aggregator_name)]


def _unknown_vertex(name: str, known: dict[str, int]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"unknown vertex {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


class JoinPolicy(BaseModel):
    """When a vertex's barrier may close: ``all``, ``any``, ``{quorum: K}`` or ``{deadline: SECONDS}``.

    Validated from the short forms above; ``mode`` holds which one, ``k`` and
    ``seconds`` its parameter. Serialised back to the short form.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["all", "any", "quorum", "deadline"] = "all"
    k: int | None = Field(default=None, ge=1)
    seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if isinstance(data, JoinPolicy):
            return {"mode": data.mode, "k": data.k, "seconds": data.seconds}
        if isinstance(data, dict) and "mode" in data:
            return data
        if isinstance(data, str):
            if data in ("all", "any"):
                return {"mode": data}
        elif isinstance(data, dict) and len(data) == 1:
            if "quorum" in data:
                return {"mode": "quorum", "k": data["quorum"]}
            if "deadline" in data:
                return {"mode": "deadline", "seconds": data["deadline"]}
        raise ValueError(f"join must be 'all', 'any', {{quorum: K}} or {{deadline: SECONDS}}, not {data!r}")

    @model_validator(mode="after")
    def _parameter_of_mode(self) -> JoinPolicy:
        if (self.mode == "quorum") != (self.k is not None) or (self.mode == "deadline") != (self.seconds is not None):
            raise ValueError("k goes with mode quorum and seconds with mode deadline, and nothing else")
        return self

    @model_serializer
    def _to_short_form(self) -> Any:
        if self.mode == "quorum":
            return {"quorum": self.k}
        if self.mode == "deadline":
            return {"deadline": self.seconds}
        return self.mode

    def __str__(self) -> str:
        if self.mode == "quorum":
            return f"quorum {self.k}"
        if self.mode == "deadline":
            return f"deadline {self.seconds:g}s"
        return self.mode


JOIN_ALL = JoinPolicy(mode="all")


_VERTEX_KINDS: dict[str, type[VertexSpec]] = {}


class VertexSpec(Strict):
    """One vertex: an id, a kind and the fields every kind shares.

    Validating a dict as ``VertexSpec`` gives an instance of the model
    registered for its ``kind`` (``PythonVertex`` for ``python``), which holds
    the kind-specific fields; the engine never reads those, the vertex
    factory does.
    """

    id: VertexId
    kind: str
    join: JoinPolicy = JOIN_ALL
    combiner: CombinerName | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0)

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch_on_kind(cls, data: Any, handler: Any) -> Any:
        if cls is VertexSpec and isinstance(data, dict):
            kind = data.get("kind")
            if kind is None:
                return handler(data)  # reports the missing kind
            model = _VERTEX_KINDS.get(kind) if isinstance(kind, str) else None
            if model is None:
                known = ", ".join(sorted(_VERTEX_KINDS))
                _raise_problems(cls.__name__, [_problem(("kind",), f"unknown vertex kind {kind!r} (known kinds: {known})", kind)])
            return model.model_validate(data)
        return handler(data)


def register_vertex_kind(model: type[VertexSpec]) -> type[VertexSpec]:
    """Make ``model`` the spec of the vertices whose ``kind`` is its ``kind`` literal; usable as a decorator."""
    annotation = model.model_fields["kind"].annotation
    kinds = getattr(annotation, "__args__", ())
    if len(kinds) != 1 or not isinstance(kinds[0], str):
        raise TypeError(f"{model.__name__}.kind must be a Literal of one string, like Literal['agent']")
    _VERTEX_KINDS[kinds[0]] = model
    return model


def vertex_kinds() -> dict[str, type[VertexSpec]]:
    return dict(_VERTEX_KINDS)


@register_vertex_kind
class PythonVertex(VertexSpec):
    """A local Python function, named by its ``module:function`` import path (tests, benchmarks, local steps)."""

    kind: Literal["python"] = "python"
    function: str
    params: dict[str, Any] = {}

    @field_validator("function")
    @classmethod
    def _import_path(cls, value: str) -> str:
        if not IMPORT_PATH_PATTERN.match(value):
            raise ValueError(f"function must be a module:function import path, not {value!r}")
        return value


class EdgeSpec(Strict):
    """A directed edge ``{from: a, to: b}``, or the short form ``"a -> b"``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    source: VertexId = Field(alias="from")
    target: VertexId = Field(alias="to")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            source, arrow, target = data.partition("->")
            if not arrow or not source.strip() or not target.strip():
                raise ValueError(f"an edge is {{from: A, to: B}} or 'A -> B', not {data!r}")
            return {"from": source.strip(), "to": target.strip()}
        return data

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}"


class Limits(Strict):
    max_supersteps: int = Field(default=100, ge=1)
    vertex_timeout_seconds: float | None = Field(default=None, gt=0)
    retries: int = Field(default=0, ge=0)
    backoff_seconds: float = Field(default=0.1, ge=0)
    backoff_factor: float = Field(default=2.0, ge=1)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    on_vertex_error: Literal["continue", "fail"] = "continue"

    def backoff(self, failed_attempts: int) -> float:
        """Delay before the attempt that follows ``failed_attempts`` failures (exponential, capped)."""
        return min(self.backoff_seconds * self.backoff_factor ** (failed_attempts - 1), self.backoff_max_seconds)


class GraphSpec(Strict):
    """A whole graph; see the module docstring for its YAML shape."""

    description: str = ""
    vertices: list[SerializeAsAny[VertexSpec]] = Field(min_length=1)
    edges: list[EdgeSpec] = []
    entry: list[VertexId] = Field(min_length=1)
    outputs: list[VertexId] | None = None
    aggregators: dict[VertexId, AggregatorName] = {}
    limits: Limits = Limits()
    guard: dict[str, Any] | None = None
    # Modules whose functions vertices added at run time (python vertices, combiners) may name;
    # None: the modules this graph's own vertices, combiners and aggregators name.
    allow_modules: list[str] | None = None

    @field_validator("entry", "outputs", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> GraphSpec:
        problems: list[InitErrorDetails] = []
        ids: dict[str, int] = {}
        for index, vertex in enumerate(self.vertices):
            if vertex.id in ids:
                problems.append(_problem(("vertices", index, "id"), f"duplicate vertex id {vertex.id!r} (also vertices.{ids[vertex.id]})", vertex.id))
            else:
                ids[vertex.id] = index
        seen_edges: dict[tuple[str, str], int] = {}
        in_degree: dict[str, int] = {}
        for index, edge in enumerate(self.edges):
            for end, name in (("from", edge.source), ("to", edge.target)):
                if name not in ids:
                    problems.append(_problem(("edges", index, end), _unknown_vertex(name, ids), name))
            key = (edge.source, edge.target)
            if key in seen_edges:
                problems.append(_problem(("edges", index), f"duplicate edge {edge} (also edges.{seen_edges[key]})", str(edge)))
            else:
                seen_edges[key] = index
                in_degree[edge.target] = in_degree.get(edge.target, 0) + 1
        for field in ("entry", "outputs"):
            for index, name in enumerate(getattr(self, field) or ()):
                if name not in ids:
                    problems.append(_problem((field, index), _unknown_vertex(name, ids), name))
        for index, vertex in enumerate(self.vertices):
            if vertex.join.mode == "quorum" and vertex.join.k > in_degree.get(vertex.id, 0):
                problems.append(_problem(
                    ("vertices", index, "join"),
                    f"quorum {vertex.join.k} is larger than the in-degree of {vertex.id!r} ({in_degree.get(vertex.id, 0)})",
                    vertex.join.k,
                ))
        _raise_problems(type(self).__name__, problems)
        return self

    def runtime_modules(self) -> set[str]:
        """The modules a vertex added at run time may take a function or combiner from."""
        if self.allow_modules is not None:
            return set(self.allow_modules)
        paths = [getattr(v, "function", None) for v in self.vertices] + [v.combiner for v in self.vertices]
        paths += list(self.aggregators.values())
        return {path.partition(":")[0] for path in paths if isinstance(path, str) and ":" in path}

    def vertex(self, vertex_id: str) -> VertexSpec:
        for vertex in self.vertices:
            if vertex.id == vertex_id:
                return vertex
        raise KeyError(vertex_id)


class AddVertex(Strict):
    op: Literal["add_vertex"] = "add_vertex"
    vertex: SerializeAsAny[VertexSpec]


class RemoveVertex(Strict):
    op: Literal["remove_vertex"] = "remove_vertex"
    id: VertexId


class AddEdge(EdgeSpec):
    op: Literal["add_edge"] = "add_edge"


class RemoveEdge(EdgeSpec):
    op: Literal["remove_edge"] = "remove_edge"


Mutation = Annotated[Union[AddVertex, RemoveVertex, AddEdge, RemoveEdge], Field(discriminator="op")]
MUTATION_ADAPTER: TypeAdapter[Any] = TypeAdapter(Mutation)
MutationModel = AddVertex | RemoveVertex | AddEdge | RemoveEdge


def parse_mutation(value: Any) -> MutationModel:
    """A mutation model from a model or a dict like ``{"op": "add_edge", "from": "a", "to": "b"}``."""
    if isinstance(value, (AddVertex, RemoveVertex, AddEdge, RemoveEdge)):
        return value
    return MUTATION_ADAPTER.validate_python(value)


def mutation_to_dict(mutation: MutationModel) -> dict[str, Any]:
    return mutation.model_dump(mode="json", by_alias=True)


__all__ = [
    "AddEdge",
    "AddVertex",
    "BUILTIN_AGGREGATORS",
    "BUILTIN_COMBINERS",
    "EdgeSpec",
    "GraphSpec",
    "JoinPolicy",
    "Limits",
    "Mutation",
    "MutationModel",
    "PythonVertex",
    "RemoveEdge",
    "RemoveVertex",
    "VertexSpec",
    "parse_mutation",
    "mutation_to_dict",
    "register_vertex_kind",
    "vertex_kinds",
]
