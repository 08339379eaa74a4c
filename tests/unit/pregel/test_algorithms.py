"""Classic Pregel algorithms on seeded random graphs of a few hundred vertices, checked against networkx."""

from __future__ import annotations

import random
from typing import Any

import networkx as nx
import numpy as np
import pytest

from mesh.pregel import Engine, GraphSpec, VertexResult, open_store

HERE = __name__  # the vertex functions below, by module path


# --- vertices -----------------------------------------------------------------------------------


async def shortest_path(call: Any) -> VertexResult:
    """Single-source shortest paths: keep the best distance, relax the out-edges when it improves."""
    weights: dict[str, float] = call.spec.params["weights"]
    candidate = min(call.inbox)  # the min combiner leaves one message; the source gets 0
    if call.state is not None and candidate >= call.state:
        return VertexResult()  # no improvement: vote to halt
    return VertexResult(output=candidate, state=candidate, send={target: candidate + weights[target] for target in call.out_edges})


DAMPING = 0.85


async def pagerank(call: Any) -> VertexResult:
    """PageRank: sum combiner on the inbox; aggregators carry the dangling mass and the largest change."""
    count = call.spec.params["vertices"]
    if call.superstep == 0:
        rank = 1.0 / count
    else:
        dangling = call.aggregates["dangling"]
        incoming = call.inbox[0] if call.inbox else 0.0
        rank = (1 - DAMPING) / count + DAMPING * (incoming + dangling / count)
        if call.aggregates["change"] < 1e-13:  # everybody saw the same aggregate: all halt together
            return VertexResult(output=rank, state=rank, send={})  # an output alone would go along the out-edges
    change = abs(rank - call.state) if call.state is not None else 1.0
    if call.out_edges:
        share = rank / len(call.out_edges)
        return VertexResult(output=rank, state=rank, halt=False, send={target: share for target in call.out_edges},
                            aggregate={"change": change})
    return VertexResult(output=rank, state=rank, halt=False, aggregate={"dangling": rank, "change": change})


async def component(call: Any) -> VertexResult:
    """Connected components: every vertex adopts the smallest label it hears of and passes it on."""
    if call.superstep == 0:  # the inbox holds the run's input
        label = call.spec.params["label"]
    else:
        label = min(call.inbox)  # one message, after the min combiner
        if label >= call.state:
            return VertexResult()
    return VertexResult(output=label, state=label, send={target: label for target in call.out_edges})


# --- graphs -------------------------------------------------------------------------------------


def random_digraph(count: int, edges: int, seed: int) -> nx.DiGraph:
    rng = random.Random(seed)
    graph = nx.DiGraph()
    graph.add_nodes_from(f"n{i}" for i in range(count))
    while graph.number_of_edges() < edges:
        source, target = rng.randrange(count), rng.randrange(count)
        if source != target:
            graph.add_edge(f"n{source}", f"n{target}", weight=rng.randint(1, 20))
    return graph


def build(graph: nx.DiGraph, function: str, params: dict[str, dict[str, Any]], combiner: str, **fields: Any) -> GraphSpec:
    return GraphSpec.model_validate({
        "vertices": [
            {"id": node, "kind": "python", "function": f"{HERE}:{function}", "params": params[node], "combiner": combiner}
            for node in graph.nodes
        ],
        "edges": [{"from": source, "to": target} for source, target in graph.edges],
        **fields,
    })


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("durable", [False, True], ids=["in-memory", "sqlite"])
async def test_single_source_shortest_paths_match_dijkstra(tmp_path, durable):
    graph = random_digraph(300, 1200, seed=7)
    params = {node: {"weights": {target: graph[node][target]["weight"] for target in graph.successors(node)}} for node in graph}
    spec = build(graph, "shortest_path", params, "min", entry=["n0"], limits={"max_supersteps": 400})

    if durable:
        async with open_store(tmp_path / "runs.db") as store:
            result = await Engine(store).run(spec, 0)
            assert (await store.get_run(result.run_id)).status == "done"
    else:
        result = await Engine().run(spec, 0)

    expected = nx.single_source_dijkstra_path_length(graph, "n0")
    assert result.status == "done" and result.stop_reason == "halted" and result.errors == []
    assert result.outputs == expected  # unreachable vertices produced no output
    assert len(expected) < 300  # the graph has vertices that n0 does not reach


async def test_pagerank_with_a_combiner_and_aggregators_matches_networkx():
    graph = random_digraph(250, 900, seed=11)
    graph.add_node("n250")  # a vertex that neither sends nor receives
    count = graph.number_of_nodes()
    params = {node: {"vertices": count} for node in graph}
    spec = build(
        graph, "pagerank", params, "sum",
        entry=list(graph.nodes), aggregators={"dangling": "sum", "change": "max"}, limits={"max_supersteps": 500},
    )

    result = await Engine().run(spec)

    google = np.asarray(nx.google_matrix(graph, alpha=DAMPING, nodelist=list(graph.nodes), weight=None))
    ranks = np.full(count, 1.0 / count)
    for _ in range(1000):
        ranks = ranks @ google
    expected = dict(zip(graph.nodes, ranks))
    assert result.stop_reason == "halted" and result.supersteps < 500 and result.errors == []
    assert result.outputs.keys() == expected.keys()
    assert max(abs(result.outputs[node] - expected[node]) for node in graph) < 1e-9
    assert abs(sum(result.outputs.values()) - 1.0) < 1e-9
    # The last superstep contributed nothing: an empty sum is 0, an empty max None.
    assert result.aggregates == {"dangling": 0, "change": None}


async def test_connected_components_match_networkx():
    rng = random.Random(3)
    undirected = nx.Graph()
    undirected.add_nodes_from(f"n{i}" for i in range(400))
    while undirected.number_of_edges() < 330:  # sparse: many components
        source, target = rng.randrange(400), rng.randrange(400)
        if source != target:
            undirected.add_edge(f"n{source}", f"n{target}")
    graph = undirected.to_directed()
    params = {node: {"label": int(node[1:])} for node in graph}
    spec = build(graph, "component", params, "min", entry=list(graph.nodes), limits={"max_supersteps": 400})

    result = await Engine().run(spec)

    expected = {node: min(int(member[1:]) for member in members)
                for members in nx.connected_components(undirected) for node in members}
    assert result.errors == [] and result.outputs == expected
    assert len(set(expected.values())) > 50
