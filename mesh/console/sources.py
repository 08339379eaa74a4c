"""What the console reads besides the A2A API: /metrics summaries, the local span files, the runs' checkpoints."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# Requests counted as the server's traffic (not the console's own probes of /health, /metrics, the card).
_TRAFFIC = {"jsonrpc", "rest", "mcp"}
# Only the end of a big span file is read: the console shows recent traces.
_TRACE_TAIL_BYTES = 4 * 1024 * 1024


def metrics_summary(text: str) -> dict[str, Any]:
    """The figures a process's /metrics text gives the mesh page: requests, errors, p50/p99, tasks, guard counts."""
    requests = errors = 0.0
    buckets: dict[float, float] = defaultdict(float)
    tasks: dict[str, float] = defaultdict(float)
    blocks: dict[str, float] = defaultdict(float)
    verdicts: dict[str, float] = defaultdict(float)
    tool_calls: dict[str, float] = defaultdict(float)
    running = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "mesh_http_requests_total" and labels.get("binding") in _TRAFFIC:
                requests += sample.value
                status = int(labels.get("status") or 0)
                if status >= 500 or status == 0:  # 0: the connection ended before a response
                    errors += sample.value
            elif sample.name == "mesh_http_request_duration_seconds_bucket" and labels.get("binding") in _TRAFFIC:
                buckets[float(labels["le"])] += sample.value
            elif sample.name == "mesh_tasks_total":
                tasks[labels["state"]] += sample.value
            elif sample.name == "mesh_tasks_running":
                running += sample.value
            elif sample.name == "mesh_guard_blocks_total":
                blocks[labels["category"]] += sample.value
            elif sample.name == "mesh_guard_verdicts_total":
                verdicts[labels["category"]] += sample.value
            elif sample.name == "mesh_tool_calls_total":
                tool_calls[f"{labels['tool']} {labels['outcome']}"] += sample.value
    ordered = sorted(buckets.items())
    return {
        "requests": requests, "errors": errors,
        "p50_ms": _quantile_ms(ordered, 0.50), "p99_ms": _quantile_ms(ordered, 0.99),
        "tasks": dict(tasks), "tasks_running": running, "guard_blocks": dict(blocks),
        "guard_verdicts": dict(verdicts), "tool_calls": dict(tool_calls),
    }


def _quantile_ms(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound (ms) of the histogram bucket holding quantile ``q``; None with no observation."""
    total = cumulative[-1][1] if cumulative else 0
    if not total:
        return None
    for bound, count in cumulative:
        if count >= q * total:
            return None if math.isinf(bound) else round(bound * 1000, 3)
    return None


# -- traces ------------------------------------------------------------------------------------------


def _read_spans(traces_dir: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(traces_dir.glob("*.jsonl")):
        try:
            with path.open("rb") as source:
                size = source.seek(0, 2)
                source.seek(max(0, size - _TRACE_TAIL_BYTES))
                data = source.read()
        except OSError:
            continue
        lines = data.split(b"\n")
        if size > _TRACE_TAIL_BYTES:
            lines = lines[1:]  # the first line was cut
        for line in lines:
            if line.strip():
                try:
                    spans.append(json.loads(line))
                except ValueError:
                    continue  # a line being written
    return spans


def list_traces(traces_dir: Path, limit: int = 50) -> list[dict[str, Any]]:
    """Recent traces, newest first: id, root span name, services, span count, start and duration."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in _read_spans(traces_dir):
        by_trace[span["trace_id"]].append(span)
    rows = []
    for trace_id, spans in by_trace.items():
        ids = {s["span_id"] for s in spans}
        roots = [s for s in spans if not s.get("parent_span_id") or s["parent_span_id"] not in ids]
        root = min(roots or spans, key=lambda s: s["start_ns"])
        start = min(s["start_ns"] for s in spans)
        end = max(s["end_ns"] or s["start_ns"] for s in spans)
        rows.append({"trace_id": trace_id, "name": root["name"], "services": sorted({s["service"] or "?" for s in spans}),
                     "spans": len(spans), "start_ns": start, "duration_ms": round((end - start) / 1e6, 3),
                     "errors": sum(1 for s in spans if s.get("status") == "ERROR")})
    rows.sort(key=lambda r: r["start_ns"], reverse=True)
    return rows[:limit]


def trace_spans(traces_dir: Path, trace_id: str) -> list[dict[str, Any]]:
    """Every local span of one trace, in start order."""
    spans = [s for s in _read_spans(traces_dir) if s["trace_id"] == trace_id]
    spans.sort(key=lambda s: s["start_ns"])
    return spans


# -- runs (checkpoints) -----------------------------------------------------------------------------


async def list_runs(runtime: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The recent runs of each graph of mesh.yaml, from the checkpoint store (newest first)."""
    rows = []
    for name in runtime.config.graphs:
        for info in await runtime.store.list_runs(limit=limit, graph_digest=runtime.compiled(name).digest):
            rows.append({"run_id": info.run_id, "graph": name, "status": info.status, "supersteps": info.next_superstep,
                         "created_at": info.created_at, "updated_at": info.updated_at, "error": info.error})
    rows.sort(key=lambda r: r["created_at"], reverse=True)
    return rows[:limit]


async def run_replay(runtime: Any, run_id: str) -> dict[str, Any] | None:
    """A stored run as the replay view needs it: its graph as it started, and each superstep's event and calls."""
    from mesh.pregel.events import expand_summary

    saved = await runtime.store.load_run(run_id)
    if saved is None:
        return None
    calls: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in saved.calls:
        calls[record.superstep].append({"vertex": record.vertex_id, "status": record.status, "attempt": record.attempt,
                                        "latency_ms": round(record.latency_us / 1000, 3)})
    steps = [{"event": expand_summary(json.loads(event)), "calls": calls.get(number, [])}
             for number, _state, event in saved.supersteps]
    return {"run_id": run_id, "status": saved.info.status, "graph": json.loads(saved.graph), "input": json.loads(saved.input),
            "result": json.loads(saved.info.result) if saved.info.result else None, "error": saved.info.error,
            "supersteps": steps}
