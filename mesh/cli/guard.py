"""`mesh guard TEXT...` / `mesh guard --file F`: one JSON verdict per input, one per line (for batch evaluation).

Runs the guard agent's classifier in-process (the module named by the mesh's
``guard.agent``, loaded like any agent module, with its settings), or asks
the running guard agent with ``--remote``. Each TEXT is one input. A file
holds one input per line: plain text, or JSON (a list of turns, an object
with ``turns``, or one ``{"role", "content"}`` turn); its other keys (id,
label...) are copied into the output line, and when lines carry a ``label`` the
share of each label's inputs that were flagged is printed on stderr at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    help = "classify texts with the mesh's guard and print one JSON verdict per input"
    sub = commands.add_parser("guard", parents=[common], help=help, description=help)
    sub.add_argument("text", nargs="*", help="texts to check as user input, each one input ('-' reads stdin lines)")
    sub.add_argument("--file", "-f", help="inputs, one per line: text, or JSONL with role/content turns")
    sub.add_argument("--output", metavar="TEXT", help="check TEXT as the agent's output answering the (single) input")
    sub.add_argument("--remote", action="store_true", help="ask the running guard agent instead of classifying in-process")
    sub.add_argument("--agent", help="the guard agent's name (default: mesh.yaml's guard.agent)")
    sub.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                     help="one of the guard agent's settings for this run instead of mesh.yaml's (in-process only), "
                          "e.g. --set strictness=strict; may be repeated")
    sub.add_argument("--explain", action="store_true",
                     help="one readable line per input: the verdict, what fired (score against threshold, rule and "
                          "span), and whether mesh.yaml's guard policy blocks it and which key relaxes that")
    sub.set_defaults(handler=cmd_guard)


def cmd_guard(args: argparse.Namespace) -> int:
    from mesh.cli.common import CliError

    inputs = list(_inputs(args))
    if not inputs:
        raise CliError("nothing to classify: give TEXT arguments or --file F")
    return asyncio.run(_run(args, inputs))


def _inputs(args: argparse.Namespace):
    from mesh.cli.common import CliError
    from mesh.guard.verdicts import Turn, as_turns

    texts = [line for line in sys.stdin.read().splitlines() if line.strip()] if args.text == ["-"] else args.text
    if args.output is not None and len(texts) != 1:
        raise CliError("--output checks one answer: give exactly one input TEXT with it")
    for text in texts:
        yield {}, as_turns(text, args.output)
    if args.file:
        path = Path(args.file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                extra, turns = _parse_line(line)
                yield extra, [Turn.model_validate(t) for t in turns]
            except (ValueError, TypeError) as exc:
                raise CliError(f"{path}:{number}: {exc}") from None


def _parse_line(line: str) -> tuple[dict, list]:
    stripped = line.strip()
    if not stripped.startswith(("{", "[")):
        return {}, [{"role": "user", "content": line}]
    value: Any = json.loads(stripped)
    if isinstance(value, list):
        return {}, value
    if isinstance(value, dict) and "turns" in value:
        return {k: v for k, v in value.items() if k != "turns"}, value["turns"]
    if isinstance(value, dict) and "content" in value:
        return {k: v for k, v in value.items() if k not in ("role", "content")}, [{"role": value.get("role", "user"), "content": value["content"]}]
    raise ValueError("a JSON line needs 'turns' (a list of {role, content}) or 'role' and 'content'")


async def _run(args: argparse.Namespace, inputs: list) -> int:
    from mesh.cli.common import CliError, config_of
    from mesh.errors import GuardError
    from mesh.guard.client import GuardClient

    config = config_of(args)
    name = args.agent or (config.guard.agent if config.guard else None)
    if not name:
        raise CliError(f"{config.path} names no guard agent (guard: agent: NAME), and no --agent was given")
    try:
        agent = config.agent(name)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None
    overrides = _overrides(args.overrides)
    if args.remote and overrides:
        raise CliError("--set changes the settings of the classifier run here; the running guard agent keeps its own "
                       "(leave out --remote)")
    if args.remote:
        classifier: Any = GuardClient(config.url_of(name), config.token_of(agent), cache_size=0, h2c=config.h2c_of(name))
    else:
        classifier = _in_process(config, name, agent, overrides)
    failures = 0
    by_label: dict[str, list[int]] = {}  # label -> [flagged, classified]: how a setting does on the user's own data
    try:
        for extra, turns in inputs:
            try:
                verdict = await classifier.classify(turns)
                if "label" in extra:
                    counts = by_label.setdefault(str(extra["label"]), [0, 0])
                    counts[0] += not verdict.safe
                    counts[1] += 1
                if args.explain:
                    print(explain(verdict, config.guard), flush=True)
                else:
                    print(json.dumps({**extra, **verdict.model_dump()}, ensure_ascii=False), flush=True)
            except GuardError as exc:
                failures += 1
                print(json.dumps({**extra, "error": str(exc)}, ensure_ascii=False), flush=True)
        for label, (flagged, total) in sorted(by_label.items()):
            print(f"label {label}: {flagged} of {total} flagged ({flagged / total:.2f})", file=sys.stderr)
    finally:
        close = getattr(classifier, "aclose", None)
        if close is not None:
            await close()
    return 1 if failures else 0


def explain(verdict: Any, policy: Any) -> str:
    """'unsafe (input): S9 Indiscriminate Weapons — S9 probe 0.97 (threshold 0.65) — blocked by guard.block'."""
    if verdict.safe:
        return f"safe ({verdict.check}; {verdict.backend}, {verdict.latency_ms:.1f} ms)"
    names = ", ".join(f"{c.code} {c.name}" for c in verdict.categories)
    line = f"unsafe ({verdict.check}): {names}"
    fired = verdict.explain()
    if fired:
        line += f" — {fired}"
    if policy is not None:
        blocked = policy.blocking(verdict)
        key = policy.key_for(verdict.check)
        line += (f" — blocked by guard.{key} ({', '.join(blocked)})" if blocked
                 else f" — passes: guard.{key} does not block {', '.join(verdict.codes)}")
    return line


def _overrides(pairs: list[str]) -> dict[str, str]:
    """``["strictness=strict", ...]`` as a dict (the agent's Settings model converts and checks the values)."""
    from mesh.cli.common import CliError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set {pair}: give KEY=VALUE, e.g. --set strictness=strict")
        out[key.strip()] = value.strip()
    return out


def _in_process(config, name: str, agent, overrides: dict[str, str]):
    from pydantic import ValidationError

    from mesh.cli.common import CliError
    from mesh.serving.agents import AgentModuleError, load_agent_module

    if not agent.is_local:
        raise CliError(f"the guard {name} is external ({agent.url}): use --remote")
    try:
        module = load_agent_module(agent.module, config.base_dir)
        factory = getattr(module.module, "create_classifier", None)
        if factory is None:
            raise CliError(f"{agent.module} has no create_classifier(settings): is {name} a guard agent?")
        return factory(module.settings({**agent.settings, **overrides}))
    except AgentModuleError as exc:
        raise CliError(f"agent {name}: {exc}") from None
    except ValidationError as exc:
        raise CliError(f"agents.{name}.settings: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """`python -m mesh.cli.guard ...`: the same command on its own, with mesh's error handling."""
    from mesh.cli.common import CliError
    from mesh.config import ConfigError

    parser = argparse.ArgumentParser(prog="mesh")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="mesh file (default: $MESH_CONFIG or ./mesh.yaml)")
    register(parser.add_subparsers(), common)
    args = parser.parse_args(["guard", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
