"""mesh.yaml's guard sections as models: the mesh's policy (``guard:``) and one agent's override (``agents.NAME.guard:``).

The categories are Llama Guard 3's hazard taxonomy (MLCommons) plus prompt
injection, which Llama Guard does not cover and the mesh checks separately.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
    "INJ": "Prompt Injection",
}
INJECTION = "INJ"
HAZARDS = tuple(code for code in CATEGORIES if code != INJECTION)
# What blocks by default, per what is checked. A prompt injection is a property of untrusted
# input and of tool/document content, not of an agent's own answer (LlamaFirewall screens inputs
# and tool outputs for it); S14 (code interpreter abuse) is an attack on the agent, carried by
# what it is told to run. An answer is judged for harm to people: S1-S13 (Llama Guard 3's
# hazards checked as [user, assistant]).
INPUT_BLOCK: tuple[str, ...] = tuple(CATEGORIES)
OUTPUT_BLOCK: tuple[str, ...] = tuple(code for code in HAZARDS if code != "S14")
TOOL_BLOCK: tuple[str, ...] = (INJECTION,)

Check = Literal["input", "output"]


def known_codes(value: Any) -> Any:
    if value == "all" or value is None:
        return value
    unknown = [code for code in value if code not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown category {', '.join(unknown)} (known: {', '.join(CATEGORIES)}, or 'all')")
    return value


class GuardPolicy(BaseModel):
    """mesh.yaml's ``guard:`` section (the mesh's policy) and ``agents.NAME.guard:`` (one agent's override)."""

    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(None, description="which agent of the mesh is the guard (top level only)")
    enabled: bool = True
    check: list[Check] = ["input", "output"]
    block: list[str] | Literal["all"] = Field("all", description="the categories that block an input")
    output_block: list[str] | Literal["all"] = Field(list(OUTPUT_BLOCK), description="the categories that block an agent's output")
    tool_block: list[str] | Literal["all"] = Field(list(TOOL_BLOCK), description="the categories that block a tool result")
    trusted_tools: list[str] = Field([], description="tool servers (mesh.yaml tools) whose results are the operator's own content, not screened")
    on_error: Literal["block", "allow"] = "block"
    timeout_s: float = Field(30.0, gt=0, le=600)
    cache_size: int = Field(10_000, ge=0)
    stream_window_chars: int = Field(2000, ge=0, le=100_000)
    max_chars: int = Field(100_000, ge=1000, le=10_000_000,
                           description="the most text one check sends to the guard; more is blocked unread")

    _known_codes = field_validator("block", "output_block", "tool_block")(classmethod(lambda cls, value: known_codes(value)))

    def codes_for(self, check: str) -> set[str]:
        """The categories that block ``check`` ('input', 'output' or 'tool')."""
        value = {"input": self.block, "output": self.output_block, "tool": self.tool_block}[check]
        return set(CATEGORIES) if value == "all" else set(value)

    def key_for(self, check: str) -> str:
        """The mesh.yaml key that says what blocks ``check``."""
        return {"input": "block", "output": "output_block", "tool": "tool_block"}[check]

    def blocking(self, verdict: Any, codes: Iterable[str] | None = None, check: str | None = None) -> list[str]:
        """The codes of ``verdict`` that this policy blocks on (empty when it may pass).

        ``codes`` when given, else the codes for ``check`` (default: the verdict's own check).
        """
        if verdict.safe:
            return []
        blocked = set(codes) if codes is not None else self.codes_for(check or verdict.check)
        return [code for code in verdict.codes if code in blocked]


class GuardOverride(BaseModel):
    """``agents.NAME.guard:``: the keys of the mesh's policy this agent sets otherwise (the guard agent is chosen at the top)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    check: list[Check] | None = None
    block: list[str] | Literal["all"] | None = None
    output_block: list[str] | Literal["all"] | None = None
    tool_block: list[str] | Literal["all"] | None = None
    trusted_tools: list[str] | None = None
    on_error: Literal["block", "allow"] | None = None
    timeout_s: float | None = Field(None, gt=0, le=600)
    cache_size: int | None = Field(None, ge=0)
    stream_window_chars: int | None = Field(None, ge=0, le=100_000)
    max_chars: int | None = Field(None, ge=1000, le=10_000_000)

    _known_codes = field_validator("block", "output_block", "tool_block")(classmethod(lambda cls, value: known_codes(value)))
