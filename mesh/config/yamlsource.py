"""YAML with line numbers: loads a document into plain data plus the line of every key path.

PyYAML's ``safe_load`` forgets where things came from and silently keeps the
last of duplicate keys; config errors must name ``file:line``, so this walks
the composed node tree instead, recording the line of each key and refusing
duplicates. ``${VAR}`` and ``${VAR:-default}`` references in strings are
expanded from the environment, and the raw text of every expanded string is
kept so callers can insist that secrets are references, never literals.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
WHOLE_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass
class SourceProblem:
    """One problem at one place of a YAML file."""

    file: str
    line: int | None
    path: Path_
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        dotted = dotted_path(self.path)
        return f"{where}: {dotted}: {self.message}" if dotted else f"{where}: {self.message}"


@dataclass
class YamlSource:
    """A loaded YAML document: its data, the line of each path and the raw text of expanded strings."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    raw: dict[Path_, str] = field(default_factory=dict)
    # Duplicate keys and unset environment variables: reported, but they do
    # not stop the document from loading, so one run lists every problem.
    problems: list[SourceProblem] = field(default_factory=list)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def problem(self, path: Path_, message: str) -> SourceProblem:
        return SourceProblem(self.file, self.line_of(path), tuple(path), message)


class YamlSourceError(Exception):
    """The document could not be read at all: a missing file or a YAML syntax error."""

    def __init__(self, problems: list[SourceProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def dotted_path(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# A mesh.yaml is a few hundred lines. Aliases are expanded as the document is walked, so a
# "billion laughs" file (aliases of aliases) would grow without bound: both are capped.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_EXPANDED_NODES = 200_000


def load_yaml(path: Path, environ: dict[str, str] | None = None) -> YamlSource:
    """Read ``path`` into a YamlSource; raise YamlSourceError naming file and line."""
    environ = os.environ if environ is None else environ
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise YamlSourceError([SourceProblem(name, None, (), f"{size:,} bytes is too large for a mesh file "
                                                                   f"(at most {MAX_DOCUMENT_BYTES:,})")])
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlSourceError([SourceProblem(name, None, (), f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise YamlSourceError([SourceProblem(name, None, (), f"not UTF-8 text: {exc}")]) from None
    return parse_yaml(text, name, environ)


def parse_yaml(text: str, name: str, environ: dict[str, str]) -> YamlSource:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # The context mark is where the broken construct starts (an unclosed
        # bracket), which is where the fix goes; the problem mark may be at EOF.
        mark = exc.context_mark or exc.problem_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        if exc.context_mark and exc.problem_mark and exc.problem_mark.line != exc.context_mark.line:
            reason += f" (at line {exc.problem_mark.line + 1})"
        raise YamlSourceError([SourceProblem(name, line, (), f"YAML syntax error: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise YamlSourceError([SourceProblem(name, None, (), f"YAML error: {exc}")]) from None
    source = YamlSource(name, None)
    if root is None:
        source.data = {}
        return source
    _check_expansion(root, name)
    source.lines[()] = root.start_mark.line + 1
    source.data = _walk(root, (), source, source.problems, environ, yaml.SafeLoader(""))
    return source


def _check_expansion(root: yaml.Node, name: str) -> None:
    """Refuse a document whose aliases refer to themselves or expand past MAX_EXPANDED_NODES nodes."""
    sizes: dict[int, int] = {}  # node id -> nodes it expands to
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative: a deep document must not exhaust Python's recursion
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_EXPANDED_NODES:
                raise YamlSourceError([SourceProblem(
                    name, node.start_mark.line + 1, (),
                    f"aliases here expand to more than {MAX_EXPANDED_NODES:,} values; a mesh file needs far fewer "
                    "(is this an alias bomb?)")])
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlSourceError([SourceProblem(name, node.start_mark.line + 1, (),
                                                 "an alias refers to the node that contains it (a recursive anchor)")])
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise YamlSourceError([SourceProblem(name, child.start_mark.line + 1, (),
                                                     "an alias refers to the node that contains it (a recursive anchor)")])
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _walk(node, path, source, problems, environ, loader) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                problems.append(SourceProblem(source.file, key_node.start_mark.line + 1, path, "keys must be plain scalars"))
                continue
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in result:
                problems.append(SourceProblem(
                    source.file, line, child,
                    f"duplicate key {key!r} (first at line {source.lines.get(child)})",
                ))
                continue
            source.lines[child] = line
            result[key] = _walk(value_node, child, source, problems, environ, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            source.lines[child] = item.start_mark.line + 1
            items.append(_walk(item, child, source, problems, environ, loader))
        return items
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str) and "${" in value:
        source.raw[path] = value
        return _expand(value, path, source, problems, environ, node.start_mark.line + 1)
    return value


def _expand(value: str, path, source, problems, environ, line) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(SourceProblem(source.file, line, path, f"environment variable {name} is not set (referenced as ${{{name}}})"))
        return ""

    return ENV_REFERENCE.sub(replace, value)
