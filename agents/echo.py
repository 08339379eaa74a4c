"""Echo agent: answers every message with an artifact holding the parts it was sent."""

from a2a.server.agent_execution import RequestContext
from a2a.server.tasks import TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill

from mesh.serving.executor import TaskAgent

card = AgentCard(
    name="Echo",
    description="Answers every message with the text and data it was sent. Useful to check a mesh end to end.",
    version="1.0.0",
    capabilities=AgentCapabilities(streaming=True),
    default_input_modes=["text/plain", "application/json"],
    default_output_modes=["text/plain", "application/json"],
    skills=[
        AgentSkill(
            id="echo",
            name="Echo",
            description="Returns the message's parts unchanged as an artifact named 'echo'.",
            tags=["echo", "test"],
            examples=["hello mesh"],
        )
    ],
)


class Echo(TaskAgent):
    async def work(self, request: RequestContext, task: TaskUpdater) -> None:
        await task.add_artifact(list(request.message.parts), name="echo")


def create_executor(settings: dict) -> Echo:
    return Echo()
