"""The mesh as one MCP server: every agent of mesh.yaml as tools (send a message, get a task), every graph as a tool.

For each agent ``NAME`` there are ``NAME_send`` (a ``text`` and optional
``data``, ``task_id``, ``context_id``), ``NAME_get_task`` and ``NAME_cancel_task``; their
descriptions come from the agent's card, fetched when the bridge starts (its
description and skills with examples), or from its module when the agent is
not running yet. Each graph ``G`` of mesh.yaml is ``run_G`` with a ``text``.
Run it as ``python -m mesh.tools.bridge -c mesh.yaml`` (stdio, what Claude Desktop
and IDEs launch) or add ``--http --port P`` for streamable HTTP.

Agents are called over A2A (HTTP/2) with the tokens mesh.yaml gives them; a
task's status updates are forwarded as MCP progress notifications while the
call runs, the first of them naming the task's id (a host cut off can read the
task with ``NAME_get_task``). A call the host cancels (or gives up on:
``notifications/cancelled``) cancels the agent's task; past the bridge's own
``--timeout`` the task runs on and the reply says how to read it.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Annotated, Any

import anyio
import httpx
from a2a.types import AgentCard, GetTaskRequest, Task
from google.protobuf.json_format import MessageToDict
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from mesh.client.parts import part_text, parts_text, plain_numbers, state_name
from mesh.config import MeshConfig

log = logging.getLogger(__name__)

CARD_TIMEOUT_S = 3.0
# How long a cancelled call waits for its CancelTask to reach the agent (or for the task's id, to cancel it).
CANCEL_WAIT_S = 10.0


def task_note(agent: str, task_id: str, state: str) -> str:
    """The first progress message of a send: the task's id, and how to read the task if the call is cut off."""
    return f"task {task_id} of agent {agent}: {state}; if this call is interrupted, read it with {agent}_get_task"

class ArtifactContent(BaseModel):
    name: str
    text: str = Field(description="the artifact's text parts, joined")
    data: list[Any] = Field(description="its data parts, as JSON")


class AgentReply(BaseModel):
    agent: str
    task_id: str | None
    context_id: str | None
    state: str = Field(description="completed, failed, rejected, canceled, input-required, working, ...")
    message: str | None = Field(description="the agent's status message or direct reply, as text")
    artifacts: list[ArtifactContent]


# -- cards ----------------------------------------------------------------------------------------


async def fetch_cards(config: MeshConfig, timeout: float = CARD_TIMEOUT_S) -> dict[str, AgentCard | None]:
    """Each agent's card from its URL, or from its module (local agents that do not answer yet), or None."""
    from mesh.client import fetch_card, http_client

    async def one(name: str) -> tuple[str, AgentCard | None]:
        agent = config.agent(name)
        try:
            async with http_client(config.token_of(agent), timeout=timeout, h2c=config.h2c_of(name)) as http:
                return name, await asyncio.wait_for(fetch_card(http, config.url_of(name)), timeout)
        except Exception as exc:
            log.info("agent %s: card not fetched from %s (%s)", name, config.url_of(name), type(exc).__name__)
        return name, _module_card(config, name)

    return dict(await asyncio.gather(*(one(n) for n in config.agents)))


def _module_card(config: MeshConfig, name: str) -> AgentCard | None:
    agent = config.agent(name)
    if not agent.is_local:
        return None
    try:
        from mesh.serving.agents import load_agent_module
        from mesh.serving.app import build_cards

        module = load_agent_module(agent.module, config.base_dir)
        return build_cards(config, name, module.card(module.settings(agent.settings)))[0]
    except Exception as exc:
        log.warning("agent %s: no card from its module either: %s", name, exc)
        return None


def describe_agent(name: str, card: AgentCard | None, url: str) -> str:
    """A tool description a model can act on: what the agent does, its skills and examples."""
    if card is None:
        return f"Send a message to the agent {name!r} at {url} (its card could not be read when the bridge started)."
    lines = [f"Send a message to the agent {card.name or name!r}: {card.description}".rstrip()]
    for skill in card.skills:
        line = f"- skill {skill.name}: {skill.description}"
        if skill.examples:
            line += " Examples: " + "; ".join(json.dumps(e) for e in list(skill.examples)[:3])
        lines.append(line)
    modes = ", ".join(card.default_input_modes)
    if modes:
        lines.append(f"Accepts: {modes}. Returns the task with its state, status message and artifacts.")
    return "\n".join(lines)


