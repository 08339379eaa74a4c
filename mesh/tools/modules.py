"""Tool modules named in mesh.yaml: loading one, validating its settings, building its MCPServer; their URLs and commands.

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

import logging
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from mesh.config import ConfigError, MeshConfig, ToolConfig, load_config
from mesh.config.plugins import ModuleImportError, import_module
from mesh.config.problems import validation_problems
from mesh.errors import ToolModuleError  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from mcp.server import MCPServer


log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"
CLIENT_NAME = "a2a-mcp-mesh"
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
_UNSET_VARIABLE = re.compile(r"environment variable (\w+) is not set")


# -- tool modules and settings ------------------------------------------------------------------


@dataclass
class ToolModule:
    module: ModuleType

    @property
    def name(self) -> str:
        spec = getattr(self.module, "__spec__", None)
        return spec.name if spec is not None else self.module.__name__

    @property
    def settings_model(self) -> type[BaseModel] | None:
        """The module's Settings model, if it has one."""
        return getattr(self.module, "Settings", None)

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
            problems += validation_problems(exc, ("tools", name, "settings"), config.problem, module.settings_model)
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
    return f"http://{bracketed(host)}:{tool.port}{MCP_PATH}"


def tool_command(config: MeshConfig, name: str, *, http: bool = False, python: str | None = None) -> list[str]:
    """The command that runs tool ``name`` with its mesh.yaml settings (stdio, or HTTP on its host and port)."""
    tool = tool_config(config, name)
    command = [python or sys.executable, "-m", tool.module, "--config", str(config.path), "--name", name]
    return [*command, "--http"] if http else command


def http_tool_names(config: MeshConfig) -> list[str]:
    return [name for name, tool in config.tools.items() if tool.transport == "http"]


def bracketed(host: str) -> str:
    """An IPv6 address in brackets, as URLs and binds want it."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
