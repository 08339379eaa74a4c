"""The guard policy an agent enforces: mesh.yaml's ``guard:`` merged with the agent's own ``agents.NAME.guard:``.

The sections themselves are models of ``mesh.config.guard``, so ``mesh check``
reports their problems with file and line together with the rest of the file.
"""

from __future__ import annotations

from typing import Any

from mesh.config.guard import GuardOverride, GuardPolicy

__all__ = ["GuardOverride", "GuardPolicy", "guard_agent_of", "policy_for", "policy_problems"]


def policy_for(config: Any, name: str) -> GuardPolicy | None:
    """The policy agent ``name`` enforces, or None (no ``guard:`` section, disabled, or it is the guard itself)."""
    mesh_policy: GuardPolicy | None = config.guard
    if mesh_policy is None:
        return None
    if name == mesh_policy.agent:
        return None  # the guard never guards itself: that would recurse
    override: GuardOverride | None = config.agent(name).guard
    policy = mesh_policy
    if override is not None:
        policy = GuardPolicy.model_validate({**mesh_policy.model_dump(exclude_unset=True),
                                             **override.model_dump(exclude_unset=True)})
    if not policy.enabled or not (policy.check or policy.tool_block):
        return None
    return policy


def guard_agent_of(config: Any) -> str | None:
    """The name of the mesh's guard agent (``guard.agent``), or None."""
    return config.guard.agent if config.guard is not None else None


def policy_problems(config: Any) -> list:
    """What the models cannot see alone: the guard agent named, and one of this mesh (for ``mesh check``)."""
    problems = []
    if config.guard is not None:
        guard_name = config.guard.agent
        if not guard_name:
            problems.append(config.problem(("guard",), "name the guard agent: agent: NAME (an agent of this mesh)"))
        elif guard_name not in config.agents:
            known = ", ".join(sorted(config.agents)) or "none"
            problems.append(config.problem(("guard", "agent"), f"no agent named {guard_name!r} (agents: {known})"))
        tools = set(getattr(config, "tools", None) or {})
        for number, tool in enumerate(config.guard.trusted_tools):
            if tool not in tools:
                known = ", ".join(sorted(tools)) or "none"
                problems.append(config.problem(("guard", "trusted_tools", number), f"no tool named {tool!r} (tools: {known})"))
    return problems
