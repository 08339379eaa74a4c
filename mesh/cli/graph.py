"""`mesh run GRAPH TEXT` (through the coordinator, with live progress) and `mesh graph GRAPH` (mermaid or dot, with figures)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    help = "run a graph of the mesh through its coordinator, showing each superstep as it happens"
    sub = commands.add_parser("run", parents=[common], help=help, description=help)
    sub.add_argument("graph")
    sub.add_argument("text", nargs="*", help="the run's input ('-' reads stdin)")
    sub.add_argument("--data", help="a JSON value as the run's input instead of text")
    sub.add_argument("--json", action="store_true", help="print the coordinator's events as JSON lines")
    sub.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    sub.set_defaults(handler=cmd_run)

    help = "print a graph as mermaid or dot, with the figures of its latest run on its edges"
    sub = commands.add_parser("graph", parents=[common], help=help, description=help)
    sub.add_argument("graph")
    sub.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    sub.add_argument("--run", help="the run whose figures to show (default: the graph's latest run)")
    sub.add_argument("--no-figures", action="store_true", help="the graph alone")
    sub.set_defaults(handler=cmd_graph)


def cmd_run(args: argparse.Namespace) -> int:
    from mesh.cli.common import CliError, config_of

    config = config_of(args)
    if args.graph not in config.graphs:
        raise CliError(f"no graph named {args.graph!r} in {config.path} (graphs: {', '.join(config.graphs) or 'none'})")
    coordinator = config.coordinator_name()
    if coordinator is None:
        raise CliError(f"{config.path} has no coordinator agent to run graphs: add one with module: agents.coordinator")
    text = " ".join(args.text)
    if text == "-":
        text = sys.stdin.read()
    graph_input: Any = text or None
    if args.data is not None:
        try:
            graph_input = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise CliError(f"--data is not JSON: {exc}") from None
    return asyncio.run(_run(args, config, coordinator, graph_input))


async def _run(args: argparse.Namespace, config, coordinator: str, graph_input: Any) -> int:
    from a2a.types import TaskState

    from mesh.cli.common import call_agent
    from mesh.cli.output import describe_artifact, parts_text, state_name, to_json
    from mesh.client import (
        fetch_card,
        http_client,
        open_client,
        resolve_target,
        send_request,
        user_message,
    )
    from mesh.client.exchange import exchange

    target = resolve_target(config, coordinator)
    message = user_message(data={"graph": args.graph, "input": graph_input})
    progress = Progress(args.graph, live=sys.stdout.isatty(), quiet=args.json)
    async with http_client(target.token, timeout=args.timeout, h2c=target.h2c) as http:
        card = await call_agent(target, fetch_card(http, target.url))
        client = await open_client(http, card, streaming=True)

        errors: list[dict] = []  # the vertex calls that failed after their retries, from the "result" artifact
        outputs: dict = {}  # what the run produced (vertex: value), from the same artifact

        def show(event, run) -> None:
            kind = event.WhichOneof("payload")
            if args.json:
                print(json.dumps(to_json(event)), flush=True)
            if kind == "task":
                progress.say(f"run {event.task.id} of graph {args.graph} started")
            elif kind == "status_update":
                progress.status(event.status_update.status)
            elif kind == "artifact_update":
                artifact = event.artifact_update.artifact
                if artifact.name == "result":  # its data (outputs, errors, figures) is for --json
                    progress.say(parts_text([p for p in artifact.parts if p.WhichOneof("content") == "text"]))
                    result = _result_data(artifact)
                    errors.extend(e for e in result.get("errors") or [] if isinstance(e, dict))
                    if isinstance(result.get("outputs"), dict):
                        outputs.update(result["outputs"])
                else:
                    progress.say(describe_artifact(artifact))

        ticker = asyncio.create_task(progress.tick())
        try:
            run = await call_agent(target, exchange(client, send_request(message), show))
        finally:
            ticker.cancel()
            progress.clear()
    state = run.state
    if not args.json:
        print(f"run {run.task_id} {state_name(state) if state is not None else 'ended'} after {time.monotonic() - progress.started:.1f}s")
    if errors:
        if not args.json:
            for error in errors[:10]:
                print(f"  error: {error.get('vertex') or error.get('aggregator') or '?'}: {error.get('error')}", file=sys.stderr)
        # Say why the exit status is not 0 even when the run itself completed (on_vertex_error: continue).
        what = "no outputs" if not outputs else f"{len(outputs)} output{'s' if len(outputs) != 1 else ''}"
        print(f"mesh: graph {args.graph} ended with {len(errors)} error{'s' if len(errors) != 1 else ''} and {what}; "
              "exit status 1", file=sys.stderr)
    # A run whose vertices failed (on_vertex_error: continue) completes, but is not a success.
    return 0 if state == TaskState.TASK_STATE_COMPLETED and not errors else 1


def _result_data(artifact) -> dict:
    """The data part of the run's "result" artifact ({outputs, errors, figures...}), or {}."""
    from google.protobuf.json_format import MessageToDict

    for part in artifact.parts:
        if part.WhichOneof("content") == "data":
            value = MessageToDict(part.data)
            if isinstance(value, dict):
                return value
    return {}


