"""`mesh up`, `mesh serve AGENT` and `mesh check`: running the mesh and validating it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from mesh.cli.common import check_modules, config_of
from mesh.cli.inspect import _probe_agents
from mesh.cli.supervisor import Service
from mesh.config import MeshConfig
from mesh.config.problems import in_file_order
from mesh.errors import CliError, ConfigError, MeshError
from mesh.tools.modules import (
    HEALTH_PATH,
    bracketed,
    tool_command,
    tool_config,
    tool_host,
)

# -- up / serve / check -------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from mesh.errors import ServeError
    from mesh.logs import setup_logging
    from mesh.serving.server import serve_agent

    config = config_of(args)
    setup_logging()
    try:
        agent = config.agent(args.agent)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None
    if not agent.is_local:
        raise CliError(f"agent {args.agent} is external ({agent.url}); there is nothing to serve")
    try:
        asyncio.run(serve_agent(config, args.agent, getattr(args, "replica", 0) or 0))
    except ServeError as exc:
        raise CliError(str(exc), code=3) from None
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from mesh.cli.supervisor import Supervisor
    from mesh.cli.up import tool_service
    from mesh.tools.modules import http_tool_names

    config = config_of(args)
    check_modules(config)
    names = list(config.local_agents())
    tools = http_tool_names(config)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names and n not in tools]
        if unknown:
            raise CliError(f"--only names no local agent or HTTP tool: {', '.join(unknown)} "
                           f"(local agents: {', '.join(names)}; HTTP tools: {', '.join(tools) or 'none'})")
        names = [n for n in names if n in wanted]
        tools = [n for n in tools if n in wanted]
    if not names and not tools:
        raise CliError(f"{config.path} declares no local agent or HTTP tool to start")
    services = [agent_service(config, name, replica) for name in names for replica in range(config.agent(name).replicas)]
    services += [tool_service(config, name) for name in tools]
    console = None
    if config.console.enabled and not getattr(args, "no_console", False):
        from mesh.console.server import ConsoleServer

        console = ConsoleServer(config, processes=lambda: supervisor.process_states())
        try:
            console.bind()
        except OSError as exc:
            raise CliError(f"cannot serve the console on {config.console_host()} port {config.console.port}: "
                           f"{exc.strerror or exc} (console.port in {config.path}, or --no-console)") from None

    async def table() -> str:
        text = await ready_table(config, names, tools)
        if console is not None:
            text += f"\n\nconsole: {console.url}" + (" (sign in with an agent's bearer token)"
                                                      if any(a.auth for a in config.local_agents().values()) else "")
        return text

    supervisor = Supervisor(
        services,
        startup_timeout=config.server.startup_timeout,
        grace=config.server.graceful_timeout + 5,
        on_ready=table,
        watch=(config.path, lambda: entry_fingerprints(config.path, names, tools)),
        background=[console.serve] if console is not None else [],
    )
    return asyncio.run(supervisor.run())


def agent_service(config: MeshConfig, name: str, replica: int = 0):
    """The process of one agent (of replica ``replica`` on port + replica when it has ``replicas: N``)."""
    from mesh.cli.supervisor import Service

    agent = config.agent(name)
    port = config.port_of(agent, replica)
    host = config.host_of(agent)
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    scheme = "https" if agent.tls else "http"
    probe = f"{scheme}://{f'[{probe_host}]' if ':' in probe_host else probe_host}:{port}/health"
    command = [sys.executable, "-m", "mesh", "serve", name, "-c", str(config.path)]
    if agent.replicas > 1:
        command += ["--replica", str(replica)]
    return Service(
        kind="agent", name=name if agent.replicas == 1 else f"{name}.{replica}",
        command=command,
        host=host, port=port, ready_url=probe,
        cwd=str(config.base_dir),  # module paths resolve next to mesh.yaml, as `mesh check` resolves them
    )


async def ready_table(config: MeshConfig, names: list[str], tools: list[str]) -> str:
    """What `mesh up` prints once everything answers: the agents (skills from their live cards) and the HTTP tools."""
    from mesh.cli.output import table
    from mesh.guard.status import guard_column, guard_status
    from mesh.serving.app import protocols_of
    from mesh.tools.modules import tool_url

    probed, status = await asyncio.gather(_probe_agents(config, names), guard_status(config))
    skills = {row["name"]: row["skills"] for row in probed}
    guard = guard_column(config, names, status)
    rows = [[name, config.url_of(name), ", ".join(protocols_of(config, name)), ", ".join(skills[name]),
             "bearer" if config.agent(name).auth else "none", guard[name]] for name in names]
    text = table(["AGENT", "URL", "PROTOCOLS", "SKILLS", "AUTH", "GUARD"], rows) if rows else ""
    for row in probed:
        model = row.get("model")
        if model and model["problem"]:
            text += (f"\n{row['name']}: {model['problem']} ({model['provider']} at {model['url']}, model {model['name']}); "
                     "its tasks fail until it answers (README: 'LLM agents')")
    if tools:
        tool_rows = [[name, tool_url(config, name), "MCP streamable HTTP (http/1.1, h2c)", config.tools[name].module,
                      "bearer" if config.tools[name].auth else "none"] for name in tools]
        text += ("\n\n" if text else "") + table(["TOOL", "URL", "PROTOCOLS", "MODULE", "AUTH"], tool_rows)
    return text


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = config_of(args)
    except ConfigError as exc:
        # The file does not validate; still report, in the same run, the modules it names that cannot be used.
        source = getattr(exc, "source", None)
        more = named_module_problems(source) if source is not None else []
        if more:
            raise ConfigError(in_file_order([*exc.problems, *more])) from None
        raise
    check_modules(config)
    local = list(config.local_agents())
    external = [n for n in config.agents if n not in local]
    print(f"{config.path}: valid: {len(local)} local agents ({', '.join(local) or 'none'}), "
          f"{len(external)} external, {len(config.tools)} tools, {len(config.graphs)} graphs")
    return 0


def tool_service(config: MeshConfig, name: str) -> Service:
    """What `mesh up` runs for an HTTP tool: its process, port and the URL that answers once it is ready."""
    tool = tool_config(config, name)
    host = tool_host(config, tool)
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    return Service(
        kind="tool", name=name, command=tool_command(config, name, http=True),
        host=host, port=tool.port, ready_url=f"http://{bracketed(probe_host)}:{tool.port}{HEALTH_PATH}",
        cwd=str(config.base_dir),
    )


def named_module_problems(source) -> list:
    """The agent and tool modules a (possibly invalid) mesh.yaml names that cannot be imported or used."""
    from mesh.serving.agents import load_agent_module
    from mesh.tools.modules import load_tool_module

    problems = []
    data = source.data if isinstance(source.data, dict) else {}
    base_dir = Path(source.file).resolve().parent
    for section, load in (("agents", load_agent_module), ("tools", load_tool_module)):
        entries = data.get(section)
        for name, entry in (entries.items() if isinstance(entries, dict) else ()):
            module = entry.get("module") if isinstance(entry, dict) else None
            if isinstance(module, str) and module:
                try:
                    load(module, base_dir)
                except MeshError as exc:
                    problems.append(source.problem((section, name, "module"), str(exc)))
    return problems


def entry_fingerprints(path: Path, names: list[str], tools: list[str]) -> dict[str, str]:
    """Each agent's and HTTP tool's entry of mesh.yaml, as JSON, to see which changed; raises ConfigError if invalid."""
    import json

    from mesh.config import load_config

    config = load_config(path)
    check_modules(config)
    prints = {name: json.dumps(agent.model_dump(mode="json"), sort_keys=True, default=str)
              for name, agent in config.agents.items() if agent.is_local}
    for name in tools:
        try:
            prints[name] = json.dumps(tool_config(config, name).model_dump(mode="json"), sort_keys=True, default=str)
        except Exception:  # noqa: BLE001 - a tool removed from the file: nothing to compare
            pass
    return prints
