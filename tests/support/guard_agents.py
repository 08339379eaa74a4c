"""Agents for the guard's end-to-end tests and benchmark: one records that its executor ran, one says what it is
told to say, one answers with its input behind a prefix (an output that differs from the input), one offers
direct answers (mesh.serving.handler), which the guard must turn off."""

from __future__ import annotations

from pathlib import Path

from a2a.helpers import new_text_part
from a2a.server.agent_execution import RequestContext
from a2a.server.tasks import TaskUpdater
import uuid

from a2a.types import AgentCapabilities, AgentCard, AgentSkill, Message, Role, TaskState
from pydantic import BaseModel, ConfigDict

from mesh.serving.executor import TaskAgent

card = AgentCard(
    name="Guard test agent", description="records runs and emits configured output", version="1.0.0",
    capabilities=AgentCapabilities(streaming=True),
    skills=[AgentSkill(id="say", name="Say", description="emits its configured output", tags=["test"])],
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs_file: str | None = None  # one line per executor run: the input text
    chunks: list[str] = []  # artifact chunks to stream; none: echo the input
    status: str | None = None  # a working-status message sent first
    prefix: str = ""  # with no chunks: answer with prefix + the input
    direct: bool = False  # offer answer(): prefix + the input as a plain message, without a task


class Sayer(TaskAgent):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    async def work(self, request: RequestContext, task: TaskUpdater) -> None:
        if self.settings.runs_file:
            with Path(self.settings.runs_file).open("a") as runs:
                runs.write(request.get_user_input().replace("\n", " ") + "\n")
        if self.settings.status:
            await task.update_status(TaskState.TASK_STATE_WORKING,
                                     message=task.new_agent_message([new_text_part(self.settings.status)]))
        if not self.settings.chunks:
            await task.add_artifact([new_text_part(self.settings.prefix + request.get_user_input())], name="echo")
            return
        artifact_id = f"{task.task_id}-answer"
        for index, chunk in enumerate(self.settings.chunks):
            await task.add_artifact([new_text_part(chunk)], artifact_id=artifact_id, name="answer",
                                    append=index > 0, last_chunk=index == len(self.settings.chunks) - 1)


class DirectSayer(Sayer):
    async def answer(self, request: RequestContext) -> Message:
        if self.settings.runs_file:
            with Path(self.settings.runs_file).open("a") as runs:
                runs.write(request.get_user_input().replace("\n", " ") + "\n")
        return Message(role=Role.ROLE_AGENT, message_id=str(uuid.uuid4()), context_id=request.context_id or "",
                       parts=[new_text_part(self.settings.prefix + request.get_user_input())])


def create_executor(settings: Settings) -> Sayer:
    return DirectSayer(settings) if settings.direct else Sayer(settings)
