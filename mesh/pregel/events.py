"""What a run reports: one ``SuperstepEvent`` per superstep, and the ``RunResult`` at the end."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from mesh.pregel.figures import Figures


@dataclass(slots=True)
class SuperstepEvent:
    """A finished superstep (emitted after its checkpoint is durable).

    ``dropped_calls`` maps a vertex whose call was cancelled by the joins to
    the destinations that no longer waited for it; ``dropped_messages`` lists
    messages not delivered, each ``{"from", "to", "reason"}`` with reason
    ``late`` (the destination's join had closed), ``no such vertex`` or
    ``vertex removed``.
    """

    run_id: str
    superstep: int
    topology_version: int
    active: list[str]
    replayed: list[str]
    messages_sent: int
    messages_delivered: int
    outputs: dict[str, Any]
    mutations_applied: list[dict[str, Any]]
    mutations_refused: list[dict[str, Any]]
    dropped_calls: dict[str, list[str]]
    dropped_messages: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    retries: int
    aggregates: dict[str, Any]
    started_at: float
    compute_seconds: float
    barrier_seconds: float

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: like the event, but naming the vertices that produced output instead of the outputs."""
        return {
            "superstep": self.superstep,
            "topology_version": self.topology_version,
            "active": self.active,
            "replayed": self.replayed,
            "messages_sent": self.messages_sent,
            "messages_delivered": self.messages_delivered,
            "outputs": list(self.outputs),
            "mutations_applied": self.mutations_applied,
            "mutations_refused": self.mutations_refused,
            "dropped_calls": self.dropped_calls,
            "dropped_messages": self.dropped_messages,
            "errors": self.errors,
            "retries": self.retries,
            "started_at": self.started_at,
            "compute_seconds": round(self.compute_seconds, 6),
            "barrier_seconds": round(self.barrier_seconds, 6),
        }

    def compact_summary(self) -> dict[str, Any]:
        """The summary without the keys that hold their empty default (what a checkpoint stores)."""
        compact = {
            "superstep": self.superstep,
            "topology_version": self.topology_version,
            "active": self.active,
            "messages_sent": self.messages_sent,
            "messages_delivered": self.messages_delivered,
            "outputs": list(self.outputs),
            "started_at": self.started_at,
            "compute_seconds": round(self.compute_seconds, 6),
            "barrier_seconds": round(self.barrier_seconds, 6),
        }
        for key in _SUMMARY_DEFAULTS:
            value = getattr(self, key)
            if value:
                compact[key] = value
        return compact


_SUMMARY_DEFAULTS: dict[str, Any] = {
    "replayed": [],
    "mutations_applied": [],
    "mutations_refused": [],
    "dropped_calls": {},
    "dropped_messages": [],
    "errors": [],
    "retries": 0,
}


def expand_summary(compact: dict[str, Any]) -> dict[str, Any]:
    """A full summary again, keys in the usual order."""
    full = {key: compact[key] for key in ("superstep", "topology_version", "active")}
    for key in ("replayed", "messages_sent", "messages_delivered", "outputs", *list(_SUMMARY_DEFAULTS)[1:], "started_at",
                "compute_seconds", "barrier_seconds"):
        full[key] = compact[key] if key in compact else _empty(_SUMMARY_DEFAULTS.get(key))
    return full


def _empty(default: Any) -> Any:
    return type(default)() if isinstance(default, (list, dict)) else default


@dataclass
class RunResult:
    """How a run ended.

    ``status`` is ``done``, ``failed`` or ``cancelled``; ``stop_reason`` says
    why: ``halted`` (no vertex active, no message in flight),
    ``max_supersteps``, ``vertex_failed`` (``on_vertex_error: fail``) or
    ``cancelled``. ``outputs`` holds each output vertex's last output;
    ``errors`` the calls that failed after their retries; ``figures`` the
    per-vertex and per-edge figures (``mesh.pregel.figures``), computed when
    first read.
    """

    run_id: str
    status: str
    stop_reason: str
    supersteps: int
    topology_version: int
    outputs: dict[str, Any]
    errors: list[dict[str, Any]]
    aggregates: dict[str, Any]
    event_source: list[dict[str, Any] | SuperstepEvent] = field(default_factory=list, repr=False, compare=False)
    figure_source: Figures | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def events(self) -> list[dict[str, Any]]:
        """The summary of every superstep's event, in order."""
        return [event if isinstance(event, dict) else event.summary() for event in self.event_source]

    @functools.cached_property
    def figures(self) -> dict[str, Any]:
        return self.figure_source.to_dict() if self.figure_source is not None else {}

    def to_dict(self, *, events: bool = True, figures: bool = True) -> dict[str, Any]:
        data = {
            "run_id": self.run_id,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "supersteps": self.supersteps,
            "topology_version": self.topology_version,
            "outputs": self.outputs,
            "errors": self.errors,
            "aggregates": self.aggregates,
        }
        if events:
            data["events"] = self.events
        if figures:
            data["figures"] = self.figures
        return data
