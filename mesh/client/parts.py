"""A2A content as plain values: a part as text, numbers as the JSON the sender wrote, task states by their A2A names."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from a2a.types import Part, TaskState
from google.protobuf.json_format import MessageToDict


def state_name(state: int | None) -> str:
    """TASK_STATE_INPUT_REQUIRED -> input-required (the A2A 0.3 spelling users know)."""
    if state is None:
        return "unknown"
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")


def part_text(part: Part) -> str:
    kind = part.WhichOneof("content")
    if kind == "text":
        return part.text
    if kind == "data":
        return json.dumps(plain_numbers(MessageToDict(part.data)), ensure_ascii=False)
    if kind == "url":
        return part.url
    if kind == "raw":
        return f"<{len(part.raw)} bytes {part.media_type or ''}>".strip()
    return ""


def plain_numbers(value: Any) -> Any:
    """Protobuf keeps JSON numbers as doubles: show 3.0 as 3 again."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_numbers(v) for v in value]
    return value


def parts_text(parts: Sequence[Part]) -> str:
    return "\n".join(t for t in (part_text(p) for p in parts) if t)