# -- calling agents -------------------------------------------------------------------------------


def reply_from_task(agent: str, task: Task) -> AgentReply:
    message = None
    if task.status.HasField("message") and task.status.message.parts:
        message = "\n".join(t for t in (part_text(p) for p in task.status.message.parts) if t) or None
    artifacts = []
    for artifact in task.artifacts:
        texts = [p.text for p in artifact.parts if p.WhichOneof("content") == "text"]
        data = [plain_numbers(MessageToDict(p.data)) for p in artifact.parts if p.WhichOneof("content") == "data"]
        artifacts.append(ArtifactContent(name=artifact.name or artifact.artifact_id, text="\n".join(texts), data=data))
    return AgentReply(agent=agent, task_id=task.id or None, context_id=task.context_id or None,
                      state=state_name(task.status.state), message=message, artifacts=artifacts)


def _progress_note(event: Any) -> str | None:
    """What a stream event is worth telling the MCP host as progress (status text, or an artifact's name)."""
    kind = event.WhichOneof("payload")
    if kind == "status_update":
        status = event.status_update.status
        if status.HasField("message") and status.message.parts:
            return parts_text(status.message.parts) or None
    elif kind == "artifact_update":
        artifact = event.artifact_update.artifact
        return f"artifact {artifact.name or artifact.artifact_id}"
    return None


@contextlib.asynccontextmanager
async def sse_polling(context: Context | None, every_s: float):
    """Close the call's SSE stream every ``every_s`` seconds while it runs (SEP-1699 polling).

    The client reconnects after the stream's ``retry`` with ``Last-Event-ID``
    and gets what it missed from the event store, so no connection is held for
    the whole of a long task (proxies cut idle ones). The SDK offers the close
    only to clients that can resume (protocol 2025-11-25 and later); for the
    others, and over stdio, this does nothing.
    """
    if context is None or every_s <= 0:
        yield
        return

    async def close_now_and_then() -> None:
        while True:
            await asyncio.sleep(every_s)
            await context.close_sse_stream()

    closer = asyncio.get_running_loop().create_task(close_now_and_then())
    try:
        yield
    finally:
        closer.cancel()


