"""An agent that imports and has a card, but cannot start: create_executor fails as a real misconfiguration would."""

from a2a.types import AgentCard, AgentSkill

card = AgentCard(name="Broken", description="fails at start", skills=[AgentSkill(id="x", name="x", description="x", tags=["x"])])


def create_executor(settings):
    raise RuntimeError("no model configured: set settings.model")
