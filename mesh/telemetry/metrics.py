"""Prometheus metrics of one mesh process (prometheus-client): the collectors, the ASGI middleware that feeds them, /metrics.

Every agent and HTTP tool server serves them at ``/metrics`` in the Prometheus
text format. Each process has its own figures (``mesh up`` runs one process
per agent and tool server): Prometheus scrapes each of them and the labels
``agent`` / ``server`` keep them apart (``mesh ls --prometheus`` prints a
scrape config for a mesh).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from mesh.telemetry.scrape import METRICS_PATH

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "mesh_http_requests", "HTTP requests served, by server, RPC or HTTP method, binding and status",
    ["server", "method", "binding", "status"],
)
REQUEST_SECONDS = Histogram(
    "mesh_http_request_duration_seconds", "Time from request to the end of its response",
    ["server", "method", "binding"], buckets=_LATENCY_BUCKETS,
)
TASKS = Counter("mesh_tasks", "Tasks an agent's executor ended, by the state it left them in", ["agent", "state"])
TASKS_RUNNING = Gauge("mesh_tasks_running", "Tasks an agent's executor is running now", ["agent"])
GUARD_VERDICTS = Counter(
    "mesh_guard_verdicts", "Guard verdicts, by check, backend and category (safe for a safe verdict)",
    ["check", "backend", "category"],
)
GUARD_BLOCKS = Counter("mesh_guard_blocks", "Content a guard policy blocked, by agent and category", ["agent", "category"])
TOOL_CALLS = Counter("mesh_tool_calls", "MCP tool calls made by this process, by tool and outcome", ["tool", "outcome"])
MODEL_TOKENS = Counter("mesh_model_tokens", "Model tokens, by provider, model and kind (prompt/completion)",
                       ["provider", "model", "kind"])
GRAPH_RUNS = Counter("mesh_graph_runs", "Graph runs the coordinator ended, by graph and status", ["graph", "status"])
GRAPH_SUPERSTEPS = Counter("mesh_graph_supersteps", "Supersteps the coordinator finished, by graph", ["graph"])
VERTEX_CALLS = Counter("mesh_graph_vertex_calls", "Vertex calls, by graph and vertex", ["graph", "vertex"])
EDGE_SECONDS = Histogram(
    "mesh_graph_edge_latency_seconds", "Latency of the calls whose messages went along an edge",
    ["graph", "edge"], buckets=_LATENCY_BUCKETS,
)
EDGE_TOKENS = Counter("mesh_graph_edge_tokens", "Tokens reported by the calls behind an edge's messages", ["graph", "edge"])
EDGE_COST = Counter("mesh_graph_edge_cost", "Cost reported by the calls behind an edge's messages", ["graph", "edge"])


def metrics_enabled() -> bool:
    """False when MESH_METRICS=off: no request metrics middleware (for the overhead benchmark)."""
    return os.environ.get("MESH_METRICS", "on").strip().lower() not in ("off", "false", "0")


def _binding(path: str) -> str:
    if path == "/":
        return "jsonrpc"
    if path.startswith("/mcp"):
        return "mcp"
    if path.startswith("/.well-known/"):
        return "card"
    if path in ("/health", METRICS_PATH):
        return path[1:]
    return "rest"


def request_counter(server: str) -> Callable[[Scope, int, float], None]:
    """An observer for ``RequestLog``: counts each HTTP request of ``server`` and its time until the response ended.

    The RPC method is the one ``BodyLimit`` found in the body (it writes it into
    the shared scope), else the HTTP method.
    """

    def observe(scope: Scope, status: int, seconds: float) -> None:
        if scope["type"] != "http":
            return
        method = scope.get("mesh.rpc_method") or scope["method"]
        binding = _binding(scope["path"])
        REQUESTS.labels(server, method, binding, str(status or 0)).inc()
        REQUEST_SECONDS.labels(server, method, binding).observe(seconds)

    return observe


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def record_task_end(agent: str, state: str) -> None:
    TASKS.labels(agent, state).inc()


def record_verdict(check: str, backend: str, safe: bool, codes: Iterable[str]) -> None:
    if safe:
        GUARD_VERDICTS.labels(check, backend, "safe").inc()
    for code in codes:
        GUARD_VERDICTS.labels(check, backend, code).inc()


def record_block(agent: str, categories: Iterable[str]) -> None:
    shown = list(categories) or ["error"]
    for category in shown:
        GUARD_BLOCKS.labels(agent, category).inc()


def record_tool_call(tool: str, outcome: str) -> None:
    TOOL_CALLS.labels(tool, outcome).inc()


def record_model_tokens(provider: str, model: str, prompt: int | None, completion: int | None) -> None:
    if prompt:
        MODEL_TOKENS.labels(provider, model, "prompt").inc(prompt)
    if completion:
        MODEL_TOKENS.labels(provider, model, "completion").inc(completion)


def record_superstep(graph: str, active: Sequence[str]) -> None:
    GRAPH_SUPERSTEPS.labels(graph).inc()
    for vertex in active:
        VERTEX_CALLS.labels(graph, vertex).inc()


def record_run(graph: str, status: str, calls: Iterable[tuple[str, float, Sequence[str], Any]]) -> None:
    """A run ended: count it, and put each call's latency/tokens/cost on the edges its messages took."""
    GRAPH_RUNS.labels(graph, status).inc()
    for vertex, latency, targets, usage in calls:
        for target in dict.fromkeys(targets):
            edge = f"{vertex} -> {target}"
            EDGE_SECONDS.labels(graph, edge).observe(latency)
            if usage:
                tokens, cost, _size = usage
                if tokens:
                    EDGE_TOKENS.labels(graph, edge).inc(tokens)
                if cost:
                    EDGE_COST.labels(graph, edge).inc(cost)