class AgentCaller:
    """Sends messages to the agents of one mesh and reads their tasks."""

    def __init__(self, config: MeshConfig, cards: dict[str, AgentCard | None], timeout: float,
                 sse_poll_s: float = 0.0) -> None:
        self.config = config
        self.cards = cards
        self.timeout = timeout
        self.sse_poll_s = sse_poll_s

    async def send(self, name: str, text: str, data: Any, task_id: str | None, context_id: str | None,
                   context: Context | None) -> AgentReply:
        """Send, wait for the task to settle, and return it (see the module's docstring for cancellation)."""
        async with sse_polling(context, self.sse_poll_s):
            return await self._send(name, text, data, task_id, context_id, context)

    async def _send(self, name: str, text: str, data: Any, task_id: str | None, context_id: str | None,
                    context: Context | None) -> AgentReply:
        from mesh.client import (
            fetch_card,
            http_client,
            open_client,
            send_request,
            user_message,
        )
        from mesh.client.exchange import exchange

        agent = self.config.agent(name)
        url = self.config.url_of(name)
        message = user_message(text or None, data, task_id=task_id, context_id=context_id)
        answer = None
        updates = 0
        announced = False
        background: set[asyncio.Task] = set()

        async def forward(event, so_far) -> None:
            nonlocal answer, updates, announced
            answer = so_far
            if context is None:
                return
            if not announced and so_far.task_id:
                # The id goes out first, so a host whose call is cut off can still read the task.
                announced = True
                updates += 1
                await context.report_progress(updates, None, task_note(name, so_far.task_id, state_name(so_far.state)))
            note = _progress_note(event)
            if note:
                updates += 1
                await context.report_progress(updates, None, note)

        try:
            async with http_client(self.config.token_of(agent), timeout=self.timeout, h2c=self.config.h2c_of(name)) as http:
                card = self.cards.get(name) or await fetch_card(http, url)
                client = await open_client(http, card, streaming=card.capabilities.streaming)
                try:
                    async with asyncio.timeout(self.timeout) as deadline:
                        # Past the bridge's own deadline the task runs on (the reply says how to read it
                        # later); a host that cancels the call (or times out) has the task cancelled.
                        answer = await exchange(client, send_request(message), forward,
                                                cancel_remote=lambda: not deadline.expired(), background=background)
                        if answer.task is not None and card.capabilities.streaming:
                            # A stream delivers artifacts in pieces; the stored task has them whole.
                            answer.task = await client.get_task(GetTaskRequest(id=answer.task.id))
                finally:
                    if background:
                        # The CancelTask must leave before the HTTP client closes under it.
                        with anyio.CancelScope(shield=True):
                            await asyncio.wait(background, timeout=CANCEL_WAIT_S)
        except TimeoutError:
            if answer is not None and answer.task_id:
                return AgentReply(agent=name, task_id=answer.task_id, context_id=None, state=state_name(answer.state),
                                  message=(f"still {state_name(answer.state)} after {self.timeout:g}s: call {name}_get_task "
                                           f"with task_id {answer.task_id!r} later"), artifacts=[])
            raise ToolError(f"agent {name} did not answer within {self.timeout:g}s") from None
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(self._reason(name, url, exc)) from None
        if answer is None or answer.final is None:
            raise ToolError(f"agent {name} answered with no task or message")
        if answer.task is not None:
            return reply_from_task(name, answer.task)
        reply_message = answer.message
        return AgentReply(agent=name, task_id=reply_message.task_id or None, context_id=reply_message.context_id or None,
                          state="completed", message=parts_text(reply_message.parts) or None, artifacts=[])

    async def get_task(self, name: str, task_id: str) -> AgentReply:
        return await self._task_call(name, lambda client: client.get_task(GetTaskRequest(id=task_id)))

    async def cancel_task(self, name: str, task_id: str) -> AgentReply:
        from a2a.types import CancelTaskRequest

        return await self._task_call(name, lambda client: client.cancel_task(CancelTaskRequest(id=task_id)))

    async def _task_call(self, name: str, call) -> AgentReply:
        """One non-streaming call about a task of agent ``name`` (get, cancel), its task as the reply."""
        from mesh.client import fetch_card, http_client, open_client

        agent = self.config.agent(name)
        url = self.config.url_of(name)
        try:
            async with http_client(self.config.token_of(agent), timeout=self.timeout, h2c=self.config.h2c_of(name)) as http:
                card = self.cards.get(name) or await fetch_card(http, url)
                client = await open_client(http, card, streaming=False)
                return reply_from_task(name, await call(client))
        except Exception as exc:
            raise ToolError(self._reason(name, url, exc)) from None

    def _reason(self, name: str, url: str, exc: BaseException) -> str:
        from mesh.client.errors import failure_reason, transport_error

        if isinstance(transport_error(exc), httpx.ConnectError):
            return f"agent {name} is not answering at {url}: is `mesh up` running?"
        return "agent " + failure_reason(exc, name, url)


# -- the server -----------------------------------------------------------------------------------


def create_bridge(config: MeshConfig, cards: dict[str, AgentCard | None], timeout: float = 300.0,
                  sse_poll_s: float = 0.0) -> MCPServer:
    """The bridge MCPServer for ``config``, its tool descriptions built from ``cards``."""
    caller = AgentCaller(config, cards, timeout, sse_poll_s)
    server = MCPServer(
        f"{config.name}-mesh",
        title=f"Mesh {config.name}",
        instructions=(f"The agents of the A2A mesh {config.name!r} as tools: NAME_send sends a message and waits "
                      "for the task to finish; NAME_get_task reads a task later. run_GRAPH runs a graph."),
        version="1.0.0",
    )
    for name in config.agents:
        _add_agent_tools(server, caller, name, cards.get(name))
    for graph in config.graphs:
        _add_graph_tool(server, caller, graph)

    @server.resource("mesh://agents", name="agents", title="Agents of the mesh", mime_type="application/json",
                     description="Each agent's URL, description and skills, as read when the bridge started.")
    def agents() -> str:
        listing = []
        for name in config.agents:
            card = cards.get(name)
            listing.append({"name": name, "url": config.url_of(name),
                            "description": card.description if card else None,
                            "skills": [{"id": s.id, "name": s.name, "description": s.description} for s in card.skills]
                            if card else []})
        return json.dumps(listing, indent=2)

    return server


