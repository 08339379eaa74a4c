"""Graph specs: valid shapes round-trip, and every malformed spec gets a precise error at the right key."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import ValidationError

from mesh.pregel import (
    AddEdge,
    Engine,
    GraphBuildError,
    GraphSpec,
    JoinPolicy,
    Limits,
    PythonVertex,
    VertexResult,
    VertexSpec,
    register_vertex_kind,
    to_dot,
    to_mermaid,
)
from mesh.pregel import spec as spec_module
from mesh.pregel.spec import parse_mutation, vertex_kinds

FUNCTION = "tests.unit.pregel.test_spec:echo"


async def echo(call: Any) -> Any:
    return call.inbox[0] if call.inbox else None


def vertex(vertex_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": vertex_id, "kind": "python", "function": FUNCTION, **fields}


def graph(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "entry": ["a"],
        "vertices": [vertex("a"), vertex("b"), vertex("c")],
        "edges": [{"from": "a", "to": "b"}, "a -> c", "b -> c"],
    }
    data.update(overrides)
    return data


def problems(data: dict[str, Any]) -> dict[str, str]:
    """Each error of validating ``data`` as a graph: its location (dotted) -> its message."""
    with pytest.raises(ValidationError) as caught:
        GraphSpec.model_validate(data)
    return {".".join(map(str, error["loc"])): error["msg"] for error in caught.value.errors()}


def test_a_graph_in_its_yaml_shape_validates_and_round_trips():
    data = graph(
        description="three vertices",
        outputs="c",
        aggregators={"votes": "sum", "custom": "tests.unit.pregel.test_spec:echo"},
        limits={"max_supersteps": 7, "vertex_timeout_seconds": 2.5, "retries": 3, "on_vertex_error": "fail"},
        guard={"input": "check", "categories": ["S1"]},
    )
    data["vertices"][2].update(join={"quorum": 2}, combiner="concat", timeout_seconds=1, retries=0, params={"k": 1})
    spec = GraphSpec.model_validate(data)

    assert spec.entry == ["a"] and spec.outputs == ["c"]
    assert [(edge.source, edge.target) for edge in spec.edges] == [("a", "b"), ("a", "c"), ("b", "c")]
    third = spec.vertex("c")
    assert isinstance(third, PythonVertex) and third.params == {"k": 1}
    assert third.join == JoinPolicy(mode="quorum", k=2) and str(third.join) == "quorum 2"
    assert spec.limits.retries == 3 and spec.guard == {"input": "check", "categories": ["S1"]}

    dumped = spec.model_dump(mode="json", by_alias=True)
    assert dumped["edges"][1] == {"from": "a", "to": "c"}
    assert dumped["vertices"][2]["join"] == {"quorum": 2}
    assert dumped["vertices"][0]["join"] == "all"
    assert dumped["vertices"][0]["function"] == FUNCTION  # kind-specific fields survive the dump
    assert GraphSpec.model_validate(dumped) == spec


@pytest.mark.parametrize(
    ("change", "location", "message"),
    [
        (lambda g: g["edges"].append({"from": "a", "to": "zz"}), "edges.3.to", "unknown vertex 'zz'"),
        (lambda g: g["edges"].append({"from": "bb", "to": "c"}), "edges.3.from", "unknown vertex 'bb' (did you mean 'b'?)"),
        (lambda g: g["edges"].append("c"), "edges.3", "an edge is {from: A, to: B} or 'A -> B'"),
        (lambda g: g["edges"].append("b -> c"), "edges.3", "duplicate edge b -> c (also edges.2)"),
        (lambda g: g["edges"].append({"from": "a", "to": "b", "weight": 2}), "edges.3.weight", "Extra inputs are not permitted"),
        (lambda g: g.update(entry=["a", "q"]), "entry.1", "unknown vertex 'q'"),
        (lambda g: g.update(entry=[]), "entry", "at least 1 item"),
        (lambda g: g.update(outputs=["c", "x"]), "outputs.1", "unknown vertex 'x'"),
        (lambda g: g["vertices"].append(vertex("a")), "vertices.3.id", "duplicate vertex id 'a' (also vertices.0)"),
        (lambda g: g["vertices"][1].update(kind="banana"), "vertices.1.kind", "unknown vertex kind 'banana' (known kinds:"),
        (lambda g: g["vertices"][1].pop("kind"), "vertices.1.kind", "Field required"),
        (lambda g: g["vertices"][1].update(function="no_colon"), "vertices.1.function", "module:function import path"),
        (lambda g: g["vertices"][1].update(prompt="hi"), "vertices.1.prompt", "Extra inputs are not permitted"),
        (lambda g: g["vertices"][1].update(id="has space"), "vertices.1.id", "String should match pattern"),
        (lambda g: g["vertices"][2].update(join={"quorum": 3}), "vertices.2.join",
         "quorum 3 is larger than the in-degree of 'c' (2)"),
        (lambda g: g["vertices"][2].update(join={"quorum": 0}), "vertices.2.join.k", "greater than or equal to 1"),
        (lambda g: g["vertices"][2].update(join="first"), "vertices.2.join", "join must be 'all', 'any', {quorum: K} or"),
        (lambda g: g["vertices"][2].update(join={"deadline": -1}), "vertices.2.join.seconds", "greater than 0"),
        (lambda g: g["vertices"][2].update(combiner="avg"), "vertices.2.combiner", "unknown combiner 'avg'"),
        (lambda g: g["vertices"][2].update(timeout_seconds=0), "vertices.2.timeout_seconds", "greater than 0"),
        (lambda g: g.update(aggregators={"total": "mean"}), "aggregators.total", "unknown aggregator 'mean'"),
        (lambda g: g.update(limits={"max_supersteps": 0}), "limits.max_supersteps", "greater than or equal to 1"),
        (lambda g: g.update(limits={"retry": 2}), "limits.retry", "Extra inputs are not permitted"),
        (lambda g: g.update(limits={"on_vertex_error": "explode"}), "limits.on_vertex_error", "'continue' or 'fail'"),
        (lambda g: g.update(nodes=[]), "nodes", "Extra inputs are not permitted"),
        (lambda g: g.update(guard="strict"), "guard", "valid dictionary"),
    ],
)
def test_a_malformed_graph_gets_a_precise_error(change, location, message):
    data = graph()
    change(data)
    found = problems(data)
    assert location in found, found
    assert message in found[location], found


def test_every_problem_is_reported_at_once():
    data = graph(entry=["nope"], edges=["a -> x", "y -> b"])
    assert set(problems(data)) == {"entry.0", "edges.0.to", "edges.1.from"}


def test_errors_keep_their_place_when_the_graph_is_embedded_in_a_config():
    from pydantic import BaseModel

    class Config(BaseModel):
        graphs: dict[str, GraphSpec]

    data = graph()
    data["edges"].append("b -> ghost")
    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"graphs": {"triage": data}})
    assert [error["loc"] for error in caught.value.errors()] == [("graphs", "triage", "edges", 3, "to")]


def test_join_policies_read_and_write_their_short_forms():
    for short, mode in (("all", "all"), ("any", "any"), ({"quorum": 2}, "quorum"), ({"deadline": 1.5}, "deadline")):
        policy = JoinPolicy.model_validate(short)
        assert policy.mode == mode
        assert policy.model_dump() == short
    with pytest.raises(ValidationError, match="k goes with mode quorum"):
        JoinPolicy(mode="any", k=2)


def test_backoff_grows_exponentially_and_is_capped():
    limits = Limits(backoff_seconds=0.5, backoff_factor=3, backoff_max_seconds=10)
    assert [limits.backoff(failures) for failures in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10]


def test_a_runtime_registers_its_own_vertex_kind():
    class AgentVertex(VertexSpec):
        kind: Literal["agent-test"] = "agent-test"
        agent: str

    register_vertex_kind(AgentVertex)
    try:
        data = graph()
        data["vertices"][1] = {"id": "b", "kind": "agent-test", "agent": "classifier"}
        spec = GraphSpec.model_validate(data)
        assert isinstance(spec.vertex("b"), AgentVertex) and spec.vertex("b").agent == "classifier"
        assert spec.model_dump(by_alias=True)["vertices"][1]["agent"] == "classifier"
        data["vertices"][1]["model"] = "x"
        assert "vertices.1.model" in problems(data)
    finally:
        spec_module._VERTEX_KINDS.pop("agent-test", None)  # the registry is module state
    assert "agent-test" not in vertex_kinds()

    with pytest.raises(TypeError, match="Literal of one string"):
        register_vertex_kind(VertexSpec)


def test_mutations_parse_from_dicts_with_precise_errors():
    assert parse_mutation({"op": "add_edge", "from": "a", "to": "b"}) == AddEdge(source="a", target="b")
    added = parse_mutation({"op": "add_vertex", "vertex": vertex("n", combiner="sum")})
    assert isinstance(added.vertex, PythonVertex) and added.vertex.combiner == "sum"
    with pytest.raises(ValidationError) as caught:
        parse_mutation({"op": "add_vertex", "vertex": {"id": "n", "kind": "teleport"}})
    assert caught.value.errors()[0]["loc"] == ("add_vertex", "vertex", "kind")
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        parse_mutation({"op": "rename_vertex", "id": "a"})


def test_a_vertex_result_reads_from_a_control_dict():
    result = VertexResult.from_dict({
        "output": "ok", "send": {"b": 1}, "halt": False, "state": {"n": 1},
        "mutations": [{"op": "remove_edge", "from": "a", "to": "b"}], "aggregate": {"votes": 1}, "tokens": 12, "cost": 0.5,
    })
    assert result.send == [("b", 1)] and result.halt is False and result.state == {"n": 1} and result.tokens == 12
    assert VertexResult.from_dict({"output": 1}).state is VertexResult().state  # KEEP unless given
    with pytest.raises(ValidationError) as caught:
        VertexResult.from_dict({"output": 1, "stay": True})
    assert caught.value.errors()[0]["loc"] == ("stay",)


def test_a_graph_whose_function_cannot_be_imported_fails_to_compile_with_every_vertex_named():
    data = graph()
    data["vertices"][1]["function"] = "tests.unit.pregel.test_spec:missing"
    data["vertices"][2]["function"] = "tests.no_such_module:f"
    with pytest.raises(GraphBuildError) as caught:
        Engine().compile(data)
    assert caught.value.problems[0].startswith("vertex 'b': 'tests.unit.pregel.test_spec:missing'")
    assert caught.value.problems[1].startswith("vertex 'c': cannot import module 'tests.no_such_module'")

    with pytest.raises(GraphBuildError, match="aggregator 'total': 'tests.unit.pregel.test_spec:nothing'"):
        Engine().compile(graph(aggregators={"total": "tests.unit.pregel.test_spec:nothing"}))


def test_exporters_draw_the_graph_with_its_figures():
    spec = GraphSpec.model_validate(graph(outputs=["c"]))
    spec.vertex("c").combiner = "concat"
    figures = {
        "vertices": {"a": {"calls": 3, "errors": 1, "drops": 0, "latency_p50_ms": 1.5, "latency_p99_ms": 9.0,
                           "tokens": 120, "cost": 0.25, "bytes": None}},
        "edges": {"a -> b": {"messages": 3, "errors": 0, "drops": 2, "late": 0, "latency_p50_ms": 1.5,
                             "latency_p99_ms": 9.0, "tokens": None, "cost": None, "bytes": 512}},
    }
    mermaid = to_mermaid(spec, figures)
    assert mermaid.splitlines()[0] == "flowchart LR"
    assert 'v0(["a<br/>python<br/>3 calls, 1 errors, p50 1.5 ms, p99 9 ms, 120 tokens, cost 0.25"])' in mermaid
    assert 'v2[["c<br/>python, combiner concat"]]' in mermaid
    assert 'v0 -->|"3 messages, 2 drops, p50 1.5 ms, p99 9 ms, 512 B"| v1' in mermaid
    assert "v1 --> v2" in mermaid

    dot = to_dot(spec, figures, name='say "hi"')
    assert dot.startswith('digraph "say \\"hi\\"" {')
    assert '"a" [label="a\\npython\\n3 calls, 1 errors, p50 1.5 ms, p99 9 ms, 120 tokens, cost 0.25", style="rounded"];' in dot
    assert '"c" [label="c\\npython, combiner concat", peripheries=2];' in dot
    assert '"a" -> "b" [label="3 messages, 2 drops, p50 1.5 ms, p99 9 ms, 512 B"];' in dot
    assert '"b" -> "c";' in dot
