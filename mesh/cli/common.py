"""What every command of the CLI shares: one-line errors and exit codes, loading mesh.yaml, calling an agent."""

from __future__ import annotations

import argparse

import httpx

from mesh.config import ConfigError, MeshConfig, find_config, load_config
from mesh.errors import CliError


def config_of(args: argparse.Namespace, required: bool = True) -> MeshConfig | None:
    path = find_config(args.config)
    if not required and not path.exists():
        return None
    return load_config(path)


def check_modules(config: MeshConfig) -> None:
    from mesh.graphs.runtime import graph_problems
    from mesh.guard.policy import policy_problems
    from mesh.serving.agents import module_problems
    from mesh.tools.modules import tool_module_problems

    problems = module_problems(config) + policy_problems(config) + tool_module_problems(config) + graph_problems(config)
    if problems:
        raise ConfigError(problems)


# -- shared -------------------------------------------------------------------------------------


def target_of(args: argparse.Namespace):
    from mesh.client import resolve_target

    config = None
    if not args.agent.startswith(("http://", "https://")):
        config = config_of(args)
    try:
        return resolve_target(config, args.agent)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None


async def call_agent(target, awaitable):
    """Await an A2A call, turning transport and protocol failures into one readable line."""
    from a2a.utils.errors import A2AError

    from mesh.client.errors import TOKEN_HINT_NAMED, TOKEN_HINT_URL, failure_reason

    try:
        return await awaitable
    except (A2AError, httpx.HTTPError) as exc:
        hint = TOKEN_HINT_URL if target.name == target.url else TOKEN_HINT_NAMED
        raise CliError(failure_reason(exc, target.name, target.url, token_hint=hint)) from None
