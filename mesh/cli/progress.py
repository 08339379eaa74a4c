"""What `mesh send` shows while a task runs: a live progress line on a terminal, bounded plain lines elsewhere.

On a terminal (rich): a spinner with the task's latest status text, a bar
when a status update carries numbers (``{"done": N, "total"|"limit": M}``),
the chunks of streamed artifacts counted rather than printed, and elapsed
time. Elsewhere (pipes, logs, tests): one line per event, as before, except
that an artifact streamed in many chunks prints its first chunk and then a
count. Every artifact's text is cut at ``max_chars`` with a note saying how
much was left out (``--json`` prints everything).
"""

from __future__ import annotations

import sys
from typing import Any

from a2a.types import Artifact, StreamResponse, TaskState
from google.protobuf.json_format import MessageToDict

from mesh.cli.output import bounded, describe_task, parts_text, state_name

DEFAULT_MAX_CHARS = 2000


def progress_numbers(parts: Any) -> tuple[float, float] | None:
    """(done, total) from a status update's data part, when it reports them."""
    for part in parts:
        if part.WhichOneof("content") != "data":
            continue
        data = MessageToDict(part.data)
        if not isinstance(data, dict):
            continue
        done, total = data.get("done"), data.get("total", data.get("limit"))
        if isinstance(done, int | float) and isinstance(total, int | float) and total > 0:
            return float(done), float(total)
    return None


class TaskView:
    """Shows one task's events as they arrive; ``close()`` ends the live line."""

    def __init__(self, live: bool | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.live = sys.stdout.isatty() if live is None else live
        self.max_chars = max_chars
        self.chunks: dict[str, int] = {}  # artifact id -> chunks seen
        self.names: dict[str, str] = {}
        self._progress = None
        self._bar = None
        if self.live:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), transient=True)
            self._progress.start()
            self._bar = self._progress.add_task("sending", total=None)

    def show(self, event: StreamResponse) -> None:
        kind = event.WhichOneof("payload")
        if kind == "task":
            self._print(describe_task(event.task, self.max_chars))
        elif kind == "message":
            self._print(bounded(f"message: {parts_text(event.message.parts)}", self.max_chars))
        elif kind == "status_update":
            self._status(event.status_update.status)
        elif kind == "artifact_update":
            self._artifact(event.artifact_update.artifact, event.artifact_update.append)

    def _status(self, status) -> None:
        text = parts_text([p for p in status.message.parts if p.WhichOneof("content") == "text"]) if status.HasField("message") else ""
        if self._progress is not None and status.state == TaskState.TASK_STATE_WORKING:
            numbers = progress_numbers(status.message.parts) if status.HasField("message") else None
            if numbers is not None:
                self._progress.update(self._bar, completed=numbers[0], total=numbers[1])
            if text:
                self._progress.update(self._bar, description=text[:60])
            return
        if status.state != TaskState.TASK_STATE_WORKING:
            self._summarise_chunks()  # before the final state, so that it stays the last line
        self._print(f"[{state_name(status.state)}] {bounded(text, self.max_chars)}".rstrip())

    def _artifact(self, artifact: Artifact, append: bool) -> None:
        key = artifact.artifact_id or artifact.name
        self.names[key] = artifact.name or artifact.artifact_id
        seen = self.chunks.get(key, 0) if append else 0
        self.chunks[key] = seen + 1
        line = f"artifact {self.names[key]}: {parts_text(artifact.parts)}"
        if seen == 0:
            self._print(bounded(line, self.max_chars))
        elif self._progress is not None:
            self._progress.update(self._bar, description=f"artifact {self.names[key]}: {seen + 1} chunks")

    def _print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, flush=True)

    def _summarise_chunks(self) -> None:
        for key, count in self.chunks.items():
            if count > 1:
                self._print(f"artifact {self.names[key]}: {count} chunks in all (--json prints each)")
        self.chunks.clear()

    def close(self) -> None:
        self._summarise_chunks()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
