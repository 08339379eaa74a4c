"""Where a remote vertex's call goes: replicas and group members ordered by measured latency or cost, failing ones set aside.

An agent with ``replica_urls`` (replicas on several hosts) is one candidate per
replica, keyed ``agent[i]``; a ``group`` vertex's candidates are its members'
(each expanded to its replicas). Untried candidates come first (in their
order), then the best measured; a candidate whose last call could not reach it
(connection refused or reset, a timeout, a card of another agent) is *down* for
``cooldown`` seconds: it goes last, so calls stop going to it, and comes back
on its own once the cooldown passed (one call tries it again).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import httpx

from mesh.client import Target, resolve_target
from mesh.config import MeshConfig

__all__ = ["RouteStats", "WrongAgent", "candidates_of", "expected_card_name", "unreachable"]


class WrongAgent(Exception):
    """An agent's URL answered with the card of another agent."""


@dataclass
class RouteStats:
    """Measured latency and cost per candidate, and which candidates are down, for routing remote vertices."""

    latency: dict[str, float] = field(default_factory=dict)  # exponentially weighted mean, seconds
    cost: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    down: dict[str, float] = field(default_factory=dict)  # candidate -> monotonic time it may be tried again
    cooldown: float = 10.0

    def record(self, key: str, seconds: float, cost: float | None) -> None:
        self.down.pop(key, None)
        self.calls[key] = self.calls.get(key, 0) + 1
        self.latency[key] = seconds if key not in self.latency else 0.8 * self.latency[key] + 0.2 * seconds
        if cost is not None:
            self.cost[key] = cost if key not in self.cost else 0.8 * self.cost[key] + 0.2 * cost

    def failed(self, key: str) -> None:
        """``key`` could not be reached: route around it for ``cooldown`` seconds."""
        self.down[key] = time.monotonic() + self.cooldown

    def is_down(self, key: str) -> bool:
        until = self.down.get(key)
        return until is not None and time.monotonic() < until

    def order(self, keys: list[str], route: str) -> list[str]:
        """Untried candidates first (in their order), then the best measured; the ones down last."""
        up = [k for k in keys if not self.is_down(k)]
        untried = [k for k in up if k not in self.calls]
        tried = [k for k in up if k in self.calls]
        if route == "cheapest":
            tried.sort(key=lambda k: (self.cost.get(k, float("inf")), self.latency[k]))
        else:
            tried.sort(key=lambda k: self.latency[k])
        return untried + tried + sorted((k for k in keys if self.is_down(k)), key=lambda k: self.down[k])


def candidates_of(config: MeshConfig, agent: str) -> dict[str, Target]:
    """The replicas of a mesh agent as route keys and targets (the agent's name alone for a single URL)."""
    base = resolve_target(config, agent)
    urls = config.replica_urls_of(agent)
    if len(urls) == 1:
        return {agent: base}
    return {f"{agent}[{index}]": dataclasses.replace(base, url=url) for index, url in enumerate(urls)}


def expected_card_name(config: MeshConfig, agent: str) -> str | None:
    """The name a mesh agent's card has: mesh.yaml's ``card.name``, else what its module's card says (None if unknown)."""
    spec = config.agent(agent)
    if spec.card.name or not spec.is_local:
        return spec.card.name
    try:
        from mesh.serving.agents import load_agent_module
        from mesh.serving.app import build_cards

        module = load_agent_module(spec.module_path, config.base_dir)
        return build_cards(config, agent, module.card(module.settings(spec.settings)))[0].name
    except Exception:  # a card that needs the running agent (e.g. the coordinator's): the first card seen decides
        return None


def unreachable(error: BaseException) -> bool:
    """The error says the agent could not be reached or stopped answering (not that it answered with a failure)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, httpx.TransportError | OSError | TimeoutError | WrongAgent):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
