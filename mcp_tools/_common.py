"""What the tool modules share: strict Settings, paths relative to mesh.yaml's directory, tool registration."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


def _resolved(value: Path, info: ValidationInfo) -> Path:
    """A path from mesh.yaml, made absolute against mesh.yaml's directory (mesh/tools.py passes it as context)."""
    base = Path((info.context or {}).get("base_dir") or Path.cwd())
    return (base / value.expanduser()).resolve()


ConfigPath = Annotated[Path, AfterValidator(_resolved)]


def not_found(what: str, path: Path, info: ValidationInfo) -> ValueError:
    """The error for a configured path that does not exist, saying which folder a relative path was taken from."""
    base = (info.context or {}).get("base_dir")
    where = (f" (relative paths in mesh.yaml are taken from its folder, {base}: write an absolute path, "
             "or keep mesh.yaml next to what it names)") if base else ""
    return ValueError(f"{what}: {path}{where}")


class ToolSettings(BaseModel):
    """Base of every tool's Settings: unknown keys are errors, so a typo in mesh.yaml is caught."""

    model_config = ConfigDict(extra="forbid")


def state_dir(info: ValidationInfo) -> Path:
    """The mesh's state directory (for indexes and caches), from the validation context."""
    context = info.context or {}
    return Path(context.get("state_dir") or Path(context.get("base_dir") or Path.cwd()) / ".mesh")


def add_tool(server: Any, fn: Callable[..., Any], **options: Any) -> None:
    """Register ``fn`` as a tool, its docstring (dedented) as the description a model reads."""
    server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""), **options)
