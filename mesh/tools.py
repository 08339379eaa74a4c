"""How the mesh runs MCP tool servers: tool modules and their settings, serving over stdio or HTTP, URLs, client sessions.

A tool server is one module named in mesh.yaml (``module: mcp_tools.files``),
the way an agent is::

    class Settings(BaseModel): ...        # optional: validates `settings:` (extra="forbid")
    def create_server(settings) -> MCPServer: ...

Settings are validated with the context ``{"base_dir": <mesh.yaml's directory>,
"state_dir": <the mesh's state directory>}`` so that a path in settings can be
relative to mesh.yaml (see ``mcp_tools/_common.py``). Every tool module runs
with ``python -m MODULE [--config mesh.yaml --name NAME] [--http --host H
--port P]`` (``run_module`` below, which each module calls as its ``__main__``): stdio by default, streamable HTTP served by
hypercorn (HTTP/1.1 and h2c on one port) with ``--http``.

HTTP servers are stateful: each client gets an ``Mcp-Session-Id``, so a
server can reach its client between calls (the GET stream: notifications,
sampling, elicitation) and hosts such as the Inspector and IDEs find what they
expect. Tool servers answer each POST with one JSON body rather than an SSE
stream (1.5 times the calls per second; none of them sends anything
mid-call); the bridge keeps SSE, because it forwards agents' progress while a
call runs. Clients of the mesh talk HTTP/1.1 to them, because the Python MCP
client over HTTP/2 can stall with several calls in flight (see NOTES.md);
curl and other clients may use h2c.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import ipaddress
import logging
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from mesh.config import ConfigError, MeshConfig, ToolConfig, find_config, load_config
from mesh.modules import ModuleImportError, import_module

if TYPE_CHECKING:
    from mcp import Client
    from mcp.server import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

    from mesh.supervisor import Service

log = logging.getLogger("mesh.tools")

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"
CLIENT_NAME = "a2a-mcp-mesh"
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
_UNSET_VARIABLE = re.compile(r"environment variable (\w+) is not set")


class ToolModuleError(Exception):
    """The module named in mesh.yaml cannot be used as a tool server; the message says why."""


# -- tool modules and settings ------------------------------------------------------------------


@dataclass
class ToolModule:
    module: ModuleType

    @property
    def name(self) -> str:
        spec = getattr(self.module, "__spec__", None)
        return spec.name if spec is not None else self.module.__name__

    def settings(self, raw: dict[str, Any], base_dir: Path | None = None, state_dir: Path | None = None) -> Any:
        """``raw`` validated by the module's Settings (a dict when it has none); relative paths resolve against ``base_dir``."""
        model = getattr(self.module, "Settings", None)
        if model is None:
            if raw:
                raise ToolModuleError(f"{self.name} takes no settings (it has no Settings model)")
            return {}
        base = (base_dir or Path.cwd()).resolve()
        context = {"base_dir": base, "state_dir": (state_dir or base / ".mesh").resolve()}
        return model.model_validate(raw, context=context)

    def create_server(self, settings: Any) -> MCPServer:
        from mcp.server import MCPServer

        server = self.module.create_server(settings)
        if not isinstance(server, MCPServer):
            raise ToolModuleError(f"{self.name}.create_server() must return an mcp MCPServer (got {type(server).__name__})")
        return server


def load_tool_module(path: str, search_dir: Path | None = None) -> ToolModule:
    """Import ``path`` and check it provides ``create_server`` (and a pydantic ``Settings`` if any).

    ``search_dir`` (mesh.yaml's directory) goes on sys.path first, so a tool
    server can be a plain module next to mesh.yaml.
    """
    try:
        module = import_module(path, search_dir)
    except ModuleImportError as exc:
        raise ToolModuleError(str(exc)) from None
    return _checked_module(module)


def _checked_module(module: ModuleType) -> ToolModule:
    tool = ToolModule(module)
    if not callable(getattr(module, "create_server", None)):
        raise ToolModuleError(f"{tool.name} is not a tool module: it lacks create_server(settings) (see mesh/tools.py)")
    model = getattr(module, "Settings", None)
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ToolModuleError(f"{tool.name}.Settings must be a pydantic model")
    return tool


def tool_config(config: MeshConfig, name: str) -> ToolConfig:
    try:
        return config.tools[name]
    except KeyError:
        known = ", ".join(sorted(config.tools)) or "none"
        raise KeyError(f"no tool named {name!r} in {config.path} (tools: {known})") from None


def tool_settings(config: MeshConfig, name: str) -> Any:
    tool = tool_config(config, name)
    module = load_tool_module(tool.module, config.base_dir)
    return module.settings(tool.settings, config.base_dir, config.state_dir)


