"""A Containerfile read into its instructions, and checked without a container engine (COPY sources, RUN syntax)."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Instruction:
    line: int
    keyword: str
    arguments: str

    def words(self) -> list[str]:
        """The arguments as a list: JSON (exec) form or shell words."""
        text = self.arguments.strip()
        if text.startswith("["):
            return json.loads(text)
        return shlex.split(text)


def parse(text: str) -> list[Instruction]:
    """Instructions with their first line; comments skipped, backslash continuations joined."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, arguments = pending.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), arguments.strip()))
        pending = ""
    if pending:
        raise ValueError(f"line {start}: the last instruction ends with a continuation")
    return instructions


def problems(file: Path, context: Path) -> list[str]:
    """What is wrong with ``file`` as far as this machine can tell without building it."""
    found: list[str] = []
    instructions = parse(file.read_text(encoding="utf-8"))
    if not instructions or instructions[0].keyword not in ("FROM", "ARG"):
        found.append(f"{file}:1: the first instruction must be FROM")
    for item in instructions:
        where = f"{file}:{item.line}"
        if item.keyword == "FROM":
            image = item.words()[0]
            if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                found.append(f"{where}: the base image {image!r} has no tag")
        elif item.keyword in ("COPY", "ADD"):
            words = [w for w in item.words() if not w.startswith("--")]
            for source in words[:-1]:
                if not (context / source).exists():
                    found.append(f"{where}: {item.keyword} source {source!r} is not in the build context {context}")
        elif item.keyword == "RUN":
            if item.arguments.startswith("["):
                continue
            check = subprocess.run(["sh", "-n", "-c", item.arguments], capture_output=True, text=True)
            if check.returncode:
                found.append(f"{where}: RUN is not valid shell: {check.stderr.strip()}")
        elif item.keyword == "CMD" and not item.arguments.startswith("["):
            found.append(f"{where}: CMD in shell form; use the exec form [\"mesh\", ...] so signals reach mesh")
    return found
