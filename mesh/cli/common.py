"""What every command of the CLI shares: one-line errors and exit codes, loading mesh.yaml, calling an agent."""

from __future__ import annotations

import argparse

import httpx

from mesh.config import ConfigError, MeshConfig, find_config, load_config
from mesh.errors import (
    EXIT_CONFIG,  # noqa: E402,F401
    CliError,  # noqa: F401 - re-exported
)


def settled_states() -> set[int]:
    from a2a.types import TaskState

    return {TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED,
            TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED}


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

    try:
        return await awaitable
    except (A2AError, httpx.HTTPError) as exc:
        transport = transport_error(exc)
        if transport is not None:
            where = target.url if target.name == target.url else f"{target.name} at {target.url}"
            raise CliError(f"cannot reach {where}: {reason(transport)}") from None
        text = getattr(exc, "message", None) or str(exc)
        if "401" in text:
            hint = ("set MESH_TOKEN to its bearer token" if target.name == target.url
                    else "its token comes from the variable named in mesh.yaml (auth.bearer_token)")
            raise CliError(f"{target.name} refused the call: it needs a valid bearer token ({hint})") from None
        raise CliError(f"{target.name}: {type(exc).__name__}: {text.splitlines()[0]}") from None


def transport_error(exc: BaseException) -> httpx.TransportError | None:
    """The connection-level failure behind ``exc``, if that is what it is."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, httpx.TransportError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return "connection refused (is `mesh up` running?)"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and not str(exc):
        return reason(cause)
    return text
