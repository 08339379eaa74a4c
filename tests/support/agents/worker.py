"""A test agent for graphs: answers after a delay, can fail its first calls, and logs every call it gets to a file.

The log (JSON lines: vertex, superstep, attempt, run, text, outcome) is how
tests see which vertex calls really reached an agent, e.g. that a resumed run
did not call a finished vertex again.
"""

import asyncio
import json
import os
from pathlib import Path

from a2a.helpers import get_data_parts, get_message_text, new_text_part
from a2a.types import AgentCapabilities, AgentCard, AgentSkill
from pydantic import BaseModel, ConfigDict

from mesh.serving.executor import AgentFailure, TaskAgent

card = AgentCard(name="Worker", description="test worker", capabilities=AgentCapabilities(streaming=True),
                 skills=[AgentSkill(id="work", name="Work", description="answers after a delay", tags=["test"])])


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "worker"
    delay_s: float = 0.0
    delays: dict[str, float] = {}  # per graph vertex id: how long its calls take instead of delay_s
    hold: list[str] = []  # vertices whose calls wait until the file RELEASE_DIR/RUN exists (the test says when)
    release_dir: str | None = None
    fail_first: int = 0  # fail this many calls of each vertex before answering
    log: str | None = None
    control: bool = False  # answer with a pregel control part echoing data {"pregel": ...} sent to it


class Worker(TaskAgent):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def _log(self, entry: dict) -> None:
        if self.settings.log:
            with Path(self.settings.log).open("a") as file:
                file.write(json.dumps(entry) + "\n")

    async def work(self, request, task) -> None:
        meta = dict(request.message.metadata).get("pregel", {})
        meta = dict(meta) if meta else {}
        text = get_message_text(request.message)
        entry = {"agent": self.settings.name, "vertex": meta.get("vertex"), "superstep": meta.get("superstep"),
                 "attempt": meta.get("attempt"), "run": meta.get("run"), "text": text, "pid": os.getpid(),
                 "task": request.task_id}
        self._log({**entry, "outcome": "started"})
        earlier = 0
        if self.settings.fail_first and self.settings.log and Path(self.settings.log).exists():
            lines = [json.loads(line) for line in Path(self.settings.log).read_text().splitlines()]
            earlier = sum(1 for e in lines if e["vertex"] == entry["vertex"] and e["run"] == entry["run"]
                          and e["outcome"] == "failed")
        try:
            await asyncio.sleep(self.settings.delays.get(entry["vertex"], self.settings.delay_s))
            if entry["vertex"] in self.settings.hold and self.settings.release_dir:
                while not (Path(self.settings.release_dir) / str(entry["run"])).exists():
                    await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self._log({**entry, "outcome": "cancelled"})
            raise
        if earlier < self.settings.fail_first:
            self._log({**entry, "outcome": "failed"})
            raise AgentFailure(f"{self.settings.name} fails call {earlier + 1} on purpose")
        self._log({**entry, "outcome": "ok"})
        parts = [new_text_part(f"{self.settings.name}: {text}")]
        if self.settings.control:
            for data in get_data_parts(request.message.parts):
                if isinstance(data, dict) and "pregel" in data:
                    from a2a.helpers import new_data_part

                    parts.append(new_data_part({"pregel": data["pregel"]}))
        await task.add_artifact(parts, name="answer")


def create_executor(settings: Settings) -> Worker:
    return Worker(settings)
