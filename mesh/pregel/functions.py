"""Combiners, aggregators and the ``python`` vertex kind: names and import paths -> callables.

A combiner and an aggregator are both functions of a list of values that
return one value: a combiner folds a vertex's inbox at the barrier into one
message, an aggregator folds the contributions of a superstep into the value
every vertex sees in the next one.

Built-in combiners: ``sum``, ``min``, ``max``, ``list`` (the messages as one
list), ``concat`` (strings joined by newlines; lists concatenated, other
values appended) and ``last`` (the message that arrived last). Built-in
aggregators: ``sum``, ``min``, ``max``, ``count``, ``list``. Anything else is
a ``module:function`` import path.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from mesh.pregel.spec import PythonVertex, VertexSpec

Fold = Callable[[list[Any]], Any]


def concat(values: list[Any]) -> Any:
    if all(isinstance(value, str) for value in values):
        return "\n".join(values)
    joined: list[Any] = []
    for value in values:
        if isinstance(value, list):
            joined.extend(value)
        else:
            joined.append(value)
    return joined


COMBINERS: dict[str, Fold] = {
    "sum": sum,
    "min": min,
    "max": max,
    "list": list,
    "concat": concat,
    "last": lambda values: values[-1],
}

AGGREGATORS: dict[str, Fold] = {
    "sum": sum,
    "min": min,
    "max": max,
    "count": len,
    "list": list,
}

# What an aggregator is worth in a superstep where nobody contributed.
EMPTY_AGGREGATES: dict[str, Callable[[], Any]] = {"sum": int, "count": int, "list": list}


class ImportPathError(LookupError):
    """A ``module:function`` path that does not name a callable."""


@functools.lru_cache(maxsize=1024)
def import_path(path: str) -> Any:
    module_name, _, attribute_path = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # an ImportError, or whatever the module raised on import
        raise ImportPathError(f"cannot import module {module_name!r} of {path!r}: {error}") from error
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise ImportPathError(f"{path!r}: {module_name!r} has no attribute {attribute_path!r}") from None
    if not callable(target):
        raise ImportPathError(f"{path!r} is not callable")
    return target


def resolve_combiner(name: str) -> Fold:
    return COMBINERS.get(name) or import_path(name)


def resolve_aggregator(name: str) -> Fold:
    return AGGREGATORS.get(name) or import_path(name)


def empty_aggregate(name: str) -> Any:
    make = EMPTY_AGGREGATES.get(name)
    return make() if make else None


VertexFunction = Callable[[Any], Awaitable[Any]]
VertexFactory = Callable[[VertexSpec], VertexFunction]


class UnknownVertexKind(LookupError):
    pass


def python_vertex_factory(spec: VertexSpec) -> VertexFunction:
    """The vertex factory for kind ``python``: the function its import path names.

    A plain (non-async) function is called on the event loop, so it must be
    quick; anything slow should be ``async def``.
    """
    if not isinstance(spec, PythonVertex):
        raise UnknownVertexKind(f"vertex {spec.id!r}: no factory for kind {spec.kind!r}")
    return _python_callable(spec.function)


@functools.lru_cache(maxsize=1024)
def _python_callable(path: str) -> VertexFunction:
    function = import_path(path)
    if inspect.iscoroutinefunction(function):
        return function

    async def call_plain_function(call: Any) -> Any:
        return function(call)

    return call_plain_function
