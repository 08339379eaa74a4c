"""Entries for MCP hosts (Claude Desktop, VS Code, Cursor): the mesh's tools and the bridge as host config."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from mesh.config import MeshConfig
from mesh.tools.modules import tool_command, tool_url

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
    from mesh.config.yamlsource import ENV_REFERENCE

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
        command=[python, "-m", "mesh.tools.bridge", "--config", str(config.path)],
        secrets={v: "env" for v in tokens} or None,
    ))
    return servers