def _add_agent_tools(server: MCPServer, caller: AgentCaller, name: str, card: AgentCard | None) -> None:
    async def send(
        context: Context,
        text: Annotated[str, Field(description="The message for the agent, in plain language.")],
        data: Annotated[dict[str, Any] | None, Field(description="Optional structured input sent as a JSON data part.")] = None,
        task_id: Annotated[str | None, Field(description="Continue this task (e.g. one in state input-required).")] = None,
        context_id: Annotated[str | None, Field(description="Send within this conversation context.")] = None,
    ) -> AgentReply:
        return await caller.send(name, text, data, task_id, context_id, context)

    async def get_task(task_id: Annotated[str, Field(min_length=1, description="The task_id a send returned.")]) -> AgentReply:
        return await caller.get_task(name, task_id)

    async def cancel_task(task_id: Annotated[str, Field(min_length=1, description="The task_id a send returned.")]) -> AgentReply:
        return await caller.cancel_task(name, task_id)

    title = card.name if card is not None and card.name else name
    server.add_tool(send, name=f"{name}_send", title=f"Ask {title}",
                    description=describe_agent(name, card, caller.config.url_of(name)),
                    annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True))
    server.add_tool(get_task, name=f"{name}_get_task", title=f"Get a task of {title}",
                    description=f"Read a task of the agent {title!r} by its id: state, status message and artifacts.",
                    annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True))
    server.add_tool(cancel_task, name=f"{name}_cancel_task", title=f"Cancel a task of {title}",
                    description=f"Stop a running task of the agent {title!r} by its id; returns the task as it ended.",
                    annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                                open_world_hint=True))


def _add_graph_tool(server: MCPServer, caller: AgentCaller, graph: str) -> None:
    config = caller.config
    spec = config.graphs[graph]

    async def run(
        context: Context,
        text: Annotated[str, Field(description="The input of the graph run.")],
    ) -> AgentReply:
        coordinator = config.coordinator_name()
        if coordinator is None:
            raise ToolError(f"the mesh {config.name!r} has no coordinator agent to run graphs (module: agents.coordinator)")
        # The coordinator runs the graph; each superstep arrives as a progress notification.
        return await caller.send(coordinator, "", {"graph": graph, "input": text}, None, None, context)

    description = (spec.description or f"Runs the graph {graph!r}") + (
        f". Vertices: {', '.join(v.id for v in spec.vertices)}; the result holds the outputs of "
        f"{', '.join(spec.outputs) if spec.outputs else 'every vertex that produced one'}.")
    server.add_tool(run, name=f"run_{graph}", title=f"Run graph {graph}", description=description,
                    annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True))


async def build_bridge(config: MeshConfig, timeout: float = 300.0, sse_poll_s: float = 0.0) -> MCPServer:
    return create_bridge(config, await fetch_cards(config), timeout, sse_poll_s)


def main(argv: list[str] | None = None) -> None:
    from mesh.logs import setup_logging
    from mesh.tools.modules import load_config_for
    from mesh.tools.runner import run_server

    parser = argparse.ArgumentParser(prog="python -m mesh.tools.bridge", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", help="mesh file (default: $MESH_CONFIG or ./mesh.yaml)")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind with --http")
    parser.add_argument("--port", type=int, help="port to listen on with --http")
    parser.add_argument("--token-env", help="with --http: require the bearer token held by this environment variable")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a send waits for its task (default 300)")
    parser.add_argument("--sse-poll-s", type=float, default=0.0,
                        help="with --http: close a running call's SSE stream this often; the client resumes it "
                             "(Last-Event-ID), so no connection is held for a whole long task (default 0: never)")
    args = parser.parse_args(argv)
    setup_logging()
    from mesh.config import ConfigError

    try:
        config, missing = load_config_for(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    if missing:
        log.warning("unset variables in %s: %s (agents that need them will refuse calls)", config.path, ", ".join(missing))
    token = os.environ.get(args.token_env) if args.token_env else None
    if args.token_env and not token:
        print(f"mesh.tools.bridge: --token-env {args.token_env}: that variable is not set", file=sys.stderr)
        raise SystemExit(2)
    server = asyncio.run(build_bridge(config, args.timeout, args.sse_poll_s))
    # SSE answers, so that an agent's progress reaches the client while a send runs; resumable,
    # because a send can outlast a connection.
    run_server(server, what=f"bridge {config.name}", http=args.http, host=args.host, port=args.port, token=token,
               json_response=False, resumable=True)


if __name__ == "__main__":
    main()
