"""The declarative LLM agent: an agent of mesh.yaml with ``llm:`` and no module, served as this module.

The entry gives the model (``llm: {provider, base_url, model, api_key}``),
``instructions`` (the system prompt), ``tools`` (MCP tool servers of the
mesh), ``agents`` (other agents, callable as tools over A2A) and
``max_steps`` (model round trips per request). A request goes:

- the conversation so far (earlier tasks of the same context, from the task
  store: each one's user text and answer) and the new message to the model,
  with the tools offered;
- the model's text streams to the client as chunks of the artifact
  ``answer`` (appended pieces, then the whole text as the last chunk, which
  replaces them); each tool call it asks for is a ``working`` status update
  (tool and arguments) and its result an artifact named after the tool,
  checked by the guard's tool check before the model sees it;
- an answer that is one JSON object with a ``pregel`` key (a planner's
  sends, mutations, halt) is also given as a data part (artifact ``control``),
  which the coordinator obeys when the graph marks the vertex ``control: true``;
- usage goes into the task's metadata as ``usage: {tokens, cost,
  prompt_tokens, completion_tokens, model_calls}``, which the coordinator
  reads for its per-edge figures.

Every failure (model unreachable, model not found, no tool support,
malformed tool call, max_steps, context too long, rate limits, timeouts) ends
the task failed with a message naming the provider, the model and what to do.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from a2a.helpers import get_data_parts, get_message_text, new_data_part, new_text_part
from a2a.server.agent_execution import RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.tasks import TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, ListTasksRequest, TaskState

from mesh.guard.enforcement import check_tool_result
from mesh.llm.providers import ModelError, Provider, Reply, ToolCall, make_provider, settings_of
from mesh.llm.toolbox import Target, Toolbox, ToolFailure
from mesh.serving.agents import AgentRuntime
from mesh.serving.executor import AgentFailure, TaskAgent
from mesh.telemetry import metrics

log = logging.getLogger(__name__)

ANSWER = "answer"
HISTORY_TASKS = 20  # earlier tasks of a context replayed to the model
STREAM_INTERVAL = 0.05  # seconds between streamed chunks of an answer


def _entry(runtime: AgentRuntime):
    return runtime.config.agent(runtime.name)


def card(settings: dict, runtime: AgentRuntime) -> AgentCard:
    entry = _entry(runtime)
    llm = entry.llm
    uses = [*entry.tools, *(f"agent {a}" for a in entry.agents)]
    description = entry.description or (entry.instructions or "").strip().split("\n")[0] or f"An agent answered by {llm.model}"
    return AgentCard(
        name=runtime.name,
        description=f"{description} (model {llm.model} via {llm.provider})",
        version="1.0.0",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[AgentSkill(
            id="answer", name=runtime.name,
            description=(entry.instructions or description).strip() + (f" Uses: {', '.join(uses)}." if uses else ""),
            tags=["llm", llm.provider, *entry.tools],
        )],
    )


class LLMAgent(TaskAgent):
    def __init__(self, runtime: AgentRuntime) -> None:
        super().__init__()
        self.runtime = runtime
        self.entry = _entry(runtime)
        self.provider: Provider = make_provider(settings_of(self.entry.llm))
        self.toolbox = Toolbox(runtime.config, list(self.entry.tools), list(self.entry.agents))

    async def start(self) -> None:
        problem = await self.provider.probe()
        if problem:
            log.warning("agent %s: %s (%s); its tasks fail until it answers", self.runtime.name, problem, self.provider.where())

    async def stop(self) -> None:
        await self.toolbox.aclose()
        await self.provider.aclose()

    async def work(self, request: RequestContext, task: TaskUpdater) -> None:
        text = _request_text(request)
        if not text:
            raise AgentFailure("send a text message (or a data part) for the model to answer")
        messages: list[dict[str, Any]] = []
        if self.entry.instructions:
            messages.append({"role": "system", "content": self.entry.instructions})
        messages += await self._history(request)
        messages.append({"role": "user", "content": text})
        try:
            tools, targets = await self.toolbox.catalog() if (self.entry.tools or self.entry.agents) else ([], {})
        except ToolFailure as exc:
            raise AgentFailure(str(exc)) from None
        usage = {"tokens": 0, "prompt_tokens": 0, "completion_tokens": 0, "model_calls": 0, "cost": None}
        steps = 0
        try:
            for round_ in range(self.entry.max_steps):
                reply = await self._round(task, messages, tools, round_, usage)
                if not reply.tool_calls:
                    control = control_part(reply.text)
                    if control is not None:  # a planner's answer: the graph runtime reads it (from trusted vertices only)
                        await task.add_artifact([new_data_part(control)], name="control")
                    await self._finish(task, usage)
                    return
                messages.append({"role": "assistant", "content": reply.text or None, "tool_calls": [
                    {"id": c.id, "type": "function", "function": {
                        "name": c.name, "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments)}}
                    for c in reply.tool_calls]})
                for call in reply.tool_calls:
                    steps += 1
                    result = await self._call(task, call, targets, steps)
                    messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result})
        except ModelError as exc:
            await self._usage(task, usage)
            raise AgentFailure(str(exc)) from None
        await self._usage(task, usage)
        raise AgentFailure(f"no answer after {self.entry.max_steps} model round trips (max_steps) with "
                           f"{self.provider.where()}: the model kept calling tools; raise max_steps for this agent "
                           "in mesh.yaml, or make its instructions say when to answer.")

    async def _round(self, task: TaskUpdater, messages: list[dict], tools: list[dict], round_: int, usage: dict) -> Reply:
        """One model round trip, its text streamed as chunks of an ``answer`` artifact."""
        artifact_id = f"answer-{uuid.uuid4().hex[:12]}"
        sent = False
        pending: list[str] = []
        last = time.monotonic()

        async def on_text(piece: str) -> None:
            # Pieces go out at most every STREAM_INTERVAL: one event per token would cost a task-store
            # write and a guard window each, and an answer complete within the interval is one event
            # (the last chunk, which carries the whole text anyway).
            nonlocal sent, last
            pending.append(piece)
            now = time.monotonic()
            if now - last < STREAM_INTERVAL:
                return
            text = "".join(pending)
            pending.clear()
            last = now
            await task.add_artifact([new_text_part(text)], artifact_id=artifact_id, name=ANSWER, append=sent,
                                    last_chunk=False, metadata=None if sent else {"round": round_ + 1})
            sent = True

        reply = await self.provider.chat(messages, tools, on_text)
        metrics.record_model_tokens(self.provider.name, self.provider.settings.model, reply.prompt_tokens,
                                    reply.completion_tokens)
        usage["model_calls"] += 1
        usage["prompt_tokens"] += reply.prompt_tokens
        usage["completion_tokens"] += reply.completion_tokens
        usage["tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if reply.cost is not None:
            usage["cost"] = (usage["cost"] or 0.0) + reply.cost
        if sent:
            # The streamed pieces are parts of one artifact; the last chunk replaces them with the whole
            # text as one part, so the stored task (and every reader joining parts) holds the text as written.
            await task.add_artifact([new_text_part(reply.text)], artifact_id=artifact_id, name=ANSWER, append=False,
                                    last_chunk=True, metadata={"round": round_ + 1})
        elif not reply.tool_calls:
            await task.add_artifact([new_text_part(reply.text)], artifact_id=artifact_id, name=ANSWER, last_chunk=True)
        return reply

    async def _call(self, task: TaskUpdater, call: ToolCall, targets: dict[str, Target], step: int) -> str:
        """Make one tool call the model asked for: a status update, the call, the guard's check, an artifact."""
        where = self.provider.where()
        target = targets.get(call.name)
        if target is None:
            offered = ", ".join(targets) or "none"
            raise AgentFailure(f"the model ({where}) called a tool that does not exist: {call.name!r} (tools offered: "
                               f"{offered}); use a model that follows tool schemas, or fewer tools.")
        arguments = call.arguments
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise AgentFailure(f"the model ({where}) called {call.name} with arguments that are not valid JSON "
                                   f"({exc.msg} at character {exc.pos}: {arguments[:200]!r}); use a model that follows "
                                   "tool schemas, or retry.") from None
        if not isinstance(arguments, dict):
            raise AgentFailure(f"the model ({where}) called {call.name} with arguments that are not a JSON object "
                               f"({str(arguments)[:200]!r}); use a model that follows tool schemas, or retry.")
        label = target.label
        await task.update_status(TaskState.TASK_STATE_WORKING, message=task.new_agent_message([
            new_text_part(f"calling {label} {json.dumps(arguments, ensure_ascii=False)}"),
            new_data_part({"step": step, "tool": target.server, "name": target.name, "kind": target.kind,
                           "arguments": arguments}),
        ]))
        try:
            text, structured, is_error = await self.toolbox.call(target, arguments)
        except ToolFailure as exc:
            text, structured, is_error = str(exc), None, True
        await check_tool_result(text, tool=label)  # the guard's injection check; a no-op without a guard policy
        parts = [new_text_part(text)]
        if structured is not None:
            parts.append(new_data_part(structured))
        await task.add_artifact(parts, name=label, metadata={"step": step, "is_error": is_error, "arguments": arguments})
        return text if not is_error else f"error: {text}"

    async def _finish(self, task: TaskUpdater, usage: dict) -> None:
        await task.update_status(TaskState.TASK_STATE_COMPLETED, task.new_agent_message([new_text_part(_usage_line(usage))]),
                                 metadata=self._usage_metadata(usage))

    async def _usage(self, task: TaskUpdater, usage: dict) -> None:
        """Usage so far into the task's metadata (before a failure, so failed calls count too)."""
        await task.update_status(TaskState.TASK_STATE_WORKING, metadata=self._usage_metadata(usage))

    def _usage_metadata(self, usage: dict) -> dict:
        return {"usage": {k: v for k, v in usage.items() if v is not None},
                "model": {"provider": self.provider.name, "name": self.provider.settings.model}}

    async def _history(self, request: RequestContext) -> list[dict[str, Any]]:
        """The earlier turns of this context: each earlier task's user text and answer, oldest first."""
        store = self.runtime.task_store
        context_id = request.context_id
        if store is None or not context_id:
            return []
        call_context = request.call_context or ServerCallContext()
        try:
            if hasattr(store, "in_context"):  # the agent's own SQLite store: one indexed query
                earlier_tasks = await store.in_context(context_id, call_context, HISTORY_TASKS)
            else:
                earlier_tasks = list((await store.list(ListTasksRequest(
                    context_id=context_id, page_size=HISTORY_TASKS, history_length=20, include_artifacts=True),
                    call_context)).tasks)
        except Exception:  # the history is a help, not a requirement
            log.exception("reading the history of context %s failed", context_id)
            return []
        turns: list[dict[str, Any]] = []
        for earlier in sorted(earlier_tasks, key=lambda t: t.status.timestamp.ToDatetime()):
            if earlier.id == request.task_id:
                continue
            asked = [get_message_text(m) for m in earlier.history if m.role == 1]  # ROLE_USER
            answers = ["".join(p.text for p in a.parts if p.WhichOneof("content") == "text")
                       for a in earlier.artifacts if a.name == ANSWER]
            answers = [a for a in answers if a]
            if asked and answers:
                turns.append({"role": "user", "content": asked[0]})
                turns.append({"role": "assistant", "content": answers[-1]})
        return turns


def control_part(text: str) -> dict | None:
    """The answer as a Pregel control part, when it is one JSON object with a "pregel" key (code fences allowed)."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    if not body.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("pregel"), dict) else None


def _usage_line(usage: dict) -> str:
    line = f"{usage['tokens']} tokens in {usage['model_calls']} model calls"
    return line + (f", cost {usage['cost']:.6g}" if usage.get("cost") is not None else "")


def _request_text(request: RequestContext) -> str:
    text = (get_message_text(request.message) or "").strip() if request.message else ""
    data = [json.dumps(d, ensure_ascii=False) for d in get_data_parts(request.message.parts)] if request.message else []
    return "\n".join(x for x in (text, *data) if x)


def create_executor(settings: dict, runtime: AgentRuntime) -> LLMAgent:
    return LLMAgent(runtime)
