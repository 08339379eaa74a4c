"""What an LLM agent may call: the MCP tools of mesh.yaml (through ToolConnections) and other agents over A2A, as model tools.

Tool names offered to the model are ``TOOL__NAME`` for an MCP tool of the
mesh's tool server TOOL and ``ask_AGENT`` for another agent; the agent tool
takes one argument, ``message``, sent as an A2A message with the mesh's client
(the answer is the text of the agent's artifacts, or its status message).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from mesh.tools.connections import ToolConnections

AGENT_PREFIX = "ask_"


class ToolFailure(Exception):
    """A call the model asked for could not be made (the message says why)."""


@dataclass
class Target:
    kind: str  # "mcp" or "agent"
    server: str  # the tool server's or the agent's name in mesh.yaml
    name: str  # the MCP tool's name (mcp) or the agent's name (agent)

    @property
    def label(self) -> str:
        return f"{self.server}.{self.name}" if self.kind == "mcp" else f"agent {self.server}"


def openai_tool(qualified: str, description: str, schema: dict | None) -> dict[str, Any]:
    schema = dict(schema or {"type": "object", "properties": {}})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return {"type": "function", "function": {"name": qualified, "description": description, "parameters": schema}}


class Toolbox:
    def __init__(self, config: Any, tools: list[str], agents: list[str], call_timeout_s: float = 60.0) -> None:
        self.config = config
        self.tool_servers = tools
        self.agents = agents
        self.call_timeout_s = call_timeout_s
        self.connections = ToolConnections(config, timeout=call_timeout_s)
        self._catalog: tuple[list[dict], dict[str, Target]] | None = None
        self._lock = asyncio.Lock()

    async def catalog(self) -> tuple[list[dict], dict[str, Target]]:
        """The tools as the model sees them (OpenAI function schemas) and where each one goes; listed once."""
        async with self._lock:
            if self._catalog is None:
                schemas: list[dict] = []
                targets: dict[str, Target] = {}
                for server in self.tool_servers:
                    try:
                        client = await self.connections.get(server)
                        listed = (await asyncio.wait_for(client.list_tools(), self.call_timeout_s)).tools
                    except Exception as exc:
                        await self.connections.discard(server)
                        raise ToolFailure(f"the tool server {server} cannot be reached ({type(exc).__name__}: {exc}); "
                                          "is `mesh up` running it?") from None
                    for tool in listed:
                        qualified = f"{server}__{tool.name}"
                        schemas.append(openai_tool(qualified, tool.description or tool.title or tool.name, tool.input_schema))
                        targets[qualified] = Target("mcp", server, tool.name)
                for agent in self.agents:
                    qualified = f"{AGENT_PREFIX}{agent}".replace("-", "_")
                    description = (f"Ask the agent {agent} of this mesh; it answers in text."
                                   + (f" It: {self.config.agents[agent].description}" if self.config.agents[agent].description else ""))
                    schemas.append(openai_tool(qualified, description, {
                        "type": "object", "properties": {"message": {"type": "string", "description": "what to ask"}},
                        "required": ["message"]}))
                    targets[qualified] = Target("agent", agent, agent)
                self._catalog = (schemas, targets)
            return self._catalog

    async def call(self, target: Target, arguments: dict[str, Any]) -> tuple[str, Any, bool]:
        """(text, structured content or None, is_error) of one call."""
        if target.kind == "agent":
            return await self._ask(target.server, arguments)
        try:
            client = await self.connections.get(target.server)
            result = await asyncio.wait_for(client.call_tool(target.name, arguments), self.call_timeout_s)
        except TimeoutError:
            raise ToolFailure(f"{target.label} did not answer within {self.call_timeout_s:g}s") from None
        except Exception as exc:
            await self.connections.discard(target.server)
            raise ToolFailure(f"calling {target.label} failed: {type(exc).__name__}: {exc}") from None
        text = "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")
        return text, result.structured_content, bool(result.is_error)

    async def _ask(self, agent: str, arguments: dict[str, Any]) -> tuple[str, Any, bool]:
        from a2a.types import GetTaskRequest

        from mesh.client import fetch_card, http_client, open_client, send_request, user_message
        from mesh.client.errors import failure_reason
        from mesh.client.exchange import exchange
        from mesh.client.parts import parts_text, state_name

        text = arguments.get("message")
        if not isinstance(text, str) or not text.strip():
            raise ToolFailure(f"ask {agent}: the model gave no 'message' to send")
        url = self.config.url_of(agent)
        try:
            async with http_client(self.config.token_of(self.config.agents[agent]), timeout=self.call_timeout_s) as http:
                card = await fetch_card(http, url)
                client = await open_client(http, card, streaming=False)
                async with asyncio.timeout(self.call_timeout_s):
                    answer = await exchange(client, send_request(user_message(text)))
                    task = answer.task
                    if task is not None and not task.artifacts:
                        task = await client.get_task(GetTaskRequest(id=task.id))
        except TimeoutError:
            raise ToolFailure(f"agent {agent} did not answer within {self.call_timeout_s:g}s") from None
        except Exception as exc:
            raise ToolFailure(failure_reason(exc, agent, url)) from None
        if task is None:
            message = answer.message
            return (parts_text(message.parts) if message is not None else ""), None, False
        texts = [parts_text(artifact.parts) for artifact in task.artifacts]
        status_text = parts_text(task.status.message.parts) if task.status.HasField("message") else ""
        state = state_name(task.status.state)
        if state != "completed":
            return f"agent {agent} ended {state}: {status_text}", None, True
        return (texts[-1] if texts else status_text), None, False

    async def aclose(self) -> None:
        await self.connections.aclose()
