"""MCP client connections from agents and the CLI to the tools of mesh.yaml (stdio or HTTP), kept open per tool; the tools' probe for `mesh ls`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from mesh.config import MeshConfig, ToolConfig
from mesh.tools.modules import (
    CLIENT_NAME,
    HEALTH_PATH,
    MCP_PATH,
    tool_command,
    tool_config,
    tool_url,
)

if TYPE_CHECKING:
    from mcp import Client

log = logging.getLogger(__name__)


# -- clients ------------------------------------------------------------------------------------


def stdio_parameters(config: MeshConfig, name: str, env: dict[str, str] | None = None):
    """How to launch tool ``name`` as a stdio child (its settings from mesh.yaml)."""
    from mcp.client.stdio import StdioServerParameters

    command = tool_command(config, name)
    return StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(config.base_dir))


@contextlib.asynccontextmanager
async def open_tool(config: MeshConfig, name: str, *, timeout: float = 60.0) -> AsyncIterator[Client]:
    """An initialized MCP client of tool ``name``: a spawned stdio child, or streamable HTTP over HTTP/1.1 with its token."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp_types import Implementation

    tool = tool_config(config, name)
    info = Implementation(name=CLIENT_NAME, version="1.0.0")
    if tool.transport == "stdio":
        # The child inherits this process's environment: it may need the
        # variables mesh.yaml refers to, and it is the mesh's own code.
        target: Any = stdio_parameters(config, name, env=dict(os.environ))
        async with Client(target, mode="legacy", client_info=info, read_timeout_seconds=timeout) as client:
            yield client
        return
    headers = {"Authorization": f"Bearer {tool.auth.bearer_token}"} if tool.auth else {}
    http = httpx2.AsyncClient(http1=True, http2=False, headers=headers,
                              timeout=httpx2.Timeout(30.0, read=max(timeout, 30.0)))
    async with http:
        transport = streamable_http_client(tool_url(config, name), http_client=http)
        async with Client(transport, mode="legacy", client_info=info, read_timeout_seconds=timeout) as client:
            yield client


class ToolConnections:
    """Long-lived MCP clients of a mesh's tools, opened on first use and shared by concurrent tasks.

    Each client lives in a task of its own (anyio's scopes must be left by
    the task that entered them), so any task may call tools while a
    connection stays open across requests; a connection that broke is
    opened again on the next ``get``.
    """

    def __init__(self, config: MeshConfig, timeout: float = 60.0) -> None:
        self.config = config
        self.timeout = timeout
        self._clients: dict[str, asyncio.Future] = {}
        self._keepers: dict[str, asyncio.Task] = {}
        self._closing: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> Client:
        async with self._lock:
            keeper = self._keepers.get(name)
            if keeper is None or keeper.done():
                ready: asyncio.Future = asyncio.get_running_loop().create_future()
                closing = asyncio.Event()
                self._clients[name], self._closing[name] = ready, closing
                self._keepers[name] = asyncio.create_task(self._keep(name, ready, closing), name=f"mcp-{name}")
            ready = self._clients[name]
        return await asyncio.shield(ready)

    async def _keep(self, name: str, ready: asyncio.Future, closing: asyncio.Event) -> None:
        try:
            async with open_tool(self.config, name, timeout=self.timeout) as client:
                ready.set_result(client)
                await closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError(f"tool {name}: {exc!r}"))
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("connection to tool %s ended: %s", name, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def discard(self, name: str) -> None:
        """Close the connection to ``name`` (after it failed); the next ``get`` opens a new one."""
        async with self._lock:
            closing, keeper = self._closing.pop(name, None), self._keepers.pop(name, None)
            self._clients.pop(name, None)
        if closing is not None:
            closing.set()
        if keeper is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(keeper, 5.0)

    async def aclose(self) -> None:
        for name in list(self._keepers):
            await self.discard(name)

# -- `mesh ls` ------------------------------------------------------------------------------------


async def probe_tools(config: MeshConfig, timeout: float = 2.0) -> list[dict[str, Any]]:
    """One row per tool for `mesh ls`: name, module, transport, URL (HTTP tools) and whether it answers."""
    import httpx

    async def probe(name: str, tool: ToolConfig) -> dict[str, Any]:
        row: dict[str, Any] = {"name": name, "module": tool.module, "transport": tool.transport, "url": None,
                               "auth": "bearer" if tool.auth else "none", "answers": None, "error": None}
        if tool.transport != "http":
            row["error"] = "launched by its clients over stdio"
            return row
        row["url"] = tool_url(config, name)
        health = row["url"].removesuffix(MCP_PATH) + HEALTH_PATH
        try:
            async with httpx.AsyncClient(timeout=timeout) as http:
                response = await http.get(health)
            row["answers"] = response.status_code == 200
            if not row["answers"]:
                row["error"] = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            row["answers"] = False
            row["error"] = "connection refused (is `mesh up` running?)" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
        return row

    return list(await asyncio.gather(*(probe(n, t) for n, t in config.tools.items())))
