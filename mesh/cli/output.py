"""Terminal output for the CLI: plain tables, optional colour, readable A2A events."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from a2a.types import Artifact, Message, StreamResponse, Task
from google.protobuf.json_format import MessageToDict

from mesh.client.parts import part_text, parts_text, plain_numbers, state_name  # noqa: F401 - used and re-exported

_COLOURS = [36, 35, 33, 32, 34, 31, 96, 95, 93, 92, 94, 91]


def use_colour(stream: TextIO = sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, code: int, stream: TextIO = sys.stdout) -> str:
    return f"\033[{code}m{text}\033[0m" if use_colour(stream) else text


def colour_for(index: int) -> int:
    return _COLOURS[index % len(_COLOURS)]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[("" if c is None else str(c)) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)










def describe_message(message: Message) -> str:
    return parts_text(message.parts)


def describe_artifact(artifact: Artifact) -> str:
    return f"artifact {artifact.name or artifact.artifact_id}: {parts_text(artifact.parts)}"


def bounded(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars``, saying how much was left out."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… ({len(text) - max_chars:,} more characters; --json prints everything)"


def describe_task(task: Task, max_chars: int = 2000) -> str:
    """The task's state, status message and artifacts, each cut at ``max_chars``."""
    lines = [f"task {task.id} [{state_name(task.status.state)}]"]
    if task.status.HasField("message") and task.status.message.parts:
        lines.append(f"  status: {bounded(describe_message(task.status.message), max_chars)}")
    for artifact in task.artifacts:
        lines.append("  " + bounded(describe_artifact(artifact), max_chars).replace("\n", "\n    "))
    return "\n".join(lines)


def describe_event(event: StreamResponse) -> str:
    kind = event.WhichOneof("payload")
    if kind == "task":
        return describe_task(event.task)
    if kind == "message":
        return f"message: {describe_message(event.message)}"
    if kind == "status_update":
        update = event.status_update
        text = describe_message(update.status.message) if update.status.HasField("message") else ""
        return f"[{state_name(update.status.state)}] {text}".rstrip()
    if kind == "artifact_update":
        update = event.artifact_update
        suffix = " (appended)" if update.append else ""
        return describe_artifact(update.artifact) + suffix
    return str(event)


def to_json(message: Any) -> dict:
    return plain_numbers(MessageToDict(message, preserving_proto_field_name=False))
