"""What an agent module provides (a card, an executor factory, optional Settings) and how the mesh loads one.

An agent is one small module named in mesh.yaml (``module: agents.echo``)::

    card = AgentCard(name=..., description=..., skills=[...])   # or card(settings) -> AgentCard
    class Settings(BaseModel): ...                             # optional: validates `settings:`
    def create_executor(settings) -> AgentExecutor: ...

The mesh fills in everything about where and how the agent is served
(interfaces and URLs, security schemes, protocol versions); mesh.yaml's
``card:`` overrides the descriptive fields.

An agent that works with the rest of the mesh (runs its graphs, calls its
tools) takes a second argument, ``card(settings, runtime)`` and
``create_executor(settings, runtime)``: an ``AgentRuntime`` with the mesh's
config, the agent's name and its task store. An executor may define
``async start()`` and ``async stop()``, called when the server starts and
stops; one whose ``resumes_tasks`` is true picks up its own unfinished tasks
after a restart (the mesh otherwise marks them failed).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from a2a.server.agent_execution import AgentExecutor
from a2a.types import AgentCard
from pydantic import BaseModel, ValidationError

from mesh.config.plugins import ModuleImportError, import_module
from mesh.config.problems import validation_problems
from mesh.errors import AgentModuleError  # noqa: F401 - re-exported


@dataclass
class AgentRuntime:
    """What the mesh hands an agent that works with the rest of the mesh."""

    config: Any  # MeshConfig
    name: str
    task_store: Any = None  # the agent's a2a TaskStore, when it is being served


def _call(function: Any, settings: Any, runtime: AgentRuntime | None) -> Any:
    """``function(settings)`` or ``function(settings, runtime)``, as the function asks."""
    try:
        wants_runtime = len(inspect.signature(function).parameters) >= 2
    except (TypeError, ValueError):
        wants_runtime = False
    return function(settings, runtime) if wants_runtime else function(settings)


@dataclass
class AgentModule:
    module: ModuleType

    @property
    def name(self) -> str:
        return self.module.__name__

    @property
    def settings_model(self) -> type[BaseModel] | None:
        """The module's Settings model, if it has one."""
        return getattr(self.module, "Settings", None)

    def settings(self, raw: dict[str, Any]) -> Any:
        """``raw`` validated by the module's Settings model (a dict when it has none)."""
        model = getattr(self.module, "Settings", None)
        if model is None:
            return dict(raw)
        return model.model_validate(raw)

    def card(self, settings: Any, runtime: AgentRuntime | None = None) -> AgentCard:
        card = self.module.card
        if callable(card) and not isinstance(card, AgentCard):
            card = _call(card, settings, runtime)
        if not isinstance(card, AgentCard):
            raise AgentModuleError(f"{self.name}.card must be an a2a.types.AgentCard (got {type(card).__name__})")
        copy = AgentCard()
        copy.CopyFrom(card)
        return copy

    def create_executor(self, settings: Any, runtime: AgentRuntime | None = None) -> AgentExecutor:
        executor = _call(self.module.create_executor, settings, runtime)
        if not isinstance(executor, AgentExecutor):
            raise AgentModuleError(
                f"{self.name}.create_executor() must return an a2a AgentExecutor (got {type(executor).__name__})"
            )
        return executor


def load_agent_module(path: str, search_dir: Path | None = None) -> AgentModule:
    """Import ``path`` (next to mesh.yaml first) and check it provides ``card`` and ``create_executor``."""
    try:
        module = import_module(path, search_dir)
    except ModuleImportError as exc:
        raise AgentModuleError(str(exc)) from None
    missing = [name for name in ("card", "create_executor") if not hasattr(module, name)]
    if missing:
        raise AgentModuleError(f"{path} is not an agent module: it lacks {' and '.join(missing)} (see 'Writing an agent' in README.md)")
    settings_model = getattr(module, "Settings", None)
    if settings_model is not None and not (isinstance(settings_model, type) and issubclass(settings_model, BaseModel)):
        raise AgentModuleError(f"{path}.Settings must be a pydantic model")
    return AgentModule(module)


def module_problems(config) -> list:
    """Each local agent's module imports, provides a card and an executor, and accepts its settings."""
    problems = []
    for name, agent in config.local_agents().items():
        try:
            module = load_agent_module(agent.module_path, config.base_dir)
        except AgentModuleError as exc:
            problems.append(config.problem(("agents", name, "module"), str(exc)))
            continue
        try:
            settings = module.settings(agent.settings)
        except ValidationError as exc:
            problems += validation_problems(exc, ("agents", name, "settings"), config.problem, module.settings_model)
            continue
        try:
            module.card(settings, AgentRuntime(config, name))
        except Exception as exc:
            problems.append(config.problem(("agents", name, "module"), f"building its card failed: {exc}"))
    return problems
