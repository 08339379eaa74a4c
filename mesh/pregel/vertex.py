"""What a vertex is called with (``VertexCall``) and what it answers (``VertexResult``).

A vertex is an async callable ``async def vertex(call: VertexCall) -> VertexResult | Any``.
Returning a ``VertexResult`` gives full control; returning any other value
means "send this value along every out-edge and vote to halt"; returning
``None`` means "no output, vote to halt".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from mesh.pregel.spec import VertexSpec


class _Keep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()
"""``VertexResult.state`` default: the vertex's state stays what it was."""


class Message(NamedTuple):
    """A message in an inbox; ``sender`` is None for the run's input and for a combined message."""

    sender: str | None
    value: Any


@dataclass(slots=True)
class VertexCall:
    """One call of one vertex in one superstep.

    ``messages`` are the inbox in arrival order (one message if the vertex
    has a combiner); ``state`` is what the vertex last returned as state
    (None at first); ``aggregates`` are folded at the previous barrier
    (read-only); ``spec`` is the vertex's spec with its kind-specific
    fields; ``out_edges`` are the targets of its out-edges (read-only);
    ``attempt`` counts from 1. (run_id, superstep, vertex_id, attempt) is
    the key of the call's record, usable as an idempotency key by a remote
    vertex.
    """

    run_id: str
    vertex_id: str
    superstep: int
    messages: list[Message]
    state: Any
    aggregates: Mapping[str, Any]
    spec: VertexSpec
    out_edges: Sequence[str]
    attempt: int = 1

    @property
    def inbox(self) -> list[Any]:
        """The values of the messages delivered to this vertex, in arrival order."""
        return [message.value for message in self.messages]


@dataclass(slots=True)
class VertexResult:
    """A vertex's answer.

    - ``output``: the vertex's output (JSON-serialisable; None = no output).
      Unless ``send`` is given it also goes as a message along every out-edge.
    - ``send``: explicit messages, ``{vertex: value}`` or ``[(vertex, value), ...]``,
      to any vertex (not only neighbours); when given, ``output`` is not sent.
    - ``halt``: vote to halt (default). ``halt=False`` keeps the vertex active
      in the next superstep even if no message arrives.
    - ``state``: the vertex's new persisted state (default ``KEEP``).
    - ``mutations``: topology changes to apply at the barrier
      (``AddVertex``/``RemoveVertex``/``AddEdge``/``RemoveEdge`` or their dicts).
    - ``aggregate``: contributions ``{aggregator: value}``.
    - ``tokens``, ``cost``, ``bytes``: usage the call reports, for the figures.
    """

    output: Any = None
    send: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
    halt: bool = True
    state: Any = KEEP
    mutations: Sequence[Any] = ()
    aggregate: Mapping[str, Any] | None = None
    tokens: int | None = None
    cost: float | None = None
    bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what a call record holds); ``from_dict`` reads it back."""
        data: dict[str, Any] = {"output": self.output, "halt": self.halt}
        if self.send is not None:
            data["send"] = [list(pair) for pair in send_pairs(self.send)]
        if self.state is not KEEP:
            data["state"] = self.state
        if self.mutations:
            data["mutations"] = [
                mutation if isinstance(mutation, Mapping) else mutation.model_dump(mode="json", by_alias=True)
                for mutation in self.mutations
            ]
        if self.aggregate:
            data["aggregate"] = dict(self.aggregate)
        for name in ("tokens", "cost", "bytes"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VertexResult:
        """A result from a control dict (e.g. a structured part of a remote agent's answer); errors are precise."""
        control = ResultControl.model_validate(data)
        fields = control.model_dump(exclude_unset=True)
        if control.send is not None:
            fields["send"] = send_pairs(control.send)
        return cls(**fields)


def send_pairs(send: Mapping[str, Any] | Iterable[Any]) -> list[tuple[str, Any]]:
    if isinstance(send, Mapping):
        return list(send.items())
    return [(target, value) for target, value in send]


class ResultControl(BaseModel):
    """The dict shape of a ``VertexResult`` (what ``VertexResult.from_dict`` accepts)."""

    model_config = ConfigDict(extra="forbid")

    output: Any = None
    send: dict[str, Any] | list[tuple[str, Any]] | None = None
    halt: bool = True
    state: Any = None
    mutations: list[dict[str, Any]] = Field(default_factory=list)
    aggregate: dict[str, Any] | None = None
    tokens: int | None = Field(default=None, ge=0)
    cost: float | None = Field(default=None, ge=0)
    bytes: int | None = Field(default=None, ge=0)


__all__ = ["KEEP", "Message", "ResultControl", "VertexCall", "VertexResult", "send_pairs"]