def build_tool_server(config: MeshConfig, name: str) -> MCPServer:
    """The MCPServer of tool ``name`` with its settings from mesh.yaml."""
    tool = tool_config(config, name)
    module = load_tool_module(tool.module, config.base_dir)
    return module.create_server(module.settings(tool.settings, config.base_dir, config.state_dir))


def tool_module_problems(config: MeshConfig) -> list:
    """Each tool's module imports, provides create_server and accepts its settings (for `mesh check`)."""
    problems = []
    for name, tool in config.tools.items():
        try:
            module = load_tool_module(tool.module, config.base_dir)
        except ToolModuleError as exc:
            problems.append(config.problem(("tools", name, "module"), str(exc)))
            continue
        try:
            module.settings(tool.settings, config.base_dir, config.state_dir)
        except ToolModuleError as exc:
            problems.append(config.problem(("tools", name, "settings"), str(exc)))
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                message = f"unknown key {loc[-1]!r}" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
                problems.append(config.problem(("tools", name, "settings", *loc), message))
    return problems


def load_config_for(path: str | os.PathLike | None, own: tuple = ()) -> tuple[MeshConfig, list[str]]:
    """mesh.yaml for one server process, tolerating unset ``${VAR}``s outside the ``own`` part of the file.

    A tool that Claude Desktop launches must not need the bearer tokens of
    every agent of the mesh: variables referenced elsewhere that are not set
    get a placeholder, and their names are returned so the caller can say so.
    """
    try:
        return load_config(path), []
    except ConfigError as exc:
        missing = []
        for problem in exc.problems:
            match = _UNSET_VARIABLE.search(problem.message)
            if match is None or (own and tuple(problem.path[: len(own)]) == own):
                raise
            missing.append(match.group(1))
    placeholders = {name: f"unset-{name}" for name in missing}
    return load_config(path, environ={**os.environ, **placeholders}), sorted(set(missing))


