"""Tool-using agent: answers by calling the MCP tool servers mesh.yaml grants it, chosen by rules or by an Ollama model.

Settings name the tools of mesh.yaml it may use (``tools: [calculator,
files, search]``). With no model configured it picks one tool from the
request: a URL is fetched (http_fetch), a SELECT is run (sqlite),
"find/search ..." is searched (search, else files), a file path is read or
listed (files), and arithmetic is calculated (calculator). With ``ollama:
{host, model}`` the model chooses tools through Ollama's tool calling, for
up to ``max_steps`` rounds. A data part ``{"tool": NAME, "name": TOOL,
"arguments": {...}}`` calls one tool directly.

Every tool call is a ``working`` status update (tool, arguments) and every
result an artifact named ``TOOL.NAME`` (its text and structured content);
the answer is the artifact ``answer``. Tools are MCP servers reached over
stdio (spawned once and kept) or streamable HTTP, by their mesh.yaml names.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from a2a.helpers import get_data_parts, get_message_text, new_data_part, new_text_part
from a2a.server.agent_execution import RequestContext
from a2a.server.tasks import TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, TaskState
from pydantic import BaseModel, ConfigDict, Field

from mesh.guard.enforcement import check_tool_result
from mesh.serving.agents import AgentRuntime
from mesh.serving.executor import AgentFailure, TaskAgent
from mesh.telemetry import metrics, tracing
from mesh.tools.connections import ToolConnections


class OllamaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("http://127.0.0.1:11434", description="the Ollama server")
    model: str = Field(min_length=1, description="a model with tool calling, e.g. qwen3:8b or llama3.1:8b")
    timeout_s: float = Field(120.0, gt=0)
    max_steps: int = Field(6, ge=1, le=50, description="most rounds of tool calls per request")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tools: list[str] = Field(default_factory=list, description="names of tools in mesh.yaml this agent may call")
    ollama: OllamaSettings | None = None
    call_timeout_s: float = Field(60.0, gt=0, description="longest a single tool call may take")


def card(settings: Settings) -> AgentCard:
    tools = ", ".join(settings.tools) or "none"
    how = f"the Ollama model {settings.ollama.model}" if settings.ollama else "rules (no model)"
    return AgentCard(
        name="Tool user",
        description=f"Answers requests by calling MCP tools ({tools}), chosen by {how}. Shows each call and result.",
        version="1.0.0",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[AgentSkill(
            id="use-tools",
            name="Use tools",
            description=(f"Uses the tools {tools}: arithmetic is calculated exactly, 'find ...' or 'search ...' searches "
                         "documents, a file path is read, a URL is fetched, a SELECT runs on a database. "
                         'A data part {"tool": NAME, "name": TOOL, "arguments": {...}} calls a tool directly.'),
            tags=["tools", "mcp"],
            examples=["what is (1/3 + 0.25) * 12?", "search for deployment steps", "read docs/README.md"],
        )],
    )


@dataclass
class PlannedCall:
    tool: str  # the tool's name in mesh.yaml
    name: str  # the MCP tool of that server
    arguments: dict[str, Any]


# The kinds of tool server the rules know, by module.
KINDS = {"mcp_tools.calculator": "calculator", "mcp_tools.files": "files", "mcp_tools.search": "search",
         "mcp_tools.sqlite": "sqlite", "mcp_tools.http_fetch": "http_fetch"}

_URL = re.compile(r"https?://[^\s<>\"']+")
_SQL = re.compile(r"^\s*(?:sql:\s*)?((?:select|with)\b.*)$", re.IGNORECASE | re.DOTALL)
_SEARCH = re.compile(r"^\s*(?:please\s+)?(?:find|search|look\s*up|lookup)\b(?:\s+(?:for|about))?\s+(?P<query>.+?)\s*[?.!]*\s*$",
                     re.IGNORECASE | re.DOTALL)
_ARITHMETIC_LEAD = re.compile(r"^\s*(?:what\s+is|what's|calculate|compute|evaluate|how\s+much\s+is)\s+", re.IGNORECASE)
_CALCULATOR_WORDS = re.compile(
    r"\b(?:abs|floor|ceil|round|trunc|min|max|gcd|lcm|factorial|comb|perm|mod|sqrt|root|exp|ln|log2|log|sin|cos|tan"
    r"|deg|rad|numerator|denominator|pi|tau|e)\b", re.IGNORECASE)
_ARITHMETIC_CHARACTERS = re.compile(r"[\d\s.,_+\-*/^()!%×÷−eE]*")
_OPERATOR = re.compile(r"[+\-*/^!%×÷−(]")
_PATH = re.compile(r"(?:^|\s)(?P<path>(?:[\w.-]+/)+[\w.-]*|[\w-]+\.[A-Za-z0-9]{1,8})(?=$|[\s?!,;:])")
_LIST = re.compile(r"^\s*(?:list|ls|show)\b", re.IGNORECASE)


def plan(text: str, kinds: dict[str, str]) -> PlannedCall:
    """The one tool call that answers ``text`` by the rules, given the granted tools (name -> kind)."""
    by_kind: dict[str, str] = {}
    for name, kind in kinds.items():
        by_kind.setdefault(kind, name)
    url = _URL.search(text)
    if url and "http_fetch" in by_kind:
        return PlannedCall(by_kind["http_fetch"], "fetch", {"url": url.group(0).rstrip(".,;:!?)")})
    sql = _SQL.match(text)
    if sql and "sqlite" in by_kind:
        return PlannedCall(by_kind["sqlite"], "query", {"sql": sql.group(1).strip().rstrip(";")})
    search = _SEARCH.match(text)
    if search:
        query = search["query"]
        if "search" in by_kind:
            return PlannedCall(by_kind["search"], "search", {"query": query})
        if "files" in by_kind:
            return PlannedCall(by_kind["files"], "search_files", {"query": query.strip("\"'")})
    expression = _ARITHMETIC_LEAD.sub("", text).strip().rstrip("?=").strip()
    if "calculator" in by_kind and _looks_arithmetic(expression):
        return PlannedCall(by_kind["calculator"], "calculate", {"expression": expression})
    path = _PATH.search(text)
    if path and "files" in by_kind:
        target = path["path"]
        if _LIST.match(text) or target.endswith("/"):
            return PlannedCall(by_kind["files"], "list_files", {"path": target.rstrip("/") or "."})
        return PlannedCall(by_kind["files"], "read_file", {"path": target})
    if _LIST.match(text) and "files" in by_kind:
        return PlannedCall(by_kind["files"], "list_files", {"path": "."})
    granted = ", ".join(f"{n} ({k})" for n, k in kinds.items()) or "none"
    raise AgentFailure(
        f"I could not tell which tool answers this (tools: {granted}). Try arithmetic ('what is 2^10?'), "
        "'search for ...', a file path ('read docs/guide.md'), a URL to fetch, or a SELECT query.")


def _looks_arithmetic(expression: str) -> bool:
    """Digits, operators and the calculator's function names only, with at least one operator or call."""
    return (any(c.isdigit() for c in expression) and _OPERATOR.search(expression) is not None
            and _ARITHMETIC_CHARACTERS.fullmatch(_CALCULATOR_WORDS.sub("", expression)) is not None)


