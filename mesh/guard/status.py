"""The guard's status for ``mesh up`` and ``mesh ls``: which backend it really uses, and the GUARD column."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mesh.errors import GuardConfigError, GuardError
from mesh.guard.client import GuardClient
from mesh.guard.policy import guard_agent_of, policy_for


async def guard_status(config: Any, timeout_s: float = 3.0) -> dict[str, Any] | None:
    """The running guard agent's status (backend, model, note, counts), or None when the mesh has no guard.

    For ``mesh ls`` and ``mesh up``'s table; a guard that does not answer
    gives ``{"error": reason}``.
    """
    name = guard_agent_of(config)
    if not name or name not in config.agents:
        return None
    client = GuardClient(config.url_of(name), config.token_of(config.agent(name)), timeout_s, cache_size=0,
                         h2c=config.h2c_of(name))
    try:
        return {"agent": name, **await client.status()}
    except (GuardError, TimeoutError) as exc:
        return {"agent": name, "error": str(exc) or "timed out"}
    finally:
        await client.aclose()


def backend_label(status: dict[str, Any] | None) -> str:
    """'ollama llama-guard3:1b' / 'embedded' / 'embedded (auto: Ollama not answering)' / 'no answer', for tables.

    The full model description and the reason are in ``mesh ls --json``.
    """
    if not status:
        return ""
    if "error" in status:
        return "no answer"
    if status.get("backend") == "ollama":
        return f"ollama {status.get('model')}"
    return "embedded (auto: Ollama not answering)" if (status.get("note") or "").startswith("auto") else "embedded"


def guard_column(config: Any, names: Iterable[str], status: dict[str, Any] | None) -> dict[str, str]:
    """What ``mesh up``'s table and ``mesh ls`` show per agent in a GUARD column.

    The guard agent's row shows the backend it really uses (``status`` from
    ``guard_status``; ``embedded`` is always said, with the reason when auto
    chose it); other agents show what they check, or ``off``.
    """
    guard_name = guard_agent_of(config)
    column: dict[str, str] = {}
    for name in names:
        if name == guard_name:
            column[name] = "is the guard: " + backend_label(status)
            continue
        try:
            policy = policy_for(config, name)
        except GuardConfigError:
            column[name] = "invalid policy"
            continue
        column[name] = "off" if policy is None else "+".join(policy.check) or "tools only"
    return column
