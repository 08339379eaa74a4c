"""Per-vertex and per-edge figures of a run: calls, latency p50/p99, bytes, tokens, cost, errors, drops.

A vertex's figures are about its calls. An edge ``u -> v``'s figures are
about the calls of ``u`` that sent along it: ``messages`` sent, the latency,
tokens, cost and bytes those calls reported (a call that sent along three
edges appears on each of the three, and once on the vertex), ``errors``
(calls of ``u`` that failed, so nothing went along the edge), ``drops``
(calls of ``u`` cancelled because ``v``'s join no longer waited for them) and
``late`` (messages that arrived after ``v``'s join had closed, so were not
delivered). Latency is from a call's first attempt to its result, retries
and backoff included. Percentiles are nearest-rank.

The engine only appends one tuple per finished call (``log_call``); the
figures are folded when ``to_dict`` is called, so a 1000-edge fan-out costs
nothing per edge while it runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class Stats:
    __slots__ = ("calls", "errors", "retries", "timeouts", "drops", "messages", "late", "latencies", "bytes", "tokens", "cost")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.retries = 0
        self.timeouts = 0
        self.drops = 0
        self.messages = 0
        self.late = 0
        self.latencies: list[float] = []
        self.bytes: int | None = None
        self.tokens: int | None = None
        self.cost: float | None = None

    def add_usage(self, tokens: int | None, cost: float | None, size: int | None) -> None:
        if tokens is not None:
            self.tokens = (self.tokens or 0) + tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost
        if size is not None:
            self.bytes = (self.bytes or 0) + size

    def merge(self, other: Stats) -> None:
        for name in ("calls", "errors", "retries", "timeouts", "drops", "messages", "late"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies.extend(other.latencies)
        self.add_usage(other.tokens, other.cost, other.bytes)

    def to_dict(self, *, edge: bool) -> dict[str, Any]:
        latencies = self.latencies
        if len(latencies) == 1:
            p50 = p99 = round(latencies[0] * 1000, 3)
        else:
            ordered = sorted(latencies)
            p50, p99 = _percentile_ms(ordered, 0.50), _percentile_ms(ordered, 0.99)
        figures: dict[str, Any] = {
            "calls": self.calls,
            "errors": self.errors,
            "drops": self.drops,
            "latency_p50_ms": p50,
            "latency_p99_ms": p99,
            "bytes": self.bytes,
            "tokens": self.tokens,
            "cost": self.cost,
        }
        if edge:
            figures["messages"] = self.messages
            figures["late"] = self.late
        else:
            figures["retries"] = self.retries
            figures["timeouts"] = self.timeouts
        return figures


def _percentile_ms(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return round(ordered[rank - 1] * 1000, 3)


def edge_key(source: str, target: str) -> str:
    return f"{source} -> {target}"


# (vertex, latency, targets reached along edges, usage or None); targets may repeat (one per message).
CallLog = tuple[str, float, Sequence[str], "tuple[int | None, float | None, int | None] | None"]


class Figures:
    def __init__(self) -> None:
        self.calls: list[CallLog] = []
        # Rare events (errors, retries, timeouts, drops, late messages) are counted here directly.
        self.vertices: dict[str, Stats] = {}
        self.edges: dict[tuple[str, str], Stats] = {}

    def log_call(self, vertex_id: str, latency: float, targets: Sequence[str], usage: tuple[Any, Any, Any] | None) -> None:
        self.calls.append((vertex_id, latency, targets, usage))

    def vertex(self, vertex_id: str) -> Stats:
        stats = self.vertices.get(vertex_id)
        if stats is None:
            stats = self.vertices[vertex_id] = Stats()
        return stats

    def edge(self, source: str, target: str) -> Stats:
        key = (source, target)
        stats = self.edges.get(key)
        if stats is None:
            stats = self.edges[key] = Stats()
        return stats

    def folded(self) -> tuple[dict[str, Stats], dict[tuple[str, str], Stats]]:
        vertices: dict[str, Stats] = {}
        edges: dict[tuple[str, str], Stats] = {}
        for vertex_id, latency, targets, usage in self.calls:
            stats = vertices.get(vertex_id)
            if stats is None:
                stats = vertices[vertex_id] = Stats()
            stats.calls += 1
            stats.latencies.append(latency)
            if usage is not None:
                stats.add_usage(*usage)
            for target in targets:
                key = (vertex_id, target)
                edge = edges.get(key)
                if edge is None:
                    edge = edges[key] = Stats()
                edge.messages += 1
            for target in dict.fromkeys(targets):
                edge = edges[(vertex_id, target)]
                edge.calls += 1
                edge.latencies.append(latency)
                if usage is not None:
                    edge.add_usage(*usage)
        for vertex_id, rare in self.vertices.items():
            vertices.setdefault(vertex_id, Stats()).merge(rare)
        for key, rare in self.edges.items():
            edges.setdefault(key, Stats()).merge(rare)
        return vertices, edges

    def to_dict(self) -> dict[str, Any]:
        """``{"vertices": {id: figures}, "edges": {"a -> b": figures}}``, JSON-ready."""
        vertices, edges = self.folded()
        return {
            "vertices": {vertex_id: stats.to_dict(edge=False) for vertex_id, stats in vertices.items()},
            "edges": {edge_key(*key): stats.to_dict(edge=True) for key, stats in edges.items()},
        }