def result_text(result: Any) -> str:
    """The text content of an MCP CallToolResult."""
    return "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")


def summarize(call: PlannedCall, kind: str, result: Any) -> str:
    """A short answer from a tool's structured result, for the rules (no model) path."""
    data = result.structured_content or {}
    if result.is_error:
        return f"The {call.tool} tool refused: {result_text(result)}"
    if kind == "calculator":
        return f"{data['expression']} = {data['result']}" + ("" if data.get("exact") else " (approximately)")
    if kind == "search":
        hits = data.get("results", [])
        if not hits:
            return f"Nothing found for {call.arguments['query']!r}."
        return "\n".join(f"{os.path.basename(h['path'])}:{h['start_line']}-{h['end_line']} ({h['score']:.2f}): "
                         f"{h['text'][:300]}" for h in hits)
    if kind == "files" and call.name == "read_file":
        return data.get("text", "")
    if kind == "files" and call.name == "list_files":
        return "\n".join(e["name"] + ("/" if e["type"] == "directory" else "") for e in data.get("entries", []))
    if kind == "files":
        return "\n".join(f"{m['path']}:{m['line']}: {m['text']}" for m in data.get("matches", [])) or "No match."
    if kind == "sqlite":
        lines = [" | ".join(data.get("columns", []))]
        lines += [" | ".join("" if v is None else str(v) for v in row) for row in data.get("rows", [])]
        return "\n".join(lines)
    if kind == "http_fetch":
        return f"{data.get('status')} {data.get('url')}\n{(data.get('text') or '')[:2000]}"
    return result_text(result)


