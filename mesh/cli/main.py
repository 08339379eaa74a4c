"""The `mesh` command: the parser and its sub-commands (every command takes -c/--config); each group lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from mesh.cli.deploy import register as register_deploy
from mesh.cli.graph import register as register_graphs
from mesh.cli.guard import register as register_guard
from mesh.cli.inspect import cmd_card, cmd_ls
from mesh.cli.mcp_config import register as register_mcp_config
from mesh.cli.tasks import cmd_cancel, cmd_get, cmd_send
from mesh.cli.up import cmd_check, cmd_serve, cmd_up
from mesh.config.plugins import START_DIR_VARIABLE
from mesh.errors import EXIT_INTERRUPTED, ConfigError, MeshError


def main(argv: list[str] | None = None) -> int:
    # a2a-sdk traces every call with OpenTelemetry when the API is installed;
    # the mesh configures no exporter, so the spans would be dropped, at about
    # a third of the CPU of a message/send. Set it to true to trace (the
    # child processes of `mesh up` inherit it).
    os.environ.setdefault("OTEL_INSTRUMENTATION_A2A_SDK_ENABLED", "false")
    # Modules named in mesh.yaml are also looked for where `mesh` was started (as `python -m`
    # would); `mesh up` starts its children in mesh.yaml's folder, so they learn it from here.
    os.environ.setdefault(START_DIR_VARIABLE, os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except ConfigError as exc:  # one problem per line, each with file:line
        print(exc, file=sys.stderr)
        return exc.exit_code
    except MeshError as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`mesh ls | head -1`): exit quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


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
    sub.add_argument("--no-console", action="store_true", help="do not serve the web console (console: in mesh.yaml)")
    sub = command("serve", cmd_serve, "serve one agent in the foreground (what `mesh up` runs per agent)")
    sub.add_argument("agent")
    sub.add_argument("--replica", type=int, default=0,
                     help="which of the agent's `replicas: N` processes this is (0..N-1; it listens on port + replica)")
    command("check", cmd_check, "validate mesh.yaml and import every agent module, without starting anything")
    sub = command("ls", cmd_ls, "list agents, tools and graphs with their URLs and whether they answer")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--prometheus", action="store_true",
                     help="print a Prometheus scrape config for every /metrics of the mesh")
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
    register_graphs(commands, common)
    register_guard(commands, common)
    register_mcp_config(commands, common)
    register_deploy(commands, common)
    return parser
