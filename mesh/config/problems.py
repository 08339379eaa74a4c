"""The one path from a pydantic ValidationError to mesh.yaml problems: file:line, key path, a readable message, did-you-mean.

mesh.yaml itself, the guard policy, and the ``settings:`` of agents and tools
are all validated by pydantic models; each error becomes one problem at its
key path, never pydantic's own text with its documentation URL.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


class KeyError_(ValueError):
    """A model-level validation error about one key, so the report can point at that key's line."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


NAME_SECTIONS = (("agents",), ("tools",), ("graphs",), ("name",))


def validation_problems(error: ValidationError, at: tuple, problem: Callable[[tuple, str], Any],
                        model: type[BaseModel] | None = None) -> list[Any]:
    """One ``problem(path, message)`` per error of ``error``, raised validating ``model`` at key path ``at``."""
    return [problem(*_located(e, at, model)) for e in error.errors()]


def _located(error: Any, at: tuple, model: type[BaseModel] | None) -> tuple[tuple, str]:
    loc = tuple(part for part in error["loc"] if part != "[key]")  # pydantic's marker for a bad dict key
    kind = error["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        allowed = allowed_keys(model, loc[:-1]) if model is not None else []
        hint = difflib.get_close_matches(str(key), allowed, n=1)
        message = f"unknown key {key!r}"
        message += f" (did you mean {hint[0]!r}?)" if hint else (f" (allowed: {', '.join(allowed)})" if allowed else "")
        return (*at, *loc), message
    if kind == "missing":
        return (*at, *loc), "required key is missing"
    if kind == "string_pattern_mismatch" and (*at, *loc)[:1] in NAME_SECTIONS:
        return (*at, *loc), "names are lower-case letters, digits, '-' and '_', starting with a letter"
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, KeyError_):
        return (*at, *loc, cause.key), str(cause)
    return (*at, *loc), error["msg"].removeprefix("Value error, ")


def allowed_keys(model: Any, loc: Iterable) -> list[str]:
    """The field names of the model found by following ``loc`` from ``model``."""
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(part, str) and part in model.model_fields:
            model = _model_in(model.model_fields[part].annotation)
        elif isinstance(model, tuple) and model[0] == "dict":
            model = model[1]
        elif isinstance(model, tuple) and model[0] == "list" and isinstance(part, int):
            model = model[1]
        else:
            return []
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    """A BaseModel class inside ``annotation``, as ("dict", X)/("list", X) for containers."""
    origin = get_origin(annotation)
    if origin is dict:
        return ("dict", _model_in(get_args(annotation)[1]))
    if origin is list:
        return ("list", _model_in(get_args(annotation)[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None and found is not type(None):
            return found
    return None


def in_file_order(problems: Iterable[Any]) -> list[Any]:
    """Problems without repeats, by line."""
    unique = {str(p): p for p in problems}
    return sorted(unique.values(), key=lambda p: (getattr(p, "line", None) or 0, str(p)))
