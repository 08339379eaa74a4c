"""Python vertices for the graph tests."""

from mesh.pregel import AddEdge, AddVertex, VertexResult


def start(call):
    return call.inbox[0] if call.inbox else "go"


def direct(call):
    """Sends straight to 'far', which is not a neighbour."""
    return VertexResult(send={"far": f"direct from {call.vertex_id}"})


def collect(call):
    """What arrived: how many messages (after any combiner) and their values, flattened and sorted."""
    values = [v for value in call.inbox for v in (value if isinstance(value, list) else [value])]
    return {"messages": len(call.inbox), "values": sorted(str(v) for v in values)}


def grow(call):
    """Adds a vertex calling a named agent (the input) and wires it to 'sink'; an unknown agent is refused."""
    agent = call.inbox[0]
    return VertexResult(send={"added": "hello added"}, mutations=[
        AddVertex(vertex={"id": "added", "kind": "agent", "agent": agent}),
        AddEdge(**{"from": "grower", "to": "added"}),
        AddEdge(**{"from": "added", "to": "sink"}),
    ])


def exit_now(call):
    """A vertex that ends the process it runs in, if it can."""
    import sys

    sys.exit(3)
