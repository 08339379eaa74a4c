"""Local steps of the sample graphs in mesh.yaml: cheap Python vertices and combiners between the agents.

A step is ``def step(call: VertexCall) -> VertexResult | value`` (see
mesh/pregel/vertex.py); returning a plain value sends it along every out-edge.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from mesh.pregel import AddEdge, AddVertex, VertexCall, VertexResult

_NUMBER = re.compile(r"\d[\d,_]*(?:\s*[*x]\s*10\s*\^\s*\d+|\s*\^\s*\d+|[eE]\d+)?")


def text_of(call: VertexCall) -> str:
    return "\n".join(value if isinstance(value, str) else str(value) for value in call.inbox).strip()


# -- hedged: ask three replicas, accept when two agree ---------------------------------------------


def primes_question(call: VertexCall) -> str:
    """The question every replica gets: the input as it is, or a default."""
    return text_of(call) or "count primes below 10^7"


def majority(values: list[Any]) -> dict[str, Any]:
    """A combiner: the answer most of the arrived messages give, and how many gave it."""
    counts = Counter(str(v) for v in values)
    answer, votes = counts.most_common(1)[0]
    return {"answer": answer, "votes": votes, "arrived": len(values)}


def agreement(call: VertexCall) -> str:
    (combined,) = call.inbox
    verdict = "agree" if combined["votes"] >= 2 else "disagree"
    return f"{combined['votes']} of {combined['arrived']} arrived replicas {verdict}: {combined['answer']}"


# -- plan: a planner that grows the graph at the barrier -------------------------------------------


def agent_for(job: str) -> str:
    """Which agent of the sample mesh does a job: primes for primes, the assistant for sums and searches."""
    lowered = job.lower()
    if "prime" in lowered:
        return "primes"
    if re.search(r"[\d)]\s*[-+*/^]\s*[\d(]", job) or lowered.startswith(("search", "find", "what is", "compute")):
        return "assistant"
    return "echo"


def plan(call: VertexCall) -> VertexResult:
    """Split the input into jobs (';' or new lines), add one agent vertex per job, wire it to the report."""
    jobs = [job.strip() for job in re.split(r"[;\n]", text_of(call)) if job.strip()]
    if not jobs:
        return VertexResult(output="nothing to plan: send jobs separated by ';'")
    mutations: list[Any] = []
    send: dict[str, str] = {}
    for index, job in enumerate(jobs, 1):
        vertex_id = f"job{index}"
        mutations += [
            AddVertex(vertex={"id": vertex_id, "kind": "agent", "agent": agent_for(job)}),
            AddEdge(**{"from": "planner", "to": vertex_id}),
            AddEdge(**{"from": vertex_id, "to": "report"}),
        ]
        send[vertex_id] = job
    return VertexResult(output=f"planned {len(jobs)} jobs", send=send, mutations=mutations,
                        state={"jobs": jobs})


def report(call: VertexCall) -> str:
    """Every job's answer, in the order of the jobs."""
    by_sender = {message.sender: message.value for message in call.messages}
    lines = []
    for sender in sorted(by_sender, key=lambda s: int(s.removeprefix("job")) if s.removeprefix("job").isdigit() else 0):
        value = by_sender[sender]
        lines.append(f"{sender}: {value if isinstance(value, str) else value!r}")
    return "\n".join(lines)


# -- tools: questions answered with MCP tools, the guard on every edge -----------------------------


def split_questions(call: VertexCall) -> VertexResult:
    """'A; B' -> A to the first tool user, B to the second (one question goes to both)."""
    parts = [p.strip() for p in text_of(call).split(";") if p.strip()] or ["2^10"]
    first, second = parts[0], parts[1] if len(parts) > 1 else parts[0]
    return VertexResult(send={"calc": first, "lookup": second})


def answer(call: VertexCall) -> str:
    by_sender = {message.sender: message.value for message in call.messages}
    return "\n\n".join(f"[{sender}] {by_sender[sender]}" for sender in sorted(by_sender))