def ollama_tool(qualified_name: str, tool: Any) -> dict[str, Any]:
    """An MCP tool as an Ollama tool; Ollama keeps only type, items, description and enum of each property."""
    schema = tool.input_schema or {}
    properties = {}
    for name, prop in (schema.get("properties") or {}).items():
        variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"] or [prop]
        main = variants[0]
        enum = prop.get("enum") or main.get("enum") or [v["const"] for v in variants if "const" in v] or None
        properties[name] = {k: v for k, v in {
            "type": main.get("type", "string"), "description": prop.get("description") or main.get("description"),
            "enum": enum, "items": main.get("items"),
        }.items() if v is not None}
    return {"type": "function", "function": {
        "name": qualified_name, "description": tool.description or tool.title or tool.name,
        "parameters": {"type": "object", "properties": properties, "required": schema.get("required", [])},
    }}


class ToolUser(TaskAgent):
    def __init__(self, settings: Settings, runtime: AgentRuntime) -> None:
        super().__init__()
        self.settings = settings
        unknown = [name for name in settings.tools if name not in runtime.config.tools]
        if unknown:
            raise ValueError(f"settings.tools names tools that are not in {runtime.config.path}: {', '.join(unknown)}")
        self.mesh = runtime.config
        self._connections = ToolConnections(runtime.config, timeout=settings.call_timeout_s)

    def kinds(self) -> dict[str, str]:
        config = self.mesh
        return {name: KINDS.get(config.tools[name].module, config.tools[name].module) for name in self.settings.tools}

    async def work(self, request: RequestContext, task: TaskUpdater) -> None:
        if not self.settings.tools:
            raise AgentFailure("this agent has no tools: list some under settings.tools in mesh.yaml")
        kinds = self.kinds()
        text = (get_message_text(request.message) or "").strip()
        direct = next((d for d in get_data_parts(request.message.parts) if isinstance(d, dict) and "tool" in d), None)
        if direct is not None:
            call = self._direct_call(direct, kinds)
            result = await self.call(task, call, 1)
            await self._answer(task, summarize(call, kinds[call.tool], result), result.is_error)
        elif self.settings.ollama is not None:
            await self._with_model(task, text, kinds)
        else:
            if not text:
                raise AgentFailure("send a text request (or a data part naming a tool)")
            call = plan(text, kinds)
            result = await self.call(task, call, 1)
            await self._answer(task, summarize(call, kinds[call.tool], result), result.is_error)

    def _direct_call(self, data: dict, kinds: dict[str, str]) -> PlannedCall:
        tool, name, arguments = data.get("tool"), data.get("name"), data.get("arguments") or {}
        if tool not in kinds:
            raise AgentFailure(f"tool {tool!r} is not one of mine ({', '.join(kinds)})")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise AgentFailure('a direct call is {"tool": NAME, "name": TOOL, "arguments": {...}}')
        return PlannedCall(tool, name, arguments)

    async def call(self, task: TaskUpdater, call: PlannedCall, step: int) -> Any:
        """Call one tool, publishing the call as a status update and the result as an artifact."""
        with tracing.tracer().start_as_current_span(f"tool {call.tool}.{call.name}", attributes={
                "mesh.tool": call.tool, "mesh.tool.name": call.name, "mesh.step": step}):
            return await self._call(task, call, step)

    async def _call(self, task: TaskUpdater, call: PlannedCall, step: int) -> Any:
        qualified = f"{call.tool}.{call.name}"
        await task.update_status(TaskState.TASK_STATE_WORKING, message=task.new_agent_message([
            new_text_part(f"calling {qualified} {json.dumps(call.arguments, ensure_ascii=False)}"),
            new_data_part({"step": step, "tool": call.tool, "name": call.name, "arguments": call.arguments}),
        ]))
        try:
            client = await self._connections.get(call.tool)
            result = await asyncio.wait_for(client.call_tool(call.name, call.arguments), self.settings.call_timeout_s)
        except TimeoutError:
            metrics.record_tool_call(qualified, "timeout")
            raise AgentFailure(f"{qualified} did not answer within {self.settings.call_timeout_s:g}s") from None
        except AgentFailure:
            raise
        except Exception as exc:
            metrics.record_tool_call(qualified, "failed")
            await self._connections.discard(call.tool)  # a broken connection is opened again next time
            raise AgentFailure(f"calling {qualified} failed: {type(exc).__name__}: {exc}") from None
        metrics.record_tool_call(qualified, "error" if result.is_error else "ok")
        text = result_text(result)
        await check_tool_result(text, tool=qualified)  # the guard's injection check; a no-op without a guard policy
        parts = [new_text_part(text)]
        if result.structured_content is not None:
            parts.append(new_data_part(result.structured_content))
        await task.add_artifact(parts, name=qualified, metadata={"step": step, "is_error": bool(result.is_error),
                                                                  "arguments": call.arguments})
        return result

    async def _answer(self, task: TaskUpdater, text: str, failed: bool = False) -> None:
        await task.add_artifact([new_text_part(text)], name="answer")
        if failed:
            raise AgentFailure(text)

    async def _with_model(self, task: TaskUpdater, text: str, kinds: dict[str, str]) -> None:
        from ollama import AsyncClient, ResponseError

        ollama = self.settings.ollama
        tools, targets = [], {}
        for name in kinds:
            client = await self._connections.get(name)
            for tool in (await client.list_tools()).tools:
                qualified = f"{name}__{tool.name}"
                tools.append(ollama_tool(qualified, tool))
                targets[qualified] = (name, tool.name)
        model = AsyncClient(host=ollama.host, timeout=ollama.timeout_s)
        messages: list[Any] = [
            {"role": "system", "content": "Answer the user's request. Use the tools for anything they can do "
                                          "(computation, files, documents, data, web) and base the answer on their results."},
            {"role": "user", "content": text},
        ]
        step = 0
        for _ in range(ollama.max_steps):
            try:
                response = await model.chat(ollama.model, messages=messages, tools=tools)
            except ResponseError as exc:
                raise AgentFailure(f"Ollama ({ollama.host}, model {ollama.model}): {exc.error}") from None
            except ConnectionError:
                raise AgentFailure(f"Ollama is not answering at {ollama.host}") from None
            metrics.record_model_tokens("ollama", ollama.model, response.prompt_eval_count, response.eval_count)
            message = response.message
            messages.append(message)
            if not message.tool_calls:
                await self._answer(task, message.content or "")
                return
            for tool_call in message.tool_calls:
                qualified = tool_call.function.name
                if qualified not in targets:
                    messages.append({"role": "tool", "tool_name": qualified, "content": f"unknown tool {qualified}"})
                    continue
                step += 1
                tool, name = targets[qualified]
                result = await self.call(task, PlannedCall(tool, name, dict(tool_call.function.arguments or {})), step)
                messages.append({"role": "tool", "tool_name": qualified, "content": result_text(result)})
        raise AgentFailure(f"no answer after {ollama.max_steps} rounds of tool calls")


def create_executor(settings: Settings, runtime: AgentRuntime) -> ToolUser:
    return ToolUser(settings, runtime)
