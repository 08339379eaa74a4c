"""`python -m MODULE`: the runner every tool module shares (stdio by default, streamable HTTP with --http)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mesh.config import ConfigError, find_config
from mesh.errors import ToolModuleError
from mesh.tools.http import serve_http
from mesh.tools.modules import (
    ToolModule,
    _checked_module,
    load_config_for,
    tool_config,
    tool_host,
    tool_public_hosts,
)

if TYPE_CHECKING:
    from mcp.server import MCPServer

log = logging.getLogger(__name__)


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
               graceful_timeout: float = 10.0, json_response: bool = True, resumable: bool = False,
               state_dir: Any = None, telemetry: Any = None) -> None:
    """Run ``server`` over stdio, or over HTTP until a signal; exit code 3 when it cannot listen.

    Run from mesh.yaml (``state_dir`` given), it traces: its MCP server spans
    continue the caller's trace (the ``traceparent`` the mesh's MCP client puts
    in each request's ``_meta``).
    """
    if not http:
        from mesh.tools.stdio import run_stdio

        if state_dir is not None:
            from mesh.telemetry.tracing import setup_tracing

            setup_tracing(what, state_dir, telemetry)

        try:
            asyncio.run(run_stdio(server))
        except KeyboardInterrupt:
            pass
        return
    if port is None:
        print(f"{what}: --http needs a port (--port, or `port:` in mesh.yaml)", file=sys.stderr)
        raise SystemExit(2)
    from mesh.errors import ServeError

    try:
        asyncio.run(serve_http(server, what=what, host=host, port=port, token=token, public_hosts=public_hosts,
                               max_body_bytes=max_body_bytes, graceful_timeout=graceful_timeout,
                               json_response=json_response, resumable=resumable, state_dir=state_dir,
                               telemetry=telemetry))
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
        "state_dir": config.state_dir,
        "telemetry": config.telemetry,
    }
    return f"tool {name}", tool_module.create_server(settings), serving
