"""Graph spec (+ optional run figures) -> Mermaid flowchart or Graphviz DOT text.

Entry vertices are drawn rounded, output vertices double-bordered; a label
shows the vertex kind and any join or combiner, and, with figures (the dict
``RunResult.figures``), calls, errors, drops and latency p50/p99 per vertex
and per edge, with tokens and cost where they were reported.
"""

from __future__ import annotations

from typing import Any

from mesh.pregel.figures import edge_key
from mesh.pregel.spec import GraphSpec, VertexSpec


def _vertex_lines(vertex: VertexSpec, figures: dict[str, Any] | None) -> list[str]:
    lines = [vertex.id]
    details = [vertex.kind]
    if vertex.join.mode != "all":
        details.append(f"join {vertex.join}")
    if vertex.combiner:
        details.append(f"combiner {vertex.combiner}")
    lines.append(", ".join(details))
    stats = (figures or {}).get("vertices", {}).get(vertex.id)
    if stats:
        lines.append(_describe_stats(stats, "calls"))
    return lines


def _describe_stats(stats: dict[str, Any], count_key: str) -> str:
    parts = [f"{stats.get(count_key, 0)} {count_key}"]
    for key in ("errors", "drops", "late"):
        if stats.get(key):
            parts.append(f"{stats[key]} {key}")
    if stats.get("latency_p50_ms") is not None:
        parts.append(f"p50 {stats['latency_p50_ms']:g} ms, p99 {stats['latency_p99_ms']:g} ms")
    if stats.get("tokens") is not None:
        parts.append(f"{stats['tokens']} tokens")
    if stats.get("cost") is not None:
        parts.append(f"cost {stats['cost']:g}")
    if stats.get("bytes") is not None:
        parts.append(f"{stats['bytes']} B")
    return ", ".join(parts)


def _edge_label(source: str, target: str, figures: dict[str, Any] | None) -> str | None:
    stats = (figures or {}).get("edges", {}).get(edge_key(source, target))
    return _describe_stats(stats, "messages") if stats else None


def to_mermaid(graph: GraphSpec, figures: dict[str, Any] | None = None, *, direction: str = "LR") -> str:
    """A Mermaid ``flowchart`` of the graph."""
    node = {vertex.id: f"v{index}" for index, vertex in enumerate(graph.vertices)}
    entries, outputs = set(graph.entry), set(graph.outputs or ())
    lines = [f"flowchart {direction}"]
    for vertex in graph.vertices:
        label = _mermaid_text("<br/>".join(_mermaid_escape(line) for line in _vertex_lines(vertex, figures)))
        if vertex.id in entries:
            shape = f"([{label}])"
        elif vertex.id in outputs:
            shape = f"[[{label}]]"
        else:
            shape = f"[{label}]"
        lines.append(f"    {node[vertex.id]}{shape}")
    for edge in graph.edges:
        label = _edge_label(edge.source, edge.target, figures)
        arrow = f"-->|{_mermaid_text(_mermaid_escape(label))}|" if label else "-->"
        lines.append(f"    {node[edge.source]} {arrow} {node[edge.target]}")
    return "\n".join(lines) + "\n"


def _mermaid_escape(text: str) -> str:
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid_text(text: str) -> str:
    return f'"{text}"'


def to_dot(graph: GraphSpec, figures: dict[str, Any] | None = None, *, name: str = "graph") -> str:
    """A Graphviz ``digraph`` of the graph."""
    entries, outputs = set(graph.entry), set(graph.outputs or ())
    lines = [f"digraph {_dot_quote(name)} {{", "    rankdir=LR;", '    node [shape=box, fontname="Helvetica"];']
    for vertex in graph.vertices:
        attributes = [f"label={_dot_quote(chr(10).join(_vertex_lines(vertex, figures)))}"]
        if vertex.id in entries:
            attributes.append('style="rounded"')
        if vertex.id in outputs:
            attributes.append("peripheries=2")
        lines.append(f"    {_dot_quote(vertex.id)} [{', '.join(attributes)}];")
    for edge in graph.edges:
        label = _edge_label(edge.source, edge.target, figures)
        suffix = f" [label={_dot_quote(label)}]" if label else ""
        lines.append(f"    {_dot_quote(edge.source)} -> {_dot_quote(edge.target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