# -- HTTP serving -------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_names(host: str) -> set[str]:
    """The names a client may put in the Host header to reach a server bound to ``host``."""
    loopback = {"127.0.0.1", "localhost", "[::1]"}
    if is_loopback(host):
        return loopback | {_bracketed(host)}
    if host in _WILDCARD_HOSTS:
        names = loopback | {socket.gethostname(), socket.getfqdn()}
        with contextlib.suppress(OSError):
            names |= {_bracketed(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
        return names
    return {_bracketed(host)}


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def transport_security(host: str, public_hosts: Iterable[str] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection for a server bound to ``host``: only its own names pass the Host/Origin checks.

    A browser page from another site that resolves its name to this
    machine sends that name as Host (and its own Origin), which is refused
    with 421/403. A loopback bind accepts the loopback names; a specific
    address or name accepts that; a wildcard bind (0.0.0.0, ::) accepts the
    machine's host names and addresses. ``public_hosts`` adds the names a
    proxy or DNS gives the server ("mcp.example.com" or "mcp.example.com:443").
    """
    from mcp.server.transport_security import TransportSecuritySettings

    names = _host_names(host) | {h.strip() for h in public_hosts if h.strip()}
    hosts, origins = set(), set()
    for name in names:
        bare = name if name.endswith("]") or ":" not in name else name.rsplit(":", 1)[0]
        has_port = bare != name
        hosts.add(name)
        if not has_port:
            hosts.add(f"{name}:*")
        for scheme in ("http", "https"):
            origins.add(f"{scheme}://{name}")
            if not has_port:
                origins.add(f"{scheme}://{name}:*")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=sorted(hosts), allowed_origins=sorted(origins),
    )


def http_app(server: MCPServer, *, host: str, token: str | None = None, realm: str = "mcp",
             public_hosts: Iterable[str] = (), max_body_bytes: int = 4 * 1024 * 1024, json_response: bool = True) -> Any:
    """The ASGI app of ``server`` over streamable HTTP at /mcp (stateful), with /health, request log, bearer auth and body limit.

    With ``json_response`` a request's answer is one JSON body instead of an
    SSE stream: about 1.5 times the calls per second (scripts/bench/mcp.py),
    but nothing can be sent to the client in the middle of a call (progress,
    log messages), so a server that does that passes False.
    """
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from mesh.middleware import BearerAuth, BodyLimit, RequestLog

    @server.custom_route(HEALTH_PATH, methods=["GET"])
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": server.name})

    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=transport_security(host, public_hosts),
        max_request_body_size=max_body_bytes,
        host=host,
        json_response=json_response,
    )
    app = BodyLimit(app, limit=max_body_bytes)
    if token:
        app = BearerAuth(app, token=token, realm=realm, public_paths=(HEALTH_PATH,))
    return RequestLog(app)


async def serve_http(server: MCPServer, *, what: str, host: str, port: int, token: str | None = None,
                     public_hosts: Iterable[str] = (), max_body_bytes: int = 4 * 1024 * 1024,
                     graceful_timeout: float = 10.0, json_response: bool = True) -> None:
    """Serve ``server`` over streamable HTTP with hypercorn (HTTP/1.1 + h2c) until SIGINT/SIGTERM."""
    from mesh.serve import serve_asgi

    app = http_app(server, host=host, token=token, realm=what, public_hosts=public_hosts,
                   max_body_bytes=max_body_bytes, json_response=json_response)
    shown = _bracketed(host if host not in _WILDCARD_HOSTS else socket.getfqdn())
    log.info("%s: streamable HTTP at http://%s:%d%s (http/1.1 + h2c%s)", what, shown, port, MCP_PATH,
             ", bearer token required" if token else "")
    await serve_asgi(app, what=what, host=host, port=port, graceful_timeout=graceful_timeout)


def tool_host(config: MeshConfig, tool: ToolConfig) -> str:
    return tool.host or config.server.host


def tool_public_hosts(tool: ToolConfig) -> list[str]:
    """Extra names the server answers to: the host of ``public_url`` once ToolConfig has one."""
    from urllib.parse import urlsplit

    public_url = getattr(tool, "public_url", None)
    return [urlsplit(public_url).netloc] if public_url else []


def tool_url(config: MeshConfig, name: str) -> str:
    """Where clients reach HTTP tool ``name``: http://host:port/mcp (its public_url when it has one)."""
    tool = tool_config(config, name)
    if tool.transport != "http":
        raise ValueError(f"tool {name} runs over stdio: it has no URL (agents and hosts launch it)")
    public_url = getattr(tool, "public_url", None)
    if public_url:
        return public_url.rstrip("/")
    host = tool_host(config, tool)
    if host in _WILDCARD_HOSTS:
        host = socket.getfqdn()
    return f"http://{_bracketed(host)}:{tool.port}{MCP_PATH}"


def tool_command(config: MeshConfig, name: str, *, http: bool = False, python: str | None = None) -> list[str]:
    """The command that runs tool ``name`` with its mesh.yaml settings (stdio, or HTTP on its host and port)."""
    tool = tool_config(config, name)
    command = [python or sys.executable, "-m", tool.module, "--config", str(config.path), "--name", name]
    return [*command, "--http"] if http else command


def tool_service(config: MeshConfig, name: str) -> Service:
    """What `mesh up` runs for an HTTP tool: its process, port and the URL that answers once it is ready."""
    from mesh.supervisor import Service

    tool = tool_config(config, name)
    host = tool_host(config, tool)
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    return Service(
        kind="tool", name=name, command=tool_command(config, name, http=True),
        host=host, port=tool.port, ready_url=f"http://{_bracketed(probe_host)}:{tool.port}{HEALTH_PATH}",
        cwd=str(config.base_dir),
    )


def http_tool_names(config: MeshConfig) -> list[str]:
    return [name for name, tool in config.tools.items() if tool.transport == "http"]


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


# -- `python -m MODULE`: the runner every tool module shares ------------------------------------


def run_module(module: ModuleType | str, argv: list[str] | None = None) -> None:
    """Entry point of ``python -m mcp_tools.NAME``: stdio by default, ``--http`` for streamable HTTP.

    A module calls ``run_module(__spec__.name)`` under ``if __name__ == "__main__"``.
    """
    from mesh.logs import setup_logging

    tool_module = _checked_module(importlib.import_module(module) if isinstance(module, str) else module)
    parser = argparse.ArgumentParser(
        prog=f"python -m {tool_module.name}",
        description=(tool_module.module.__doc__ or "").strip().split("\n", 1)[0] or None,
    )
    parser.add_argument("-c", "--config", help="mesh file to take settings from (with --name)")
    parser.add_argument("--name", help="the tool's name in mesh.yaml (default: the one tool using this module)")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", help="address to bind with --http (default: mesh.yaml's, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port with --http (default: mesh.yaml's)")
    args = parser.parse_args(argv)
    # stdout is the stdio transport: everything else goes to stderr.
    setup_logging()
    try:
        what, server, serving = _server_from_args(tool_module, args)
    except (ConfigError, ToolModuleError, KeyError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        print(f"{tool_module.name}: {text}", file=sys.stderr)
        raise SystemExit(2) from None
    run_server(server, what=what, http=args.http, **serving)


def run_server(server: MCPServer, *, what: str, http: bool, host: str = "127.0.0.1", port: int | None = None,
               token: str | None = None, public_hosts: Iterable[str] = (), max_body_bytes: int = 4 * 1024 * 1024,
               graceful_timeout: float = 10.0, json_response: bool = True) -> None:
    """Run ``server`` over stdio, or over HTTP until a signal; exit code 3 when it cannot listen."""
    if not http:
        try:
            asyncio.run(server.run_stdio_async())
        except KeyboardInterrupt:
            pass
        return
    if port is None:
        print(f"{what}: --http needs a port (--port, or `port:` in mesh.yaml)", file=sys.stderr)
        raise SystemExit(2)
    from mesh.serve import ServeError

    try:
        asyncio.run(serve_http(server, what=what, host=host, port=port, token=token, public_hosts=public_hosts,
                               max_body_bytes=max_body_bytes, graceful_timeout=graceful_timeout,
                               json_response=json_response))
    except ServeError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(3) from None


def _server_from_args(tool_module: ToolModule, args: argparse.Namespace) -> tuple[str, MCPServer, dict]:
    if args.config is None and args.name is None:
        short = tool_module.name.rsplit(".", 1)[-1]
        serving = {"host": args.host or "127.0.0.1", "port": args.port}
        return f"tool {short}", tool_module.create_server(tool_module.settings({})), serving
    path = find_config(args.config)
    name = args.name
    if name is None:
        config, _ = load_config_for(path)
        using = [n for n, t in config.tools.items() if t.module == tool_module.name]
        if len(using) != 1:
            raise ValueError(f"{config.path}: {len(using)} tools use {tool_module.name} "
                             f"({', '.join(using) or 'none'}): say which with --name")
        name = using[0]
    # Over stdio the tool needs only its settings; serving HTTP it needs its token too.
    config, missing = load_config_for(path, own=("tools", name) if args.http else ("tools", name, "settings"))
    if missing:
        log.info("%s refers to unset variables this tool does not use: %s", config.path, ", ".join(missing))
    tool = tool_config(config, name)
    if tool.module != tool_module.name:
        raise ValueError(f"tool {name} of {config.path} runs {tool.module}, not {tool_module.name}")
    settings = tool_module.settings(tool.settings, config.base_dir, config.state_dir)
    serving = {
        "host": args.host or tool_host(config, tool),
        "port": args.port or tool.port,
        "token": tool.auth.bearer_token if tool.auth else None,
        "public_hosts": tool_public_hosts(tool),
        "max_body_bytes": int(config.server.max_body_bytes),
        "graceful_timeout": config.server.graceful_timeout,
    }
    return f"tool {name}", tool_module.create_server(settings), serving


# -- entries for MCP hosts (Claude Desktop, VS Code, Cursor) ------------------------------------


@dataclass
class HostServer:
    """One server as an MCP host should start or reach it, before a host's own file format is applied.

    ``secrets`` maps an environment variable the server needs (a bearer
    token from mesh.yaml) to where it goes: "env" for a stdio child's
    environment, "header" for the Authorization header of an HTTP entry.
    """

    name: str
    description: str
    command: list[str] | None = None
    url: str | None = None
    secrets: dict[str, str] | None = None


def _referenced_variables(config: MeshConfig, prefix: tuple) -> list[str]:
    from mesh.yamlsource import ENV_REFERENCE

    source = config._source
    if source is None:
        return []
    names = []
    for path, raw in source.raw.items():
        if tuple(path[: len(prefix)]) == prefix:
            names += [m.group(1) for m in ENV_REFERENCE.finditer(raw)]
    return sorted(set(names))


def host_servers(config: MeshConfig, python: str | None = None, http_as_url: bool = True) -> list[HostServer]:
    """Every tool of mesh.yaml and the bridge, as hosts should launch them (absolute paths throughout).

    Stdio tools, and every tool when ``http_as_url`` is false, are launched
    as stdio children of the host with their mesh.yaml settings; HTTP tools
    are otherwise URL entries (they run under `mesh up`).
    """
    python = python or str(Path(sys.executable).absolute())
    servers = []
    for name, tool in config.tools.items():
        own = _referenced_variables(config, ("tools", name, "settings"))
        if tool.transport == "http" and http_as_url:
            auth = _referenced_variables(config, ("tools", name, "auth"))
            servers.append(HostServer(
                name=f"{config.name}-{name}", description=f"tool {name} ({tool.module}) at {tool_url(config, name)}",
                url=tool_url(config, name), secrets={**{v: "env" for v in own}, **{v: "header" for v in auth}} or None,
            ))
        else:
            servers.append(HostServer(
                name=f"{config.name}-{name}", description=f"tool {name} ({tool.module}) over stdio",
                command=tool_command(config, name, python=python), secrets={v: "env" for v in own} or None,
            ))
    tokens = _referenced_variables(config, ("agents",))
    servers.append(HostServer(
        name=f"{config.name}-bridge", description=f"the agents and graphs of mesh {config.name} as tools",
        command=[python, "-m", "mesh.bridge", "--config", str(config.path)],
        secrets={v: "env" for v in tokens} or None,
    ))
    return servers


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
