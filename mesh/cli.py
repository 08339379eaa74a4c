"""The `mesh` command: up, serve, check, ls, card, send, get, cancel (every command takes -c/--config)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

from mesh.config import ConfigError, MeshConfig, find_config, load_config

EXIT_CONFIG = 2


def _settled_states() -> set[int]:
    from a2a.types import TaskState

    return {TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED,
            TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED}


class CliError(Exception):
    """A failure to report in one line and exit non-zero."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    # a2a-sdk traces every call with OpenTelemetry when the API is installed;
    # the mesh configures no exporter, so the spans would be dropped, at about
    # a third of the CPU of a message/send. Set it to true to trace (the
    # child processes of `mesh up` inherit it).
    os.environ.setdefault("OTEL_INSTRUMENTATION_A2A_SDK_ENABLED", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except CliError as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesh", description="Run and talk to an A2A/MCP agent mesh.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="mesh file (default: $MESH_CONFIG or ./mesh.yaml)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("up", cmd_up, "start every local agent of the mesh, show where they are, stream their logs")
    sub.add_argument("--only", help="comma-separated agent names to start (default: all)")
    sub = command("serve", cmd_serve, "serve one agent in the foreground (what `mesh up` runs per agent)")
    sub.add_argument("agent")
    command("check", cmd_check, "validate mesh.yaml and import every agent module, without starting anything")
    sub = command("ls", cmd_ls, "list agents, tools and graphs with their URLs and whether they answer")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub = command("card", cmd_card, "show an agent's card (by name or URL)")
    sub.add_argument("agent")
    sub.add_argument("--extended", action="store_true", help="the authenticated extended card")
    sub.add_argument("--json", action="store_true", help="print the card as JSON")
    sub = command("send", cmd_send, "send a message to an agent and print its answer")
    sub.add_argument("agent")
    sub.add_argument("text", nargs="*", help="the message text ('-' reads stdin)")
    sub.add_argument("--data", help="a JSON value sent as a data part")
    sub.add_argument("--stream", action="store_true", help="stream events as they happen (message/stream)")
    sub.add_argument("--task", help="continue this task id")
    sub.add_argument("--context", help="send within this context id")
    sub.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    sub.add_argument("--json", action="store_true", help="print raw events as JSON lines")
    for name, handler, help in (("get", cmd_get, "show a task"), ("cancel", cmd_cancel, "cancel a task")):
        sub = command(name, handler, help)
        sub.add_argument("agent")
        sub.add_argument("task_id")
        sub.add_argument("--json", action="store_true", help="print the task as JSON")
    from mesh.graph_cli import register as register_graphs
    from mesh.guard_cli import register as register_guard
    from mesh.mcp_config import register as register_mcp_config

    register_graphs(commands, common)
    register_guard(commands, common)
    register_mcp_config(commands, common)
    return parser


def _config(args: argparse.Namespace, required: bool = True) -> MeshConfig | None:
    path = find_config(args.config)
    if not required and not path.exists():
        return None
    return load_config(path)


def _check_modules(config: MeshConfig) -> None:
    from mesh.agent import module_problems
    from mesh.graphs import graph_problems
    from mesh.guard import policy_problems
    from mesh.tools import tool_module_problems

    problems = module_problems(config) + policy_problems(config) + tool_module_problems(config) + graph_problems(config)
    if problems:
        raise ConfigError(problems)


# -- up / serve / check -------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from mesh.logs import setup_logging
    from mesh.serve import ServeError, serve_agent

    config = _config(args)
    setup_logging()
    try:
        agent = config.agent(args.agent)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None
    if not agent.is_local:
        raise CliError(f"agent {args.agent} is external ({agent.url}); there is nothing to serve")
    try:
        asyncio.run(serve_agent(config, args.agent))
    except ServeError as exc:
        raise CliError(str(exc), code=3) from None
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from mesh.supervisor import Supervisor
    from mesh.tools import http_tool_names, tool_service

    config = _config(args)
    _check_modules(config)
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
    services = [agent_service(config, name) for name in names] + [tool_service(config, name) for name in tools]
    supervisor = Supervisor(
        services,
        startup_timeout=config.server.startup_timeout,
        grace=config.server.graceful_timeout + 5,
        on_ready=lambda: ready_table(config, names, tools),
    )
    return asyncio.run(supervisor.run())


def agent_service(config: MeshConfig, name: str):
    from mesh.supervisor import Service

    agent = config.agent(name)
    host = config.host_of(agent)
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    scheme = "https" if agent.tls else "http"
    probe = f"{scheme}://{f'[{probe_host}]' if ':' in probe_host else probe_host}:{agent.port}/health"
    return Service(
        kind="agent", name=name,
        command=[sys.executable, "-m", "mesh", "serve", name, "-c", str(config.path)],
        host=host, port=agent.port, ready_url=probe,
        cwd=str(config.base_dir),  # module paths resolve next to mesh.yaml, as `mesh check` resolves them
    )


async def ready_table(config: MeshConfig, names: list[str], tools: list[str]) -> str:
    """What `mesh up` prints once everything answers: the agents (skills from their live cards) and the HTTP tools."""
    from mesh.console import table
    from mesh.guard import guard_column, guard_status
    from mesh.serve import protocols_of
    from mesh.tools import tool_url

    probed, status = await asyncio.gather(_probe_agents(config, names), guard_status(config))
    skills = {row["name"]: row["skills"] for row in probed}
    guard = guard_column(config, names, status)
    rows = [[name, config.url_of(name), ", ".join(protocols_of(config, name)), ", ".join(skills[name]),
             "bearer" if config.agent(name).auth else "none", guard[name]] for name in names]
    text = table(["AGENT", "URL", "PROTOCOLS", "SKILLS", "AUTH", "GUARD"], rows) if rows else ""
    if tools:
        tool_rows = [[name, tool_url(config, name), "MCP streamable HTTP (http/1.1, h2c)", config.tools[name].module,
                      "bearer" if config.tools[name].auth else "none"] for name in tools]
        text += ("\n\n" if text else "") + table(["TOOL", "URL", "PROTOCOLS", "MODULE", "AUTH"], tool_rows)
    return text


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    _check_modules(config)
    local = list(config.local_agents())
    external = [n for n in config.agents if n not in local]
    print(f"{config.path}: valid: {len(local)} local agents ({', '.join(local) or 'none'}), "
          f"{len(external)} external, {len(config.tools)} tools, {len(config.graphs)} graphs")
    return 0


# -- ls / card ----------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    from mesh.guard import guard_column, guard_status
    from mesh.tools import probe_tools

    config = _config(args)

    async def probe():
        return await asyncio.gather(_probe_agents(config), guard_status(config), probe_tools(config))

    rows, status, tools = asyncio.run(probe())
    guard = guard_column(config, [r["name"] for r in rows], status)
    for row in rows:
        row["guard"] = guard[row["name"]]
    listing = {"mesh": config.name, "config": str(config.path), "agents": rows, "guard": status, "tools": tools,
               "graphs": [{"name": n, "description": g.description, "vertices": [v.id for v in g.vertices],
                           "coordinator": config.coordinator_name()} for n, g in config.graphs.items()]}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    from mesh.console import table

    print(table(["AGENT", "KIND", "URL", "ANSWERS", "SKILLS", "AUTH", "GUARD"], [
        [r["name"], r["kind"], r["url"], "yes" if r["answers"] else f"no ({r['error']})", ", ".join(r["skills"]),
         r["auth"], r["guard"]] for r in rows
    ]))
    if config.graphs:
        print()
        print(table(["GRAPH", "VERTICES", "RUN BY", "DESCRIPTION"], [
            [g["name"], len(g["vertices"]), g["coordinator"] or "(no coordinator)", g["description"]]
            for g in listing["graphs"]
        ]))
    if tools:
        print()
        print(table(["TOOL", "TRANSPORT", "URL", "ANSWERS", "AUTH"], [
            [t["name"], t["transport"], t["url"] or "(stdio)",
             "yes" if t["answers"] else (f"no ({t['error']})" if t["answers"] is False else "-"), t["auth"]]
            for t in tools
        ]))
    return 0


async def _probe_agents(config: MeshConfig, names: list[str] | None = None) -> list[dict[str, Any]]:
    from mesh.client import fetch_card

    async def probe(name: str) -> dict[str, Any]:
        agent = config.agent(name)
        row = {"name": name, "kind": "local" if agent.is_local else "external", "url": config.url_of(name),
               "auth": "bearer" if agent.auth else "none", "answers": False, "error": None, "skills": []}
        try:
            async with httpx.AsyncClient(timeout=2.0, verify=False) as http:
                card = await fetch_card(http, row["url"])
            row["answers"] = True
            row["skills"] = [s.id for s in card.skills]
        except Exception as exc:
            row["error"] = _reason(_transport_error(exc) or exc)
        return row

    return list(await asyncio.gather(*(probe(n) for n in (config.agents if names is None else names))))


def cmd_card(args: argparse.Namespace) -> int:
    from mesh.console import to_json

    card = asyncio.run(_card(args))
    if args.json:
        print(json.dumps(to_json(card), indent=2))
        return 0
    print(_describe_card(card))
    return 0


async def _card(args: argparse.Namespace):
    from a2a.types import GetExtendedAgentCardRequest

    from mesh.client import fetch_card, http_client, open_client

    target = _target(args)
    async with http_client(target.token) as http:
        card = await _call(target, fetch_card(http, target.url))
        if not args.extended:
            return card
        if not card.capabilities.extended_agent_card:
            raise CliError(f"{target.name} has no extended card (its card does not offer one)")
        client = await open_client(http, card, streaming=False)
        return await _call(target, client.get_extended_agent_card(GetExtendedAgentCardRequest()))


def _describe_card(card) -> str:
    lines = [f"{card.name} {card.version}", f"  {card.description}"]
    for interface in card.supported_interfaces:
        lines.append(f"  {interface.protocol_binding:<9} {interface.protocol_version:<4} {interface.url}")
    caps = [name for name in ("streaming", "push_notifications", "extended_agent_card") if getattr(card.capabilities, name)]
    lines.append(f"  capabilities: {', '.join(caps) or 'none'}")
    if card.security_schemes:
        lines.append(f"  security: {', '.join(card.security_schemes)}")
    lines.append(f"  input: {', '.join(card.default_input_modes)}; output: {', '.join(card.default_output_modes)}")
    for skill in card.skills:
        lines.append(f"  skill {skill.id}: {skill.name}: {skill.description}")
        for example in skill.examples:
            lines.append(f"    e.g. {example}")
    return "\n".join(lines)


# -- send / get / cancel ------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    text = " ".join(args.text)
    if text == "-":
        text = sys.stdin.read()
    data = None
    if args.data is not None:
        try:
            data = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise CliError(f"--data is not JSON: {exc}") from None
    if not text and data is None:
        raise CliError("nothing to send: give a text or --data")
    return asyncio.run(_send(args, text, data))


async def _send(args: argparse.Namespace, text: str, data: Any) -> int:
    from a2a.types import GetTaskRequest, TaskState

    from mesh.client import fetch_card, http_client, open_client, send_request, user_message
    from mesh.console import describe_event, state_name, to_json

    target = _target(args)
    message = user_message(text or None, data, task_id=args.task, context_id=args.context)
    final_state = task_id = None
    async with http_client(target.token, timeout=args.timeout) as http:
        card = await _call(target, fetch_card(http, target.url))
        client = await open_client(http, card, streaming=args.stream)

        async def consume() -> None:
            nonlocal final_state, task_id
            async for event in client.send_message(send_request(message)):
                print(json.dumps(to_json(event)) if args.json else describe_event(event), flush=True)
                kind = event.WhichOneof("payload")
                if kind == "task":
                    final_state, task_id = event.task.status.state, event.task.id
                elif kind == "status_update":
                    final_state, task_id = event.status_update.status.state, event.status_update.task_id

        await _call(target, consume())
        if task_id and final_state not in _settled_states():
            # A stream may end before its last state reaches it (e.g. a cancel
            # from elsewhere); the task itself has the final word.
            task = await _call(target, client.get_task(GetTaskRequest(id=task_id, history_length=0)))
            final_state = task.status.state
            if not args.json:
                print(f"task {task_id} is {state_name(final_state)}")
    failed = {TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED, TaskState.TASK_STATE_CANCELED}
    return 1 if final_state in failed else 0


def cmd_get(args: argparse.Namespace) -> int:
    from a2a.types import GetTaskRequest

    return asyncio.run(_task_call(args, lambda client: client.get_task(GetTaskRequest(id=args.task_id))))


def cmd_cancel(args: argparse.Namespace) -> int:
    from a2a.types import CancelTaskRequest

    return asyncio.run(_task_call(args, lambda client: client.cancel_task(CancelTaskRequest(id=args.task_id))))


async def _task_call(args: argparse.Namespace, call: Callable) -> int:
    from mesh.client import fetch_card, http_client, open_client
    from mesh.console import describe_task, to_json

    target = _target(args)
    async with http_client(target.token) as http:
        card = await _call(target, fetch_card(http, target.url))
        client = await open_client(http, card, streaming=False)
        task = await _call(target, call(client))
    print(json.dumps(to_json(task), indent=2) if args.json else describe_task(task))
    return 0


# -- shared -------------------------------------------------------------------------------------


def _target(args: argparse.Namespace):
    from mesh.client import resolve_target

    config = None
    if not args.agent.startswith(("http://", "https://")):
        config = _config(args)
    try:
        return resolve_target(config, args.agent)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None


async def _call(target, awaitable):
    """Await an A2A call, turning transport and protocol failures into one readable line."""
    from a2a.utils.errors import A2AError

    try:
        return await awaitable
    except (A2AError, httpx.HTTPError) as exc:
        transport = _transport_error(exc)
        if transport is not None:
            where = target.url if target.name == target.url else f"{target.name} at {target.url}"
            raise CliError(f"cannot reach {where}: {_reason(transport)}") from None
        text = getattr(exc, "message", None) or str(exc)
        if "401" in text:
            hint = ("set MESH_TOKEN to its bearer token" if target.name == target.url
                    else "its token comes from the variable named in mesh.yaml (auth.bearer_token)")
            raise CliError(f"{target.name} refused the call: it needs a valid bearer token ({hint})") from None
        raise CliError(f"{target.name}: {type(exc).__name__}: {text.splitlines()[0]}") from None


def _transport_error(exc: BaseException) -> httpx.TransportError | None:
    """The connection-level failure behind ``exc``, if that is what it is."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, httpx.TransportError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return "connection refused (is `mesh up` running?)"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and not str(exc):
        return _reason(cause)
    return text
