"""The guard policy of mesh.yaml (``guard:`` and ``agents.NAME.guard:``): what is checked and what blocks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mesh.errors import GuardConfigError
from mesh.guard.verdicts import CATEGORIES, INJECTION, Check, Verdict

# -- policy ----------------------------------------------------------------------------------------


class GuardPolicy(BaseModel):
    """mesh.yaml's ``guard:`` section (the mesh's policy) and ``agents.NAME.guard:`` (one agent's override)."""

    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(None, description="which agent of the mesh is the guard (top level only)")
    enabled: bool = True
    check: list[Check] = ["input", "output"]
    block: list[str] | Literal["all"] = "all"
    tool_block: list[str] = [INJECTION]
    on_error: Literal["block", "allow"] = "block"
    timeout_s: float = Field(30.0, gt=0, le=600)
    cache_size: int = Field(10_000, ge=0)
    stream_window_chars: int = Field(2000, ge=0, le=100_000)

    @field_validator("block", "tool_block")
    @classmethod
    def _known_codes(cls, value: Any) -> Any:
        if value == "all":
            return value
        unknown = [code for code in value if code not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown category {', '.join(unknown)} (known: {', '.join(CATEGORIES)}, or 'all')")
        return value

    def blocking(self, verdict: Verdict, codes: Iterable[str] | None = None) -> list[str]:
        """The codes of ``verdict`` that this policy blocks on (empty when it may pass)."""
        if verdict.safe:
            return []
        blocked = set(CATEGORIES) if (codes is None and self.block == "all") else set(codes if codes is not None else self.block)
        return [code for code in verdict.codes if code in blocked]


def policy_for(config: Any, name: str) -> GuardPolicy | None:
    """The policy agent ``name`` enforces, or None (no ``guard:`` section, disabled, or it is the guard itself).

    Raises GuardConfigError naming the key when a section is invalid (``mesh check``
    reports the same problems with file and line through ``policy_problems``).
    """
    if not config.guard:
        return None
    try:
        mesh_policy = GuardPolicy.model_validate(config.guard)
    except ValidationError as exc:
        raise GuardConfigError(f"{config.path}: guard: {_first_error(exc)}") from None
    if name == mesh_policy.agent:
        return None  # the guard never guards itself: that would recurse
    override = config.agent(name).guard or {}
    if "agent" in override:
        raise GuardConfigError(f"{config.path}: agents.{name}.guard.agent: the guard agent is chosen in the top-level guard: section")
    try:
        policy = GuardPolicy.model_validate({**mesh_policy.model_dump(exclude_unset=True), **override})
    except ValidationError as exc:
        raise GuardConfigError(f"{config.path}: agents.{name}.guard: {_first_error(exc)}") from None
    if not policy.enabled or not (policy.check or policy.tool_block):
        return None
    return policy


def guard_agent_of(config: Any) -> str | None:
    """The name of the mesh's guard agent (``guard.agent``), or None."""
    if not config.guard:
        return None
    return (config.guard or {}).get("agent")


def policy_problems(config: Any) -> list:
    """mesh.yaml's guard sections checked, each problem with file:line (for ``mesh check``)."""
    problems = []
    sections: list[tuple[tuple, dict]] = []
    if config.guard is not None:
        sections.append((("guard",), config.guard))
    for name, agent in config.agents.items():
        if agent.guard is not None:
            sections.append((("agents", name, "guard"), agent.guard))
    for path, raw in sections:
        if not isinstance(raw, dict):
            problems.append(config.problem(path, "must be a mapping (check:, block:, on_error:, ...)"))
            continue
        if path != ("guard",) and "agent" in raw:
            problems.append(config.problem((*path, "agent"), "the guard agent is chosen in the top-level guard: section"))
        try:
            GuardPolicy.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(p for p in error["loc"] if isinstance(p, str))[:1]
                message = (f"unknown key {error['loc'][-1]!r} (allowed: {', '.join(GuardPolicy.model_fields)})"
                           if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, "))
                problems.append(config.problem((*path, *loc), message))
    if config.guard:
        guard_name = config.guard.get("agent") if isinstance(config.guard, dict) else None
        if not guard_name:
            problems.append(config.problem(("guard",), "name the guard agent: agent: NAME (an agent of this mesh)"))
        elif guard_name not in config.agents:
            known = ", ".join(sorted(config.agents)) or "none"
            problems.append(config.problem(("guard", "agent"), f"no agent named {guard_name!r} (agents: {known})"))
    return problems


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg'].removeprefix('Value error, ')}" if where else error["msg"]