class Progress:
    """One live line on a terminal (superstep, active vertices, elapsed); plain lines elsewhere."""

    def __init__(self, graph: str, live: bool, quiet: bool = False) -> None:
        self.graph = graph
        self.enabled = live and not quiet
        self.quiet = quiet
        self.started = time.monotonic()
        self.line = "starting"
        self._shown = False

    def status(self, status) -> None:
        from mesh.cli.output import parts_text, state_name

        if self.quiet:
            return
        text = parts_text([p for p in status.message.parts if p.WhichOneof("content") == "text"]) if status.HasField("message") else ""
        if status.state == 2 and not text:  # TASK_STATE_WORKING, nothing to say yet
            return
        if status.state == 2 and text.startswith("superstep"):
            self.line = text
            if not self.enabled:
                print(text, flush=True)
            else:
                self._draw()
        else:
            self.say(f"[{state_name(status.state)}] {text}".rstrip())

    def say(self, text: str) -> None:
        if self.quiet:
            return
        self.clear()
        print(text, flush=True)
        if self.enabled:
            self._draw()

    async def tick(self) -> None:
        while self.enabled:
            self._draw()
            await asyncio.sleep(0.2)

    def _draw(self) -> None:
        elapsed = time.monotonic() - self.started
        sys.stdout.write(f"\r\033[K{self.graph} · {self.line} · {elapsed:.1f}s elapsed")
        sys.stdout.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
            self._shown = False


def cmd_graph(args: argparse.Namespace) -> int:
    from mesh.cli.common import CliError, config_of
    from mesh.pregel import to_dot, to_mermaid

    config = config_of(args)
    if args.graph not in config.graphs:
        raise CliError(f"no graph named {args.graph!r} in {config.path} (graphs: {', '.join(config.graphs) or 'none'})")
    graph = config.graphs[args.graph]
    figures = None if args.no_figures else asyncio.run(_figures(config, args))
    print(to_mermaid(graph, figures) if args.format == "mermaid" else to_dot(graph, figures, name=args.graph))
    return 0


async def _figures(config, args: argparse.Namespace) -> dict | None:
    from mesh.cli.common import CliError
    from mesh.graphs.runtime import GraphRuntime, checkpoint_store
    from mesh.pregel import RunNotFound

    runtime = GraphRuntime(config, checkpoint_store(config))
    async with runtime.store:
        run_id = args.run or await runtime.latest_run(args.graph)
        if run_id is None:
            return None
        try:
            return await runtime.engine(args.graph).figures(run_id)
        except RunNotFound:
            raise CliError(f"no run {run_id!r} in the checkpoint store") from None
